//! What a proposal's content must pass: a valid add, removal, election or emergency,
//! an emergency made by its owner, an add whose key is not already claimed.

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::proto::cpb;

/// The key package inside an encoded announcement.
fn announcement_key_package(announcement: &[u8]) -> Option<Vec<u8>> {
    use prost::Message;
    pb::KeyPackageAnnouncement::decode(announcement)
        .ok()
        .map(|a| a.key_package)
}

impl Conversation {
    /// Is this content acceptable to us? Invalid content is voted NO at once.
    pub(crate) fn content_is_valid<P: OpenMlsProvider>(
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
    pub(crate) fn add_blocked<P: OpenMlsProvider>(
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

    /// Another member whose open add claims the leaf key `key_package` claims, if any
    /// (see `Governance::leaf_key_claimed_by`).
    pub(crate) fn leaf_key_claimed_by(
        &self,
        member: &MemberId,
        key_package: &[u8],
    ) -> Option<MemberId> {
        self.gov.leaf_key_claimed_by(member, key_package)
    }

    /// Whether `p` is a new leave of a member whose earlier leave we hold, carried out
    /// (see `Governance::renews_own_leave`).
    pub(crate) fn renews_own_leave(&self, p: &cpb::Proposal) -> bool {
        self.gov.renews_own_leave(p)
    }

    /// Forgets the record of an earlier leave that `p` renews (see `renews_own_leave`).
    pub(crate) fn forget_renewed_leave(&mut self, p: &cpb::Proposal) {
        let id = p.proposal_id;
        tracing::info!(conversation = %self.name, id, "a member that left before leaves again");
        self.gov.forget(id);
    }

    /// Content checks that need the proposal's owner: an emergency names its creator in
    /// the payload (scores follow it), and that must be the owner.
    pub(crate) fn content_is_owners(action: &Action, owner: MemberId) -> Result<(), String> {
        match action {
            Action::Emergency { creator, .. } if *creator != owner => Err(format!(
                "emergency names {creator} as creator but was proposed by {owner}"
            )),
            _ => Ok(()),
        }
    }
}
