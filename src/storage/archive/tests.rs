use demls_transport::message::WakuMessage;
use demls_transport::waku::store::{self, MemoryArchive, pb};
use prost::Message;
use rand::{Rng, SeedableRng};

use super::*;

const TOPICS: [&str; 2] = ["/waku/2/rs/15/1", "/waku/2/rs/15/2"];
const CTS: [&str; 3] = [
    "/a/1/app_msg/proto",
    "/a/1/welcome/proto",
    "/b/1/app_msg/proto",
];

fn entry(rng: &mut impl Rng, ts: i64, size: usize) -> ArchivedMessage {
    let m = WakuMessage {
        payload: (0..size).map(|_| rng.r#gen()).collect(),
        content_topic: CTS[rng.gen_range(0..CTS.len())].into(),
        version: Some(0),
        timestamp: Some(ts),
        meta: None,
        rate_limit_proof: None,
        ephemeral: None,
    };
    ArchivedMessage::eligible(TOPICS[rng.gen_range(0..2)], &m, m.encode_to_vec()).unwrap()
}

const DAY: Duration = Duration::from_secs(86400);

/// The same queries against our SQLite archive and the transport's in-memory one give
/// the same answers, byte for byte: filters, both directions, cursors, limits, lookups,
/// and equal timestamps (ordered by hash).
#[test]
fn sqlite_answers_every_query_as_the_reference_archive() {
    let dir = tempfile::tempdir().unwrap();
    let sql = SqliteArchive::open(dir.path(), 3650 * DAY, u64::MAX).unwrap();
    let mem = MemoryArchive::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let now = now_ns();
    let mut all = vec![];
    for _ in 0..300 {
        // Few distinct timestamps, so that many entries tie on them.
        let ts = now - rng.gen_range(0..40) * 1_000_000;
        let e = entry(&mut rng, ts, 16);
        assert_eq!(sql.insert(&e).unwrap(), mem.insert(&e).unwrap());
        assert!(!sql.insert(&e).unwrap());
        all.push(e);
    }
    for round in 0..400 {
        let mut req = if rng.gen_bool(0.25) {
            pb::StoreQueryRequest {
                message_hashes: (0..rng.gen_range(1..20))
                    .map(|_| all[rng.gen_range(0..all.len())].hash.to_vec())
                    .collect(),
                ..Default::default()
            }
        } else {
            let topics = rng.gen_bool(0.7);
            pb::StoreQueryRequest {
                pubsub_topic: topics.then(|| TOPICS[rng.gen_range(0..2)].into()),
                content_topics: if topics {
                    CTS.iter()
                        .filter(|_| rng.gen_bool(0.6))
                        .map(|c| c.to_string())
                        .collect()
                } else {
                    vec![]
                },
                time_start: rng
                    .gen_bool(0.5)
                    .then(|| now - rng.gen_range(0..40) * 1_000_000),
                time_end: rng
                    .gen_bool(0.5)
                    .then(|| now - rng.gen_range(0..40) * 1_000_000),
                ..Default::default()
            }
        };
        if req.pubsub_topic.is_some() && req.content_topics.is_empty() {
            req.content_topics.push(CTS[0].into());
        }
        req.include_data = rng.gen_bool(0.5);
        req.pagination_forward = rng.gen_bool(0.5);
        req.pagination_limit = Some(rng.gen_range(1..30));
        let mut pages = 0;
        loop {
            let a = store::answer(Some(&sql), &req);
            let b = store::answer(Some(&mem), &req);
            assert_eq!(a, b, "round {round}, page {pages}: {req:?}");
            assert_eq!(a.status_code, Some(200));
            pages += 1;
            match a.pagination_cursor {
                Some(c) => req.pagination_cursor = Some(c),
                None => break,
            }
        }
    }
    // Latest timestamp per conversation, and an unknown cursor.
    for t in TOPICS {
        let cts = vec![CTS[0].to_string(), CTS[1].to_string()];
        assert_eq!(
            sql.latest_timestamp(t, &cts).unwrap(),
            mem.latest_timestamp(t, &cts).unwrap()
        );
    }
    let q = Query {
        filter: Filter::Hashes(vec![[1; 32]]),
        cursor: Some([9; 32]),
        forward: true,
        limit: 5,
    };
    assert!(matches!(sql.query(&q), Err(ArchiveError::UnknownCursor)));
}

#[test]
fn pruning_drops_what_is_too_old_then_the_oldest_over_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let now = now_ns();
    let sec = 1_000_000_000i64;
    {
        let a = SqliteArchive::open(dir.path(), Duration::from_secs(3600), 100 * 1024).unwrap();
        // Two hours old: gone at the next pruning.
        a.insert(&entry(&mut rng, now - 7200 * sec, 1000)).unwrap();
        assert_eq!(a.size().unwrap().0, 1);
        assert_eq!(a.prune(now).unwrap(), 1);
        // 150 messages of ~1 KiB, oldest first: the archive keeps the newest ~90 KiB.
        let mut hashes = vec![];
        for k in 0..150 {
            let e = entry(&mut rng, now - (150 - k) * sec, 1000);
            hashes.push(e.hash);
            a.insert(&e).unwrap();
        }
        let (n, bytes) = a.size().unwrap();
        assert!(bytes <= 100 * 1024, "{bytes}");
        assert!((80..=101).contains(&n), "{n}");
        let newest = Query {
            filter: Filter::Hashes(hashes[140..].to_vec()),
            cursor: None,
            forward: true,
            limit: 100,
        };
        assert_eq!(
            a.query(&newest).unwrap().entries.len(),
            10,
            "the newest stay"
        );
        let oldest = Query {
            filter: Filter::Hashes(hashes[..10].to_vec()),
            ..newest
        };
        assert!(
            a.query(&oldest).unwrap().entries.is_empty(),
            "the oldest went"
        );
    }
    // Reopened: the bytes are counted again, and the messages are still there.
    let a = SqliteArchive::open(dir.path(), Duration::from_secs(3600), 100 * 1024).unwrap();
    let (n, bytes) = a.size().unwrap();
    assert!(n >= 80 && bytes <= 100 * 1024);
    // Reopened with a smaller size: pruned at open.
    drop(a);
    let a = SqliteArchive::open(dir.path(), Duration::from_secs(3600), 10 * 1024).unwrap();
    assert!(a.size().unwrap().1 <= 10 * 1024);
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(ARCHIVE_FILE);
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = SqliteArchive::open(dir.path(), DAY, 1 << 20).err().unwrap();
    assert!(matches!(e, StorageError::Foreign { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
