//! The pending join: our announcement, re-sent until a welcome comes, and given up (or,
//! for a rejoin, renewed) when none does.

use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

use super::{build_announcement, welcome_envelope_kp};
use crate::conversation::*;

/// State kept while waiting for a welcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingJoin {
    /// When this attempt began (its expiry runs from here).
    pub started_at: Millis,
    /// Our encoded announcement (empty when we wait for a welcome without one).
    pub announcement: Vec<u8>,
    /// When the announcement is next repeated.
    pub next_announce: Millis,
    /// We were a member and join afresh (see `fork`): the announcement says so, and the
    /// attempt is renewed instead of given up.
    #[serde(default)]
    pub rejoin: bool,
    /// Rejoin attempts renewed so far (each waits twice as long, up to 32×).
    #[serde(default)]
    pub attempts: u32,
}

impl PendingJoin {
    /// Announces a fresh signed key package for `name` (sent on `out`) and returns the
    /// attempt that waits for its welcome.
    pub(crate) fn announce<P: OpenMlsProvider>(
        name: &str,
        config: &ConversationConfig,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        rejoin: bool,
        attempts: u32,
    ) -> Result<Self, ConversationError> {
        let announcement = build_announcement(name, ctx, rejoin)?;
        out.send(Subtopic::Welcome, welcome_envelope_kp(&announcement));
        Ok(Self {
            started_at: ctx.now,
            announcement,
            next_announce: ctx.now + config.commit_inactivity,
            rejoin,
            attempts,
        })
    }

    /// When this attempt is given up (or, for a rejoin, renewed).
    pub fn expires_at(&self, config: &ConversationConfig) -> Millis {
        let expiry = config.pending_join_expiry();
        self.started_at
            .saturating_add(expiry.saturating_mul(1 << self.attempts.min(5)))
    }

    /// A rejoin that waits for the welcome of a commit that already re-added us (see
    /// `fork::await_welcome`): nothing new is announced; `announcement`, our last one, is
    /// repeated after `commit_inactivity` (never, if there is none).
    pub(crate) fn awaiting(
        now: Millis,
        announcement: Vec<u8>,
        config: &ConversationConfig,
    ) -> Self {
        let next_announce = if announcement.is_empty() {
            Millis::MAX
        } else {
            now.saturating_add(config.commit_inactivity)
        };
        Self {
            started_at: now,
            announcement,
            next_announce,
            rejoin: true,
            attempts: 0,
        }
    }

    /// Repeats our announcement if it is due: a steward that already committed our add
    /// re-sends the welcome we missed; otherwise it is a fresh request.
    fn reannounce(&mut self, now: Millis, config: &ConversationConfig, out: &mut Output) {
        if now >= self.next_announce && !self.announcement.is_empty() {
            self.next_announce = now.saturating_add(config.commit_inactivity);
            out.send(Subtopic::Welcome, welcome_envelope_kp(&self.announcement));
        }
    }

    /// When the announcement is repeated or the attempt expires, whichever is sooner.
    pub(crate) fn deadline(&self, config: &ConversationConfig) -> Deadline {
        let mut soonest = Soonest::default();
        soonest.add(Some((self.next_announce, Timer::JoinAnnounce)));
        soonest.add(Some((self.expires_at(config), Timer::JoinExpiry)));
        soonest.get()
    }
}

impl Conversation {
    /// While we wait for a welcome: renew or give up an attempt that expired, else repeat
    /// our announcement when it is due.
    pub(crate) fn tick_pending_join<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let Some(pj) = self.pending_join.as_mut() else {
            return;
        };
        if ctx.now >= pj.expires_at(&self.config) {
            if pj.rejoin {
                // We were a member: try again with a fresh key package (an old one may
                // have been consumed by an add whose welcome we never got), waiting
                // longer each time, rather than give up a conversation we belong to.
                let attempts = pj.attempts.saturating_add(1);
                tracing::warn!(conversation = %self.name, attempts, "no welcome arrived: announcing a fresh key package");
                match PendingJoin::announce(&self.name, &self.config, ctx, out, true, attempts) {
                    Ok(pj) => {
                        self.pending_join = Some(pj);
                        out.event(Event::Rejoining {
                            reason: RejoinReason::Retry,
                        });
                    }
                    Err(e) => out.event(Event::Error {
                        operation: "rejoin",
                        message: e.to_string(),
                    }),
                }
                return;
            }
            tracing::warn!(conversation = %self.name, "no welcome arrived: giving up the join");
            self.close(ctx, out, LeaveReason::JoinExpired);
            return;
        }
        pj.reannounce(ctx.now, &self.config, out);
    }
}
