//! A native Waku v2 relay peer (11/WAKU2-RELAY) on rust-libp2p.
//!
//! gossipsub v1.1 under `/vac/waku/relay/2.0.0`, StrictNoSign (anonymous messages),
//! message id = SHA-256 of the message bytes (as nwaku and js-waku), validation before
//! forwarding, nwaku's score thresholds (no penalty for peers sharing an address),
//! 66/WAKU2-METADATA, TCP + WebSocket, noise, yamux, identify, ping, pure-Rust DNS, and
//! peer discovery by 33/WAKU2-DISCV5 with a Waku ENR (31/WAKU2-ENR): the node dials
//! discovered relay peers until it has `peer_target` of them; 13/WAKU2-STORE v3: it
//! archives its conversations' messages, serves them, and fetches what it missed from
//! peers ([`store`]).
//! The swarm runs in its own task; [`WakuRelay`] is the handle the node uses.

mod behaviour;
mod config;
mod discovery;
pub mod enr;
mod metadata;
mod node;
mod peer_exchange;
pub mod store;
mod validation;

use libp2p::PeerId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

pub use config::{DEFAULT_PEER_TARGET, WakuConfig};
pub use discovery::PROTOCOL_ID as DISCV5_PROTOCOL_ID;
pub use enr::{Enr, WakuPeer, parse_enr};
pub use node::{relay_gossipsub, relay_topic_score_params};
pub use validation::{Rejection, validate};

use crate::{
    InboundPacket, Subtopic, Transport, TransportError, TransportStats, content_topic, pubsub_topic,
};

/// The gossipsub protocol id of Waku relay.
pub const RELAY_PROTOCOL: &str = "/vac/waku/relay/2.0.0";
/// 66/WAKU2-METADATA.
pub const METADATA_PROTOCOL: &str = "/vac/waku/metadata/1.0.0";
/// 34/WAKU2-PEER-EXCHANGE.
pub const PEER_EXCHANGE_PROTOCOL: &str = "/vac/waku/peer-exchange/2.0.0-alpha1";
/// 13/WAKU2-STORE v3.
pub const STORE_PROTOCOL: &str = "/vac/waku/store-query/3.0.0";
/// Largest WakuMessage accepted (64/WAKU2-NETWORK: 150 KB), plus protobuf framing room.
pub const MAX_MESSAGE_SIZE: usize = 150 * 1024;
/// Gossipsub score below which a peer gets no gossip (IHAVE) from us and its gossip is
/// ignored (nwaku's value). One invalid message takes a peer below it.
pub const GOSSIP_THRESHOLD: f64 = -100.0;
/// Score below which we do not flood-publish our own messages to a peer (nwaku's value).
pub const PUBLISH_THRESHOLD: f64 = -1000.0;
/// Score below which everything a peer sends is dropped: greylisted (nwaku's value).
pub const GRAYLIST_THRESHOLD: f64 = -10000.0;

pub(crate) enum Command {
    Publish {
        topic: String,
        data: Vec<u8>,
        /// The message's id, or why it was not published.
        reply: oneshot::Sender<Result<Vec<u8>, TransportError>>,
    },
    Subscribe(String),
    Unsubscribe(String),
    /// A conversation was subscribed: fetch its history from the store peers we have.
    SyncConversation(String),
    /// The protocol lacks messages of a conversation: fetch its history since this time
    /// (Unix ns) from the store peers we have.
    FetchHistory(String, i64),
    StoreQuery {
        peer: PeerId,
        request: Box<store::pb::StoreQueryRequest>,
        reply: oneshot::Sender<Result<store::pb::StoreQueryResponse, TransportError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

#[derive(Default)]
pub(crate) struct Shared {
    pub stats: TransportStats,
    /// Conversations whose packets we deliver.
    pub conversations: BTreeSet<String>,
    /// How many conversations use each pubsub topic.
    pub topic_refs: BTreeMap<String, usize>,
    /// Connected peers that told us (identify) they serve 13/WAKU2-STORE.
    pub store_peers: BTreeSet<PeerId>,
}

/// Handle on a running relay.
pub struct WakuRelay {
    cmd: mpsc::Sender<Command>,
    shared: Arc<Mutex<Shared>>,
    instance: Vec<u8>,
    cfg: WakuConfig,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WakuRelay {
    /// Starts listening, dials the bootstrap peers, and returns the inbound stream. No
    /// archive: the node neither serves nor fetches history (it can still query a store
    /// with [`WakuRelay::store_query`]).
    pub async fn start(
        cfg: WakuConfig,
    ) -> Result<(Self, mpsc::Receiver<InboundPacket>), TransportError> {
        Self::start_with_archive(cfg, None).await
    }

    /// [`WakuRelay::start`] with an archive: the messages of our conversations (received
    /// and published) are kept in it, served to peers over 13/WAKU2-STORE, and what we
    /// missed is fetched from store peers when we reach them and delivered on the inbound
    /// stream like relayed messages (a message whose hash the archive holds already is
    /// not delivered twice).
    pub async fn start_with_archive(
        cfg: WakuConfig,
        archive: Option<Arc<dyn store::MessageArchive>>,
    ) -> Result<(Self, mpsc::Receiver<InboundPacket>), TransportError> {
        cfg.validate()?;
        let instance: Vec<u8> = (0..16).map(|_| rand::random::<u8>()).collect();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (in_tx, in_rx) = mpsc::channel(4096);
        let task = node::spawn(
            cfg.clone(),
            instance.clone(),
            shared.clone(),
            (cmd_tx.downgrade(), cmd_rx),
            in_tx,
            archive,
        )
        .await?;
        Ok((
            Self {
                cmd: cmd_tx,
                shared,
                instance,
                cfg,
                task: Some(task),
            },
            in_rx,
        ))
    }

    /// The pubsub topic (shard) a conversation lives on.
    pub fn shard_topic(&self, conversation: &str) -> String {
        self.cfg.topic_for(conversation)
    }

    /// Publishes raw bytes as a relay message on `pubsub_topic`, bypassing every check:
    /// lets tests play a peer that sends malformed messages. Returns the message id.
    #[doc(hidden)]
    pub async fn publish_raw(
        &self,
        pubsub_topic: &str,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::Publish {
                topic: pubsub_topic.to_string(),
                data,
                reply,
            })
            .await
            .map_err(|_| TransportError::Stopped)?;
        rx.await.map_err(|_| TransportError::Stopped)?
    }

    /// Sends one 13/WAKU2-STORE query to a peer (over a connection we have or can dial)
    /// and returns its answer as it came (a non-2xx status included).
    pub async fn store_query(
        &self,
        peer: PeerId,
        request: store::pb::StoreQueryRequest,
    ) -> Result<store::pb::StoreQueryResponse, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Command::StoreQuery {
                peer,
                request: Box::new(request),
                reply,
            })
            .await
            .map_err(|_| TransportError::Stopped)?;
        rx.await.map_err(|_| TransportError::Stopped)?
    }

    /// Connected peers that serve 13/WAKU2-STORE (as their identify says).
    pub fn store_peers(&self) -> Vec<PeerId> {
        self.shared
            .lock()
            .map(|s| s.store_peers.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Stops the swarm.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// [`Transport::publish`], returning the relay message id the message went out under
    /// (SHA-256 of the encoded WakuMessage).
    pub async fn publish_with_id(
        &self,
        conversation: &str,
        subtopic: Subtopic,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let ct = content_topic(conversation, subtopic)?;
        let msg = crate::message::relay_message(payload, ct, self.instance.clone());
        let data = prost::Message::encode_to_vec(&msg);
        if data.len() > MAX_MESSAGE_SIZE {
            return Err(TransportError::Publish(format!(
                "message of {} bytes exceeds {MAX_MESSAGE_SIZE}",
                data.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        let topic = self.shard_topic(conversation);
        self.cmd
            .send(Command::Publish { topic, data, reply })
            .await
            .map_err(|_| TransportError::Stopped)?;
        rx.await.map_err(|_| TransportError::Stopped)?
    }
}

#[async_trait]
impl Transport for WakuRelay {
    async fn publish(
        &self,
        conversation: &str,
        subtopic: Subtopic,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        self.publish_with_id(conversation, subtopic, payload)
            .await
            .map(|_| ())
    }

    async fn subscribe(&self, conversation: &str) -> Result<(), TransportError> {
        content_topic(conversation, Subtopic::AppMsg)?;
        let topic = self.shard_topic(conversation);
        let first = {
            let mut s = self.shared.lock().map_err(|_| TransportError::Stopped)?;
            if !s.conversations.insert(conversation.to_string()) {
                return Ok(());
            }
            let n = s.topic_refs.entry(topic.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            self.cmd
                .send(Command::Subscribe(topic))
                .await
                .map_err(|_| TransportError::Stopped)?;
        }
        self.cmd
            .send(Command::SyncConversation(conversation.to_string()))
            .await
            .map_err(|_| TransportError::Stopped)?;
        Ok(())
    }

    async fn unsubscribe(&self, conversation: &str) -> Result<(), TransportError> {
        let topic = self.shard_topic(conversation);
        let last = {
            let mut s = self.shared.lock().map_err(|_| TransportError::Stopped)?;
            if !s.conversations.remove(conversation) {
                return Ok(());
            }
            let n = s.topic_refs.entry(topic.clone()).or_default();
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last
            && !self
                .cfg
                .relay_shards
                .iter()
                .any(|sh| pubsub_topic(self.cfg.cluster_id, *sh) == topic)
        {
            self.cmd
                .send(Command::Unsubscribe(topic))
                .await
                .map_err(|_| TransportError::Stopped)?;
        }
        Ok(())
    }

    async fn fetch_history(&self, conversation: &str, since_ms: u64) -> Result<(), TransportError> {
        let since_ns = i64::try_from(since_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        self.cmd
            .send(Command::FetchHistory(conversation.to_string(), since_ns))
            .await
            .map_err(|_| TransportError::Stopped)
    }

    fn instance_id(&self) -> &[u8] {
        &self.instance
    }

    fn stats(&self) -> TransportStats {
        self.shared
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }
}
