//! Applying a winner: merging our own commit or a peer's (staged, authenticated and
//! validated first), and the bookkeeping after any commit merged.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::validation::refusal_key;
use super::*;
use crate::conversation::evidence::Judge;
use crate::proto::pb;
use crate::scoring::ScoreEvent;

/// What a validated winner did.
pub(in crate::conversation) struct Winner {
    /// Who signed the commit.
    pub committer: MemberId,
    /// Members it added.
    pub added: Vec<MemberId>,
    /// Members it removed.
    pub removed: Vec<MemberId>,
    /// It removed our own leaf.
    pub self_removed: bool,
    /// Our commit: its welcome, for us to send.
    pub welcome: Option<Vec<u8>>,
    /// A peer's commit: its welcome, opened from the candidate (see `join`).
    pub peer_welcome: Option<pb::MemberWelcome>,
    /// The encoded `CommitCandidate` (kept for catch-up replies).
    pub candidate: Vec<u8>,
    /// Its commit hash (see `commit_hash`).
    pub hash: [u8; 32],
    /// The epoch the commit left.
    pub old_epoch: u64,
    /// SHA-256 of each key package a peer's commit added (all used from now on).
    pub added_key_packages: Vec<[u8; 32]>,
}

impl Conversation {
    /// Merges our own pending commit (the candidate `cand` of `epoch`) and says what it
    /// did.
    pub(in crate::conversation) fn apply_local<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        cand: &Candidate,
        epoch: u64,
    ) -> Option<Winner> {
        let mls = self.mls.as_mut()?;
        // By leaf, not by address: a rejoin removes and adds the same address.
        let before = mls.member_leaves();
        if let Err(e) = mls.merge_own_commit(ctx.provider) {
            tracing::warn!(error = %e, "could not merge our own commit");
            return None;
        }
        let after = mls.member_leaves();
        // Our own leaf is renewed by our commit's path, and we never rejoin by our own
        // commit: it is neither added nor removed.
        let me = self.me;
        let changed = |from: &[(MemberId, Vec<u8>)], to: &[(MemberId, Vec<u8>)]| -> Vec<MemberId> {
            from.iter()
                .filter(|m| m.0 != me && !to.contains(m))
                .map(|(m, _)| *m)
                .collect()
        };
        Some(Winner {
            committer: self.me,
            added: changed(&after, &before),
            removed: changed(&before, &after),
            self_removed: false,
            welcome: cand.welcome.clone(),
            peer_welcome: None,
            candidate: cand.bytes.clone(),
            hash: cand.hash,
            old_epoch: epoch,
            added_key_packages: Vec::new(),
        })
    }

    /// Stages a remote candidate and validates it; merges it if valid.
    pub(in crate::conversation) fn try_remote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        cand: &Candidate,
        epoch: u64,
        own_pending: bool,
        judge: Judge,
    ) -> Option<Winner> {
        let c = pb::CommitCandidate::decode(cand.bytes.as_slice()).ok()?;
        // Staged already when it arrived (`authenticate_candidate`), unless since restarted.
        let kept = self
            .mls
            .as_mut()
            .and_then(|m| m.restore_kept(ctx.provider, refusal_key(&c)));
        let mut info = match kept {
            Some(info) => info,
            None => self.stage_candidate(ctx, out, &c, cand.steward)?,
        };
        if let Err(e) = Self::check_signer(&info, cand.steward) {
            return self.refuse_staged(ctx, out, e);
        }
        // Signed by a member, as the candidate says: only now may its evidence count (by
        // its signed votes; see `evidence`), and the steward list may come from it.
        // Adopting can start work of our own (an election that makes us steward), so the
        // staging is dropped first and redone; when every carried proposal is settled
        // here already (the usual case) there is nothing to adopt.
        // Only the evidence the commit signs counts (see `evidence_digest`).
        let evidence = if info.aad == evidence_digest(&c.evidence) {
            judged_evidence(&c.evidence, info.adds.len() + info.removes.len())
        } else {
            &[]
        };
        let unsettled = evidence.iter().any(|p| {
            !self.gov.resolved.contains(&p.proposal_id)
                || self.renews_own_leave(p)
                || self
                    .gov
                    .proposals
                    .get(&p.proposal_id)
                    .is_some_and(|t| t.status == ProposalStatus::Rejected)
        });
        if unsettled {
            if let Some(mls) = self.mls.as_mut() {
                let _ = mls.discard_staged(ctx.provider);
            }
            self.adopt_commit_evidence(ctx, out, evidence, judge);
            if self.epoch() != epoch {
                return None;
            }
            info = self.stage_candidate(ctx, out, &c, cand.steward)?;
        }
        if let Err(e) = self.validate_staged(ctx, &c, &info) {
            return self.refuse_staged(ctx, out, e);
        }
        let peer_welcome = self.open_candidate_welcome(ctx, &c, &info);
        let mls = self.mls.as_mut()?;
        if own_pending {
            let _ = mls.discard_own_commit(ctx.provider);
        }
        if let Err(e) = mls.merge_staged(ctx.provider) {
            out.reject(
                InboundKind::Commit,
                RejectCause::Unprocessable,
                format!("merge failed: {e}"),
            );
            return None;
        }
        Some(Winner {
            committer: info.commit_sender,
            added: info.adds.clone(),
            removed: info.removes.clone(),
            self_removed: info.self_removed,
            welcome: None,
            peer_welcome,
            candidate: cand.bytes.clone(),
            hash: cand.hash,
            old_epoch: epoch,
            added_key_packages: info.added_key_packages.clone(),
        })
    }

    /// Bookkeeping after a commit merged (ours, a peer's, or one fetched by catch-up).
    pub(in crate::conversation) fn on_committed<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: Winner,
    ) {
        self.close_round(&w);
        if w.self_removed {
            return self.removed_by_commit(ctx, out, w);
        }
        // Early welcomes were into the epoch we just reached by another commit.
        self.early_welcome.clear();
        let members = self.members();
        self.settle_approved(ctx, out, &w, &members);
        self.refresh_after_commit(ctx.now, &w, &members);
        let epoch = self.epoch();
        tracing::info!(
            conversation = %self.name, epoch, committer = %w.committer,
            added = w.added.len(), removed = w.removed.len(), "commit applied"
        );
        out.event(Event::CommitApplied {
            epoch,
            committer: w.committer,
            added: w.added.clone(),
            removed: w.removed,
        });
        self.enter(out, Phase::Working);
        self.after_commit_stewardship(ctx, out);
        if let Some(welcome) = w.welcome {
            self.send_welcome(ctx, out, welcome, w.added);
        } else if let Some(mw) = w.peer_welcome {
            self.keep_candidate_welcome(ctx, out, mw, w.added);
        }
        self.replay_future(ctx, out);
        self.check_score_removals(ctx, out);
    }

    /// The round is over: its state goes, and the commit is remembered (its hash against
    /// a late copy, the candidate for catch-up replies).
    fn close_round(&mut self, w: &Winner) {
        // A round still open (the commit came by catch-up) is over too: from here to
        // Working the commit is being applied, which is what Selection means, and
        // nothing reads a round of the epoch we left. No event: the change to Working
        // is reported when the bookkeeping is done.
        if let Phase::Freezing(_) = self.phase {
            self.phase = Phase::Selection;
        }
        self.anchor = None;
        self.catch_up.probe_until = None;
        self.early_stash.clear();
        self.committed_hashes.push_back(w.hash);
        while self.committed_hashes.len() > COMMITTED_CAP {
            self.committed_hashes.pop_front();
        }
        self.recent_commits
            .push_back((w.old_epoch, w.candidate.clone()));
        while self.recent_commits.len() > self.config.catch_up_window {
            self.recent_commits.pop_front();
        }
    }

    /// The commit removed our leaf: we leave, unless it also added us again.
    fn removed_by_commit<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: Winner,
    ) {
        let readded = w.added.contains(&self.me);
        out.event(Event::CommitApplied {
            epoch: w.old_epoch + 1,
            committer: w.committer,
            added: w.added,
            removed: w.removed,
        });
        if readded {
            // A rejoin we asked for twice (a fresh key package announced while the
            // first was being committed) was carried out twice: the second commit
            // swaps our leaf for that other key package. Its welcome is ours.
            self.await_welcome(ctx, out, w.committer);
        } else {
            self.close(ctx, out, LeaveReason::Removed);
        }
    }

    /// Settles approved work against the commit's outcome (`members` after it): what it
    /// carried out is committed, adds it made impossible are dropped, and proposals it
    /// proved decided are settled.
    fn settle_approved<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: &Winner,
        members: &[MemberId],
    ) {
        let epoch = self.epoch();
        // Drop what the commit carried out (and anything made moot by it).
        let done: Vec<u32> = self
            .gov
            .approved
            .iter()
            .filter(|a| match &a.change {
                // A rejoin is carried out only by the commit that adds the member again.
                Change::Add {
                    member,
                    rejoin: true,
                    ..
                } => w.added.contains(member),
                Change::Add { member, .. } => members.contains(member),
                Change::Remove { member } => !members.contains(member),
            })
            .map(|a| a.id)
            .collect();
        // Every key package the commit added is used now, whether or not we had its add
        // queued (a second rejoin we did not queue: see `decided_rejoin`).
        let used: Vec<[u8; 32]> = self
            .gov
            .approved
            .iter()
            .filter(|a| done.contains(&a.id))
            .filter_map(|a| match &a.change {
                Change::Add { key_package, .. } => Some(join::key_package_hash(key_package)),
                Change::Remove { .. } => None,
            })
            .chain(w.added_key_packages.iter().copied())
            .collect();
        self.note_used_key_packages(used);
        if !w.added.is_empty() {
            self.recent_adds
                .push_back((epoch, w.committer, w.added.clone()));
            while self.recent_adds.len() > self.config.catch_up_window {
                self.recent_adds.pop_front();
            }
        }
        self.gov.approved.retain(|a| !done.contains(&a.id));
        for id in &done {
            if let Some(p) = self.gov.proposals.get_mut(id) {
                p.status = ProposalStatus::Committed;
            }
        }
        self.drop_blocked_adds(ctx, out);
        self.settle_carried_proposals(out, &w.candidate, members);
        if self
            .gov
            .urgent_target
            .is_some_and(|t| !members.contains(&t))
        {
            self.gov.urgent_target = None;
        }
    }

    /// Member bookkeeping for the new epoch (`members` after the commit): scores, group
    /// size, removals and the fork watch, hints, stale requests, the retry round.
    fn refresh_after_commit(&mut self, now: Millis, w: &Winner, members: &[MemberId]) {
        self.scores
            .apply(&w.committer, ScoreEvent::SuccessfulCommit);
        self.scores
            .sync_roster(members, self.config.default_peer_score);
        self.note_group_size(now);
        self.note_removed(w.old_epoch, &w.removed);
        self.fork_watch.note_removed(&w.removed, now);
        let epoch = self.epoch();
        self.fork_watch.note_commit(epoch, &w.added, &w.removed);
        self.reset_hints();
        let max_age = self.config.pending_update_max_epochs;
        self.gov.pending_updates.retain(|m, u| {
            let moot = match u.action {
                Action::Add { .. } => members.contains(m),
                _ => !members.contains(m),
            };
            !moot && u.first_seen_epoch + max_age >= epoch
        });
        self.next_retry_round = 0;
        self.silent.clear();
        self.catch_up.replies.remove(&w.old_epoch);
    }

    /// Proposals we still hold open but that the merged commit carried out, proven by the
    /// votes in its evidence (we learnt of them too late to decide them ourselves): they
    /// are settled now, so a stale emergency does not keep lower-priority work frozen and
    /// a late timeout does not reject what the group already did.
    fn settle_carried_proposals(
        &mut self,
        out: &mut Output,
        candidate: &[u8],
        members: &[MemberId],
    ) {
        let Ok(c) = pb::CommitCandidate::decode(candidate) else {
            return;
        };
        for p in &c.evidence {
            let id = p.proposal_id;
            let Some(t) = self.gov.proposals.get_mut(&id) else {
                continue;
            };
            let carried_out = match t.action.membership_change() {
                Some((true, m)) => members.contains(&m),
                Some((false, m)) => !members.contains(&m),
                None => false,
            };
            if t.status != ProposalStatus::Voting || !carried_out {
                continue;
            }
            t.status = ProposalStatus::Committed;
            t.auto_vote_at = None;
            self.gov.emergencies.remove(&id);
            self.gov.resolve(id);
            out.event(Event::ProposalDecided { id, accepted: true });
        }
    }
}
