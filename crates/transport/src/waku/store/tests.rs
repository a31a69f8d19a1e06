use futures::executor::block_on;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

use super::*;

const PUBSUB: &str = "/waku/2/rs/15/3";
const CT: &str = "/chat/1/app_msg/proto";
const OTHER_CT: &str = "/chat/1/welcome/proto";

fn msg(payload: &[u8], ct: &str, ts: i64) -> (WakuMessage, ArchivedMessage) {
    let m = WakuMessage {
        payload: payload.to_vec(),
        content_topic: ct.into(),
        version: Some(0),
        timestamp: Some(ts),
        meta: Some(vec![7; 16]),
        rate_limit_proof: None,
        ephemeral: None,
    };
    let a = ArchivedMessage::eligible(PUBSUB, &m, m.encode_to_vec()).unwrap();
    (m, a)
}

/// An archive of `n` messages on CT at timestamps 1000, 1010, … and, in between, as
/// many on OTHER_CT; returns the CT entries in (timestamp, hash) order.
fn archive(n: usize) -> (MemoryArchive, Vec<ArchivedMessage>) {
    let a = MemoryArchive::new();
    let mut ours = vec![];
    for i in 0..n {
        let (_, e) = msg(format!("m{i}").as_bytes(), CT, 1000 + 10 * i as i64);
        assert!(a.insert(&e).unwrap());
        assert!(!a.insert(&e).unwrap(), "a second insert is no news");
        ours.push(e);
        let (_, o) = msg(format!("o{i}").as_bytes(), OTHER_CT, 1005 + 10 * i as i64);
        a.insert(&o).unwrap();
    }
    (a, ours)
}

fn content_req(limit: Option<u64>, forward: bool) -> pb::StoreQueryRequest {
    let mut r = history_request(PUBSUB, vec![CT.into()], None, None);
    r.pagination_limit = limit;
    r.pagination_forward = forward;
    r
}

fn hashes(r: &pb::StoreQueryResponse) -> Vec<MessageHash> {
    r.messages
        .iter()
        .map(|kv| kv.message_hash.clone().unwrap().try_into().unwrap())
        .collect()
}

/// Every field at the spec's number and wire type, checked against bytes written by hand.
#[test]
fn request_and_response_use_the_specs_field_numbers() {
    let req = pb::StoreQueryRequest {
        request_id: "r".into(),
        include_data: true,
        pubsub_topic: Some("p".into()),
        content_topics: vec!["c".into()],
        time_start: Some(-1),
        time_end: Some(1),
        message_hashes: vec![vec![0xaa]],
        pagination_cursor: Some(vec![0xbb]),
        pagination_forward: true,
        pagination_limit: Some(5),
    };
    let want: Vec<u8> = [
        &[0x0a, 1, b'r'][..],   // 1 request_id
        &[0x10, 1],             // 2 include_data
        &[0x52, 1, b'p'],       // 10 pubsub_topic
        &[0x5a, 1, b'c'],       // 11 content_topics
        &[0x60, 1],             // 12 time_start, sint64 zigzag(-1) = 1
        &[0x68, 2],             // 13 time_end, zigzag(1) = 2
        &[0xa2, 0x01, 1, 0xaa], // 20 message_hashes
        &[0x9a, 0x03, 1, 0xbb], // 51 pagination_cursor
        &[0xa0, 0x03, 1],       // 52 pagination_forward
        &[0xa8, 0x03, 5],       // 53 pagination_limit
    ]
    .concat();
    assert_eq!(req.encode_to_vec(), want);
    assert_eq!(pb::StoreQueryRequest::decode(want.as_slice()).unwrap(), req);

    let res = pb::StoreQueryResponse {
        request_id: "r".into(),
        status_code: Some(200),
        status_desc: Some("OK".into()),
        messages: vec![pb::WakuMessageKeyValue {
            message_hash: Some(vec![0xcc]),
            message: Some(WakuMessage {
                payload: vec![9],
                ..Default::default()
            }),
            pubsub_topic: Some("p".into()),
        }],
        pagination_cursor: Some(vec![0xdd]),
    };
    let want: Vec<u8> = [
        &[0x0a, 1, b'r'][..],   // 1 request_id
        &[0x50, 0xc8, 0x01],    // 10 status_code 200
        &[0x5a, 2, b'O', b'K'], // 11 status_desc
        &[0xa2, 0x01, 11],      // 20 messages, 11 bytes:
        &[0x0a, 1, 0xcc],       //   1 message_hash
        &[0x12, 3, 0x0a, 1, 9], //   2 message (payload 9)
        &[0x1a, 1, b'p'],       //   3 pubsub_topic
        &[0x9a, 0x03, 1, 0xdd], // 51 pagination_cursor
    ]
    .concat();
    assert_eq!(res.encode_to_vec(), want);
    assert_eq!(
        pb::StoreQueryResponse::decode(want.as_slice()).unwrap(),
        res
    );
}

fn proto() -> StreamProtocol {
    StreamProtocol::new(super::super::STORE_PROTOCOL)
}

#[test]
fn codec_round_trips_varint_length_prefixed() {
    let req = content_req(Some(3), true);
    let mut buf = futures::io::Cursor::new(Vec::new());
    block_on(StoreCodec::default().write_request(&proto(), &mut buf, req.clone())).unwrap();
    let bytes = buf.into_inner();
    let body = req.encode_to_vec();
    assert_eq!(
        bytes[0] as usize,
        body.len(),
        "one-byte varint length first"
    );
    assert_eq!(&bytes[1..], body.as_slice());
    let mut rd = futures::io::Cursor::new(bytes);
    assert_eq!(
        block_on(StoreCodec::default().read_request(&proto(), &mut rd)).unwrap(),
        req
    );

    let (a, _) = archive(3);
    let res = answer(Some(&a), &content_req(None, true));
    let mut buf = futures::io::Cursor::new(Vec::new());
    block_on(StoreCodec::default().write_response(&proto(), &mut buf, res.clone())).unwrap();
    let mut rd = futures::io::Cursor::new(buf.into_inner());
    assert_eq!(
        block_on(StoreCodec::default().read_response(&proto(), &mut rd)).unwrap(),
        res
    );
}

fn lp(len: u64) -> Vec<u8> {
    let mut v = vec![];
    prost::encoding::encode_varint(len, &mut v);
    v
}

#[test]
fn hostile_frames_are_errors_not_panics_or_allocations() {
    let read_req = |b: Vec<u8>| {
        let mut rd = futures::io::Cursor::new(b);
        block_on(StoreCodec::default().read_request(&proto(), &mut rd))
    };
    let read_res = |b: Vec<u8>| {
        let mut rd = futures::io::Cursor::new(b);
        block_on(StoreCodec::default().read_response(&proto(), &mut rd))
    };
    // Announced lengths over the bounds: refused before reading (nothing follows).
    assert!(read_req(lp(MAX_REQUEST_SIZE as u64 + 1)).is_err());
    assert!(read_res(lp(MAX_RESPONSE_SIZE as u64 + 1)).is_err());
    assert!(read_res(lp(u64::MAX)).is_err());
    // A varint that never ends, an empty stream, a truncated body.
    assert!(read_req(vec![0xff; 16]).is_err());
    assert!(read_req(vec![]).is_err());
    assert!(read_req([lp(10), vec![0x0a, 5, b'a']].concat()).is_err());
    // Not protobuf: a field with wire type 7, a length past the end.
    assert!(read_req([lp(2), vec![0x0f, 0x00]].concat()).is_err());
    assert!(read_res([lp(2), vec![0x0a, 0x7f]].concat()).is_err());
    // Within the bound: read.
    let ok = [lp(0), vec![]].concat();
    assert_eq!(read_req(ok).unwrap(), pb::StoreQueryRequest::default());
}

/// Random bytes as requests: decoding fails or the answer is a status, never a panic.
#[test]
fn random_requests_get_a_status_never_a_panic() {
    let (a, ours) = archive(5);
    let mut seeds = vec![
        content_req(Some(2), false).encode_to_vec(),
        pb::StoreQueryRequest {
            message_hashes: ours.iter().map(|e| e.hash.to_vec()).collect(),
            pagination_cursor: Some(ours[0].hash.to_vec()),
            ..Default::default()
        }
        .encode_to_vec(),
    ];
    let mut rng = rand::thread_rng();
    use rand::Rng;
    for i in 0..20_000 {
        let base = seeds[i % seeds.len()].clone();
        let mut b = base;
        for _ in 0..rng.gen_range(1..6) {
            match rng.gen_range(0..3) {
                0 if !b.is_empty() => {
                    let j = rng.gen_range(0..b.len());
                    b[j] = rng.r#gen();
                }
                1 if !b.is_empty() => {
                    let j = rng.gen_range(0..b.len());
                    b.truncate(j);
                }
                _ => b.push(rng.r#gen()),
            }
        }
        if let Ok(req) = pb::StoreQueryRequest::decode(b.as_slice()) {
            let res = answer(Some(&a), &req);
            let code = res.status_code.unwrap();
            assert!([200, 400].contains(&code), "{code}");
            assert!(res.messages.len() <= MAX_PAGE_SIZE);
            if i % 1000 == 0 {
                seeds.push(b);
            }
        }
    }
}

#[test]
fn forward_and_backward_pages_cover_every_match_once_in_forward_order() {
    let (a, ours) = archive(7);
    let want: Vec<MessageHash> = ours.iter().map(|e| e.hash).collect();
    for forward in [true, false] {
        let mut req = content_req(Some(3), forward);
        let mut pages = vec![];
        loop {
            let res = answer(Some(&a), &req);
            assert_eq!(res.status_code, Some(200));
            assert_eq!(res.request_id, req.request_id);
            let h = hashes(&res);
            assert!(h.len() <= 3);
            // Each page lists its entries in forward order.
            let pos: Vec<usize> = h
                .iter()
                .map(|x| want.iter().position(|w| w == x).unwrap())
                .collect();
            assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
            for kv in &res.messages {
                assert_eq!(kv.pubsub_topic.as_deref(), Some(PUBSUB));
                assert_eq!(kv.message.as_ref().unwrap().content_topic, CT);
            }
            pages.push(h.clone());
            match res.pagination_cursor {
                Some(c) => {
                    // Forward: the last entry included; backward: the first.
                    let expect = if forward { h.last() } else { h.first() };
                    assert_eq!(c.as_slice(), expect.unwrap());
                    req.pagination_cursor = Some(c);
                }
                None => break,
            }
        }
        if !forward {
            pages.reverse();
        }
        assert_eq!(pages.concat(), want, "forward = {forward}");
        assert_eq!(pages.len(), 3);
    }
}

#[test]
fn time_range_is_start_inclusive_end_exclusive_and_topics_filter() {
    let (a, ours) = archive(5); // CT at 1000, 1010, …, 1040
    let req = history_request(PUBSUB, vec![CT.into()], Some(1010), Some(1030));
    let res = answer(Some(&a), &req);
    assert_eq!(hashes(&res), vec![ours[1].hash, ours[2].hash]);
    // Both content topics; time only (no topics): everything in range.
    let both = history_request(
        PUBSUB,
        vec![CT.into(), OTHER_CT.into()],
        Some(1000),
        Some(1011),
    );
    assert_eq!(answer(Some(&a), &both).messages.len(), 3);
    let time_only = pb::StoreQueryRequest {
        time_start: Some(1035),
        include_data: true,
        ..Default::default()
    };
    // CT at 1040, OTHER_CT at 1035 and 1045.
    assert_eq!(answer(Some(&a), &time_only).messages.len(), 3);
    // Another pubsub topic: nothing.
    let other = history_request("/waku/2/rs/15/4", vec![CT.into()], None, None);
    assert!(answer(Some(&a), &other).messages.is_empty());
}

#[test]
fn hash_lookups_and_presence_queries() {
    let (a, ours) = archive(4);
    let unknown = [0x42u8; 32].to_vec();
    let req = pb::StoreQueryRequest {
        request_id: "presence".into(),
        include_data: false,
        message_hashes: vec![ours[3].hash.to_vec(), unknown, ours[1].hash.to_vec()],
        ..Default::default()
    };
    let res = answer(Some(&a), &req);
    assert_eq!(res.status_code, Some(200));
    assert_eq!(hashes(&res), vec![ours[1].hash, ours[3].hash]);
    assert!(
        res.messages
            .iter()
            .all(|kv| kv.message.is_none() && kv.pubsub_topic.is_none())
    );
    let with_data = pb::StoreQueryRequest {
        include_data: true,
        ..req
    };
    let res = answer(Some(&a), &with_data);
    for kv in &res.messages {
        verify_entry(&with_data, kv).unwrap();
    }
}

#[test]
fn requests_breaking_the_rules_get_400_and_no_archive_503() {
    let (a, ours) = archive(2);
    let bad = |r: pb::StoreQueryRequest, why: &str| {
        let res = answer(Some(&a), &r);
        assert_eq!(res.status_code, Some(400), "{why}");
        assert!(res.messages.is_empty());
        assert!(res.status_desc.is_some());
    };
    let mut mixed = content_req(None, true);
    mixed.message_hashes = vec![ours[0].hash.to_vec()];
    bad(mixed, "content filter and hashes");
    bad(
        pb::StoreQueryRequest {
            pubsub_topic: Some(PUBSUB.into()),
            ..Default::default()
        },
        "pubsub topic without content topics",
    );
    bad(
        pb::StoreQueryRequest {
            content_topics: vec![CT.into()],
            ..Default::default()
        },
        "content topics without pubsub topic",
    );
    bad(
        history_request(PUBSUB, vec![CT.into(); MAX_CONTENT_TOPICS + 1], None, None),
        "too many content topics",
    );
    bad(
        pb::StoreQueryRequest {
            message_hashes: vec![vec![1; 32]; MAX_HASHES + 1],
            ..Default::default()
        },
        "too many hashes",
    );
    bad(
        pb::StoreQueryRequest {
            message_hashes: vec![vec![1; 31]],
            ..Default::default()
        },
        "short hash",
    );
    let mut cursor = content_req(None, true);
    cursor.pagination_cursor = Some(vec![1; 33]);
    bad(cursor.clone(), "long cursor");
    cursor.pagination_cursor = Some(vec![1; 32]);
    bad(cursor, "unknown cursor");
    let huge_id = pb::StoreQueryRequest {
        request_id: "é".repeat(1000),
        ..Default::default()
    };
    let res = answer(None, &huge_id);
    assert_eq!(res.status_code, Some(503));
    assert!(res.request_id.len() <= MAX_REQUEST_ID);
}

#[test]
fn page_size_is_capped_and_the_byte_budget_cuts_pages() {
    let a = MemoryArchive::new();
    for i in 0..150 {
        a.insert(&msg(&[i as u8], CT, 1 + i).1).unwrap();
    }
    for limit in [None, Some(0), Some(1000)] {
        let res = answer(Some(&a), &content_req(limit, true));
        assert_eq!(res.messages.len(), MAX_PAGE_SIZE, "{limit:?}");
        assert!(res.pagination_cursor.is_some());
    }
    // 100 KiB messages: the 2 MiB budget stops a page at 20, with a cursor, and the
    // next page goes on from there.
    let big = MemoryArchive::new();
    let mut all = vec![];
    for i in 0..30 {
        let e = msg(&vec![i as u8; 100 * 1024], CT, 1 + i).1;
        big.insert(&e).unwrap();
        all.push(e.hash);
    }
    let mut req = content_req(Some(100), true);
    let first = answer(Some(&big), &req);
    assert_eq!(first.messages.len(), 20);
    assert!(first.encoded_len() <= RESPONSE_BYTE_BUDGET + 1024);
    req.pagination_cursor = first.pagination_cursor.clone();
    let second = answer(Some(&big), &req);
    assert_eq!(second.pagination_cursor, None);
    assert_eq!([hashes(&first), hashes(&second)].concat(), all);
}

#[test]
fn entries_are_verified_against_their_hash_and_the_request() {
    let (a, _) = archive(2);
    let req = content_req(None, true);
    let res = answer(Some(&a), &req);
    let good = res.messages[0].clone();
    assert!(verify_entry(&req, &good).is_ok());
    let mut forged = good.clone();
    forged.message.as_mut().unwrap().payload = b"forged".to_vec();
    assert_eq!(verify_entry(&req, &forged), Err(BadEntry::Mismatch));
    let mut short = good.clone();
    short.message_hash = Some(vec![1; 5]);
    assert_eq!(verify_entry(&req, &short), Err(BadEntry::Hash));
    let mut bare = good.clone();
    bare.pubsub_topic = None;
    assert_eq!(verify_entry(&req, &bare), Err(BadEntry::NoData));
    // A genuine message we did not ask for (another content topic), rehashed correctly.
    let (m, e) = msg(b"x", OTHER_CT, 1000);
    let unasked = pb::WakuMessageKeyValue {
        message_hash: Some(e.hash.to_vec()),
        message: Some(m),
        pubsub_topic: Some(PUBSUB.into()),
    };
    assert_eq!(verify_entry(&req, &unasked), Err(BadEntry::Unasked));
    let (mut m, _) = msg(b"y", CT, 1000);
    m.ephemeral = Some(true);
    let eph = pb::WakuMessageKeyValue {
        message_hash: Some(message_hash(PUBSUB, &m).to_vec()),
        message: Some(m),
        pubsub_topic: Some(PUBSUB.into()),
    };
    assert_eq!(verify_entry(&req, &eph), Err(BadEntry::NotStorable));
}

#[test]
fn latest_timestamp_per_conversation() {
    let (a, _) = archive(3);
    assert_eq!(
        a.latest_timestamp(PUBSUB, &[CT.into()]).unwrap(),
        Some(1020)
    );
    assert_eq!(
        a.latest_timestamp(PUBSUB, &[CT.into(), OTHER_CT.into()])
            .unwrap(),
        Some(1025)
    );
    assert_eq!(a.latest_timestamp("/x", &[CT.into()]).unwrap(), None);
}

#[test]
fn rate_limiter_allows_a_burst_then_the_refill_rate() {
    let mut r = RateLimiter::new(3, 2);
    let p = PeerId::random();
    let t0 = Instant::now();
    assert!((0..3).all(|_| r.allow(p, t0)));
    assert!(!r.allow(p, t0));
    assert!(r.allow(PeerId::random(), t0), "per peer");
    assert!(r.allow(p, t0 + Duration::from_millis(500)));
    assert!(!r.allow(p, t0 + Duration::from_millis(500)));
    r.forget(&p);
    assert!(r.allow(p, t0));
}
