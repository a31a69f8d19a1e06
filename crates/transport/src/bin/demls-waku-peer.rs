//! `demls-waku-peer`: a bare Waku relay peer driven by lines on stdin, reporting on stdout.
//!
//! It exists so that tests (and people debugging a network) can run relays as separate
//! OS processes: the line test A–B–C and the py-libp2p interop test drive it. It is the
//! same [`WakuRelay`] the node uses, with no de-MLS on top.
//!
//! ```text
//! demls-waku-peer [--listen MA]... [--bootstrap MA]... [--relay-shard N]...
//!                 [--subscribe CONV]... [--cluster-id N] [--num-shards N] [--discovery]
//! ```
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
//! - `quit`
//!
//! stdout: `listening MULTIADDR` for each listen address, then `ready`; then
//! `recv CONV SUBTOPIC SENDER_HEX MSGID_HEX PAYLOAD_HEX` for each inbound packet, the
//! replies above, and `error TEXT` for a command that failed. MSGID is the relay's
//! gossipsub message id (SHA-256 of the encoded WakuMessage).

use std::process::ExitCode;

use demls_transport::waku::{WakuConfig, WakuRelay};
use demls_transport::{Subtopic, Transport, TransportError, TransportStats};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn usage() -> &'static str {
    "usage: demls-waku-peer [--listen MA]... [--bootstrap MA]... [--relay-shard N]... \
     [--subscribe CONV]... [--cluster-id N] [--num-shards N] [--discovery]"
}

fn parse_args(args: &[String]) -> Result<(WakuConfig, Vec<String>), String> {
    let mut cfg = WakuConfig {
        listen: vec![],
        discv5_discovery: false,
        ..WakuConfig::default()
    };
    let mut subscribe = vec![];
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--discovery" {
            cfg.discv5_discovery = true;
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
    Ok((cfg, subscribe))
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
        _ => Err(format!("unknown command {line:?}")),
    };
    Some(r)
}

async fn write_line(out: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes()).await?;
    out.write_all(b"\n").await?;
    out.flush().await
}

async fn run(cfg: WakuConfig, subscribe: Vec<String>) -> Result<(), String> {
    let (relay, mut inbound) = WakuRelay::start(cfg).await.map_err(|e| e.to_string())?;
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
    let (cfg, subscribe) = match parse_args(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(cfg, subscribe).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demls-waku-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
