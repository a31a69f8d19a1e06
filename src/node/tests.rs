//! Crash containment and durable state, driven through the real runtime (its own thread,
//! as in `node::run`) over the in-memory transport and a real SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use demls_core::config::ConversationConfig;
use demls_core::conversation::{Conversation, Ctx};
use demls_core::identity::EthSigner;
use demls_core::mls::MlsConversation;
use demls_transport::memory::{MemoryNetwork, MemoryTransport};
use demls_transport::{InboundPacket, Subtopic, Transport};
use rand::SeedableRng;
use tokio::sync::{broadcast, mpsc};

use super::*;
use crate::api::types::*;
use crate::api::{ApiError, NodeControl};
use crate::storage::{DB_FILE, Storage};

const SECRET: [u8; 32] = [7; 32];

fn signer() -> EthSigner {
    EthSigner::from_secret(&SECRET).unwrap()
}

/// A test connection of our own to the node's database file.
fn db(dir: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c
}

/// A snapshot once the node has settled: a new conversation's first timer tick (which
/// schedules its first beacon) saves its state shortly after the command that created it,
/// and a snapshot taken before that tick would count the tick as the change under test.
async fn settled_snapshot(dir: &Path) -> Vec<String> {
    let mut last = snapshot(dir);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = snapshot(dir);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the node's stored state did not settle within 5 s");
}

/// Every row of our conversation table and of OpenMLS's tables, as text: equal snapshots
/// mean nothing durable changed.
fn snapshot(dir: &Path) -> Vec<String> {
    let c = db(dir);
    let mut tables: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND (name = 'conversations' OR name LIKE 'openmls_%')
             AND name <> 'openmls_sqlite_storage_migrations' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    let mut out = Vec::new();
    for t in tables {
        let mut st = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = st.column_count();
        let mut rows: Vec<String> = st
            .query_map([], |r| {
                let mut s = format!("{t}:");
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    s.push_str(&format!(" {v:?}"));
                }
                Ok(s)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // `updated_at` is a wall-clock time: not part of the state.
        if t == "conversations" {
            rows = c
                .prepare("SELECT name, state_blob FROM conversations ORDER BY name")
                .unwrap()
                .query_map([], |r| {
                    Ok(format!(
                        "conversations: {} {}",
                        r.get::<_, String>(0)?,
                        hex::encode(r.get::<_, Vec<u8>>(1)?)
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        }
        rows.sort();
        out.extend(rows);
    }
    out
}

fn row(dir: &Path, name: &str) -> Option<Vec<u8>> {
    use rusqlite::OptionalExtension;
    db(dir)
        .query_row(
            "SELECT state_blob FROM conversations WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
}

/// Counts every write of a conversation row from now on (see [`saves`]).
fn count_saves(dir: &Path) {
    db(dir)
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS test_saves (n INTEGER NOT NULL);
             DELETE FROM test_saves; INSERT INTO test_saves VALUES (0);
             CREATE TRIGGER IF NOT EXISTS test_saves_ins AFTER INSERT ON conversations
               BEGIN UPDATE test_saves SET n = n + 1; END;
             CREATE TRIGGER IF NOT EXISTS test_saves_upd AFTER UPDATE ON conversations
               BEGIN UPDATE test_saves SET n = n + 1; END;",
        )
        .unwrap();
}

fn saves(dir: &Path) -> u64 {
    db(dir)
        .query_row("SELECT n FROM test_saves", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

/// A running node: the actor on its own thread, and its handle.
struct Node {
    handle: NodeHandle,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Node {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// The same identity and data directory across restarts; one observer peer on the
/// in-memory network sees what the node publishes and can send it packets.
struct Bench {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    net: Arc<MemoryNetwork>,
    peer: MemoryTransport,
    peer_rx: mpsc::Receiver<InboundPacket>,
}

impl Bench {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let net = MemoryNetwork::new();
        let (peer, peer_rx) = net.node();
        Self {
            _tmp: tmp,
            dir,
            net,
            peer,
            peer_rx,
        }
    }

    fn storage(&self) -> Storage {
        Storage::open(&self.dir, signer().member_id()).unwrap()
    }

    /// A runtime over this directory, not started yet.
    async fn runtime(
        &self,
    ) -> (
        runtime::Runtime<MemoryTransport>,
        mpsc::Receiver<InboundPacket>,
    ) {
        let storage = self.storage();
        let identity = local_identity(signer(), &storage).unwrap();
        let (transport, inbound) = self.net.node();
        let (events, _) = broadcast::channel(1024);
        let rt = runtime::Runtime::new(
            identity,
            storage,
            Arc::new(transport),
            ConversationConfig::default(),
            events,
        );
        (rt, inbound)
    }

    /// Starts `rt` as `node::run` does, after restoring what is saved.
    async fn start(
        &self,
        mut rt: runtime::Runtime<MemoryTransport>,
        inbound: mpsc::Receiver<InboundPacket>,
    ) -> Node {
        rt.restore_all().await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (handle, thread) = spawn_runtime(rt, inbound, stop_rx).unwrap();
        Node {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    async fn node(&self) -> Node {
        let (rt, inbound) = self.runtime().await;
        self.start(rt, inbound).await
    }

    /// Packets the observer received so far.
    fn published(&mut self) -> usize {
        let mut n = 0;
        while self.peer_rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// Waits until `f` holds (polling), or fails after 20 s.
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(h: &NodeHandle, name: &str) -> u64 {
    let h = h.clone();
    let text = tokio::task::spawn_blocking(move || h.metrics())
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn quarantined(h: &HealthView) -> Vec<(String, String)> {
    h.quarantined
        .iter()
        .map(|q| (q.name.clone(), q.reason.clone()))
        .collect()
}

// ---- item 3: saving costs what changed ---------------------------------------------------

/// A burst of junk packets must not rewrite the conversation row once per packet.
/// Prints the figures (`--nocapture`); asserts only the count, never a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_burst_does_not_rewrite_the_state() {
    const BURST: usize = 500;
    let b = Bench::new();
    let node = b.node().await;
    node.handle.create("room").await.unwrap();
    b.peer.subscribe("room").await.unwrap();
    count_saves(&b.dir);
    let wal = b.dir.join(format!("{DB_FILE}-wal"));
    let wal_before = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let before = metric(&node.handle, "demls_packets_received_total").await;
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for i in 0..BURST {
        let mut junk = vec![0u8; 64 + i % 200];
        rand::RngCore::fill_bytes(&mut rng, &mut junk);
        b.peer
            .publish("room", Subtopic::AppMsg, junk)
            .await
            .unwrap();
    }
    let h = node.handle.clone();
    until("the burst is processed", async || {
        metric(&h, "demls_packets_received_total").await >= before + BURST as u64
    })
    .await;
    let elapsed = started.elapsed();
    let n = saves(&b.dir);
    let wal_after = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    println!(
        "junk burst: {BURST} packets -> {n} conversation-row writes, WAL {wal_before} -> {wal_after} bytes, {:.1} ms ({:.0} µs/packet)",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e6 / BURST as f64
    );
    assert!(
        n <= 1,
        "{n} row writes for {BURST} junk packets: unchanged state must not be rewritten"
    );
    assert!(metric(&node.handle, "demls_state_saves_skipped_total").await >= BURST as u64);
    // A step that changes the state still writes it.
    node.handle.join("other").await.unwrap();
    assert!(saves(&b.dir) > n, "joining writes a new state");
    node.stop().await;
}

// ---- item 2: save before publish, atomically --------------------------------------------

/// When a step cannot be saved, nothing is published and nothing durable changes: the MLS
/// storage writes of the call (a chat message advances the sender's ratchet) are rolled
/// back with the rest. The failure is injected where the step stores our own message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_save_publishes_nothing_and_changes_nothing() {
    let mut b = Bench::new();
    let node = b.node().await;
    node.handle.create("room").await.unwrap();
    b.peer.subscribe("room").await.unwrap();
    node.handle.send("room", "before").await.unwrap();
    until("the first chat is out", async || b.published() > 0).await;
    let before = settled_snapshot(&b.dir).await;
    db(&b.dir)
        .execute_batch(
            "CREATE TRIGGER test_fail BEFORE INSERT ON messages
               BEGIN SELECT RAISE(ABORT, 'injected save failure'); END;",
        )
        .unwrap();
    let err = node.handle.send("room", "lost").await.unwrap_err();
    assert!(
        matches!(err, ApiError::Internal(_)) && err.to_string().contains("nothing was sent"),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.published(),
        0,
        "a packet went out although its state was not saved"
    );
    assert_eq!(
        snapshot(&b.dir),
        before,
        "a failed save left durable changes"
    );
    // The conversation is still usable once the disk is.
    db(&b.dir).execute_batch("DROP TRIGGER test_fail;").unwrap();
    node.handle.send("room", "after").await.unwrap();
    until("the chat after the failure is out", async || {
        b.published() > 0
    })
    .await;
    let texts: Vec<String> = node
        .handle
        .messages("room")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["before", "after"]);
    node.stop().await;
}

/// A conversation closed by leaving loses its MLS state and its row; a crash after the
/// closed state was saved (row still there) is finished at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_is_ordered_and_restart_finishes_it() {
    let b = Bench::new();
    let node = b.node().await;
    node.handle.create("solo").await.unwrap();
    node.handle.leave("solo").await.unwrap();
    assert!(
        row(&b.dir, "solo").is_none(),
        "the row of a closed conversation is deleted"
    );
    node.stop().await;

    // A crash between "marked closed" and "row deleted": a closed row, and MLS state the
    // close did not get to delete.
    {
        let storage = b.storage();
        let identity = local_identity(signer(), &storage).unwrap();
        let crypto = openmls_rust_crypto::RustCrypto::default();
        let provider = storage.provider(&crypto);
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut ctx = Ctx {
            provider: &provider,
            identity: &identity,
            rng: &mut rng,
            now: runtime::now_ms(),
        };
        let (_group, _) =
            Conversation::create("halfway", ConversationConfig::default(), &mut ctx).unwrap();
        let (mut closed, _) =
            Conversation::join("halfway", ConversationConfig::default(), &mut ctx).unwrap();
        closed.leave(&mut ctx).unwrap();
        assert!(closed.closed().is_some());
        storage
            .save_conversation("halfway", &closed.save().unwrap())
            .unwrap();
        assert!(
            MlsConversation::load(&provider, "halfway")
                .unwrap()
                .is_some()
        );
    }
    let node = b.node().await;
    let health = node.handle.health().await;
    assert_eq!(health.status, "ok", "{health:?}");
    assert!(node.handle.show("halfway").await.is_err());
    assert!(
        row(&b.dir, "halfway").is_none(),
        "start-up finishes the close"
    );
    {
        let storage = b.storage();
        let crypto = openmls_rust_crypto::RustCrypto::default();
        let provider = storage.provider(&crypto);
        assert!(
            MlsConversation::load(&provider, "halfway")
                .unwrap()
                .is_none(),
            "start-up deletes the MLS state of a closed conversation"
        );
    }
    // The name is free again.
    node.handle.create("halfway").await.unwrap();
    node.stop().await;
}

/// One unreadable row (corrupt JSON, or MLS state missing) is quarantined at start-up with
/// its reason; the node starts and the other conversations run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_rows_are_quarantined_at_start_up() {
    let mut b = Bench::new();
    let node = b.node().await;
    node.handle.create("good").await.unwrap();
    node.handle.create("nomls").await.unwrap();
    node.stop().await;
    {
        let storage = b.storage();
        storage.save_conversation("corrupt", b"{not json").unwrap();
        storage
            .append_message("corrupt", "0xA", "kept", 1, 1)
            .unwrap();
        let crypto = openmls_rust_crypto::RustCrypto::default();
        let provider = storage.provider(&crypto);
        MlsConversation::load(&provider, "nomls")
            .unwrap()
            .unwrap()
            .delete(&provider)
            .unwrap();
    }
    let corrupt_row = row(&b.dir, "corrupt");
    let node = b.node().await;
    let health = node.handle.health().await;
    assert_eq!(health.status, "degraded", "{health:?}");
    let q = quarantined(&health);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q[0].0, "corrupt");
    assert!(q[0].1.contains("cannot be restored"), "{q:?}");
    assert_eq!(q[1].0, "nomls");
    assert!(q[1].1.contains("MLS state"), "{q:?}");
    let status = node.handle.status().await.unwrap();
    assert_eq!(status.conversations, ["good"]);
    assert_eq!(status.quarantined.len(), 2);
    // Refused with the reason; nothing stored is lost.
    let err = node.handle.send("corrupt", "x").await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("quarantined"), "{err}");
    assert_eq!(
        node.handle.messages("corrupt").await.unwrap()[0].text,
        "kept"
    );
    assert_eq!(row(&b.dir, "corrupt"), corrupt_row);
    // Creating over it is refused too: that would overwrite what is stored.
    assert!(matches!(
        node.handle.create("corrupt").await,
        Err(ApiError::Conflict(_))
    ));
    // The others keep running.
    b.peer.subscribe("good").await.unwrap();
    node.handle.send("good", "still here").await.unwrap();
    until("good still publishes", async || b.published() > 0).await;
    // Releasing a conversation that still cannot be restored keeps it quarantined.
    let err = node.handle.release("corrupt").await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
    // Dropping it deletes what was stored for it.
    node.handle.drop_conversation("corrupt").await.unwrap();
    assert!(row(&b.dir, "corrupt").is_none());
    assert!(node.handle.messages("corrupt").await.is_err());
    let health = node.handle.health().await;
    assert_eq!(quarantined(&health).len(), 1, "{health:?}");
    // Dropping is only for quarantined conversations.
    assert!(matches!(
        node.handle.drop_conversation("good").await,
        Err(ApiError::Conflict(_))
    ));
    node.stop().await;
    // The quarantine survives a restart.
    let node = b.node().await;
    let health = node.handle.health().await;
    assert_eq!(quarantined(&health).len(), 1, "{health:?}");
    assert_eq!(health.quarantined[0].name, "nomls");
    node.stop().await;
}

// ---- item 1: a panic is contained --------------------------------------------------------

/// A panic while processing one conversation quarantines it (state as before the call,
/// MLS writes of the call rolled back, an `error` event, `/health` says why); the other
/// conversation keeps working; a restart loads it quarantined and never feeds it; release
/// puts it back to work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_quarantines_one_conversation_only() {
    let mut b = Bench::new();
    let node = b.node().await;
    node.handle.create("good").await.unwrap();
    node.handle.create("bad").await.unwrap();
    node.handle.send("bad", "before").await.unwrap();
    node.stop().await;
    b.peer.subscribe("good").await.unwrap();
    b.peer.subscribe("bad").await.unwrap();
    b.published();

    let (mut rt, inbound) = b.runtime().await;
    // Half-way through handling a packet for "bad": its MLS state advanced, then a panic.
    rt.fault = Some(Box::new(
        |name: &str,
         op: &str,
         c: &mut Conversation,
         ctx: &mut Ctx<'_, crate::storage::NodeProvider<'_>>| {
            if name == "bad" && op == "packet" {
                let _ = c.send_chat(ctx, "half-done");
                panic!("injected fault in {name}");
            }
        },
    ));
    let node = b.start(rt, inbound).await;
    let before = settled_snapshot(&b.dir).await;
    let mut events = node.handle.events();
    b.peer
        .publish("bad", Subtopic::AppMsg, b"a packet that crashes".to_vec())
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.conversation.as_str(), ev.kind.as_str()),
        ("bad", "error")
    );
    assert!(
        ev.data.to_string().contains("injected fault in bad"),
        "{ev:?}"
    );
    assert_eq!(
        snapshot(&b.dir),
        before,
        "the half-done call left durable changes"
    );
    assert_eq!(b.published(), 0, "the half-done call published");

    let health = node.handle.health().await;
    assert_eq!(health.status, "degraded");
    let q = quarantined(&health);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0, "bad");
    assert!(
        q[0].1.contains("panicked in packet: injected fault in bad"),
        "{q:?}"
    );
    let status = node.handle.status().await.unwrap();
    assert_eq!(status.quarantined, health.quarantined);
    assert_eq!(status.conversations, ["good"]);
    assert_eq!(
        metric(&node.handle, "demls_quarantined_conversations").await,
        1
    );
    // Commands are refused with the reason.
    let err = node.handle.send("bad", "again").await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("injected fault in bad"), "{err}");
    assert!(matches!(
        node.handle.show("bad").await,
        Err(ApiError::Conflict(_))
    ));
    // The other conversation works.
    node.handle.send("good", "fine").await.unwrap();
    until("good publishes", async || b.published() > 0).await;
    node.stop().await;

    // A restart loads it quarantined (the fault hook is gone, the quarantine is not), and
    // does not subscribe to it: nothing is fed to it.
    let node = b.node().await;
    let health = node.handle.health().await;
    assert_eq!(quarantined(&health).len(), 1, "{health:?}");
    assert!(
        health.quarantined[0].reason.contains("injected fault"),
        "{health:?}"
    );
    assert!(node.handle.show("bad").await.is_err());
    let received = metric(&node.handle, "demls_packets_received_total").await;
    b.peer
        .publish("bad", Subtopic::AppMsg, b"another".to_vec())
        .await
        .unwrap();
    node.handle.send("good", "sync").await.unwrap();
    assert_eq!(
        metric(&node.handle, "demls_packets_received_total").await,
        received,
        "a packet reached a quarantined conversation"
    );
    // The operator releases it: it resumes from the state saved before the panic.
    let v = node.handle.release("bad").await.unwrap();
    assert_eq!(v.name, "bad");
    assert_eq!(node.handle.health().await.status, "ok");
    node.handle.send("bad", "after").await.unwrap();
    let texts: Vec<String> = node
        .handle
        .messages("bad")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["before", "after"]);
    node.stop().await;
    // Released for good.
    let node = b.node().await;
    assert_eq!(node.handle.health().await.status, "ok");
    node.stop().await;
}

/// One request to the API's router over `handle`: (status, body).
async fn http(handle: &NodeHandle, method: &str, path: &str) -> (u16, String) {
    http_body(handle, method, path, "").await
}

/// One request with a JSON `body` to the API's router over `handle`: (status, body).
async fn http_body(handle: &NodeHandle, method: &str, path: &str, body: &str) -> (u16, String) {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let token = crate::api::ApiToken::generate();
    let access =
        crate::api::ApiAccess::new(token.clone(), crate::config::DEFAULT_API_LISTEN, Vec::new());
    let app = crate::api::router(Arc::new(handle.clone()), access);
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:8645")
        .header("authorization", format!("Bearer {}", token.as_str()))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The quarantine over HTTP: `/health` and `/status` list it, `release` and `drop` answer
/// with the documented statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_routes() {
    let b = Bench::new();
    let node = b.node().await;
    node.handle.create("good").await.unwrap();
    node.stop().await;
    b.storage().save_conversation("corrupt", b"[]").unwrap();
    let node = b.node().await;
    let h = &node.handle;

    // Not ready (503) while a conversation is quarantined; live all the same.
    let (code, body) = http(h, "GET", "/health").await;
    assert_eq!(code, 503);
    assert_eq!(http(h, "GET", "/health/live").await.0, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "degraded", "{body}");
    assert_eq!(v["quarantined"][0]["name"], "corrupt", "{body}");
    assert!(
        v["quarantined"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot be restored: ")
    );
    assert!(v["quarantined"][0]["since"].as_u64().unwrap() > 0);
    let (code, body) = http(h, "GET", "/status").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["conversations"], serde_json::json!(["good"]), "{body}");
    assert_eq!(v["quarantined"][0]["name"], "corrupt", "{body}");

    for (method, path, code, fragment) in [
        (
            "GET",
            "/conversations/corrupt",
            409,
            "is quarantined (cannot be restored",
        ),
        (
            "GET",
            "/conversations/corrupt/proposals",
            409,
            "is quarantined",
        ),
        (
            "POST",
            "/conversations/corrupt/leave",
            409,
            "is quarantined",
        ),
        ("POST", "/conversations/corrupt/join", 409, "is quarantined"),
        (
            "POST",
            "/conversations/corrupt/release",
            409,
            "stays quarantined",
        ),
        (
            "POST",
            "/conversations/good/release",
            409,
            "is not quarantined",
        ),
        (
            "POST",
            "/conversations/nope/release",
            404,
            "not in conversation",
        ),
        ("POST", "/conversations/good/drop", 409, "leave it instead"),
        (
            "POST",
            "/conversations/nope/drop",
            404,
            "not in conversation",
        ),
        ("POST", "/conversations/a%20b/drop", 400, "whitespace"),
        ("GET", "/conversations/corrupt/drop", 405, "not allowed"),
        (
            "POST",
            "/conversations/corrupt/drop",
            200,
            r#"{"name":"corrupt","dropped":true}"#,
        ),
        (
            "POST",
            "/conversations/corrupt/drop",
            404,
            "not in conversation",
        ),
        ("GET", "/health", 200, r#"{"status":"ok""#),
    ] {
        let (got, body) = http(h, method, path).await;
        assert_eq!(got, code, "{method} {path}: {body}");
        assert!(body.contains(fragment), "{method} {path}: {body}");
    }
    node.stop().await;
}

/// What a user sees when the runtime refuses something: the HTTP status and the exact
/// error text, for each kind of refusal a command or a conversation route can meet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_keep_their_status_and_text() {
    let b = Bench::new();
    let node = b.node().await;
    let h = &node.handle;
    let me = signer().member_id().to_string();
    let stranger = "0x2222222222222222222222222222222222222222";
    let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(4097));
    assert_eq!(
        http_body(h, "POST", "/conversations", r#"{"name":"room"}"#)
            .await
            .0,
        201
    );
    assert_eq!(
        http_body(h, "POST", "/conversations/pending/join", "")
            .await
            .0,
        200
    );
    let cases: Vec<(&str, &str, String, u16, String)> = vec![
        (
            "POST",
            "/conversations",
            r#"{"name":"room"}"#.into(),
            409,
            r#"already in conversation \"room\""#.into(),
        ),
        (
            "POST",
            "/conversations/room/proposals/7/vote",
            r#"{"vote":"yes"}"#.into(),
            404,
            "no open proposal 7".into(),
        ),
        (
            "POST",
            "/conversations/room/remove",
            format!(r#"{{"address":"{me}"}}"#),
            400,
            "use leave to remove yourself".into(),
        ),
        (
            "POST",
            "/conversations/room/remove",
            format!(r#"{{"address":"{stranger}"}}"#),
            400,
            format!("{stranger} is not a member of this conversation"),
        ),
        (
            "POST",
            "/conversations/room/messages",
            long,
            400,
            "message text must be 1..=4096 bytes".into(),
        ),
        (
            "POST",
            "/conversations/pending/messages",
            r#"{"text":"too early"}"#.into(),
            409,
            "not allowed while the conversation is pending_join".into(),
        ),
        (
            "POST",
            "/conversations/pending/proposals/1/vote",
            r#"{"vote":"no"}"#.into(),
            409,
            "not allowed while the conversation is pending_join".into(),
        ),
        (
            "GET",
            "/conversations/nope",
            String::new(),
            404,
            r#"not in conversation \"nope\""#.into(),
        ),
        (
            "POST",
            "/conversations/nope/messages",
            r#"{"text":"hello"}"#.into(),
            404,
            r#"not in conversation \"nope\""#.into(),
        ),
        (
            "GET",
            "/conversations/nope/messages",
            String::new(),
            404,
            r#"not in conversation \"nope\""#.into(),
        ),
        (
            "GET",
            "/conversations/nope/proposals",
            String::new(),
            404,
            r#"not in conversation \"nope\""#.into(),
        ),
    ];
    for (method, path, body, code, text) in cases {
        let (got, answer) = http_body(h, method, path, &body).await;
        assert_eq!(
            (got, answer.as_str()),
            (code, format!(r#"{{"error":"{text}"}}"#).as_str()),
            "{method} {path}"
        );
    }
    node.stop().await;
}

/// Our own chat message is stored, and announced on the event stream, as the protocol
/// core sent it: with the core's clock (the timestamp its members receive), not a second
/// reading of the runtime's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_chat_carries_the_cores_timestamp() {
    const SENT_AT: u64 = 1_700_000_000_000;
    let b = Bench::new();
    let (mut rt, inbound) = b.runtime().await;
    rt.fault = Some(Box::new(
        |_: &str,
         op: &str,
         _: &mut Conversation,
         ctx: &mut Ctx<'_, crate::storage::NodeProvider<'_>>| {
            if op == "command" {
                ctx.now = SENT_AT;
            }
        },
    ));
    let node = b.start(rt, inbound).await;
    node.handle.create("room").await.unwrap();
    let mut events = node.handle.events();
    node.handle.send("room", "hello").await.unwrap();
    let ev = loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        if ev.kind.starts_with("chat") {
            break ev;
        }
    };
    assert_eq!(ev.kind, "chat_sent", "{ev:?}");
    let id = ev.data["event"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        ev.data,
        serde_json::json!({ "epoch": 0, "event": { "id": id, "recipients": 0 } })
    );
    let stored = node.handle.messages("room").await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let m = &stored[0];
    assert_eq!(
        (m.sender.as_str(), m.text.as_str(), m.epoch, m.id.as_deref()),
        (
            signer().member_id().to_string().as_str(),
            "hello",
            0,
            Some(id.as_str())
        )
    );
    assert_eq!(
        m.timestamp, SENT_AT,
        "stored with another clock than the core's"
    );
    node.stop().await;
}

/// When the runtime itself dies, `/health` and `/status` say so (503) instead of green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_runtime_is_unhealthy() {
    let b = Bench::new();
    let node = b.node().await;
    node.handle.create("room").await.unwrap();
    let h = &node.handle;
    assert_eq!(
        http(h, "GET", "/health").await,
        (200, r#"{"status":"ok","relay_up":true,"peers":0}"#.into())
    );
    node.handle.crash_for_test().await;
    until("the runtime is seen dead", async || {
        h.health().await.status == "down"
    })
    .await;
    let (code, body) = http(h, "GET", "/health").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "down");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("the runtime panicked: injected runtime crash"),
        "{body}"
    );
    for path in ["/status", "/conversations", "/conversations/room"] {
        let (code, body) = http(h, "GET", path).await;
        assert_eq!(code, 503, "{path}: {body}");
        assert!(body.contains("injected runtime crash"), "{path}: {body}");
    }
    node.stop().await;
}

/// Label values are escaped as the Prometheus text format says (`\\`, `\"`, `\n`): a
/// conversation named `we"ird` must not break the scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_label_values_are_escaped() {
    let b = Bench::new();
    let node = b.node().await;
    node.handle.create("we\"ird").await.unwrap();
    node.handle.create("back\\slash").await.unwrap();
    let h = node.handle.clone();
    let text = tokio::task::spawn_blocking(move || h.metrics())
        .await
        .unwrap();
    assert!(
        text.contains("demls_epoch{conversation=\"we\\\"ird\"} "),
        "{text}"
    );
    assert!(
        text.contains("demls_members{conversation=\"back\\\\slash\"} "),
        "{text}"
    );
    // Every sample line parses: name, optional {k="v",…} with escapes, a value.
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(sample_parses(line), "unparsable sample line {line:?}");
    }
    node.stop().await;
}

/// A Prometheus text sample line: `name{label="value",…} number`, with `\\`, `\"` and
/// `\n` the only escapes in a value.
fn sample_parses(line: &str) -> bool {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_end == 0 {
        return false;
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let mut chars = labels.char_indices();
        loop {
            // label name, '=', '"'
            let Some(eq) = labels[chars.offset()..].find('=') else {
                return false;
            };
            let start = chars.offset();
            let lname = &labels[start..start + eq];
            if lname.is_empty() || !lname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return false;
            }
            for _ in 0..=eq {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return false;
            }
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\' | '"' | 'n') => {}
                        _ => return false,
                    },
                    Some('"') => break,
                    Some('\n') | None => return false,
                    Some(_) => {}
                }
            }
            match chars.next().map(|(_, c)| c) {
                Some(',') => continue,
                Some('}') => {
                    rest = &labels[chars.offset()..];
                    break;
                }
                _ => return false,
            }
        }
    }
    let Some(value) = rest.strip_prefix(' ') else {
        return false;
    };
    let value = value.split(' ').next().unwrap_or("");
    value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN")
}

/// The routes the web UI and the operator use: message paging, SSE resume from
/// `Last-Event-ID`, liveness, version, peers, and the UI's files without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_and_operator_routes() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let b = Bench::new();
    let node = b.node().await;
    let h = &node.handle;
    h.create("room").await.unwrap();
    for t in ["one", "two", "three"] {
        h.send("room", t).await.unwrap();
    }

    // Paging.
    let (code, body) = http(h, "GET", "/conversations/room/messages?after=1&limit=1").await;
    assert_eq!(code, 200, "{body}");
    let page: Vec<MessageView> = serde_json::from_str(&body).unwrap();
    assert_eq!(page.len(), 1, "{body}");
    assert_eq!((page[0].seq, page[0].text.as_str()), (2, "two"));
    let (code, body) = http(h, "GET", "/conversations/room/messages?after=3").await;
    assert_eq!((code, body.as_str()), (200, "[]"));
    for bad in ["?limit=0", "?limit=1001", "?after=x", "?page=2"] {
        let (code, body) = http(h, "GET", &format!("/conversations/room/messages{bad}")).await;
        assert_eq!(code, 400, "{bad}: {body}");
    }

    // Liveness, version, peers, log level (this process did not install the logger).
    assert_eq!(http(h, "GET", "/health/live").await.0, 200);
    let (code, body) = http(h, "GET", "/version").await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""name":"demls-node""#), "{body}");
    assert_eq!(http(h, "GET", "/peers").await, (200, "[]".to_string()));
    assert_eq!(http(h, "GET", "/log-level").await.0, 409);

    // Resuming the event stream after the second event: the third comes first, with its id.
    let kept = h.events_since(0).backlog;
    assert!(kept.len() >= 3, "{kept:?}");
    assert!(kept.windows(2).all(|w| w[1].id == w[0].id + 1), "{kept:?}");
    let token = crate::api::ApiToken::generate();
    let access =
        crate::api::ApiAccess::new(token.clone(), crate::config::DEFAULT_API_LISTEN, Vec::new());
    let app = crate::api::router(Arc::new(h.clone()), access);
    let req = axum::http::Request::builder()
        .uri("/events")
        .header("host", "127.0.0.1:8645")
        .header("authorization", format!("Bearer {}", token.as_str()))
        .header("last-event-id", kept[1].id.to_string())
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.contains(&format!("\nid: {}\n", kept[2].id)),
        "the stream resumes after the last id seen: {text}"
    );
    let bad = axum::http::Request::builder()
        .uri("/events")
        .header("host", "127.0.0.1:8645")
        .header("authorization", format!("Bearer {}", token.as_str()))
        .header("last-event-id", "yesterday")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.clone().oneshot(bad).await.unwrap().status(), 400);

    // The UI's files need no token, and forbid framing and foreign scripts.
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let req = axum::http::Request::builder()
            .uri(path)
            .header("host", "127.0.0.1:8645")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let hd = resp.headers();
        assert!(hd["content-type"].to_str().unwrap().starts_with(kind));
        assert!(
            hd["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(hd["x-frame-options"], "DENY");
    }
    let req = axum::http::Request::builder()
        .uri("/status")
        .header("host", "127.0.0.1:8645")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 401);
    let req = axum::http::Request::builder()
        .uri("/ui/../status")
        .header("host", "127.0.0.1:8645")
        .body(Body::empty())
        .unwrap();
    assert_ne!(app.oneshot(req).await.unwrap().status(), 200);
    node.stop().await;
}
