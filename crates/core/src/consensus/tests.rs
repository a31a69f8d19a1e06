use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::identity::{EthSigner, MemberId};
use crate::proto::cpb::Proposal;

fn keys(n: usize) -> (ChaCha20Rng, Vec<EthSigner>) {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let k = (0..n).map(|_| EthSigner::random_with(&mut rng)).collect();
    (rng, k)
}

fn req(n: u32) -> NewProposal {
    NewProposal {
        name: "remove x".into(),
        payload: b"payload".to_vec(),
        expected_voters: n,
        expiration_s: 600,
        liveness_yes: true,
        fixed_id: None,
    }
}

const T: u64 = 1_790_000_000;

#[test]
fn decision_table() {
    // (n, yes, no, liveness, timed_out) -> outcome
    let cases = [
        (1, 1, 0, true, false, Some(true)),
        (1, 0, 1, true, false, Some(false)),
        (2, 1, 0, true, false, None),
        (2, 1, 0, true, true, None),
        (2, 2, 0, true, false, Some(true)),
        (2, 1, 1, true, false, Some(false)),
        (3, 1, 0, true, false, None),
        (3, 2, 0, true, false, Some(true)),
        (3, 1, 1, true, false, Some(true)), // silent 1 counts YES: 2 ≥ 2 > 1
        (3, 1, 1, false, false, Some(false)),
        (3, 0, 2, true, false, Some(false)),
        (4, 2, 1, true, false, Some(true)),
        (4, 1, 2, true, false, None), // yes_w 2, no_w 2 < 3: undecided before timeout
        (4, 2, 2, true, false, Some(true)), // full tie → liveness
        (4, 2, 2, false, false, Some(false)),
        (4, 1, 0, true, true, Some(true)), // timeout: 1 + 3 silent
        (4, 1, 0, false, true, Some(false)),
        (10, 6, 0, true, false, None), // quorum is 7
        (10, 7, 0, true, false, Some(true)),
        (10, 3, 4, true, false, None), // received 7, yes_w 6 < 7: undecided until timeout
        (10, 0, 7, true, false, Some(false)),
        // 3 YES + 1 NO decided YES at members that saw those four; the fifth vote (NO)
        // must not turn that into a timeout NO at members that saw all five.
        (5, 3, 2, true, false, Some(true)),
        (5, 3, 2, true, true, Some(true)),
        (5, 2, 3, false, false, Some(false)),
    ];
    for (n, y, no, l, t, want) in cases {
        let got = decide(n, y, no, l, t);
        assert_eq!(got, want, "n={n} yes={y} no={no} liveness={l} timeout={t}");
    }
}

fn session(
    n: usize,
    yes_votes: usize,
) -> (ChaCha20Rng, Vec<EthSigner>, Vec<ConsensusState>, Proposal) {
    let (mut rng, k) = keys(n);
    let ids: Vec<MemberId> = k.iter().map(|x| x.member_id()).collect();
    let is_voter = |m: &MemberId| ids.contains(m);
    let mut states = vec![ConsensusState::default(); n];
    let c = states[0]
        .create_proposal(&k[0], &mut rng, T, req(n as u32), Some(true))
        .unwrap();
    for s in states.iter_mut().skip(1) {
        s.receive_proposal(c.proposal.clone(), T, &is_voter)
            .unwrap();
    }
    for i in 1..yes_votes {
        let (v, _) = states[i]
            .cast_vote(&k[i], &mut rng, c.proposal.proposal_id, true, T + 1)
            .unwrap();
        for (j, s) in states.iter_mut().enumerate() {
            if j != i {
                s.receive_vote(v.clone(), T + 1, &is_voter).unwrap();
            }
        }
    }
    (rng, k, states, c.proposal)
}

#[test]
fn three_and_ten_members_reach_yes() {
    let (_, _, states, p) = session(3, 2);
    assert!(
        states
            .iter()
            .all(|s| s.outcome(p.proposal_id) == Some(true))
    );
    let (_, _, states, p) = session(10, 7);
    assert!(
        states
            .iter()
            .all(|s| s.outcome(p.proposal_id) == Some(true))
    );
    let (_, _, mut states, p) = session(10, 3);
    assert!(states.iter().all(|s| s.outcome(p.proposal_id).is_none()));
    assert_eq!(states[0].on_timeout(p.proposal_id, T + 100), Some(true));
}

#[test]
fn no_votes_reach_no() {
    let (mut rng, k, mut states, p) = session(4, 1);
    let ids: Vec<MemberId> = k.iter().map(|x| x.member_id()).collect();
    let is_voter = |m: &MemberId| ids.contains(m);
    for i in 1..4 {
        let (v, _) = states[i]
            .cast_vote(&k[i], &mut rng, p.proposal_id, false, T + 2)
            .unwrap();
        let _ = states[0].receive_vote(v, T + 2, &is_voter);
    }
    assert_eq!(states[0].outcome(p.proposal_id), Some(false));
}

#[test]
fn bad_votes_are_rejected_with_their_reason_and_never_counted() {
    let (mut rng, k, mut states, p) = session(5, 1);
    let ids: Vec<MemberId> = k[..4].iter().map(|x| x.member_id()).collect(); // k[4] is not a member
    let is_voter = |m: &MemberId| ids.contains(m);
    let id = p.proposal_id;
    let (good, _) = states[1]
        .cast_vote(&k[1], &mut rng, id, true, T + 1)
        .unwrap();

    // Forged: claims k[2] but signed by k[1].
    let mut forged = good.clone();
    forged.vote_owner = k[2].member_id().to_vec();
    forged.vote_hash = vote_hash(&forged).to_vec();
    assert!(matches!(
        states[0].receive_vote(forged, T + 1, &is_voter),
        Err(Rejection::BadSignature(_))
    ));

    // Tampered after signing.
    let mut tampered = good.clone();
    tampered.vote = false;
    assert_eq!(
        states[0].receive_vote(tampered, T + 1, &is_voter),
        Err(Rejection::HashMismatch)
    );

    // Replayed.
    states[0]
        .receive_vote(good.clone(), T + 1, &is_voter)
        .unwrap();
    assert!(matches!(
        states[0].receive_vote(good.clone(), T + 1, &is_voter),
        Err(Rejection::Replayed(_))
    ));

    // Equivocation: a second, different vote by k[1].
    let mut other = ConsensusState::default();
    other.receive_proposal(p.clone(), T, &is_voter).unwrap();
    let (second, _) = other.cast_vote(&k[1], &mut rng, id, false, T + 2).unwrap();
    assert!(matches!(
        states[0].receive_vote(second, T + 2, &is_voter),
        Err(Rejection::DuplicateVoter(_))
    ));

    // A vote from proposal A replayed into proposal B.
    let c2 = states[3]
        .create_proposal(&k[3], &mut rng, T, req(5), None)
        .unwrap();
    states[0]
        .receive_proposal(c2.proposal.clone(), T, &is_voter)
        .unwrap();
    let mut moved = good.clone();
    moved.proposal_id = c2.proposal.proposal_id;
    assert_eq!(
        states[0].receive_vote(moved, T + 1, &is_voter),
        Err(Rejection::HashMismatch)
    );

    // Vote after expiry.
    let (late, _) = states[2]
        .cast_vote(&k[2], &mut rng, id, true, T + 3)
        .unwrap();
    assert_eq!(
        states[0].receive_vote(late, T + 601, &is_voter),
        Err(Rejection::Expired(id))
    );

    // Non-member (properly signed).
    let mut outsider = ConsensusState::default();
    outsider.receive_proposal(p.clone(), T, &|_| true).unwrap();
    let (nm, _) = outsider
        .cast_vote(&k[4], &mut rng, id, true, T + 1)
        .unwrap();
    assert_eq!(
        states[0].receive_vote(nm, T + 1, &is_voter),
        Err(Rejection::NotAMember(k[4].member_id()))
    );

    // Only the creator's and one good vote count.
    assert_eq!(states[0].tally(id), Some((2, 0, 5)));
}

#[test]
fn evidence_lets_a_member_that_missed_votes_decide() {
    let (mut rng, k, mut states, p) = session(4, 1);
    let ids: Vec<MemberId> = k.iter().map(|x| x.member_id()).collect();
    let is_voter = |m: &MemberId| ids.contains(m);
    let id = p.proposal_id;
    // Votes reach member 0 only.
    for i in 1..3 {
        let (v, _) = states[i]
            .cast_vote(&k[i], &mut rng, id, true, T + 1)
            .unwrap();
        states[0].receive_vote(v, T + 1, &is_voter).unwrap();
    }
    assert_eq!(states[0].outcome(id), Some(true));
    assert_eq!(states[3].outcome(id), None);
    let ev = states[0].evidence(id).unwrap();
    assert_eq!(evidence_decision(&ev, T + 2, 30, &is_voter), Ok(Some(true)));
    assert_eq!(
        states[3].ingest_evidence(ev.clone(), T + 2, &is_voter),
        Ok(Some(true))
    );
    // A forged vote inside evidence is not counted.
    let mut bad = ev.clone();
    bad.votes[1].vote_owner = k[3].member_id().to_vec();
    assert!(evidence_decision(&bad, T + 2, 30, &is_voter).is_err());
    let mut fresh = ConsensusState::default();
    assert_eq!(fresh.ingest_evidence(bad, T + 2, &is_voter), Ok(None)); // 2 valid of 4: undecided
}

#[test]
fn self_leave_id_is_deterministic_and_state_round_trips() {
    let (_, _, states, p) = session(3, 2);
    let m = MemberId([7; 20]);
    assert_eq!(self_leave_proposal_id(&m), self_leave_proposal_id(&m));
    let bytes = serde_json::to_vec(&states[0]).unwrap();
    let back: ConsensusState = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back.tally(p.proposal_id), states[0].tally(p.proposal_id));
    assert_eq!(back.outcome(p.proposal_id), Some(true));
}
