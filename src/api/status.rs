//! Which HTTP status each of the node's refusals gets. The runtime says what went wrong
//! ([`NodeError`], the protocol's [`CommandError`]); only the API decides how that reads
//! over HTTP, and the text stays the error's own.

use demls_core::conversation::CommandError;

use super::ApiError;
use crate::node::NodeError;

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let text = e.to_string();
        match e {
            NodeError::Refused(c) => c.into(),
            NodeError::NotIn(_) => ApiError::NotFound(text),
            NodeError::BadName(_) | NodeError::Subscribe(_) => ApiError::BadRequest(text),
            NodeError::AlreadyIn(_)
            | NodeError::Quarantined { .. }
            | NodeError::NotQuarantined(_)
            | NodeError::DropRunning(_)
            | NodeError::NothingToRelease(_)
            | NodeError::StaysQuarantined { .. } => ApiError::Conflict(text),
            NodeError::NotSaved { .. }
            | NodeError::OpenFailed { .. }
            | NodeError::Resubscribe { .. }
            | NodeError::Unquarantine { .. }
            | NodeError::DropFailed { .. }
            | NodeError::Storage(_) => ApiError::Internal(text),
            NodeError::Stopped(_) => ApiError::Unavailable(text),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let text = e.to_string();
        match e {
            CommandError::Blocked(_)
            | CommandError::PartialFreeze
            | CommandError::AlreadyProposed(_)
            | CommandError::AlreadyVoted(_) => ApiError::Conflict(text),
            // A closed conversation is one we are no longer in.
            CommandError::UnknownProposal(_) | CommandError::Closed => ApiError::NotFound(text),
            CommandError::NotAMember(_) | CommandError::SelfRemoval | CommandError::BadText => {
                ApiError::BadRequest(text)
            }
            CommandError::Consensus(_) | CommandError::Send(_) => ApiError::Internal(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use demls_core::consensus::ConsensusError;
    use demls_core::conversation::{ConversationState, SendError};

    use super::*;

    /// Failures of the node itself are 500 and read as their cause; a conversation that
    /// closed meanwhile is one we are not in (404); a stopped runtime is 503.
    #[test]
    fn failures_and_gone_conversations_get_their_status() {
        for (e, status, text) in [
            (
                NodeError::Refused(CommandError::Send(SendError::NoGroup)),
                500,
                "no MLS group yet",
            ),
            (
                NodeError::Refused(CommandError::Consensus(ConsensusError::Expired(3))),
                500,
                "proposal 3 has expired",
            ),
            (
                NodeError::Refused(CommandError::Closed),
                404,
                "the conversation is closed",
            ),
            (
                NodeError::Refused(CommandError::Blocked(ConversationState::Freezing)),
                409,
                "not allowed while the conversation is freezing",
            ),
            (
                NodeError::Stopped(Some("it panicked".into())),
                503,
                "the node runtime is not running: it panicked",
            ),
            (
                NodeError::Stopped(None),
                503,
                "the node runtime is not running",
            ),
        ] {
            let api = ApiError::from(e);
            assert_eq!(
                (api.status().as_u16(), api.to_string().as_str()),
                (status, text)
            );
        }
    }
}
