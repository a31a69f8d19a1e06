//! Our own commits: a candidate built with its proposals inline and left pending, then
//! merged or discarded; and a lone by-reference proposal.

use openmls::prelude::tls_codec::Serialize as TlsSerialize;
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::MlsConversation;
#[cfg(test)]
use super::protocol_message;
use crate::identity::MemberId;
use crate::mls::error::{MlsError, other};
use crate::mls::ident::{MlsIdentity, parse_key_package};

/// Our candidate's MLS messages.
#[derive(Debug, Clone)]
pub struct CommitOutput {
    /// By-reference proposals (empty: ours are inline).
    pub proposals: Vec<Vec<u8>>,
    /// The commit (TLS `MlsMessageOut`).
    pub commit: Vec<u8>,
    /// Welcome for added members.
    pub welcome: Option<Vec<u8>>,
}

impl MlsConversation {
    /// Builds our commit (inline proposals) and leaves it pending.
    pub fn create_commit<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        id: &MlsIdentity,
        adds: &[Vec<u8>],
        removes: &[MemberId],
    ) -> Result<CommitOutput, MlsError> {
        self.create_commit_with_aad(provider, id, adds, removes, Vec::new())
    }

    /// [`Self::create_commit`], with `aad` in the commit's authenticated data (signed
    /// with it; receivers find it in [`StagedCommitInfo::aad`]).
    pub fn create_commit_with_aad<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        id: &MlsIdentity,
        adds: &[Vec<u8>],
        removes: &[MemberId],
        aad: Vec<u8>,
    ) -> Result<CommitOutput, MlsError> {
        let kps = adds
            .iter()
            .map(|b| parse_key_package(provider, b))
            .collect::<Result<Vec<_>, _>>()?;
        let leaves = removes
            .iter()
            .map(|m| {
                self.leaf_of(m)
                    .ok_or_else(|| MlsError::Processing(format!("{m} is not a member")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.group.set_aad(aad);
        let built = self
            .group
            .commit_builder()
            .consume_proposal_store(false)
            .propose_adds(kps)
            .propose_removals(leaves)
            .load_psks(provider.storage())
            .map_err(other)
            .and_then(|b| {
                b.build(provider.rand(), provider.crypto(), id.signer(), |_| true)
                    .map_err(|e| MlsError::Processing(format!("{e:?}")))
            })
            .and_then(|b| b.stage_commit(provider).map_err(other));
        // Only this commit carries it, whether or not it was built.
        self.group.set_aad(Vec::new());
        let bundle = built?;
        let commit = bundle.commit().tls_serialize_detached().map_err(other)?;
        let welcome = match bundle.welcome() {
            Some(w) => Some(
                MlsMessageOut::from_welcome(w.clone(), ProtocolVersion::Mls10)
                    .tls_serialize_detached()
                    .map_err(other)?,
            ),
            None => None,
        };
        Ok(CommitOutput {
            proposals: Vec::new(),
            commit,
            welcome,
        })
    }

    /// Merges our pending commit.
    pub fn merge_own_commit<P: OpenMlsProvider>(&mut self, provider: &P) -> Result<(), MlsError> {
        if self.group.pending_commit().is_none() {
            return Err(MlsError::NothingPending("own commit"));
        }
        // A remote candidate staged for the same epoch is obsolete once ours merges.
        self.staged = None;
        self.kept.clear();
        self.group
            .clear_pending_proposals(provider.storage())
            .map_err(other)?;
        self.group.merge_pending_commit(provider).map_err(other)
    }

    /// Drops our pending commit and any stored proposals.
    pub fn discard_own_commit<P: OpenMlsProvider>(&mut self, provider: &P) -> Result<(), MlsError> {
        self.group
            .clear_pending_commit(provider.storage())
            .map_err(other)?;
        self.group
            .clear_pending_proposals(provider.storage())
            .map_err(other)
    }

    /// A lone by-reference remove proposal (adversarial tests build bad bundles with it).
    pub fn propose_remove<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        id: &MlsIdentity,
        member: &MemberId,
    ) -> Result<Vec<u8>, MlsError> {
        let leaf = self
            .leaf_of(member)
            .ok_or_else(|| MlsError::Processing(format!("{member} is not a member")))?;
        let (msg, _) = self
            .group
            .propose_remove_member(provider, id.signer(), leaf)
            .map_err(other)?;
        let bytes = msg.tls_serialize_detached().map_err(other)?;
        // Keep our own store empty: the proposal is for someone else's bundle.
        self.group
            .clear_pending_proposals(provider.storage())
            .map_err(other)?;
        Ok(bytes)
    }

    /// Test support: processes another member's by-reference proposal and commits to it,
    /// producing a commit that bundles someone else's proposal.
    #[cfg(test)]
    pub(crate) fn commit_to_foreign_proposal<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        id: &MlsIdentity,
        proposal: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let pm = protocol_message(proposal).map_err(MlsError::Malformed)?;
        let processed = self.group.process_message(provider, pm).map_err(other)?;
        if let ProcessedMessageContent::ProposalMessage(q) = processed.into_content() {
            self.group
                .store_pending_proposal(provider.storage(), *q)
                .map_err(other)?;
        }
        let (commit, _, _) = self
            .group
            .commit_to_pending_proposals(provider, id.signer())
            .map_err(other)?;
        commit.tls_serialize_detached().map_err(other)
    }
}
