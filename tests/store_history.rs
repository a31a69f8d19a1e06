//! History from peers (issue 16, item 2), over real processes: three `demls-node`s on
//! 127.0.0.1 in one conversation; C is stopped (SIGKILL) while A and B send five chat
//! messages, then started again. Relay alone never gives C those messages (gossipsub
//! does not replay); with the store, C fetches them from A's and B's archives
//! (13/WAKU2-STORE, `/vac/waku/store-query/3.0.0`) when it reaches them, without any
//! user action, and each appears once in its history.
//!
//! `STORE_HISTORY_RUNS=N` repeats the stop/chat/restart cycle N times (default 1).

mod proc_node;

use std::time::Instant;

use proc_node::{Node, converged, roster_is};

const CONV: &str = "history";

/// A, B and C (bootstrapped from A) in conversation `CONV`; also the bootstrap line for
/// more nodes.
fn trio(root: &std::path::Path) -> (Node, Node, Node, String) {
    let a = Node::start_new(root, "a", "");
    let boot = format!("bootstrap = [\"/ip4/127.0.0.1/tcp/{}\"]", a.waku_port);
    let b = Node::start_new(root, "b", &boot);
    let c = Node::start_new(root, "c", &boot);
    a.cli(&["create", CONV]).unwrap();
    b.cli(&["join", CONV]).unwrap();
    a.wait(90, "B joined", |_| converged(CONV, &[&a, &b]));
    c.cli(&["join", CONV]).unwrap();
    a.wait(90, "C joined", |_| converged(CONV, &[&a, &b, &c]));
    (a, b, c, boot)
}

fn count(n: &Node, text: &str) -> usize {
    n.json(&["messages", CONV])
        .and_then(|v| v.as_array().cloned())
        .map(|a| a.iter().filter(|m| m["text"] == text).count())
        .unwrap_or(0)
}

#[test]
fn a_member_stopped_while_others_chat_gets_their_messages_from_the_store_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, mut c, _) = trio(root.path());
    a.cli(&["send", CONV, "before"]).unwrap();
    c.wait(30, "the message sent before the stop", |c| {
        c.has_message(CONV, "before")
    });

    let runs: usize = std::env::var("STORE_HISTORY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for run in 0..runs {
        c.kill();
        let sent: Vec<String> = (0..5).map(|i| format!("run {run} away {i}")).collect();
        for (i, m) in sent.iter().enumerate() {
            let from = if i % 2 == 0 { &a } else { &b };
            from.cli(&["send", CONV, m]).unwrap();
        }
        for n in [&a, &b] {
            n.wait(30, "the messages sent while C was away", |n| {
                sent.iter().all(|m| n.has_message(CONV, m))
            });
        }
        let restarted = Instant::now();
        c.start();
        c.wait(60, "every message sent while it was away", |c| {
            sent.iter().all(|m| c.has_message(CONV, m))
        });
        let took = restarted.elapsed();
        for m in &sent {
            assert_eq!(count(&c, m), 1, "{m:?} is in C's history once");
        }
        eprintln!(
            "run {run}: C had the 5 messages sent while it was away {took:.1?} after its \
             restart began"
        );
    }
    assert!(
        c.log().contains("history fetched from a store peer"),
        "C's log names the fetch"
    );
    assert_eq!(count(&c, "before"), 1, "nothing delivered twice");
}

/// A test directory, left in place when `STORE_KEEP_DIR` is set (to read the logs).
struct KeptDir(Option<tempfile::TempDir>);

impl KeptDir {
    fn path(&self) -> &std::path::Path {
        self.0.as_ref().map(|d| d.path()).expect("present")
    }
}

impl Drop for KeptDir {
    fn drop(&mut self) {
        if std::env::var("STORE_KEEP_DIR").is_ok()
            && let Some(d) = self.0.take()
        {
            let _ = d.keep();
        }
    }
}

/// The texts of `conv`'s history, in the order the node shows them.
fn texts(n: &Node) -> Vec<String> {
    n.json(&["messages", CONV])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

/// C is stopped; A and B chat while D and then E join (two commits, each adding someone
/// who must not read what came before: SDS repair may not re-send it), then C starts
/// again. It catches up on both commits and reads every message from the store's copies,
/// each in the epoch it was sent in (past-epoch keys, `PAST_EPOCHS`), in causal order.
#[test]
fn a_member_away_across_two_membership_changes_gets_every_message() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, mut c, boot) = trio(root.path());
    let c_epoch = c.view(CONV).unwrap().1;
    let mut roster = vec![a.address(), b.address(), c.address()];
    c.kill();

    let mut present = vec![&a, &b];
    let mut sent = Vec::new();
    let mut say = |who: &Node, text: String, present: &[&Node]| {
        who.cli(&["send", CONV, &text]).unwrap();
        for n in present {
            n.wait(30, &format!("{text:?} everywhere"), |n| {
                n.has_message(CONV, &text)
            });
        }
        sent.push(text);
    };
    say(&a, "epoch 0 from a".into(), &present);
    say(&b, "epoch 0 from b".into(), &present);
    let d = Node::start_new(root.path(), "d", &boot);
    d.cli(&["join", CONV]).unwrap();
    roster.push(d.address());
    present.push(&d);
    a.wait(120, "D joined while C is away", |_| {
        roster_is(CONV, &present, &roster)
    });
    say(&b, "epoch 1 from b".into(), &present);
    say(&d, "epoch 1 from d".into(), &present);
    let e = Node::start_new(root.path(), "e", &boot);
    e.cli(&["join", CONV]).unwrap();
    roster.push(e.address());
    present.push(&e);
    a.wait(120, "E joined while C is away", |_| {
        roster_is(CONV, &present, &roster)
    });
    say(&a, "epoch 2 from a".into(), &present);
    say(&e, "epoch 2 from e".into(), &present);
    let epoch_now = a.view(CONV).unwrap().1;
    assert!(epoch_now >= c_epoch + 2, "two commits while C was away");
    // D joined after the first two messages and E after the first four: none reads
    // what was said before it joined.
    assert!(!d.has_message(CONV, "epoch 0 from a"));
    assert!(!e.has_message(CONV, "epoch 1 from d"));

    let restarted = Instant::now();
    c.start();
    present.push(&c);
    c.wait(120, "C back at the group's epoch", |_| {
        roster_is(CONV, &present, &roster)
    });
    let caught_up = restarted.elapsed();
    c.wait(60, "every message sent while C was away", |c| {
        sent.iter().all(|m| c.has_message(CONV, m))
    });
    let took = restarted.elapsed();
    let got = texts(&c);
    for m in &sent {
        assert_eq!(
            got.iter().filter(|t| *t == m).count(),
            1,
            "{m:?} once in C's history"
        );
    }
    let order: Vec<&String> = got.iter().filter(|t| sent.contains(t)).collect();
    assert_eq!(
        order,
        sent.iter().collect::<Vec<_>>(),
        "C shows them in causal order"
    );
    eprintln!(
        "C, away across {} commits: at the group's epoch {caught_up:.1?} and with all {} \
         messages {took:.1?} after its restart began",
        epoch_now - c_epoch,
        sent.len()
    );
}

/// Like the first test, but away for `STORE_AWAY_SECS` (600 by default: ten minutes,
/// ten times the `proposal_expiration` of the fast timings), with one message a minute.
/// Ignored by default for its length: `cargo test --release --test store_history --
/// --ignored`.
#[test]
#[ignore]
fn a_member_away_for_ten_minutes_gets_every_message() {
    let away_secs: u64 = std::env::var("STORE_AWAY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let root = tempfile::tempdir().unwrap();
    if std::env::var("STORE_KEEP_DIR").is_ok() {
        eprintln!("node directories kept in {}", root.path().display());
    }
    let root = KeptDir(Some(root));
    let (a, b, mut c, _) = trio(root.path());
    c.kill();
    let left = Instant::now();
    let mut sent = Vec::new();
    let mut k = 0;
    while left.elapsed().as_secs() < away_secs {
        let text = format!("minute {k}");
        let from = if k % 2 == 0 { &a } else { &b };
        from.cli(&["send", CONV, &text]).unwrap();
        sent.push(text);
        k += 1;
        let next = std::time::Duration::from_secs((k * 60).min(away_secs));
        if let Some(wait) = next.checked_sub(left.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let restarted = Instant::now();
    c.start();
    c.wait(120, "every message sent while C was away", |c| {
        sent.iter().all(|m| c.has_message(CONV, m))
    });
    let took = restarted.elapsed();
    let got = texts(&c);
    for m in &sent {
        assert_eq!(got.iter().filter(|t| *t == m).count(), 1, "{m:?} once");
    }
    let order: Vec<&String> = got.iter().filter(|t| sent.contains(t)).collect();
    assert_eq!(order, sent.iter().collect::<Vec<_>>(), "in the order sent");
    a.wait(60, "one group again", |_| converged(CONV, &[&a, &b, &c]));
    eprintln!(
        "C, away {:.0?}: all {} messages {took:.1?} after its restart began",
        restarted - left,
        sent.len()
    );
}
