//! Past-epoch chat from a removed member (regression test from a review of f364d4b, which
//! reads application messages of the last PAST_EPOCHS epochs; it failed there: the
//! removed member's new words were shown). Now such chat is read only within
//! 2 × `recovery_inactivity` of applying the removal.
//!
//! Before it, a member removed at the commit into epoch E+1 could not be read by anyone
//! once the group was at E+1 (its ciphertexts, only ever of epoch E, were `WrongEpoch`).
//! Now every member reads epoch-E ciphertexts until PAST_EPOCHS more commits happened, and
//! chat's author check (`known_member`: members, or members the epoch log saw removed)
//! lets a removed author through. So a removed member that simply keeps its epoch-E state
//! (here: it never processes its removal) goes on posting chat, attributed to it, after its
//! removal — in a quiet group (commits only on membership changes) for as long as it likes.

mod hostile;
mod sim;

use hostile::*;

#[test]
fn a_removed_member_cannot_post_chat_after_its_removal() {
    let (mut s, ids, _outsider, victim) = setup(0);
    let honest = others(&ids, &[victim]);
    s.run_for(30_000);
    let before = s.members[honest[0]].conv().epoch();
    // The victim keeps its epoch-E group: it hears nothing from now on (it never applies
    // the commit that removes it), but it can still publish.
    s.members[victim].deaf = true;
    let id = s.propose_removal(honest[0], victim);
    for &i in &honest[1..] {
        s.run_for(50);
        s.vote(i, id, true);
    }
    assert!(
        s.run_until(5 * MIN, |s| removed_at(s, &honest, victim).len()
            == honest.len()),
        "removal did not complete\n{}",
        s.describe()
    );
    let after = s.members[honest[0]].conv().epoch();
    assert!(
        after > before && after - before <= 4,
        "epochs {before} -> {after}"
    );
    s.run_for(10_000);
    let text = "posted by a removed member after its removal";
    assert!(
        s.try_chat(victim, text),
        "the removed member could not send"
    );
    s.run_for(10_000);
    let shown: Vec<usize> = honest
        .iter()
        .copied()
        .filter(|i| s.got_chat(*i, text))
        .collect();
    assert!(
        shown.is_empty(),
        "members {shown:?} (epoch {after}) displayed chat the member removed at epoch {after} \
         wrote afterwards in its last epoch\n{}",
        s.describe()
    );
}
