//! Emergencies decided: the partial freeze lifted, the creator scored, and an accepted
//! violation acted on (an urgent removal, recovery mode, or the target's score).

use openmls_traits::OpenMlsProvider;

use super::*;
use crate::scoring::ScoreEvent;

impl Conversation {
    /// An emergency decided: settled in the governance bookkeeping, its creator scored
    /// by the outcome, and acted on if accepted.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emergency_decided<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        accepted: bool,
        violation: i32,
        target: Option<MemberId>,
        creator: MemberId,
    ) {
        self.gov.settle_emergency(id, target);
        self.scores.apply(
            &creator,
            if accepted {
                ScoreEvent::EmergencyYesCreator
            } else {
                ScoreEvent::EmergencyNoCreator
            },
        );
        if accepted {
            self.on_emergency_accepted(ctx, out, id, violation, target);
        }
    }

    /// Acts on an accepted emergency: a member below the score threshold is removed by
    /// the next commit, which is forced now; a deadlock puts the group in recovery mode
    /// (any member may commit); any other violation lowers its target's score.
    fn on_emergency_accepted<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        id: u32,
        violation: i32,
        target: Option<MemberId>,
    ) {
        use pb::ViolationType as V;
        match V::try_from(violation).unwrap_or(V::Unspecified) {
            V::ScoreBelowThreshold => {
                if let Some(t) = target {
                    if !self.gov.removal_approved(&t) {
                        self.gov.approve(id, Change::Remove { member: t });
                    }
                    self.gov.urgent_target = Some(t);
                    self.force_freeze(ctx, out);
                }
            }
            V::Deadlock => {
                tracing::warn!(conversation = %self.name, "deadlock accepted: recovery mode, any member may commit");
                self.mode = OperatingMode::Recovery;
                self.force_freeze(ctx, out);
            }
            V::BrokenCommit => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::BrokenCommit);
                }
            }
            V::BrokenMlsProposal => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::BrokenMlsProposal);
                }
            }
            V::CensorshipInactivity => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::CensorshipInactivity);
                }
            }
            V::MisbehavingCommit => {
                if let Some(t) = target {
                    self.scores.apply(&t, ScoreEvent::MisbehavingCommit);
                }
            }
            V::Unspecified => {}
        }
    }
}
