//! Deliberate misbehaviour, for tests of the protocol's defences (the simulator plays a
//! lying steward or a rogue proposer with these). Nothing in the node calls them.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::proto::pb;

impl Conversation {
    /// Builds a commit candidate for the approved batch plus `extra_removes` (changes
    /// nobody voted for), claiming to come from `claimed`, and returns the `AppEnvelope`
    /// to publish. Our own pending commit is discarded so we stay able to merge the winner.
    #[doc(hidden)]
    pub fn adversary_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        claimed: MemberId,
        extra_removes: &[MemberId],
    ) -> Option<Vec<u8>> {
        let batch: Vec<Approved> = self.approved.clone();
        let adds: Vec<Vec<u8>> = batch
            .iter()
            .filter_map(|a| match &a.change {
                Change::Add { key_package, .. } => Some(key_package.clone()),
                _ => None,
            })
            .collect();
        let mut removes: Vec<MemberId> = batch
            .iter()
            .filter_map(|a| match &a.change {
                Change::Remove { member } => Some(*member),
                _ => None,
            })
            .collect();
        removes.extend_from_slice(extra_removes);
        let evidence = batch
            .iter()
            .filter_map(|a| self.consensus.evidence(a.id))
            .collect();
        let epoch = self.epoch();
        let mls = self.mls.as_mut()?;
        let commit = mls
            .create_commit(ctx.provider, &ctx.identity.mls, &adds, &removes)
            .ok()?;
        let _ = mls.discard_own_commit(ctx.provider);
        let cand = pb::CommitCandidate {
            conversation: self.name.clone(),
            mls_proposals: commit.proposals,
            commit_message: commit.commit,
            steward_id: claimed.to_vec(),
            epoch,
            evidence,
        };
        Some(
            pb::AppEnvelope {
                body: Some(pb::app_envelope::Body::CommitCandidate(cand)),
            }
            .encode_to_vec(),
        )
    }

    /// Opens a proposal with arbitrary content (e.g. a tampered steward election), with
    /// our YES bundled, bypassing every local check.
    #[doc(hidden)]
    pub fn adversary_proposal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        action: Action,
    ) -> Result<(u32, Output), CommandError> {
        let mut out = Output::default();
        let id = self.open_proposal(ctx, &mut out, action, Some(true), None, None)?;
        Ok((id, out))
    }
}
