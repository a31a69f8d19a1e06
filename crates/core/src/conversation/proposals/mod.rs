//! Consensus flows over the conversation's `Governance` (`super::governance`):
//! opening proposals and casting our votes (here), the user's commands (`commands`),
//! who votes (`voters`), the checks a proposal's content must pass (`checks`),
//! receiving proposals (`receive`), votes, automatic votes and timeouts (`votes`), and
//! applying decided outcomes (`outcome`, `emergency`).

mod checks;
mod commands;
mod emergency;
mod outcome;
mod receive;
mod voters;
mod votes;

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::config::VOTE_ASKS;
use crate::consensus::NewProposal;
use crate::proto::pb;

/// Proposals one member may have open (voting) at once: each costs every member a
/// consensus session, timers and votes.
pub(crate) const MAX_OPEN_PER_OWNER: usize = 8;

impl Conversation {
    /// Our own vote on a proposal (true = YES), once we cast it (by hand or
    /// automatically); read-only, for views.
    pub fn our_vote(&self, id: u32) -> Option<bool> {
        self.gov.consensus.vote_of(id, &self.me)
    }

    /// `ctx.now` in the seconds proposals and votes are stamped with.
    fn now_s(ctx_now: Millis) -> u64 {
        ctx_now / 1000
    }

    /// How long members wait before their automatic vote on a proposal of `kind`.
    pub(crate) fn voting_delay(&self, kind: ProposalKind) -> Millis {
        if kind == ProposalKind::StewardElection {
            self.config.election_voting_delay
        } else {
            self.config.voting_delay
        }
    }

    /// Creates, records and broadcasts a proposal. `creator_vote: None` defers our vote
    /// to the automatic vote (the reference's "Deferred" intent).
    pub(crate) fn open_proposal<P: OpenMlsProvider>(
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

    /// Tracks a proposal made at `made_s` (seconds) and learnt now, at our epoch, in
    /// vote, with its timeout and expiry from our config.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn track(
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
        self.gov.track(Tracked {
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
        });
    }

    /// Casts our vote on `id` (cancelling the automatic one), sends it, and applies the
    /// outcome it decides, if any.
    pub(crate) fn cast_vote<P: OpenMlsProvider>(
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
        self.gov.cancel_auto_vote(id);
        self.send_vote(ctx, out, &vote)?;
        if let Some(result) = outcome {
            self.apply_outcome(ctx, out, id, result);
        }
        Ok(())
    }

    /// Remembers a membership request so a (later) epoch steward can propose it.
    pub(crate) fn buffer_update(&mut self, now: Millis, action: Action) {
        let epoch = self.epoch();
        self.gov.buffer_update(now, epoch, action);
    }

    /// How many proposals `owner` has open.
    pub(crate) fn open_proposals_of(&self, owner: &MemberId) -> usize {
        self.gov.open_proposals_of(owner)
    }
}
