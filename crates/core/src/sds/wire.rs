//! The wire form of a chat message: its id, what its sender signs, and the checks a
//! received one passes before the channel sees it.

use sha2::{Digest, Sha256};

use super::{MAX_CONTENT, MAX_ENTRIES, MsgId, bloom};
use crate::identity::MemberId;
use crate::proto::pb;

const DOMAIN: &[u8] = b"demls/sds/v1";

/// Why a received SDS message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdsError {
    /// A field is malformed or out of bounds.
    #[error("malformed SDS message: {0}")]
    Malformed(&'static str),
    /// The message is for another conversation.
    #[error("SDS message for another channel")]
    WrongChannel,
    /// The id does not match the fields.
    #[error("SDS message id does not match its fields")]
    WrongId,
    /// The signature is not the claimed sender's.
    #[error("SDS message not signed by its sender")]
    BadSignature,
    /// A sync message (no content) must come from its sender itself.
    #[error("SDS sync relayed by another member")]
    RelayedSync,
}

/// A received message after its checks: who wrote it, its id, what it says.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Its author (signature-checked for content, the MLS sender for a sync).
    pub sender: MemberId,
    /// Its id (`None` for a sync, whose id means nothing).
    pub id: Option<MsgId>,
    /// The message.
    pub msg: pb::SdsMessage,
}

/// SHA-256 over the fields a message id binds.
pub fn message_id(
    channel: &str,
    sender: &MemberId,
    lamport: u64,
    epoch: u64,
    content: &[u8],
) -> MsgId {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(channel.as_bytes());
    h.update([0]);
    h.update(sender.as_bytes());
    h.update(lamport.to_be_bytes());
    h.update(epoch.to_be_bytes());
    h.update(content);
    h.finalize().into()
}

/// What a sender signs (EIP-191): the domain and the id.
pub fn signed_bytes(id: &MsgId) -> Vec<u8> {
    [DOMAIN, id.as_slice()].concat()
}

/// Parses a message id written as 64 lowercase hex digits.
pub(super) fn parse_id(s: &str) -> Option<MsgId> {
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

/// A member as a sender id on the wire: `0x` and 40 lowercase hex digits.
pub(super) fn sender_string(m: &MemberId) -> String {
    format!("0x{}", hex::encode(m.as_bytes()))
}

/// Parses a sender id written by [`sender_string`] (lowercase only, so each member has one).
pub(super) fn parse_sender(s: &str) -> Option<MemberId> {
    let h = s.strip_prefix("0x")?;
    if h.len() != 40 || h.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    MemberId::from_slice(&hex::decode(h).ok()?).ok()
}

/// Parses a history or repair entry: its id, the epoch hint, the sender if named.
pub(super) fn parse_entry(
    e: &pb::SdsHistoryEntry,
) -> Option<(MsgId, Option<u64>, Option<MemberId>)> {
    let id = parse_id(&e.message_id)?;
    let epoch = match &e.retrieval_hint {
        None => None,
        Some(h) => Some(u64::from_be_bytes(h.as_slice().try_into().ok()?)),
    };
    let sender = match &e.sender_id {
        None => None,
        Some(s) => Some(parse_sender(s)?),
    };
    Some((id, epoch, sender))
}

/// Checks a received message's form, id and signature. `mls_sender` is who the MLS layer
/// says sent the packet; a message with content may be another member's, re-broadcast for
/// repair, and then only its signature says whose it is.
pub fn check(
    channel: &str,
    mls_sender: MemberId,
    msg: pb::SdsMessage,
) -> Result<Checked, SdsError> {
    if msg.channel_id != channel {
        return Err(SdsError::WrongChannel);
    }
    let sender = parse_sender(&msg.sender_id).ok_or(SdsError::Malformed("sender_id"))?;
    if msg.causal_history.len() > MAX_ENTRIES || msg.repair_request.len() > MAX_ENTRIES {
        return Err(SdsError::Malformed("too many history or repair entries"));
    }
    if msg
        .causal_history
        .iter()
        .chain(&msg.repair_request)
        .any(|e| parse_entry(e).is_none())
    {
        return Err(SdsError::Malformed("history entry"));
    }
    let lamport = msg
        .lamport_timestamp
        .ok_or(SdsError::Malformed("no lamport timestamp"))?;
    if msg
        .bloom_filter
        .as_ref()
        .is_some_and(|b| b.len() != bloom::BYTES)
    {
        return Err(SdsError::Malformed("bloom filter size"));
    }
    match &msg.content {
        None => {
            if sender != mls_sender {
                return Err(SdsError::RelayedSync);
            }
            Ok(Checked {
                sender,
                id: None,
                msg,
            })
        }
        Some(content) => {
            if content.is_empty() || content.len() > MAX_CONTENT {
                return Err(SdsError::Malformed("content size"));
            }
            let id = message_id(channel, &sender, lamport, msg.epoch, content);
            if parse_id(&msg.message_id) != Some(id) {
                return Err(SdsError::WrongId);
            }
            if crate::identity::verify(&signed_bytes(&id), &msg.signature, &sender).is_err() {
                return Err(SdsError::BadSignature);
            }
            Ok(Checked {
                sender,
                id: Some(id),
                msg,
            })
        }
    }
}

/// Serde for a [`MsgId`] as hex, so saved state stays readable.
pub(super) mod hex_id {
    use super::MsgId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &MsgId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MsgId, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_id(&s).ok_or_else(|| serde::de::Error::custom("bad message id"))
    }
}
