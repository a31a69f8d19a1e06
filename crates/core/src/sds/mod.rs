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
//!
//! One [`Channel`], its parts in files: `wire.rs` (ids, signatures, checks of received
//! messages), `history.rs` (Lamport clock, delivered log, bloom filter), `receive.rs`
//! (delivery in causal order), `outgoing.rs` (our messages, acknowledgements, re-sends),
//! `repair.rs` (SDS-R requests and answers, store queries), `effects.rs` (what a step
//! returns).

pub mod bloom;
mod effects;
mod history;
mod outgoing;
mod receive;
mod repair;
mod wire;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::{ConversationConfig, Millis};
use crate::identity::MemberId;
use bloom::Bloom;
use receive::Waiting;
use repair::{Cached, Missing};

pub use effects::{AckStatus, Delivery, Effects};
pub use history::LogEntry;
pub use outgoing::Outgoing;
pub use wire::{Checked, SdsError, check, message_id, signed_bytes};

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
        self.give_up_missing(now, p, me, &mut fx);
        if self.missing.values().any(|m| m.ask_at <= now) {
            fx.sync_due = true;
        }
        self.query_history_if_due(now, p, &mut fx);
        if self
            .owe_sync_since
            .is_some_and(|s| now >= s.saturating_add(p.sync_within))
        {
            fx.sync_due = true;
        }
        self.answer_due_repairs(now, &may_repair, &mut fx);
        self.resend_due(now, p, members, &may_repair, &mut fx);
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
