//! Identities and key packages.

use super::*;

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
