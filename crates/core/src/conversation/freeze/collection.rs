//! Collecting peers' candidates: screening and authenticating each on arrival, keeping
//! one entry per commit (a second copy may better the first), and candidates that came
//! before anything was approved.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::conversation::evidence::Judge;
use crate::proto::pb;

impl Conversation {
    /// A peer's candidate arrived.
    pub(in crate::conversation) fn on_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: pb::CommitCandidate,
        arrived_at: Millis,
    ) {
        let Some((steward, hash)) = self.screen_candidate(ctx.now, out, &c) else {
            return;
        };
        if let Some(held) = self.phase.round().and_then(|f| f.position(&hash)) {
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
        let evidence_bound =
            self.adopt_signed_evidence(ctx, out, &c, steward, actions, &evidence_aad);
        let late = matches!(
            self.state(),
            ConversationState::Working | ConversationState::Reelection
        ) && !self.gov.approved.is_empty();
        if late {
            self.open_freeze(ctx.now, out);
        }
        if self.state() != ConversationState::Freezing {
            return self.stash_early_candidate(out, &c, hash, evidence_bound, arrived_at);
        }
        let candidate = Candidate {
            bytes: c.encode_to_vec(),
            hash,
            steward,
            actions,
            local: false,
            welcome: None,
            sealed_opens: false,
            evidence_aad,
            evidence_bound,
        };
        let cap = self.members().len().max(1);
        let Some(f) = self.phase.round_mut() else {
            return;
        };
        if !f.add_peer(candidate, arrived_at, cap) {
            return out.reject(
                InboundKind::Commit,
                RejectCause::OverLimit,
                format!("extra candidate from {steward} dropped"),
            );
        }
        if late {
            // Having just sent its own candidate once, a steward that joined the round
            // now selects at its next tick, after re-sending it.
            self.submit_if_late_is_harmless(ctx, out);
        } else {
            self.select_if_all_in(ctx, out);
        }
    }

    /// The last candidate the round waits for is in: select now, as `tick_phase` would
    /// at the next tick. A member with nothing else scheduled slept until its window's
    /// end, and a catch-up on the group's winner could overtake it: it then never judged
    /// (nor reported, nor scored) the candidates it held.
    fn select_if_all_in<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        if self
            .phase
            .round()
            .is_some_and(|f| self.all_candidates_in(f))
        {
            self.finalize_freeze(ctx, out);
        }
    }

    /// The checks a candidate passes before anything is staged: for our conversation and
    /// epoch (a later one is a hint), naming a steward, with a commit we have not
    /// applied. Returns the steward it names and its commit hash.
    fn screen_candidate(
        &mut self,
        now: Millis,
        out: &mut Output,
        c: &pb::CommitCandidate,
    ) -> Option<(MemberId, [u8; 32])> {
        let epoch = self.epoch();
        if c.conversation != self.name {
            return None;
        }
        if c.epoch > epoch {
            self.hint(now, c.epoch);
            return None;
        }
        if c.epoch < epoch {
            return None;
        }
        let steward = match MemberId::from_slice(&c.steward_id) {
            Ok(s) => s,
            Err(_) => {
                out.reject(
                    InboundKind::Commit,
                    RejectCause::Malformed,
                    "candidate without a steward id",
                );
                return None;
            }
        };
        if c.commit_message.is_empty() {
            out.reject(
                InboundKind::Commit,
                RejectCause::Malformed,
                "empty candidate",
            );
            return None;
        }
        let hash = commit_hash(&c.commit_message);
        if self.committed_hashes.contains(&hash) {
            return None;
        }
        Some((steward, hash))
    }

    /// Staged, and signed by the steward it names: from a steward entitled to commit,
    /// its evidence counts now (by signed votes only; see `evidence`). A member whose
    /// own tally missed votes learns the decision before its window, and one that
    /// rejected a change by timeout sees the votes that overturn it. Returns whether the
    /// evidence is the list the commit signs (`evidence_aad`).
    fn adopt_signed_evidence<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: &pb::CommitCandidate,
        steward: MemberId,
        actions: usize,
        evidence_aad: &[u8],
    ) -> bool {
        let evidence_bound = evidence_aad == evidence_digest(&c.evidence);
        if evidence_bound && self.entitled_to_commit(&steward, c.epoch) {
            self.adopt_commit_evidence(ctx, out, judged_evidence(&c.evidence, actions), Judge::Now);
        }
        evidence_bound
    }

    /// A candidate outside a freeze round: in Working or Reelection (nothing approved
    /// yet, or the round would have opened) it is kept for `replay_early_candidates`;
    /// anywhere else it is refused.
    fn stash_early_candidate(
        &mut self,
        out: &mut Output,
        c: &pb::CommitCandidate,
        hash: [u8; 32],
        evidence_bound: bool,
        arrived_at: Millis,
    ) {
        if !matches!(
            self.state(),
            ConversationState::Working | ConversationState::Reelection
        ) {
            return out.reject(
                InboundKind::Commit,
                RejectCause::Invalid,
                "candidate outside a freeze round with nothing approved",
            );
        }
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
    }

    /// Whether candidates kept before anything was approved can be judged now: some are
    /// kept and something is approved (see `schedule`; `now` is not needed).
    pub(in crate::conversation) fn early_candidates_ready(&self, _now: Millis) -> bool {
        !self.early_stash.is_empty() && !self.gov.approved.is_empty()
    }

    /// Judges the candidates kept by `on_candidate` once a change is approved; drops them
    /// when our epoch moved on.
    pub(in crate::conversation) fn replay_early_candidates<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if !self.early_candidates_ready(ctx.now) {
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
        let Some(cand) = self.phase.round().and_then(|f| f.candidates.get(held)) else {
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
                .phase
                .round_mut()
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

    /// A second copy of a held candidate whose sealed welcome opens replaces the held
    /// one's when that does not (see `merge_second_copy`).
    fn prefer_sealed_copy<P: OpenMlsProvider>(
        &mut self,
        ctx: &Ctx<'_, P>,
        held: usize,
        c: &pb::CommitCandidate,
        steward: MemberId,
    ) {
        let Some(cand) = self.phase.round().and_then(|f| f.candidates.get(held)) else {
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
                .phase
                .round_mut()
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
            .phase
            .round_mut()
            .and_then(|f| f.candidates.get_mut(held))
        {
            cand.bytes = merged.encode_to_vec();
            cand.sealed_opens = true;
        }
    }
}
