//! Split scenarios (issue 12, item 7): the network is cut into sides, each side makes a
//! membership change and chats while cut off (so each side can commit its own epoch: a
//! fork), then the network heals. Within a bounded virtual time every live member must be
//! in **one** group (one epoch, one epoch authenticator, one roster) and a chat sent after
//! healing must reach everyone. Assertions are on that end state, not on how the protocol
//! gets there. Every run prints a `SIM_REPORT split …` line with the healing time (heal →
//! one group, virtual ms); `SIM_REPORT=<file>` also appends it to a file, e.g.
//!
//! `SIM_REPORT=/tmp/heal.tsv SIM_SEEDS=0..40 cargo test -p demls-core --release --test core_forks`

mod hostile;
mod sim;

use demls_core::conversation::{Event, LeaveReason, Role};
use hostile::{MIN, group, lie_in_beacons, others};
use sim::{Net, Sim, fast_config, for_nets_and_seeds, report};

/// How long a side may take to commit its change while cut off (virtual ms). A side that
/// has not committed by then is reported (no fork on that side), not failed.
const SPLIT_MAX: u64 = 4 * MIN;
/// Bound on healing: heal → one group (virtual ms).
const HEAL_BOUND: u64 = 5 * MIN;
/// Bound on a chat after healing reaching everyone (virtual ms).
const CHAT_BOUND: u64 = 30_000;

/// What one side does while it is cut off.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// A newcomer, reachable only from this side, asks to join.
    Join,
    /// The side's first member proposes removing this member of the original group
    /// (index into the group, usually a member on the other side).
    Remove(usize),
}

fn net_name(net: &Net) -> &'static str {
    if net.loss > 0.0 { "lossy" } else { "clean" }
}

/// Fork-related events of member `i` since `t`, as short debug strings (matched by name,
/// so this compiles before and after the fork events exist).
fn fork_events(s: &Sim, i: usize, t: u64) -> Vec<String> {
    s.members[i]
        .events
        .iter()
        .filter(|(at, _)| *at >= t)
        .map(|(at, e)| (at, format!("{e:?}")))
        .filter(|(_, e)| {
            [
                "Fork",
                "Branch",
                "Rejoin",
                "Left",
                "Joined",
                "CommitApplied",
            ]
            .iter()
            .any(|k| e.starts_with(k))
        })
        .map(|(at, e)| {
            let e: String = e.chars().take(120).collect();
            format!("{:+}ms {e}", *at as i64 - t as i64)
        })
        .collect()
}

fn count_events(s: &Sim, prefix: &str, t: u64) -> usize {
    s.members
        .iter()
        .flat_map(|m| m.events.iter())
        .filter(|(at, e)| *at >= t && format!("{e:?}").starts_with(prefix))
        .count()
}

/// Why a run failed, with everything needed to read it: the plan, what each side
/// committed while cut off, the state now and each member's fork events since the heal.
fn trace(s: &Sim, plan: &str, t_heal: u64) -> String {
    let mut out = format!("{plan}\n{}", s.describe());
    for i in 0..s.members.len() {
        let ev = fork_events(s, i, t_heal);
        if !ev.is_empty() {
            out.push_str(&format!("  [{i}] after heal: {}\n", ev.join("; ")));
        }
    }
    out
}

/// Waits (bounded) for one group, then checks chat after healing reaches everyone and the
/// group stays one. A newcomer whose join expired before it ever got in (a side too small
/// to commit it) is not a member of anything: it asks again, as its user would. Members
/// that did get in on some branch get no such help. Returns (healing time in virtual ms,
/// final roster).
fn assert_heals(
    s: &mut Sim,
    required: &[usize],
    optional: &[usize],
    plan: &str,
    t_heal: u64,
) -> (u64, Vec<usize>) {
    let limit = t_heal + HEAL_BOUND;
    let mut healed = false;
    while !healed && s.now < limit {
        healed = s.run_until((limit - s.now).min(10_000), |s| {
            s.one_group(required, optional).is_some()
        });
        for &i in required {
            let expired = s.members[i]
                .conv
                .as_ref()
                .is_some_and(|c| c.closed() == Some(LeaveReason::JoinExpired));
            let ever_in = s
                .events_of(i, |e| matches!(e, Event::Joined { .. }))
                .next()
                .is_some();
            if expired && !ever_in {
                s.join(i);
            }
        }
    }
    assert!(
        healed,
        "not one group {} s after healing: required {required:?}, optional {optional:?}\n{}",
        HEAL_BOUND / 1000,
        trace(s, plan, t_heal)
    );
    let heal_ms = s.now - t_heal;
    let roster = s.one_group(required, optional).expect("checked");
    // Chat after healing, from the first and the last member of the roster (so from both
    // sides in most plans), reaches everyone else.
    // (Crashed members may stay on the roster; they hear nothing.)
    let live: Vec<usize> = roster
        .iter()
        .copied()
        .filter(|i| s.members[*i].alive)
        .collect();
    let senders = [live[0], live[live.len() - 1]];
    for (k, from) in senders.into_iter().enumerate() {
        let text = format!("after healing {k} from {from}");
        let missed = s.chat_reaches(from, &text, &live, CHAT_BOUND);
        assert!(
            missed.is_empty(),
            "chat {text:?} after healing did not reach {missed:?}\n{}",
            trace(s, plan, t_heal)
        );
    }
    // And it stays one group (no late branch switch).
    s.run_for(30_000);
    assert_eq!(
        s.one_group(required, optional).as_ref(),
        Some(&roster),
        "the group did not stay one after healing\n{}",
        trace(s, plan, t_heal)
    );
    (heal_ms, roster)
}

/// A group of `sizes.iter().sum()` members is split into sides of `sizes` (in member
/// order); side k makes `changes[k]` and chats; then the network heals.
fn split(seed: u64, net: Net, name: &str, sizes: &[usize], changes: &[Change]) {
    let n: usize = sizes.iter().sum();
    let (mut s, ids) = group(seed, net.clone(), fast_config(), n);
    let e0 = s.members[ids[0]].conv().epoch();
    let es = s.holder(ids[0], Role::EpochSteward);
    let bs = s.holder(ids[0], Role::BackupSteward);

    let mut sides: Vec<Vec<usize>> = Vec::new();
    let mut at = 0;
    for &k in sizes {
        sides.push(ids[at..at + k].to_vec());
        at += k;
    }
    let originals = sides.clone();
    let mut joiners = Vec::new();
    for (k, ch) in changes.iter().enumerate() {
        if matches!(ch, Change::Join) {
            let j = s.add_member(&format!("joiner-side{k}"));
            sides[k].push(j);
            joiners.push(j);
        }
    }
    let refs: Vec<&[usize]> = sides.iter().map(|v| v.as_slice()).collect();
    s.partition(&refs);
    for (k, ch) in changes.iter().enumerate() {
        match *ch {
            Change::Join => s.join(*sides[k].last().expect("joiner")),
            Change::Remove(t) => {
                s.propose_removal(sides[k][0], ids[t]);
            }
        }
    }
    s.run_for(2_000);
    for (k, side) in originals.iter().enumerate() {
        s.try_chat(side[0], &format!("side {k} while split"));
    }
    // Each side commits its change (or does not: a side below the quorum may not).
    let advanced = |s: &Sim, side: &[usize]| {
        side.iter().any(|i| {
            s.members[*i]
                .conv
                .as_ref()
                .is_some_and(|c| c.closed().is_none() && c.epoch() > e0)
        })
    };
    s.run_until(SPLIT_MAX, |s| {
        originals.iter().all(|side| advanced(s, side))
    });
    let committed: Vec<bool> = originals.iter().map(|side| advanced(&s, side)).collect();
    for (k, side) in originals.iter().enumerate() {
        s.try_chat(side[side.len() - 1], &format!("side {k} after its change"));
    }
    s.run_for(3_000);
    let epochs: Vec<Vec<u64>> = sides
        .iter()
        .map(|side| {
            side.iter()
                .map(|i| s.members[*i].conv.as_ref().map_or(0, |c| c.epoch()))
                .collect()
        })
        .collect();
    let plan = format!(
        "{name} seed={seed} net={} sides={sides:?} changes={changes:?} epoch steward={es:?} \
         backup={bs:?} epoch before split={e0} committed while split={committed:?} epochs at heal={epochs:?}",
        net_name(&net)
    );

    s.heal();
    let t_heal = s.now;
    // Removals made by a side holding fewer than half of the group lose (its branch must
    // not survive): their targets must stay. Other removal targets may end up either way.
    let mut optional = Vec::new();
    for (k, ch) in changes.iter().enumerate() {
        if let Change::Remove(t) = *ch
            && 2 * originals[k].len() >= n
        {
            optional.push(ids[t]);
        }
    }
    let required: Vec<usize> = ids
        .iter()
        .chain(&joiners)
        .copied()
        .filter(|i| !optional.contains(i))
        .collect();
    let (heal_ms, roster) = assert_heals(&mut s, &required, &optional, &plan, t_heal);
    report(
        "split",
        &[
            ("scenario", name.to_string()),
            ("net", net_name(&net).to_string()),
            ("seed", seed.to_string()),
            ("forked", committed.iter().all(|c| *c).to_string()),
            ("committed", format!("{committed:?}")),
            ("heal_ms", heal_ms.to_string()),
            ("epoch", s.members[roster[0]].conv().epoch().to_string()),
            ("roster", roster.len().to_string()),
            (
                "fork_detected",
                count_events(&s, "ForkDetected", t_heal).to_string(),
            ),
            (
                "abandoned",
                count_events(&s, "BranchAbandoned", t_heal).to_string(),
            ),
            (
                "rejoining",
                count_events(&s, "Rejoining", t_heal).to_string(),
            ),
        ],
    );
}

#[test]
fn a_2_2_split_with_a_join_and_a_removal_heals_into_one_group() {
    for_nets_and_seeds(0..2, |net, seed| {
        // Side 0 adds a newcomer; side 1 removes a member of side 0.
        split(
            seed,
            net.clone(),
            "2|2",
            &[2, 2],
            &[Change::Join, Change::Remove(1)],
        );
    });
}

#[test]
fn a_3_2_split_with_a_removal_and_a_join_heals_into_one_group() {
    for_nets_and_seeds(0..2, |net, seed| {
        // The majority removes a member of the minority; the minority adds a newcomer.
        split(
            seed,
            net.clone(),
            "3|2",
            &[3, 2],
            &[Change::Remove(4), Change::Join],
        );
    });
}

#[test]
fn a_4_1_split_with_a_join_and_a_lone_removal_heals_into_one_group() {
    for_nets_and_seeds(0..2, |net, seed| {
        // Four add a newcomer; the one alone proposes removing one of the four (its
        // branch, if it commits it, must not survive).
        split(
            seed,
            net.clone(),
            "4|1",
            &[4, 1],
            &[Change::Join, Change::Remove(0)],
        );
    });
}

/// The epoch steward is cut off alone and proposes removing a member; alone, the timeout
/// rule decides it and, as the steward, it commits it on a private branch. The rest add a
/// newcomer. After healing the lone steward is back in the group everyone else is in, and
/// the member it removed on its own branch is still there.
#[test]
fn a_lone_epoch_steward_with_a_private_commit_rejoins_the_group() {
    for_nets_and_seeds(0..2, |net, seed| {
        let (mut s, ids) = group(seed, net.clone(), fast_config(), 5);
        let e0 = s.members[ids[0]].conv().epoch();
        let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
        let rest = others(&ids, &[es]);
        let j = s.add_member("joiner");
        let mut side: Vec<usize> = rest.clone();
        side.push(j);
        s.partition(&[&[es], &side]);
        let y = rest[0];
        s.propose_removal(es, y);
        s.join(j);
        s.run_for(2_000);
        s.try_chat(es, "alone on my branch");
        s.try_chat(rest[1], "the rest while split");
        let lone_commit = s.run_until(SPLIT_MAX, |s| {
            s.members[es].conv().epoch() > e0 && s.members[rest[1]].conv().epoch() > e0
        });
        s.run_for(3_000);
        let plan = format!(
            "lone steward seed={seed} net={} steward={es} removes {y} on its own; rest={rest:?} add {j}; \
                 both committed while split={lone_commit} epochs at heal: steward {} rest {}",
            net_name(&net),
            s.members[es].conv().epoch(),
            s.members[rest[1]].conv().epoch()
        );
        s.heal();
        let t_heal = s.now;
        let required: Vec<usize> = ids.iter().copied().chain([j]).collect();
        let (heal_ms, _) = assert_heals(&mut s, &required, &[], &plan, t_heal);
        report(
            "split",
            &[
                ("scenario", "lone-steward".to_string()),
                ("net", net_name(&net).to_string()),
                ("seed", seed.to_string()),
                ("forked", lone_commit.to_string()),
                ("heal_ms", heal_ms.to_string()),
            ],
        );
    });
}

/// The case of issue 12: the epoch steward is killed right after a removal is proposed
/// and the survivors are cut into one member alone and the rest (they had only ever been
/// connected through the dead node). Each side may commit the removal its own way. After
/// healing the survivors are one group without the removed member; when the dead steward
/// restarts, it joins that group too.
#[test]
fn a_crashed_steward_and_a_member_alone_heal_into_one_group() {
    for_nets_and_seeds(0..2, |net, seed| {
        let (mut s, ids) = group(seed, net.clone(), fast_config(), 5);
        let e0 = s.members[ids[0]].conv().epoch();
        let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
        let survivors = others(&ids, &[es]);
        let target = survivors[survivors.len() - 1];
        let alone = survivors[0];
        let side = others(&survivors, &[alone]);
        s.propose_removal(side[0], target);
        s.run_for(300);
        s.crash(es);
        s.partition(&[&[alone], &side]);
        s.run_for(2_000);
        s.try_chat(alone, "alone while split");
        s.try_chat(side[0], "the rest while split");
        let both = s.run_until(SPLIT_MAX, |s| {
            s.members[alone].conv().epoch() > e0 && s.members[side[0]].conv().epoch() > e0
        });
        s.run_for(3_000);
        let plan = format!(
            "crashed steward seed={seed} net={} steward {es} crashed; {alone} alone | {side:?}; \
                 removal of {target}; both sides committed while split={both}; epochs at heal: alone {} rest {}",
            net_name(&net),
            s.members[alone].conv().epoch(),
            s.members[side[0]].conv().epoch()
        );
        s.heal();
        let t_heal = s.now;
        let required = others(&survivors, &[target]);
        // The crashed steward may stay on the roster; the target may end up out or back.
        let (heal_ms, _) = assert_heals(&mut s, &required, &[es, target], &plan, t_heal);
        // The steward comes back and joins the one group.
        s.restart(es);
        let t_restart = s.now;
        let mut with_es = required.clone();
        with_es.push(es);
        let back = s.run_until(HEAL_BOUND, |s| s.one_group(&with_es, &[target]).is_some());
        assert!(
            back,
            "restarted steward {es} not in the one group after {} s\n{}",
            HEAL_BOUND / 1000,
            trace(&s, &plan, t_heal)
        );
        let back_ms = s.now - t_restart;
        report(
            "split",
            &[
                ("scenario", "crashed-steward".to_string()),
                ("net", net_name(&net).to_string()),
                ("seed", seed.to_string()),
                ("forked", both.to_string()),
                ("heal_ms", heal_ms.to_string()),
                ("restart_back_ms", back_ms.to_string()),
            ],
        );
    });
}

/// A group split as in [`decided_then_split`], not healed yet.
struct Split {
    s: Sim,
    ids: Vec<usize>,
    big: Vec<usize>,
    small: Vec<usize>,
    target: usize,
    /// Both sides committed the removal.
    both: bool,
    /// ... as different commits.
    forked: bool,
    /// The epoch everyone was in when the network split.
    e0: u64,
}

fn split_after_decision(seed: u64, net: Net, big_side: usize) -> Split {
    let (mut s, ids) = group(seed, net, fast_config(), big_side + 2);
    let e0 = s.members[ids[0]].conv().epoch();
    let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
    let bs = s.holder(ids[0], Role::BackupSteward).expect("backup");
    let rest = others(&ids, &[es, bs]);
    let target = rest[0];
    let big: Vec<usize> = [es]
        .into_iter()
        .chain(rest[..big_side - 1].iter().copied())
        .collect();
    let small = vec![bs, rest[big_side - 1]];
    s.propose_removal(rest[1], target);
    let decided = s.run_until(MIN, |s| {
        ids.iter()
            .all(|i| !s.members[*i].conv().approved().is_empty())
    });
    assert!(decided, "the removal was not decided\n{}", s.describe());
    s.partition(&[&big, &small]);
    s.try_chat(small[1], "small side while split");
    let both = s.run_until(SPLIT_MAX, |s| {
        s.members[es].conv().epoch() > e0 && s.members[bs].conv().epoch() > e0
    });
    s.run_for(3_000);
    let forked = both
        && s.members[es].conv().epoch_authenticator() != s.members[bs].conv().epoch_authenticator();
    Split {
        s,
        ids,
        big,
        small,
        target,
        both,
        forked,
        e0,
    }
}

/// The fork the minority rule cannot prevent: a removal is decided by everyone, then the
/// network splits before anyone has its commit, with the epoch steward on one side and
/// the backup steward on the other. Each side commits the same decision as a different
/// commit (two branches of one epoch). After healing the branch with more support
/// survives and the other side's members leave theirs and rejoin it by themselves
/// (`ForkDetected`, `BranchAbandoned`, `Rejoining`). `big_side` members (the epoch
/// steward and the removal's target among them) against the backup and one other.
fn decided_then_split(seed: u64, net: Net, big_side: usize) {
    let Split {
        mut s,
        ids,
        big,
        small,
        target,
        both,
        forked,
        ..
    } = split_after_decision(seed, net.clone(), big_side);
    let plan = format!(
        "decided-then-split seed={seed} net={} {big:?} | {small:?}, removal of {target} decided \
         before the split; both sides committed={both}, forked={forked}",
        net_name(&net)
    );
    s.heal();
    let t_heal = s.now;
    let required = others(&ids, &[target]);
    let (heal_ms, _) = assert_heals(&mut s, &required, &[target], &plan, t_heal);
    let detected = count_events(&s, "ForkDetected", t_heal);
    let abandoned = count_events(&s, "BranchAbandoned", t_heal);
    report(
        "split",
        &[
            ("scenario", format!("decided-then-split-{}|2", big_side)),
            ("net", net_name(&net).to_string()),
            ("seed", seed.to_string()),
            ("forked", forked.to_string()),
            ("heal_ms", heal_ms.to_string()),
            ("fork_detected", detected.to_string()),
            ("branch_abandoned", abandoned.to_string()),
        ],
    );
    if forked {
        // The losing side left its branch: each of its members says so.
        assert!(
            abandoned >= small.len(),
            "{abandoned} BranchAbandoned events for a fork with {} members on the losing side: {plan}\n{}",
            small.len(),
            trace(&s, &plan, t_heal)
        );
    }
}

#[test]
fn a_split_between_decision_and_commit_forks_and_heals_to_the_larger_side() {
    for_nets_and_seeds(0..2, |net, seed| decided_then_split(seed, net, 4));
}

/// A fork with equal support (here 2 against 2, the removed member on neither): the
/// winning branch still lists the losers and holds exactly half of its roster. The
/// losers' signed rejoin announcements take them out of the voters (they left their
/// leaves), so the two winners decide the rejoins between them. Failed before that rule:
/// under the minority rule they could decide nothing, not even the rejoins.
#[test]
fn a_split_between_decision_and_commit_with_equal_sides_heals() {
    for_nets_and_seeds(0..2, |net, seed| decided_then_split(seed, net, 3));
}

/// A split as in [`decided_then_split`] (4 | 2), and a member of the larger side lies in
/// every beacon it sends about the epoch before the fork (a hash nobody else has). Its lie
/// is a fork at an earlier epoch that everyone else wins whatever the silent hold; it
/// must not hide the real fork after it, and the group still heals. (Before, the fork
/// record moved to the liar's epoch, where no honest member differs, so nobody ever left
/// the losing branch: two groups for as long as the member lied.)
#[test]
fn a_member_lying_about_the_epoch_before_a_fork_does_not_stop_it_healing() {
    sim::for_seeds(0..3, |seed| {
        let Split {
            mut s,
            ids,
            big,
            target,
            forked,
            e0,
            ..
        } = split_after_decision(seed, Net::clean(), 4);
        let liar = big[2];
        assert!(
            liar != target && forked,
            "no fork to heal\n{}",
            s.describe()
        );
        lie_in_beacons(&mut s, liar, e0);
        let plan = format!(
            "decided-then-split seed={seed} 4|2 {big:?}, member {liar} lying about epoch {e0}"
        );
        s.heal();
        let t_heal = s.now;
        let required = others(&ids, &[target]);
        assert_heals(&mut s, &required, &[target], &plan, t_heal);
    });
}

/// A member re-added by a commit it has not applied yet (a rejoin it asked for while
/// still in the group: a duplicate rejoin crossing a commit) gets that commit's welcome
/// from the committer before its own copy of the commit. It keeps the welcome and uses
/// it once it applies the commit: it is back without repeating its announcement, and
/// without anyone re-sending the welcome.
#[test]
fn a_welcome_that_comes_before_its_commit_is_kept_and_used() {
    sim::for_seeds(0..4, early_welcome);
}

fn early_welcome(seed: u64) {
    use demls_core::proto::pb;
    use prost::Message;
    let (mut s, ids) = group(seed, Net::clean(), fast_config(), 4);
    let es = s.holder(ids[0], Role::EpochSteward).expect("epoch steward");
    let bs = s
        .holder(ids[0], Role::BackupSteward)
        .expect("backup steward");
    let m = others(&ids, &[es, bs])[0];
    let me = s.id(m);
    let e0 = s.members[m].conv().epoch();
    // A rejoin announcement of m's, with a key package m holds the keys of.
    let ann = {
        let x = &s.members[m];
        let kp = demls_core::mls::generate_key_package(&x.provider, &x.identity.mls).unwrap();
        demls_core::conversation::forge_announcement(&s.name, kp, me, &x.identity.eth, s.now, true)
    };
    s.inject(m, demls_core::conversation::Subtopic::Welcome, ann);
    // m hears nothing from the moment the group approved the rejoin (so it misses the
    // commit) until the committer's welcome is out.
    let approved = |s: &Sim| {
        ids.iter().all(|i| {
            s.members[*i].conv().proposals().any(|p| {
                p.status == demls_core::conversation::ProposalStatus::Accepted
                    && matches!(p.action, demls_core::conversation::Action::Add { member, .. } if member == me)
            })
        })
    };
    assert!(
        s.run_until(2 * MIN, approved),
        "the rejoin was not approved\n{}",
        s.describe()
    );
    s.members[m].deaf = true;
    let mark = s.log.len();
    let welcome_for_m = |p: &[u8]| match pb::WelcomeEnvelope::decode(p).ok().and_then(|e| e.body) {
        Some(pb::welcome_envelope::Body::Welcome(w)) => {
            w.joiner_ids.iter().any(|j| j.as_slice() == me.as_bytes())
        }
        _ => false,
    };
    let welcomes = |s: &Sim, from: usize| {
        s.log[from..]
            .iter()
            .filter(|(_, _, st, p)| {
                *st == demls_core::conversation::Subtopic::Welcome && welcome_for_m(p)
            })
            .map(|l| (l.1, l.3.clone()))
            .collect::<Vec<_>>()
    };
    assert!(
        s.run_until(2 * MIN, |s| !welcomes(s, mark).is_empty()),
        "no welcome for the rejoin\n{}",
        s.describe()
    );
    let (committer, welcome) = welcomes(&s, mark)[0].clone();
    assert_eq!(
        s.members[m].conv().epoch(),
        e0,
        "m applied the commit while deaf"
    );
    // The welcome first, then everything else again.
    s.deliver(
        m,
        committer,
        demls_core::conversation::Subtopic::Welcome,
        welcome,
    );
    s.run_for(0);
    s.members[m].deaf = false;
    let after_welcome = s.log.len();
    let back = |s: &Sim| s.one_group(&ids, &[]).is_some();
    assert!(
        s.run_until(fast_config().commit_inactivity, back),
        "m not back before it would announce again\n{}",
        s.describe()
    );
    let resent = welcomes(&s, after_welcome).len();
    assert_eq!(
        resent,
        0,
        "the welcome was re-sent {resent} times\n{}",
        s.describe()
    );
}

/// After the heal of a 4|2 split between a decision and its commit (3 members on the
/// larger branch once the removal is in, 2 on the other), one member of the larger
/// branch has its first beacons lost. The others of its branch hear two on each side
/// for a while (a tie the lower epoch hash breaks); they wait for the voter they have
/// not heard from before leaving their branch, and stay on it.
/// (Before, on a tie they left at once whenever the other branch's hash was lower: the
/// lossy seed 19 of `a_split_between_decision_and_commit_forks_and_heals_to_the_larger_side`.)
#[test]
fn a_tie_with_a_voter_unheard_waits_for_it() {
    sim::for_seeds(0..6, tie_with_a_voter_unheard);
}

fn tie_with_a_voter_unheard(seed: u64) {
    use demls_core::proto::pb;
    use prost::Message;
    use std::cell::Cell;
    use std::rc::Rc;
    let Split {
        mut s,
        ids,
        big,
        small,
        target,
        forked,
        ..
    } = split_after_decision(seed, Net::clean(), 4);
    assert!(forked, "no fork\n{}", s.describe());
    // big = [epoch steward, target, two more]: one of the two loses its first beacons.
    let quiet = big[2];
    let lose_beacons = Rc::new(Cell::new(true));
    let flag = lose_beacons.clone();
    s.members[quiet].filter = Some(Box::new(move |p| {
        let beacon = matches!(
            pb::AppEnvelope::decode(p.payload.as_slice())
                .ok()
                .and_then(|e| e.body),
            Some(pb::app_envelope::Body::Beacon(_))
        );
        (!(beacon && flag.get())).then(|| p.clone())
    }));
    s.heal();
    let t_heal = s.now;
    s.run_for(5_000);
    lose_beacons.set(false);
    let plan = format!(
        "tie-with-a-voter-unheard seed={seed} {big:?} | {small:?}, {quiet} beacons lost for 5 s"
    );
    let required = others(&ids, &[target]);
    assert_heals(&mut s, &required, &[target], &plan, t_heal);
    for i in others(&big, &[target]) {
        let left = s
            .events_of(i, |e| matches!(e, Event::BranchAbandoned { .. }))
            .count();
        assert_eq!(
            left,
            0,
            "member {i} of the larger branch left it\n{}",
            trace(&s, &plan, t_heal)
        );
    }
}
