//! MLS errors. Anything from the wire maps to one of these, never to a panic.

/// Local or structural MLS failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlsError {
    /// Bytes that do not parse as the expected MLS structure.
    #[error("malformed MLS data: {0}")]
    Malformed(String),
    /// A key package that fails validation.
    #[error("invalid key package: {0}")]
    InvalidKeyPackage(String),
    /// A credential that is not a 20-byte address.
    #[error("credential is not a 20-byte address")]
    BadCredential,
    /// A commit for another group or epoch.
    #[error("commit is for {0}")]
    WrongContext(String),
    /// Processing failed (bad signature, wrong content, …).
    #[error("MLS processing failed: {0}")]
    Processing(String),
    /// Nothing staged / pending.
    #[error("no {0} to merge")]
    NothingPending(&'static str),
    /// Application messages cannot be sent while by-reference proposals are held (a
    /// staged remote candidate): merge or discard it first.
    #[error("proposals are pending: merge or discard the staged commit first")]
    PendingProposals,
    /// We are no longer a member of the group.
    #[error("no longer a member of the group")]
    NotAMember,
    /// Storage failure.
    #[error("MLS storage: {0}")]
    Storage(String),
    /// Other openmls failure.
    #[error("MLS: {0}")]
    Other(String),
}

/// Why an application message was not opened.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// Another group.
    #[error("message for another group")]
    WrongGroup,
    /// A later epoch than ours (we are behind, or the header lies).
    #[error("message from epoch {message_epoch}, we are at {our_epoch}")]
    WrongEpoch {
        /// The message's epoch.
        message_epoch: u64,
        /// Ours.
        our_epoch: u64,
    },
    /// An epoch so far past that its secrets are deleted (`PAST_EPOCHS`).
    #[error(
        "message from epoch {message_epoch}, more than {} epochs before ours ({our_epoch}): its keys are deleted",
        super::group::PAST_EPOCHS
    )]
    Expired {
        /// The message's epoch.
        message_epoch: u64,
        /// Ours.
        our_epoch: u64,
    },
    /// A handshake message on the application path.
    #[error("not an application message")]
    NotApplication,
    /// Our own message echoed back.
    #[error("our own message")]
    OwnMessage,
    /// Does not parse.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Fails authentication or decryption.
    #[error("cannot open message: {0}")]
    Crypto(String),
}

pub(crate) fn other(e: impl std::fmt::Debug) -> MlsError {
    MlsError::Other(format!("{e:?}"))
}
