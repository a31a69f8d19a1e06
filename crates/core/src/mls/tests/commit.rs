//! Our own commits, alone and against a remote candidate of the same epoch.

use super::*;

#[test]
fn a_removes_b_and_b_sees_self_removed() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb, mut gc) = trio(&a, &b, &c);
    let out = ga
        .create_commit(&a.p, &a.id, &[], &[b.id.member_id()])
        .unwrap();
    assert!(out.welcome.is_none());
    // Application messages still flow both ways while A's candidate is pending.
    let ct = gb.encrypt(&b.p, &b.id, b"bye?").unwrap();
    assert_eq!(ga.decrypt(&a.p, &ct).unwrap().sender, b.id.member_id());
    let ct = ga.encrypt(&a.p, &a.id, b"yes").unwrap();
    assert_eq!(gb.decrypt(&b.p, &ct).unwrap().plaintext, b"yes");
    let ib = gb
        .stage_remote_commit(&b.p, &out.proposals, &out.commit)
        .unwrap();
    assert!(ib.self_removed);
    assert_eq!(ib.removes, vec![b.id.member_id()]);
    assert_eq!(ib.commit_sender, a.id.member_id());
    let ic = gc
        .stage_remote_commit(&c.p, &out.proposals, &out.commit)
        .unwrap();
    assert!(!ic.self_removed);
    ga.merge_own_commit(&a.p).unwrap();
    gb.merge_staged(&b.p).unwrap();
    gc.merge_staged(&c.p).unwrap();
    assert!(!ga.is_member(&b.id.member_id()));
    assert!(gc.is_member(&c.id.member_id()));
    assert_eq!(ga.epoch_authenticator(), gc.epoch_authenticator());
    assert!(gb.encrypt(&b.p, &b.id, b"x").is_err());
    gb.delete(&b.p).unwrap();
    assert!(MlsConversation::load(&b.p, "chat").unwrap().is_none());
}

#[test]
fn removing_a_non_member_is_an_error() {
    let (a, b) = (member(1), member(2));
    let (mut ga, _gb) = pair(&a, &b);
    assert!(
        ga.create_commit(&a.p, &a.id, &[], &[MemberId([7; 20])])
            .is_err()
    );
    assert!(
        ga.create_commit(&a.p, &a.id, &[b"junk".to_vec()], &[])
            .is_err()
    );
    // Nothing was left pending by the failures.
    assert!(ga.merge_own_commit(&a.p).is_err());
    ga.encrypt(&a.p, &a.id, b"ok").unwrap();
}

#[test]
fn discard_own_then_stage_winner_then_merge() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let ca = ga
        .create_commit(
            &a.p,
            &a.id,
            &[generate_key_package(&c.p, &c.id).unwrap()],
            &[],
        )
        .unwrap();
    let cb = gb
        .create_commit(
            &b.p,
            &b.id,
            &[generate_key_package(&c.p, &c.id).unwrap()],
            &[],
        )
        .unwrap();
    assert_ne!(ca.commit, cb.commit);
    ga.discard_own_commit(&a.p).unwrap();
    assert!(
        ga.merge_own_commit(&a.p).is_err(),
        "nothing pending after discard"
    );
    let info = ga
        .stage_remote_commit(&a.p, &cb.proposals, &cb.commit)
        .unwrap();
    assert_eq!(info.commit_sender, b.id.member_id());
    assert!(info.proposal_senders.is_empty());
    assert_eq!(info.adds, vec![c.id.member_id()]);
    assert!(!info.self_removed);
    assert_eq!(info.new_epoch, 2);
    ga.merge_staged(&a.p).unwrap();
    gb.merge_own_commit(&b.p).unwrap();
    // A's losing welcome names a key package C still holds, but for a dead epoch;
    // B's welcome is the one C joins with.
    let mut gc = MlsConversation::join_from_welcome(&c.p, &cb.welcome.unwrap())
        .unwrap()
        .unwrap();
    for g in [&ga, &gb, &gc] {
        assert_eq!(g.epoch(), 2);
        assert_eq!(g.epoch_authenticator(), gb.epoch_authenticator());
        assert_eq!(g.members(), gb.members());
    }
    assert_eq!(
        gb.members(),
        vec![a.id.member_id(), b.id.member_id(), c.id.member_id()]
    );
    // Chat in the new epoch among all three.
    let ct = gc.encrypt(&c.p, &c.id, b"hello").unwrap();
    assert_eq!(ga.decrypt(&a.p, &ct).unwrap().sender, c.id.member_id());
    assert_eq!(gb.decrypt(&b.p, &ct).unwrap().plaintext, b"hello");
}

#[test]
fn rejected_remote_then_own_commit_wins() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let ca = ga
        .create_commit(
            &a.p,
            &a.id,
            &[generate_key_package(&c.p, &c.id).unwrap()],
            &[],
        )
        .unwrap();
    let cb = gb
        .create_commit(
            &b.p,
            &b.id,
            &[generate_key_package(&c.p, &c.id).unwrap()],
            &[],
        )
        .unwrap();
    // A stages B's candidate over its own pending one, rejects it, merges its own.
    ga.stage_remote_commit(&a.p, &cb.proposals, &cb.commit)
        .unwrap();
    ga.discard_staged(&a.p).unwrap();
    assert!(ga.merge_staged(&a.p).is_err());
    ga.merge_own_commit(&a.p).unwrap();
    // B stages A's over its own, accepts it.
    gb.stage_remote_commit(&b.p, &ca.proposals, &ca.commit)
        .unwrap();
    gb.merge_staged(&b.p).unwrap();
    assert!(
        gb.merge_own_commit(&b.p).is_err(),
        "own commit cleared by the merge"
    );
    let gc = MlsConversation::join_from_welcome(&c.p, &ca.welcome.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(ga.epoch_authenticator(), gb.epoch_authenticator());
    assert_eq!(gc.epoch_authenticator(), gb.epoch_authenticator());
}
