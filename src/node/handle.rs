//! The API seam: forwards each call to the runtime actor and waits for its answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use demls_core::conversation::Command;
use demls_core::identity::MemberId;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::error::NodeError;
use super::runtime::Request;
use super::views;
use crate::api::types::*;
use crate::api::{ApiError, NodeControl};

/// How long `/health` waits for the runtime before calling it down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the runtime thread still runs; set once, with the reason, when it ends.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    stopped: Mutex<Option<String>>,
}

impl Liveness {
    /// Records that the runtime ended (the first reason wins).
    pub(crate) fn stop(&self, reason: String) {
        let mut g = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        g.get_or_insert(reason);
    }

    /// Why the runtime ended, once it has.
    pub(crate) fn stopped(&self) -> Option<String> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A cloneable handle on the running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    pub(crate) events: super::events::EventLog,
    pub(crate) liveness: Arc<Liveness>,
}

impl NodeHandle {
    /// Why the runtime is not answering. Its thread records the reason just after its
    /// request queue closes, so wait a moment for it.
    async fn gone(&self) -> NodeError {
        for _ in 0..50 {
            if let Some(reason) = self.liveness.stopped() {
                return NodeError::Stopped(Some(reason));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        NodeError::Stopped(None)
    }

    async fn ask<R>(
        &self,
        make: impl FnOnce(oneshot::Sender<R>) -> Request,
    ) -> Result<R, NodeError> {
        if let Some(reason) = self.liveness.stopped() {
            return Err(NodeError::Stopped(Some(reason)));
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return Err(self.gone().await);
        }
        match rx.await {
            Ok(r) => Ok(r),
            Err(_) => Err(self.gone().await),
        }
    }

    async fn command(&self, name: &str, cmd: Command) -> Result<Option<u32>, NodeError> {
        self.ask(|tx| Request::Command(name.to_string(), cmd, tx))
            .await?
    }

    /// Test only: makes the runtime thread panic outside any conversation.
    #[cfg(test)]
    pub(crate) async fn crash_for_test(&self) {
        let _ = self.tx.send(Request::Crash).await;
    }
}

#[async_trait]
impl NodeControl for NodeHandle {
    async fn health(&self) -> HealthView {
        match tokio::time::timeout(HEALTH_TIMEOUT, self.ask(Request::Health)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => HealthView::down(e.to_string()),
            Err(_) => HealthView::down(format!(
                "the node runtime has not answered for {HEALTH_TIMEOUT:?} (busy or hung)"
            )),
        }
    }
    async fn status(&self) -> Result<StatusView, ApiError> {
        Ok(self.ask(Request::Status).await?)
    }
    async fn conversations(&self) -> Result<Vec<ConversationSummary>, ApiError> {
        Ok(self.ask(Request::Conversations).await?)
    }
    async fn create(&self, name: &str) -> Result<ConversationView, ApiError> {
        Ok(self
            .ask(|tx| Request::Create(name.to_string(), tx))
            .await??)
    }
    async fn join(&self, name: &str) -> Result<ConversationView, ApiError> {
        Ok(self.ask(|tx| Request::Join(name.to_string(), tx)).await??)
    }
    async fn leave(&self, name: &str) -> Result<LeaveView, ApiError> {
        self.command(name, Command::Leave).await?;
        Ok(views::leaving_view(name))
    }
    async fn show(&self, name: &str) -> Result<ConversationView, ApiError> {
        Ok(self.ask(|tx| Request::Show(name.to_string(), tx)).await??)
    }
    async fn send(&self, name: &str, text: &str) -> Result<SentView, ApiError> {
        self.command(name, Command::Chat(text.to_string())).await?;
        Ok(views::sent())
    }
    async fn messages(&self, name: &str) -> Result<Vec<MessageView>, ApiError> {
        self.messages_after(name, 0, u32::MAX).await
    }
    async fn messages_after(
        &self,
        name: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<MessageView>, ApiError> {
        Ok(self
            .ask(|tx| Request::Messages(name.to_string(), after, limit, tx))
            .await??)
    }
    async fn peers(&self) -> Result<Vec<PeerView>, ApiError> {
        Ok(self.ask(Request::Peers).await?)
    }
    async fn remove(&self, name: &str, member: MemberId) -> Result<ProposalRef, ApiError> {
        let id = self.command(name, Command::Remove(member)).await?;
        Ok(views::proposal_ref(id.unwrap_or_default()))
    }
    async fn proposals(&self, name: &str) -> Result<Vec<ProposalView>, ApiError> {
        Ok(self
            .ask(|tx| Request::Proposals(name.to_string(), tx))
            .await??)
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
        Ok(views::vote(proposal_id, yes))
    }
    async fn release(&self, name: &str) -> Result<ConversationView, ApiError> {
        Ok(self
            .ask(|tx| Request::Release(name.to_string(), tx))
            .await??)
    }
    async fn drop_conversation(&self, name: &str) -> Result<DroppedView, ApiError> {
        Ok(self.ask(|tx| Request::Drop(name.to_string(), tx)).await??)
    }
    fn events(&self) -> broadcast::Receiver<EventView> {
        self.events.subscribe()
    }
    fn events_since(&self, after: u64) -> crate::api::ResumedEvents {
        let r = self.events.since(after);
        crate::api::ResumedEvents {
            backlog: r.backlog,
            missed: r.missed,
            live: r.rx,
        }
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
