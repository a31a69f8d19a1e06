//! The conversation's inputs and outputs, and the small enums they use.

use serde::{Deserialize, Serialize};

use super::reject::{InboundKind, RejectCause};
use crate::config::Millis;
use crate::consensus::ConsensusError;
use crate::identity::{EthSigner, MemberId};
use crate::mls::{MlsError, MlsIdentity};

/// The two content-topic subtopics of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subtopic {
    /// Everything inside the group: MLS application messages, commit candidates, catch-up.
    AppMsg,
    /// Key package announcements and MLS welcomes.
    Welcome,
}

impl Subtopic {
    /// The name used in the content topic.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppMsg => "app_msg",
            Self::Welcome => "welcome",
        }
    }
}

/// A packet to publish on one of the conversation's subtopics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutPacket {
    /// Where it goes.
    pub subtopic: Subtopic,
    /// Encoded `AppEnvelope` or `WelcomeEnvelope`.
    pub payload: Vec<u8>,
}

/// Who we are: the Ethereum key (member id, vote signatures) and the MLS signing identity
/// bound to it.
pub struct LocalIdentity {
    /// Ethereum key.
    pub eth: EthSigner,
    /// MLS credential and signature keys.
    pub mls: MlsIdentity,
}

impl LocalIdentity {
    /// Our member id.
    pub fn member_id(&self) -> MemberId {
        self.eth.member_id()
    }
}

/// Everything a call needs from the outside world: the MLS provider, our identity, an RNG
/// and the current time. Nothing else enters the protocol core.
pub struct Ctx<'a, P> {
    /// The openmls provider (crypto + storage).
    pub provider: &'a P,
    /// Our identity.
    pub identity: &'a LocalIdentity,
    /// Randomness (seeded in the simulator).
    pub rng: &'a mut dyn rand::RngCore,
    /// Now, in milliseconds since the Unix epoch.
    pub now: Millis,
}

/// The conversation state machine's states (reference: §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationState {
    /// Key package announced, waiting for a welcome.
    PendingJoin,
    /// Normal operation.
    Working,
    /// Collecting commit candidates; no new proposals, votes or chat.
    Freezing,
    /// Choosing and applying a candidate.
    Selection,
    /// The commit was missed; only emergency and election proposals.
    Reelection,
}

impl ConversationState {
    /// snake_case name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingJoin => "pending_join",
            Self::Working => "working",
            Self::Freezing => "freezing",
            Self::Selection => "selection",
            Self::Reelection => "reelection",
        }
    }
}

/// Who may commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatingMode {
    /// Only stewards on the list.
    Normal,
    /// Any member (after an accepted DEADLOCK emergency), until an election is accepted.
    Recovery,
}

/// Proposal kinds in priority order (a higher one freezes the lower ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProposalKind {
    /// Add or remove a member.
    Commit,
    /// Elect a new steward list.
    StewardElection,
    /// Emergency criteria (score removal, deadlock, violations).
    Emergency,
}

/// A member's role in the current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Commits this epoch.
    EpochSteward,
    /// Commits if the epoch steward is silent.
    BackupSteward,
    /// On the list, another epoch.
    Steward,
    /// Not on the list.
    Member,
}

impl Role {
    /// snake_case name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochSteward => "epoch_steward",
            Self::BackupSteward => "backup_steward",
            Self::Steward => "steward",
            Self::Member => "member",
        }
    }
}

/// Why a conversation ended for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaveReason {
    /// A commit removed us (vote, score, or our own leave request).
    Removed,
    /// We left while still pending: nothing was sent.
    LeftWhilePending,
    /// No welcome came within the pending-join window.
    JoinExpired,
}

/// Why a member rejoins by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejoinReason {
    /// Our branch of a fork lost (see `fork`).
    LostFork,
    /// The group moved on further than anyone keeps commits for us.
    TooFarBehind,
    /// A rejoin attempt got no welcome in time: trying again with a fresh key package.
    Retry,
}

impl RejoinReason {
    /// snake_case name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LostFork => "lost_fork",
            Self::TooFarBehind => "too_far_behind",
            Self::Retry => "retry",
        }
    }
}

/// What happened, for the user and the logs. Emitted in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The state machine moved.
    StateChanged {
        /// New state.
        state: ConversationState,
    },
    /// We are in: the welcome was processed.
    Joined {
        /// Our first epoch.
        epoch: u64,
    },
    /// A chat message: from another member, or ours as it went out (`sent_to`), so that
    /// our own messages reach the history by the same path, with the time they carry.
    Chat {
        /// Its author (MLS-authenticated, or by its signature when re-broadcast for
        /// repair by another member).
        sender: MemberId,
        /// Text.
        text: String,
        /// Epoch it was sent in.
        epoch: u64,
        /// Sender's timestamp, ms (for ours, `Ctx::now` of the send, which is what the
        /// members receive).
        timestamp: Millis,
        /// Its SDS message id (hex); `None` for a plain chat without SDS.
        id: Option<String>,
        /// `Some(n)` for our own message, sent to `n` members (the group without us); its
        /// delivery is then followed by `ChatDelivery`. `None` for a received one.
        sent_to: Option<u32>,
    },
    /// A chat message we know we missed and nobody re-sent in time: given up.
    ChatLost {
        /// Its SDS message id (hex).
        id: String,
        /// Its author, if the message that named it said.
        sender: Option<MemberId>,
    },
    /// An application message of an epoch whose keys we have deleted (more than
    /// [`crate::mls::PAST_EPOCHS`] commits ago) reached us: nobody can read it here any
    /// more. If it was chat that SDS knows we lack, `ChatLost` names it later.
    MessageExpired {
        /// The epoch it claims (a header: unauthenticated).
        epoch: u64,
        /// Ours.
        our_epoch: u64,
    },
    /// How far one of our chat messages got: members whose messages showed they have it.
    ChatDelivery {
        /// Our message's SDS id (hex), as returned when sent.
        id: String,
        /// Members that acknowledged it.
        acked: u32,
        /// Members it was sent to (those still in the group).
        of: u32,
        /// Final: everyone has it, or we stopped re-sending.
        done: bool,
    },
    /// A proposal is known (ours or a peer's).
    ProposalCreated {
        /// Proposal id.
        id: u32,
        /// Kind.
        kind: ProposalKind,
        /// What it proposes, by [`crate::conversation::Action::kind_name`]: `add_member`,
        /// `remove_member`, `steward_election` or `emergency` (the node API's names).
        kind_name: &'static str,
        /// Human summary, e.g. "remove 0x…".
        summary: String,
        /// Creator.
        owner: MemberId,
    },
    /// We can vote on this proposal (auto-vote at `auto_vote_at` otherwise).
    VoteRequested {
        /// Proposal id.
        id: u32,
        /// When the auto-vote fires.
        auto_vote_at: Millis,
    },
    /// Consensus decided a proposal.
    ProposalDecided {
        /// Proposal id.
        id: u32,
        /// Accepted?
        accepted: bool,
    },
    /// A commit moved the group to `epoch`.
    CommitApplied {
        /// New epoch.
        epoch: u64,
        /// Committer.
        committer: MemberId,
        /// Members added.
        added: Vec<MemberId>,
        /// Members removed.
        removed: Vec<MemberId>,
    },
    /// We left or were removed; the conversation is closed.
    Left {
        /// Why.
        reason: LeaveReason,
    },
    /// Something inbound was refused (counted by the node's metrics).
    Rejected {
        /// What was refused.
        what: InboundKind,
        /// Why, coarsely.
        cause: RejectCause,
        /// Why, for a human.
        reason: String,
    },
    /// Members applied a different commit into `fork_epoch` than we did: two branches of
    /// this conversation exist (see `fork`). Support = members of the group before the
    /// fork whose latest beacon is on that branch.
    ForkDetected {
        /// First epoch where the branches differ.
        fork_epoch: u64,
        /// Members on our branch (us included).
        our_support: u32,
        /// Members on the strongest other branch.
        their_support: u32,
    },
    /// Our branch lost the healing rule: we left it and rejoin the surviving one.
    BranchAbandoned {
        /// First epoch where the branches differ.
        fork_epoch: u64,
        /// Our chat messages sent on the abandoned branch since the fork: the surviving
        /// branch never saw them.
        unseen: Vec<super::fork::SentChat>,
    },
    /// We join this conversation afresh without user action.
    Rejoining {
        /// Why.
        reason: RejoinReason,
    },
    /// A recoverable local failure worth surfacing.
    Error {
        /// What we were doing.
        operation: &'static str,
        /// What failed.
        message: String,
    },
}

/// The result of one call: packets to publish and events, in order.
#[derive(Debug, Default)]
pub struct Output {
    /// Packets to publish.
    pub packets: Vec<OutPacket>,
    /// Events.
    pub events: Vec<Event>,
    /// Ask store peers (13/WAKU2-STORE) for this conversation's messages since this time
    /// (Unix ms): chat we know we lack that members have not re-sent.
    pub history_since: Option<Millis>,
}

impl Output {
    pub(crate) fn send(&mut self, subtopic: Subtopic, payload: Vec<u8>) {
        self.packets.push(OutPacket { subtopic, payload });
    }
    pub(crate) fn event(&mut self, e: Event) {
        self.events.push(e);
    }
    pub(crate) fn reject(&mut self, what: InboundKind, cause: RejectCause, reason: impl ToString) {
        let reason = reason.to_string();
        tracing::debug!(what = what.as_str(), cause = cause.as_str(), %reason, "rejected");
        self.events.push(Event::Rejected {
            what,
            cause,
            reason,
        });
    }
    /// Asks for history since `t` (the earliest of all asks made in one output).
    pub(crate) fn want_history_since(&mut self, t: Millis) {
        self.history_since = Some(self.history_since.map_or(t, |x| x.min(t)));
    }
    /// Appends another output.
    pub fn extend(&mut self, other: Output) {
        self.packets.extend(other.packets);
        self.events.extend(other.events);
        if let Some(t) = other.history_since {
            self.want_history_since(t);
        }
    }
}

/// A user command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a chat message.
    Chat(String),
    /// Propose removing a member (our YES vote bundled).
    Remove(MemberId),
    /// Vote on a proposal.
    Vote {
        /// Proposal id.
        id: u32,
        /// YES?
        yes: bool,
    },
    /// Leave the conversation.
    Leave,
}

/// Why a command cannot run. The node's API maps these to HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not allowed in this state.
    #[error("not allowed while the conversation is {}", .0.as_str())]
    Blocked(ConversationState),
    /// An emergency proposal is open; lower-priority proposals wait.
    #[error("an emergency proposal is open; membership changes wait until it is decided")]
    PartialFreeze,
    /// The target is not a member.
    #[error("{0} is not a member of this conversation")]
    NotAMember(MemberId),
    /// A removal of this member is already proposed or approved.
    #[error("a removal of {0} is already under way")]
    AlreadyProposed(MemberId),
    /// Use leave to remove yourself.
    #[error("use leave to remove yourself")]
    SelfRemoval,
    /// No such proposal.
    #[error("no open proposal {0}")]
    UnknownProposal(u32),
    /// Already voted.
    #[error("already voted on proposal {0}")]
    AlreadyVoted(u32),
    /// The conversation is closed.
    #[error("the conversation is closed")]
    Closed,
    /// Empty or oversized chat text.
    #[error("message text must be 1..=4096 bytes")]
    BadText,
    /// Consensus could not make our proposal or vote (signing, a taken id).
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// What the command produced could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why one of our application messages could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// We have no MLS group (yet, or any more).
    #[error("no MLS group yet")]
    NoGroup,
    /// Our Ethereum key did not sign the chat message.
    #[error("cannot sign the chat message")]
    ChatSignature,
    /// MLS did not encrypt or seal it.
    #[error(transparent)]
    Mls(#[from] MlsError),
}
