//! Authority before effect: evidence carried by a candidate or catch-up commit from
//! someone who is not a member (or whose commit never stages) changes nothing — not the
//! roster, the steward list, the operating mode, nor anyone's queue of approved work.
//! Each scenario is one outsider packet against a settled group of four.

mod hostile;
mod sim;

use demls_core::conversation::{Action, OperatingMode, Subtopic};
use demls_core::identity::MemberId;
use demls_core::proto::pb;
use hostile::*;

/// Outcome of one outsider packet: (members where the victim is gone, members with any
/// approved work, members in Recovery mode, members whose steward list changed).
fn aftermath(s: &Sim, ids: &[usize], victim: usize, lists: &[Option<String>]) -> String {
    let honest = others(ids, &[victim]);
    let removed = removed_at(s, &honest, victim);
    let approved: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|i| !s.members[*i].conv().approved().is_empty())
        .collect();
    let recovery: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|i| s.members[*i].conv().mode() == OperatingMode::Recovery)
        .collect();
    let changed: Vec<usize> = ids
        .iter()
        .copied()
        .zip(lists)
        .filter(|(i, l)| steward_list(s, *i) != **l)
        .map(|(i, _)| i)
        .collect();
    if removed.is_empty() && approved.is_empty() && recovery.is_empty() && changed.is_empty() {
        String::new()
    } else {
        format!(
            "victim removed at {removed:?}, approved work at {approved:?}, recovery mode at \
             {recovery:?}, steward list changed at {changed:?}\n{}",
            s.describe()
        )
    }
}

fn steward_list(s: &Sim, i: usize) -> Option<String> {
    s.members[i]
        .conv()
        .steward_list()
        .map(|l| format!("{:?}", l))
}

use sim::Sim;

/// One packet carrying `evidence` from the outsider, through both plaintext paths; the
/// group must look exactly as before after `run_ms`.
fn assert_no_effect(
    make: impl Fn(&mut Sim, &[usize], usize, usize) -> Vec<demls_core::proto::cpb::Proposal>,
    run_ms: u64,
) {
    let mut failures = Vec::new();
    for catch_up in [false, true] {
        let (mut s, ids, outsider, victim) = setup(0);
        let lists: Vec<_> = ids.iter().map(|i| steward_list(&s, *i)).collect();
        let epoch = s.members[ids[0]].conv().epoch();
        let evidence = make(&mut s, &ids, outsider, victim);
        let env = junk_candidate(&s, outsider, epoch, evidence, catch_up);
        s.inject(outsider, Subtopic::AppMsg, env);
        s.run_for(run_ms);
        let what = aftermath(&s, &ids, victim, &lists);
        if !what.is_empty() {
            let path = if catch_up {
                "CatchUpCommit"
            } else {
                "CommitCandidate"
            };
            failures.push(format!("[{path}] {what}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_voteless_removal_in_outsider_evidence_removes_nobody() {
    assert_no_effect(
        |s, ids, outsider, victim| {
            let victim_id = s.id(victim);
            vec![forged_proposal(
                s,
                outsider,
                Action::Remove { member: victim_id },
                ids.len() as u32,
                true,
            )]
        },
        2 * MIN,
    );
}

#[test]
fn a_huge_voter_count_in_outsider_evidence_decides_nothing() {
    for voters in [1u32 << 31, u32::MAX] {
        assert_no_effect(
            |s, _, outsider, victim| {
                let victim_id = s.id(victim);
                vec![forged_proposal(
                    s,
                    outsider,
                    Action::Remove { member: victim_id },
                    voters,
                    true,
                )]
            },
            MIN,
        );
    }
}

#[test]
fn a_forged_election_with_a_duplicate_steward_neither_installs_nor_crashes() {
    assert_no_effect(
        |s, ids, outsider, _| {
            let a = s.id(ids[0]);
            let epoch = s.members[ids[0]].conv().epoch();
            vec![forged_proposal(
                s,
                outsider,
                Action::Election {
                    stewards: vec![a, a],
                    election_epoch: epoch,
                    retry_round: 0,
                },
                ids.len() as u32,
                true,
            )]
        },
        MIN,
    );
}

#[test]
fn a_forged_election_naming_the_outsider_sole_steward_is_not_installed() {
    assert_no_effect(
        |s, ids, outsider, _| {
            let me = s.id(outsider);
            let epoch = s.members[ids[0]].conv().epoch();
            vec![forged_proposal(
                s,
                outsider,
                Action::Election {
                    stewards: vec![me],
                    election_epoch: epoch,
                    retry_round: u32::MAX,
                },
                ids.len() as u32,
                true,
            )]
        },
        MIN,
    );
}

#[test]
fn a_forged_deadlock_emergency_does_not_enter_recovery() {
    assert_no_effect(
        |s, ids, outsider, _| {
            let epoch = s.members[ids[0]].conv().epoch();
            let creator = s.id(ids[1]);
            vec![forged_proposal(
                s,
                outsider,
                Action::Emergency {
                    violation: pb::ViolationType::Deadlock as i32,
                    target: None,
                    creator,
                    epoch,
                },
                ids.len() as u32,
                true,
            )]
        },
        MIN,
    );
}

#[test]
fn decide_never_overflows_and_zero_votes_never_decide() {
    use demls_core::consensus::decide;
    for n in [3u32, 1000, 1 << 31, u32::MAX] {
        for liveness in [true, false] {
            assert_eq!(decide(n, 0, 0, liveness, false), None, "n={n}");
            assert!(decide(n, u32::MAX, u32::MAX, liveness, false).is_some());
        }
    }
}

#[test]
fn steward_validate_refuses_duplicates_without_panicking() {
    let a = MemberId([7; 20]);
    let r = std::panic::catch_unwind(|| {
        demls_core::steward::validate(&[a, a], &[a, a], 0, 0, "chat", 1, 2)
    });
    assert!(matches!(r, Ok(Err(_))), "validate([a, a]) must be an error");
}

/// A catch-up commit claiming the last epoch there is must not overflow anything.
#[test]
fn a_catch_up_commit_for_epoch_max_is_harmless() {
    let (mut s, ids, outsider, _) = setup(0);
    let before = s.members[ids[0]].conv().epoch();
    let env = junk_candidate(&s, outsider, u64::MAX, vec![], true);
    s.inject(outsider, Subtopic::AppMsg, env);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run_for(MIN)));
    assert!(
        r.is_ok(),
        "a member panicked on a CatchUpCommit for epoch u64::MAX"
    );
    assert!(ids.iter().all(|i| s.members[*i].conv().epoch() == before));
}
