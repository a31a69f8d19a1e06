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
        // The silent third counts YES under the RFC tally (2 ≥ 2 > 1), but its vote could
        // still arrive as NO (1 YES, 2 NO: NO): not decided before the timeout.
        (3, 1, 1, true, false, None),
        (3, 1, 1, true, true, Some(true)),
        (3, 1, 1, false, false, None),
        (3, 1, 1, false, true, Some(false)),
        (3, 1, 2, true, false, Some(false)),
        (3, 0, 2, true, false, Some(false)),
        (4, 2, 1, true, false, Some(true)), // a fourth NO ties 2–2: YES either way
        (4, 1, 2, true, false, None),       // yes_w 2, no_w 2 < 3: undecided before timeout
        (4, 2, 2, true, false, Some(true)), // full tie → liveness
        (4, 2, 2, false, false, Some(false)),
        // The minority rule: one vote of four is not a majority turnout, so the three
        // silent members no longer decide it at the timeout (they did, YES or NO).
        (4, 1, 0, true, true, None),
        (4, 1, 0, false, true, None),
        (4, 2, 0, true, true, None), // exactly half: either half of a split could be it
        (4, 3, 0, true, true, Some(true)),
        (5, 3, 0, true, true, Some(true)),
        // Six YES of ten decide whatever the other four do (4 NO: a quorum-sized subset
        // still decides YES), so before the RFC's quorum of 7; five of ten never do.
        (10, 6, 0, true, false, Some(true)),
        (10, 5, 0, true, false, None),
        (5, 3, 0, true, false, Some(true)),
        (5, 2, 1, true, false, None), // 2 YES, 2 NO would be undecided
        (5, 2, 1, true, true, Some(true)),
        (10, 7, 0, true, false, Some(true)),
        (10, 3, 4, true, false, None), // received 7, yes_w 6 < 7: undecided until timeout
        (10, 3, 4, true, true, None),  // no subset of 7 decides either side
        (10, 5, 0, true, true, None),
        (10, 6, 0, true, true, Some(true)),
        (10, 0, 7, true, false, Some(false)),
        // 3 YES + 1 NO of 5 is decided YES early only because the fifth vote, either way,
        // still decides YES (3 YES + 2 NO: a quorum-sized subset decides YES).
        (5, 3, 1, true, false, Some(true)),
        (5, 3, 2, true, false, Some(true)),
        (5, 3, 2, true, true, Some(true)),
        (5, 2, 3, false, false, Some(false)),
        (5, 2, 2, true, false, None),
    ];
    for (n, y, no, l, t, want) in cases {
        let got = decide(n, y, no, l, t);
        assert_eq!(got, want, "n={n} yes={y} no={no} liveness={l} timeout={t}");
    }
}

/// Every member that holds a superset of the votes a member decided on early decides the
/// same, whether it decides early itself or at its timeout; and no timeout decision is
/// taken on half of the voters or fewer. Checked against every completion for small groups.
#[test]
fn decide_is_certain_exhaustively() {
    for n in 3..=40u32 {
        for l in [true, false] {
            for y in 0..=n {
                for m in 0..=(n - y) {
                    let at_timeout = decide(n, y, m, l, true);
                    if 2 * (y + m) <= n {
                        assert_eq!(
                            at_timeout, None,
                            "n={n} y={y} m={m} l={l}: minority turnout"
                        );
                    }
                    let Some(d) = decide(n, y, m, l, false) else {
                        // Not decided early: then some completion disagrees (the rule
                        // takes every certain decision).
                        if let Some(d) = at_timeout {
                            let certain = (y..=n - m).all(|y2| {
                                (m..=n - y2).all(|m2| decide(n, y2, m2, l, true) == Some(d))
                            });
                            assert!(!certain, "n={n} y={y} m={m} l={l}: certain {d} not taken");
                        }
                        continue;
                    };
                    assert_eq!(at_timeout, Some(d), "n={n} y={y} m={m} l={l}");
                    for y2 in y..=n - m {
                        for m2 in m..=(n - y2) {
                            assert_eq!(
                                decide(n, y2, m2, l, true),
                                Some(d),
                                "n={n}: early {d} on y={y} m={m} (l={l}), but y={y2} m={m2} at the timeout"
                            );
                            let early = decide(n, y2, m2, l, false);
                            assert!(early.is_none() || early == Some(d));
                        }
                    }
                }
            }
        }
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
    // Six YES of ten: YES whatever the other four vote, so decided before the RFC's
    // quorum of seven votes.
    let (_, _, states, p) = session(10, 6);
    assert!(
        states
            .iter()
            .all(|s| s.outcome(p.proposal_id) == Some(true))
    );
    // Five of ten is half the group: the other half could have decided otherwise.
    let (_, _, mut states, p) = session(10, 5);
    assert_eq!(states[0].on_timeout(p.proposal_id, 10), None);
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
fn forged_tampered_replayed_and_equivocating_votes_are_rejected_and_never_counted() {
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

    // Only the creator's and one good vote count.
    assert_eq!(states[0].tally(id), Some((2, 0, 5)));
}

#[test]
fn votes_moved_late_or_from_outsiders_are_rejected_and_never_counted() {
    let (mut rng, k, mut states, p) = session(5, 1);
    let ids: Vec<MemberId> = k[..4].iter().map(|x| x.member_id()).collect(); // k[4] is not a member
    let is_voter = |m: &MemberId| ids.contains(m);
    let id = p.proposal_id;
    let (good, _) = states[1]
        .cast_vote(&k[1], &mut rng, id, true, T + 1)
        .unwrap();
    states[0]
        .receive_vote(good.clone(), T + 1, &is_voter)
        .unwrap();

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

/// A proposal counting four voters while one of the four is rejoining (it cannot vote):
/// 1 YES and 2 NO. Counting the rejoining member as a silent YES tied it 2–2 and a tie
/// under `liveness_yes` is YES, so the one proposer beat two signed NOs. At the timeout
/// silence counts only over the members who can vote now.
#[test]
fn silence_counts_only_over_members_who_can_vote() {
    let (mut rng, k, mut states, p) = session(4, 1);
    let ids: Vec<MemberId> = k.iter().map(|x| x.member_id()).collect();
    let is_voter = |m: &MemberId| ids.contains(m);
    for i in 1..3 {
        let (v, _) = states[i]
            .cast_vote(&k[i], &mut rng, p.proposal_id, false, T + 2)
            .unwrap();
        let _ = states[0].receive_vote(v, T + 2, &is_voter);
    }
    let mut all_can_vote = states[0].clone();
    assert_eq!(states[0].on_timeout(p.proposal_id, 3), Some(false));
    // With all four able to vote, the RFC's tally holds: the silent fourth is YES.
    assert_eq!(all_can_vote.on_timeout(p.proposal_id, 4), Some(true));
}
