//! Remote candidates: staging, replacing, rejecting, keeping and merging them.

use super::*;

#[test]
fn competing_candidates_converge_on_one_winner() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let kp_a = generate_key_package(&c.p, &c.id).unwrap();
    let kp_b = generate_key_package(&c.p, &c.id).unwrap();
    let ca = ga.create_commit(&a.p, &a.id, &[kp_a], &[]).unwrap();
    let cb = gb.create_commit(&b.p, &b.id, &[kp_b], &[]).unwrap();
    // Chat still works while our candidate is pending.
    let ct = ga.encrypt(&a.p, &a.id, b"during freeze").unwrap();
    assert_eq!(gb.decrypt(&b.p, &ct).unwrap().plaintext, b"during freeze");
    // B's candidate wins: A stages it over its own pending commit, B merges its own.
    let info = ga
        .stage_remote_commit(&a.p, &cb.proposals, &cb.commit)
        .unwrap();
    assert_eq!(info.commit_sender, b.id.member_id());
    assert_eq!(info.adds, vec![c.id.member_id()]);
    ga.merge_staged(&a.p).unwrap();
    gb.merge_own_commit(&b.p).unwrap();
    let gc = MlsConversation::join_from_welcome(&c.p, &cb.welcome.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(ga.epoch_authenticator(), gb.epoch_authenticator());
    assert_eq!(gc.epoch_authenticator(), gb.epoch_authenticator());
    // A's losing welcome is useless now.
    let _ = ca;
}

#[test]
fn reject_then_stage_another_candidate_of_the_same_epoch() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let (_, mut gc) = {
        let kp = generate_key_package(&c.p, &c.id).unwrap();
        let out = ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
        ga.merge_own_commit(&a.p).unwrap();
        let info = gb
            .stage_remote_commit(&b.p, &out.proposals, &out.commit)
            .unwrap();
        assert_eq!(info.new_epoch, 2);
        gb.merge_staged(&b.p).unwrap();
        (
            (),
            MlsConversation::join_from_welcome(&c.p, &out.welcome.unwrap())
                .unwrap()
                .unwrap(),
        )
    };
    let x1 = ga
        .create_commit(&a.p, &a.id, &[], &[c.id.member_id()])
        .unwrap();
    ga.discard_own_commit(&a.p).unwrap();
    let x2 = gb
        .create_commit(&b.p, &b.id, &[], &[c.id.member_id()])
        .unwrap();
    gc.stage_remote_commit(&c.p, &x1.proposals, &x1.commit)
        .unwrap();
    gc.discard_staged(&c.p).unwrap();
    let info = gc
        .stage_remote_commit(&c.p, &x2.proposals, &x2.commit)
        .unwrap();
    assert!(info.self_removed);
    assert_eq!(info.removes, vec![c.id.member_id()]);
}

#[test]
fn garbage_old_epoch_and_foreign_bundles_are_reported() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    assert!(gb.stage_remote_commit(&b.p, &[], b"garbage").is_err());
    let kp = generate_key_package(&c.p, &c.id).unwrap();
    let out = ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    gb.stage_remote_commit(&b.p, &out.proposals, &out.commit)
        .unwrap();
    gb.merge_staged(&b.p).unwrap();
    let mut gc = MlsConversation::join_from_welcome(&c.p, &out.welcome.unwrap())
        .unwrap()
        .unwrap();
    // Old epoch: the commit that moved everyone to epoch 2, replayed.
    assert!(matches!(
        gc.stage_remote_commit(&c.p, &out.proposals, &out.commit),
        Err(MlsError::WrongContext(_))
    ));
    // B proposes removing C by reference; A commits to B's proposal.
    let by_b = gb.propose_remove(&b.p, &b.id, &c.id.member_id()).unwrap();
    let commit = ga.commit_to_foreign_proposal(&a.p, &a.id, &by_b).unwrap();
    let info = gc.stage_remote_commit(&c.p, &[by_b], &commit).unwrap();
    assert_eq!(info.commit_sender, a.id.member_id());
    assert_eq!(info.proposal_senders, vec![b.id.member_id()]);
    assert!(info.self_removed);
}

#[test]
fn staging_twice_replaces_the_first_candidate() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb, mut gc) = trio(&a, &b, &c);
    // Two by-reference bundles (B's proposal committed by B; A's committed by A).
    let pb = gb.propose_remove(&b.p, &b.id, &a.id.member_id()).unwrap();
    let cb = gb.commit_to_foreign_proposal(&b.p, &b.id, &pb).unwrap();
    let pa = ga.propose_remove(&a.p, &a.id, &b.id.member_id()).unwrap();
    let ca = ga.commit_to_foreign_proposal(&a.p, &a.id, &pa).unwrap();
    let i1 = gc.stage_remote_commit(&c.p, &[pb], &cb).unwrap();
    assert_eq!(i1.proposal_senders, vec![b.id.member_id()]);
    assert_eq!(i1.removes, vec![a.id.member_id()]);
    // No discard in between: the second staging must not inherit the first's proposals.
    let i2 = gc.stage_remote_commit(&c.p, &[pa], &ca).unwrap();
    assert_eq!(i2.commit_sender, a.id.member_id());
    assert_eq!(i2.proposal_senders, vec![a.id.member_id()]);
    assert_eq!(i2.removes, vec![b.id.member_id()]);
    gc.merge_staged(&c.p).unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    assert_eq!(ga.epoch_authenticator(), gc.epoch_authenticator());
    assert_eq!(gc.members(), vec![a.id.member_id(), c.id.member_id()]);
}

#[test]
fn staged_by_reference_proposals_block_encrypt_not_decrypt() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb, mut gc) = trio(&a, &b, &c);
    let pb = gb.propose_remove(&b.p, &b.id, &a.id.member_id()).unwrap();
    let cb = gb.commit_to_foreign_proposal(&b.p, &b.id, &pb).unwrap();
    gc.stage_remote_commit(&c.p, &[pb], &cb).unwrap();
    // C holds B's proposal: decrypting still works, encrypting is refused clearly.
    let ct = ga.encrypt(&a.p, &a.id, b"still here").unwrap();
    assert_eq!(gc.decrypt(&c.p, &ct).unwrap().plaintext, b"still here");
    assert!(matches!(
        gc.encrypt(&c.p, &c.id, b"x"),
        Err(MlsError::PendingProposals)
    ));
    gc.discard_staged(&c.p).unwrap();
    let ct = gc.encrypt(&c.p, &c.id, b"after discard").unwrap();
    assert_eq!(ga.decrypt(&a.p, &ct).unwrap().plaintext, b"after discard");
}

#[test]
fn a_kept_staging_merges_as_a_fresh_one_and_only_at_its_epoch() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let kp_a = generate_key_package(&c.p, &c.id).unwrap();
    let kp_b = generate_key_package(&c.p, &c.id).unwrap();
    let ca = ga.create_commit(&a.p, &a.id, &[kp_a], &[]).unwrap();
    let cb = gb.create_commit(&b.p, &b.id, &[kp_b], &[]).unwrap();
    // A stages B's candidate as it arrives and keeps it aside; a second copy of it is
    // kept under its own key.
    let key_a = [1; 32];
    let key_b = [2; 32];
    ga.stage_and_keep(&a.p, key_a, &cb.proposals, &cb.commit)
        .unwrap();
    let info = ga
        .stage_and_keep(&a.p, key_b, &cb.proposals, &cb.commit)
        .unwrap();
    assert_eq!(info.commit_sender, b.id.member_id());
    // Nothing is left staged: merging now has nothing to merge.
    assert!(ga.merge_staged(&a.p).is_err());
    let info = ga
        .stage_and_keep(&a.p, key_b, &cb.proposals, &cb.commit)
        .unwrap();
    // Chat in between reads and ratchets the epoch's secrets.
    let ct = gb.encrypt(&b.p, &b.id, b"during freeze").unwrap();
    assert_eq!(ga.decrypt(&a.p, &ct).unwrap().plaintext, b"during freeze");
    // An unknown key restores nothing; B's kept staging merges as a fresh one would.
    assert!(ga.restore_kept(&a.p, [9; 32]).is_none());
    let restored = ga.restore_kept(&a.p, key_b).unwrap();
    assert_eq!(restored.adds, info.adds);
    assert!(ga.restore_kept(&a.p, key_b).is_none(), "taken once");
    ga.merge_staged(&a.p).unwrap();
    gb.merge_own_commit(&b.p).unwrap();
    assert_eq!(ga.epoch_authenticator(), gb.epoch_authenticator());
    let gc = MlsConversation::join_from_welcome(&c.p, &cb.welcome.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(gc.epoch_authenticator(), gb.epoch_authenticator());
    // The epoch moved on: nothing kept from the last one comes back.
    assert!(ga.restore_kept(&a.p, key_a).is_none());
    let _ = ca;
    let ct = gb.encrypt(&b.p, &b.id, b"after").unwrap();
    assert_eq!(ga.decrypt(&a.p, &ct).unwrap().plaintext, b"after");
}
