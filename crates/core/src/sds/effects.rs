//! What a step of the channel hands back to the conversation.

use super::MsgId;
use crate::config::Millis;
use crate::identity::MemberId;

/// A chat message ready for the user, in causal order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: MsgId,
    /// Who wrote it.
    pub sender: MemberId,
    /// The epoch it was sent in.
    pub epoch: u64,
    /// Its `content` (an encoded `ChatMessage`).
    pub content: Vec<u8>,
}

/// What one step of the channel produced.
#[derive(Debug, Default)]
pub struct Effects {
    /// Chat to show, in causal order.
    pub delivered: Vec<Delivery>,
    /// Ids given up on: (id, sender if known).
    pub lost: Vec<(MsgId, Option<MemberId>)>,
    /// Our messages whose acknowledgements changed: (id, acknowledged by, sent to, final).
    /// Final means it left the buffer: acknowledged by all, or given up.
    pub acks: Vec<AckStatus>,
    /// Encoded `SdsMessage`s to broadcast (re-sends and repairs), as is.
    pub rebroadcast: Vec<Vec<u8>>,
    /// A sync message is due now (repair requests to send, or an acknowledgement owed).
    pub sync_due: bool,
    /// Ask store peers for the conversation's history since this time: ids we lack went
    /// unrepaired for `t_max` (members may not re-send them, or nobody has them), and a
    /// store may hold the original ciphertext.
    pub history_since: Option<Millis>,
}

/// How far one of our messages got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckStatus {
    /// The message.
    pub id: MsgId,
    /// Members that have it (by their history or filter).
    pub acked: u32,
    /// Members it was sent to (still in the group).
    pub of: u32,
    /// It left the outgoing buffer: everyone has it, or we stopped re-sending.
    pub done: bool,
}
