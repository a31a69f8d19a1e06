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
//! commit added and removed. It sends a signed plaintext [`crate::proto::pb::EpochBeacon`] with the
//! newest [`beacon::CHAIN_LEN`] of those hashes when the group is quiet (Trickle-style: once per
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

mod beacon;
mod judge;
mod rejoin;
mod watch;

use openmls_traits::OpenMlsProvider;

use super::*;
#[cfg(feature = "adversary")]
pub use beacon::sign_beacon;
pub use watch::SentChat;
pub(crate) use watch::{EpochRecord, ForkWatch};

impl Conversation {
    /// How often a quiet group hears a beacon.
    fn beacon_interval(&self) -> Millis {
        2 * self.config.commit_inactivity
    }

    /// How long a member's beacon speaks for it.
    fn beacon_fresh(&self) -> Millis {
        2 * self.beacon_interval()
    }

    /// Runs the fork watch: schedules our first beacon, forgets a fork nobody has shown
    /// lately, judges a fork that is due (we may leave our branch), then sends a beacon
    /// that is due.
    pub(crate) fn tick_fork<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        if self.mls.is_none() {
            return;
        }
        let now = ctx.now;
        if self.fork_watch.next_beacon.is_none() {
            self.fork_watch.next_beacon = Some(self.quiet_beacon_at(ctx));
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
        self.send_due_beacon(ctx, out);
    }

    /// When the next beacon or fork decision is due (nothing without a group).
    pub(crate) fn fork_deadline(&self) -> Deadline {
        self.mls.as_ref()?;
        self.fork_watch.deadline(self.beacon_fresh())
    }
}
