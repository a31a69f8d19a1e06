//! Why the node did not do what it was asked. The runtime and its handle return these;
//! `crate::api` alone decides which HTTP status each one gets. The texts are the ones
//! users read in error bodies and logs.

use demls_core::conversation::{CommandError, ConversationError};
use demls_core::mls::MlsError;
use demls_transport::TransportError;

use crate::storage::StorageError;

/// A request the node refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// We are not in this conversation (never were, or no longer).
    #[error("not in conversation {0:?}")]
    NotIn(String),
    /// Create or join of a conversation we are already in.
    #[error("already in conversation {0:?}")]
    AlreadyIn(String),
    /// The conversation is quarantined: it does not work until released or dropped.
    #[error(
        "conversation {name:?} is quarantined ({reason}); release it to retry from its saved \
         state, or drop it (POST /conversations/{name}/release or /drop)"
    )]
    Quarantined {
        /// The conversation.
        name: String,
        /// Why it was quarantined.
        reason: String,
    },
    /// The name cannot be a conversation's.
    #[error(transparent)]
    BadName(ConversationError),
    /// Its topics could not be subscribed to, before creating or joining.
    #[error(transparent)]
    Subscribe(TransportError),
    /// The protocol refused the command (its state was saved as usual).
    #[error(transparent)]
    Refused(#[from] CommandError),
    /// The step's state could not be saved: nothing was published, and the conversation
    /// went back to its stored state.
    #[error(
        "could not save the state of {name:?} ({source}); the change was discarded and \
         nothing was sent"
    )]
    NotSaved {
        /// The conversation.
        name: String,
        /// What failed.
        source: StateError,
    },
    /// Creating or joining failed; nothing was stored or sent.
    #[error("{doing} {name:?} failed: {source}; nothing was stored or sent")]
    OpenFailed {
        /// `creating` or `joining`.
        doing: &'static str,
        /// The conversation.
        name: String,
        /// What failed.
        source: OpenError,
    },
    /// Release of a conversation that runs.
    #[error("conversation {0:?} is not quarantined")]
    NotQuarantined(String),
    /// Drop of a conversation that runs: leaving is how to end it.
    #[error("conversation {0:?} is not quarantined; leave it instead")]
    DropRunning(String),
    /// Release of a quarantined conversation whose state row is gone.
    #[error("conversation {0:?} has no saved state to release; drop it")]
    NothingToRelease(String),
    /// Release of a conversation whose saved state still cannot be restored.
    #[error("conversation {name:?} stays quarantined: it {reason}")]
    StaysQuarantined {
        /// The conversation.
        name: String,
        /// Why it cannot be restored (a sentence whose subject is the conversation).
        reason: String,
    },
    /// A released conversation's topics could not be subscribed to again.
    #[error("cannot subscribe to {name:?}: {source}")]
    Resubscribe {
        /// The conversation.
        name: String,
        /// What failed.
        source: TransportError,
    },
    /// The quarantine record could not be removed.
    #[error("could not release {name:?}: {source}")]
    Unquarantine {
        /// The conversation.
        name: String,
        /// What failed.
        source: StorageError,
    },
    /// What was stored for a quarantined conversation could not be deleted.
    #[error("could not drop {name:?}: {source}")]
    DropFailed {
        /// The conversation.
        name: String,
        /// What failed.
        source: StateError,
    },
    /// Reading storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The runtime does not run any more; why, once its thread said.
    #[error("the node runtime is not running{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Stopped(Option<String>),
}

/// Why a conversation's state could not be written or deleted.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The state did not serialize.
    #[error(transparent)]
    Encode(#[from] ConversationError),
    /// Its MLS group could not be deleted.
    #[error(transparent)]
    Mls(#[from] MlsError),
    /// Serializing it panicked.
    #[error("serializing panicked: {0}")]
    Panicked(String),
}

/// Why creating or joining a conversation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The transaction could not start.
    #[error(transparent)]
    Begin(StorageError),
    /// The protocol could not create or join it, or serialize it.
    #[error(transparent)]
    Protocol(#[from] ConversationError),
    /// The protocol call panicked.
    #[error("panicked: {0}")]
    Panicked(String),
    /// Its first state could not be stored.
    #[error("could not save it: {0}")]
    Save(StorageError),
}
