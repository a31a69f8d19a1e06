//! What an outsider on a conversation's topics can publish. It holds an Ethereum key of
//! its own and knows the conversation's name and its members' addresses (both public on
//! the wire), nothing more: nobody ever added it. Every packet is built from demls-core's
//! public types, as a hostile client would build it.

use demls_core::consensus::{ConsensusState, NewProposal};
use demls_core::conversation::Action;
use demls_core::identity::{EthSigner, MemberId};
use demls_core::mls::MlsConversation;
use demls_core::proto::{cpb, pb};
use prost::Message;
use rand::RngCore;
use sha2::Digest;

/// One packet for the outsider's relay: `publish CONV SUBTOPIC HEX`.
pub struct Packet {
    /// What it is, for the printed tally.
    pub kind: &'static str,
    /// `app_msg` or `welcome`.
    pub subtopic: &'static str,
    pub payload: Vec<u8>,
}

fn app(kind: &'static str, payload: Vec<u8>) -> Packet {
    Packet {
        kind,
        subtopic: "app_msg",
        payload,
    }
}

fn welcome(kind: &'static str, payload: Vec<u8>) -> Packet {
    Packet {
        kind,
        subtopic: "welcome",
        payload,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// MLS variable-length integer (RFC 9420 §2.1.2).
fn mls_varint(n: usize) -> Vec<u8> {
    match n {
        0..=0x3f => vec![n as u8],
        0x40..=0x3fff => (0x4000 | n as u16).to_be_bytes().to_vec(),
        _ => (0x8000_0000 | n as u32).to_be_bytes().to_vec(),
    }
}

/// The members as the outsider sees them, with the roles it reads off the wire.
pub struct Target {
    pub conversation: String,
    pub epoch: u64,
    /// Every member.
    pub members: Vec<MemberId>,
    /// The member whose removal the forged evidence asks for.
    pub victim: MemberId,
    /// The epoch steward, whose name forged candidates borrow.
    pub steward: MemberId,
}

pub struct Outsider {
    pub eth: EthSigner,
}

impl Outsider {
    pub fn new() -> Self {
        Self {
            eth: EthSigner::random_with(&mut rand::thread_rng()),
        }
    }

    pub fn id(&self) -> MemberId {
        self.eth.member_id()
    }

    /// A proposal header made and signed by the outsider's own key, with no vote at all
    /// (or only its own YES vote, which is no member's).
    pub fn forged_proposal(&self, action: Action, voters: u32, own_vote: bool) -> cpb::Proposal {
        ConsensusState::default()
            .create_proposal(
                &self.eth,
                &mut rand::thread_rng(),
                now_ms() / 1000,
                NewProposal {
                    name: action.summary(),
                    payload: action.to_payload(),
                    expected_voters: voters,
                    expiration_s: 600,
                    liveness_yes: true,
                    fixed_id: None,
                },
                own_vote.then_some(true),
            )
            .expect("create a proposal")
            .proposal
    }

    /// The forged evidence of round `i`: each one, carried by a commit, is something the
    /// group never decided.
    pub fn evidence(&self, t: &Target, i: u32) -> (&'static str, Vec<cpb::Proposal>) {
        let remove = Action::Remove { member: t.victim };
        let deadlock = |creator| Action::Emergency {
            violation: pb::ViolationType::Deadlock as i32,
            target: None,
            creator,
            epoch: t.epoch,
        };
        let n = t.members.len() as u32;
        match i % 8 {
            0 => (
                "vote-less removal",
                vec![self.forged_proposal(remove, n, false)],
            ),
            1 => (
                "removal counting 2^31 voters",
                vec![self.forged_proposal(remove, 1 << 31, false)],
            ),
            2 => (
                "removal counting 2^32-1 voters",
                vec![self.forged_proposal(remove, u32::MAX, true)],
            ),
            3 => (
                "election of the outsider, retry round 2^32-1",
                vec![self.forged_proposal(
                    Action::Election {
                        stewards: vec![self.id()],
                        election_epoch: t.epoch,
                        retry_round: u32::MAX,
                    },
                    n,
                    true,
                )],
            ),
            4 => (
                "election [S, S]",
                vec![self.forged_proposal(
                    Action::Election {
                        stewards: vec![t.steward, t.steward],
                        election_epoch: t.epoch,
                        retry_round: 0,
                    },
                    n,
                    false,
                )],
            ),
            5 => (
                "DEADLOCK emergency by the outsider",
                vec![self.forged_proposal(deadlock(self.id()), n, true)],
            ),
            6 => (
                "DEADLOCK emergency naming the steward as creator",
                vec![self.forged_proposal(deadlock(t.steward), n, false)],
            ),
            _ => (
                "all of the above",
                vec![
                    self.forged_proposal(remove.clone(), n, false),
                    self.forged_proposal(remove, 1 << 31, false),
                    self.forged_proposal(deadlock(self.id()), n, true),
                ],
            ),
        }
    }

    /// A plaintext `CommitCandidate` (or `CatchUpCommit`) whose MLS commit is junk: only
    /// the evidence and the header's claims could matter.
    pub fn junk_candidate(
        &self,
        t: &Target,
        steward: MemberId,
        epoch: u64,
        evidence: Vec<cpb::Proposal>,
        catch_up: bool,
    ) -> Vec<u8> {
        let c = pb::CommitCandidate {
            conversation: t.conversation.clone(),
            mls_proposals: vec![b"not an MLS proposal".to_vec()],
            commit_message: b"not an MLS commit".to_vec(),
            steward_id: steward.to_vec(),
            epoch,
            evidence,
            // A welcome nobody can open (an outsider has no epoch key).
            sealed_welcome: vec![0xA5; 64],
        };
        let body = if catch_up {
            pb::app_envelope::Body::CatchUpCommit(c)
        } else {
            pb::app_envelope::Body::CommitCandidate(c)
        };
        pb::AppEnvelope { body: Some(body) }.encode_to_vec()
    }

    /// An MLS `PrivateMessage` for the conversation's group claiming `epoch`, with a
    /// `size`-byte ciphertext nobody can decrypt (nothing in it is authenticated).
    pub fn fake_mls(&self, t: &Target, epoch: u64, size: usize) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0x00, 0x02]; // mls10, mls_private_message
        m.extend(mls_varint(t.conversation.len()));
        m.extend_from_slice(t.conversation.as_bytes());
        m.extend_from_slice(&epoch.to_be_bytes());
        m.extend_from_slice(&[0x01, 0x00, 0x00]); // application, empty aad, empty sender data
        let mut ct = vec![0u8; size.max(16)];
        rand::thread_rng().fill_bytes(&mut ct);
        m.extend(mls_varint(ct.len()));
        m.extend(ct);
        assert_eq!(
            MlsConversation::peek_epoch(&m),
            Some(epoch),
            "header parses"
        );
        pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::MlsMessage(m)),
        }
        .encode_to_vec()
    }

    /// A vote "sealed" to `epoch` with random bytes: the outsider has no epoch key, so
    /// nothing it seals opens.
    pub fn junk_sealed_vote(&self, epoch: u64, size: usize) -> Vec<u8> {
        let mut salt = vec![0u8; 16];
        let mut sealed = vec![0u8; size];
        rand::thread_rng().fill_bytes(&mut salt);
        rand::thread_rng().fill_bytes(&mut sealed);
        pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::SealedVote(pb::SealedVote {
                epoch,
                salt,
                sealed,
            })),
        }
        .encode_to_vec()
    }

    /// A `CatchUpRequest` for `epoch` in `requester`'s name: unsigned (junk signature),
    /// or signed by the outsider for itself.
    pub fn catch_up_request(
        &self,
        t: &Target,
        requester: MemberId,
        epoch: u64,
        sign: bool,
    ) -> Vec<u8> {
        let ts = now_ms();
        let signature = if sign {
            let mut m = b"demls/catch-up/v1".to_vec();
            m.extend_from_slice(t.conversation.as_bytes());
            m.push(0);
            m.extend_from_slice(&epoch.to_be_bytes());
            m.extend_from_slice(&ts.to_be_bytes());
            self.eth.sign(&m).unwrap()
        } else {
            vec![0x1b; 65]
        };
        pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::CatchUpRequest(pb::CatchUpRequest {
                conversation: t.conversation.clone(),
                epoch,
                requester: requester.to_vec(),
                timestamp_ms: ts,
                signature,
            })),
        }
        .encode_to_vec()
    }

    /// A "welcome" naming every member, with a `size`-byte junk MLS welcome, properly
    /// signed by the outsider as its committer (it committed nothing).
    pub fn junk_welcome(&self, t: &Target, size: usize) -> Vec<u8> {
        let mut blob = vec![0u8; size];
        rand::thread_rng().fill_bytes(&mut blob);
        let mut w = pb::MemberWelcome {
            conversation: t.conversation.clone(),
            welcome: blob,
            sync: b"not an MLS message".to_vec(),
            joiner_ids: t.members.iter().map(|m| m.to_vec()).collect(),
            epoch: t.epoch + 1,
            committer: self.id().to_vec(),
            signature: vec![],
            ..Default::default()
        };
        let mut m = b"demls/welcome/v1".to_vec();
        m.extend_from_slice(w.conversation.as_bytes());
        m.push(0);
        m.extend_from_slice(&w.epoch.to_be_bytes());
        m.extend_from_slice(&sha2::Sha256::digest(&w.welcome));
        for j in &w.joiner_ids {
            m.extend_from_slice(j);
        }
        w.signature = self.eth.sign(&m).unwrap();
        pb::WelcomeEnvelope {
            body: Some(pb::welcome_envelope::Body::Welcome(w)),
        }
        .encode_to_vec()
    }

    /// Round `i` of the flood: forged candidates and catch-up commits, fake-epoch MLS
    /// headers (two ~120 KiB ones at epoch + 1 to fill any buffer of later-epoch
    /// messages), catch-up requests, a junk welcome and random bytes.
    pub fn round(&self, t: &Target, i: u32) -> Vec<Packet> {
        let e = t.epoch;
        let mut out = Vec::new();
        let (_, evidence) = self.evidence(t, i);
        // Under the outsider's own name and under the epoch steward's.
        let claimed = if i.is_multiple_of(2) {
            self.id()
        } else {
            t.steward
        };
        out.push(app(
            "CommitCandidate, forged evidence",
            self.junk_candidate(t, claimed, e, evidence.clone(), false),
        ));
        let catch_up_epoch = [e, e.saturating_sub(1), u64::MAX, e + 1][(i % 4) as usize];
        out.push(app(
            "CatchUpCommit, forged evidence",
            self.junk_candidate(t, claimed, catch_up_epoch, evidence, true),
        ));
        let far = [1_000_000, u64::MAX, e + 1_000, e + 4][(i % 4) as usize];
        out.push(app("MLS header, far epoch", self.fake_mls(t, far, 64)));
        for k in 0..2 {
            out.push(app(
                "MLS header, epoch + 1, ~120 KiB",
                self.fake_mls(t, e + 1 + (i + k) as u64 % 2, 120 * 1024),
            ));
        }
        out.push(app(
            "SealedVote, junk, our epoch or the next",
            self.junk_sealed_vote(e + u64::from(i % 2), 100 + (i as usize * 13) % 900),
        ));
        let requester = t.members[i as usize % t.members.len()];
        let past = if i.is_multiple_of(3) {
            0
        } else {
            e.saturating_sub(1)
        };
        out.push(app(
            "CatchUpRequest, unsigned, past epoch",
            self.catch_up_request(t, requester, past, false),
        ));
        out.push(app(
            "CatchUpRequest, signed by the outsider",
            self.catch_up_request(t, self.id(), e.saturating_sub(1), true),
        ));
        let size = if i.is_multiple_of(4) { 100 * 1024 } else { 512 };
        out.push(welcome(
            "MemberWelcome, junk, naming the members",
            self.junk_welcome(t, size),
        ));
        let mut junk = vec![0u8; 64 + (i as usize * 37) % 2048];
        rand::thread_rng().fill_bytes(&mut junk);
        out.push(app("random bytes", junk.clone()));
        out.push(welcome("random bytes", junk));
        out
    }
}
