//! What a tick runs: the parts of a conversation in a fixed order, each only when it is
//! due: one of its timers has come, or (for a part with work that waits on no time) the
//! condition of that work holds.
//!
//! The timers due at a tick come from the same fold that says when to wake
//! (`Conversation::fold_deadlines`), taken again after each part that ran: a part that runs can
//! make a later one due at once (a vote that approves work gives the freeze its anchor).
//! Every effect a part can have (a packet, an event, a change of state, a draw from
//! `ctx.rng`) needs a timer it answers to or its ready condition; at any other tick it
//! would do nothing, so skipping it changes nothing. A ready condition is asked only as
//! a tick reaches the part, never to wake us: work that waits on no time is done at the
//! next tick, whatever woke us, as it was when every part ran on every tick.
//!
//! A part's own deadline is often a fold of several (the catch-up bookkeeping, the pending
//! join): it reports only the soonest reason, so a part answers to every reason its fold
//! can report, not just the ones of its own work.

use openmls_traits::OpenMlsProvider;

use super::timer::Timers;
use super::*;

/// A part of the conversation that a tick may run: one `tick_*` of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// `tick_pending_join`: re-announce, renew or give up while we wait for a welcome.
    PendingJoin,
    /// `tick_votes`: automatic votes and consensus timeouts.
    Votes,
    /// `tick_catch_up`: probes and hints ask for a missed commit; catch-up replies.
    CatchUp,
    /// `tick_proposal_recovery`: asks for missing proposals, re-sends asked-for ones.
    ProposalRecovery,
    /// `tick_phase`: the inactivity anchor, the freeze, selection.
    Phase,
    /// `tick_chat`: reliable chat's re-sends, repairs and syncs.
    Chat,
    /// `tick_trailing_winner`: re-sends the winner of the round we just left.
    TrailingWinner,
    /// `tick_welcome_resends`: welcome re-sends joiners asked for.
    WelcomeResends,
    /// `tick_stewardship`: a live steward list, buffered requests, reelection.
    Stewardship,
    /// `replay_early_candidates`: candidates kept until something was approved.
    EarlyCandidates,
    /// `tick_fork`: beacons and fork decisions.
    Fork,
}

/// Counts the draws a part makes (see `check_skipped`).
#[cfg(feature = "adversary")]
struct CountingRng<'a> {
    inner: &'a mut dyn rand::RngCore,
    draws: usize,
}

#[cfg(feature = "adversary")]
impl rand::RngCore for CountingRng<'_> {
    fn next_u32(&mut self) -> u32 {
        self.draws += 1;
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.draws += 1;
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.draws += 1;
        self.inner.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.draws += 1;
        self.inner.try_fill_bytes(dest)
    }
}

/// Whether a part's work that waits on no time is ready at `now`.
type Ready = fn(&Conversation, Millis) -> bool;

/// A part and when a tick runs it.
#[derive(Clone, Copy)]
struct Slot {
    part: Part,
    /// The reasons its deadlines are folded under.
    timers: Timers,
    /// The condition of its work that no deadline covers (see its entry in
    /// [`SCHEDULE`]), if it has such work.
    ready: Option<Ready>,
}

impl Slot {
    /// A part that runs only when one of `timers` is due: they cover all it does.
    const fn when_due(part: Part, timers: &[Timer]) -> Self {
        Self {
            part,
            timers: Timers::of(timers),
            ready: None,
        }
    }

    /// A part that runs when one of `timers` is due or when `ready` holds.
    const fn when_ready(part: Part, timers: &[Timer], ready: Ready) -> Self {
        Self {
            part,
            timers: Timers::of(timers),
            ready: Some(ready),
        }
    }

    /// Whether the part is due at `now`, with `due` the timers that have come.
    fn is_due(&self, c: &Conversation, due: Timers, now: Millis) -> bool {
        due.meets(self.timers) || self.ready.is_some_and(|ready| ready(c, now))
    }
}

/// The one part a tick runs while we wait for a welcome.
const WHILE_PENDING: [Slot; 1] = [Slot::when_due(
    Part::PendingJoin,
    // Expiry (`started_at` + the expiry for this attempt) and the re-announcement
    // (`next_announce`, with an announcement to repeat) are its only work.
    &[Timer::JoinAnnounce, Timer::JoinExpiry],
)];

/// The parts a member's tick runs, in this order (the order their side effects had
/// before the schedule, which the simulator's runs depend on).
const SCHEDULE: [Slot; 10] = [
    Slot::when_due(
        Part::Votes,
        // A voting proposal's `auto_vote_at` or `timeout_at` come: its only work.
        &[Timer::AutoVote, Timer::VoteTimeout],
    ),
    Slot::when_due(
        Part::CatchUp,
        // A probe that ran out ends (`probe_until`), a probe or a hint asks
        // (`next_request_at`), a reply is due (`replies`): all in the catch-up fold.
        &[Timer::CatchUp, Timer::Probe],
    ),
    Slot::when_due(
        Part::ProposalRecovery,
        // `missing_proposals` and `proposal_replies` come due: `CatchUp` in the
        // catch-up fold, which may report `Probe` instead when a probe is sooner.
        &[Timer::CatchUp, Timer::Probe],
    ),
    Slot::when_ready(
        Part::Phase,
        // The anchor set, the window run out, our candidate re-sent, the selection's
        // time come; with no deadline (`phase_ready`): in Working or Reelection with no
        // work waiting it drops the inactivity anchor (the window of later work then
        // runs from a fresh one); in Freezing it selects as soon as every expected
        // candidate is in (the expected set can grow complete between ticks: a late
        // steward's own candidate, a removal approved).
        &[
            Timer::AnchorUnset,
            Timer::Inactivity,
            Timer::FreezeSelect,
            Timer::FreezeResend,
        ],
        Conversation::phase_ready,
    ),
    Slot::when_due(
        Part::Chat,
        // It acts only while it may send and the channel's deadline has come: exactly
        // the `Chat` deadline.
        &[Timer::Chat],
    ),
    Slot::when_due(
        Part::TrailingWinner,
        // The winner's `next` re-send: its only work.
        &[Timer::TrailingWinner],
    ),
    Slot::when_due(
        Part::WelcomeResends,
        // A welcome's `due` re-send: its only work.
        &[Timer::WelcomeResend],
    ),
    Slot::when_ready(
        Part::Stewardship,
        // A patience run out, a backup's takeover due, a probe ended; with no deadline
        // (`stewardship_ready`): in Working the epoch steward proposes buffered
        // requests, and a list with no live steward is reconciled or an election tried
        // (the exhausted mark is set or cleared with it); in Reelection a probe that ran
        // out elects (the catch-up fold may report another of its reasons first).
        &[
            Timer::ReelectionPatience,
            Timer::ExhaustedPatience,
            Timer::Takeover,
            Timer::Probe,
        ],
        Conversation::stewardship_ready,
    ),
    Slot::when_ready(
        Part::EarlyCandidates,
        // No deadline (`early_candidates_ready`): candidates kept before anything was
        // approved are judged (or dropped) at the first tick that finds something
        // approved.
        &[],
        Conversation::early_candidates_ready,
    ),
    Slot::when_due(
        Part::Fork,
        // With a group: the first beacon is scheduled (a draw from `ctx.rng`: the fork
        // fold reports an unscheduled beacon as due at once), a fork is forgotten or
        // judged, a beacon sent: all in the fork fold.
        &[Timer::Fork],
    ),
];

impl Conversation {
    /// Runs every part of the conversation that is due at `ctx.now` (see [`SCHEDULE`]).
    pub fn tick<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>) -> Output {
        let mut out = Output::default();
        if self.closed().is_some() {
            return out;
        }
        let schedule: &[Slot] = if let Phase::PendingJoin(_) = self.phase {
            &WHILE_PENDING
        } else {
            &SCHEDULE
        };
        // What is due is asked again after a part ran (it may have made a later part due,
        // or no longer due), not before every part: a part that did not run changed nothing.
        let mut due: Option<Timers> = None;
        for slot in schedule {
            let timers = *due.get_or_insert_with(|| self.due_timers(ctx.now));
            if slot.is_due(self, timers, ctx.now) {
                self.run(slot.part, ctx, &mut out);
                due = None;
            } else {
                #[cfg(feature = "adversary")]
                self.check_skipped(slot.part, ctx);
            }
        }
        out
    }

    /// The timers due at `now`: the deadline fold's reasons that have come. (Whether we
    /// are closed is not asked: `tick` returns at once when we are, and a part that
    /// closes us mid-tick leaves the later parts to run as they did before.)
    fn due_timers(&self, now: Millis) -> Timers {
        let mut s = Soonest::due_at(now);
        self.fold_deadlines(&mut s);
        s.due()
    }

    /// `SCHEDULE_CHECK=1`, in test builds: a part the schedule skips is run anyway, and
    /// must have done nothing (no packet, no event, no draw from the RNG, no change to the
    /// saved state, the unsaved buffers' sizes or the MLS epoch): the claim the schedule
    /// rests on, checked at every tick of every simulated scenario.
    #[cfg(feature = "adversary")]
    fn check_skipped<P: OpenMlsProvider>(&mut self, part: Part, ctx: &mut Ctx<'_, P>) {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if !*ON.get_or_init(|| std::env::var_os("SCHEDULE_CHECK").is_some_and(|v| v == "1")) {
            return;
        }
        let looks = |c: &Self| {
            let mls = c.mls.as_ref().map(|g| (g.epoch(), g.epoch_authenticator()));
            (c.save().ok(), c.future.len(), c.early_welcome.len(), mls)
        };
        let before = looks(self);
        let mut draws = CountingRng {
            inner: &mut *ctx.rng,
            draws: 0,
        };
        let mut out = Output::default();
        self.run(
            part,
            &mut Ctx {
                provider: ctx.provider,
                identity: ctx.identity,
                rng: &mut draws,
                now: ctx.now,
            },
            &mut out,
        );
        let idle = out.packets.is_empty() && out.events.is_empty() && out.history_since.is_none();
        assert!(
            idle && draws.draws == 0 && looks(self) == before,
            "{part:?}, skipped at {} by {}, would have acted ({} draws): {:?}",
            ctx.now,
            self.me,
            draws.draws,
            out.events
        );
    }

    /// Runs one part.
    fn run<P: OpenMlsProvider>(&mut self, part: Part, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        match part {
            Part::PendingJoin => self.tick_pending_join(ctx, out),
            Part::Votes => self.tick_votes(ctx, out),
            Part::CatchUp => self.tick_catch_up(ctx, out),
            Part::ProposalRecovery => self.tick_proposal_recovery(ctx, out),
            Part::Phase => self.tick_phase(ctx, out),
            Part::Chat => self.tick_chat(ctx, out),
            Part::TrailingWinner => self.tick_trailing_winner(ctx.now, out),
            Part::WelcomeResends => self.tick_welcome_resends(ctx, out),
            Part::Stewardship => self.tick_stewardship(ctx, out),
            Part::EarlyCandidates => self.replay_early_candidates(ctx, out),
            // A part before may have closed us, or sent us back to wait for a welcome.
            Part::Fork => {
                if !matches!(self.phase, Phase::PendingJoin(_) | Phase::Closed { .. }) {
                    self.tick_fork(ctx, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openmls_rust_crypto::OpenMlsRustCrypto;
    use rand::SeedableRng;

    use super::*;
    use crate::identity::EthSigner;
    use crate::mls::MlsIdentity;

    /// Every reason a conversation can be woken for.
    const ALL: [Timer; 17] = [
        Timer::JoinAnnounce,
        Timer::JoinExpiry,
        Timer::AutoVote,
        Timer::VoteTimeout,
        Timer::AnchorUnset,
        Timer::Inactivity,
        Timer::FreezeSelect,
        Timer::FreezeResend,
        Timer::TrailingWinner,
        Timer::ReelectionPatience,
        Timer::ExhaustedPatience,
        Timer::Fork,
        Timer::CatchUp,
        Timer::Probe,
        Timer::Takeover,
        Timer::Chat,
        Timer::WelcomeResend,
    ];

    /// Stops compiling when a reason is added: add it to [`ALL`] and to a part.
    #[allow(dead_code)]
    fn listed(t: Timer) {
        match t {
            Timer::JoinAnnounce
            | Timer::JoinExpiry
            | Timer::AutoVote
            | Timer::VoteTimeout
            | Timer::AnchorUnset
            | Timer::Inactivity
            | Timer::FreezeSelect
            | Timer::FreezeResend
            | Timer::TrailingWinner
            | Timer::ReelectionPatience
            | Timer::ExhaustedPatience
            | Timer::Fork
            | Timer::CatchUp
            | Timer::Probe
            | Timer::Takeover
            | Timer::Chat
            | Timer::WelcomeResend => {}
        }
    }

    fn id(b: u8) -> MemberId {
        MemberId::from_slice(&[b; 20]).unwrap()
    }

    /// A member in `state` with no MLS group (so no chat and no fork watch).
    fn bare(phase: Phase) -> Conversation {
        Conversation::blank("t", id(1), ConversationConfig::default(), phase)
    }

    /// The parts that run only when due and are due at `now`, in the state as it is.
    fn due_parts(c: &Conversation, schedule: &[Slot], now: Millis) -> Vec<Part> {
        let due = c.due_timers(now);
        schedule
            .iter()
            .filter(|s| s.is_due(c, due, now))
            .map(|s| s.part)
            .collect()
    }

    #[test]
    fn every_reason_wakes_some_part_and_every_gated_part_has_a_reason() {
        for t in ALL {
            let mut slots = WHILE_PENDING.iter().chain(&SCHEDULE);
            assert!(slots.any(|s| s.timers.meets(Timers::of(&[t]))), "{t:?}");
        }
        for s in WHILE_PENDING.iter().chain(&SCHEDULE) {
            assert!(
                s.ready.is_some() || s.timers != Timers::default(),
                "{:?}",
                s.part
            );
        }
        let with_ready: Vec<Part> = SCHEDULE
            .iter()
            .filter(|s| s.ready.is_some())
            .map(|s| s.part)
            .collect();
        assert_eq!(
            with_ready,
            [Part::Phase, Part::Stewardship, Part::EarlyCandidates]
        );
    }

    #[test]
    fn a_part_runs_only_once_one_of_its_timers_is_due() {
        let mut c = bare(Phase::Working);
        c.trailing = Some(TrailingWinner {
            envelope: vec![1],
            next: 200,
            until: 10_000,
        });
        c.catch_up.replies.insert(3, 250);
        c.gov.proposals.insert(
            7,
            Tracked {
                id: 7,
                action: Action::Remove { member: id(2) },
                owner: id(2),
                epoch: 0,
                made_s: 0,
                timeout_at: 500,
                expires_at: 10_000,
                auto_vote_at: Some(300),
                auto_vote: true,
                status: ProposalStatus::Voting,
                vote_asks_left: 0,
            },
        );
        c.recent_welcomes.push_back(RecentWelcome {
            joiners: vec![id(3)],
            envelope: vec![2],
            resent_at: 0,
            due: Some(400),
            seen: Vec::new(),
        });
        let trailing = Part::TrailingWinner;
        let (catch_up, recovery) = (Part::CatchUp, Part::ProposalRecovery);
        assert_eq!(due_parts(&c, &SCHEDULE, 199), []);
        assert_eq!(due_parts(&c, &SCHEDULE, 200), [trailing]);
        assert_eq!(
            due_parts(&c, &SCHEDULE, 250),
            [catch_up, recovery, trailing]
        );
        assert_eq!(
            due_parts(&c, &SCHEDULE, 300),
            [Part::Votes, catch_up, recovery, trailing]
        );
        assert_eq!(
            due_parts(&c, &SCHEDULE, 400),
            [
                Part::Votes,
                catch_up,
                recovery,
                trailing,
                Part::WelcomeResends
            ]
        );
        // Done or cancelled, a part's timer no longer makes it due.
        c.gov.proposals.get_mut(&7).unwrap().status = ProposalStatus::Accepted;
        c.trailing = None;
        c.catch_up.replies.clear();
        c.recent_welcomes.clear();
        assert_eq!(due_parts(&c, &SCHEDULE, 400), []);
    }

    #[test]
    fn a_part_with_work_on_no_timer_runs_once_that_work_is_ready() {
        let mut c = bare(Phase::Working);
        assert_eq!(due_parts(&c, &SCHEDULE, 100), []);
        // An inactivity anchor with no work waiting: the phase drops it.
        c.anchor = Some(50);
        assert_eq!(due_parts(&c, &SCHEDULE, 100), [Part::Phase]);
        c.anchor = None;
        // A candidate kept before anything was approved: judged once something is.
        c.early_stash.push((vec![1], 10));
        assert_eq!(due_parts(&c, &SCHEDULE, 100), []);
        c.gov.approve(4, Change::Remove { member: id(2) });
        let due = due_parts(&c, &SCHEDULE, 100);
        assert!(due.contains(&Part::EarlyCandidates), "{due:?}");
        c.early_stash.clear();
        c.gov.approved.clear();
        // A steward list with no live steward (we hold no group, so nobody on it is
        // eligible): stewardship reconciles it or elects.
        c.stewards = Some(StewardList {
            stewards: vec![id(1)],
            election_epoch: 0,
            retry_round: 0,
        });
        assert_eq!(due_parts(&c, &SCHEDULE, 100), [Part::Stewardship]);
        // In Reelection, a probe that ran out elects, even when the catch-up fold
        // reports another reason.
        let mut c = bare(Phase::Reelection { since: 0 });
        c.catch_up.probe_until = Some(100);
        c.catch_up.next_request_at = 1_000;
        c.catch_up.replies.insert(3, 20);
        assert_eq!(c.catch_up.deadline(0), Some((20, Timer::CatchUp)));
        assert!(!c.stewardship_ready(99) && c.stewardship_ready(100));
        assert!(!due_parts(&c, &SCHEDULE, 99).contains(&Part::Stewardship));
        assert!(due_parts(&c, &SCHEDULE, 100).contains(&Part::Stewardship));
    }

    #[test]
    fn a_part_whose_fold_reports_another_reason_first_still_runs() {
        // The catch-up fold reports only its soonest deadline: a probe's end at 100 hides
        // the missing proposal due at 150, which proposal recovery must still ask for.
        let mut c = bare(Phase::Working);
        c.catch_up.probe_until = Some(100);
        c.catch_up.next_request_at = 100;
        c.catch_up.missing_proposals.insert(9, 150);
        assert_eq!(c.catch_up.deadline(0), Some((100, Timer::Probe)));
        assert!(due_parts(&c, &SCHEDULE, 150).contains(&Part::ProposalRecovery));
    }

    #[test]
    fn a_pending_join_runs_when_its_announcement_or_expiry_is_due() {
        let config = ConversationConfig::default();
        let c = bare(Phase::PendingJoin(PendingJoin::awaiting(
            1_000,
            vec![1],
            &config,
        )));
        let announce = 1_000 + c.config.commit_inactivity;
        assert_eq!(due_parts(&c, &WHILE_PENDING, announce - 1), []);
        assert_eq!(due_parts(&c, &WHILE_PENDING, announce), [Part::PendingJoin]);
    }

    #[test]
    fn a_tick_before_anything_is_due_sends_nothing_and_changes_nothing() {
        let provider = OpenMlsRustCrypto::default();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let eth = EthSigner::random_with(&mut rng);
        let mls = MlsIdentity::create(&provider, eth.member_id()).unwrap();
        let identity = LocalIdentity { eth, mls };
        let config = ConversationConfig::default();
        let mut now: Millis = 1_000_000;
        let mut ctx = Ctx {
            provider: &provider,
            identity: &identity,
            rng: &mut rng,
            now,
        };
        let (mut c, _) = Conversation::create("t", config, &mut ctx).unwrap();
        let mut sent = 0;
        for _ in 0..6 {
            let due = c
                .next_wakeup()
                .expect("a group always has a beacon to send");
            if due > now {
                let saved = c.save().unwrap();
                ctx.now = due - 1;
                let out = c.tick(&mut ctx);
                assert!(out.packets.is_empty() && out.events.is_empty(), "{out:?}");
                assert!(out.history_since.is_none());
                assert_eq!(
                    c.save().unwrap(),
                    saved,
                    "a tick at {} changed state",
                    due - 1
                );
            }
            now = now.max(due);
            ctx.now = now;
            sent += c.tick(&mut ctx).packets.len();
        }
        assert!(sent > 0, "the beacons due were sent");
    }
}
