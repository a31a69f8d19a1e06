//! Repair (SDS-R): ids we miss and when we ask for them, giving them up, the messages we
//! keep to answer others' requests and when we answer, and asking stores for history.

use sha2::{Digest, Sha256};

use super::wire::sender_string;
use super::{
    ANSWERS_CAP, CACHE_BYTES, CACHE_CAP, Channel, Effects, LOST_CAP, LogEntry, MsgId, Params,
    REPAIRS_PER_MESSAGE,
};
use crate::config::Millis;
use crate::identity::MemberId;
use crate::proto::pb;

/// The first 8 bytes of SHA-256 over `parts`: the pseudo-random spread of SDS-R backoffs.
pub(super) fn h64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// A missing id we may ask for.
#[derive(Clone, Debug)]
pub(super) struct Missing {
    /// Its sender, if a history entry named it (repeated in our requests).
    pub(super) sender: Option<MemberId>,
    /// Its epoch, if a history entry gave it as the retrieval hint.
    pub(super) epoch: Option<u64>,
    /// When we first missed it.
    pub(super) since: Millis,
    /// When we next ask (SDS-R `T_req`).
    pub(super) ask_at: Millis,
}

/// A delivered message kept whole to answer repairs.
#[derive(Clone, Debug)]
pub(super) struct Cached {
    /// Its id.
    pub(super) id: MsgId,
    /// The epoch it was sent in: who may be shown it again.
    pub(super) epoch: u64,
    /// Its sender (the first to answer a request for it).
    pub(super) sender: MemberId,
    /// The encoded `SdsMessage`, re-broadcast as is.
    pub(super) encoded: Vec<u8>,
}

impl Channel {
    /// Missing ids due to be asked for, soonest first, at most [`REPAIRS_PER_MESSAGE`];
    /// each is rescheduled one `t_max` later.
    pub(super) fn take_repair_requests(
        &mut self,
        now: Millis,
        p: &Params,
    ) -> Vec<pb::SdsHistoryEntry> {
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

    /// Keeps a delivered message whole to answer repairs, within the count and byte caps.
    pub(super) fn cache_message(
        &mut self,
        id: MsgId,
        epoch: u64,
        sender: MemberId,
        encoded: Vec<u8>,
    ) {
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

    /// Schedules re-broadcasting `rid` (SDS-R `T_resp`), if we hold it, are in its
    /// response group and showing it to the group as it is now is allowed.
    pub(super) fn schedule_answer(
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

    /// When a history query is due: for the first id missing since our last one, once it
    /// has gone unrepaired for `t_max`.
    pub(super) fn history_due(&self, p: &Params) -> Option<Millis> {
        self.missing
            .values()
            .filter(|m| self.history_asked_at.is_none_or(|t| t < m.since))
            .map(|m| m.since.saturating_add(p.t_max))
            .min()
    }

    /// Gives up the missing ids asked for long enough; what waited on them goes out.
    pub(super) fn give_up_missing(
        &mut self,
        now: Millis,
        p: &Params,
        me: MemberId,
        fx: &mut Effects,
    ) {
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
            self.sweep_waiting(now, p, me, fx);
        }
    }

    /// Asks stores for history (in `fx`) when [`Channel::history_due`] says so.
    pub(super) fn query_history_if_due(&mut self, now: Millis, p: &Params, fx: &mut Effects) {
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
    }

    /// Re-broadcasts the repairs whose backoff ran out, if still allowed to show them.
    pub(super) fn answer_due_repairs(
        &mut self,
        now: Millis,
        may_repair: &impl Fn(u64) -> bool,
        fx: &mut Effects,
    ) {
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
    }
}
