//! Votes sealed to the epoch (proto `SealedVote`), outside MLS framing.
//!
//! Every member votes on every change, so a member of an n-member group receives n − 1
//! votes per change. As MLS application messages each cost the receiver an Ed25519 check
//! and openmls' rewrite of its whole stored message-secrets store (a secret tree and
//! sender ratchets for every leaf, for this epoch and the past ones kept): O(n) per vote,
//! O(n²) per change, several times the vote's own signature check at 100 members
//! (docs/BENCHMARKS.md). A vote already carries its owner's EIP-191 signature, so all the
//! channel must add is that only members of the epoch read it and that an outsider cannot
//! make us work: an AEAD under a key exported from the epoch does both for a few
//! microseconds. The price, in docs/SECURITY.md: a vote has no per-message forward
//! secrecy within its epoch (whoever takes a member's saved state during that epoch can
//! read the epoch's votes), which MLS application messages have.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::proto::{cpb, pb};

/// The exporter label of vote keys (also the AEAD's associated data).
pub(crate) const VOTE_LABEL: &str = "demls/vote/v1";
/// Bytes of the salt that names each vote's key.
pub(crate) const VOTE_SALT_LEN: usize = 16;
/// The largest sealed vote opened (an honest one is about 220 bytes): checked before
/// any key is derived.
pub(crate) const SEALED_VOTE_MAX: usize = 1024;

impl Conversation {
    /// Sends our `vote`, sealed to the current epoch under a fresh salt.
    pub(super) fn send_vote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        vote: &cpb::Vote,
    ) -> Result<(), SendError> {
        let mls = self.mls.as_ref().ok_or(SendError::NoGroup)?;
        let mut salt = vec![0; VOTE_SALT_LEN];
        ctx.rng.fill_bytes(&mut salt);
        let sealed = mls.seal_to_epoch(ctx.provider, VOTE_LABEL, &salt, &vote.encode_to_vec())?;
        let env = pb::AppEnvelope {
            body: Some(pb::app_envelope::Body::SealedVote(pb::SealedVote {
                epoch: mls.epoch(),
                salt,
                sealed,
            })),
        };
        out.send(Subtopic::AppMsg, env.encode_to_vec());
        Ok(())
    }

    /// A sealed vote from the network. Its epoch is a claim until the seal opens: a later
    /// one is kept for when we reach it (and hints, as a later MLS message does), an
    /// earlier one is for a group state that no longer exists, and one of ours that does
    /// not open is junk or a sign of another branch.
    pub(super) fn on_sealed_vote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        sv: pb::SealedVote,
    ) {
        if self.mls.is_none() {
            return;
        }
        if sv.salt.len() != VOTE_SALT_LEN || sv.sealed.len() > SEALED_VOTE_MAX {
            return out.reject(
                InboundKind::Vote,
                RejectCause::Malformed,
                "sealed vote of the wrong shape",
            );
        }
        let ours = self.epoch();
        if sv.epoch > ours {
            self.hint(ctx.now, sv.epoch);
            self.fork_hint(ctx);
            let epoch = sv.epoch;
            let bytes = sv.encode_to_vec();
            return self.buffer_future(ctx.now, epoch, FutureKind::SealedVote, &bytes);
        }
        if sv.epoch < ours {
            return;
        }
        let Some(mls) = self.mls.as_ref() else { return };
        let plaintext = match mls.open_from_epoch(ctx.provider, VOTE_LABEL, &sv.salt, &sv.sealed) {
            Ok(p) => p,
            Err(e) => {
                self.fork_hint(ctx);
                return out.reject(InboundKind::Vote, RejectCause::Unauthenticated, e);
            }
        };
        let vote = match cpb::Vote::decode(plaintext.as_slice()) {
            Ok(v) => v,
            Err(e) => {
                return out.reject(
                    InboundKind::Vote,
                    RejectCause::Malformed,
                    format!("undecodable sealed vote: {e}"),
                );
            }
        };
        // Its owner signed it at its timestamp, and someone at our epoch sealed it: the
        // owner was alive then (as the sender of an MLS message is when it arrives). Only
        // if that is the owner's clock: a vote is stamped no earlier than its proposal's
        // start, which the proposer chose (possibly in the future), so a timestamp equal
        // to the start says nothing of when the owner voted.
        let owner = MemberId::from_slice(&vote.vote_owner).ok();
        let made_s = self.gov.proposals.get(&vote.proposal_id).map(|p| p.made_s);
        let signed_at = (made_s.is_some_and(|m| vote.timestamp > m))
            .then(|| vote.timestamp.saturating_mul(1000))
            .filter(|t| *t <= ctx.now);
        if self.on_vote(ctx, out, vote)
            && let (Some(owner), Some(at)) = (owner, signed_at)
        {
            let heard = self.fork_watch.heard.entry(owner).or_insert(at);
            *heard = (*heard).max(at);
        }
    }
}
