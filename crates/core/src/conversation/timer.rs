//! Deadlines: each part of a conversation says when it next needs a tick, and why.
//!
//! A part that keeps timed state (the pending join, the proposal set, the freeze round,
//! the catch-up bookkeeping, the fork watch, the trailing winner, reliable chat) answers
//! `deadline() -> Deadline`; [`super::Conversation::next_wakeup`] is the soonest of them,
//! and a tick runs the parts that are due. Naming the reason makes a wake-up that does
//! nothing traceable to the part that asked for it.

use crate::config::Millis;

/// Why a conversation asked to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// Re-announce our key package while we wait for a welcome.
    JoinAnnounce,
    /// Give up (or, for a rejoin, renew) the pending join.
    JoinExpiry,
    /// Cast our automatic vote on an open proposal.
    AutoVote,
    /// An open proposal's consensus timeout.
    VoteTimeout,
    /// Approved work waits and no inactivity anchor is set yet: tick now to set it.
    AnchorUnset,
    /// The commit-inactivity window ran out: freeze.
    Inactivity,
    /// The freeze round's selection is due.
    FreezeSelect,
    /// Re-send our candidate within the freeze window.
    FreezeResend,
    /// Re-send the winner of the round we just left.
    TrailingWinner,
    /// A steward election has taken too long.
    ReelectionPatience,
    /// Our steward list has been exhausted too long with no election decided.
    ExhaustedPatience,
    /// A fork to decide, or a beacon to send.
    Fork,
    /// A catch-up reply, a proposal re-send or a request for a missing proposal is due.
    CatchUp,
    /// A probe of an epoch claimed ahead of ours ends, or asks again.
    Probe,
    /// A backup steward takes over a request the epoch steward left unproposed.
    Takeover,
    /// Reliable chat: a re-send, a sync or an acknowledgement is due.
    Chat,
    /// A welcome re-send a joiner asked for.
    WelcomeResend,
}

/// When a part next needs a tick, and why; `None` when it waits for nothing.
pub(crate) type Deadline = Option<(Millis, Timer)>;

/// A deadline at `at` for `why`, if there is one.
pub(crate) fn at(at: Option<Millis>, why: Timer) -> Deadline {
    at.map(|t| (t, why))
}

// Each timer is one bit of a `Timers`; new variants go at the end, so the last is the
// largest.
const _: () = assert!((Timer::WelcomeResend as u32) < u32::BITS);

/// A set of [`Timer`]s: the reasons a part of the conversation answers to, or the ones
/// due at some instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Timers(u32);

impl Timers {
    /// The set of `timers` (usable in constants, for the tick's schedule).
    pub(crate) const fn of(timers: &[Timer]) -> Self {
        let mut set = Self(0);
        let mut i = 0;
        while i < timers.len() {
            set = set.with(timers[i]);
            i += 1;
        }
        set
    }

    /// Adds `t`.
    pub(crate) fn insert(&mut self, t: Timer) {
        *self = self.with(t);
    }

    /// The set with `t` added.
    pub(crate) const fn with(self, t: Timer) -> Self {
        Self(self.0 | 1 << t as u32)
    }

    /// Whether the two sets share a timer.
    pub(crate) fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

/// Folds deadlines into the soonest one (the earlier reason wins a tie, so the fold
/// is deterministic). Made with [`Soonest::due_at`], it also collects every reason whose
/// deadline has come: what a tick at that instant has to run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Soonest {
    soonest: Deadline,
    /// The instant whose due timers are collected, if any.
    now: Option<Millis>,
    due: Timers,
}

impl Soonest {
    /// A fold that also collects the timers due at `now` (deadline at or before it).
    pub(crate) fn due_at(now: Millis) -> Self {
        Self {
            now: Some(now),
            ..Self::default()
        }
    }

    /// Takes `d` if it is sooner than what is held (and notes it if it is due).
    pub(crate) fn add(&mut self, d: Deadline) {
        if let Some((t, why)) = d {
            if self.now.is_some_and(|now| t <= now) {
                self.due.insert(why);
            }
            if self.soonest.is_none_or(|(held, _)| t < held) {
                self.soonest = Some((t, why));
            }
        }
    }

    /// The soonest deadline added.
    pub(crate) fn get(self) -> Deadline {
        self.soonest
    }

    /// The reasons added whose deadline is due (none unless made by [`Soonest::due_at`]).
    pub(crate) fn due(self) -> Timers {
        self.due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soonest_deadline_wins_and_a_tie_keeps_the_first() {
        let mut s = Soonest::default();
        assert_eq!(s.get(), None);
        s.add(None);
        s.add(Some((50, Timer::Chat)));
        s.add(Some((20, Timer::Fork)));
        s.add(Some((20, Timer::CatchUp)));
        s.add(Some((90, Timer::Probe)));
        assert_eq!(s.get(), Some((20, Timer::Fork)));
        assert_eq!(at(None, Timer::Fork), None);
        assert_eq!(at(Some(7), Timer::Fork), Some((7, Timer::Fork)));
        assert_eq!(s.due(), Timers::default(), "a plain fold collects nothing");
    }

    #[test]
    fn a_fold_at_an_instant_collects_every_reason_due_by_then() {
        let mut s = Soonest::due_at(20);
        s.add(Some((50, Timer::Chat)));
        s.add(Some((20, Timer::Fork)));
        s.add(Some((5, Timer::CatchUp)));
        s.add(None);
        assert_eq!(s.get(), Some((5, Timer::CatchUp)));
        assert_eq!(s.due(), Timers::of(&[Timer::Fork, Timer::CatchUp]));
        assert!(s.due().meets(Timers::of(&[Timer::Chat, Timer::CatchUp])));
        assert!(!s.due().meets(Timers::of(&[Timer::Chat, Timer::Probe])));
    }
}
