//! Reliable chat (issue 16, item 1): under 20 % loss every chat message reaches every
//! member exactly once and in causal order, by SDS acknowledgement, re-sending and repair
//! alone (users never repeat themselves here, unlike `Sim::chat_reaches`). Every run prints
//! a `SIM_REPORT reliable_chat …` line: delivery ratio, time until the last delivery and
//! the bytes spent beyond the messages themselves, e.g.
//!
//! `SIM_REPORT=/tmp/chat.tsv SIM_SEEDS=0..40 cargo test -p demls-core --release --test core_reliable_chat`

mod hostile;
mod sim;

use demls_core::conversation::{Event, Subtopic};
use hostile::{MIN, group};
use rand::{Rng, SeedableRng};
use sim::{Net, Sim, fast_config, for_seeds, report};

/// Chat texts member `i` received, in delivery order.
fn received(s: &Sim, i: usize) -> Vec<String> {
    s.members[i]
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Chat { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn app_bytes(s: &Sim, from: usize) -> usize {
    s.log[from..]
        .iter()
        .filter(|(_, _, sub, _)| *sub == Subtopic::AppMsg)
        .map(|(_, _, _, p)| p.len())
        .sum()
}

/// Each member sends `per_member` messages in turns; returns (sender, text) of every
/// message that went out, and the bytes of those first transmissions.
fn chatter(
    s: &mut Sim,
    tag: &str,
    ids: &[usize],
    per_member: usize,
    seed: u64,
) -> (Vec<(usize, String)>, usize) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x5d5);
    let mut sent = Vec::new();
    let mut bytes = 0;
    for k in 0..per_member {
        for &i in ids {
            let text = format!("{tag}{i}-{k}");
            let before = s.log.len();
            if s.try_chat(i, &text) {
                bytes += app_bytes(s, before);
                sent.push((i, text));
            }
            s.run_for(rng.gen_range(100..1_500));
        }
    }
    (sent, bytes)
}

/// Every member has every message of the others exactly once, and each sender's
/// messages in the order sent. Returns the first problem.
fn check_all(s: &Sim, ids: &[usize], sent: &[(usize, String)]) -> Result<(), String> {
    for &i in ids {
        let got = received(s, i);
        for (from, text) in sent.iter().filter(|(f, _)| *f != i) {
            match got.iter().filter(|t| *t == text).count() {
                1 => {}
                0 => return Err(format!("member {i} never got {text:?} from {from}")),
                n => return Err(format!("member {i} got {text:?} {n} times")),
            }
        }
        for &from in ids.iter().filter(|f| **f != i) {
            let order: Vec<&String> = got
                .iter()
                .filter(|t| sent.iter().any(|(f, x)| *f == from && x == *t))
                .collect();
            let expected: Vec<&String> = sent
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, t)| t)
                .collect();
            if order != expected {
                return Err(format!(
                    "member {i} got {from}'s chat out of order: {order:?}"
                ));
            }
        }
    }
    Ok(())
}

fn delivered_pairs(s: &Sim, ids: &[usize], sent: &[(usize, String)]) -> (usize, usize) {
    let mut got = 0;
    let mut want = 0;
    for &i in ids {
        let r = received(s, i);
        for (_, text) in sent.iter().filter(|(f, _)| *f != i) {
            want += 1;
            got += usize::from(r.contains(text));
        }
    }
    (got, want)
}

#[test]
fn every_chat_reaches_every_member_under_20_percent_loss() {
    for_seeds(0..2, |seed| {
        let (mut s, ids) = group(seed, Net::clean(), fast_config(), 4);
        s.net = Net::lossy(0.2);
        let t0 = s.now;
        let log0 = s.log.len();
        let (sent, first_bytes) = chatter(&mut s, "m", &ids, 6, seed);
        assert!(sent.len() >= 12, "only {} chats could be sent", sent.len());
        let done = s.run_until(3 * MIN, |s| {
            let (got, want) = delivered_pairs(s, &ids, &sent);
            got == want
        });
        let (got, want) = delivered_pairs(&s, &ids, &sent);
        let extra = app_bytes(&s, log0).saturating_sub(first_bytes);
        report(
            "reliable_chat",
            &[
                ("seed", seed.to_string()),
                ("loss", "0.2".into()),
                ("messages", sent.len().to_string()),
                ("delivered", format!("{got}/{want}")),
                ("last_delivery_ms", (s.now - t0).to_string()),
                (
                    "first_bytes_per_msg",
                    (first_bytes / sent.len()).to_string(),
                ),
                ("extra_bytes_per_msg", (extra / sent.len()).to_string()),
            ],
        );
        assert!(done, "delivered {got} of {want}\n{}", s.describe());
        // Let late copies and repairs settle: still exactly once, still in order.
        s.run_for(MIN);
        check_all(&s, &ids, &sent).unwrap_or_else(|e| panic!("{e}\n{}", s.describe()));
    });
}

#[test]
fn a_member_back_from_a_crash_gets_what_was_said_meanwhile() {
    for_seeds(0..2, |seed| {
        let (mut s, ids) = group(seed, Net::clean(), fast_config(), 4);
        let away = ids[3];
        let (before, _) = chatter(&mut s, "before", &ids, 1, seed);
        s.run_for(5_000);
        s.crash(away);
        let talkers = &ids[..3];
        let (during, _) = chatter(&mut s, "during", talkers, 2, seed + 1);
        s.run_for(10_000);
        s.restart(away);
        let t_back = s.now;
        let all: Vec<(usize, String)> = before.iter().chain(&during).cloned().collect();
        let done = s.run_until(2 * MIN, |s| {
            let r = received(s, away);
            during.iter().all(|(_, t)| r.contains(t))
        });
        report(
            "chat_after_crash",
            &[
                ("seed", seed.to_string()),
                ("missed", during.len().to_string()),
                ("recovered_ms", (s.now - t_back).to_string()),
            ],
        );
        assert!(
            done,
            "the member back from a crash lacks chat\n{}",
            s.describe()
        );
        s.run_for(MIN);
        check_all(&s, &ids, &all).unwrap_or_else(|e| panic!("{e}\n{}", s.describe()));
    });
}
