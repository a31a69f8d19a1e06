//! The web UI in a real browser: headless Chromium driven by chromedriver over the W3C
//! WebDriver protocol, against real `demls-node` processes on 127.0.0.1.
//!
//! - `two_users_chat_and_vote_a_removal_down`: A and B, each in their own browser session
//!   on their own node, create and join a conversation, chat both ways; C (a third node,
//!   driven through its API) joins; A proposes removing C in the members' remove dialog,
//!   B votes NO on the vote card (C votes NO too), and both see it rejected. Screenshots of
//!   each step go to `target/ui-screenshots/`.
//! - `a_page_of_another_origin_can_neither_read_nor_change_anything`: a page served from
//!   a second local listener (another origin) tries every way a browser allows to read
//!   or change the node through its API; all fail, and the node's state is unchanged.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `scripts/setup-test-deps.sh` installs them). Without them the tests
//! are skipped with a message, except under `CI=true`, where they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use demls_node::api::client::ApiClient;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_demls-node");
const CONV: &str = "lobby";
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser test at a time: they share two cores with the nodes they drive.
static SERIAL: Mutex<()> = Mutex::new(());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `f` every 100 ms until it returns Some, or fails the test after `secs`.
fn until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---- finding Chromium ------------------------------------------------------------------

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// chromedriver and the Chromium binary, or None (after saying so) when the test is to be
/// skipped; panics under `CI=true`.
fn chromium() -> Option<(PathBuf, PathBuf)> {
    let driver = in_path("chromedriver");
    let browser = in_path("chromium").or_else(|| in_path("chromium-browser"));
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        (d, b) => {
            let msg = format!(
                "headless Chromium is needed for the web UI's browser test (chromedriver: {}, \
                 chromium: {}); install it with `apt-get install -y chromium chromium-driver` \
                 or scripts/setup-test-deps.sh",
                if d.is_some() { "found" } else { "missing" },
                if b.is_some() { "found" } else { "missing" },
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg} (CI=true: failing instead of skipping)");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

// ---- a minimal W3C WebDriver client ------------------------------------------------------

/// chromedriver, running for the test's duration.
struct Driver {
    child: Child,
    base: String,
    rt: tokio::runtime::Runtime,
    http: Client<HttpConnector, Full<Bytes>>,
    browser: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(driver: &Path, browser: PathBuf, log: &Path) -> Self {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            rt: runtime(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            browser,
        };
        until(20, "chromedriver ready", || {
            d.call(Method::GET, "/status", None)
                .ok()
                .filter(|v| v["ready"] == true)
        });
        d
    }

    /// One WebDriver command; its `value`, or the WebDriver error as text.
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        self.rt.block_on(async {
            let resp = tokio::time::timeout(Duration::from_secs(60), self.http.request(req))
                .await
                .map_err(|_| format!("{path}: no answer in 60 s"))?
                .map_err(|e| format!("{path}: {e}"))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(v["value"].clone())
            } else {
                Err(format!(
                    "{path}: {} {}",
                    v["value"]["error"], v["value"]["message"]
                ))
            }
        })
    }

    /// A new headless browser session with a window of `w` × `h`.
    fn session(&self, w: u32, h: u32) -> Browser<'_> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.browser.to_string_lossy(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={w},{h}")],
            },
        }}});
        let v = self
            .call(Method::POST, "/session", Some(caps))
            .expect("a browser session");
        Browser {
            d: self,
            id: v["sessionId"].as_str().unwrap().to_string(),
        }
    }
}

/// One browser session.
struct Browser<'a> {
    d: &'a Driver,
    id: String,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .d
            .call(Method::DELETE, &format!("/session/{}", self.id), None);
    }
}

impl Browser<'_> {
    fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.d
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn go(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .unwrap();
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.cmd(
            Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT].as_str().map(String::from))
        .collect()
    }

    fn find(&self, css: &str) -> Option<String> {
        self.find_all(css).into_iter().next()
    }

    /// Waits for an element that is displayed.
    fn wait_for(&self, css: &str, secs: u64) -> String {
        until(secs, &format!("element {css}"), || {
            self.find_all(css).into_iter().find(|e| self.displayed(e))
        })
    }

    fn displayed(&self, el: &str) -> bool {
        self.cmd(Method::GET, &format!("/element/{el}/displayed"), None)
            .is_ok_and(|v| v == true)
    }

    fn text(&self, el: &str) -> String {
        self.cmd(Method::GET, &format!("/element/{el}/text"), None)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }

    fn text_of(&self, css: &str) -> String {
        self.find(css).map(|e| self.text(&e)).unwrap_or_default()
    }

    fn enabled(&self, el: &str) -> bool {
        self.cmd(Method::GET, &format!("/element/{el}/enabled"), None)
            .is_ok_and(|v| v == true)
    }

    fn click(&self, css: &str) {
        let el = self.wait_for(css, 20);
        // A re-render may replace the element between finding and clicking: retry.
        until(10, &format!("click {css}"), || {
            let el = self.find(css).unwrap_or_else(|| el.clone());
            self.cmd(
                Method::POST,
                &format!("/element/{el}/click"),
                Some(json!({})),
            )
            .ok()
        });
    }

    fn type_into(&self, css: &str, text: &str) {
        self.wait_for(css, 20);
        // A field can be disabled for a moment (the composer while a commit is applied)
        // or replaced by a re-render: wait until it is enabled and takes the text.
        until(20, &format!("type into {css}"), || {
            let el = self.find(css).filter(|e| self.enabled(e))?;
            self.cmd(
                Method::POST,
                &format!("/element/{el}/value"),
                Some(json!({ "text": text })),
            )
            .ok()
        });
    }

    /// Waits until the text of `css` contains `want`.
    fn wait_text(&self, css: &str, want: &str, secs: u64) {
        until(secs, &format!("{css} to contain {want:?}"), || {
            self.find_all(css)
                .into_iter()
                .any(|e| self.text(&e).contains(want))
                .then_some(())
        });
    }

    fn script(&self, script: &str) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap()
    }

    fn resize(&self, w: u32, h: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            Some(json!({"width": w, "height": h})),
        )
        .unwrap();
    }

    fn screenshot(&self, dir: &Path, name: &str) {
        let v = self.cmd(Method::GET, "/screenshot", None).unwrap();
        let png = base64_decode(v.as_str().unwrap());
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---- nodes --------------------------------------------------------------------------------

/// Timers short enough for a test, with a voting delay long enough for a user to click
/// (voting_delay < consensus_timeout < commit_inactivity).
const PROTOCOL: &str = r#"
[protocol]
commit_inactivity = "8s"
freeze = "2s"
voting_delay = "6s"
election_voting_delay = "500ms"
consensus_timeout = "7s"
proposal_expiration = "60s"
recovery_inactivity = "1s"
"#;

struct Node {
    name: &'static str,
    dir: PathBuf,
    url: String,
    waku: u16,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(root: &Path, name: &'static str, bootstrap: Option<u16>) -> Self {
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
discv5_discovery = false
{PROTOCOL}
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
            url: format!("http://127.0.0.1:{api}"),
            waku,
            child,
        };
        until(30, &format!("node {name} API up"), || {
            n.token()?;
            n.get("/status")
        });
        n
    }

    fn token(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("data/api-token"))
            .ok()
            .map(|t| t.trim().to_string())
    }

    fn client(&self) -> ApiClient {
        ApiClient::new(&self.url).unwrap().with_token(self.token())
    }

    fn get(&self, path: &str) -> Option<Value> {
        let c = self.client();
        runtime()
            .block_on(c.call(Method::GET, path, None))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    }

    fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        let c = self.client();
        runtime()
            .block_on(c.call(Method::POST, path, Some(body)))
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    }

    fn address(&self) -> String {
        self.get("/status").unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The link `demls-node ui` prints for this node.
    fn ui_link(&self) -> String {
        let out = Command::new(BIN)
            .args(["ui", "--config"])
            .arg(self.dir.join("node.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "demls-node ui: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            link.starts_with(&format!("{}/#token=", self.url)),
            "ui link {link}"
        );
        link
    }

    fn state(&self, conv: &str) -> Option<String> {
        self.get(&format!("/conversations/{conv}"))
            .and_then(|v| v["state"].as_str().map(String::from))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn two_users_chat_and_vote_a_removal_down() {
    let Some((driver, browser)) = chromium() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let shots = out_dir();
    let root = tempfile::tempdir().unwrap();
    let a = Node::start(root.path(), "a", None);
    let b = Node::start(root.path(), "b", Some(a.waku));
    let c = Node::start(root.path(), "c", Some(a.waku));
    let (addr_a, addr_b, addr_c) = (a.address(), b.address(), c.address());
    let report = |what: &str| {
        format!(
            "{what}\n--- a ---\n{}\n--- b ---\n{}\n--- c ---\n{}",
            a.log_tail(),
            b.log_tail(),
            c.log_tail()
        )
    };

    let d = Driver::start(&driver, browser, &root.path().join("chromedriver.log"));
    let ua = d.session(1280, 900);
    let ub = d.session(1280, 900);

    // A opens the link `demls-node ui` printed; B enters the token by hand.
    ua.go(&a.ui_link());
    ua.wait_text("#me", &addr_a, 20);
    assert_eq!(
        ua.script("return location.hash"),
        "",
        "the token is taken out of the address bar"
    );
    ub.go(&b.url);
    ub.wait_for("#token-input", 20);
    ub.type_into("#token-input", &b.token().unwrap());
    ub.click("#token-save");
    ub.wait_text("#me", &addr_b, 20);
    ua.wait_text("#health", "ready", 20);
    ua.screenshot(&shots, "01-connected");

    // An error is shown where the user acted: joining an invalid name.
    ua.type_into("#join-name", "bad name");
    ua.click("#join-btn");
    ua.wait_text("#conv-error", "whitespace", 10);
    ua.script("document.getElementById('join-name').value = ''");

    // A creates the conversation; B joins it by name and waits, composer disabled.
    ua.type_into("#create-name", CONV);
    ua.click("#create-btn");
    ua.wait_text("#conv-title", CONV, 20);
    ua.wait_text("#conv-state", "working", 20);
    ub.type_into("#join-name", CONV);
    ub.click("#join-btn");
    ub.wait_text("#conv-title", CONV, 20);
    ub.wait_text("#conv-state", "pending join", 10);
    let input = ub.find("#msg-input").unwrap();
    assert!(
        !ub.enabled(&input),
        "the composer is disabled while the join is pending"
    );
    assert!(ub.text_of("#composer-reason").contains("admitted"));
    ub.screenshot(&shots, "02-join-pending");
    until(60, &report("B admitted"), || {
        (b.state(CONV).as_deref() == Some("working")).then_some(())
    });
    ub.wait_text("#conv-state", "working", 20);
    until(10, "B's composer enabled", || {
        ub.find("#msg-input").filter(|e| ub.enabled(e))
    });

    // Chat both ways.
    ua.type_into("#msg-input", "hello from A");
    ua.click("#send-btn");
    ub.wait_text("#messages .msg .text", "hello from A", 30);
    assert!(
        ub.text_of("#messages .msg .sender").contains(&addr_a[..8]),
        "B sees A as the sender"
    );
    ub.type_into("#msg-input", "hi from B");
    ub.click("#send-btn");
    ua.wait_text("#messages .msg .text", "hi from B", 30);
    ua.screenshot(&shots, "03-chat-a");
    ub.screenshot(&shots, "03-chat-b");

    // C joins through its API; B votes YES on the add card when it shows (else its node
    // votes for it after the voting delay).
    c.post(&format!("/conversations/{CONV}/join"), json!({}))
        .unwrap();
    until(90, &report("C admitted"), || {
        if let Some(el) = ub.find(".vote-card .vote-yes")
            && ub.enabled(&el)
        {
            let _ = ub.cmd(
                Method::POST,
                &format!("/element/{el}/click"),
                Some(json!({})),
            );
        }
        (c.state(CONV).as_deref() == Some("working")).then_some(())
    });
    ua.wait_for(&format!(".member[data-address=\"{addr_c}\"]"), 30);
    ub.wait_for(&format!(".member[data-address=\"{addr_c}\"]"), 30);
    let roles = ua.text_of("#member-list");
    assert!(roles.contains("score"), "members show scores: {roles}");

    // A proposes removing C in the members' remove dialog.
    until(60, "A's state working before the removal", || {
        (a.state(CONV).as_deref() == Some("working")).then_some(())
    });
    ua.click(&format!(".member[data-address=\"{addr_c}\"] .remove-btn"));
    ua.wait_text("#remove-target", &addr_c, 10);
    ua.screenshot(&shots, "04-remove-dialog");
    ua.click("#remove-confirm");
    ua.wait_text(".vote-card .title", "Remove member", 20);

    // B votes NO on the card, before its automatic vote.
    ub.wait_text(".vote-card .title", "Remove member", 20);
    ub.wait_text(".vote-card .countdown", "automatic YES", 10);
    ub.screenshot(&shots, "05-vote-card");
    ub.click(".vote-card .vote-no");
    ub.wait_text(".vote-card .tally", "you voted NO", 10);

    // C votes NO through its API; the removal is rejected, and both users see it.
    let pid = until(20, "C knows the proposal", || {
        c.get(&format!("/conversations/{CONV}/proposals"))?
            .as_array()?
            .iter()
            .find(|p| p["kind"] == "remove_member" && p["status"] == "voting")
            .and_then(|p| p["id"].as_u64())
    });
    c.post(
        &format!("/conversations/{CONV}/proposals/{pid}/vote"),
        json!({"vote": "no"}),
    )
    .unwrap();
    ub.wait_text(
        "#proposal-history li[data-status=\"rejected\"]",
        "Remove member",
        30,
    );
    ua.wait_text(
        "#proposal-history li[data-status=\"rejected\"]",
        "Remove member",
        30,
    );
    let props = b.get(&format!("/conversations/{CONV}/proposals")).unwrap();
    let p = props
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == pid)
        .unwrap();
    assert_eq!(p["status"], "rejected", "{p}");
    assert_eq!(p["our_vote"], "no", "{p}");
    assert_eq!(p["owner"], addr_a, "{p}");
    assert!(p["decided_at"].as_u64().is_some(), "{p}");
    ub.screenshot(&shots, "06-rejected-b");
    ua.screenshot(&shots, "06-rejected-a");
    // C is still a member.
    assert!(
        ua.find(&format!(".member[data-address=\"{addr_c}\"]"))
            .is_some()
    );
    ua.wait_text("#event-log", "decided", 10);

    // C leaves: until the commit that removes it, members show it as leaving.
    c.post(&format!("/conversations/{CONV}/leave"), json!({}))
        .unwrap();
    ua.wait_text(
        &format!(".member[data-address=\"{addr_c}\"] .badge-leaving"),
        "leaving",
        20,
    );

    // The narrow layout (a phone, 390 px wide).
    ub.resize(390, 844);
    ub.click("#tabs button[data-tab=\"chat\"]");
    ub.wait_text("#messages .msg .text", "hi from B", 10);
    ub.screenshot(&shots, "07-mobile-chat");
    ub.click("#tabs button[data-tab=\"votes\"]");
    ub.wait_for("#proposal-history li", 10);
    ub.screenshot(&shots, "07-mobile-votes");
    let _ = addr_b;
    eprintln!(
        "browser test passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

/// A page of another origin (a second listener on another port) that tries to read and
/// change the node through the API every way a browser allows, and records what it got.
const ATTACK_PAGE: &str = r#"<!doctype html><html><body><h1>evil</h1><script>
const API = "http://127.0.0.1:API_PORT";
const results = {};
async function attempt(name, f) {
  try { results[name] = await f(); } catch (e) { results[name] = "error: " + e.name; }
}
(async () => {
  // Reading, with and without a (guessed) token.
  await attempt("status", async () => { const r = await fetch(API + "/status"); return "read " + r.status + " " + await r.text(); });
  await attempt("messages", async () => { const r = await fetch(API + "/conversations/victim/messages", { headers: { Authorization: "Bearer guess" } }); return "read " + r.status + " " + await r.text(); });
  await attempt("events", async () => { const r = await fetch(API + "/events"); return "read " + r.status; });
  await attempt("ui_page", async () => { const r = await fetch(API + "/"); return "read " + r.status + " " + (await r.text()).length; });
  await attempt("health", async () => { const r = await fetch(API + "/health"); return "read " + r.status; });
  // Changing, as simple requests (no preflight) and with JSON (preflight).
  await attempt("leave_no_cors", async () => { const r = await fetch(API + "/conversations/victim/leave", { method: "POST", mode: "no-cors", body: "" }); return "opaque " + r.type; });
  await attempt("create_no_cors", async () => { const r = await fetch(API + "/conversations", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"name":"evil"}' }); return "opaque " + r.type; });
  await attempt("create_json", async () => { const r = await fetch(API + "/conversations", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"name":"evil2"}' }); return "read " + r.status; });
  await attempt("send_json", async () => { const r = await fetch(API + "/conversations/victim/messages", { method: "POST", headers: { "Content-Type": "application/json", "X-Demls-Request": "1" }, body: '{"text":"pwned"}' }); return "read " + r.status; });
  // The UI's token is in the node origin's storage, not this one's.
  results.token_here = localStorage.getItem("demls-api-token");
  // Framing the UI to reach into it.
  await attempt("frame", () => new Promise((resolve) => {
    const f = document.createElement("iframe");
    f.src = API + "/";
    f.onload = () => { try { resolve("read " + f.contentWindow.document.body.innerHTML.length); } catch (e) { resolve("error: " + e.name); } };
    document.body.appendChild(f);
    setTimeout(() => resolve("no load"), 3000);
  }));
  // A plain HTML form post (navigates the frame away, no answer to read).
  await new Promise((resolve) => {
    const target = document.createElement("iframe"); target.name = "sink"; document.body.appendChild(target);
    const form = document.createElement("form");
    form.method = "POST"; form.action = API + "/conversations/victim/leave"; form.target = "sink";
    form.enctype = "text/plain";
    const i = document.createElement("input"); i.name = '{"a":"'; i.value = '"}'; form.appendChild(i);
    document.body.appendChild(form); form.submit();
    setTimeout(resolve, 1500);
  });
  window.results = results;
  window.done = true;
})();
</script></body></html>"#;

/// Serves `page` at any path from 127.0.0.1 on a port of its own (another origin than
/// the node's API) until the test ends.
fn serve_page(page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            // Read the request head; ignore it.
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = r.get_mut().set_nonblocking(true);
            let mut rest = [0u8; 1024];
            let _ = r.read(&mut rest);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

#[test]
fn a_page_of_another_origin_can_neither_read_nor_change_anything() {
    let Some((driver, browser)) = chromium() else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let shots = out_dir();
    let root = tempfile::tempdir().unwrap();
    let n = Node::start(root.path(), "victim", None);
    n.post("/conversations", json!({"name": "victim"})).unwrap();
    n.post("/conversations/victim/messages", json!({"text": "secret"}))
        .unwrap();
    let before = (
        n.get("/conversations").unwrap(),
        n.get("/conversations/victim/proposals").unwrap(),
        n.get("/conversations/victim/messages").unwrap(),
    );

    let d = Driver::start(&driver, browser, &root.path().join("chromedriver.log"));
    let user = d.session(1280, 900);
    // The user is logged in to the UI: the token is in the node origin's storage.
    user.go(&n.ui_link());
    user.wait_text("#conv-title", "victim", 20);
    user.wait_text("#messages .msg .text", "secret", 20);

    let api_port = n.url.rsplit(':').next().unwrap().to_string();
    let port = serve_page(ATTACK_PAGE.replace("API_PORT", &api_port));
    user.go(&format!("http://127.0.0.1:{port}/attack.html"));
    until(30, "the attack page finished", || {
        (user.script("return window.done === true") == true).then_some(())
    });
    let results = user.script("return window.results");
    user.screenshot(&shots, "08-other-origin");
    eprintln!("what the other origin got: {results:#}");
    let obj = results.as_object().unwrap();
    for (k, v) in obj {
        let v = v.as_str().unwrap_or_default();
        assert!(
            !v.starts_with("read") && !v.contains("secret"),
            "{k}: a page of another origin read an answer: {v}"
        );
    }
    assert_eq!(obj["token_here"], Value::Null);
    for k in ["leave_no_cors", "create_no_cors"] {
        assert!(
            obj[k].as_str().is_some_and(|v| v == "opaque opaque"),
            "{k}: {}",
            obj[k]
        );
    }

    // Nothing changed: same conversations (no `evil`), no leave proposal, same messages.
    let after = (
        n.get("/conversations").unwrap(),
        n.get("/conversations/victim/proposals").unwrap(),
        n.get("/conversations/victim/messages").unwrap(),
    );
    assert_eq!(before, after, "the node's state changed");
    assert_eq!(n.state("victim").as_deref(), Some("working"));
    let _ = n.name;
}
