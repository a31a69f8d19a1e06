//! Welcomes we make: signed by the committer, with the conversation sync sealed inside,
//! and a candidate's welcome sealed to the epoch it leaves.

use std::collections::BTreeSet;

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::key_package_hash;
use crate::conversation::*;
use crate::identity;
use crate::mls::StagedCommitInfo;
use crate::proto::pb;

/// Domain separation for welcome signatures.
const WELCOME_DOMAIN: &[u8] = b"demls/welcome/v1";
/// The same for the signature of the member that sealed a welcome copy's sync.
const WELCOME_COPY_DOMAIN: &[u8] = b"demls/welcome-copy/v1";
/// The exporter label of the key a candidate's welcome is sealed under.
const CANDIDATE_WELCOME_LABEL: &str = "demls/candidate-welcome/v1";

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

/// What the member that sealed a welcome copy's sync signs: the welcome, the sync and
/// when it sent the copy.
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
pub(super) fn welcome_copy_sender(w: &pb::MemberWelcome) -> Option<MemberId> {
    let sender = MemberId::from_slice(&w.sender).ok()?;
    identity::verify(&welcome_copy_signed_bytes(w), &w.sender_signature, &sender).ok()?;
    Some(sender)
}

/// The committer that signed a welcome, if the signature is good.
pub(super) fn welcome_signer(w: &pb::MemberWelcome) -> Option<MemberId> {
    let committer = MemberId::from_slice(&w.committer).ok()?;
    identity::verify(&welcome_signed_bytes(w), &w.signature, &committer).ok()?;
    Some(committer)
}

impl Conversation {
    /// After merging our winning commit: welcome the joiners, with the conversation sync
    /// encrypted at the new epoch so only they (and members) can read it.
    pub(crate) fn send_welcome<P: OpenMlsProvider>(
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
    pub(super) fn sign_copy<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        mw: &mut pb::MemberWelcome,
    ) {
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
    pub(crate) fn seal_candidate_welcome<P: OpenMlsProvider>(
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
    pub(crate) fn sealed_welcome_opens<P: OpenMlsProvider>(
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
    pub(crate) fn open_candidate_welcome<P: OpenMlsProvider>(
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
}
