//! 13/WAKU2-STORE v3 (`/vac/waku/store-query/3.0.0`): history from peers.
//!
//! Every node keeps the Waku messages of its conversations in a [`MessageArchive`] (the
//! node's is SQLite, `src/storage/archive.rs`; [`MemoryArchive`] is an in-process one),
//! keyed by the 14/WAKU2-MESSAGE deterministic hash, and answers `StoreQueryRequest`s
//! from it ([`answer`]): content-filtered queries (pubsub topic + content topics, time
//! range), hash lookups, presence queries (`include_data = false`), and pagination in
//! both directions, with the spec's ordering (timestamp, then hash). Messages go on the
//! wire varint-length-prefixed, as the other request-response protocols here and nwaku.
//!
//! Everything a peer sends is hostile: requests above [`MAX_REQUEST_SIZE`] and responses
//! above [`MAX_RESPONSE_SIZE`] are refused before they are read, a request that breaks
//! the spec's rules gets status 400, too many from one peer 429 ([`RateLimiter`]), and an
//! answer holds at most [`MAX_PAGE_SIZE`] entries and [`RESPONSE_BYTE_BUDGET`] bytes. The
//! client side ([`verify_entry`]) recomputes the hash of every message it is given and
//! drops those that do not match what it asked for.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Duration;

use libp2p::PeerId;
use prost::Message;
use tokio::time::Instant;

use super::MAX_MESSAGE_SIZE;
use super::metadata::ProtoCodec;
use crate::message::{WakuMessage, message_hash};

/// The generated types' module tree: prost names the message type of another package by
/// its relative path (`super::super::message::v1::WakuMessage`).
#[allow(missing_docs)]
mod proto {
    pub mod waku {
        pub mod message {
            pub mod v1 {
                pub use crate::message::pb::*;
            }
        }
        pub mod store {
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/waku.store.v3.rs"));
            }
        }
    }
}

/// Generated from `proto/waku/store.proto` (the spec's field numbers).
pub use proto::waku::store::v3 as pb;

/// Page size when a request sets none, or more than [`MAX_PAGE_SIZE`]: the spec says a
/// store then applies its own maximum.
pub const DEFAULT_PAGE_SIZE: usize = MAX_PAGE_SIZE;
/// Most entries in one response (nwaku's maximum too).
pub const MAX_PAGE_SIZE: usize = 100;
/// Largest request read (a lookup of [`MAX_HASHES`] hashes is under 4 KiB).
pub const MAX_REQUEST_SIZE: usize = 64 * 1024;
/// Largest response read: a full page of the largest messages plus room for framing
/// (nwaku's bound, so its full pages are accepted).
pub const MAX_RESPONSE_SIZE: usize = MAX_PAGE_SIZE * MAX_MESSAGE_SIZE + 64 * 1024;
/// What our answers hold at most in message bytes: a page stops early (with a cursor)
/// once the next entry would go past it. A single message always fits.
pub const RESPONSE_BYTE_BUDGET: usize = 2 * 1024 * 1024;
/// Most content topics in one query.
pub const MAX_CONTENT_TOPICS: usize = 10;
/// Most hashes in one lookup query.
pub const MAX_HASHES: usize = MAX_PAGE_SIZE;
/// Longest request id we echo back.
pub const MAX_REQUEST_ID: usize = 256;

/// Status codes (the spec: 2xx is success; these are nwaku's).
pub mod status {
    /// The query was answered.
    pub const SUCCESS: u32 = 200;
    /// The response could not be used (client side).
    pub const BAD_RESPONSE: u32 = 300;
    /// The request breaks the spec's rules or our bounds.
    pub const BAD_REQUEST: u32 = 400;
    /// The peer asked too often.
    pub const TOO_MANY_REQUESTS: u32 = 429;
    /// This node keeps no archive, or it failed.
    pub const SERVICE_UNAVAILABLE: u32 = 503;
}

/// A 14/WAKU2-MESSAGE deterministic hash, the archive's key.
pub type MessageHash = [u8; 32];

/// One archived message: the encoded WakuMessage as received, and what it is found by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// `message_hash(pubsub_topic, message)`.
    pub hash: MessageHash,
    /// The pubsub topic (shard) it travelled on.
    pub pubsub_topic: String,
    /// Its content topic.
    pub content_topic: String,
    /// Its timestamp, ns since the Unix epoch.
    pub timestamp: i64,
    /// The encoded WakuMessage (ciphertext payload: de-MLS messages are MLS-encrypted).
    pub data: Vec<u8>,
}

impl ArchivedMessage {
    /// The archive entry of a message received on `pubsub_topic`, if the spec lets a
    /// store keep it: a timestamp is set and it is not ephemeral.
    pub fn eligible(pubsub_topic: &str, m: &WakuMessage, data: Vec<u8>) -> Option<Self> {
        if m.ephemeral == Some(true) {
            return None;
        }
        let timestamp = m.timestamp.filter(|t| *t > 0)?;
        Some(Self {
            hash: message_hash(pubsub_topic, m),
            pubsub_topic: pubsub_topic.to_string(),
            content_topic: m.content_topic.clone(),
            timestamp,
            data,
        })
    }
}

/// What a query selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// A content-filtered query: every field optional; the topics both set or both unset.
    Content {
        /// The pubsub topic (set exactly when `content_topics` is non-empty).
        pubsub_topic: Option<String>,
        /// The content topics.
        content_topics: Vec<String>,
        /// Inclusive start, ns.
        time_start: Option<i64>,
        /// Exclusive end, ns.
        time_end: Option<i64>,
    },
    /// A lookup of these hashes.
    Hashes(Vec<MessageHash>),
}

/// A checked query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// What to select.
    pub filter: Filter,
    /// Start after (forward) or before (backward) this entry, exclusive.
    pub cursor: Option<MessageHash>,
    /// Ascending (true) or descending traversal.
    pub forward: bool,
    /// Most entries in the page (1..=[`MAX_PAGE_SIZE`]).
    pub limit: usize,
}

impl Query {
    /// Whether `m` passes the filter (the cursor and limit aside).
    pub fn matches(&self, m: &ArchivedMessage) -> bool {
        match &self.filter {
            Filter::Hashes(h) => h.contains(&m.hash),
            Filter::Content {
                pubsub_topic,
                content_topics,
                time_start,
                time_end,
            } => {
                pubsub_topic.as_ref().is_none_or(|p| *p == m.pubsub_topic)
                    && (content_topics.is_empty() || content_topics.contains(&m.content_topic))
                    && time_start.is_none_or(|t| m.timestamp >= t)
                    && time_end.is_none_or(|t| m.timestamp < t)
            }
        }
    }
}

/// One page from an archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Matching entries in traversal order (descending for a backward query).
    pub entries: Vec<ArchivedMessage>,
    /// More entries match beyond the last one.
    pub more: bool,
}

/// Why an archive could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The pagination cursor names no stored message (never stored, or pruned since).
    #[error("unknown pagination cursor")]
    UnknownCursor,
    /// The archive itself failed.
    #[error("archive: {0}")]
    Backend(String),
}

/// Where a node keeps the messages it serves.
pub trait MessageArchive: Send + Sync {
    /// Keeps `m` unless a message with its hash is kept already; true if it was new.
    fn insert(&self, m: &ArchivedMessage) -> Result<bool, ArchiveError>;
    /// One page of `q`: entries ordered by (timestamp, hash), ascending for a forward
    /// query and descending for a backward one, starting after the cursor.
    fn query(&self, q: &Query) -> Result<Page, ArchiveError>;
    /// The newest timestamp kept on `pubsub_topic` under one of `content_topics`.
    fn latest_timestamp(
        &self,
        pubsub_topic: &str,
        content_topics: &[String],
    ) -> Result<Option<i64>, ArchiveError>;
}

/// An archive in memory, unbounded: for tests and for the bare relay peer.
#[derive(Default)]
pub struct MemoryArchive {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    by_key: BTreeMap<(i64, MessageHash), ArchivedMessage>,
    timestamps: HashMap<MessageHash, i64>,
}

impl MemoryArchive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.by_key.len()).unwrap_or(0)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, ArchiveError> {
        self.inner
            .lock()
            .map_err(|_| ArchiveError::Backend("poisoned".into()))
    }
}

impl MessageArchive for MemoryArchive {
    fn insert(&self, m: &ArchivedMessage) -> Result<bool, ArchiveError> {
        let mut i = self.lock()?;
        if i.timestamps.contains_key(&m.hash) {
            return Ok(false);
        }
        i.timestamps.insert(m.hash, m.timestamp);
        i.by_key.insert((m.timestamp, m.hash), m.clone());
        Ok(true)
    }

    fn query(&self, q: &Query) -> Result<Page, ArchiveError> {
        let i = self.lock()?;
        let after = match q.cursor {
            Some(c) => Some((*i.timestamps.get(&c).ok_or(ArchiveError::UnknownCursor)?, c)),
            None => None,
        };
        let range: Box<dyn Iterator<Item = &ArchivedMessage>> = match (after, q.forward) {
            (Some(k), true) => Box::new(
                i.by_key
                    .range((Bound::Excluded(k), Bound::Unbounded))
                    .map(|(_, v)| v),
            ),
            (Some(k), false) => Box::new(i.by_key.range(..k).rev().map(|(_, v)| v)),
            (None, true) => Box::new(i.by_key.values()),
            (None, false) => Box::new(i.by_key.values().rev()),
        };
        let mut entries: Vec<ArchivedMessage> = range
            .filter(|m| q.matches(m))
            .take(q.limit + 1)
            .cloned()
            .collect();
        let more = entries.len() > q.limit;
        entries.truncate(q.limit);
        Ok(Page { entries, more })
    }

    fn latest_timestamp(
        &self,
        pubsub_topic: &str,
        content_topics: &[String],
    ) -> Result<Option<i64>, ArchiveError> {
        let i = self.lock()?;
        Ok(i.by_key
            .values()
            .rev()
            .find(|m| m.pubsub_topic == pubsub_topic && content_topics.contains(&m.content_topic))
            .map(|m| m.timestamp))
    }
}

fn hash32(b: &[u8], what: &str) -> Result<MessageHash, String> {
    b.try_into()
        .map_err(|_| format!("{what} must be 32 bytes, not {}", b.len()))
}

/// Checks a request against the spec's rules and our bounds.
pub fn parse_request(req: &pb::StoreQueryRequest) -> Result<Query, String> {
    let content = req.pubsub_topic.is_some()
        || !req.content_topics.is_empty()
        || req.time_start.is_some()
        || req.time_end.is_some();
    if content && !req.message_hashes.is_empty() {
        return Err("a query has content filter criteria or message hashes, not both".into());
    }
    if req.pubsub_topic.is_some() == req.content_topics.is_empty() {
        return Err("pubsub_topic and content_topics must be set together".into());
    }
    if req.content_topics.len() > MAX_CONTENT_TOPICS {
        return Err(format!(
            "at most {MAX_CONTENT_TOPICS} content topics, not {}",
            req.content_topics.len()
        ));
    }
    if req.message_hashes.len() > MAX_HASHES {
        return Err(format!(
            "at most {MAX_HASHES} message hashes, not {}",
            req.message_hashes.len()
        ));
    }
    let filter = if req.message_hashes.is_empty() {
        Filter::Content {
            pubsub_topic: req.pubsub_topic.clone(),
            content_topics: req.content_topics.clone(),
            time_start: req.time_start,
            time_end: req.time_end,
        }
    } else {
        Filter::Hashes(
            req.message_hashes
                .iter()
                .map(|h| hash32(h, "a message hash"))
                .collect::<Result<_, _>>()?,
        )
    };
    let cursor = req
        .pagination_cursor
        .as_deref()
        .map(|c| hash32(c, "pagination_cursor"))
        .transpose()?;
    let limit = match req.pagination_limit {
        Some(n) if n >= 1 && n <= MAX_PAGE_SIZE as u64 => n as usize,
        _ => DEFAULT_PAGE_SIZE,
    };
    Ok(Query {
        filter,
        cursor,
        forward: req.pagination_forward,
        limit,
    })
}

fn request_id(req: &pb::StoreQueryRequest) -> String {
    let mut id = req.request_id.clone();
    if id.len() > MAX_REQUEST_ID {
        let mut end = MAX_REQUEST_ID;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
    }
    id
}

/// A response carrying only a status.
pub fn status_response(request_id: String, code: u32, desc: &str) -> pb::StoreQueryResponse {
    pb::StoreQueryResponse {
        request_id,
        status_code: Some(code),
        status_desc: Some(desc.to_string()),
        messages: Vec::new(),
        pagination_cursor: None,
    }
}

/// The refusal of a request over a peer's rate.
pub fn too_many_requests(req: &pb::StoreQueryRequest) -> pb::StoreQueryResponse {
    status_response(
        request_id(req),
        status::TOO_MANY_REQUESTS,
        "too many requests",
    )
}

/// Answers a request from `archive` (503 without one). Never panics on any request.
pub fn answer(
    archive: Option<&dyn MessageArchive>,
    req: &pb::StoreQueryRequest,
) -> pb::StoreQueryResponse {
    let id = request_id(req);
    let Some(archive) = archive else {
        return status_response(
            id,
            status::SERVICE_UNAVAILABLE,
            "this node keeps no archive",
        );
    };
    let q = match parse_request(req) {
        Ok(q) => q,
        Err(e) => return status_response(id, status::BAD_REQUEST, &e),
    };
    let page = match archive.query(&q) {
        Ok(p) => p,
        Err(e @ ArchiveError::UnknownCursor) => {
            return status_response(id, status::BAD_REQUEST, &e.to_string());
        }
        Err(e) => {
            tracing::warn!(error = %e, "store query failed");
            return status_response(id, status::SERVICE_UNAVAILABLE, "archive unavailable");
        }
    };
    let mut messages = Vec::with_capacity(page.entries.len());
    let mut bytes = 0usize;
    let mut cut = false;
    for e in page.entries {
        let kv = if req.include_data {
            let Ok(m) = WakuMessage::decode(e.data.as_slice()) else {
                continue; // never stored undecodable; skip rather than fail the page
            };
            pb::WakuMessageKeyValue {
                message_hash: Some(e.hash.to_vec()),
                message: Some(m),
                pubsub_topic: Some(e.pubsub_topic),
            }
        } else {
            pb::WakuMessageKeyValue {
                message_hash: Some(e.hash.to_vec()),
                message: None,
                pubsub_topic: None,
            }
        };
        let size = kv.encoded_len();
        if !messages.is_empty() && bytes + size > RESPONSE_BYTE_BUDGET {
            cut = true;
            break;
        }
        bytes += size;
        messages.push(kv);
    }
    // The cursor: the last entry included in traversal order (for a backward query that
    // is the first one in the forward order the response lists them in).
    let pagination_cursor = if page.more || cut {
        messages.last().and_then(|kv| kv.message_hash.clone())
    } else {
        None
    };
    if !q.forward {
        messages.reverse();
    }
    pb::StoreQueryResponse {
        request_id: id,
        status_code: Some(status::SUCCESS),
        status_desc: Some("OK".into()),
        messages,
        pagination_cursor,
    }
}

/// Why an entry of a response is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEntry {
    /// No hash, or not 32 bytes.
    #[error("no 32-byte message hash")]
    Hash,
    /// `message` and `pubsub_topic` not both set.
    #[error("no message with its pubsub topic")]
    NoData,
    /// The hash of the message is not the one given.
    #[error("the message does not hash to its key")]
    Mismatch,
    /// Larger than a relay would carry.
    #[error("message too large")]
    TooLarge,
    /// Not on the pubsub topic or content topics asked for, or outside the time range.
    #[error("not what was asked for")]
    Unasked,
    /// Ephemeral or without a timestamp: no store keeps those.
    #[error("not storable")]
    NotStorable,
}

/// Checks one entry of a response to `req` (sent with `include_data`): the message must
/// hash to its key (computed here, never trusted), be storable, within the relay's size
/// limit, and match the request's filter. Returns the archive entry.
pub fn verify_entry(
    req: &pb::StoreQueryRequest,
    kv: &pb::WakuMessageKeyValue,
) -> Result<ArchivedMessage, BadEntry> {
    let key = kv
        .message_hash
        .as_deref()
        .and_then(|h| <MessageHash>::try_from(h).ok())
        .ok_or(BadEntry::Hash)?;
    let (Some(m), Some(topic)) = (&kv.message, &kv.pubsub_topic) else {
        return Err(BadEntry::NoData);
    };
    let data = m.encode_to_vec();
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(BadEntry::TooLarge);
    }
    let entry = ArchivedMessage::eligible(topic, m, data).ok_or(BadEntry::NotStorable)?;
    if entry.hash != key {
        return Err(BadEntry::Mismatch);
    }
    let q = parse_request(req).map_err(|_| BadEntry::Unasked)?;
    if !q.matches(&entry) {
        return Err(BadEntry::Unasked);
    }
    Ok(entry)
}

/// Per-peer token buckets: each peer may send `burst` queries at once and `per_sec` a
/// second after that.
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<PeerId, (f64, Instant)>,
}

/// Queries a peer may send at once.
pub const RATE_BURST: u32 = 30;
/// Queries a second a peer may send after its burst.
pub const RATE_PER_SEC: u32 = 2;

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(RATE_BURST, RATE_PER_SEC)
    }
}

impl RateLimiter {
    /// A limiter of `burst` queries at once and `per_sec` a second.
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: burst as f64,
            per_sec: per_sec as f64,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token of `peer`'s bucket if it has one.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        let (burst, per_sec) = (self.burst, self.per_sec);
        let (tokens, last) = self.buckets.entry(peer).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * per_sec).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops a disconnected peer's bucket (the map stays bounded by the connections).
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }
}

/// How long one query may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The request-response codec: varint-length-prefixed protobuf, requests up to
/// [`MAX_REQUEST_SIZE`], responses up to [`MAX_RESPONSE_SIZE`].
pub type StoreCodec =
    ProtoCodec<pb::StoreQueryRequest, pb::StoreQueryResponse, MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE>;

/// A fresh request id (random, hex).
pub fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A content-filtered query with data, forward, [`MAX_PAGE_SIZE`] a page, from
/// `time_start` on.
pub fn history_request(
    pubsub_topic: &str,
    content_topics: Vec<String>,
    time_start: Option<i64>,
    time_end: Option<i64>,
) -> pb::StoreQueryRequest {
    pb::StoreQueryRequest {
        request_id: new_request_id(),
        include_data: true,
        pubsub_topic: Some(pubsub_topic.to_string()),
        content_topics,
        time_start,
        time_end,
        message_hashes: Vec::new(),
        pagination_cursor: None,
        pagination_forward: true,
        pagination_limit: Some(MAX_PAGE_SIZE as u64),
    }
}

pub(crate) mod sync;

#[cfg(test)]
mod tests;
