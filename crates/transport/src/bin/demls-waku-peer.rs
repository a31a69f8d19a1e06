//! `demls-waku-peer`: a bare Waku relay peer driven by lines on stdin, reporting on stdout.
//!
//! It exists so that tests (and people debugging a network) can run relays as separate
//! OS processes: the line test A–B–C and the py-libp2p interop test drive it. It is the
//! same [`WakuRelay`] the node uses, with no de-MLS on top.
//!
//! ```text
//! demls-waku-peer [--listen MA]... [--bootstrap MA]... [--relay-shard N]...
//!                 [--subscribe CONV]... [--cluster-id N] [--num-shards N] [--discovery]
//!                 [--store]
//! ```
//!
//! `--store` keeps an archive in memory: the peer archives its conversations' messages,
//! serves them over 13/WAKU2-STORE, and fetches what it missed from store peers.
//!
//! Peer discovery (discv5, peer exchange) is off unless `--discovery` is given, so that a
//! test's topology is exactly the connections it asked for.
//!
//! stdin, one command a line:
//! - `publish CONV app_msg|welcome HEX` → `published MSGID_HEX`
//! - `raw PUBSUB_TOPIC HEX` publishes bytes as they are (no WakuMessage) →
//!   `published MSGID_HEX`
//! - `subscribe CONV` / `unsubscribe CONV` → `ok`
//! - `peers` → `peers N`
//! - `rejected` → `rejected N` (messages this relay refused, all topics and reasons)
//! - `received` → `received N` (valid messages received, all topics)
//! - `score PEER_ID` → `score F` (its gossipsub score here) or `score none`
//! - `store-query PEER_ID CONV [LIMIT]` → a 13/WAKU2-STORE query of CONV's app_msg
//!   topic, page after page (LIMIT a page, default 100): `stored HASH_HEX PAYLOAD_HEX`
//!   for each message that hashes to its key, `stored-bad REASON` for each that does
//!   not, then `store-done STATUS MESSAGES PAGES`
//! - `quit`
//!
//! stdout: `listening MULTIADDR` for each listen address, then `ready`; then
//! `recv CONV SUBTOPIC SENDER_HEX MSGID_HEX PAYLOAD_HEX` for each inbound packet, the
//! replies above, and `error TEXT` for a command that failed. MSGID is the relay's
//! gossipsub message id (SHA-256 of the encoded WakuMessage).

use std::process::ExitCode;

use std::sync::Arc;

use demls_transport::waku::store::{self, MemoryArchive};
use demls_transport::waku::{WakuConfig, WakuRelay};
use demls_transport::{Subtopic, Transport, TransportError, TransportStats, content_topic};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn usage() -> &'static str {
    "usage: demls-waku-peer [--listen MA]... [--bootstrap MA]... [--relay-shard N]... \
     [--subscribe CONV]... [--cluster-id N] [--num-shards N] [--discovery] [--store]"
}

/// The peer's settings from its arguments.
struct Args {
    cfg: WakuConfig,
    subscribe: Vec<String>,
    store: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut cfg = WakuConfig {
        listen: vec![],
        discv5_discovery: false,
        ..WakuConfig::default()
    };
    let mut subscribe = vec![];
    let mut store = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--discovery" {
            cfg.discv5_discovery = true;
            continue;
        }
        if flag == "--store" {
            store = true;
            continue;
        }
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        let number = |v: String| {
            v.parse::<u32>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--listen" => cfg.listen.push(value()?),
            "--bootstrap" => cfg.bootstrap.push(value()?),
            "--relay-shard" => cfg.relay_shards.push(number(value()?)?),
            "--subscribe" => subscribe.push(value()?),
            "--cluster-id" => cfg.cluster_id = number(value()?)?,
            "--num-shards" => cfg.num_shards = number(value()?)?,
            "-h" | "--help" => return Err(usage().to_string()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if cfg.listen.is_empty() {
        cfg.listen.push("/ip4/127.0.0.1/tcp/0".into());
    }
    Ok(Args {
        cfg,
        subscribe,
        store,
    })
}

fn rejected(s: &TransportStats) -> u64 {
    s.topics
        .values()
        .flat_map(|t| t.rejected.values())
        .sum::<u64>()
}

fn received(s: &TransportStats) -> u64 {
    s.topics.values().map(|t| t.received).sum::<u64>()
}

/// A command's reply line, or its error.
fn reply(r: Result<(), TransportError>, ok: &str) -> Result<String, String> {
    r.map(|()| ok.to_string()).map_err(|e| e.to_string())
}

/// A publish's reply line (with the message id), or its error.
fn published(r: Result<Vec<u8>, TransportError>) -> Result<String, String> {
    r.map(|id| format!("published {}", hex::encode(id)))
        .map_err(|e| e.to_string())
}

/// Runs one stdin command; `None` means quit.
async fn command(relay: &WakuRelay, line: &str) -> Option<Result<String, String>> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let hex_arg = |s: &str| hex::decode(s).map_err(|e| format!("bad hex: {e}"));
    let r = match words.as_slice() {
        [] => return Some(Err("empty command".into())),
        ["quit"] => return None,
        ["publish", conv, sub, hex] => {
            let sub = match *sub {
                "app_msg" => Subtopic::AppMsg,
                "welcome" => Subtopic::Welcome,
                other => return Some(Err(format!("unknown subtopic {other:?}"))),
            };
            match hex_arg(hex) {
                Ok(p) => published(relay.publish_with_id(conv, sub, p).await),
                Err(e) => Err(e),
            }
        }
        ["raw", topic, hex] => match hex_arg(hex) {
            Ok(p) => published(relay.publish_raw(topic, p).await),
            Err(e) => Err(e),
        },
        ["subscribe", conv] => reply(relay.subscribe(conv).await, "ok"),
        ["unsubscribe", conv] => reply(relay.unsubscribe(conv).await, "ok"),
        ["peers"] => Ok(format!("peers {}", relay.stats().connected_peers)),
        ["rejected"] => Ok(format!("rejected {}", rejected(&relay.stats()))),
        ["received"] => Ok(format!("received {}", received(&relay.stats()))),
        ["score", peer] => Ok(match relay.stats().peer_scores.get(*peer) {
            Some(s) => format!("score {s}"),
            None => "score none".to_string(),
        }),
        ["store-query", peer, conv] => store_query(relay, peer, conv, "100").await,
        ["store-query", peer, conv, limit] => store_query(relay, peer, conv, limit).await,
        _ => Err(format!("unknown command {line:?}")),
    };
    Some(r)
}

/// Runs a paginated store query; the `stored` lines, then the `store-done` line.
async fn store_query(
    relay: &WakuRelay,
    peer: &str,
    conv: &str,
    limit: &str,
) -> Result<String, String> {
    let peer: libp2p::PeerId = peer.parse().map_err(|e| format!("bad peer id: {e}"))?;
    let limit: u64 = limit.parse().map_err(|_| format!("bad limit {limit:?}"))?;
    let ct = content_topic(conv, Subtopic::AppMsg).map_err(|e| e.to_string())?;
    let mut req = store::history_request(&relay.shard_topic(conv), vec![ct], None, None);
    req.pagination_limit = Some(limit);
    let (mut lines, mut n, mut pages) = (Vec::new(), 0, 0);
    let status = loop {
        let res = relay
            .store_query(peer, req.clone())
            .await
            .map_err(|e| e.to_string())?;
        pages += 1;
        let status = res.status_code.unwrap_or(0);
        for kv in &res.messages {
            match store::verify_entry(&req, kv) {
                Ok(e) => {
                    n += 1;
                    let payload = kv.message.as_ref().map(|m| m.payload.clone());
                    lines.push(format!(
                        "stored {} {}",
                        hex::encode(e.hash),
                        hex::encode(payload.unwrap_or_default())
                    ));
                }
                Err(e) => lines.push(format!("stored-bad {e}")),
            }
        }
        match res.pagination_cursor {
            Some(c) if pages < 100 && status == store::status::SUCCESS => {
                req.pagination_cursor = Some(c)
            }
            _ => break status,
        }
    };
    lines.push(format!("store-done {status} {n} {pages}"));
    Ok(lines.join("\n"))
}

async fn write_line(out: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes()).await?;
    out.write_all(b"\n").await?;
    out.flush().await
}

async fn run(args: Args) -> Result<(), String> {
    let Args {
        cfg,
        subscribe,
        store,
    } = args;
    let archive: Option<Arc<dyn store::MessageArchive>> = if store {
        Some(Arc::new(MemoryArchive::new()))
    } else {
        None
    };
    let (relay, mut inbound) = WakuRelay::start_with_archive(cfg, archive)
        .await
        .map_err(|e| e.to_string())?;
    for conv in &subscribe {
        relay.subscribe(conv).await.map_err(|e| e.to_string())?;
    }
    let mut out = tokio::io::stdout();
    let io = |e: std::io::Error| format!("stdout: {e}");
    for a in relay.stats().listen_addrs {
        write_line(&mut out, &format!("listening {a}"))
            .await
            .map_err(io)?;
    }
    write_line(&mut out, "ready").await.map_err(io)?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                // End of stdin (the driving test went away) ends the peer too.
                let Ok(Some(line)) = line else { break };
                match command(&relay, line.trim()).await {
                    None => break,
                    Some(Ok(reply)) => write_line(&mut out, &reply).await.map_err(io)?,
                    Some(Err(e)) => write_line(&mut out, &format!("error {e}")).await.map_err(io)?,
                }
            }
            p = inbound.recv() => {
                let Some(p) = p else { break };
                let line = format!(
                    "recv {} {} {} {} {}",
                    p.conversation,
                    p.subtopic.as_str(),
                    hex::encode(&p.sender_instance),
                    hex::encode(&p.message_id),
                    hex::encode(&p.payload)
                );
                write_line(&mut out, &line).await.map_err(io)?;
            }
        }
    }
    relay.shutdown().await;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demls-waku-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
