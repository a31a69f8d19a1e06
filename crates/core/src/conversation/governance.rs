//! Governance: everything the group decides by vote, held in one place.
//!
//! The proposals we know, their consensus sessions and votes, the changes decided YES and
//! waiting for a commit, the open emergencies and the bookkeeping around them (buffered
//! membership requests, decided ids, the target of an urgent removal, approvals inherited
//! from the conversation sync). The conversation holds it as one field; the flows that
//! feed it (receiving proposals and votes, applying outcomes) live in `proposals`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::timer::{self, Deadline, Soonest, Timer};
use super::{Action, Approved, Change, Conversation, ProposalStatus, Tracked};
use crate::config::{Millis, REPLY_JITTER_MS};
use crate::consensus::ConsensusState;
use crate::identity::MemberId;
use crate::proto::{cpb, pb};

/// Decided proposals remembered (so an outcome is applied once).
pub(crate) const RESOLVED_CAP: usize = 256;
/// Buffered membership requests (announcements waiting for the epoch steward); when full
/// the oldest goes (a genuine joiner announces again).
pub(crate) const PENDING_UPDATES_CAP: usize = 64;
/// Proposals tracked at most: beyond, the oldest finished ones are forgotten.
const TRACKED_CAP: usize = 512;

/// A buffered membership request (key package announcement or removal) that the epoch
/// steward turns into a proposal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingUpdate {
    /// The add or removal asked for.
    pub action: Action,
    /// Our epoch when we first saw it.
    pub first_seen_epoch: u64,
    /// When we first saw it (a backup steward takes it over a while after).
    pub first_seen_at: Millis,
}

/// The group's decisions in progress and decided, from our point of view.
///
/// Saved flattened into the conversation's JSON (its fields are top-level keys, as they
/// were before this type existed), so its field names are part of the saved format; it
/// is read back through `saved::SavedConversation`, not on its own.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Governance {
    /// Consensus sessions: each proposal's header, votes and outcome.
    pub consensus: ConsensusState,
    /// Every proposal we know, by id, with its timers and status.
    pub proposals: BTreeMap<u32, Tracked>,
    /// Membership changes decided YES and waiting for a commit.
    pub approved: Vec<Approved>,
    /// Open emergency proposals: while any is open, lower-priority proposals are
    /// dropped (the RFC's partial freeze).
    pub emergencies: BTreeSet<u32>,
    /// Membership requests (announcements, removals) waiting for an epoch steward to
    /// propose them, by member.
    pub pending_updates: BTreeMap<MemberId, PendingUpdate>,
    /// Proposals whose outcome we applied, oldest first (at most `RESOLVED_CAP`): an
    /// outcome is applied once.
    pub resolved: VecDeque<u32>,
    /// The member an accepted score emergency removes: the next commit must carry that
    /// removal.
    pub urgent_target: Option<MemberId>,
    /// Members we filed a score emergency against, until it is decided (one at a time
    /// per member).
    pub score_removals: BTreeSet<MemberId>,
    /// Proposals open or accepted (not committed) when we joined, from the conversation
    /// sync: they count fewer voters than we have members, so their evidence is taken
    /// as it comes (see `judged_evidence`).
    pub inherited_approvals: BTreeSet<u32>,
}

impl Governance {
    /// The soonest automatic vote or consensus timeout of a proposal in vote.
    pub fn deadline(&self) -> Deadline {
        let mut soonest = Soonest::default();
        for p in self.proposals.values() {
            if p.status == ProposalStatus::Voting {
                soonest.add(timer::at(p.auto_vote_at, Timer::AutoVote));
                soonest.add(Some((p.timeout_at, Timer::VoteTimeout)));
            }
        }
        soonest.get()
    }

    /// When a backup steward takes over a buffered request the epoch steward left
    /// unproposed: `window` after it was first seen. Only requests the takeover would
    /// propose count (`applies`, and no change about the member in flight): one it skips
    /// would be due for ever.
    pub fn takeover_deadline(&self, window: Millis, applies: impl Fn(&Action) -> bool) -> Deadline {
        let mut soonest = Soonest::default();
        for (_, u) in self.proposable_updates(applies) {
            let due = u.first_seen_at.saturating_add(window);
            soonest.add(Some((due, Timer::Takeover)));
        }
        soonest.get()
    }

    /// The buffered requests a steward would turn into proposals (at once as epoch
    /// steward, after the takeover window as backup): those `applies` accepts, with no
    /// change about the same member in flight.
    pub fn proposable_updates(
        &self,
        applies: impl Fn(&Action) -> bool,
    ) -> impl Iterator<Item = (&MemberId, &PendingUpdate)> {
        self.pending_updates
            .iter()
            .filter(move |(m, u)| applies(&u.action) && !self.change_in_flight(m))
    }

    // ---- proposals -------------------------------------------------------------------------

    /// Records a proposal (replacing any record under its id), keeping the table bounded:
    /// beyond `TRACKED_CAP` the oldest finished proposals are forgotten.
    pub fn track(&mut self, t: Tracked) {
        self.proposals.insert(t.id, t);
        while self.proposals.len() > TRACKED_CAP {
            let Some(old) = self
                .proposals
                .values()
                .filter(|p| {
                    p.status != ProposalStatus::Voting && p.status != ProposalStatus::Accepted
                })
                .map(|p| p.id)
                .next()
            else {
                break;
            };
            self.proposals.remove(&old);
        }
    }

    /// Cancels the automatic vote on `id`, if we track it.
    pub fn cancel_auto_vote(&mut self, id: u32) {
        if let Some(p) = self.proposals.get_mut(&id) {
            p.auto_vote_at = None;
        }
    }

    /// Sets the status of `id`, if we track it.
    pub fn set_status(&mut self, id: u32, status: ProposalStatus) {
        if let Some(p) = self.proposals.get_mut(&id) {
            p.status = status;
        }
    }

    /// Proposals in vote whose automatic vote is due at `now`, with the vote to cast.
    pub fn due_auto_votes(&self, now: Millis) -> Vec<(u32, bool)> {
        self.proposals
            .values()
            .filter(|p| {
                p.status == ProposalStatus::Voting && p.auto_vote_at.is_some_and(|t| t <= now)
            })
            .map(|p| (p.id, p.auto_vote))
            .collect()
    }

    /// Proposals in vote whose consensus timeout is due at `now`.
    pub fn timed_out(&self, now: Millis) -> Vec<u32> {
        self.proposals
            .values()
            .filter(|p| p.status == ProposalStatus::Voting && p.timeout_at <= now)
            .map(|p| p.id)
            .collect()
    }

    /// Spends one of the requests for missing votes `id` may still make, moving its
    /// timeout to `gap` from `now` (after the last request, with time for the answers'
    /// jitter as well). Whether one was left.
    pub fn spend_vote_ask(&mut self, id: u32, now: Millis, gap: Millis) -> bool {
        let Some(p) = self.proposals.get_mut(&id) else {
            return false;
        };
        if p.vote_asks_left == 0 {
            return false;
        }
        p.vote_asks_left -= 1;
        p.timeout_at = now
            + gap
            + if p.vote_asks_left == 0 {
                REPLY_JITTER_MS
            } else {
                0
            };
        true
    }

    /// How many proposals `owner` has open.
    pub fn open_proposals_of(&self, owner: &MemberId) -> usize {
        self.proposals
            .values()
            .filter(|p| p.status == ProposalStatus::Voting && p.owner == *owner)
            .count()
    }

    /// Is a proposal about `m` already open or approved?
    pub fn change_in_flight(&self, m: &MemberId) -> bool {
        self.approved.iter().any(|a| a.change.member() == *m)
            || self.proposals.values().any(|p| {
                p.status == ProposalStatus::Voting
                    && matches!(p.action, Action::Add { member, .. } | Action::Remove { member } if member == *m)
            })
    }

    /// Is the removal of `m` approved (waiting for a commit)?
    pub fn removal_approved(&self, m: &MemberId) -> bool {
        self.approved
            .iter()
            .any(|a| a.change == Change::Remove { member: *m })
    }

    /// Is the removal of `m` approved, or in vote?
    pub fn removal_under_way(&self, m: &MemberId) -> bool {
        self.removal_approved(m)
            || self.proposals.values().any(|p| {
                p.status == ProposalStatus::Voting
                    && matches!(p.action, Action::Remove { member } if member == *m)
            })
    }

    /// Is an add of `m` approved (waiting for a commit)?
    pub fn add_approved(&self, m: &MemberId) -> bool {
        self.approved
            .iter()
            .any(|a| a.change.member() == *m && a.change.is_add())
    }

    /// Membership requests that may ask for a rejoin, each with the epoch we learnt it
    /// at: buffered requests, and proposals in vote or accepted.
    pub fn membership_asks(&self) -> impl Iterator<Item = (&Action, u64)> {
        let buffered = self
            .pending_updates
            .values()
            .map(|u| (&u.action, u.first_seen_epoch));
        let proposed = self
            .proposals
            .values()
            .filter(|t| matches!(t.status, ProposalStatus::Voting | ProposalStatus::Accepted))
            .map(|t| (&t.action, t.epoch));
        buffered.chain(proposed)
    }

    /// Members whose rejoin is approved (waiting for a commit).
    pub fn approved_rejoins(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.approved.iter().filter_map(|w| match &w.change {
            Change::Add {
                member,
                rejoin: true,
                ..
            } => Some(*member),
            _ => None,
        })
    }

    /// Another member whose open add (a buffered request, a proposal in vote, an approved
    /// add) claims the leaf key `key_package` claims, if any. The first announced keeps a
    /// leaf key: leaf keys are public, and a copy under another address committed first
    /// would leave the joiner's own add uncommittable, again at each announcement.
    pub fn leaf_key_claimed_by(&self, member: &MemberId, key_package: &[u8]) -> Option<MemberId> {
        let key = crate::mls::claimed_leaf_key(key_package)?;
        let buffered = self
            .pending_updates
            .values()
            .filter_map(|u| add_of(&u.action));
        let voting = self
            .proposals
            .values()
            .filter(|t| t.status == ProposalStatus::Voting)
            .filter_map(|t| add_of(&t.action));
        let approved = self.approved.iter().filter_map(|a| match &a.change {
            Change::Add {
                member,
                key_package,
                ..
            } => Some((*member, key_package.as_slice())),
            Change::Remove { .. } => None,
        });
        buffered
            .chain(voting)
            .chain(approved)
            .find(|(m, kp)| m != member && crate::mls::claimed_leaf_key(kp).as_ref() == Some(&key))
            .map(|(m, _)| m)
    }

    /// Whether `p` is a new leave of a member whose earlier leave we hold under the same
    /// deterministic id, carried out (it left, was added again, and leaves again), and
    /// `p` was made after it. The same proposal again (an old message replayed, or
    /// re-sent) is not, nor anything else that used that id.
    pub fn renews_own_leave(&self, p: &cpb::Proposal) -> bool {
        let Ok(owner) = MemberId::from_slice(&p.proposal_owner) else {
            return false;
        };
        Conversation::is_own_leave(p)
            && self.proposals.get(&p.proposal_id).is_some_and(|old| {
                old.owner == owner
                    && old.action == Action::Remove { member: owner }
                    && old.status == ProposalStatus::Committed
                    && p.timestamp > old.made_s
            })
    }

    /// Forgets proposal `id` entirely: its record, its consensus session, and that we
    /// applied its outcome.
    pub fn forget(&mut self, id: u32) {
        self.proposals.remove(&id);
        self.consensus.remove(id);
        self.resolved.retain(|r| *r != id);
    }

    /// A membership change or election we rejected (at our timeout: a NO on votes is
    /// never overturned by more votes, which `certain` and the evidence rule ensure).
    pub fn overturnable(&self, id: u32) -> bool {
        self.proposals.get(&id).is_some_and(|t| {
            t.status == ProposalStatus::Rejected
                && (matches!(
                    t.action,
                    Action::Add { .. } | Action::Remove { .. } | Action::Election { .. }
                ) || t.action.membership_change().is_some())
        })
    }

    // ---- outcomes --------------------------------------------------------------------------

    /// Notes that the outcome of `id` is being applied; false if it was already (the
    /// oldest of more than `RESOLVED_CAP` are forgotten).
    pub fn resolve(&mut self, id: u32) -> bool {
        if self.resolved.contains(&id) {
            return false;
        }
        self.resolved.push_back(id);
        while self.resolved.len() > RESOLVED_CAP {
            self.resolved.pop_front();
        }
        true
    }

    /// Forgets that the outcome of `id` was applied, so that a new one can be.
    pub fn unresolve(&mut self, id: u32) {
        self.resolved.retain(|x| *x != id);
    }

    /// Marks a tracked proposal decided (its automatic vote cancelled). Its action and
    /// the epoch we learnt it at; `None` if we do not track it.
    pub fn decide(&mut self, id: u32, accepted: bool) -> Option<(Action, u64)> {
        let p = self.proposals.get_mut(&id)?;
        p.auto_vote_at = None;
        p.status = if accepted {
            ProposalStatus::Accepted
        } else {
            ProposalStatus::Rejected
        };
        Some((p.action.clone(), p.epoch))
    }

    /// Queues a change decided YES by proposal `id`.
    pub fn approve(&mut self, id: u32, change: Change) {
        self.approved.push(Approved { id, change });
    }

    /// Closes the emergency `id` (decided): it no longer holds lower-priority proposals
    /// back, and a score emergency may be filed against its target again.
    pub fn settle_emergency(&mut self, id: u32, target: Option<MemberId>) {
        self.emergencies.remove(&id);
        if let Some(t) = target {
            self.score_removals.remove(&t);
        }
    }

    // ---- buffered requests -----------------------------------------------------------------

    /// Remembers a membership request, seen at `epoch`, so a (later) epoch steward can
    /// propose it.
    pub fn buffer_update(&mut self, now: Millis, epoch: u64, action: Action) {
        let Some(m) = action.member() else { return };
        if !self.pending_updates.contains_key(&m)
            && self.pending_updates.len() >= PENDING_UPDATES_CAP
            && let Some(oldest) = self
                .pending_updates
                .iter()
                .min_by_key(|(_, u)| u.first_seen_at)
                .map(|(k, _)| *k)
        {
            self.pending_updates.remove(&oldest);
        }
        match self.pending_updates.get_mut(&m) {
            // A joiner that announced again with a fresh key package (a new attempt, a
            // rejoin) wants that one: an add of the older one would bring a welcome it
            // may no longer be waiting for.
            Some(u) if newer_announcement(&action, &u.action) => u.action = action,
            Some(_) => {}
            None => {
                self.pending_updates.insert(
                    m,
                    PendingUpdate {
                        action,
                        first_seen_epoch: epoch,
                        first_seen_at: now,
                    },
                );
            }
        }
    }
}

/// The joiner and key package of an add.
fn add_of(a: &Action) -> Option<(MemberId, &[u8])> {
    match a {
        Action::Add {
            member,
            key_package,
            ..
        } => Some((*member, key_package.as_slice())),
        _ => None,
    }
}

/// Whether `new` is an add announced later than the add `old`.
fn newer_announcement(new: &Action, old: &Action) -> bool {
    let stamp = |a: &Action| match a {
        Action::Add { announcement, .. } => {
            <pb::KeyPackageAnnouncement as prost::Message>::decode(announcement.as_slice())
                .ok()
                .map(|a| a.timestamp_ms)
        }
        _ => None,
    };
    matches!((stamp(new), stamp(old)), (Some(n), Some(o)) if n > o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> MemberId {
        MemberId::from_slice(&[b; 20]).unwrap()
    }

    /// A removal of member `b`, by member 1, in the given status.
    fn removal(pid: u32, b: u8, status: ProposalStatus, timeout_at: Millis) -> Tracked {
        Tracked {
            id: pid,
            action: Action::Remove { member: id(b) },
            owner: id(1),
            epoch: 3,
            made_s: 0,
            timeout_at,
            expires_at: timeout_at + 60_000,
            auto_vote_at: None,
            auto_vote: true,
            status,
            vote_asks_left: 1,
        }
    }

    #[test]
    fn the_deadline_is_the_soonest_vote_or_timeout_of_a_proposal_in_vote() {
        let mut g = Governance::default();
        assert_eq!(g.deadline(), None);
        g.track(removal(1, 2, ProposalStatus::Voting, 900));
        // Decided proposals wait for nothing, however early their timers.
        g.track(Tracked {
            auto_vote_at: Some(10),
            ..removal(2, 3, ProposalStatus::Rejected, 20)
        });
        assert_eq!(g.deadline(), Some((900, Timer::VoteTimeout)));
        g.track(Tracked {
            auto_vote_at: Some(500),
            ..removal(3, 4, ProposalStatus::Voting, 700)
        });
        assert_eq!(g.deadline(), Some((500, Timer::AutoVote)));
        g.cancel_auto_vote(3);
        assert_eq!(g.deadline(), Some((700, Timer::VoteTimeout)));
    }

    #[test]
    fn an_outcome_is_applied_once_until_unresolved() {
        let mut g = Governance::default();
        g.track(removal(1, 2, ProposalStatus::Voting, 900));
        assert!(g.resolve(1));
        assert!(!g.resolve(1));
        assert_eq!(g.decide(1, false).map(|(_, e)| e), Some(3));
        assert!(g.overturnable(1));
        g.unresolve(1);
        assert!(g.resolve(1));
        for n in 2..(RESOLVED_CAP as u32 + 2) {
            assert!(g.resolve(n));
        }
        assert_eq!(g.resolved.len(), RESOLVED_CAP);
        assert!(g.resolve(1), "the oldest is forgotten beyond the cap");
    }

    #[test]
    fn the_table_forgets_the_oldest_finished_proposals_only() {
        let mut g = Governance::default();
        g.track(removal(0, 2, ProposalStatus::Voting, 1));
        for n in 1..=(TRACKED_CAP as u32 + 5) {
            g.track(removal(n, 2, ProposalStatus::Committed, 1));
        }
        assert_eq!(g.proposals.len(), TRACKED_CAP);
        assert!(g.proposals.contains_key(&0));
        assert!(!g.proposals.contains_key(&1));
    }

    #[test]
    fn removals_under_way_and_approved_are_told_apart() {
        let mut g = Governance::default();
        g.track(removal(1, 2, ProposalStatus::Voting, 900));
        assert!(g.removal_under_way(&id(2)) && !g.removal_approved(&id(2)));
        assert!(g.change_in_flight(&id(2)));
        assert_eq!(g.open_proposals_of(&id(1)), 1);
        g.decide(1, true);
        g.approve(1, Change::Remove { member: id(2) });
        assert!(g.removal_under_way(&id(2)) && g.removal_approved(&id(2)));
        assert!(!g.add_approved(&id(2)));
        assert_eq!(g.open_proposals_of(&id(1)), 0);
    }
}
