//! Routing of inbound packets. Anything undecodable or out of place is refused with a
//! `Rejected` event; nothing from the network can panic or corrupt state.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::mls::DecryptError;
use crate::proto::pb;

/// Most buffered future-epoch messages.
const FUTURE_CAP: usize = 512;

impl Conversation {
    /// Replays buffered messages that belong to the epoch we just reached.
    pub(super) fn replay_future<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let epoch = self.epoch();
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.future)
            .into_iter()
            .filter(|(e, _)| *e >= epoch)
            .partition(|(e, _)| *e == epoch);
        self.future = later;
        for (_, ct) in now {
            self.on_mls_message(ctx, out, &ct);
        }
    }

    /// Handles one packet received on this conversation's `subtopic`. Our own echoes must
    /// have been dropped by the transport already.
    pub fn handle_packet<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        subtopic: Subtopic,
        payload: &[u8],
    ) -> Output {
        let mut out = Output::default();
        if self.closed.is_some() {
            return out;
        }
        match subtopic {
            Subtopic::Welcome => self.on_welcome_packet(ctx, &mut out, payload),
            Subtopic::AppMsg => self.on_app_packet(ctx, &mut out, payload),
        }
        self.replay_early_candidates(ctx, &mut out);
        out
    }

    fn on_app_packet<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        payload: &[u8],
    ) {
        if self.state == ConversationState::PendingJoin {
            return;
        }
        let env = match pb::AppEnvelope::decode(payload) {
            Ok(e) => e,
            Err(e) => return out.reject("packet", format!("undecodable app envelope: {e}")),
        };
        match env.body {
            Some(pb::app_envelope::Body::MlsMessage(ct)) => self.on_mls_message(ctx, out, &ct),
            Some(pb::app_envelope::Body::CommitCandidate(c)) => {
                let now = ctx.now;
                self.on_candidate(ctx, out, c, now)
            }
            Some(pb::app_envelope::Body::CatchUpRequest(r)) => self.on_catch_up_request(ctx, r),
            Some(pb::app_envelope::Body::CatchUpCommit(c)) => self.on_catch_up_commit(ctx, out, c),
            None => out.reject("packet", "empty app envelope"),
        }
    }

    pub(super) fn on_mls_message<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        ct: &[u8],
    ) {
        let Some(mls) = self.mls.as_mut() else { return };
        let decrypted = match mls.decrypt(ctx.provider, ct) {
            Ok(d) => d,
            Err(DecryptError::WrongEpoch {
                message_epoch,
                our_epoch,
            }) => {
                if message_epoch > our_epoch {
                    self.behind(ctx.now, message_epoch);
                    if self.future.len() < FUTURE_CAP {
                        self.future.push((message_epoch, ct.to_vec()));
                    }
                }
                return;
            }
            Err(e) => return out.reject("packet", e),
        };
        let msg = match pb::AppMessage::decode(decrypted.plaintext.as_slice()) {
            Ok(m) => m,
            Err(e) => return out.reject("packet", format!("undecodable application message: {e}")),
        };
        let sender = decrypted.sender;
        match msg.body {
            Some(pb::app_message::Body::Chat(c)) => out.event(Event::Chat {
                sender,
                text: c.text,
                epoch: self.epoch(),
                timestamp: c.timestamp_ms,
            }),
            Some(pb::app_message::Body::Proposal(p)) => self.on_proposal(ctx, out, sender, p),
            Some(pb::app_message::Body::Vote(v)) => self.on_vote(ctx, out, v),
            Some(pb::app_message::Body::Sync(s)) => self.on_sync(ctx, out, s),
            Some(pb::app_message::Body::ProposalRequest(id)) => self.on_proposal_request(ctx, id),
            Some(pb::app_message::Body::ProposalState(p)) => self.on_proposal_state(ctx, out, p),
            None => out.reject("packet", "empty application message"),
        }
    }
}
