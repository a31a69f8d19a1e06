//! Application messages: past epochs, own echoes, what the decrypt path refuses.

use openmls::prelude::LeafNodeIndex;

use super::*;

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

#[test]
fn own_message_is_reported_as_own() {
    let (a, b) = (member(1), member(2));
    let (mut ga, _gb) = pair(&a, &b);
    let ct = ga.encrypt(&a.p, &a.id, b"echo").unwrap();
    let r = ga.decrypt(&a.p, &ct);
    assert!(matches!(r, Err(DecryptError::OwnMessage)), "{r:?}");
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
