//! The governance commands: a removal proposed, a violation reported, a vote cast by
//! hand, our own leave. Each is refused (a typed [`CommandError`]) when the conversation's state does
//! not allow it.

use openmls_traits::OpenMlsProvider;

use super::*;

impl Conversation {
    /// Proposes removing `member`, with our YES vote bundled. Returns the proposal id.
    pub fn propose_removal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        member: MemberId,
    ) -> Result<(u32, Output), CommandError> {
        self.check_open()?;
        if self.state() != ConversationState::Working {
            return Err(CommandError::Blocked(self.state()));
        }
        if !self.gov.emergencies.is_empty() {
            return Err(CommandError::PartialFreeze);
        }
        if member == self.me {
            return Err(CommandError::SelfRemoval);
        }
        if !self.members().contains(&member) {
            return Err(CommandError::NotAMember(member));
        }
        if self.removal_under_way(&member) {
            return Err(CommandError::AlreadyProposed(member));
        }
        let mut out = Output::default();
        let id = self.open_proposal(
            ctx,
            &mut out,
            Action::Remove { member },
            Some(true),
            None,
            None,
        )?;
        Ok((id, out))
    }

    /// Files an emergency criteria proposal against `target` (our YES bundled). Emergencies
    /// take priority: lower-priority proposals wait until it is decided.
    pub fn report_violation<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        violation: crate::proto::pb::ViolationType,
        target: MemberId,
    ) -> Result<(u32, Output), CommandError> {
        self.check_open()?;
        if !matches!(
            self.state(),
            ConversationState::Working | ConversationState::Reelection
        ) {
            return Err(CommandError::Blocked(self.state()));
        }
        if !self.members().contains(&target) {
            return Err(CommandError::NotAMember(target));
        }
        let action = Action::Emergency {
            violation: violation as i32,
            target: Some(target),
            creator: self.me,
            epoch: self.epoch(),
        };
        let mut out = Output::default();
        let id = self.open_proposal(ctx, &mut out, action, Some(true), None, None)?;
        Ok((id, out))
    }

    /// Votes on a proposal by hand (cancels the automatic vote).
    pub fn vote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        id: u32,
        yes: bool,
    ) -> Result<Output, CommandError> {
        self.check_open()?;
        match self.state() {
            ConversationState::Working | ConversationState::Reelection => {}
            s => return Err(CommandError::Blocked(s)),
        }
        match self.gov.proposals.get(&id) {
            Some(p) if p.status == ProposalStatus::Voting => {}
            _ => return Err(CommandError::UnknownProposal(id)),
        }
        if self.gov.consensus.has_voted(id, &self.me) {
            return Err(CommandError::AlreadyVoted(id));
        }
        let mut out = Output::default();
        self.cast_vote(ctx, &mut out, id, yes)?;
        Ok(out)
    }

    /// Leaves: while pending, locally and silently; otherwise by a one-voter self-leave
    /// proposal (deterministic id, so asking twice proposes once) that a steward commits.
    pub fn leave<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
    ) -> Result<Output, CommandError> {
        self.check_open()?;
        let mut out = Output::default();
        if self.state() == ConversationState::PendingJoin {
            self.close(ctx, &mut out, LeaveReason::LeftWhilePending);
            return Ok(out);
        }
        if self.members().len() <= 1 {
            // Nobody is left to commit our removal: the group simply ends here.
            self.close(ctx, &mut out, LeaveReason::Removed);
            return Ok(out);
        }
        let id = crate::consensus::self_leave_proposal_id(&self.me);
        if self.gov.proposals.contains_key(&id) || self.removal_under_way(&self.me.clone()) {
            return Ok(out);
        }
        self.open_proposal(
            ctx,
            &mut out,
            Action::Remove { member: self.me },
            Some(true),
            Some(id),
            Some(1),
        )?;
        Ok(out)
    }
}
