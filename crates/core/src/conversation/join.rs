//! Joining: signed key package announcements, welcomes, and the conversation sync that
//! gives a joiner the steward list, scores and timings.

use openmls_traits::OpenMlsProvider;
use prost::Message;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::*;
use crate::config::REPLY_JITTER_MS;
use crate::identity;
use crate::mls::StagedCommitInfo;
use crate::proto::pb;
use crate::steward;

/// Domain separation for key package announcement signatures (v2: with a timestamp).
const KP_DOMAIN: &[u8] = b"demls/key-package/v2";
/// The same for a member asking to be added afresh (see `fork`): a normal announcement
/// cannot be turned into a rejoin by flipping its flag.
const KP_REJOIN_DOMAIN: &[u8] = b"demls/key-package/rejoin/v1";
/// How many copies of one welcome are remembered as seen (see `remember_welcome`).
const WELCOME_COPIES_SEEN: usize = 8;

impl RecentWelcome {
    fn note_copy(&mut self, digest: [u8; 32]) {
        if !self.seen.contains(&digest) {
            self.seen.push(digest);
            if self.seen.len() > WELCOME_COPIES_SEEN {
                self.seen.remove(0);
            }
        }
    }
}

/// How many early welcomes (see `Conversation::early_welcome`) are kept.
const EARLY_WELCOME_CAP: usize = 4;
/// Domain separation for welcome signatures.
const WELCOME_DOMAIN: &[u8] = b"demls/welcome/v1";
/// The same for the signature of the member that sealed a welcome copy's sync.
const WELCOME_COPY_DOMAIN: &[u8] = b"demls/welcome-copy/v1";
/// How far from our clock a welcome copy's send time may be for it to cancel a re-send.
const WELCOME_COPY_FRESH_MS: Millis = 30_000;
/// The exporter label of the key a candidate's welcome is sealed under.
const CANDIDATE_WELCOME_LABEL: &str = "demls/candidate-welcome/v1";
/// How far an announcement's timestamp may run ahead of our clock.
pub(super) const ANNOUNCE_SKEW_MS: Millis = 60_000;
/// Key packages of members we added, remembered so their announcements cannot add again.
const USED_KP_CAP: usize = 256;

fn kp_signed_bytes(
    conversation: &str,
    timestamp_ms: u64,
    key_package: &[u8],
    rejoin: bool,
) -> Vec<u8> {
    let domain = if rejoin { KP_REJOIN_DOMAIN } else { KP_DOMAIN };
    let mut m = Vec::with_capacity(domain.len() + conversation.len() + key_package.len() + 9);
    m.extend_from_slice(domain);
    m.extend_from_slice(conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m.extend_from_slice(key_package);
    m
}

/// What a welcome's committer signs: the conversation, the new epoch, the MLS welcome's
/// hash and the joiners. (Not the sync: it is sealed afresh on re-sends, and MLS
/// authenticates it to the joiner.)
fn welcome_signed_bytes(w: &pb::MemberWelcome) -> Vec<u8> {
    let mut m = WELCOME_DOMAIN.to_vec();
    m.extend_from_slice(w.conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&w.epoch.to_be_bytes());
    m.extend_from_slice(&key_package_hash(&w.welcome));
    for j in &w.joiner_ids {
        m.extend_from_slice(j);
    }
    m
}

fn welcome_copy_signed_bytes(w: &pb::MemberWelcome) -> Vec<u8> {
    let mut m = WELCOME_COPY_DOMAIN.to_vec();
    m.extend_from_slice(w.conversation.as_bytes());
    m.push(0);
    m.extend_from_slice(&w.epoch.to_be_bytes());
    m.extend_from_slice(&w.sent_at_ms.to_be_bytes());
    m.extend_from_slice(&key_package_hash(&w.welcome));
    m.extend_from_slice(&key_package_hash(&w.sync));
    m
}

/// The member that signed a welcome copy's sync, if the signature is good.
fn welcome_copy_sender(w: &pb::MemberWelcome) -> Option<MemberId> {
    let sender = MemberId::from_slice(&w.sender).ok()?;
    identity::verify(&welcome_copy_signed_bytes(w), &w.sender_signature, &sender).ok()?;
    Some(sender)
}

/// The committer that signed a welcome, if the signature is good.
fn welcome_signer(w: &pb::MemberWelcome) -> Option<MemberId> {
    let committer = MemberId::from_slice(&w.committer).ok()?;
    identity::verify(&welcome_signed_bytes(w), &w.signature, &committer).ok()?;
    Some(committer)
}

/// SHA-256 of a key package (how used ones are remembered) or of a welcome.
pub(super) fn key_package_hash(kp: &[u8]) -> [u8; 32] {
    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(kp)).into()
}

/// Builds our signed key package announcement (encoded `KeyPackageAnnouncement`).
pub(super) fn build_announcement<P: OpenMlsProvider>(
    name: &str,
    ctx: &mut Ctx<'_, P>,
    rejoin: bool,
) -> Result<Vec<u8>, ConversationError> {
    let kp = crate::mls::generate_key_package(ctx.provider, &ctx.identity.mls)?;
    let timestamp_ms = ctx.now;
    let sig = ctx
        .identity
        .eth
        .sign(&kp_signed_bytes(name, timestamp_ms, &kp, rejoin))
        .map_err(ConversationError::Sign)?;
    Ok(pb::KeyPackageAnnouncement {
        conversation: name.to_string(),
        key_package: kp,
        member_id: ctx.identity.member_id().to_vec(),
        signature: sig,
        timestamp_ms,
        rejoin,
    }
    .encode_to_vec())
}

/// Signs an announcement (a rejoin if `rejoin`) made at `timestamp_ms` with an arbitrary
/// key: used by tests to play an impostor, or a member's client acting on its own
/// (test-only: the `adversary` feature).
#[cfg(feature = "adversary")]
pub fn forge_announcement(
    name: &str,
    key_package: Vec<u8>,
    claimed: MemberId,
    signer: &identity::EthSigner,
    timestamp_ms: u64,
    rejoin: bool,
) -> Vec<u8> {
    let sig = signer
        .sign(&kp_signed_bytes(name, timestamp_ms, &key_package, rejoin))
        .unwrap_or_default();
    welcome_envelope_kp(
        &pb::KeyPackageAnnouncement {
            conversation: name.to_string(),
            key_package,
            member_id: claimed.to_vec(),
            signature: sig,
            timestamp_ms,
            rejoin,
        }
        .encode_to_vec(),
    )
}

/// Whether an (encoded) announcement asks to rejoin: its member may already be in the
/// group, and the commit that adds it removes its old leaf.
pub(super) fn announcement_rejoin(announcement: &[u8]) -> bool {
    pb::KeyPackageAnnouncement::decode(announcement).is_ok_and(|a| a.rejoin)
}

pub(super) fn welcome_envelope_kp(announcement: &[u8]) -> Vec<u8> {
    let ann = pb::KeyPackageAnnouncement::decode(announcement).unwrap_or_default();
    pb::WelcomeEnvelope {
        body: Some(pb::welcome_envelope::Body::KeyPackage(ann)),
    }
    .encode_to_vec()
}

/// The member an announcement names, if it signed the announcement for `conversation`
/// (signature only: the key package is not checked here).
fn announcement_signer(
    conversation: &str,
    ann: &pb::KeyPackageAnnouncement,
) -> Result<MemberId, String> {
    if ann.conversation != conversation {
        return Err(format!(
            "announcement is for conversation {:?}",
            ann.conversation
        ));
    }
    let member = MemberId::from_slice(&ann.member_id).map_err(|e| e.to_string())?;
    identity::verify(
        &kp_signed_bytes(conversation, ann.timestamp_ms, &ann.key_package, ann.rejoin),
        &ann.signature,
        &member,
    )
    .map_err(|e| format!("key package announcement for {member}: {e}"))?;
    Ok(member)
}

/// Whether `announcement` is `member`'s own signed rejoin announcement for `conversation`,
/// made within `window` ms of `at_ms` (signature only: the key package is not checked).
pub(super) fn rejoin_signed_by(
    conversation: &str,
    announcement: &[u8],
    member: &MemberId,
    at_ms: u64,
    window: u64,
) -> bool {
    pb::KeyPackageAnnouncement::decode(announcement).is_ok_and(|ann| {
        ann.rejoin
            && ann.timestamp_ms.abs_diff(at_ms) <= window
            && ann.member_id == member.as_bytes()
            && announcement_signer(conversation, &ann).is_ok()
    })
}

/// Checks the identity binding: the announcement is signed by `member_id`, and the key
/// package's MLS credential names that same address. Returns the member.
pub(super) fn verify_announcement<P: OpenMlsProvider>(
    conversation: &str,
    announcement: &[u8],
    provider: &P,
) -> Result<MemberId, String> {
    let ann = pb::KeyPackageAnnouncement::decode(announcement)
        .map_err(|e| format!("undecodable announcement: {e}"))?;
    let member = announcement_signer(conversation, &ann)?;
    let info = crate::mls::validate_key_package(provider, &ann.key_package)
        .map_err(|e| format!("invalid key package: {e}"))?;
    if info.member_id != member {
        return Err(format!(
            "key package credential names {} but the announcement is signed by {member}",
            info.member_id
        ));
    }
    Ok(member)
}

impl Conversation {
    /// Why an announcement is too old (a replay: its joiner gave up by
    /// `pending_join_expiry`) or from the future to act on, if it is. Announcements whose
    /// key package an add consumed are refused by the caller too, unless their member is
    /// in the group (then it missed its welcome).
    pub(super) fn announcement_stale(
        &self,
        now: Millis,
        ann: &pb::KeyPackageAnnouncement,
    ) -> Option<String> {
        let oldest = now.saturating_sub(self.config.pending_join_expiry() + ANNOUNCE_SKEW_MS);
        (ann.timestamp_ms < oldest || ann.timestamp_ms > now.saturating_add(ANNOUNCE_SKEW_MS)).then(
            || {
                format!(
                    "announcement made at {} ms is outside the window for a join (now {now} ms)",
                    ann.timestamp_ms
                )
            },
        )
    }

    /// Remembers the key packages the commit we just applied consumed.
    pub(super) fn note_used_key_packages(&mut self, kps: impl IntoIterator<Item = [u8; 32]>) {
        self.used_key_packages.extend(kps);
        while self.used_key_packages.len() > USED_KP_CAP {
            self.used_key_packages.pop_front();
        }
    }

    pub(super) fn tick_pending_join<P: OpenMlsProvider>(
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
        if ctx.now >= pj.next_announce && !pj.announcement.is_empty() {
            // Re-announce the same key package: a steward that already committed our add
            // re-sends the welcome we missed; otherwise it is a fresh request.
            pj.next_announce = ctx.now.saturating_add(self.config.commit_inactivity);
            out.send(Subtopic::Welcome, welcome_envelope_kp(&pj.announcement));
        }
    }

    pub(super) fn on_welcome_packet<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        payload: &[u8],
    ) {
        let env = match pb::WelcomeEnvelope::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                return out.reject(
                    InboundKind::Welcome,
                    RejectCause::Malformed,
                    format!("undecodable: {e}"),
                );
            }
        };
        match env.body {
            Some(pb::welcome_envelope::Body::KeyPackage(ann)) => self.on_key_package(ctx, out, ann),
            Some(pb::welcome_envelope::Body::Welcome(w)) => {
                self.on_member_welcome(ctx, out, w, payload)
            }
            None => out.reject(
                InboundKind::Welcome,
                RejectCause::Malformed,
                "empty envelope",
            ),
        }
    }

    /// The member whose announcement this is, if it is signed by that member for this
    /// conversation and made within the join window (`bytes`: its encoding).
    pub(super) fn current_announcement<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        ann: &pb::KeyPackageAnnouncement,
        bytes: &[u8],
    ) -> Result<MemberId, String> {
        let member =
            verify_announcement(&self.name, bytes, ctx.provider).map_err(|e| e.to_string())?;
        match self.announcement_stale(ctx.now, ann) {
            Some(why) => Err(why),
            None => Ok(member),
        }
    }

    /// Whether an earlier add consumed this key package.
    pub(super) fn key_package_used(&self, key_package: &[u8]) -> bool {
        self.used_key_packages
            .contains(&key_package_hash(key_package))
    }

    fn on_key_package<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        ann: pb::KeyPackageAnnouncement,
    ) {
        if self.state == ConversationState::PendingJoin || ann.conversation != self.name {
            return;
        }
        let bytes = ann.encode_to_vec();
        let member = match self.current_announcement(ctx, &ann, &bytes) {
            Ok(m) => m,
            Err(e) => return out.reject(InboundKind::KeyPackage, RejectCause::Invalid, e),
        };
        let used = self.key_package_used(&ann.key_package);
        if self.members().contains(&member) && (used || !ann.rejoin) {
            // A joiner that missed its welcome announces again (the same key package).
            // (A member asking to rejoin with a fresh one goes on: see `fork`.)
            self.resend_welcome(ctx, member);
            return;
        }
        if used {
            return out.reject(
                InboundKind::KeyPackage,
                RejectCause::Stale,
                "announcement of a key package that was used by an earlier add",
            );
        }
        if let Some(first) = self.leaf_key_claimed_by(&member, &ann.key_package) {
            return out.reject(
                InboundKind::KeyPackage,
                RejectCause::Invalid,
                format!("{member}'s key package copies the leaf key of {first}'s pending add"),
            );
        }
        self.buffer_update(
            ctx.now,
            Action::Add {
                member,
                key_package: ann.key_package,
                announcement: bytes,
            },
        );
        self.propose_buffered(ctx, out, false);
    }

    /// Any member holding the welcome re-sends it, at most once per gap, after a random
    /// delay: seeing someone else's copy first cancels ours and counts as ours (see
    /// `remember_welcome`), which keeps it to about one copy per request.
    fn resend_welcome<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, member: MemberId) {
        let gap = self.config.recovery_inactivity;
        let jitter = ctx.rng.gen_range(0..REPLY_JITTER_MS);
        if let Some(w) = self
            .recent_welcomes
            .iter_mut()
            .rev()
            .find(|w| w.joiners.contains(&member))
            .filter(|w| ctx.now >= w.resent_at.saturating_add(gap) && w.due.is_none())
        {
            w.due = Some(ctx.now + jitter);
        }
    }

    /// Sends the welcome re-sends that are due. While we are still in the welcome's epoch
    /// the sync is sealed afresh: an election decided since the commit changed the
    /// steward list, and a joiner given the old one would reject every later commit.
    pub(super) fn tick_welcome_resends<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let now = ctx.now;
        let due: Vec<usize> = (0..self.recent_welcomes.len())
            .filter(|i| self.recent_welcomes[*i].due.is_some_and(|d| d <= now))
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
    pub(super) fn welcome_resend_deadline(&self) -> Option<Millis> {
        self.recent_welcomes.iter().filter_map(|w| w.due).min()
    }

    /// The conversation sync as an MLS application message of the current epoch.
    fn seal_sync<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) -> Vec<u8> {
        let msg = pb::AppMessage {
            body: Some(pb::app_message::Body::Sync(self.build_sync())),
        };
        let sealed = match self.mls.as_mut() {
            Some(mls) => mls.encrypt(ctx.provider, &ctx.identity.mls, &msg.encode_to_vec()),
            None => return Vec::new(),
        };
        sealed.unwrap_or_else(|e| {
            out.event(Event::Error {
                operation: "seal sync",
                message: e.to_string(),
            });
            Vec::new()
        })
    }

    /// After merging our winning commit: welcome the joiners, with the conversation sync
    /// encrypted at the new epoch so only they (and members) can read it.
    pub(super) fn send_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        welcome: Vec<u8>,
        joiners: Vec<MemberId>,
    ) {
        let mut mw = match self.sign_welcome(ctx, welcome, &joiners, self.epoch()) {
            Ok(mw) => mw,
            Err(e) => {
                return out.event(Event::Error {
                    operation: "sign welcome",
                    message: e,
                });
            }
        };
        mw.sync = self.seal_sync(ctx, out);
        self.sign_copy(ctx, &mut mw);
        let env = pb::WelcomeEnvelope {
            body: Some(pb::welcome_envelope::Body::Welcome(mw)),
        }
        .encode_to_vec();
        out.send(Subtopic::Welcome, env.clone());
        self.remember_welcome(ctx.now, joiners, env);
    }

    /// Signs the sync we sealed into a welcome copy as ours (see `remember_welcome`).
    fn sign_copy<P: OpenMlsProvider>(&self, ctx: &Ctx<'_, P>, mw: &mut pb::MemberWelcome) {
        mw.sender = self.me.to_vec();
        mw.sent_at_ms = ctx.now;
        mw.sender_signature = ctx
            .identity
            .eth
            .sign(&welcome_copy_signed_bytes(mw))
            .unwrap_or_default();
    }

    /// Our signed welcome into `epoch` for `joiners` (no sync yet).
    fn sign_welcome<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        welcome: Vec<u8>,
        joiners: &[MemberId],
        epoch: u64,
    ) -> Result<pb::MemberWelcome, String> {
        let mut mw = pb::MemberWelcome {
            conversation: self.name.clone(),
            welcome,
            sync: Vec::new(),
            joiner_ids: joiners.iter().map(|j| j.to_vec()).collect(),
            epoch,
            committer: self.me.to_vec(),
            signature: Vec::new(),
            ..Default::default()
        };
        mw.signature = ctx
            .identity
            .eth
            .sign(&welcome_signed_bytes(&mw))
            .map_err(|e| e.to_string())?;
        Ok(mw)
    }

    /// The welcome of a candidate we submit, signed and sealed to the members of the
    /// epoch it leaves (see `sealed_welcome` in the proto): if we die between sending the
    /// candidate and sending the welcome, whoever applies our commit can still welcome
    /// its joiners. Sealed, not plain: a losing candidate's welcome, were it readable,
    /// could be handed to a joiner by anyone and make it join a branch that never was.
    pub(super) fn seal_candidate_welcome<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        welcome: &[u8],
        joiners: &[MemberId],
        commit: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mls = self.mls.as_ref().ok_or("no MLS group")?;
        let mw = self.sign_welcome(ctx, welcome.to_vec(), joiners, self.epoch() + 1)?;
        mls.seal_to_epoch(
            ctx.provider,
            CANDIDATE_WELCOME_LABEL,
            &key_package_hash(commit),
            &mw.encode_to_vec(),
        )
        .map_err(|e| e.to_string())
    }

    /// Opens a candidate's sealed welcome in our epoch (the one the commit leaves): it
    /// must be a welcome of this conversation into the next epoch, signed by `committer`.
    fn open_sealed_welcome<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        c: &pb::CommitCandidate,
        committer: MemberId,
    ) -> Result<pb::MemberWelcome, String> {
        if c.sealed_welcome.is_empty() {
            return Err("no sealed welcome".into());
        }
        let mls = self.mls.as_ref().ok_or("no MLS group")?;
        let opened = mls
            .open_from_epoch(
                ctx.provider,
                CANDIDATE_WELCOME_LABEL,
                &key_package_hash(&c.commit_message),
                &c.sealed_welcome,
            )
            .map_err(|e| e.to_string())?;
        let mw = pb::MemberWelcome::decode(opened.as_slice()).map_err(|e| e.to_string())?;
        let ours = mw.conversation == self.name
            && mw.epoch == self.epoch().saturating_add(1)
            && welcome_signer(&mw) == Some(committer);
        if ours {
            Ok(mw)
        } else {
            Err("not a welcome of this commit's committer into the next epoch".into())
        }
    }

    /// Whether a candidate's sealed welcome opens and is its committer's.
    pub(super) fn sealed_welcome_opens<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        c: &pb::CommitCandidate,
        committer: MemberId,
    ) -> bool {
        self.open_sealed_welcome(ctx, c, committer).is_ok()
    }

    /// Opens the sealed welcome of a candidate we validated and are about to merge (so
    /// still in the epoch it leaves). Kept only if its committer signed it and it names
    /// exactly the members the commit adds: then it is that commit's welcome.
    pub(super) fn open_candidate_welcome<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        c: &pb::CommitCandidate,
        info: &StagedCommitInfo,
    ) -> Option<pb::MemberWelcome> {
        if c.sealed_welcome.is_empty() || info.adds.is_empty() {
            return None;
        }
        let why = match self.open_sealed_welcome(ctx, c, info.commit_sender) {
            Ok(mw) => {
                let joiners: BTreeSet<&[u8]> = mw.joiner_ids.iter().map(|j| j.as_slice()).collect();
                let added: BTreeSet<&[u8]> =
                    info.adds.iter().map(|a| a.as_bytes().as_slice()).collect();
                if joiners == added {
                    return Some(mw);
                }
                "it names other joiners than the commit adds".to_string()
            }
            Err(e) => e,
        };
        tracing::debug!(conversation = %self.name, committer = %info.commit_sender, why, "sealed welcome of a candidate ignored");
        None
    }

    /// After merging a peer's commit whose sealed welcome we opened: keep that welcome,
    /// with the conversation sync sealed now at its epoch, to re-send when a joiner asks
    /// again (the committer normally sends it; this copy serves if it never does).
    pub(super) fn keep_candidate_welcome<P: OpenMlsProvider>(
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
    fn remember_welcome(&mut self, now: Millis, joiners: Vec<MemberId>, envelope: Vec<u8>) {
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
            w.note_copy(digest);
            w.resent_at = now;
            w.due = None;
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

    fn on_member_welcome<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        w: pb::MemberWelcome,
        raw: &[u8],
    ) {
        if w.conversation != self.name {
            return;
        }
        if self.state != ConversationState::PendingJoin {
            // Kept for re-sending only when it is the welcome of a commit we applied,
            // signed by that commit's steward and naming exactly whom it added: nobody
            // can make members re-publish bytes they cannot vouch for.
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
            if ours && welcome_signer(&w).is_some() {
                self.remember_welcome(ctx.now, joiners, raw.to_vec());
            } else if joiners.contains(&self.me)
                && w.epoch == self.epoch().saturating_add(1)
                && let Some(signer) = welcome_signer(&w).filter(|s| self.members().contains(s))
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
            return;
        }
        if !w
            .joiner_ids
            .iter()
            .any(|j| j.as_slice() == self.me.as_bytes())
        {
            return;
        }
        // A group of this name left over from an earlier membership (we were removed and
        // are rejoining) would block the new one; while pending we have no live group.
        if let Ok(Some(stale)) = MlsConversation::load(ctx.provider, &self.name) {
            let _ = stale.delete(ctx.provider);
        }
        // The committer signed this welcome with the Ethereum key its MLS credential
        // names (checked against the group's welcome sender below).
        let Some(committer) = welcome_signer(&w) else {
            return out.reject(
                InboundKind::Welcome,
                RejectCause::Unauthenticated,
                "welcome without a valid committer signature",
            );
        };
        let mls = match MlsConversation::join_checked(ctx.provider, &w.welcome, Some(&self.name)) {
            Ok(Some((m, sender))) if sender == committer => m,
            Ok(Some((m, sender))) => {
                let _ = m.delete(ctx.provider);
                return out.reject(
                    InboundKind::Welcome,
                    RejectCause::Unauthenticated,
                    format!("welcome signed by {committer} but sent by the group's {sender}"),
                );
            }
            Ok(None) => return,
            Err(e) => return out.reject(InboundKind::Welcome, RejectCause::Unprocessable, e),
        };
        let epoch = mls.epoch();
        self.mls = Some(mls);
        if let Some(pj) = self.pending_join.take()
            && !pj.announcement.is_empty()
        {
            self.last_announcement = pj.announcement;
        }
        self.scores
            .sync_roster(&self.members(), self.config.default_peer_score);
        self.note_group_size(ctx.now);
        tracing::info!(conversation = %self.name, epoch, "joined");
        out.event(Event::Joined { epoch });
        // Chat from before this epoch is not ours to read (nor, after a rejoin, ours to
        // wait for: the branch we left was reported in `BranchAbandoned`).
        self.sds.reset(epoch);
        self.set_state(out, ConversationState::Working);
        // The welcome may be a re-send from a member that has moved on since: ask before
        // acting on what may be an old epoch.
        self.start_probe(ctx.now);
        if !w.sync.is_empty() {
            let opened = self.mls.as_mut().map(|m| m.decrypt(ctx.provider, &w.sync));
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

    /// Our view of the conversation's parameters, for joiners.
    pub(super) fn build_sync(&self) -> pb::ConversationSync {
        let list = self
            .stewards
            .clone()
            .unwrap_or(crate::steward::StewardList {
                stewards: Vec::new(),
                election_epoch: 0,
                retry_round: 0,
            });
        let c = &self.config;
        pb::ConversationSync {
            steward_members: list.stewards.iter().map(|s| s.to_vec()).collect(),
            election_epoch: list.election_epoch,
            sn_min: c.sn_min,
            sn_max: c.sn_max,
            peer_scores: self
                .scores
                .iter()
                .filter(|(_, s)| **s != c.default_peer_score)
                .map(|(m, s)| pb::PeerScore {
                    member_id: m.to_vec(),
                    score: *s,
                })
                .collect(),
            timing: Some(pb::TimingConfig {
                commit_inactivity_ms: c.commit_inactivity,
                freeze_ms: c.freeze,
                proposal_expiration_ms: c.proposal_expiration,
                consensus_timeout_ms: c.consensus_timeout,
                recovery_inactivity_ms: c.recovery_inactivity,
                voting_delay_ms: c.voting_delay,
                election_voting_delay_ms: c.election_voting_delay,
            }),
            retry_round: list.retry_round,
            max_reelection_attempts: c.max_reelection_attempts,
            liveness_criteria_yes: c.liveness_criteria_yes,
            threshold_peer_score: c.threshold_peer_score,
            pending_update_max_epochs: c.pending_update_max_epochs as u32,
            recovery_mode: self.mode == OperatingMode::Recovery,
            epoch: self.epoch(),
            proposals_before_join: self
                .gov
                .approved
                .iter()
                .map(|a| a.id)
                .chain(
                    self.gov
                        .proposals
                        .values()
                        .filter(|p| p.status == ProposalStatus::Voting)
                        .map(|p| p.id),
                )
                .collect(),
        }
    }

    /// Applies a conversation sync once, after validating it (reference §4.7).
    pub(super) fn on_sync<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        s: pb::ConversationSync,
    ) {
        if self.synced {
            return;
        }
        match self.validate_sync(&s) {
            Ok((list, cfg)) => {
                self.config = cfg;
                self.stewards = Some(list);
                self.election_proof = None;
                self.mode = if s.recovery_mode {
                    OperatingMode::Recovery
                } else {
                    OperatingMode::Normal
                };
                for ps in &s.peer_scores {
                    if let Ok(m) = MemberId::from_slice(&ps.member_id)
                        && self.members().contains(&m)
                    {
                        self.scores.set(m, ps.score);
                    }
                }
                self.gov.inherited_approvals = s.proposals_before_join.iter().copied().collect();
                self.synced = true;
                tracing::info!(conversation = %self.name, "conversation sync applied");
                // The list we were given may already be exhausted (we may even be the
                // next election's proposer).
                self.after_commit_stewardship(ctx, out);
            }
            Err(e) => out.reject(InboundKind::Sync, RejectCause::Invalid, e),
        }
    }

    fn validate_sync(
        &self,
        s: &pb::ConversationSync,
    ) -> Result<
        (
            crate::steward::StewardList,
            crate::config::ConversationConfig,
        ),
        String,
    > {
        let epoch = self.epoch();
        if s.election_epoch > epoch {
            return Err(format!(
                "sync election epoch {} is ahead of our epoch {epoch}",
                s.election_epoch
            ));
        }
        let stewards: Vec<MemberId> = s
            .steward_members
            .iter()
            .map(|b| MemberId::from_slice(b))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let members = self.members();
        if !stewards.iter().any(|m| members.contains(m)) {
            return Err("no listed steward is a member".into());
        }
        steward::validate(
            &stewards,
            &stewards,
            s.election_epoch,
            s.retry_round,
            &self.name,
            s.sn_min.max(1),
            s.sn_max.max(s.sn_min).max(1),
        )
        .map_err(|e| format!("steward list: {e}"))?;
        let t = s.timing.ok_or("sync without timings")?;
        let mut cfg = self.config.clone();
        cfg.commit_inactivity = t.commit_inactivity_ms;
        cfg.freeze = t.freeze_ms;
        cfg.proposal_expiration = t.proposal_expiration_ms;
        cfg.consensus_timeout = t.consensus_timeout_ms;
        cfg.recovery_inactivity = t.recovery_inactivity_ms;
        if t.voting_delay_ms > 0 {
            cfg.voting_delay = t.voting_delay_ms;
        }
        if t.election_voting_delay_ms > 0 {
            cfg.election_voting_delay = t.election_voting_delay_ms;
        }
        cfg.sn_min = s.sn_min;
        cfg.sn_max = s.sn_max;
        cfg.max_reelection_attempts = s.max_reelection_attempts;
        cfg.liveness_criteria_yes = s.liveness_criteria_yes;
        cfg.threshold_peer_score = s.threshold_peer_score;
        cfg.pending_update_max_epochs = s.pending_update_max_epochs as u64;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok((
            crate::steward::StewardList {
                stewards,
                election_epoch: s.election_epoch,
                retry_round: s.retry_round,
            },
            cfg,
        ))
    }
}
