//! The node's single actor: it owns every conversation, the MLS provider and the storage,
//! and is the only place where protocol outputs meet the network and the disk. Commands
//! from the API, inbound packets from the transport and timer wake-ups are handled one at
//! a time, so each conversation sees a strict sequence of inputs, as in the simulator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use demls_core::config::{ConversationConfig, Millis};
use demls_core::conversation::{
    Command, CommandError, Conversation, Ctx, Event, LocalIdentity, Output, Subtopic,
};
use demls_core::identity::MemberId;
use demls_transport::{InboundPacket, Transport};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::metrics::Metrics;
use super::views;
use crate::api::ApiError;
use crate::api::types::*;
use crate::storage::{NodeProvider, Storage};

/// A request from the API to the actor.
pub(crate) enum Request {
    Status(oneshot::Sender<StatusView>),
    Conversations(oneshot::Sender<Vec<ConversationSummary>>),
    Create(String, oneshot::Sender<Result<ConversationView, ApiError>>),
    Join(String, oneshot::Sender<Result<ConversationView, ApiError>>),
    Show(String, oneshot::Sender<Result<ConversationView, ApiError>>),
    Messages(String, oneshot::Sender<Result<Vec<MessageView>, ApiError>>),
    Proposals(String, oneshot::Sender<Result<Vec<ProposalView>, ApiError>>),
    Command(
        String,
        Command,
        oneshot::Sender<Result<Option<u32>, ApiError>>,
    ),
    Metrics(oneshot::Sender<String>),
}

pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

fn to_wire(s: Subtopic) -> demls_transport::Subtopic {
    match s {
        Subtopic::AppMsg => demls_transport::Subtopic::AppMsg,
        Subtopic::Welcome => demls_transport::Subtopic::Welcome,
    }
}

fn from_wire(s: demls_transport::Subtopic) -> Subtopic {
    match s {
        demls_transport::Subtopic::AppMsg => Subtopic::AppMsg,
        demls_transport::Subtopic::Welcome => Subtopic::Welcome,
    }
}

fn cmd_error(e: CommandError) -> ApiError {
    match e {
        CommandError::Blocked(_)
        | CommandError::PartialFreeze
        | CommandError::AlreadyProposed(_)
        | CommandError::AlreadyVoted(_) => ApiError::Conflict(e.to_string()),
        CommandError::UnknownProposal(_) => ApiError::NotFound(e.to_string()),
        CommandError::NotAMember(_) | CommandError::SelfRemoval | CommandError::BadText => {
            ApiError::BadRequest(e.to_string())
        }
        CommandError::Closed => ApiError::NotFound(e.to_string()),
        CommandError::Internal(_) => ApiError::Internal(e.to_string()),
    }
}

/// The actor.
pub(crate) struct Runtime<T: Transport> {
    pub identity: LocalIdentity,
    pub provider: NodeProvider,
    pub storage: Storage,
    pub transport: Arc<T>,
    pub conv_config: ConversationConfig,
    pub convs: BTreeMap<String, Conversation>,
    pub rng: StdRng,
    pub events: broadcast::Sender<EventView>,
    pub metrics: Metrics,
}

impl<T: Transport + 'static> Runtime<T> {
    pub fn new(
        identity: LocalIdentity,
        provider: NodeProvider,
        storage: Storage,
        transport: Arc<T>,
        conv_config: ConversationConfig,
        events: broadcast::Sender<EventView>,
    ) -> Self {
        Self {
            identity,
            provider,
            storage,
            transport,
            conv_config,
            convs: BTreeMap::new(),
            rng: StdRng::from_entropy(),
            events,
            metrics: Metrics::default(),
        }
    }

    fn me(&self) -> MemberId {
        self.identity.member_id()
    }

    /// Restores every saved conversation and subscribes to its topics.
    pub async fn restore_all(&mut self) -> anyhow::Result<()> {
        for (name, bytes) in self.storage.load_conversations()? {
            match Conversation::restore(&bytes, &self.provider) {
                Ok(c) if c.closed().is_none() => {
                    tracing::info!(conversation = %name, epoch = c.epoch(), state = c.state().as_str(), "resumed conversation");
                    self.transport.subscribe(&name).await?;
                    self.convs.insert(name, c);
                }
                Ok(_) => {}
                Err(e) => {
                    anyhow::bail!("conversation {name:?} in the database cannot be restored: {e}")
                }
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves; state is saved after every input.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut inbound: mpsc::Receiver<InboundPacket>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            let wake = self.next_wakeup();
            let sleep = tokio::time::sleep(wake);
            tokio::select! {
                _ = &mut shutdown => break,
                Some(req) = requests.recv() => self.on_request(req).await,
                Some(pkt) = inbound.recv() => self.on_packet(pkt).await,
                _ = sleep => self.on_tick().await,
            }
        }
        for (name, c) in &self.convs {
            if let Err(e) = c.save().map_err(|e| e.to_string()).and_then(|b| {
                self.storage
                    .save_conversation(name, &b)
                    .map_err(|e| e.to_string())
            }) {
                tracing::error!(conversation = %name, error = %e, "could not save state at shutdown");
            }
        }
        tracing::info!("node stopped; state saved");
        Ok(())
    }

    fn next_wakeup(&self) -> Duration {
        let now = now_ms();
        let next = self.convs.values().filter_map(|c| c.next_wakeup()).min();
        match next {
            Some(t) if t <= now => Duration::from_millis(1),
            // Poll at least every few seconds: cheap, and covers clock jumps.
            Some(t) => Duration::from_millis((t - now).min(5_000)),
            None => Duration::from_secs(5),
        }
    }

    /// Runs one protocol call on conversation `name` with a fresh context.
    fn with_conv<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Conversation, &mut Ctx<'_, NodeProvider>) -> R,
    ) -> Option<R> {
        let conv = self.convs.get_mut(name)?;
        let mut ctx = Ctx {
            provider: &self.provider,
            identity: &self.identity,
            rng: &mut self.rng,
            now: now_ms(),
        };
        Some(f(conv, &mut ctx))
    }

    async fn on_tick(&mut self) {
        let now = now_ms();
        let due: Vec<String> = self
            .convs
            .iter()
            .filter(|(_, c)| c.next_wakeup().is_some_and(|t| t <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if let Some(out) = self.with_conv(&name, |c, ctx| c.tick(ctx)) {
                self.after(&name, out).await;
            }
        }
    }

    async fn on_packet(&mut self, pkt: InboundPacket) {
        self.metrics.packets_in += 1;
        let name = pkt.conversation.clone();
        let sub = from_wire(pkt.subtopic);
        if let Some(out) = self.with_conv(&name, |c, ctx| c.handle_packet(ctx, sub, &pkt.payload)) {
            self.after(&name, out).await;
        }
    }

    /// Publishes, records events, persists, and drops closed conversations.
    async fn after(&mut self, name: &str, out: Output) {
        for p in out.packets {
            self.metrics.packets_out += 1;
            if let Err(e) = self
                .transport
                .publish(name, to_wire(p.subtopic), p.payload)
                .await
            {
                tracing::warn!(conversation = %name, error = %e, "publish failed");
                self.metrics.publish_errors += 1;
            }
        }
        let epoch = self.convs.get(name).map(|c| c.epoch()).unwrap_or(0);
        for e in out.events {
            self.metrics.count_event(&e);
            if let Event::Chat {
                sender,
                text,
                epoch,
                timestamp,
            } = &e
                && let Err(err) =
                    self.storage
                        .append_message(name, &sender.to_string(), text, *epoch, *timestamp)
            {
                tracing::error!(conversation = %name, error = %err, "could not store message");
            }
            if let Event::Rejected { what, reason } = &e {
                tracing::debug!(conversation = %name, what, %reason, "rejected inbound");
            }
            let _ = self.events.send(views::event_view(name, epoch, &e));
        }
        let closed = self.convs.get(name).and_then(|c| c.closed());
        if let Some(reason) = closed {
            tracing::info!(conversation = %name, ?reason, "left conversation");
            self.convs.remove(name);
            let _ = self.transport.unsubscribe(name).await;
            if let Err(e) = self.storage.delete_conversation(name) {
                tracing::error!(conversation = %name, error = %e, "could not delete state");
            }
        } else if let Some(c) = self.convs.get(name)
            && let Err(e) = c.save().map_err(|e| e.to_string()).and_then(|b| {
                self.storage
                    .save_conversation(name, &b)
                    .map_err(|e| e.to_string())
            })
        {
            tracing::error!(conversation = %name, error = %e, "could not save state");
        }
    }

    /// Creates or joins `name` (start-up entries and API calls).
    pub async fn open(&mut self, name: &str, create: bool) -> Result<ConversationView, ApiError> {
        if self.convs.contains_key(name) {
            return Err(ApiError::Conflict(format!(
                "already in conversation {name:?}"
            )));
        }
        demls_core::conversation::validate_name(name)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.transport
            .subscribe(name)
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let cfg = self.conv_config.clone();
        let mut ctx = Ctx {
            provider: &self.provider,
            identity: &self.identity,
            rng: &mut self.rng,
            now: now_ms(),
        };
        let made = if create {
            Conversation::create(name, cfg, &mut ctx)
        } else {
            Conversation::join(name, cfg, &mut ctx)
        };
        let (conv, out) = made.map_err(|e| ApiError::Internal(e.to_string()))?;
        self.convs.insert(name.to_string(), conv);
        self.after(name, out).await;
        self.view(name)
    }

    fn view(&self, name: &str) -> Result<ConversationView, ApiError> {
        let c = self
            .convs
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("not in conversation {name:?}")))?;
        Ok(views::conversation_view(c))
    }

    async fn on_request(&mut self, req: Request) {
        match req {
            Request::Status(tx) => {
                let stats = self.transport.stats();
                let _ = tx.send(StatusView {
                    address: self.me().to_string(),
                    peer_id: stats.peer_id.clone(),
                    peers: stats.connected_peers,
                    conversations: self.convs.keys().cloned().collect(),
                    listen: stats.listen_addrs.clone(),
                });
            }
            Request::Conversations(tx) => {
                let _ = tx.send(self.convs.values().map(views::summary).collect());
            }
            Request::Create(name, tx) => {
                let r = self.open(&name, true).await;
                let _ = tx.send(r);
            }
            Request::Join(name, tx) => {
                let r = self.open(&name, false).await;
                let _ = tx.send(r);
            }
            Request::Show(name, tx) => {
                let _ = tx.send(self.view(&name));
            }
            Request::Messages(name, tx) => {
                let r = if self.convs.contains_key(&name) {
                    self.storage
                        .messages(&name)
                        .map(|v| {
                            v.into_iter()
                                .map(|m| MessageView {
                                    sender: m.sender,
                                    text: m.text,
                                    epoch: m.epoch,
                                    timestamp: m.timestamp,
                                })
                                .collect()
                        })
                        .map_err(|e| ApiError::Internal(e.to_string()))
                } else {
                    Err(ApiError::NotFound(format!("not in conversation {name:?}")))
                };
                let _ = tx.send(r);
            }
            Request::Proposals(name, tx) => {
                let r = self
                    .convs
                    .get(&name)
                    .map(views::proposals)
                    .ok_or_else(|| ApiError::NotFound(format!("not in conversation {name:?}")));
                let _ = tx.send(r);
            }
            Request::Command(name, cmd, tx) => {
                let sent_text = match &cmd {
                    Command::Chat(t) => Some(t.clone()),
                    _ => None,
                };
                let r = self.with_conv(&name, |c, ctx| match cmd {
                    Command::Chat(text) => c.send_chat(ctx, &text).map(|o| (None, o)),
                    Command::Remove(m) => c.propose_removal(ctx, m).map(|(id, o)| (Some(id), o)),
                    Command::Vote { id, yes } => c.vote(ctx, id, yes).map(|o| (None, o)),
                    Command::Leave => c.leave(ctx).map(|o| (None, o)),
                });
                let r = match r {
                    None => Err(ApiError::NotFound(format!("not in conversation {name:?}"))),
                    Some(Err(e)) => Err(cmd_error(e)),
                    Some(Ok((id, out))) => {
                        if let Some(text) = sent_text {
                            // Our own messages belong in the history too.
                            let epoch = self.convs.get(&name).map(|c| c.epoch()).unwrap_or(0);
                            if let Err(e) = self.storage.append_message(
                                &name,
                                &self.me().to_string(),
                                &text,
                                epoch,
                                now_ms(),
                            ) {
                                tracing::error!(conversation = %name, error = %e, "could not store message");
                            }
                        }
                        self.after(&name, out).await;
                        Ok(id)
                    }
                };
                let _ = tx.send(r);
            }
            Request::Metrics(tx) => {
                let _ = tx.send(self.metrics.render(&self.convs, &self.transport.stats()));
            }
        }
    }
}
