//! Leaving our branch (or an epoch nobody can bring us out of) and joining afresh.

use openmls_traits::OpenMlsProvider;

use crate::conversation::*;

impl Conversation {
    /// Beacons say the group is past our reach: rejoin once two members of our roster
    /// (or the only other one) say so.
    pub(super) fn maybe_rejoin_beyond_reach<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let reach = self
            .epoch()
            .saturating_add(self.config.catch_up_window as u64);
        let members = self.members();
        let fresh = self.beacon_fresh();
        let saying = self
            .fork_watch
            .beacons
            .iter()
            .filter(|(m, h)| {
                members.contains(m) && h.epoch > reach && now < h.heard_at.saturating_add(fresh)
            })
            .count();
        let others = members.len().saturating_sub(1);
        if others > 0 && saying >= others.min(2) {
            tracing::warn!(conversation = %self.name, epoch = self.epoch(), "the group moved past what anyone keeps for us: rejoining");
            self.rejoin(ctx, out, RejoinReason::TooFarBehind);
        }
    }

    /// Leaves our MLS state for this conversation and joins afresh (see the module docs).
    pub(super) fn rejoin<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        reason: RejoinReason,
    ) {
        let pending = match PendingJoin::announce(&self.name, &self.config, ctx, out, true, 0) {
            Ok(pj) => pj,
            Err(e) => {
                return out.event(Event::Error {
                    operation: "rejoin",
                    message: e.to_string(),
                });
            }
        };
        self.start_over(ctx, out, pending, reason);
    }

    /// Drops our MLS state and everything of the group, keeping only `pending`: the
    /// attempt that waits for a welcome.
    fn start_over<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        pending: PendingJoin,
        reason: RejoinReason,
    ) {
        self.delete_mls(ctx, out);
        *self = Self::blank(
            &self.name,
            self.me,
            self.config.clone(),
            Phase::PendingJoin(pending),
        );
        out.event(Event::Rejoining { reason });
        out.event(Event::StateChanged {
            state: ConversationState::PendingJoin,
        });
    }

    /// A commit replaced our leaf with another key package of ours: drop the group and
    /// wait for that commit's welcome. That key package is in the commit already, so
    /// nothing new is announced; the last announcement we made (the key package a
    /// duplicate rejoin commits) is repeated after `commit_inactivity`, which makes
    /// members re-send the welcome if we missed it. If none comes, the rejoin is renewed
    /// as usual.
    pub(crate) fn await_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        committer: MemberId,
    ) {
        tracing::info!(conversation = %self.name, "re-added with another of our key packages: waiting for its welcome");
        let announcement = std::mem::take(&mut self.last_announcement);
        let pending = PendingJoin::awaiting(ctx.now, announcement, &self.config);
        // Only the welcome of the commit that re-added us: its committer signed it.
        let early = std::mem::take(&mut self.early_welcome)
            .into_iter()
            .find(|(signer, _)| *signer == committer)
            .map(|(_, raw)| raw);
        self.start_over(ctx, out, pending, RejoinReason::Retry);
        // The committer sends the welcome when it applies the commit, before the end of
        // our own window: it has usually come already, and nobody re-sends it to a
        // member that announces nothing.
        if let Some(raw) = early {
            self.on_welcome_packet(ctx, out, &raw);
        }
    }
}
