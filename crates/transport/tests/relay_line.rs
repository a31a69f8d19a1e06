//! Three Waku relays in a line A–B–C over real TCP on 127.0.0.1. A and C only know B.
//! B is in no conversation but relays the shard, so it forwards; it validates first, so
//! a malformed message published at A stops at B.

use std::time::Duration;

use demls_transport::waku::{WakuConfig, WakuRelay};
use demls_transport::{Subtopic, Transport};
use tokio::time::timeout;

fn cfg(bootstrap: Vec<String>, relay_shards: Vec<u32>) -> WakuConfig {
    WakuConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        bootstrap,
        relay_shards,
        ..WakuConfig::default()
    }
}

async fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    for _ in 0..150 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_a_line_of_relays_once_and_garbage_stops_at_the_middle() {
    let shard = WakuConfig::default().shard_for("line");
    let (b, _rb) = WakuRelay::start(cfg(vec![], vec![shard])).await.unwrap();
    let b_addr = b.stats().listen_addrs[0].clone();
    let (a, mut ra) = WakuRelay::start(cfg(vec![b_addr.clone()], vec![]))
        .await
        .unwrap();
    let (c, mut rc) = WakuRelay::start(cfg(vec![b_addr], vec![])).await.unwrap();
    a.subscribe("line").await.unwrap();
    c.subscribe("line").await.unwrap();
    wait_for(|| b.stats().connected_peers == 2, "A and C to connect to B").await;
    assert_eq!(a.stats().connected_peers, 1, "A knows only B");
    assert_eq!(c.stats().connected_peers, 1, "C knows only B");

    // Gossipsub meshes form over a few heartbeats; publish until C hears it.
    let mut got = None;
    for i in 0..40 {
        a.publish("line", Subtopic::AppMsg, format!("hello {i}").into_bytes())
            .await
            .unwrap();
        if let Ok(Some(p)) = timeout(Duration::from_millis(500), rc.recv()).await {
            got = Some(p);
            break;
        }
    }
    let p = got.expect("C never received A's message");
    assert_eq!(p.conversation, "line");
    assert_eq!(p.subtopic, Subtopic::AppMsg);
    assert_eq!(p.sender_instance, a.instance_id());
    // Exactly once: a marked message arrives once and only once.
    a.publish("line", Subtopic::Welcome, b"once".to_vec())
        .await
        .unwrap();
    let mut copies = 0;
    while let Ok(Some(p)) = timeout(Duration::from_secs(2), rc.recv()).await {
        if p.payload == b"once" {
            copies += 1;
        }
    }
    assert_eq!(copies, 1);
    // No echo at A.
    assert!(ra.try_recv().is_err(), "A heard its own message");

    // A malformed message: B rejects it, so C never sees it.
    let before = c.stats();
    a.publish_raw(&b.shard_topic("line"), vec![0xff, 0x01, 0x02])
        .await
        .unwrap();
    wait_for(
        || {
            b.stats()
                .topics
                .values()
                .any(|t| t.rejected.get("undecodable").copied().unwrap_or(0) >= 1)
        },
        "B to reject the malformed message",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = c.stats();
    let received =
        |s: &demls_transport::TransportStats| s.topics.values().map(|t| t.received).sum::<u64>();
    let rejected = |s: &demls_transport::TransportStats| {
        s.topics
            .values()
            .flat_map(|t| t.rejected.values())
            .sum::<u64>()
    };
    assert_eq!(
        received(&after),
        received(&before),
        "C received the garbage"
    );
    assert_eq!(rejected(&after), 0, "the garbage reached C at all");
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn bad_config_and_names_are_refused() {
    let bad = WakuConfig {
        listen: vec!["not-a-multiaddr".into()],
        ..WakuConfig::default()
    };
    let e = WakuRelay::start(bad).await.err().expect("refused");
    assert!(e.to_string().contains("waku.listen"), "{e}");
    let (a, _r) = WakuRelay::start(cfg(vec![], vec![])).await.unwrap();
    assert!(a.subscribe("has space").await.is_err());
    assert!(a.publish("a/b", Subtopic::AppMsg, vec![]).await.is_err());
}
