//! Beacons: the signed plaintext summary of our epoch log that members exchange to find
//! forks, and what a beacon we hear tells us about the sender's history.

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;

use super::watch::{AUTH_LEN, Auth};
use crate::config::REPLY_JITTER_MS;
use crate::conversation::*;
use crate::identity;
use crate::proto::pb;

/// Epoch hashes a beacon carries (newest first).
pub(crate) const CHAIN_LEN: usize = 16;
/// How far a beacon's timestamp may be from our clock.
const BEACON_SKEW_MS: Millis = 30_000;
/// Matching beacons heard in an interval that make ours unnecessary.
const SUPPRESS_AFTER: u32 = 2;

/// Domain separation for beacon signatures.
const BEACON_DOMAIN: &[u8] = b"demls/beacon/v1";

/// What a beacon's sender signs: everything in it but the signature.
fn beacon_signed_bytes(b: &pb::EpochBeacon) -> Vec<u8> {
    let mut m = BEACON_DOMAIN.to_vec();
    m.extend_from_slice(b.conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&b.epoch.to_be_bytes());
    m.extend_from_slice(&b.members.to_be_bytes());
    m.extend_from_slice(&b.timestamp_ms.to_be_bytes());
    for a in &b.chain {
        m.extend_from_slice(a);
    }
    m
}

/// Signs `b` as its sender would, with any key (test-only: the `adversary` feature), so
/// the simulator can play a member lying in its beacons.
#[cfg(feature = "adversary")]
pub fn sign_beacon(b: &mut pb::EpochBeacon, signer: &identity::EthSigner) {
    b.signature = signer.sign(&beacon_signed_bytes(b)).unwrap_or_default();
}

/// The latest beacon a member sent us (never saved: re-learnt after a restart).
#[derive(Clone, Debug)]
pub(crate) struct HeardBeacon {
    /// The sender's epoch.
    pub(super) epoch: u64,
    /// Its epoch hashes, newest first.
    pub(super) chain: Vec<Auth>,
    /// The sender's timestamp (a beacon not newer than the one held is dropped).
    pub(super) timestamp: u64,
    /// When we heard it (it speaks for its sender `beacon_fresh` long).
    pub(super) heard_at: Millis,
}

impl HeardBeacon {
    /// A beacon whose chain was checked to hold [`AUTH_LEN`]-byte hashes, heard at `now`.
    fn new(b: &pb::EpochBeacon, now: Millis) -> Self {
        Self {
            epoch: b.epoch,
            chain: b
                .chain
                .iter()
                .map(|a| {
                    let mut x = [0u8; AUTH_LEN];
                    x.copy_from_slice(a);
                    x
                })
                .collect(),
            timestamp: b.timestamp_ms,
            heard_at: now,
        }
    }

    /// The sender's hash for `epoch`, if its chain reaches it.
    pub(super) fn auth_at(&self, epoch: u64) -> Option<Auth> {
        let back = self.epoch.checked_sub(epoch)?;
        self.chain.get(usize::try_from(back).ok()?).copied()
    }
}

/// How a beacon's chain relates to our log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Relation {
    /// Same history where both hold it; the sender is at this epoch.
    Same(u64),
    /// Different hashes from this epoch on.
    Fork(u64),
    /// Different at an epoch and equal again at a later one: impossible for a real
    /// branch (each epoch's key schedule derives from the one before), so a lie.
    False,
    /// The sender is further ahead than anyone keeps commits for us.
    BeyondReach,
    /// Nothing in common to compare.
    Unknown,
}

impl Conversation {
    /// How `b`'s chain relates to our log (compared where both hold an epoch).
    pub(super) fn relation(&self, b: &HeardBeacon) -> Relation {
        let ours = self.epoch();
        let reach = ours.saturating_add(self.config.catch_up_window as u64);
        if b.epoch > reach {
            return Relation::BeyondReach;
        }
        let oldest = b.epoch + 1 - b.chain.len() as u64;
        let mut compared = false;
        let mut forked = None;
        for e in oldest..=b.epoch.min(ours) {
            match (self.fork_watch.auth_at(e), b.auth_at(e)) {
                (Some(a), Some(t)) if a != t => {
                    forked.get_or_insert(e);
                }
                (Some(_), Some(_)) if forked.is_some() => return Relation::False,
                (Some(_), Some(_)) => compared = true,
                _ => {}
            }
        }
        if let Some(e) = forked {
            Relation::Fork(e)
        } else if compared {
            Relation::Same(b.epoch)
        } else {
            Relation::Unknown
        }
    }

    /// When a beacon sent "soon" goes out: within the reply jitter, but never sooner
    /// than `recovery_inactivity` after our last one.
    pub(super) fn beacon_soon<P: OpenMlsProvider>(&self, ctx: &mut Ctx<'_, P>) -> Millis {
        let earliest = self
            .fork_watch
            .last_sent
            .map_or(0, |t| t.saturating_add(self.config.recovery_inactivity));
        (ctx.now + ctx.rng.gen_range(0..REPLY_JITTER_MS)).max(earliest)
    }

    /// A hint that another branch may exist (or that we are behind): a beacon soon, unless
    /// two members send theirs first.
    pub(crate) fn fork_hint<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>) {
        if self.mls.is_none() {
            return;
        }
        let at = self.beacon_soon(ctx);
        let fw = &mut self.fork_watch;
        if fw.next_beacon.is_none_or(|n| n > at) {
            fw.next_beacon = Some(at);
            fw.matching = 0;
        }
    }

    /// When a beacon of a quiet group goes out: at a random point in the second half of
    /// the interval (Trickle-style, so that the first to speak suppresses the others).
    pub(super) fn quiet_beacon_at<P: OpenMlsProvider>(&self, ctx: &mut Ctx<'_, P>) -> Millis {
        let half = self.beacon_interval() / 2;
        ctx.now + half + ctx.rng.gen_range(0..half.max(1))
    }

    /// Sends our beacon if it is due (unless two matching ones were heard and no fork is
    /// known), and schedules the next one.
    pub(super) fn send_due_beacon<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        if self.fork_watch.next_beacon.is_none_or(|t| now < t) {
            return;
        }
        let known = self.fork_watch.fork.as_ref();
        let forked = known.is_some_and(|f| !f.won);
        let send = known.is_some() || self.fork_watch.matching < SUPPRESS_AFTER;
        if send && let Some(env) = self.build_beacon(ctx) {
            out.send(Subtopic::AppMsg, env);
            self.fork_watch.last_sent = Some(now);
        }
        self.fork_watch.matching = 0;
        let next = if forked {
            // While a fork is known, keep the other side informed (losses happen).
            now + 4 * self.config.recovery_inactivity
        } else {
            self.quiet_beacon_at(ctx)
        };
        self.fork_watch.next_beacon = Some(next);
    }

    /// Our signed beacon as a published envelope (None before the log reaches our epoch).
    fn build_beacon<P: OpenMlsProvider>(&self, ctx: &mut Ctx<'_, P>) -> Option<Vec<u8>> {
        let epoch = self.epoch();
        // Newest first, contiguous, ending at our epoch (empty if the log is not there).
        let chain = self
            .fork_watch
            .log
            .iter()
            .rev()
            .zip((0..=epoch).rev())
            .take_while(|(r, e)| r.epoch == *e)
            .take(CHAIN_LEN)
            .map(|(r, _)| r.auth.to_vec())
            .collect();
        let mut b = pb::EpochBeacon {
            conversation: self.name.clone(),
            sender: self.me.to_vec(),
            epoch,
            chain,
            members: u32::try_from(self.members().len()).unwrap_or(u32::MAX),
            timestamp_ms: ctx.now,
            signature: Vec::new(),
        };
        if b.chain.is_empty() {
            return None;
        }
        b.signature = ctx.identity.eth.sign(&beacon_signed_bytes(&b)).ok()?;
        Some(
            pb::AppEnvelope {
                body: Some(pb::app_envelope::Body::Beacon(b)),
            }
            .encode_to_vec(),
        )
    }

    /// Members whose beacons we take: the current roster and members our log saw removed
    /// (on another branch they may still be members).
    pub(crate) fn known_member(&self, m: &MemberId) -> bool {
        self.members().contains(m) || self.fork_watch.log.iter().any(|r| r.removed.contains(m))
    }

    /// A beacon from another member: checked, kept as its sender's latest, and acted on
    /// by how its history relates to ours.
    pub(crate) fn on_beacon<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        b: pb::EpochBeacon,
    ) {
        let Some((sender, heard)) = self.verified_beacon(ctx.now, out, &b) else {
            return;
        };
        let relation = self.relation(&heard);
        if relation == Relation::False {
            return out.reject(
                InboundKind::Beacon,
                RejectCause::Invalid,
                format!("{sender}'s beacon differs from our history and then agrees with it"),
            );
        }
        self.fork_watch.beacons.insert(sender, heard);
        let ours = self.epoch();
        tracing::trace!(conversation = %self.name, %sender, epoch = b.epoch, ?relation, "beacon");
        match relation {
            Relation::Same(e) if e == ours => {
                self.fork_watch.matching = self.fork_watch.matching.saturating_add(1);
            }
            // A member signed that the group is further on: a hint we can trust.
            Relation::Same(e) if e > ours => self.signed_hint(ctx.now, e),
            Relation::Same(e) => {
                // Behind us: if nobody keeps the commits it needs, tell it so.
                if e.saturating_add(self.config.catch_up_window as u64) < ours {
                    self.fork_hint(ctx);
                }
            }
            Relation::Fork(e) => self.fork_seen(ctx, e),
            Relation::BeyondReach => self.maybe_rejoin_beyond_reach(ctx, out),
            Relation::Unknown if b.epoch > ours => self.signed_hint(ctx.now, b.epoch),
            Relation::Unknown | Relation::False => {}
        }
    }

    /// The sender of `b` and what we keep of it, if it is a well-formed, fresh, newer
    /// beacon of this conversation signed by a member we know. Cheap checks first; the
    /// signature last.
    fn verified_beacon(
        &self,
        now: Millis,
        out: &mut Output,
        b: &pb::EpochBeacon,
    ) -> Option<(MemberId, HeardBeacon)> {
        if b.conversation != self.name || self.mls.is_none() {
            return None;
        }
        let Ok(sender) = MemberId::from_slice(&b.sender) else {
            out.reject(
                InboundKind::Beacon,
                RejectCause::Malformed,
                "beacon without a sender",
            );
            return None;
        };
        if sender == self.me || !self.known_member(&sender) {
            return None;
        }
        if b.chain.is_empty()
            || b.chain.len() > CHAIN_LEN
            || b.chain.iter().any(|a| a.len() != AUTH_LEN)
            || (b.epoch as u128) + 1 < b.chain.len() as u128
        {
            out.reject(
                InboundKind::Beacon,
                RejectCause::Malformed,
                format!("malformed beacon from {sender}"),
            );
            return None;
        }
        if b.timestamp_ms.abs_diff(now) > BEACON_SKEW_MS {
            return None;
        }
        if self
            .fork_watch
            .beacons
            .get(&sender)
            .is_some_and(|h| h.timestamp >= b.timestamp_ms)
        {
            return None;
        }
        if let Err(e) = identity::verify(&beacon_signed_bytes(b), &b.signature, &sender) {
            out.reject(
                InboundKind::Beacon,
                RejectCause::Unauthenticated,
                format!("beacon signature: {e}"),
            );
            return None;
        }
        Some((sender, HeardBeacon::new(b, now)))
    }
}
