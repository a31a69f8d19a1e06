//! Three Waku relays in a line A–B–C, each a separate OS process (`demls-waku-peer`) on
//! real TCP sockets on 127.0.0.1. A and C only know B.
//!
//! B is in no conversation but relays the conversation's shard (`--relay-shard`), and
//! that is what makes it forward: gossipsub forwards per pubsub topic, so a relay that
//! subscribes to the shard forwards every conversation on it, and one that does not
//! forwards none. B validates before forwarding, so a malformed message published at A
//! stops at B.

mod common;

use std::time::Duration;

use common::Peer;
use demls_transport::waku::{GOSSIP_THRESHOLD, WakuConfig, WakuRelay};
use demls_transport::{Subtopic, Transport};

fn payload_of(recv_line: &str) -> Vec<u8> {
    let hex = recv_line.rsplit(' ').next().unwrap();
    hex::decode(hex).unwrap()
}

#[test]
fn a_message_crosses_a_line_of_relay_processes_once_and_garbage_stops_at_the_middle() {
    let shard = WakuConfig::default().shard_for("line").to_string();
    let mut b = Peer::start("B", &["--relay-shard", &shard]);
    let b_addr = b.addrs[0].clone();
    let mut a = Peer::start("A", &["--bootstrap", &b_addr, "--subscribe", "line"]);
    let mut c = Peer::start("C", &["--bootstrap", &b_addr, "--subscribe", "line"]);
    b.wait_until("A and C to connect", |b| b.count("peers") == 2);
    assert_eq!(a.count("peers"), 1, "A knows only B");
    assert_eq!(c.count("peers"), 1, "C knows only B");

    // Gossipsub meshes form over a few heartbeats: publish until C hears one.
    let mut heard = None;
    for i in 0..40 {
        let msg = format!("hello {i}");
        assert!(
            a.ask(&format!("publish line app_msg {}", hex::encode(&msg)))
                .starts_with("published ")
        );
        c.drain(Duration::from_millis(500));
        if let Some(l) = c.inbox.first() {
            heard = Some(l.clone());
            break;
        }
    }
    let l = heard.expect("C never received A's message");
    let fields: Vec<&str> = l.split(' ').collect();
    assert_eq!(fields[1], "line");
    assert_eq!(fields[2], "app_msg");
    assert!(payload_of(&l).starts_with(b"hello "));

    // Exactly once: a marked message arrives once and only once.
    c.inbox.clear();
    let sent = a.ask(&format!("publish line welcome {}", hex::encode("once")));
    let once_id = sent
        .strip_prefix("published ")
        .expect("published")
        .to_string();
    c.drain(Duration::from_secs(2));
    let copies = c.inbox.iter().filter(|l| payload_of(l) == b"once").count();
    assert_eq!(copies, 1, "C's inbox: {:?}", c.inbox);
    // C got it under the id A published it with: SHA-256 of the message bytes.
    let got = c.inbox.iter().find(|l| payload_of(l) == b"once").unwrap();
    assert_eq!(got.split(' ').nth(4), Some(once_id.as_str()), "{got}");
    assert!(c.inbox.iter().all(|l| l.contains(" welcome ")));
    // No echo at A: its own messages never come back to it.
    a.drain(Duration::from_millis(200));
    assert!(
        a.inbox.is_empty(),
        "A heard its own messages: {:?}",
        a.inbox
    );

    // A raw gossipsub message that is no WakuMessage: B rejects it, C never sees it.
    let c_received = c.count("received");
    let topic = WakuConfig::default().topic_for("line");
    // Its id is SHA-256 of the bytes like any other (sha256(ff0102)).
    assert_eq!(
        a.ask(&format!("raw {topic} ff0102")),
        "published ca66882b2aacc5b00b7b59c586b283c3f885714499323f726d32c0799df1e3dc"
    );
    b.wait_until("B to reject the malformed message", |b| {
        b.count("rejected") >= 1
    });
    // …and that one message takes A, the sender, below the gossip threshold at B.
    let a_id = a.peer_id();
    b.wait_until("A's score at B to drop below the gossip threshold", |b| {
        b.score_of(&a_id).is_some_and(|s| s < GOSSIP_THRESHOLD)
    });
    c.drain(Duration::from_millis(500));
    assert_eq!(c.count("received"), c_received, "C received the garbage");
    assert_eq!(c.count("rejected"), 0, "the garbage reached C at all");
}

#[tokio::test]
async fn bad_config_and_names_are_refused() {
    let bad = WakuConfig {
        listen: vec!["not-a-multiaddr".into()],
        ..WakuConfig::default()
    };
    let e = WakuRelay::start(bad).await.err().expect("refused");
    assert!(e.to_string().contains("waku.listen"), "{e}");
    let ok = WakuConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..WakuConfig::default()
    };
    let (a, _r) = WakuRelay::start(ok).await.unwrap();
    assert!(a.subscribe("has space").await.is_err());
    assert!(a.publish("a/b", Subtopic::AppMsg, vec![]).await.is_err());
    a.shutdown().await;
}

#[test]
fn the_peer_binary_refuses_bad_arguments_clearly() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_demls-waku-peer"))
        .args(["--relay-shard", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number"));
}
