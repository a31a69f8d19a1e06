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
//! Requests are plaintext, so they are signed by the asking member and answered only while
//! fresh, only for members (or members a recent commit removed), by at most
//! [`RESPONDERS`] members chosen per request, within the reply budget (`budget`). An
//! answer cancels ours only if it carries the very commit we hold: junk cannot silence a
//! real answer. The epoch a plaintext packet claims is a hint: it starts rounds of
//! [`HINT_ASKS`] requests, the first at once and each later one after twice the wait of
//! the one before (from `commit_inactivity`), and is forgotten once that wait passes
//! [`MAX_HINT_BACKOFF_MS`]; only the first round holds back elections. A fake epoch costs
//! a logarithmic number of requests; a member really behind whose answers were lost
//! still gets there.
//!
//! A member can also miss every candidate of a round while the others move on, and then
//! see no later traffic at all if the group goes quiet. So a round that ends with nothing
//! valid is followed by a probe: the same request for our own epoch, repeated, before we
//! take part in an election. Only if nobody answers is the epoch really stuck.

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;

use super::evidence::Judge;
use super::*;
use crate::config::REPLY_JITTER_MS;
use crate::identity;
use crate::proto::pb;

/// Requests one unauthenticated epoch hint may cost before it is forgotten.
pub(crate) const HINT_ASKS: u32 = 3;
/// How many members answer one catch-up request (chosen afresh for each request).
pub(crate) const RESPONDERS: usize = 3;
/// How far a request's timestamp may be from our clock.
const REQUEST_SKEW_MS: Millis = 30_000;
/// Longest quiet period after hints that led nowhere.
const MAX_HINT_BACKOFF_MS: Millis = 30 * 60_000;
/// Unknown proposals we ask for at once, and ids we remember giving up on.
const MISSING_CAP: usize = 64;
const ABANDONED_CAP: usize = 256;
/// Members removed by recent commits: still answered (they learn of their removal).
const REMOVED_CAP: usize = 64;
/// Signed requests remembered (for `2 × REQUEST_SKEW_MS`) so copies go unanswered.
const SEEN_REQUESTS_CAP: usize = 256;

const CATCH_UP_DOMAIN: &[u8] = b"demls/catch-up/v1";

fn request_signed_bytes(conversation: &str, epoch: u64, timestamp_ms: u64) -> Vec<u8> {
    let mut m = CATCH_UP_DOMAIN.to_vec();
    m.extend_from_slice(conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m
}

/// Whether `me` is one of the [`RESPONDERS`] members that answer this request: the first
/// by SHA-256(signature ‖ member) among `members` (the requester left out). The signature
/// is fresh per request, so a requester that got no answer meets other responders next.
fn designated(me: &MemberId, requester: &MemberId, signature: &[u8], members: &[MemberId]) -> bool {
    use sha2::Digest;
    let rank = |m: &MemberId| -> [u8; 32] {
        sha2::Sha256::new()
            .chain_update(signature)
            .chain_update(m.as_bytes())
            .finalize()
            .into()
    };
    let mut ranked: Vec<([u8; 32], MemberId)> = members
        .iter()
        .filter(|m| *m != requester)
        .map(|m| (rank(m), *m))
        .collect();
    ranked.sort();
    ranked.iter().take(RESPONDERS).any(|(_, m)| m == me)
}

impl Conversation {
    /// A plaintext packet claims the group is at `epoch`. Nobody authenticated that, so it
    /// starts at most one probe of [`HINT_ASKS`] requests (unless one runs or we are in a
    /// quiet period after fruitless hints), and is forgotten when the probe ends.
    pub(super) fn hint(&mut self, now: Millis, epoch: u64) {
        let ours = self.epoch();
        if epoch <= ours {
            return;
        }
        let cu = &mut self.catch_up;
        if cu.seen_epoch > ours {
            cu.seen_epoch = cu.seen_epoch.max(epoch);
            return;
        }
        if now < cu.quiet_until {
            return;
        }
        cu.seen_epoch = epoch;
        cu.hint_asks = HINT_ASKS;
        cu.hint_since = now;
        // Give the commit itself a moment: under reordering the first message of the new
        // epoch can overtake it.
        cu.next_request_at = now + REPLY_JITTER_MS;
    }

    /// A member signed that the group is at `epoch` (a beacon): ask now, whatever
    /// fruitless unauthenticated hints taught us to wait for. Members send beacons
    /// rarely (see `fork`), so this costs at most one round of asks per beacon.
    pub(super) fn signed_hint(&mut self, now: Millis, epoch: u64) {
        if epoch <= self.epoch() {
            return;
        }
        let fresh_round = self.catch_up.seen_epoch <= self.epoch() || self.catch_up.hint_asks == 0;
        self.reset_hints();
        if fresh_round {
            self.catch_up.seen_epoch = 0;
            self.hint(now, epoch);
        } else {
            self.catch_up.seen_epoch = self.catch_up.seen_epoch.max(epoch);
        }
    }

    /// Whether an unauthenticated hint is being probed.
    pub(super) fn hint_probing(&self) -> bool {
        self.catch_up.seen_epoch > self.epoch()
    }

    /// Whether the first round of asks for a hint is still running: elections wait for it
    /// (an election for an epoch the group has left could pass by the timeout rule), and
    /// for nothing after it.
    pub(super) fn hint_first_round(&self, now: Millis) -> bool {
        let round = Millis::from(HINT_ASKS) * self.config.recovery_inactivity + 2 * REPLY_JITTER_MS;
        self.hint_probing() && now < self.catch_up.hint_since.saturating_add(round)
    }

    /// A round of asks for a hint brought nothing: the next round after twice the last
    /// wait, or, past [`MAX_HINT_BACKOFF_MS`], forget the hint and take no new one for
    /// that long.
    fn next_hint_round(&mut self, now: Millis) {
        let base = self.config.commit_inactivity;
        let cu = &mut self.catch_up;
        cu.backoff = if cu.backoff == 0 {
            base
        } else {
            cu.backoff.saturating_mul(2)
        };
        if cu.backoff > MAX_HINT_BACKOFF_MS.max(base) {
            cu.seen_epoch = 0;
            cu.hint_asks = 0;
            cu.quiet_until = now.saturating_add(cu.backoff);
        } else {
            cu.hint_asks = HINT_ASKS;
            cu.next_request_at = now.saturating_add(cu.backoff);
        }
    }

    /// We are in step with the group (a commit merged): hints start afresh.
    pub(super) fn reset_hints(&mut self) {
        self.catch_up.backoff = 0;
        self.catch_up.quiet_until = 0;
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
        let probing = self.catch_up.probe_until.is_some_and(|u| now < u);
        let hinted = self.hint_probing();
        if hinted
            && !probing
            && self.catch_up.hint_asks == 0
            && now >= self.catch_up.next_request_at
        {
            self.next_hint_round(now);
        } else if (hinted || probing) && now >= self.catch_up.next_request_at {
            self.catch_up.next_request_at = now + self.config.recovery_inactivity;
            if hinted && !probing {
                self.catch_up.hint_asks = self.catch_up.hint_asks.saturating_sub(1);
                if self.catch_up.hint_asks == 0 {
                    // The last ask's answers get the reply jitter too.
                    self.catch_up.next_request_at += REPLY_JITTER_MS;
                }
            }
            tracing::info!(conversation = %self.name, epoch, seen = self.catch_up.seen_epoch, "behind: asking for the missed commit");
            self.send_catch_up_request(ctx, out, epoch);
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

    fn send_catch_up_request<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        epoch: u64,
    ) {
        let timestamp_ms = ctx.now;
        let signature =
            match ctx
                .identity
                .eth
                .sign(&request_signed_bytes(&self.name, epoch, timestamp_ms))
            {
                Ok(s) => s,
                Err(e) => {
                    return out.event(Event::Error {
                        operation: "sign catch-up request",
                        message: e.to_string(),
                    });
                }
            };
        let env = pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::CatchUpRequest(pb::CatchUpRequest {
                conversation: self.name.clone(),
                epoch,
                requester: self.me.to_vec(),
                timestamp_ms,
                signature,
            })),
        };
        out.send(Subtopic::AppMsg, env.encode_to_vec());
    }

    /// Why a catch-up request is not answered by us, if it is not. Cheap checks first;
    /// the signature last.
    fn refuse_catch_up_request(&mut self, now: Millis, r: &pb::CatchUpRequest) -> Option<String> {
        if r.conversation != self.name || r.epoch >= self.epoch() {
            return Some("not for an epoch we left".into());
        }
        if !self.recent_commits.iter().any(|(e, _)| *e == r.epoch) {
            return Some(format!(
                "we do not hold the commit that left epoch {}",
                r.epoch
            ));
        }
        if self.catch_up.replies.contains_key(&r.epoch) {
            return Some("an answer is already scheduled".into());
        }
        let Ok(requester) = MemberId::from_slice(&r.requester) else {
            return Some("unsigned catch-up request".into());
        };
        let members = self.members();
        let removed_lately = self
            .catch_up
            .recent_removed
            .iter()
            .any(|(_, m)| *m == requester);
        if !members.contains(&requester) && !removed_lately {
            return Some(format!("{requester} is not a member"));
        }
        if r.timestamp_ms.abs_diff(now) > REQUEST_SKEW_MS {
            return Some(format!("stale catch-up request from {requester}"));
        }
        if !designated(&self.me, &requester, &r.signature, &members) {
            return Some("another member answers this request".into());
        }
        let key: [u8; 32] = sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(&r.signature),
        )
        .into();
        let seen = &mut self.catch_up.seen_requests;
        seen.retain(|(_, at)| now < at.saturating_add(2 * REQUEST_SKEW_MS));
        if seen.iter().any(|(k, _)| *k == key) {
            return Some("a copy of a request we took up".into());
        }
        // The signature before the budget: requests forged in a member's name must not
        // spend the budget its real requests need.
        if let Err(e) = identity::verify(
            &request_signed_bytes(&self.name, r.epoch, r.timestamp_ms),
            &r.signature,
            &requester,
        ) {
            return Some(format!("catch-up request signature: {e}"));
        }
        let gap = self.config.recovery_inactivity;
        if !self.catch_up.budget.allow(now, requester, gap, &members) {
            return Some(format!("reply budget spent (request from {requester})"));
        }
        let seen = &mut self.catch_up.seen_requests;
        seen.push_back((key, now));
        while seen.len() > SEEN_REQUESTS_CAP {
            seen.pop_front();
        }
        None
    }

    pub(super) fn on_catch_up_request<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        r: pb::CatchUpRequest,
    ) {
        if let Some(why) = self.refuse_catch_up_request(ctx.now, &r) {
            tracing::trace!(conversation = %self.name, epoch = r.epoch, why, "catch-up request not answered");
            return;
        }
        let jitter = ctx.rng.gen_range(0..REPLY_JITTER_MS);
        self.catch_up.replies.insert(r.epoch, ctx.now + jitter);
    }

    pub(super) fn on_catch_up_commit<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: pb::CommitCandidate,
    ) {
        let epoch = self.epoch();
        if c.conversation != self.name {
            return;
        }
        // Someone answered with the commit we would have sent: ours is no longer needed.
        // (Only that commit: a junk answer must not cancel a real one.)
        if c.epoch < epoch
            && self.catch_up.replies.contains_key(&c.epoch)
            && self
                .recent_commits
                .iter()
                .any(|(e, held)| *e == c.epoch && *held == c.encode_to_vec())
        {
            self.catch_up.replies.remove(&c.epoch);
        }
        if c.epoch != epoch {
            self.hint(ctx.now, c.epoch.saturating_add(1));
            return;
        }
        let Ok(steward) = MemberId::from_slice(&c.steward_id) else {
            return out.reject(
                InboundKind::Commit,
                RejectCause::Malformed,
                "catch-up commit without a steward id",
            );
        };
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
            sealed_opens: false,
            evidence_aad: Vec::new(),
            evidence_bound: false,
        };
        let Some(w) = self.try_remote(ctx, out, &cand, epoch, own_pending, Judge::AsMade) else {
            // An answer for our epoch that does not fit our group: junk, or another
            // branch of a fork (see `fork`).
            self.fork_hint(ctx);
            return;
        };
        {
            tracing::info!(conversation = %self.name, epoch, "caught up on a missed commit");
            self.on_committed(ctx, out, w);
            // The hint was true: keep going while it points further, with fresh asks.
            if self.hint_probing() {
                self.catch_up.hint_asks = HINT_ASKS;
                self.catch_up.hint_since = ctx.now;
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
            if self.gov.proposals.contains_key(&id) || self.gov.consensus.tally(id).is_some() {
                self.catch_up.missing_proposals.remove(&id);
                self.catch_up.missing_asks.remove(&id);
                continue;
            }
            let asked = self.catch_up.missing_asks.entry(id).or_insert(0);
            if *asked >= crate::config::VOTE_ASKS {
                // Nobody has it (or it never existed): stop, and do not start again.
                self.catch_up.missing_proposals.remove(&id);
                self.catch_up.missing_asks.remove(&id);
                self.catch_up.abandoned.push_back(id);
                while self.catch_up.abandoned.len() > ABANDONED_CAP {
                    self.catch_up.abandoned.pop_front();
                }
                continue;
            }
            *asked += 1;
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
        let due: Vec<u32> = self
            .catch_up
            .proposal_replies
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.catch_up.proposal_replies.remove(&id);
            // Someone is waiting for votes: an automatic vote of ours still pending goes
            // out now, and with the answer (it would otherwise miss their timeout).
            let pending_vote = self
                .gov
                .proposals
                .get(&id)
                .filter(|p| p.status == ProposalStatus::Voting && p.auto_vote_at.is_some())
                .map(|p| p.auto_vote);
            if let Some(yes) = pending_vote
                && !self.gov.consensus.has_voted(id, &self.me)
                && let Err(e) = self.cast_vote(ctx, out, id, yes)
            {
                tracing::debug!(id, error = %e, "early automatic vote not cast");
            }
            if let Some(p) = self.gov.consensus.evidence(id) {
                let msg = pb::AppMessage {
                    body: Some(pb::app_message::Body::ProposalState(p)),
                };
                if let Err(e) = self.send_app(ctx, out, msg) {
                    tracing::debug!(error = %e, "could not re-send a proposal");
                }
            }
        }
    }

    /// Notes a proposal id we saw votes or requests for but do not hold: we ask for it
    /// (a few times at most, see `tick_proposal_recovery`), unless we gave up on it.
    pub(super) fn want_proposal(&mut self, id: u32, at: Millis) {
        let cu = &mut self.catch_up;
        if self.gov.resolved.contains(&id)
            || self.gov.proposals.contains_key(&id)
            || cu.abandoned.contains(&id)
            || (cu.missing_proposals.len() >= MISSING_CAP
                && !cu.missing_proposals.contains_key(&id))
        {
            return;
        }
        cu.missing_proposals.entry(id).or_insert(at);
    }

    /// Remembers members that `removed` took out at `epoch`: they may still ask for it.
    pub(super) fn note_removed(&mut self, epoch: u64, removed: &[MemberId]) {
        let r = &mut self.catch_up.recent_removed;
        r.extend(removed.iter().map(|m| (epoch, *m)));
        while r.len() > REMOVED_CAP {
            r.pop_front();
        }
    }

    pub(super) fn on_proposal_request<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        sender: Option<MemberId>,
        id: u32,
    ) {
        let known = self.gov.consensus.tally(id).is_some();
        tracing::debug!(conversation = %self.name, id, known, "asked for a proposal");
        if !known {
            // Someone asks for votes on a proposal we never received: its owner (or a
            // member that has it) is about to apply the timeout rule without our vote.
            // Ask for the proposal ourselves, so we get to vote on it.
            self.want_proposal(id, ctx.now);
            return;
        }
        if self.catch_up.proposal_replies.contains_key(&id) {
            return;
        }
        // A member's request (the MLS sender) spends its allowance and the budget; our
        // own offer of a proof (no sender) spends ours.
        let members = self.members();
        let gap = self.config.recovery_inactivity;
        let who = sender.unwrap_or(self.me);
        if !self.catch_up.budget.allow(ctx.now, who, gap, &members) {
            tracing::debug!(conversation = %self.name, id, "proposal request over budget");
            return;
        }
        let at = ctx.now + ctx.rng.gen_range(0..REPLY_JITTER_MS);
        self.catch_up.proposal_replies.insert(id, at);
    }

    /// A proposal a member re-sent with its votes (it saw our request). One we hold gets
    /// the votes merged; one we do not hold is adopted live (our vote, the timeout rule)
    /// only if it fits the policy for our current group and is provably its owner's, and
    /// otherwise only if its votes alone decide it (see `evidence`).
    pub(super) fn on_proposal_state<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sender: MemberId,
        p: crate::proto::cpb::Proposal,
    ) {
        let id = p.proposal_id;
        tracing::debug!(conversation = %self.name, id, votes = p.votes.len(), "proposal state received");
        // Someone answered first: ours is redundant only if theirs holds every vote ours
        // would carry. A member holding fewer votes often answers first, and a requester
        // left with half of the votes decides nothing (the minority rule).
        let ours_adds_votes = self.gov.consensus.evidence(id).is_some_and(|mine| {
            mine.votes
                .iter()
                .any(|v| !p.votes.iter().any(|x| x.vote_hash == v.vote_hash))
        });
        if !ours_adds_votes {
            self.catch_up.proposal_replies.remove(&id);
        }
        self.catch_up.missing_proposals.remove(&id);
        self.catch_up.missing_asks.remove(&id);
        let known = self.gov.consensus.tally(id).is_some() || self.gov.resolved.contains(&id);
        let now_s = ctx.now / 1000;
        let owner_busy = MemberId::from_slice(&p.proposal_owner)
            .is_ok_and(|o| self.open_proposals_of(&o) >= super::proposals::MAX_OPEN_PER_OWNER);
        // An expired proposal cannot be live (no vote, no timeout); as evidence it may
        // still prove an election the group made (see `adopt_commit_evidence`).
        let live = !known
            && !owner_busy
            && now_s <= p.expiration_timestamp
            && (p.expected_voters_count as usize == self.members().len()
                || p.expected_voters_count as usize == self.voters().len())
            && p.expected_voters_count > 1
            && self.admissible(&p).is_ok()
            && self.owner_vouches(&p, sender, now_s);
        if !live {
            // No partial-freeze drop here: a re-sent proposal is one peers already hold,
            // and members must end up with the same set of decided proposals.
            return self.adopt_commit_evidence(ctx, out, std::slice::from_ref(&p), Judge::Now);
        }
        let Ok(action) = Action::from_payload(&p.payload) else {
            return out.reject(
                InboundKind::Proposal,
                RejectCause::Malformed,
                "undecodable payload in a re-sent proposal",
            );
        };
        let members = self.voters();
        let is_voter = |m: &MemberId| members.contains(m);
        let owner = MemberId::from_slice(&p.proposal_owner).unwrap_or(sender);
        let made_s = p.timestamp;
        let outcome = match self.gov.consensus.ingest_evidence(p, now_s, &is_voter) {
            Ok(o) => o,
            Err(e) => return out.reject(InboundKind::Proposal, e.cause(), e),
        };
        let valid = self
            .content_is_valid(ctx, &action)
            .and_then(|()| Self::content_is_owners(&action, owner));
        // Reported as for a proposal heard from its owner (our automatic vote is NO).
        if let Err(why) = &valid {
            out.reject(
                InboundKind::Proposal,
                RejectCause::Invalid,
                format!("voting NO on {}: {why}", action.summary()),
            );
        }
        let at = ctx.now + self.voting_delay(action.kind());
        let kind = action.kind();
        let voted = self.gov.consensus.has_voted(id, &self.me);
        self.track(
            ctx.now,
            made_s,
            id,
            action,
            owner,
            (!voted).then_some(at),
            valid.is_ok() && self.config.liveness_criteria_yes,
        );
        if kind == ProposalKind::Emergency {
            self.gov.emergencies.insert(id);
        }
        if let Some(r) = outcome {
            self.apply_outcome(ctx, out, id, r);
        }
    }
}
