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
//! [`reply::RESPONDERS`] members chosen per request, within the reply budget (`budget`). An
//! answer cancels ours only if it carries the very commit we hold: junk cannot silence a
//! real answer. The epoch a plaintext packet claims is a hint: it starts rounds of
//! [`hint::HINT_ASKS`] requests, the first at once and each later one after twice the wait of
//! the one before (from `commit_inactivity`), and is forgotten once that wait passes
//! [`hint::MAX_HINT_BACKOFF_MS`]; only the first round holds back elections. A fake epoch costs
//! a logarithmic number of requests; a member really behind whose answers were lost
//! still gets there.
//!
//! A member can also miss every candidate of a round while the others move on, and then
//! see no later traffic at all if the group goes quiet. So a round that ends with nothing
//! valid is followed by a probe: the same request for our own epoch, repeated, before we
//! take part in an election. Only if nobody answers is the epoch really stuck.

mod hint;
mod missing;
mod reply;
mod request;

use std::collections::{BTreeMap, VecDeque};

use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

use super::*;

/// Catch-up bookkeeping.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct CatchUp {
    /// The epoch an unauthenticated packet claimed, while we probe it (see
    /// `catchup::hint`); at most our epoch otherwise.
    pub seen_epoch: u64,
    /// Requests the current round of asks for a hint may still cost.
    #[serde(default)]
    pub hint_asks: u32,
    /// When the current hint was taken.
    #[serde(default)]
    pub hint_since: Millis,
    /// Hints are ignored until then (after hints that led nowhere).
    #[serde(default)]
    pub quiet_until: Millis,
    /// The wait before the last round of asks for a hint (doubled each round).
    #[serde(default)]
    pub backoff: Millis,
    /// Requests made so far for each missing proposal.
    #[serde(default)]
    pub missing_asks: BTreeMap<u32, u8>,
    /// Missing proposals we gave up on: never asked for again.
    #[serde(default)]
    pub abandoned: VecDeque<u32>,
    /// Members removed by recent commits (epoch left, member): their requests are answered.
    #[serde(default)]
    pub recent_removed: VecDeque<(u64, MemberId)>,
    /// Catch-up requests we took up (hash of the signature, when): a replayed copy is
    /// not answered again.
    #[serde(skip)]
    pub seen_requests: VecDeque<([u8; 32], Millis)>,
    /// What we answer, per requester and in total.
    #[serde(default)]
    pub budget: budget::ReplyBudget,
    /// When we may ask again.
    pub next_request_at: Millis,
    /// Replies we will send: epoch → due time (cancelled if someone else answers first).
    pub replies: BTreeMap<u64, Millis>,
    /// Proposals we saw votes for but do not know: id → when we may ask again.
    pub missing_proposals: BTreeMap<u32, Millis>,
    /// Proposal re-sends we will make: id → due time (cancelled if someone else answers).
    pub proposal_replies: BTreeMap<u32, Millis>,
    /// A freeze round ended with nothing valid: until this instant we ask whether the
    /// group already left our epoch before we take part in an election (a member that
    /// missed every candidate would otherwise commit a branch of its own).
    #[serde(default)]
    pub probe_until: Option<Millis>,
}

impl CatchUp {
    /// When a catch-up reply, a proposal re-send or a request for a missing proposal is
    /// due, or a probe (or a hint above our `epoch`) asks again or ends.
    pub(crate) fn deadline(&self, epoch: u64) -> Deadline {
        let mut soonest = Soonest::default();
        let replies = self.replies.values().chain(self.proposal_replies.values());
        for t in replies.chain(self.missing_proposals.values()) {
            soonest.add(Some((*t, Timer::CatchUp)));
        }
        if let Some(u) = self.probe_until {
            soonest.add(Some((u, Timer::Probe)));
            if self.next_request_at < u {
                soonest.add(Some((self.next_request_at, Timer::Probe)));
            }
        }
        if self.seen_epoch > epoch {
            soonest.add(Some((self.next_request_at, Timer::Probe)));
        }
        soonest.get()
    }
}

impl Conversation {
    /// Runs catch-up's timers: a probe that ran out ends (Reelection's tick acts on that
    /// itself), we ask for the missed commit when a probe or a hint is due, and the
    /// replies due go out.
    pub(crate) fn tick_catch_up<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        if self.state() != ConversationState::Reelection {
            self.probing(now);
        }
        self.ask_if_behind(ctx, out);
        self.send_due_replies(now, out);
    }
}
