//! Candidate authentication and the commit validation service: who signed a candidate's
//! commit (on arrival), and whether its committer and every change it makes are entitled
//! (before it is applied).

use std::collections::BTreeSet;

use openmls_traits::OpenMlsProvider;
use sha2::{Digest, Sha256};

use super::*;
use crate::mls::StagedCommitInfo;
use crate::proto::pb;
use crate::scoring::ScoreEvent;

/// Hashes of candidates refused on arrival, remembered so copies cost nothing more.
const REFUSED_CAP: usize = 64;

/// What a refusal is remembered by: the commit, the proposals it is staged with and the
/// steward it names (nothing signs those two). A copy of a real commit with junk
/// proposals beside it, or naming another steward, is refused, and must not get the real
/// candidate refused when it comes.
pub(super) fn refusal_key(c: &pb::CommitCandidate) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((c.steward_id.len() as u64).to_be_bytes());
    h.update(&c.steward_id);
    h.update((c.commit_message.len() as u64).to_be_bytes());
    h.update(&c.commit_message);
    for p in &c.mls_proposals {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

impl Conversation {
    /// Stages a candidate to learn who signed it, and keeps the staging aside for when
    /// the candidate is applied (`try_remote`). Returns how many
    /// membership changes it makes (for ranking), or why it is refused: it does not stage
    /// (junk, or a forged steward id: nobody to charge), or a member signed it under
    /// another steward's name or with others' proposals. Only a signer not entitled to
    /// commit is charged: the steward id and the proposals are not signed, so anyone can
    /// change them in a copy of an entitled steward's real commit, as often as they like.
    pub(super) fn authenticate_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        c: &pb::CommitCandidate,
        claimed: MemberId,
    ) -> Result<(usize, Vec<u8>), String> {
        let key = refusal_key(c);
        if self.refused_candidates.contains(&key) {
            return Err(format!("candidate naming {claimed} was refused before"));
        }
        let mls = self.mls.as_mut().ok_or("no MLS group")?;
        let staged = mls.stage_and_keep(ctx.provider, key, &c.mls_proposals, &c.commit_message);
        let verdict = staged
            .map_err(|e| format!("candidate naming {claimed} does not stage: {e}"))
            .and_then(|info| {
                Self::check_signer(&info, claimed)
                    .map(|()| (info.adds.len() + info.removes.len(), info.aad))
                    .map_err(|(who, ev, why)| {
                        if !self.entitled_to_commit(&who, c.epoch) {
                            self.scores.apply(&who, ev);
                        }
                        why
                    })
            });
        if verdict.is_err() {
            self.refused_candidates.push_back(key);
            while self.refused_candidates.len() > REFUSED_CAP {
                self.refused_candidates.pop_front();
            }
        }
        verdict
    }

    /// The commit was signed by the steward the candidate names, and bundles only that
    /// steward's proposals.
    pub(super) fn check_signer(
        info: &StagedCommitInfo,
        claimed: MemberId,
    ) -> Result<(), (MemberId, ScoreEvent, String)> {
        let sender = info.commit_sender;
        if sender != claimed {
            return Err((
                sender,
                ScoreEvent::BrokenCommit,
                format!("candidate claims steward {claimed} but was signed by {sender}"),
            ));
        }
        if let Some(other) = info.proposal_senders.iter().find(|s| **s != sender) {
            return Err((
                sender,
                ScoreEvent::BrokenCommit,
                format!("commit by {sender} bundles a proposal by {other}"),
            ));
        }
        Ok(())
    }

    /// Stages a remote candidate's commit; a commit that does not stage is refused at no
    /// one's cost (the wire steward id is forgeable; the reference's later behaviour).
    pub(super) fn stage_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        c: &pb::CommitCandidate,
        steward: MemberId,
    ) -> Option<StagedCommitInfo> {
        let mls = self.mls.as_mut()?;
        match mls.stage_remote_commit(ctx.provider, &c.mls_proposals, &c.commit_message) {
            Ok(i) => Some(i),
            Err(e) => {
                out.reject(
                    InboundKind::Commit,
                    RejectCause::Unprocessable,
                    format!("candidate from {steward} does not stage: {e}"),
                );
                None
            }
        }
    }

    /// Drops a staged commit that failed validation and charges its signer.
    pub(super) fn refuse_staged<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        (who, ev, why): (MemberId, ScoreEvent, String),
    ) -> Option<Winner> {
        if let Some(mls) = self.mls.as_mut() {
            let _ = mls.discard_staged(ctx.provider);
        }
        self.scores.apply(&who, ev);
        out.reject(InboundKind::Commit, RejectCause::Invalid, why);
        None
    }

    /// Whether `m` may commit at `epoch`: on the steward list (any member in Recovery).
    pub(super) fn entitled_to_commit(&self, m: &MemberId, epoch: u64) -> bool {
        self.mode == OperatingMode::Recovery
            || self
                .stewards
                .as_ref()
                .is_some_and(|l| !l.is_exhausted(epoch) && l.contains(m))
    }

    /// The commit validation service (RFC; reference §4.5 step 5), after `check_signer`
    /// and after the commit's evidence was adopted: the committer is on the steward list
    /// (unless in Recovery mode), and every change is a decided YES we hold. Evidence
    /// proves a decision only by signed votes, so an approved change is the only proof.
    pub(super) fn validate_staged<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        c: &pb::CommitCandidate,
        info: &StagedCommitInfo,
    ) -> Result<(), (MemberId, ScoreEvent, String)> {
        let sender = info.commit_sender;
        if !self.entitled_to_commit(&sender, c.epoch) {
            {
                return Err((
                    sender,
                    ScoreEvent::MisbehavingCommit,
                    format!("{sender} is not a steward for epoch {}", c.epoch),
                ));
            }
        }
        let mut justified: BTreeSet<(bool, MemberId)> = self
            .gov
            .approved
            .iter()
            .map(|a| (a.change.is_add(), a.change.member()))
            .collect();
        // A second rejoin of a member the group decided YES is justified even when we did
        // not queue it (we settled it as moot: a commit since we learnt of it added the
        // member again; or an earlier rejoin of the member was queued): a steward that
        // judged otherwise commits it, and refusing that commit left half the group an
        // epoch behind for good (lossy seed 30 of the equal-sides decided-then-split).
        // It only swaps the member's leaf once more, for its own announced key package.
        for (m, kp) in info.adds.iter().zip(&info.added_key_packages) {
            if self.decided_rejoin(ctx, m, kp) {
                justified.insert((true, *m));
            }
        }
        let actions: Vec<(bool, MemberId)> = info
            .adds
            .iter()
            .map(|m| (true, *m))
            .chain(info.removes.iter().map(|m| (false, *m)))
            .collect();
        let distinct: BTreeSet<_> = actions.iter().copied().collect();
        if distinct.len() != actions.len() {
            return Err((
                sender,
                ScoreEvent::BrokenMlsProposal,
                "commit repeats a change".into(),
            ));
        }
        // Removing a rejoining member's old leaf is justified by its accepted rejoin, in
        // the commit that adds it again.
        let rejoining = |m: &MemberId| {
            info.adds.contains(m)
                && (justified.contains(&(true, *m))
                    || self.gov.approved.iter().any(|a| {
                        matches!(&a.change, Change::Add { member, rejoin: true, .. } if member == m)
                    }))
        };
        if let Some((add, m)) = actions
            .iter()
            .find(|(add, m)| !justified.contains(&(*add, *m)) && (*add || !rejoining(m)))
        {
            return Err((
                sender,
                ScoreEvent::BrokenMlsProposal,
                format!(
                    "commit by {sender} {} {m} without an accepted vote",
                    if *add { "adds" } else { "removes" }
                ),
            ));
        }
        if actions.is_empty() {
            return Err((
                sender,
                ScoreEvent::BrokenMlsProposal,
                "commit carries no change".into(),
            ));
        }
        Ok(())
    }

    /// Whether we hold a rejoin of `m` with the key package hashed `kp`, decided YES but
    /// not queued (settled as moot, or behind an earlier rejoin of `m` in the queue, which
    /// holds one add per member), its key package not used (see `validate_staged`).
    fn decided_rejoin<P: OpenMlsProvider>(
        &self,
        ctx: &Ctx<'_, P>,
        m: &MemberId,
        kp: &[u8; 32],
    ) -> bool {
        // Decided lately (learnt within the catch-up window), and not the member's
        // current leaf: swapping a leaf for itself would leave the member waiting for a
        // welcome to a key package whose keys it used up.
        let recent = self
            .epoch()
            .saturating_sub(self.config.catch_up_window as u64);
        let holds_leaf = |key_package: &[u8]| {
            self.mls
                .as_ref()
                .and_then(|g| g.leaf_key_holder(ctx.provider, key_package))
                == Some(*m)
        };
        self.members().contains(m)
            && !self.used_key_packages.contains(kp)
            && self.gov.proposals.values().any(|t| {
                t.epoch >= recent
                    && matches!(
                        t.status,
                        ProposalStatus::Committed | ProposalStatus::Accepted
                    )
                    && self.gov.consensus.outcome(t.id) == Some(true)
                    && matches!(&t.action, Action::Add { member, key_package, announcement }
                        if member == m
                            && join::announcement_rejoin(announcement)
                            && join::key_package_hash(key_package) == *kp
                            && !holds_leaf(key_package))
            })
    }
}
