//! Coming back after an absence: a member that missed a commit learns of it only after
//! the proposals the commit carried have expired, and still catches up (the commit is
//! judged by the rules that held when it was made, not by expiry at the time it is read);
//! and a member away for an hour, while the group moved further than anyone keeps
//! commits for it (issue 12, item 5), gets back into the current group by itself.
//! Each hour-long run prints a `SIM_REPORT absence …` line (time to come back, packets).

mod hostile;
mod sim;

use demls_core::config::ConversationConfig;
use demls_core::conversation::Role;
use hostile::*;
use sim::{Net, Sim, fast_config, for_nets_and_seeds, report};

/// Member b is cut off while a joiner is added; it hears of the new epoch only 70 s later
/// (`proposal_expiration` is 60 s in the fast config).
#[test]
fn a_member_behind_past_proposal_expiry_catches_up() {
    let Missed { mut s, b, rest, .. } = miss_a_commit(0, 70_000);
    let target = s.members[rest[0]].conv().epoch();
    let t0 = s.now;
    s.chat(rest[0], "hello");
    let caught = s.run_until(MIN, |s| s.members[b].conv().epoch() == target);
    let asked = traffic(&s, t0, &[b], is_catch_up_request).0;
    assert!(
        caught,
        "b never caught up ({asked} requests in a minute)\n{}",
        s.describe()
    );
}

/// Bound on coming back: from the moment `b` can hear the group again to `b` being in the
/// current group (virtual ms).
const BACK_BOUND: u64 = 5 * MIN;
/// Packets `b` may publish from coming back until it is in the group again, and over the
/// same span after: one join (announcement re-sent every `commit_inactivity`), a few probes
/// and epoch beacons. The failure sent 238 catch-up requests in two minutes.
const BACK_PACKETS: usize = 60;
/// Packets `b` may publish while alone for an hour: one per 5 s on average (beacons or
/// probes, never a loop).
const ALONE_PACKETS: usize = 720;

/// How `b` is away.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Away {
    /// Crashed; restarted from its saved state.
    Crashed,
    /// Running, but cut off alone; the network heals.
    CutOff,
}

fn net_name(net: &Net) -> &'static str {
    if net.loss > 0.0 { "lossy" } else { "clean" }
}

/// Membership changes without `b` (which stays on the roster, silent): a newcomer joins,
/// the previous one is removed, … until the group is `epochs` epochs past where `b` is.
/// Returns the live members and the roster.
fn churn(s: &mut Sim, live: &[usize], b: usize, epochs: u64) -> (Vec<usize>, Vec<usize>) {
    let mut live = live.to_vec();
    let mut roster: Vec<usize> = live.iter().copied().chain([b]).collect();
    let target = s.members[live[0]].conv().epoch() + epochs;
    let mut newcomer: Option<usize> = None;
    let mut k = 0;
    while s.members[live[0]].conv().epoch() < target {
        k += 1;
        match newcomer.take() {
            Some(j) => {
                s.propose_removal(live[0], j);
                live.retain(|i| *i != j);
                roster.retain(|i| *i != j);
            }
            None => {
                let j = s.add_member(&format!("newcomer{k}"));
                s.join(j);
                live.push(j);
                roster.push(j);
                newcomer = Some(j);
            }
        }
        s.assert_agree_rejoining(&live, &roster, 10 * MIN);
    }
    (live, roster)
}

/// A member away for a simulated hour while the group changed membership more than
/// `catch_up_window` epochs on (and every proposal of those changes expired) comes back
/// into the current group without anyone calling join, within [`BACK_BOUND`], and sends
/// a bounded number of packets doing so. With `chatty`, the group chats every 15 s while
/// it comes back (traffic from epochs it cannot read: the hint that used to make a
/// member ask for commits forever); otherwise the group is quiet and the member has to
/// find out by itself.
///
/// Peer scores are out of reach here: a member away for an hour is the epoch steward of
/// some of the epochs it misses, and three such turns (`CensorshipInactivity`, −40 each,
/// from 100) put it at the score threshold, where the group votes it out (8 of 40 seeds
/// at the default threshold). That is the group deciding, by its rules, that an absent
/// steward goes; this test is about a member the group kept.
fn away_for_an_hour(seed: u64, net: Net, away: Away, chatty: bool) {
    let cfg = ConversationConfig {
        threshold_peer_score: -1_000_000,
        ..fast_config()
    };
    let (mut s, ids) = group(seed, net.clone(), cfg, 4);
    let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
    let bs = s
        .holder(ids[0], Role::BackupSteward)
        .expect("backup steward");
    let b = others(&ids, &[es, bs])[0];
    let rest = others(&ids, &[b]);
    let e_b = s.members[b].conv().epoch();
    let t_off = s.now;
    match away {
        Away::Crashed => s.crash(b),
        Away::CutOff => s.isolate(&[b]),
    }
    let window = s.config.catch_up_window as u64;
    let (live, roster) = churn(&mut s, &rest, b, window + 2);
    let group_epoch = s.members[live[0]].conv().epoch();
    assert!(group_epoch > e_b + window, "{}", s.describe());
    // The rest of the hour passes.
    s.run_for((t_off + 60 * MIN).saturating_sub(s.now));
    let alone_packets = traffic(&s, t_off, &[b], |_, _| true).0;
    let t_back = s.now;
    match away {
        Away::Crashed => s.restart(b),
        Away::CutOff => s.heal(),
    }
    let all: Vec<usize> = live.iter().copied().chain([b]).collect();
    let mut next_chat = s.now + 15_000;
    let mut n_chat = 0;
    let mut back = false;
    while s.now < t_back + BACK_BOUND {
        let until = next_chat.min(t_back + BACK_BOUND) - s.now;
        if s.run_until(until, |s| s.converged(&all)) {
            back = true;
            break;
        }
        if chatty && s.now >= next_chat {
            n_chat += 1;
            s.try_chat(
                live[n_chat % live.len()],
                &format!("while b is away {n_chat}"),
            );
        }
        next_chat = s.now + 15_000;
    }
    let back_ms = s.now - t_back;
    let sent = traffic(&s, t_back, &[b], |_, _| true).0;
    let asked = traffic(&s, t_back, &[b], is_catch_up_request).0;
    let plan = format!(
        "seed={seed} net={} away={away:?} chatty={chatty}: b={b} at epoch {e_b}, group at epoch {} \
         ({} members) after an hour; b sent {alone_packets} packets while away, {sent} since \
         coming back ({asked} catch-up requests)",
        net_name(&net),
        s.members[live[0]].conv().epoch(),
        roster.len()
    );
    assert!(
        back,
        "b is not in the current group {} s after coming back: {plan}\n{}",
        BACK_BOUND / 1000,
        s.describe()
    );
    assert!(
        sent <= BACK_PACKETS,
        "b sent {sent} packets to come back (bound {BACK_PACKETS}): {plan}"
    );
    if away == Away::CutOff {
        assert!(
            alone_packets <= ALONE_PACKETS,
            "b sent {alone_packets} packets alone in an hour (bound {ALONE_PACKETS}): {plan}"
        );
    }
    // Back for real: chat both ways, and b does not keep talking more than the others.
    let missed = s.chat_reaches(b, "b is back", &all, 30_000);
    assert!(
        missed.is_empty(),
        "b's chat missed {missed:?}: {plan}\n{}",
        s.describe()
    );
    let missed = s.chat_reaches(live[0], "welcome back b", &all, 30_000);
    assert!(
        missed.is_empty(),
        "chat to b missed {missed:?}: {plan}\n{}",
        s.describe()
    );
    let t_settled = s.now;
    s.run_for(back_ms.max(MIN));
    let after = traffic(&s, t_settled, &[b], |_, _| true).0;
    assert!(
        after <= BACK_PACKETS,
        "b sent {after} packets in the {} s after it was back (bound {BACK_PACKETS}): {plan}",
        (s.now - t_settled) / 1000
    );
    report(
        "absence",
        &[
            ("away", format!("{away:?}")),
            ("chatty", chatty.to_string()),
            ("net", net_name(&net).to_string()),
            ("seed", seed.to_string()),
            ("epochs_missed", (group_epoch - e_b).to_string()),
            ("back_ms", back_ms.to_string()),
            ("packets_back", sent.to_string()),
            ("catch_up_requests", asked.to_string()),
            ("packets_alone", alone_packets.to_string()),
        ],
    );
}

#[test]
fn a_member_crashed_for_an_hour_past_the_catch_up_window_is_back_without_user_action() {
    for_nets_and_seeds(0..2, |net, seed| {
        away_for_an_hour(seed, net, Away::Crashed, false)
    });
}

#[test]
fn a_member_crashed_for_an_hour_comes_back_to_a_chatting_group_without_spinning() {
    for_nets_and_seeds(0..2, |net, seed| {
        away_for_an_hour(seed, net, Away::Crashed, true)
    });
}

#[test]
fn a_member_cut_off_for_an_hour_past_the_catch_up_window_is_back_without_user_action() {
    for_nets_and_seeds(0..2, |net, seed| {
        away_for_an_hour(seed, net, Away::CutOff, true)
    });
}
