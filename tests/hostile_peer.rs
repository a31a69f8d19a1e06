//! An outsider process on a conversation's topics, over real Waku. Three `demls-node`
//! processes on 127.0.0.1 form a conversation (A creates, B and C join); a
//! `demls-waku-peer` process that nobody ever added connects to all three, listens to the
//! joins, and then publishes for `FLOOD`:
//!
//! - `CommitCandidate`s and `CatchUpCommit`s with junk commits and forged evidence signed
//!   by its own key (a vote-less removal of C, voter counts of 2³¹ and 2³²−1, an election
//!   naming itself with retry round 2³²−1, an election `[S, S]`, DEADLOCK emergencies),
//!   under its own name and under the epoch steward's, for the current, a past, the next
//!   and epoch `u64::MAX`;
//! - MLS `PrivateMessage` headers claiming epochs 10⁶, `u64::MAX`, epoch + 1 000 and
//!   epoch + 4, and ~120 KiB ones claiming epoch + 1 and + 2 (to fill any buffer of
//!   later-epoch messages);
//! - `CatchUpRequest`s for past epochs in the members' names with junk signatures, and
//!   signed by itself;
//! - junk welcomes naming every member (some of 100 KiB), signed by itself as committer;
//! - replays of the members' own packets it recorded during the joins (key-package
//!   announcements, welcomes, commits, MLS messages);
//! - random bytes on both subtopics;
//!
//! and then relay messages over 150 KiB and undecodable ones, which each node's relay
//! validator must refuse.
//!
//! Asserted, during and after the flood: every node keeps the same three members at the
//! same epoch and state, with the same roles (steward list) and scores; no proposal
//! appears; nobody enters Recovery mode; no conversation is quarantined and no process
//! dies; the flood reached every node's conversation. The members answer nothing: no
//! catch-up commit, no commit, no welcome but the genuine ones a replayed announcement
//! may draw (at most one per replay and node), at most the rounds of catch-up requests
//! the hint rule allows, under 5 % of the outsider's bytes in all; junk does not rewrite
//! the conversation's stored state. Every node's relay counted the oversize messages as
//! `too_large`; chat reaches every member from every member; each node's resident memory
//! stays within its RSS before the flood plus `RSS_HEADROOM_KIB`; and a fourth node joins
//! afterwards. `--nocapture` prints the figures.

mod outsider;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use demls_core::identity::MemberId;
use demls_core::proto::pb;
use prost::Message;

use outsider::{Outsider, Target};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");
const CONV: &str = "besieged";
/// How long the outsider publishes protocol-level junk.
const FLOOD: Duration = Duration::from_secs(24);
/// One round of the flood (about a dozen packets, ~250 KiB) per this much time.
const ROUND: Duration = Duration::from_millis(250);
/// How long after the last forged packet the final checks wait at least: a forged
/// decision would be decided by the timeout rule (`consensus_timeout`, 2 s), frozen
/// (`freeze`, 2 s) and committed within `commit_inactivity` (4 s) of the config below.
const AFTERMATH: Duration = Duration::from_secs(8);
/// Resident memory a node may gain over the flood. What the network can make a
/// conversation keep is bounded (docs/SECURITY.md, bounds): 1 MiB of later-epoch
/// messages, 64 refused-candidate hashes, and no candidate slot for a commit that does
/// not stage; the relay holds the last ~3.5 s of messages (5 heartbeats of 700 ms) at
/// the flood's ~1 MiB/s, plus seen ids. That is a few MiB (measured: ~10 MiB); 64 MiB
/// leaves room for allocator slack on a loaded machine. The code before the bounds kept
/// every later-epoch message (here ~23 MiB of them) and serialized them into the saved
/// state, at ~3× their size, after every packet: more than this in all.
const RSS_HEADROOM_KIB: u64 = 64 * 1024;
/// How long the members must publish nothing before the flood starts.
const QUIET: Duration = Duration::from_secs(4);
/// `commit_inactivity` and `recovery_inactivity` of the config below, in ms.
const COMMIT_INACTIVITY_MS: u64 = 4_000;
const RECOVERY_INACTIVITY_MS: u64 = 1_000;
/// Catch-up requests per round of asks about an unauthenticated epoch hint.
const HINT_ASKS: u64 = 3;

/// The most catch-up requests one member may publish within `window` of its first
/// unauthenticated hint (docs/SECURITY.md): rounds of `HINT_ASKS` requests, the first at
/// once and each later one after twice the wait before it, starting from
/// `commit_inactivity` (so no round starts before 0, w, 3w, 7w, … ms), plus one round of
/// slack for a hint that arrives while a round is under way.
fn hint_request_bound(window: Duration) -> u64 {
    let w = COMMIT_INACTIVITY_MS;
    let rounds = (0..64)
        .take_while(|k| ((1u64 << k) - 1) * w < window.as_millis() as u64)
        .count() as u64;
    HINT_ASKS * (rounds + 1)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// A member as a node shows it: (role, score).
type Roster = BTreeMap<String, (String, i64)>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    state: String,
    epoch: u64,
    members: Roster,
}

struct Node {
    name: &'static str,
    dir: PathBuf,
    metrics_port: u16,
    api: String,
    waku_port: u16,
    child: Option<Child>,
}

impl Node {
    fn new(root: &Path, name: &'static str, bootstrap: Option<u16>) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (waku_port, api_port, metrics_port) = (free_port(), free_port(), free_port());
        let boot = bootstrap
            .map(|p| format!("\"/ip4/127.0.0.1/tcp/{p}\""))
            .unwrap_or_default();
        let cfg = format!(
            r#"
[storage]
data_dir = "{dir}/data"
[api]
listen = "127.0.0.1:{api_port}"
[metrics]
listen = "127.0.0.1:{metrics_port}"
[waku]
listen = ["/ip4/127.0.0.1/tcp/{waku_port}"]
bootstrap = [{boot}]
[protocol]
commit_inactivity = "4s"
freeze = "2s"
voting_delay = "1s"
election_voting_delay = "500ms"
consensus_timeout = "2s"
proposal_expiration = "60s"
recovery_inactivity = "1s"
[log]
level = "info"
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("node.toml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(dir.join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let n = Self {
            name,
            dir,
            metrics_port,
            api: format!("http://127.0.0.1:{api_port}"),
            waku_port,
            child: Some(child),
        };
        n.wait(60, "API up", |n| n.cli(&["status"]).is_ok());
        n
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn rss(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Still running (an exited child stays a zombie until it is waited for).
    fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("State:").map(|v| v.trim().to_string()))
            })
            .is_some_and(|st| !st.starts_with('Z') && !st.starts_with('X'))
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(BIN)
            .args(args)
            .args(["--api", &self.api, "--json", "--config"])
            .arg(self.dir.join("node.toml"))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        self.cli(args)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    fn address(&self) -> String {
        self.json(&["status"]).unwrap()["address"]
            .as_str()
            .unwrap()
            .to_lowercase()
    }

    fn view(&self) -> Option<View> {
        let v = self.json(&["show", CONV])?;
        let members = v["members"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["address"].as_str().unwrap_or_default().to_lowercase(),
                    (
                        m["role"].as_str().unwrap_or_default().to_string(),
                        m["score"].as_i64().unwrap_or_default(),
                    ),
                )
            })
            .collect();
        Some(View {
            state: v["state"].as_str()?.to_string(),
            epoch: v["epoch"].as_u64()?,
            members,
        })
    }

    /// (id, kind, status) of every proposal the node tracks.
    fn proposals(&self) -> BTreeSet<(u64, String, String)> {
        self.json(&["proposals", CONV])
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|p| {
                (
                    p["id"].as_u64().unwrap_or_default(),
                    p["kind"].as_str().unwrap_or_default().to_string(),
                    p["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn has_message(&self, text: &str) -> bool {
        self.json(&["messages", CONV])
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|a| a.iter().any(|m| m["text"] == text))
    }

    /// `GET /metrics` (Prometheus text) on the node's metrics listener.
    fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.metrics_port
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// Bytes under the node's data directory.
    fn disk(&self) -> u64 {
        fn size(p: &Path) -> u64 {
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => std::fs::read_dir(p)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| size(&e.path()))
                    .sum(),
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        }
        size(&self.dir.join("data"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Fails with what the node says about itself and its log's tail.
    fn fail(&self, what: &str) -> ! {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{}: {what}\nshow: {:?}\nhealth: {:?}\n--- log tail ---\n{}",
            self.name,
            self.cli(&["show", CONV]),
            self.cli(&["health"]),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    fn wait(&self, secs: u64, what: &str, f: impl Fn(&Self) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{}: timed out after {secs}s waiting for {what}\n--- log tail ---\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The sum of the samples of metric `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A packet the outsider's relay received from the members.
struct Seen {
    at: Instant,
    kind: &'static str,
    payload: Vec<u8>,
    subtopic: String,
}

fn kind_of(subtopic: &str, payload: &[u8]) -> &'static str {
    use pb::app_envelope::Body as A;
    use pb::welcome_envelope::Body as W;
    if subtopic == "welcome" {
        return match pb::WelcomeEnvelope::decode(payload)
            .ok()
            .and_then(|e| e.body)
        {
            Some(W::KeyPackage(_)) => "key-package announcement",
            Some(W::Welcome(_)) => "welcome",
            None => "undecodable welcome",
        };
    }
    match pb::AppEnvelope::decode(payload).ok().and_then(|e| e.body) {
        Some(A::MlsMessage(_)) => "MLS message",
        Some(A::CommitCandidate(_)) => "commit candidate",
        Some(A::CatchUpRequest(_)) => "catch-up request",
        Some(A::CatchUpCommit(_)) => "catch-up commit",
        Some(A::Beacon(_)) => "epoch beacon",
        Some(A::SealedVote(_)) => "sealed vote",
        None => "undecodable app_msg",
    }
}

fn replay_kind(kind: &str) -> &'static str {
    match kind {
        "key-package announcement" => "replay: a member's key-package announcement",
        "welcome" => "replay: a member's welcome",
        "MLS message" => "replay: a member's MLS message",
        "commit candidate" => "replay: a member's commit candidate",
        "catch-up commit" => "replay: a member's catch-up commit",
        "epoch beacon" => "replay: a member's epoch beacon",
        "sealed vote" => "replay: a member's sealed vote",
        _ => "replay: other",
    }
}

/// The outsider's relay: a `demls-waku-peer` process driven through its stdin.
struct Relay {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The newest modification time of `p`, or of the files under it.
fn newest(p: &Path) -> std::time::SystemTime {
    if !p.is_dir() {
        return std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| newest(&e.path()))
        .max()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// `demls-waku-peer` next to `demls-node`, (re)built first if it is missing or older
/// than the transport crate's sources (`DEMLS_WAKU_PEER` overrides).
fn waku_peer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DEMLS_WAKU_PEER") {
        return p.into();
    }
    let dir = Path::new(BIN).parent().unwrap();
    let bin = dir.join("demls-waku-peer");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let transport = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/transport");
    let sources = newest(&transport.join("src")).max(newest(&transport.join("build.rs")));
    if built.is_none_or(|b| b < sources) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "demls-transport", "--bin", "demls-waku-peer"]);
        if dir.file_name().is_some_and(|d| d == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build of demls-waku-peer failed");
    }
    assert!(bin.exists(), "no {} after building it", bin.display());
    bin
}

impl Relay {
    fn start(args: &[String], log: &Path) -> Self {
        let mut child = Command::new(waku_peer_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn demls-waku-peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, replies): (Sender<String>, _) = channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("recv ") {
                    // recv CONV SUBTOPIC SENDER MSGID PAYLOAD
                    let w: Vec<&str> = rest.split(' ').collect();
                    if let [_, sub, _, _, hex] = w.as_slice() {
                        let payload = hex::decode(hex).unwrap_or_default();
                        seen2.lock().unwrap().push(Seen {
                            at: Instant::now(),
                            kind: kind_of(sub, &payload),
                            payload,
                            subtopic: sub.to_string(),
                        });
                    }
                } else if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut r = Self {
            child,
            stdin,
            replies,
            seen,
        };
        loop {
            let l = r.next_line("ready");
            if l == "ready" {
                break;
            }
        }
        r
    }

    fn next_line(&mut self, waiting_for: &str) -> String {
        match self.replies.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                panic!("outsider relay: no line within 30 s (waiting for {waiting_for})")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("outsider relay exited (waiting for {waiting_for})")
            }
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("write to the outsider relay");
        self.stdin.flush().unwrap();
        let what: String = cmd.chars().take(40).collect();
        self.next_line(&what)
    }

    fn peers(&mut self) -> u64 {
        let r = self.ask("peers");
        r.strip_prefix("peers ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected reply to peers: {r}"))
    }

    /// Publishes on the conversation's `subtopic`; true if the relay sent it.
    fn publish(&mut self, subtopic: &str, payload: &[u8]) -> bool {
        let r = self.ask(&format!(
            "publish {CONV} {subtopic} {}",
            hex::encode(payload)
        ));
        r.starts_with("published ")
    }

    /// Publishes bytes as a relay message as they are (no WakuMessage, no size check).
    fn raw(&mut self, topic: &str, data: &[u8]) -> bool {
        let r = self.ask(&format!("raw {topic} {}", hex::encode(data)));
        r.starts_with("published ")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn converged(nodes: &[&Node]) -> bool {
    let mut want: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    want.sort();
    let views: Vec<Option<View>> = nodes.iter().map(|n| n.view()).collect();
    let ok = views.iter().all(|v| {
        v.as_ref().is_some_and(|v| {
            v.state == "working" && v.members.keys().cloned().collect::<Vec<_>>() == want
        })
    });
    ok && views
        .iter()
        .flatten()
        .map(|v| v.epoch)
        .collect::<BTreeSet<_>>()
        .len()
        == 1
}

/// Converged, every node shows the same roles and scores, and no proposal is open.
fn settled(nodes: &[&Node]) -> bool {
    if !converged(nodes) {
        return false;
    }
    let views: Vec<Option<View>> = nodes.iter().map(|n| n.view()).collect();
    views.iter().all(|v| v.is_some() && *v == views[0])
        && nodes.iter().all(|n| {
            n.proposals()
                .iter()
                .all(|p| p.2 != "voting" && p.2 != "accepted")
        })
}

#[test]
fn an_outsider_flooding_the_topics_changes_nothing_and_memory_stays_bounded() {
    let root = tempfile::tempdir().unwrap();
    let a = Node::new(root.path(), "a", None);
    let b = Node::new(root.path(), "b", Some(a.waku_port));
    let c = Node::new(root.path(), "c", Some(a.waku_port));
    // D joins only after the flood, to show membership changes still go through.
    let d = Node::new(root.path(), "d", Some(a.waku_port));
    a.wait(60, "peers", |n| {
        n.json(&["status"])
            .is_some_and(|s| s["peers"].as_u64() == Some(3))
    });
    a.cli(&["create", CONV]).unwrap();

    // The outsider connects to every node and listens to the joins.
    let mut args: Vec<String> = vec!["--listen".into(), "/ip4/127.0.0.1/tcp/0".into()];
    for n in [&a, &b, &c] {
        args.push("--bootstrap".into());
        args.push(format!("/ip4/127.0.0.1/tcp/{}", n.waku_port));
    }
    args.extend(["--subscribe".into(), CONV.into()]);
    let mut relay = Relay::start(&args, &root.path().join("outsider.log"));
    let end = Instant::now() + Duration::from_secs(30);
    while relay.peers() < 3 {
        assert!(
            Instant::now() < end,
            "the outsider never reached all three nodes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    b.cli(&["join", CONV]).unwrap();
    a.wait(90, "B joined", |a| converged(&[a, &b]));
    c.cli(&["join", CONV]).unwrap();
    a.wait(90, "all three converged", |a| converged(&[a, &b, &c]));
    a.wait(60, "settled (same roles everywhere, nothing open)", |a| {
        settled(&[a, &b, &c])
    });
    let nodes = [&a, &b, &c];
    // The joins' last re-sends (a winning commit is re-sent for a while after it lands)
    // die down, so that whatever the members publish from now on answers the outsider.
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let last = relay.seen.lock().unwrap().last().map(|s| s.at);
        if last.is_none_or(|t| t.elapsed() >= QUIET) {
            break;
        }
        assert!(Instant::now() < end, "the members never fell quiet");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(settled(&nodes), "the group moved while falling quiet");

    // What the group looks like before the flood.
    let before = a.view().unwrap();
    let proposals_before: Vec<_> = nodes.iter().map(|n| n.proposals()).collect();
    let rss_before: Vec<u64> = nodes.iter().map(|n| n.rss()).collect();
    let metrics_before: Vec<String> = nodes.iter().map(|n| n.metrics()).collect();
    let disk_before: Vec<u64> = nodes.iter().map(|n| n.disk()).collect();
    let addr = |n: &Node| n.address().parse::<MemberId>().unwrap();
    let target = Target {
        conversation: CONV.into(),
        epoch: before.epoch,
        members: nodes.iter().map(|n| addr(n)).collect(),
        victim: addr(&c),
        steward: before
            .members
            .iter()
            .find(|(_, (role, _))| role == "epoch_steward")
            .map(|(m, _)| m.parse().unwrap())
            .expect("an epoch steward"),
    };
    // The members' own packets, recorded during the joins, to replay. Catch-up requests
    // are left out: a member's fresh signed request is answered (once) by design.
    let replays: Vec<(String, Vec<u8>)> = relay
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.kind != "catch-up request")
        .map(|s| (s.subtopic.clone(), s.payload.clone()))
        .collect();
    assert!(
        replays.iter().any(|r| r.0 == "welcome"),
        "the outsider recorded the joins' announcements and welcomes"
    );

    let outsider = Outsider::new();
    let mut tally: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut refused_at_source = 0u64;
    let mut rss_max = rss_before.clone();
    let flood_start = Instant::now();
    let mut i = 0u32;
    let mut last_check = Instant::now();
    while flood_start.elapsed() < FLOOD {
        let round_start = Instant::now();
        let mut packets = outsider.round(&target, i);
        if i.is_multiple_of(4) {
            for k in 0..3 {
                let (sub, p) = &replays[(i as usize + k) % replays.len()];
                packets.push(outsider::Packet {
                    kind: replay_kind(kind_of(sub, p)),
                    subtopic: if sub == "welcome" {
                        "welcome"
                    } else {
                        "app_msg"
                    },
                    payload: p.clone(),
                });
            }
        }
        for p in packets {
            if relay.publish(p.subtopic, &p.payload) {
                let t = tally.entry(p.kind).or_default();
                t.0 += 1;
                t.1 += p.payload.len() as u64;
            } else {
                refused_at_source += 1;
            }
        }
        for (k, n) in nodes.iter().enumerate() {
            rss_max[k] = rss_max[k].max(n.rss());
        }
        if last_check.elapsed() >= Duration::from_secs(3) {
            last_check = Instant::now();
            for n in nodes {
                assert!(n.alive(), "{}: the node process died (round {i})", n.name);
                let v = n
                    .view()
                    .unwrap_or_else(|| n.fail("no view of the conversation"));
                assert_eq!(
                    (&v.state, v.epoch, v.members.keys().collect::<Vec<_>>()),
                    (
                        &before.state,
                        before.epoch,
                        before.members.keys().collect::<Vec<_>>()
                    ),
                    "{}: state, epoch or members moved during the flood (round {i})",
                    n.name
                );
            }
        }
        i += 1;
        if let Some(left) = ROUND.checked_sub(round_start.elapsed()) {
            std::thread::sleep(left);
        }
    }
    let flood_end = Instant::now();
    let rounds = i;

    // Relay-level junk: over 150 KiB, and not a WakuMessage at all. Each costs the
    // outsider gossipsub score at every node, so it comes last.
    let topic = demls_transport::waku::WakuConfig::default().topic_for(CONV);
    let mut raw_sent = 0;
    for len in [155 * 1024, 160 * 1024, 300] {
        let mut junk = vec![0u8; len];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut junk);
        raw_sent += relay.raw(&topic, &junk) as u64;
    }
    assert_eq!(raw_sent, 3, "the outsider's relay sent the raw junk");
    for n in nodes {
        n.wait(30, "its relay refusing the oversize message", |n| {
            metric(
                &n.metrics(),
                "waku_relay_messages_total",
                &["outcome=\"rejected\"", "reason=\"too_large\""],
            ) >= 1
        });
    }

    // Chat in every direction after the flood.
    for n in nodes {
        n.cli(&["send", CONV, &format!("after the flood, from {}", n.name)])
            .unwrap();
    }
    for n in nodes {
        for from in ["a", "b", "c"] {
            let text = format!("after the flood, from {from}");
            n.wait(30, &format!("message {text:?}"), |n| n.has_message(&text));
        }
    }
    if let Some(left) = AFTERMATH.checked_sub(flood_end.elapsed()) {
        std::thread::sleep(left);
    }

    // The group is exactly as before.
    for (k, n) in nodes.iter().enumerate() {
        let v = n
            .view()
            .unwrap_or_else(|| n.fail("no view of the conversation"));
        assert_eq!(v, before, "{}: the group changed", n.name);
        assert_eq!(
            n.proposals(),
            proposals_before[k],
            "{}: proposals appeared",
            n.name
        );
        let log = n.log();
        assert!(
            !log.contains("recovery mode"),
            "{}: entered Recovery mode",
            n.name
        );
        assert!(n.alive(), "{}: the node process died", n.name);
        let health = n
            .json(&["health"])
            .unwrap_or_else(|| n.fail("health does not answer"));
        assert_eq!(health["status"], "ok", "{}: health {health}", n.name);
    }

    // What the members published while the outsider flooded (the outsider's relay
    // hears every packet on the topics).
    let mut answers: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    for s in relay
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.at >= flood_start)
    {
        let t = answers.entry(s.kind).or_default();
        t.0 += 1;
        t.1 += s.payload.len() as u64;
    }

    let rss_after: Vec<u64> = nodes.iter().map(|n| n.rss()).collect();
    let metrics: Vec<String> = nodes.iter().map(|n| n.metrics()).collect();
    let sent_packets: u64 = tally.values().map(|t| t.0).sum();
    let sent_bytes: u64 = tally.values().map(|t| t.1).sum();
    println!(
        "outsider: {rounds} rounds in {:.1} s, {sent_packets} packets, {sent_bytes} bytes \
         ({refused_at_source} refused by its own relay); then {raw_sent} raw relay messages",
        (flood_end - flood_start).as_secs_f64()
    );
    for (kind, (n, bytes)) in &tally {
        println!("  sent {n:5} × {kind} ({bytes} B)");
    }
    for (kind, (n, bytes)) in &answers {
        println!("  members published {n:4} × {kind} ({bytes} B)");
    }
    for (k, n) in nodes.iter().enumerate() {
        let m = &metrics[k];
        let delta = |name: &str| metric(m, name, &[]) - metric(&metrics_before[k], name, &[]);
        let received = delta("demls_packets_received_total");
        let saves = delta("demls_state_saves_total");
        let skipped = delta("demls_state_saves_skipped_total");
        let disk = n.disk();
        let rejected: Vec<String> = m
            .lines()
            .filter(|l| l.starts_with("demls_rejected_total") || l.contains("outcome=\"rejected\""))
            .map(|l| l.to_string())
            .collect();
        println!(
            "node {}: RSS before {} KiB, max {} KiB, after {} KiB; {received} packets \
             delivered to the conversation; state rows written {saves}, unchanged {skipped}; \
             data dir {} -> {disk} B; {}",
            n.name,
            rss_before[k],
            rss_max[k],
            rss_after[k],
            disk_before[k],
            rejected.join("; ")
        );
        assert!(
            received * 10 >= sent_packets * 8,
            "{}: only {received} of the outsider's {sent_packets} packets reached the \
             conversation: the flood did not test it",
            n.name
        );
        assert!(
            rss_max[k].max(rss_after[k]) <= rss_before[k] + RSS_HEADROOM_KIB,
            "{}: RSS grew from {} KiB to {} KiB",
            n.name,
            rss_before[k],
            rss_max[k].max(rss_after[k])
        );
        // Junk leaves the conversation's state as it was, so its row is not rewritten
        // for it (before, every inbound packet rewrote it); what is written comes from
        // the chat and the few packets that do change something (the catch-up rounds,
        // welcome re-sends, reply budgets).
        assert!(
            saves * 4 <= received,
            "{}: {saves} state rows written for {received} packets",
            n.name
        );
        assert!(
            metric(m, "demls_quarantines_total", &[]) == 0,
            "{}: a conversation was quarantined",
            n.name
        );
    }

    // Nothing answered the outsider: no catch-up commit for its requests, no commit, no
    // junk welcome re-published; the fake epochs drew only the rounds of catch-up
    // requests the hint rule allows.
    let count = |k: &str| answers.get(k).map_or(0, |t| t.0);
    assert_eq!(
        count("catch-up commit"),
        0,
        "members answered catch-up requests"
    );
    assert_eq!(count("commit candidate"), 0, "members committed something");
    let window = flood_start.elapsed();
    let member_ids: BTreeSet<Vec<u8>> = target.members.iter().map(|m| m.to_vec()).collect();
    let mut requests: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut welcomes = 0u64;
    for s in relay
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.at >= flood_start)
    {
        match s.kind {
            "catch-up request" => {
                let Some(pb::app_envelope::Body::CatchUpRequest(r)) =
                    pb::AppEnvelope::decode(s.payload.as_slice())
                        .ok()
                        .and_then(|e| e.body)
                else {
                    unreachable!()
                };
                *requests.entry(r.requester).or_default() += 1;
            }
            "welcome" => {
                let Some(pb::welcome_envelope::Body::Welcome(w)) =
                    pb::WelcomeEnvelope::decode(s.payload.as_slice())
                        .ok()
                        .and_then(|e| e.body)
                else {
                    unreachable!()
                };
                assert!(
                    member_ids.contains(&w.committer)
                        && w.joiner_ids.iter().all(|j| member_ids.contains(j)),
                    "a member re-published a welcome it did not get from a member's commit"
                );
                welcomes += 1;
            }
            _ => {}
        }
    }
    let bound = hint_request_bound(window);
    println!(
        "catch-up requests per member in {:.0} s: {:?} (bound {bound}); welcome re-sends {welcomes}",
        window.as_secs_f64(),
        requests.values().collect::<Vec<_>>()
    );
    for (who, n) in &requests {
        assert!(
            member_ids.contains(who),
            "a catch-up request in an outsider's name"
        );
        assert!(
            *n <= bound,
            "{} sent {n} catch-up requests in {window:?} (bound {bound})",
            hex::encode(who)
        );
    }
    // A member's announcement, replayed, draws a re-send of the welcome that added it (a
    // joiner that missed its welcome re-announces): at most one per
    // `recovery_inactivity` per node, so at most one per replay from each node.
    let replayed = tally
        .get("replay: a member's key-package announcement")
        .map_or(0, |t| t.0);
    let per_gap = nodes.len() as u64 * (window.as_millis() as u64 / RECOVERY_INACTIVITY_MS + 1);
    assert!(
        welcomes <= (nodes.len() as u64 * replayed).min(per_gap),
        "{welcomes} welcome re-sends for {replayed} replayed announcements"
    );
    let member_bytes: u64 = answers.values().map(|t| t.1).sum();
    assert!(
        member_bytes * 20 <= sent_bytes,
        "members published {member_bytes} B for the outsider's {sent_bytes} B"
    );

    // The group still changes its membership: D joins and everyone converges.
    let joined = Instant::now();
    d.cli(&["join", CONV]).unwrap();
    a.wait(90, "D joined after the flood", |a| {
        converged(&[a, &b, &c, &d])
    });
    println!(
        "D joined in {:.1} s after the flood",
        joined.elapsed().as_secs_f64()
    );
}
