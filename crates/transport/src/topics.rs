//! Content topics (23/WAKU2-TOPICS) and sharding (WAKU2-RELAY-SHARDING).

use sha2::{Digest, Sha256};

/// The two subtopics of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subtopic {
    /// `app_msg`: everything inside the group.
    AppMsg,
    /// `welcome`: key package announcements and welcomes.
    Welcome,
}

impl Subtopic {
    /// Name in the content topic.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppMsg => "app_msg",
            Self::Welcome => "welcome",
        }
    }
}

/// Content-topic errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The conversation name cannot be a content-topic segment.
    #[error(
        "conversation name {0:?} cannot form a content topic: use 1-64 characters without '/', whitespace or control characters"
    )]
    BadConversation(String),
    /// Not `/{app}/1/{app_msg|welcome}/proto`.
    #[error("malformed content topic {0:?}")]
    Malformed(String),
}

/// Longest conversation name.
pub const MAX_CONVERSATION_LEN: usize = 64;

fn check_name(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CONVERSATION_LEN
        && !name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(TopicError::BadConversation(name.to_string()))
    }
}

/// `/{conversation}/1/{subtopic}/proto`.
pub fn content_topic(conversation: &str, subtopic: Subtopic) -> Result<String, TopicError> {
    check_name(conversation)?;
    Ok(format!("/{conversation}/1/{}/proto", subtopic.as_str()))
}

/// Parses a de-MLS content topic back into (conversation, subtopic).
pub fn parse_content_topic(topic: &str) -> Result<(String, Subtopic), TopicError> {
    let bad = || TopicError::Malformed(topic.to_string());
    let parts: Vec<&str> = topic.split('/').collect();
    if parts.len() != 5 || !parts[0].is_empty() || parts[2] != "1" || parts[4] != "proto" {
        return Err(bad());
    }
    check_name(parts[1]).map_err(|_| bad())?;
    let sub = match parts[3] {
        "app_msg" => Subtopic::AppMsg,
        "welcome" => Subtopic::Welcome,
        _ => return Err(bad()),
    };
    Ok((parts[1].to_string(), sub))
}

/// Autosharding: SHA-256(application ‖ version) mod shard count (big-endian integer).
pub fn autoshard(application: &str, version: &str, num_shards: u32) -> u32 {
    let d = Sha256::digest([application.as_bytes(), version.as_bytes()].concat());
    // (Σ byte·256^k) mod n, computed byte by byte.
    let n = num_shards.max(1) as u64;
    (d.iter().fold(0u64, |acc, b| (acc * 256 + *b as u64) % n)) as u32
}

/// `/waku/2/rs/{cluster}/{shard}`.
pub fn pubsub_topic(cluster: u32, shard: u32) -> String {
    format!("/waku/2/rs/{cluster}/{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_autoshard_example() {
        assert_eq!(
            hex::encode(Sha256::digest(b"myapp1")),
            "8e541178adbd8126068c47be6a221d77d64837221893a8e4e53139fb802d4928"
        );
        assert_eq!(autoshard("myapp", "1", 8), 0);
    }

    #[test]
    fn content_topics_round_trip_and_refuse_bad_names() {
        let t = content_topic("chat", Subtopic::Welcome).unwrap();
        assert_eq!(t, "/chat/1/welcome/proto");
        assert_eq!(
            parse_content_topic(&t).unwrap(),
            ("chat".into(), Subtopic::Welcome)
        );
        for bad in ["", "a/b", "a b", "x\n", &"z".repeat(65)] {
            assert!(content_topic(bad, Subtopic::AppMsg).is_err(), "{bad:?}");
        }
        for bad in [
            "/chat/2/app_msg/proto",
            "/chat/1/other/proto",
            "chat/1/app_msg/proto",
            "/chat/1/app_msg",
        ] {
            assert!(parse_content_topic(bad).is_err(), "{bad:?}");
        }
        assert_eq!(pubsub_topic(15, 1), "/waku/2/rs/15/1");
    }
}
