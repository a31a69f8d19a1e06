//! "One group again" after a fork scenario, and the time it took
//! (`heal-times.tsv` in the testnet's directory).
//!
//! Agreeing on epoch and roster is not enough: two branches of a fork can happen to agree
//! on both. A chat message from another branch never decrypts, so the proof is a chat from
//! every node reaching every other one.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::net::Testnet;
use crate::wait::{Failed, log, utc_now};

/// How long sent chat messages get to arrive before the group counts as not one yet.
const CHAT_WINDOW: Duration = Duration::from_secs(30);

/// Which roster the healed group must show.
#[derive(Debug, Clone, Copy)]
pub enum Roster<'a> {
    /// Exactly the nodes checked ([`Testnet::converged`]).
    Exactly,
    /// The nodes checked and this killed one, which nobody removed.
    WithDead(&'a str),
}

/// Within `limit`, `nodes` show the same group (`roster`) and a chat from each reaches
/// every other. Logs and records the time taken under `what`.
pub async fn one_group(
    net: &Testnet,
    limit: Duration,
    what: &str,
    nodes: &[String],
    roster: Roster<'_>,
) -> Result<Duration, Failed> {
    let start = Instant::now();
    let mut round = 0;
    let mut seen = String::from("nothing yet");
    while start.elapsed() <= limit {
        let agreed = match roster {
            Roster::Exactly => net.converged(nodes).await,
            Roster::WithDead(_) => net.same_epoch_working(nodes.len() + 1, nodes).await,
        };
        match agreed {
            Err(s) => seen = s,
            Ok(()) => {
                round += 1;
                let tag = format!("one-group check {round}");
                if all_chat_sent(net, &tag, nodes).await.is_ok() {
                    if chat_arrives(net, &tag, nodes).await.is_ok() {
                        let took = start.elapsed();
                        let without = match roster {
                            Roster::Exactly => String::new(),
                            Roster::WithDead(dead) => format!(" without {dead}"),
                        };
                        log(format!(
                            "ok: {what}: one group{without}, chat reaches everyone ({}s)",
                            took.as_secs()
                        ));
                        record(net, what, took, nodes);
                        return Ok(took);
                    }
                    seen = format!(
                        "agreed on the group, but chat {tag:?} did not reach everyone: two groups?"
                    );
                    log(&seen);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let message = format!(
        "timed out after {}s waiting for: {what} (last seen: {seen}; epochs: {}; peers: {})",
        limit.as_secs(),
        net.epoch_table(nodes).await,
        net.peer_table(nodes).await
    );
    log(&message);
    Err(Failed(message))
}

/// Each node sends "TAG from NODE".
async fn all_chat_sent(net: &Testnet, tag: &str, nodes: &[String]) -> Result<(), String> {
    for n in nodes {
        net.send(n, &format!("{tag} from {n}"))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Each node's "TAG from NODE" is at every other node, within [`CHAT_WINDOW`].
async fn chat_arrives(net: &Testnet, tag: &str, nodes: &[String]) -> Result<(), String> {
    let sent = Instant::now();
    loop {
        let arrived = all_chat_arrived(net, tag, nodes).await;
        if arrived.is_ok() || sent.elapsed() > CHAT_WINDOW {
            return arrived;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn all_chat_arrived(net: &Testnet, tag: &str, nodes: &[String]) -> Result<(), String> {
    for from in nodes {
        for to in nodes.iter().filter(|to| *to != from) {
            net.has_message(to, &format!("{tag} from {from}")).await?;
        }
    }
    Ok(())
}

/// Appends `time, what, seconds, nodes` to `heal-times.tsv`.
pub fn record(net: &Testnet, what: &str, took: Duration, nodes: &[String]) {
    let path = net.dir.join("heal-times.tsv");
    let line = format!(
        "{}\t{what}\t{}\t{}\n",
        utc_now(),
        took.as_secs(),
        nodes.join(" ")
    );
    let written = std::fs::create_dir_all(&net.dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(line.as_bytes())
    });
    if let Err(e) = written {
        log(format!(
            "could not record the healing time in {}: {e}",
            path.display()
        ));
    }
}
