//! Why a conversation cannot be created, joined or restored, and the name rules.

use crate::identity::IdentityError;
use crate::mls::MlsError;

/// Longest conversation name (it becomes part of a content topic).
pub const MAX_NAME_LEN: usize = 64;

/// Why a conversation cannot be created, joined or restored.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// Bad name; the text says which rule it breaks.
    #[error("{0}")]
    BadName(String),
    /// Bad configuration.
    #[error("invalid conversation config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// MLS failure.
    #[error("MLS: {0}")]
    Mls(#[from] MlsError),
    /// Our Ethereum key did not sign our key package announcement.
    #[error("cannot sign the key package announcement: {0}")]
    Sign(#[source] IdentityError),
    /// The state does not serialize (a bug: it is plain data).
    #[error("cannot serialize the conversation state: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Saved state unreadable.
    #[error("saved conversation state is unreadable: {0}")]
    Corrupt(#[from] CorruptState),
}

/// What is wrong with a saved conversation state.
#[derive(Debug, thiserror::Error)]
pub enum CorruptState {
    /// The bytes are not a saved state.
    #[error(transparent)]
    Decode(serde_json::Error),
    /// Its timings could not have been configured.
    #[error("saved timings: {0}")]
    Timings(#[source] crate::config::ConfigError),
    /// Its MLS group is not in the provider's storage.
    #[error("MLS state for {0:?} is missing from storage")]
    MissingMls(String),
}

/// Checks a conversation name: non-empty, at most 64 bytes, no `/`, no whitespace or
/// control characters (it becomes a segment of a Waku content topic). The error says
/// which rule failed.
pub fn validate_name(name: &str) -> Result<(), ConversationError> {
    let problem = if name.is_empty() {
        "a conversation name must not be empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "conversation name {name:?} is {} bytes; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )
    } else if name.contains('/') {
        format!("conversation name {name:?} must not contain '/'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        format!("conversation name {name:?} must not contain whitespace or control characters")
    } else {
        return Ok(());
    };
    Err(ConversationError::BadName(problem))
}
