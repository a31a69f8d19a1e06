//! The built binary: keygen, client errors with no node, and `run` refusing bad configs
//! without creating anything.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DEMLS_API")
        .env_remove("DEMLS_API_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .expect("run demls-node")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("keys/node.key");
    let o = run(&["keygen", "--out", key.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let address = stdout(&o).trim().to_string();
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(
        address.starts_with("0x") && address.len() == 42,
        "{address}"
    );
    // EIP-55: mixed case, and it is the key's address.
    let signer = demls_node::keyfile::read(&key).unwrap();
    assert_eq!(signer.member_id().to_string(), address);
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);

    let before = fs::read(&key).unwrap();
    let o = run(
        &["keygen", "--out", key.to_str().unwrap(), "--json"],
        tmp.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(fs::read(&key).unwrap(), before);

    let other = tmp.path().join("k2");
    let o = run(
        &["keygen", "--json", "--out", other.to_str().unwrap()],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["address"].as_str().unwrap().starts_with("0x"));
}

#[test]
fn client_commands_without_a_node_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", dead_port());
    let want = format!("error: cannot reach the node API at {url} (is the node running?)\n");
    for args in [
        vec!["status", "--api", url.as_str()],
        vec!["show", "general", "--api", url.as_str(), "--json"],
        vec!["vote", "general", "1", "no", "--api", url.as_str()],
        vec!["events", "--api", url.as_str()],
    ] {
        let o = run(&args, tmp.path());
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(stderr(&o), want, "{args:?}");
        assert!(stdout(&o).is_empty());
    }
    // DEMLS_API is honoured.
    let o = Command::new(BIN)
        .args(["conversations"])
        .env("DEMLS_API", &url)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(stderr(&o), want);
    // A URL we cannot use.
    let o = run(&["status", "--api", "ftp://x"], tmp.path());
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "error: invalid API URL \"ftp://x\": expected http://HOST:PORT\n"
    );
}

#[test]
fn run_refuses_bad_configs_and_creates_nothing() {
    let cases: &[(&str, &str)] = &[
        (
            "[storage]\ndata_dir = \"data\"\n[protocol\n",
            "config error: node.toml: invalid TOML",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[protocol]\nfreze = \"3s\"\n",
            "config error: protocol.freze: unknown key",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[protocol]\nfreeze = \"3x\"\n",
            "config error: protocol.freeze: invalid duration \"3x\"",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[waku]\nbootstrap = [\"/ip4/1.2.3/tcp/1\"]\n",
            "config error: waku.bootstrap: invalid value \"/ip4/1.2.3/tcp/1\"",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[[conversations]]\nname = \"a b\"\n",
            "config error: conversations[0].name: ",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[protocol]\nvoting_delay = \"45s\"\n",
            "config error: protocol.voting_delay: must be shorter than protocol.consensus_timeout",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[protocol]\nsn_min = 3\nsn_max = 2\n",
            "config error: protocol.sn_min: must not exceed protocol.sn_max",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[metrics]\nlisten = \"127.0.0.1:8645\"\n",
            "config error: metrics.listen: 127.0.0.1:8645 is the API's address",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[metrics]\nlisten = \"8008\"\n",
            "config error: metrics.listen: invalid address \"8008\"",
        ),
        (
            "[storage]\ndata_dir = \"data\"\n[api]\nallowed_hosts = [\"a b\"]\n",
            "config error: api.allowed_hosts: invalid value \"a b\"",
        ),
    ];
    for (text, want) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("node.toml");
        fs::write(&cfg, text).unwrap();
        let o = run(&["run", "--config", "node.toml"], tmp.path());
        assert!(!o.status.success(), "{text}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{text}: {err}");
        assert!(err.starts_with(want), "{text}:\n got {err}\nwant {want}");
        assert_eq!(
            listing(tmp.path()),
            vec!["node.toml"],
            "{text}: something was created"
        );
    }
    // Environment overrides are checked the same way.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("node.toml"),
        "[storage]\ndata_dir = \"data\"\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["run", "--config", "node.toml"])
        .current_dir(tmp.path())
        .env("DEMLS__PROTOCOL__CONSENSUS_TIMEOUT", "2m")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("config error: protocol.consensus_timeout: must be shorter than protocol.commit_inactivity"), "{}", stderr(&o));
    assert_eq!(listing(tmp.path()), vec!["node.toml"]);
    // A missing config file.
    let o = run(&["run", "--config", "nope.toml"], tmp.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("config error: nope.toml: cannot read"),
        "{}",
        stderr(&o)
    );
}

#[cfg(unix)]
#[test]
fn run_refuses_a_readable_key_file_and_a_foreign_database() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("node.toml"),
        "[storage]\ndata_dir = \"data\"\n[identity]\nkey_file = \"node.key\"\n",
    )
    .unwrap();
    let key = tmp.path().join("node.key");
    let o = run(&["keygen", "--out", "node.key"], tmp.path());
    assert!(o.status.success());
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&["run", "--config", "node.toml"], tmp.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: loading the node key: key file")
                && l.contains("chmod 600")),
        "{err}"
    );
    assert_eq!(listing(tmp.path()), vec!["node.key", "node.toml"]);

    // A data dir holding something that is not ours is refused and left alone.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(tmp.path().join("data")).unwrap();
    let db = tmp.path().join("data/demls.sqlite3");
    fs::write(&db, b"definitely not sqlite").unwrap();
    let o = run(&["run", "--config", "node.toml"], tmp.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: opening storage: ") && l.contains("left untouched")),
        "{err}"
    );
    assert_eq!(fs::read(&db).unwrap(), b"definitely not sqlite");
    assert_eq!(
        listing(tmp.path()),
        vec!["data", "data/demls.sqlite3", "node.key", "node.toml"]
    );
}

/// A raw HTTP/1.1 GET: (status line, body).
fn http_get(port: u16, path: &str, headers: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// A real node: the API token is created at first start in the data directory with mode
/// 0600 and kept across restarts; the CLI finds it through `--config`; the API refuses
/// requests without it (but `/health`); metrics are served on their own listener without
/// a token.
#[cfg(unix)]
#[test]
fn a_running_node_guards_its_api_with_a_token_of_its_data_directory() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let (api, metrics, waku) = (dead_port(), dead_port(), dead_port());
    fs::write(
        tmp.path().join("node.toml"),
        format!(
            "[storage]\ndata_dir = \"data\"\n[api]\nlisten = \"127.0.0.1:{api}\"\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [waku]\nlisten = [\"/ip4/127.0.0.1/tcp/{waku}\"]\ndiscv5_discovery = false\n"
        ),
    )
    .unwrap();
    let start = || {
        Command::new(BIN)
            .args(["run", "--config", "node.toml"])
            .current_dir(tmp.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let node = Kill(start());
    let status = || run(&["status", "--json", "--config", "node.toml"], tmp.path());
    let end = Instant::now() + Duration::from_secs(60);
    while !status().status.success() {
        assert!(Instant::now() < end, "the node API did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let token_file = tmp.path().join("data/api-token");
    assert_eq!(mode(&token_file), 0o600);
    let token = fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);

    let (line, body) = http_get(api, "/status", "");
    assert!(line.contains(" 401 "), "{line} {body}");
    assert!(body.contains("missing API token"), "{body}");
    let (line, _) = http_get(
        api,
        "/status",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert!(line.contains(" 200 "), "{line}");
    let (line, _) = http_get(api, "/health", "");
    assert!(line.contains(" 200 "), "{line}");
    let (line, body) = http_get(metrics, "/metrics", "");
    assert!(line.contains(" 200 "), "{line}");
    assert!(body.contains("demls_conversations 0"), "{body}");

    // Without --config, for this address, the CLI has no token: refused, with a hint.
    let url = format!("http://127.0.0.1:{api}");
    let o = run(&["status", "--api", &url], tmp.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("(HTTP 401)"), "{}", stderr(&o));

    // The same token after a restart.
    drop(node);
    let _node = Kill(start());
    let end = Instant::now() + Duration::from_secs(60);
    while !status().status.success() {
        assert!(Instant::now() < end, "the node API did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fs::read_to_string(&token_file).unwrap().trim(), token);
}
