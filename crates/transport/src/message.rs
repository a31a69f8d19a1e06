//! 14/WAKU2-MESSAGE, its deterministic hash, and the relay's gossipsub message id.

use sha2::{Digest, Sha256};

/// Generated from `proto/waku/message.proto`.
#[allow(missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/waku.message.v1.rs"));
}

pub use pb::WakuMessage;

/// A version-0 WakuMessage as our relay publishes it: `payload` on `content_topic`,
/// stamped with the wall clock (ns) and our instance id in `meta` (how the relay tells
/// its own echo).
pub fn relay_message(payload: Vec<u8>, content_topic: String, meta: Vec<u8>) -> WakuMessage {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    WakuMessage {
        payload,
        content_topic,
        version: Some(0),
        timestamp: Some(now_ns),
        meta: Some(meta),
        rate_limit_proof: None,
        ephemeral: None,
    }
}

/// `sha256(pubsub_topic ‖ payload ‖ content_topic ‖ meta ‖ timestamp)`, timestamp as 8-byte
/// big-endian; an absent `meta` contributes nothing. The message's identity (validation
/// logs, stats, de-duplication above the relay); the relay's gossipsub message id is
/// [`relay_message_id`].
pub fn message_hash(pubsub_topic: &str, m: &WakuMessage) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(pubsub_topic.as_bytes());
    h.update(&m.payload);
    h.update(m.content_topic.as_bytes());
    if let Some(meta) = &m.meta {
        h.update(meta);
    }
    h.update(m.timestamp.unwrap_or(0).to_be_bytes());
    h.finalize().into()
}

/// The gossipsub message id of a relay message: SHA-256 of the message's bytes (the
/// encoded WakuMessage, gossipsub's `data`), as nwaku (`defaultMessageIdProvider`) and
/// js-waku (`msgIdFnStrictNoSign`) compute it, so relays dedupe and gossip (IHAVE/IWANT)
/// under the same ids.
pub fn relay_message_id(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn msg(payload: &str, meta: Option<&str>) -> WakuMessage {
        WakuMessage {
            payload: hex::decode(payload).unwrap(),
            content_topic: "/waku/2/default-content/proto".into(),
            version: None,
            timestamp: Some(0x175789bfa23f8400),
            meta: meta.map(|m| hex::decode(m).unwrap()),
            rate_limit_proof: None,
            ephemeral: None,
        }
    }

    const PUBSUB: &str = "/waku/2/default-waku/proto";

    #[test]
    fn spec_vectors() {
        let cases = [
            (
                msg("010203045445535405060708", Some("73757065722d736563726574")),
                "64cce733fed134e83da02b02c6f689814872b1a0ac97ea56b76095c3c72bfe05",
            ),
            (
                msg(
                    "010203045445535405060708",
                    Some(
                        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
                    ),
                ),
                "7158b6498753313368b9af8f6e0a0a05104f68f972981da42a43bc53fb0c1b27",
            ),
            (
                msg("010203045445535405060708", None),
                "a2554498b31f5bcdfcbf7fa58ad1c2d45f0254f3f8110a85588ec3cf10720fd8",
            ),
            (
                msg("", Some("73757065722d736563726574")),
                "483ea950cb63f9b9d6926b262bb36194d3f40a0463ce8446228350bd44e96de4",
            ),
        ];
        for (m, want) in cases {
            assert_eq!(hex::encode(message_hash(PUBSUB, &m)), want);
        }
    }

    #[test]
    fn field_numbers_round_trip() {
        let m = WakuMessage {
            payload: vec![1, 2, 3],
            content_topic: "/a/1/app_msg/proto".into(),
            version: Some(0),
            timestamp: Some(-5),
            meta: Some(vec![9; 16]),
            rate_limit_proof: None,
            ephemeral: Some(true),
        };
        let bytes = m.encode_to_vec();
        // content_topic is field 2 (tag 0x12), timestamp field 10 as sint64 (tag 0x50),
        // meta field 11 (tag 0x5a), ephemeral field 31 (tag 0xf8 0x01).
        assert!(bytes.windows(1).any(|w| w == [0x12]));
        assert!(bytes.windows(2).any(|w| w == [0x50, 0x09])); // zigzag(-5) = 9
        assert!(bytes.windows(2).any(|w| w == [0x5a, 16]));
        assert!(bytes.windows(3).any(|w| w == [0xf8, 0x01, 0x01]));
        assert_eq!(WakuMessage::decode(bytes.as_slice()).unwrap(), m);
    }
}
