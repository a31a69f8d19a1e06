//! Fetching what we missed: for each of our conversations, a content-filtered query to a
//! store peer over the time since the newest message we archived, page after page
//! (forward, so that older messages — an epoch's commit before the next epoch's
//! traffic — are delivered first). Each message is checked ([`super::verify_entry`]:
//! its hash is recomputed, it must match what we asked for, its timestamp must not lie
//! in the future), archived, and delivered on the inbound stream like a relayed one
//! unless the archive held it already.

use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use super::{MAX_PAGE_SIZE, MessageArchive, history_request, verify_entry};
use crate::message::relay_message_id;
use crate::waku::node::{inbound_packet, now_ns};
use crate::waku::{Command, Shared, WakuConfig};
use crate::{InboundPacket, Subtopic, content_topic};

/// How many store peers we fetch a conversation's history from (each is asked once per
/// time we reach them after being without any peer, and once per conversation joined).
pub const SYNC_PEERS: usize = 3;
/// Most pages fetched per conversation and peer in one fetch ([`MAX_PAGE_SIZE`] each).
pub const MAX_SYNC_PAGES: usize = 20;
/// How far back the first fetch of a conversation with nothing archived reaches (at
/// most the configured lookback).
pub const INITIAL_WINDOW_SECS: u64 = 3600;

/// What a fetch needs from the swarm task.
pub(crate) struct SyncCtx {
    pub cmd: mpsc::Sender<Command>,
    pub archive: Arc<dyn MessageArchive>,
    pub shared: Arc<Mutex<Shared>>,
    pub inbound: mpsc::Sender<InboundPacket>,
    pub instance: Vec<u8>,
    pub cfg: WakuConfig,
}

/// Counts of one fetch.
#[derive(Default, Debug)]
struct Fetched {
    pages: usize,
    entries: usize,
    new: usize,
    bad: usize,
}

/// Least time between two history fetches the protocol asks for in one conversation.
pub const FETCH_HISTORY_GAP: std::time::Duration = std::time::Duration::from_secs(10);

/// Fetches the history of `conversations` from `peer`, each since its start if given
/// (never beyond the lookback), else since shortly before the newest message archived.
pub(crate) async fn run(ctx: SyncCtx, peer: PeerId, conversations: Vec<(String, Option<i64>)>) {
    for (conv, since_ns) in conversations {
        match fetch(&ctx, peer, &conv, since_ns).await {
            Ok(f) => tracing::info!(
                %peer, conversation = %conv, pages = f.pages, entries = f.entries,
                new = f.new, bad = f.bad, "history fetched from a store peer"
            ),
            Err(e) => {
                tracing::info!(%peer, conversation = %conv, error = %e, "history fetch failed");
                return; // the peer is gone or does not answer: the others may
            }
        }
    }
}

/// Where a fetch of `pubsub_topic`/`content_topics` starts: a skew window before the
/// newest message archived (duplicates are dropped by hash), never further back than
/// the lookback; with nothing archived, [`INITIAL_WINDOW_SECS`] back.
pub(crate) fn start_ns(latest: Option<i64>, now: i64, lookback_secs: u64, skew_secs: u64) -> i64 {
    let floor = now.saturating_sub(secs_ns(lookback_secs));
    match latest {
        Some(t) => t.saturating_sub(secs_ns(skew_secs)).max(floor),
        None => now.saturating_sub(secs_ns(INITIAL_WINDOW_SECS.min(lookback_secs))),
    }
}

/// Seconds as nanoseconds, saturating.
fn secs_ns(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000)
}

/// The pubsub topic and the content topics (both subtopics) of a conversation's messages.
pub(crate) fn conversation_topics(cfg: &WakuConfig, conv: &str) -> (String, Vec<String>) {
    let topics = [Subtopic::AppMsg, Subtopic::Welcome]
        .into_iter()
        .filter_map(|s| content_topic(conv, s).ok())
        .collect();
    (cfg.topic_for(conv), topics)
}

async fn fetch(
    ctx: &SyncCtx,
    peer: PeerId,
    conv: &str,
    since_ns: Option<i64>,
) -> Result<Fetched, String> {
    let (pubsub, topics) = conversation_topics(&ctx.cfg, conv);
    let now = now_ns();
    let start = match since_ns {
        Some(since) => since.max(now.saturating_sub(secs_ns(ctx.cfg.store_lookback_secs))),
        None => {
            let latest = ctx
                .archive
                .latest_timestamp(&pubsub, &topics)
                .map_err(|e| e.to_string())?;
            start_ns(
                latest,
                now,
                ctx.cfg.store_lookback_secs,
                ctx.cfg.max_timestamp_skew_secs,
            )
        }
    };
    let future_limit = now.saturating_add(secs_ns(ctx.cfg.max_timestamp_skew_secs));
    let mut req = history_request(&pubsub, topics, Some(start), None);
    let mut f = Fetched::default();
    for _ in 0..MAX_SYNC_PAGES {
        let (reply, rx) = oneshot::channel();
        ctx.cmd
            .send(Command::StoreQuery {
                peer,
                request: Box::new(req.clone()),
                reply,
            })
            .await
            .map_err(|_| "the relay stopped".to_string())?;
        let res = rx
            .await
            .map_err(|_| "the relay stopped".to_string())?
            .map_err(|e| e.to_string())?;
        f.pages += 1;
        let code = res.status_code.unwrap_or(0);
        if !(200..300).contains(&code) {
            return Err(format!(
                "status {code} {}",
                res.status_desc.unwrap_or_default()
            ));
        }
        for kv in res.messages.iter().take(MAX_PAGE_SIZE) {
            f.entries += 1;
            let entry = match verify_entry(&req, kv) {
                Ok(e) if e.timestamp <= future_limit => e,
                Ok(_) | Err(_) => {
                    f.bad += 1;
                    continue;
                }
            };
            if !ctx.archive.insert(&entry).map_err(|e| e.to_string())? {
                continue; // we have it: relayed, published by us, or fetched before
            }
            let Some(m) = kv.message.clone() else {
                continue;
            };
            let id = relay_message_id(&entry.data).to_vec();
            if let Some(pkt) = inbound_packet(&ctx.shared, &ctx.instance, id, entry.pubsub_topic, m)
            {
                f.new += 1;
                if ctx.inbound.send(pkt).await.is_err() {
                    return Err("the node stopped reading".into());
                }
            }
        }
        match res.pagination_cursor {
            Some(c) if c.len() == 32 && req.pagination_cursor.as_ref() != Some(&c) => {
                req.pagination_cursor = Some(c);
            }
            _ => break,
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_a_skew_before_the_newest_archived_bounded_by_the_lookback() {
        let s = 1_000_000_000i64;
        let now = 1_000_000 * s;
        assert_eq!(start_ns(Some(now - 100 * s), now, 3600, 20), now - 120 * s);
        assert_eq!(
            start_ns(Some(now - 7200 * s), now, 3600, 20),
            now - 3600 * s
        );
        assert_eq!(start_ns(None, now, 7 * 86400, 20), now - 3600 * s);
        assert_eq!(start_ns(None, now, 60, 20), now - 60 * s);
        assert_eq!(
            start_ns(Some(i64::MIN), i64::MIN, u64::MAX, u64::MAX),
            i64::MIN
        );
    }
}
