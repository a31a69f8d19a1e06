//! The openmls wrapper: one MLS group per conversation, sans-IO and generic over the
//! provider (`OpenMlsRustCrypto` in tests and the simulator, an sqlite-backed provider in
//! the node). Group state lives in the provider's storage; [`MlsConversation`] only adds
//! the slot for a staged remote commit, so dropping it and calling
//! [`MlsConversation::load`] on the same provider restores the group.
//!
//! Choices and openmls 0.9.2 facts, each checked by a test in `tests/`:
//! - **Our candidates carry their proposals inline** in the commit (openmls commit
//!   builder, `consume_proposal_store(false)`); [`CommitOutput::proposals`] is empty.
//!   openmls refuses `create_message` while its proposal store is non-empty
//!   (`PendingProposal`), so by-reference proposals (the reference's
//!   `propose_*` + `commit_to_pending_proposals`) would block our application messages
//!   for the whole freeze. A pending *commit* blocks nothing: with our candidate pending we
//!   still encrypt and decrypt in the current epoch.
//! - **Remote candidates may bundle by-reference proposals** (as the reference's do): each
//!   must be a proposal of the current epoch; it is processed and stored, and its MLS
//!   sender reported in [`StagedCommitInfo::proposal_senders`], so the caller can refuse
//!   a commit carrying another member's proposal. While such a candidate is staged,
//!   decrypting works but [`MlsConversation::encrypt`] returns
//!   [`MlsError::PendingProposals`] until it is merged or discarded.
//! - **Staging coexists with our own pending commit.** To let a remote candidate win,
//!   either discard ours and then stage, or stage over it and merge
//!   ([`MlsConversation::merge_staged`] clears our pending commit first). A staged
//!   candidate we reject ([`MlsConversation::discard_staged`]) leaves our own pending
//!   commit intact, so ours can still be merged; merging ours drops any staged one.
//! - **Staging is repeatable:** each `stage_remote_commit` starts by dropping the previous
//!   staged commit and all stored proposals, and a failed staging leaves nothing behind, so
//!   any number of candidates of one epoch can be tried in turn.
//! - **Handshake messages are PublicMessage** (`MIXED_PLAINTEXT` policy, joiners too):
//!   candidates are public by design and the same candidate may need staging more than
//!   once (in a later round, or via catch-up), which an MLS ciphertext would not allow.
//!   Application messages are always ciphertexts.
//! - **Decrypt is for application messages only.** Checks are done on the outer message
//!   before anything is processed: group (`WrongGroup`), epoch (a later one is
//!   `WrongEpoch`; one more than [`PAST_EPOCHS`] back is `Expired`; anything between is
//!   opened with that epoch's kept secrets, and its sender is who held the leaf then),
//!   content type (`NotApplication`). An echo of our own ciphertext is reported as
//!   `OwnMessage`.
//! - openmls refuses to create a proposal while our own commit is pending
//!   ([`MlsConversation::propose_remove`] then fails).
//! - Wire input never panics: mutated and random key packages, commits, proposals,
//!   welcomes and ciphertexts only produce errors.

mod error;
mod group;
mod ident;

pub use error::{DecryptError, MlsError};
pub use group::{CommitOutput, Decrypted, MlsConversation, PAST_EPOCHS, StagedCommitInfo};
pub use ident::{KeyPackageInfo, MlsIdentity, generate_key_package, validate_key_package};
pub(crate) use ident::{claimed_leaf_key, key_package_leaf_key};

use openmls::prelude::Ciphersuite;

/// The ciphersuite of every conversation.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

#[cfg(test)]
mod tests;
