//! A saved conversation as it is read back.
//!
//! `Conversation::save` writes every field at the top level, the governance fields
//! flattened in beside the others (the format predates [`Governance`]). Reading that
//! through `#[serde(flatten)]` would buffer each key's content in memory, then convert the
//! governance part once more (a map keyed by numbers does not read back from the buffer),
//! 15–30× the file's size at start-up, and would take a duplicated governance key instead
//! of refusing it. So a saved state is read into this plain struct, one pass straight
//! into the types, exactly as the conversation's own fields were read before the
//! governance fields moved into their own type; `From` then assembles the conversation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;

use super::catchup::CatchUp;
use super::freeze::{FreezeRound, TrailingWinner};
use super::governance::{Governance, PendingUpdate};
use super::join::{PendingJoin, RecentWelcome};
use super::phase::{Phase, SavedPhase};
use super::{Approved, Conversation, LeaveReason, OperatingMode, Tracked, evidence, fork};
use crate::config::{ConversationConfig, Millis};
use crate::consensus::ConsensusState;
use crate::conversation::ConversationState;
use crate::identity::MemberId;
use crate::scoring::Scores;
use crate::steward::StewardList;

/// Every saved field, under the name and with the default it has in the saved JSON
/// (what `#[serde(skip)]` leaves out of `Conversation` is not here either).
#[derive(Deserialize)]
pub(super) struct SavedConversation {
    name: String,
    me: MemberId,
    config: ConversationConfig,
    state: ConversationState,
    mode: OperatingMode,
    consensus: ConsensusState,
    proposals: BTreeMap<u32, Tracked>,
    approved: Vec<Approved>,
    emergencies: BTreeSet<u32>,
    pending_updates: BTreeMap<MemberId, PendingUpdate>,
    resolved: VecDeque<u32>,
    anchor: Option<Millis>,
    reelection_since: Option<Millis>,
    exhausted_since: Option<Millis>,
    freeze: Option<FreezeRound>,
    stewards: Option<StewardList>,
    next_retry_round: u32,
    silent: BTreeSet<MemberId>,
    scores: Scores,
    committed_hashes: VecDeque<[u8; 32]>,
    recent_commits: VecDeque<(u64, Vec<u8>)>,
    recent_welcomes: VecDeque<RecentWelcome>,
    pending_join: Option<PendingJoin>,
    urgent_target: Option<MemberId>,
    score_removals: BTreeSet<MemberId>,
    #[serde(default)]
    refused_candidates: VecDeque<[u8; 32]>,
    #[serde(default)]
    used_key_packages: VecDeque<[u8; 32]>,
    #[serde(default)]
    recent_adds: VecDeque<(u64, MemberId, Vec<MemberId>)>,
    #[serde(default)]
    recent_sizes: VecDeque<evidence::GroupSize>,
    synced: bool,
    #[serde(default)]
    inherited_approvals: BTreeSet<u32>,
    catch_up: CatchUp,
    #[serde(default)]
    election_proof: Option<u32>,
    #[serde(default)]
    early_stash: Vec<(Vec<u8>, Millis)>,
    #[serde(default)]
    last_announcement: Vec<u8>,
    #[serde(default)]
    trailing: Option<TrailingWinner>,
    #[serde(default)]
    fork_watch: fork::ForkWatch,
    #[serde(default)]
    sds: crate::sds::Channel,
    closed: Option<LeaveReason>,
}

impl From<SavedConversation> for Conversation {
    fn from(s: SavedConversation) -> Self {
        let phase = Phase::from_saved(SavedPhase {
            state: s.state,
            closed: s.closed,
            freeze: s.freeze,
            pending_join: s.pending_join,
            reelection_since: s.reelection_since,
        });
        let mut c = Conversation::blank(&s.name, s.me, s.config, phase);
        c.mode = s.mode;
        c.gov = Governance {
            consensus: s.consensus,
            proposals: s.proposals,
            approved: s.approved,
            emergencies: s.emergencies,
            pending_updates: s.pending_updates,
            resolved: s.resolved,
            urgent_target: s.urgent_target,
            score_removals: s.score_removals,
            inherited_approvals: s.inherited_approvals,
        };
        c.anchor = s.anchor;
        c.exhausted_since = s.exhausted_since;
        c.stewards = s.stewards;
        c.next_retry_round = s.next_retry_round;
        c.silent = s.silent;
        c.scores = s.scores;
        c.committed_hashes = s.committed_hashes;
        c.recent_commits = s.recent_commits;
        c.recent_welcomes = s.recent_welcomes;
        c.refused_candidates = s.refused_candidates;
        c.used_key_packages = s.used_key_packages;
        c.recent_adds = s.recent_adds;
        c.recent_sizes = s.recent_sizes;
        c.synced = s.synced;
        c.catch_up = s.catch_up;
        c.election_proof = s.election_proof;
        c.early_stash = s.early_stash;
        c.last_announcement = s.last_announcement;
        c.trailing = s.trailing;
        c.fork_watch = s.fork_watch;
        c.sds = s.sds;
        c
    }
}
