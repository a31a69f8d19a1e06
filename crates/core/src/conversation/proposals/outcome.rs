//! Applying a decided proposal (reference §3.6): once, settled at once if the group
//! already made the change, otherwise handed to the handler of its kind: an add or a
//! removal queued for a commit, an election installed, an emergency (`emergency`).

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::conversation::stewardship::Installed;

impl Conversation {
    /// Applies a decided proposal once (reference §3.6).
    pub(crate) fn apply_outcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        accepted: bool,
    ) {
        if !self.gov.resolve(id) {
            return;
        }
        let Some((action, learnt_at)) = self.gov.decide(id, accepted) else {
            return;
        };
        let moot = self.already_carried_out(ctx, &action, learnt_at);
        if accepted && moot {
            self.gov.set_status(id, ProposalStatus::Committed);
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
            } => self.add_decided(ctx, out, id, accepted, member, key_package, announcement),
            Action::Remove { member } => self.removal_decided(ctx, out, id, accepted, member),
            Action::Election {
                stewards,
                election_epoch,
                retry_round,
            } => self.election_decided(
                ctx,
                out,
                id,
                accepted,
                stewards,
                election_epoch,
                retry_round,
            ),
            Action::Emergency {
                violation,
                target,
                creator,
                ..
            } => self.emergency_decided(ctx, out, id, accepted, violation, target, creator),
        }
        if accepted && self.anchor.is_none() && !self.gov.approved.is_empty() {
            self.anchor = Some(ctx.now);
        }
    }

    /// Whether the group already made the change `action` asks for (an add of a member,
    /// a removal of a non-member: a duplicate proposal decided after the commit). Such a
    /// change is settled, not queued: queued, it would make a steward freeze on work no
    /// commit can carry. `learnt_at`: the epoch we learnt the proposal at.
    fn already_carried_out<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        action: &Action,
        learnt_at: u64,
    ) -> bool {
        let members = self.mls.as_ref().map(|m| m.members()).unwrap_or_default();
        match action {
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
        }
    }

    /// An add decided: queued for a commit if accepted and still possible, its buffered
    /// request dropped otherwise.
    #[allow(clippy::too_many_arguments)]
    fn add_decided<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        accepted: bool,
        member: MemberId,
        key_package: Vec<u8>,
        announcement: Vec<u8>,
    ) {
        // Decided YES, but a copy of its key got into the tree (or its key package
        // was used) since it was checked: no commit can carry it, and queued it
        // would hold a freeze round open that no steward can fill.
        let blocked = accepted
            .then(|| self.add_blocked(ctx, &member, &key_package))
            .flatten();
        if let Some(why) = blocked {
            self.gov.set_status(id, ProposalStatus::Rejected);
            self.gov.pending_updates.remove(&member);
            out.reject(InboundKind::ApprovedAdd, RejectCause::Invalid, why);
        } else if accepted && !self.gov.add_approved(&member) {
            let change = Change::Add {
                member,
                key_package,
                rejoin: join::announcement_rejoin(&announcement),
            };
            self.gov.approve(id, change);
        } else if !accepted {
            self.gov.pending_updates.remove(&member);
        }
    }

    /// A removal decided: queued for a commit if accepted (the steward list reconciled
    /// at once), its buffered request dropped if rejected.
    fn removal_decided<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        accepted: bool,
        member: MemberId,
    ) {
        if accepted && !self.gov.removal_approved(&member) {
            self.gov.approve(id, Change::Remove { member });
            // A member on its way out is no steward: if that leaves a small
            // group no live one, reconcile the list now. Waiting for a tick left
            // a member whose next wake-up was the freeze with the old list,
            // refusing the new steward's commit for good (clean seed 5 of
            // `remove_then_leave_leaves_two_converged`).
            if self.state() == ConversationState::Working {
                self.reconcile_small_list(ctx, out);
            }
        } else if !accepted {
            self.gov.pending_updates.remove(&member);
        }
    }

    /// A steward election decided: the elected list installed if accepted and valid
    /// (we submit at once if it makes us a steward mid-round), the election otherwise
    /// treated as rejected.
    #[allow(clippy::too_many_arguments)]
    fn election_decided<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        accepted: bool,
        stewards: Vec<MemberId>,
        election_epoch: u64,
        retry_round: u32,
    ) {
        let installed =
            accepted.then(|| self.install_elected(out, stewards, election_epoch, retry_round));
        match installed {
            Some(Installed::Yes) => {
                self.election_proof = Some(id);
                // A list installed mid-round: its stewards have not submitted yet,
                // so the round's window starts over for them (the new epoch
                // steward would otherwise be judged silent by a window that was
                // nearly over when it became one).
                if let Some(f) = self.phase.round_mut() {
                    f.started_at = f.started_at.max(ctx.now);
                }
                self.submit_if_new_steward(ctx, out);
            }
            Some(Installed::Superseded) => {}
            Some(Installed::Invalid) | None => self.on_election_rejected(ctx, out),
        }
    }
}
