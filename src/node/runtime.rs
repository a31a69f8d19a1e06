//! The node's single actor: it owns every conversation, the MLS crypto provider and the
//! storage, and is the only place where protocol outputs meet the network and the disk.
//! Commands from the API, inbound packets from the transport and timer wake-ups are
//! handled one at a time, so each conversation sees a strict sequence of inputs, as in the
//! simulator.
//!
//! **Every protocol call is one step** ([`Runtime::step`]): a storage transaction is
//! opened, the call runs (OpenMLS writes into that transaction), the conversation's state
//! row and the chat messages the call produced are written, the transaction commits, and
//! **only then** are the call's packets published and its events emitted. If anything
//! before the commit fails, the transaction is rolled back, the conversation is reloaded
//! from what is stored, and nothing is published.
//!
//! **A panic is contained to its conversation**: the call runs under `catch_unwind`; on a
//! panic the transaction is rolled back (the stored state stays as it was before the call;
//! the possibly half-mutated state in memory is dropped), and the conversation is
//! quarantined: recorded as such in storage with the panic message, refused further
//! packets, ticks and commands, reported by `/health` and `/status` and an `error` event,
//! until the operator releases or drops it. A conversation that cannot be restored at
//! start-up is quarantined the same way instead of stopping the node.
//!
//! **Saving costs what changed**: the hash of the last state written for each
//! conversation is kept, and the row is not rewritten when the new state serializes to
//! the same bytes (a burst of junk packets writes nothing).

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use demls_core::config::{ConversationConfig, Millis};
use demls_core::conversation::{
    Command, CommandError, Conversation, Ctx, Event, LocalIdentity, Output, Subtopic,
};
use demls_core::identity::MemberId;
use demls_core::mls::MlsConversation;
use demls_transport::{InboundPacket, Transport};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::error::{NodeError, OpenError, StateError};
use super::events::EventLog;
use super::metrics::Metrics;
use super::views;
use crate::api::types::*;
use crate::storage::{NodeProvider, RustCrypto, Storage};

/// A request from the API to the actor.
pub(crate) enum Request {
    Status(oneshot::Sender<StatusView>),
    Health(oneshot::Sender<HealthView>),
    Conversations(oneshot::Sender<Vec<ConversationSummary>>),
    Create(String, oneshot::Sender<Result<ConversationView, NodeError>>),
    Join(String, oneshot::Sender<Result<ConversationView, NodeError>>),
    Show(String, oneshot::Sender<Result<ConversationView, NodeError>>),
    /// Messages of a conversation with `seq > after`, at most `limit`.
    Messages(
        String,
        u64,
        u32,
        oneshot::Sender<Result<Vec<MessageView>, NodeError>>,
    ),
    Peers(oneshot::Sender<Vec<PeerView>>),
    Proposals(
        String,
        oneshot::Sender<Result<Vec<ProposalView>, NodeError>>,
    ),
    Command(
        String,
        Command,
        oneshot::Sender<Result<Option<u32>, NodeError>>,
    ),
    Release(String, oneshot::Sender<Result<ConversationView, NodeError>>),
    Drop(String, oneshot::Sender<Result<DroppedView, NodeError>>),
    Metrics(oneshot::Sender<String>),
    /// Test only: makes the actor itself panic, outside any conversation.
    #[cfg(test)]
    Crash,
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

/// A panic payload as one line of text.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_string());
    let line = text.lines().next().unwrap_or_default().trim();
    let mut line: String = line.chars().take(400).collect();
    if line.is_empty() {
        line = "panic without a message".into();
    }
    line
}

fn hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn not_in(name: &str) -> NodeError {
    NodeError::NotIn(name.to_string())
}

/// A conversation the runtime no longer runs, and why.
#[derive(Debug, Clone)]
pub(crate) struct Quarantine {
    pub reason: String,
    pub since: u64,
}

impl Quarantine {
    /// The answer to anything asking a quarantined conversation to work.
    fn refusal(&self, name: &str) -> NodeError {
        NodeError::Quarantined {
            name: name.to_string(),
            reason: self.reason.clone(),
        }
    }
}

/// Why a step produced no output.
enum StepError {
    /// Not a conversation we run.
    NotFound,
    /// Quarantined, now or earlier; the reason.
    Quarantined(Quarantine),
    /// The protocol refused the command (its state was saved as usual).
    Refused(CommandError),
    /// The state could not be saved: nothing was published, the conversation was reloaded
    /// from storage.
    Storage(StateError),
}

impl StepError {
    fn error(self, name: &str) -> NodeError {
        match self {
            StepError::NotFound => not_in(name),
            StepError::Quarantined(q) => q.refusal(name),
            StepError::Refused(e) => e.into(),
            StepError::Storage(source) => NodeError::NotSaved {
                name: name.to_string(),
                source,
            },
        }
    }
}

/// A chat message to store with the step that produced it.
struct ChatRecord {
    sender: String,
    text: String,
    epoch: u64,
    timestamp: u64,
    /// SDS id; with the members it went to for our own.
    sds_id: Option<String>,
    recipients: Option<u32>,
}

/// Test only: runs inside the protocol call of every step (in its `catch_unwind`), with the
/// conversation's name, the operation (`packet`, `tick`, `command`), the conversation and
/// the call's context. Tests use it to make one conversation's processing panic.
#[cfg(test)]
pub(crate) type FaultHook =
    Box<dyn FnMut(&str, &str, &mut Conversation, &mut Ctx<'_, NodeProvider<'_>>) + Send>;

/// The actor.
pub(crate) struct Runtime<T: Transport> {
    pub identity: LocalIdentity,
    pub crypto: RustCrypto,
    pub storage: Storage,
    pub transport: Arc<T>,
    pub conv_config: ConversationConfig,
    pub convs: BTreeMap<String, Conversation>,
    /// Hash of the state last written for each running conversation.
    saved: BTreeMap<String, [u8; 32]>,
    /// Conversations not run, with the reason; recorded in storage too.
    pub quarantined: BTreeMap<String, Quarantine>,
    pub rng: StdRng,
    pub events: EventLog,
    pub metrics: Metrics,
    /// Whether the node is configured to reach other nodes (bootstrap peers): then it is
    /// not ready (`/health`) without a connected peer. A lone first node is ready alone.
    pub expect_peers: bool,
    /// Whether the relay is configured to listen: then it is not ready (`/health`)
    /// before it has a listen address.
    pub expect_listen: bool,
    /// When this node saw each proposal decided, by conversation and id (for views).
    decided_at: BTreeMap<String, BTreeMap<u32, Millis>>,
    /// Each running conversation's state and since when (for stuck detection).
    state_since: BTreeMap<String, (&'static str, Millis)>,
    /// When a step last failed to save: timers wait a second after that, so a broken disk
    /// does not make a due timer retry (and fail, and log) in a tight loop.
    storage_failed_at: Option<Millis>,
    #[cfg(test)]
    pub fault: Option<FaultHook>,
}

impl<T: Transport + 'static> Runtime<T> {
    pub fn new(
        identity: LocalIdentity,
        storage: Storage,
        transport: Arc<T>,
        conv_config: ConversationConfig,
        events: broadcast::Sender<EventView>,
    ) -> Self {
        Self {
            identity,
            crypto: RustCrypto::default(),
            storage,
            transport,
            conv_config,
            convs: BTreeMap::new(),
            saved: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            rng: StdRng::from_entropy(),
            events: EventLog::new(events),
            metrics: Metrics::default(),
            expect_peers: false,
            expect_listen: false,
            decided_at: BTreeMap::new(),
            state_since: BTreeMap::new(),
            storage_failed_at: None,
            #[cfg(test)]
            fault: None,
        }
    }

    fn me(&self) -> MemberId {
        self.identity.member_id()
    }

    /// Restores every saved conversation and subscribes to its topics. A conversation
    /// recorded as quarantined stays quarantined (not restored, not subscribed); one that
    /// cannot be restored is quarantined with the reason; one saved as closed has its
    /// close finished (a crash came between saving it closed and deleting it). Only a
    /// database that cannot be read at all is an error.
    pub async fn restore_all(&mut self) -> anyhow::Result<()> {
        let mut marks: BTreeMap<String, Quarantine> = self
            .storage
            .quarantined()?
            .into_iter()
            .map(|q| {
                (
                    q.name,
                    Quarantine {
                        reason: q.reason,
                        since: q.since,
                    },
                )
            })
            .collect();
        for (name, state) in self.storage.conversation_rows()? {
            if let Some(q) = marks.remove(&name) {
                tracing::warn!(
                    conversation = %name,
                    reason = %q.reason,
                    "conversation is quarantined: not resumed; release or drop it (docs/API.md)"
                );
                self.quarantined.insert(name, q);
                continue;
            }
            let restored = state
                .map_err(|e| format!("cannot be restored: {e}"))
                .and_then(|bytes| self.restore_one(&name, &bytes).map(|c| (c, bytes)));
            match restored {
                Ok((c, _)) if c.closed().is_some() => {
                    tracing::info!(conversation = %name, "finishing the close of a conversation left before the last stop");
                    if let Err(e) = self.delete_stored(&name) {
                        tracing::error!(conversation = %name, error = %e, "could not delete the state of a closed conversation; retried at the next start");
                    }
                }
                Ok((c, bytes)) => {
                    if let Err(e) = self.transport.subscribe(&name).await {
                        self.quarantine(&name, format!("cannot subscribe to its topics: {e}"));
                        continue;
                    }
                    tracing::info!(conversation = %name, epoch = c.epoch(), state = c.state().as_str(), "resumed conversation");
                    self.saved.insert(name.clone(), hash(&bytes));
                    self.convs.insert(name.clone(), c);
                    self.note_state(&name);
                }
                Err(reason) => {
                    self.quarantine(&name, reason);
                }
            }
        }
        // A record whose conversation is gone (dropped by hand): nothing left to guard.
        for name in marks.keys() {
            tracing::info!(conversation = %name, "removing a quarantine record with no saved conversation");
            if let Err(e) = self.storage.unquarantine(name) {
                tracing::warn!(conversation = %name, error = %e, "could not remove the quarantine record");
            }
        }
        Ok(())
    }

    /// Restores one saved state, a panic included in the failures.
    fn restore_one(&self, name: &str, bytes: &[u8]) -> Result<Conversation, String> {
        let provider = self.storage.provider(&self.crypto);
        match catch_unwind(AssertUnwindSafe(|| Conversation::restore(bytes, &provider))) {
            Ok(Ok(c)) if c.name() == name => Ok(c),
            Ok(Ok(c)) => Err(format!(
                "cannot be restored: the saved state is of conversation {:?}",
                c.name()
            )),
            Ok(Err(e)) => Err(format!("cannot be restored: {e}")),
            Err(p) => Err(format!("restoring it panicked: {}", panic_message(&*p))),
        }
    }

    /// Runs until `shutdown` resolves. Every step saves before it publishes, so there is
    /// nothing left to save at the end but what changed without a step (nothing, today).
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
        let names: Vec<String> = self.convs.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.save_at_shutdown(&name) {
                tracing::error!(conversation = %name, error = %e, "could not save state at shutdown");
            }
        }
        tracing::info!("node stopped; state saved");
        Ok(())
    }

    fn next_wakeup(&self) -> Duration {
        /// How long timers wait after a failed save.
        const STORAGE_BACKOFF: Millis = 1_000;
        let now = now_ms();
        if let Some(failed) = self.storage_failed_at
            && now < failed + STORAGE_BACKOFF
        {
            return Duration::from_millis(failed + STORAGE_BACKOFF - now);
        }
        let next = self.convs.values().filter_map(|c| c.next_wakeup()).min();
        match next {
            Some(t) if t <= now => Duration::from_millis(1),
            // Poll at least every few seconds: cheap, and covers clock jumps.
            Some(t) => Duration::from_millis((t - now).min(5_000)),
            None => Duration::from_secs(5),
        }
    }

    /// One protocol call on conversation `name` (`op` names it in logs and reasons), as a
    /// unit: see the module documentation. On success the output is returned **after**
    /// the commit and must then be handed to [`Runtime::deliver`].
    fn step<R>(
        &mut self,
        name: &str,
        op: &'static str,
        f: impl FnOnce(
            &mut Conversation,
            &mut Ctx<'_, NodeProvider<'_>>,
        ) -> Result<(R, Output), CommandError>,
    ) -> Result<(R, Output), StepError> {
        if let Some(q) = self.quarantined.get(name) {
            return Err(StepError::Quarantined(q.clone()));
        }
        let Some(conv) = self.convs.get_mut(name) else {
            return Err(StepError::NotFound);
        };
        self.storage
            .begin()
            .map_err(|e| StepError::Storage(e.into()))?;
        let called = {
            let provider = self.storage.provider(&self.crypto);
            let mut ctx = Ctx {
                provider: &provider,
                identity: &self.identity,
                rng: &mut self.rng,
                now: now_ms(),
            };
            #[cfg(test)]
            let fault = &mut self.fault;
            catch_unwind(AssertUnwindSafe(|| {
                #[cfg(test)]
                if let Some(hook) = fault.as_mut() {
                    hook(name, op, conv, &mut ctx);
                }
                let result = f(conv, &mut ctx);
                (result, conv.save())
            }))
        };
        let (result, state) = match called {
            Ok(r) => r,
            Err(payload) => {
                self.storage.rollback();
                let reason = format!("panicked in {op}: {}", panic_message(&*payload));
                let q = self.quarantine(name, reason);
                return Err(StepError::Quarantined(q));
            }
        };
        // What the call left in memory is the truth now, whether it succeeded or refused.
        let mut chats = Vec::new();
        let mut deliveries = Vec::new();
        if let Ok((_, out)) = &result {
            for e in &out.events {
                match e {
                    Event::Chat {
                        sender,
                        text,
                        epoch,
                        timestamp,
                        id,
                        sent_to,
                    } => chats.push(ChatRecord {
                        sender: sender.to_string(),
                        text: text.clone(),
                        epoch: *epoch,
                        timestamp: *timestamp,
                        sds_id: id.clone(),
                        recipients: *sent_to,
                    }),
                    Event::ChatDelivery {
                        id,
                        acked,
                        of,
                        done,
                    } => deliveries.push((
                        id.clone(),
                        crate::storage::Delivery {
                            acked: *acked,
                            of: *of,
                            done: *done,
                        },
                    )),
                    _ => {}
                }
            }
        }
        let saved = state
            .map_err(StateError::from)
            .and_then(|bytes| self.write_and_commit(name, &bytes, &chats, &deliveries));
        if let Err(e) = saved {
            self.storage.rollback();
            self.storage_failed_at = Some(now_ms());
            tracing::error!(conversation = %name, operation = op, error = %e, "could not save state: the change is discarded and nothing is sent");
            self.reload(name);
            return Err(StepError::Storage(e));
        }
        result.map_err(StepError::Refused)
    }

    /// Inside the open transaction: writes the state row if it changed, and the chat
    /// messages; then commits. The saved hash is updated only once the commit succeeded.
    fn write_and_commit(
        &mut self,
        name: &str,
        bytes: &[u8],
        chats: &[ChatRecord],
        deliveries: &[(String, crate::storage::Delivery)],
    ) -> Result<(), StateError> {
        let h = hash(bytes);
        let changed = self.saved.get(name) != Some(&h);
        if changed {
            self.storage.save_conversation(name, bytes)?;
        }
        for m in chats {
            self.storage.append_chat(
                name,
                &m.sender,
                &m.text,
                m.epoch,
                m.timestamp,
                m.sds_id.as_deref(),
                m.recipients,
            )?;
        }
        for (id, d) in deliveries {
            self.storage.update_delivery(name, id, *d)?;
        }
        self.storage.commit()?;
        if changed {
            self.saved.insert(name.to_string(), h);
            self.metrics.state_saves += 1;
        } else {
            self.metrics.state_saves_skipped += 1;
        }
        Ok(())
    }

    /// After a failed save: the conversation goes back to what is stored (what a restart
    /// would load), or is quarantined if even that cannot be loaded.
    fn reload(&mut self, name: &str) {
        match self.storage.load_conversation(name) {
            Ok(Some(bytes)) => match self.restore_one(name, &bytes) {
                Ok(c) => {
                    self.saved.insert(name.to_string(), hash(&bytes));
                    self.convs.insert(name.to_string(), c);
                }
                Err(reason) => {
                    self.quarantine(
                        name,
                        format!("after a failed save, its saved state {reason}"),
                    );
                }
            },
            Ok(None) => {
                self.quarantine(
                    name,
                    "after a failed save, no saved state was found".to_string(),
                );
            }
            Err(e) => {
                self.quarantine(
                    name,
                    format!("after a failed save, its saved state cannot be read: {e}"),
                );
            }
        }
    }

    /// Saves a conversation outside any protocol call (at shutdown); a no-op when its
    /// state did not change.
    fn save_at_shutdown(&mut self, name: &str) -> Result<(), StateError> {
        let Some(c) = self.convs.get(name) else {
            return Ok(());
        };
        let bytes = match catch_unwind(AssertUnwindSafe(|| c.save())) {
            Ok(r) => r?,
            Err(p) => return Err(StateError::Panicked(panic_message(&*p))),
        };
        self.storage.begin()?;
        let r = self.write_and_commit(name, &bytes, &[], &[]);
        if r.is_err() {
            self.storage.rollback();
        }
        r
    }

    /// Stops running `name`: drops it from memory (its stored state stays as last
    /// committed), records the quarantine in storage, logs it and emits an `error` event.
    /// The caller unsubscribes from its topics.
    fn quarantine(&mut self, name: &str, reason: String) -> Quarantine {
        let epoch = self
            .convs
            .get(name)
            .and_then(|c| catch_unwind(AssertUnwindSafe(|| c.epoch())).ok())
            .unwrap_or(0);
        self.convs.remove(name);
        self.saved.remove(name);
        tracing::error!(
            conversation = %name,
            %reason,
            "conversation quarantined: it gets no packets, timers or commands until released \
             or dropped (POST /conversations/{name}/release or /drop); the others run on"
        );
        if let Err(e) = self.storage.quarantine(name, &reason) {
            tracing::error!(conversation = %name, error = %e, "could not record the quarantine in storage");
        }
        self.metrics.quarantines += 1;
        let q = Quarantine {
            reason: reason.clone(),
            since: now_ms(),
        };
        self.quarantined.insert(name.to_string(), q.clone());
        self.events.publish(views::event_view(
            name,
            epoch,
            &Event::Error {
                operation: "quarantine",
                message: reason,
            },
        ));
        q
    }

    /// Deletes everything stored for `name` in one transaction: what is left of its MLS
    /// group, its state row, messages and quarantine record. MLS state that cannot even be
    /// read is left behind (with a warning) rather than keeping the rest.
    fn delete_stored(&mut self, name: &str) -> Result<(), StateError> {
        self.storage.begin()?;
        let provider = self.storage.provider(&self.crypto);
        let mls = catch_unwind(AssertUnwindSafe(|| {
            match MlsConversation::load(&provider, name) {
                Ok(Some(g)) => g.delete(&provider).map_err(StateError::from),
                Ok(None) => Ok(()),
                Err(e) => {
                    tracing::warn!(conversation = %name, error = %e, "its MLS state cannot be read; left in place");
                    Ok(())
                }
            }
        }))
        .unwrap_or_else(|p| {
            tracing::warn!(conversation = %name, panic = %panic_message(&*p), "reading its MLS state panicked; left in place");
            Ok(())
        });
        let r = mls
            .and_then(|()| Ok(self.storage.delete_conversation(name)?))
            .and_then(|_| Ok(self.storage.commit()?));
        if r.is_err() {
            self.storage.rollback();
        }
        r
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
            match self.step(&name, "tick", |c, ctx| Ok(((), c.tick(ctx)))) {
                Ok(((), out)) => self.deliver(&name, out).await,
                Err(e) => self.after_failed_step(&name, &e).await,
            }
        }
    }

    async fn on_packet(&mut self, pkt: InboundPacket) {
        let name = pkt.conversation.clone();
        if self.quarantined.contains_key(&name) {
            self.metrics.quarantined_packets += 1;
            return;
        }
        self.metrics.packets_in += 1;
        let sub = from_wire(pkt.subtopic);
        match self.step(&name, "packet", |c, ctx| {
            Ok(((), c.handle_packet(ctx, sub, &pkt.payload)))
        }) {
            Ok(((), out)) => self.deliver(&name, out).await,
            Err(e) => self.after_failed_step(&name, &e).await,
        }
    }

    /// Unsubscribes from a conversation a step just quarantined.
    async fn after_failed_step(&mut self, name: &str, e: &StepError) {
        if let StepError::Quarantined(_) = e {
            let _ = self.transport.unsubscribe(name).await;
        }
    }

    /// Hands a committed step's output out: publishes its packets, emits its events, and
    /// finishes the close of a conversation the step closed.
    async fn deliver(&mut self, name: &str, out: Output) {
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
        if let Some(since) = out.history_since
            && let Err(e) = self.transport.fetch_history(name, since).await
        {
            tracing::warn!(conversation = %name, error = %e, "history fetch not started");
        }
        let epoch = self.convs.get(name).map(|c| c.epoch()).unwrap_or(0);
        for e in out.events {
            self.metrics.count_event(&e);
            match &e {
                Event::Rejected {
                    what,
                    cause,
                    reason,
                } => {
                    tracing::debug!(conversation = %name, what = what.as_str(), cause = cause.as_str(), %reason, "rejected inbound");
                }
                Event::ProposalDecided { id, .. } => self.note_decided(name, *id),
                _ => {}
            }
            self.events.publish(views::event_view(name, epoch, &e));
        }
        self.note_state(name);
        if let Some(reason) = self.convs.get(name).and_then(|c| c.closed()) {
            // Saved as closed by the step (with its MLS state deleted, in the same
            // transaction); now delete the row. A crash in between is finished at start.
            tracing::info!(conversation = %name, ?reason, "left conversation");
            self.convs.remove(name);
            self.saved.remove(name);
            self.decided_at.remove(name);
            self.state_since.remove(name);
            let _ = self.transport.unsubscribe(name).await;
            if let Err(e) = self.delete_stored(name) {
                tracing::error!(conversation = %name, error = %e, "could not delete the state of the closed conversation; retried at the next start");
            }
        }
    }

    /// Records when proposal `id` of `name` was decided (first time only), forgetting
    /// proposals the conversation no longer tracks once the table grows.
    fn note_decided(&mut self, name: &str, id: u32) {
        let now = now_ms();
        let table = self.decided_at.entry(name.to_string()).or_default();
        table.entry(id).or_insert(now);
        if table.len() > 600
            && let Some(c) = self.convs.get(name)
        {
            let known: std::collections::BTreeSet<u32> = c.proposals().map(|p| p.id).collect();
            table.retain(|id, _| known.contains(id));
        }
    }

    /// Records the state of `name` and since when, if it changed.
    fn note_state(&mut self, name: &str) {
        let Some(c) = self.convs.get(name) else {
            self.state_since.remove(name);
            return;
        };
        let state = c.state().as_str();
        match self.state_since.get(name) {
            Some((s, _)) if *s == state => {}
            _ => {
                self.state_since.insert(name.to_string(), (state, now_ms()));
            }
        }
    }

    /// How long a conversation may stay out of `working` before `/health` calls it
    /// stuck: four rounds of the slowest path (inactivity, freeze and a vote timing
    /// out), at least a minute.
    fn stuck_after(&self) -> Millis {
        let c = &self.conv_config;
        let round = c
            .commit_inactivity
            .max(c.recovery_inactivity)
            .saturating_add(c.freeze)
            .saturating_add(c.consensus_timeout);
        round.saturating_mul(4).max(60_000)
    }

    /// The readiness report of `/health`.
    fn health(&self) -> HealthView {
        let now = now_ms();
        let limit = self.stuck_after();
        let stuck = self
            .state_since
            .iter()
            .filter(|(n, (s, since))| {
                *s != "working" && now.saturating_sub(*since) > limit && self.convs.contains_key(*n)
            })
            .map(|(n, (s, since))| (n.as_str(), *s, *since));
        views::health(&views::Readiness {
            stats: &self.transport.stats(),
            expect_listen: self.expect_listen,
            expect_peers: self.expect_peers,
            stuck: stuck.collect(),
            quarantined: &self.quarantined,
            now,
        })
    }

    /// Creates or joins `name` (start-up entries and API calls), as one step: nothing is
    /// stored or sent unless all of it is.
    pub async fn open(&mut self, name: &str, create: bool) -> Result<ConversationView, NodeError> {
        if let Some(q) = self.quarantined.get(name) {
            return Err(q.refusal(name));
        }
        if self.convs.contains_key(name) {
            return Err(NodeError::AlreadyIn(name.to_string()));
        }
        demls_core::conversation::validate_name(name).map_err(NodeError::BadName)?;
        self.transport
            .subscribe(name)
            .await
            .map_err(NodeError::Subscribe)?;
        let made = self.open_step(name, create);
        let (conv, out) = match made {
            Ok(x) => x,
            Err(source) => {
                let _ = self.transport.unsubscribe(name).await;
                return Err(NodeError::OpenFailed {
                    doing: if create { "creating" } else { "joining" },
                    name: name.to_string(),
                    source,
                });
            }
        };
        self.convs.insert(name.to_string(), conv);
        self.deliver(name, out).await;
        self.view(name)
    }

    fn open_step(&mut self, name: &str, create: bool) -> Result<(Conversation, Output), OpenError> {
        self.storage.begin().map_err(OpenError::Begin)?;
        let made = {
            let cfg = self.conv_config.clone();
            let provider = self.storage.provider(&self.crypto);
            let mut ctx = Ctx {
                provider: &provider,
                identity: &self.identity,
                rng: &mut self.rng,
                now: now_ms(),
            };
            catch_unwind(AssertUnwindSafe(|| {
                let (conv, out) = if create {
                    Conversation::create(name, cfg, &mut ctx)
                } else {
                    Conversation::join(name, cfg, &mut ctx)
                }?;
                let bytes = conv.save()?;
                Ok::<_, OpenError>((conv, out, bytes))
            }))
            .unwrap_or_else(|p| Err(OpenError::Panicked(panic_message(&*p))))
        };
        let r = made.and_then(|(conv, out, bytes)| {
            self.storage
                .save_conversation(name, &bytes)
                .and_then(|()| self.storage.commit())
                .map_err(OpenError::Save)?;
            self.saved.insert(name.to_string(), hash(&bytes));
            self.metrics.state_saves += 1;
            Ok((conv, out))
        });
        if r.is_err() {
            self.storage.rollback();
        }
        r
    }

    /// Puts a quarantined conversation back to work from its saved state. If that state
    /// still cannot be restored it stays quarantined (with the new reason).
    async fn release(&mut self, name: &str) -> Result<ConversationView, NodeError> {
        if !self.quarantined.contains_key(name) {
            return Err(if self.convs.contains_key(name) {
                NodeError::NotQuarantined(name.to_string())
            } else {
                not_in(name)
            });
        }
        let Some(bytes) = self.storage.load_conversation(name)? else {
            return Err(NodeError::NothingToRelease(name.to_string()));
        };
        let c = match self.restore_one(name, &bytes) {
            Ok(c) => c,
            Err(reason) => {
                let q = self.quarantine(name, reason);
                return Err(NodeError::StaysQuarantined {
                    name: name.to_string(),
                    reason: q.reason,
                });
            }
        };
        self.transport
            .subscribe(name)
            .await
            .map_err(|source| NodeError::Resubscribe {
                name: name.to_string(),
                source,
            })?;
        self.storage
            .unquarantine(name)
            .map_err(|source| NodeError::Unquarantine {
                name: name.to_string(),
                source,
            })?;
        self.quarantined.remove(name);
        tracing::warn!(conversation = %name, epoch = c.epoch(), "quarantine released: the conversation runs again from its saved state");
        let closed = c.closed().is_some();
        self.saved.insert(name.to_string(), hash(&bytes));
        self.convs.insert(name.to_string(), c);
        self.note_state(name);
        if closed {
            self.deliver(name, Output::default()).await;
            return Err(not_in(name));
        }
        self.view(name)
    }

    /// Deletes everything stored for a quarantined conversation.
    async fn drop_quarantined(&mut self, name: &str) -> Result<DroppedView, NodeError> {
        if !self.quarantined.contains_key(name) {
            return Err(if self.convs.contains_key(name) {
                NodeError::DropRunning(name.to_string())
            } else {
                not_in(name)
            });
        }
        self.delete_stored(name)
            .map_err(|source| NodeError::DropFailed {
                name: name.to_string(),
                source,
            })?;
        self.quarantined.remove(name);
        let _ = self.transport.unsubscribe(name).await;
        tracing::warn!(conversation = %name, "quarantined conversation dropped: its state and messages are deleted");
        Ok(views::dropped(name))
    }

    fn view(&self, name: &str) -> Result<ConversationView, NodeError> {
        if let Some(q) = self.quarantined.get(name) {
            return Err(q.refusal(name));
        }
        let c = self.convs.get(name).ok_or_else(|| not_in(name))?;
        Ok(views::conversation_view(c))
    }

    fn proposal_views(&self, name: &str) -> Result<Vec<ProposalView>, NodeError> {
        self.view(name)?;
        let c = self.convs.get(name).ok_or_else(|| not_in(name))?;
        Ok(views::proposals(c, self.decided_at.get(name)))
    }

    async fn on_request(&mut self, req: Request) {
        match req {
            Request::Status(tx) => {
                let _ = tx.send(views::status(
                    self.me(),
                    &self.transport.stats(),
                    self.convs.keys(),
                    &self.quarantined,
                ));
            }
            Request::Health(tx) => {
                let _ = tx.send(self.health());
            }
            Request::Peers(tx) => {
                let _ = tx.send(views::peers(&self.transport.stats()));
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
            Request::Messages(name, after, limit, tx) => {
                // Stored messages stay readable while quarantined (before a drop).
                let r = if self.convs.contains_key(&name) || self.quarantined.contains_key(&name) {
                    self.storage
                        .messages_after(&name, after, limit)
                        .map(|v| v.into_iter().map(views::message).collect())
                        .map_err(NodeError::from)
                } else {
                    Err(not_in(&name))
                };
                let _ = tx.send(r);
            }
            Request::Proposals(name, tx) => {
                let _ = tx.send(self.proposal_views(&name));
            }
            Request::Command(name, cmd, tx) => {
                let r = self.step(&name, "command", |c, ctx| match cmd {
                    Command::Chat(text) => c.send_chat(ctx, &text).map(|o| (None, o)),
                    Command::Remove(m) => c.propose_removal(ctx, m).map(|(id, o)| (Some(id), o)),
                    Command::Vote { id, yes } => c.vote(ctx, id, yes).map(|o| (None, o)),
                    Command::Leave => c.leave(ctx).map(|o| (None, o)),
                });
                let r = match r {
                    Ok((id, out)) => {
                        self.deliver(&name, out).await;
                        Ok(id)
                    }
                    Err(e) => {
                        self.after_failed_step(&name, &e).await;
                        Err(e.error(&name))
                    }
                };
                let _ = tx.send(r);
            }
            Request::Release(name, tx) => {
                let r = self.release(&name).await;
                let _ = tx.send(r);
            }
            Request::Drop(name, tx) => {
                let r = self.drop_quarantined(&name).await;
                let _ = tx.send(r);
            }
            Request::Metrics(tx) => {
                let _ = tx.send(self.metrics.render(
                    &self.convs,
                    self.quarantined.len(),
                    &self.transport.stats(),
                ));
            }
            #[cfg(test)]
            Request::Crash => panic!("injected runtime crash"),
        }
    }
}
