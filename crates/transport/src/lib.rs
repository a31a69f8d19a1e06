//! # demls-transport
//!
//! How de-MLS packets move between nodes. The node sees only the [`Transport`] trait:
//! publish bytes on a conversation's subtopic, subscribe and unsubscribe conversations,
//! and a stream of inbound packets handed over at construction. [`memory`] is an
//! in-process implementation for tests; [`waku`] is a native Waku v2 relay peer on
//! rust-libp2p (see `docs/WAKU.md`).
#![warn(missing_docs)]

pub mod memory;
pub mod message;
pub mod topics;
pub mod waku;

use std::collections::BTreeMap;

use async_trait::async_trait;

pub use topics::{
    Subtopic, TopicError, autoshard, content_topic, parse_content_topic, pubsub_topic,
};

/// A packet for one of our conversations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundPacket {
    /// Conversation name.
    pub conversation: String,
    /// Which subtopic.
    pub subtopic: Subtopic,
    /// The de-MLS payload.
    pub payload: Vec<u8>,
    /// The sender's instance id (Waku `meta`).
    pub sender_instance: Vec<u8>,
    /// Sender's timestamp, ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The pubsub topic it arrived on.
    pub pubsub_topic: String,
    /// The relay's message id (gossipsub's, SHA-256 of the encoded WakuMessage); empty
    /// from transports without one (the in-memory transport).
    pub message_id: Vec<u8>,
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The conversation name cannot form a content topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// Bad configuration.
    #[error("waku config: {0}")]
    Config(String),
    /// Publishing failed (e.g. no peers yet).
    #[error("publish failed: {0}")]
    Publish(String),
    /// The relay task is gone.
    #[error("the relay has stopped")]
    Stopped,
    /// I/O (key file, listeners).
    #[error("{0}")]
    Io(String),
    /// A store query failed (no connection, timeout, protocol not supported, bad frame).
    #[error("store query failed: {0}")]
    Store(String),
}

/// Counters of one pubsub topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicStats {
    /// Messages we published.
    pub published: u64,
    /// Valid messages received.
    pub received: u64,
    /// Messages rejected, by reason.
    pub rejected: BTreeMap<String, u64>,
}

/// A snapshot of the transport's state.
#[derive(Clone, Debug, Default)]
pub struct TransportStats {
    /// Our libp2p peer id.
    pub peer_id: String,
    /// Our Waku ENR (`enr:…`); empty when discovery is off.
    pub enr: String,
    /// Our listen addresses, with `/p2p/<id>`.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub connected_peers: usize,
    /// Per pubsub topic counters.
    pub topics: BTreeMap<String, TopicStats>,
    /// Gossipsub score of each connected peer (refreshed twice a second); peers that
    /// send invalid messages go negative.
    pub peer_scores: BTreeMap<String, f64>,
    /// Each connected peer by peer id: how we are connected and what it relays.
    pub peers: BTreeMap<String, PeerInfo>,
}

/// A connected peer, as the operator's view shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// `outbound` (we dialed it) or `inbound` (it dialed us), for its first connection.
    pub direction: String,
    /// The remote address of that connection.
    pub address: String,
    /// The shards it says it relays (66/WAKU2-METADATA); empty until it answered.
    pub shards: Vec<u32>,
    /// The cluster id it reported, once it did.
    pub cluster_id: Option<u32>,
}

impl TransportStats {
    /// Prometheus text lines for the relay counters.
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP waku_relay_messages_total Relay messages by pubsub topic and outcome.\n# TYPE waku_relay_messages_total counter"
        );
        for (t, st) in &self.topics {
            let _ = writeln!(
                s,
                "waku_relay_messages_total{{topic=\"{t}\",outcome=\"published\"}} {}",
                st.published
            );
            let _ = writeln!(
                s,
                "waku_relay_messages_total{{topic=\"{t}\",outcome=\"received\"}} {}",
                st.received
            );
            for (r, n) in &st.rejected {
                let _ = writeln!(
                    s,
                    "waku_relay_messages_total{{topic=\"{t}\",outcome=\"rejected\",reason=\"{r}\"}} {n}"
                );
            }
        }
        s
    }
}

/// What the node needs from a transport.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Publishes `payload` on `conversation`'s `subtopic`.
    async fn publish(
        &self,
        conversation: &str,
        subtopic: Subtopic,
        payload: Vec<u8>,
    ) -> Result<(), TransportError>;
    /// Starts delivering `conversation`'s packets.
    async fn subscribe(&self, conversation: &str) -> Result<(), TransportError>;
    /// Stops delivering them.
    async fn unsubscribe(&self, conversation: &str) -> Result<(), TransportError>;
    /// Asks history peers for `conversation`'s messages since `since_ms` (Unix ms) and
    /// delivers those not seen before like relayed ones. Transports without history do
    /// nothing.
    async fn fetch_history(
        &self,
        _conversation: &str,
        _since_ms: u64,
    ) -> Result<(), TransportError> {
        Ok(())
    }
    /// Our instance id (travels in Waku `meta`; echoes carrying it are dropped).
    fn instance_id(&self) -> &[u8];
    /// Counters and peers.
    fn stats(&self) -> TransportStats;
}
