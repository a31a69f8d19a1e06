use openmls_rust_crypto::OpenMlsRustCrypto;
use rand::SeedableRng;

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
    assert!(matches!(
        ga.decrypt(&a.p, &old),
        Err(DecryptError::WrongEpoch {
            message_epoch: 1,
            our_epoch: 2
        })
    ));
    assert_eq!(MlsConversation::peek_epoch(&old), Some(1));
}
