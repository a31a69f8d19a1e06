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

use proc_node::{Node, converged};

const CONV: &str = "history";

fn count(n: &Node, text: &str) -> usize {
    n.json(&["messages", CONV])
        .and_then(|v| v.as_array().cloned())
        .map(|a| a.iter().filter(|m| m["text"] == text).count())
        .unwrap_or(0)
}

#[test]
fn a_member_stopped_while_others_chat_gets_their_messages_from_the_store_after_restart() {
    let root = tempfile::tempdir().unwrap();
    let a = Node::start_new(root.path(), "a", "");
    let boot = format!("bootstrap = [\"/ip4/127.0.0.1/tcp/{}\"]", a.waku_port);
    let b = Node::start_new(root.path(), "b", &boot);
    let mut c = Node::start_new(root.path(), "c", &boot);
    a.cli(&["create", CONV]).unwrap();
    b.cli(&["join", CONV]).unwrap();
    a.wait(90, "B joined", |_| converged(CONV, &[&a, &b]));
    c.cli(&["join", CONV]).unwrap();
    a.wait(90, "C joined", |_| converged(CONV, &[&a, &b, &c]));
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
