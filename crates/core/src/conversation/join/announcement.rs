//! Key package announcements: a joiner's signed request to be added, and what members
//! check before the epoch steward proposes it.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::key_package_hash;
use crate::conversation::*;
use crate::identity;
use crate::proto::pb;

/// Domain separation for key package announcement signatures (v2: with a timestamp).
const KP_DOMAIN: &[u8] = b"demls/key-package/v2";
/// The same for a member asking to be added afresh (see `fork`): a normal announcement
/// cannot be turned into a rejoin by flipping its flag.
const KP_REJOIN_DOMAIN: &[u8] = b"demls/key-package/rejoin/v1";
/// How far an announcement's timestamp may run ahead of our clock.
pub(crate) const ANNOUNCE_SKEW_MS: Millis = 60_000;
/// Key packages of members we added, remembered so their announcements cannot add again.
const USED_KP_CAP: usize = 256;

/// What a joiner signs: the conversation, the time and the key package, under the
/// domain of a join or a rejoin.
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

/// Builds our signed key package announcement (encoded `KeyPackageAnnouncement`).
pub(crate) fn build_announcement<P: OpenMlsProvider>(
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
pub(crate) fn announcement_rejoin(announcement: &[u8]) -> bool {
    pb::KeyPackageAnnouncement::decode(announcement).is_ok_and(|a| a.rejoin)
}

/// The welcome-subtopic envelope that carries an (encoded) announcement.
pub(crate) fn welcome_envelope_kp(announcement: &[u8]) -> Vec<u8> {
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
pub(crate) fn rejoin_signed_by(
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
pub(crate) fn verify_announcement<P: OpenMlsProvider>(
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
    pub(crate) fn announcement_stale(
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
    pub(crate) fn note_used_key_packages(&mut self, kps: impl IntoIterator<Item = [u8; 32]>) {
        self.used_key_packages.extend(kps);
        while self.used_key_packages.len() > USED_KP_CAP {
            self.used_key_packages.pop_front();
        }
    }

    /// The member whose announcement this is, if it is signed by that member for this
    /// conversation and made within the join window (`bytes`: its encoding).
    pub(crate) fn current_announcement<P: OpenMlsProvider>(
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
    pub(crate) fn key_package_used(&self, key_package: &[u8]) -> bool {
        self.used_key_packages
            .contains(&key_package_hash(key_package))
    }

    /// A key package announcement: a member that missed its welcome is sent it again;
    /// a current, unused one is buffered for the epoch steward to propose.
    pub(super) fn on_key_package<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        ann: pb::KeyPackageAnnouncement,
    ) {
        if self.state() == ConversationState::PendingJoin || ann.conversation != self.name {
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
}
