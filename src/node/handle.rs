//! The API seam: forwards each call to the runtime actor and waits for its answer.

use async_trait::async_trait;
use demls_core::conversation::Command;
use demls_core::identity::MemberId;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::runtime::Request;
use crate::api::types::*;
use crate::api::{ApiError, NodeControl};

/// A cloneable handle on the running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    pub(crate) events: broadcast::Sender<EventView>,
}

fn gone<T>(_: T) -> ApiError {
    ApiError::Internal("the node is shutting down".into())
}

impl NodeHandle {
    async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Request,
    ) -> Result<R, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(gone)?;
        rx.await.map_err(gone)
    }

    async fn command(&self, name: &str, cmd: Command) -> Result<Option<u32>, ApiError> {
        self.ask(|tx| Request::Command(name.to_string(), cmd, tx))
            .await?
    }
}

#[async_trait]
impl NodeControl for NodeHandle {
    async fn status(&self) -> StatusView {
        self.ask(Request::Status).await.unwrap_or_default()
    }
    async fn conversations(&self) -> Vec<ConversationSummary> {
        self.ask(Request::Conversations).await.unwrap_or_default()
    }
    async fn create(&self, name: &str) -> Result<ConversationView, ApiError> {
        self.ask(|tx| Request::Create(name.to_string(), tx)).await?
    }
    async fn join(&self, name: &str) -> Result<ConversationView, ApiError> {
        self.ask(|tx| Request::Join(name.to_string(), tx)).await?
    }
    async fn leave(&self, name: &str) -> Result<LeaveView, ApiError> {
        self.command(name, Command::Leave).await?;
        Ok(LeaveView {
            name: name.to_string(),
            leaving: true,
        })
    }
    async fn show(&self, name: &str) -> Result<ConversationView, ApiError> {
        self.ask(|tx| Request::Show(name.to_string(), tx)).await?
    }
    async fn send(&self, name: &str, text: &str) -> Result<SentView, ApiError> {
        self.command(name, Command::Chat(text.to_string())).await?;
        Ok(SentView { sent: true })
    }
    async fn messages(&self, name: &str) -> Result<Vec<MessageView>, ApiError> {
        self.ask(|tx| Request::Messages(name.to_string(), tx))
            .await?
    }
    async fn remove(&self, name: &str, member: MemberId) -> Result<ProposalRef, ApiError> {
        let id = self.command(name, Command::Remove(member)).await?;
        Ok(ProposalRef {
            proposal_id: id.unwrap_or_default(),
        })
    }
    async fn proposals(&self, name: &str) -> Result<Vec<ProposalView>, ApiError> {
        self.ask(|tx| Request::Proposals(name.to_string(), tx))
            .await?
    }
    async fn vote(&self, name: &str, proposal_id: u32, yes: bool) -> Result<VoteView, ApiError> {
        self.command(
            name,
            Command::Vote {
                id: proposal_id,
                yes,
            },
        )
        .await?;
        Ok(VoteView {
            proposal_id,
            vote: yes,
        })
    }
    fn events(&self) -> broadcast::Receiver<EventView> {
        self.events.subscribe()
    }
    fn metrics(&self) -> String {
        // The actor owns the counters; the server calls this on the blocking pool.
        let (tx, rx) = oneshot::channel();
        if self.tx.blocking_send(Request::Metrics(tx)).is_err() {
            return String::new();
        }
        rx.blocking_recv().unwrap_or_default()
    }
}
