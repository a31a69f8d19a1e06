//! What a proposal asks for, decoded from its payload, and the bookkeeping kept per proposal.

use prost::Message;
use serde::{Deserialize, Serialize};

use super::types::ProposalKind;
use crate::config::Millis;
use crate::identity::MemberId;
use crate::proto::pb;

/// The decoded payload of a consensus proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Add the member whose signed key package announcement this is.
    Add {
        /// Joiner.
        member: MemberId,
        /// TLS key package.
        key_package: Vec<u8>,
        /// Encoded `KeyPackageAnnouncement` (kept to re-check the binding).
        announcement: Vec<u8>,
    },
    /// Remove a member.
    Remove {
        /// Target.
        member: MemberId,
    },
    /// Install a new steward list.
    Election {
        /// Proposed list in slot order.
        stewards: Vec<MemberId>,
        /// Epoch it is generated for.
        election_epoch: u64,
        /// Retry round seed.
        retry_round: u32,
    },
    /// An emergency criteria proposal.
    Emergency {
        /// `ViolationType` as i32.
        violation: i32,
        /// Target, if any (none for DEADLOCK).
        target: Option<MemberId>,
        /// Creator.
        creator: MemberId,
        /// Epoch of the evidence.
        epoch: u64,
    },
}

impl Action {
    /// The priority class.
    pub fn kind(&self) -> ProposalKind {
        match self {
            Self::Add { .. } | Self::Remove { .. } => ProposalKind::Commit,
            Self::Election { .. } => ProposalKind::StewardElection,
            Self::Emergency { .. } => ProposalKind::Emergency,
        }
    }

    /// The member a membership change is about.
    pub fn member(&self) -> Option<MemberId> {
        match self {
            Self::Add { member, .. } | Self::Remove { member } => Some(*member),
            Self::Emergency { target, .. } => *target,
            Self::Election { .. } => None,
        }
    }

    /// The membership change an accepted proposal makes a commit carry: `(is_add,
    /// member)`. An accepted score-below-threshold emergency removes its target; other
    /// emergencies and elections change no membership.
    pub fn membership_change(&self) -> Option<(bool, MemberId)> {
        match self {
            Self::Add { member, .. } => Some((true, *member)),
            Self::Remove { member } => Some((false, *member)),
            Self::Emergency {
                violation,
                target: Some(t),
                ..
            } if *violation == pb::ViolationType::ScoreBelowThreshold as i32 => Some((false, *t)),
            _ => None,
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        match self {
            Self::Add { member, .. } => format!("add {member}"),
            Self::Remove { member } => format!("remove {member}"),
            Self::Election {
                stewards,
                election_epoch,
                ..
            } => format!(
                "elect stewards [{}] from epoch {election_epoch}",
                stewards
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Emergency {
                violation, target, ..
            } => {
                let v = pb::ViolationType::try_from(*violation)
                    .map(|v| v.as_str_name())
                    .unwrap_or("UNKNOWN");
                match target {
                    Some(t) => format!("emergency {v} against {t}"),
                    None => format!("emergency {v}"),
                }
            }
        }
    }

    /// Kind name used by the API.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Add { .. } => "add_member",
            Self::Remove { .. } => "remove_member",
            Self::Election { .. } => "steward_election",
            Self::Emergency { .. } => "emergency",
        }
    }

    /// Encodes as the proposal payload.
    pub fn to_payload(&self) -> Vec<u8> {
        use pb::conversation_update_request::Kind;
        let kind = match self {
            Self::Add { announcement, .. } => Kind::InviteMember(pb::InviteMember {
                announcement: pb::KeyPackageAnnouncement::decode(announcement.as_slice()).ok(),
            }),
            Self::Remove { member } => Kind::RemoveMember(pb::RemoveMember {
                member_id: member.to_vec(),
            }),
            Self::Election {
                stewards,
                election_epoch,
                retry_round,
            } => Kind::StewardElection(pb::StewardElectionProposal {
                proposed_stewards: stewards.iter().map(|s| s.to_vec()).collect(),
                election_epoch: *election_epoch,
                retry_round: *retry_round,
            }),
            Self::Emergency {
                violation,
                target,
                creator,
                epoch,
            } => Kind::Emergency(pb::EmergencyCriteriaProposal {
                evidence: Some(pb::ViolationEvidence {
                    violation_type: *violation,
                    target_member_id: target.map(|t| t.to_vec()).unwrap_or_default(),
                    evidence_payload: Vec::new(),
                    epoch: *epoch,
                    creator_member_id: creator.to_vec(),
                }),
            }),
        };
        pb::ConversationUpdateRequest { kind: Some(kind) }.encode_to_vec()
    }

    /// Decodes a proposal payload. Structural checks only; the caller checks meaning.
    pub fn from_payload(bytes: &[u8]) -> Result<Self, String> {
        use pb::conversation_update_request::Kind;
        let req = pb::ConversationUpdateRequest::decode(bytes)
            .map_err(|e| format!("undecodable payload: {e}"))?;
        let id = |b: &[u8]| MemberId::from_slice(b).map_err(|e| e.to_string());
        match req.kind {
            Some(Kind::InviteMember(inv)) => {
                let ann = inv.announcement.ok_or("invite without announcement")?;
                Ok(Self::Add {
                    member: id(&ann.member_id)?,
                    key_package: ann.key_package.clone(),
                    announcement: ann.encode_to_vec(),
                })
            }
            Some(Kind::RemoveMember(r)) => Ok(Self::Remove {
                member: id(&r.member_id)?,
            }),
            Some(Kind::StewardElection(e)) => Ok(Self::Election {
                stewards: e
                    .proposed_stewards
                    .iter()
                    .map(|s| id(s))
                    .collect::<Result<_, _>>()?,
                election_epoch: e.election_epoch,
                retry_round: e.retry_round,
            }),
            Some(Kind::Emergency(e)) => {
                let ev = e.evidence.ok_or("emergency without evidence")?;
                let target = if ev.target_member_id.is_empty() {
                    None
                } else {
                    Some(id(&ev.target_member_id)?)
                };
                Ok(Self::Emergency {
                    violation: ev.violation_type,
                    target,
                    creator: id(&ev.creator_member_id)?,
                    epoch: ev.epoch,
                })
            }
            None => Err("empty proposal payload".into()),
        }
    }
}

/// Where a proposal stands locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposalStatus {
    /// Votes are being collected.
    Voting,
    /// Decided YES; for membership changes, waiting for a commit.
    Accepted,
    /// Decided NO, failed, or expired.
    Rejected,
    /// Carried out by a commit.
    Committed,
}

impl ProposalStatus {
    /// snake_case name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voting => "voting",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Committed => "committed",
        }
    }
}

/// A proposal this member knows about.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tracked {
    /// Id.
    pub id: u32,
    /// Decoded payload.
    pub action: Action,
    /// Creator.
    pub owner: MemberId,
    /// Epoch we learnt of it.
    pub epoch: u64,
    /// Creation time its header claims (Unix seconds; 0 in states saved before it was
    /// kept): a member's renewed leave must be later than the one on record.
    #[serde(default)]
    pub made_s: u64,
    /// When the consensus timeout rule applies.
    pub timeout_at: Millis,
    /// When it expires.
    pub expires_at: Millis,
    /// Pending automatic vote, if we have not voted.
    pub auto_vote_at: Option<Millis>,
    /// The automatic vote's value.
    pub auto_vote: bool,
    /// Status.
    pub status: ProposalStatus,
    /// Requests for the missing votes still to send before the timeout rule applies
    /// (see `Conversation::tick_votes`).
    #[serde(default)]
    pub vote_asks_left: u8,
}

/// A membership change decided YES and waiting to be committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approved {
    /// The proposal that decided it (a SCORE_BELOW_THRESHOLD emergency for urgent removals).
    pub id: u32,
    /// What to do.
    pub change: Change,
}

/// An MLS membership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add with this key package.
    Add {
        /// Joiner.
        member: MemberId,
        /// TLS key package.
        key_package: Vec<u8>,
        /// A member rejoining (see `fork`): if it is in the group, the commit removes its
        /// old leaf too.
        #[serde(default)]
        rejoin: bool,
    },
    /// Remove.
    Remove {
        /// Target.
        member: MemberId,
    },
}

impl Change {
    /// The member concerned.
    pub fn member(&self) -> MemberId {
        match self {
            Self::Add { member, .. } | Self::Remove { member } => *member,
        }
    }
    /// Is it an add?
    pub fn is_add(&self) -> bool {
        matches!(self, Self::Add { .. })
    }
}
