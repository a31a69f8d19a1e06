//! Welcomes received: the one that makes us a member, and, while we are one, copies kept
//! for re-sending or for a commit that re-adds us.

use std::collections::BTreeSet;

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::welcome::welcome_signer;
use crate::conversation::*;
use crate::proto::pb;

/// How many early welcomes (see `Conversation::early_welcome`) are kept.
const EARLY_WELCOME_CAP: usize = 4;

impl Conversation {
    /// A welcome. While we are a member it is a copy to keep (see `keep_welcome_copy`);
    /// while we wait for one that names us, it is our way into the group, with the
    /// conversation sync sealed inside.
    pub(super) fn on_member_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: pb::MemberWelcome,
        raw: &[u8],
    ) {
        if w.conversation != self.name {
            return;
        }
        if self.state() != ConversationState::PendingJoin {
            return self.keep_welcome_copy(ctx.now, &w, raw);
        }
        if !w
            .joiner_ids
            .iter()
            .any(|j| j.as_slice() == self.me.as_bytes())
        {
            return;
        }
        let Some(mls) = self.open_welcome(ctx, out, &w) else {
            return;
        };
        self.enter_group(ctx, out, mls);
        if !w.sync.is_empty() {
            self.open_welcome_sync(ctx, out, &w.sync);
        }
    }

    /// A welcome seen while we are a member (`raw`: its envelope). Kept for re-sending
    /// only when it is the welcome of a commit we applied, signed by that commit's
    /// steward and naming exactly whom it added: nobody can make members re-publish
    /// bytes they cannot vouch for. Or kept as an early welcome, when it re-adds us into
    /// our next epoch.
    fn keep_welcome_copy(&mut self, now: Millis, w: &pb::MemberWelcome, raw: &[u8]) {
        let joiners: Vec<MemberId> = w
            .joiner_ids
            .iter()
            .filter_map(|j| MemberId::from_slice(j).ok())
            .collect();
        let as_set = |v: &[MemberId]| v.iter().copied().collect::<BTreeSet<_>>();
        let ours = self.recent_adds.iter().any(|(epoch, committer, added)| {
            *epoch == w.epoch
                && as_set(added) == as_set(&joiners)
                && MemberId::from_slice(&w.committer).is_ok_and(|c| c == *committer)
        });
        if ours && welcome_signer(w).is_some() {
            self.remember_welcome(now, joiners, raw.to_vec());
        } else if joiners.contains(&self.me)
            && w.epoch == self.epoch().saturating_add(1)
            && let Some(signer) = welcome_signer(w).filter(|s| self.members().contains(s))
        {
            // A commit we have not applied yet re-adds us (a duplicate rejoin): its
            // committer sent the welcome at once, before our window ends. Only a
            // member of our epoch can have made that commit; one slot per member, so
            // none can push out another's.
            self.early_welcome.retain(|(s, _)| *s != signer);
            self.early_welcome.push((signer, raw.to_vec()));
            if self.early_welcome.len() > EARLY_WELCOME_CAP {
                self.early_welcome.remove(0);
            }
        }
    }

    /// The group a welcome naming us opens into, if its committer signed it and is the
    /// group's welcome sender.
    fn open_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: &pb::MemberWelcome,
    ) -> Option<MlsConversation> {
        // A group of this name left over from an earlier membership (we were removed and
        // are rejoining) would block the new one; while pending we have no live group.
        if let Ok(Some(stale)) = MlsConversation::load(ctx.provider, &self.name) {
            let _ = stale.delete(ctx.provider);
        }
        // The committer signed this welcome with the Ethereum key its MLS credential
        // names (checked against the group's welcome sender below).
        let Some(committer) = welcome_signer(w) else {
            out.reject(
                InboundKind::Welcome,
                RejectCause::Unauthenticated,
                "welcome without a valid committer signature",
            );
            return None;
        };
        match MlsConversation::join_checked(ctx.provider, &w.welcome, Some(&self.name)) {
            Ok(Some((m, sender))) if sender == committer => Some(m),
            Ok(Some((m, sender))) => {
                let _ = m.delete(ctx.provider);
                out.reject(
                    InboundKind::Welcome,
                    RejectCause::Unauthenticated,
                    format!("welcome signed by {committer} but sent by the group's {sender}"),
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                out.reject(InboundKind::Welcome, RejectCause::Unprocessable, e);
                None
            }
        }
    }

    /// We are a member of `mls`'s group: the pending join ends and we start Working,
    /// probing first whether the group has moved on.
    fn enter_group<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        mls: MlsConversation,
    ) {
        let epoch = mls.epoch();
        self.mls = Some(mls);
        if let Some(pj) = self.phase.pending_join_mut()
            && !pj.announcement.is_empty()
        {
            self.last_announcement = std::mem::take(&mut pj.announcement);
        }
        self.scores
            .sync_roster(&self.members(), self.config.default_peer_score);
        self.note_group_size(ctx.now);
        tracing::info!(conversation = %self.name, epoch, "joined");
        out.event(Event::Joined { epoch });
        // Chat from before this epoch is not ours to read (nor, after a rejoin, ours to
        // wait for: the branch we left was reported in `BranchAbandoned`).
        self.sds.reset(epoch);
        self.enter(out, Phase::Working);
        // The welcome may be a re-send from a member that has moved on since: ask before
        // acting on what may be an old epoch.
        self.start_probe(ctx.now);
    }

    /// Opens the conversation sync sealed in our welcome and applies it.
    fn open_welcome_sync<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sync: &[u8],
    ) {
        let opened = self.mls.as_mut().map(|m| m.decrypt(ctx.provider, sync));
        match opened {
            Some(Ok(d)) => match pb::AppMessage::decode(d.plaintext.as_slice()) {
                Ok(pb::AppMessage {
                    body: Some(pb::app_message::Body::Sync(s)),
                }) => self.on_sync(ctx, out, s),
                _ => out.reject(
                    InboundKind::Sync,
                    RejectCause::Malformed,
                    "welcome carries no conversation sync",
                ),
            },
            Some(Err(e)) => out.reject(InboundKind::Sync, e.cause(), e),
            None => {}
        }
    }
}
