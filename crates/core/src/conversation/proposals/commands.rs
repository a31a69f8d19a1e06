//! The governance commands: a removal proposed, a violation reported, a vote cast by
//! hand. Each is refused (a typed [`CommandError`]) when the conversation's state does
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
        if self.state != ConversationState::Working {
            return Err(CommandError::Blocked(self.state));
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
            self.state,
            ConversationState::Working | ConversationState::Reelection
        ) {
            return Err(CommandError::Blocked(self.state));
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
        match self.state {
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
}
