//! Governance: everything the group decides by vote, held in one place.
//!
//! The proposals we know, their consensus sessions and votes, the changes decided YES and
//! waiting for a commit, the open emergencies and the bookkeeping around them (buffered
//! membership requests, decided ids, the target of an urgent removal, approvals inherited
//! from the conversation sync). The conversation holds it as one field; the flows that
//! feed it (receiving proposals and votes, applying outcomes) live in `proposals`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Deserializer, Serialize};

use super::{Approved, PendingUpdate, Tracked};
use crate::consensus::ConsensusState;
use crate::identity::MemberId;

/// The group's decisions in progress and decided, from our point of view.
///
/// Saved flattened into the conversation's JSON (its fields are top-level keys, as they
/// were before this type existed), so its field names are part of the saved format.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Governance {
    /// Consensus sessions: each proposal's header, votes and outcome.
    pub consensus: ConsensusState,
    /// Every proposal we know, by id, with its timers and status.
    pub proposals: BTreeMap<u32, Tracked>,
    /// Membership changes decided YES and waiting for a commit.
    pub approved: Vec<Approved>,
    /// Open emergency proposals: while any is open, lower-priority proposals are
    /// dropped (the RFC's partial freeze).
    pub emergencies: BTreeSet<u32>,
    /// Membership requests (announcements, removals) waiting for an epoch steward to
    /// propose them, by member.
    pub pending_updates: BTreeMap<MemberId, PendingUpdate>,
    /// Proposals whose outcome we applied, oldest first (at most `RESOLVED_CAP`): an
    /// outcome is applied once.
    pub resolved: VecDeque<u32>,
    /// The member an accepted score emergency removes: the next commit must carry that
    /// removal.
    pub urgent_target: Option<MemberId>,
    /// Members we filed a score emergency against, until it is decided (one at a time
    /// per member).
    pub score_removals: BTreeSet<MemberId>,
    /// Proposals open or accepted (not committed) when we joined, from the conversation
    /// sync: they count fewer voters than we have members, so their evidence is taken
    /// as it comes (see `judged_evidence`).
    #[serde(default)]
    pub inherited_approvals: BTreeSet<u32>,
}

/// Reads the governance fields of a saved conversation.
///
/// serde hands a flattened field its keys as buffered content, in which a map keyed by
/// numbers (`proposals`, the consensus sessions) has string keys that no longer read as
/// numbers. Read through a `serde_json::Value`, they read exactly as a conversation's
/// own fields did.
pub(super) fn from_flattened<'de, D: Deserializer<'de>>(d: D) -> Result<Governance, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}
