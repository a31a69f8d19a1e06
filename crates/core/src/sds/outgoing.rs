//! Our own messages: sending them, syncs (our acknowledgements), the acknowledgements
//! others give us, and re-sending what some member still lacks.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::bloom::Bloom;
use super::wire::{hex_id, message_id, parse_entry, sender_string, signed_bytes};
use super::{
    AckStatus, Channel, Effects, LogEntry, MAX_RESENDS, MsgId, OUTGOING_BYTES, OUTGOING_CAP, Params,
};
use crate::config::Millis;
use crate::identity::MemberId;
use crate::proto::pb;

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

impl Channel {
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

    /// A sync is owed at once (after a restart: our filter tells the others where we
    /// stopped).
    pub fn sync_soon(&mut self) {
        self.owe_sync_since = Some(0);
    }

    /// Forgets our oldest unacknowledged messages beyond the count and byte caps.
    pub(super) fn trim_outgoing(&mut self) {
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

    /// Notes which of our messages `from` acknowledges with this message's history or
    /// filter; drops those every current recipient has.
    pub(super) fn review_acks(
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

    /// How long after its last send one of ours is re-sent: doubling while nobody has it.
    pub(super) fn resend_period(p: &Params, o: &Outgoing) -> Millis {
        if o.acked.is_empty() {
            p.resend_unacked.saturating_mul(1 << o.resends.min(8))
        } else {
            p.resend_partial
        }
    }

    /// Re-sends our messages whose period ran out; gives up on those re-sent enough, had by
    /// everyone, or no longer allowed to show.
    pub(super) fn resend_due(
        &mut self,
        now: Millis,
        p: &Params,
        members: &[MemberId],
        may_repair: &impl Fn(u64) -> bool,
        fx: &mut Effects,
    ) {
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
    }
}
