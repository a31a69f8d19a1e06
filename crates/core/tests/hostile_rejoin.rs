//! Rejoin announcements and who votes (regression tests from a review of 480c05c, which
//! made members whose signed rejoin announcement we hold stop voting; both failed there).
//!
//! The rule trusts "only the member itself can put itself here (the announcement is signed
//! under the rejoin domain, fresh, and its key package unused)". On the proposal path
//! (`on_proposal`, proposals.rs ~338) the announcement a proposal carries is buffered
//! after a signature check only: no freshness (`announcement_stale`), no used-key-package
//! check, and before the proposal itself is validated (it may be rejected right after).
//! So one insider that holds ANY rejoin announcement its victim ever published (they are
//! public on the welcome subtopic, and never expire cryptographically) takes the victim
//! out of every honest member's voters, and the epoch steward then proposes re-adding the
//! victim with that (attacker-chosen) key package, which the victim cannot vote on.
//!
//! The announcement here is built with the victim's own keys and a key package whose
//! private keys the victim no longer has (as for a key package a past welcome consumed),
//! timestamped in 1970: exactly what replaying a captured old rejoin announcement gives.

mod hostile;
mod sim;

use demls_core::conversation::{Action, ConversationState, Event, Subtopic};
use demls_core::proto::pb;
use hostile::*;
use prost::Message;

/// Signed bytes of a rejoin announcement (join.rs `kp_signed_bytes`, rejoin domain).
fn rejoin_signed_bytes(conversation: &str, timestamp_ms: u64, kp: &[u8]) -> Vec<u8> {
    let mut m = b"demls/key-package/rejoin/v1".to_vec();
    m.extend_from_slice(conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m.extend_from_slice(kp);
    m
}

/// An old, genuine-looking rejoin announcement of member `v` (its own signature), whose
/// key package's private keys `v` does not hold.
fn old_rejoin_of(s: &sim::Sim, v: usize, timestamp_ms: u64) -> Action {
    let throwaway = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let kp = demls_core::mls::generate_key_package(&throwaway, &s.members[v].identity.mls)
        .expect("key package");
    let sig = s.members[v]
        .identity
        .eth
        .sign(&rejoin_signed_bytes(&s.name, timestamp_ms, &kp))
        .expect("sign");
    let ann = pb::KeyPackageAnnouncement {
        conversation: s.name.clone(),
        key_package: kp.clone(),
        member_id: s.id(v).to_vec(),
        signature: sig,
        timestamp_ms,
        rejoin: true,
    }
    .encode_to_vec();
    Action::Add {
        member: s.id(v),
        key_package: kp,
        announcement: ann,
    }
}

/// One insider sends a proposal that every honest member REJECTS (wrong liveness flag)
/// but that carries a stale rejoin announcement of the victim. Expected: nothing happens
/// to the victim. Observed (before a fix): the victim is counted out of the voters and the
/// epoch steward proposes its re-add with the replayed key package; the victim's leaf is
/// replaced and it sits in PendingJoin waiting for a welcome it cannot open.
#[test]
fn a_rejected_insider_proposal_with_a_stale_rejoin_does_not_evict_its_member() {
    let (mut s, ids, _outsider, victim) = setup(0);
    let attacker = others(&ids, &[victim])[0];
    let honest = others(&ids, &[attacker]);
    s.run_for(30_000);
    let liveness = s.members[ids[0]].conv().config().liveness_criteria_yes;
    let action = old_rejoin_of(&s, victim, 1_000);
    let p = forged_proposal(&mut s, attacker, action, ids.len() as u32, !liveness);
    let env = insider_app_message(&mut s, attacker, pb::app_message::Body::Proposal(p));
    let t0 = s.now;
    s.inject(attacker, Subtopic::AppMsg, env);
    let mut left_working = None;
    for _ in 0..240 {
        s.run_for(1_000);
        if left_working.is_none() && s.state(victim) != Some(ConversationState::Working) {
            left_working = Some((s.now - t0, s.state(victim)));
        }
    }
    let readds: Vec<usize> = honest
        .iter()
        .copied()
        .filter(|i| {
            s.events_of(
                *i,
                |e| matches!(e, Event::ProposalCreated { summary, .. } if summary.contains("add")),
            )
            .next()
            .is_some()
        })
        .collect();
    let v = s.id(victim);
    let rejoining_events = s
        .events_of(victim, |e| matches!(e, Event::Rejoining { .. }))
        .count();
    assert!(
        left_working.is_none() && rejoining_events == 0,
        "victim {v} left Working at +{:?} after a rejected insider proposal carrying its \
         1970 rejoin announcement; {rejoining_events} Rejoining events; honest members that \
         saw an add proposal: {readds:?}\n{}",
        left_working,
        s.describe()
    );
}

/// Same injection, then the insider proposes removing the victim with
/// `expected_voters_count` = roster - 1. Honest members should reject the header (the
/// group has 4 voters); they accept it because the victim is no longer a voter.
#[test]
fn a_stale_rejoin_does_not_lower_the_expected_voter_count() {
    let (mut s, ids, _outsider, victim) = setup(1);
    let attacker = others(&ids, &[victim])[0];
    let honest = others(&ids, &[attacker, victim]);
    s.run_for(30_000);
    let liveness = s.members[ids[0]].conv().config().liveness_criteria_yes;
    let action = old_rejoin_of(&s, victim, 1_000);
    let p = forged_proposal(&mut s, attacker, action, ids.len() as u32, !liveness);
    let env = insider_app_message(&mut s, attacker, pb::app_message::Body::Proposal(p));
    s.inject(attacker, Subtopic::AppMsg, env);
    s.run_for(100);
    let vid = s.id(victim);
    let rm = forged_proposal(
        &mut s,
        attacker,
        Action::Remove { member: vid },
        ids.len() as u32 - 1,
        liveness,
    );
    let rm_id = rm.proposal_id;
    let env = insider_app_message(&mut s, attacker, pb::app_message::Body::Proposal(rm));
    s.inject(attacker, Subtopic::AppMsg, env);
    s.run_for(200);
    // (member, tally yes/no/expected)
    type Tally = Option<(u32, u32, u32)>;
    let tracking: Vec<(usize, Tally)> = honest
        .iter()
        .copied()
        .filter(|i| s.members[*i].conv().proposals().any(|t| t.id == rm_id))
        .map(|i| (i, s.members[i].conv().tally(rm_id)))
        .collect();
    assert!(
        tracking.is_empty(),
        "honest members accepted a removal of the victim expecting {} voters in a group \
         of {}: (member, tally yes/no/expected) {tracking:?}",
        ids.len() - 1,
        ids.len()
    );
}
