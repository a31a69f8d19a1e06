//! Remote candidates: staged to learn what they do and who signed them, kept aside for
//! the epoch, merged or discarded.

use openmls::prelude::tls_codec::Serialize as TlsSerialize;
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::{MlsConversation, protocol_message};
use crate::identity::MemberId;
use crate::mls::error::{MlsError, other};
use crate::mls::ident::credential_member;

/// What a staged remote commit does, for validation before merging.
#[derive(Debug, Clone)]
pub struct StagedCommitInfo {
    /// The member whose signature the commit carries.
    pub commit_sender: MemberId,
    /// Senders of the by-reference proposals it bundles.
    pub proposal_senders: Vec<MemberId>,
    /// Members it adds (from key package credentials).
    pub adds: Vec<MemberId>,
    /// SHA-256 of each added key package (TLS encoding, as announced), beside `adds`.
    pub added_key_packages: Vec<[u8; 32]>,
    /// Members it removes.
    pub removes: Vec<MemberId>,
    /// It removes us.
    pub self_removed: bool,
    /// The epoch after merging.
    pub new_epoch: u64,
    /// The commit's authenticated data, signed by its sender: for a candidate, the
    /// digest of the evidence its steward carries beside it.
    pub aad: Vec<u8>,
}

/// How many authenticated stagings are kept: a freeze round has one candidate per
/// steward that commits (two in the usual round: the epoch steward and its backup).
const KEPT_STAGINGS: usize = 4;

/// A remote commit staged at `epoch`, by the caller's key for the candidate it came in.
pub(super) struct KeptStaging {
    key: [u8; 32],
    epoch: u64,
    staged: StagedCommit,
    info: StagedCommitInfo,
}

impl MlsConversation {
    /// Processes a remote candidate without merging it.
    pub fn stage_remote_commit<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        proposals: &[Vec<u8>],
        commit: &[u8],
    ) -> Result<StagedCommitInfo, MlsError> {
        let result = self.stage_inner(provider, proposals, commit);
        if result.is_err() {
            self.staged = None;
            let _ = self.group.clear_pending_proposals(provider.storage());
        }
        result
    }

    /// Refuses a handshake message of another group or epoch before openmls processes it.
    fn check_context(&self, pm: &ProtocolMessage) -> Result<(), MlsError> {
        if pm.group_id() != self.group.group_id() {
            return Err(MlsError::WrongContext("another group".into()));
        }
        if pm.epoch() != self.group.epoch() {
            return Err(MlsError::WrongContext(format!(
                "epoch {} (we are at {})",
                pm.epoch().as_u64(),
                self.epoch()
            )));
        }
        Ok(())
    }

    /// [`Self::stage_remote_commit`] without the clean-up on failure.
    fn stage_inner<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        proposals: &[Vec<u8>],
        commit: &[u8],
    ) -> Result<StagedCommitInfo, MlsError> {
        // Start clean: a previous staged candidate and its proposals are dropped, so only
        // this bundle's proposals can be referenced (and reported) below.
        self.staged = None;
        self.group
            .clear_pending_proposals(provider.storage())
            .map_err(other)?;
        let mut proposal_senders = Vec::new();
        for p in proposals {
            let pm = protocol_message(p).map_err(MlsError::Malformed)?;
            self.check_context(&pm)?;
            let processed = self
                .group
                .process_message(provider, pm)
                .map_err(|e| MlsError::Processing(format!("{e:?}")))?;
            let sender = self.sender_member(processed.sender())?;
            match processed.into_content() {
                ProcessedMessageContent::ProposalMessage(q) => {
                    self.group
                        .store_pending_proposal(provider.storage(), *q)
                        .map_err(other)?;
                    proposal_senders.push(sender);
                }
                _ => {
                    return Err(MlsError::Processing(
                        "bundled message is not a proposal".into(),
                    ));
                }
            }
        }
        let pm = protocol_message(commit).map_err(MlsError::Malformed)?;
        self.check_context(&pm)?;
        let processed = self
            .group
            .process_message(provider, pm)
            .map_err(|e| MlsError::Processing(format!("{e:?}")))?;
        let commit_sender = self.sender_member(processed.sender())?;
        let aad = processed.aad().to_vec();
        let ProcessedMessageContent::StagedCommitMessage(sc) = processed.into_content() else {
            return Err(MlsError::Processing("not a commit".into()));
        };
        let mut adds = Vec::new();
        let mut added_key_packages = Vec::new();
        for a in sc.add_proposals() {
            let kp = a.add_proposal().key_package();
            adds.push(credential_member(kp.leaf_node().credential())?);
            let bytes = kp.tls_serialize_detached().map_err(other)?;
            added_key_packages.push(
                sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(bytes))
                    .into(),
            );
        }
        let mut removes = Vec::new();
        for r in sc.remove_proposals() {
            let leaf = r.remove_proposal().removed();
            let c = self
                .group
                .member(leaf)
                .ok_or_else(|| MlsError::Processing("removes an empty leaf".into()))?;
            removes.push(credential_member(c)?);
        }
        let info = StagedCommitInfo {
            commit_sender,
            proposal_senders,
            adds,
            added_key_packages,
            removes,
            self_removed: sc.self_removed(),
            new_epoch: self.epoch() + 1,
            aad,
        };
        self.staged = Some(*sc);
        Ok(info)
    }

    /// Stages a remote candidate like [`Self::stage_remote_commit`], then keeps the
    /// staging aside under `key` (no pending staging or proposals are left): a candidate
    /// is staged on arrival to learn who signed it, and staging it again to apply it cost
    /// every member a second full processing of the commit. Staging reads only the
    /// epoch's tree and key schedule, which change only when a commit merges, so a kept
    /// staging is taken back only at the epoch it was made in
    /// ([`Self::restore_kept`]); merging drops them all. Not saved: after a restart a
    /// candidate is simply staged again.
    pub fn stage_and_keep<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        key: [u8; 32],
        proposals: &[Vec<u8>],
        commit: &[u8],
    ) -> Result<StagedCommitInfo, MlsError> {
        let result = self.stage_remote_commit(provider, proposals, commit);
        if let (Ok(info), Some(staged)) = (&result, self.staged.take()) {
            let epoch = self.epoch();
            self.kept.retain(|k| k.key != key && k.epoch == epoch);
            if self.kept.len() >= KEPT_STAGINGS {
                self.kept.remove(0);
            }
            self.kept.push(KeptStaging {
                key,
                epoch,
                staged,
                info: info.clone(),
            });
        }
        self.discard_staged(provider)?;
        result
    }

    /// Makes the staging kept under `key` at this epoch the staged commit again (as
    /// [`Self::stage_remote_commit`] would leave it) and returns what it does; `None` if
    /// none is kept.
    pub fn restore_kept<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        key: [u8; 32],
    ) -> Option<StagedCommitInfo> {
        let epoch = self.epoch();
        let at = self
            .kept
            .iter()
            .position(|k| k.key == key && k.epoch == epoch)?;
        let k = self.kept.remove(at);
        self.discard_staged(provider).ok()?;
        self.staged = Some(k.staged);
        Some(k.info)
    }

    /// Merges the staged remote commit (clearing our own pending one first).
    pub fn merge_staged<P: OpenMlsProvider>(&mut self, provider: &P) -> Result<(), MlsError> {
        self.kept.clear();
        let sc = self
            .staged
            .take()
            .ok_or(MlsError::NothingPending("staged commit"))?;
        if self.group.pending_commit().is_some() {
            self.group
                .clear_pending_commit(provider.storage())
                .map_err(other)?;
        }
        self.group.merge_staged_commit(provider, sc).map_err(other)
    }

    /// Drops the staged commit and stored proposals.
    pub fn discard_staged<P: OpenMlsProvider>(&mut self, provider: &P) -> Result<(), MlsError> {
        self.staged = None;
        self.group
            .clear_pending_proposals(provider.storage())
            .map_err(other)
    }
}
