//! Structured generators: well-formed de-MLS protobuf messages whose field values are
//! hostile (edge integers, wrong lengths, duplicate or foreign ids, junk or truncated MLS
//! material, votes signed by the wrong key or with a broken chain), and fake MLS framing
//! (RFC 9420 headers that claim any group, epoch, content type and length).
//!
//! Everything is generated against a [`World`]: what the target knows (conversation name,
//! epoch, clock, member ids, keys that may sign, real MLS blobs to reuse). The proto
//! target uses a made-up world; the conversation targets use the simulator's.
#![allow(dead_code)]
// The schema grows (fields get added to announcements, welcomes and catch-up requests):
// literals fill the fields the generators know and leave any others at their default.
#![allow(clippy::needless_update)]

use demls_core::consensus::{self_leave_proposal_id, vote_hash};
use demls_core::identity::{EthSigner, MemberId};
use demls_core::proto::{cpb, pb};
use prost::Message;
use rand::Rng;
use rand::seq::SliceRandom;

use super::bytes::{
    any_i64, any_len, any_string, any_u32, any_u64, mutate, near_u64, random_bytes,
};

/// What the generators know about their target.
#[derive(Clone, Default)]
pub struct World {
    /// Conversation name.
    pub name: String,
    /// The target's MLS epoch.
    pub epoch: u64,
    /// The target's clock, ms since the Unix epoch.
    pub now_ms: u64,
    /// Member ids (in any order).
    pub members: Vec<MemberId>,
    /// Keys that may sign votes and announcements (each signs as its own id).
    pub signers: Vec<EthSigner>,
    /// Real TLS key packages (announced by joiners).
    pub key_packages: Vec<Vec<u8>>,
    /// Real MLS commits and proposals (PublicMessage), of any epoch.
    pub commits: Vec<Vec<u8>>,
    /// Real MLS ciphertexts (PrivateMessage), of any epoch.
    pub ciphertexts: Vec<Vec<u8>>,
    /// Real MLS welcomes.
    pub welcomes: Vec<Vec<u8>>,
    /// Real proposals (with their votes), e.g. from commit evidence.
    pub proposals: Vec<cpb::Proposal>,
    /// Real epoch beacons (their chains are real epoch hashes).
    pub beacons: Vec<pb::EpochBeacon>,
    /// Real sealed votes, of any epoch.
    pub sealed_votes: Vec<pb::SealedVote>,
}

impl World {
    fn now_s(&self) -> u64 {
        self.now_ms / 1000
    }
}

fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, v: &'a [T]) -> Option<&'a T> {
    v.choose(rng)
}

// ---- ids, epochs, blobs -------------------------------------------------------------------

/// A member id on the wire: a member's, a random one, or the wrong length.
pub fn id_bytes<R: Rng + ?Sized>(rng: &mut R, w: &World) -> Vec<u8> {
    match rng.gen_range(0..12) {
        0..=6 if !w.members.is_empty() => pick(rng, &w.members).expect("x").to_vec(),
        7 if !w.signers.is_empty() => pick(rng, &w.signers).expect("x").member_id().to_vec(),
        8 => Vec::new(),
        9 => {
            let n = *[1usize, 19, 21, 32, 42, 65].choose(rng).expect("x");
            random_bytes_exact(rng, n)
        }
        10 => vec![0u8; 20],
        _ => random_bytes_exact(rng, 20),
    }
}

/// An id that parses (20 bytes): a member's mostly.
pub fn member_id<R: Rng + ?Sized>(rng: &mut R, w: &World) -> MemberId {
    match pick(rng, &w.members) {
        Some(m) if rng.gen_bool(0.8) => *m,
        _ => {
            let mut b = [0u8; 20];
            rng.fill(&mut b);
            MemberId(b)
        }
    }
}

fn random_bytes_exact<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(v.as_mut_slice());
    v
}

/// Appends a length-delimited protobuf field (for fields a schema version may lack).
fn push_bytes_field(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    buf.extend(super::bytes::varint((field << 3) | 2, 0));
    buf.extend(super::bytes::varint(bytes.len() as u64, 0));
    buf.extend_from_slice(bytes);
}

/// Appends a varint protobuf field.
fn push_varint_field(buf: &mut Vec<u8>, field: u64, v: u64) {
    buf.extend(super::bytes::varint(field << 3, 0));
    buf.extend(super::bytes::varint(v, 0));
}

/// A timestamp in ms: now, a little off, far off, or an edge value.
fn time_ms<R: Rng + ?Sized>(rng: &mut R, w: &World) -> u64 {
    match rng.gen_range(0..4) {
        0 => w.now_ms,
        1 => w.now_ms.saturating_sub(rng.gen_range(0..600_000)),
        2 => w.now_ms + rng.gen_range(0..600_000),
        _ => any_u64(rng),
    }
}

/// An epoch: ours, the next, the previous, 0, or an edge value.
pub fn epoch<R: Rng + ?Sized>(rng: &mut R, w: &World) -> u64 {
    match rng.gen_range(0..8) {
        0 | 1 => w.epoch,
        2 => w.epoch + 1,
        3 => w.epoch.saturating_sub(1),
        4 => 0,
        5 => u64::MAX,
        _ => near_u64(rng, w.epoch),
    }
}

/// A timestamp in seconds: now, near now, far past or future, or an edge value.
pub fn time_s<R: Rng + ?Sized>(rng: &mut R, w: &World) -> u64 {
    let now = w.now_s();
    match rng.gen_range(0..7) {
        0 | 1 => now,
        2 => now.saturating_sub(rng.gen_range(0..10_000)),
        3 => now + rng.gen_range(0..10_000),
        _ => near_u64(rng, now),
    }
}

/// One of the real blobs in `pool`, mutated or not, or junk.
pub fn blob<R: Rng + ?Sized>(rng: &mut R, pool: &[Vec<u8>]) -> Vec<u8> {
    match (rng.gen_range(0..10), pick(rng, pool)) {
        (0..=2, Some(b)) => b.clone(),
        (3..=6, Some(b)) => mutate(rng, b, 4, 1 << 16),
        (7, Some(b)) => b[..rng.gen_range(0..=b.len())].to_vec(),
        _ => random_bytes(rng, 512),
    }
}

// ---- fake MLS framing (RFC 9420 §6) --------------------------------------------------------

/// An MLS variable-length vector length (RFC 9420 §2.1.2): the right one in minimal form,
/// or a hostile one (non-minimal, invalid 0b11 prefix, off by one, huge).
fn mls_len<R: Rng + ?Sized>(rng: &mut R, len: usize) -> Vec<u8> {
    let minimal = |n: usize| -> Vec<u8> {
        if n < 1 << 6 {
            vec![n as u8]
        } else if n < 1 << 14 {
            (0x4000u16 | n as u16).to_be_bytes().to_vec()
        } else {
            (0x8000_0000u32 | (n as u32 & 0x3fff_ffff))
                .to_be_bytes()
                .to_vec()
        }
    };
    match rng.gen_range(0..12) {
        0 => minimal(len + 1),
        1 => minimal(len.saturating_sub(1)),
        2 => (0x4000u16 | (len as u16 & 0x3fff)).to_be_bytes().to_vec(), // maybe non-minimal
        3 => (0x8000_0000u32 | len as u32).to_be_bytes().to_vec(),
        4 => vec![0xc0 | rng.gen_range(0..0x40u8), rng.r#gen()], // invalid prefix
        5 => 0xbfff_ffffu32.to_be_bytes().to_vec(),              // 1 GiB claim
        _ => minimal(len),
    }
}

fn mls_vec<R: Rng + ?Sized>(rng: &mut R, body: &[u8]) -> Vec<u8> {
    let mut v = mls_len(rng, body.len());
    v.extend_from_slice(body);
    v
}

/// A fake MLSMessage: version, wire format, and a PrivateMessage or PublicMessage header
/// claiming `group`, any epoch, content type and sender, with junk inside.
pub fn fake_mls<R: Rng + ?Sized>(rng: &mut R, w: &World) -> Vec<u8> {
    let mut m = Vec::new();
    let version: u16 = if rng.gen_bool(0.9) { 1 } else { rng.r#gen() };
    m.extend(version.to_be_bytes());
    let wire: u16 = match rng.gen_range(0..10) {
        0..=4 => 2, // private
        5..=7 => 1, // public
        8 => rng.gen_range(3..6),
        _ => rng.r#gen(),
    };
    m.extend(wire.to_be_bytes());
    let group = match rng.gen_range(0..6) {
        0..=3 => w.name.as_bytes().to_vec(),
        4 => any_string(rng, &w.name).into_bytes(),
        _ => random_bytes(rng, 300),
    };
    m.extend(mls_vec(rng, &group));
    m.extend(epoch(rng, w).to_be_bytes());
    let content_type: u8 = if rng.gen_bool(0.9) {
        rng.gen_range(1..4)
    } else {
        rng.r#gen()
    };
    if wire == 1 {
        // PublicMessage: sender, aad, content type, content, signature, membership tag
        let sender_type: u8 = if rng.gen_bool(0.9) {
            rng.gen_range(1..5)
        } else {
            rng.r#gen()
        };
        m.push(sender_type);
        if sender_type <= 2 {
            m.extend(any_u32(rng).to_be_bytes());
        }
        let aad = random_bytes(rng, 32);
        m.extend(mls_vec(rng, &aad));
        m.push(content_type);
        let body = random_bytes(rng, 600);
        m.extend(mls_vec(rng, &body));
        let sig = random_bytes(rng, 80);
        m.extend(mls_vec(rng, &sig));
        if sender_type == 1 {
            let tag = random_bytes(rng, 40);
            m.extend(mls_vec(rng, &tag));
        }
    } else {
        // PrivateMessage: content type, aad, encrypted sender data, ciphertext
        m.push(content_type);
        let aad = random_bytes(rng, 32);
        m.extend(mls_vec(rng, &aad));
        let sender_data = random_bytes(rng, 64);
        m.extend(mls_vec(rng, &sender_data));
        let size = match rng.gen_range(0..6) {
            0 => 0,
            1 => rng.gen_range(1..40),
            2 => rng.gen_range(16_000..17_000),
            _ => rng.gen_range(40..400),
        };
        let ct = random_bytes_exact(rng, size);
        m.extend(mls_vec(rng, &ct));
    }
    if rng.gen_bool(0.1) {
        let tail = random_bytes(rng, 16);
        m.extend(tail);
    }
    m
}

/// MLS bytes for an `mls_message` field or a commit: fake framing, a real blob (mutated or
/// not), or junk.
pub fn mls_bytes<R: Rng + ?Sized>(rng: &mut R, w: &World, real: &[Vec<u8>]) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0..=3 => fake_mls(rng, w),
        4..=8 => blob(rng, real),
        _ => random_bytes(rng, 256),
    }
}

// ---- consensus ---------------------------------------------------------------------------

/// A voter count: the group's, one more or less, or an extreme (0, 1, 2³¹, u32::MAX).
pub fn voters<R: Rng + ?Sized>(rng: &mut R, w: &World) -> u32 {
    let n = w.members.len() as u32;
    match rng.gen_range(0..10) {
        0..=3 => n,
        4 => n + 1,
        5 => n.saturating_sub(1),
        6 => *[0u32, 1, 2, 1 << 31, u32::MAX].choose(rng).expect("x"),
        _ => any_u32(rng),
    }
}

/// A proposal payload: a structured update request, or junk.
pub fn payload<R: Rng + ?Sized>(rng: &mut R, w: &World) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0..=7 => update_request(rng, w).encode_to_vec(),
        8 => {
            let p = update_request(rng, w).encode_to_vec();
            mutate(rng, &p, 3, 4096)
        }
        _ => random_bytes(rng, 128),
    }
}

/// A `ConversationUpdateRequest` of any kind with hostile fields.
pub fn update_request<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::ConversationUpdateRequest {
    use pb::conversation_update_request::Kind;
    let kind = match rng.gen_range(0..9) {
        0 => None,
        1 | 2 => Some(Kind::InviteMember(pb::InviteMember {
            announcement: rng.gen_bool(0.9).then(|| announcement(rng, w)),
        })),
        3 | 4 => Some(Kind::RemoveMember(pb::RemoveMember {
            member_id: id_bytes(rng, w),
        })),
        5 | 6 => Some(Kind::Emergency(pb::EmergencyCriteriaProposal {
            evidence: rng.gen_bool(0.9).then(|| pb::ViolationEvidence {
                violation_type: if rng.gen_bool(0.8) {
                    rng.gen_range(0..7)
                } else {
                    any_i64(rng) as i32
                },
                target_member_id: if rng.gen_bool(0.2) {
                    Vec::new()
                } else {
                    id_bytes(rng, w)
                },
                evidence_payload: random_bytes(rng, 64),
                epoch: epoch(rng, w),
                creator_member_id: id_bytes(rng, w),
            }),
        })),
        _ => Some(Kind::StewardElection(election(rng, w))),
    };
    pb::ConversationUpdateRequest { kind }
}

/// A steward election: the right-looking list, duplicates, non-members, empty or long.
pub fn election<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::StewardElectionProposal {
    let mut ids: Vec<Vec<u8>> = match rng.gen_range(0..6) {
        0 => Vec::new(),
        1 => {
            let m = id_bytes(rng, w);
            vec![m.clone(), m]
        }
        2 => (0..rng.gen_range(20..200))
            .map(|_| id_bytes(rng, w))
            .collect(),
        3 => w.members.iter().map(|m| m.to_vec()).collect(),
        _ => (0..rng.gen_range(1..5)).map(|_| id_bytes(rng, w)).collect(),
    };
    if rng.gen_bool(0.3) {
        ids.shuffle(rng);
    }
    pb::StewardElectionProposal {
        proposed_stewards: ids,
        election_epoch: epoch(rng, w),
        retry_round: match rng.gen_range(0..4) {
            0 => 0,
            1 => rng.gen_range(1..4),
            _ => any_u32(rng),
        },
    }
}

/// A key package announcement: real or junk key package, any claimed id, and a signature
/// that is junk, made by the wrong key, over another conversation, or valid.
///
/// The announcement format is changing (v1 signs `"demls/key-package/v1" ‖ conversation ‖
/// 0 ‖ key_package`; v2 adds a `timestamp_ms` field, 5, and signs `"demls/key-package/v2"
/// ‖ conversation ‖ 0 ‖ timestamp_ms BE ‖ key_package`, per `proto/demls/v1`). Both are
/// generated at the encoding level, so the generator builds against either schema and a
/// valid signature of the current one is among the inputs.
pub fn announcement<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::KeyPackageAnnouncement {
    let conversation = any_string(rng, &w.name);
    let key_package = blob(rng, &w.key_packages);
    let member = id_bytes(rng, w);
    let timestamp_ms = time_ms(rng, w);
    let v2 = rng.r#gen::<bool>();
    let signature = match (rng.gen_range(0..6), pick(rng, &w.signers)) {
        (0..=2, Some(s)) => {
            // A real EIP-191 signature by `s`, over this or another conversation's bytes.
            let name = if rng.gen_bool(0.8) {
                conversation.clone()
            } else {
                any_string(rng, &w.name)
            };
            let mut m = if v2 {
                b"demls/key-package/v2".to_vec()
            } else {
                b"demls/key-package/v1".to_vec()
            };
            m.extend_from_slice(name.as_bytes());
            m.push(0);
            if v2 {
                m.extend_from_slice(&timestamp_ms.to_be_bytes());
            }
            m.extend_from_slice(&key_package);
            s.sign(&m).unwrap_or_default()
        }
        (3, _) => Vec::new(),
        (4, _) => random_bytes_exact(rng, 65),
        _ => random_bytes(rng, 100),
    };
    let mut bytes = pb::KeyPackageAnnouncement {
        conversation,
        key_package,
        member_id: member,
        signature,
        ..Default::default()
    }
    .encode_to_vec();
    if v2 || rng.gen_bool(0.1) {
        push_varint_field(&mut bytes, 5, timestamp_ms);
    }
    pb::KeyPackageAnnouncement::decode(bytes.as_slice()).unwrap_or_default()
}

/// The bytes a vote signature covers (the vote without its signature, encoded).
fn vote_signed_bytes(v: &cpb::Vote) -> Vec<u8> {
    let mut u = v.clone();
    u.signature.clear();
    u.encode_to_vec()
}

/// A vote on `p` (or another proposal), by `signer` when given: hash and signature made
/// right, then perhaps one field spoiled after signing.
pub fn vote<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    p: &cpb::Proposal,
    signer: Option<&EthSigner>,
    received_hash: Vec<u8>,
) -> cpb::Vote {
    let owner = match signer {
        Some(s) if rng.gen_bool(0.9) => s.member_id().to_vec(),
        _ => id_bytes(rng, w),
    };
    let mut v = cpb::Vote {
        vote_id: any_u32(rng),
        vote_owner: owner,
        proposal_id: if rng.gen_bool(0.9) {
            p.proposal_id
        } else {
            any_u32(rng)
        },
        timestamp: match rng.gen_range(0..4) {
            0 => p.timestamp,
            1 => w.now_s(),
            _ => time_s(rng, w),
        },
        vote: rng.r#gen(),
        parent_hash: if rng.gen_bool(0.1) {
            random_bytes(rng, 40)
        } else {
            Vec::new()
        },
        received_hash,
        vote_hash: Vec::new(),
        signature: Vec::new(),
    };
    v.vote_hash = vote_hash(&v).to_vec();
    if let Some(s) = signer {
        v.signature = s.sign(&vote_signed_bytes(&v)).unwrap_or_default();
    } else {
        v.signature = random_bytes_exact(rng, 65);
    }
    if rng.gen_bool(0.15) {
        match rng.gen_range(0..6) {
            0 => v.vote = !v.vote,
            1 => v.vote_hash = random_bytes(rng, 40),
            2 => v.signature = random_bytes(rng, 70),
            3 => v.timestamp = any_u64(rng),
            4 => v.vote_owner = id_bytes(rng, w),
            _ => v.signature.clear(),
        }
    }
    v
}

/// A proposal with hostile header values and 0..k votes, signed by `signers` (a subset
/// of `w.signers`), hash-chained as created or not.
pub fn proposal<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    owner: Option<&EthSigner>,
    signers: &[EthSigner],
) -> cpb::Proposal {
    let ts = time_s(rng, w);
    let payload = payload(rng, w);
    let proposal_owner = match owner {
        Some(o) if rng.gen_bool(0.9) => o.member_id().to_vec(),
        _ => id_bytes(rng, w),
    };
    let proposal_id = match rng.gen_range(0..8) {
        0 => MemberId::from_slice(&proposal_owner)
            .map(|m| self_leave_proposal_id(&m))
            .unwrap_or(0),
        1 => pick(rng, &w.proposals).map_or(0, |p| p.proposal_id),
        2 => *[0u32, 1, u32::MAX].choose(rng).expect("x"),
        _ => rng.r#gen(),
    };
    let mut p = cpb::Proposal {
        name: any_string(rng, "remove 0x00"),
        payload,
        proposal_id,
        proposal_owner,
        votes: Vec::new(),
        expected_voters_count: voters(rng, w),
        round: any_u32(rng),
        timestamp: ts,
        expiration_timestamp: match rng.gen_range(0..5) {
            0 => ts.saturating_add(600),
            1 => ts.saturating_sub(1),
            2 => u64::MAX,
            _ => near_u64(rng, ts.saturating_add(60)),
        },
        liveness_criteria_yes: rng.gen_bool(0.8),
    };
    // Votes: the owner's first (as created), then others, chained by received_hash.
    let n = match rng.gen_range(0..6) {
        0 => 0,
        1 => rng.gen_range(20..80),
        _ => rng.gen_range(1..=signers.len().max(1) + 1),
    };
    let mut last: Vec<u8> = Vec::new();
    for k in 0..n {
        let s = if k == 0 {
            owner.or_else(|| signers.first())
        } else if rng.gen_bool(0.15) {
            // a second vote by someone who already voted (duplicate or equivocation)
            signers.first()
        } else {
            pick(rng, signers)
        };
        let chain = if rng.gen_bool(0.85) {
            last.clone()
        } else {
            random_bytes(rng, 40)
        };
        let v = vote(rng, w, &p, s, chain);
        last = v.vote_hash.clone();
        p.votes.push(v.clone());
        if rng.gen_bool(0.05) {
            p.votes.push(v); // exact duplicate
        }
    }
    p
}

/// A real proposal (from the world), re-used as is, with a header field changed, or with
/// its votes reordered or duplicated.
pub fn real_proposal<R: Rng + ?Sized>(rng: &mut R, w: &World) -> Option<cpb::Proposal> {
    let mut p = pick(rng, &w.proposals)?.clone();
    match rng.gen_range(0..6) {
        0 => {}
        1 => p.expected_voters_count = voters(rng, w),
        2 => p.votes.reverse(),
        3 => {
            if let Some(v) = p.votes.first().cloned() {
                p.votes.push(v);
            }
        }
        4 => p.timestamp = time_s(rng, w),
        _ => p.expiration_timestamp = any_u64(rng),
    }
    Some(p)
}

/// Any proposal: generated or real.
pub fn any_proposal<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    owner: Option<&EthSigner>,
    signers: &[EthSigner],
) -> cpb::Proposal {
    if rng.gen_bool(0.2)
        && let Some(p) = real_proposal(rng, w)
    {
        return p;
    }
    proposal(rng, w, owner, signers)
}

// ---- envelopes ---------------------------------------------------------------------------

/// A commit candidate (or catch-up commit) with hostile fields and evidence.
pub fn commit_candidate<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    signers: &[EthSigner],
) -> pb::CommitCandidate {
    let n_props = match rng.gen_range(0..6) {
        0..=3 => 0,
        4 => rng.gen_range(1..4),
        _ => rng.gen_range(4..60),
    };
    let n_ev = match rng.gen_range(0..6) {
        0..=2 => 0,
        3 | 4 => rng.gen_range(1..3),
        _ => rng.gen_range(3..12),
    };
    pb::CommitCandidate {
        conversation: any_string(rng, &w.name),
        mls_proposals: (0..n_props)
            .map(|_| mls_bytes(rng, w, &w.commits))
            .collect(),
        commit_message: if rng.gen_bool(0.1) {
            Vec::new()
        } else {
            mls_bytes(rng, w, &w.commits)
        },
        steward_id: id_bytes(rng, w),
        epoch: epoch(rng, w),
        evidence: (0..n_ev)
            .map(|_| {
                let owner = pick(rng, signers);
                any_proposal(rng, w, owner, signers)
            })
            .collect(),
        // Junk of any length: nobody outside the epoch can seal a welcome that opens.
        sealed_welcome: {
            let n = match rng.gen_range(0..4) {
                0 => rng.gen_range(1..64),
                1 => rng.gen_range(64..4096),
                _ => 0,
            };
            random_bytes_exact(rng, n)
        },
    }
}

/// A catch-up request for any epoch. Requests are becoming signed (fields 3–5:
/// `requester`, `timestamp_ms`, and an EIP-191 signature by the requester over
/// `"demls/catch-up/v1" ‖ conversation ‖ 0 ‖ epoch BE ‖ timestamp_ms BE`, per
/// `proto/demls/v1`); those fields are added at the encoding level, signed by one of
/// `w.signers` or junk, so the generator builds against either schema.
pub fn catch_up_request<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::CatchUpRequest {
    let conversation = any_string(rng, &w.name);
    let epoch = epoch(rng, w);
    let mut bytes = pb::CatchUpRequest {
        conversation: conversation.clone(),
        epoch,
        ..Default::default()
    }
    .encode_to_vec();
    if rng.gen_bool(0.8) {
        let signer = pick(rng, &w.signers);
        let requester = match signer {
            Some(s) if rng.gen_bool(0.8) => s.member_id().to_vec(),
            _ => id_bytes(rng, w),
        };
        let ts = time_ms(rng, w);
        let signature = match signer {
            Some(s) if rng.gen_bool(0.7) => {
                let mut m = b"demls/catch-up/v1".to_vec();
                m.extend_from_slice(conversation.as_bytes());
                m.push(0);
                m.extend_from_slice(&epoch.to_be_bytes());
                m.extend_from_slice(&ts.to_be_bytes());
                s.sign(&m).unwrap_or_default()
            }
            _ => random_bytes(rng, 70),
        };
        push_bytes_field(&mut bytes, 3, &requester);
        push_varint_field(&mut bytes, 4, ts);
        push_bytes_field(&mut bytes, 5, &signature);
    }
    pb::CatchUpRequest::decode(bytes.as_slice()).unwrap_or_default()
}

/// A conversation sync with hostile values: steward lists, timings (valid-looking
/// orderings of extreme magnitudes as well as junk), scores, flags.
pub fn sync<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::ConversationSync {
    let stewards: Vec<Vec<u8>> = match rng.gen_range(0..6) {
        0 => Vec::new(),
        1 => {
            let m = id_bytes(rng, w);
            vec![m.clone(), m]
        }
        2 => (0..rng.gen_range(2..100))
            .map(|_| id_bytes(rng, w))
            .collect(),
        _ => (0..rng.gen_range(1..4)).map(|_| id_bytes(rng, w)).collect(),
    };
    let timing = match rng.gen_range(0..5) {
        0 => None,
        1 => Some(pb::TimingConfig {
            commit_inactivity_ms: any_u64(rng),
            freeze_ms: any_u64(rng),
            proposal_expiration_ms: any_u64(rng),
            consensus_timeout_ms: any_u64(rng),
            recovery_inactivity_ms: any_u64(rng),
            voting_delay_ms: any_u64(rng),
            election_voting_delay_ms: any_u64(rng),
        }),
        _ => {
            // An ordering that passes `ConversationConfig::validate` (voting delays <
            // consensus timeout < commit inactivity ≤ …), at any magnitude.
            let top = match rng.gen_range(0..4) {
                0 => u64::MAX,
                1 => u64::MAX / 2,
                2 => rng.gen_range(10..100_000),
                _ => any_u64(rng).max(10),
            };
            let commit = top;
            let consensus = rng.gen_range(2..commit.max(3));
            let voting = rng.gen_range(1..consensus.max(2));
            let election = rng.gen_range(1..consensus.max(2));
            Some(pb::TimingConfig {
                commit_inactivity_ms: commit,
                freeze_ms: if rng.r#gen() {
                    top
                } else {
                    any_u64(rng).max(1)
                },
                proposal_expiration_ms: if rng.r#gen() {
                    u64::MAX
                } else {
                    consensus.saturating_add(any_u64(rng))
                },
                consensus_timeout_ms: consensus,
                recovery_inactivity_ms: if rng.r#gen() {
                    top
                } else {
                    any_u64(rng).max(1)
                },
                voting_delay_ms: voting,
                election_voting_delay_ms: election,
            })
        }
    };
    let (sn_min, sn_max) = match rng.gen_range(0..3) {
        0 => (any_u32(rng), any_u32(rng)),
        1 => (1, rng.gen_range(1..4)),
        _ => (rng.gen_range(0..3), u32::MAX),
    };
    pb::ConversationSync {
        steward_members: stewards,
        election_epoch: epoch(rng, w),
        sn_min,
        sn_max,
        peer_scores: (0..any_len(rng, 40))
            .map(|_| pb::PeerScore {
                member_id: id_bytes(rng, w),
                score: any_i64(rng),
            })
            .collect(),
        timing,
        retry_round: any_u32(rng),
        max_reelection_attempts: any_u32(rng),
        liveness_criteria_yes: rng.r#gen(),
        threshold_peer_score: any_i64(rng),
        pending_update_max_epochs: any_u32(rng),
        recovery_mode: rng.gen_bool(0.3),
        epoch: epoch(rng, w),
        proposals_before_join: (0..any_len(rng, 20)).map(|_| any_u32(rng)).collect(),
    }
}

fn exact_bytes<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.r#gen()).collect()
}

/// An SDS history or repair entry: a real-looking or junk id, any epoch hint, any sender.
fn sds_entry<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::SdsHistoryEntry {
    let message_id = match rng.gen_range(0..4) {
        0 => any_string(rng, "00"),
        1 => hex::encode(id_bytes(rng, w)),
        _ => hex::encode(exact_bytes(rng, 32)),
    };
    pb::SdsHistoryEntry {
        message_id,
        retrieval_hint: rng.gen_bool(0.7).then(|| match rng.gen_range(0..3) {
            0 => epoch(rng, w).to_be_bytes().to_vec(),
            1 => random_bytes(rng, 12),
            _ => any_u64(rng).to_be_bytes().to_vec(),
        }),
        sender_id: rng
            .gen_bool(0.7)
            .then(|| format!("0x{}", hex::encode(member_id(rng, w).as_bytes()))),
    }
}

/// An SDS chat or sync message: ids computed right (then perhaps spoilt), signed by the
/// claimed sender, another key or nobody; hostile Lamport clocks, histories, filters and
/// repair requests.
pub fn sds_message<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    me: Option<&EthSigner>,
    signers: &[EthSigner],
) -> pb::SdsMessage {
    let signer = if rng.gen_bool(0.6) { me } else { None }.or_else(|| pick(rng, signers));
    let sender = match (signer, rng.gen_range(0..5)) {
        (Some(s), 0..=3) => s.member_id(),
        _ => member_id(rng, w),
    };
    let lamport = if rng.r#gen() { w.now_ms } else { any_u64(rng) };
    let sds_epoch = if rng.r#gen() { w.epoch } else { epoch(rng, w) };
    let content = match rng.gen_range(0..5) {
        0 => None,
        1 => Some(random_bytes(rng, 10_000)),
        _ => Some(prost::Message::encode_to_vec(&pb::ChatMessage {
            text: any_string(rng, "hi"),
            timestamp_ms: any_u64(rng),
        })),
    };
    let channel_id = if rng.gen_bool(0.9) {
        w.name.clone()
    } else {
        any_string(rng, &w.name)
    };
    let id = demls_core::sds::message_id(
        &channel_id,
        &sender,
        lamport,
        sds_epoch,
        content.as_deref().unwrap_or_default(),
    );
    let message_id = if rng.gen_bool(0.85) {
        hex::encode(id)
    } else {
        hex::encode(exact_bytes(rng, 32))
    };
    let signature = match (signer, rng.gen_range(0..4)) {
        (Some(s), 0..=2) => s
            .sign(&demls_core::sds::signed_bytes(&id))
            .unwrap_or_default(),
        _ => random_bytes(rng, 70),
    };
    pb::SdsMessage {
        sender_id: if rng.gen_bool(0.9) {
            format!("0x{}", hex::encode(sender.as_bytes()))
        } else {
            any_string(rng, "0x")
        },
        message_id,
        channel_id,
        lamport_timestamp: rng.gen_bool(0.95).then_some(lamport),
        causal_history: (0..any_len(rng, 10)).map(|_| sds_entry(rng, w)).collect(),
        bloom_filter: rng.gen_bool(0.8).then(|| match rng.gen_range(0..3) {
            0 => vec![0xff; demls_core::sds::bloom::BYTES],
            1 => exact_bytes(rng, demls_core::sds::bloom::BYTES),
            _ => random_bytes(rng, 600),
        }),
        repair_request: (0..any_len(rng, 10)).map(|_| sds_entry(rng, w)).collect(),
        content,
        epoch: sds_epoch,
        signature,
    }
}

/// An application message body (what an insider encrypts).
pub fn app_message<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    me: Option<&EthSigner>,
    signers: &[EthSigner],
) -> pb::AppMessage {
    use pb::app_message::Body;
    let body = match rng.gen_range(0..19) {
        16..=18 => Some(Body::Sds(sds_message(rng, w, me, signers))),
        0 => None,
        1 => Some(Body::Chat(pb::ChatMessage {
            text: any_string(rng, "hello"),
            timestamp_ms: any_u64(rng),
        })),
        2..=5 => Some(Body::Proposal(any_proposal(rng, w, me, signers))),
        6..=8 => {
            let target = real_proposal(rng, w).unwrap_or_else(|| proposal(rng, w, me, signers));
            let received = target
                .votes
                .last()
                .map(|v| v.vote_hash.clone())
                .unwrap_or_default();
            let s = me.or_else(|| pick(rng, signers));
            Some(Body::Vote(vote(rng, w, &target, s, received)))
        }
        9 => Some(Body::Sync(sync(rng, w))),
        10 | 11 => Some(Body::ProposalRequest(match pick(rng, &w.proposals) {
            Some(p) if rng.r#gen() => p.proposal_id,
            _ => any_u32(rng),
        })),
        _ => Some(Body::ProposalState(any_proposal(rng, w, me, signers))),
    };
    pb::AppMessage { body }
}

/// The bytes a beacon signature covers, per `proto/demls/v1/application.proto`:
/// `"demls/beacon/v1" ‖ conversation ‖ 0 ‖ epoch BE ‖ members BE ‖ timestamp_ms BE ‖ chain`.
pub fn beacon_signed_bytes(b: &pb::EpochBeacon) -> Vec<u8> {
    let mut m = b"demls/beacon/v1".to_vec();
    m.extend_from_slice(b.conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&b.epoch.to_be_bytes());
    m.extend_from_slice(&b.members.to_be_bytes());
    m.extend_from_slice(&b.timestamp_ms.to_be_bytes());
    for a in &b.chain {
        m.extend_from_slice(a);
    }
    m
}

/// A beacon's epoch-hash chain: a real one (as is, one hash flipped: a fork there; a new
/// hash in front: a later epoch on the same branch; shortened), random 16-byte hashes,
/// none, too many, or hashes of the wrong length.
fn beacon_chain<R: Rng + ?Sized>(
    rng: &mut R,
    real: Option<&pb::EpochBeacon>,
    epoch: u64,
) -> Vec<Vec<u8>> {
    const LEN: usize = 16;
    let fits = usize::try_from(epoch.saturating_add(1)).unwrap_or(usize::MAX);
    match (real, rng.gen_range(0..10)) {
        (Some(r), 0..=4) => {
            let mut c = r.chain.clone();
            match rng.gen_range(0..5) {
                0 | 1 => {}
                2 if !c.is_empty() => {
                    let i = rng.gen_range(0..c.len());
                    let j = rng.gen_range(0..c[i].len().max(1));
                    if let Some(x) = c[i].get_mut(j) {
                        *x ^= 1 << rng.gen_range(0..8);
                    }
                }
                3 => {
                    c.insert(0, exact_bytes(rng, LEN));
                    c.truncate(LEN);
                }
                _ => c.truncate(rng.gen_range(0..=c.len())),
            }
            c
        }
        (_, 5) => Vec::new(),
        (_, 6) => (0..rng.gen_range(LEN + 1..40))
            .map(|_| exact_bytes(rng, LEN))
            .collect(),
        (_, 7) => (0..rng.gen_range(1..=LEN))
            .map(|_| {
                let n = *[0usize, 1, 15, 17, 32].choose(rng).expect("x");
                exact_bytes(rng, n)
            })
            .collect(),
        // More hashes than epochs (epoch 0 with two, say), or as many as fit.
        (_, 8) => (0..fits.saturating_add(1).min(LEN))
            .map(|_| exact_bytes(rng, LEN))
            .collect(),
        _ => (0..rng.gen_range(1..=LEN).min(fits))
            .map(|_| exact_bytes(rng, LEN))
            .collect(),
    }
}

/// An `EpochBeacon` with hostile values: sent by one of `signers` (signed right over what
/// it holds, then perhaps one field spoilt), or claiming a member or junk as its sender
/// with a junk signature; epochs around the real one (a real chain moved on by one, a
/// fork at any hash) and at the edges; timestamps inside and outside the 30 s window;
/// chains empty, too long, of wrong-length hashes, longer than the epoch allows.
pub fn beacon<R: Rng + ?Sized>(rng: &mut R, w: &World, signers: &[EthSigner]) -> pb::EpochBeacon {
    let real = pick(rng, &w.beacons);
    let signer = pick(rng, signers);
    let sender = match (signer, rng.gen_range(0..6)) {
        (Some(s), 0..=3) => s.member_id().to_vec(),
        _ => id_bytes(rng, w),
    };
    let epoch = match (real, rng.gen_range(0..8)) {
        (Some(r), 0..=2) => r.epoch,
        (Some(r), 3) => r.epoch.saturating_add(1),
        (_, 4) => w.epoch.saturating_add(rng.gen_range(2..100_000)), // beyond reach
        _ => epoch(rng, w),
    };
    let mut chain = beacon_chain(rng, real, epoch);
    if real.is_some_and(|r| r.epoch < epoch && r.chain == chain) {
        // The real chain, one epoch on: a new newest hash.
        chain.insert(0, exact_bytes(rng, 16));
        chain.truncate(16);
    }
    let mut b = pb::EpochBeacon {
        conversation: if rng.gen_bool(0.9) {
            w.name.clone()
        } else {
            any_string(rng, &w.name)
        },
        sender,
        epoch,
        chain,
        members: match rng.gen_range(0..3) {
            0 => any_u32(rng),
            _ => w.members.len() as u32,
        },
        timestamp_ms: match rng.gen_range(0..6) {
            0..=2 => w
                .now_ms
                .saturating_add_signed(rng.gen_range(-29_000..29_000)),
            3 => w
                .now_ms
                .saturating_add_signed(rng.gen_range(-31_000..31_000)),
            _ => time_ms(rng, w),
        },
        signature: Vec::new(),
    };
    b.signature = match signer {
        Some(s) if rng.gen_bool(0.85) => s.sign(&beacon_signed_bytes(&b)).unwrap_or_default(),
        _ => random_bytes(rng, 70),
    };
    if rng.gen_bool(0.1) {
        match rng.gen_range(0..5) {
            0 => b.epoch = b.epoch.wrapping_add(1),
            1 => b.timestamp_ms = b.timestamp_ms.wrapping_add(1),
            2 => b.members = b.members.wrapping_add(1),
            3 => b.signature.truncate(64),
            _ => b.chain.reverse(),
        }
    }
    b
}

/// A sealed vote as an outsider can send it: a real one (replayed, or with its epoch,
/// salt or ciphertext changed), or one made up.
pub fn sealed_vote<R: Rng + ?Sized>(rng: &mut R, w: &World) -> pb::SealedVote {
    let mut v = match pick(rng, &w.sealed_votes) {
        Some(real) if rng.gen_ratio(3, 4) => real.clone(),
        _ => {
            let len = rng.gen_range(0..300);
            pb::SealedVote {
                epoch: epoch(rng, w),
                salt: random_bytes_exact(rng, 16),
                sealed: random_bytes_exact(rng, len),
            }
        }
    };
    match rng.gen_range(0..6) {
        0 => v.epoch = epoch(rng, w),
        1 => {
            let len = rng.gen_range(0..20);
            v.salt = random_bytes_exact(rng, len)
        }
        2 if !v.sealed.is_empty() => {
            let i = rng.gen_range(0..v.sealed.len());
            v.sealed[i] ^= 1 << rng.gen_range(0..8);
        }
        3 => {
            let len = rng.gen_range(0..1100);
            v.sealed = random_bytes_exact(rng, len)
        }
        _ => {}
    }
    v
}

/// An `AppEnvelope` holding a beacon (plaintext: what any member, or anyone, can send).
pub fn beacon_envelope<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    signers: &[EthSigner],
) -> pb::AppEnvelope {
    pb::AppEnvelope {
        body: Some(pb::app_envelope::Body::Beacon(beacon(rng, w, signers))),
    }
}

/// An `AppEnvelope` of any body, as an outsider can send it (no MLS keys; `signers` may
/// still sign votes inside commit evidence).
pub fn app_envelope<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    signers: &[EthSigner],
) -> pb::AppEnvelope {
    use pb::app_envelope::Body;
    let body = match rng.gen_range(0..16) {
        0 => None,
        1..=3 => Some(Body::MlsMessage(mls_bytes(rng, w, &w.ciphertexts))),
        4..=6 => Some(Body::CommitCandidate(commit_candidate(rng, w, signers))),
        7 | 8 => Some(Body::CatchUpRequest(catch_up_request(rng, w))),
        12 | 13 => Some(Body::Beacon(beacon(rng, w, signers))),
        14 | 15 => Some(Body::SealedVote(sealed_vote(rng, w))),
        _ => Some(Body::CatchUpCommit(commit_candidate(rng, w, signers))),
    };
    pb::AppEnvelope { body }
}

/// A `MemberWelcome` with any welcome, sync and joiner list. Welcomes are becoming signed
/// (fields 6–7: `committer`, and an EIP-191 signature by it over `"demls/welcome/v1" ‖
/// conversation ‖ 0 ‖ epoch BE ‖ SHA-256(welcome) ‖ joiner ids`, per `proto/demls/v1`);
/// see [`sign_welcome`].
pub fn member_welcome<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    joiner: Option<MemberId>,
) -> pb::MemberWelcome {
    let mut joiners: Vec<Vec<u8>> = (0..any_len(rng, 40)).map(|_| id_bytes(rng, w)).collect();
    if let Some(j) = joiner
        && rng.gen_bool(0.7)
    {
        let at = rng.gen_range(0..=joiners.len());
        joiners.insert(at, j.to_vec());
    }
    let mw = pb::MemberWelcome {
        conversation: any_string(rng, &w.name),
        welcome: mls_bytes(rng, w, &w.welcomes),
        sync: mls_bytes(rng, w, &w.ciphertexts),
        joiner_ids: joiners,
        epoch: epoch(rng, w),
        ..Default::default()
    };
    if rng.gen_bool(0.8) {
        sign_welcome(rng, w, &mw)
    } else {
        mw
    }
}

/// A claimed signer and its signature over `message`: one of `w.signers` (or a random
/// id), signing it (or junk bytes).
fn signed_by_one_of<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    message: impl FnOnce() -> Vec<u8>,
) -> (Vec<u8>, Vec<u8>) {
    let signer = pick(rng, &w.signers);
    let id = match signer {
        Some(s) if rng.gen_bool(0.8) => s.member_id().to_vec(),
        _ => id_bytes(rng, w),
    };
    let signature = match signer {
        Some(s) if rng.gen_bool(0.7) => s.sign(&message()).unwrap_or_default(),
        _ => random_bytes(rng, 70),
    };
    (id, signature)
}

/// `mw` with a committer and signature appended at the encoding level (any previous
/// ones are overridden, as the last occurrence of a field wins): signed by one of
/// `w.signers` over the fields as they are, or junk.
pub fn sign_welcome<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    mw: &pb::MemberWelcome,
) -> pb::MemberWelcome {
    use sha2::Digest;
    let mut bytes = mw.encode_to_vec();
    let (committer, signature) = signed_by_one_of(rng, w, || {
        let mut m = b"demls/welcome/v1".to_vec();
        m.extend_from_slice(mw.conversation.as_bytes());
        m.push(0);
        m.extend_from_slice(&mw.epoch.to_be_bytes());
        m.extend_from_slice(&sha2::Sha256::digest(&mw.welcome));
        for j in &mw.joiner_ids {
            m.extend_from_slice(j);
        }
        m
    });
    push_bytes_field(&mut bytes, 6, &committer);
    push_bytes_field(&mut bytes, 7, &signature);
    // The copy's sender: signed over the sync by one of the signers (or junk), or absent.
    if rng.gen_bool(0.6) {
        let sent_at = w
            .now_ms
            .saturating_add_signed(rng.gen_range(-60_000..60_000));
        let (sender, signature) = signed_by_one_of(rng, w, || {
            let mut m = b"demls/welcome-copy/v1".to_vec();
            m.extend_from_slice(mw.conversation.as_bytes());
            m.push(0);
            m.extend_from_slice(&mw.epoch.to_be_bytes());
            m.extend_from_slice(&sent_at.to_be_bytes());
            m.extend_from_slice(&sha2::Sha256::digest(&mw.welcome));
            m.extend_from_slice(&sha2::Sha256::digest(&mw.sync));
            m
        });
        push_bytes_field(&mut bytes, 8, &sender);
        push_bytes_field(&mut bytes, 9, &signature);
        push_varint_field(&mut bytes, 10, sent_at);
    }
    pb::MemberWelcome::decode(bytes.as_slice()).unwrap_or_default()
}

/// A `WelcomeEnvelope` of any body.
pub fn welcome_envelope<R: Rng + ?Sized>(
    rng: &mut R,
    w: &World,
    joiner: Option<MemberId>,
) -> pb::WelcomeEnvelope {
    use pb::welcome_envelope::Body;
    let body = match rng.gen_range(0..8) {
        0 => None,
        1..=4 => Some(Body::KeyPackage(announcement(rng, w))),
        _ => Some(Body::Welcome(member_welcome(rng, w, joiner))),
    };
    pb::WelcomeEnvelope { body }
}
