//! What an `Event::Rejected` names: which kind of inbound message was refused and, coarsely,
//! why. The human reason stays a sentence; the two enums are what a caller can count or
//! match on without parsing it (a flood of `Malformed` packets is noise, `Unauthenticated`
//! commits are an attack, `Stale` votes are a slow network).

use crate::consensus::Rejection;
use crate::mls::DecryptError;
use crate::sds::SdsError;

/// Which kind of inbound message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InboundKind {
    /// An application envelope or MLS application message as a whole.
    Packet,
    /// A chat message (SDS).
    Chat,
    /// A consensus proposal.
    Proposal,
    /// A vote, MLS-framed or sealed.
    Vote,
    /// A commit candidate or catch-up commit.
    Commit,
    /// An accepted add that cannot be committed (its key package no longer fits).
    ApprovedAdd,
    /// A decided proposal a commit carries as its evidence.
    Evidence,
    /// A key package announcement, or the membership request buffered from one.
    KeyPackage,
    /// A welcome envelope or member welcome.
    Welcome,
    /// The conversation sync that comes with a welcome.
    Sync,
    /// A steward election result.
    Election,
    /// An epoch beacon (fork detection).
    Beacon,
}

impl InboundKind {
    /// The name used by the node's API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Packet => "packet",
            Self::Chat => "chat",
            Self::Proposal => "proposal",
            Self::Vote => "vote",
            Self::Commit => "commit",
            Self::ApprovedAdd => "approved add",
            Self::Evidence => "evidence",
            Self::KeyPackage => "key_package",
            Self::Welcome => "welcome",
            Self::Sync => "sync",
            Self::Election => "election",
            Self::Beacon => "beacon",
        }
    }
}

/// Why an inbound message was refused, coarsely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectCause {
    /// It does not decode, or a field is missing or out of shape.
    Malformed,
    /// A signature, the MLS authentication or the claimed sender does not hold.
    Unauthenticated,
    /// Replayed, duplicated, expired, or about a state we do not hold.
    Stale,
    /// Well formed and authentic, but against a protocol rule (a non-member, a wrong voter
    /// count, outside its round, content we vote against).
    Invalid,
    /// Beyond a bound kept against floods (open proposals per owner, candidates per
    /// steward).
    OverLimit,
    /// MLS could not process it here (a candidate that does not stage or merge, a welcome
    /// it refuses).
    Unprocessable,
}

impl RejectCause {
    /// snake_case name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unauthenticated => "unauthenticated",
            Self::Stale => "stale",
            Self::Invalid => "invalid",
            Self::OverLimit => "over_limit",
            Self::Unprocessable => "unprocessable",
        }
    }
}

/// A typed refusal that knows its own cause.
pub(crate) trait Cause {
    fn cause(&self) -> RejectCause;
}

impl Cause for Rejection {
    fn cause(&self) -> RejectCause {
        match self {
            Self::EmptyField(_) | Self::Malformed(_) | Self::BrokenChain(_) => {
                RejectCause::Malformed
            }
            Self::HashMismatch | Self::BadSignature(_) => RejectCause::Unauthenticated,
            Self::UnknownProposal(_)
            | Self::Expired(_)
            | Self::Replayed(_)
            | Self::ProposalAlreadyExists(_) => RejectCause::Stale,
            Self::NotAMember(_)
            | Self::WrongProposal { .. }
            | Self::DuplicateVoter(_)
            | Self::TooManyVotes => RejectCause::Invalid,
        }
    }
}

impl Cause for DecryptError {
    fn cause(&self) -> RejectCause {
        match self {
            Self::Malformed(_) => RejectCause::Malformed,
            Self::Crypto(_) => RejectCause::Unauthenticated,
            Self::WrongEpoch { .. } | Self::Expired { .. } | Self::OwnMessage => RejectCause::Stale,
            Self::WrongGroup | Self::NotApplication => RejectCause::Invalid,
        }
    }
}

impl Cause for SdsError {
    fn cause(&self) -> RejectCause {
        match self {
            Self::Malformed(_) => RejectCause::Malformed,
            Self::WrongId | Self::BadSignature | Self::RelayedSync => RejectCause::Unauthenticated,
            Self::WrongChannel => RejectCause::Invalid,
        }
    }
}
