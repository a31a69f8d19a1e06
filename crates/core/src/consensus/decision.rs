//! The decision rule.

/// Decides a proposal with `n` expected voters from `yes` and `no` votes.
///
/// n ≤ 2 needs unanimity: every vote present, and all YES (any NO → NO). Otherwise the
/// quorum is ceil(2n/3) distinct votes (before the timeout); silent voters count on the
/// side given by `liveness_yes`; the side with weight ≥ quorum and strictly more weight
/// wins; a full-turnout tie goes to `liveness_yes`. At the timeout the quorum gate counts
/// silent voters too. `None` = undecided.
///
/// Because silent voters count, the rule is not monotonic: 3 YES + 1 NO of 5 decides YES
/// (the silent fifth counts YES), but the fifth vote arriving as NO makes it undecided.
/// A member that saw the first four votes has decided YES; one that saw all five would
/// time out to a different outcome. So when the votes held do not decide by themselves,
/// a side that some quorum-sized subset of them decides (the votes an earlier member may
/// have decided on) is taken; see [`subset_decides`].
///
/// Every count is widened to `u64` first: `n` comes from a proposal header, which is a
/// claim, and `2 * n` or `yes + no` must not wrap for any `u32` input.
pub fn decide(n: u32, yes: u32, no: u32, liveness_yes: bool, timed_out: bool) -> Option<bool> {
    let (n, yes, no) = (u64::from(n), u64::from(yes), u64::from(no));
    let received = yes + no;
    if n <= 2 {
        if received < n {
            return None;
        }
        return Some(no == 0);
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
    if timed_out {
        return plain(n, yes, no, liveness_yes, true);
    }
    None
}

/// The RFC rule on exactly these votes.
fn plain(n: u64, yes: u64, no: u64, liveness_yes: bool, timed_out: bool) -> Option<bool> {
    let received = yes + no;
    let required = (2 * n).div_ceil(3);
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
    let required = (2 * n).div_ceil(3);
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
