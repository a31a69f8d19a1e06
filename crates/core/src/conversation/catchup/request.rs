//! Asking for the commit that left our epoch, and taking the answer.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use crate::config::REPLY_JITTER_MS;
use crate::conversation::evidence::Judge;
use crate::conversation::*;
use crate::proto::pb;

/// Domain separation for catch-up request signatures.
const CATCH_UP_DOMAIN: &[u8] = b"demls/catch-up/v1";

/// What a requester signs: the conversation, the epoch it is stuck in and the time.
pub(super) fn request_signed_bytes(conversation: &str, epoch: u64, timestamp_ms: u64) -> Vec<u8> {
    let mut m = CATCH_UP_DOMAIN.to_vec();
    m.extend_from_slice(conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m
}

impl CatchUp {
    /// A request goes out now: the next one may follow after `gap`. In a hint's round
    /// (`hint_round`) it spends one of the round's asks, and the last ask's answers get
    /// the reply jitter too.
    fn note_ask(&mut self, now: Millis, gap: Millis, hint_round: bool) {
        self.next_request_at = now + gap;
        if hint_round {
            self.hint_asks = self.hint_asks.saturating_sub(1);
            if self.hint_asks == 0 {
                self.next_request_at += REPLY_JITTER_MS;
            }
        }
    }
}

impl Conversation {
    /// Asks for the commit that left our epoch when a probe or a hint is due. A hint whose
    /// round of asks is spent waits for its answers, then starts the next round (or is
    /// forgotten).
    pub(super) fn ask_if_behind<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let epoch = self.epoch();
        let probing = self.catch_up.probe_until.is_some_and(|u| now < u);
        let hinted = self.hint_probing();
        if hinted
            && !probing
            && self.catch_up.hint_asks == 0
            && now >= self.catch_up.next_request_at
        {
            let base = self.config.commit_inactivity;
            self.catch_up.next_hint_round(now, base);
        } else if (hinted || probing) && now >= self.catch_up.next_request_at {
            let gap = self.config.recovery_inactivity;
            self.catch_up.note_ask(now, gap, hinted && !probing);
            tracing::info!(conversation = %self.name, epoch, seen = self.catch_up.seen_epoch, "behind: asking for the missed commit");
            self.send_catch_up_request(ctx, out, epoch);
        }
    }

    /// Publishes our signed request for the commit that left `epoch`.
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

    /// A commit someone sent in answer to a catch-up request: it cancels our own answer
    /// if it is the commit we hold; for our epoch, it is validated like a live candidate
    /// and applied.
    pub(crate) fn on_catch_up_commit<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: pb::CommitCandidate,
    ) {
        let epoch = self.epoch();
        if c.conversation != self.name {
            return;
        }
        self.cancel_answered_reply(epoch, &c);
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
        let own_pending = self.phase.round().is_some_and(|f| f.own_pending);
        let hash: [u8; 32] = sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(&c.commit_message),
        )
        .into();
        // The group moved on with our own candidate while our window was still open
        // (MLS cannot process one's own commit as a peer's): merge it.
        let ours = self
            .phase
            .round()
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
                self.catch_up.restart_asks(ctx.now);
            }
        }
    }
}
