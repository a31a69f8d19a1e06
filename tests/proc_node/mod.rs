//! `demls-node` processes on 127.0.0.1 for integration tests: one data directory, config
//! file and log per node, driven through the CLI (`--json`), as a user would.
//!
//! Used by `tests/kill_bootstrap.rs`. Each node gets its own free TCP port for the API and
//! the Waku relay and its own UDP port for discv5; the protocol timers are at their
//! minimum so that membership changes take seconds.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The node binary cargo built for this test.
pub const BIN: &str = env!("CARGO_BIN_EXE_demls-node");

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port nobody is bound to right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shortest protocol timings the config accepts in the order the rules need
/// (voting_delay < consensus_timeout < commit_inactivity).
pub const FAST_PROTOCOL: &str = r#"
[protocol]
commit_inactivity = "4s"
freeze = "2s"
voting_delay = "1s"
election_voting_delay = "500ms"
consensus_timeout = "2s"
proposal_expiration = "60s"
recovery_inactivity = "1s"
"#;

/// (state, epoch, members as (address, role) sorted by address) of a conversation.
pub type ConvView = (String, u64, Vec<(String, String)>);

/// One `demls-node run` process.
pub struct Node {
    /// Short name used in failure messages (`a`, `b`, …).
    pub name: String,
    /// Its directory: `node.toml`, `node.log`, `data/`.
    pub dir: PathBuf,
    /// API base URL.
    pub api: String,
    /// Waku TCP port.
    pub waku_port: u16,
    /// discv5 UDP port.
    pub udp_port: u16,
    child: Option<Child>,
}

impl Node {
    /// Writes the config (`[waku]` extra lines `waku_extra`, e.g. the bootstrap list) and
    /// starts the process; returns once its API answers.
    pub fn start_new(root: &Path, name: &str, waku_extra: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (waku_port, api_port, udp_port) = (free_port(), free_port(), free_udp_port());
        let cfg = format!(
            r#"
[storage]
data_dir = "{dir}/data"
[api]
listen = "127.0.0.1:{api_port}"
[waku]
listen = ["/ip4/127.0.0.1/tcp/{waku_port}"]
discv5_udp_port = {udp_port}
{waku_extra}
{FAST_PROTOCOL}
[log]
level = "info,demls_transport=debug"
"#,
            dir = dir.display()
        );
        std::fs::write(dir.join("node.toml"), cfg).unwrap();
        let mut n = Self {
            name: name.to_string(),
            dir,
            api: format!("http://127.0.0.1:{api_port}"),
            waku_port,
            udp_port,
            child: None,
        };
        n.start();
        n
    }

    /// (Re)starts the process on its existing config and data.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait(60, "API up", |n| n.cli(&["status"]).is_ok());
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a client command against this node's API; stdout or stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
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

    /// A client command's JSON answer, if it succeeded.
    pub fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        self.cli(args)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    /// `status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        self.json(&["status"])
            .unwrap_or_else(|| self.fail("no status"))
    }

    /// The member address, lower case.
    pub fn address(&self) -> String {
        self.status()["address"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
    }

    /// Connected relay peers.
    pub fn peers(&self) -> u64 {
        self.json(&["status"])
            .and_then(|s| s["peers"].as_u64())
            .unwrap_or(0)
    }

    /// What `show` says about conversation `conv`.
    pub fn view(&self, conv: &str) -> Option<ConvView> {
        let v = self.json(&["show", conv])?;
        let mut members: Vec<(String, String)> = v["members"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["address"].as_str().unwrap_or_default().to_lowercase(),
                    m["role"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        members.sort();
        Some((
            v["state"].as_str()?.to_string(),
            v["epoch"].as_u64()?,
            members,
        ))
    }

    /// Whether a chat message with this text is in `conv`'s history.
    pub fn has_message(&self, conv: &str, text: &str) -> bool {
        self.json(&["messages", conv])
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|a| a.iter().any(|m| m["text"] == text))
    }

    /// The node's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Panics with `what`, the node's status and the tail of its log.
    pub fn fail(&self, what: &str) -> ! {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{}: {what}\n--- log tail ---\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// Polls `f` every 250 ms until it holds; fails after `secs` with the log tail.
    pub fn wait(&self, secs: u64, what: &str, f: impl Fn(&Self) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.fail(&format!("timed out after {secs}s waiting for {what}"));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every node in `conv`, working, with exactly the members `nodes` at one epoch.
pub fn converged(conv: &str, nodes: &[&Node]) -> bool {
    let want: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    roster_is(conv, nodes, &want)
}

/// Every node in `conv`, working, at one epoch, with exactly the members `addrs` (lower
/// case; some may be stopped).
pub fn roster_is(conv: &str, nodes: &[&Node], addrs: &[String]) -> bool {
    let mut want = addrs.to_vec();
    want.sort();
    let views: Vec<_> = nodes.iter().map(|n| n.view(conv)).collect();
    views.iter().all(|v| {
        matches!(v, Some((s, _, m)) if s == "working"
            && m.iter().map(|x| x.0.clone()).collect::<Vec<_>>() == want)
    }) && views
        .iter()
        .filter_map(|v| v.as_ref().map(|x| x.1))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        == 1
}
