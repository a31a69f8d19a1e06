//! Consensus bookkeeping: opening proposals, receiving proposals and votes, automatic
//! votes and timeouts, and applying decided outcomes to the conversation's queues.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::stewardship::Installed;
use super::*;
use crate::config::{REPLY_JITTER_MS, VOTE_ASKS};
use crate::consensus::NewProposal;
use crate::proto::{cpb, pb};
use crate::scoring::ScoreEvent;

/// Proposals one member may have open (voting) at once: each costs every member a
/// consensus session, timers and votes.
pub(crate) const MAX_OPEN_PER_OWNER: usize = 8;
/// Buffered membership requests (announcements waiting for the epoch steward); when full
/// the oldest goes (a genuine joiner announces again).
pub(crate) const PENDING_UPDATES_CAP: usize = 64;

/// The key package inside an encoded announcement.
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

fn announcement_key_package(announcement: &[u8]) -> Option<Vec<u8>> {
    use prost::Message;
    pb::KeyPackageAnnouncement::decode(announcement)
        .ok()
        .map(|a| a.key_package)
}

impl Conversation {
    /// Our own vote on a proposal (true = YES), once we cast it (by hand or
    /// automatically); read-only, for views.
    pub fn our_vote(&self, id: u32) -> Option<bool> {
        self.gov.consensus.vote_of(id, &self.me)
    }

    fn now_s(ctx_now: Millis) -> u64 {
        ctx_now / 1000
    }

    pub(super) fn voting_delay(&self, kind: ProposalKind) -> Millis {
        if kind == ProposalKind::StewardElection {
            self.config.election_voting_delay
        } else {
            self.config.voting_delay
        }
    }

    /// Creates, records and broadcasts a proposal. `creator_vote: None` defers our vote
    /// to the automatic vote (the reference's "Deferred" intent).
    pub(super) fn open_proposal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        action: Action,
        creator_vote: Option<bool>,
        fixed_id: Option<u32>,
        expected: Option<u32>,
    ) -> Result<u32, CommandError> {
        let n = expected.unwrap_or(self.voters().len() as u32).max(1);
        let kind = action.kind();
        let created = self
            .gov
            .consensus
            .create_proposal(
                &ctx.identity.eth,
                ctx.rng,
                Self::now_s(ctx.now),
                NewProposal {
                    name: action.summary(),
                    payload: action.to_payload(),
                    expected_voters: n,
                    expiration_s: self.config.proposal_expiration / 1000,
                    liveness_yes: self.config.liveness_criteria_yes,
                    fixed_id,
                },
                creator_vote,
            )
            .map_err(CommandError::Consensus)?;
        let id = created.proposal.proposal_id;
        let auto_vote_at = (creator_vote.is_none()).then(|| ctx.now + self.voting_delay(kind));
        self.track(
            ctx.now,
            created.proposal.timestamp,
            id,
            action.clone(),
            self.me,
            auto_vote_at,
            self.config.liveness_criteria_yes,
        );
        if kind == ProposalKind::Emergency {
            self.gov.emergencies.insert(id);
        }
        out.event(Event::ProposalCreated {
            id,
            kind,
            kind_name: action.kind_name(),
            summary: action.summary(),
            owner: self.me,
        });
        if let Some(at) = auto_vote_at {
            out.event(Event::VoteRequested {
                id,
                auto_vote_at: at,
            });
        }
        // A one-voter proposal (self-leave) is decided locally; peers check it on the fast
        // path, so it still has to be sent.
        let msg = pb::AppMessage {
            body: Some(pb::app_message::Body::Proposal(created.proposal)),
        };
        self.send_app(ctx, out, msg)?;
        tracing::info!(conversation = %self.name, id, summary = %action.summary(), "proposal opened");
        if let Some(result) = created.outcome {
            self.apply_outcome(ctx, out, id, result);
        }
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn track(
        &mut self,
        now: Millis,
        made_s: u64,
        id: u32,
        action: Action,
        owner: MemberId,
        auto_vote_at: Option<Millis>,
        auto_vote: bool,
    ) {
        let epoch = self.epoch();
        self.gov.proposals.insert(
            id,
            Tracked {
                id,
                action,
                owner,
                epoch,
                made_s,
                timeout_at: now + self.config.consensus_timeout,
                expires_at: now + self.config.proposal_expiration,
                auto_vote_at,
                auto_vote,
                status: ProposalStatus::Voting,
                vote_asks_left: VOTE_ASKS,
            },
        );
        // Keep the table bounded: forget the oldest finished proposals.
        while self.gov.proposals.len() > 512 {
            let Some(old) = self
                .gov
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
            self.gov.proposals.remove(&old);
        }
    }

    pub(super) fn cast_vote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        yes: bool,
    ) -> Result<(), CommandError> {
        let (vote, outcome) = self
            .gov
            .consensus
            .cast_vote(&ctx.identity.eth, ctx.rng, id, yes, Self::now_s(ctx.now))
            .map_err(CommandError::Consensus)?;
        if let Some(p) = self.gov.proposals.get_mut(&id) {
            p.auto_vote_at = None;
        }
        self.send_vote(ctx, out, &vote)?;
        if let Some(result) = outcome {
            self.apply_outcome(ctx, out, id, result);
        }
        Ok(())
    }

    /// Members of our roster whose own signed *rejoin* announcement we hold (waiting in
    /// the update buffer, in a proposal, or decided and not yet committed): each has left
    /// its leaf (it lost a fork, or fell too far behind) and waits for a welcome, so it
    /// can neither receive our proposals nor vote on them. Only the member itself can put
    /// itself here (the announcement is signed under the rejoin domain, fresh, and its key
    /// package unused), so this can only lower the weight of its own voice.
    pub(super) fn rejoining(&self) -> BTreeSet<MemberId> {
        let in_roster = |m: &MemberId| self.mls.as_ref().is_some_and(|g| g.is_member(m));
        // A member we heard at our epoch after it announced holds its leaf: the
        // announcement (replayed, or overtaken by a re-add) is not its state.
        let heard_after = |m: &MemberId, announcement: &[u8]| {
            let made = pb::KeyPackageAnnouncement::decode(announcement)
                .map(|a| a.timestamp_ms)
                .unwrap_or(0);
            self.fork_watch
                .heard
                .get(m)
                .is_some_and(|t| *t > made.saturating_add(join::ANNOUNCE_SKEW_MS))
        };
        let asked = |a: &Action, since: u64| match a {
            Action::Add {
                member,
                announcement,
                ..
            } if in_roster(member)
                && join::announcement_rejoin(announcement)
                && !self.added_since(member, since)
                && !heard_after(member, announcement) =>
            {
                Some(*member)
            }
            _ => None,
        };
        let approved = self.gov.approved.iter().filter_map(|w| match &w.change {
            Change::Add {
                member,
                rejoin: true,
                ..
            } if in_roster(member) => Some(*member),
            _ => None,
        });
        self.gov
            .pending_updates
            .values()
            .filter_map(|u| asked(&u.action, u.first_seen_epoch))
            .chain(
                self.gov
                    .proposals
                    .values()
                    .filter(|t| {
                        matches!(t.status, ProposalStatus::Voting | ProposalStatus::Accepted)
                    })
                    .filter_map(|t| asked(&t.action, t.epoch)),
            )
            .chain(approved)
            .collect()
    }

    /// Whether a commit into an epoch after `epoch` added `member` (it has a fresh leaf
    /// since: a rejoin asked for before that is done).
    pub(super) fn added_since(&self, member: &MemberId, epoch: u64) -> bool {
        self.recent_adds
            .iter()
            .any(|(e, _, added)| *e > epoch && added.contains(member))
    }

    /// Who votes on proposals made now: the roster without the members rejoining. Without
    /// this a group whose members on a losing fork branch are half of its roster (a fork
    /// with equal support) could decide nothing, not even their rejoin.
    pub(super) fn voters(&self) -> Vec<MemberId> {
        let away = self.rejoining();
        self.members()
            .into_iter()
            .filter(|m| !away.contains(m))
            .collect()
    }

    /// Is this content acceptable to us? Invalid content is voted NO at once.
    pub(super) fn content_is_valid<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        action: &Action,
    ) -> Result<(), String> {
        let members = self.members();
        match action {
            Action::Add {
                member,
                announcement,
                ..
            } => {
                if members.contains(member) && !join::announcement_rejoin(announcement) {
                    return Err(format!("{member} is already a member"));
                }
                if let Some(kp) = announcement_key_package(announcement) {
                    if let Some(why) = self.add_blocked(ctx, member, &kp) {
                        return Err(why);
                    }
                    if let Some(first) = self.leaf_key_claimed_by(member, &kp) {
                        return Err(format!(
                            "{member}'s key package copies the leaf key of {first}'s pending add"
                        ));
                    }
                }
                join::verify_announcement(&self.name, announcement, ctx.provider).map(|_| ())
            }
            Action::Remove { member } => {
                if members.contains(member) {
                    Ok(())
                } else {
                    Err(format!("{member} is not a member"))
                }
            }
            Action::Election {
                stewards,
                election_epoch,
                retry_round,
            } => self.validate_election(stewards, *election_epoch, *retry_round),
            Action::Emergency { target, .. } => match target {
                Some(t) if !members.contains(t) => Err(format!("{t} is not a member")),
                _ => Ok(()),
            },
        }
    }

    /// Why an add of `member` with `key_package` can no longer be carried out, if it
    /// cannot: the key package was used by an earlier add, or its leaf key is another
    /// member's (openmls refuses a commit that would put one encryption key in the tree
    /// twice, so one such add fails every commit it is in). Both can become true after
    /// the add was checked (a copy of the key got in first), so they are checked again
    /// before proposing and committing; neither needs a signature check. A rejoin whose
    /// leaf is its own already is moot, not blocked.
    pub(super) fn add_blocked<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        member: &MemberId,
        key_package: &[u8],
    ) -> Option<String> {
        if self.key_package_used(key_package) {
            return Some(format!("{member}'s key package was used by an earlier add"));
        }
        match self
            .mls
            .as_ref()
            .and_then(|m| m.leaf_key_holder(ctx.provider, key_package))
        {
            Some(holder) if holder != *member => {
                Some(format!("{member}'s key package copies {holder}'s leaf key"))
            }
            _ => None,
        }
    }

    /// Another member whose open add (a buffered request, a proposal in vote, an approved
    /// add) claims the leaf key `key_package` claims, if any. The first announced keeps a
    /// leaf key: leaf keys are public, and a copy under another address committed first
    /// would leave the joiner's own add uncommittable, again at each announcement.
    pub(super) fn leaf_key_claimed_by(
        &self,
        member: &MemberId,
        key_package: &[u8],
    ) -> Option<MemberId> {
        let key = crate::mls::claimed_leaf_key(key_package)?;
        let buffered = self
            .gov
            .pending_updates
            .values()
            .filter_map(|u| add_of(&u.action));
        let voting = self
            .gov
            .proposals
            .values()
            .filter(|t| t.status == ProposalStatus::Voting)
            .filter_map(|t| add_of(&t.action));
        let approved = self.gov.approved.iter().filter_map(|a| match &a.change {
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
    pub(super) fn renews_own_leave(&self, p: &cpb::Proposal) -> bool {
        let Ok(owner) = MemberId::from_slice(&p.proposal_owner) else {
            return false;
        };
        Self::is_own_leave(p)
            && self.gov.proposals.get(&p.proposal_id).is_some_and(|old| {
                old.owner == owner
                    && old.action == Action::Remove { member: owner }
                    && old.status == ProposalStatus::Committed
                    && p.timestamp > old.made_s
            })
    }

    /// Forgets the record of an earlier leave that `p` renews (see `renews_own_leave`).
    pub(super) fn forget_renewed_leave(&mut self, p: &cpb::Proposal) {
        let id = p.proposal_id;
        tracing::info!(conversation = %self.name, id, "a member that left before leaves again");
        self.gov.proposals.remove(&id);
        self.gov.consensus.remove(id);
        self.gov.resolved.retain(|r| *r != id);
    }

    /// Content checks that need the proposal's owner: an emergency names its creator in
    /// the payload (scores follow it), and that must be the owner.
    pub(super) fn content_is_owners(action: &Action, owner: MemberId) -> Result<(), String> {
        match action {
            Action::Emergency { creator, .. } if *creator != owner => Err(format!(
                "emergency names {creator} as creator but was proposed by {owner}"
            )),
            _ => Ok(()),
        }
    }

    pub(super) fn on_proposal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sender: MemberId,
        p: cpb::Proposal,
    ) {
        let id = p.proposal_id;
        // A member that left before and came back leaves again, under the same
        // deterministic id: its new leave replaces the old record once it is checked.
        // (Before, the old record swallowed it and the member could never leave again.)
        let renewal = self.gov.proposals.contains_key(&id);
        if renewal && !self.renews_own_leave(&p) {
            return;
        }
        let action = match Action::from_payload(&p.payload) {
            Ok(a) => a,
            Err(e) => return out.reject(InboundKind::Proposal, RejectCause::Malformed, e),
        };
        let kind = action.kind();
        if !self.gov.emergencies.is_empty() && kind < ProposalKind::Emergency {
            // RFC partial freeze: lower-priority governance traffic is dropped.
            return out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!(
                    "{} dropped: an emergency proposal is open",
                    action.summary()
                ),
            );
        }
        let owner = match MemberId::from_slice(&p.proposal_owner) {
            Ok(o) if o == sender => o,
            _ => {
                return out.reject(
                    InboundKind::Proposal,
                    RejectCause::Unauthenticated,
                    "proposal owner is not the MLS sender",
                );
            }
        };
        if self.open_proposals_of(&owner) >= MAX_OPEN_PER_OWNER {
            return out.reject(
                InboundKind::Proposal,
                RejectCause::OverLimit,
                format!("{owner} already has {MAX_OPEN_PER_OWNER} proposals open"),
            );
        }
        // A rejoin the proposal carries tells us its member left its leaf: count that
        // before checking the voter count, on the checks a member's own announcement
        // gets (signature, freshness, unused key package): an old one replayed inside a
        // proposal must not silence anyone.
        if let Action::Add {
            member,
            key_package,
            announcement,
        } = &action
            && join::announcement_rejoin(announcement)
            && self.members().contains(member)
            && !self.key_package_used(key_package)
            && pb::KeyPackageAnnouncement::decode(announcement.as_slice())
                .is_ok_and(|a| self.current_announcement(ctx, &a, announcement).is_ok())
        {
            self.buffer_update(ctx.now, action.clone());
        }
        let members = self.voters();
        let roster = self.members().len();
        if p.liveness_criteria_yes != self.config.liveness_criteria_yes {
            return out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!(
                    "liveness_criteria_yes = {} against the conversation's {}",
                    p.liveness_criteria_yes, self.config.liveness_criteria_yes
                ),
            );
        }
        if let Err(why) = self.lifetime_fits(&p) {
            return out.reject(InboundKind::Proposal, RejectCause::Invalid, why);
        }
        if p.expected_voters_count == 1 {
            // Fast path: only a member's own leave may skip the group vote.
            let ok = action == Action::Remove { member: sender }
                && id == crate::consensus::self_leave_proposal_id(&sender);
            if !ok {
                return out.reject(
                    InboundKind::Proposal,
                    RejectCause::Invalid,
                    "one-voter proposal that is not the sender's own leave",
                );
            }
        } else if p.expected_voters_count as usize != members.len()
            && p.expected_voters_count as usize != roster
        {
            return out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!(
                    "expects {} voters but the group has {roster} ({} of them voting)",
                    p.expected_voters_count,
                    members.len()
                ),
            );
        }
        let valid = self
            .content_is_valid(ctx, &action)
            .and_then(|()| Self::content_is_owners(&action, owner));
        let is_voter = |m: &MemberId| members.contains(m);
        if renewal {
            self.forget_renewed_leave(&p);
        }
        let outcome =
            match self
                .gov
                .consensus
                .receive_proposal(p.clone(), Self::now_s(ctx.now), &is_voter)
            {
                Ok(o) => o,
                Err(e) => return out.reject(InboundKind::Proposal, e.cause(), e),
            };
        let n = p.expected_voters_count;
        let auto_vote_at = (n > 1).then(|| ctx.now + self.voting_delay(kind));
        self.track(
            ctx.now,
            p.timestamp,
            id,
            action.clone(),
            owner,
            auto_vote_at,
            self.config.liveness_criteria_yes && valid.is_ok(),
        );
        if kind == ProposalKind::Emergency {
            self.gov.emergencies.insert(id);
        }
        if matches!(action, Action::Add { .. } | Action::Remove { .. }) && valid.is_ok() {
            self.buffer_update(ctx.now, action.clone());
        }
        out.event(Event::ProposalCreated {
            id,
            kind,
            kind_name: action.kind_name(),
            summary: action.summary(),
            owner,
        });
        if let Some(r) = outcome {
            self.apply_outcome(ctx, out, id, r);
            return;
        }
        // An election for an epoch whose election we already accepted, that ours would
        // supersede or that we refuse: its proposer most likely missed the votes that
        // decided ours (a member that caught up on the epoch's commit after the group
        // elected). Offer the proof (the same jittered, suppressible answer as to a
        // `ProposalRequest`); otherwise it installs its own list and the next commit forks.
        if let Action::Election {
            election_epoch,
            retry_round,
            stewards,
        } = &action
            && *election_epoch == self.epoch()
            && self.stewards.as_ref().is_some_and(|l| {
                l.election_epoch == *election_epoch
                    && (valid.is_err()
                        || (std::cmp::Reverse(l.retry_round), &l.stewards)
                            < (std::cmp::Reverse(*retry_round), stewards))
            })
            && let Some(proof) = self.election_proof
            && proof != id
        {
            self.on_proposal_request(ctx, None, proof);
        }
        if let Err(why) = valid {
            out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!("voting NO on {}: {why}", action.summary()),
            );
            if let Err(e) = self.cast_vote(ctx, out, id, false) {
                out.event(Event::Error {
                    operation: "vote",
                    message: e.to_string(),
                });
            }
        } else if let Some(at) = auto_vote_at {
            out.event(Event::VoteRequested {
                id,
                auto_vote_at: at,
            });
        }
    }

    /// Takes one vote (from an MLS application message or a sealed vote); whether it was
    /// taken (a vote on a proposal we do not know yet is not, until we learn it).
    pub(super) fn on_vote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        v: cpb::Vote,
    ) -> bool {
        if let Some(refused) = self.gov.consensus.refused_as_held(&v) {
            out.reject(InboundKind::Vote, refused.cause(), refused);
            return false;
        }
        // `voters()` without its copy of the roster: this runs once per vote received.
        let away = self.rejoining();
        let mls = self.mls.as_ref();
        let is_voter = |m: &MemberId| mls.is_some_and(|g| g.is_member(m)) && !away.contains(m);
        let id = v.proposal_id;
        match self
            .gov
            .consensus
            .receive_vote(v, Self::now_s(ctx.now), &is_voter)
        {
            Ok(Some(r)) => {
                // A vote that arrives after our timeout rejected the proposal, and with
                // which no further vote can make it anything but YES: the members that
                // got it in time decided YES (in a two-member group, one lost vote split
                // an election this way, and each member then waited for the other).
                if r && self.overturnable(id) {
                    tracing::info!(conversation = %self.name, id, "a late vote overturns our timeout rejection");
                    self.gov.resolved.retain(|x| *x != id);
                }
                self.apply_outcome(ctx, out, id, r);
                true
            }
            Ok(None) => true,
            Err(crate::consensus::Rejection::UnknownProposal(id)) => {
                // We missed the proposal (loss, or it was sent just before we joined).
                self.want_proposal(id, ctx.now + 200);
                false
            }
            Err(e) => {
                out.reject(InboundKind::Vote, e.cause(), e);
                false
            }
        }
    }

    /// We rejected a membership change or election by timeout, but a commit carries the
    /// signed votes that accept it: the others decided YES on votes we never received.
    /// Adopt the proven outcome rather than refuse the commit (which forks the group).
    pub(super) fn overturn_timeout_rejection<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        p: &cpb::Proposal,
        is_voter: &dyn Fn(&MemberId) -> bool,
        now_s: u64,
    ) {
        let id = p.proposal_id;
        if !self.overturnable(id) {
            return;
        }
        // An add dropped because no commit can carry it stays dropped.
        if let Some(Action::Add {
            member,
            key_package,
            ..
        }) = self.gov.proposals.get(&id).map(|t| &t.action)
            && self.add_blocked(ctx, member, key_package).is_some()
        {
            return;
        }
        // We rejected it at our own timeout, so the committers' timeout has passed too:
        // the merged signed votes are judged as they judged them (the timeout rule needs
        // a majority turnout, so a minority cannot pass anything this way).
        // (`now_s` is the judging time: a commit caught up on is judged as it was made.)
        if let Ok(Some(true)) =
            self.gov
                .consensus
                .ingest_evidence_after_timeout(p.clone(), now_s, is_voter)
        {
            tracing::info!(conversation = %self.name, id, "signed votes overturn our timeout rejection");
            self.gov.resolved.retain(|x| *x != id);
            self.apply_outcome(ctx, out, id, true);
        }
    }

    /// A membership change or election we rejected (at our timeout: a NO on votes is
    /// never overturned by more votes, which `certain` and the evidence rule ensure).
    fn overturnable(&self, id: u32) -> bool {
        self.gov.proposals.get(&id).is_some_and(|t| {
            t.status == ProposalStatus::Rejected
                && (matches!(
                    t.action,
                    Action::Add { .. } | Action::Remove { .. } | Action::Election { .. }
                ) || t.action.membership_change().is_some())
        })
    }

    /// Automatic votes and consensus timeouts that are due.
    /// Before the timeout rule turns missing votes into NO, ask for them: a vote lost on
    /// its way here leaves us deciding NO while the members that got it decide YES (in a
    /// two-member group every lost vote did that). Members that know the proposal answer
    /// with it and every vote they hold (`ProposalRequest` → `ProposalState`, the
    /// proposal-recovery exchange). A few requests, `recovery_inactivity` apart, then the
    /// rule. Returns whether the timeout was deferred.
    fn ask_for_missing_votes<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
    ) -> bool {
        let gap = self.config.recovery_inactivity;
        let Some(p) = self.gov.proposals.get_mut(&id) else {
            return false;
        };
        if p.vote_asks_left == 0 {
            return false;
        }
        p.vote_asks_left -= 1;
        // After the last request, leave time for the answers' jitter as well.
        p.timeout_at = ctx.now
            + gap
            + if p.vote_asks_left == 0 {
                REPLY_JITTER_MS
            } else {
                0
            };
        tracing::debug!(conversation = %self.name, id, "votes missing at the timeout: asking for them");
        let msg = pb::AppMessage {
            body: Some(pb::app_message::Body::ProposalRequest(id)),
        };
        if let Err(e) = self.send_app(ctx, out, msg) {
            tracing::debug!(error = %e, "could not ask for missing votes");
        }
        true
    }

    pub(super) fn tick_votes<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let due: Vec<(u32, bool)> = self
            .gov
            .proposals
            .values()
            .filter(|p| {
                p.status == ProposalStatus::Voting && p.auto_vote_at.is_some_and(|t| t <= now)
            })
            .map(|p| (p.id, p.auto_vote))
            .collect();
        for (id, yes) in due {
            if let Some(p) = self.gov.proposals.get_mut(&id) {
                p.auto_vote_at = None;
            }
            if self.gov.consensus.has_voted(id, &self.me) {
                continue;
            }
            if let Err(e) = self.cast_vote(ctx, out, id, yes) {
                tracing::debug!(id, error = %e, "automatic vote not cast");
            }
        }
        let timed_out: Vec<u32> = self
            .gov
            .proposals
            .values()
            .filter(|p| p.status == ProposalStatus::Voting && p.timeout_at <= now)
            .map(|p| p.id)
            .collect();
        for id in timed_out {
            if self.ask_for_missing_votes(ctx, out, id) {
                continue;
            }
            // Every member applies the timeout rule (the reference lets only the owner do
            // it); commit evidence reconciles members that saw different votes.
            let can_vote = self.voters().len() as u32;
            let result = self.gov.consensus.on_timeout(id, can_vote).unwrap_or(false);
            self.apply_outcome(ctx, out, id, result);
        }
    }

    /// Applies a decided proposal once (reference §3.6).
    pub(super) fn apply_outcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        accepted: bool,
    ) {
        if self.gov.resolved.contains(&id) {
            return;
        }
        self.gov.resolved.push_back(id);
        while self.gov.resolved.len() > RESOLVED_CAP {
            self.gov.resolved.pop_front();
        }
        let Some(p) = self.gov.proposals.get_mut(&id) else {
            return;
        };
        p.auto_vote_at = None;
        p.status = if accepted {
            ProposalStatus::Accepted
        } else {
            ProposalStatus::Rejected
        };
        let action = p.action.clone();
        let learnt_at = p.epoch;
        // A change the group already made (an add of a member, a removal of a
        // non-member: a duplicate proposal decided after the commit) is settled, not
        // queued: queued, it would make a steward freeze on work no commit can carry.
        let members = self.mls.as_ref().map(|m| m.members()).unwrap_or_default();
        let moot = match &action {
            // A rejoin names a member: it is done once its key package was used, or once
            // a commit since the proposal added the member again (with another of its
            // key packages: it announced afresh while the first was being committed).
            // A member that joined by that commit's welcome knows neither the used key
            // package nor the commit: it reads the first from the tree, or it alone
            // would queue a rejoin nobody else can commit, and freeze on it alone.
            Action::Add {
                member,
                key_package,
                announcement,
            } if join::announcement_rejoin(announcement) => {
                self.key_package_used(key_package)
                    || self.added_since(member, learnt_at)
                    || self
                        .mls
                        .as_ref()
                        .and_then(|m| m.leaf_key_holder(ctx.provider, key_package))
                        == Some(*member)
            }
            Action::Add { member, .. } => members.contains(member),
            Action::Remove { member } => !members.contains(member),
            _ => false,
        };
        if accepted
            && moot
            && let Some(p) = self.gov.proposals.get_mut(&id)
        {
            p.status = ProposalStatus::Committed;
        }
        out.event(Event::ProposalDecided { id, accepted });
        if accepted && moot {
            tracing::info!(conversation = %self.name, id, summary = %action.summary(), "proposal decided, already carried out");
            return;
        }
        tracing::info!(conversation = %self.name, id, accepted, tally = ?self.gov.consensus.tally(id), summary = %action.summary(), "proposal decided");
        match action {
            Action::Add {
                member,
                key_package,
                announcement,
            } => {
                // Decided YES, but a copy of its key got into the tree (or its key package
                // was used) since it was checked: no commit can carry it, and queued it
                // would hold a freeze round open that no steward can fill.
                let blocked = accepted
                    .then(|| self.add_blocked(ctx, &member, &key_package))
                    .flatten();
                if let Some(why) = blocked {
                    if let Some(t) = self.gov.proposals.get_mut(&id) {
                        t.status = ProposalStatus::Rejected;
                    }
                    self.gov.pending_updates.remove(&member);
                    out.reject(InboundKind::ApprovedAdd, RejectCause::Invalid, why);
                } else if accepted
                    && !self
                        .gov
                        .approved
                        .iter()
                        .any(|a| a.change.member() == member && a.change.is_add())
                {
                    self.gov.approved.push(Approved {
                        id,
                        change: Change::Add {
                            member,
                            key_package,
                            rejoin: join::announcement_rejoin(&announcement),
                        },
                    });
                } else if !accepted {
                    self.gov.pending_updates.remove(&member);
                }
            }
            Action::Remove { member } => {
                if accepted
                    && !self
                        .gov
                        .approved
                        .iter()
                        .any(|a| a.change == Change::Remove { member })
                {
                    self.gov.approved.push(Approved {
                        id,
                        change: Change::Remove { member },
                    });
                    // A member on its way out is no steward: if that leaves a small
                    // group no live one, reconcile the list now. Waiting for a tick left
                    // a member whose next wake-up was the freeze with the old list,
                    // refusing the new steward's commit for good (clean seed 5 of
                    // `remove_then_leave_leaves_two_converged`).
                    if self.state == ConversationState::Working {
                        self.reconcile_small_list(ctx, out);
                    }
                } else if !accepted {
                    self.gov.pending_updates.remove(&member);
                }
            }
            Action::Election {
                stewards,
                election_epoch,
                retry_round,
            } => {
                let installed = accepted
                    .then(|| self.install_elected(out, stewards, election_epoch, retry_round));
                match installed {
                    Some(Installed::Yes) => {
                        self.election_proof = Some(id);
                        // A list installed mid-round: its stewards have not submitted yet,
                        // so the round's window starts over for them (the new epoch
                        // steward would otherwise be judged silent by a window that was
                        // nearly over when it became one).
                        if self.state == ConversationState::Freezing
                            && let Some(f) = self.freeze.as_mut()
                        {
                            f.started_at = f.started_at.max(ctx.now);
                        }
                        self.submit_if_new_steward(ctx, out);
                    }
                    Some(Installed::Superseded) => {}
                    Some(Installed::Invalid) | None => self.on_election_rejected(ctx, out),
                }
            }
            Action::Emergency {
                violation,
                target,
                creator,
                ..
            } => {
                self.gov.emergencies.remove(&id);
                if let Some(t) = target {
                    self.gov.score_removals.remove(&t);
                }
                self.scores.apply(
                    &creator,
                    if accepted {
                        ScoreEvent::EmergencyYesCreator
                    } else {
                        ScoreEvent::EmergencyNoCreator
                    },
                );
                if accepted {
                    self.on_emergency_accepted(ctx, out, id, violation, target);
                }
                if self.state == ConversationState::Reelection
                    && self.mode == OperatingMode::Normal
                    && !accepted
                {
                    // The emergency is settled; the reelection logic carries on by itself.
                }
            }
        }
        if accepted && self.anchor.is_none() && !self.gov.approved.is_empty() {
            self.anchor = Some(ctx.now);
        }
    }

    fn on_emergency_accepted<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        violation: i32,
        target: Option<MemberId>,
    ) {
        use pb::ViolationType as V;
        match V::try_from(violation).unwrap_or(V::Unspecified) {
            V::ScoreBelowThreshold => {
                if let Some(t) = target {
                    if !self
                        .gov
                        .approved
                        .iter()
                        .any(|a| a.change == Change::Remove { member: t })
                    {
                        self.gov.approved.push(Approved {
                            id,
                            change: Change::Remove { member: t },
                        });
                    }
                    self.gov.urgent_target = Some(t);
                    self.force_freeze(ctx, out);
                }
            }
            V::Deadlock => {
                tracing::warn!(conversation = %self.name, "deadlock accepted: recovery mode, any member may commit");
                self.mode = OperatingMode::Recovery;
                self.force_freeze(ctx, out);
            }
            V::BrokenCommit => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::BrokenCommit);
                }
            }
            V::BrokenMlsProposal => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::BrokenMlsProposal);
                }
            }
            V::CensorshipInactivity => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::CensorshipInactivity);
                }
            }
            V::MisbehavingCommit => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::MisbehavingCommit);
                }
            }
            V::Unspecified => {}
        }
    }

    /// Remembers a membership request so a (later) epoch steward can propose it.
    pub(super) fn buffer_update(&mut self, now: Millis, action: Action) {
        let Some(m) = action.member() else { return };
        let epoch = self.epoch();
        if !self.gov.pending_updates.contains_key(&m)
            && self.gov.pending_updates.len() >= PENDING_UPDATES_CAP
            && let Some(oldest) = self
                .gov
                .pending_updates
                .iter()
                .min_by_key(|(_, u)| u.first_seen_at)
                .map(|(k, _)| *k)
        {
            self.gov.pending_updates.remove(&oldest);
        }
        match self.gov.pending_updates.get_mut(&m) {
            // A joiner that announced again with a fresh key package (a new attempt, a
            // rejoin) wants that one: an add of the older one would bring a welcome it
            // may no longer be waiting for.
            Some(u) if newer_announcement(&action, &u.action) => u.action = action,
            Some(_) => {}
            None => {
                self.gov.pending_updates.insert(
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

    /// How many proposals `owner` has open.
    pub(super) fn open_proposals_of(&self, owner: &MemberId) -> usize {
        self.gov
            .proposals
            .values()
            .filter(|p| p.status == ProposalStatus::Voting && p.owner == *owner)
            .count()
    }

    /// Is a proposal about `m` already open or approved?
    pub(super) fn change_in_flight(&self, m: &MemberId) -> bool {
        self.gov.approved.iter().any(|a| a.change.member() == *m)
            || self.gov.proposals.values().any(|p| {
                p.status == ProposalStatus::Voting
                    && matches!(p.action, Action::Add { member, .. } | Action::Remove { member } if member == *m)
            })
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
