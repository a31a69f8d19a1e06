//! Peer scores: a local table member → score that each member keeps from what it observes
//! (commits it validates) and from decided emergency proposals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::identity::MemberId;

/// Something that moves a score. Deltas are the reference's defaults
/// ("placeholders pending empirical tuning").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoreEvent {
    /// A commit whose MLS signer differs from the claimed steward, or that bundles another
    /// member's proposals.
    BrokenCommit,
    /// A commit whose actions differ from what was voted.
    BrokenMlsProposal,
    /// The epoch steward let approved work wait until the freeze ended.
    CensorshipInactivity,
    /// Created an emergency proposal that was accepted.
    EmergencyYesCreator,
    /// Created an emergency proposal that was rejected.
    EmergencyNoCreator,
    /// Authored the winning commit.
    SuccessfulCommit,
    /// A steward's valid candidate that lost the selection.
    HonestCommitAttempt,
    /// A commit from someone not allowed to commit.
    MisbehavingCommit,
}

impl ScoreEvent {
    /// The score change.
    pub fn delta(self) -> i64 {
        match self {
            Self::BrokenCommit => -50,
            Self::BrokenMlsProposal => -30,
            Self::CensorshipInactivity => -40,
            Self::EmergencyYesCreator => 20,
            Self::EmergencyNoCreator => -50,
            Self::SuccessfulCommit => 10,
            Self::HonestCommitAttempt => 5,
            Self::MisbehavingCommit => -30,
        }
    }
}

/// The score table of one conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scores {
    table: BTreeMap<MemberId, i64>,
}

impl Scores {
    /// Score of `m` (`default` for members not seen yet).
    pub fn get(&self, m: &MemberId, default: i64) -> i64 {
        self.table.get(m).copied().unwrap_or(default)
    }

    /// Applies an event to a tracked member; returns the new score. Untracked members are
    /// ignored (a departed member cannot be scored).
    pub fn apply(&mut self, m: &MemberId, ev: ScoreEvent) -> Option<i64> {
        let s = self.table.get_mut(m)?;
        *s = s.saturating_add(ev.delta());
        Some(*s)
    }

    /// Makes the table track exactly `members` (new ones at `default`).
    pub fn sync_roster(&mut self, members: &[MemberId], default: i64) {
        self.table.retain(|m, _| members.contains(m));
        for m in members {
            self.table.entry(*m).or_insert(default);
        }
    }

    /// Sets a score (from a conversation sync).
    pub fn set(&mut self, m: MemberId, score: i64) {
        self.table.insert(m, score);
    }

    /// Members at or below `threshold`.
    pub fn below(&self, threshold: i64) -> Vec<MemberId> {
        self.table
            .iter()
            .filter(|(_, s)| **s <= threshold)
            .map(|(m, _)| *m)
            .collect()
    }

    /// Every tracked member and score.
    pub fn iter(&self) -> impl Iterator<Item = (&MemberId, &i64)> {
        self.table.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roster_sync_and_threshold() {
        let (a, b) = (MemberId([1; 20]), MemberId([2; 20]));
        let mut s = Scores::default();
        s.sync_roster(&[a, b], 100);
        assert_eq!(s.apply(&a, ScoreEvent::BrokenCommit), Some(50));
        assert_eq!(s.apply(&a, ScoreEvent::BrokenCommit), Some(0));
        assert_eq!(s.below(0), vec![a]);
        s.sync_roster(&[b], 100);
        assert_eq!(s.apply(&a, ScoreEvent::SuccessfulCommit), None);
        assert_eq!(s.get(&a, 100), 100);
    }
}
