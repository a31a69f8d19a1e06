//! Fuzz target for every protobuf decoder of the core (`proto/consensus/v1`,
//! `proto/demls/v1` via `demls_core::proto`): random bytes, random protobuf field soup,
//! deep nesting, and structured messages (hostile field values) encoded and mutated. Every
//! input goes through every decoder.
//!
//! Oracles: no panic; a decoded message re-encodes to `encoded_len()` bytes and decodes
//! back to itself (unknown fields are dropped, so decode ∘ encode is the identity on
//! decoded values); `Action::from_payload` does not panic either.

mod fuzz_common;

use std::fmt::Debug;

use demls_core::conversation::Action;
use demls_core::identity::{EthSigner, MemberId};
use demls_core::proto::{cpb, pb};
use fuzz_common::Rng;
use fuzz_common::bytes::{crossover, deep_nesting, mutate, random_bytes, random_pb_message};
use fuzz_common::messages::{self as mk, World};
use fuzz_common::runner::fuzz;
use prost::Message;
use rand::{Rng as _, SeedableRng};

fn roundtrip<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) {
    if let Ok(m) = M::decode(bytes) {
        let enc = m.encode_to_vec();
        assert_eq!(
            enc.len(),
            m.encoded_len(),
            "encoded_len disagrees with encode"
        );
        let again = M::decode(enc.as_slice()).expect("our own encoding does not decode");
        assert_eq!(again, m, "decode(encode(m)) != m");
    }
    let _ = M::decode_length_delimited(bytes);
}

/// A decoder check on some bytes.
type Check = fn(&[u8]);

/// Every message type of the core's protobuf schema, by name.
const DECODERS: &[(&str, Check)] = &[
    ("consensus.v1.Proposal", roundtrip::<cpb::Proposal>),
    ("consensus.v1.Vote", roundtrip::<cpb::Vote>),
    ("demls.v1.AppEnvelope", roundtrip::<pb::AppEnvelope>),
    ("demls.v1.AppMessage", roundtrip::<pb::AppMessage>),
    ("demls.v1.ChatMessage", roundtrip::<pb::ChatMessage>),
    ("demls.v1.CommitCandidate", roundtrip::<pb::CommitCandidate>),
    ("demls.v1.CatchUpRequest", roundtrip::<pb::CatchUpRequest>),
    ("demls.v1.WelcomeEnvelope", roundtrip::<pb::WelcomeEnvelope>),
    (
        "demls.v1.KeyPackageAnnouncement",
        roundtrip::<pb::KeyPackageAnnouncement>,
    ),
    ("demls.v1.MemberWelcome", roundtrip::<pb::MemberWelcome>),
    (
        "demls.v1.ConversationUpdateRequest",
        roundtrip::<pb::ConversationUpdateRequest>,
    ),
    ("demls.v1.InviteMember", roundtrip::<pb::InviteMember>),
    ("demls.v1.RemoveMember", roundtrip::<pb::RemoveMember>),
    (
        "demls.v1.ViolationEvidence",
        roundtrip::<pb::ViolationEvidence>,
    ),
    (
        "demls.v1.EmergencyCriteriaProposal",
        roundtrip::<pb::EmergencyCriteriaProposal>,
    ),
    (
        "demls.v1.StewardElectionProposal",
        roundtrip::<pb::StewardElectionProposal>,
    ),
    ("demls.v1.PeerScore", roundtrip::<pb::PeerScore>),
    ("demls.v1.TimingConfig", roundtrip::<pb::TimingConfig>),
    (
        "demls.v1.ConversationSync",
        roundtrip::<pb::ConversationSync>,
    ),
];

/// A made-up world: a few members, two of which can sign.
fn world() -> World {
    let mut rng = Rng::seed_from_u64(7);
    let signers: Vec<EthSigner> = (0..2).map(|_| EthSigner::random_with(&mut rng)).collect();
    let mut members: Vec<MemberId> = signers.iter().map(|s| s.member_id()).collect();
    members.push(MemberId([0x11; 20]));
    members.push(MemberId([0x22; 20]));
    World {
        name: "fuzz-chat".into(),
        epoch: 5,
        now_ms: 1_790_000_000_000,
        members,
        signers,
        ..World::default()
    }
}

/// One structured message of any type, encoded.
fn structured(rng: &mut Rng, w: &World) -> Vec<u8> {
    let s = w.signers.clone();
    match rng.gen_range(0..16) {
        0 => mk::proposal(rng, w, s.first(), &s).encode_to_vec(),
        1 => {
            let p = mk::proposal(rng, w, s.first(), &s);
            mk::vote(rng, w, &p, s.last(), Vec::new()).encode_to_vec()
        }
        2 | 3 => mk::app_envelope(rng, w, &s).encode_to_vec(),
        4 | 5 => mk::app_message(rng, w, s.first(), &s).encode_to_vec(),
        6 => mk::commit_candidate(rng, w, &s).encode_to_vec(),
        7 | 8 => mk::welcome_envelope(rng, w, w.members.first().copied()).encode_to_vec(),
        9 => mk::announcement(rng, w).encode_to_vec(),
        10 => mk::member_welcome(rng, w, None).encode_to_vec(),
        11 | 12 => mk::update_request(rng, w).encode_to_vec(),
        13 => mk::election(rng, w).encode_to_vec(),
        14 => mk::sync(rng, w).encode_to_vec(),
        _ => mk::fake_mls(rng, w),
    }
}

#[test]
fn fuzz_proto_decoders() {
    let w = world();
    fuzz::<Rng, _>("fuzz_proto_decoders", 3_000, |rng, case| {
        let bytes = match rng.gen_range(0..10) {
            0 => random_bytes(rng, 2048),
            1 => random_pb_message(rng, 4),
            2 => deep_nesting(rng.gen_range(1..200), rng.gen_range(1..8)),
            3..=5 => structured(rng, &w),
            6 | 7 => {
                let s = structured(rng, &w);
                mutate(rng, &s, 8, 1 << 17)
            }
            8 => {
                let (a, b) = (structured(rng, &w), structured(rng, &w));
                crossover(rng, &a, &b)
            }
            _ => {
                // A valid message wrapped as the payload of another (nested confusion).
                let inner = structured(rng, &w);
                pb::AppEnvelope {
                    body: Some(pb::app_envelope::Body::MlsMessage(inner)),
                }
                .encode_to_vec()
            }
        };
        case.input("bytes", &bytes);
        for (_, check) in DECODERS {
            check(&bytes);
        }
        let _ = Action::from_payload(&bytes);
        if let Ok(r) = pb::ConversationUpdateRequest::decode(bytes.as_slice())
            && let Ok(a) = Action::from_payload(&bytes)
        {
            // A payload that decodes re-encodes to one that decodes to the same action.
            let again = Action::from_payload(&a.to_payload());
            if !matches!(
                r.kind,
                Some(pb::conversation_update_request::Kind::InviteMember(_))
            ) {
                assert_eq!(again.as_ref(), Ok(&a), "Action payload round trip");
            }
            let _ = (a.summary(), a.kind(), a.member(), a.membership_change());
        }
    });
}
