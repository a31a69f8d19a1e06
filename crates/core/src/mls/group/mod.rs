//! One conversation's MLS group: the group and its lifecycle here; the roster of an
//! epoch (`roster.rs`), joining from a welcome (`welcome.rs`), our own commits
//! (`commit.rs`), remote candidates staged and kept (`staging.rs`), application messages
//! and epoch-sealed data (`application.rs`).

mod application;
mod commit;
mod roster;
mod staging;
mod welcome;

use openmls::prelude::tls_codec::Deserialize as TlsDeserialize;
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::CIPHERSUITE;
use super::error::{MlsError, other};
use super::ident::MlsIdentity;
use roster::Roster;
use staging::KeptStaging;

pub use application::Decrypted;
pub use commit::CommitOutput;
pub use staging::StagedCommitInfo;

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

/// How we create groups: public handshakes, the ratchet tree in welcomes, our past epochs.
fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(PAST_EPOCHS as usize)
        .build()
}

/// How we join and load groups: as [`create_config`], for the joiner's side.
fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(PAST_EPOCHS as usize)
        .build()
}

/// Parses a TLS-encoded MLS message as a handshake or application message.
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

    /// Our wrapper around a group just created, joined or loaded.
    pub(super) fn wrap(group: MlsGroup) -> Self {
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

    #[cfg(test)]
    pub(crate) fn policy(&self) -> String {
        format!("{:?}", self.group.configuration().wire_format_policy())
    }

    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// Deletes the group's state from storage.
    pub fn delete<P: OpenMlsProvider>(mut self, provider: &P) -> Result<(), MlsError> {
        self.group
            .delete(provider.storage())
            .map_err(|e| MlsError::Storage(format!("{e:?}")))
    }
}
