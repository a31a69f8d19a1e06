use openmls_rust_crypto::OpenMlsRustCrypto;
use rand::SeedableRng;

use openmls::prelude::LeafNodeIndex;

use super::*;
use crate::identity::{EthSigner, MemberId};

struct M {
    p: OpenMlsRustCrypto,
    id: MlsIdentity,
}

fn member(seed: u64) -> M {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let eth = EthSigner::random_with(&mut rng);
    let p = OpenMlsRustCrypto::default();
    let id = MlsIdentity::create(&p, eth.member_id()).unwrap();
    M { p, id }
}

/// A creates, adds B. Returns (A's group, B's group).
fn pair(a: &M, b: &M) -> (MlsConversation, MlsConversation) {
    let mut ga = MlsConversation::create(&a.p, &a.id, "chat").unwrap();
    let kp = generate_key_package(&b.p, &b.id).unwrap();
    let out = ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    let gb = MlsConversation::join_from_welcome(&b.p, &out.welcome.unwrap())
        .unwrap()
        .unwrap();
    (ga, gb)
}

#[test]
fn add_then_chat() {
    let (a, b) = (member(1), member(2));
    let (mut ga, mut gb) = pair(&a, &b);
    assert_eq!(
        ga.policy(),
        gb.policy(),
        "joiner keeps the plaintext-handshake policy"
    );
    assert_eq!(ga.epoch(), 1);
    assert_eq!(gb.epoch(), 1);
    assert_eq!(ga.epoch_authenticator(), gb.epoch_authenticator());
    assert_eq!(ga.members(), gb.members());
    let ct = ga.encrypt(&a.p, &a.id, b"hi").unwrap();
    let d = gb.decrypt(&b.p, &ct).unwrap();
    assert_eq!(d.sender, a.id.member_id());
    assert_eq!(d.plaintext, b"hi");
    assert!(matches!(
        ga.decrypt(&a.p, &ct),
        Err(DecryptError::OwnMessage) | Err(DecryptError::Crypto(_))
    ));
}

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
fn key_packages_are_validated_and_name_their_credential() {
    let a = member(1);
    assert!(validate_key_package(&a.p, b"junk").is_err());
    let x = MemberId([9; 20]);
    let fake = MlsIdentity::create(&a.p, x).unwrap();
    let kp = generate_key_package(&a.p, &fake).unwrap();
    assert_eq!(validate_key_package(&a.p, &kp).unwrap().member_id, x);
}

#[test]
fn reload_and_wrong_epoch() {
    let (a, b) = (member(1), member(2));
    let (ga, mut gb) = pair(&a, &b);
    let auth = ga.epoch_authenticator();
    drop(ga);
    let mut ga = MlsConversation::load(&a.p, "chat").unwrap().unwrap();
    assert_eq!(ga.epoch_authenticator(), auth);
    let old = gb.encrypt(&b.p, &b.id, b"old").unwrap();
    let c = member(3);
    let kp = generate_key_package(&c.p, &c.id).unwrap();
    ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    // A past epoch within the window: opened with that epoch's kept secrets, and still
    // after a reload (they are saved with the group).
    drop(ga);
    let mut ga = MlsConversation::load(&a.p, "chat").unwrap().unwrap();
    let d = ga.decrypt(&a.p, &old).unwrap();
    assert_eq!((d.sender, d.epoch), (b.id.member_id(), 1));
    assert_eq!(d.plaintext, b"old");
    assert_eq!(MlsConversation::peek_epoch(&old), Some(1));
    // A later epoch is not ours to open yet.
    let newer = ga.encrypt(&a.p, &a.id, b"new").unwrap();
    assert!(matches!(
        gb.decrypt(&b.p, &newer),
        Err(DecryptError::WrongEpoch {
            message_epoch: 2,
            our_epoch: 1
        })
    ));
}

/// A alone commits `n` empty-ish changes (adds and removes of a throwaway member).
fn advance(ga: &mut MlsConversation, a: &M, n: u64) {
    for i in 0..n {
        let x = member(100 + i);
        let kp = generate_key_package(&x.p, &x.id).unwrap();
        ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
        ga.merge_own_commit(&a.p).unwrap();
    }
}

#[test]
fn past_epochs_open_within_the_window_and_expire_beyond_it() {
    let (a, b) = (member(1), member(2));
    let (mut ga, mut gb) = pair(&a, &b);
    let mut sent = Vec::new();
    // B stays at epoch 1 and writes; A moves on PAST_EPOCHS + 1 epochs, one at a time,
    // checking each message as it goes past.
    for i in 0..=PAST_EPOCHS {
        sent.push(gb.encrypt(&b.p, &b.id, &[i as u8]).unwrap());
    }
    advance(&mut ga, &a, PAST_EPOCHS);
    assert_eq!(ga.epoch(), 1 + PAST_EPOCHS);
    // Messages are opened in any order, each once.
    for ct in sent.iter().rev().take(2) {
        let d = ga.decrypt(&a.p, ct).unwrap();
        assert_eq!((d.sender, d.epoch), (b.id.member_id(), 1));
    }
    assert!(
        matches!(
            ga.decrypt(&a.p, &sent[PAST_EPOCHS as usize]),
            Err(DecryptError::Crypto(_))
        ),
        "a replay is refused: its key is deleted"
    );
    advance(&mut ga, &a, 1);
    let r = ga.decrypt(&a.p, &sent[0]);
    assert!(
        matches!(
            r,
            Err(DecryptError::Expired {
                message_epoch: 1,
                our_epoch
            }) if our_epoch == 2 + PAST_EPOCHS
        ),
        "{r:?}"
    );
}

#[test]
fn a_past_epoch_message_names_who_held_the_leaf_then() {
    // B (leaf 1) writes at epoch 2, is removed, and D takes leaf 1: B's message, read
    // late, is B's and not D's.
    let (a, b, c, d) = (member(1), member(2), member(3), member(4));
    let (mut ga, mut gb, mut gc) = trio(&a, &b, &c);
    let by_b = gb.encrypt(&b.p, &b.id, b"from b").unwrap();
    let out = ga
        .create_commit(&a.p, &a.id, &[], &[b.id.member_id()])
        .unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    gc.stage_remote_commit(&c.p, &out.proposals, &out.commit)
        .unwrap();
    gc.merge_staged(&c.p).unwrap();
    let kp = generate_key_package(&d.p, &d.id).unwrap();
    let out = ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    gc.stage_remote_commit(&c.p, &out.proposals, &out.commit)
        .unwrap();
    gc.merge_staged(&c.p).unwrap();
    let mut gd = MlsConversation::join_from_welcome(&d.p, &out.welcome.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(gc.leaf_of(&d.id.member_id()), Some(LeafNodeIndex::new(1)));
    let m = gc.decrypt(&c.p, &by_b).unwrap();
    assert_eq!((m.sender, m.epoch), (b.id.member_id(), 2));
    // D joined at epoch 4: it never had epoch 2's secrets.
    assert!(matches!(
        gd.decrypt(&d.p, &by_b),
        Err(DecryptError::Crypto(_))
    ));
    // Our own message of a past epoch, echoed back late, is still ours.
    let own = ga.encrypt(&a.p, &a.id, b"a at 4").unwrap();
    advance(&mut ga, &a, 1);
    let r = ga.decrypt(&a.p, &own);
    assert!(
        matches!(
            r,
            Err(DecryptError::OwnMessage) | Err(DecryptError::Crypto(_))
        ),
        "{r:?}"
    );
}

/// Three members at epoch 2: A (creator), B, C.
fn trio(a: &M, b: &M, c: &M) -> (MlsConversation, MlsConversation, MlsConversation) {
    let (mut ga, mut gb) = pair(a, b);
    let kp = generate_key_package(&c.p, &c.id).unwrap();
    let out = ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
    ga.merge_own_commit(&a.p).unwrap();
    gb.stage_remote_commit(&b.p, &out.proposals, &out.commit)
        .unwrap();
    gb.merge_staged(&b.p).unwrap();
    let gc = MlsConversation::join_from_welcome(&c.p, &out.welcome.unwrap())
        .unwrap()
        .unwrap();
    (ga, gb, gc)
}

#[test]
fn own_message_is_reported_as_own() {
    let (a, b) = (member(1), member(2));
    let (mut ga, _gb) = pair(&a, &b);
    let ct = ga.encrypt(&a.p, &a.id, b"echo").unwrap();
    let r = ga.decrypt(&a.p, &ct);
    assert!(matches!(r, Err(DecryptError::OwnMessage)), "{r:?}");
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
fn welcome_for_someone_else_is_none() {
    let (a, b, c) = (member(1), member(2), member(3));
    let mut ga = MlsConversation::create(&a.p, &a.id, "chat").unwrap();
    let kp = generate_key_package(&b.p, &b.id).unwrap();
    let out = ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
    let w = out.welcome.unwrap();
    assert!(
        MlsConversation::join_from_welcome(&c.p, &w)
            .unwrap()
            .is_none()
    );
    assert!(MlsConversation::join_from_welcome(&c.p, b"junk").is_err());
    assert!(MlsConversation::join_from_welcome(&c.p, &out.commit).is_err());
}

#[test]
fn identity_reloads_from_storage() {
    let a = member(1);
    let pk = a.id.public_key().to_vec();
    let again = MlsIdentity::load(&a.p, a.id.member_id(), &pk).unwrap();
    assert_eq!(again.public_key(), &pk[..]);
    assert_eq!(again.member_id(), a.id.member_id());
    assert!(MlsIdentity::load(&a.p, a.id.member_id(), &[0u8; 32]).is_err());
    // The reloaded identity can act in a group created with the original.
    let b = member(2);
    let (_ga, mut gb) = pair(&a, &b);
    let mut ga = MlsConversation::load(&a.p, "chat").unwrap().unwrap();
    let ct = ga.encrypt(&a.p, &again, b"after restart").unwrap();
    assert_eq!(gb.decrypt(&b.p, &ct).unwrap().sender, a.id.member_id());
}

#[test]
fn handshake_and_foreign_messages_on_the_decrypt_path() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let out = ga
        .create_commit(
            &a.p,
            &a.id,
            &[generate_key_package(&c.p, &c.id).unwrap()],
            &[],
        )
        .unwrap();
    assert!(matches!(
        gb.decrypt(&b.p, &out.commit),
        Err(DecryptError::NotApplication)
    ));
    let p = gb.propose_remove(&b.p, &b.id, &a.id.member_id()).unwrap();
    assert!(matches!(
        ga.decrypt(&a.p, &p),
        Err(DecryptError::NotApplication)
    ));
    assert!(matches!(
        gb.decrypt(&b.p, b"junk"),
        Err(DecryptError::Malformed(_))
    ));
    // Another group.
    let mut other = MlsConversation::create(&c.p, &c.id, "other").unwrap();
    let ct = other.encrypt(&c.p, &c.id, b"x").unwrap();
    assert!(matches!(
        gb.decrypt(&b.p, &ct),
        Err(DecryptError::WrongGroup)
    ));
    // Application messages are always ciphertexts, even under the plaintext-handshake
    // policy; a tampered one fails authentication.
    let mut ct = ga.encrypt(&a.p, &a.id, b"secret").unwrap();
    assert!(!ct.windows(6).any(|w| w == b"secret"));
    let n = ct.len();
    ct[n - 3] ^= 1;
    assert!(matches!(
        gb.decrypt(&b.p, &ct),
        Err(DecryptError::Crypto(_))
    ));
}

#[test]
fn mutated_wire_input_never_panics() {
    let (a, b, c) = (member(1), member(2), member(3));
    let (mut ga, mut gb) = pair(&a, &b);
    let kp = generate_key_package(&c.p, &c.id).unwrap();
    // (openmls refuses to propose while our own commit is pending: propose first.)
    let prop = ga.propose_remove(&a.p, &a.id, &b.id.member_id()).unwrap();
    let out = ga
        .create_commit(&a.p, &a.id, std::slice::from_ref(&kp), &[])
        .unwrap();
    let ct = ga.encrypt(&a.p, &a.id, b"payload").unwrap();
    let welcome = out.welcome.clone().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    use rand::Rng;
    let samples = [&kp, &out.commit, &ct, &prop, &welcome];
    for round in 0..400 {
        let base = samples[round % samples.len()];
        let mut m = base.to_vec();
        match round % 4 {
            0 => m.truncate(rng.gen_range(0..base.len())),
            1 => {
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..m.len());
                    m[i] ^= 1 << rng.gen_range(0..8);
                }
            }
            2 => {
                let i = rng.gen_range(0..m.len());
                m[i] = rng.r#gen();
            }
            _ => m = (0..rng.gen_range(0..64)).map(|_| rng.r#gen()).collect(),
        }
        let _ = validate_key_package(&b.p, &m);
        let _ = MlsConversation::peek_epoch(&m);
        let _ = gb.decrypt(&b.p, &m);
        let _ = gb.stage_remote_commit(&b.p, &[], &m);
        let _ = gb.stage_remote_commit(&b.p, &[m.clone()], &out.commit);
        let _ = gb.discard_staged(&b.p);
        let _ = MlsConversation::join_from_welcome(&c.p, &m);
    }
    // The untouched candidate still stages and merges afterwards.
    gb.stage_remote_commit(&b.p, &out.proposals, &out.commit)
        .unwrap();
    gb.merge_staged(&b.p).unwrap();
    ga.discard_own_commit(&a.p).unwrap();
}

#[test]
fn conversation_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<MlsConversation>();
    assert_send::<MlsIdentity>();
}

/// The claimed leaf key read from a key package's encoding is the one openmls parses,
/// and junk or truncated encodings yield nothing rather than a panic.
#[test]
fn claimed_leaf_key_is_the_parsed_leaf_key() {
    let m = member(4);
    for _ in 0..3 {
        let kp = generate_key_package(&m.p, &m.id).unwrap();
        use openmls::prelude::tls_codec::{Serialize, VLBytes};
        let claimed = claimed_leaf_key(&kp).expect("a leaf key");
        // `key_package_leaf_key` validates the key package and encodes the key (with its
        // length prefix).
        assert_eq!(
            key_package_leaf_key(&m.p, &kp),
            VLBytes::new(claimed).tls_serialize_detached().ok()
        );
        for cut in [0, 3, 4, 5, 40, 80] {
            let _ = claimed_leaf_key(&kp[..cut.min(kp.len())]);
        }
    }
    assert_eq!(claimed_leaf_key(&[0xff; 8]), None);
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
