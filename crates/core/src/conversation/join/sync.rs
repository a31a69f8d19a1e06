//! The conversation sync: our view of the conversation's parameters (steward list,
//! scores, timings, open proposals), sealed into welcomes and applied once by a joiner.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use crate::conversation::*;
use crate::proto::pb;
use crate::steward;

impl Conversation {
    /// The conversation sync as an MLS application message of the current epoch.
    pub(super) fn seal_sync<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) -> Vec<u8> {
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

    /// Our view of the conversation's parameters, for joiners.
    fn build_sync(&self) -> pb::ConversationSync {
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
    pub(crate) fn on_sync<P: OpenMlsProvider>(
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

    /// The steward list and timings a sync gives, if they are valid for our group.
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
