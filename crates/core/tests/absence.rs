//! Coming back after an absence: a member that missed a commit learns of it only after
//! the proposals the commit carried have expired, and still catches up (the commit is
//! judged by the rules that held when it was made, not by expiry at the time it is read).

mod hostile;
mod sim;

use hostile::*;

/// Member b is cut off while a joiner is added; it hears of the new epoch only 70 s later
/// (`proposal_expiration` is 60 s in the fast config).
#[test]
fn a_member_behind_past_proposal_expiry_catches_up() {
    let Missed { mut s, b, rest, .. } = miss_a_commit(0, 70_000);
    let target = s.members[rest[0]].conv().epoch();
    let t0 = s.now;
    s.chat(rest[0], "hello");
    let caught = s.run_until(MIN, |s| s.members[b].conv().epoch() == target);
    let asked = traffic(&s, t0, &[b], is_catch_up_request).0;
    assert!(
        caught,
        "b never caught up ({asked} requests in a minute)\n{}",
        s.describe()
    );
}
