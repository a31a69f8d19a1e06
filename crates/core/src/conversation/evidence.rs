//! What a proposal learnt from someone else's message counts for.
//!
//! Proposals reach us three ways. Broadcast by their owner (an MLS application message
//! whose sender is the owner): a live proposal, voted on and timed out like our own
//! (`proposals::on_proposal`). Forwarded by a member in a `ProposalState` (it saw our
//! request for a proposal we missed). Or carried as *evidence* by a commit, whose header
//! the committer wrote. A header is a claim: its voter count sets the quorum, its
//! liveness flag decides what silence means, its times decide the timeout. So:
//!
//! - every header, whatever path it came by, must fit the conversation's policy (the
//!   liveness flag in force; a voter count that is the size of a group we actually had,
//!   or one for a member's own leave) — [`Conversation::admissible`];
//! - evidence counts only once the commit carrying it has staged and was signed by the
//!   steward it names, and then only by its signed votes: a proposal we do not hold is
//!   adopted when the votes alone decide it (never by the silent-count timeout rule);
//! - a forwarded proposal becomes live (our vote, the timeout rule) only when it is
//!   provably its owner's: forwarded by the owner, or carrying the owner's signed vote.
//!
//! Votes sign the header's digest (`consensus::header_digest`), so signed votes cannot be
//! lifted onto a forged header with the same id.

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::consensus::{evidence_decision, self_leave_proposal_id};
use crate::proto::cpb;

/// When the evidence of a commit is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Judge {
    /// Now: a live candidate.
    Now,
    /// As the proposals stood when they were decided: a commit the group applied
    /// already, which we fetched by catch-up.
    AsMade,
}

/// Member counts of the groups we were in at recent epochs, newest last: a carried
/// proposal may have been made in one of them.
pub(crate) const RECENT_SIZES: usize = 16;

/// How many commits after it stopped being ours a group size may still justify a
/// header: a decided proposal waits in the approved queue for the next commit or two.
pub(crate) const SIZE_EPOCHS: u64 = 3;

/// A member count we had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SavedSize")]
pub(crate) struct GroupSize {
    pub members: u32,
    /// When it stopped being ours; `None` while it is.
    pub stopped: Option<SizeStopped>,
}

/// When a group size stopped being ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SizeStopped {
    /// Our clock then (`None`: not known, saved by an earlier version).
    pub at: Option<Millis>,
    /// The epoch the commit that changed it took us to.
    pub epoch: u64,
}

/// `GroupSize` as saved now, or as a bare count by earlier versions (see `restore`).
#[derive(Deserialize)]
#[serde(untagged)]
enum SavedSize {
    Bare(u32),
    Dated {
        members: u32,
        stopped: Option<SizeStopped>,
    },
}

impl From<SavedSize> for GroupSize {
    fn from(s: SavedSize) -> Self {
        match s {
            SavedSize::Bare(members) => Self {
                members,
                stopped: None,
            },
            SavedSize::Dated { members, stopped } => Self { members, stopped },
        }
    }
}

impl Conversation {
    /// Whether `p` is a member's own one-voter leave (the one proposal that skips the
    /// group vote).
    pub(super) fn is_own_leave(p: &cpb::Proposal) -> bool {
        MemberId::from_slice(&p.proposal_owner).is_ok_and(|owner| {
            p.expected_voters_count == 1
                && p.proposal_id == self_leave_proposal_id(&owner)
                && Action::from_payload(&p.payload)
                    .is_ok_and(|a| a == Action::Remove { member: owner })
        })
    }

    /// Whether a proposal was open or accepted before we joined, by the conversation sync
    /// we were given: it counts the voters of the group before us.
    pub(super) fn predates_our_join(&self, p: &cpb::Proposal) -> bool {
        self.gov.inherited_approvals.contains(&p.proposal_id)
    }

    /// Whether the voter count (at least 2) of a proposal that counts **only by its signed
    /// votes** (evidence: never by the timeout rule) is one a member of our group may have
    /// used now: between our voters and our roster. Members learn of rejoins at different
    /// times, so one that knows fewer of them than we do counts more voters, and its
    /// signed YES votes are then more than half of a count at least ours. (Refusing it
    /// left a member that knew one more rejoin than the rest rejecting their election,
    /// then every commit of the stewards it elected, for good.) Not for a live proposal:
    /// under the timeout rule silent voters count as YES, and members that cannot vote
    /// (rejoining) counted in a larger count would be silent YES votes.
    fn evidence_voter_count_fits(&self, n: usize) -> bool {
        n >= 2 && (self.voters().len()..=self.members().len()).contains(&n)
    }

    /// Whether `p` is the rejoin of a member we count as a voter, carrying that member's
    /// own signed rejoin announcement (made within `proposal_expiration` of the proposal),
    /// with our voter count less that member: its
    /// proposer knew of the rejoin (the member left its leaf and its voice; only the
    /// member can sign that), which we had not heard of. Refusing it left a member that
    /// missed the announcement refusing the commit that re-added the member, an epoch
    /// behind for good (lossy seed 9 of the equal-sides decided-then-split).
    fn counts_out_its_rejoiner(&self, p: &cpb::Proposal, n: usize) -> bool {
        let voters = self.voters();
        n >= 2
            && n + 1 == voters.len()
            && matches!(
                Action::from_payload(&p.payload),
                Ok(Action::Add { member, announcement, .. })
                    if voters.contains(&member)
                        && join::rejoin_signed_by(
                            &self.name,
                            &announcement,
                            &member,
                            p.timestamp.saturating_mul(1000),
                            self.config.proposal_expiration,
                        )
            )
    }

    /// No header lives longer than the conversation lets a proposal live: a long-lived one,
    /// once taken, could be decided by late votes long after its group changed. Checked
    /// on every path: taken live but refused as evidence, a proposal split the members
    /// that heard it from those that learnt it from its commit.
    pub(super) fn lifetime_fits(&self, p: &cpb::Proposal) -> Result<(), String> {
        let lifetime = p.expiration_timestamp.saturating_sub(p.timestamp);
        let allowed = self.config.proposal_expiration / 1000;
        if lifetime > allowed {
            return Err(format!(
                "proposal {} lives {lifetime} s; the conversation allows {allowed} s",
                p.proposal_id
            ));
        }
        Ok(())
    }

    /// Whether a header fits the conversation's policy, from any path: the liveness flag
    /// in force, and a voter count that is the size of a group we had (now or at a recent
    /// epoch, or before we joined for a proposal the sync listed), or 1 for a member's own
    /// leave. Anything else is refused, not rewritten: the votes sign the header.
    pub(super) fn admissible(&self, p: &cpb::Proposal) -> Result<(), String> {
        if MemberId::from_slice(&p.proposal_owner).is_err() {
            return Err("proposal owner is not a 20-byte address".into());
        }
        if p.liveness_criteria_yes != self.config.liveness_criteria_yes {
            return Err(format!(
                "proposal {} claims liveness_criteria_yes = {}, the conversation uses {}",
                p.proposal_id, p.liveness_criteria_yes, self.config.liveness_criteria_yes
            ));
        }
        let n = p.expected_voters_count as usize;
        let members = self.members().len();
        // A count of 1 is a member's own leave, or (listed by the sync) a proposal the
        // creator made alone; recent sizes count from 2, so a one-voter header can never
        // be justified by its forger's own vote.
        self.lifetime_fits(p)?;
        // A header we took before (its count fitted our group then) still does: the
        // voter count changes as members start and finish rejoining, and a proposal made
        // while two of four were rejoining was refused, with its commit, once one of them
        // was back (lossy seed 30 of the equal-sides decided-then-split).
        if self.gov.consensus.holds_header(p) {
            return Ok(());
        }
        let fits = (n == 1 && Self::is_own_leave(p))
            || self.evidence_voter_count_fits(n)
            || self.counts_out_its_rejoiner(p, n)
            || (n >= 2 && self.was_our_size(p, n))
            || (self.predates_our_join(p) && n >= 1 && n <= members);
        if fits {
            Ok(())
        } else {
            Err(format!(
                "proposal {} expects {n} voters; no group we had has that many (now {members})",
                p.proposal_id
            ))
        }
    }

    /// Whether `n` was our member count when `p` was made. A count that stopped being
    /// ours justifies only a header made (by its own time) before it stopped, give or
    /// take `commit_inactivity` (members apply a commit at different times), and only
    /// for `SIZE_EPOCHS` commits after: a catch-up commit's evidence is judged as made,
    /// expired or not, so the header's claimed time alone would let two members of a
    /// group that once had three decide for the group of now. It never justifies an
    /// election of our current epoch, made in this epoch's group. (Epochs, not our
    /// clock: a member back from a long absence must still accept the commits it missed.)
    fn was_our_size(&self, p: &cpb::Proposal, n: usize) -> bool {
        let made = p.timestamp.saturating_mul(1000);
        let slack = self.config.commit_inactivity;
        let epoch = self.epoch();
        let current_election = || {
            matches!(
                Action::from_payload(&p.payload),
                Ok(Action::Election { election_epoch, .. }) if election_epoch == epoch
            )
        };
        self.recent_sizes.iter().any(|g| {
            g.members as usize == n
                && g.stopped.is_none_or(|s| {
                    epoch.saturating_sub(s.epoch) <= SIZE_EPOCHS
                        && s.at.is_none_or(|at| made <= at.saturating_add(slack))
                        && !current_election()
                })
        })
    }

    /// Dates the sizes of a state saved by an earlier version, which kept bare counts:
    /// the one before the current one stopped at some commit up to our epoch (time not
    /// known); older ones justify nothing.
    pub(super) fn date_legacy_sizes(&mut self) {
        let epoch = self.epoch();
        let n = self.recent_sizes.len();
        for (k, g) in self.recent_sizes.iter_mut().enumerate() {
            if k + 1 < n && g.stopped.is_none() {
                g.stopped = Some(if k + 2 == n {
                    SizeStopped { at: None, epoch }
                } else {
                    SizeStopped {
                        at: Some(0),
                        epoch: 0,
                    }
                });
            }
        }
    }

    /// Merges the evidence of a commit that staged and was signed by the steward it
    /// names: votes for proposals we hold are added (and may decide them, or overturn our
    /// timeout rejection); a proposal we do not hold is adopted only when its signed votes
    /// decide it by themselves. Everything else in it is ignored.
    ///
    /// `Judge::AsMade` (a commit the group already applied, fetched by catch-up) judges
    /// each proposal as of its expiry at the latest: the votes were signed within the
    /// proposal's lifetime, and a member that was away longer must still be able to
    /// follow what the group did then.
    pub(super) fn adopt_commit_evidence<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        evidence: &[cpb::Proposal],
        judge: Judge,
    ) {
        let members = self.voters();
        let is_voter = |m: &MemberId| members.contains(m);
        let epoch = self.epoch();
        for p in evidence {
            // The election of the list in force for our epoch counts as it was made too:
            // a member that missed it (it caught up on the epoch's commit after the group
            // elected, or was cut off) learns of it after its expiry, and without it holds
            // another list and forks at the next commit. It cannot replace a later list.
            let current_election = matches!(
                Action::from_payload(&p.payload),
                Ok(Action::Election { election_epoch, .. }) if election_epoch == epoch
            );
            let now_s = match judge {
                Judge::Now if !current_election => ctx.now / 1000,
                _ => (ctx.now / 1000).min(p.expiration_timestamp),
            };
            let id = p.proposal_id;
            if let Err(why) = self.admissible(p) {
                out.reject(InboundKind::Evidence, RejectCause::Invalid, why);
                continue;
            }
            // A member's renewed leave, carried by the commit that removes it: a member
            // that missed the leave itself refused that commit and stayed behind.
            if self.renews_own_leave(p) {
                self.forget_renewed_leave(p);
            }
            if self.gov.resolved.contains(&id) {
                self.overturn_timeout_rejection(ctx, out, p, &is_voter, now_s);
                continue;
            }
            let Ok(action) = Action::from_payload(&p.payload) else {
                continue;
            };
            let held = self.gov.consensus.tally(id).is_some();
            // An election judged as made only to learn the list in force: a failed one
            // teaches nothing (and was never checked for tampering here).
            let relaxed = judge == Judge::Now && current_election;
            if !held
                && !matches!(
                    evidence_decision(p, now_s, u64::MAX, &is_voter),
                    Ok(Some(d)) if d || !relaxed
                )
            {
                // Not decided by its votes alone: the timeout rule would count every
                // silent member on the header's side, and the header is the committer's.
                continue;
            }
            match self
                .gov
                .consensus
                .ingest_evidence(p.clone(), now_s, &is_voter)
            {
                Ok(outcome) => {
                    if !self.gov.proposals.contains_key(&id)
                        && let Ok(owner) = MemberId::from_slice(&p.proposal_owner)
                    {
                        self.track(ctx.now, p.timestamp, id, action, owner, None, false);
                    }
                    if let Some(r) = outcome {
                        self.apply_outcome(ctx, out, id, r);
                    }
                }
                Err(e) => out.reject(InboundKind::Evidence, e.cause(), e),
            }
        }
    }

    /// Whether a forwarded proposal is provably its owner's: forwarded by the owner
    /// itself, or carrying the owner's signed vote on this very header.
    pub(super) fn owner_vouches(&self, p: &cpb::Proposal, forwarder: MemberId, now_s: u64) -> bool {
        let Ok(owner) = MemberId::from_slice(&p.proposal_owner) else {
            return false;
        };
        if owner == forwarder {
            return true;
        }
        let members = self.voters();
        let is_voter = |m: &MemberId| members.contains(m);
        p.votes.iter().any(|v| {
            v.vote_owner == owner.as_bytes()
                && crate::consensus::validate_vote(v, p, now_s, &is_voter).is_ok()
        })
    }

    /// Remembers the size of the group we are in now (after a commit, or on joining),
    /// and that the one before stopped being ours now.
    pub(super) fn note_group_size(&mut self, now: Millis) {
        self.note_epoch();
        let n = u32::try_from(self.members().len()).unwrap_or(u32::MAX);
        if self.recent_sizes.back().map(|g| g.members) != Some(n) {
            let epoch = self.epoch();
            if let Some(last) = self.recent_sizes.back_mut() {
                last.stopped.get_or_insert(SizeStopped {
                    at: Some(now),
                    epoch,
                });
            }
            self.recent_sizes.push_back(GroupSize {
                members: n,
                stopped: None,
            });
        }
        while self.recent_sizes.len() > RECENT_SIZES {
            self.recent_sizes.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{GroupSize, SizeStopped};
    use crate::config::ConversationConfig;
    use crate::conversation::{Action, Conversation, Phase};
    use crate::identity::MemberId;
    use crate::proto::cpb;

    fn id(b: u8) -> MemberId {
        MemberId::from_slice(&[b; 20]).unwrap()
    }

    /// A header claiming `voters`, made at `made_s` (Unix s), living the whole allowed
    /// 600 s, for `action`.
    fn header(voters: u32, made_s: u64, action: Action) -> cpb::Proposal {
        cpb::Proposal {
            proposal_id: 7,
            proposal_owner: id(2).to_vec(),
            expected_voters_count: voters,
            timestamp: made_s,
            expiration_timestamp: made_s + 600,
            liveness_criteria_yes: true,
            payload: action.to_payload(),
            ..Default::default()
        }
    }

    /// A conversation whose MLS group has gone through `epochs` empty commits.
    fn at_epoch(epochs: u64) -> Conversation {
        use openmls_rust_crypto::OpenMlsRustCrypto;
        let p = OpenMlsRustCrypto::default();
        let mls_id = crate::mls::MlsIdentity::create(&p, id(1)).unwrap();
        let mut g = crate::mls::MlsConversation::create(&p, &mls_id, "t").unwrap();
        for _ in 0..epochs {
            g.create_commit(&p, &mls_id, &[], &[]).unwrap();
            g.merge_own_commit(&p).unwrap();
        }
        let mut c = Conversation::blank("t", id(1), ConversationConfig::default(), Phase::Working);
        c.mls = Some(g);
        c
    }

    /// The size rule alone (a group of one member, so no roster count fits 3 or 6): the
    /// group had 3 members until 100 s, when a commit took it to epoch 5, and has 6 now;
    /// `commit_inactivity` is 60 s.
    #[test]
    fn an_old_size_counts_only_for_headers_made_while_it_was_ours_and_not_for_long() {
        for (our_epoch, counts) in [(5, true), (8, true), (9, false)] {
            let mut c = at_epoch(our_epoch);
            c.recent_sizes = [
                GroupSize {
                    members: 3,
                    stopped: Some(SizeStopped {
                        at: Some(100_000),
                        epoch: 5,
                    }),
                },
                GroupSize {
                    members: 6,
                    stopped: None,
                },
            ]
            .into();
            let remove = || Action::Remove { member: id(9) };
            let ok = |p: &cpb::Proposal| c.admissible(p).is_ok();
            // Made while 3 was ours (or within the slack after), within 3 commits of it
            // stopping (the catch-up path judges expired headers as made, so a header's
            // claimed time cannot be all that bounds it).
            assert_eq!(ok(&header(3, 90, remove())), counts, "epoch {our_epoch}");
            assert_eq!(ok(&header(3, 160, remove())), counts, "epoch {our_epoch}");
            // Made after the slack: 3 was no longer anyone's size.
            assert!(!ok(&header(3, 161, remove())));
            // Never for an election of our current epoch, however dated.
            let election = || Action::Election {
                stewards: vec![id(2)],
                election_epoch: our_epoch,
                retry_round: 0,
            };
            assert!(!ok(&header(3, 90, election())));
            assert!(ok(&header(6, 90, election())));
            // The current size, whenever made.
            assert!(ok(&header(6, 10_000, remove())));
        }
    }

    /// A state saved before sizes were dated: after `date_legacy_sizes` only the current
    /// size and the one before it (stopped at our epoch, time unknown) count.
    #[test]
    fn sizes_saved_undated_keep_only_the_last_two() {
        let mut c = at_epoch(2);
        c.recent_sizes = serde_json::from_str("[2, 3, 4]").unwrap();
        c.date_legacy_sizes();
        let remove = || Action::Remove { member: id(9) };
        let ok = |n: u32| c.admissible(&header(n, 90, remove())).is_ok();
        assert_eq!((ok(2), ok(3), ok(4)), (false, true, true));
    }

    /// Earlier versions saved bare counts; both forms load, and the new one round-trips.
    #[test]
    fn sizes_saved_bare_or_dated_both_load() {
        let v: Vec<GroupSize> = serde_json::from_str(
            r#"[3, {"members": 4, "stopped": {"at": 17, "epoch": 2}}, {"members": 5, "stopped": null}]"#,
        )
        .unwrap();
        let stopped = SizeStopped {
            at: Some(17),
            epoch: 2,
        };
        let size = |members, stopped| GroupSize { members, stopped };
        assert_eq!(
            v,
            vec![size(3, None), size(4, Some(stopped)), size(5, None)]
        );
        let again: Vec<GroupSize> =
            serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(again, v);
    }
}
