//! The freeze round: after commit inactivity every member freezes, stewards submit commit
//! candidates, and every member deterministically selects, validates and applies one.

use std::collections::BTreeSet;

use openmls_traits::OpenMlsProvider;
use prost::Message;
use sha2::{Digest, Sha256};

use super::evidence::Judge;
use super::*;
use crate::mls::StagedCommitInfo;
use crate::proto::{cpb, pb};
use crate::scoring::ScoreEvent;

/// What a validated winner did.
pub(super) struct Winner {
    pub committer: MemberId,
    pub added: Vec<MemberId>,
    pub removed: Vec<MemberId>,
    pub self_removed: bool,
    pub welcome: Option<Vec<u8>>,
    /// A peer's commit: its welcome, opened from the candidate (see `join`).
    pub peer_welcome: Option<pb::MemberWelcome>,
    pub candidate: Vec<u8>,
    pub hash: [u8; 32],
    pub old_epoch: u64,
    /// SHA-256 of each key package a peer's commit added (all used from now on).
    pub added_key_packages: Vec<[u8; 32]>,
}

/// The `AppEnvelope` that publishes an encoded `CommitCandidate`.
fn candidate_envelope(candidate: &[u8]) -> Option<Vec<u8>> {
    let c = pb::CommitCandidate::decode(candidate).ok()?;
    Some(
        pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::CommitCandidate(c)),
        }
        .encode_to_vec(),
    )
}

/// The largest candidate (commit, proposals, evidence and all) that carries its welcome
/// sealed inside: room under the relay's 150 KiB message limit for the envelopes.
const SEALED_WELCOME_LIMIT: usize = 100 * 1024;

/// The part of a candidate's evidence that is judged. An honest steward carries one
/// proposal per change of its batch (each at least one MLS proposal of the commit) and
/// its election: never more than `actions + 1`. Anything past that is not judged, since
/// each item can cost signature checks.
fn judged_evidence(evidence: &[cpb::Proposal], actions: usize) -> &[cpb::Proposal] {
    evidence
        .get(..actions.saturating_add(1))
        .unwrap_or(evidence)
}

/// Digest of an evidence list. A steward's commit carries the digest of its candidate's
/// evidence as its MLS authenticated data (signed with the commit), so evidence counts
/// only when it is the list the steward sent: a copy with other evidence (stripped, or
/// junk votes that would each cost a signature check) is recognised by one hash.
fn evidence_digest(evidence: &[cpb::Proposal]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in evidence {
        let bytes = p.encode_to_vec();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

/// Hashes of candidates refused on arrival, remembered so copies cost nothing more.
const REFUSED_CAP: usize = 64;

/// See [`Conversation::rank`].
type RankKey = (std::cmp::Reverse<usize>, bool, MemberId);

fn commit_hash(commit: &[u8]) -> [u8; 32] {
    Sha256::digest(commit).into()
}

/// What a refusal is remembered by: the commit, the proposals it is staged with and the
/// steward it names (nothing signs those two). A copy of a real commit with junk
/// proposals beside it, or naming another steward, is refused, and must not get the real
/// candidate refused when it comes.
fn refusal_key(c: &pb::CommitCandidate) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((c.steward_id.len() as u64).to_be_bytes());
    h.update(&c.steward_id);
    h.update((c.commit_message.len() as u64).to_be_bytes());
    h.update(&c.commit_message);
    for p in &c.mls_proposals {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

impl Conversation {
    /// Working → Freezing after inactivity; Freezing → Selection when every steward's
    /// candidate is in or the freeze window ends.
    pub(super) fn tick_phase<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        match self.state {
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
                let due = self.freeze.as_ref().is_none_or(|f| {
                    now >= f.deadline(self.config.freeze) || self.all_candidates_in(f)
                });
                if due {
                    self.finalize_freeze(ctx, out);
                }
            }
            _ => {}
        }
    }

    /// Whether approved work waits for the inactivity window to freeze: something is
    /// approved, no election is under way, and we are in Working, or in Reelection in
    /// Recovery mode and not probing (Reelection's tick acts when the probe ends).
    /// `tick_phase` anchors the window on it and `next_wakeup` schedules that tick; one
    /// rule for both, since a mismatch leaves work with nothing scheduled.
    pub(super) fn freeze_work_waiting(&self) -> bool {
        // In Reelection only Recovery mode freezes on its own (any member may commit
        // then); in normal mode the same list would give the same empty round, and
        // freezing over and over keeps the retry-round patience from ever running out.
        let phase = match self.state {
            ConversationState::Working => true,
            ConversationState::Reelection => {
                self.mode == OperatingMode::Recovery && self.catch_up.probe_until.is_none()
            }
            _ => false,
        };
        phase && !self.gov.approved.is_empty() && !self.election_in_flight()
    }

    fn all_candidates_in(&self, f: &FreezeRound) -> bool {
        let Some(expected) = self.expected_candidates() else {
            return false;
        };
        let got: BTreeSet<MemberId> = f.candidates.iter().map(|c| c.steward).collect();
        !expected.is_empty() && expected.is_subset(&got)
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
        let f = self.freeze.as_ref()?;
        let expected = self.expected_candidates().unwrap_or_default();
        let got: BTreeSet<MemberId> = f.candidates.iter().map(|c| c.steward).collect();
        let seen = expected.intersection(&got).count();
        Some((seen, expected.len(), f.deadline(self.config.freeze)))
    }

    pub(super) fn election_in_flight(&self) -> bool {
        self.gov.proposals.values().any(|p| {
            p.status == ProposalStatus::Voting && matches!(p.action, Action::Election { .. })
        })
    }

    /// Urgent paths (accepted score removal, deadlock) freeze at once.
    pub(super) fn force_freeze<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if matches!(
            self.state,
            ConversationState::Working | ConversationState::Reelection
        ) && !self.gov.approved.is_empty()
        {
            self.start_freeze(ctx, out);
        }
    }

    /// May we submit a candidate this epoch?
    fn may_commit(&self) -> bool {
        if !self.eligible(&self.me) {
            return false;
        }
        if self.mode == OperatingMode::Recovery {
            return true;
        }
        self.stewards
            .as_ref()
            .is_some_and(|l| !l.is_exhausted(self.epoch()) && l.contains(&self.me))
    }

    pub(super) fn start_freeze<P: OpenMlsProvider>(
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
    fn open_freeze(&mut self, now: Millis, out: &mut Output) {
        let epoch = self.epoch();
        self.anchor = None;
        let round = self
            .freeze
            .take()
            .filter(|f| f.epoch == epoch)
            .unwrap_or(FreezeRound {
                epoch,
                started_at: now,
                ..Default::default()
            });
        self.freeze = Some(round);
        self.set_state(out, ConversationState::Freezing);
    }

    /// Selection rank of a candidate (smaller wins), up to the commit hash: longest
    /// proposal sequence, then the epoch steward, then the smallest steward id.
    fn rank(actions: usize, steward: MemberId, es: Option<MemberId>) -> RankKey {
        (std::cmp::Reverse(actions), Some(steward) != es, steward)
    }

    /// The epoch steward that ranking prefers: the list's slot for this epoch. The RFC
    /// says the *live* epoch steward, but liveness here is each member's own observation
    /// (whom it saw fall silent, whose removal it has queued), and members that rank with
    /// different views apply different winners. A silent slot steward has no candidate
    /// to prefer anyway.
    pub(super) fn ranking_steward(&self) -> Option<MemberId> {
        let epoch = self.epoch();
        self.stewards
            .as_ref()
            .and_then(|l| l.live_roles(epoch, |_| true).0)
    }

    /// An election decided during our freeze round made us a steward: take part, as a
    /// late steward would.
    pub(super) fn submit_if_new_steward<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let submitted = self
            .freeze
            .as_ref()
            .is_none_or(|f| f.candidates.iter().any(|c| c.local));
        if self.state == ConversationState::Freezing && !submitted {
            self.submit_if_late_is_harmless(ctx, out);
        }
    }

    /// A steward that first hears of the round through another steward's candidate is
    /// late. Every member's window runs `freeze` from the first candidate it heard (and
    /// no member selects early while a live steward's candidate is missing), so a
    /// candidate sent promptly — within half the window of the first candidate's arrival
    /// here — reaches every member in time as long as `freeze` exceeds twice the network
    /// delay. Later than that, it submits only a candidate that ranks below one it holds
    /// (which cannot change anyone's winner and lets windows end early); a candidate that
    /// would win is withheld, since some members would apply it and others would not — a
    /// fork.
    fn submit_if_late_is_harmless<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if !self.may_commit() {
            return;
        }
        let prompt = self
            .freeze
            .as_ref()
            .and_then(|f| f.first_foreign_at)
            .is_none_or(|t| ctx.now <= t + self.config.freeze / 2);
        if prompt {
            return self.submit_candidate(ctx, out);
        }
        let es = self.ranking_steward();
        let mine = Self::rank(self.commit_batch(ctx).len(), self.me, es);
        let best_held = self.freeze.as_ref().and_then(|f| {
            f.candidates
                .iter()
                .map(|c| Self::rank(c.actions, c.steward, es))
                .min()
        });
        match best_held {
            Some(best) if mine < best => {
                tracing::debug!(conversation = %self.name, "late steward: withholding a candidate that would outrank one already out");
            }
            _ => self.submit_candidate(ctx, out),
        }
    }

    /// The changes our commit carries: FIFO, at most `commit_batch_max`, only the urgent
    /// target when one is set, skipping no-ops and adds openmls would refuse (a key
    /// package used or whose leaf key is a member's, or a second add of one leaf key in
    /// this batch: one such add fails the whole commit).
    fn commit_batch<P: OpenMlsProvider>(&self, ctx: &Ctx<'_, P>) -> Vec<Approved> {
        let members = self.members();
        let mut leaf_keys = Vec::new();
        self.gov.approved
            .iter()
            .filter(|a| {
                self.gov.urgent_target
                    .is_none_or(|t| a.change == Change::Remove { member: t })
            })
            .filter(|a| match &a.change {
                Change::Add { member, rejoin, .. } => *rejoin || !members.contains(member),
                Change::Remove { member } => members.contains(member),
            })
            .filter(|a| match &a.change {
                Change::Add {
                    member,
                    key_package,
                    ..
                } => {
                    if let Some(why) = self.add_blocked(ctx, member, key_package) {
                        tracing::info!(conversation = %self.name, id = a.id, %why, "approved add left out of our commit");
                        return false;
                    }
                    let key = crate::mls::key_package_leaf_key(ctx.provider, key_package);
                    if key.as_ref().is_some_and(|k| leaf_keys.contains(k)) {
                        tracing::info!(conversation = %self.name, id = a.id, "approved add shares a leaf key with an earlier one: left out of our commit");
                        return false;
                    }
                    leaf_keys.extend(key);
                    true
                }
                Change::Remove { .. } => true,
            })
            .take(self.config.commit_batch_max)
            .cloned()
            .collect()
    }

    fn submit_candidate<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        let batch = self.commit_batch(ctx);
        if batch.is_empty() {
            return;
        }
        let adds: Vec<Vec<u8>> = batch
            .iter()
            .filter_map(|a| match &a.change {
                Change::Add { key_package, .. } => Some(key_package.clone()),
                _ => None,
            })
            .collect();
        let members = self.members();
        // A rejoining member's old leaf goes in the commit that adds its new one.
        let removes: Vec<MemberId> = batch
            .iter()
            .filter_map(|a| match &a.change {
                Change::Remove { member } => Some(*member),
                Change::Add {
                    member,
                    rejoin: true,
                    ..
                } if members.contains(member) => Some(*member),
                _ => None,
            })
            .collect();
        let evidence: Vec<cpb::Proposal> = batch
            .iter()
            .map(|a| a.id)
            .chain(self.election_proof)
            .filter_map(|id| self.gov.consensus.evidence(id))
            .collect();
        // The commit signs the digest of the evidence that rides beside it (see
        // `evidence_digest`): no copy with other evidence can pass for ours.
        let aad = evidence_digest(&evidence).to_vec();
        let Some(mls) = self.mls.as_mut() else { return };
        let commit =
            match mls.create_commit_with_aad(ctx.provider, &ctx.identity.mls, &adds, &removes, aad)
            {
                Ok(c) => c,
                Err(e) => {
                    out.event(Event::Error {
                        operation: "create commit",
                        message: e.to_string(),
                    });
                    return;
                }
            };
        let epoch = self.epoch();
        let joiners: Vec<MemberId> = batch
            .iter()
            .filter_map(|a| match &a.change {
                Change::Add { member, .. } => Some(*member),
                _ => None,
            })
            .collect();
        let sealed_welcome = match &commit.welcome {
            // The candidate must still fit a relay message with the welcome inside.
            Some(w) if commit.commit.len() + w.len() > SEALED_WELCOME_LIMIT => {
                tracing::info!(conversation = %self.name, bytes = w.len(), "welcome too large to carry in the candidate");
                Vec::new()
            }
            Some(w) => self
                .seal_candidate_welcome(ctx, w, &joiners, &commit.commit)
                .unwrap_or_else(|e| {
                    tracing::warn!(conversation = %self.name, error = %e, "could not seal our welcome into the candidate");
                    Vec::new()
                }),
            None => Vec::new(),
        };
        let mut cand = pb::CommitCandidate {
            conversation: self.name.clone(),
            mls_proposals: commit.proposals,
            commit_message: commit.commit,
            steward_id: self.me.to_vec(),
            epoch,
            evidence,
            sealed_welcome,
        };
        if !cand.sealed_welcome.is_empty() && cand.encoded_len() > SEALED_WELCOME_LIMIT {
            // Evidence and proposals count too: the whole candidate must fit.
            tracing::info!(conversation = %self.name, bytes = cand.encoded_len(), "candidate too large to carry its welcome");
            cand.sealed_welcome.clear();
        }
        let bytes = cand.encode_to_vec();
        let hash = commit_hash(&cand.commit_message);
        let actions = adds.len() + removes.len();
        let resend_gap = self.resend_gap();
        if let Some(f) = self.freeze.as_mut() {
            f.own_pending = true;
            f.next_resend = Some(ctx.now + resend_gap);
            f.candidates.push(Candidate {
                bytes,
                hash,
                steward: self.me,
                actions,
                local: true,
                welcome: commit.welcome,
                sealed_opens: true,
                evidence_aad: Vec::new(),
                evidence_bound: true,
            });
        }
        tracing::info!(conversation = %self.name, epoch, actions, "submitted commit candidate");
        let env = pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::CommitCandidate(cand)),
        };
        out.send(Subtopic::AppMsg, env.encode_to_vec());
    }

    /// A second copy of a candidate we hold (same commit, already authenticated). Nothing
    /// signs the candidate around the commit, so anyone can strip a copy and race the real
    /// one here. Its evidence counts as the first copy's did (by signed votes only), and a
    /// sealed welcome that opens replaces a held one that does not: that field alone, so a
    /// copy cannot bring in anything else with it.
    fn merge_second_copy<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        held: usize,
        c: &pb::CommitCandidate,
        steward: MemberId,
    ) {
        let Some(cand) = self.freeze.as_ref().and_then(|f| f.candidates.get(held)) else {
            return;
        };
        if cand.local || cand.steward != steward {
            return;
        }
        // The held copy came without the evidence its steward signed (stripped or
        // altered on the way): a copy that carries that evidence replaces it, and counts.
        // Any other evidence is not the steward's and costs nothing to ignore.
        if !cand.evidence_bound && cand.evidence_aad == evidence_digest(&c.evidence) {
            let actions = cand.actions;
            let Ok(mut fixed) = pb::CommitCandidate::decode(cand.bytes.as_slice()) else {
                return;
            };
            fixed.evidence = c.evidence.clone();
            if let Some(cand) = self
                .freeze
                .as_mut()
                .and_then(|f| f.candidates.get_mut(held))
            {
                cand.bytes = fixed.encode_to_vec();
                cand.evidence_bound = true;
            }
            if self.entitled_to_commit(&steward, c.epoch) {
                self.adopt_commit_evidence(
                    ctx,
                    out,
                    judged_evidence(&c.evidence, actions),
                    Judge::Now,
                );
            }
        }
        self.prefer_sealed_copy(ctx, held, c, steward);
    }

    fn prefer_sealed_copy<P: OpenMlsProvider>(
        &mut self,
        ctx: &Ctx<'_, P>,
        held: usize,
        c: &pb::CommitCandidate,
        steward: MemberId,
    ) {
        let Some(cand) = self.freeze.as_ref().and_then(|f| f.candidates.get(held)) else {
            return;
        };
        if cand.local || cand.steward != steward || c.sealed_welcome.is_empty() {
            return;
        }
        if cand.sealed_opens
            || c.sealed_welcome.is_empty()
            || c.sealed_welcome.len() > SEALED_WELCOME_LIMIT
        {
            return;
        }
        let Ok(mut merged) = pb::CommitCandidate::decode(cand.bytes.as_slice()) else {
            return;
        };
        // Whether the held copy's opens is found out here, once, not for every candidate
        // on arrival: only a second copy needs to know.
        if !merged.sealed_welcome.is_empty() && self.sealed_welcome_opens(ctx, &merged, steward) {
            if let Some(cand) = self
                .freeze
                .as_mut()
                .and_then(|f| f.candidates.get_mut(held))
            {
                cand.sealed_opens = true;
            }
            return;
        }
        if !self.sealed_welcome_opens(ctx, c, steward) {
            return;
        }
        merged.sealed_welcome = c.sealed_welcome.clone();
        if let Some(cand) = self
            .freeze
            .as_mut()
            .and_then(|f| f.candidates.get_mut(held))
        {
            cand.bytes = merged.encode_to_vec();
            cand.sealed_opens = true;
        }
    }

    /// Approved adds that no commit can carry any more (this commit used their key
    /// package, or put their leaf key in the tree for another member) are dropped: kept,
    /// they would open a freeze round after every commit that no steward can fill.
    fn drop_blocked_adds<P: OpenMlsProvider>(&mut self, ctx: &Ctx<'_, P>, out: &mut Output) {
        let blocked: Vec<(u32, String)> = self
            .gov
            .approved
            .iter()
            .filter_map(|a| match &a.change {
                Change::Add {
                    member,
                    key_package,
                    ..
                } => self
                    .add_blocked(ctx, member, key_package)
                    .map(|why| (a.id, why)),
                Change::Remove { .. } => None,
            })
            .collect();
        for (id, why) in blocked {
            self.gov.approved.retain(|a| a.id != id);
            if let Some(p) = self.gov.proposals.get_mut(&id) {
                p.status = ProposalStatus::Rejected;
            }
            out.reject(InboundKind::ApprovedAdd, RejectCause::Invalid, why);
        }
    }

    /// How often a candidate is re-sent: four times per freeze window (our own during the
    /// round, the winner after it).
    fn resend_gap(&self) -> Millis {
        (self.config.freeze / 4).max(1)
    }

    fn resend_candidate(&mut self, now: Millis, out: &mut Output) {
        let gap = self.resend_gap();
        let Some(f) = self.freeze.as_mut() else {
            return;
        };
        let Some(at) = f.next_resend else { return };
        if now < at {
            return;
        }
        f.next_resend = (now.saturating_add(gap) < f.started_at.saturating_add(self.config.freeze))
            .then_some(now.saturating_add(gap));
        if let Some(env) = f
            .candidates
            .iter()
            .find(|c| c.local)
            .and_then(|c| candidate_envelope(&c.bytes))
        {
            out.send(Subtopic::AppMsg, env);
        }
    }

    /// See [`TrailingWinner`].
    pub(super) fn tick_trailing_winner(&mut self, now: Millis, out: &mut Output) {
        let gap = self.resend_gap();
        let Some(w) = self.trailing.as_mut() else {
            return;
        };
        if now < w.next {
            return;
        }
        w.next = now + gap;
        out.send(Subtopic::AppMsg, w.envelope.clone());
        if w.next > w.until {
            self.trailing = None;
        }
    }

    /// A peer's candidate arrived.
    pub(super) fn on_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: pb::CommitCandidate,
        arrived_at: Millis,
    ) {
        let epoch = self.epoch();
        if c.conversation != self.name {
            return;
        }
        if c.epoch > epoch {
            self.hint(ctx.now, c.epoch);
            return;
        }
        if c.epoch < epoch {
            return;
        }
        let steward = match MemberId::from_slice(&c.steward_id) {
            Ok(s) => s,
            Err(_) => {
                return out.reject(
                    InboundKind::Commit,
                    RejectCause::Malformed,
                    "candidate without a steward id",
                );
            }
        };
        if c.commit_message.is_empty() {
            return out.reject(
                InboundKind::Commit,
                RejectCause::Malformed,
                "empty candidate",
            );
        }
        let hash = commit_hash(&c.commit_message);
        if self.committed_hashes.contains(&hash) {
            return;
        }
        if let Some(held) = self
            .freeze
            .as_ref()
            .and_then(|f| f.candidates.iter().position(|x| x.hash == hash))
        {
            self.merge_second_copy(ctx, out, held, &c, steward);
            return;
        }
        // Nothing in a candidate counts before its commit is known to be the named
        // steward's: stage it now (the staging is kept aside for selection). Junk and
        // forged steward ids are refused here and take no slot.
        let (actions, evidence_aad) = match self.authenticate_candidate(ctx, &c, steward) {
            Ok(a) => a,
            Err(why) => {
                // A candidate for our epoch that does not stage may come from another
                // branch of a fork (see `fork`).
                self.fork_hint(ctx);
                return out.reject(InboundKind::Commit, RejectCause::Unauthenticated, why);
            }
        };
        // Staged, and signed by the steward it names: from a steward entitled to commit,
        // its evidence counts now (by signed votes only; see `evidence`). A member whose
        // own tally missed votes learns the decision before its window, and one that
        // rejected a change by timeout sees the votes that overturn it.
        let evidence_bound = evidence_aad == evidence_digest(&c.evidence);
        if evidence_bound && self.entitled_to_commit(&steward, c.epoch) {
            self.adopt_commit_evidence(ctx, out, judged_evidence(&c.evidence, actions), Judge::Now);
        }
        let late = matches!(
            self.state,
            ConversationState::Working | ConversationState::Reelection
        ) && !self.gov.approved.is_empty();
        if late {
            self.open_freeze(ctx.now, out);
        }
        if self.state != ConversationState::Freezing {
            if matches!(
                self.state,
                ConversationState::Working | ConversationState::Reelection
            ) {
                // One entry per commit: copies are not kept beside it, and one carrying the
                // evidence its steward signed replaces one that does not.
                let bytes = c.encode_to_vec();
                let same = self.early_stash.iter().position(|(b, _)| {
                    pb::CommitCandidate::decode(b.as_slice())
                        .is_ok_and(|x| commit_hash(&x.commit_message) == hash)
                });
                match same {
                    Some(k) if evidence_bound => self.early_stash[k].0 = bytes,
                    Some(_) => {}
                    None if self.early_stash.len() < 8 => {
                        tracing::debug!(conversation = %self.name, "candidate before any approved change: kept for later");
                        self.early_stash.push((bytes, arrived_at));
                    }
                    None => {}
                }
                return;
            }
            return out.reject(
                InboundKind::Commit,
                RejectCause::Invalid,
                "candidate outside a freeze round with nothing approved",
            );
        }
        let cap = self.members().len().max(1);
        let Some(f) = self.freeze.as_mut() else {
            return;
        };
        // Two per steward: a steward that sends two different candidates (a broken one and
        // its honest one) must not fork the group by which one each member heard first;
        // keeping both lets selection validate each, everywhere alike.
        if f.candidates.iter().filter(|x| x.steward == steward).count() >= 2
            || f.candidates.len() >= 2 * cap
        {
            return out.reject(
                InboundKind::Commit,
                RejectCause::OverLimit,
                format!("extra candidate from {steward} dropped"),
            );
        }
        f.candidates.push(Candidate {
            bytes: c.encode_to_vec(),
            hash,
            steward,
            actions,
            local: false,
            welcome: None,
            sealed_opens: false,
            evidence_aad,
            evidence_bound,
        });
        f.first_foreign_at = Some(f.first_foreign_at.map_or(arrived_at, |t| t.min(arrived_at)));
        if late {
            self.submit_if_late_is_harmless(ctx, out);
        }
        // The last candidate the round waits for is in: select now, as `tick_phase`
        // would at the next tick. A member with nothing else scheduled slept until its
        // window's end, and a catch-up on the group's winner could overtake it: it then
        // never judged (nor reported, nor scored) the candidates it held. A steward that
        // joined the round just now (late) has just sent its own candidate once: it
        // selects at its next tick, after re-sending it.
        if !late
            && self.state == ConversationState::Freezing
            && self
                .freeze
                .as_ref()
                .is_some_and(|f| self.all_candidates_in(f))
        {
            self.finalize_freeze(ctx, out);
        }
    }

    /// Judges the candidates kept by `on_candidate` once a change is approved; drops them
    /// when our epoch moved on.
    pub(super) fn replay_early_candidates<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if self.early_stash.is_empty() || self.gov.approved.is_empty() {
            return;
        }
        let epoch = self.epoch();
        for (bytes, at) in std::mem::take(&mut self.early_stash) {
            if let Ok(c) = pb::CommitCandidate::decode(bytes.as_slice())
                && c.epoch == epoch
            {
                self.on_candidate(ctx, out, c, at);
            }
        }
    }

    /// Selection: rank, then apply the best candidate that validates.
    pub(super) fn finalize_freeze<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        self.set_state(out, ConversationState::Selection);
        let mut round = self.freeze.take().unwrap_or_default();
        let epoch = self.epoch();
        // Learn the elections the candidates carry before ranking: ranking names the
        // list's epoch steward, and a member that missed the election behind the list
        // (it caught up on the epoch's commit after the group elected) ranked with its
        // old list and applied another winner than the group, a fork. Every candidate
        // here staged and is signed by the member it names, and an election counts only
        // by its signed votes, as from any member's `ProposalState`.
        let elections: Vec<_> = round
            .candidates
            .iter()
            .filter(|c| !c.local && c.evidence_bound)
            .filter_map(|c| {
                pb::CommitCandidate::decode(c.bytes.as_slice())
                    .ok()
                    .map(|d| (d.evidence, c.actions))
            })
            .flat_map(|(evidence, actions)| {
                let judged = judged_evidence(&evidence, actions).len();
                evidence.into_iter().take(judged)
            })
            .filter(|p| {
                matches!(
                    Action::from_payload(&p.payload),
                    Ok(Action::Election { .. })
                )
            })
            .collect();
        if !elections.is_empty() {
            self.adopt_commit_evidence(ctx, out, &elections, Judge::Now);
        }
        let (live_es, _) = self
            .stewards
            .as_ref()
            .map(|l| l.live_roles(epoch, |m| self.eligible(m)))
            .unwrap_or((None, None));
        // Rank, then the smallest commit hash.
        let es = self.ranking_steward();
        round
            .candidates
            .sort_by_key(|c| (Self::rank(c.actions, c.steward, es), c.hash));
        tracing::debug!(
            conversation = %self.name,
            epoch,
            candidates = ?round.candidates.iter().map(|c| (c.steward, c.actions)).collect::<Vec<_>>(),
            "selection"
        );
        let steward = self.stewards.as_ref().is_some_and(|l| l.contains(&self.me));
        let window_end = round.deadline(self.config.freeze);
        let mut winner = None;
        let mut tried: Vec<MemberId> = Vec::new();
        for (i, cand) in round.candidates.iter().enumerate() {
            let result = if cand.local {
                self.apply_local(ctx, cand, epoch)
            } else {
                self.try_remote(ctx, out, cand, epoch, round.own_pending, Judge::Now)
            };
            tried.push(cand.steward);
            if let Some(w) = result {
                winner = Some((i, w));
                break;
            }
        }
        match winner {
            Some((i, w)) => {
                if (steward || round.candidates[i].local)
                    && let Some(envelope) = candidate_envelope(&round.candidates[i].bytes)
                {
                    self.trailing = Some(TrailingWinner {
                        envelope,
                        next: ctx.now + self.resend_gap(),
                        until: window_end.max(ctx.now) + self.config.freeze / 2,
                    });
                }
                // Honest losers: stewards' later candidates that we never had to try.
                if let Some(list) = &self.stewards {
                    for c in &round.candidates[i + 1..] {
                        if list.contains(&c.steward) && c.steward != w.committer {
                            self.scores
                                .apply(&c.steward, ScoreEvent::HonestCommitAttempt);
                        }
                    }
                }
                if let Some(es) = live_es
                    && es != w.committer
                    && es != self.me
                {
                    self.scores.apply(&es, ScoreEvent::CensorshipInactivity);
                }
                self.on_committed(ctx, out, w);
            }
            None => {
                if round.own_pending
                    && let Some(mls) = self.mls.as_mut()
                {
                    let _ = mls.discard_own_commit(ctx.provider);
                }
                self.no_candidate(ctx, out, live_es);
            }
        }
    }

    pub(super) fn apply_local<P: OpenMlsProvider>(
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

    /// Stages a remote candidate's commit; a commit that does not stage is refused at no
    /// one's cost (the wire steward id is forgeable; the reference's later behaviour).
    fn stage_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: &pb::CommitCandidate,
        steward: MemberId,
    ) -> Option<StagedCommitInfo> {
        let mls = self.mls.as_mut()?;
        match mls.stage_remote_commit(ctx.provider, &c.mls_proposals, &c.commit_message) {
            Ok(i) => Some(i),
            Err(e) => {
                out.reject(
                    InboundKind::Commit,
                    RejectCause::Unprocessable,
                    format!("candidate from {steward} does not stage: {e}"),
                );
                None
            }
        }
    }

    /// Drops a staged commit that failed validation and charges its signer.
    fn refuse_staged<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        (who, ev, why): (MemberId, ScoreEvent, String),
    ) -> Option<Winner> {
        if let Some(mls) = self.mls.as_mut() {
            let _ = mls.discard_staged(ctx.provider);
        }
        self.scores.apply(&who, ev);
        out.reject(InboundKind::Commit, RejectCause::Invalid, why);
        None
    }

    /// Stages a candidate to learn who signed it, and keeps the staging aside for when
    /// the candidate is applied (`try_remote`). Returns how many
    /// membership changes it makes (for ranking), or why it is refused: it does not stage
    /// (junk, or a forged steward id: nobody to charge), or a member signed it under
    /// another steward's name or with others' proposals. Only a signer not entitled to
    /// commit is charged: the steward id and the proposals are not signed, so anyone can
    /// change them in a copy of an entitled steward's real commit, as often as they like.
    fn authenticate_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        c: &pb::CommitCandidate,
        claimed: MemberId,
    ) -> Result<(usize, Vec<u8>), String> {
        let key = refusal_key(c);
        if self.refused_candidates.contains(&key) {
            return Err(format!("candidate naming {claimed} was refused before"));
        }
        let mls = self.mls.as_mut().ok_or("no MLS group")?;
        let staged = mls.stage_and_keep(ctx.provider, key, &c.mls_proposals, &c.commit_message);
        let verdict = staged
            .map_err(|e| format!("candidate naming {claimed} does not stage: {e}"))
            .and_then(|info| {
                Self::check_signer(&info, claimed)
                    .map(|()| (info.adds.len() + info.removes.len(), info.aad))
                    .map_err(|(who, ev, why)| {
                        if !self.entitled_to_commit(&who, c.epoch) {
                            self.scores.apply(&who, ev);
                        }
                        why
                    })
            });
        if verdict.is_err() {
            self.refused_candidates.push_back(key);
            while self.refused_candidates.len() > REFUSED_CAP {
                self.refused_candidates.pop_front();
            }
        }
        verdict
    }

    /// The commit was signed by the steward the candidate names, and bundles only that
    /// steward's proposals.
    fn check_signer(
        info: &StagedCommitInfo,
        claimed: MemberId,
    ) -> Result<(), (MemberId, ScoreEvent, String)> {
        let sender = info.commit_sender;
        if sender != claimed {
            return Err((
                sender,
                ScoreEvent::BrokenCommit,
                format!("candidate claims steward {claimed} but was signed by {sender}"),
            ));
        }
        if let Some(other) = info.proposal_senders.iter().find(|s| **s != sender) {
            return Err((
                sender,
                ScoreEvent::BrokenCommit,
                format!("commit by {sender} bundles a proposal by {other}"),
            ));
        }
        Ok(())
    }

    /// Stages a remote candidate and validates it; merges it if valid.
    pub(super) fn try_remote<P: OpenMlsProvider>(
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

    /// Whether `m` may commit at `epoch`: on the steward list (any member in Recovery).
    fn entitled_to_commit(&self, m: &MemberId, epoch: u64) -> bool {
        self.mode == OperatingMode::Recovery
            || self
                .stewards
                .as_ref()
                .is_some_and(|l| !l.is_exhausted(epoch) && l.contains(m))
    }

    /// The commit validation service (RFC; reference §4.5 step 5), after `check_signer`
    /// and after the commit's evidence was adopted: the committer is on the steward list
    /// (unless in Recovery mode), and every change is a decided YES we hold. Evidence
    /// proves a decision only by signed votes, so an approved change is the only proof.
    fn validate_staged<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        c: &pb::CommitCandidate,
        info: &StagedCommitInfo,
    ) -> Result<(), (MemberId, ScoreEvent, String)> {
        let sender = info.commit_sender;
        if !self.entitled_to_commit(&sender, c.epoch) {
            {
                return Err((
                    sender,
                    ScoreEvent::MisbehavingCommit,
                    format!("{sender} is not a steward for epoch {}", c.epoch),
                ));
            }
        }
        let mut justified: BTreeSet<(bool, MemberId)> = self
            .gov
            .approved
            .iter()
            .map(|a| (a.change.is_add(), a.change.member()))
            .collect();
        // A second rejoin of a member the group decided YES is justified even when we did
        // not queue it (we settled it as moot: a commit since we learnt of it added the
        // member again; or an earlier rejoin of the member was queued): a steward that
        // judged otherwise commits it, and refusing that commit left half the group an
        // epoch behind for good (lossy seed 30 of the equal-sides decided-then-split).
        // It only swaps the member's leaf once more, for its own announced key package.
        for (m, kp) in info.adds.iter().zip(&info.added_key_packages) {
            if self.decided_rejoin(ctx, m, kp) {
                justified.insert((true, *m));
            }
        }
        let actions: Vec<(bool, MemberId)> = info
            .adds
            .iter()
            .map(|m| (true, *m))
            .chain(info.removes.iter().map(|m| (false, *m)))
            .collect();
        let distinct: BTreeSet<_> = actions.iter().copied().collect();
        if distinct.len() != actions.len() {
            return Err((
                sender,
                ScoreEvent::BrokenMlsProposal,
                "commit repeats a change".into(),
            ));
        }
        // Removing a rejoining member's old leaf is justified by its accepted rejoin, in
        // the commit that adds it again.
        let rejoining = |m: &MemberId| {
            info.adds.contains(m)
                && (justified.contains(&(true, *m))
                    || self.gov.approved.iter().any(|a| {
                        matches!(&a.change, Change::Add { member, rejoin: true, .. } if member == m)
                    }))
        };
        if let Some((add, m)) = actions
            .iter()
            .find(|(add, m)| !justified.contains(&(*add, *m)) && (*add || !rejoining(m)))
        {
            return Err((
                sender,
                ScoreEvent::BrokenMlsProposal,
                format!(
                    "commit by {sender} {} {m} without an accepted vote",
                    if *add { "adds" } else { "removes" }
                ),
            ));
        }
        if actions.is_empty() {
            return Err((
                sender,
                ScoreEvent::BrokenMlsProposal,
                "commit carries no change".into(),
            ));
        }
        Ok(())
    }

    /// Whether we hold a rejoin of `m` with the key package hashed `kp`, decided YES but
    /// not queued (settled as moot, or behind an earlier rejoin of `m` in the queue, which
    /// holds one add per member), its key package not used (see `validate_staged`).
    fn decided_rejoin<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        m: &MemberId,
        kp: &[u8; 32],
    ) -> bool {
        // Decided lately (learnt within the catch-up window), and not the member's
        // current leaf: swapping a leaf for itself would leave the member waiting for a
        // welcome to a key package whose keys it used up.
        let recent = self
            .epoch()
            .saturating_sub(self.config.catch_up_window as u64);
        let holds_leaf = |key_package: &[u8]| {
            self.mls
                .as_ref()
                .and_then(|g| g.leaf_key_holder(ctx.provider, key_package))
                == Some(*m)
        };
        self.members().contains(m)
            && !self.used_key_packages.contains(kp)
            && self.gov.proposals.values().any(|t| {
                t.epoch >= recent
                    && matches!(
                        t.status,
                        ProposalStatus::Committed | ProposalStatus::Accepted
                    )
                    && self.gov.consensus.outcome(t.id) == Some(true)
                    && matches!(&t.action, Action::Add { member, key_package, announcement }
                        if member == m
                            && join::announcement_rejoin(announcement)
                            && join::key_package_hash(key_package) == *kp
                            && !holds_leaf(key_package))
            })
    }

    /// Nothing valid arrived: with approved work this is a missed commit → Reelection.
    fn no_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        live_es: Option<MemberId>,
    ) {
        if self.gov.approved.is_empty() {
            self.set_state(out, ConversationState::Working);
            return;
        }
        if let Some(es) = live_es {
            if es != self.me {
                self.scores.apply(&es, ScoreEvent::CensorshipInactivity);
            }
            self.silent.insert(es);
        }
        tracing::warn!(conversation = %self.name, epoch = self.epoch(), "no valid commit candidate: reelection");
        self.set_state(out, ConversationState::Reelection);
        self.reelection_since = Some(ctx.now);
        // The election waits for the probe: we may just have missed the round.
        self.start_probe(ctx.now);
        self.check_score_removals(ctx, out);
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
            if !self.gov.resolved.contains(&id) {
                self.gov.resolved.push_back(id);
            }
            out.event(Event::ProposalDecided { id, accepted: true });
        }
        while self.gov.resolved.len() > RESOLVED_CAP {
            self.gov.resolved.pop_front();
        }
    }

    /// Bookkeeping after a commit merged (ours, a peer's, or one fetched by catch-up).
    pub(super) fn on_committed<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: Winner,
    ) {
        self.freeze = None;
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
        if w.self_removed {
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
            return;
        }
        // Early welcomes were into the epoch we just reached by another commit.
        self.early_welcome.clear();
        let members = self.members();
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
        self.settle_carried_proposals(out, &w.candidate, &members);
        if self
            .gov
            .urgent_target
            .is_some_and(|t| !members.contains(&t))
        {
            self.gov.urgent_target = None;
        }
        self.scores
            .apply(&w.committer, ScoreEvent::SuccessfulCommit);
        self.scores
            .sync_roster(&members, self.config.default_peer_score);
        self.note_group_size(ctx.now);
        self.note_removed(w.old_epoch, &w.removed);
        self.fork_watch.note_removed(&w.removed, ctx.now);
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
        self.set_state(out, ConversationState::Working);
        self.after_commit_stewardship(ctx, out);
        if let Some(welcome) = w.welcome {
            self.send_welcome(ctx, out, welcome, w.added);
        } else if let Some(mw) = w.peer_welcome {
            self.keep_candidate_welcome(ctx, out, mw, w.added);
        }
        self.replay_future(ctx, out);
        self.check_score_removals(ctx, out);
    }
}
