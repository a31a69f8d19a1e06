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
        self.adversary_candidate_with(ctx, claimed, extra_removes, Vec::new())
    }

    /// Like [`Conversation::adversary_candidate`], with forged evidence for the extra
    /// removals: for each, a proposal nobody else saw, counting `voters` voters, dated
    /// `backdate_s` seconds in the past, and carrying only our own YES vote.
    #[doc(hidden)]
    pub fn adversary_candidate_forging_votes<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        claimed: MemberId,
        extra_removes: &[MemberId],
        voters: u32,
        backdate_s: u64,
    ) -> Option<Vec<u8>> {
        let now_s = (ctx.now / 1000).saturating_sub(backdate_s);
        let mut forged = Vec::new();
        for m in extra_removes {
            let action = Action::Remove { member: *m };
            let created = self
                .gov
                .consensus
                .create_proposal(
                    &ctx.identity.eth,
                    ctx.rng,
                    now_s,
                    crate::consensus::NewProposal {
                        name: action.summary(),
                        payload: action.to_payload(),
                        expected_voters: voters,
                        expiration_s: self.config.proposal_expiration / 1000,
                        liveness_yes: true,
                        fixed_id: None,
                    },
                    Some(true),
                )
                .ok()?;
            forged.push(created.proposal);
        }
        self.adversary_candidate_with(ctx, claimed, extra_removes, forged)
    }

    fn adversary_candidate_with<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        claimed: MemberId,
        extra_removes: &[MemberId],
        extra_evidence: Vec<crate::proto::cpb::Proposal>,
    ) -> Option<Vec<u8>> {
        let batch: Vec<Approved> = self.gov.approved.clone();
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
            .filter_map(|a| self.gov.consensus.evidence(a.id))
            .chain(extra_evidence)
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
            sealed_welcome: Vec::new(),
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
