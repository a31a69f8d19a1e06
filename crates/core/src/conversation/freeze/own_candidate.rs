//! Our own candidate: whether we may commit, what our commit carries, submitting it,
//! and re-sending it within the window.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::mls::CommitOutput;
use crate::proto::{cpb, pb};

impl Conversation {
    /// May we submit a candidate this epoch?
    pub(super) fn may_commit(&self) -> bool {
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

    /// An election decided during our freeze round made us a steward: take part, as a
    /// late steward would.
    pub(in crate::conversation) fn submit_if_new_steward<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if self.phase.round().is_some_and(|f| f.own().is_none()) {
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
    pub(super) fn submit_if_late_is_harmless<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        if !self.may_commit() {
            return;
        }
        let prompt = self
            .phase
            .round()
            .and_then(|f| f.first_foreign_at)
            .is_none_or(|t| ctx.now <= t + self.config.freeze / 2);
        if prompt {
            return self.submit_candidate(ctx, out);
        }
        let es = self.ranking_steward();
        let mine = Self::rank(self.commit_batch(ctx).len(), self.me, es);
        let best_held = self.phase.round().and_then(|f| {
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

    /// Commits [`Self::commit_batch`] as our candidate: kept in the round (which re-sends
    /// it) and sent now.
    pub(super) fn submit_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let batch = self.commit_batch(ctx);
        if batch.is_empty() {
            return;
        }
        let (adds, removes) = self.batch_changes(&batch);
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
        let sealed_welcome = self.sealed_welcome(ctx, &commit, &batch);
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
        let actions = adds.len() + removes.len();
        self.keep_own_candidate(ctx.now, &cand, actions, commit.welcome);
        tracing::info!(conversation = %self.name, epoch, actions, "submitted commit candidate");
        let env = pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::CommitCandidate(cand)),
        };
        out.send(Subtopic::AppMsg, env.encode_to_vec());
    }

    /// What our commit of `batch` adds (key packages) and removes.
    fn batch_changes(&self, batch: &[Approved]) -> (Vec<Vec<u8>>, Vec<MemberId>) {
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
        (adds, removes)
    }

    /// Our commit's welcome sealed for the candidate (see `seal_candidate_welcome`), or
    /// nothing when there is none, it does not fit, or it cannot be sealed.
    fn sealed_welcome<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        commit: &CommitOutput,
        batch: &[Approved],
    ) -> Vec<u8> {
        let joiners: Vec<MemberId> = batch
            .iter()
            .filter_map(|a| match &a.change {
                Change::Add { member, .. } => Some(*member),
                _ => None,
            })
            .collect();
        match &commit.welcome {
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
        }
    }

    /// Keeps our candidate `cand` (making `actions` changes, with our commit's `welcome`)
    /// in the round, to be re-sent from there.
    fn keep_own_candidate(
        &mut self,
        now: Millis,
        cand: &pb::CommitCandidate,
        actions: usize,
        welcome: Option<Vec<u8>>,
    ) {
        let candidate = Candidate {
            bytes: cand.encode_to_vec(),
            hash: commit_hash(&cand.commit_message),
            steward: self.me,
            actions,
            local: true,
            welcome,
            sealed_opens: true,
            evidence_aad: Vec::new(),
            evidence_bound: true,
        };
        let gap = self.resend_gap();
        if let Some(f) = self.phase.round_mut() {
            f.add_own(candidate, now, gap);
        }
    }

    /// Approved adds that no commit can carry any more (this commit used their key
    /// package, or put their leaf key in the tree for another member) are dropped: kept,
    /// they would open a freeze round after every commit that no steward can fill.
    pub(super) fn drop_blocked_adds<P: OpenMlsProvider>(
        &mut self,
        ctx: &Ctx<'_, P>,
        out: &mut Output,
    ) {
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
    pub(super) fn resend_gap(&self) -> Millis {
        (self.config.freeze / 4).max(1)
    }

    /// Re-sends our candidate when due (a lost candidate forks the group, so it is sent
    /// several times within the window).
    pub(super) fn resend_candidate(&mut self, now: Millis, out: &mut Output) {
        let gap = self.resend_gap();
        let freeze = self.config.freeze;
        let Some(f) = self.phase.round_mut() else {
            return;
        };
        if let Some(env) = f.resend_due(now, gap, freeze).and_then(Candidate::envelope) {
            out.send(Subtopic::AppMsg, env);
        }
    }
}
