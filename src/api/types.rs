//! The JSON the API speaks. Field names are a contract: scripts depend on them (see
//! `docs/API.md`); fields may be added, never renamed.

use serde::{Deserialize, Serialize};

/// `GET /status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// Our address, EIP-55.
    pub address: String,
    /// Our libp2p peer id (`16Uiu2…`, secp256k1).
    pub peer_id: String,
    /// Connected relay peers.
    pub peers: usize,
    /// Names of the conversations we are in.
    pub conversations: Vec<String>,
    /// Our libp2p listen addresses.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Conversations the node does not run until the operator releases or drops them
    /// (not listed in `conversations`).
    #[serde(default)]
    pub quarantined: Vec<QuarantineView>,
    /// Our Waku ENR (`enr:…`): what other nodes put in `waku.bootstrap` or
    /// `waku.discv5_bootstrap` to find us. Empty when discovery is off.
    #[serde(default)]
    pub enr: String,
}

/// A quarantined conversation: the node stopped running it after a panic in its
/// processing, or because its saved state cannot be restored. Its stored state is kept as
/// it was before the failing call; packets, timers and commands for it are refused until
/// `POST /conversations/{name}/release` or `/drop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineView {
    /// Conversation name.
    pub name: String,
    /// Why, one line (e.g. `panicked in packet: …`, `cannot be restored: …`).
    pub reason: String,
    /// Since when, ms since the Unix epoch.
    pub since: u64,
}

/// `POST /conversations/{name}/drop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedView {
    /// Conversation name.
    pub name: String,
    /// True: its state, MLS group and messages were deleted.
    pub dropped: bool,
}

/// One row of `GET /conversations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// Conversation name.
    pub name: String,
    /// `pending_join`, `working`, `freezing`, `selection` or `reelection`.
    pub state: String,
    /// Current MLS epoch.
    pub epoch: u64,
    /// Number of members.
    pub members: usize,
}

/// A member as shown by `GET /conversations/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Address, EIP-55.
    pub address: String,
    /// Peer score.
    pub score: i64,
    /// `epoch_steward`, `backup_steward`, `steward` or `member`.
    pub role: String,
    /// On its way out: it asked to leave, or its removal was accepted, and the commit
    /// that removes it has not come yet.
    #[serde(default)]
    pub pending_leave: bool,
}

/// The freeze round under way: how many of the expected commit candidates we hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeView {
    /// Stewards whose commit candidate we have seen.
    pub candidates: usize,
    /// Stewards whose candidate the round waits for (every eligible member in recovery).
    pub expected: usize,
    /// When selection happens at the latest, ms since the Unix epoch (earlier once every
    /// expected candidate is in).
    pub deadline: u64,
}

/// `GET /conversations/{name}`, and the answer to create / join.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    /// Conversation name.
    pub name: String,
    /// `pending_join`, `working`, `freezing`, `selection` or `reelection`.
    pub state: String,
    /// Current MLS epoch.
    pub epoch: u64,
    /// Members in MLS leaf order.
    pub members: Vec<MemberView>,
    /// While `freezing` or in `selection`: the freeze round's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<FreezeView>,
}

/// `POST /conversations/{name}/leave`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveView {
    /// Conversation name.
    pub name: String,
    /// True once the leave is under way (it completes when a commit removes us).
    pub leaving: bool,
}

/// `POST /conversations/{name}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentView {
    /// The message was handed to the relay.
    pub sent: bool,
}

/// One chat message, `GET /conversations/{name}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Sender address, EIP-55.
    pub sender: String,
    /// Text.
    pub text: String,
    /// MLS epoch it was sent in.
    pub epoch: u64,
    /// Sender's timestamp, ms since the Unix epoch.
    pub timestamp: u64,
    /// Its position in the conversation's history, from 1 (for paging: `?after=seq`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// Its SDS message id (hex), when it came under SDS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For our own messages: how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
}

/// How far one of our chat messages got, from the acknowledgements SDS carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// `sent` (nobody confirmed yet), `delivered_to_some`, `delivered` (every member it
    /// went to), or `unconfirmed` (re-sending stopped before everyone confirmed).
    pub state: String,
    /// Members that confirmed they have it.
    pub acked: u32,
    /// Members it was sent to (those still in the group).
    pub of: u32,
}

impl From<crate::storage::Delivery> for DeliveryView {
    fn from(d: crate::storage::Delivery) -> Self {
        let state = if d.acked >= d.of {
            "delivered"
        } else if d.done {
            "unconfirmed"
        } else if d.acked == 0 {
            "sent"
        } else {
            "delivered_to_some"
        };
        Self {
            state: state.to_string(),
            acked: d.acked,
            of: d.of,
        }
    }
}

/// `POST /conversations/{name}/remove`: the proposal that was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalRef {
    /// Proposal id (vote on it with `POST …/proposals/{id}/vote`).
    pub proposal_id: u32,
}

/// One row of `GET /conversations/{name}/proposals`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalView {
    /// Proposal id.
    pub id: u32,
    /// What it proposes: `add_member`, `remove_member`, `steward_election` or
    /// `emergency`.
    pub kind: String,
    /// `voting`, `accepted` (decided YES; a membership change waits for its commit),
    /// `rejected` (decided NO, failed or expired) or `committed`.
    pub status: String,
    /// YES votes so far.
    pub yes: u32,
    /// NO votes so far.
    pub no: u32,
    /// Votes expected (members at proposal time).
    pub expected: u32,
    /// Human summary (`remove 0xAb…`).
    #[serde(default)]
    pub summary: String,
    /// Who proposed it (EIP-55).
    #[serde(default)]
    pub owner: String,
    /// Our own vote, `yes` or `no`, once cast (by hand or automatically); absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub our_vote: Option<String>,
    /// While we have not voted: when the node votes for us, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_vote_at: Option<u64>,
    /// The vote the node casts then (`yes` or `no`), with `auto_vote_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_vote: Option<String>,
    /// When this node saw it decided, ms since the Unix epoch; absent while voting, and
    /// for proposals decided before the node's last start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<u64>,
}

/// `POST /conversations/{name}/proposals/{id}/vote`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteView {
    /// Proposal id.
    pub proposal_id: u32,
    /// The vote cast (true = yes).
    pub vote: bool,
}

/// One item of the `GET /events` stream (sent as SSE `id: {id}`, `event: {kind}`,
/// `data: {json}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    /// Position in the node's event stream: increasing, across restarts too (a resumed
    /// stream, `Last-Event-ID`, continues after it). 0 for events of a double without a
    /// log.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub id: u64,
    /// Conversation it concerns.
    pub conversation: String,
    /// Event kind (`state`, `chat`, `proposal`, `decided`, `commit`, `left`, …).
    pub kind: String,
    /// Kind-specific payload.
    pub data: serde_json::Value,
}

/// `GET /health` (readiness) and `GET /health/live` (liveness).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// `ok` (ready); `not_ready` (the node runs but the relay is not listening, no peer
    /// is connected although bootstrap peers are configured, or a conversation is
    /// stuck); `degraded` (some conversations are quarantined; the others run); `down`
    /// (the node's runtime stopped or does not answer).
    pub status: String,
    /// Why the node is `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The quarantined conversations (`degraded`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<QuarantineView>,
    /// Why the node is not ready, one line each (empty when `ok`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Whether the Waku relay is listening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_up: Option<bool>,
    /// Connected relay peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    /// Conversations out of `working` for longer than the protocol's timers explain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuck: Vec<StuckView>,
}

/// A conversation that has stayed out of `working` too long (`/health`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckView {
    /// Conversation name.
    pub name: String,
    /// The state it is in (`pending_join`, `freezing`, `selection`, `reelection`).
    pub state: String,
    /// Since when, ms since the Unix epoch.
    pub since: u64,
}

/// One connected relay peer, `GET /peers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// `outbound` (we dialed it) or `inbound` (it dialed us).
    pub direction: String,
    /// The remote address of the connection.
    pub address: String,
    /// The shards it relays (from 66/WAKU2-METADATA; empty until it answered).
    pub shards: Vec<u32>,
    /// The cluster id it reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<u32>,
    /// Its gossipsub score as we see it (negative: it misbehaved); absent before the
    /// first scoring round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// `GET /version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    /// `demls-node`.
    pub name: String,
    /// The crate version (`0.1.0`).
    pub version: String,
    /// The Waku relay protocol spoken.
    pub relay_protocol: String,
    /// The store protocol served and queried.
    pub store_protocol: String,
}

/// `GET /log-level` and the answer to `PUT /log-level`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevelView {
    /// The filter in force, in `RUST_LOG` syntax (`info`, `debug,libp2p=info`, …).
    pub level: String,
}

/// `PUT /log-level` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLevelRequest {
    /// The new filter, in `RUST_LOG` syntax.
    pub level: String,
}

impl HealthView {
    /// `ok`.
    pub fn ok() -> Self {
        Self {
            status: "ok".into(),
            ..Default::default()
        }
    }

    /// `down`, because of `error`.
    pub fn down(error: impl Into<String>) -> Self {
        Self {
            status: "down".into(),
            error: Some(error.into()),
            ..Default::default()
        }
    }

    /// Whether this is `down` (not live).
    pub fn is_down(&self) -> bool {
        self.status == "down"
    }

    /// Whether the node is ready (`ok`).
    pub fn is_ready(&self) -> bool {
        self.status == "ok"
    }
}

/// Every error body: `{"error": "…"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, one line.
    pub error: String,
}

/// `POST /conversations` body (create).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Conversation name.
    pub name: String,
}

/// `POST /conversations/{name}/messages` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Message text (non-empty).
    pub text: String,
}

/// `POST /conversations/{name}/remove` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// Address of the member to remove (`0x…`, any case).
    pub address: String,
}

/// A vote value: `"yes"` / `"no"` (JSON `true` / `false` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteValue {
    /// In favour.
    Yes,
    /// Against.
    No,
}

impl VoteValue {
    /// True for yes.
    pub fn is_yes(self) -> bool {
        self == VoteValue::Yes
    }
}

impl<'de> Deserialize<'de> for VoteValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::B(b)) => Ok(if b { VoteValue::Yes } else { VoteValue::No }),
            Ok(Raw::S(s)) => match s.to_ascii_lowercase().as_str() {
                "yes" => Ok(VoteValue::Yes),
                "no" => Ok(VoteValue::No),
                _ => Err(serde::de::Error::custom(format!(
                    "unknown vote {s:?}: expected \"yes\" or \"no\""
                ))),
            },
            Err(_) => Err(serde::de::Error::custom("a vote is \"yes\" or \"no\"")),
        }
    }
}

/// `POST /conversations/{name}/proposals/{id}/vote` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// `"yes"` or `"no"`.
    pub vote: VoteValue,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
