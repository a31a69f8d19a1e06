//! The freeze round (the de-MLS freeze phase and commit candidate selection): after commit
//! inactivity every member freezes, stewards submit commit candidates, and every member
//! deterministically selects, validates and applies one.
//!
//! - `round`: the round's state ([`FreezeRound`], [`Candidate`]), when a member freezes and
//!   when selection is due;
//! - `own_candidate`: the commit a steward submits, and its re-sends;
//! - `collection`: peers' candidates arriving, kept once per commit;
//! - `validation`: authenticating a candidate's signer and the commit validation service;
//! - `selection`: ranking the candidates and applying the best one that validates;
//! - `apply`: merging a winner and the bookkeeping after any commit;
//! - `trailing_winner`: the winner re-sent after the round ([`TrailingWinner`]).

mod apply;
mod collection;
mod own_candidate;
mod round;
mod selection;
mod trailing_winner;
mod validation;

use prost::Message;
use sha2::{Digest, Sha256};

use super::*;
use crate::proto::{cpb, pb};

pub(super) use apply::Winner;
pub(crate) use round::{Candidate, FreezeRound};
pub(crate) use trailing_winner::TrailingWinner;

/// The `AppEnvelope` that publishes an encoded `CommitCandidate`.
fn candidate_envelope(candidate: &[u8]) -> Option<Vec<u8>> {
    let c = pb::CommitCandidate::decode(candidate).ok()?;
    Some(
        pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::CommitCandidate(c)),
        }
        .encode_to_vec(),
    )
}

/// The largest candidate (commit, proposals, evidence and all) that carries its welcome
/// sealed inside: room under the relay's 150 KiB message limit for the envelopes.
const SEALED_WELCOME_LIMIT: usize = 100 * 1024;

/// The part of a candidate's evidence that is judged. An honest steward carries one
/// proposal per change of its batch (each at least one MLS proposal of the commit) and
/// its election: never more than `actions + 1`. Anything past that is not judged, since
/// each item can cost signature checks.
fn judged_evidence(evidence: &[cpb::Proposal], actions: usize) -> &[cpb::Proposal] {
    evidence
        .get(..actions.saturating_add(1))
        .unwrap_or(evidence)
}

/// Digest of an evidence list. A steward's commit carries the digest of its candidate's
/// evidence as its MLS authenticated data (signed with the commit), so evidence counts
/// only when it is the list the steward sent: a copy with other evidence (stripped, or
/// junk votes that would each cost a signature check) is recognised by one hash.
fn evidence_digest(evidence: &[cpb::Proposal]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in evidence {
        let bytes = p.encode_to_vec();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

/// What a candidate is known by: the hash of its commit.
fn commit_hash(commit: &[u8]) -> [u8; 32] {
    Sha256::digest(commit).into()
}
