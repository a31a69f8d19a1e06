//! Fuzz targets for 13/WAKU2-STORE v3 (`/vac/waku/store-query/3.0.0`), both sides:
//!
//! - `fuzz_store_codec`: the varint-length-prefixed codec (`StoreCodec`, the generic
//!   `ProtoCodec` with the store's caps) reading requests and responses: structured
//!   messages, protobuf soup, bodies at and past the caps, prefixes that are over-long,
//!   lie about the length or never end, then mutated; a request it reads is answered;
//! - `fuzz_store_answer`: the server's answer path (`store::answer` over a
//!   `MemoryArchive`) for hostile `StoreQueryRequest`s (absurd page sizes, unknown and
//!   malformed cursors, inverted and extreme time ranges, many and odd-length hashes,
//!   topic mismatches, `include_data` on and off), checked against a model of the spec
//!   written here (a sorted `Vec`), pages followed to the end;
//! - `fuzz_store_verify`: the client's check of each entry of a response
//!   (`store::verify_entry`) with hostile entries (wrong and short hashes, messages the
//!   query did not ask for, unstorable, oversize, future and edge timestamps, huge pages,
//!   mutated responses), against an independent computation of the 14/WAKU2-MESSAGE hash.
//!
//! The fuzz loop and byte generators are the core targets' (`crates/core/tests/fuzz_common`,
//! included by path). See `docs/FUZZING.md`.

#[path = "../../core/tests/fuzz_common/bytes.rs"]
mod bytes;
#[path = "../../core/tests/fuzz_common/runner.rs"]
mod runner;

use bytes::{
    I64_EDGES, any_len, any_string, any_u64, mutate, random_bytes, random_pb_message, varint,
};
use demls_transport::message::WakuMessage;
use demls_transport::waku::MAX_MESSAGE_SIZE;
use demls_transport::waku::store::{
    ArchivedMessage, MAX_CONTENT_TOPICS, MAX_HASHES, MAX_PAGE_SIZE, MAX_REQUEST_ID,
    MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, MemoryArchive, MessageArchive, RESPONSE_BYTE_BUDGET,
    StoreCodec, answer, history_request, pb, status, verify_entry,
};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use runner::{Case, fuzz};
use sha2::{Digest, Sha256};

const PUBSUB: [&str; 2] = ["/waku/2/rs/15/3", "/waku/2/rs/15/4"];
const CONTENT: [&str; 3] = [
    "/chat/1/app_msg/proto",
    "/chat/1/welcome/proto",
    "/other/1/app_msg/proto",
];
/// A realistic now, ns.
const NOW_NS: i64 = 1_790_000_000_000_000_000;

/// Counts of what the inputs reached, printed after each target (with `--nocapture`), so
/// a generator that stops reaching a branch shows.
#[derive(Default)]
struct Reached(std::collections::BTreeMap<&'static str, u64>);

impl Reached {
    fn hit(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }

    fn print(&self, target: &str) {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!("fuzz {target} reached: {}", parts.join(", "));
    }
}

// ---- the model ----------------------------------------------------------------------------

/// 14/WAKU2-MESSAGE's deterministic hash, computed from the spec here (not by the crate):
/// `sha256(pubsub_topic ‖ payload ‖ content_topic ‖ meta ‖ timestamp as 8 bytes BE)`, an
/// absent timestamp counting as 0 and an absent meta as nothing.
fn spec_hash(pubsub_topic: &str, m: &WakuMessage) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(pubsub_topic.as_bytes());
    h.update(&m.payload);
    h.update(m.content_topic.as_bytes());
    h.update(m.meta.as_deref().unwrap_or_default());
    h.update(m.timestamp.unwrap_or(0).to_be_bytes());
    h.finalize().into()
}

/// Why the spec (and our documented bounds) refuse a request, whatever the archive holds
/// (the cursor's existence aside).
fn malformed(req: &pb::StoreQueryRequest) -> Option<&'static str> {
    let content = req.pubsub_topic.is_some()
        || !req.content_topics.is_empty()
        || req.time_start.is_some()
        || req.time_end.is_some();
    if content && !req.message_hashes.is_empty() {
        Some("content filter and hashes")
    } else if req.pubsub_topic.is_some() == req.content_topics.is_empty() {
        Some("pubsub topic and content topics not set together")
    } else if req.content_topics.len() > MAX_CONTENT_TOPICS {
        Some("too many content topics")
    } else if req.message_hashes.len() > MAX_HASHES {
        Some("too many hashes")
    } else if req.message_hashes.iter().any(|h| h.len() != 32) {
        Some("a hash not 32 bytes")
    } else if req
        .pagination_cursor
        .as_ref()
        .is_some_and(|c| c.len() != 32)
    {
        Some("a cursor not 32 bytes")
    } else {
        None
    }
}

/// The spec's filter matching, on a well-formed request.
fn spec_matches(req: &pb::StoreQueryRequest, e: &ArchivedMessage) -> bool {
    if !req.message_hashes.is_empty() {
        return req.message_hashes.iter().any(|h| h.as_slice() == e.hash);
    }
    let topics = match &req.pubsub_topic {
        Some(p) => *p == e.pubsub_topic && req.content_topics.contains(&e.content_topic),
        None => true,
    };
    topics
        && req.time_start.is_none_or(|t| e.timestamp >= t)
        && req.time_end.is_none_or(|t| e.timestamp < t)
}

/// The archive's content as a `Vec` sorted by (timestamp, hash), no two alike.
#[derive(Clone, Default)]
struct Model {
    entries: Vec<ArchivedMessage>,
}

impl Model {
    fn insert(&mut self, e: &ArchivedMessage) -> bool {
        if self.entries.iter().any(|x| x.hash == e.hash) {
            return false;
        }
        self.entries.push(e.clone());
        self.entries.sort_by_key(|x| (x.timestamp, x.hash));
        true
    }

    fn get(&self, hash: &[u8]) -> Option<&ArchivedMessage> {
        self.entries.iter().find(|e| e.hash.as_slice() == hash)
    }

    /// Every match of a well-formed `req` after its cursor, in traversal order (`None`:
    /// the cursor names nothing stored).
    fn traversal(&self, req: &pb::StoreQueryRequest) -> Option<Vec<ArchivedMessage>> {
        let after = match &req.pagination_cursor {
            Some(c) => Some(self.get(c).map(|e| (e.timestamp, e.hash))?),
            None => None,
        };
        let mut v: Vec<ArchivedMessage> = self
            .entries
            .iter()
            .filter(|e| spec_matches(req, e))
            .filter(|e| match after {
                None => true,
                Some(k) if req.pagination_forward => (e.timestamp, e.hash) > k,
                Some(k) => (e.timestamp, e.hash) < k,
            })
            .cloned()
            .collect();
        if !req.pagination_forward {
            v.reverse();
        }
        Some(v)
    }
}

// ---- generators ---------------------------------------------------------------------------

fn pubsub(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0..=7 => PUBSUB.choose(rng).expect("x").to_string(),
        _ => any_string(rng, PUBSUB[0]),
    }
}

fn content(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0..=7 => CONTENT.choose(rng).expect("x").to_string(),
        _ => any_string(rng, CONTENT[0]),
    }
}

/// A message timestamp: clustered (ties broken by hash), near now, or an edge value.
fn timestamp(rng: &mut StdRng) -> Option<i64> {
    match rng.gen_range(0..12) {
        0 => None,
        1..=4 => Some(1000 + rng.gen_range(0..4)),
        5 | 6 => Some(NOW_NS + rng.gen_range(-5..5)),
        7 => Some(NOW_NS + rng.gen_range(0..1_000_000_000_000)), // the future
        8 => Some(*I64_EDGES.choose(rng).expect("x")),
        _ => Some(rng.gen_range(1..i64::MAX)),
    }
}

/// A message as a relay may have passed it (any fields), of at most `max_payload` bytes.
fn message(rng: &mut StdRng, max_payload: usize) -> WakuMessage {
    WakuMessage {
        payload: random_bytes(rng, max_payload),
        content_topic: content(rng),
        version: rng.gen_bool(0.7).then(|| rng.gen_range(0..3)),
        timestamp: timestamp(rng),
        meta: rng.gen_bool(0.5).then(|| random_bytes(rng, 64)),
        rate_limit_proof: rng.gen_bool(0.05).then(|| random_bytes(rng, 128)),
        ephemeral: match rng.gen_range(0..8) {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        },
    }
}

/// Fills an archive and its model with up to `n` messages (ineligible ones are refused
/// by `ArchivedMessage::eligible`, checked), some of them twice.
fn fill(rng: &mut StdRng, n: usize, case: &mut Case) -> (MemoryArchive, Model) {
    let archive = MemoryArchive::new();
    let mut model = Model::default();
    let mut kept: Vec<ArchivedMessage> = Vec::new();
    for _ in 0..n {
        let e = match kept.choose(rng) {
            Some(e) if rng.gen_bool(0.05) => e.clone(),
            _ => {
                let topic = pubsub(rng);
                let m = message(rng, 256);
                let data = m.encode_to_vec();
                let eligible = ArchivedMessage::eligible(&topic, &m, data.clone());
                let storable = m.ephemeral != Some(true) && m.timestamp.is_some_and(|t| t > 0);
                assert_eq!(eligible.is_some(), storable, "eligible({m:?})");
                let Some(e) = eligible else { continue };
                assert_eq!(e.hash, spec_hash(&topic, &m), "the archive's key");
                assert_eq!(e.data, data);
                e
            }
        };
        let new = archive.insert(&e).expect("memory archive");
        assert_eq!(
            new,
            model.insert(&e),
            "insert of a duplicate said new, or not"
        );
        kept.push(e);
    }
    case.note(format!("archive of {} messages", model.entries.len()));
    (archive, model)
}

/// Thirty messages of 120–150 KiB: pages of them hit the response byte budget.
fn big_archive() -> (MemoryArchive, Model) {
    let archive = MemoryArchive::new();
    let mut model = Model::default();
    for i in 0..30u8 {
        let m = WakuMessage {
            payload: vec![i; MAX_MESSAGE_SIZE - 100 - 1024 * (i as usize % 30)],
            content_topic: CONTENT[i as usize % 2].to_string(),
            version: Some(0),
            timestamp: Some(1000 + i64::from(i / 3)),
            meta: None,
            rate_limit_proof: None,
            ephemeral: None,
        };
        let e = ArchivedMessage::eligible(PUBSUB[0], &m, m.encode_to_vec()).expect("eligible");
        archive.insert(&e).expect("insert");
        model.insert(&e);
    }
    (archive, model)
}

/// A hash: one the archive holds, unknown, or the wrong length.
fn hash_bytes(rng: &mut StdRng, model: &Model) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0..=5 => match model.entries.choose(rng) {
            Some(e) => e.hash.to_vec(),
            None => vec![0x42; 32],
        },
        6 | 7 => {
            let mut h = vec![0u8; 32];
            rng.fill_bytes(&mut h);
            h
        }
        8 => vec![0u8; 32],
        _ => {
            let n = *[0usize, 1, 16, 31, 33, 64, 1000].choose(rng).expect("x");
            vec![0xab; n]
        }
    }
}

/// A time bound: around a stored timestamp, or an edge value.
fn time_bound(rng: &mut StdRng, model: &Model) -> Option<i64> {
    match rng.gen_range(0..8) {
        0 | 1 => None,
        2..=4 => model
            .entries
            .choose(rng)
            .map(|e| e.timestamp.saturating_add(rng.gen_range(-1..=1))),
        5 => Some(*I64_EDGES.choose(rng).expect("x")),
        _ => timestamp(rng),
    }
}

/// A request with hostile values: mostly well-formed with odd contents, sometimes
/// breaking one rule of the spec or our bounds.
fn request(rng: &mut StdRng, model: &Model) -> pb::StoreQueryRequest {
    let mut req = pb::StoreQueryRequest {
        request_id: match rng.gen_range(0..7) {
            0 => "é".repeat(rng.gen_range(100..400)),
            1 => format!("a{}", "€".repeat(rng.gen_range(80..120))), // 3-byte chars off the cut
            2 => "x".repeat(rng.gen_range(MAX_REQUEST_ID - 2..MAX_REQUEST_ID + 3)),
            _ => any_string(rng, "0123456789abcdef"),
        },
        include_data: rng.r#gen(),
        pagination_forward: rng.r#gen(),
        pagination_limit: match rng.gen_range(0..6) {
            0 => None,
            1 => Some(rng.gen_range(1..6)),
            2 => Some(rng.gen_range(95..106)),
            _ => Some(any_u64(rng)),
        },
        ..Default::default()
    };
    match rng.gen_range(0..10) {
        // Content filter: topics, time range or both (inverted, equal, extreme).
        0..=5 => {
            if rng.gen_bool(0.7) {
                req.pubsub_topic = Some(pubsub(rng));
                let n = match rng.gen_range(0..8) {
                    0 => rng.gen_range(MAX_CONTENT_TOPICS..MAX_CONTENT_TOPICS + 3),
                    _ => rng.gen_range(1..4),
                };
                req.content_topics = (0..n).map(|_| content(rng)).collect();
            }
            req.time_start = time_bound(rng, model);
            req.time_end = time_bound(rng, model);
            if rng.gen_bool(0.1) {
                std::mem::swap(&mut req.time_start, &mut req.time_end);
            }
        }
        // Hash lookup (presence query without data), with duplicates and junk.
        6..=8 => {
            let n = match rng.gen_range(0..10) {
                0 => rng.gen_range(MAX_HASHES - 1..MAX_HASHES + 50),
                _ => any_len(rng, 20).max(1),
            };
            req.message_hashes = (0..n).map(|_| hash_bytes(rng, model)).collect();
            if rng.gen_bool(0.3) {
                req.message_hashes.retain(|h| h.len() == 32);
            }
        }
        _ => {} // no filter: everything
    }
    // Break a rule now and then: one topic field without the other, both query kinds.
    match rng.gen_range(0..20) {
        0 => req.pubsub_topic = None,
        1 => req.content_topics.clear(),
        2 => req.message_hashes.push(hash_bytes(rng, model)),
        3 => req.time_start = Some(1),
        _ => {}
    }
    req.pagination_cursor = match rng.gen_range(0..10) {
        0..=3 => None,
        _ => Some(hash_bytes(rng, model)),
    };
    req
}

// ---- the server's answer ------------------------------------------------------------------

/// What the server puts in a response for `e`.
fn key_value(e: &ArchivedMessage, include_data: bool) -> pb::WakuMessageKeyValue {
    pb::WakuMessageKeyValue {
        message_hash: Some(e.hash.to_vec()),
        message: include_data.then(|| WakuMessage::decode(e.data.as_slice()).expect("stored")),
        pubsub_topic: include_data.then(|| e.pubsub_topic.clone()),
    }
}

/// Answers `req` from `archive` and checks the response against the model; returns it.
fn check_answer(
    archive: &MemoryArchive,
    model: &Model,
    req: &pb::StoreQueryRequest,
    reached: &mut Reached,
) -> pb::StoreQueryResponse {
    let res = answer(Some(archive), req);
    // The request id: echoed, cut to MAX_REQUEST_ID bytes on a character boundary.
    assert!(
        res.request_id.len() <= MAX_REQUEST_ID,
        "request id of {} bytes",
        res.request_id.len()
    );
    assert!(
        req.request_id.starts_with(&res.request_id),
        "request id not echoed"
    );
    assert!(
        req.request_id.len() <= MAX_REQUEST_ID || res.request_id.len() + 4 > MAX_REQUEST_ID,
        "request id cut too short"
    );
    if req.request_id.len() <= MAX_REQUEST_ID {
        assert_eq!(res.request_id, req.request_id);
    }
    // Whatever we answer, our own client (and nwaku's bound) reads it.
    assert!(
        res.encoded_len() + 10 <= MAX_RESPONSE_SIZE,
        "response of {} bytes",
        res.encoded_len()
    );
    let expected = match malformed(req) {
        Some(why) => Err(why),
        None => model.traversal(req).ok_or("unknown cursor"),
    };
    let all = match expected {
        Err(why) => {
            assert_eq!(res.status_code, Some(status::BAD_REQUEST), "{why}: {res:?}");
            assert!(res.messages.is_empty() && res.pagination_cursor.is_none());
            assert!(res.status_desc.as_ref().is_some_and(|d| !d.is_empty()));
            reached.hit(why);
            return res;
        }
        Ok(all) => all,
    };
    assert_eq!(
        res.status_code,
        Some(status::SUCCESS),
        "{:?}",
        res.status_desc
    );
    let limit = match req.pagination_limit {
        Some(n) if (1..=MAX_PAGE_SIZE as u64).contains(&n) => n as usize,
        _ => MAX_PAGE_SIZE,
    };
    // What the page must hold: the first matches in traversal order, up to the limit,
    // stopping before the entry that would take it past the byte budget (one always fits).
    let mut want = Vec::new();
    let mut bytes = 0;
    for e in all.iter().take(limit) {
        let kv = key_value(e, req.include_data);
        let size = kv.encoded_len();
        if !want.is_empty() && bytes + size > RESPONSE_BYTE_BUDGET {
            break;
        }
        bytes += size;
        want.push(kv);
    }
    assert!(want.len() <= MAX_PAGE_SIZE);
    assert!(bytes <= RESPONSE_BYTE_BUDGET || want.len() == 1);
    let mut got = res.messages.clone();
    if !req.pagination_forward {
        got.reverse(); // responses list entries in forward order, whatever the direction
    }
    assert_eq!(
        got.iter()
            .map(|kv| kv.message_hash.clone())
            .collect::<Vec<_>>(),
        want.iter()
            .map(|kv| kv.message_hash.clone())
            .collect::<Vec<_>>(),
        "the page's entries (of {} matches after the cursor, limit {limit})",
        all.len()
    );
    assert_eq!(got, want, "the page's contents");
    reached.hit(match (want.len(), all.len()) {
        (0, _) => "200 empty",
        (k, n) if k == n => "200 last page",
        (k, _) if k == limit => "200 full page",
        _ => "200 cut by the byte budget",
    });
    let cursor = (want.len() < all.len()).then(|| all[want.len() - 1].hash.to_vec());
    assert_eq!(res.pagination_cursor, cursor, "the cursor");
    if req.include_data {
        // Everything our server sends, our client accepts, as the same archive entry.
        for (kv, e) in res.messages.iter().zip(if req.pagination_forward {
            all[..want.len()].to_vec()
        } else {
            all[..want.len()].iter().rev().cloned().collect()
        }) {
            let v = verify_entry(req, kv).expect("our own answer verifies");
            assert_eq!(
                (v.hash, &v.pubsub_topic, v.timestamp),
                (e.hash, &e.pubsub_topic, e.timestamp)
            );
        }
    }
    res
}

/// The store's answer to hostile requests. Oracles: no panic; 400 exactly for what the
/// spec or our bounds refuse (including a cursor the archive does not hold), with no
/// entries; otherwise 200 and the page the spec's model gives (the first matches after
/// the cursor in traversal order, at most the limit or 100, cut before the 2 MiB budget,
/// listed in forward order, data only when asked), the cursor set exactly when more
/// match; following cursors yields every match once; every entry verifies on our client.
#[test]
fn fuzz_store_answer() {
    let (big, big_model) = big_archive();
    let mut reached = Reached::default();
    fuzz::<StdRng, _>("fuzz_store_answer", 1_500, |rng, case| {
        let small;
        let (archive, model) = if rng.gen_range(0..16) == 0 {
            case.note("the archive of 30 messages of 120–150 KiB");
            (&big, &big_model)
        } else {
            let n = any_len(rng, 120);
            small = fill(rng, n, case);
            (&small.0, &small.1)
        };
        let mut req = request(rng, model);
        if rng.gen_bool(0.2) {
            // Structured, then mutated on the wire.
            let b = mutate(rng, &req.encode_to_vec(), 4, MAX_REQUEST_SIZE);
            case.input("mutated request", &b);
            match pb::StoreQueryRequest::decode(b.as_slice()) {
                Ok(r) => req = r,
                Err(_) => return,
            }
        }
        case.input("request", &req.encode_to_vec());
        case.note(format!("{req:?}"));
        assert_eq!(
            answer(None, &req).status_code,
            Some(status::SERVICE_UNAVAILABLE)
        );
        let mut res = check_answer(archive, model, &req, &mut reached);
        // Follow the cursors to the end: every match once, in order.
        if res.status_code == Some(status::SUCCESS) && rng.gen_bool(0.5) {
            let all = model.traversal(&req).expect("answered");
            let mut seen: Vec<Vec<u8>> = Vec::new();
            let mut pages = 0;
            loop {
                let mut page: Vec<Vec<u8>> = res
                    .messages
                    .iter()
                    .filter_map(|kv| kv.message_hash.clone())
                    .collect();
                if !req.pagination_forward {
                    page.reverse();
                }
                seen.extend(page);
                let Some(c) = res.pagination_cursor.clone() else {
                    break;
                };
                pages += 1;
                assert!(pages <= all.len(), "more pages than matches");
                req.pagination_cursor = Some(c);
                res = check_answer(archive, model, &req, &mut reached);
            }
            reached.hit("pages followed to the end");
            let want: Vec<Vec<u8>> = all.iter().map(|e| e.hash.to_vec()).collect();
            assert_eq!(seen, want, "pages followed to the end");
        }
    });
    reached.print("fuzz_store_answer");
}

// ---- the client's check -------------------------------------------------------------------

/// Why the client must refuse `kv` as an answer to `req` (None: it must accept it).
fn refusal(req: &pb::StoreQueryRequest, kv: &pb::WakuMessageKeyValue) -> Option<&'static str> {
    let key = kv.message_hash.as_ref().filter(|h| h.len() == 32);
    let Some(key) = key else {
        return Some("no 32-byte hash");
    };
    let (Some(m), Some(topic)) = (&kv.message, &kv.pubsub_topic) else {
        return Some("no message with its topic");
    };
    if m.encoded_len() > MAX_MESSAGE_SIZE {
        return Some("too large");
    }
    if m.ephemeral == Some(true) || m.timestamp.is_none_or(|t| t <= 0) {
        return Some("not storable");
    }
    let hash = spec_hash(topic, m);
    if key.as_slice() != hash {
        return Some("wrong hash");
    }
    if malformed(req).is_some() {
        return Some("a request we would not send");
    }
    let e = ArchivedMessage {
        hash,
        pubsub_topic: topic.clone(),
        content_topic: m.content_topic.clone(),
        timestamp: m.timestamp.unwrap_or(0),
        data: Vec::new(),
    };
    (!spec_matches(req, &e)).then_some("not asked for")
}

/// A response entry a hostile store may send for `m` on `topic`.
fn hostile_entry(rng: &mut StdRng, topic: &str, m: WakuMessage) -> pb::WakuMessageKeyValue {
    let right = spec_hash(topic, &m).to_vec();
    let mut kv = pb::WakuMessageKeyValue {
        message_hash: Some(right.clone()),
        message: Some(m.clone()),
        pubsub_topic: Some(topic.to_string()),
    };
    match rng.gen_range(0..20) {
        0 => kv.message_hash = None,
        1 => kv.message_hash = Some(right[..rng.gen_range(0..32)].to_vec()),
        2 => kv.message_hash.as_mut().expect("x").push(0),
        3 => kv.message_hash = Some(spec_hash(PUBSUB[1], &m).to_vec()), // another topic's
        4 => {
            let mut h = right;
            h[rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
            kv.message_hash = Some(h);
        }
        5 => kv.message = None,
        6 => kv.pubsub_topic = None,
        7 => kv.pubsub_topic = Some(pubsub(rng)), // the hash is for the original topic
        8 => {
            // The message changed after hashing (payload, timestamp or meta).
            let m = kv.message.as_mut().expect("x");
            match rng.gen_range(0..3) {
                0 => m.payload.push(1),
                1 => m.timestamp = m.timestamp.map(|t| t.wrapping_add(1)),
                _ => {
                    m.meta = Some(
                        m.meta
                            .take()
                            .unwrap_or_default()
                            .into_iter()
                            .rev()
                            .collect(),
                    )
                }
            }
        }
        9 => {
            // An oversize message, rehashed right.
            let m = kv.message.as_mut().expect("x");
            m.payload = vec![7; rng.gen_range(MAX_MESSAGE_SIZE - 200..MAX_MESSAGE_SIZE + 200)];
            kv.message_hash = Some(spec_hash(topic, m).to_vec());
        }
        _ => {}
    }
    kv
}

/// The client's check of response entries. Oracles: no panic; `verify_entry` accepts an
/// entry exactly when it has a 32-byte key equal to the spec's hash of its message
/// (computed here), the message is storable (timestamp > 0, not ephemeral) and within the
/// relay's size limit, and it matches the (well-formed) request; what it returns is that
/// entry. (The clock is not its business: `store/sync.rs` drops entries past now + skew
/// after it.)
#[test]
fn fuzz_store_verify() {
    let mut reached = Reached::default();
    fuzz::<StdRng, _>("fuzz_store_verify", 1_500, |rng, case| {
        // What a store might hold, and a request about it.
        let pool: Vec<(String, WakuMessage)> = (0..rng.gen_range(1..12))
            .map(|_| (pubsub(rng), message(rng, 512)))
            .collect();
        let mut model = Model::default();
        for (t, m) in &pool {
            if let Some(e) = ArchivedMessage::eligible(t, m, m.encode_to_vec()) {
                model.insert(&e);
            }
        }
        let req = match rng.gen_range(0..6) {
            0..=2 => {
                let cts: Vec<String> = (0..rng.gen_range(1..3)).map(|_| content(rng)).collect();
                history_request(
                    &pubsub(rng),
                    cts,
                    time_bound(rng, &model),
                    time_bound(rng, &model),
                )
            }
            3 => pb::StoreQueryRequest {
                include_data: true,
                message_hashes: (0..rng.gen_range(1..6))
                    .map(|_| hash_bytes(rng, &model))
                    .collect(),
                ..Default::default()
            },
            _ => request(rng, &model),
        };
        case.input("request", &req.encode_to_vec());
        // A page: usually within a page's size, sometimes far beyond it.
        let n = if rng.gen_bool(0.1) {
            rng.gen_range(MAX_PAGE_SIZE..3 * MAX_PAGE_SIZE)
        } else {
            any_len(rng, 30)
        };
        let mut res = pb::StoreQueryResponse {
            request_id: req.request_id.clone(),
            status_code: Some(status::SUCCESS),
            status_desc: None,
            messages: (0..n)
                .map(|_| {
                    let (t, m) = pool.choose(rng).expect("non-empty").clone();
                    hostile_entry(rng, &t, m)
                })
                .collect(),
            pagination_cursor: rng.gen_bool(0.5).then(|| hash_bytes(rng, &model)),
        };
        if rng.gen_bool(0.2) {
            let b = mutate(rng, &res.encode_to_vec(), 6, MAX_RESPONSE_SIZE);
            case.input("mutated response", &b);
            match pb::StoreQueryResponse::decode(b.as_slice()) {
                Ok(r) => res = r,
                Err(_) => return,
            }
        }
        case.note(format!("{} entries", res.messages.len()));
        for (i, kv) in res.messages.iter().enumerate() {
            let why = refusal(&req, kv);
            reached.hit(why.unwrap_or("accepted"));
            match verify_entry(&req, kv) {
                Ok(e) => {
                    assert!(
                        why.is_none(),
                        "entry {i} accepted, but {}: {kv:?}",
                        why.unwrap_or("")
                    );
                    let m = kv.message.as_ref().expect("checked");
                    assert_eq!(Some(e.hash.to_vec()), kv.message_hash);
                    assert_eq!(Some(&e.pubsub_topic), kv.pubsub_topic.as_ref());
                    assert_eq!(e.content_topic, m.content_topic);
                    assert_eq!(Some(e.timestamp), m.timestamp);
                    assert_eq!(WakuMessage::decode(e.data.as_slice()).as_ref(), Ok(m));
                }
                Err(err) => {
                    assert!(
                        why.is_some(),
                        "entry {i} refused ({err}), but it is right: {kv:?}"
                    )
                }
            }
        }
    });
    reached.print("fuzz_store_verify");
}

// ---- the codec ----------------------------------------------------------------------------

/// A protobuf body of exactly `n` bytes (n ≥ 3): one unknown length-delimited field,
/// which every message of the schema skips.
fn padded_body(n: usize) -> Vec<u8> {
    let tag = varint((99 << 3) | 2, 0);
    let mut len = n - tag.len() - 1;
    while tag.len() + varint(len as u64, 0).len() + len > n {
        len -= 1;
    }
    let mut v = tag;
    v.extend(varint(len as u64, 0));
    v.resize(n, 0x61);
    v
}

/// A body: a structured request or response, protobuf soup, or one at a cap.
fn body(rng: &mut StdRng, model: &Model) -> Vec<u8> {
    match rng.gen_range(0..12) {
        0..=3 => request(rng, model).encode_to_vec(),
        4..=6 => {
            let (t, m) = (pubsub(rng), message(rng, 1024));
            pb::StoreQueryResponse {
                request_id: any_string(rng, "id"),
                status_code: Some(*[200u32, 400, 429, 503, 0, u32::MAX].choose(rng).expect("x")),
                status_desc: rng.gen_bool(0.5).then(|| any_string(rng, "OK")),
                messages: (0..any_len(rng, 40))
                    .map(|_| hostile_entry(rng, &t, m.clone()))
                    .collect(),
                pagination_cursor: rng.gen_bool(0.5).then(|| hash_bytes(rng, model)),
            }
            .encode_to_vec()
        }
        7 | 8 => random_pb_message(rng, 3),
        9 | 10 => {
            let n = MAX_REQUEST_SIZE.saturating_add_signed(rng.gen_range(-2isize..=2));
            padded_body(n)
        }
        // Rarely (15 MiB each): a response body at its cap.
        _ if rng.gen_range(0..8) == 0 => {
            let n = MAX_RESPONSE_SIZE.saturating_add_signed(rng.gen_range(-1isize..=1));
            padded_body(n)
        }
        _ => random_bytes(rng, 4096),
    }
}

/// A frame: the body behind a right, over-long, lying, huge or endless length prefix.
fn frame(rng: &mut StdRng, model: &Model) -> Vec<u8> {
    let b = body(rng, model);
    let len = b.len() as u64;
    let mut v = match rng.gen_range(0..10) {
        0 => varint(len, rng.gen_range(1..4)), // over-long, within 4 bytes or past them
        1 => varint(len + rng.gen_range(1..4), 0), // longer than what follows
        2 => varint(len.saturating_sub(rng.gen_range(1..4)), 0), // shorter
        3 => varint(any_u64(rng), 0),
        4 => vec![0xff; rng.gen_range(1..12)],
        5 => varint(MAX_REQUEST_SIZE as u64 + 1, 0),
        _ => varint(len, 0),
    };
    v.extend(b);
    if rng.gen_bool(0.15) && v.len() < 1 << 17 {
        v = mutate(rng, &v, 4, 1 << 17);
    }
    v
}

/// What a correct reader of one frame with a cap of `max` bytes yields: the body after a
/// varint prefix of at most 4 bytes (what a 4-byte varint holds, 256 MiB, is more than
/// any cap) announcing at most `max` bytes, all present; `None` if it must be refused.
fn framed_body(frame: &[u8], max: usize) -> Option<&[u8]> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *frame.get(i)?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return if len > max {
                None
            } else {
                frame.get(i + 1..i + 1 + len)
            };
        }
    }
    None
}

/// The store codec reading requests and responses. Oracles: no panic; it reads a frame
/// exactly when a correct reader would (prefix within 4 bytes and the cap, body present
/// and decoding), and yields what the body decodes to; what it reads writes back and reads
/// back equal; a request it reads gets an answer.
#[test]
fn fuzz_store_codec() {
    let proto = StreamProtocol::new("/vac/waku/store-query/3.0.0");
    let mut rng0: StdRng = runner::case_rng("fuzz_store_codec archive", 0, 0);
    let (archive, model) = fill(&mut rng0, 40, &mut Case::default());
    let mut reached = Reached::default();
    fuzz::<StdRng, _>("fuzz_store_codec", 1_500, |rng, case| {
        let f = if rng.gen_bool(0.9) {
            frame(rng, &model)
        } else {
            let mut b = vec![0u8; any_len(rng, 256)];
            rng.fill_bytes(&mut b);
            b
        };
        case.input("stream", &f[..f.len().min(1 << 16)]);
        case.note(format!("stream of {} bytes", f.len()));
        let mut codec = StoreCodec::default();
        futures::executor::block_on(async {
            let req = codec
                .read_request(&proto, &mut futures::io::Cursor::new(&f))
                .await;
            let want = framed_body(&f, MAX_REQUEST_SIZE)
                .and_then(|b| pb::StoreQueryRequest::decode(b).ok());
            assert_eq!(req.as_ref().ok(), want.as_ref(), "read_request");
            if let Ok(r) = req {
                reached.hit("request read");
                let mut out = futures::io::Cursor::new(Vec::new());
                codec
                    .write_request(&proto, &mut out, r.clone())
                    .await
                    .expect("write");
                let back = codec
                    .read_request(&proto, &mut futures::io::Cursor::new(out.into_inner()))
                    .await
                    .expect("what we write reads back");
                assert_eq!(back, r);
                check_answer(&archive, &model, &r, &mut reached);
            }
            let res = codec
                .read_response(&proto, &mut futures::io::Cursor::new(&f))
                .await;
            let want = framed_body(&f, MAX_RESPONSE_SIZE)
                .and_then(|b| pb::StoreQueryResponse::decode(b).ok());
            assert_eq!(res.as_ref().ok(), want.as_ref(), "read_response");
            if f.len() > MAX_REQUEST_SIZE {
                reached.hit("stream over the request cap");
            }
            if let Ok(r) = res {
                reached.hit("response read");
                if f.len() > MAX_REQUEST_SIZE {
                    reached.hit("response over the request cap read");
                }
                if f.len() > MAX_RESPONSE_SIZE - 1024 {
                    reached.hit("response at the response cap read");
                }
                let mut out = futures::io::Cursor::new(Vec::new());
                codec
                    .write_response(&proto, &mut out, r.clone())
                    .await
                    .expect("write");
                let back = codec
                    .read_response(&proto, &mut futures::io::Cursor::new(out.into_inner()))
                    .await
                    .expect("what we write reads back");
                assert_eq!(back, r);
            }
        });
    });
    reached.print("fuzz_store_codec");
}
