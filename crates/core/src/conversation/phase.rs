//! Where a conversation is in its epoch (the reference's state machine, §2.1), with the
//! data only that state has: the attempt that waits for a welcome lives inside
//! `PendingJoin`, the freeze round inside `Freezing`, the start of the wait for an
//! election inside `Reelection`. Leaving a state drops its data, so no part has to check
//! the state before trusting a field beside it.
//!
//! Two timestamps stay beside the phase because they outlive one: the inactivity anchor
//! (an approval during a freeze anchors the window after it) and the time the steward
//! list ran out (it runs across freezes until an election is decided).

use serde::{Serialize, Serializer};

use super::freeze::FreezeRound;
use super::join::PendingJoin;
use super::{ConversationState, LeaveReason};
use crate::config::Millis;

/// The phase of a conversation and the data that belongs to it.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Key package announced, waiting for a welcome.
    PendingJoin(PendingJoin),
    /// Normal operation.
    Working,
    /// Collecting commit candidates for the round's epoch.
    Freezing(FreezeRound),
    /// Choosing and applying a candidate (the round has been taken to be ranked).
    Selection,
    /// The commit was missed; `since` is when we began waiting for an election (or last
    /// gave up on one and probed again).
    Reelection {
        /// When the current wait for an election began.
        since: Millis,
    },
    /// We left, were removed, or gave up a join. Nothing runs any more; `last` is the
    /// state we closed in, which views still show.
    Closed {
        /// Why the conversation closed.
        reason: LeaveReason,
        /// The state at closing (or set by a transition made while unwinding the step
        /// that closed it).
        last: ConversationState,
    },
}

impl Phase {
    /// The state's name, as events and views give it.
    pub(crate) fn state(&self) -> ConversationState {
        match self {
            Self::PendingJoin(_) => ConversationState::PendingJoin,
            Self::Working => ConversationState::Working,
            Self::Freezing(_) => ConversationState::Freezing,
            Self::Selection => ConversationState::Selection,
            Self::Reelection { .. } => ConversationState::Reelection,
            Self::Closed { last, .. } => *last,
        }
    }

    /// Why we closed, once we have.
    pub(crate) fn closed(&self) -> Option<LeaveReason> {
        match self {
            Self::Closed { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The freeze round, while we freeze.
    pub(crate) fn round(&self) -> Option<&FreezeRound> {
        match self {
            Self::Freezing(f) => Some(f),
            _ => None,
        }
    }

    /// The freeze round, while we freeze, to change it.
    pub(crate) fn round_mut(&mut self) -> Option<&mut FreezeRound> {
        match self {
            Self::Freezing(f) => Some(f),
            _ => None,
        }
    }

    /// The attempt that waits for a welcome, while we wait.
    pub(crate) fn pending_join(&self) -> Option<&PendingJoin> {
        match self {
            Self::PendingJoin(pj) => Some(pj),
            _ => None,
        }
    }

    /// The attempt that waits for a welcome, while we wait, to change it.
    pub(crate) fn pending_join_mut(&mut self) -> Option<&mut PendingJoin> {
        match self {
            Self::PendingJoin(pj) => Some(pj),
            _ => None,
        }
    }

    /// When the wait for an election began, while we are in Reelection.
    pub(crate) fn reelection_since(&self) -> Option<Millis> {
        match self {
            Self::Reelection { since } => Some(*since),
            _ => None,
        }
    }

    /// Starts the wait for an election again at `now` (a probe found nobody ahead of us,
    /// or the last wait ran out). Nothing outside Reelection.
    pub(crate) fn restart_reelection(&mut self, now: Millis) {
        if let Self::Reelection { since } = self {
            *since = now;
        }
    }

    /// Rebuilds a phase from the saved keys, which predate this type: `state` and
    /// `closed` say which phase, and only that phase's key is taken.
    ///
    /// A state saved in PendingJoin with no attempt (an older build dropped it when it
    /// gave the join up, and such a state was closed) reads as an attempt that has
    /// expired, which is what it was. A Reelection saved without its start reads as
    /// begun at 0: the wait ran out, and the first tick probes again. A Freezing state
    /// without its round (no build wrote one) reads as an empty round begun at 0, whose
    /// selection is due at once: a round-less Freezing selected at its first tick.
    pub(crate) fn from_saved(saved: SavedPhase) -> Self {
        let SavedPhase {
            state,
            closed,
            freeze,
            pending_join,
            reelection_since,
        } = saved;
        if let Some(reason) = closed {
            return Self::Closed {
                reason,
                last: state,
            };
        }
        match state {
            ConversationState::PendingJoin => {
                Self::PendingJoin(pending_join.unwrap_or_else(PendingJoin::expired))
            }
            ConversationState::Working => Self::Working,
            ConversationState::Freezing => Self::Freezing(freeze.unwrap_or_default()),
            ConversationState::Selection => Self::Selection,
            ConversationState::Reelection => Self::Reelection {
                since: reelection_since.unwrap_or(0),
            },
        }
    }
}

/// The saved keys a [`Phase`] is written as and read from: the saved format keeps the
/// flat layout it had before the phase carried its data.
#[derive(Debug)]
pub(crate) struct SavedPhase {
    pub state: ConversationState,
    pub closed: Option<LeaveReason>,
    pub freeze: Option<FreezeRound>,
    pub pending_join: Option<PendingJoin>,
    pub reelection_since: Option<Millis>,
}

/// The same keys, borrowed, for writing.
#[derive(Serialize)]
struct SavedPhaseRef<'a> {
    state: ConversationState,
    reelection_since: Option<Millis>,
    freeze: Option<&'a FreezeRound>,
    pending_join: Option<&'a PendingJoin>,
    closed: Option<LeaveReason>,
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SavedPhaseRef {
            state: self.state(),
            reelection_since: self.reelection_since(),
            freeze: self.round(),
            pending_join: self.pending_join(),
            closed: self.closed(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(state: ConversationState) -> SavedPhase {
        SavedPhase {
            state,
            closed: None,
            freeze: Some(FreezeRound {
                epoch: 4,
                started_at: 10,
                ..Default::default()
            }),
            pending_join: Some(PendingJoin::expired()),
            reelection_since: Some(20),
        }
    }

    #[test]
    fn a_saved_state_keeps_only_the_data_of_its_phase() {
        let p = Phase::from_saved(saved(ConversationState::Freezing));
        assert_eq!(p.round().map(|f| (f.epoch, f.started_at)), Some((4, 10)));
        assert!(p.pending_join().is_none() && p.reelection_since().is_none());

        let p = Phase::from_saved(saved(ConversationState::Reelection));
        assert_eq!(p.reelection_since(), Some(20));
        assert!(p.round().is_none() && p.pending_join().is_none());

        let p = Phase::from_saved(saved(ConversationState::PendingJoin));
        assert!(p.pending_join().is_some());
        assert!(p.round().is_none() && p.reelection_since().is_none());

        // A round left beside Working by an older build is not carried into the phase.
        for state in [ConversationState::Working, ConversationState::Selection] {
            let p = Phase::from_saved(saved(state));
            assert_eq!(p.state(), state);
            assert!(p.round().is_none() && p.pending_join().is_none());
        }
    }

    #[test]
    fn a_closed_state_keeps_its_name_and_reason_and_nothing_else() {
        let mut s = saved(ConversationState::Freezing);
        s.closed = Some(LeaveReason::Removed);
        let p = Phase::from_saved(s);
        assert_eq!(p.state(), ConversationState::Freezing);
        assert_eq!(p.closed(), Some(LeaveReason::Removed));
        assert!(p.round().is_none() && p.pending_join().is_none());
    }

    #[test]
    fn a_phase_saved_without_its_data_reads_as_that_data_run_out() {
        let mut s = saved(ConversationState::PendingJoin);
        s.pending_join = None;
        let pj = Phase::from_saved(s);
        let pj = pj.pending_join().expect("an attempt");
        // Nothing to repeat, and expired long ago (it began at 0): the first tick gives
        // it up.
        assert!(pj.announcement.is_empty());
        let config = crate::config::ConversationConfig::default();
        assert_eq!(pj.expires_at(&config), config.pending_join_expiry());

        let mut s = saved(ConversationState::Reelection);
        s.reelection_since = None;
        assert_eq!(Phase::from_saved(s).reelection_since(), Some(0));

        let mut s = saved(ConversationState::Freezing);
        s.freeze = None;
        let p = Phase::from_saved(s);
        assert_eq!(p.round().map(|f| f.candidates.len()), Some(0));
    }

    #[test]
    fn a_phase_is_saved_as_the_flat_keys() {
        let p = Phase::from_saved(saved(ConversationState::Reelection));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["state"], "Reelection");
        assert_eq!(v["reelection_since"], 20);
        assert!(v["freeze"].is_null() && v["pending_join"].is_null() && v["closed"].is_null());
    }
}
