//! A group's lifecycle: create, add, reload, join from a welcome; hostile wire input.

use rand::SeedableRng;

use super::*;

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
