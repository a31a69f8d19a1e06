//! Reply budgets: how much a conversation answers requests from the network.
//!
//! Requests (catch-up, proposal state) are cheap to send and their answers are not, so
//! every answer is paid for twice: once from the requester's own bucket (a burst of
//! [`REQUESTER_BURST`], then one per `gap / 2`) and once from the conversation's bucket (a
//! burst of [`REPLY_BURST`], then one per `gap / 4`). `gap` is the interval at which an
//! honest member repeats a request, so an honest requester is never refused while it asks
//! for a few things at once. Requests over budget are dropped silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Millis;
use crate::identity::MemberId;

/// Answers a conversation may send in a burst.
pub(crate) const REPLY_BURST: u32 = 16;
/// Answers one requester may get in a burst.
pub(crate) const REQUESTER_BURST: u32 = 4;

/// A token bucket in whole tokens.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date (`None`: never used, so full).
    at: Option<Millis>,
}

impl Bucket {
    /// Takes a token if one is left at `now`, with `capacity` tokens at most and one
    /// more every `refill` ms.
    pub fn take(&mut self, now: Millis, capacity: u32, refill: Millis) -> bool {
        let refill = refill.max(1);
        match self.at {
            None => {
                self.tokens = capacity;
                self.at = Some(now);
            }
            Some(at) => {
                let gained = now.saturating_sub(at) / refill;
                let tokens = u64::from(self.tokens).saturating_add(gained);
                self.tokens = u32::try_from(tokens.min(u64::from(capacity))).unwrap_or(capacity);
                self.at = Some(if self.tokens == capacity {
                    now
                } else {
                    at + gained * refill
                });
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Who asked when, and the conversation's bucket.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ReplyBudget {
    bucket: Bucket,
    requesters: BTreeMap<MemberId, Bucket>,
}

impl ReplyBudget {
    /// Whether a request from `who` may be answered at `now` (see the module doc).
    /// `members` bounds the per-requester table: only members (and members a recent
    /// commit removed, who are in `members` here) are ever served.
    pub fn allow(&mut self, now: Millis, who: MemberId, gap: Millis, members: &[MemberId]) -> bool {
        self.requesters
            .retain(|m, _| *m == who || members.contains(m));
        let mine = self.requesters.entry(who).or_default();
        let mut probe = mine.clone();
        if !probe.take(now, REQUESTER_BURST, gap / 2) {
            *mine = probe;
            return false;
        }
        if !self.bucket.take(now, REPLY_BURST, gap / 4) {
            return false;
        }
        *mine = probe;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_and_caps() {
        let mut b = Bucket::default();
        assert!((0..4).all(|_| b.take(0, 4, 100)));
        assert!(!b.take(0, 4, 100));
        assert!(!b.take(99, 4, 100));
        assert!(b.take(100, 4, 100));
        // A long pause refills to capacity, no more.
        assert_eq!((0..10).filter(|_| b.take(1_000_000, 4, 100)).count(), 4);
        // Far-future times do not overflow.
        assert!(b.take(u64::MAX, 4, 1));
    }

    #[test]
    fn a_requester_gets_a_burst_then_one_per_half_gap() {
        let a = MemberId([1; 20]);
        let b = MemberId([2; 20]);
        let mut r = ReplyBudget::default();
        assert_eq!((0..10).filter(|_| r.allow(0, a, 500, &[a, b])).count(), 4);
        assert!(!r.allow(100, a, 500, &[a, b]));
        assert!(r.allow(100, b, 500, &[a, b]));
        assert!(r.allow(250, a, 500, &[a, b]));
        assert!(!r.allow(260, a, 500, &[a, b]));
    }

    #[test]
    fn the_conversation_bucket_caps_many_requesters() {
        let members: Vec<MemberId> = (0..40u8).map(|i| MemberId([i; 20])).collect();
        let mut r = ReplyBudget::default();
        let served = members
            .iter()
            .filter(|m| r.allow(0, **m, 400, &members))
            .count();
        assert_eq!(served, REPLY_BURST as usize);
    }
}
