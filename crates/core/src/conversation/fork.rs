//! Fork detection and healing, and coming back after any absence.
//!
//! The rules in `freeze` keep members from applying different commits for one epoch, but
//! only for what members *heard*: a partition, a crash of the only node others were
//! connected to, or a member alone on its side committing by the timeout rule can leave
//! two groups under one name, each at "its" epoch with different secrets. Nothing inside
//! MLS tells them apart; their messages simply stop decrypting.
//!
//! **Detection.** Every member keeps a short log of the epochs it went through: the
//! SHA-256 of each epoch's MLS epoch authenticator (truncated to 16 bytes) and who each
//! commit added and removed. It sends a signed plaintext [`pb::EpochBeacon`] with the
//! newest [`CHAIN_LEN`] of those hashes when the group is quiet (Trickle-style: once per
//! `2 × commit_inactivity` at a random point in the second half, skipped if two matching
//! beacons were heard in that interval, so a quiet group sends about two beacons per
//! interval in all), and soon after a hint that something is off (an application message
//! at our epoch that does not decrypt, a candidate for our epoch that does not stage, a
//! claim of a later epoch), again with the two-beacon suppression. A beacon whose hashes
//! differ from ours at an epoch both hold shows a fork at the first such epoch `F`; every
//! member that sees one answers with its own beacon (no suppression while a fork is
//! known, at most one per `recovery_inactivity`), so both sides learn of it within about
//! one reply delay of hearing each other.
//!
//! **Healing.** After a settling delay every member evaluates the same rule on the
//! beacons it holds: among the members of the group *before* the fork (the roster at
//! epoch `F − 1`, which both branches share: rebuilt from the log), count for each branch
//! those whose latest fresh beacon is on it (ourselves included). The branch with more
//! such members survives; on a tie, the one whose epoch-`F` hash is lower. Only members of
//! the common roster count, so outsiders and members one branch added after the fork
//! cannot tip it, and a member lying about its branch moves at most its own vote. Members
//! of the losing branch report which of their chat messages the surviving branch never
//! saw, delete their MLS state for it, and join again through the normal join path with
//! a *rejoin* announcement: the surviving branch's steward removes their old leaf and
//! adds the fresh key package in one commit, voted on like any join.
//!
//! **Absence.** A member that comes back after the group moved more than
//! `catch_up_window` epochs on (nobody keeps the commits it needs any more) hears that
//! from beacons: when two members of its roster (or its only other member) sign that
//! they are past its reach, it rejoins the same way instead of asking for commits forever.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::*;
use crate::config::REPLY_JITTER_MS;
use crate::identity;
use crate::proto::pb;

/// Epoch hashes a beacon carries (newest first).
pub(crate) const CHAIN_LEN: usize = 16;
/// Bytes of each epoch hash.
const AUTH_LEN: usize = 16;
/// Epochs remembered in the log (who each commit added and removed: a few bytes each).
const LOG_CAP: usize = 64;
/// How far a beacon's timestamp may be from our clock.
const BEACON_SKEW_MS: Millis = 30_000;
/// Matching beacons heard in an interval that make ours unnecessary.
const SUPPRESS_AFTER: u32 = 2;
/// Our chat messages remembered for the report after abandoning a branch.
const SENT_CAP: usize = 64;

const BEACON_DOMAIN: &[u8] = b"demls/beacon/v1";

type Auth = [u8; AUTH_LEN];

fn short_auth(authenticator: &[u8]) -> Auth {
    let full: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        authenticator,
    ))
    .into();
    let mut a = [0u8; AUTH_LEN];
    a.copy_from_slice(&full[..AUTH_LEN]);
    a
}

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

/// One epoch we were in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EpochRecord {
    pub epoch: u64,
    pub auth: Auth,
    /// Who the commit into this epoch added and removed (empty for the first record).
    pub added: Vec<MemberId>,
    pub removed: Vec<MemberId>,
}

/// The latest beacon a member sent us (never saved: re-learnt after a restart).
#[derive(Clone, Debug)]
pub(crate) struct HeardBeacon {
    epoch: u64,
    chain: Vec<Auth>,
    timestamp: u64,
    heard_at: Millis,
}

impl HeardBeacon {
    /// The sender's hash for `epoch`, if its chain reaches it.
    fn auth_at(&self, epoch: u64) -> Option<Auth> {
        let back = self.epoch.checked_sub(epoch)?;
        self.chain.get(usize::try_from(back).ok()?).copied()
    }
}

/// A fork we know of: members applied a different commit into `epoch`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KnownFork {
    pub epoch: u64,
    /// Beacons are collected until then before anyone judges.
    pub settled_at: Millis,
    pub decide_at: Millis,
    /// Last time a beacon showed the other branch (the fork is forgotten when it is old).
    pub seen_at: Millis,
    /// The others have had their time to hear us and we do not lose: beacons go back to
    /// the usual rate, still unsuppressed while the record lives (a member repeating a
    /// false hash would otherwise keep everyone at the fork rate).
    #[serde(default)]
    pub won: bool,
    /// A later fork judged instead of the one at `epoch`, which we won (see
    /// `fork_to_judge`), and when its own settling delay ends.
    #[serde(default)]
    pub later: Option<(u64, Millis)>,
}

/// What we know of one fork epoch, kept across fork records: a member alternating its
/// lies (a branch from one epoch, then agreement there and a branch from a later one)
/// made each record look healed and start again, with fresh delays and a round of
/// answers from everyone, so that nobody ever judged the lie settled.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Sighting {
    /// When a beacon first showed a fork at this epoch: delays run from here.
    pub first: Millis,
    /// When one last did (the sighting is forgotten `beacon_fresh` later).
    pub last: Millis,
    /// Whether we answered it with a beacon of ours (once per sighting).
    pub answered: bool,
    /// Whether `Event::ForkDetected` was emitted for it.
    pub reported: bool,
}

/// A chat message we sent, kept to say which ones an abandoned branch swallowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentChat {
    /// Epoch it was sent in.
    pub epoch: u64,
    /// Our timestamp.
    pub timestamp: Millis,
    /// Text.
    pub text: String,
}

/// Everything fork detection keeps.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ForkWatch {
    pub log: VecDeque<EpochRecord>,
    /// The roster at the newest log record (to tell what the next commit changed).
    pub roster: Vec<MemberId>,
    #[serde(skip)]
    pub beacons: BTreeMap<MemberId, HeardBeacon>,
    /// When our next beacon is due (None: not scheduled yet).
    pub next_beacon: Option<Millis>,
    /// When we last sent one.
    pub last_sent: Option<Millis>,
    /// Beacons matching ours heard since the current interval began.
    pub matching: u32,
    pub fork: Option<KnownFork>,
    /// Fork epochs seen lately (see [`Sighting`]): only epochs of `log` (a beacon can show
    /// a fork only at one), so at most `LOG_CAP`, and nothing is pushed out (a liar
    /// naming many epochs could otherwise make one it named before fresh again).
    #[serde(default)]
    pub sightings: BTreeMap<u64, Sighting>,
    pub sent: VecDeque<SentChat>,
    /// When each member last sent us an MLS application message of our current epoch
    /// (it held its leaf then): a rejoin announcement older than that is not its state.
    #[serde(skip)]
    pub heard: BTreeMap<MemberId, Millis>,
    /// When we applied the commit that removed each recently removed member: its chat
    /// of a past epoch is read only shortly after (a late or stored message), not later
    /// (it still holds that epoch's keys and could write new ones).
    #[serde(default)]
    pub removed_at: VecDeque<(MemberId, Millis)>,
}

/// How many removals `ForkWatch::removed_at` remembers.
const REMOVED_AT_CAP: usize = 256;

impl ForkWatch {
    /// Notes that `removed` left the group now.
    pub(super) fn note_removed(&mut self, removed: &[MemberId], now: Millis) {
        self.removed_at.extend(removed.iter().map(|m| (*m, now)));
        while self.removed_at.len() > REMOVED_AT_CAP {
            self.removed_at.pop_front();
        }
        for m in removed {
            self.heard.remove(m);
        }
    }

    /// Notes the commit into `epoch` by its own lists of whom it added and removed (a
    /// rejoin removes and adds one member, which the roster difference `note_epoch`
    /// records does not show):
    /// - the log record gets them (`tally_branches` counts members re-added since a fork);
    /// - each added member was elsewhere before (a newcomer, or one that left a losing
    ///   branch to rejoin ours), so a beacon it sent from there is not where it stands
    ///   now and is dropped. Kept, the old beacons of members that had already come over
    ///   to the surviving branch outvoted it until they went stale, and its members left
    ///   it.
    pub(super) fn note_commit(&mut self, epoch: u64, added: &[MemberId], removed: &[MemberId]) {
        for m in added {
            self.beacons.remove(m);
        }
        let Some(r) = self.log.back_mut().filter(|r| r.epoch == epoch) else {
            return;
        };
        for a in added {
            if !r.added.contains(a) {
                r.added.push(*a);
            }
        }
        for m in removed {
            if !r.removed.contains(m) {
                r.removed.push(*m);
            }
        }
    }

    /// When we applied `m`'s removal, if we remember it.
    pub(super) fn removed_when(&self, m: &MemberId) -> Option<Millis> {
        self.removed_at
            .iter()
            .rev()
            .find(|(r, _)| r == m)
            .map(|(_, t)| *t)
    }
}

/// Support for the branches at a fork epoch.
struct Tally {
    /// Our hash at the fork epoch.
    ours: Auth,
    /// Voters on our branch, us included.
    our_count: u32,
    /// The strongest other branch: its hash and its voters (most, then lowest hash).
    best_other: Option<(Auth, u32)>,
    /// Voters with no fresh beacon on any branch (lost beacons, dead or silent members).
    unheard: u32,
}

impl Tally {
    /// Whether we lose on these counts.
    fn we_lose(&self) -> bool {
        self.best_other.is_some_and(|(theirs, their_count)| {
            their_count > self.our_count || (their_count == self.our_count && theirs < self.ours)
        })
    }

    /// Whether we win whatever the unheard voters hold (all of them on the strongest
    /// other branch), or nobody differs.
    fn we_win_surely(&self) -> bool {
        self.best_other.is_none_or(|(theirs, their_count)| {
            let theirs_at_most = their_count.saturating_add(self.unheard);
            theirs_at_most < self.our_count
                || (theirs_at_most == self.our_count && self.ours < theirs)
        })
    }

    /// Whether we lose whatever the unheard voters hold (all of them on our side).
    fn we_lose_surely(&self) -> bool {
        let ours = self.our_count.saturating_add(self.unheard);
        self.best_other.is_some_and(|(theirs, their_count)| {
            their_count > ours || (their_count == ours && theirs < self.ours)
        })
    }
}

/// How a beacon's chain relates to our log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relation {
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
    /// How often a quiet group hears a beacon.
    fn beacon_interval(&self) -> Millis {
        2 * self.config.commit_inactivity
    }

    /// How long a member's beacon speaks for it.
    fn beacon_fresh(&self) -> Millis {
        2 * self.beacon_interval()
    }

    /// Records the epoch we are in now, if it is new (called at every epoch change).
    pub(super) fn note_epoch(&mut self) {
        let Some(mls) = self.mls.as_ref() else { return };
        let epoch = mls.epoch();
        let fw = &mut self.fork_watch;
        if fw.log.back().is_some_and(|r| r.epoch >= epoch) {
            return;
        }
        let members = mls.members();
        let (added, removed) = if fw.log.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let before: BTreeSet<_> = fw.roster.iter().copied().collect();
            let after: BTreeSet<_> = members.iter().copied().collect();
            (
                after.difference(&before).copied().collect(),
                before.difference(&after).copied().collect(),
            )
        };
        fw.log.push_back(EpochRecord {
            epoch,
            auth: short_auth(&mls.epoch_authenticator()),
            added,
            removed,
        });
        while fw.log.len() > LOG_CAP {
            fw.log.pop_front();
        }
        fw.roster = members;
    }

    /// Remembers a chat message of ours (see [`SentChat`]).
    pub(super) fn note_sent_chat(&mut self, timestamp: Millis, text: &str) {
        let epoch = self.epoch();
        let sent = &mut self.fork_watch.sent;
        sent.push_back(SentChat {
            epoch,
            timestamp,
            text: text.to_string(),
        });
        while sent.len() > SENT_CAP {
            sent.pop_front();
        }
    }

    fn our_auth_at(&self, epoch: u64) -> Option<Auth> {
        // The log is in epoch order (`note_epoch` appends only later epochs).
        let log = &self.fork_watch.log;
        let i = log.binary_search_by_key(&epoch, |r| r.epoch).ok()?;
        log.get(i).map(|r| r.auth)
    }

    fn relation(&self, b: &HeardBeacon) -> Relation {
        let ours = self.epoch();
        let reach = ours.saturating_add(self.config.catch_up_window as u64);
        if b.epoch > reach {
            return Relation::BeyondReach;
        }
        let oldest = b.epoch + 1 - b.chain.len() as u64;
        let mut compared = false;
        let mut forked = None;
        for e in oldest..=b.epoch.min(ours) {
            match (self.our_auth_at(e), b.auth_at(e)) {
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
    fn beacon_soon<P: OpenMlsProvider>(&self, ctx: &mut Ctx<'_, P>) -> Millis {
        let earliest = self
            .fork_watch
            .last_sent
            .map_or(0, |t| t.saturating_add(self.config.recovery_inactivity));
        (ctx.now + ctx.rng.gen_range(0..REPLY_JITTER_MS)).max(earliest)
    }

    /// A hint that another branch may exist (or that we are behind): a beacon soon, unless
    /// two members send theirs first.
    pub(super) fn fork_hint<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>) {
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
    pub(super) fn known_member(&self, m: &MemberId) -> bool {
        self.members().contains(m) || self.fork_watch.log.iter().any(|r| r.removed.contains(m))
    }

    pub(super) fn on_beacon<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        b: pb::EpochBeacon,
    ) {
        if b.conversation != self.name || self.mls.is_none() {
            return;
        }
        let Ok(sender) = MemberId::from_slice(&b.sender) else {
            return out.reject(
                InboundKind::Beacon,
                RejectCause::Malformed,
                "beacon without a sender",
            );
        };
        if sender == self.me || !self.known_member(&sender) {
            return;
        }
        if b.chain.is_empty()
            || b.chain.len() > CHAIN_LEN
            || b.chain.iter().any(|a| a.len() != AUTH_LEN)
            || (b.epoch as u128) + 1 < b.chain.len() as u128
        {
            return out.reject(
                InboundKind::Beacon,
                RejectCause::Malformed,
                format!("malformed beacon from {sender}"),
            );
        }
        if b.timestamp_ms.abs_diff(ctx.now) > BEACON_SKEW_MS {
            return;
        }
        if self
            .fork_watch
            .beacons
            .get(&sender)
            .is_some_and(|h| h.timestamp >= b.timestamp_ms)
        {
            return;
        }
        if let Err(e) = identity::verify(&beacon_signed_bytes(&b), &b.signature, &sender) {
            return out.reject(
                InboundKind::Beacon,
                RejectCause::Unauthenticated,
                format!("beacon signature: {e}"),
            );
        }
        let heard = HeardBeacon {
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
            heard_at: ctx.now,
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

    /// How long beacons are collected after the first sign of a fork before anyone judges.
    fn fork_settle(&self) -> Millis {
        2 * REPLY_JITTER_MS + 2 * self.config.recovery_inactivity
    }

    /// How long after settling a member waits for voters it has not heard (rule 4).
    fn fork_grace(&self, settled_at: Millis) -> Millis {
        settled_at.saturating_add(12 * self.config.recovery_inactivity)
    }

    /// What we know of the fork at `epoch` (a log epoch) since a beacon first showed it
    /// (now, if none did lately); `shown`: a beacon shows it now. Sightings gone stale,
    /// or of epochs the log no longer holds, are forgotten first.
    fn sight(&mut self, epoch: u64, now: Millis, shown: bool) -> &mut Sighting {
        let fresh = self.beacon_fresh();
        let ForkWatch { log, sightings, .. } = &mut self.fork_watch;
        sightings.retain(|e, s| {
            log.binary_search_by_key(e, |r| r.epoch).is_ok() && now < s.last.saturating_add(fresh)
        });
        let s = sightings.entry(epoch).or_insert(Sighting {
            first: now,
            last: now,
            answered: false,
            reported: false,
        });
        if shown {
            s.last = s.last.max(now);
        }
        s
    }

    /// Answers a fork sighting with a beacon soon, once per sighting: everyone on both
    /// sides answers, so both sides count everyone.
    fn answer_sighting<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, epoch: u64) {
        let Some(s) = self.fork_watch.sightings.get_mut(&epoch) else {
            return;
        };
        if s.answered {
            return;
        }
        s.answered = true;
        self.fork_watch.next_beacon = Some(self.beacon_soon(ctx));
    }

    fn fork_seen<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, epoch: u64) {
        let now = ctx.now;
        let settle = self.fork_settle();
        let sighting = *self.sight(epoch, now, true);
        let settled_at = sighting.first.saturating_add(settle);
        // A fork we knew of at an earlier epoch that every fresh beacon now agrees with us
        // on is over (it healed); a difference further on is a new fork, judged afresh.
        // Kept, the old one would be judged for ever at an epoch where nobody differs.
        if let Some(f) = self.fork_watch.fork.as_ref()
            && epoch > f.epoch
            && self
                .tally_branches(f.epoch, &self.fresh_beacons(now))
                .is_none_or(|t| t.best_other.is_none())
        {
            tracing::info!(conversation = %self.name, old = f.epoch, epoch, "the earlier fork healed; another one follows it");
            self.fork_watch.fork = None;
        }
        match self.fork_watch.fork.as_mut() {
            Some(f) => {
                f.seen_at = now;
                let lower = epoch < f.epoch;
                if lower {
                    // An earlier fork, answered like any. Judged on the record's delays
                    // if they end sooner: with its own, a liar naming one lower epoch
                    // after another just before each grace ended held a real fork's
                    // judgement for as long as the log reaches back.
                    f.epoch = epoch;
                    f.settled_at = f.settled_at.min(settled_at);
                }
                // New information after the settling delay: judge again at once.
                f.decide_at = f.decide_at.min(now.max(f.settled_at));
                if lower {
                    self.answer_sighting(ctx, epoch);
                }
            }
            None => {
                if sighting.answered {
                    tracing::debug!(conversation = %self.name, epoch, "the fork seen lately is shown again");
                } else {
                    tracing::warn!(conversation = %self.name, epoch, "another branch of this conversation exists");
                }
                // Delays run from the first sighting, not from this record.
                self.fork_watch.fork = Some(KnownFork {
                    epoch,
                    settled_at,
                    decide_at: settled_at.max(now),
                    seen_at: now,
                    won: false,
                    later: None,
                });
                self.answer_sighting(ctx, epoch);
            }
        }
    }

    /// The roster before the commit into `epoch`, rebuilt from the log (None if the log
    /// does not reach back that far).
    fn roster_before(&self, epoch: u64) -> Option<BTreeSet<MemberId>> {
        let log = &self.fork_watch.log;
        if log.front().is_none_or(|r| r.epoch >= epoch) {
            return None;
        }
        let mut roster: BTreeSet<MemberId> = self.fork_watch.roster.iter().copied().collect();
        for r in log.iter().rev().take_while(|r| r.epoch >= epoch) {
            for a in &r.added {
                roster.remove(a);
            }
            roster.extend(r.removed.iter().copied());
        }
        Some(roster)
    }

    /// The fresh beacons we hold, each with how its chain relates to our log: computed
    /// once per judgement, which tallies several epochs.
    fn fresh_beacons(&self, now: Millis) -> Vec<(MemberId, &HeardBeacon, Relation)> {
        let fresh = self.beacon_fresh();
        self.fork_watch
            .beacons
            .iter()
            .filter(|(_, h)| now < h.heard_at.saturating_add(fresh))
            .map(|(m, h)| (*m, h, self.relation(h)))
            .collect()
    }

    /// Support per branch at the fork epoch (see [`Tally`]).
    fn tally_branches(
        &self,
        epoch: u64,
        beacons: &[(MemberId, &HeardBeacon, Relation)],
    ) -> Option<Tally> {
        let ours = self.our_auth_at(epoch)?;
        // Without the log reaching the fork (we joined after it, or it is very old), the
        // current roster stands in: such a member follows whoever the others follow.
        let voters = self
            .roster_before(epoch)
            .unwrap_or_else(|| self.members().into_iter().collect());
        let mut counts: BTreeMap<Auth, u32> = BTreeMap::new();
        if voters.contains(&self.me) {
            *counts.entry(ours).or_default() += 1;
        }
        let mut said = BTreeSet::new();
        for (m, h, relation) in beacons {
            if !voters.contains(m) {
                continue;
            }
            let branch = match (*relation, h.auth_at(epoch)) {
                // Lies, and members that differ from us before this epoch (on an earlier
                // fork we won, see `fork_to_judge`, or lying), have no say in this one.
                (Relation::False, _) => None,
                (Relation::Fork(d), _) if d < epoch => None,
                (_, Some(a)) => Some(a),
                // Its chain does not reach back here, but it holds our history now (it came
                // over to our branch, or was re-added since): it supports our branch.
                (Relation::Same(_), None) => Some(ours),
                _ => None,
            };
            if let Some(a) = branch {
                *counts.entry(a).or_default() += 1;
                said.insert(*m);
            }
        }
        // Members a commit of our branch re-added after this epoch are on it now, whatever
        // they said before (`note_commit` dropped those beacons), until they say otherwise.
        // Uncounted, a lone liar tied a member that had just re-added the losers of a fork
        // and won on its all-zero hash.
        let re_added: BTreeSet<MemberId> = self
            .fork_watch
            .log
            .iter()
            .filter(|r| r.epoch > epoch)
            .flat_map(|r| r.added.iter().copied())
            .filter(|a| voters.contains(a) && *a != self.me && !said.contains(a))
            .collect();
        if !re_added.is_empty() {
            *counts.entry(ours).or_default() += u32::try_from(re_added.len()).unwrap_or(u32::MAX);
        }
        let our_count = counts.get(&ours).copied().unwrap_or(0);
        let heard: u32 = counts.values().sum();
        let unheard = u32::try_from(voters.len())
            .unwrap_or(u32::MAX)
            .saturating_sub(heard);
        // Highest count first, then the lowest hash.
        let best_other = counts
            .iter()
            .filter(|(a, _)| **a != ours)
            .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
            .map(|(a, c)| (*a, *c));
        Some(Tally {
            ours,
            our_count,
            best_other,
            unheard,
        })
    }

    /// The epoch to judge a fork at, and its tally, starting from the earliest one a
    /// fresh beacon showed. A fork we win is settled for us (whoever differs there must
    /// leave its branch, or is lying), so the next epoch at which a fresh beacon differs
    /// is judged instead, among the members that agree with us before it. "Win" is
    /// whatever the unheard voters hold until the grace of the first fork is over, then
    /// on the beacons heard (as rule 4 decides then): offline and removed voters never
    /// send one. (Judging only the earliest, one member signing a false hash for an old
    /// epoch held the judgement where no honest member differs, and a real fork after
    /// it never healed.)
    fn fork_to_judge(&self, now: Millis, from: u64, grace_over: bool) -> Option<(u64, Tally)> {
        let beacons = self.fresh_beacons(now);
        let mut epoch = from;
        loop {
            let tally = self.tally_branches(epoch, &beacons)?;
            let won = if grace_over {
                !tally.we_lose()
            } else {
                tally.we_win_surely()
            };
            if !won {
                return Some((epoch, tally));
            }
            // The next epoch at which a fresh beacon first differs from our log.
            let next = beacons
                .iter()
                .filter_map(|(_, _, r)| match r {
                    Relation::Fork(d) if *d > epoch => Some(*d),
                    _ => None,
                })
                .min();
            match next {
                Some(n) => epoch = n,
                None => return Some((epoch, tally)),
            }
        }
    }

    pub(super) fn tick_fork<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        if self.mls.is_none() {
            return;
        }
        let now = ctx.now;
        if self.fork_watch.next_beacon.is_none() {
            let half = self.beacon_interval() / 2;
            self.fork_watch.next_beacon = Some(now + half + ctx.rng.gen_range(0..half.max(1)));
        }
        if let Some(f) = self.fork_watch.fork.as_ref()
            && now >= f.seen_at.saturating_add(self.beacon_fresh())
        {
            tracing::info!(conversation = %self.name, epoch = f.epoch, "no sign of the other branch any more");
            self.fork_watch.fork = None;
        }
        if let Some(f) = self.fork_watch.fork.as_mut()
            && now >= f.decide_at
        {
            // Judge again later (or when a beacon brings news), whatever this time says.
            f.decide_at = now + 4 * self.config.recovery_inactivity;
            let f = f.clone();
            if self.decide_fork(ctx, out, f) {
                return;
            }
        }
        if self.fork_watch.next_beacon.is_some_and(|t| now >= t) {
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
                let half = self.beacon_interval() / 2;
                now + half + ctx.rng.gen_range(0..half.max(1))
            };
            self.fork_watch.next_beacon = Some(next);
        }
    }

    /// Applies the healing rule. Returns true if we left our branch.
    fn decide_fork<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        f: KnownFork,
    ) -> bool {
        let now = ctx.now;
        let first_grace_over = now >= self.fork_grace(f.settled_at);
        let Some((epoch, tally)) = self.fork_to_judge(now, f.epoch, first_grace_over) else {
            return false;
        };
        let settled_at = match f.later {
            _ if epoch == f.epoch => f.settled_at,
            Some((e, t)) if e == epoch => t,
            _ => {
                // A fork after the one we won: everyone answers and beacons settle, as
                // for the first (the old record's delays are long over), from the time
                // this epoch was first shown.
                tracing::warn!(conversation = %self.name, won = f.epoch, epoch, "another fork after the one we won");
                let until = self
                    .sight(epoch, now, false)
                    .first
                    .saturating_add(self.fork_settle());
                if let Some(k) = self.fork_watch.fork.as_mut() {
                    k.later = Some((epoch, until));
                    k.decide_at = until.max(now);
                    k.won = false;
                }
                self.answer_sighting(ctx, epoch);
                return false;
            }
        };
        if now < settled_at {
            return false;
        }
        let grace = self.fork_grace(settled_at);
        if let Some(k) = self.fork_watch.fork.as_mut() {
            k.won = now >= grace && !tally.we_lose();
        }
        let Some((_, their_count)) = tally.best_other else {
            return false;
        };
        let our_count = tally.our_count;
        let sighting = self.sight(epoch, now, false);
        if !sighting.reported {
            sighting.reported = true;
            out.event(Event::ForkDetected {
                fork_epoch: epoch,
                our_support: our_count,
                their_support: their_count,
            });
        }
        if !tally.we_lose() {
            return false;
        }
        // A voter whose beacons were all lost could tip it: while beacons are still being
        // re-sent (one round per `4 × recovery_inactivity`), leave only when it is sure.
        // (A member that missed one beacon of its own side, on a tie, left the winning
        // branch: lossy seed 19 of the 4|2 decided-then-split.) Then decide on what came:
        // dead and removed members never send one.
        if !tally.we_lose_surely() && ctx.now < grace {
            tracing::info!(
                conversation = %self.name,
                fork_epoch = epoch,
                our_count,
                their_count,
                unheard = tally.unheard,
                "our branch may lose: waiting for the voters not heard yet"
            );
            return false;
        }
        tracing::warn!(
            conversation = %self.name,
            fork_epoch = epoch,
            our_count,
            their_count,
            "our branch lost: leaving it to rejoin the surviving one"
        );
        let unseen: Vec<SentChat> = self
            .fork_watch
            .sent
            .iter()
            .filter(|s| s.epoch >= epoch)
            .cloned()
            .collect();
        out.event(Event::BranchAbandoned {
            fork_epoch: epoch,
            unseen,
        });
        self.rejoin(ctx, out, RejoinReason::LostFork);
        true
    }

    /// Beacons say the group is past our reach: rejoin once two members of our roster
    /// (or the only other one) say so.
    fn maybe_rejoin_beyond_reach<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let reach = self
            .epoch()
            .saturating_add(self.config.catch_up_window as u64);
        let members = self.members();
        let fresh = self.beacon_fresh();
        let saying = self
            .fork_watch
            .beacons
            .iter()
            .filter(|(m, h)| {
                members.contains(m) && h.epoch > reach && now < h.heard_at.saturating_add(fresh)
            })
            .count();
        let others = members.len().saturating_sub(1);
        if others > 0 && saying >= others.min(2) {
            tracing::warn!(conversation = %self.name, epoch = self.epoch(), "the group moved past what anyone keeps for us: rejoining");
            self.rejoin(ctx, out, RejoinReason::TooFarBehind);
        }
    }

    /// Leaves our MLS state for this conversation and joins afresh (see the module docs).
    fn rejoin<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        reason: RejoinReason,
    ) {
        let pending = match PendingJoin::announce(&self.name, &self.config, ctx, out, true, 0) {
            Ok(pj) => pj,
            Err(e) => {
                return out.event(Event::Error {
                    operation: "rejoin",
                    message: e.to_string(),
                });
            }
        };
        self.start_over(ctx, out, pending, reason);
    }

    /// Drops our MLS state and everything of the group, keeping only `pending`: the
    /// attempt that waits for a welcome.
    fn start_over<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        pending: PendingJoin,
        reason: RejoinReason,
    ) {
        self.delete_mls(ctx, out);
        let mut fresh = Self::blank(
            &self.name,
            self.me,
            self.config.clone(),
            ConversationState::PendingJoin,
        );
        fresh.pending_join = Some(pending);
        *self = fresh;
        out.event(Event::Rejoining { reason });
        out.event(Event::StateChanged {
            state: ConversationState::PendingJoin,
        });
    }

    /// A commit replaced our leaf with another key package of ours: drop the group and
    /// wait for that commit's welcome. That key package is in the commit already, so
    /// nothing new is announced; the last announcement we made (the key package a
    /// duplicate rejoin commits) is repeated after `commit_inactivity`, which makes
    /// members re-send the welcome if we missed it. If none comes, the rejoin is renewed
    /// as usual.
    pub(super) fn await_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        committer: MemberId,
    ) {
        tracing::info!(conversation = %self.name, "re-added with another of our key packages: waiting for its welcome");
        let announcement = std::mem::take(&mut self.last_announcement);
        let pending = PendingJoin::awaiting(ctx.now, announcement, &self.config);
        // Only the welcome of the commit that re-added us: its committer signed it.
        let early = std::mem::take(&mut self.early_welcome)
            .into_iter()
            .find(|(signer, _)| *signer == committer)
            .map(|(_, raw)| raw);
        self.start_over(ctx, out, pending, RejoinReason::Retry);
        // The committer sends the welcome when it applies the commit, before the end of
        // our own window: it has usually come already, and nobody re-sends it to a
        // member that announces nothing.
        if let Some(raw) = early {
            self.on_welcome_packet(ctx, out, &raw);
        }
    }

    /// When the next beacon or fork decision is due.
    pub(super) fn fork_deadline(&self) -> Option<Millis> {
        self.mls.as_ref()?;
        let fw = &self.fork_watch;
        let decide = fw.fork.as_ref().map(|f| {
            f.decide_at
                .min(f.seen_at.saturating_add(self.beacon_fresh()))
        });
        // Not scheduled yet: tick now to schedule it.
        let beacon = Some(fw.next_beacon.unwrap_or(0));
        [decide, beacon].into_iter().flatten().min()
    }
}
