//! Unit tests of the openmls wrapper, by concept as in `group/`; the members and
//! groups they start from are built here.

mod application;
mod commit;
mod group;
mod ident;
mod staging;

use openmls_rust_crypto::OpenMlsRustCrypto;
use rand::SeedableRng;

use super::*;
use crate::identity::{EthSigner, MemberId};

/// A member: its provider (crypto and storage) and MLS identity.
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

/// A alone commits `n` empty-ish changes (adds and removes of a throwaway member).
fn advance(ga: &mut MlsConversation, a: &M, n: u64) {
    for i in 0..n {
        let x = member(100 + i);
        let kp = generate_key_package(&x.p, &x.id).unwrap();
        ga.create_commit(&a.p, &a.id, &[kp], &[]).unwrap();
        ga.merge_own_commit(&a.p).unwrap();
    }
}
