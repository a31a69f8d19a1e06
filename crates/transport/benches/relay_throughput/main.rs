//! Relay throughput: our Waku relay against plain rust-libp2p gossipsub, in one run.
//!
//! `RELAY_PEERS` peers (default 10) in this process, on TCP over 127.0.0.1, each dialing
//! up to three of the peers started before it (the same graph for both kinds). One peer
//! publishes `RELAY_MESSAGES` (default 2000) messages of `RELAY_SIZE` payload bytes
//! (default 1024), keeping at most `RELAY_WINDOW` (default 200) of them not yet received
//! by every other peer; the clock runs from the first publish to the last delivery.
//!
//! - **waku**: [`WakuRelay`] as the node runs it (discovery off, no archive): gossipsub
//!   plus identify, ping, metadata, validation of each message before forwarding and the
//!   inbound channel to the application.
//! - **gossipsub**: a bare swarm per peer with only [`relay_gossipsub`] (the same
//!   gossipsub configuration and scoring) over the same TCP + noise + yamux stack,
//!   accepting every message at once; it publishes the same encoded WakuMessage bytes,
//!   so both carry the same bytes. Twice: **publish awaited** (each publish waits until
//!   the swarm task has published it, as [`WakuRelay`]'s publish waits for the message
//!   id) and **publish queued** (a publish returns once queued, so the swarm task may
//!   take several at a time).
//!
//! Each of `RELAY_ROUNDS` rounds (default 2) runs the three kinds one after the other
//! (`RELAY_ONLY=waku`, `awaited` or `queued` runs one alone, for profiling). Prints a
//! markdown table,
//! with the CPU time the process (all peers) used per delivery: on a shared machine a
//! steadier comparison than the rate.

mod plain;
mod waku;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use demls_transport::waku::WakuConfig;

/// First payload byte of a measured message; warm-up messages start with another.
pub const MEASURED: u8 = 1;
/// First payload byte of a warm-up message.
pub const WARM_UP: u8 = 0;
/// The conversation whose shard both kinds use.
pub const CONV: &str = "bench";

/// The bench's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Peers in the network.
    pub peers: usize,
    /// Measured messages.
    pub messages: u64,
    /// Payload bytes per message.
    pub size: usize,
    /// Most messages in flight.
    pub window: u64,
}

/// What a kind of network offers the measurement.
pub trait Net {
    /// Publishes one payload from peer 0.
    fn publish(&self, payload: Vec<u8>) -> impl Future<Output = ()>;
    /// Per peer (peer 0 included, left at 0): measured messages received.
    fn received(&self) -> &[Arc<AtomicU64>];
    /// Per peer: warm-up messages received.
    fn warm(&self) -> &[Arc<AtomicU64>];
    /// Stops every peer.
    fn stop(self) -> impl Future<Output = ()>;
}

/// Which predecessors peer `i` dials.
pub fn dial_targets(i: usize) -> std::ops::Range<usize> {
    i.saturating_sub(3)..i
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The pubsub topic of [`CONV`] under the default Waku settings.
pub fn topic() -> String {
    WakuConfig::default().topic_for(CONV)
}

fn payload(tag: u8, seq: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0u8; size.max(9)];
    p[0] = tag;
    p[1..9].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in p[9..].iter_mut().enumerate() {
        *b = (i as u64).wrapping_mul(31).wrapping_add(seq) as u8;
    }
    p
}

fn min_others(counts: &[Arc<AtomicU64>]) -> u64 {
    counts[1..]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0)
}

/// Publishes warm-up messages until every peer heard one, for at least four heartbeats
/// (meshes form and settle).
async fn warm_up(net: &impl Net) -> Result<(), String> {
    let start = Instant::now();
    let mut seq = 0;
    loop {
        net.publish(payload(WARM_UP, seq, 64)).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if min_others(net.warm()) > 0 && start.elapsed() > Duration::from_millis(2800) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("some peers never heard the publisher".into());
        }
    }
}

/// The kinds of network, in the order each round runs them: (`RELAY_ONLY` key, name).
const KINDS: [(&str, &str); 3] = [
    ("waku", "waku relay"),
    ("awaited", "gossipsub, publish awaited"),
    ("queued", "gossipsub, publish queued"),
];

/// One kind's figures over the rounds.
struct Kind {
    key: &'static str,
    name: &'static str,
    /// Measured messages per second per peer, one per round.
    rates: Vec<f64>,
    /// CPU seconds over all rounds.
    cpu: f64,
    /// Deliveries over all rounds.
    deliveries: u64,
}

/// Result of one measurement.
struct Run {
    secs: f64,
    delivered: u64,
    /// CPU seconds (user + system) of this process during the measurement.
    cpu: f64,
}

/// CPU seconds this process has used (fields 14 and 15 of `/proc/self/stat`, at
/// Linux's 100 ticks a second); 0 where there is no procfs.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

async fn measure(net: &impl Net, s: Settings) -> Result<Run, String> {
    warm_up(net).await?;
    let cpu0 = cpu_secs();
    let start = Instant::now();
    for seq in 0..s.messages {
        while seq - min_others(net.received()).min(seq) >= s.window {
            tokio::time::sleep(Duration::from_micros(200)).await;
            if start.elapsed() > Duration::from_secs(300) {
                return Err(format!("stalled at {seq} published"));
            }
        }
        net.publish(payload(MEASURED, seq, s.size)).await;
    }
    while min_others(net.received()) < s.messages {
        tokio::time::sleep(Duration::from_micros(200)).await;
        if start.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "not delivered everywhere: lowest count {}",
                min_others(net.received())
            ));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let delivered = net.received()[1..]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    Ok(Run {
        secs,
        delivered,
        cpu,
    })
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(kind: &str, round: usize, s: Settings, r: &Run) -> (String, f64) {
    let per_peer = s.messages as f64 / r.secs;
    let mib = per_peer * s.size as f64 / (1024.0 * 1024.0);
    let line = format!(
        "| {round} | {kind} | {} | {} | {:.2} | {per_peer:.0} | {:.0} | {mib:.2} | {:.1} | {:.0} |",
        s.peers,
        s.messages,
        r.secs,
        r.delivered as f64 / r.secs,
        r.cpu,
        r.cpu * 1e6 / r.delivered as f64,
    );
    (line, per_peer)
}

#[tokio::main]
async fn main() {
    let s = Settings {
        peers: env_or("RELAY_PEERS", 10usize).max(2),
        messages: env_or("RELAY_MESSAGES", 2000u64),
        size: env_or("RELAY_SIZE", 1024usize).max(256),
        window: env_or("RELAY_WINDOW", 200u64).max(1),
    };
    let rounds = env_or("RELAY_ROUNDS", 2usize).max(1);
    eprintln!("relay throughput: {s:?}, {rounds} rounds");
    // Per kind: rate per round (msgs/s per peer), CPU seconds and deliveries summed.
    let mut kinds: Vec<Kind> = KINDS
        .iter()
        .map(|&(key, name)| Kind {
            key,
            name,
            rates: Vec::new(),
            cpu: 0.0,
            deliveries: 0,
        })
        .collect();
    // `RELAY_ONLY=<key>` runs one kind alone (for profiling).
    let only = std::env::var("RELAY_ONLY").unwrap_or_default();
    kinds.retain(|k| only.is_empty() || k.key == only);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for k in &mut kinds {
            eprintln!("round {round}: {}", k.name);
            let r = match k.key {
                "waku" => {
                    let net = waku::start(s).await.expect("waku relays start");
                    let r = measure(&net, s).await;
                    net.stop().await;
                    r
                }
                key => {
                    let net = plain::start(s, key == "awaited")
                        .await
                        .expect("gossipsub swarms start");
                    let r = measure(&net, s).await;
                    net.stop().await;
                    r
                }
            };
            let r = r.unwrap_or_else(|e| panic!("{}: {e}", k.name));
            k.cpu += r.cpu;
            k.deliveries += r.delivered;
            let (line, rate) = row(k.name, round, s, &r);
            eprintln!("{line}");
            rows.push(line);
            k.rates.push(rate);
        }
    }
    println!(
        "| round | relay | peers | messages | seconds | msgs/s per peer | deliveries/s (all peers) | MiB/s per peer | CPU s (all peers) | CPU µs per delivery |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    let Some(ours) = kinds.iter().find(|k| k.key == "waku") else {
        return;
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let per = |k: &Kind| k.cpu * 1e6 / k.deliveries.max(1) as f64;
    for theirs in kinds.iter().filter(|k| k.key != "waku") {
        let mut ratios: Vec<f64> = ours
            .rates
            .iter()
            .zip(&theirs.rates)
            .map(|(a, b)| a / b)
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "\nwaku relay / {}: mean msgs/s per peer over {rounds} rounds {:.0} / {:.0} = {:.2}; \
             per-round ratios {} (median {:.2}); CPU per delivery {:.0} µs / {:.0} µs = {:.2}",
            theirs.name,
            mean(&ours.rates),
            mean(&theirs.rates),
            mean(&ours.rates) / mean(&theirs.rates),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            ratios[ratios.len() / 2],
            per(ours),
            per(theirs),
            per(ours) / per(theirs),
        );
    }
}
