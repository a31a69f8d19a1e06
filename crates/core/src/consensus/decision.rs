//! The decision rule.

/// Decides a proposal with `n` expected voters from `yes` and `no` votes.
///
/// n ≤ 2 needs unanimity: every vote present, and all YES (any NO → NO). Otherwise:
///
/// - **At the timeout** ([`at_timeout`]): the RFC tally, silent voters counted on the side
///   given by `liveness_yes` — but only when the signed votes held come from **more than
///   half** of the expected voters (the minority rule, `docs/PROTOCOL.md`). A member that
///   heard half of its group or less cannot tell its side of a partition from the
///   group's, and if the silent half counted for it, both sides of a split would decide
///   (and commit) on their own. `None` then: the caller treats it as failed.
/// - **Before the timeout** ([`certain`]): only a decision that no further vote can
///   change: every member whose votes include ours, with any of the missing votes added
///   or still missing at its timeout, decides the same. The RFC claims exactly that ("if
///   a node could calculate the result of a proposal, … no peer can calculate the
///   opposite"), but its tally, with silent voters counted, does not give it: 1 YES + 1 NO
///   of 3 is YES with the silent third counted YES, and NO once that third vote arrives
///   as NO. A member that lost one NO vote decided YES at once while the others decided
///   NO. Conversely a decision that is already fixed is taken without waiting for the
///   RFC's ceil(2n/3) votes (3 YES of 5 is YES whatever the other two do): it is the
///   same decision, sooner, and a member that never saw the proposal can check it from
///   the signed votes a commit carries, which it cannot do for a timeout decision.
///
/// Because silent voters count, the tally is not monotonic either (3 YES + 1 NO of 5
/// decides YES, all five votes with a second NO do not), so at the timeout a side that
/// some quorum-sized subset of the votes decides is taken (see [`subset_decides`]); with
/// that, every full turnout but a few exact splits decides. `None` = undecided.
///
/// Every count is widened to `u64` first: `n` comes from a proposal header, which is a
/// claim, and `2 * n` or `yes + no` must not wrap for any `u32` input.
pub fn decide(n: u32, yes: u32, no: u32, liveness_yes: bool, timed_out: bool) -> Option<bool> {
    let (n, yes, no) = (u64::from(n), u64::from(yes), u64::from(no));
    if n <= 2 {
        if yes + no < n {
            return None;
        }
        return Some(no == 0);
    }
    if timed_out {
        at_timeout(n, yes, no, liveness_yes)
    } else {
        certain(n, yes, no, liveness_yes)
    }
}

/// ceil(2n/3): the RFC's quorum of distinct voters.
fn quorum(n: u64) -> u64 {
    (2 * n).div_ceil(3)
}

/// The decision at the timeout on exactly these votes (n > 2): none without a majority
/// turnout, else the RFC tally, else a quorum-sized subset's side, else the tally with
/// every silent voter counted.
fn at_timeout(n: u64, yes: u64, no: u64, liveness_yes: bool) -> Option<bool> {
    if 2 * (yes + no) <= n {
        return None;
    }
    if let Some(d) = plain(n, yes, no, liveness_yes, false) {
        return Some(d);
    }
    match (
        subset_decides(n, yes, no, liveness_yes),
        subset_decides(n, no, yes, !liveness_yes),
    ) {
        (true, false) => return Some(true),
        (false, true) => return Some(false),
        (true, true) => return Some(liveness_yes),
        (false, false) => {}
    }
    plain(n, yes, no, liveness_yes, true)
}

/// A decision before the timeout (n > 2): [`at_timeout`] gives the same side on these
/// votes and on every way the missing votes could still come in or stay missing. (So it
/// needs a majority turnout too: the votes held, with nothing more, are one of the ways.)
///
/// More votes for a side never take a decision away from it (the YES region of
/// [`at_timeout`] grows with YES votes, the NO region with NO votes), so the worst case
/// for YES is every further vote NO, one at a time, and for NO every further vote YES.
/// `at_timeout` is a threshold rule: along one of those lines its value changes only at
/// a handful of counts (the quorum, a third, a half, the turnout majority, the subset
/// bound), so checking those counts and their neighbours checks the whole line without
/// walking all of `n`. `decide_is_certain_exhaustively` compares this with every
/// completion for every n ≤ 40.
fn certain(n: u64, yes: u64, no: u64, liveness_yes: bool) -> Option<bool> {
    let d = at_timeout(n, yes, no, liveness_yes)?;
    let (q, third, half) = (quorum(n), n / 3, n / 2);
    let points = [
        0,
        third,
        q,
        half,
        n.div_ceil(2),
        (2 * q).saturating_sub(n),
        q.saturating_sub(yes),
        q.saturating_sub(no),
        half.saturating_sub(yes),
        half.saturating_sub(no),
        n.saturating_sub(yes),
        n.saturating_sub(no),
    ];
    let around = |lo: u64, hi: u64| {
        points
            .into_iter()
            .flat_map(|p| [p.saturating_sub(1), p, p.saturating_add(1)])
            .chain([lo, hi])
            .filter(move |&x| lo <= x && x <= hi)
    };
    let holds = if d {
        // More NO votes: from ours up to every missing voter.
        around(no, n.saturating_sub(yes).max(no))
            .all(|no2| at_timeout(n, yes, no2, liveness_yes) == Some(true))
    } else {
        around(yes, n.saturating_sub(no).max(yes))
            .all(|yes2| at_timeout(n, yes2, no, liveness_yes) == Some(false))
    };
    holds.then_some(d)
}

/// The RFC rule on exactly these votes.
fn plain(n: u64, yes: u64, no: u64, liveness_yes: bool, timed_out: bool) -> Option<bool> {
    let received = yes + no;
    let required = quorum(n);
    if !timed_out && received < required {
        return None;
    }
    let silent = n.saturating_sub(received);
    let yes_w = yes + if liveness_yes { silent } else { 0 };
    let no_w = no + if liveness_yes { 0 } else { silent };
    if yes_w >= required && yes_w > no_w {
        return Some(true);
    }
    if no_w >= required && no_w > yes_w {
        return Some(false);
    }
    if (received >= n || timed_out) && yes_w == no_w {
        return Some(liveness_yes);
    }
    None
}

/// Whether some quorum-sized subset of the votes decides for the side holding `mine`
/// votes (against `theirs`), silent voters counting for it iff `liveness_mine`. The best
/// subset keeps all of `mine` and only as many of `theirs` as the quorum needs.
fn subset_decides(n: u64, mine: u64, theirs: u64, liveness_mine: bool) -> bool {
    let required = quorum(n);
    let k = required.saturating_sub(mine);
    if k > theirs {
        return false;
    }
    let received = mine + k;
    let silent = n.saturating_sub(received);
    let my_w = mine + if liveness_mine { silent } else { 0 };
    let their_w = k + if liveness_mine { 0 } else { silent };
    my_w >= required && my_w > their_w
}
