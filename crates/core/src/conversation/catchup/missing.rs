//! Missing proposals: asking for proposals we saw votes for but do not hold, re-sending
//! the ones others ask for, and adopting a re-sent one.

use std::collections::BTreeMap;

use openmls_traits::OpenMlsProvider;
use rand::Rng;

use crate::config::REPLY_JITTER_MS;
use crate::conversation::evidence::Judge;
use crate::conversation::*;
use crate::proto::pb;

/// Unknown proposals we ask for at once.
const MISSING_CAP: usize = 64;
/// Ids we remember giving up on.
const ABANDONED_CAP: usize = 256;

impl CatchUp {
    /// Ids of `map` whose time has come at `now`.
    fn due<K: Copy + Ord>(map: &BTreeMap<K, Millis>, now: Millis) -> Vec<K> {
        map.iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Forgets missing proposal `id` (it came, or we gave up on it).
    fn forget_missing(&mut self, id: u32) {
        self.missing_proposals.remove(&id);
        self.missing_asks.remove(&id);
    }

    /// Counts a request for missing proposal `id`, the next one due at `next`; false
    /// when it has been asked for often enough: it is given up for good.
    fn count_ask(&mut self, id: u32, next: Millis) -> bool {
        let asked = self.missing_asks.entry(id).or_insert(0);
        if *asked >= crate::config::VOTE_ASKS {
            // Nobody has it (or it never existed): stop, and do not start again.
            self.forget_missing(id);
            self.abandoned.push_back(id);
            while self.abandoned.len() > ABANDONED_CAP {
                self.abandoned.pop_front();
            }
            return false;
        }
        *asked += 1;
        self.missing_proposals.insert(id, next);
        true
    }

    /// Asks for `id` from `at`, unless we gave up on it or too many are missing.
    fn want(&mut self, id: u32, at: Millis) {
        if self.abandoned.contains(&id)
            || (self.missing_proposals.len() >= MISSING_CAP
                && !self.missing_proposals.contains_key(&id))
        {
            return;
        }
        self.missing_proposals.entry(id).or_insert(at);
    }
}

/// Re-sending proposals to members that saw votes for one they do not know.
impl Conversation {
    /// Asks for the missing proposals that are due, and re-sends the proposals others
    /// asked for.
    pub(crate) fn tick_proposal_recovery<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        self.ask_missing_proposals(ctx, out);
        self.send_due_proposal_replies(ctx, out);
    }

    /// Asks again for each missing proposal that is due, unless it came meanwhile or we
    /// give up on it.
    fn ask_missing_proposals<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        for id in CatchUp::due(&self.catch_up.missing_proposals, now) {
            if self.gov.proposals.contains_key(&id) || self.gov.consensus.tally(id).is_some() {
                self.catch_up.forget_missing(id);
                continue;
            }
            let next = now + self.config.recovery_inactivity;
            if !self.catch_up.count_ask(id, next) {
                continue;
            }
            let msg = pb::AppMessage {
                body: Some(pb::app_message::Body::ProposalRequest(id)),
            };
            if let Err(e) = self.send_app(ctx, out, msg) {
                tracing::debug!(error = %e, "could not ask for a missing proposal");
            }
        }
    }

    /// Re-sends each proposal whose re-send is due, with its votes.
    fn send_due_proposal_replies<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        for id in CatchUp::due(&self.catch_up.proposal_replies, ctx.now) {
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
    pub(crate) fn want_proposal(&mut self, id: u32, at: Millis) {
        if self.gov.resolved.contains(&id) || self.gov.proposals.contains_key(&id) {
            return;
        }
        self.catch_up.want(id, at);
    }

    /// A member asks for proposal `id` (or, with no sender, we offer its proof): we re-send
    /// it after a random delay, within the budget; one we do not know we ask for.
    pub(crate) fn on_proposal_request<P: OpenMlsProvider>(
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
    pub(crate) fn on_proposal_state<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sender: MemberId,
        p: crate::proto::cpb::Proposal,
    ) {
        let id = p.proposal_id;
        tracing::debug!(conversation = %self.name, id, votes = p.votes.len(), "proposal state received");
        self.note_proposal_answer(&p);
        let now_s = ctx.now / 1000;
        if !self.resent_is_live(&p, sender, now_s) {
            // No partial-freeze drop here: a re-sent proposal is one peers already hold,
            // and members must end up with the same set of decided proposals.
            return self.adopt_commit_evidence(ctx, out, std::slice::from_ref(&p), Judge::Now);
        }
        self.adopt_live_proposal(ctx, out, sender, p, now_s);
    }

    /// Someone re-sent proposal `p`: our own re-send is redundant if theirs holds every
    /// vote ours would carry (a member holding fewer votes often answers first, and a
    /// requester left with half of the votes decides nothing: the minority rule), and
    /// the proposal is no longer missing.
    fn note_proposal_answer(&mut self, p: &crate::proto::cpb::Proposal) {
        let id = p.proposal_id;
        let ours_adds_votes = self.gov.consensus.evidence(id).is_some_and(|mine| {
            mine.votes
                .iter()
                .any(|v| !p.votes.iter().any(|x| x.vote_hash == v.vote_hash))
        });
        if !ours_adds_votes {
            self.catch_up.proposal_replies.remove(&id);
        }
        self.catch_up.forget_missing(id);
    }

    /// Whether a re-sent proposal we do not know may be taken live: unexpired, within
    /// its owner's quota, for our group, admissible and vouched for by its owner.
    fn resent_is_live(
        &self,
        p: &crate::proto::cpb::Proposal,
        sender: MemberId,
        now_s: u64,
    ) -> bool {
        let id = p.proposal_id;
        let known = self.gov.consensus.tally(id).is_some() || self.gov.resolved.contains(&id);
        let owner_busy = MemberId::from_slice(&p.proposal_owner).is_ok_and(|o| {
            self.open_proposals_of(&o) >= crate::conversation::proposals::MAX_OPEN_PER_OWNER
        });
        // An expired proposal cannot be live (no vote, no timeout); as evidence it may
        // still prove an election the group made (see `adopt_commit_evidence`).
        !known
            && !owner_busy
            && now_s <= p.expiration_timestamp
            && (p.expected_voters_count as usize == self.members().len()
                || p.expected_voters_count as usize == self.voters().len())
            && p.expected_voters_count > 1
            && self.admissible(p).is_ok()
            && self.owner_vouches(p, sender, now_s)
    }

    /// Takes a re-sent proposal live, as if heard from its owner: its votes ingested, our
    /// automatic vote scheduled, and its outcome applied if the votes decide it.
    fn adopt_live_proposal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sender: MemberId,
        p: crate::proto::cpb::Proposal,
        now_s: u64,
    ) {
        let id = p.proposal_id;
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
