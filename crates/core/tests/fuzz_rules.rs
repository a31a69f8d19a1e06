//! Fuzz targets for the pure decision rules: `consensus::decide` over the whole u32 range
//! of voters and votes, and `steward::validate` / `generate` / `live_roles` with arbitrary
//! id lists, epochs and retry rounds. Oracles: no panic, plus the rules' own sanity
//! properties (see each target). `docs/FUZZING.md` has the commands.

mod fuzz_common;

use demls_core::consensus::decide;
use demls_core::identity::MemberId;
use demls_core::steward::{self, ListError, StewardList};
use fuzz_common::Rng;
use fuzz_common::bytes::{U32_EDGES, any_string, any_u32, any_u64};
use fuzz_common::runner::{Case, fuzz};
use rand::Rng as _;
use rand::seq::SliceRandom;

/// A vote count: an edge value, one derived from `n` (quorum boundaries), or random.
fn count(rng: &mut Rng, n: u32, realistic: bool) -> u32 {
    let q = if n >= 1 << 31 {
        n / 3 * 2
    } else {
        (2 * n).div_ceil(3)
    };
    let v = match rng.gen_range(0..6) {
        0 => *U32_EDGES.choose(rng).expect("x"),
        1 => q.saturating_add(rng.gen_range(0..3)).saturating_sub(1),
        2 => n.saturating_sub(rng.gen_range(0..3)),
        3 => n / 2 + rng.gen_range(0..2),
        4 => rng.gen_range(0..=n.min(16)),
        _ => rng.r#gen(),
    };
    if realistic { v.min(n) } else { v }
}

/// Checks one `decide` call against the rule's sanity properties.
fn check_decide(n: u32, yes: u32, no: u32, live: bool, timed_out: bool) {
    let d = decide(n, yes, no, live, timed_out);
    let ctx = format!(
        "decide(n={n}, yes={yes}, no={no}, liveness_yes={live}, timed_out={timed_out}) = {d:?}"
    );
    if n <= 2 {
        // Unanimity: every vote present, and all YES.
        let received = yes as u64 + no as u64;
        let want = (received >= n as u64).then_some(no == 0);
        assert_eq!(d, want, "{ctx}: n ≤ 2 needs unanimity");
    }
    if n > 2 && yes == 0 && no == 0 && !timed_out {
        assert_eq!(d, None, "{ctx}: nobody voted and no timeout");
    }
    if n >= 1 && yes == 0 && d == Some(true) {
        assert!(live && timed_out, "{ctx}: YES with zero YES votes");
    }
    if n >= 1 && no == 0 && d == Some(false) {
        assert!(!live && timed_out, "{ctx}: NO with zero NO votes");
    }
    // A decision reached before the timeout is the decision at the timeout.
    if !timed_out && d.is_some() {
        let later = decide(n, yes, no, live, true);
        assert_eq!(
            later, d,
            "{ctx}: the timeout changed a decision to {later:?}"
        );
    }
    // The minority rule: nothing is decided on half of the voters or fewer.
    if n > 2 && d.is_some() {
        let received = yes as u64 + no as u64;
        assert!(
            2 * received > n as u64,
            "{ctx}: decided on a minority turnout"
        );
    }
    // Decided before the timeout: no further vote changes it (the worst single
    // completions: every missing voter against the decision, or one more vote against it).
    if n > 2
        && !timed_out
        && let Some(d) = d
    {
        let missing = (n as u64).saturating_sub(yes as u64 + no as u64);
        for more in [1, missing / 2, missing] {
            let more = more.min(missing) as u32;
            let (y2, n2) = if d {
                (yes, no + more)
            } else {
                (yes + more, no)
            };
            assert_eq!(
                decide(n, y2, n2, live, true),
                Some(d),
                "{ctx}: {more} more votes against it decide {:?} at the timeout",
                decide(n, y2, n2, live, true)
            );
        }
    }
    // Decided without the timeout: the winning side holds at least one vote.
    if n > 2 && !timed_out {
        if d == Some(true) {
            assert!(yes > 0, "{ctx}");
        }
        if d == Some(false) {
            assert!(no > 0, "{ctx}");
        }
    }
}

fn decide_case(rng: &mut Rng, case: &mut Case, realistic: bool) {
    let n = if realistic {
        match rng.gen_range(0..3) {
            0 => rng.gen_range(1..=8),
            1 => rng.gen_range(1..=1_000),
            _ => rng.gen_range(1..=1_000_000),
        }
    } else if rng.gen_bool(0.5) {
        *U32_EDGES.choose(rng).expect("x")
    } else {
        any_u32(rng)
    };
    // Realistic inputs are what a tally can hold: at most n distinct voters in all.
    let yes = count(rng, n, realistic);
    let no = if realistic {
        count(rng, n - yes, true)
    } else {
        count(rng, n, false)
    };
    let (live, timed_out) = (rng.r#gen(), rng.r#gen());
    let mut input = Vec::new();
    for v in [n, yes, no] {
        input.extend(v.to_be_bytes());
    }
    input.push(live as u8);
    input.push(timed_out as u8);
    case.input("n‖yes‖no (u32 BE) ‖ liveness_yes ‖ timed_out", &input);
    case.note(format!(
        "decide(n={n}, yes={yes}, no={no}, liveness_yes={live}, timed_out={timed_out})"
    ));
    check_decide(n, yes, no, live, timed_out);
}

/// `decide` on what a tally can actually hold (n ≥ 1, yes + no ≤ n ≤ 10⁶).
#[test]
fn fuzz_decide_realistic() {
    fuzz::<Rng, _>("fuzz_decide_realistic", 20_000, |rng, case| {
        decide_case(rng, case, true)
    });
}

/// `decide` over the whole u32 range of n, yes and no, edge values included (a header's
/// `expected_voters_count` comes from the wire; votes beyond n are refused, but the rule
/// itself should not overflow).
#[test]
fn fuzz_decide_full_range() {
    fuzz::<Rng, _>("fuzz_decide_full_range", 20_000, |rng, case| {
        decide_case(rng, case, false)
    });
}

// ---- steward lists ------------------------------------------------------------------------

fn member(rng: &mut Rng, pool: &[MemberId]) -> MemberId {
    if !pool.is_empty() && rng.gen_bool(0.7) {
        *pool.choose(rng).expect("x")
    } else {
        let mut b = [0u8; 20];
        match rng.gen_range(0..3) {
            0 => b = [rng.r#gen(); 20],
            _ => rng.fill(&mut b),
        }
        MemberId(b)
    }
}

/// A pool of ids: distinct unless `dups`.
fn pool(rng: &mut Rng, dups: bool) -> Vec<MemberId> {
    let n = match rng.gen_range(0..10) {
        0 => 0,
        1..=6 => rng.gen_range(1..8),
        7 | 8 => rng.gen_range(8..40),
        _ => rng.gen_range(40..300),
    };
    let mut v: Vec<MemberId> = Vec::with_capacity(n);
    while v.len() < n {
        let m = member(rng, &[]);
        if dups || !v.contains(&m) {
            v.push(m);
        }
    }
    if dups && !v.is_empty() {
        for _ in 0..rng.gen_range(1..4) {
            let m = *v.choose(rng).expect("x");
            let at = rng.gen_range(0..=v.len());
            v.insert(at, m);
        }
    }
    v
}

fn list_input(case: &mut Case, what: &str, ids: &[MemberId]) {
    let bytes: Vec<u8> = ids.iter().flat_map(|m| m.0).collect();
    case.input(format!("{what} ({} ids, 20 bytes each)", ids.len()), &bytes);
}

fn steward_case(rng: &mut Rng, case: &mut Case, dups: bool) {
    let pool = pool(rng, dups);
    let epoch = any_u64(rng);
    let retry = any_u32(rng);
    let name = any_string(rng, "sim-chat");
    let (sn_min, sn_max) = match rng.gen_range(0..3) {
        0 => (any_u32(rng), any_u32(rng)),
        1 => (1, rng.gen_range(1..6)),
        _ => {
            let a = rng.gen_range(1..10);
            (a, a + rng.gen_range(0..5))
        }
    };
    // The proposed list: the real prefix, a tampered one, random ids, or duplicates.
    let full = steward::generate(&pool, epoch, retry, &name, sn_min.max(1), sn_max.max(1));
    let mut proposed = match rng.gen_range(0..6) {
        0 => full.stewards.clone(),
        1 => full.stewards[..rng.gen_range(0..=full.stewards.len())].to_vec(),
        2 => {
            let mut p = full.stewards.clone();
            p.shuffle(rng);
            p
        }
        3 => (0..rng.gen_range(0..6))
            .map(|_| member(rng, &pool))
            .collect(),
        4 => pool.clone(),
        _ => Vec::new(),
    };
    if dups && !proposed.is_empty() && rng.gen_bool(0.5) {
        let m = *proposed.choose(rng).expect("x");
        proposed.push(m);
    }
    list_input(case, "pool", &pool);
    list_input(case, "proposed", &proposed);
    case.note(format!(
        "validate(proposed: {} ids, pool: {} ids, epoch={epoch}, retry_round={retry}, conversation={name:?}, sn_min={sn_min}, sn_max={sn_max})",
        proposed.len(),
        pool.len()
    ));
    let r = steward::validate(&proposed, &pool, epoch, retry, &name, sn_min, sn_max);
    let mut distinct = pool.clone();
    distinct.sort();
    distinct.dedup();
    if r.is_ok() {
        assert!(!proposed.is_empty(), "an empty list validated");
        assert!(
            steward::valid_sizes(distinct.len(), sn_min, sn_max).contains(&proposed.len()),
            "a list of {} validated outside the valid sizes for {} candidates",
            proposed.len(),
            distinct.len()
        );
        let mut once = proposed.clone();
        once.sort();
        once.dedup();
        assert_eq!(
            once.len(),
            proposed.len(),
            "a list naming a member twice validated"
        );
        let ranked = steward::generate(&pool, epoch, retry, &name, u32::MAX, u32::MAX);
        assert!(
            ranked.stewards.starts_with(&proposed),
            "a list that is not the deterministic prefix validated"
        );
    }
    // Generation validates against its own pool (distinct pools, sane bounds, the retry
    // rounds an honest group reaches).
    if !dups && !pool.is_empty() && (1..=sn_max).contains(&sn_min) && retry <= 64 {
        let g = steward::generate(&pool, epoch, retry, &name, sn_min, sn_max);
        assert_eq!(
            steward::validate(&g.stewards, &pool, epoch, retry, &name, sn_min, sn_max),
            Ok(()),
            "a generated list does not validate"
        );
        let mut rev = pool.clone();
        rev.reverse();
        assert_eq!(
            steward::generate(&rev, epoch, retry, &name, sn_min, sn_max),
            g,
            "generation depends on pool order"
        );
    }
    if let Err(ListError::BadSize { got, .. }) = r {
        assert_eq!(got, proposed.len());
    }
    // Roles over the list, at arbitrary epochs.
    let list = StewardList {
        stewards: proposed.clone(),
        election_epoch: any_u64(rng),
        retry_round: retry,
    };
    for _ in 0..4 {
        let e = if rng.r#gen() {
            any_u64(rng)
        } else {
            list.election_epoch.wrapping_add(rng.gen_range(0..8))
        };
        let gone = member(rng, &proposed);
        let exhausted = list.is_exhausted(e);
        let (es, bs) = list.live_roles(e, |m| *m != gone);
        if exhausted {
            assert_eq!((es, bs), (None, None), "roles on an exhausted list");
        }
        for r in [es, bs].into_iter().flatten() {
            assert!(list.contains(&r) && r != gone, "role given to {r:?}");
        }
        let _ = list.live_stewards(|m| *m != gone);
    }
}

/// `steward::validate`, `generate`, `live_roles` with distinct id pools.
#[test]
fn fuzz_steward_lists() {
    fuzz::<Rng, _>("fuzz_steward_lists", 3_000, |rng, case| {
        steward_case(rng, case, false)
    });
}

/// The same with duplicate ids in the pool and the proposed list: a conversation sync
/// from the wire validates its steward list against itself, so both can repeat an id.
#[test]
fn fuzz_steward_lists_with_duplicates() {
    fuzz::<Rng, _>("fuzz_steward_lists_with_duplicates", 3_000, |rng, case| {
        steward_case(rng, case, true)
    });
}
