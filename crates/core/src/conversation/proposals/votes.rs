//! Votes: receiving them, late ones and signed evidence overturning a timeout
//! rejection, automatic votes and consensus timeouts (asking for missing votes first).

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::proto::cpb;

impl Conversation {
    /// Takes one vote (from an MLS application message or a sealed vote); whether it was
    /// taken (a vote on a proposal we do not know yet is not, until we learn it).
    pub(crate) fn on_vote<P: OpenMlsProvider>(
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
        let id = v.proposal_id;
        let received = {
            let is_voter = Self::voter_check(self.mls.as_ref(), &away);
            let now = Self::now_s(ctx.now);
            self.gov.consensus.receive_vote(v, now, &is_voter)
        };
        match received {
            Ok(Some(r)) => {
                // A vote that arrives after our timeout rejected the proposal, and with
                // which no further vote can make it anything but YES: the members that
                // got it in time decided YES (in a two-member group, one lost vote split
                // an election this way, and each member then waited for the other).
                if r && self.gov.overturnable(id) {
                    tracing::info!(conversation = %self.name, id, "a late vote overturns our timeout rejection");
                    self.gov.unresolve(id);
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
    pub(crate) fn overturn_timeout_rejection<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        p: &cpb::Proposal,
        is_voter: &dyn Fn(&MemberId) -> bool,
        now_s: u64,
    ) {
        let id = p.proposal_id;
        if !self.gov.overturnable(id) {
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
            self.gov.unresolve(id);
            self.apply_outcome(ctx, out, id, true);
        }
    }

    /// Automatic votes and consensus timeouts that are due.
    pub(crate) fn tick_votes<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let due = self.gov.due_auto_votes(now);
        for (id, yes) in due {
            self.gov.cancel_auto_vote(id);
            if self.gov.consensus.has_voted(id, &self.me) {
                continue;
            }
            if let Err(e) = self.cast_vote(ctx, out, id, yes) {
                tracing::debug!(id, error = %e, "automatic vote not cast");
            }
        }
        let timed_out = self.gov.timed_out(now);
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
        if !self.gov.spend_vote_ask(id, ctx.now, gap) {
            return false;
        }
        tracing::debug!(conversation = %self.name, id, "votes missing at the timeout: asking for them");
        let msg = pb::AppMessage {
            body: Some(pb::app_message::Body::ProposalRequest(id)),
        };
        if let Err(e) = self.send_app(ctx, out, msg) {
            tracing::debug!(error = %e, "could not ask for missing votes");
        }
        true
    }
}
