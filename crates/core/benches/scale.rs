//! Membership changes at size, against their floors (issue 14, items 1–3).
//!
//! For each group size n (env `SCALE_SIZES`, default `10,50,100`) this benchmark
//!
//! 1. reaches an n-member conversation in the deterministic simulator with batched joins:
//!    all n − 1 joiners announce at once while the creator is the only voter, so every
//!    add is decided by one vote and one commit carries them all (`commit_batch_max` is
//!    raised to n for this; the other timings are the simulator's `fast_config`);
//! 2. measures single changes at that size — one join, one removal (of the member just
//!    added, proposed by a plain member), one self-leave — reporting for the members of
//!    the roster before the change their protocol cost as thread CPU time (every call
//!    into a member is timed with `CLOCK_THREAD_CPUTIME_ID`; the simulator is
//!    single-threaded), and the packets and bytes each published; the simulator's own
//!    CPU time (the change's thread CPU minus the members') is reported separately;
//! 3. measures the floors in the same run with the same crates: openmls alone (through
//!    the core's thin `MlsConversation` wrapper) creating and merging a commit with the
//!    same change at that size, and processing it at one member; and one EIP-191
//!    recovery per vote a member holds for the change's proposals (its own excluded).
//!
//! Then it prints two tables (markdown): time to reach each size, and per change the
//! protocol CPU per member (mean, max) against the floors.
//!
//! `cargo bench -p demls-core --bench scale` (env `SCALE_SIZES=10,50,100,300`,
//! `SCALE_SEED=1`, `SCALE_FLOOR_REPS=5`).

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::{Duration, Instant};

use demls_core::conversation::{Event, Role};
use demls_core::identity::{self, EthSigner};
use demls_core::mls::{MlsConversation, MlsIdentity, generate_key_package};
use openmls_rust_crypto::OpenMlsRustCrypto;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sim::{Net, Sim, fast_config};

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel
    // knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Virtual time between convergence checks (a check reads every member's roster).
const CHECK_EVERY_MS: u64 = 250;
/// Virtual time a change keeps running after convergence, so that late votes, re-sends
/// and anything else the change set off are counted in it, not in the next one.
const SETTLE_MS: u64 = 15_000;
/// Longest a change (or the growth) may take in virtual time.
const MAX_CHANGE_MS: u64 = 600_000;

/// Runs until `observers` agree on `roster` (checked every `CHECK_EVERY_MS` of virtual
/// time) and returns whether they did within `max_ms`.
fn run_to_agreement(s: &mut Sim, observers: &[usize], roster: &[usize], max_ms: u64) -> bool {
    let limit = s.now + max_ms;
    while s.now < limit {
        s.run_for(CHECK_EVERY_MS);
        if s.agree(observers, roster) {
            return true;
        }
    }
    false
}

/// Per-member counters at one moment.
struct Snap {
    cpu: Vec<Duration>,
    msgs: Vec<u64>,
    bytes: Vec<u64>,
    events: Vec<usize>,
    thread: Duration,
    wall: Instant,
    virt: u64,
    /// Signature recoveries run so far (every member runs on this thread).
    recoveries: u64,
}

fn snap(s: &Sim) -> Snap {
    Snap {
        cpu: s.members.iter().map(|m| m.bench_cpu).collect(),
        msgs: s.members.iter().map(|m| m.sent_msgs).collect(),
        bytes: s.members.iter().map(|m| m.sent_bytes).collect(),
        events: s.members.iter().map(|m| m.events.len()).collect(),
        thread: thread_cpu(),
        wall: Instant::now(),
        virt: s.now,
        recoveries: identity::recoveries_on_this_thread(),
    }
}

/// With `SCALE_PERF_CTL=<fifo>` and `SCALE_PERF_CHANGE=<change>` (join, removal,
/// self-leave), switches a `perf record --control fifo:<fifo> -D -1` on for that change
/// only, so a profile shows the change and not the growth before it.
fn perf_window(change: &str, on: bool) {
    use std::io::Write;
    let (Ok(fifo), Ok(which)) = (
        std::env::var("SCALE_PERF_CTL"),
        std::env::var("SCALE_PERF_CHANGE"),
    ) else {
        return;
    };
    if which != change {
        return;
    }
    let cmd: &[u8] = if on { b"enable\n" } else { b"disable\n" };
    match std::fs::OpenOptions::new().write(true).open(&fifo) {
        Ok(mut f) => {
            if let Err(e) = f.write_all(cmd) {
                eprintln!("perf control {fifo}: {e}");
            }
        }
        Err(e) => eprintln!("perf control {fifo}: {e}"),
    }
}

/// What one change cost, over the members of `over`.
struct Cost {
    mean_cpu: Duration,
    max_cpu: Duration,
    /// Member holding the maximum.
    max_at: usize,
    mean_msgs: f64,
    mean_bytes: f64,
    members_cpu: Duration,
    sim_cpu: Duration,
    wall: Duration,
    virt: u64,
    /// Signature recoveries during the change, per member of `over`.
    recoveries: f64,
}

fn cost(s: &Sim, before: &Snap, over: &[usize]) -> Cost {
    let cpu: Vec<Duration> = over
        .iter()
        .map(|&i| s.members[i].bench_cpu - before.cpu[i])
        .collect();
    let (max_at, max_cpu) = over
        .iter()
        .zip(&cpu)
        .max_by_key(|(_, d)| **d)
        .map(|(i, d)| (*i, *d))
        .unwrap_or_default();
    let all_members: Duration = s
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| m.bench_cpu - before.cpu.get(i).copied().unwrap_or_default())
        .sum();
    let thread = thread_cpu() - before.thread;
    let n = over.len().max(1) as f64;
    Cost {
        mean_cpu: cpu.iter().sum::<Duration>() / over.len().max(1) as u32,
        max_cpu,
        max_at,
        mean_msgs: over
            .iter()
            .map(|&i| (s.members[i].sent_msgs - before.msgs[i]) as f64)
            .sum::<f64>()
            / n,
        mean_bytes: over
            .iter()
            .map(|&i| (s.members[i].sent_bytes - before.bytes[i]) as f64)
            .sum::<f64>()
            / n,
        recoveries: (identity::recoveries_on_this_thread() - before.recoveries) as f64 / n,
        members_cpu: all_members,
        sim_cpu: thread.saturating_sub(all_members),
        wall: before.wall.elapsed(),
        virt: s.now - before.virt,
    }
}

/// Proposals member `i` learned of since `before` (their kinds), the votes it holds on
/// them, and how many of those are its own (it verifies the others).
fn votes_held(s: &Sim, before: &Snap, i: usize) -> (Vec<&'static str>, u32, u32) {
    let conv = s.members[i].conv();
    let ids: Vec<(u32, &'static str)> = s.members[i].events[before.events[i]..]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ProposalCreated { id, kind_name, .. } => Some((*id, *kind_name)),
            _ => None,
        })
        .collect();
    let votes = ids
        .iter()
        .filter_map(|(id, _)| conv.tally(*id))
        .map(|(y, n, _)| y + n)
        .sum();
    let own = ids
        .iter()
        .filter(|(id, _)| conv.our_vote(*id).is_some())
        .count() as u32;
    (ids.into_iter().map(|(_, k)| k).collect(), votes, own)
}

/// One row of the change table.
struct Row {
    size: usize,
    change: &'static str,
    cost: Cost,
    proposals: Vec<&'static str>,
    votes: u32,
    own_votes: u32,
    joiner: Option<Duration>,
}

/// The floors at one size.
struct Floors {
    /// One EIP-191 recovery.
    recover: Duration,
    /// openmls: create + merge a one-add commit at size n (committer).
    add_commit: Duration,
    /// openmls: stage + merge that commit at one member.
    add_process: Duration,
    /// openmls: the joiner's welcome.
    add_welcome: Duration,
    /// openmls: create + merge a one-remove commit at size n + 1.
    remove_commit: Duration,
    /// openmls: stage + merge it at one member.
    remove_process: Duration,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Mean time of one EIP-191 recovery of a vote-sized message.
fn recover_floor(rng: &mut ChaCha20Rng) -> Duration {
    let reps = 200;
    let signers: Vec<EthSigner> = (0..8).map(|_| EthSigner::random_with(rng)).collect();
    let signed: Vec<(Vec<u8>, Vec<u8>)> = (0..reps)
        .map(|k| {
            let msg: Vec<u8> = (0..120u32).map(|b| (b as u8) ^ (k as u8)).collect();
            let sig = signers[k % signers.len()].sign(&msg).expect("sign");
            (msg, sig)
        })
        .collect();
    let t = thread_cpu();
    for (msg, sig) in &signed {
        std::hint::black_box(identity::recover(msg, sig).expect("recover"));
    }
    (thread_cpu() - t) / reps as u32
}

/// openmls alone at size `n`: a group of `n` (one commit adds n − 1 key packages; not
/// timed), then `reps` rounds of adding one member and removing it again, each commit
/// created and merged by the creator and staged and merged by one other member.
fn mls_floors(n: usize, reps: usize, rng: &mut ChaCha20Rng) -> Floors {
    let name = "floor";
    let ident = |p: &OpenMlsRustCrypto, rng: &mut ChaCha20Rng| {
        MlsIdentity::create(p, EthSigner::random_with(rng).member_id()).expect("identity")
    };
    let creator_p = OpenMlsRustCrypto::default();
    let creator = ident(&creator_p, rng);
    let mut group = MlsConversation::create(&creator_p, &creator, name).expect("create");
    // The other members' key packages live in one store; the one member that joins
    // from the welcome is whichever the welcome names first.
    let others_p = OpenMlsRustCrypto::default();
    let kps: Vec<Vec<u8>> = (1..n)
        .map(|_| generate_key_package(&others_p, &ident(&others_p, rng)).expect("kp"))
        .collect();
    let mut member = None;
    if !kps.is_empty() {
        let out = group
            .create_commit(&creator_p, &creator, &kps, &[])
            .expect("commit");
        group.merge_own_commit(&creator_p).expect("merge");
        member = Some(
            MlsConversation::join_from_welcome(&others_p, &out.welcome.expect("welcome"))
                .expect("welcome")
                .expect("for us"),
        );
    }
    let (mut add_c, mut add_p, mut add_w, mut rem_c, mut rem_p) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let jp = OpenMlsRustCrypto::default();
        let joiner = ident(&jp, rng);
        let kp = generate_key_package(&jp, &joiner).expect("kp");
        let t = thread_cpu();
        let out = group
            .create_commit(&creator_p, &creator, &[kp], &[])
            .expect("add commit");
        group.merge_own_commit(&creator_p).expect("merge");
        add_c.push(thread_cpu() - t);
        if let Some(m) = member.as_mut() {
            let t = thread_cpu();
            m.stage_remote_commit(&others_p, &[], &out.commit)
                .expect("stage add");
            m.merge_staged(&others_p).expect("merge add");
            add_p.push(thread_cpu() - t);
        }
        let t = thread_cpu();
        let joined = MlsConversation::join_from_welcome(&jp, &out.welcome.expect("welcome"))
            .expect("welcome")
            .expect("for the joiner");
        add_w.push(thread_cpu() - t);
        drop(joined);
        let t = thread_cpu();
        let out = group
            .create_commit(&creator_p, &creator, &[], &[joiner.member_id()])
            .expect("remove commit");
        group.merge_own_commit(&creator_p).expect("merge");
        rem_c.push(thread_cpu() - t);
        if let Some(m) = member.as_mut() {
            let t = thread_cpu();
            m.stage_remote_commit(&others_p, &[], &out.commit)
                .expect("stage remove");
            m.merge_staged(&others_p).expect("merge remove");
            rem_p.push(thread_cpu() - t);
        }
    }
    Floors {
        recover: recover_floor(rng),
        add_commit: median(add_c),
        add_process: median(add_p),
        add_welcome: median(add_w),
        remove_commit: median(rem_c),
        remove_process: median(rem_p),
    }
}

/// Index of a roster member that holds no steward role (proposes and leaves).
fn plain_member(s: &Sim, roster: &[usize], not: &[usize]) -> usize {
    let obs = roster[0];
    roster
        .iter()
        .copied()
        .find(|i| !not.contains(i) && s.members[obs].conv().role(&s.id(*i)) == Role::Member)
        .or_else(|| roster.iter().copied().find(|i| !not.contains(i)))
        .expect("a member to act")
}

/// One size: grows, measures the changes, returns the growth line and the change rows.
fn run_size(n: usize, seed: u64) -> (String, Vec<Row>) {
    let mut cfg = fast_config();
    cfg.commit_batch_max = cfg.commit_batch_max.max(n);
    let mut s = Sim::new(seed, Net::clean(), cfg);
    s.keep_log = false;
    let ids = s.add_members(n + 1);
    s.bench(thread_cpu);

    // 1. Growth: every joiner announces at once to the lone creator.
    let before = snap(&s);
    s.create(ids[0]);
    s.run_for(100);
    for &i in &ids[1..n] {
        s.join(i);
    }
    let mut roster: Vec<usize> = ids[..n].to_vec();
    assert!(
        run_to_agreement(&mut s, &roster, &roster, MAX_CHANGE_MS),
        "{n} members did not converge\n{}",
        s.describe()
    );
    let reached_virt = s.now - before.virt;
    let reached_wall = before.wall.elapsed();
    s.run_for(SETTLE_MS);
    let g = cost(&s, &before, &roster);
    let epoch = s.members[ids[0]].conv().epoch();
    let growth = format!(
        "| {n} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {epoch} |",
        reached_wall.as_secs_f64(),
        g.wall.as_secs_f64(),
        g.members_cpu.as_secs_f64(),
        g.sim_cpu.as_secs_f64(),
        reached_virt as f64 / 1e3,
    );
    eprintln!(
        "size {n}: reached in {:.1} s wall",
        reached_wall.as_secs_f64()
    );

    let mut rows = Vec::new();
    // 2a. One join.
    let joiner = ids[n];
    let before = snap(&s);
    perf_window("join", true);
    s.join(joiner);
    let mut after: Vec<usize> = roster.clone();
    after.push(joiner);
    assert!(
        run_to_agreement(&mut s, &after, &after, MAX_CHANGE_MS),
        "join at {n} did not converge\n{}",
        s.describe()
    );
    s.run_for(SETTLE_MS);
    perf_window("join", false);
    let observer = plain_member(&s, &roster, &[]);
    let (proposals, votes, own_votes) = votes_held(&s, &before, observer);
    let joiner_cpu = s.members[joiner].bench_cpu - before.cpu[joiner];
    rows.push(Row {
        size: n,
        change: "join",
        cost: cost(&s, &before, &roster),
        proposals,
        votes,
        own_votes,
        joiner: Some(joiner_cpu),
    });
    roster = after;
    eprintln!("size {n}: join measured");

    // 2b. A plain member proposes removing the member just added.
    let proposer = plain_member(&s, &roster, &[joiner]);
    let before = snap(&s);
    perf_window("removal", true);
    s.propose_removal(proposer, joiner);
    let after: Vec<usize> = roster.iter().copied().filter(|i| *i != joiner).collect();
    assert!(
        run_to_agreement(&mut s, &after, &after, MAX_CHANGE_MS),
        "removal at {} did not converge\n{}",
        n + 1,
        s.describe()
    );
    s.run_for(SETTLE_MS);
    perf_window("removal", false);
    let observer = plain_member(&s, &after, &[proposer]);
    let (proposals, votes, own_votes) = votes_held(&s, &before, observer);
    rows.push(Row {
        size: n + 1,
        change: "removal",
        cost: cost(&s, &before, &roster),
        proposals,
        votes,
        own_votes,
        joiner: None,
    });
    roster = after;
    eprintln!("size {n}: removal measured");

    // 2c. A plain member leaves by itself.
    if n >= 3 {
        let leaver = plain_member(&s, &roster, &[]);
        let before = snap(&s);
        perf_window("self-leave", true);
        s.leave(leaver);
        let after: Vec<usize> = roster.iter().copied().filter(|i| *i != leaver).collect();
        assert!(
            run_to_agreement(&mut s, &after, &after, MAX_CHANGE_MS),
            "self-leave at {n} did not converge\n{}",
            s.describe()
        );
        s.run_for(SETTLE_MS);
        perf_window("self-leave", false);
        let observer = plain_member(&s, &after, &[]);
        let (proposals, votes, own_votes) = votes_held(&s, &before, observer);
        rows.push(Row {
            size: n,
            change: "self-leave",
            cost: cost(&s, &before, &roster),
            proposals,
            votes,
            own_votes,
            joiner: None,
        });
        eprintln!("size {n}: self-leave measured");
    }
    (growth, rows)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SCALE_SIZES")
        .unwrap_or_else(|_| "10,50,100".to_string())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .filter(|n| *n >= 2)
        .collect();
    let seed: u64 = std::env::var("SCALE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let reps: usize = std::env::var("SCALE_FLOOR_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut growth = Vec::new();
    let mut table = Vec::new();
    for &n in &sizes {
        let floors = mls_floors(n, reps, &mut rng);
        let (g, rows) = run_size(n, seed);
        growth.push(g);
        for r in rows {
            let (commit, process) = match r.change {
                "join" => (floors.add_commit, floors.add_process),
                _ => (floors.remove_commit, floors.remove_process),
            };
            let verified = r.votes.saturating_sub(r.own_votes);
            let sigs = floors.recover * verified;
            let member_floor = process + sigs;
            let committer_floor = commit + sigs;
            let joiner = r
                .joiner
                .map(|j| format!("{:.2} / {:.2}", ms(j), ms(floors.add_welcome)))
                .unwrap_or_else(|| "–".to_string());
            table.push(format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}× | {:.2} | {:.1}× | {} / {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {} |",
                r.size,
                r.change,
                ms(r.cost.mean_cpu),
                ms(r.cost.max_cpu),
                ms(process),
                ms(sigs),
                r.cost.mean_cpu.as_secs_f64() / member_floor.as_secs_f64(),
                ms(committer_floor),
                r.cost.max_cpu.as_secs_f64() / committer_floor.as_secs_f64(),
                r.proposals.join("+"),
                verified,
                r.cost.mean_msgs,
                r.cost.mean_bytes / 1024.0,
                ms(r.cost.sim_cpu),
                ms(r.cost.wall),
                r.cost.virt as f64 / 1e3,
                joiner,
            ));
            eprintln!(
                "size {} {}: maximum at member {}, proposals {:?}, {:.1} recoveries per member",
                r.size, r.change, r.cost.max_at, r.proposals, r.cost.recoveries
            );
        }
        eprintln!(
            "size {n}: floors add {:.2}/{:.2} ms, remove {:.2}/{:.2} ms, welcome {:.2} ms, recover {:.1} µs",
            ms(floors.add_commit),
            ms(floors.add_process),
            ms(floors.remove_commit),
            ms(floors.remove_process),
            ms(floors.add_welcome),
            floors.recover.as_secs_f64() * 1e6
        );
    }
    println!("\nReaching the size (batched joins: every joiner announces at once)\n");
    println!(
        "| size | reached, wall s | with settle, wall s | members' CPU s | simulator CPU s | virtual s | epoch |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for g in &growth {
        println!("{g}");
    }
    println!(
        "\nSingle changes at size (per member of the roster before the change; CPU = thread CPU)\n"
    );
    println!(
        "| size | change | protocol CPU mean ms | max ms | MLS floor ms (process) | signature floor ms | mean / floor | committer floor ms | max / committer floor | proposals / votes verified | msgs/member | KiB/member | simulator CPU ms | wall ms | virtual s | joiner ms / welcome floor ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &table {
        println!("{r}");
    }
}
