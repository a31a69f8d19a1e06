//! What a relay checks before forwarding (64/WAKU2-NETWORK "message validation").

use prost::Message;

use super::MAX_MESSAGE_SIZE;
use crate::message::WakuMessage;

/// Why a message is rejected (and not relayed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Larger than the network's limit.
    #[error("message exceeds {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    /// Not a WakuMessage.
    #[error("not a WakuMessage: {0}")]
    Undecodable(String),
    /// Content topic not `/{app}/{version}/{name}/{encoding}` (optionally with generation).
    #[error("malformed content topic {0:?}")]
    BadContentTopic(String),
    /// Timestamp missing or too far from our clock.
    #[error("timestamp {0} ns is outside the allowed skew")]
    BadTimestamp(i64),
}

impl Rejection {
    /// Short label for counters.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Undecodable(_) => "undecodable",
            Self::BadContentTopic(_) => "bad_content_topic",
            Self::BadTimestamp(_) => "bad_timestamp",
        }
    }
}

fn content_topic_ok(t: &str) -> bool {
    let parts: Vec<&str> = t.split('/').collect();
    let segs = &parts[1.min(parts.len())..];
    parts.first() == Some(&"")
        && (segs.len() == 4 || segs.len() == 5)
        && segs
            .iter()
            .all(|s| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()))
}

/// Validates a relayed message against our clock (`now_ns`).
pub fn validate(data: &[u8], now_ns: i64, max_skew_secs: u64) -> Result<WakuMessage, Rejection> {
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(Rejection::TooLarge);
    }
    let m = WakuMessage::decode(data).map_err(|e| Rejection::Undecodable(e.to_string()))?;
    if !content_topic_ok(&m.content_topic) {
        return Err(Rejection::BadContentTopic(m.content_topic));
    }
    let ts = m.timestamp.unwrap_or(0);
    let skew = i128::from(max_skew_secs) * 1_000_000_000;
    // In i128: the sender's timestamp is a claim, and `ts - now` overflows i64 at the edges.
    if ts == 0 || (i128::from(ts) - i128::from(now_ns)).abs() > skew {
        return Err(Rejection::BadTimestamp(ts));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(topic: &str, ts: i64) -> Vec<u8> {
        WakuMessage {
            payload: vec![1],
            content_topic: topic.into(),
            timestamp: Some(ts),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn each_rejection_reason() {
        let now = 1_790_000_000_000_000_000;
        assert!(validate(&m("/chat/1/app_msg/proto", now), now, 20).is_ok());
        assert!(validate(&m("/0/chat/1/app_msg/proto", now + 19_000_000_000), now, 20).is_ok());
        assert_eq!(
            validate(&[0xff, 0xff, 0xff], now, 20).unwrap_err().label(),
            "undecodable"
        );
        assert_eq!(
            validate(&m("chat", now), now, 20).unwrap_err().label(),
            "bad_content_topic"
        );
        assert_eq!(
            validate(&m("/chat/1//proto", now), now, 20)
                .unwrap_err()
                .label(),
            "bad_content_topic"
        );
        assert_eq!(
            validate(&m("/chat/1/app_msg/proto", now - 21_000_000_000), now, 20)
                .unwrap_err()
                .label(),
            "bad_timestamp"
        );
        assert_eq!(
            validate(&m("/chat/1/app_msg/proto", i64::MIN), now, 20)
                .unwrap_err()
                .label(),
            "bad_timestamp"
        );
        assert_eq!(
            validate(&m("/chat/1/app_msg/proto", 0), now, 20)
                .unwrap_err()
                .label(),
            "bad_timestamp"
        );
        assert_eq!(
            validate(&vec![0u8; MAX_MESSAGE_SIZE + 1], now, 20)
                .unwrap_err()
                .label(),
            "too_large"
        );
    }
}
