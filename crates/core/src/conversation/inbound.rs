//! Routing of inbound packets. Anything undecodable or out of place is refused with a
//! `Rejected` event; nothing from the network can panic or corrupt state.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::mls::{DecryptError, Decrypted};
use crate::proto::pb;

/// Buffered later-epoch messages: at most this many, this many bytes in all, this many
/// epochs ahead of ours. Nobody authenticated them (the epoch is a header claim).
pub(crate) const FUTURE_CAP: usize = 64;
pub(crate) const FUTURE_BYTES: usize = 1 << 20;
pub(crate) const FUTURE_EPOCHS: u64 = 4;

impl Conversation {
    /// How long a later-epoch message is kept: long enough for a commit that it overtook
    /// to arrive, or for a catch-up (a few asks), no longer.
    fn future_ttl(&self) -> Millis {
        2 * self.config.freeze + self.config.missing_votes_wait()
    }

    /// Keeps a message claiming a later epoch, within the bounds: when full, the farthest
    /// epoch goes first, then the oldest.
    pub(super) fn buffer_future(&mut self, now: Millis, epoch: u64, kind: FutureKind, ct: &[u8]) {
        let ours = self.epoch();
        if epoch > ours.saturating_add(FUTURE_EPOCHS) || ct.len() > FUTURE_BYTES {
            return;
        }
        let ttl = self.future_ttl();
        self.future
            .retain(|f| f.epoch > ours && now < f.arrived_at.saturating_add(ttl));
        self.future.push(FutureMessage {
            epoch,
            kind,
            ciphertext: ct.to_vec(),
            arrived_at: now,
        });
        let bytes = |f: &[FutureMessage]| f.iter().map(|m| m.ciphertext.len()).sum::<usize>();
        while self.future.len() > FUTURE_CAP || bytes(&self.future) > FUTURE_BYTES {
            let Some(evict) = (0..self.future.len()).max_by_key(|i| {
                (
                    self.future[*i].epoch,
                    std::cmp::Reverse(self.future[*i].arrived_at),
                )
            }) else {
                break;
            };
            self.future.remove(evict);
        }
    }

    /// Replays buffered messages of the epoch we just reached, and of the epochs we went
    /// through on the way (a catch-up applies several commits at once): those are past
    /// epochs now, still readable within `PAST_EPOCHS`.
    pub(super) fn replay_future<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let epoch = self.epoch();
        let ttl = self.future_ttl();
        let now = ctx.now;
        let (mut due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.future)
            .into_iter()
            .filter(|f| now < f.arrived_at.saturating_add(ttl))
            .partition(|f| f.epoch <= epoch);
        due.sort_by_key(|f| (f.epoch, f.arrived_at));
        self.future = later;
        for f in due {
            match f.kind {
                FutureKind::Mls => self.on_mls_message(ctx, out, &f.ciphertext),
                FutureKind::SealedVote => {
                    if let Ok(sv) = pb::SealedVote::decode(f.ciphertext.as_slice()) {
                        self.on_sealed_vote(ctx, out, sv)
                    }
                }
            }
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
        if self.closed().is_some() {
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
        if self.state() == ConversationState::PendingJoin {
            return;
        }
        let env = match pb::AppEnvelope::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                return out.reject(
                    InboundKind::Packet,
                    RejectCause::Malformed,
                    format!("undecodable app envelope: {e}"),
                );
            }
        };
        match env.body {
            Some(pb::app_envelope::Body::MlsMessage(ct)) => self.on_mls_message(ctx, out, &ct),
            Some(pb::app_envelope::Body::CommitCandidate(c)) => {
                let now = ctx.now;
                self.on_candidate(ctx, out, c, now)
            }
            Some(pb::app_envelope::Body::CatchUpRequest(r)) => self.on_catch_up_request(ctx, r),
            Some(pb::app_envelope::Body::CatchUpCommit(c)) => self.on_catch_up_commit(ctx, out, c),
            Some(pb::app_envelope::Body::Beacon(b)) => self.on_beacon(ctx, out, b),
            Some(pb::app_envelope::Body::SealedVote(v)) => self.on_sealed_vote(ctx, out, v),
            None => out.reject(
                InboundKind::Packet,
                RejectCause::Malformed,
                "empty app envelope",
            ),
        }
    }

    /// An MLS message on the app topic, in steps: open it, decode it, check its sender may
    /// still be heard, hand it to its handler.
    pub(super) fn on_mls_message<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        ct: &[u8],
    ) {
        let Some(decrypted) = self.open_mls_message(ctx, out, ct) else {
            return;
        };
        let msg = match pb::AppMessage::decode(decrypted.plaintext.as_slice()) {
            Ok(m) => m,
            Err(e) => {
                return out.reject(
                    InboundKind::Packet,
                    RejectCause::Malformed,
                    format!("undecodable application message: {e}"),
                );
            }
        };
        let sender = decrypted.sender;
        if !self.admit_app_sender(ctx.now, out, sender, decrypted.epoch, &msg) {
            return;
        }
        self.dispatch_app_message(ctx, out, sender, decrypted.epoch, msg);
    }

    /// Decrypts `ct`. `None` when it cannot be read now: a later epoch is buffered (and
    /// hints a catch-up and a fork), an expired one reported, anything else refused.
    fn open_mls_message<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        ct: &[u8],
    ) -> Option<Decrypted> {
        let mls = self.mls.as_mut()?;
        match mls.decrypt(ctx.provider, ct) {
            Ok(d) => Some(d),
            Err(DecryptError::WrongEpoch { message_epoch, .. }) => {
                self.hint(ctx.now, message_epoch);
                self.fork_hint(ctx);
                self.buffer_future(ctx.now, message_epoch, FutureKind::Mls, ct);
                None
            }
            Err(DecryptError::Expired {
                message_epoch,
                our_epoch,
            }) => {
                // Before we joined it was never ours; after, it is a loss to report. (The
                // epoch is an unauthenticated header: junk can claim old ones, as it can
                // fill `rejected`; each costs one header parse, no decryption.)
                if message_epoch >= self.sds.floor_epoch() {
                    out.event(Event::MessageExpired {
                        epoch: message_epoch,
                        our_epoch,
                    });
                }
                None
            }
            Err(e) if MlsConversation::peek_epoch(ct).is_some_and(|m| m < self.epoch()) => {
                // A past epoch we hold no keys for (before we joined), a replay, or junk:
                // not a sign of a fork.
                out.reject(InboundKind::Packet, e.cause(), e);
                None
            }
            Err(e) => {
                // At our epoch yet unreadable: junk, or a member on another branch of a
                // fork. A beacon (suppressed if others send theirs) tells which.
                self.fork_hint(ctx);
                out.reject(InboundKind::Packet, e.cause(), e);
                None
            }
        }
    }

    /// Whether `sender`'s message of `epoch` is heard; a message of our epoch also marks
    /// its sender as heard from (for the fork watch).
    fn admit_app_sender(
        &mut self,
        now: Millis,
        out: &mut Output,
        sender: MemberId,
        epoch: u64,
        msg: &pb::AppMessage,
    ) -> bool {
        if epoch < self.epoch() {
            // From an epoch since closed: its chat still counts; governance (proposals,
            // votes, syncs, requests) was for a group state that no longer exists.
            if !matches!(
                msg.body,
                Some(pb::app_message::Body::Chat(_)) | Some(pb::app_message::Body::Sds(_))
            ) {
                return false;
            }
            // A member removed since still holds that epoch's keys: what it wrote then
            // arrives soon after we applied its removal (a relay delivery the commit
            // overtook, or one buffered while we caught up and replayed at once); later,
            // it can only be new words under an old key.
            if !self.members().contains(&sender) {
                let grace = 2 * self.config.recovery_inactivity;
                let recent = self
                    .fork_watch
                    .removed_when(&sender)
                    .is_some_and(|t| now < t.saturating_add(grace));
                if !recent {
                    out.reject(
                        InboundKind::Packet,
                        RejectCause::Stale,
                        format!("chat of epoch {epoch} from {sender}, removed since"),
                    );
                    return false;
                }
            }
        } else {
            self.fork_watch.heard.insert(sender, now);
        }
        true
    }

    /// Hands a decrypted application message of `epoch` to its handler.
    fn dispatch_app_message<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sender: MemberId,
        epoch: u64,
        msg: pb::AppMessage,
    ) {
        match msg.body {
            Some(pb::app_message::Body::Chat(c)) => out.event(Event::Chat {
                sender,
                text: c.text,
                epoch,
                timestamp: c.timestamp_ms,
                id: None,
                sent_to: None,
            }),
            Some(pb::app_message::Body::Sds(m)) => self.on_sds(ctx, out, sender, m),
            Some(pb::app_message::Body::Proposal(p)) => self.on_proposal(ctx, out, sender, p),
            Some(pb::app_message::Body::Vote(v)) => {
                self.on_vote(ctx, out, v);
            }
            Some(pb::app_message::Body::Sync(s)) => self.on_sync(ctx, out, s),
            Some(pb::app_message::Body::ProposalRequest(id)) => {
                self.on_proposal_request(ctx, Some(sender), id)
            }
            Some(pb::app_message::Body::ProposalState(p)) => {
                self.on_proposal_state(ctx, out, sender, p)
            }
            None => out.reject(
                InboundKind::Packet,
                RejectCause::Malformed,
                "empty application message",
            ),
        }
    }
}
