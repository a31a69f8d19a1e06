//! Catching up on a missed commit.
//!
//! The RFC assumes 2n/3 of members are in sync within Δ. Below that, a member can miss a
//! commit and be stranded in an old epoch where nothing decrypts. Members therefore keep
//! the last `catch_up_window` winning commits. A member that sees traffic from a later
//! epoch asks, in plaintext, for the commit that left its epoch; members holding it answer
//! after a random delay of up to one second, and stay quiet if someone else answered
//! first. The answer is validated exactly like a live candidate (steward list, MLS signer,
//! decided votes carried as evidence), so answering gives no one extra power.
//!
//! A member can also miss every candidate of a round while the others move on, and then
//! see no later traffic at all if the group goes quiet. So a round that ends with nothing
//! valid is followed by a probe: the same request for our own epoch, repeated, before we
//! take part in an election. Only if nobody answers is the epoch really stuck.

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;

use super::*;
use crate::config::REPLY_JITTER_MS;
use crate::proto::pb;

impl Conversation {
    /// We saw evidence that the group is at `epoch`.
    pub(super) fn behind(&mut self, now: Millis, epoch: u64) {
        if epoch > self.catch_up.seen_epoch {
            if self.catch_up.seen_epoch <= self.epoch() {
                // Give the commit itself a moment: under reordering the first message of
                // the new epoch can overtake it.
                self.catch_up.next_request_at = now + REPLY_JITTER_MS;
            }
            self.catch_up.seen_epoch = epoch;
        }
    }

    /// Starts asking whether anyone left our epoch already (see [`CatchUp::probe_until`]):
    /// a few requests, each answered within the reply jitter by members that hold the
    /// commit.
    pub(super) fn start_probe(&mut self, now: Millis) {
        let wait = 2 * self.config.recovery_inactivity + REPLY_JITTER_MS;
        self.catch_up.probe_until = Some(now + wait);
        self.catch_up.next_request_at = now;
    }

    /// Whether a probe is still waiting for answers at `now`; clears one that ran out.
    pub(super) fn probing(&mut self, now: Millis) -> bool {
        match self.catch_up.probe_until {
            Some(u) if now < u => true,
            Some(_) => {
                self.catch_up.probe_until = None;
                false
            }
            None => false,
        }
    }

    pub(super) fn tick_catch_up<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let epoch = self.epoch();
        // Reelection's tick acts on the probe running out; elsewhere it just ends.
        if self.state != ConversationState::Reelection {
            self.probing(now);
        }
        let asking =
            self.catch_up.seen_epoch > epoch || self.catch_up.probe_until.is_some_and(|u| now < u);
        if asking && now >= self.catch_up.next_request_at {
            self.catch_up.next_request_at = now + self.config.recovery_inactivity;
            tracing::info!(conversation = %self.name, epoch, seen = self.catch_up.seen_epoch, "behind: asking for the missed commit");
            let env = pb::AppEnvelope {
                body: Some(pb::app_envelope::Body::CatchUpRequest(pb::CatchUpRequest {
                    conversation: self.name.clone(),
                    epoch,
                })),
            };
            out.send(Subtopic::AppMsg, env.encode_to_vec());
        }
        let due: Vec<u64> = self
            .catch_up
            .replies
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(e, _)| *e)
            .collect();
        for e in due {
            self.catch_up.replies.remove(&e);
            if let Some((_, cand)) = self.recent_commits.iter().find(|(ep, _)| *ep == e)
                && let Ok(c) = pb::CommitCandidate::decode(cand.as_slice())
            {
                let env = pb::AppEnvelope {
                    body: Some(pb::app_envelope::Body::CatchUpCommit(c)),
                };
                out.send(Subtopic::AppMsg, env.encode_to_vec());
            }
        }
    }

    pub(super) fn on_catch_up_request<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        r: pb::CatchUpRequest,
    ) {
        if r.conversation != self.name || r.epoch >= self.epoch() {
            return;
        }
        if self.recent_commits.iter().any(|(e, _)| *e == r.epoch)
            && !self.catch_up.replies.contains_key(&r.epoch)
        {
            let jitter = ctx.rng.gen_range(0..REPLY_JITTER_MS);
            self.catch_up.replies.insert(r.epoch, ctx.now + jitter);
        }
    }

    pub(super) fn on_catch_up_commit<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: pb::CommitCandidate,
    ) {
        // Someone answered: ours is no longer needed.
        self.catch_up.replies.remove(&c.epoch);
        let epoch = self.epoch();
        if c.epoch != epoch || c.conversation != self.name {
            if c.epoch > epoch {
                self.behind(ctx.now, c.epoch + 1);
            }
            return;
        }
        let Ok(steward) = MemberId::from_slice(&c.steward_id) else {
            return out.reject("commit", "catch-up commit without a steward id");
        };
        self.ingest_evidence(ctx, out, &c.evidence);
        let own_pending = self.freeze.as_ref().is_some_and(|f| f.own_pending);
        let hash: [u8; 32] = sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(&c.commit_message),
        )
        .into();
        // The group moved on with our own candidate while our window was still open
        // (MLS cannot process one's own commit as a peer's): merge it.
        let ours = self
            .freeze
            .as_ref()
            .and_then(|f| f.candidates.iter().find(|x| x.local && x.hash == hash))
            .cloned();
        if let Some(ours) = ours
            && let Some(w) = self.apply_local(ctx, &ours, epoch)
        {
            tracing::info!(conversation = %self.name, epoch, "the group applied our own candidate");
            self.on_committed(ctx, out, w);
            return;
        }
        let cand = Candidate {
            bytes: c.encode_to_vec(),
            hash,
            steward,
            actions: c.mls_proposals.len(),
            local: false,
            welcome: None,
        };
        if let Some(w) = self.try_remote(ctx, out, &cand, epoch, own_pending) {
            tracing::info!(conversation = %self.name, epoch, "caught up on a missed commit");
            self.on_committed(ctx, out, w);
            if self.catch_up.seen_epoch > self.epoch() {
                self.catch_up.next_request_at = ctx.now;
            }
        }
    }
}

/// Re-sending proposals to members that saw votes for one they do not know.
impl Conversation {
    pub(super) fn tick_proposal_recovery<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let ask: Vec<u32> = self
            .catch_up
            .missing_proposals
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in ask {
            if self.proposals.contains_key(&id) || self.consensus.tally(id).is_some() {
                self.catch_up.missing_proposals.remove(&id);
                continue;
            }
            self.catch_up
                .missing_proposals
                .insert(id, now + self.config.recovery_inactivity);
            let msg = pb::AppMessage {
                body: Some(pb::app_message::Body::ProposalRequest(id)),
            };
            if let Err(e) = self.send_app(ctx, out, msg) {
                tracing::debug!(error = %e, "could not ask for a missing proposal");
            }
        }
        // Give up on proposals nobody answers for (they expire anyway).
        let limit = self.config.proposal_expiration;
        self.catch_up
            .missing_proposals
            .retain(|_, t| *t + limit > now);
        let due: Vec<u32> = self
            .catch_up
            .proposal_replies
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.catch_up.proposal_replies.remove(&id);
            if let Some(p) = self.consensus.evidence(id) {
                let msg = pb::AppMessage {
                    body: Some(pb::app_message::Body::ProposalState(p)),
                };
                if let Err(e) = self.send_app(ctx, out, msg) {
                    tracing::debug!(error = %e, "could not re-send a proposal");
                }
            }
        }
    }

    pub(super) fn on_proposal_request<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        id: u32,
    ) {
        let known = self.consensus.tally(id).is_some();
        tracing::debug!(conversation = %self.name, id, known, "asked for a proposal");
        if !known {
            // Someone asks for votes on a proposal we never received: its owner (or a
            // member that has it) is about to apply the timeout rule without our vote.
            // Ask for the proposal ourselves, so we get to vote on it.
            if !self.resolved.contains(&id) {
                self.catch_up.missing_proposals.entry(id).or_insert(ctx.now);
            }
            return;
        }
        if let std::collections::btree_map::Entry::Vacant(e) =
            self.catch_up.proposal_replies.entry(id)
        {
            e.insert(ctx.now + ctx.rng.gen_range(0..REPLY_JITTER_MS));
        }
    }

    /// A proposal re-sent with its votes: adopt it (as evidence) and merge the votes.
    pub(super) fn on_proposal_state<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        p: crate::proto::cpb::Proposal,
    ) {
        let id = p.proposal_id;
        tracing::debug!(conversation = %self.name, id, votes = p.votes.len(), "proposal state received");
        self.catch_up.proposal_replies.remove(&id);
        self.catch_up.missing_proposals.remove(&id);
        let known = self.proposals.contains_key(&id);
        let action = Action::from_payload(&p.payload);
        // No partial-freeze drop here: a re-sent proposal is one peers already hold, and
        // members must end up with the same set of decided proposals.
        self.ingest_evidence(ctx, out, std::slice::from_ref(&p));
        // A proposal we can still vote on (we were a voter when it was made) gets our
        // automatic vote like any other.
        if !known
            && p.expected_voters_count as usize == self.members().len()
            && p.expected_voters_count > 1
            && let (Ok(a), Some(t)) = (action, self.proposals.get(&id).map(|t| t.status))
            && t == ProposalStatus::Voting
            && !self.consensus.has_voted(id, &self.me)
        {
            let valid = self.content_is_valid(ctx, &a).is_ok();
            let at = ctx.now + self.voting_delay(a.kind());
            if let Some(tr) = self.proposals.get_mut(&id) {
                tr.auto_vote_at = Some(at);
                tr.auto_vote = valid && self.config.liveness_criteria_yes;
            }
            if a.kind() == ProposalKind::Emergency {
                self.emergencies.insert(id);
            }
        }
    }
}
