//! Vote hashing, signing and stateless validation.

use prost::Message;
use sha2::{Digest, Sha256};

use super::decide;
use super::error::Rejection;
use crate::identity::{self, EthSigner, MemberId};
use crate::proto::cpb::{Proposal, Vote};

/// SHA-256(vote_id LE u32 ‖ owner ‖ proposal_id LE u32 ‖ timestamp LE u64 ‖ vote ‖
/// parent_hash ‖ received_hash).
pub fn vote_hash(v: &Vote) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(v.vote_id.to_le_bytes());
    h.update(&v.vote_owner);
    h.update(v.proposal_id.to_le_bytes());
    h.update(v.timestamp.to_le_bytes());
    h.update([v.vote as u8]);
    h.update(&v.parent_hash);
    h.update(&v.received_hash);
    h.finalize().into()
}

/// Domain separation for vote signatures.
const VOTE_DOMAIN: &[u8] = b"demls/vote/v2";

/// SHA-256 of a proposal header: its protobuf encoding with the vote list emptied. Every
/// field a decision depends on (payload, owner, voter count, times, liveness flag) is in it.
pub fn header_digest(p: &Proposal) -> [u8; 32] {
    let mut header = p.clone();
    header.votes.clear();
    Sha256::digest(header.encode_to_vec()).into()
}

/// The bytes a vote signature covers: a domain tag, the digest of the proposal header the
/// vote is cast on, and the vote's protobuf encoding without the signature. The RFC's
/// vote names its proposal by id only, so a vote could be lifted onto a forged header
/// with the same id (another payload, voter count or liveness flag) and still verify.
fn signed_bytes(v: &Vote, header: &Proposal) -> Vec<u8> {
    let mut unsigned = v.clone();
    unsigned.signature.clear();
    let mut m = VOTE_DOMAIN.to_vec();
    m.extend_from_slice(&header_digest(header));
    m.extend(unsigned.encode_to_vec());
    m
}

/// Fills in `vote_hash` and `signature` for a vote on `header`.
pub(super) fn sign_vote(
    v: &mut Vote,
    header: &Proposal,
    signer: &EthSigner,
) -> Result<(), identity::IdentityError> {
    v.vote_hash = vote_hash(v).to_vec();
    v.signature = signer.sign(&signed_bytes(v, header))?;
    Ok(())
}

/// Deterministic id of a member's self-leave proposal: first 4 bytes (BE) of SHA-256(id).
pub fn self_leave_proposal_id(member: &MemberId) -> u32 {
    let d = Sha256::digest(member.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Checks one vote against its proposal's header, independent of other votes.
pub fn validate_vote(
    v: &Vote,
    p: &Proposal,
    now_s: u64,
    is_voter: &dyn Fn(&MemberId) -> bool,
) -> Result<MemberId, Rejection> {
    if v.vote_owner.is_empty() {
        return Err(Rejection::EmptyField("owner"));
    }
    if v.vote_hash.is_empty() {
        return Err(Rejection::EmptyField("hash"));
    }
    if v.signature.is_empty() {
        return Err(Rejection::EmptyField("signature"));
    }
    if v.proposal_id != p.proposal_id {
        return Err(Rejection::WrongProposal {
            got: v.proposal_id,
            expected: p.proposal_id,
        });
    }
    let owner =
        MemberId::from_slice(&v.vote_owner).map_err(|e| Rejection::BadSignature(e.to_string()))?;
    if v.vote_hash != vote_hash(v) {
        return Err(Rejection::HashMismatch);
    }
    if !is_voter(&owner) {
        return Err(Rejection::NotAMember(owner));
    }
    identity::verify(&signed_bytes(v, p), &v.signature, &owner)
        .map_err(|e| Rejection::BadSignature(e.to_string()))?;
    if v.timestamp < p.timestamp
        || v.timestamp > p.expiration_timestamp
        || now_s > p.expiration_timestamp
    {
        return Err(Rejection::Expired(p.proposal_id));
    }
    Ok(owner)
}

/// Checks a proposal header.
pub(super) fn validate_header(p: &Proposal, now_s: u64) -> Result<MemberId, Rejection> {
    let owner = MemberId::from_slice(&p.proposal_owner)
        .map_err(|_| Rejection::Malformed("owner is not a 20-byte address".into()))?;
    if p.expected_voters_count == 0 {
        return Err(Rejection::Malformed("no expected voters".into()));
    }
    if p.expiration_timestamp < p.timestamp {
        return Err(Rejection::Malformed("expires before it starts".into()));
    }
    if now_s > p.expiration_timestamp {
        return Err(Rejection::Expired(p.proposal_id));
    }
    if p.votes.len() > p.expected_voters_count as usize {
        return Err(Rejection::TooManyVotes);
    }
    Ok(owner)
}

/// Stateless: validates a proposal's votes (each valid, one per owner) and decides it,
/// applying the timeout rule once `now_s ≥ timestamp + consensus_timeout_s`. Invalid votes
/// make the whole evidence invalid.
pub fn evidence_decision(
    p: &Proposal,
    now_s: u64,
    consensus_timeout_s: u64,
    is_voter: &dyn Fn(&MemberId) -> bool,
) -> Result<Option<bool>, Rejection> {
    validate_header(p, now_s)?;
    let mut seen = std::collections::BTreeSet::new();
    let (mut yes, mut no) = (0, 0);
    for v in &p.votes {
        let owner = validate_vote(v, p, now_s, is_voter)?;
        if !seen.insert(owner) {
            return Err(Rejection::DuplicateVoter(owner));
        }
        if v.vote { yes += 1 } else { no += 1 }
    }
    let timed_out = now_s >= p.timestamp.saturating_add(consensus_timeout_s);
    Ok(decide(
        p.expected_voters_count,
        yes,
        no,
        p.liveness_criteria_yes,
        timed_out,
    ))
}
