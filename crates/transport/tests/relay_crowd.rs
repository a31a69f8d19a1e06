//! Thirty Waku relays, each a separate OS process (`demls-waku-peer`) on 127.0.0.1, so
//! every peer of every relay shares one IP address: many nodes on one host, as many users
//! behind one NAT look to a public node.
//!
//! Topology: a hub that all 29 others dial (29 peers behind 127.0.0.1 at the hub, well
//! past the 15 at which rust-libp2p's default scoring greylisted them all); the
//! publisher knows only the hub, and the other 28 also dial their predecessor, so they
//! form a chain. Whatever the publisher sends must therefore cross the hub. All 30
//! relay the same shard (they all subscribe to one conversation).
//!
//! Every relay must get the publisher's message exactly once, and no peer's score at the
//! hub may be at or below the graylist threshold.

mod common;

use std::time::{Duration, Instant};

use common::Peer;
use demls_transport::waku::GRAYLIST_THRESHOLD;

const N: usize = 30;
const CONV: &str = "crowd";
/// How long the warm-up may take: publishing until every relay has heard the publisher
/// (connections, subscriptions and meshes form over a few heartbeats).
const WARM_UP: Duration = Duration::from_secs(30);
/// The warm-up lasts at least this long (4 heartbeats of 700 ms), so that the hub has
/// trimmed its mesh from the 29 peers that grafted it down to a handful before the
/// message that counts: the others must get it through the chain.
const SETTLE: Duration = Duration::from_millis(2800);

fn payload_of(recv_line: &str) -> Vec<u8> {
    let hex = recv_line.rsplit(' ').next().unwrap_or_default();
    hex::decode(hex).unwrap_or_default()
}

/// Copies of `payload` in a relay's inbox.
fn copies(p: &Peer, payload: &[u8]) -> usize {
    p.inbox.iter().filter(|l| payload_of(l) == payload).count()
}

/// Every peer's score at the hub, lowest first (`None`: not connected to the hub).
fn hub_scores(hub: &mut Peer, others: &[Peer]) -> Vec<(String, Option<f64>)> {
    let mut v: Vec<(String, Option<f64>)> = others
        .iter()
        .map(|p| (p.name.clone(), hub.score_of(&p.peer_id())))
        .collect();
    v.sort_by(|a, b| a.1.unwrap_or(f64::MAX).total_cmp(&b.1.unwrap_or(f64::MAX)));
    v
}

#[test]
fn thirty_relays_behind_one_address_all_get_a_message_once_and_none_is_greylisted() {
    let started = Instant::now();
    let mut hub = Peer::start("hub", &["--subscribe", CONV]);
    let hub_addr = hub.addrs[0].clone();
    // others[0] is the publisher; others[i] for i >= 2 also dials others[i - 1].
    let mut others: Vec<Peer> = Vec::with_capacity(N - 1);
    for i in 0..N - 1 {
        let prev = (i >= 2).then(|| others[i - 1].addrs[0].clone());
        let mut args = vec!["--bootstrap", hub_addr.as_str(), "--subscribe", CONV];
        if let Some(prev) = &prev {
            args.extend(["--bootstrap", prev.as_str()]);
        }
        let name = if i == 0 {
            "publisher".to_string()
        } else {
            format!("relay{i}")
        };
        others.push(Peer::start(name, &args));
    }
    let spawned = started.elapsed();
    hub.wait_until("every relay to connect to the hub", |h| {
        h.count("peers") == (N - 1) as u64
    });
    assert_eq!(
        others[0].count("peers"),
        1,
        "the publisher knows only the hub"
    );

    // Warm-up: the publisher publishes until every relay has heard it, for at least SETTLE.
    let settled = Instant::now() + SETTLE;
    let end = Instant::now() + WARM_UP;
    let mut round = 0;
    let deaf = loop {
        let msg = format!("warm-up {round}");
        let r = others[0].ask(&format!("publish {CONV} app_msg {}", hex::encode(&msg)));
        assert!(r.starts_with("published "), "publisher: {r}");
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
        let mut deaf = vec![];
        for p in std::iter::once(&mut hub).chain(others[1..].iter_mut()) {
            p.drain(Duration::ZERO);
            if !p
                .inbox
                .iter()
                .any(|l| payload_of(l).starts_with(b"warm-up "))
            {
                deaf.push(p.name.clone());
            }
        }
        if (deaf.is_empty() && Instant::now() > settled) || Instant::now() > end {
            break deaf;
        }
    };
    if !deaf.is_empty() {
        panic!(
            "after {WARM_UP:?} ({round} messages), {} of {} relays never heard the publisher: \
             {deaf:?}; scores at the hub (graylist below {GRAYLIST_THRESHOLD}): {:?}",
            deaf.len(),
            N - 1,
            hub_scores(&mut hub, &others)
        );
    }
    let warmed = started.elapsed();

    // The message: every relay but the publisher gets it exactly once.
    for p in std::iter::once(&mut hub).chain(others.iter_mut()) {
        p.inbox.clear();
    }
    let r = others[0].ask(&format!("publish {CONV} welcome {}", hex::encode("once")));
    let id = r.strip_prefix("published ").expect("published").to_string();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let all = std::iter::once(&mut hub)
            .chain(others[1..].iter_mut())
            .all(|p| {
                p.drain(Duration::ZERO);
                copies(p, b"once") >= 1
            });
        if all {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second late copy would show up here.
    std::thread::sleep(Duration::from_secs(1));
    for p in std::iter::once(&mut hub).chain(others.iter_mut()) {
        p.drain(Duration::ZERO);
    }
    for p in std::iter::once(&hub).chain(others[1..].iter()) {
        assert_eq!(copies(p, b"once"), 1, "{}'s inbox: {:?}", p.name, p.inbox);
        let l = p.inbox.iter().find(|l| payload_of(l) == b"once").unwrap();
        assert_eq!(l.split(' ').nth(4), Some(id.as_str()), "{}: {l}", p.name);
    }
    assert_eq!(
        copies(&others[0], b"once"),
        0,
        "the publisher heard its own message"
    );

    // Nobody sharing the hub's peers' address is greylisted there.
    let scores = hub_scores(&mut hub, &others);
    for (name, score) in &scores {
        let s = score.unwrap_or_else(|| panic!("{name} is not connected to the hub"));
        assert!(
            s > GRAYLIST_THRESHOLD,
            "{name}'s score at the hub is {s}, at or below the graylist threshold \
             {GRAYLIST_THRESHOLD}; all: {scores:?}"
        );
    }
    eprintln!(
        "relay crowd: {N} relay processes spawned in {spawned:.1?}, all heard the publisher \
         after {:.1?} ({round} warm-up messages), whole test {:.1?}; lowest score at the hub \
         {:?}",
        warmed,
        started.elapsed(),
        scores[0]
    );
}
