//! The round itself: what a freeze round holds, when a member freezes, and when its
//! selection is due.

use std::collections::BTreeSet;

use openmls_traits::OpenMlsProvider;

use super::*;

/// A freeze round: candidates collected for one epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct FreezeRound {
    /// The epoch whose commit the round selects.
    pub epoch: u64,
    /// When we froze.
    pub started_at: Millis,
    /// The candidates held, ours included, in arrival order.
    pub candidates: Vec<Candidate>,
    /// We hold a pending MLS commit of our own.
    pub own_pending: bool,
    /// When our candidate is next re-sent (a lost candidate forks the group, so it is
    /// sent several times within the window).
    pub next_resend: Option<Millis>,
    /// When the first other steward's candidate arrived. The window runs `freeze` from
    /// the later of this and our own start, so a member whose inactivity timer fired
    /// early still waits long enough to hear every steward.
    #[serde(default)]
    pub first_foreign_at: Option<Millis>,
}

impl FreezeRound {
    /// When selection is due (unless every steward's candidate is in before).
    pub fn select_at(&self, freeze: Millis) -> Millis {
        self.started_at.max(self.first_foreign_at.unwrap_or(0)) + freeze
    }

    /// The round's next deadline: its selection, or the re-send of our candidate.
    pub fn deadline(&self, freeze: Millis) -> Deadline {
        let mut soonest = Soonest::default();
        soonest.add(Some((self.select_at(freeze), Timer::FreezeSelect)));
        soonest.add(timer::at(self.next_resend, Timer::FreezeResend));
        soonest.get()
    }

    /// The stewards whose candidates we hold.
    fn stewards_held(&self) -> BTreeSet<MemberId> {
        self.candidates.iter().map(|c| c.steward).collect()
    }

    /// Whether we hold a candidate from each of `expected` (never when none is expected).
    pub fn holds_all(&self, expected: &BTreeSet<MemberId>) -> bool {
        !expected.is_empty() && expected.is_subset(&self.stewards_held())
    }

    /// How many of `expected` we hold a candidate from.
    pub fn held_of(&self, expected: &BTreeSet<MemberId>) -> usize {
        expected.intersection(&self.stewards_held()).count()
    }

    /// Our own candidate, once submitted.
    pub fn own(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.local)
    }

    /// Where the candidate whose commit hashes to `hash` is held.
    pub fn position(&self, hash: &[u8; 32]) -> Option<usize> {
        self.candidates.iter().position(|x| x.hash == *hash)
    }

    /// Keeps our own candidate, whose MLS commit is now pending, and schedules its
    /// first re-send `gap` after `now`.
    pub fn add_own(&mut self, candidate: Candidate, now: Millis, gap: Millis) {
        self.own_pending = true;
        self.next_resend = Some(now + gap);
        self.candidates.push(candidate);
    }

    /// Keeps a peer's candidate that arrived at `arrived_at` (true), unless its steward
    /// has two held already or the round holds two per member (`members`).
    ///
    /// Two per steward: a steward that sends two different candidates (a broken one and
    /// its honest one) must not fork the group by which one each member heard first;
    /// keeping both lets selection validate each, everywhere alike.
    pub fn add_peer(&mut self, candidate: Candidate, arrived_at: Millis, members: usize) -> bool {
        let steward = candidate.steward;
        let from_steward = self.candidates.iter().filter(|x| x.steward == steward);
        if from_steward.count() >= 2 || self.candidates.len() >= 2 * members {
            return false;
        }
        self.candidates.push(candidate);
        self.first_foreign_at = Some(
            self.first_foreign_at
                .map_or(arrived_at, |t| t.min(arrived_at)),
        );
        true
    }

    /// Our candidate if its re-send is due at `now`. The next one is scheduled `gap`
    /// later while that is still inside the window (`freeze` from our start).
    pub fn resend_due(&mut self, now: Millis, gap: Millis, freeze: Millis) -> Option<&Candidate> {
        let at = self.next_resend?;
        if now < at {
            return None;
        }
        self.next_resend = (now.saturating_add(gap) < self.started_at.saturating_add(freeze))
            .then_some(now.saturating_add(gap));
        self.own()
    }
}

/// A commit candidate buffered in a freeze round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Candidate {
    /// Encoded `CommitCandidate`.
    pub bytes: Vec<u8>,
    /// The hash of its commit (see `commit_hash`).
    pub hash: [u8; 32],
    /// The steward it names (checked against the commit's signer).
    pub steward: MemberId,
    /// How many membership changes its commit makes (for ranking).
    pub actions: usize,
    /// Ours.
    pub local: bool,
    /// Our commit's welcome, sent once the commit is applied.
    pub welcome: Option<Vec<u8>>,
    /// Whether the sealed welcome in `bytes` is known to open (so no later copy can
    /// better it; learnt when a second copy comes, see `prefer_sealed_copy`).
    pub sealed_opens: bool,
    /// The commit's authenticated data: the digest of the evidence its steward sent.
    #[serde(default)]
    pub evidence_aad: Vec<u8>,
    /// Whether the evidence in `bytes` is that list (a copy stripped or altered on the
    /// way is replaced by one that carries it: see `merge_second_copy`).
    #[serde(default)]
    pub evidence_bound: bool,
}

impl Candidate {
    /// The `AppEnvelope` that publishes it.
    pub fn envelope(&self) -> Option<Vec<u8>> {
        candidate_envelope(&self.bytes)
    }
}

impl Conversation {
    /// Working → Freezing after inactivity; Freezing → Selection when every steward's
    /// candidate is in or the freeze window ends.
    pub(in crate::conversation) fn tick_phase<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        match self.state() {
            ConversationState::Working | ConversationState::Reelection => {
                if !self.freeze_work_waiting() {
                    self.anchor = None;
                    return;
                }
                // The window runs while a catch-up probe does (a joiner probes first, and
                // an epoch steward that anchored late would hear a backup's candidate
                // before its own timer); only the freeze itself waits for the probe.
                let anchor = *self.anchor.get_or_insert(now);
                if now >= anchor.saturating_add(self.inactivity_window())
                    && self.catch_up.probe_until.is_none()
                {
                    self.start_freeze(ctx, out);
                }
            }
            ConversationState::Freezing => {
                self.resend_candidate(now, out);
                // (No round in Freezing: only once closed, when no tick runs.)
                let due = self.phase.round().is_none_or(|f| {
                    now >= f.select_at(self.config.freeze) || self.all_candidates_in(f)
                });
                if due {
                    self.finalize_freeze(ctx, out);
                }
            }
            _ => {}
        }
    }

    /// The phase's work that waits on no deadline (see `schedule`): an inactivity anchor
    /// with no work waiting any more is dropped; a round that holds every candidate it
    /// waits for selects. (`now` is not needed.)
    pub(in crate::conversation) fn phase_ready(&self, _now: Millis) -> bool {
        let stale_anchor = self.anchor.is_some()
            && matches!(
                self.state(),
                ConversationState::Working | ConversationState::Reelection
            )
            && !self.freeze_work_waiting();
        stale_anchor
            || self
                .phase
                .round()
                .is_some_and(|f| self.all_candidates_in(f))
    }

    /// Whether approved work waits for the inactivity window to freeze: something is
    /// approved, no election is under way, and we are in Working, or in Reelection in
    /// Recovery mode and not probing (Reelection's tick acts when the probe ends).
    /// `tick_phase` anchors the window on it and `next_wakeup` schedules that tick; one
    /// rule for both, since a mismatch leaves work with nothing scheduled.
    pub(in crate::conversation) fn freeze_work_waiting(&self) -> bool {
        // In Reelection only Recovery mode freezes on its own (any member may commit
        // then); in normal mode the same list would give the same empty round, and
        // freezing over and over keeps the retry-round patience from ever running out.
        let phase = match self.state() {
            ConversationState::Working => true,
            ConversationState::Reelection => {
                self.mode == OperatingMode::Recovery && self.catch_up.probe_until.is_none()
            }
            _ => false,
        };
        phase && !self.gov.approved.is_empty() && !self.election_in_flight()
    }

    /// Whether the round holds a candidate from every steward it waits for.
    pub(super) fn all_candidates_in(&self, f: &FreezeRound) -> bool {
        let Some(expected) = self.expected_candidates() else {
            return false;
        };
        f.holds_all(&expected)
    }

    /// Whose commit candidates a freeze round waits for: every eligible member in
    /// recovery, the live stewards otherwise (None without a steward list).
    fn expected_candidates(&self) -> Option<BTreeSet<MemberId>> {
        if self.mode == OperatingMode::Recovery {
            Some(
                self.members()
                    .into_iter()
                    .filter(|m| self.eligible(m))
                    .collect(),
            )
        } else {
            self.stewards
                .as_ref()
                .map(|l| l.live_stewards(|m| self.eligible(m)).into_iter().collect())
        }
    }

    /// The progress of the freeze round under way, for views: (stewards whose candidate
    /// we hold among those expected, stewards expected, when selection is due at the
    /// latest, ms since the Unix epoch). None outside a freeze round.
    pub fn freeze_progress(&self) -> Option<(usize, usize, Millis)> {
        let f = self.phase.round()?;
        let expected = self.expected_candidates().unwrap_or_default();
        let seen = f.held_of(&expected);
        Some((seen, expected.len(), f.select_at(self.config.freeze)))
    }

    /// Whether an election proposal is still being voted on.
    pub(in crate::conversation) fn election_in_flight(&self) -> bool {
        self.gov.proposals.values().any(|p| {
            p.status == ProposalStatus::Voting && matches!(p.action, Action::Election { .. })
        })
    }

    /// Urgent paths (accepted score removal, deadlock) freeze at once.
    pub(in crate::conversation) fn force_freeze<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if matches!(
            self.state(),
            ConversationState::Working | ConversationState::Reelection
        ) && !self.gov.approved.is_empty()
        {
            self.start_freeze(ctx, out);
        }
    }

    /// Freezes, and submits our candidate when we may commit.
    pub(in crate::conversation) fn start_freeze<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        self.open_freeze(ctx.now, out);
        if self.may_commit() {
            self.submit_candidate(ctx, out);
        }
    }

    /// Enters Freezing (keeping a round already open for this epoch) without submitting.
    pub(super) fn open_freeze(&mut self, now: Millis, out: &mut Output) {
        let epoch = self.epoch();
        self.anchor = None;
        let open = match self.phase.round_mut() {
            Some(f) if f.epoch == epoch => Some(std::mem::take(f)),
            _ => None,
        };
        let round = open.unwrap_or(FreezeRound {
            epoch,
            started_at: now,
            ..Default::default()
        });
        self.enter(out, Phase::Freezing(round));
    }
}
