//! The causal history: our Lamport clock, the log of delivered ids and the bloom filter
//! built from it, which every message we send carries.

use serde::{Deserialize, Serialize};

use super::bloom::{self, Bloom};
use super::wire::{hex_id, sender_string};
use super::{Channel, HISTORY, LOG_CAP, MsgId};
use crate::config::Millis;
use crate::identity::MemberId;
use crate::proto::pb;

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

impl Channel {
    /// Whether `id` is delivered or given up as lost.
    pub(super) fn knows(&self, id: &MsgId) -> bool {
        self.log.iter().rev().any(|e| &e.id == id) || self.lost.iter().any(|e| &e.id == id)
    }

    /// Too old to tell: older than everything a full log still holds.
    pub(super) fn below_horizon(&self, lamport: u64) -> bool {
        self.log.len() >= LOG_CAP && self.log.front().is_some_and(|f| lamport < f.lamport)
    }

    /// Whether the causal history entry is met: delivered, given up, or from before we
    /// joined (not ours to read).
    pub(super) fn met(&self, id: &MsgId, epoch: Option<u64>) -> bool {
        self.knows(id) || epoch.is_some_and(|e| e < self.floor_epoch)
    }

    /// Our bloom filter, rebuilt from the newest log entries when it was dropped (full, or
    /// never built since a restore).
    pub(super) fn bloom(&mut self) -> &mut Bloom {
        let log = &self.log;
        self.bloom.get_or_insert_with(|| {
            let mut b = Bloom::default();
            for e in log.iter().rev().take(bloom::CAPACITY / 2) {
                b.insert(&e.id);
            }
            b
        })
    }

    /// Our causal history: the newest [`HISTORY`] log entries.
    pub(super) fn history(&self) -> Vec<pb::SdsHistoryEntry> {
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

    /// Advances our Lamport clock for a message we send; never behind `now`.
    pub(super) fn stamp(&mut self, now: Millis) -> u64 {
        self.lamport = now.max(self.lamport.saturating_add(1));
        self.lamport
    }

    /// Adds a delivered id to the log in Lamport order and to the bloom filter (a full
    /// filter starts over from the log).
    pub(super) fn record(&mut self, e: LogEntry) {
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
}
