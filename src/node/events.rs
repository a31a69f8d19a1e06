//! The node's event stream with ids: every event gets the next id and is kept in a ring
//! of the latest ones, so a client that lost its `GET /events` stream resumes after the
//! last id it saw (`Last-Event-ID`) without a gap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::api::types::EventView;

/// Events kept for resuming streams.
pub(crate) const KEPT_EVENTS: usize = 1024;

struct Ring {
    /// The id the next event gets.
    next: u64,
    events: VecDeque<EventView>,
}

/// Publishes events with increasing ids and keeps the latest for resuming subscribers.
#[derive(Clone)]
pub(crate) struct EventLog {
    tx: broadcast::Sender<EventView>,
    ring: Arc<Mutex<Ring>>,
}

/// What a resuming subscriber gets: the kept events after its id, how many it missed
/// beyond those (they were no longer kept), and the live stream from there on.
pub(crate) struct Resumed {
    pub backlog: Vec<EventView>,
    pub missed: u64,
    pub rx: broadcast::Receiver<EventView>,
}

impl EventLog {
    /// A log over `tx`. Ids start at the current time in microseconds, so they keep
    /// increasing across restarts (a client resuming with an id of an earlier run gets
    /// what this run kept, not a stale match).
    pub(crate) fn new(tx: broadcast::Sender<EventView>) -> Self {
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1)
            .max(1);
        Self {
            tx,
            ring: Arc::new(Mutex::new(Ring {
                next: first,
                events: VecDeque::with_capacity(KEPT_EVENTS),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `ev` the next id, keeps it, and sends it to the live subscribers.
    pub(crate) fn publish(&self, mut ev: EventView) {
        let mut ring = self.lock();
        ev.id = ring.next;
        ring.next += 1;
        if ring.events.len() == KEPT_EVENTS {
            ring.events.pop_front();
        }
        ring.events.push_back(ev.clone());
        // Sent under the lock, so that a subscriber taking the backlog under it sees
        // each event exactly once (in the backlog or live).
        let _ = self.tx.send(ev);
    }

    /// A live subscription (from the next event on).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<EventView> {
        self.tx.subscribe()
    }

    /// A subscription resuming after event `after`: the kept events after it, then live.
    /// An `after` from the future (another node, a clock set back) resumes from now.
    pub(crate) fn since(&self, after: u64) -> Resumed {
        let ring = self.lock();
        let rx = self.tx.subscribe();
        if after >= ring.next {
            return Resumed {
                backlog: Vec::new(),
                missed: 0,
                rx,
            };
        }
        let backlog: Vec<EventView> = ring
            .events
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        let first_kept = ring.events.front().map(|e| e.id).unwrap_or(ring.next);
        // Ids of this run are consecutive; before it, nothing can be counted.
        let missed = if after + 1 < first_kept && after + KEPT_EVENTS as u64 * 1024 > first_kept {
            first_kept - after - 1
        } else {
            0
        };
        Resumed {
            backlog,
            missed,
            rx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> EventView {
        EventView {
            conversation: "c".into(),
            kind: "chat".into(),
            data: serde_json::json!({ "n": n }),
            ..Default::default()
        }
    }

    #[test]
    fn a_resumed_stream_gets_what_it_missed_then_live_events_once_each() {
        let (tx, _) = broadcast::channel(16);
        let log = EventLog::new(tx);
        let mut first = log.subscribe();
        log.publish(ev(1));
        log.publish(ev(2));
        log.publish(ev(3));
        let a = first.try_recv().unwrap();
        let b = first.try_recv().unwrap();
        assert_eq!(b.id, a.id + 1);
        let mut r = log.since(a.id);
        assert_eq!(
            r.backlog
                .iter()
                .map(|e| e.data["n"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(r.missed, 0);
        log.publish(ev(4));
        assert_eq!(r.rx.try_recv().unwrap().data["n"], 4);
        assert!(r.rx.try_recv().is_err());
        // An id from the future resumes from now.
        assert!(log.since(u64::MAX - 1).backlog.is_empty());
    }

    #[test]
    fn events_no_longer_kept_are_counted_as_missed() {
        let (tx, _) = broadcast::channel(16);
        let log = EventLog::new(tx);
        let mut rx = log.subscribe();
        log.publish(ev(0));
        let first = rx.try_recv().unwrap().id;
        for n in 1..(KEPT_EVENTS as u64 + 10) {
            log.publish(ev(n));
        }
        let r = log.since(first);
        assert_eq!(r.backlog.len(), KEPT_EVENTS);
        assert_eq!(r.missed, 9);
    }
}
