//! Fixtures for the hostile-input scenarios: a settled group of honest members plus an
//! outsider that holds only an Ethereum key and the conversation's name, and builders for
//! the packets such an outsider (or a compromised insider) can publish.
#![allow(dead_code)]

use demls_core::consensus::{ConsensusState, NewProposal};
use demls_core::conversation::{Action, OutPacket, Role, Subtopic};
use demls_core::identity::EthSigner;
use demls_core::mls::MlsConversation;
use demls_core::proto::{cpb, pb};
use prost::Message;

use crate::sim::{Net, Sim, fast_config};

pub const MIN: u64 = 60_000;

/// `n` members, converged, with one steward list everywhere and no election in flight.
pub use crate::sim::settle::settled_group as group;

pub fn others(all: &[usize], except: &[usize]) -> Vec<usize> {
    all.iter()
        .copied()
        .filter(|i| !except.contains(i))
        .collect()
}

/// Four honest members and an outsider that never joins. Returns (sim, members, outsider,
/// victim), the victim being a member that is neither epoch nor backup steward.
pub fn setup(seed: u64) -> (Sim, Vec<usize>, usize, usize) {
    let (mut s, ids) = group(seed, Net::clean(), fast_config(), 4);
    let es = s.holder(ids[0], Role::EpochSteward).unwrap();
    let bs = s.holder(ids[0], Role::BackupSteward).unwrap();
    let victim = others(&ids, &[es, bs])[0];
    let outsider = s.add_member("outsider");
    assert!(s.members[outsider].conv.is_none());
    (s, ids, outsider, victim)
}

/// A group in which member `b` missed a commit (see [`miss_a_commit`]).
pub struct Missed {
    pub s: Sim,
    pub outsider: usize,
    pub b: usize,
    pub rest: Vec<usize>,
}

/// The set-up of [`setup`], then member `b` (its victim) misses the commit that adds a
/// joiner: it hears nothing while the others add it and for `quiet_ms` after, then it
/// listens again. `rest` is everyone else, the joiner included.
pub fn miss_a_commit(seed: u64, quiet_ms: u64) -> Missed {
    let (mut s, ids, outsider, b) = setup(seed);
    s.members[b].deaf = true;
    let j = s.add_member("joiner");
    s.join(j);
    let rest: Vec<usize> = others(&ids, &[b]).into_iter().chain([j]).collect();
    let roster: Vec<usize> = ids.iter().copied().chain([j]).collect();
    s.assert_agree(&rest, &roster, 5 * MIN);
    s.run_for(quiet_ms);
    s.members[b].deaf = false;
    let target = s.members[rest[0]].conv().epoch();
    assert!(
        s.members[b].conv().epoch() < target,
        "b did not miss the commit\n{}",
        s.describe()
    );
    Missed {
        s,
        outsider,
        b,
        rest,
    }
}

/// A proposal header made and signed by `author`'s own key, carrying no vote at all.
pub fn forged_proposal(
    s: &mut Sim,
    author: usize,
    action: Action,
    voters: u32,
    liveness_yes: bool,
) -> cpb::Proposal {
    let proposal = NewProposal {
        name: action.summary(),
        payload: action.to_payload(),
        expected_voters: voters,
        // What `fast_config` lets a proposal live.
        expiration_s: 60,
        liveness_yes,
        fixed_id: None,
    };
    proposal_by(s, author, proposal, None)
}

/// `proposal`, made now by member `author` as its node would make it (with its own vote
/// in it if `vote` is set).
pub fn proposal_by(
    s: &mut Sim,
    author: usize,
    proposal: NewProposal,
    vote: Option<bool>,
) -> cpb::Proposal {
    let now_s = s.now / 1000;
    let m = &mut s.members[author];
    ConsensusState::default()
        .create_proposal(&m.identity.eth, &mut m.rng, now_s, proposal, vote)
        .expect("create")
        .proposal
}

/// A plaintext candidate (or catch-up commit) whose MLS commit can never stage: only its
/// `evidence` and header fields can matter.
pub fn junk_candidate(
    s: &Sim,
    author: usize,
    epoch: u64,
    evidence: Vec<cpb::Proposal>,
    catch_up: bool,
) -> Vec<u8> {
    let c = pb::CommitCandidate {
        conversation: s.name.clone(),
        mls_proposals: vec![],
        commit_message: b"not an MLS commit".to_vec(),
        steward_id: s.id(author).to_vec(),
        epoch,
        evidence,
        sealed_welcome: vec![],
    };
    let body = if catch_up {
        pb::app_envelope::Body::CatchUpCommit(c)
    } else {
        pb::app_envelope::Body::CommitCandidate(c)
    };
    pb::AppEnvelope { body: Some(body) }.encode_to_vec()
}

/// MLS varint (RFC 9420 §2.1.2).
fn varint(n: usize) -> Vec<u8> {
    if n < 1 << 6 {
        vec![n as u8]
    } else if n < 1 << 14 {
        (0x4000u16 | n as u16).to_be_bytes().to_vec()
    } else {
        (0x8000_0000u32 | n as u32).to_be_bytes().to_vec()
    }
}

/// An unauthenticated MLS `PrivateMessage` for group `name` claiming `epoch`, with a
/// `size`-byte ciphertext tagged by `tag` (so copies differ on the wire). Enough for the
/// MLS layer to report a wrong epoch before any authentication.
pub fn fake_mls_message(name: &str, epoch: u64, size: usize, tag: u32) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x02]; // mls10, mls_private_message
    m.push(name.len() as u8);
    m.extend_from_slice(name.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0x00]); // application, empty aad and sender data
    let mut ct = vec![0x5a; size.max(4)];
    ct[..4].copy_from_slice(&tag.to_be_bytes());
    m.extend(varint(ct.len()));
    m.extend(ct);
    assert_eq!(MlsConversation::peek_epoch(&m), Some(epoch));
    pb::AppEnvelope {
        body: Some(pb::app_envelope::Body::MlsMessage(m)),
    }
    .encode_to_vec()
}

pub fn app_body(p: &[u8]) -> Option<pb::app_envelope::Body> {
    pb::AppEnvelope::decode(p).ok().and_then(|e| e.body)
}

pub fn welcome_body(p: &[u8]) -> Option<pb::welcome_envelope::Body> {
    pb::WelcomeEnvelope::decode(p).ok().and_then(|e| e.body)
}

/// (packets, bytes) published at or after `t` by `from` that match `f`.
pub fn traffic(
    s: &Sim,
    t: u64,
    from: &[usize],
    f: impl Fn(Subtopic, &[u8]) -> bool,
) -> (usize, usize) {
    s.log
        .iter()
        .filter(|(at, who, st, p)| *at >= t && from.contains(who) && f(*st, p))
        .fold((0, 0), |(n, b), (_, _, _, p)| (n + 1, b + p.len()))
}

pub fn is_catch_up_request(st: Subtopic, p: &[u8]) -> bool {
    st == Subtopic::AppMsg && matches!(app_body(p), Some(pb::app_envelope::Body::CatchUpRequest(_)))
}

pub fn is_catch_up_commit(st: Subtopic, p: &[u8]) -> bool {
    st == Subtopic::AppMsg && matches!(app_body(p), Some(pb::app_envelope::Body::CatchUpCommit(_)))
}

/// Member `i`'s first key-package announcement, as published.
pub fn announcement_of(s: &Sim, i: usize) -> Vec<u8> {
    s.log
        .iter()
        .find(|(_, from, st, p)| {
            *from == i
                && *st == Subtopic::Welcome
                && matches!(
                    welcome_body(p),
                    Some(pb::welcome_envelope::Body::KeyPackage(_))
                )
        })
        .map(|l| l.3.clone())
        .expect("member announced a key package")
}

/// A genuine MLS application message from member `i` with arbitrary content (an insider,
/// or a compromised client): encrypted through a second handle on `i`'s stored group,
/// after which `i` restarts so its live group reloads the advanced ratchet.
pub fn insider_app_message(s: &mut Sim, i: usize, body: pb::app_message::Body) -> Vec<u8> {
    let name = s.name.clone();
    let ct = {
        let m = &s.members[i];
        let mut g = MlsConversation::load(&m.provider, &name)
            .unwrap()
            .expect("group in storage");
        let msg = pb::AppMessage { body: Some(body) };
        g.encrypt(&m.provider, &m.identity.mls, &msg.encode_to_vec())
            .expect("encrypt")
    };
    s.crash(i);
    s.restart(i);
    pb::AppEnvelope {
        body: Some(pb::app_envelope::Body::MlsMessage(ct)),
    }
    .encode_to_vec()
}

/// Members (of `among`) whose roster no longer holds `victim`.
pub fn removed_at(s: &Sim, among: &[usize], victim: usize) -> Vec<usize> {
    let v = s.id(victim);
    among
        .iter()
        .copied()
        .filter(|i| !s.members[*i].conv().members().contains(&v))
        .collect()
}

/// `b` as a lie about `epoch`, signed again by `eth`: its hashes from `epoch` on replaced
/// by zeros (the lowest hash, so the lie wins every tie), a branch of its own as a real
/// one would look; or, with `one_hash`, only the hash of `epoch`, which no real branch can
/// look like. None if its chain does not reach `epoch`.
fn lie(mut b: pb::EpochBeacon, eth: &EthSigner, epoch: u64, one_hash: bool) -> Option<Vec<u8>> {
    let k = usize::try_from(b.epoch.checked_sub(epoch)?).ok()?;
    let from = if one_hash { k } else { 0 };
    for a in b.chain.get_mut(from..=k)? {
        a.fill(0);
    }
    b.sender = eth.member_id().to_vec();
    Some(signed_beacon(b, eth))
}

/// `b` signed with `eth` (a member can sign anything), as the envelope it travels in.
fn signed_beacon(mut b: pb::EpochBeacon, eth: &EthSigner) -> Vec<u8> {
    demls_core::conversation::sign_beacon(&mut b, eth);
    pb::AppEnvelope {
        body: Some(pb::app_envelope::Body::Beacon(b)),
    }
    .encode_to_vec()
}

/// Makes member `i` lie in every beacon it sends from now on: a branch of its own from
/// `epoch` (see `lie`), signed with its own key (a member can sign anything). Everything
/// else it sends is left as it is.
pub fn lie_in_beacons(s: &mut Sim, i: usize, epoch: u64) {
    let eth = s.members[i].identity.eth.clone();
    s.members[i].filter = Some(Box::new(move |p: &OutPacket| {
        let mut out = p.clone();
        if let Some(pb::app_envelope::Body::Beacon(b)) = app_body(&p.payload)
            && let Some(lied) = lie(b, &eth, epoch, false)
        {
            out.payload = lied;
        }
        Some(out)
    }));
}

/// A beacon from member `i`, made now from the newest beacon anyone sent whose chain
/// reaches back to `epoch` (a recent joiner's does not), lying about `epoch` (see `lie`):
/// a lie `i` can sign as often as it likes.
pub fn lying_beacon(s: &Sim, i: usize, epoch: u64, one_hash: bool) -> Vec<u8> {
    s.log
        .iter()
        .rev()
        .find_map(|(_, _, st, p)| match app_body(p) {
            Some(pb::app_envelope::Body::Beacon(mut b)) if *st == Subtopic::AppMsg => {
                b.timestamp_ms = s.now;
                lie(b, &s.members[i].identity.eth, epoch, one_hash)
            }
            _ => None,
        })
        .expect("a beacon in the log whose chain reaches the epoch")
}

/// A beacon from member `i` claiming to be at `epoch` with one hash (all zero) for it: a
/// branch of its own from `epoch`, for any epoch in a member's log.
pub fn lying_beacon_at(s: &Sim, i: usize, epoch: u64) -> Vec<u8> {
    let eth = &s.members[i].identity.eth;
    let b = pb::EpochBeacon {
        conversation: s.name.clone(),
        sender: eth.member_id().to_vec(),
        epoch,
        chain: vec![vec![0; 16]],
        members: 4,
        timestamp_ms: s.now,
        signature: Vec::new(),
    };
    signed_beacon(b, eth)
}

/// Drops every beacon member `i` publishes (its true ones, and injected ones too: deliver
/// lies past it with `Sim::deliver`).
pub fn silence_beacons(s: &mut Sim, i: usize) {
    s.members[i].filter = Some(Box::new(|p: &OutPacket| {
        let beacon = matches!(
            app_body(&p.payload),
            Some(pb::app_envelope::Body::Beacon(_))
        );
        (!beacon).then(|| p.clone())
    }));
}

pub fn beacons_since(s: &Sim, t0: u64, ids: &[usize]) -> usize {
    traffic(s, t0, ids, |st, p| {
        st == Subtopic::AppMsg && matches!(app_body(p), Some(pb::app_envelope::Body::Beacon(_)))
    })
    .0
}
