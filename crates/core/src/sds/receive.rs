//! Receiving: acknowledgements and repair requests a message carries, then delivery in
//! causal order once its history is met, noting what is missing.

use super::bloom::Bloom;
use super::repair::{Missing, h64};
use super::wire::parse_entry;
use super::{
    Channel, Checked, Delivery, Effects, HISTORY, LogEntry, MISSING_CAP, MsgId, Params,
    WAITING_BYTES, WAITING_CAP,
};
use crate::config::Millis;
use crate::identity::MemberId;
use crate::proto::pb;

/// A received message waiting for its causal history.
#[derive(Clone, Debug)]
pub(super) struct Waiting {
    /// Its id.
    pub(super) id: MsgId,
    /// Its author.
    pub(super) sender: MemberId,
    /// The message, delivered once its causal history is met.
    pub(super) msg: pb::SdsMessage,
    /// Its encoded size, counted against [`WAITING_BYTES`].
    pub(super) bytes: usize,
}

impl Channel {
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

    /// Delivers every waiting message whose history is met; notes what is still missing.
    pub(super) fn sweep_waiting(
        &mut self,
        now: Millis,
        p: &Params,
        me: MemberId,
        fx: &mut Effects,
    ) {
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
}
