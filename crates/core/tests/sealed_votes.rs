//! Votes travel sealed to their epoch (`SealedVote`), not as MLS application messages:
//! each MLS message costs every receiver an Ed25519 check and openmls' rewrite of its
//! whole message-secrets store, O(group size), and votes are n − 1 messages per member per
//! change (docs/BENCHMARKS.md, issue 14). These tests hold the channel to what the MLS
//! one gave: only members of the epoch can put a vote in it, a vote of a closed epoch is
//! dropped, and junk is refused before any key is derived.

mod hostile;
mod sim;

use demls_core::consensus::vote_hash;
use demls_core::conversation::{Event, InboundKind, Subtopic};
use demls_core::identity::recoveries_on_this_thread;
use demls_core::mls::MlsConversation;
use demls_core::proto::{cpb, pb};
use hostile::*;
use prost::Message;

fn sealed_vote(p: &[u8]) -> Option<pb::SealedVote> {
    match app_body(p) {
        Some(pb::app_envelope::Body::SealedVote(v)) => Some(v),
        _ => None,
    }
}

fn rejected_votes(s: &sim::Sim, i: usize) -> Vec<String> {
    s.events_of(i, |e| {
        matches!(
            e,
            Event::Rejected {
                what: InboundKind::Vote,
                ..
            }
        )
    })
    .map(|e| format!("{e:?}"))
    .collect()
}

/// A removal in a group of four, each vote cast by hand: returns the sealed votes sent.
fn removal_with_votes(s: &mut sim::Sim, honest: &[usize], victim: usize) -> Vec<pb::SealedVote> {
    let t0 = s.now;
    let id = s.propose_removal(honest[0], victim);
    for &i in &honest[1..] {
        s.run_for(50);
        s.vote(i, id, true);
    }
    assert!(
        s.run_until(5 * MIN, |s| removed_at(s, honest, victim).len()
            == honest.len()),
        "removal did not complete\n{}",
        s.describe()
    );
    s.log
        .iter()
        .filter(|(at, who, st, _)| *at >= t0 && honest.contains(who) && *st == Subtopic::AppMsg)
        .filter_map(|(_, _, _, p)| sealed_vote(p))
        .collect()
}

#[test]
fn votes_travel_sealed_to_their_epoch() {
    let (mut s, ids, _outsider, victim) = setup(0);
    let honest = others(&ids, &[victim]);
    let epoch = s.members[honest[0]].conv().epoch();
    let sealed = removal_with_votes(&mut s, &honest, victim);
    assert!(
        sealed.len() >= honest.len() - 1,
        "{} sealed votes for {} votes cast by hand",
        sealed.len(),
        honest.len() - 1
    );
    for v in &sealed {
        assert_eq!(v.epoch, epoch, "a vote sealed to another epoch");
        assert_eq!(v.salt.len(), 16);
    }
    let salts: std::collections::BTreeSet<_> = sealed.iter().map(|v| &v.salt).collect();
    assert_eq!(
        salts.len(),
        sealed.len(),
        "a salt (and so a key) used twice"
    );
}

/// A member removed at the commit into epoch E+1 keeps its epoch-E keys: what it seals
/// with them, claiming E+1, does not open; replayed votes of epoch E are dropped unread.
#[test]
fn a_vote_sealed_outside_the_current_epoch_has_no_effect() {
    let (mut s, ids, _outsider, victim) = setup(0);
    let honest = others(&ids, &[victim]);
    s.run_for(30_000);
    s.members[victim].deaf = true;
    let old_votes = removal_with_votes(&mut s, &honest, victim);
    let now_epoch = s.members[honest[0]].conv().epoch();
    // A new proposal the removed member would like to decide.
    let id = s.propose_removal(honest[0], honest[2]);
    s.run_for(100);
    let name = s.name.clone();
    let m = &s.members[victim];
    let stale = MlsConversation::load(&m.provider, &name)
        .unwrap()
        .expect("the removed member's group in storage");
    assert!(stale.epoch() < now_epoch);
    let vote = cpb::Vote {
        proposal_id: id,
        vote_owner: s.id(victim).as_bytes().to_vec(),
        vote: true,
        ..Default::default()
    };
    let salt = vec![7u8; 16];
    let sealed = stale
        .seal_to_epoch(&m.provider, "demls/vote/v1", &salt, &vote.encode_to_vec())
        .expect("seal");
    let forged = pb::AppEnvelope {
        body: Some(pb::app_envelope::Body::SealedVote(pb::SealedVote {
            epoch: now_epoch,
            salt,
            sealed,
        })),
    }
    .encode_to_vec();
    let before = rejected_votes(&s, honest[1]).len();
    let tally = s.members[honest[1]].conv().tally(id);
    s.deliver(honest[1], victim, Subtopic::AppMsg, forged);
    s.run_for(1);
    let after = rejected_votes(&s, honest[1]);
    assert_eq!(
        after.len(),
        before + 1,
        "the vote sealed under an old key was not refused: {after:?}"
    );
    assert!(after.last().unwrap().contains("open"), "{after:?}");
    // The old epoch's real votes, replayed: dropped without a word.
    for v in old_votes {
        let env = pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::SealedVote(v)),
        };
        s.deliver(honest[1], victim, Subtopic::AppMsg, env.encode_to_vec());
    }
    s.run_for(1);
    assert_eq!(rejected_votes(&s, honest[1]).len(), before + 1);
    assert_eq!(
        s.members[honest[1]].conv().tally(id),
        tally,
        "a vote counted"
    );
}

/// Junk (a salt of the wrong length, an oversized seal) is refused before any key is
/// derived, and a seal that does not open at our epoch is refused.
#[test]
fn a_sealed_vote_of_the_wrong_shape_is_refused() {
    let (mut s, ids, outsider, _victim) = setup(0);
    let epoch = s.members[ids[0]].conv().epoch();
    let cases = [
        (vec![1u8; 15], vec![0u8; 100], "shape"),
        (vec![1u8; 16], vec![0u8; 1025], "shape"),
        (vec![1u8; 16], vec![0u8; 100], "open"),
    ];
    for (salt, sealed, why) in cases {
        let n = rejected_votes(&s, ids[1]).len();
        let env = pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::SealedVote(pb::SealedVote {
                epoch,
                salt,
                sealed,
            })),
        };
        s.deliver(ids[1], outsider, Subtopic::AppMsg, env.encode_to_vec());
        s.run_for(1);
        let r = rejected_votes(&s, ids[1]);
        assert_eq!(r.len(), n + 1, "{r:?}");
        assert!(r.last().unwrap().contains(why), "{r:?}");
    }
}

/// Anyone on the topic can copy a sealed vote off the relay and send it again: it opens
/// (it is real), so the copies must cost no signature check once the vote is held.
#[test]
fn replayed_sealed_votes_cost_no_signature_checks() {
    let (mut s, ids, outsider, victim) = setup(0);
    let honest = others(&ids, &[victim]);
    let t0 = s.now;
    let id = s.propose_removal(honest[0], victim);
    s.run_for(50);
    s.vote(honest[1], id, true);
    s.run_for(500);
    let copied: Vec<_> = s
        .log
        .iter()
        .filter(|(at, who, st, p)| {
            *at >= t0 && *who == honest[1] && *st == Subtopic::AppMsg && sealed_vote(p).is_some()
        })
        .map(|(_, _, _, p)| p.clone())
        .collect();
    assert_eq!(copied.len(), 1, "one sealed vote sent by hand");
    let before = recoveries_on_this_thread();
    for _ in 0..20 {
        s.deliver(honest[0], outsider, Subtopic::AppMsg, copied[0].clone());
    }
    s.run_for(0);
    let spent = recoveries_on_this_thread() - before;
    assert!(
        spent <= 1,
        "20 copies of a held vote cost {spent} recoveries"
    );

    // A member sealing other votes in the voter's name (a fresh id each, the right hash,
    // a junk signature): refused by comparison too, whoever seals them.
    let sealer = honest[2];
    let name = s.name.clone();
    let mls = MlsConversation::load(&s.members[sealer].provider, &name)
        .unwrap()
        .expect("the sealer's group in storage");
    let epoch = mls.epoch();
    let mut packets = Vec::new();
    for k in 0..20u32 {
        let mut v = cpb::Vote {
            vote_id: 1000 + k,
            vote_owner: s.id(honest[1]).as_bytes().to_vec(),
            proposal_id: id,
            vote: false,
            signature: vec![0x1b; 65],
            ..Default::default()
        };
        v.vote_hash = vote_hash(&v).to_vec();
        let salt = vec![k as u8; 16];
        let sealed = mls
            .seal_to_epoch(
                &s.members[sealer].provider,
                "demls/vote/v1",
                &salt,
                &v.encode_to_vec(),
            )
            .expect("seal");
        packets.push(
            pb::AppEnvelope {
                body: Some(pb::app_envelope::Body::SealedVote(pb::SealedVote {
                    epoch,
                    salt,
                    sealed,
                })),
            }
            .encode_to_vec(),
        );
    }
    let refused = rejected_votes(&s, honest[0]).len();
    let before = recoveries_on_this_thread();
    for p in packets {
        s.deliver(honest[0], sealer, Subtopic::AppMsg, p);
    }
    s.run_for(0);
    let spent = recoveries_on_this_thread() - before;
    assert_eq!(
        rejected_votes(&s, honest[0]).len(),
        refused + 20,
        "each one refused"
    );
    assert!(
        spent <= 1,
        "20 sealed votes in a voter's name cost {spent} recoveries"
    );
}
