//! One conversation's MLS group.

use openmls::prelude::tls_codec::{Deserialize as TlsDeserialize, Serialize as TlsSerialize};
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::CIPHERSUITE;
use super::error::{DecryptError, MlsError, other};
use super::ident::{MlsIdentity, credential_member, parse_key_package};
use crate::identity::MemberId;

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

/// An opened application message.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// MLS-authenticated sender.
    pub sender: MemberId,
    /// Plaintext.
    pub plaintext: Vec<u8>,
    /// The epoch it was sent in: ours, or one of the last [`PAST_EPOCHS`].
    pub epoch: u64,
}

/// How many past epochs' message secrets a member keeps, so that application messages
/// sent before a commit it has since applied (delayed, buffered while it caught up, or
/// fetched from a store) can still be read. The cost in forward secrecy: someone who
/// takes a member's saved state can read the messages of those epochs that the member
/// had not read yet (the keys of messages it read are deleted as it reads them), for
/// as many commits as this after they were sent. Docs: PROTOCOL.md "Past epochs".
pub const PAST_EPOCHS: u64 = 4;

/// The MLS group of one conversation (its state lives in the provider's storage).
pub struct MlsConversation {
    group: MlsGroup,
    staged: Option<StagedCommit>,
    /// Remote commits staged to authenticate them and kept for merging, newest last (see
    /// [`MlsConversation::stage_and_keep`]).
    kept: Vec<KeptStaging>,
    /// The roster of the epoch it was read at: membership changes only by a commit, which
    /// starts a new epoch, and reading it parses every leaf's credential (asked on most
    /// packets: a profile of 50 members spent 8 % of a member's time there).
    roster: std::cell::RefCell<Option<Roster>>,
}

/// How many authenticated stagings are kept: a freeze round has one candidate per
/// steward that commits (two in the usual round: the epoch steward and its backup).
const KEPT_STAGINGS: usize = 4;

/// A remote commit staged at `epoch`, by the caller's key for the candidate it came in.
struct KeptStaging {
    key: [u8; 32],
    epoch: u64,
    staged: StagedCommit,
    info: StagedCommitInfo,
}

/// The roster of one epoch, in leaf order and sorted (membership is asked once per vote:
/// a scan of a thousand addresses per vote was a measurable part of a vote's cost).
struct Roster {
    epoch: u64,
    in_leaf_order: Vec<MemberId>,
    sorted: Vec<MemberId>,
}

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(PAST_EPOCHS as usize)
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(PAST_EPOCHS as usize)
        .build()
}

fn protocol_message(bytes: &[u8]) -> Result<ProtocolMessage, String> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| e.to_string())?;
    msg.try_into_protocol_message()
        .map_err(|e| format!("{e:?}"))
}

impl MlsConversation {
    /// A new group with us as the only member; group id = `name`.
    pub fn create<P: OpenMlsProvider>(
        provider: &P,
        id: &MlsIdentity,
        name: &str,
    ) -> Result<Self, MlsError> {
        let group = MlsGroup::new_with_group_id(
            provider,
            id.signer(),
            &create_config(),
            GroupId::from_slice(name.as_bytes()),
            id.credential().clone(),
        )
        .map_err(other)?;
        Ok(Self::wrap(group))
    }

    fn wrap(group: MlsGroup) -> Self {
        Self {
            group,
            staged: None,
            kept: Vec::new(),
            roster: std::cell::RefCell::new(None),
        }
    }

    /// Reloads the group of `name` from storage.
    pub fn load<P: OpenMlsProvider>(provider: &P, name: &str) -> Result<Option<Self>, MlsError> {
        let g = MlsGroup::load(provider.storage(), &GroupId::from_slice(name.as_bytes()))
            .map_err(|e| MlsError::Storage(format!("{e:?}")))?;
        let Some(mut group) = g else { return Ok(None) };
        // Groups saved by an older version keep fewer past epochs (2): widen to ours.
        if group.configuration() != &join_config() {
            group
                .set_configuration(provider.storage(), &join_config())
                .map_err(|e| MlsError::Storage(format!("{e:?}")))?;
        }
        Ok(Some(Self::wrap(group)))
    }

    /// Joins from a welcome; `Ok(None)` when it is not for a key package we hold.
    pub fn join_from_welcome<P: OpenMlsProvider>(
        provider: &P,
        welcome: &[u8],
    ) -> Result<Option<Self>, MlsError> {
        Ok(Self::join_checked(provider, welcome, None)?.map(|(g, _)| g))
    }

    /// Joins from a welcome for group `expected` (when given; checked before anything is
    /// stored), and returns the member that authored the welcome (the signer of its group
    /// info). `Ok(None)` when it is not for a key package we hold.
    pub fn join_checked<P: OpenMlsProvider>(
        provider: &P,
        welcome: &[u8],
        expected: Option<&str>,
    ) -> Result<Option<(Self, MemberId)>, MlsError> {
        let msg = MlsMessageIn::tls_deserialize_exact(welcome)
            .map_err(|e| MlsError::Malformed(e.to_string()))?;
        let MlsMessageBodyIn::Welcome(w) = msg.extract() else {
            return Err(MlsError::Malformed("not a welcome".into()));
        };
        let staged = match StagedWelcome::new_from_welcome(provider, &join_config(), w, None) {
            Ok(staged) => staged,
            Err(WelcomeError::NoMatchingKeyPackage)
            | Err(WelcomeError::NoMatchingEncryptionKey) => return Ok(None),
            Err(e) => return Err(MlsError::Processing(format!("{e:?}"))),
        };
        if let Some(name) = expected
            && staged.group_context().group_id().as_slice() != name.as_bytes()
        {
            return Err(MlsError::WrongContext(format!(
                "welcome is for group {:?}, not {name:?}",
                String::from_utf8_lossy(staged.group_context().group_id().as_slice())
            )));
        }
        let sender = credential_member(staged.welcome_sender().map_err(other)?.credential())?;
        let group = staged.into_group(provider).map_err(other)?;
        Ok(Some((Self::wrap(group), sender)))
    }

    #[cfg(test)]
    pub(crate) fn policy(&self) -> String {
        format!("{:?}", self.group.configuration().wire_format_policy())
    }

    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// Members in leaf order.
    pub fn members(&self) -> Vec<MemberId> {
        self.with_roster(|r| r.in_leaf_order.clone())
    }

    /// Runs `f` on the roster of the current epoch (read from the tree once per epoch).
    fn with_roster<R>(&self, f: impl FnOnce(&Roster) -> R) -> R {
        let epoch = self.epoch();
        let mut cached = self.roster.borrow_mut();
        let roster = match cached.take() {
            Some(r) if r.epoch == epoch => r,
            _ => {
                let in_leaf_order: Vec<MemberId> = self
                    .group
                    .members()
                    .filter_map(|m| credential_member(&m.credential).ok())
                    .collect();
                let mut sorted = in_leaf_order.clone();
                sorted.sort_unstable();
                Roster {
                    epoch,
                    in_leaf_order,
                    sorted,
                }
            }
        };
        f(cached.insert(roster))
    }

    /// Members with their leaves' encryption keys: a member re-added under the same
    /// address (a rejoin) shows up as a different entry.
    pub fn member_leaves(&self) -> Vec<(MemberId, Vec<u8>)> {
        self.group
            .members()
            .filter_map(|m| Some((credential_member(&m.credential).ok()?, m.encryption_key)))
            .collect()
    }

    /// The member whose leaf has this key package's encryption key, if any. Its own: an
    /// add consumed the key package and that member has not committed since (which would
    /// renew its leaf), known from the tree alone. Another's: leaf keys are public and a
    /// key package does not prove its holder has the private half, so it is a forgery no
    /// commit can carry (keys must be unique in the tree).
    pub fn leaf_key_holder<P: OpenMlsProvider>(
        &self,
        provider: &P,
        key_package: &[u8],
    ) -> Option<MemberId> {
        let kp = parse_key_package(provider, key_package).ok()?;
        let key = kp.leaf_node().encryption_key();
        self.group
            .members()
            .find(|m| openmls::treesync::EncryptionKey::from(m.encryption_key.clone()) == *key)
            .and_then(|m| credential_member(&m.credential).ok())
    }

    /// Is `m` in the group?
    pub fn is_member(&self, m: &MemberId) -> bool {
        self.with_roster(|r| r.sorted.binary_search(m).is_ok())
    }

    /// Equal at two members iff they share the epoch's key schedule.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    pub(crate) fn leaf_of(&self, m: &MemberId) -> Option<LeafNodeIndex> {
        self.group
            .members()
            .find(|x| credential_member(&x.credential).ok().as_ref() == Some(m))
            .map(|x| x.index)
    }

    /// Our own id, from our leaf's credential.
    fn own_member(&self) -> Option<MemberId> {
        let leaf = self.group.own_leaf()?;
        credential_member(leaf.credential()).ok()
    }

    fn sender_member(&self, sender: &Sender) -> Result<MemberId, MlsError> {
        match sender {
            Sender::Member(leaf) => {
                let c = self
                    .group
                    .member(*leaf)
                    .ok_or_else(|| MlsError::Processing("sender leaf is empty".into()))?;
                credential_member(c)
            }
            _ => Err(MlsError::Processing("sender is not a member".into())),
        }
    }

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

    /// Encrypts an application message.
    pub fn encrypt<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        id: &MlsIdentity,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let out = self
            .group
            .create_message(provider, id.signer(), plaintext)
            .map_err(|e| match e {
                CreateMessageError::GroupStateError(MlsGroupStateError::PendingProposal) => {
                    MlsError::PendingProposals
                }
                CreateMessageError::GroupStateError(MlsGroupStateError::UseAfterEviction) => {
                    MlsError::NotAMember
                }
                e => MlsError::Processing(format!("{e:?}")),
            })?;
        out.tls_serialize_detached().map_err(other)
    }

    /// Opens an application message of the current epoch or of one of the last
    /// [`PAST_EPOCHS`]. The sender is the member who held the sending leaf *in the
    /// message's epoch* (a leaf may have changed hands since).
    pub fn decrypt<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        bytes: &[u8],
    ) -> Result<Decrypted, DecryptError> {
        let pm = protocol_message(bytes).map_err(DecryptError::Malformed)?;
        if pm.group_id() != self.group.group_id() {
            return Err(DecryptError::WrongGroup);
        }
        let (message_epoch, our_epoch) = (pm.epoch().as_u64(), self.epoch());
        if message_epoch > our_epoch {
            return Err(DecryptError::WrongEpoch {
                message_epoch,
                our_epoch,
            });
        }
        if our_epoch - message_epoch > PAST_EPOCHS {
            return Err(DecryptError::Expired {
                message_epoch,
                our_epoch,
            });
        }
        if pm.content_type() != ContentType::Application {
            return Err(DecryptError::NotApplication);
        }
        // openmls 0.9 recognises an echo of our own ciphertext and returns it as
        // `OwnPrivateMessage` (sender = our leaf) without the plaintext.
        let processed = self
            .group
            .process_message(provider, pm)
            .map_err(|e| DecryptError::Crypto(format!("{e:?}")))?;
        if !matches!(processed.sender(), Sender::Member(_)) {
            return Err(DecryptError::Crypto("sender is not a member".into()));
        }
        let sender = credential_member(processed.credential())
            .map_err(|e| DecryptError::Crypto(e.to_string()))?;
        if self.own_member().is_some_and(|me| me == sender) {
            return Err(DecryptError::OwnMessage);
        }
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => Ok(Decrypted {
                sender,
                plaintext: m.into_bytes(),
                epoch: message_epoch,
            }),
            ProcessedMessageContent::OwnPrivateMessage => Err(DecryptError::OwnMessage),
            _ => Err(DecryptError::NotApplication),
        }
    }

    /// Seals `plaintext` so that only members of the current epoch can open it: AEAD
    /// under a key exported from the epoch for (`label`, `context`). Each context is
    /// sealed once (the same bytes may be re-sent), so the nonce is fixed.
    pub fn seal_to_epoch<P: OpenMlsProvider>(
        &self,
        provider: &P,
        label: &str,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let (key, nonce) = self.epoch_key(provider, label, context)?;
        provider
            .crypto()
            .aead_encrypt(
                CIPHERSUITE.aead_algorithm(),
                &key,
                plaintext,
                &nonce,
                label.as_bytes(),
            )
            .map_err(|e| MlsError::Processing(format!("seal: {e:?}")))
    }

    /// Opens what [`Self::seal_to_epoch`] sealed in this same epoch.
    pub fn open_from_epoch<P: OpenMlsProvider>(
        &self,
        provider: &P,
        label: &str,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let (key, nonce) = self.epoch_key(provider, label, context)?;
        provider
            .crypto()
            .aead_decrypt(
                CIPHERSUITE.aead_algorithm(),
                &key,
                sealed,
                &nonce,
                label.as_bytes(),
            )
            .map_err(|e| MlsError::Processing(format!("open: {e:?}")))
    }

    fn epoch_key<P: OpenMlsProvider>(
        &self,
        provider: &P,
        label: &str,
        context: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        let key = self
            .group
            .export_secret(
                provider.crypto(),
                label,
                context,
                CIPHERSUITE.aead_key_length(),
            )
            .map_err(other)?;
        Ok((key, vec![0; CIPHERSUITE.aead_nonce_length()]))
    }

    /// The (unauthenticated) epoch of an MLS message, if it parses.
    pub fn peek_epoch(bytes: &[u8]) -> Option<u64> {
        protocol_message(bytes).ok().map(|pm| pm.epoch().as_u64())
    }

    /// Deletes the group's state from storage.
    pub fn delete<P: OpenMlsProvider>(mut self, provider: &P) -> Result<(), MlsError> {
        self.group
            .delete(provider.storage())
            .map_err(|e| MlsError::Storage(format!("{e:?}")))
    }
}
