//! Real `demls-node` processes at size, on 127.0.0.1 (real Waku relay over TCP, real MLS,
//! real SQLite), driven through the HTTP API; prints markdown tables on stdout and, on
//! stderr, each measured join's timeline (per event kind: how many nodes, first and last).
//!
//! Per size N in `PROCS_SIZES` (default `10,30`): N processes, all bootstrapping to the
//! first; the first creates a conversation and N − `PROCS_JOINS` − 1 others join it at
//! once (one batched commit); then `PROCS_JOINS` (default 3) more join one at a time,
//! each into a quiet group (every member working at one epoch, nothing being voted on,
//! no protocol event for `commit_inactivity + freeze` + 1 s; `PROCS_QUIET=0` joins 1 s
//! after the previous join instead),
//! each measured from the join request to its first chat received by every member, with
//! the phases in between from the nodes' event streams and the CPU time all processes
//! used; then `PROCS_CHATS` (default 50) chat messages, senders in turn, each from the
//! send request to its receipt at every other member (after a failed join, among the
//! members before it); then every process's RSS. Separately, one node alone with 0 and
//! then each count of `PROCS_CONVS` (default `1,10,100`) conversations, for RSS per
//! conversation.
//!
//! Times are the bench's monotonic clock: a send is stamped before its HTTP request, a
//! receipt when its server-sent event is read (one host, one clock). Timers are the
//! process tests' fast set (1 s voting delay, 2 s consensus timeout, 4 s commit
//! inactivity, 2 s freeze, 1 s recovery), all scaled by `PROCS_TIMER_SCALE` (default 1).
//! The binary is `DEMLS_BIN`, else the static release build, else `target/release`.
//! Nodes are stopped when the bench ends; a size's directory (configs, logs, data) is
//! removed, unless the size stopped early (then its path is printed). Ctrl-C in a terminal
//! reaches the nodes too (one process group); killing the bench's process alone leaves
//! them running (`pgrep -a demls-node`).

mod node;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use node::{Node, Timers};

/// Settings from the environment.
pub struct Settings {
    /// Process counts.
    pub sizes: Vec<usize>,
    /// Joins measured per size.
    pub joins: usize,
    /// Chat messages per size.
    pub chats: usize,
    /// Conversation counts for RSS per conversation.
    pub convs: Vec<usize>,
    /// The node binary.
    pub bin: PathBuf,
    /// Timer scale.
    pub scale: f64,
    /// Whether each measured join waits for a quiet group (`PROCS_QUIET`, default 1).
    pub quiet: bool,
}

fn list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn num<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> PathBuf {
    if let Ok(b) = std::env::var("DEMLS_BIN") {
        return b.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let static_bin = root.join("target/x86_64-unknown-linux-gnu/release/demls-node");
    if static_bin.exists() {
        static_bin
    } else {
        root.join("target/release/demls-node")
    }
}

/// RSS of one node alone with growing numbers of conversations: (conversations, KiB).
async fn rss_per_conversation(s: &Settings) -> Result<Vec<(usize, u64)>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut n = Node::spawn(&s.bin, dir.path(), 0, None, &Timers::fast(s.scale));
    n.ready().await?;
    let settle = || tokio::time::sleep(Duration::from_secs(5));
    settle().await;
    let mut out = vec![(0, n.rss_kib())];
    let mut made = 0;
    for &target in &s.convs {
        while made < target {
            made += 1;
            n.api()
                .create(&format!("conv-{made}"))
                .await
                .map_err(|e| format!("create conv-{made}: {e}"))?;
        }
        settle().await;
        out.push((made, n.rss_kib()));
        eprintln!("one node, {made} conversations: {} KiB", n.rss_kib());
    }
    Ok(out)
}

#[tokio::main]
async fn main() {
    let s = Settings {
        sizes: list("PROCS_SIZES", "10,30"),
        joins: num("PROCS_JOINS", 3usize).max(1),
        chats: num("PROCS_CHATS", 50usize),
        convs: list("PROCS_CONVS", "1,10,100"),
        bin: binary(),
        scale: num("PROCS_TIMER_SCALE", 1.0f64),
        quiet: num("PROCS_QUIET", 1u8) != 0,
    };
    assert!(s.bin.exists(), "no node binary at {}", s.bin.display());
    let timers = Timers::fast(s.scale);
    eprintln!("binary {}; timers:\n{}", s.bin.display(), timers.toml);

    let convs = rss_per_conversation(&s)
        .await
        .expect("RSS per conversation");
    let mut sizes = Vec::new();
    for &n in &s.sizes {
        eprintln!("== {n} processes");
        match run::size(&s, n, &timers).await {
            Ok(r) => sizes.push(r),
            Err(e) => eprintln!("{n} processes failed: {e}"),
        }
    }
    run::print(&s, &timers, &sizes, &convs);
}
