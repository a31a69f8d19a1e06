//! Hashgraph-like consensus (CONSENSUS-HASHGRAPHLIKE RFC), sans-IO.
//!
//! A proposal carries its creator's vote; every member adds one signed, hash-chained vote;
//! each member tallies locally with the 2n/3 rule. Votes arrive in different orders at
//! different members over gossip, so a single vote's `received_hash` is recorded but only
//! checked against the vote it names when both travel in the same list (a proposal as
//! created). Equivocation (a second, different vote by the same owner) is refused.

mod decision;
mod error;
mod state;
mod vote;

pub use decision::decide;
pub use error::{ConsensusError, Rejection};
pub use state::{ConsensusState, Created, NewProposal};
pub use vote::{
    evidence_decision, header_digest, self_leave_proposal_id, validate_vote, vote_hash,
};

#[cfg(test)]
mod tests;
