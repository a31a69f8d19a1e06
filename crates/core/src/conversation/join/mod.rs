//! Joining: signed key package announcements, welcomes, and the conversation sync that
//! gives a joiner the steward list, scores and timings.
//!
//! A joiner announces a key package and waits ([`PendingJoin`], `pending`); the epoch
//! steward proposes its add (`announcement`); the committer welcomes it, and every member
//! that applied the commit keeps the welcome to re-send to a joiner that missed it
//! (`welcome`, `resend`); the joiner enters the group by the welcome and takes the
//! conversation sync sealed inside it (`received`, `sync`).

mod announcement;
mod pending;
mod received;
mod resend;
mod sync;
mod welcome;

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::proto::pb;

#[cfg(feature = "adversary")]
pub use announcement::forge_announcement;
pub(crate) use announcement::{
    ANNOUNCE_SKEW_MS, announcement_rejoin, build_announcement, rejoin_signed_by,
    verify_announcement, welcome_envelope_kp,
};
pub(crate) use pending::PendingJoin;
pub(crate) use resend::RecentWelcome;

/// SHA-256 of a key package (how used ones are remembered) or of a welcome.
pub(super) fn key_package_hash(kp: &[u8]) -> [u8; 32] {
    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(kp)).into()
}

impl Conversation {
    /// A packet on the welcome subtopic: a key package announcement or a welcome.
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
}
