//! Fuzz targets for what a Waku relay parses from the network: the relay validator
//! (`waku::validate`, which decodes the `WakuMessage` and checks topic, timestamp and size),
//! the `WakuMessage` decoder and deterministic hash, the content-topic parser, and the
//! 66/WAKU2-METADATA length-prefixed codec. Random and structured bytes (well-formed
//! messages with hostile field values, then mutated).
//!
//! The fuzz loop and byte generators are the core targets' (`crates/core/tests/fuzz_common`,
//! included by path); the metadata codec is private to the crate, so its module is
//! compiled into this test by path too. See `docs/FUZZING.md`.

#[path = "../../core/tests/fuzz_common/bytes.rs"]
mod bytes;
#[path = "../src/waku/metadata.rs"]
#[allow(dead_code, unreachable_pub)]
mod metadata;
#[path = "../../core/tests/fuzz_common/runner.rs"]
mod runner;

use bytes::{
    I64_EDGES, any_i64, any_len, any_string, any_u32, any_u64, mutate, random_bytes,
    random_pb_message, varint,
};
use demls_transport::message::{WakuMessage, message_hash};
use demls_transport::waku::{MAX_MESSAGE_SIZE, validate};
use demls_transport::{Subtopic, autoshard, content_topic, parse_content_topic, pubsub_topic};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use runner::fuzz;

/// The validator's clock in the targets: a realistic now, ns.
const NOW_NS: i64 = 1_790_000_000_000_000_000;

fn topic(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0..=3 => {
            let name = any_string(rng, "chat");
            let sub = if rng.r#gen() { "app_msg" } else { "welcome" };
            format!("/{name}/1/{sub}/proto")
        }
        4 => format!("/0/{}/1/app_msg/proto", any_string(rng, "chat")),
        5 => "/".repeat(rng.gen_range(0..8)),
        6 => (0..rng.gen_range(0..8))
            .map(|_| any_string(rng, "x"))
            .collect::<Vec<_>>()
            .join("/"),
        7 => String::from_utf8_lossy(&random_bytes(rng, 80)).into_owned(),
        _ => any_string(rng, "/chat/1/app_msg/proto"),
    }
}

fn timestamp(rng: &mut StdRng) -> Option<i64> {
    match rng.gen_range(0..10) {
        0 => None,
        1..=3 => Some(NOW_NS + rng.gen_range(-30_000_000_000..30_000_000_000)),
        4 => Some(*I64_EDGES.choose(rng).expect("x")),
        5 => Some(NOW_NS.wrapping_add(i64::MIN)), // difference exactly i64::MIN
        _ => Some(any_i64(rng)),
    }
}

fn waku_message(rng: &mut StdRng) -> WakuMessage {
    WakuMessage {
        payload: match rng.gen_range(0..8) {
            0 => vec![0u8; rng.gen_range(MAX_MESSAGE_SIZE - 64..MAX_MESSAGE_SIZE + 64)],
            _ => random_bytes(rng, 2048),
        },
        content_topic: topic(rng),
        version: rng.gen_bool(0.7).then(|| any_u32(rng)),
        timestamp: timestamp(rng),
        meta: rng.gen_bool(0.7).then(|| random_bytes(rng, 64)),
        rate_limit_proof: rng.gen_bool(0.1).then(|| random_bytes(rng, 256)),
        ephemeral: rng.gen_bool(0.3).then(|| rng.r#gen()),
    }
}

fn relay_bytes(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0 => random_bytes(rng, 4096),
        1 => random_pb_message(rng, 3),
        2..=6 => waku_message(rng).encode_to_vec(),
        _ => {
            let m = waku_message(rng).encode_to_vec();
            mutate(rng, &m, 6, MAX_MESSAGE_SIZE + 1024)
        }
    }
}

/// The validator and the `WakuMessage` decoder. Oracles: no panic; an accepted message is
/// the decoded input, within the size limit, on a well-formed content topic, with a
/// non-zero timestamp within the skew of the clock (computed without overflow here).
#[test]
fn fuzz_waku_validate() {
    fuzz::<StdRng, _>("fuzz_waku_validate", 4_000, |rng, case| {
        let data = relay_bytes(rng);
        let now = match rng.gen_range(0..4) {
            0 => any_i64(rng),
            _ => NOW_NS,
        };
        let skew: u64 = match rng.gen_range(0..4) {
            0 => any_u64(rng),
            _ => 20,
        };
        case.input("data", &data);
        case.note(format!(
            "validate(data, now_ns = {now}, max_skew_secs = {skew})"
        ));
        let decoded = WakuMessage::decode(data.as_slice());
        if let Ok(m) = &decoded {
            let _ = message_hash("/waku/2/rs/15/0", m);
            let again = WakuMessage::decode(m.encode_to_vec().as_slice()).expect("re-decode");
            assert_eq!(&again, m, "decode(encode(m)) != m");
        }
        match validate(&data, now, skew) {
            Ok(m) => {
                assert!(
                    data.len() <= MAX_MESSAGE_SIZE,
                    "accepted {} bytes",
                    data.len()
                );
                assert_eq!(
                    Some(&m),
                    decoded.as_ref().ok(),
                    "accepted a message it did not decode"
                );
                let ts = m.timestamp.unwrap_or(0);
                assert_ne!(ts, 0, "accepted a message without a timestamp");
                let diff = (ts as i128 - now as i128).unsigned_abs();
                let allowed = u128::from(skew) * 1_000_000_000;
                assert!(
                    diff <= allowed,
                    "accepted timestamp {ts} at {now} with skew {skew} s"
                );
                let segs: Vec<&str> = m.content_topic.split('/').collect();
                assert!(
                    segs[0].is_empty() && (5..=6).contains(&segs.len()),
                    "accepted content topic {:?}",
                    m.content_topic
                );
            }
            Err(e) => {
                let _ = (e.label(), e.to_string());
            }
        }
    });
}

/// Content topics: parsing never panics, and a topic we build parses back.
#[test]
fn fuzz_content_topics() {
    fuzz::<StdRng, _>("fuzz_content_topics", 5_000, |rng, case| {
        let t = topic(rng);
        case.input("topic", t.as_bytes());
        let _ = parse_content_topic(&t);
        let name = any_string(rng, "chat");
        case.input("name", name.as_bytes());
        for sub in [Subtopic::AppMsg, Subtopic::Welcome] {
            if let Ok(ct) = content_topic(&name, sub) {
                assert_eq!(
                    parse_content_topic(&ct).expect("our own content topic parses"),
                    (name.clone(), sub)
                );
            }
        }
        let n = any_u32(rng);
        let shard = autoshard(&name, "1", n);
        assert!(shard < n.max(1), "shard {shard} of {n}");
        let _ = pubsub_topic(any_u32(rng), shard);
    });
}

/// A length-prefixed metadata frame: the right prefix, a long varint, a huge or short
/// length, a truncated body.
fn metadata_frame(rng: &mut StdRng) -> Vec<u8> {
    let body = match rng.gen_range(0..4) {
        0 => metadata::pb::WakuMetadataRequest {
            cluster_id: rng.gen_bool(0.8).then(|| any_u32(rng)),
            shards: (0..any_len(rng, 2000)).map(|_| any_u32(rng)).collect(),
        }
        .encode_to_vec(),
        1 => random_pb_message(rng, 2),
        2 => vec![0x12; rng.gen_range(60_000..70_000)],
        _ => random_bytes(rng, 512),
    };
    let mut v = match rng.gen_range(0..8) {
        0 => varint(any_u64(rng), 0),
        1 => varint(body.len() as u64, rng.gen_range(1..6)),
        2 => varint(body.len() as u64 + 1, 0),
        3 => vec![0xff; rng.gen_range(1..12)],
        _ => varint(body.len() as u64, 0),
    };
    v.extend(body);
    if rng.gen_bool(0.2) {
        v = mutate(rng, &v, 4, 1 << 17);
    }
    v
}

/// The metadata codec reading requests and responses from a stream. Oracles: no panic;
/// what it accepts writes back and reads back the same.
#[test]
fn fuzz_metadata_codec() {
    let proto = StreamProtocol::new("/vac/waku/metadata/1.0.0");
    fuzz::<StdRng, _>("fuzz_metadata_codec", 3_000, |rng, case| {
        let frame = if rng.gen_bool(0.9) {
            metadata_frame(rng)
        } else {
            let mut b = vec![0u8; any_len(rng, 256)];
            rng.fill_bytes(&mut b);
            b
        };
        case.input("stream", &frame);
        let mut codec = metadata::MetadataCodec::default();
        futures::executor::block_on(async {
            let req = codec
                .read_request(&proto, &mut futures::io::Cursor::new(frame.clone()))
                .await;
            if let Ok(r) = req {
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
            }
            let res = codec
                .read_response(&proto, &mut futures::io::Cursor::new(frame.clone()))
                .await;
            if let Ok(r) = res {
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
}
