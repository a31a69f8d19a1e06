//! Receiving a proposal: admitted (decodable, not held back by an emergency, from its
//! owner, within the owner's limit), its terms checked (liveness rule, lifetime, voter
//! count), its content judged, recorded, and answered (an automatic vote scheduled, or
//! NO at once for invalid content).

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::proto::cpb;

impl Conversation {
    /// Takes a proposal `sender` sent us in an MLS application message.
    pub(crate) fn on_proposal<P: OpenMlsProvider>(
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
        let Some((action, owner)) = self.admit_proposal(out, sender, &p) else {
            return;
        };
        self.note_carried_rejoin(ctx, &action);
        let Some(members) = self.check_proposal_terms(out, sender, &p, &action) else {
            return;
        };
        let valid = self
            .content_is_valid(ctx, &action)
            .and_then(|()| Self::content_is_owners(&action, owner));
        if renewal {
            self.forget_renewed_leave(&p);
        }
        let Some((outcome, auto_vote_at)) =
            self.record_proposal(ctx, out, &p, &action, owner, &members, valid.is_ok())
        else {
            return;
        };
        if let Some(r) = outcome {
            self.apply_outcome(ctx, out, id, r);
            return;
        }
        self.offer_election_proof(ctx, id, &action, valid.is_err());
        self.answer_proposal(ctx, out, id, &action, valid, auto_vote_at);
    }

    /// The proposal's action and owner, unless it is refused on arrival: undecodable,
    /// dropped by the partial freeze, not from its owner, or over the owner's limit of
    /// open proposals.
    fn admit_proposal(
        &self,
        out: &mut Output,
        sender: MemberId,
        p: &cpb::Proposal,
    ) -> Option<(Action, MemberId)> {
        let action = match Action::from_payload(&p.payload) {
            Ok(a) => a,
            Err(e) => {
                out.reject(InboundKind::Proposal, RejectCause::Malformed, e);
                return None;
            }
        };
        let kind = action.kind();
        if !self.gov.emergencies.is_empty() && kind < ProposalKind::Emergency {
            // RFC partial freeze: lower-priority governance traffic is dropped.
            out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!(
                    "{} dropped: an emergency proposal is open",
                    action.summary()
                ),
            );
            return None;
        }
        let owner = match MemberId::from_slice(&p.proposal_owner) {
            Ok(o) if o == sender => o,
            _ => {
                out.reject(
                    InboundKind::Proposal,
                    RejectCause::Unauthenticated,
                    "proposal owner is not the MLS sender",
                );
                return None;
            }
        };
        if self.open_proposals_of(&owner) >= MAX_OPEN_PER_OWNER {
            out.reject(
                InboundKind::Proposal,
                RejectCause::OverLimit,
                format!("{owner} already has {MAX_OPEN_PER_OWNER} proposals open"),
            );
            return None;
        }
        Some((action, owner))
    }

    /// A rejoin the proposal carries tells us its member left its leaf: count that
    /// before checking the voter count, on the checks a member's own announcement gets
    /// (signature, freshness, unused key package): an old one replayed inside a proposal
    /// must not silence anyone.
    fn note_carried_rejoin<P: OpenMlsProvider>(&mut self, ctx: &Ctx<'_, P>, action: &Action) {
        if let Action::Add {
            member,
            key_package,
            announcement,
        } = action
            && join::announcement_rejoin(announcement)
            && self.members().contains(member)
            && !self.key_package_used(key_package)
            && pb::KeyPackageAnnouncement::decode(announcement.as_slice())
                .is_ok_and(|a| self.current_announcement(ctx, &a, announcement).is_ok())
        {
            self.buffer_update(ctx.now, action.clone());
        }
    }

    /// The voters of a proposal whose terms are ours: our liveness rule, a lifetime we
    /// allow, and a voter count that is our voters' or our roster's (or one, for the
    /// sender's own leave). `None` (refused) otherwise.
    fn check_proposal_terms(
        &self,
        out: &mut Output,
        sender: MemberId,
        p: &cpb::Proposal,
        action: &Action,
    ) -> Option<Vec<MemberId>> {
        let members = self.voters();
        let roster = self.members().len();
        if p.liveness_criteria_yes != self.config.liveness_criteria_yes {
            out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!(
                    "liveness_criteria_yes = {} against the conversation's {}",
                    p.liveness_criteria_yes, self.config.liveness_criteria_yes
                ),
            );
            return None;
        }
        if let Err(why) = self.lifetime_fits(p) {
            out.reject(InboundKind::Proposal, RejectCause::Invalid, why);
            return None;
        }
        if p.expected_voters_count == 1 {
            // Fast path: only a member's own leave may skip the group vote.
            let ok = *action == Action::Remove { member: sender }
                && p.proposal_id == crate::consensus::self_leave_proposal_id(&sender);
            if !ok {
                out.reject(
                    InboundKind::Proposal,
                    RejectCause::Invalid,
                    "one-voter proposal that is not the sender's own leave",
                );
                return None;
            }
        } else if p.expected_voters_count as usize != members.len()
            && p.expected_voters_count as usize != roster
        {
            out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!(
                    "expects {} voters but the group has {roster} ({} of them voting)",
                    p.expected_voters_count,
                    members.len()
                ),
            );
            return None;
        }
        Some(members)
    }

    /// Opens the proposal's consensus session (`members` vote) and tracks it: an open
    /// emergency, a membership request buffered when its content is `valid`. Returns
    /// the outcome already decided, if any, and when our automatic vote is due; `None`
    /// if consensus refused the proposal.
    #[allow(clippy::too_many_arguments)]
    fn record_proposal<P: OpenMlsProvider>(
        &mut self,
        ctx: &Ctx<'_, P>,
        out: &mut Output,
        p: &cpb::Proposal,
        action: &Action,
        owner: MemberId,
        members: &[MemberId],
        valid: bool,
    ) -> Option<(Option<bool>, Option<Millis>)> {
        let id = p.proposal_id;
        let kind = action.kind();
        let is_voter = |m: &MemberId| members.contains(m);
        let outcome =
            match self
                .gov
                .consensus
                .receive_proposal(p.clone(), Self::now_s(ctx.now), &is_voter)
            {
                Ok(o) => o,
                Err(e) => {
                    out.reject(InboundKind::Proposal, e.cause(), e);
                    return None;
                }
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
            self.config.liveness_criteria_yes && valid,
        );
        if kind == ProposalKind::Emergency {
            self.gov.emergencies.insert(id);
        }
        if matches!(action, Action::Add { .. } | Action::Remove { .. }) && valid {
            self.buffer_update(ctx.now, action.clone());
        }
        out.event(Event::ProposalCreated {
            id,
            kind,
            kind_name: action.kind_name(),
            summary: action.summary(),
            owner,
        });
        Some((outcome, auto_vote_at))
    }

    /// An election for an epoch whose election we already accepted, that ours would
    /// supersede or that we refuse (`refused`): its proposer most likely missed the votes
    /// that decided ours (a member that caught up on the epoch's commit after the group
    /// elected). Offer the proof (the same jittered, suppressible answer as to a
    /// `ProposalRequest`); otherwise it installs its own list and the next commit forks.
    fn offer_election_proof<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        id: u32,
        action: &Action,
        refused: bool,
    ) {
        if let Action::Election {
            election_epoch,
            retry_round,
            stewards,
        } = action
            && *election_epoch == self.epoch()
            && self.stewards.as_ref().is_some_and(|l| {
                l.election_epoch == *election_epoch
                    && (refused
                        || (std::cmp::Reverse(l.retry_round), &l.stewards)
                            < (std::cmp::Reverse(*retry_round), stewards))
            })
            && let Some(proof) = self.election_proof
            && proof != id
        {
            self.on_proposal_request(ctx, None, proof);
        }
    }

    /// Answers a proposal still in vote: NO at once when its content is invalid (and
    /// why), otherwise the automatic vote scheduled for `auto_vote_at`, if any.
    fn answer_proposal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        action: &Action,
        valid: Result<(), String>,
        auto_vote_at: Option<Millis>,
    ) {
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
}
