//! Scalable Data Sync (SDS, `vac/raw/sds` with its repair extension SDS-R): end-to-end
//! reliable chat inside a conversation. Sans-IO like the rest of the core: [`Channel`]
//! takes authenticated messages and the time, and answers with what to deliver, what to
//! send and when it next wants a tick.
//!
//! Every chat message carries a Lamport timestamp, the ids of the last few messages its
//! sender had (the causal history) and a bloom filter of what the sender has received.
//! A receiver delivers a message once everything in its causal history is delivered, so
//! chat comes out in causal order with duplicates dropped; a missing id is asked for
//! (a repair request) after a pseudo-random backoff, and a member that holds the message
//! re-broadcasts it after its own backoff (the original sender first). Senders learn who
//! has a message from the histories and filters of later messages, and re-send what
//! nobody acknowledged. `docs/PROTOCOL.md` "Reliable chat" has the parameters and bounds.

pub mod bloom;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{ConversationConfig, Millis};
use crate::identity::MemberId;
use crate::proto::pb;
use bloom::Bloom;

/// A message id: SHA-256 over the message's fields (see [`message_id`]).
pub type MsgId = [u8; 32];

/// Ids in a causal history (the spec recommends two or three).
pub const HISTORY: usize = 3;
/// Repair requests per message (the spec recommends at most three).
pub const REPAIRS_PER_MESSAGE: usize = 3;
/// History or repair entries a received message may carry; more is refused.
pub const MAX_ENTRIES: usize = 8;
/// Delivered ids remembered (with Lamport timestamp and epoch) and saved.
pub const LOG_CAP: usize = 512;
/// Ids given up as lost, remembered so messages that depend on them are delivered.
pub const LOST_CAP: usize = 256;
/// Our messages awaiting acknowledgement (saved): count and bytes.
pub const OUTGOING_CAP: usize = 32;
/// Bytes of our unacknowledged messages kept for re-sending.
pub const OUTGOING_BYTES: usize = 128 * 1024;
/// Messages waiting for their causal history (memory only): count and bytes.
pub const WAITING_CAP: usize = 128;
/// Bytes of messages waiting for their causal history.
pub const WAITING_BYTES: usize = 512 * 1024;
/// Delivered messages kept whole to answer repair requests (memory only): count, bytes.
pub const CACHE_CAP: usize = 256;
/// Bytes of delivered messages kept for repair.
pub const CACHE_BYTES: usize = 1024 * 1024;
/// Missing ids tracked for repair at once.
pub const MISSING_CAP: usize = 256;
/// Repairs we may answer at once.
pub const ANSWERS_CAP: usize = 64;
/// Times one message of ours is re-sent when members have not acknowledged it.
pub const MAX_RESENDS: u32 = 3;
/// Largest `content` accepted (a chat of 4096 bytes with its timestamp fits easily).
pub const MAX_CONTENT: usize = 8 * 1024;

const DOMAIN: &[u8] = b"demls/sds/v1";

/// The timings, the same for every member (derived from the conversation's timings, which
/// the group shares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// SDS-R `T_min`: wait at least this before asking for a missing message (it may just
    /// be late).
    pub t_min: Millis,
    /// SDS-R `T_max`: requests spread up to this; answers back off up to this.
    pub t_max: Millis,
    /// A missing id asked for this long without an answer is given up as lost.
    pub give_up: Millis,
    /// A message of ours nobody acknowledged is re-sent after this (doubling each time).
    pub resend_unacked: Millis,
    /// A message some members acknowledged is re-sent after this, for the others.
    pub resend_partial: Millis,
    /// After we delivered something, we send a sync (our history and filter: the
    /// acknowledgement) within this if we sent nothing else.
    pub sync_within: Millis,
}

impl Params {
    /// The timings of a conversation with these settings: asks between one and six
    /// `recovery_inactivity`, syncs within one `commit_inactivity`.
    pub fn from_config(c: &ConversationConfig) -> Self {
        let r = c.recovery_inactivity;
        Self {
            t_min: r,
            t_max: 6 * r,
            give_up: 24 * r,
            resend_unacked: 4 * r,
            resend_partial: 2 * c.commit_inactivity,
            sync_within: c.commit_inactivity,
        }
    }
}

/// Why a received SDS message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdsError {
    /// A field is malformed or out of bounds.
    #[error("malformed SDS message: {0}")]
    Malformed(&'static str),
    /// The message is for another conversation.
    #[error("SDS message for another channel")]
    WrongChannel,
    /// The id does not match the fields.
    #[error("SDS message id does not match its fields")]
    WrongId,
    /// The signature is not the claimed sender's.
    #[error("SDS message not signed by its sender")]
    BadSignature,
    /// A sync message (no content) must come from its sender itself.
    #[error("SDS sync relayed by another member")]
    RelayedSync,
}

/// A received message after its checks: who wrote it, its id, what it says.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Its author (signature-checked for content, the MLS sender for a sync).
    pub sender: MemberId,
    /// Its id (`None` for a sync, whose id means nothing).
    pub id: Option<MsgId>,
    /// The message.
    pub msg: pb::SdsMessage,
}

/// SHA-256 over the fields a message id binds.
pub fn message_id(
    channel: &str,
    sender: &MemberId,
    lamport: u64,
    epoch: u64,
    content: &[u8],
) -> MsgId {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(channel.as_bytes());
    h.update([0]);
    h.update(sender.as_bytes());
    h.update(lamport.to_be_bytes());
    h.update(epoch.to_be_bytes());
    h.update(content);
    h.finalize().into()
}

/// What a sender signs (EIP-191): the domain and the id.
pub fn signed_bytes(id: &MsgId) -> Vec<u8> {
    [DOMAIN, id.as_slice()].concat()
}

fn parse_id(s: &str) -> Option<MsgId> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

fn sender_string(m: &MemberId) -> String {
    format!("0x{}", hex::encode(m.as_bytes()))
}

fn parse_sender(s: &str) -> Option<MemberId> {
    let h = s.strip_prefix("0x")?;
    if h.len() != 40 || h.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    MemberId::from_slice(&hex::decode(h).ok()?).ok()
}

/// Parses a history or repair entry: its id, the epoch hint, the sender if named.
fn parse_entry(e: &pb::SdsHistoryEntry) -> Option<(MsgId, Option<u64>, Option<MemberId>)> {
    let id = parse_id(&e.message_id)?;
    let epoch = match &e.retrieval_hint {
        None => None,
        Some(h) => Some(u64::from_be_bytes(h.as_slice().try_into().ok()?)),
    };
    let sender = match &e.sender_id {
        None => None,
        Some(s) => Some(parse_sender(s)?),
    };
    Some((id, epoch, sender))
}

/// Checks a received message's form, id and signature. `mls_sender` is who the MLS layer
/// says sent the packet; a message with content may be another member's, re-broadcast for
/// repair, and then only its signature says whose it is.
pub fn check(
    channel: &str,
    mls_sender: MemberId,
    msg: pb::SdsMessage,
) -> Result<Checked, SdsError> {
    if msg.channel_id != channel {
        return Err(SdsError::WrongChannel);
    }
    let sender = parse_sender(&msg.sender_id).ok_or(SdsError::Malformed("sender_id"))?;
    if msg.causal_history.len() > MAX_ENTRIES || msg.repair_request.len() > MAX_ENTRIES {
        return Err(SdsError::Malformed("too many history or repair entries"));
    }
    if msg
        .causal_history
        .iter()
        .chain(&msg.repair_request)
        .any(|e| parse_entry(e).is_none())
    {
        return Err(SdsError::Malformed("history entry"));
    }
    let lamport = msg
        .lamport_timestamp
        .ok_or(SdsError::Malformed("no lamport timestamp"))?;
    if msg
        .bloom_filter
        .as_ref()
        .is_some_and(|b| b.len() != bloom::BYTES)
    {
        return Err(SdsError::Malformed("bloom filter size"));
    }
    match &msg.content {
        None => {
            if sender != mls_sender {
                return Err(SdsError::RelayedSync);
            }
            Ok(Checked {
                sender,
                id: None,
                msg,
            })
        }
        Some(content) => {
            if content.is_empty() || content.len() > MAX_CONTENT {
                return Err(SdsError::Malformed("content size"));
            }
            let id = message_id(channel, &sender, lamport, msg.epoch, content);
            if parse_id(&msg.message_id) != Some(id) {
                return Err(SdsError::WrongId);
            }
            if crate::identity::verify(&signed_bytes(&id), &msg.signature, &sender).is_err() {
                return Err(SdsError::BadSignature);
            }
            Ok(Checked {
                sender,
                id: Some(id),
                msg,
            })
        }
    }
}

fn h64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// One delivered message in the local log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its id, hex.
    #[serde(with = "hex_id")]
    pub id: MsgId,
    /// Its Lamport timestamp.
    pub lamport: u64,
    /// The epoch it was sent in.
    pub epoch: u64,
    /// Its sender.
    pub sender: MemberId,
}

mod hex_id {
    use super::MsgId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &MsgId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MsgId, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_id(&s).ok_or_else(|| serde::de::Error::custom("bad message id"))
    }
}

/// A message of ours not yet acknowledged by everyone it was sent to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outgoing {
    /// Its id.
    #[serde(with = "hex_id")]
    pub id: MsgId,
    /// The encoded `SdsMessage`, hex (re-sent as is).
    pub encoded: String,
    /// When it was last sent.
    pub sent_at: Millis,
    /// Times re-sent.
    pub resends: u32,
    /// The members it was sent to (the group then, without us).
    pub recipients: Vec<MemberId>,
    /// Those of them whose history or filter showed it.
    pub acked: BTreeSet<MemberId>,
    /// The epoch it was sent in: it is re-sent only while that shows it to nobody
    /// added since (0 in state saved before this field: never re-sent again).
    #[serde(default)]
    pub epoch: u64,
}

/// A missing id we may ask for.
#[derive(Clone, Debug)]
struct Missing {
    sender: Option<MemberId>,
    epoch: Option<u64>,
    /// When we first missed it.
    since: Millis,
    /// When we next ask (SDS-R `T_req`).
    ask_at: Millis,
}

/// A received message waiting for its causal history.
#[derive(Clone, Debug)]
struct Waiting {
    id: MsgId,
    sender: MemberId,
    msg: pb::SdsMessage,
    bytes: usize,
}

/// A delivered message kept whole to answer repairs.
#[derive(Clone, Debug)]
struct Cached {
    id: MsgId,
    epoch: u64,
    sender: MemberId,
    encoded: Vec<u8>,
}

/// A chat message ready for the user, in causal order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: MsgId,
    /// Who wrote it.
    pub sender: MemberId,
    /// The epoch it was sent in.
    pub epoch: u64,
    /// Its `content` (an encoded `ChatMessage`).
    pub content: Vec<u8>,
}

/// What one step of the channel produced.
#[derive(Debug, Default)]
pub struct Effects {
    /// Chat to show, in causal order.
    pub delivered: Vec<Delivery>,
    /// Ids given up on: (id, sender if known).
    pub lost: Vec<(MsgId, Option<MemberId>)>,
    /// Our messages whose acknowledgements changed: (id, acknowledged by, sent to, final).
    /// Final means it left the buffer: acknowledged by all, or given up.
    pub acks: Vec<AckStatus>,
    /// Encoded `SdsMessage`s to broadcast (re-sends and repairs), as is.
    pub rebroadcast: Vec<Vec<u8>>,
    /// A sync message is due now (repair requests to send, or an acknowledgement owed).
    pub sync_due: bool,
    /// Ask store peers for the conversation's history since this time: ids we lack went
    /// unrepaired for `t_max` (members may not re-send them, or nobody has them), and a
    /// store may hold the original ciphertext.
    pub history_since: Option<Millis>,
}

/// How far one of our messages got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckStatus {
    /// The message.
    pub id: MsgId,
    /// Members that have it (by their history or filter).
    pub acked: u32,
    /// Members it was sent to (still in the group).
    pub of: u32,
    /// It left the outgoing buffer: everyone has it, or we stopped re-sending.
    pub done: bool,
}

/// One conversation's SDS state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Channel {
    /// Our Lamport clock.
    lamport: u64,
    /// Delivered ids in Lamport order (then id), newest last.
    log: VecDeque<LogEntry>,
    /// Ids given up as lost.
    #[serde(default)]
    lost: VecDeque<LogEntry>,
    /// Messages from epochs before this are not ours to ask for (we joined then).
    floor_epoch: u64,
    /// Our messages awaiting acknowledgement.
    outgoing: Vec<Outgoing>,
    /// Whether we delivered something since we last sent (we owe an acknowledgement),
    /// and since when.
    owe_sync_since: Option<Millis>,
    #[serde(skip)]
    waiting: Vec<Waiting>,
    #[serde(skip)]
    missing: BTreeMap<MsgId, Missing>,
    /// Repairs we will answer: id → when (SDS-R `T_resp`).
    #[serde(skip)]
    answers: BTreeMap<MsgId, Millis>,
    #[serde(skip)]
    cache: VecDeque<Cached>,
    #[serde(skip)]
    bloom: Option<Bloom>,
    /// When we last asked for history from stores (`Effects::history_since`).
    #[serde(skip)]
    history_asked_at: Option<Millis>,
}

impl Channel {
    /// A channel for a member that joined at `epoch` (0 for the creator).
    pub fn new(floor_epoch: u64) -> Self {
        Self {
            floor_epoch,
            ..Default::default()
        }
    }

    /// The epoch we joined at: earlier messages were never ours.
    pub fn floor_epoch(&self) -> u64 {
        self.floor_epoch
    }

    /// Starts afresh after a rejoin: what came before `epoch` is another group's.
    pub fn reset(&mut self, floor_epoch: u64) {
        *self = Self::new(floor_epoch);
    }

    fn knows(&self, id: &MsgId) -> bool {
        self.log.iter().rev().any(|e| &e.id == id) || self.lost.iter().any(|e| &e.id == id)
    }

    /// Too old to tell: older than everything a full log still holds.
    fn below_horizon(&self, lamport: u64) -> bool {
        self.log.len() >= LOG_CAP && self.log.front().is_some_and(|f| lamport < f.lamport)
    }

    fn bloom(&mut self) -> &mut Bloom {
        let log = &self.log;
        self.bloom.get_or_insert_with(|| {
            let mut b = Bloom::default();
            for e in log.iter().rev().take(bloom::CAPACITY / 2) {
                b.insert(&e.id);
            }
            b
        })
    }

    fn history(&self) -> Vec<pb::SdsHistoryEntry> {
        self.log
            .iter()
            .rev()
            .take(HISTORY)
            .map(|e| pb::SdsHistoryEntry {
                message_id: hex::encode(e.id),
                retrieval_hint: Some(e.epoch.to_be_bytes().to_vec()),
                sender_id: Some(sender_string(&e.sender)),
            })
            .collect()
    }

    /// Missing ids due to be asked for, soonest first, at most [`REPAIRS_PER_MESSAGE`];
    /// each is rescheduled one `t_max` later.
    fn take_repair_requests(&mut self, now: Millis, p: &Params) -> Vec<pb::SdsHistoryEntry> {
        let mut due: Vec<(Millis, MsgId)> = self
            .missing
            .iter()
            .filter(|(_, m)| m.ask_at <= now)
            .map(|(id, m)| (m.ask_at, *id))
            .collect();
        due.sort();
        due.truncate(REPAIRS_PER_MESSAGE);
        due.into_iter()
            .filter_map(|(_, id)| {
                let m = self.missing.get_mut(&id)?;
                m.ask_at = now.saturating_add(p.t_max);
                Some(pb::SdsHistoryEntry {
                    message_id: hex::encode(id),
                    retrieval_hint: m.epoch.map(|e| e.to_be_bytes().to_vec()),
                    sender_id: m.sender.as_ref().map(sender_string),
                })
            })
            .collect()
    }

    fn stamp(&mut self, now: Millis) -> u64 {
        self.lamport = now.max(self.lamport.saturating_add(1));
        self.lamport
    }

    /// Builds our chat message (`content` an encoded `ChatMessage`) at `epoch`, signed
    /// with `sign`, and records it: in the log, the repair cache and the outgoing buffer.
    /// Returns the encoded `SdsMessage` to send.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: Millis,
        p: &Params,
        channel: &str,
        me: MemberId,
        epoch: u64,
        recipients: Vec<MemberId>,
        content: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Option<(MsgId, pb::SdsMessage)> {
        let lamport = self.stamp(now);
        let id = message_id(channel, &me, lamport, epoch, &content);
        let signature = sign(&signed_bytes(&id))?;
        let msg = pb::SdsMessage {
            sender_id: sender_string(&me),
            message_id: hex::encode(id),
            channel_id: channel.to_string(),
            lamport_timestamp: Some(lamport),
            causal_history: self.history(),
            bloom_filter: Some(self.bloom().to_bytes()),
            repair_request: self.take_repair_requests(now, p),
            content: Some(content),
            epoch,
            signature,
        };
        let encoded = prost::Message::encode_to_vec(&msg);
        self.record(LogEntry {
            id,
            lamport,
            epoch,
            sender: me,
        });
        self.cache_message(id, epoch, me, encoded.clone());
        if !recipients.is_empty() {
            self.outgoing.push(Outgoing {
                id,
                encoded: hex::encode(&encoded),
                sent_at: now,
                resends: 0,
                recipients,
                acked: BTreeSet::new(),
                epoch,
            });
            self.trim_outgoing();
        }
        self.owe_sync_since = None;
        Some((id, msg))
    }

    /// A sync message: no content, our history, filter and due repair requests.
    pub fn sync(&mut self, now: Millis, p: &Params, channel: &str, me: MemberId) -> pb::SdsMessage {
        let lamport = self.stamp(now);
        self.owe_sync_since = None;
        pb::SdsMessage {
            sender_id: sender_string(&me),
            message_id: hex::encode(message_id(channel, &me, lamport, 0, &[])),
            channel_id: channel.to_string(),
            lamport_timestamp: Some(lamport),
            causal_history: self.history(),
            bloom_filter: Some(self.bloom().to_bytes()),
            repair_request: self.take_repair_requests(now, p),
            content: None,
            epoch: 0,
            signature: Vec::new(),
        }
    }

    fn trim_outgoing(&mut self) {
        while self.outgoing.len() > OUTGOING_CAP
            || self
                .outgoing
                .iter()
                .map(|o| o.encoded.len() / 2)
                .sum::<usize>()
                > OUTGOING_BYTES
        {
            self.outgoing.remove(0);
        }
    }

    fn record(&mut self, e: LogEntry) {
        let at = self
            .log
            .iter()
            .rposition(|x| (x.lamport, x.id) < (e.lamport, e.id))
            .map_or(0, |i| i + 1);
        let id = e.id;
        self.log.insert(at, e);
        while self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
        let b = self.bloom();
        if b.len() >= bloom::CAPACITY {
            self.bloom = None;
        }
        self.bloom().insert(&id);
    }

    fn cache_message(&mut self, id: MsgId, epoch: u64, sender: MemberId, encoded: Vec<u8>) {
        self.cache.push_back(Cached {
            id,
            epoch,
            sender,
            encoded,
        });
        while self.cache.len() > CACHE_CAP
            || self.cache.iter().map(|c| c.encoded.len()).sum::<usize>() > CACHE_BYTES
        {
            self.cache.pop_front();
        }
    }

    /// Whether the causal history entry is met: delivered, given up, or from before we
    /// joined (not ours to read).
    fn met(&self, id: &MsgId, epoch: Option<u64>) -> bool {
        self.knows(id) || epoch.is_some_and(|e| e < self.floor_epoch)
    }

    /// Takes one checked message. `members` is the current group (acknowledgements only
    /// count for those we sent to that are still in it); `may_repair(epoch)` says whether
    /// re-broadcasting a message of that epoch to the current group shows it to nobody
    /// who was not a member then.
    pub fn receive(
        &mut self,
        now: Millis,
        p: &Params,
        me: MemberId,
        members: &[MemberId],
        c: Checked,
        may_repair: impl Fn(u64) -> bool,
    ) -> Effects {
        let mut fx = Effects::default();
        let Checked { sender, id, msg } = c;
        self.review_acks(sender, &msg, members, &mut fx);
        if let Some(id) = &id {
            self.missing.remove(id);
            self.answers.remove(id);
        }
        let groups = (members.len() as u64) / 128 + 1;
        for e in &msg.repair_request {
            let Some((rid, _, _)) = parse_entry(e) else {
                continue;
            };
            // Someone else asked: we need not (SDS-R), but we still miss it, and the
            // time we have missed it for still counts towards giving up.
            if let Some(m) = self.missing.get_mut(&rid) {
                m.ask_at = m.ask_at.max(now.saturating_add(p.t_max));
            }
            self.schedule_answer(rid, now, p, me, groups, &may_repair);
        }
        // Beyond SDS-R: a member whose filter lacks one of our newest messages although
        // it wrote this well after that message (a member back from a restart or a cut,
        // whose sync shows where it stopped) is answered as if it had asked. Only our
        // last few: the repaired messages' own histories lead it to the rest.
        if let (Some(bits), Some(l)) = (msg.bloom_filter.as_deref(), msg.lamport_timestamp) {
            let stale: Vec<MsgId> = self
                .log
                .iter()
                .rev()
                .take(HISTORY)
                .filter(|e| e.sender != sender && e.lamport.saturating_add(p.t_min) < l)
                .filter(|e| !Bloom::may_contain(bits, &e.id))
                .map(|e| e.id)
                .collect();
            for rid in stale {
                self.schedule_answer(rid, now, p, me, groups, &may_repair);
            }
        }
        let (Some(id), Some(lamport)) = (id, msg.lamport_timestamp) else {
            return fx;
        };
        if sender == me
            || self.knows(&id)
            || msg.epoch < self.floor_epoch
            || self.below_horizon(lamport)
            || self.waiting.iter().any(|w| w.id == id)
        {
            return fx;
        }
        let bytes = prost::Message::encoded_len(&msg);
        self.waiting.push(Waiting {
            id,
            sender,
            msg,
            bytes,
        });
        while self.waiting.len() > WAITING_CAP
            || self.waiting.iter().map(|w| w.bytes).sum::<usize>() > WAITING_BYTES
        {
            self.waiting.remove(0);
        }
        self.sweep_waiting(now, p, me, &mut fx);
        fx
    }

    /// Schedules re-broadcasting `rid` (SDS-R `T_resp`), if we hold it, are in its
    /// response group and showing it to the group as it is now is allowed.
    fn schedule_answer(
        &mut self,
        rid: MsgId,
        now: Millis,
        p: &Params,
        me: MemberId,
        groups: u64,
        may_repair: &impl Fn(u64) -> bool,
    ) {
        if self.answers.len() >= ANSWERS_CAP || self.answers.contains_key(&rid) {
            return;
        }
        let Some(c) = self.cache.iter().find(|c| c.id == rid) else {
            return;
        };
        let in_group =
            h64(&[me.as_bytes(), &rid]) % groups == h64(&[c.sender.as_bytes(), &rid]) % groups;
        if !in_group || !may_repair(c.epoch) {
            return;
        }
        // The original sender answers at once (distance 0), others spread up to T_max.
        let distance = h64(&[me.as_bytes()]) ^ h64(&[c.sender.as_bytes()]);
        let delay = distance.wrapping_mul(h64(&[&rid])) % p.t_max.max(1);
        self.answers.insert(rid, now.saturating_add(delay));
    }

    /// A sync is owed at once (after a restart: our filter tells the others where we
    /// stopped).
    pub fn sync_soon(&mut self) {
        self.owe_sync_since = Some(0);
    }

    /// Delivers every waiting message whose history is met; notes what is still missing.
    fn sweep_waiting(&mut self, now: Millis, p: &Params, me: MemberId, fx: &mut Effects) {
        loop {
            let ready = self.waiting.iter().position(|w| {
                w.msg
                    .causal_history
                    .iter()
                    .filter_map(parse_entry)
                    .all(|(id, epoch, _)| self.met(&id, epoch))
            });
            let Some(i) = ready else { break };
            let w = self.waiting.remove(i);
            let lamport = w.msg.lamport_timestamp.unwrap_or(0);
            self.lamport = self.lamport.max(lamport);
            let epoch = w.msg.epoch;
            self.record(LogEntry {
                id: w.id,
                lamport,
                epoch,
                sender: w.sender,
            });
            let encoded = prost::Message::encode_to_vec(&w.msg);
            self.cache_message(w.id, epoch, w.sender, encoded);
            self.owe_sync_since.get_or_insert(now);
            fx.delivered.push(Delivery {
                id: w.id,
                sender: w.sender,
                epoch,
                content: w.msg.content.unwrap_or_default(),
            });
        }
        let mut wanted = Vec::new();
        for w in &self.waiting {
            for (id, epoch, sender) in w.msg.causal_history.iter().filter_map(parse_entry) {
                if !self.met(&id, epoch) && !self.waiting.iter().any(|x| x.id == id) {
                    wanted.push((id, epoch, sender));
                }
            }
        }
        for (id, epoch, sender) in wanted {
            if self.missing.len() >= MISSING_CAP {
                break;
            }
            // SDS-R T_req = now + T_min + hash(us, id) mod (T_max − T_min): members
            // missing the same message do not all ask at once, and the first request
            // heard cancels the others'.
            let span = p.t_max.saturating_sub(p.t_min).max(1);
            let ask_at = now
                .saturating_add(p.t_min)
                .saturating_add(h64(&[me.as_bytes(), &id]) % span);
            self.missing.entry(id).or_insert(Missing {
                sender,
                epoch,
                since: now,
                ask_at,
            });
        }
    }

    fn review_acks(
        &mut self,
        from: MemberId,
        msg: &pb::SdsMessage,
        members: &[MemberId],
        fx: &mut Effects,
    ) {
        let history: Vec<MsgId> = msg
            .causal_history
            .iter()
            .filter_map(parse_entry)
            .map(|(id, _, _)| id)
            .collect();
        let filter = msg.bloom_filter.as_deref();
        for o in &mut self.outgoing {
            if !o.recipients.contains(&from) || o.acked.contains(&from) {
                continue;
            }
            if history.contains(&o.id) || filter.is_some_and(|f| Bloom::may_contain(f, &o.id)) {
                o.acked.insert(from);
                let of = o.recipients.iter().filter(|r| members.contains(r)).count() as u32;
                let acked = o.acked.iter().filter(|r| members.contains(r)).count() as u32;
                fx.acks.push(AckStatus {
                    id: o.id,
                    acked,
                    of,
                    done: acked >= of,
                });
            }
        }
        self.outgoing.retain(|o| {
            !o.recipients
                .iter()
                .filter(|r| members.contains(r))
                .all(|r| o.acked.contains(r))
        });
    }

    /// When the channel next wants a tick.
    pub fn deadline(&self, p: &Params) -> Option<Millis> {
        let resend = self
            .outgoing
            .iter()
            .map(|o| o.sent_at.saturating_add(Self::resend_period(p, o)));
        let ask = self
            .missing
            .values()
            .map(|m| m.ask_at.min(m.since.saturating_add(p.give_up)));
        let answer = self.answers.values().copied();
        let sync = self.owe_sync_since.map(|s| s.saturating_add(p.sync_within));
        let history = self.history_due(p);
        resend
            .chain(ask)
            .chain(answer)
            .chain(sync)
            .chain(history)
            .min()
    }

    /// When a history query is due: for the first id missing since our last one, once it
    /// has gone unrepaired for `t_max`.
    fn history_due(&self, p: &Params) -> Option<Millis> {
        self.missing
            .values()
            .filter(|m| self.history_asked_at.is_none_or(|t| t < m.since))
            .map(|m| m.since.saturating_add(p.t_max))
            .min()
    }

    fn resend_period(p: &Params, o: &Outgoing) -> Millis {
        if o.acked.is_empty() {
            p.resend_unacked.saturating_mul(1 << o.resends.min(8))
        } else {
            p.resend_partial
        }
    }

    /// Runs what is due at `now`. `may_repair(epoch)` as for [`Channel::receive`]: re-sending a
    /// message (ours unacknowledged, or one we answer a repair with) must not show it to
    /// anyone added since it was sent, and a commit may have added someone since the
    /// re-send was scheduled.
    pub fn tick(
        &mut self,
        now: Millis,
        p: &Params,
        me: MemberId,
        members: &[MemberId],
        may_repair: impl Fn(u64) -> bool,
    ) -> Effects {
        let mut fx = Effects::default();
        // Missing ids asked for long enough are given up; what waited on them goes out.
        let gone: Vec<MsgId> = self
            .missing
            .iter()
            .filter(|(_, m)| now >= m.since.saturating_add(p.give_up))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(m) = self.missing.remove(&id) {
                self.lost.push_back(LogEntry {
                    id,
                    lamport: 0,
                    epoch: m.epoch.unwrap_or(0),
                    sender: m.sender.unwrap_or(MemberId([0; 20])),
                });
                while self.lost.len() > LOST_CAP {
                    self.lost.pop_front();
                }
                fx.lost.push((id, m.sender));
            }
        }
        if !fx.lost.is_empty() {
            self.sweep_waiting(now, p, me, &mut fx);
        }
        if self.missing.values().any(|m| m.ask_at <= now) {
            fx.sync_due = true;
        }
        if self.history_due(p).is_some_and(|t| t <= now) {
            // From before the newest message we delivered (a message that waits for a
            // lacking one is not delivered yet, so the gap is after it; a member back from
            // away stopped there), or before we noticed, whichever is earlier: Lamport
            // times are senders' clocks and never push the start past our own.
            // Nothing delivered yet: from the start (the store's lookback bounds it).
            let noticed = self.missing.values().map(|m| m.since).min().unwrap_or(now);
            let newest = self.log.back().map_or(0, |e| e.lamport);
            fx.history_since = Some(noticed.min(newest).saturating_sub(p.give_up));
            self.history_asked_at = Some(now);
        }
        if self
            .owe_sync_since
            .is_some_and(|s| now >= s.saturating_add(p.sync_within))
        {
            fx.sync_due = true;
        }
        let due: Vec<MsgId> = self
            .answers
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.answers.remove(&id);
            if let Some(c) = self.cache.iter().find(|c| c.id == id)
                && may_repair(c.epoch)
            {
                fx.rebroadcast.push(c.encoded.clone());
            }
        }
        let mut i = 0;
        while i < self.outgoing.len() {
            let o = &mut self.outgoing[i];
            if now < o.sent_at.saturating_add(Self::resend_period(p, o)) {
                i += 1;
                continue;
            }
            let of = o.recipients.iter().filter(|r| members.contains(r)).count() as u32;
            let acked = o.acked.iter().filter(|r| members.contains(r)).count() as u32;
            if o.resends >= MAX_RESENDS || acked >= of || !may_repair(o.epoch) {
                fx.acks.push(AckStatus {
                    id: o.id,
                    acked,
                    of,
                    done: true,
                });
                self.outgoing.remove(i);
                continue;
            }
            o.resends += 1;
            o.sent_at = now;
            if let Ok(bytes) = hex::decode(&o.encoded) {
                fx.rebroadcast.push(bytes);
            }
            i += 1;
        }
        fx
    }

    /// Our messages still awaiting acknowledgement.
    pub fn outgoing(&self) -> &[Outgoing] {
        &self.outgoing
    }

    /// Ids we know we miss.
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
mod tests;
