//! Answering catch-up requests: who answers, within what budget, and the replies due.

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;

use super::request::request_signed_bytes;
use crate::config::REPLY_JITTER_MS;
use crate::conversation::*;
use crate::identity;
use crate::proto::pb;

/// How many members answer one catch-up request (chosen afresh for each request).
pub(crate) const RESPONDERS: usize = 3;
/// How far a request's timestamp may be from our clock.
const REQUEST_SKEW_MS: Millis = 30_000;
/// Members removed by recent commits: still answered (they learn of their removal).
const REMOVED_CAP: usize = 64;
/// Signed requests remembered (for `2 × REQUEST_SKEW_MS`) so copies go unanswered.
const SEEN_REQUESTS_CAP: usize = 256;

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

impl CatchUp {
    /// Whether a recent commit removed `m` (its requests are still answered).
    fn removed_lately(&self, m: &MemberId) -> bool {
        self.recent_removed.iter().any(|(_, r)| r == m)
    }

    /// Whether we took up a request with this signature hash lately (forgetting the
    /// ones too old to be fresh any more).
    fn seen_request(&mut self, key: &[u8; 32], now: Millis) -> bool {
        let seen = &mut self.seen_requests;
        seen.retain(|(_, at)| now < at.saturating_add(2 * REQUEST_SKEW_MS));
        seen.iter().any(|(k, _)| k == key)
    }

    /// Remembers that we took up a request with this signature hash.
    fn note_request(&mut self, key: [u8; 32], now: Millis) {
        let seen = &mut self.seen_requests;
        seen.push_back((key, now));
        while seen.len() > SEEN_REQUESTS_CAP {
            seen.pop_front();
        }
    }

    /// Remembers members that `removed` took out at `epoch`.
    fn note_removed(&mut self, epoch: u64, removed: &[MemberId]) {
        let r = &mut self.recent_removed;
        r.extend(removed.iter().map(|m| (epoch, *m)));
        while r.len() > REMOVED_CAP {
            r.pop_front();
        }
    }

    /// Takes the replies due at `now`: the epochs whose commits we send.
    fn take_due_replies(&mut self, now: Millis) -> Vec<u64> {
        let due: Vec<u64> = self
            .replies
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(e, _)| *e)
            .collect();
        for e in &due {
            self.replies.remove(e);
        }
        due
    }
}

impl Conversation {
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
        if !members.contains(&requester) && !self.catch_up.removed_lately(&requester) {
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
        if self.catch_up.seen_request(&key, now) {
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
        self.catch_up.note_request(key, now);
        None
    }

    /// A catch-up request: if we are to answer it, our reply is due after a random delay
    /// (and cancelled if someone else answers first).
    pub(crate) fn on_catch_up_request<P: OpenMlsProvider>(
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

    /// Remembers members that `removed` took out at `epoch`: they may still ask for it.
    pub(crate) fn note_removed(&mut self, epoch: u64, removed: &[MemberId]) {
        self.catch_up.note_removed(epoch, removed);
    }

    /// Sends the replies due at `now`: the commit that left each requested epoch, if we
    /// still hold it.
    pub(super) fn send_due_replies(&mut self, now: Millis, out: &mut Output) {
        for e in self.catch_up.take_due_replies(now) {
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

    /// Someone answered a request with the commit we would have sent (`c`, below our
    /// `epoch`): ours is no longer needed. (Only that commit: a junk answer must not
    /// cancel a real one.)
    pub(super) fn cancel_answered_reply(&mut self, epoch: u64, c: &pb::CommitCandidate) {
        if c.epoch < epoch
            && self.catch_up.replies.contains_key(&c.epoch)
            && self
                .recent_commits
                .iter()
                .any(|(e, held)| *e == c.epoch && *held == c.encode_to_vec())
        {
            self.catch_up.replies.remove(&c.epoch);
        }
    }
}
