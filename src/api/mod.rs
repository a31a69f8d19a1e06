//! The HTTP JSON API (server and client) and the seam the node runtime implements.
//!
//! The server ([`serve`]) knows nothing about the protocol: every route calls one method
//! of [`NodeControl`]. The runtime implements that trait; tests implement it with a
//! double. Routes are listed in `docs/API.md`; who may call them is [`access`].

pub mod access;
pub mod client;
pub mod server;
mod status;
pub mod types;
pub mod ui;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use demls_core::identity::MemberId;
use tokio::sync::broadcast;

pub use access::{AllowedHost, ApiAccess, ApiToken};
pub use server::{metrics_router, router, serve, serve_metrics};
use types::*;

/// Parses an Ethereum address given by a user (API body, CLI argument): `0x` and 40 hex
/// digits (the `0x` may be left out). All lower or all upper case is taken as is; mixed
/// case must be the EIP-55 checksum, so that a mistyped address is refused rather than
/// taken for another member.
pub fn parse_address(s: &str) -> Result<MemberId, String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid address {s:?}: expected 0x and 40 hex digits"
        ));
    }
    let id: MemberId = digits
        .parse()
        .map_err(|_| format!("invalid address {s:?}: expected 0x and 40 hex digits"))?;
    let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
    // Not showing the checksum of what was typed: with a typo, that would be the checksum
    // of the wrong address.
    if has_lower && has_upper && id.to_checksum()[2..] != *digits {
        return Err(format!(
            "invalid address {s:?}: its mixed case does not match the EIP-55 checksum \
             (a typo?); check the address"
        ));
    }
    Ok(id)
}

/// An API failure, mapped to an HTTP status and a `{"error": "…"}` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404: unknown conversation or proposal (or we are no longer in the conversation).
    #[error("{0}")]
    NotFound(String),
    /// 400: a malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 409: not allowed in the conversation's current state; the message says why.
    #[error("{0}")]
    Conflict(String),
    /// 500: the node failed.
    #[error("{0}")]
    Internal(String),
    /// 503: the node's runtime is not running (it stopped or does not answer).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        server::error_response(self.status(), self.to_string())
    }
}

/// A resumed event subscription (`GET /events` with `Last-Event-ID`).
pub struct ResumedEvents {
    /// The kept events after the client's last id, oldest first.
    pub backlog: Vec<EventView>,
    /// Events after that id no longer kept (the client is told it missed them).
    pub missed: u64,
    /// The live stream from after the backlog on.
    pub live: broadcast::Receiver<EventView>,
}

/// What the HTTP API needs from the node. Implemented by the node runtime.
///
/// Conversation names reaching these methods have been checked with
/// [`crate::config::check_conversation_name`]; addresses are parsed.
#[async_trait]
pub trait NodeControl: Send + Sync + 'static {
    /// Whether the node runs: `ok`, `degraded` (conversations quarantined) or `down`.
    /// The default, for doubles without a runtime, is always `ok`.
    async fn health(&self) -> HealthView {
        HealthView::ok()
    }
    /// Our identity, peer id, peers, conversations and quarantined conversations.
    /// `Unavailable` when the runtime is not running.
    async fn status(&self) -> Result<StatusView, ApiError>;
    /// The conversations we are in (quarantined ones are not).
    async fn conversations(&self) -> Result<Vec<ConversationSummary>, ApiError>;
    /// Creates a conversation with us as its first member and steward.
    async fn create(&self, name: &str) -> Result<ConversationView, ApiError>;
    /// Asks to join a conversation (state `pending_join` until welcomed).
    async fn join(&self, name: &str) -> Result<ConversationView, ApiError>;
    /// Starts leaving a conversation.
    async fn leave(&self, name: &str) -> Result<LeaveView, ApiError>;
    /// One conversation's state and members. `NotFound` once we are no longer in it.
    async fn show(&self, name: &str) -> Result<ConversationView, ApiError>;
    /// Sends a chat message.
    async fn send(&self, name: &str, text: &str) -> Result<SentView, ApiError>;
    /// The conversation's stored chat messages, oldest first.
    async fn messages(&self, name: &str) -> Result<Vec<MessageView>, ApiError>;
    /// Up to `limit` stored chat messages with `seq > after`, oldest first. The default
    /// pages through [`NodeControl::messages`].
    async fn messages_after(
        &self,
        name: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<MessageView>, ApiError> {
        Ok(self
            .messages(name)
            .await?
            .into_iter()
            .filter(|m| m.seq > after)
            .take(limit as usize)
            .collect())
    }
    /// The connected relay peers. The default, for doubles without a relay: none.
    async fn peers(&self) -> Result<Vec<PeerView>, ApiError> {
        Ok(Vec::new())
    }
    /// The log filter in force (process-wide, see [`crate::logging`]).
    fn log_level(&self) -> Result<String, ApiError> {
        crate::logging::level().ok_or_else(|| {
            ApiError::Conflict("this process's logging cannot be changed at run time".into())
        })
    }
    /// Replaces the log filter; returns the filter now in force.
    fn set_log_level(&self, level: &str) -> Result<String, ApiError> {
        crate::logging::set_level(level).map_err(ApiError::BadRequest)
    }
    /// Proposes removing `member`; returns the new proposal's id.
    async fn remove(&self, name: &str, member: MemberId) -> Result<ProposalRef, ApiError>;
    /// The conversation's proposals with their tallies.
    async fn proposals(&self, name: &str) -> Result<Vec<ProposalView>, ApiError>;
    /// Casts our vote on a proposal.
    async fn vote(&self, name: &str, proposal_id: u32, yes: bool) -> Result<VoteView, ApiError>;
    /// Puts a quarantined conversation back to work from its saved state; `Conflict` if it
    /// still cannot be restored (it stays quarantined) or is not quarantined. The default,
    /// for doubles without quarantine, finds nothing quarantined.
    async fn release(&self, name: &str) -> Result<ConversationView, ApiError> {
        Err(ApiError::NotFound(format!(
            "conversation {name:?} is not quarantined"
        )))
    }
    /// Deletes everything stored for a quarantined conversation (state, MLS group,
    /// messages); `Conflict` for a conversation that is not quarantined. The default, for
    /// doubles without quarantine, finds nothing quarantined.
    async fn drop_conversation(&self, name: &str) -> Result<DroppedView, ApiError> {
        Err(ApiError::NotFound(format!(
            "conversation {name:?} is not quarantined"
        )))
    }
    /// A new subscription to the node's event stream (all conversations).
    fn events(&self) -> broadcast::Receiver<EventView>;
    /// A subscription resuming after event id `after`: what the node kept since, then
    /// live. The default, for doubles without an event log, resumes live only.
    fn events_since(&self, after: u64) -> ResumedEvents {
        let _ = after;
        ResumedEvents {
            backlog: Vec::new(),
            missed: 0,
            live: self.events(),
        }
    }
    /// Prometheus text exposition of the node's metrics. May block briefly; the server
    /// calls it on the blocking thread pool.
    fn metrics(&self) -> String;
}
