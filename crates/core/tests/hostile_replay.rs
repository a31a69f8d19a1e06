//! Replay: a key-package announcement, once used (or once stale), adds nobody again.

mod hostile;
mod sim;

use demls_core::conversation::{Conversation, Ctx, LeaveReason, Subtopic};
use hostile::*;

/// A removed member's original announcement, replayed once by anyone, must not re-add it.
#[test]
fn a_replayed_announcement_does_not_readd_a_removed_member() {
    let (mut s, ids, outsider, x) = setup(0);
    let x_id = s.id(x);
    let ann = announcement_of(&s, x);
    let rest = others(&ids, &[x]);
    s.propose_removal(rest[0], x);
    s.assert_converge(&rest, 5 * MIN);
    s.run_until(MIN, |s| s.members[x].conv().closed().is_some());
    assert_eq!(s.members[x].conv().closed(), Some(LeaveReason::Removed));
    s.run_for(30_000);
    s.inject(outsider, Subtopic::Welcome, ann);
    s.run_for(3 * MIN);
    let readded: Vec<usize> = rest
        .iter()
        .copied()
        .filter(|i| s.members[*i].conv().members().contains(&x_id))
        .collect();
    assert!(
        readded.is_empty(),
        "a replay of removed member {x}'s announcement re-added it at {readded:?}\n{}",
        s.describe()
    );
}

/// An announcement replayed long after it was made (the joiner gave up, or never existed
/// as a live node) proposes nothing.
#[test]
fn a_stale_announcement_proposes_nothing() {
    let (mut s, ids, outsider, _) = setup(0);
    // A joiner's announcement that never reached the group (made, then the node died).
    let j = s.add_member("late");
    let ann = {
        let (name, cfg, now) = (s.name.clone(), s.config.clone(), s.now);
        let m = &mut s.members[j];
        let mut ctx = Ctx {
            provider: &m.provider,
            identity: &m.identity,
            rng: &mut m.rng,
            now,
        };
        let (_, out) = Conversation::join(&name, cfg, &mut ctx).expect("join");
        out.packets[0].payload.clone()
    };
    s.run_for(30 * MIN);
    let t0 = s.now;
    let before = s.members[ids[0]].conv().members().len();
    s.inject(outsider, Subtopic::Welcome, ann);
    s.run_for(3 * MIN);
    let opened: usize = ids
        .iter()
        .map(|i| {
            s.members[*i]
                .events
                .iter()
                .filter(|(t, e)| {
                    *t >= t0 && matches!(e, demls_core::conversation::Event::ProposalCreated { .. })
                })
                .count()
        })
        .sum();
    assert_eq!(s.members[ids[0]].conv().members().len(), before);
    assert_eq!(
        opened, 0,
        "a 30-minute-old announcement opened {opened} proposals"
    );
}
