//! Unauthenticated hints stay hints: an epoch claimed by an MLS header nobody has
//! authenticated may start a short, bounded probe and is then forgotten; it never makes a
//! member "behind" for good, never blocks elections, and messages buffered for a later
//! epoch are bounded in count, bytes and time.

mod hostile;
mod sim;

use demls_core::conversation::Subtopic;
use hostile::*;

/// One fake far-future header, then the same header every 30 s while four more members
/// join: the catch-up requests stop within minutes and every join completes.
#[test]
fn a_fake_future_epoch_does_not_stick() {
    let (mut s, ids, outsider, _) = setup(0);
    let fake = fake_mls_message(&s.name, 1_000_000, 16, 0);
    s.inject(outsider, Subtopic::AppMsg, fake.clone());
    s.run_for(10 * MIN);
    let tenth_minute = traffic(&s, s.now - MIN, &ids, is_catch_up_request).0;
    let more = s.add_members(4);
    let mut all = ids.clone();
    let mut stuck = None;
    'joins: for &j in &more {
        s.join(j);
        all.push(j);
        let deadline = s.now + 20 * MIN;
        loop {
            s.inject(outsider, Subtopic::AppMsg, fake.clone());
            if s.run_until(30_000, |s| s.converged(&all)) {
                break;
            }
            if s.now >= deadline {
                stuck = Some(j);
                break 'joins;
            }
        }
    }
    assert!(
        tenth_minute == 0 && stuck.is_none(),
        "{tenth_minute} catch-up requests in the 10th minute after one fake-epoch packet; \
         with the packet repeated every 30 s the join of {stuck:?} never completed\n{}",
        s.describe()
    );
}

/// Even repeated every 30 s, the hint costs a bounded number of requests per member.
#[test]
fn a_repeated_fake_epoch_costs_a_bounded_number_of_requests() {
    let (mut s, ids, outsider, _) = setup(0);
    let t0 = s.now;
    for k in 0..20 {
        let fake = fake_mls_message(&s.name, 1_000 + k, 16, k as u32);
        s.inject(outsider, Subtopic::AppMsg, fake);
        s.run_for(30_000);
    }
    let asked = traffic(&s, t0, &ids, is_catch_up_request).0;
    // Rounds of three asks, each after twice the wait of the one before (from
    // commit_inactivity, 6 s here): at most 8 rounds in 10 minutes, however many hints.
    assert!(
        asked <= 4 * 8 * 3,
        "{asked} catch-up requests from 4 members for 20 fake hints in 10 minutes"
    );
}

#[derive(serde::Deserialize)]
struct FutureOnly {
    future: Vec<(u64, serde::de::IgnoredAny)>,
}

/// 600 outsider messages of 100 KiB claiming the next epoch: the saved state stays small,
/// and nothing of them is kept ten minutes later.
#[test]
fn later_epoch_messages_do_not_pile_up_in_saved_state() {
    let (mut s, ids, outsider, _) = setup(0);
    let m = ids[1];
    let epoch = s.members[m].conv().epoch();
    let base = s.members[m].conv().save().unwrap().len();
    for k in 0..600 {
        s.inject(
            outsider,
            Subtopic::AppMsg,
            fake_mls_message(&s.name, epoch + 1, 100 * 1024, k),
        );
        s.run_for(20);
    }
    let right_after = s.members[m].conv().save().unwrap().len();
    s.run_for(10 * MIN);
    let saved = s.members[m].conv().save().unwrap();
    let kept = serde_json::from_slice::<FutureOnly>(&saved)
        .map(|f| f.future.len())
        .unwrap_or(0);
    assert_eq!(s.members[m].conv().epoch(), epoch);
    assert!(
        right_after < base + (1 << 20) && saved.len() < base + (64 << 10) && kept == 0,
        "saved state {base} B before, {right_after} B right after 600 junk messages, {} B \
         ten minutes later with {kept} still buffered",
        saved.len()
    );
}
