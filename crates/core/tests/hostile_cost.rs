//! Bounded work per packet: what anyone on the topic can send costs the members a bounded
//! number of signature checks (counted with `identity::recoveries_on_this_thread`; the
//! simulator runs every member on this thread), however many copies come.

mod hostile;
mod sim;

use demls_core::consensus::vote_hash;
use demls_core::conversation::{Action, Role, Subtopic};
use demls_core::identity::recoveries_on_this_thread;
use demls_core::proto::{cpb, pb};
use hostile::*;
use prost::Message;
use sim::{Net, Sim, fast_config};

fn candidate(p: &[u8]) -> Option<pb::CommitCandidate> {
    match pb::AppEnvelope::decode(p).ok()?.body? {
        pb::app_envelope::Body::CommitCandidate(c) => Some(c),
        _ => None,
    }
}

/// A proposal header `owner` signed, fit for the conversation's policy, carrying one vote
/// "by" `voter` whose signature is another message's: checking it costs a recovery.
fn junk_item(s: &mut Sim, owner: usize, voter: usize, tag: u32, signature: &[u8]) -> cpb::Proposal {
    let victim = s.id(voter);
    let mut p = forged_proposal(s, owner, Action::Remove { member: victim }, 4, true);
    p.proposal_id = p.proposal_id.wrapping_add(tag);
    let mut v = cpb::Vote {
        vote_id: tag,
        vote_owner: victim.to_vec(),
        proposal_id: p.proposal_id,
        timestamp: p.timestamp,
        vote: true,
        ..Default::default()
    };
    v.vote_hash = vote_hash(&v).to_vec();
    v.signature = signature.to_vec();
    p.votes.push(v);
    p
}

/// Copies of a held candidate carrying other evidence (anyone can make them from the
/// steward's candidate) are judged only as far as the commit's changes can need, and
/// only a few differing lists per commit.
/// (Failed before: every copy's whole evidence was checked, one recovery per item: 20
/// copies of 150 items cost the member still holding the candidate 3 001 recoveries;
/// the others had applied it already.)
#[test]
fn copies_of_a_candidate_with_junk_evidence_cost_bounded_signature_work() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 4);
    let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
    let rest = others(&ids, &[es]);
    let j = s.add_member("newcomer");
    let logged = s.log.len();
    s.join(j);
    let sent = |s: &Sim| {
        s.log[logged..]
            .iter()
            .find(|(_, from, st, p)| {
                *from == es && *st == Subtopic::AppMsg && candidate(p).is_some()
            })
            .and_then(|l| candidate(&l.3))
    };
    assert!(
        s.run_until(5 * MIN, |s| sent(s).is_some()),
        "no candidate\n{}",
        s.describe()
    );
    let real = sent(&s).unwrap();
    // Every member holds the real candidate by now, its freeze round still open.
    let settle = s.net.max_delay + 1;
    s.run_for(settle);
    let signature = s.members[rest[0]]
        .identity
        .eth
        .sign(b"something else")
        .unwrap();
    let (copies, items) = (20u32, 150u32);
    let mut packets = Vec::new();
    for k in 0..copies {
        let mut c = real.clone();
        c.evidence = (0..items)
            .map(|i| junk_item(&mut s, rest[0], rest[1], k * items + i + 1, &signature))
            .collect();
        packets.push(
            pb::AppEnvelope {
                body: Some(pb::app_envelope::Body::CommitCandidate(c)),
            }
            .encode_to_vec(),
        );
    }
    let before = recoveries_on_this_thread();
    for p in &packets {
        for &i in &rest {
            s.deliver(i, es, Subtopic::AppMsg, p.clone());
        }
    }
    s.run_for(0);
    let spent = recoveries_on_this_thread() - before;
    // Per member at most 3 further lists of (changes + 1) items, one recovery each.
    let bound = rest.len() as u64 * 3 * 2;
    assert!(
        spent <= bound,
        "{copies} copies of {items} junk items cost {spent} recoveries (bound {bound})"
    );
    let mut all = ids.clone();
    all.push(j);
    s.assert_converge(&all, 5 * MIN);
}

/// A key-package announcement makes the epoch steward re-check only what it proposes
/// now, not every request it holds.
/// (Failed before: each announcement re-verified every buffered announcement, one
/// recovery each: the 31st cost 32.)
#[test]
fn an_announcement_costs_the_steward_bounded_signature_work() {
    let (mut s, ids) = group(1, Net::clean(), fast_config(), 3);
    let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
    let joiners: Vec<usize> = (0..31)
        .map(|k| s.add_member(&format!("joiner{k}")))
        .collect();
    let announce = |s: &Sim, who: usize| {
        let m = &s.members[who];
        let mls = demls_core::mls::MlsIdentity::create(&m.provider, m.id()).unwrap();
        let kp = demls_core::mls::generate_key_package(&m.provider, &mls).unwrap();
        demls_core::conversation::forge_announcement(
            &s.name,
            kp,
            m.id(),
            &m.identity.eth,
            s.now,
            false,
        )
    };
    let (last, first) = joiners.split_last().unwrap();
    for &j in first {
        let a = announce(&s, j);
        s.deliver(es, j, Subtopic::Welcome, a);
    }
    s.run_for(0);
    let a = announce(&s, *last);
    let before = recoveries_on_this_thread();
    s.deliver(es, *last, Subtopic::Welcome, a);
    s.run_for(0);
    let spent = recoveries_on_this_thread() - before;
    assert!(
        spent <= 3,
        "one announcement with {} buffered cost the steward {spent} recoveries",
        first.len()
    );
}
