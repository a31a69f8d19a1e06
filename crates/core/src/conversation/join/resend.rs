//! Welcomes kept and re-sent: a joiner that missed its welcome announces again, and one
//! member's copy, after a random delay, serves it.

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::welcome::welcome_copy_sender;
use crate::config::REPLY_JITTER_MS;
use crate::conversation::*;
use crate::proto::pb;

/// How many copies of one welcome are remembered as seen (see `remember_welcome`).
const WELCOME_COPIES_SEEN: usize = 8;
/// How far from our clock a welcome copy's send time may be for it to cancel a re-send.
const WELCOME_COPY_FRESH_MS: Millis = 30_000;
/// How many recent welcomes are kept for re-sending.
const WELCOME_CAP: usize = 8;

/// A welcome we sent or saw, kept to re-send to a joiner that missed it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RecentWelcome {
    /// The members it adds.
    pub joiners: Vec<MemberId>,
    /// The `WelcomeEnvelope` as first sent or seen.
    pub envelope: Vec<u8>,
    /// When a copy last went out (ours, or another member's that counts as ours).
    pub resent_at: Millis,
    /// A re-send a joiner asked for, delayed so that one member's copy serves all.
    #[serde(default)]
    pub due: Option<Millis>,
    /// Digests of the copies we sent or saw (at most `WELCOME_COPIES_SEEN`): a copy seen
    /// before (a replay) cancels no re-send.
    #[serde(default)]
    pub seen: Vec<[u8; 32]>,
}

impl RecentWelcome {
    /// Remembers the digest of a copy sent or seen (a replay of it cancels nothing).
    fn note_copy(&mut self, digest: [u8; 32]) {
        if !self.seen.contains(&digest) {
            self.seen.push(digest);
            if self.seen.len() > WELCOME_COPIES_SEEN {
                self.seen.remove(0);
            }
        }
    }

    /// Whether a joiner's request may schedule a re-send: none is scheduled, and the
    /// last copy went out at least `gap` ago.
    fn may_resend(&self, now: Millis, gap: Millis) -> bool {
        now >= self.resent_at.saturating_add(gap) && self.due.is_none()
    }

    /// Whether a scheduled re-send is due.
    fn is_due(&self, now: Millis) -> bool {
        self.due.is_some_and(|d| d <= now)
    }

    /// A copy went out now (ours, or another member's fresh one, with this digest): any
    /// re-send we scheduled is no longer needed.
    fn sent_copy(&mut self, now: Millis, digest: [u8; 32]) {
        self.note_copy(digest);
        self.resent_at = now;
        self.due = None;
    }
}

impl Conversation {
    /// Any member holding the welcome re-sends it, at most once per gap, after a random
    /// delay: seeing someone else's copy first cancels ours and counts as ours (see
    /// `remember_welcome`), which keeps it to about one copy per request.
    pub(super) fn resend_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        member: MemberId,
    ) {
        let gap = self.config.recovery_inactivity;
        let jitter = ctx.rng.gen_range(0..REPLY_JITTER_MS);
        if let Some(w) = self
            .recent_welcomes
            .iter_mut()
            .rev()
            .find(|w| w.joiners.contains(&member))
            .filter(|w| w.may_resend(ctx.now, gap))
        {
            w.due = Some(ctx.now + jitter);
        }
    }

    /// Sends the welcome re-sends that are due. While we are still in the welcome's epoch
    /// the sync is sealed afresh: an election decided since the commit changed the
    /// steward list, and a joiner given the old one would reject every later commit.
    pub(crate) fn tick_welcome_resends<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let due: Vec<usize> = (0..self.recent_welcomes.len())
            .filter(|i| self.recent_welcomes[*i].is_due(now))
            .collect();
        for i in due {
            let w = &mut self.recent_welcomes[i];
            w.due = None;
            w.resent_at = now;
            let stored = w.envelope.clone();
            let fresh = match pb::WelcomeEnvelope::decode(stored.as_slice())
                .ok()
                .and_then(|e| e.body)
            {
                Some(pb::welcome_envelope::Body::Welcome(mut mw)) => {
                    if mw.epoch == self.epoch() {
                        mw.sync = self.seal_sync(ctx, out);
                    }
                    // Signed as sent now, so that it cancels the others' re-sends (the
                    // sync kept from an earlier epoch included: we send it).
                    self.sign_copy(ctx, &mut mw);
                    pb::WelcomeEnvelope {
                        body: Some(pb::welcome_envelope::Body::Welcome(mw)),
                    }
                    .encode_to_vec()
                }
                _ => stored,
            };
            let w = &mut self.recent_welcomes[i];
            w.note_copy(Sha256::digest(&fresh).into());
            out.send(Subtopic::Welcome, fresh);
        }
    }

    /// When the next welcome re-send is due.
    pub(crate) fn welcome_resend_deadline(&self) -> Deadline {
        let due = self.recent_welcomes.iter().filter_map(|w| w.due).min();
        timer::at(due, Timer::WelcomeResend)
    }

    /// After merging a peer's commit whose sealed welcome we opened: keep that welcome,
    /// with the conversation sync sealed now at its epoch, to re-send when a joiner asks
    /// again (the committer normally sends it; this copy serves if it never does).
    pub(crate) fn keep_candidate_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        mut mw: pb::MemberWelcome,
        joiners: Vec<MemberId>,
    ) {
        mw.sync = self.seal_sync(ctx, out);
        self.sign_copy(ctx, &mut mw);
        let env = pb::WelcomeEnvelope {
            body: Some(pb::welcome_envelope::Body::Welcome(mw)),
        }
        .encode_to_vec();
        self.remember_welcome(ctx.now, joiners, env);
    }

    /// Remembers a welcome we sent or saw, keyed by its MLS welcome: copies with freshly
    /// sealed syncs are the same welcome. A copy new to us whose sync a member signed is
    /// another member's re-send and counts as ours. One we sent or saw before is a replay
    /// (anyone can make one), and one whose sync no member signed may be a replay with a
    /// byte changed: neither cancels anything (a replayed sync may be older than the one
    /// a re-send seals now). (Not opening the copy's sync to tell: anyone could put a
    /// member's live message there and make us consume it unread.)
    pub(super) fn remember_welcome(
        &mut self,
        now: Millis,
        joiners: Vec<MemberId>,
        envelope: Vec<u8>,
    ) {
        let decoded = |e: &[u8]| match pb::WelcomeEnvelope::decode(e).ok().and_then(|e| e.body) {
            Some(pb::welcome_envelope::Body::Welcome(w)) => Some(w),
            _ => None,
        };
        let copy = decoded(&envelope);
        let key = copy.as_ref().map(|w| w.welcome.as_slice());
        let digest: [u8; 32] = Sha256::digest(&envelope).into();
        let members = self.members();
        if let Some(w) = self.recent_welcomes.iter_mut().find(|w| {
            w.envelope == envelope
                || (key.is_some()
                    && decoded(&w.envelope).as_ref().map(|x| x.welcome.as_slice()) == key)
        }) {
            if w.seen.contains(&digest) || w.envelope == envelope {
                return;
            }
            // Fresh, too: members' older signed copies, replayed to members that have
            // forgotten them (8 remembered), would otherwise cancel re-sends again.
            let a_members_copy = copy
                .as_ref()
                .filter(|c| c.sent_at_ms.abs_diff(now) <= WELCOME_COPY_FRESH_MS)
                .and_then(welcome_copy_sender)
                .is_some_and(|s| members.contains(&s));
            if !a_members_copy {
                return;
            }
            w.sent_copy(now, digest);
            return;
        }
        self.recent_welcomes.push_back(RecentWelcome {
            joiners,
            envelope,
            resent_at: now,
            due: None,
            seen: vec![digest],
        });
        while self.recent_welcomes.len() > WELCOME_CAP {
            self.recent_welcomes.pop_front();
        }
    }
}
