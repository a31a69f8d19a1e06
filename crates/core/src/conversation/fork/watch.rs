//! The fork watch: the log of the epochs we went through, the beacons heard, the forks
//! known and sighted, and our own chat kept for the report after leaving a branch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::beacon::HeardBeacon;
use crate::conversation::*;
use crate::mls::MlsConversation;

/// Bytes of each epoch hash.
pub(super) const AUTH_LEN: usize = 16;
/// Epochs remembered in the log (who each commit added and removed: a few bytes each).
const LOG_CAP: usize = 64;
/// Our chat messages remembered for the report after abandoning a branch.
const SENT_CAP: usize = 64;

/// An epoch's hash: SHA-256 of its MLS epoch authenticator, truncated.
pub(super) type Auth = [u8; AUTH_LEN];

/// The [`Auth`] of an epoch authenticator.
fn short_auth(authenticator: &[u8]) -> Auth {
    let full: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        authenticator,
    ))
    .into();
    let mut a = [0u8; AUTH_LEN];
    a.copy_from_slice(&full[..AUTH_LEN]);
    a
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
    pub(crate) fn note_removed(&mut self, removed: &[MemberId], now: Millis) {
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
    pub(crate) fn note_commit(&mut self, epoch: u64, added: &[MemberId], removed: &[MemberId]) {
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
    pub(crate) fn removed_when(&self, m: &MemberId) -> Option<Millis> {
        self.removed_at
            .iter()
            .rev()
            .find(|(r, _)| r == m)
            .map(|(_, t)| *t)
    }

    /// Records `mls`'s epoch if it is new: its hash, and whom the commit into it added
    /// and removed by the roster difference.
    fn note_epoch(&mut self, mls: &MlsConversation) {
        let epoch = mls.epoch();
        if self.log.back().is_some_and(|r| r.epoch >= epoch) {
            return;
        }
        let members = mls.members();
        let (added, removed) = if self.log.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let before: BTreeSet<_> = self.roster.iter().copied().collect();
            let after: BTreeSet<_> = members.iter().copied().collect();
            (
                after.difference(&before).copied().collect(),
                before.difference(&after).copied().collect(),
            )
        };
        self.log.push_back(EpochRecord {
            epoch,
            auth: short_auth(&mls.epoch_authenticator()),
            added,
            removed,
        });
        while self.log.len() > LOG_CAP {
            self.log.pop_front();
        }
        self.roster = members;
    }

    /// Remembers a chat message of ours sent in `epoch` (see [`SentChat`]).
    fn note_sent(&mut self, epoch: u64, timestamp: Millis, text: &str) {
        self.sent.push_back(SentChat {
            epoch,
            timestamp,
            text: text.to_string(),
        });
        while self.sent.len() > SENT_CAP {
            self.sent.pop_front();
        }
    }

    /// Our hash for `epoch`, if the log holds it.
    pub(super) fn auth_at(&self, epoch: u64) -> Option<Auth> {
        // The log is in epoch order (`note_epoch` appends only later epochs).
        let i = self.log.binary_search_by_key(&epoch, |r| r.epoch).ok()?;
        self.log.get(i).map(|r| r.auth)
    }

    /// The roster before the commit into `epoch`, rebuilt from the log (None if the log
    /// does not reach back that far).
    pub(super) fn roster_before(&self, epoch: u64) -> Option<BTreeSet<MemberId>> {
        if self.log.front().is_none_or(|r| r.epoch >= epoch) {
            return None;
        }
        let mut roster: BTreeSet<MemberId> = self.roster.iter().copied().collect();
        for r in self.log.iter().rev().take_while(|r| r.epoch >= epoch) {
            for a in &r.added {
                roster.remove(a);
            }
            roster.extend(r.removed.iter().copied());
        }
        Some(roster)
    }

    /// What we know of the fork at `epoch` (a log epoch) since a beacon first showed it
    /// (now, if none did lately); `shown`: a beacon shows it now. Sightings older than
    /// `fresh`, or of epochs the log no longer holds, are forgotten first.
    pub(super) fn sight(
        &mut self,
        epoch: u64,
        now: Millis,
        shown: bool,
        fresh: Millis,
    ) -> &mut Sighting {
        let Self { log, sightings, .. } = self;
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

    /// When the fork record is next judged (or forgotten, `fresh` after the other branch
    /// was last shown) or our next beacon is due; a beacon not scheduled yet is due now
    /// (the tick schedules it).
    pub(super) fn deadline(&self, fresh: Millis) -> Deadline {
        let decide = self
            .fork
            .as_ref()
            .map(|f| f.decide_at.min(f.seen_at.saturating_add(fresh)));
        let beacon = Some(self.next_beacon.unwrap_or(0));
        timer::at([decide, beacon].into_iter().flatten().min(), Timer::Fork)
    }
}

impl Conversation {
    /// Records the epoch we are in now, if it is new (called at every epoch change).
    pub(crate) fn note_epoch(&mut self) {
        let Some(mls) = self.mls.as_ref() else { return };
        self.fork_watch.note_epoch(mls);
    }

    /// Remembers a chat message of ours (see [`SentChat`]).
    pub(crate) fn note_sent_chat(&mut self, timestamp: Millis, text: &str) {
        let epoch = self.epoch();
        self.fork_watch.note_sent(epoch, timestamp, text);
    }
}
