//! The real binary with a damaged database: a node killed with SIGKILL and restarted with
//! one conversation's saved state corrupted starts anyway, quarantines that conversation
//! (log line, `health`, `status`), runs the other one, and lets the operator release or
//! drop it through the CLI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    dir: PathBuf,
    api: String,
    child: Option<Child>,
}

impl Node {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let (api, waku) = (free_port(), free_port());
        let cfg = format!(
            "[storage]\ndata_dir = \"{}/data\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n\
             [waku]\nlisten = [\"/ip4/127.0.0.1/tcp/{waku}\"]\nbootstrap = []\n\
             [log]\nlevel = \"info\"\n",
            dir.display()
        );
        std::fs::write(dir.join("node.toml"), cfg).unwrap();
        Self {
            dir: dir.to_path_buf(),
            api: format!("http://127.0.0.1:{api}"),
            child: None,
        }
    }

    fn start(&mut self, log_name: &str) {
        let log = std::fs::File::create(self.dir.join(log_name)).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while !self.cli(&["status"]).status.success() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the node exited with {status}:\n{}", self.log(log_name));
            }
            assert!(Instant::now() < end, "the node API did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to save anything at shutdown.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--api", &self.api, "--config"])
            .arg(self.dir.join("node.toml"))
            .env_remove("DEMLS_API")
            .env_remove("DEMLS_API_TOKEN")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_corrupt_conversation_is_quarantined_and_the_operator_gets_it_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::new(tmp.path());
    node.start("first.log");
    node.ok(&["create", "good"]);
    node.ok(&["create", "bad"]);
    node.ok(&["send", "bad", "keep me"]);
    node.kill();

    // Damage one conversation's saved state behind the node's back.
    {
        let db = rusqlite::Connection::open(tmp.path().join("data/demls.sqlite3")).unwrap();
        let n = db
            .execute(
                "UPDATE conversations SET state_blob = x'7b6e6f74206a736f6e' WHERE name = 'bad'",
                [],
            )
            .unwrap();
        assert_eq!(n, 1);
    }

    node.start("second.log");
    let log = node.log("second.log");
    let line = log
        .lines()
        .find(|l| l.contains("conversation quarantined"))
        .unwrap_or_else(|| panic!("no quarantine log line:\n{log}"));
    assert!(
        line.contains("bad") && line.contains("cannot be restored"),
        "{line}"
    );

    let health = node.ok(&["health"]);
    assert!(health.starts_with("degraded\n"), "{health}");
    assert!(health.contains("quarantined bad since"), "{health}");
    let status = node.ok(&["status"]);
    assert!(status.contains("conversations  good\n"), "{status}");
    assert!(
        status.contains("quarantined    bad: cannot be restored"),
        "{status}"
    );
    let json: serde_json::Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["quarantined"][0]["name"], "bad");

    // Refused with the reason; the other conversation runs; history is readable.
    let err = node.fails(&["send", "bad", "x"]);
    assert!(
        err.contains("is quarantined") && err.contains("HTTP 409"),
        "{err}"
    );
    node.ok(&["send", "good", "still here"]);
    assert!(node.ok(&["messages", "bad"]).contains("keep me"));

    // Releasing does not help while the state is damaged; dropping gets rid of it.
    let err = node.fails(&["release", "bad"]);
    assert!(err.contains("stays quarantined"), "{err}");
    assert!(node.ok(&["drop", "bad"]).contains("dropped bad"));
    assert_eq!(node.ok(&["health"]), "ok\n");
    let err = node.fails(&["drop", "good"]);
    assert!(err.contains("not quarantined"), "{err}");

    // And it stays that way after another crash.
    node.kill();
    node.start("third.log");
    assert_eq!(node.ok(&["health"]), "ok\n");
    assert!(node.ok(&["messages", "good"]).contains("still here"));
    // The name is free again.
    node.ok(&["create", "bad"]);
}
