//! Why a proposal or vote is refused, and local failures.

use crate::identity::MemberId;

/// An inbound proposal or vote that is not counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A required field is empty.
    #[error("vote has an empty {0}")]
    EmptyField(&'static str),
    /// The proposal is malformed.
    #[error("malformed proposal: {0}")]
    Malformed(String),
    /// `vote_hash` does not match the vote's fields.
    #[error("vote hash does not match its fields (tampered vote)")]
    HashMismatch,
    /// Signature invalid or by another key.
    #[error("bad vote signature: {0}")]
    BadSignature(String),
    /// The voter is not an expected voter.
    #[error("{0} is not a member and cannot vote")]
    NotAMember(MemberId),
    /// The vote names another proposal.
    #[error("vote is for proposal {got}, not {expected}")]
    WrongProposal {
        /// Proposal the vote names.
        got: u32,
        /// Proposal it was delivered with.
        expected: u32,
    },
    /// No such proposal.
    #[error("unknown proposal {0}")]
    UnknownProposal(u32),
    /// Outside the proposal's lifetime.
    #[error("proposal {0} has expired or the vote is outside its lifetime")]
    Expired(u32),
    /// The same vote again.
    #[error("replayed vote by {0}")]
    Replayed(MemberId),
    /// A second, different vote by the same owner.
    #[error("{0} already voted on this proposal (equivocation)")]
    DuplicateVoter(MemberId),
    /// More votes than expected voters.
    #[error("more votes than expected voters")]
    TooManyVotes,
    /// The proposal id is taken.
    #[error("proposal {0} already exists")]
    ProposalAlreadyExists(u32),
    /// Broken hash chain inside a proposal's vote list.
    #[error("broken vote chain: {0}")]
    BrokenChain(&'static str),
}

/// Local failures creating proposals or votes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// Unknown proposal.
    #[error("unknown proposal {0}")]
    UnknownProposal(u32),
    /// Already voted.
    #[error("already voted on proposal {0}")]
    AlreadyVoted(u32),
    /// Duplicate id.
    #[error("proposal {0} already exists")]
    ProposalAlreadyExists(u32),
    /// Expired.
    #[error("proposal {0} has expired")]
    Expired(u32),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
}
