//! 13/WAKU2-STORE v3 between two (then three) relays in this process, over real libp2p
//! (TCP, noise, yamux) on 127.0.0.1.
//!
//! A keeps an archive and publishes 25 messages of a conversation. B, a client without
//! an archive, queries A by content topic, by time range, by hash (with data and as a
//! presence query), pages forward and backward, sends a query the spec forbids, and
//! goes over A's rate limit. C, with an archive, comes up later, subscribes, and gets
//! the 25 messages delivered on its inbound stream by itself (history fetch on reaching
//! a store peer), in order and once; fetching again delivers nothing twice.

use std::sync::Arc;
use std::time::Duration;

use demls_transport::message::message_hash;
use demls_transport::waku::store::{self, MemoryArchive, pb};
use demls_transport::waku::{WakuConfig, WakuRelay};
use demls_transport::{InboundPacket, Subtopic, Transport, content_topic};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

const CONV: &str = "history";
const N: usize = 25;

fn cfg(bootstrap: Vec<String>) -> WakuConfig {
    WakuConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        bootstrap,
        discv5_discovery: false,
        ..WakuConfig::default()
    }
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {secs}s waiting for {what}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Every page of `req` from `peer`, following cursors; (payloads, pages).
async fn all_pages(
    b: &WakuRelay,
    peer: PeerId,
    mut req: pb::StoreQueryRequest,
) -> (Vec<pb::WakuMessageKeyValue>, usize) {
    let mut out = vec![];
    let mut pages = vec![];
    loop {
        let res = b.store_query(peer, req.clone()).await.unwrap();
        assert_eq!(res.status_code, Some(200), "{:?}", res.status_desc);
        assert_eq!(res.request_id, req.request_id);
        for kv in &res.messages {
            if req.include_data {
                store::verify_entry(&req, kv).unwrap();
            }
        }
        pages.push(res.messages);
        match res.pagination_cursor {
            Some(c) => req.pagination_cursor = Some(c),
            None => break,
        }
    }
    let n = pages.len();
    if !req.pagination_forward {
        pages.reverse();
    }
    for p in pages {
        out.extend(p);
    }
    (out, n)
}

fn text(kv: &pb::WakuMessageKeyValue) -> String {
    String::from_utf8_lossy(&kv.message.as_ref().unwrap().payload).into_owned()
}

async fn recv_n(rx: &mut mpsc::Receiver<InboundPacket>, n: usize, secs: u64) -> Vec<String> {
    let mut got = vec![];
    let end = Instant::now() + Duration::from_secs(secs);
    while got.len() < n {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(p)) => got.push(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_answers_topic_time_hash_and_paged_queries_and_a_late_peer_fetches_history() {
    let archive_a = Arc::new(MemoryArchive::new());
    let (a, _a_in) = WakuRelay::start_with_archive(cfg(vec![]), Some(archive_a.clone()))
        .await
        .unwrap();
    a.subscribe(CONV).await.unwrap();
    let want: Vec<String> = (0..N).map(|i| format!("m{i:02}")).collect();
    for m in &want {
        a.publish(CONV, Subtopic::AppMsg, m.clone().into_bytes())
            .await
            .unwrap();
        sleep(Duration::from_millis(3)).await; // distinct timestamps
    }
    assert_eq!(archive_a.len(), N, "A archives what it publishes");
    let a_id: PeerId = a.stats().peer_id.parse().unwrap();
    let a_addr = a.stats().listen_addrs[0].clone();

    // B: a client only.
    let (b, _b_in) = WakuRelay::start(cfg(vec![a_addr.clone()])).await.unwrap();
    wait_for("B to see A as a store peer", 20, || {
        b.store_peers() == vec![a_id]
    })
    .await;
    let pubsub = a.shard_topic(CONV);
    let ct = content_topic(CONV, Subtopic::AppMsg).unwrap();

    // Content topic, forward, 10 a page: 3 pages, every message in order.
    let mut req = store::history_request(&pubsub, vec![ct.clone()], None, None);
    req.pagination_limit = Some(10);
    let (all, pages) = all_pages(&b, a_id, req.clone()).await;
    assert_eq!(all.iter().map(text).collect::<Vec<_>>(), want);
    assert_eq!(pages, 3);
    // Backward, 7 a page: the same, in 4 pages.
    req.pagination_forward = false;
    req.pagination_limit = Some(7);
    let (back, pages) = all_pages(&b, a_id, req).await;
    assert_eq!(back, all);
    assert_eq!(pages, 4);
    // The welcome topic holds nothing.
    let welcome = content_topic(CONV, Subtopic::Welcome).unwrap();
    let (none, _) = all_pages(
        &b,
        a_id,
        store::history_request(&pubsub, vec![welcome], None, None),
    )
    .await;
    assert!(none.is_empty());

    // Time range [ts(m05), ts(m15)): m05..m14.
    let ts = |i: usize| all[i].message.as_ref().unwrap().timestamp.unwrap();
    let range = store::history_request(&pubsub, vec![ct.clone()], Some(ts(5)), Some(ts(15)));
    let (mid, _) = all_pages(&b, a_id, range).await;
    assert_eq!(mid.iter().map(text).collect::<Vec<_>>(), want[5..15]);

    // Hash lookups: with data, and presence only (a made-up hash is absent).
    let h = |i: usize| all[i].message_hash.clone().unwrap();
    assert_eq!(
        h(3),
        message_hash(&pubsub, all[3].message.as_ref().unwrap()).to_vec(),
        "keys are 14/WAKU2-MESSAGE deterministic hashes"
    );
    let lookup = pb::StoreQueryRequest {
        request_id: store::new_request_id(),
        include_data: true,
        message_hashes: vec![h(20), vec![0x55; 32], h(3)],
        ..Default::default()
    };
    let (found, _) = all_pages(&b, a_id, lookup.clone()).await;
    assert_eq!(found.iter().map(text).collect::<Vec<_>>(), ["m03", "m20"]);
    let presence = pb::StoreQueryRequest {
        include_data: false,
        ..lookup
    };
    let (present, _) = all_pages(&b, a_id, presence).await;
    assert_eq!(
        present
            .iter()
            .map(|kv| kv.message_hash.clone().unwrap())
            .collect::<Vec<_>>(),
        [h(3), h(20)]
    );
    assert!(present.iter().all(|kv| kv.message.is_none()));

    // A query the spec forbids: 400, and A keeps serving.
    let mut mixed = store::history_request(&pubsub, vec![ct.clone()], None, None);
    mixed.message_hashes = vec![h(1)];
    let res = b.store_query(a_id, mixed).await.unwrap();
    assert_eq!(res.status_code, Some(store::status::BAD_REQUEST));
    assert!(res.messages.is_empty());

    // Over the rate: some of a burst of 40 get 429.
    let mut limited = 0;
    for _ in 0..40 {
        let q = store::history_request(&pubsub, vec![ct.clone()], None, None);
        let res = b.store_query(a_id, q).await.unwrap();
        if res.status_code == Some(store::status::TOO_MANY_REQUESTS) {
            limited += 1;
        }
    }
    assert!(limited >= 1, "no query was refused for its rate");

    // C: comes later with an archive, and fetches the history by itself.
    let archive_c = Arc::new(MemoryArchive::new());
    let (c, mut c_in) = WakuRelay::start_with_archive(cfg(vec![a_addr]), Some(archive_c.clone()))
        .await
        .unwrap();
    c.subscribe(CONV).await.unwrap();
    let started = Instant::now();
    let got = recv_n(&mut c_in, N, 30).await;
    assert_eq!(got, want, "C got the history in order");
    eprintln!(
        "C fetched {N} messages from A's store in {:?}",
        started.elapsed()
    );
    assert_eq!(archive_c.len(), N);
    // Fetching again (a re-subscription asks the store peers again) delivers nothing.
    c.unsubscribe(CONV).await.unwrap();
    c.subscribe(CONV).await.unwrap();
    let again = recv_n(&mut c_in, 1, 3).await;
    assert!(again.is_empty(), "delivered twice: {again:?}");

    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

/// The protocol's own history request (`Transport::fetch_history`): D is subscribed and
/// synced; A's store holds a message D never got on relay, older than where D's own
/// syncs start (an hour back, D having had nothing archived). D gets it only when it
/// asks for history since before it, and it is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_history_reaches_back_for_what_relay_lost() {
    use demls_transport::message::WakuMessage;
    use demls_transport::waku::store::{ArchivedMessage, MessageArchive};
    use prost::Message;

    let archive_a = Arc::new(MemoryArchive::new());
    let (a, _a_in) = WakuRelay::start_with_archive(cfg(vec![]), Some(archive_a.clone()))
        .await
        .unwrap();
    a.subscribe(CONV).await.unwrap();
    let a_id: PeerId = a.stats().peer_id.parse().unwrap();
    let a_addr = a.stats().listen_addrs[0].clone();
    let archive_d = Arc::new(MemoryArchive::new());
    let (d, mut d_in) = WakuRelay::start_with_archive(cfg(vec![a_addr]), Some(archive_d.clone()))
        .await
        .unwrap();
    d.subscribe(CONV).await.unwrap();
    wait_for("D to see A as a store peer", 20, || {
        d.store_peers() == vec![a_id]
    })
    .await;
    wait_for("the mesh", 20, || !d.stats().peers.is_empty()).await;
    sleep(Duration::from_secs(2)).await;
    a.publish(CONV, Subtopic::AppMsg, b"recent".to_vec())
        .await
        .unwrap();
    assert_eq!(recv_n(&mut d_in, 1, 10).await, ["recent"]);

    // Two hours old, in A's store only (D's relay lost it).
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let pubsub = a.shard_topic(CONV);
    let old = WakuMessage {
        payload: b"lost on relay".to_vec(),
        content_topic: content_topic(CONV, Subtopic::AppMsg).unwrap(),
        timestamp: Some(now_ns - 7_200_000_000_000),
        meta: Some(b"someone else".to_vec()),
        ..Default::default()
    };
    let entry = ArchivedMessage::eligible(&pubsub, &old, old.encode_to_vec()).unwrap();
    assert!(archive_a.insert(&entry).unwrap());

    // D's own re-sync does not reach back that far.
    d.unsubscribe(CONV).await.unwrap();
    d.subscribe(CONV).await.unwrap();
    assert!(recv_n(&mut d_in, 1, 3).await.is_empty());
    // Asking since three hours ago does.
    let since_ms = (now_ns / 1_000_000) as u64 - 10_800_000;
    d.fetch_history(CONV, since_ms).await.unwrap();
    assert_eq!(recv_n(&mut d_in, 1, 10).await, ["lost on relay"]);
    // A second ask right away waits for FETCH_HISTORY_GAP (10 s), then runs, and
    // delivers nothing twice: the archive has it now.
    d.fetch_history(CONV, since_ms).await.unwrap();
    assert!(recv_n(&mut d_in, 1, 2).await.is_empty());
    assert!(archive_d.len() >= 2);

    a.shutdown().await;
    d.shutdown().await;
}

/// A node back from downtime (same archive, new process) fetches from where its archive
/// stopped, although its own first messages and the group's live traffic are archived
/// before its store fetch runs: the fetch starts from the newest message archived when
/// it subscribed, not from the newest one archived by then (which skipped everything it
/// missed: a member back after ten minutes got none of the chat it missed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_downtime_fetches_from_where_it_stopped_despite_live_traffic() {
    let archive_a = Arc::new(MemoryArchive::new());
    let (a, _a_in) = WakuRelay::start_with_archive(cfg(vec![]), Some(archive_a.clone()))
        .await
        .unwrap();
    a.subscribe(CONV).await.unwrap();
    let a_addr = a.stats().listen_addrs[0].clone();
    let short_skew = |b: Vec<String>| WakuConfig {
        max_timestamp_skew_secs: 1,
        ..cfg(b)
    };
    let archive_d = Arc::new(MemoryArchive::new());
    let (d, mut d_in) =
        WakuRelay::start_with_archive(short_skew(vec![a_addr.clone()]), Some(archive_d.clone()))
            .await
            .unwrap();
    d.subscribe(CONV).await.unwrap();
    wait_for("the mesh", 20, || !d.stats().peers.is_empty()).await;
    sleep(Duration::from_secs(2)).await;
    a.publish(CONV, Subtopic::AppMsg, b"before".to_vec())
        .await
        .unwrap();
    assert_eq!(recv_n(&mut d_in, 1, 10).await, ["before"]);
    d.shutdown().await;
    drop(d_in);

    let missed: Vec<String> = (0..5).map(|i| format!("missed {i}")).collect();
    for m in &missed {
        a.publish(CONV, Subtopic::AppMsg, m.clone().into_bytes())
            .await
            .unwrap();
        sleep(Duration::from_millis(5)).await;
    }
    // Older than the skew window by the time D is back.
    sleep(Duration::from_secs(3)).await;
    let a = Arc::new(a);
    let live = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let _ = a
                    .publish(CONV, Subtopic::AppMsg, format!("live {i}").into_bytes())
                    .await;
                sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (d2, mut d2_in) =
        WakuRelay::start_with_archive(short_skew(vec![a_addr]), Some(archive_d.clone()))
            .await
            .unwrap();
    d2.subscribe(CONV).await.unwrap();
    // A node back from a restart speaks first (the protocol's sync, a beacon): what it
    // publishes is archived too, before any store peer is reached.
    d2.publish(CONV, Subtopic::AppMsg, b"back".to_vec())
        .await
        .unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while !missed.iter().all(|m| got.contains(m)) {
        match tokio::time::timeout_at(end, d2_in.recv()).await {
            Ok(Some(p)) => got.push(String::from_utf8_lossy(&p.payload).into_owned()),
            _ => break,
        }
    }
    live.abort();
    for m in &missed {
        assert!(
            got.contains(m),
            "{m:?} never reached the node back from downtime"
        );
    }
    d2.shutdown().await;
}
