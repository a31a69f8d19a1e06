//! Steward duties: proposing buffered membership requests, keeping the steward list
//! (local reconcile in small groups, elections in larger ones), reelection and deadlock
//! recovery, and score-based removals.

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::proto::pb;
use crate::steward;

/// What became of an accepted election's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Installed {
    /// It is our list now (or already was).
    Yes,
    /// A newer list, or a concurrent election of the same epoch that wins the tie-break,
    /// stays: the group has stewards, so this is no failed election.
    Superseded,
    /// The list is malformed: counts as a failed election.
    Invalid,
}

impl Conversation {
    pub(super) fn tick_stewardship<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if self.state() == ConversationState::Working {
            self.ensure_live_steward(ctx, out);
            self.propose_buffered(ctx, out, true);
            if let Some(since) = self.exhausted_since
                && ctx.now >= since.saturating_add(self.reelection_patience())
            {
                self.exhausted_since = Some(ctx.now);
                if !self.election_in_flight() {
                    // The deterministic proposer is silent (e.g. a joiner that never
                    // got its welcome): reshuffle so someone else proposes.
                    self.next_retry_round = self.next_retry_round.saturating_add(1);
                    self.try_election(ctx, out, false);
                }
            }
        }
        if self.state() == ConversationState::Reelection {
            let probe_was_open = self.catch_up.probe_until.is_some();
            if self.probing(ctx.now) {
                return;
            }
            if probe_was_open {
                // Nobody answered: the epoch really is stuck, so elect.
                self.phase.restart_reelection(ctx.now);
                self.offer_approved_proofs(ctx);
                self.try_election(ctx, out, true);
                return;
            }
            // (Only a step that closed us mid-tick leaves the state without its start.)
            let since = self.phase.reelection_since().unwrap_or(ctx.now);
            if ctx.now >= since.saturating_add(self.reelection_patience()) {
                self.phase.restart_reelection(ctx.now);
                if !self.election_in_flight() {
                    // The expected election proposer is silent too: reshuffle, and try
                    // again once a fresh probe finds nobody ahead of us.
                    self.next_retry_round = self.next_retry_round.saturating_add(1);
                    self.start_probe(ctx.now);
                }
            }
        }
    }

    /// Stewardship's work that waits on no deadline (see `schedule`). In Working: a steward
    /// list with no live steward left (reconciled, or an election tried, at every tick
    /// while it lasts), an exhausted mark to clear, requests buffered for the epoch
    /// steward (us) to propose. In Reelection: a catch-up probe that ran out (we elect).
    /// The patience and the backup's takeover have deadlines of their own.
    pub(super) fn stewardship_ready(&self, now: Millis) -> bool {
        match self.state() {
            ConversationState::Working => {
                self.steward_list_needs_care() || self.buffered_for_epoch_steward()
            }
            ConversationState::Reelection => self.catch_up.probe_ran_out(now),
            _ => false,
        }
    }

    /// Whether `ensure_live_steward` has anything to do: the list has no live steward or
    /// is exhausted, or it is fine again and the exhausted mark is still set.
    fn steward_list_needs_care(&self) -> bool {
        self.steward_list_live()
            .is_some_and(|live| !live || self.exhausted_since.is_some())
    }

    /// Whether the steward list is not exhausted and has a live steward this epoch (None
    /// without a list).
    fn steward_list_live(&self) -> Option<bool> {
        let list = self.stewards.as_ref()?;
        let epoch = self.epoch();
        Some(!list.is_exhausted(epoch) && list.live_roles(epoch, |m| self.eligible(m)).0.is_some())
    }

    /// Whether we are the epoch steward and hold a buffered request that
    /// `propose_buffered` would propose (or drop, if it can no longer be carried out).
    fn buffered_for_epoch_steward(&self) -> bool {
        if self.gov.pending_updates.is_empty()
            || !self.gov.emergencies.is_empty()
            || self.role(&self.me) != Role::EpochSteward
        {
            return false;
        }
        let members = self.members();
        self.gov
            .proposable_updates(|a| Self::buffered_applies(a, &members))
            .next()
            .is_some()
    }

    /// In Reelection we hold approved work that the others may have decided otherwise:
    /// under loss the timeout rule can reject at them what the votes we hold accept (a
    /// late vote reached only us). Then nobody but us sees a reason to elect, and we would
    /// wait here for good. Offer the signed votes (the jittered, budgeted, suppressible
    /// answer to a `ProposalRequest`): a member that rejected at the timeout overturns
    /// that on them and freezes on the work with us.
    fn offer_approved_proofs<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>) {
        let ids: Vec<u32> = self.gov.approved.iter().map(|a| a.id).collect();
        for id in ids {
            self.on_proposal_request(ctx, None, id);
        }
    }

    /// The epoch steward turns buffered requests into proposals; a backup does so once the
    /// request has waited for the takeover window (the epoch steward is silent).
    pub(super) fn propose_buffered<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        allow_takeover: bool,
    ) {
        if self.state() != ConversationState::Working || !self.gov.emergencies.is_empty() {
            return;
        }
        let role = self.role(&self.me);
        let takeover = allow_takeover && role == Role::BackupSteward;
        if role != Role::EpochSteward && !takeover {
            return;
        }
        let window = self.takeover_window();
        let members = self.members();
        let due: Vec<MemberId> = self
            .gov
            .proposable_updates(|a| Self::buffered_applies(a, &members))
            .filter(|(_, u)| {
                role == Role::EpochSteward || ctx.now >= u.first_seen_at.saturating_add(window)
            })
            .map(|(m, _)| *m)
            .collect();
        let mut todo = Vec::with_capacity(due.len());
        for m in due {
            let Some(u) = self.gov.pending_updates.get(&m) else {
                continue;
            };
            // What we would vote NO on is not worth a proposal (its key package was used,
            // or copies a member's leaf key, since it was buffered): dropped, not skipped
            // (a request skipped here would stay due for ever, see `next_wakeup`). Only
            // what can have changed is checked again, and only for what is proposed now:
            // the announcement's signature was checked when it was buffered, and checking
            // every buffered request on every call cost a signature check per request per
            // announcement.
            let blocked = match &u.action {
                Action::Add {
                    member,
                    key_package,
                    ..
                } => self.add_blocked(ctx, member, key_package),
                _ => None,
            };
            if let Some(why) = blocked {
                self.gov.pending_updates.remove(&m);
                out.reject(
                    InboundKind::KeyPackage,
                    RejectCause::Invalid,
                    format!("buffered request dropped: {why}"),
                );
            } else {
                todo.push(u.action.clone());
            }
        }
        for action in todo {
            if let Err(e) = self.open_proposal(ctx, out, action, None, None, None) {
                out.event(Event::Error {
                    operation: "propose buffered request",
                    message: e.to_string(),
                });
            }
        }
    }

    /// Whether a buffered request still asks for something (a rejoin may name a member).
    pub(super) fn buffered_applies(a: &Action, members: &[MemberId]) -> bool {
        match a {
            Action::Add {
                member,
                announcement,
                ..
            } => !members.contains(member) || super::join::announcement_rejoin(announcement),
            Action::Remove { member } => members.contains(member),
            _ => false,
        }
    }

    /// The members a steward list may be drawn from.
    fn steward_pool(&self, recovery: bool) -> Vec<MemberId> {
        self.members()
            .into_iter()
            .filter(|m| self.eligible(m))
            .filter(|m| !recovery || !self.silent.contains(m))
            .collect()
    }

    /// After a commit: keep a live steward list. Small groups (pool ≤ sn_max) install the
    /// deterministic list locally; larger ones elect when the list is exhausted.
    pub(super) fn after_commit_stewardship<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        self.ensure_live_steward(ctx, out);
        if self.mode == OperatingMode::Recovery {
            self.try_election(ctx, out, true);
        }
        self.propose_buffered(ctx, out, false);
    }

    /// After approving a removal: a small group (pool ≤ `sn_max`, list derived without a
    /// vote) whose list is left with no live steward reconciles it now, before the freeze
    /// judges candidates by it. A larger group elects on its next tick, as before (doing
    /// that here too moved elections earlier and made the lossy seed 3 of
    /// `ten_members_with_sn_max_3…` refuse a commit).
    pub(super) fn reconcile_small_list<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if self.steward_pool(false).len() <= self.config.sn_max as usize {
            self.ensure_live_steward(ctx, out);
        }
    }

    pub(super) fn ensure_live_steward<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let Some(live) = self.steward_list_live() else {
            return;
        };
        if live {
            self.exhausted_since = None;
            return;
        }
        let epoch = self.epoch();
        let pool = self.steward_pool(false);
        if pool.is_empty() {
            return;
        }
        if pool.len() <= self.config.sn_max as usize {
            let l = steward::generate(
                &pool,
                epoch,
                0,
                &self.name,
                self.config.sn_min,
                self.config.sn_max,
            );
            tracing::debug!(conversation = %self.name, epoch, stewards = ?l.stewards, "steward list reconciled locally");
            self.stewards = Some(l);
            self.election_proof = None;
        } else {
            self.exhausted_since.get_or_insert(ctx.now);
            self.try_election(ctx, out, false);
        }
    }

    /// Proposes an election if we are the deterministic proposer: the first steward of the
    /// list being proposed.
    pub(super) fn try_election<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        recovery: bool,
    ) {
        if self.election_in_flight() || self.stewards.is_none() {
            return;
        }
        // Not while we may be behind (a joiner's first probe, or traffic from a later
        // epoch): an election for an epoch the group has left can still pass by the
        // timeout rule and replace the list members already rank with.
        if self.catch_up.probe_until.is_some_and(|u| ctx.now < u) || self.hint_first_round(ctx.now)
        {
            return;
        }
        if self.gov.emergencies.iter().any(|id| {
            self.gov
                .proposals
                .get(id)
                .is_some_and(|p| p.status == ProposalStatus::Voting)
        }) {
            return;
        }
        let pool = self.steward_pool(recovery);
        if pool.is_empty() {
            return;
        }
        let epoch = self.epoch();
        if pool.len() <= self.config.sn_max as usize
            && self.mode == OperatingMode::Normal
            && !recovery
        {
            // Small group: no vote needed, everyone derives the same list. Not for a
            // recovery list: it leaves out the stewards *we* found silent, which other
            // members may not have (yet), so it is put to a vote like any other.
            let l = steward::generate(
                &pool,
                epoch,
                self.next_retry_round,
                &self.name,
                self.config.sn_min,
                self.config.sn_max,
            );
            self.stewards = Some(l);
            self.election_proof = None;
            if self.state() == ConversationState::Reelection {
                self.enter(out, Phase::Working);
            }
            return;
        }
        let list = steward::generate(
            &pool,
            epoch,
            self.next_retry_round,
            &self.name,
            self.config.sn_min,
            self.config.sn_max,
        );
        if list.stewards.first() != Some(&self.me) {
            tracing::debug!(conversation = %self.name, epoch, retry = self.next_retry_round, proposer = ?list.stewards.first(), "election: another member proposes");
            return;
        }
        let action = Action::Election {
            stewards: list.stewards,
            election_epoch: epoch,
            retry_round: self.next_retry_round,
        };
        if let Err(e) = self.open_proposal(ctx, out, action, None, None, None) {
            out.event(Event::Error {
                operation: "propose election",
                message: e.to_string(),
            });
        }
    }

    /// An election proposal is valid iff its list is the deterministic one for our pool.
    pub(super) fn validate_election(
        &self,
        stewards: &[MemberId],
        election_epoch: u64,
        retry_round: u32,
    ) -> Result<(), String> {
        if election_epoch != self.epoch() {
            return Err(format!(
                "election for epoch {election_epoch}, we are at {}",
                self.epoch()
            ));
        }
        if retry_round > self.next_retry_round.saturating_add(1) {
            return Err(format!(
                "retry round {retry_round} is ahead of ours ({})",
                self.next_retry_round
            ));
        }
        let full = self.steward_pool(false);
        let recovery = self.steward_pool(true);
        let check = |pool: &[MemberId]| {
            steward::validate(
                stewards,
                pool,
                election_epoch,
                retry_round,
                &self.name,
                self.config.sn_min,
                self.config.sn_max,
            )
        };
        check(&full)
            .or_else(|_| check(&recovery))
            .map_err(|e| format!("tampered steward list: {e}"))
    }

    /// Installs an accepted election's list.
    pub(super) fn install_elected(
        &mut self,
        out: &mut Output,
        stewards: Vec<MemberId>,
        election_epoch: u64,
        retry_round: u32,
    ) -> Installed {
        if let Err(e) = steward::validate(
            &stewards,
            &stewards,
            election_epoch,
            retry_round,
            &self.name,
            self.config.sn_min,
            self.config.sn_max,
        ) {
            out.reject(InboundKind::Election, RejectCause::Invalid, e);
            return Installed::Invalid;
        }
        // An old election's evidence (carried by a candidate) never replaces a newer list.
        if self
            .stewards
            .as_ref()
            .is_some_and(|cur| cur.election_epoch > election_epoch)
        {
            return Installed::Superseded;
        }
        // Two elections for one epoch can both pass (a reshuffled retry overlapping the
        // original, or a recovery election after the list's steward fell silent), and
        // members see the outcomes in different orders: the highest retry round wins
        // everywhere, whatever the order, and the lowest list among equal rounds. (A rule
        // that looked at whom we found silent would depend on each member's own view.)
        if let Some(cur) = &self.stewards
            && cur.election_epoch == election_epoch
            && (std::cmp::Reverse(cur.retry_round), &cur.stewards)
                < (std::cmp::Reverse(retry_round), &stewards)
        {
            return Installed::Superseded;
        }
        if self.stewards.as_ref().is_some_and(|cur| {
            (cur.election_epoch, cur.retry_round, &cur.stewards)
                == (election_epoch, retry_round, &stewards)
        }) {
            return Installed::Yes;
        }
        tracing::info!(conversation = %self.name, election_epoch, ?stewards, "steward list elected");
        self.stewards = Some(crate::steward::StewardList {
            stewards,
            election_epoch,
            retry_round,
        });
        self.mode = OperatingMode::Normal;
        self.silent.clear();
        self.exhausted_since = None;
        if self.state() == ConversationState::Reelection {
            self.enter(out, Phase::Working);
        }
        Installed::Yes
    }

    pub(super) fn on_election_rejected<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        self.next_retry_round = self.next_retry_round.saturating_add(1);
        if self.next_retry_round > self.config.max_reelection_attempts {
            // Elections keep failing: the deterministic proposer files a DEADLOCK emergency.
            let pool = self.steward_pool(true);
            let list = steward::generate(
                &pool,
                self.epoch(),
                self.next_retry_round,
                &self.name,
                self.config.sn_min,
                self.config.sn_max,
            );
            if list.stewards.first() == Some(&self.me) && self.mode == OperatingMode::Normal {
                let action = Action::Emergency {
                    violation: pb::ViolationType::Deadlock as i32,
                    target: None,
                    creator: self.me,
                    epoch: self.epoch(),
                };
                tracing::warn!(conversation = %self.name, "elections exhausted: filing DEADLOCK");
                if let Err(e) = self.open_proposal(ctx, out, action, Some(true), None, None) {
                    out.event(Event::Error {
                        operation: "Reelection stuck",
                        message: e.to_string(),
                    });
                }
            }
        } else {
            self.try_election(ctx, out, true);
        }
    }

    /// Stewards file SCORE_BELOW_THRESHOLD emergencies for members at or below the
    /// threshold (never for themselves, once per target).
    pub(super) fn check_score_removals<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if !matches!(
            self.state(),
            ConversationState::Working | ConversationState::Reelection
        ) {
            return;
        }
        tracing::debug!(conversation = %self.name, below = ?self.scores.below(self.config.threshold_peer_score), threshold = self.config.threshold_peer_score, "score check");
        if !self.stewards.as_ref().is_some_and(|l| l.contains(&self.me)) {
            return;
        }
        let members = self.members();
        let targets: Vec<MemberId> = self
            .scores
            .below(self.config.threshold_peer_score)
            .into_iter()
            .filter(|t| *t != self.me && members.contains(t))
            .filter(|t| !self.gov.score_removals.contains(t) && !self.removal_under_way(t))
            .collect();
        for t in targets {
            self.gov.score_removals.insert(t);
            let action = Action::Emergency {
                violation: pb::ViolationType::ScoreBelowThreshold as i32,
                target: Some(t),
                creator: self.me,
                epoch: self.epoch(),
            };
            tracing::warn!(conversation = %self.name, target = %t, "score below threshold: emergency proposal");
            if let Err(e) = self.open_proposal(ctx, out, action, Some(true), None, None) {
                self.gov.score_removals.remove(&t);
                out.event(Event::Error {
                    operation: "score removal",
                    message: e.to_string(),
                });
            }
        }
    }
}
