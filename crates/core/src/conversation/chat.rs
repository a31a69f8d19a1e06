//! Chat under Scalable Data Sync (see [`crate::sds`]): what the conversation adds to the
//! channel is who the members are, the MLS epoch, signatures and when sending is allowed.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::proto::pb;
use crate::sds::{self, Effects, Params};

impl Conversation {
    /// Sends a chat message (an MLS application message).
    pub fn send_chat<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        text: &str,
    ) -> Result<Output, CommandError> {
        self.check_open()?;
        if text.is_empty() || text.len() > 4096 {
            return Err(CommandError::BadText);
        }
        match self.state() {
            ConversationState::Working | ConversationState::Reelection => {}
            s => return Err(CommandError::Blocked(s)),
        }
        let mut out = Output::default();
        let id = self.send_sds_chat(ctx, &mut out, text)?;
        self.note_sent_chat(ctx.now, text);
        let recipients = self.members().len().saturating_sub(1) as u32;
        out.event(Event::Chat {
            sender: self.me,
            text: text.to_string(),
            epoch: self.epoch(),
            timestamp: ctx.now,
            id: Some(hex::encode(id)),
            sent_to: Some(recipients),
        });
        Ok(out)
    }

    fn sds_params(&self) -> Params {
        Params::from_config(&self.config)
    }

    /// Whether application messages may go out now (as chat: not while frozen).
    fn may_send_app(&self) -> bool {
        self.mls.is_some()
            && matches!(
                self.state(),
                ConversationState::Working | ConversationState::Reelection
            )
    }

    /// When the chat channel wants a tick (only while it could send what is due).
    pub(super) fn chat_deadline(&self) -> Option<Millis> {
        self.may_send_app()
            .then(|| self.sds.deadline(&self.sds_params()))
            .flatten()
    }

    /// Sends `text` as an SDS message; returns its id.
    pub(super) fn send_sds_chat<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        text: &str,
    ) -> Result<sds::MsgId, SendError> {
        let content = pb::ChatMessage {
            text: text.to_string(),
            timestamp_ms: ctx.now,
        }
        .encode_to_vec();
        let recipients: Vec<MemberId> = self
            .members()
            .into_iter()
            .filter(|m| *m != self.me)
            .collect();
        let p = self.sds_params();
        let epoch = self.epoch();
        let key = &ctx.identity.eth;
        let (id, msg) = self
            .sds
            .send(
                ctx.now,
                &p,
                &self.name,
                self.me,
                epoch,
                recipients,
                content,
                |b| key.sign(b).ok(),
            )
            .ok_or(SendError::ChatSignature)?;
        self.send_app(ctx, out, sds_app(msg))?;
        Ok(id)
    }

    /// An SDS message from the MLS-authenticated member `from`.
    pub(super) fn on_sds<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        from: MemberId,
        msg: pb::SdsMessage,
    ) {
        let checked = match sds::check(&self.name, from, msg) {
            Ok(c) => c,
            Err(e) => return out.reject(InboundKind::Chat, e.cause(), e.to_string()),
        };
        // The author must be a member, or one our log saw removed (its message was sent
        // while it was one, and reaches us re-broadcast for repair).
        if !self.known_member(&checked.sender) {
            return out.reject(
                InboundKind::Chat,
                RejectCause::Invalid,
                format!("chat written by non-member {}", checked.sender),
            );
        }
        let members = self.members();
        let p = self.sds_params();
        let log = &self.fork_watch.log;
        let fx = self
            .sds
            .receive(ctx.now, &p, self.me, &members, checked, |e| {
                may_repair(log, e)
            });
        self.apply_chat_effects(ctx, out, fx);
    }

    /// Runs the channel's timers: give up on lost ids, answer repairs, re-send, sync.
    pub(super) fn tick_chat<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        if !self.may_send_app() {
            return;
        }
        let p = self.sds_params();
        if self.sds.deadline(&p).is_none_or(|t| t > ctx.now) {
            return;
        }
        let members = self.members();
        let log = &self.fork_watch.log;
        let fx = self
            .sds
            .tick(ctx.now, &p, self.me, &members, |e| may_repair(log, e));
        self.apply_chat_effects(ctx, out, fx);
    }

    fn apply_chat_effects<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        fx: Effects,
    ) {
        for d in fx.delivered {
            match pb::ChatMessage::decode(d.content.as_slice()) {
                Ok(c) => out.event(Event::Chat {
                    sender: d.sender,
                    text: c.text,
                    epoch: d.epoch,
                    timestamp: c.timestamp_ms,
                    id: Some(hex::encode(d.id)),
                    sent_to: None,
                }),
                Err(e) => out.reject(
                    InboundKind::Chat,
                    RejectCause::Malformed,
                    format!("undecodable chat content: {e}"),
                ),
            }
        }
        for (id, sender) in fx.lost {
            out.event(Event::ChatLost {
                id: hex::encode(id),
                sender,
            });
        }
        for a in fx.acks {
            out.event(Event::ChatDelivery {
                id: hex::encode(a.id),
                acked: a.acked,
                of: a.of,
                done: a.done,
            });
        }
        if let Some(t) = fx.history_since {
            out.want_history_since(t);
        }
        if !self.may_send_app() {
            return;
        }
        for bytes in fx.rebroadcast {
            if let Ok(msg) = pb::SdsMessage::decode(bytes.as_slice()) {
                let _ = self.send_app(ctx, out, sds_app(msg));
            }
        }
        if fx.sync_due {
            let p = self.sds_params();
            let msg = self.sds.sync(ctx.now, &p, &self.name, self.me);
            // Alone, there is nobody to tell what we have (building it settled the debt).
            if self.members().len() > 1 {
                let _ = self.send_app(ctx, out, sds_app(msg));
            }
        }
    }
}

/// Whether re-broadcasting a message of `epoch` to the group as it is now shows it only to
/// members that were in the group then: nobody was added since (and our epoch log reaches
/// back that far). Otherwise repair is left to history (store) queries, whose ciphertext
/// only members of that epoch can decrypt.
fn may_repair(log: &std::collections::VecDeque<super::fork::EpochRecord>, epoch: u64) -> bool {
    log.front().is_some_and(|r| r.epoch <= epoch)
        && log
            .iter()
            .filter(|r| r.epoch > epoch)
            .all(|r| r.added.is_empty())
}

fn sds_app(msg: pb::SdsMessage) -> pb::AppMessage {
    pb::AppMessage {
        body: Some(pb::app_message::Body::Sds(msg)),
    }
}
