//! The decision rule.

/// Decides a proposal with `n` expected voters from `yes` and `no` votes.
///
/// n ≤ 2 needs unanimity: every vote present, and all YES (any NO → NO). Otherwise the
/// quorum is ceil(2n/3) distinct votes (before the timeout); silent voters count on the
/// side given by `liveness_yes`; the side with weight ≥ quorum and strictly more weight
/// wins; a full-turnout tie goes to `liveness_yes`. At the timeout the quorum gate counts
/// silent voters too. `None` = undecided.
pub fn decide(n: u32, yes: u32, no: u32, liveness_yes: bool, timed_out: bool) -> Option<bool> {
    let received = yes + no;
    if n <= 2 {
        if received < n {
            return None;
        }
        return Some(no == 0);
    }
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
