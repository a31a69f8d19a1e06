//! Judging a fork: sightings and their settling delays, the tally of each branch among
//! the members of the roster before the fork, and the healing rule.

use std::collections::{BTreeMap, BTreeSet};

use openmls_traits::OpenMlsProvider;

use super::beacon::{HeardBeacon, Relation};
use super::watch::{Auth, KnownFork, SentChat, Sighting};
use crate::config::REPLY_JITTER_MS;
use crate::conversation::*;

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

impl Conversation {
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
        self.fork_watch.sight(epoch, now, shown, fresh)
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

    /// A beacon shows a fork at `epoch`: a new fork record (answered with our beacon), or
    /// news for the one we hold.
    pub(super) fn fork_seen<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, epoch: u64) {
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
        let ours = self.fork_watch.auth_at(epoch)?;
        // Without the log reaching the fork (we joined after it, or it is very old), the
        // current roster stands in: such a member follows whoever the others follow.
        let voters = self
            .fork_watch
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

    /// Applies the healing rule. Returns true if we left our branch.
    pub(super) fn decide_fork<P: OpenMlsProvider>(
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
        let Some(settled_at) = self.settled_at_for(ctx, &f, epoch) else {
            return false;
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
        self.report_fork(now, out, epoch, our_count, their_count);
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
        self.abandon_branch(ctx, out, epoch, our_count, their_count);
        true
    }

    /// When the settling delay of the fork judged at `epoch` ends: `f`'s own, or that of
    /// the later fork `f` already judges. None for a fork after the one we won that `f`
    /// does not know yet: everyone answers and beacons settle, as for the first (the old
    /// record's delays are long over), from the time this epoch was first shown.
    fn settled_at_for<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        f: &KnownFork,
        epoch: u64,
    ) -> Option<Millis> {
        match f.later {
            _ if epoch == f.epoch => Some(f.settled_at),
            Some((e, t)) if e == epoch => Some(t),
            _ => {
                let now = ctx.now;
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
                None
            }
        }
    }

    /// Emits `Event::ForkDetected` for the fork at `epoch`, once per sighting.
    fn report_fork(
        &mut self,
        now: Millis,
        out: &mut Output,
        epoch: u64,
        our_count: u32,
        their_count: u32,
    ) {
        let sighting = self.sight(epoch, now, false);
        if !sighting.reported {
            sighting.reported = true;
            out.event(Event::ForkDetected {
                fork_epoch: epoch,
                our_support: our_count,
                their_support: their_count,
            });
        }
    }

    /// Our branch lost the fork at `epoch`: reports which of our chat messages the
    /// surviving branch never saw, and rejoins it.
    fn abandon_branch<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        epoch: u64,
        our_count: u32,
        their_count: u32,
    ) {
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
    }
}
