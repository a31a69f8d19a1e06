//! Three `demls-node` processes on 127.0.0.1 (real Waku relay over TCP, real MLS, real
//! SQLite), driven only through the CLI: A creates a conversation, B and C join it by
//! name, all converge, chat reaches everyone, C is removed by vote, B is killed and
//! restarted and chats again at the same epoch, B leaves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");
const CONV: &str = "trio";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    name: &'static str,
    dir: PathBuf,
    api: String,
    child: Option<Child>,
}

impl Node {
    fn new(root: &Path, name: &'static str, bootstrap: Option<u16>) -> (Self, u16) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (waku, api) = (free_port(), free_port());
        let boot = bootstrap
            .map(|p| format!("\"/ip4/127.0.0.1/tcp/{p}\""))
            .unwrap_or_default();
        let cfg = format!(
            r#"
[storage]
data_dir = "{dir}/data"
[api]
listen = "127.0.0.1:{api}"
[waku]
listen = ["/ip4/127.0.0.1/tcp/{waku}"]
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
        let mut n = Self {
            name,
            dir,
            api: format!("http://127.0.0.1:{api}"),
            child: None,
        };
        n.start();
        (n, waku)
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("node.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait(30, "API up", |n| n.cli(&["status"]).is_ok());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

    fn view(&self) -> Option<(String, u64, Vec<String>)> {
        let v = self.json(&["show", CONV])?;
        let mut members: Vec<String> = v["members"]
            .as_array()?
            .iter()
            .map(|m| m["address"].as_str().unwrap_or_default().to_lowercase())
            .collect();
        members.sort();
        Some((
            v["state"].as_str()?.to_string(),
            v["epoch"].as_u64()?,
            members,
        ))
    }

    fn has_message(&self, text: &str) -> bool {
        self.json(&["messages", CONV])
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|a| a.iter().any(|m| m["text"] == text))
    }

    fn wait(&self, secs: u64, what: &str, f: impl Fn(&Self) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
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
        self.kill();
    }
}

fn converged(nodes: &[&Node]) -> bool {
    let mut want: Vec<String> = nodes.iter().map(|n| n.address()).collect();
    want.sort();
    let views: Vec<_> = nodes.iter().map(|n| n.view()).collect();
    views
        .iter()
        .all(|v| matches!(v, Some((s, _, m)) if s == "working" && *m == want))
        && views
            .iter()
            .filter_map(|v| v.as_ref().map(|x| x.1))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == 1
}

#[test]
fn three_processes_create_join_chat_remove_restart_leave() {
    let root = tempfile::tempdir().unwrap();
    let (a, a_port) = Node::new(root.path(), "a", None);
    let (mut b, _) = Node::new(root.path(), "b", Some(a_port));
    let (c, _) = Node::new(root.path(), "c", Some(a_port));
    a.wait(30, "peers", |n| {
        n.json(&["status"])
            .is_some_and(|s| s["peers"].as_u64() == Some(2))
    });

    a.cli(&["create", CONV]).unwrap();
    b.cli(&["join", CONV]).unwrap();
    a.wait(90, "B joined", |a| converged(&[a, &b]));
    c.cli(&["join", CONV]).unwrap();
    a.wait(90, "all three converged", |a| converged(&[a, &b, &c]));

    for (n, text) in [(&a, "from a"), (&b, "from b"), (&c, "from c")] {
        n.cli(&["send", CONV, text]).unwrap();
    }
    for n in [&a, &b, &c] {
        for text in ["from a", "from b", "from c"] {
            n.wait(30, &format!("message {text:?}"), |n| n.has_message(text));
        }
    }

    let c_addr = c.address();
    let v = a.json(&["remove", CONV, &c_addr]).unwrap();
    assert!(v["proposal_id"].as_u64().is_some());
    a.wait(90, "C removed", |a| converged(&[a, &b]));
    c.wait(30, "C sees it left", |c| c.cli(&["show", CONV]).is_err());

    let epoch = a.view().unwrap().1;
    b.kill();
    b.start();
    b.wait(30, "B resumed at the same epoch", |b| {
        b.view().is_some_and(|v| v.0 == "working" && v.1 == epoch)
    });
    b.cli(&["send", CONV, "back again"]).unwrap();
    a.wait(30, "A got B's message after restart", |a| {
        a.has_message("back again")
    });

    b.cli(&["leave", CONV]).unwrap();
    b.wait(90, "B left", |b| b.cli(&["show", CONV]).is_err());
    a.wait(90, "A alone", |a| a.view().is_some_and(|v| v.2.len() == 1));
}
