//! The trailing winner: the winning candidate of the round we just left, re-sent for a
//! while after it.

use super::*;

/// The winning candidate of the round we just left, re-sent for a while by a steward.
///
/// A member selects early once every steward's candidate is in, and stops re-sending its
/// own. A member whose window is still open may by then hold only a losing candidate (the
/// winner's copies lost on the way) and would apply that one: a fork. So stewards keep
/// sending the winner until such windows have closed. Losing candidates are not re-sent:
/// a member holding nothing at the end of its window probes and catches up instead.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TrailingWinner {
    /// The `AppEnvelope` carrying the winning candidate, as published.
    pub envelope: Vec<u8>,
    /// When it is next re-sent.
    pub next: Millis,
    /// Re-sends stop once `next` passes this (see [`TrailingWinner::new`]).
    pub until: Millis,
}

impl TrailingWinner {
    /// Re-sends `envelope` every `gap` from `now` until half a freeze window (`freeze`)
    /// after our own window ended (`window_end`), or after now if that was earlier.
    pub fn new(
        envelope: Vec<u8>,
        now: Millis,
        gap: Millis,
        window_end: Millis,
        freeze: Millis,
    ) -> Self {
        Self {
            envelope,
            next: now + gap,
            until: window_end.max(now) + freeze / 2,
        }
    }

    /// When the next re-send is due.
    pub fn deadline(&self) -> Deadline {
        Some((self.next, Timer::TrailingWinner))
    }

    /// The envelope if a re-send is due at `now`; the next one is scheduled `gap` later.
    pub fn resend_due(&mut self, now: Millis, gap: Millis) -> Option<&[u8]> {
        if now < self.next {
            return None;
        }
        self.next = now + gap;
        Some(&self.envelope)
    }

    /// Whether the re-sends are over (the next would come after `until`).
    pub fn finished(&self) -> bool {
        self.next > self.until
    }
}

impl Conversation {
    /// See [`TrailingWinner`].
    pub(in crate::conversation) fn tick_trailing_winner(&mut self, now: Millis, out: &mut Output) {
        let gap = self.resend_gap();
        let Some(w) = self.trailing.as_mut() else {
            return;
        };
        let Some(envelope) = w.resend_due(now, gap) else {
            return;
        };
        out.send(Subtopic::AppMsg, envelope.to_vec());
        if w.finished() {
            self.trailing = None;
        }
    }
}
