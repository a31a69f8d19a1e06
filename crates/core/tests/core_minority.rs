//! The minority rule (issue 12, item 6; `docs/PROTOCOL.md`, "Minority rule"): a member
//! that holds signed votes from half of its group or fewer decides nothing, neither by
//! the timeout rule nor on a partial tally, so a side of a partition that is not a
//! majority commits nothing, and after the partition heals there is one group. Each
//! scenario runs on a clean network and with 10 % loss plus reordering.

mod sim;

use demls_core::config::Millis;
use demls_core::conversation::{Event, ProposalStatus, Role};
use demls_core::identity::MemberId;
use sim::{Net, Sim, fast_config, for_seeds};

const MIN: u64 = 60_000;

/// How long a partition lasts: long enough for the timeout rule, an inactivity window, a
/// freeze round, a reelection and its election several times over (`fast_config`: 3 s
/// consensus timeout, 6 s inactivity, 3 s freeze).
const SPLIT: Millis = 5 * MIN;

/// `SIM_NET=clean` or `SIM_NET=lossy` picks one network, to replay a failure.
fn nets() -> Vec<Net> {
    match std::env::var("SIM_NET").as_deref() {
        Ok("clean") => vec![Net::clean()],
        Ok("lossy") => vec![Net::lossy(0.1)],
        _ => vec![Net::clean(), Net::lossy(0.1)],
    }
}

/// `n` members in one group with a settled steward list (no election still open).
fn group(seed: u64, net: Net, n: usize) -> (Sim, Vec<usize>) {
    let mut s = Sim::new(seed, net, fast_config());
    let ids = s.add_members(n);
    s.join_one_by_one(&ids);
    s.settle_steward_list_and(&ids, |s| s.converged(&ids));
    (s, ids)
}

fn others(all: &[usize], except: &[usize]) -> Vec<usize> {
    all.iter()
        .copied()
        .filter(|i| !except.contains(i))
        .collect()
}

/// Commits member `i` applied at or after `since`.
fn commits_since(s: &Sim, i: usize, since: Millis) -> Vec<Event> {
    s.members[i]
        .events
        .iter()
        .filter(|(t, e)| *t >= since && matches!(e, Event::CommitApplied { .. }))
        .map(|(_, e)| e.clone())
        .collect()
}

/// Proposals member `i` decided YES at or after `since`.
fn accepted_since(s: &Sim, i: usize, since: Millis) -> Vec<u32> {
    s.members[i]
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::ProposalDecided { id, accepted: true } if *t >= since => Some(*id),
            _ => None,
        })
        .collect()
}

/// Asserts that none of `side` decided a proposal YES or applied a commit since `since`.
fn assert_minority_idle(s: &Sim, side: &[usize], since: Millis) {
    for &i in side {
        let commits = commits_since(s, i, since);
        assert!(
            commits.is_empty(),
            "member {i} of the minority committed on its own: {commits:?}\n{}",
            s.describe()
        );
        let accepted = accepted_since(s, i, since);
        assert!(
            accepted.is_empty(),
            "member {i} of the minority decided {accepted:?} YES\n{}",
            s.describe()
        );
    }
}

/// After the heal a removal by `proposer` of `target` goes through everywhere: the group
/// is one and works.
fn assert_works(s: &mut Sim, ids: &[usize], proposer: usize, target: usize) {
    s.propose_removal(proposer, target);
    let rest = others(ids, &[target]);
    s.assert_agree(&rest, &rest, 20 * MIN);
}

/// The issue-12 case: a member cut off from the other three proposes a removal. Under
/// the RFC's timeout rule its one YES and three silent members (counted YES) accepted
/// it; it then found the stewards silent, elected itself and committed the removal alone,
/// a fork. Now one vote of four decides nothing, it commits nothing, and when the network
/// heals it is in the same group as the others.
#[test]
fn a_member_cut_off_alone_decides_and_commits_nothing() {
    for net in nets() {
        for_seeds(0..2, |seed| {
            let (mut s, ids) = group(seed, net.clone(), 4);
            let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
            let bs = s.holder(ids[0], Role::BackupSteward).expect("backup");
            let plain = others(&ids, &[es, bs]);
            let (lone, target) = (plain[0], plain[1]);
            let epoch = s.members[lone].conv().epoch();
            let since = s.now;
            s.partition(&[&[lone], &others(&ids, &[lone])]);
            let id = s.propose_removal(lone, target);
            s.run_for(SPLIT);
            assert_minority_idle(&s, &[lone], since);
            let c = s.members[lone].conv();
            assert_eq!(c.epoch(), epoch, "{}", s.describe());
            assert!(
                c.proposals()
                    .any(|p| p.id == id && p.status == ProposalStatus::Rejected),
                "the lone member's removal is not failed: {:?}",
                c.proposals()
                    .map(|p| (p.id, p.status, p.action.summary()))
                    .collect::<Vec<_>>()
            );
            s.heal();
            s.assert_agree(&ids, &ids, 10 * MIN);
            assert_eq!(s.members[lone].conv().epoch(), epoch, "{}", s.describe());
            assert_works(&mut s, &ids, es, target);
        });
    }
}

/// Two against two: each side proposes removing a member of the other. Half of the
/// group is not more than half, so neither side decides or commits anything (under the
/// timeout rule both did, and both committed: two groups). Healed, the group is one.
#[test]
fn a_two_two_split_changes_nothing_until_it_heals() {
    for net in nets() {
        for_seeds(0..2, |seed| {
            let (mut s, ids) = group(seed, net.clone(), 4);
            let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
            let bs = s.holder(ids[0], Role::BackupSteward).expect("backup");
            let plain = others(&ids, &[es, bs]);
            let (left, right) = ([es, plain[0]], [bs, plain[1]]);
            let epoch = s.members[es].conv().epoch();
            let since = s.now;
            s.partition(&[&left, &right]);
            s.propose_removal(left[1], right[1]);
            s.propose_removal(right[1], left[1]);
            s.run_for(SPLIT);
            assert_minority_idle(&s, &ids, since);
            s.heal();
            s.assert_agree(&ids, &ids, 10 * MIN);
            assert_eq!(s.members[es].conv().epoch(), epoch, "{}", s.describe());
            assert_works(&mut s, &ids, left[1], right[1]);
        });
    }
}

/// Three against two, with the epoch steward on the smaller side. The three remove one of
/// the two (three YES of five decide whatever the other two would vote) and the backup
/// commits it; the two propose removing one of the three, which two votes of five cannot
/// decide. Healed, the epoch steward catches up on the majority's commit (its signed votes
/// prove the decision to a member that never saw the proposal) and the group is one.
#[test]
fn the_majority_commits_and_the_minority_follows_after_healing() {
    for net in nets() {
        for_seeds(0..2, |seed| {
            let (mut s, ids) = group(seed, net.clone(), 5);
            let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
            let bs = s.holder(ids[0], Role::BackupSteward).expect("backup");
            let plain = others(&ids, &[es, bs]);
            let (x, a, b) = (plain[0], plain[1], plain[2]);
            let (minority, majority) = ([es, x], [bs, a, b]);
            let since = s.now;
            s.partition(&[&minority, &majority]);
            s.propose_removal(a, x);
            s.propose_removal(es, a);
            let x_id: MemberId = s.id(x);
            let removed_x = s.run_until(SPLIT, |s| {
                majority.iter().all(|i| {
                    !s.members[*i].conv().members().contains(&x_id)
                        && s.agree(&majority, &others(&ids, &[x]))
                })
            });
            assert!(removed_x, "the majority did not remove x\n{}", s.describe());
            s.run_for(SPLIT);
            assert_minority_idle(&s, &minority, since);
            s.heal();
            // The majority's next message, from an epoch the minority has not reached,
            // is what tells it that it is behind (a quiet group tells nobody anything
            // until fork detection's beacons do).
            s.chat(a, "after the split");
            let rest = others(&ids, &[x]);
            s.assert_agree(&rest, &rest, 10 * MIN);
            assert!(
                commits_since(&s, es, since).iter().any(|e| matches!(
                    e,
                    Event::CommitApplied { removed, .. } if removed.contains(&x_id)
                )),
                "the epoch steward did not apply the majority's commit\n{}",
                s.describe()
            );
            // Not asserted here: the next change after the heal. A minority member that
            // missed an election the majority held after its commit can still rank
            // candidates with an older list and fork (a few seeds in 40); fork detection
            // and healing, not this rule, cover that.
        });
    }
}
