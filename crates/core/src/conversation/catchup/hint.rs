//! Hints and probes: when to ask whether the group has left our epoch.

use crate::config::REPLY_JITTER_MS;
use crate::conversation::*;

/// Requests one unauthenticated epoch hint may cost before it is forgotten.
pub(crate) const HINT_ASKS: u32 = 3;
/// Longest quiet period after hints that led nowhere.
const MAX_HINT_BACKOFF_MS: Millis = 30 * 60_000;

impl CatchUp {
    /// Takes a hint that the group is at `epoch`, above `ours`: a hint already probed
    /// only has its epoch raised, and none is taken in a quiet period.
    fn take_hint(&mut self, now: Millis, epoch: u64, ours: u64) {
        if self.seen_epoch > ours {
            self.seen_epoch = self.seen_epoch.max(epoch);
            return;
        }
        if now < self.quiet_until {
            return;
        }
        self.seen_epoch = epoch;
        self.hint_asks = HINT_ASKS;
        self.hint_since = now;
        // Give the commit itself a moment: under reordering the first message of the new
        // epoch can overtake it.
        self.next_request_at = now + REPLY_JITTER_MS;
    }

    /// Takes a signed hint that the group is at `epoch`, above `ours`: a fresh round of
    /// asks unless one is running, whatever the quiet period.
    fn take_signed_hint(&mut self, now: Millis, epoch: u64, ours: u64) {
        let fresh_round = self.seen_epoch <= ours || self.hint_asks == 0;
        self.reset_hints();
        if fresh_round {
            self.seen_epoch = 0;
            self.take_hint(now, epoch, ours);
        } else {
            self.seen_epoch = self.seen_epoch.max(epoch);
        }
    }

    /// Whether a hint above `ours` is being probed.
    fn hinted(&self, ours: u64) -> bool {
        self.seen_epoch > ours
    }

    /// A round of asks brought nothing: the next round after twice the last wait (the
    /// first after `base`), or, past [`MAX_HINT_BACKOFF_MS`], forget the hint and take
    /// no new one for that long.
    pub(super) fn next_hint_round(&mut self, now: Millis, base: Millis) {
        self.backoff = if self.backoff == 0 {
            base
        } else {
            self.backoff.saturating_mul(2)
        };
        if self.backoff > MAX_HINT_BACKOFF_MS.max(base) {
            self.seen_epoch = 0;
            self.hint_asks = 0;
            self.quiet_until = now.saturating_add(self.backoff);
        } else {
            self.hint_asks = HINT_ASKS;
            self.next_request_at = now.saturating_add(self.backoff);
        }
    }

    /// Hints start afresh: no backoff, no quiet period.
    fn reset_hints(&mut self) {
        self.backoff = 0;
        self.quiet_until = 0;
    }

    /// The hint proved true and may point further: a fresh round of asks, the first now.
    pub(super) fn restart_asks(&mut self, now: Millis) {
        self.hint_asks = HINT_ASKS;
        self.hint_since = now;
        self.next_request_at = now;
    }

    /// Whether a probe is still waiting for answers at `now`; clears one that ran out.
    fn probing(&mut self, now: Millis) -> bool {
        if self.probe_ran_out(now) {
            self.probe_until = None;
        }
        self.probe_until.is_some()
    }

    /// Whether a probe ran out by `now` and is not cleared yet.
    pub(crate) fn probe_ran_out(&self, now: Millis) -> bool {
        self.probe_until.is_some_and(|u| now >= u)
    }
}

impl Conversation {
    /// A plaintext packet claims the group is at `epoch`. Nobody authenticated that, so it
    /// starts at most one probe of [`HINT_ASKS`] requests (unless one runs or we are in a
    /// quiet period after fruitless hints), and is forgotten when the probe ends.
    pub(crate) fn hint(&mut self, now: Millis, epoch: u64) {
        let ours = self.epoch();
        if epoch <= ours {
            return;
        }
        self.catch_up.take_hint(now, epoch, ours);
    }

    /// A member signed that the group is at `epoch` (a beacon): ask now, whatever
    /// fruitless unauthenticated hints taught us to wait for. Members send beacons
    /// rarely (see `fork`), so this costs at most one round of asks per beacon.
    pub(crate) fn signed_hint(&mut self, now: Millis, epoch: u64) {
        let ours = self.epoch();
        if epoch <= ours {
            return;
        }
        self.catch_up.take_signed_hint(now, epoch, ours);
    }

    /// Whether an unauthenticated hint is being probed.
    pub(crate) fn hint_probing(&self) -> bool {
        self.catch_up.hinted(self.epoch())
    }

    /// Whether the first round of asks for a hint is still running: elections wait for it
    /// (an election for an epoch the group has left could pass by the timeout rule), and
    /// for nothing after it.
    pub(crate) fn hint_first_round(&self, now: Millis) -> bool {
        let round = Millis::from(HINT_ASKS) * self.config.recovery_inactivity + 2 * REPLY_JITTER_MS;
        self.hint_probing() && now < self.catch_up.hint_since.saturating_add(round)
    }

    /// We are in step with the group (a commit merged): hints start afresh.
    pub(crate) fn reset_hints(&mut self) {
        self.catch_up.reset_hints();
    }

    /// Starts asking whether anyone left our epoch already (see [`CatchUp::probe_until`]):
    /// a few requests, each answered within the reply jitter by members that hold the
    /// commit.
    pub(crate) fn start_probe(&mut self, now: Millis) {
        let wait = 2 * self.config.recovery_inactivity + REPLY_JITTER_MS;
        self.catch_up.probe_until = Some(now + wait);
        self.catch_up.next_request_at = now;
    }

    /// Whether a probe is still waiting for answers at `now`; clears one that ran out.
    pub(crate) fn probing(&mut self, now: Millis) -> bool {
        self.catch_up.probing(now)
    }
}
