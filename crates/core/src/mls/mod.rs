//! The openmls wrapper: one MLS group per conversation.
//!
//! Choices, each checked by a test in `tests.rs`:
//! - Our candidates carry their proposals **inline** in the commit (openmls commit
//!   builder). openmls refuses `create_message` while its proposal store is non-empty, so
//!   by-reference proposals would block application messages for the whole freeze;
//!   inline ones leave the store empty, and we keep decrypting and encrypting.
//! - Remote candidates may still bundle by-reference proposals (as the reference's do):
//!   each is processed and its sender reported, so the caller can refuse a commit that
//!   carries another member's proposal.
//! - Handshake messages are PublicMessage (MIXED_PLAINTEXT policy): candidates are public
//!   by design and the same candidate may need staging more than once (in a later round,
//!   or via catch-up), which an MLS ciphertext would not allow.
//! - A remote commit can be staged while our own is pending; merging it first clears ours.
//!   A rejected staged commit is discarded together with any stored proposals, so the
//!   next candidate of the same epoch can be staged.

mod error;
mod group;
mod ident;

pub use error::{DecryptError, MlsError};
pub use group::{CommitOutput, Decrypted, MlsConversation, StagedCommitInfo};
pub use ident::{KeyPackageInfo, MlsIdentity, generate_key_package, validate_key_package};

use openmls::prelude::Ciphersuite;

/// The ciphersuite of every conversation.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

#[cfg(test)]
mod tests;
