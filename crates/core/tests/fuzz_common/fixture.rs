//! The conversation targets' fixture, built once with the simulator: a converged group of
//! four members (each one's saved state and MLS storage snapshotted, so any of them can be
//! the target of an input and any other can encrypt as an insider), a fifth key that never
//! joined (the outsider), the simulator's log of real packets, fresh current-epoch packets
//! the members never received, and a pending joiner snapshotted before its welcome.
//!
//! Include with `#[path = "fuzz_common/fixture.rs"] mod fixture;` next to `mod sim;` and
//! `mod fuzz_common;` (it needs both).
#![allow(dead_code)]

use std::collections::HashMap;

use demls_core::config::Millis;
use demls_core::conversation::{Conversation, Ctx, Subtopic};
use demls_core::identity::{EthSigner, MemberId};
use demls_core::mls::MlsConversation;
use demls_core::proto::pb;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use prost::Message;

use crate::fuzz_common::messages::World;
use crate::sim::{Net, Sim, fast_config};

/// An openmls in-memory storage's contents.
pub type Storage = HashMap<Vec<u8>, Vec<u8>>;

/// Copies a provider's storage.
pub fn snapshot_storage(p: &OpenMlsRustCrypto) -> Storage {
    p.storage().values.read().expect("storage lock").clone()
}

/// Puts a copied storage back.
pub fn restore_storage(p: &OpenMlsRustCrypto, s: &Storage) {
    *p.storage().values.write().expect("storage lock") = s.clone();
}

/// One member as of the snapshot.
pub struct Snapshot {
    /// `Conversation::save` output.
    pub saved: Vec<u8>,
    /// Its MLS storage.
    pub storage: Storage,
    /// Its clock.
    pub now: Millis,
}

/// The pending joiner: its state before the welcome, and the welcome that added it.
pub struct Joiner {
    /// Simulator index.
    pub idx: usize,
    pub snap: Snapshot,
    /// The real `MemberWelcome` that added it.
    pub welcome: pb::MemberWelcome,
    /// Members that were in the welcome's epoch at the snapshot (can seal a sync for it).
    pub sealers: Vec<usize>,
}

pub struct Fixture {
    pub sim: Sim,
    /// The group, as simulator indices.
    pub ids: Vec<usize>,
    /// A key that never joined.
    pub outsider: usize,
    /// Per group member (same order as `ids`): state and storage at the snapshot.
    pub snaps: Vec<Snapshot>,
    pub now: Millis,
    /// Every packet published up to the snapshot (old epochs mostly).
    pub log: Vec<(Subtopic, Vec<u8>)>,
    /// Current-epoch chats nobody received: (sender, `AppEnvelope`).
    pub fresh_chats: Vec<(usize, Vec<u8>)>,
    /// A current-epoch removal proposal by `ids[0]` (of `ids[3]`) nobody received.
    pub fresh_proposal: Vec<u8>,
    /// What the generators know (members, epoch, clock, real MLS blobs); no signers.
    pub world: World,
    pub joiner: Option<Joiner>,
    /// Time spent building it.
    pub build_time: std::time::Duration,
}

const MIN: Millis = 60_000;

/// Whether the group has converged and its steward list settled.
fn settled(s: &Sim, ids: &[usize]) -> bool {
    s.converged(ids) && s.steward_list_settled(ids)
}

fn settle(s: &mut Sim, ids: &[usize]) {
    for _ in 0..20 {
        assert!(
            s.run_until(10 * MIN, |s| settled(s, ids)),
            "fixture group did not settle\n{}",
            s.describe()
        );
        s.run_for(5_000);
        if settled(s, ids) {
            return;
        }
    }
    panic!("fixture group kept changing\n{}", s.describe());
}

fn snap(s: &Sim, i: usize) -> Snapshot {
    let m = &s.members[i];
    Snapshot {
        saved: m.conv().save().expect("save"),
        storage: snapshot_storage(&m.provider),
        now: s.now,
    }
}

impl Fixture {
    /// Builds the fixture with the simulator seeded by `seed` (clean network).
    pub fn build(seed: u64) -> Self {
        let t = std::time::Instant::now();
        let mut s = Sim::new(seed, Net::clean(), fast_config());
        let ids = s.add_members(4);
        let outsider = s.add_member("outsider");
        s.create(ids[0]);
        for k in 1..3 {
            s.join(ids[k]);
            s.assert_converge(&ids[..=k], 5 * MIN);
        }
        settle(&mut s, &ids[..3]);
        // The last joiner, snapshotted while pending (its key package's private key is
        // in its storage until the welcome is processed).
        s.join(ids[3]);
        let pending = snap(&s, ids[3]);
        s.assert_converge(&ids, 5 * MIN);
        settle(&mut s, &ids);
        let epoch = s.members[ids[0]].conv().epoch();
        let name = s.name.clone();
        let jid = s.id(ids[3]);

        let log: Vec<(Subtopic, Vec<u8>)> = s.log.iter().map(|l| (l.2, l.3.clone())).collect();
        let welcome = log.iter().rev().find_map(|(st, p)| {
            if *st != Subtopic::Welcome {
                return None;
            }
            match pb::WelcomeEnvelope::decode(p.as_slice()).ok()?.body? {
                pb::welcome_envelope::Body::Welcome(w)
                    if w.joiner_ids.iter().any(|j| j.as_slice() == jid.as_bytes()) =>
                {
                    Some(w)
                }
                _ => None,
            }
        });
        let joiner = welcome.filter(|w| w.epoch == epoch).map(|welcome| Joiner {
            idx: ids[3],
            snap: pending,
            welcome,
            sealers: ids[..3].to_vec(),
        });

        // Conversation states now; fresh traffic next, which nobody receives.
        let states: Vec<Vec<u8>> = ids
            .iter()
            .map(|i| s.members[*i].conv().save().expect("save"))
            .collect();
        for i in 0..s.members.len() {
            s.members[i].deaf = true;
        }
        let from = s.log.len();
        for &i in &ids {
            s.chat(i, &format!("fresh chat from {i}"));
        }
        let chats: Vec<(usize, Vec<u8>)> =
            s.log[from..].iter().map(|l| (l.1, l.3.clone())).collect();
        let from = s.log.len();
        s.propose_removal(ids[0], ids[3]);
        let fresh_proposal = s.log[from..]
            .first()
            .map(|l| l.3.clone())
            .expect("the removal proposal was published");
        // Storage after the fresh traffic: an insider's next message uses a new
        // generation, not one of the captured packets'.
        let snaps = ids
            .iter()
            .zip(states)
            .map(|(i, saved)| Snapshot {
                saved,
                storage: snapshot_storage(&s.members[*i].provider),
                now: s.now,
            })
            .collect();

        let mut world = World {
            name,
            epoch,
            now_ms: s.now,
            members: ids.iter().map(|i| s.id(*i)).collect(),
            ..World::default()
        };
        for (st, p) in &log {
            match st {
                Subtopic::AppMsg => match pb::AppEnvelope::decode(p.as_slice())
                    .ok()
                    .and_then(|e| e.body)
                {
                    Some(pb::app_envelope::Body::MlsMessage(ct)) => world.ciphertexts.push(ct),
                    Some(
                        pb::app_envelope::Body::CommitCandidate(c)
                        | pb::app_envelope::Body::CatchUpCommit(c),
                    ) => {
                        world.commits.push(c.commit_message);
                        world.commits.extend(c.mls_proposals);
                        world.proposals.extend(c.evidence);
                    }
                    Some(pb::app_envelope::Body::Beacon(b)) => world.beacons.push(b),
                    Some(pb::app_envelope::Body::SealedVote(v)) => world.sealed_votes.push(v),
                    _ => {}
                },
                Subtopic::Welcome => match pb::WelcomeEnvelope::decode(p.as_slice())
                    .ok()
                    .and_then(|e| e.body)
                {
                    Some(pb::welcome_envelope::Body::KeyPackage(a)) => {
                        world.key_packages.push(a.key_package)
                    }
                    Some(pb::welcome_envelope::Body::Welcome(w)) => {
                        world.welcomes.push(w.welcome);
                        if !w.sync.is_empty() {
                            world.ciphertexts.push(w.sync);
                        }
                    }
                    None => {}
                },
            }
        }
        for v in [
            &mut world.ciphertexts,
            &mut world.commits,
            &mut world.key_packages,
            &mut world.welcomes,
        ] {
            v.sort();
            v.dedup();
        }
        world.proposals.sort_by_key(|p| p.proposal_id);
        world.proposals.dedup();
        Fixture {
            sim: s,
            ids,
            outsider,
            snaps,
            now: world.now_ms,
            log,
            fresh_chats: chats,
            fresh_proposal,
            world,
            joiner,
            build_time: t.elapsed(),
        }
    }

    /// The Ethereum key of simulator member `i`.
    pub fn eth(&self, i: usize) -> EthSigner {
        self.sim.members[i].identity.eth.clone()
    }

    pub fn id(&self, i: usize) -> MemberId {
        self.sim.id(i)
    }

    /// Puts every member's MLS storage back to the snapshot.
    pub fn reset_storage(&self) {
        for (k, i) in self.ids.iter().enumerate() {
            restore_storage(&self.sim.members[*i].provider, &self.snaps[k].storage);
        }
    }

    /// Encrypts `plaintext` as an MLS application message of member `i` (a second handle
    /// on its group, in its own storage): the raw MLS ciphertext. Call
    /// [`Fixture::reset_storage`] first in each case; successive calls advance `i`'s
    /// ratchet as real messages do.
    pub fn seal_as(&self, i: usize, plaintext: &[u8]) -> Vec<u8> {
        let m = &self.sim.members[i];
        let mut g = MlsConversation::load(&m.provider, &self.world.name)
            .expect("load")
            .expect("member has a group");
        g.encrypt(&m.provider, &m.identity.mls, plaintext)
            .expect("insider encryption")
    }

    /// [`Fixture::seal_as`], wrapped in an `AppEnvelope`.
    pub fn encrypt_as(&self, i: usize, plaintext: &[u8]) -> Vec<u8> {
        pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::MlsMessage(
                self.seal_as(i, plaintext),
            )),
        }
        .encode_to_vec()
    }

    /// Member `i`'s conversation, restored from the snapshot (storage reset separately).
    pub fn restore(&self, i: usize) -> Conversation {
        let k = self
            .ids
            .iter()
            .position(|x| *x == i)
            .expect("a group member");
        Conversation::restore(&self.snaps[k].saved, &self.sim.members[i].provider)
            .expect("fixture state restores")
    }

    /// A context for member `i`.
    pub fn ctx<'a>(
        &'a self,
        i: usize,
        rng: &'a mut dyn rand::RngCore,
        now: Millis,
    ) -> Ctx<'a, OpenMlsRustCrypto> {
        let m = &self.sim.members[i];
        Ctx {
            provider: &m.provider,
            identity: &m.identity,
            rng,
            now,
        }
    }
}
