//! Per-conversation parameters. Every timer and default lives here, named as in the de-MLS
//! RFC and the reference implementation (see `docs/PROTOCOL.md` for what each one governs).

use serde::{Deserialize, Serialize};

/// Milliseconds, the protocol core's unit of time.
pub type Millis = u64;

/// Members answering a request (a missed commit, a proposal and its votes) wait a random
/// delay up to this, and stay quiet if someone else answered first.
pub(crate) const REPLY_JITTER_MS: Millis = 1_000;

/// Requests for missing votes a member sends before it applies the timeout rule.
pub(crate) const VOTE_ASKS: u8 = 3;

/// Longest any timer may be (7 days). Timings arrive in a conversation sync from the
/// wire and in saved state; with every timer bounded, no sum of them nears `u64::MAX`.
pub const MAX_TIMER: Millis = 7 * 24 * 3_600_000;

/// Everything a conversation can be tuned with. Defaults are the reference's proven values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationConfig {
    /// RFC inactivity timer #1: how long approved work may wait for a commit before every
    /// member freezes; ×3 is the pending-join expiry, unless the slowest regular path to a
    /// welcome is longer (see `pending_join_expiry`).
    pub commit_inactivity: Millis,
    /// Candidate collection window once frozen.
    pub freeze: Millis,
    /// Auto-vote delay for membership and emergency proposals.
    pub voting_delay: Millis,
    /// Auto-vote delay for steward elections.
    pub election_voting_delay: Millis,
    /// After this, a proposal is decided with silent voters counted per the liveness flag.
    pub consensus_timeout: Millis,
    /// Lifetime of a proposal; votes after it are rejected.
    pub proposal_expiration: Millis,
    /// RFC inactivity timer #2: the shorter window used while recovering.
    pub recovery_inactivity: Millis,
    /// Minimum steward list size.
    pub sn_min: u32,
    /// Maximum steward list size.
    pub sn_max: u32,
    /// Rejected elections tolerated before a DEADLOCK emergency proposal.
    pub max_reelection_attempts: u32,
    /// Silent voters count as YES, ties break to YES, auto-votes vote YES.
    pub liveness_criteria_yes: bool,
    /// A member whose score is at or below this may be voted out.
    pub threshold_peer_score: i64,
    /// Starting score of every member.
    pub default_peer_score: i64,
    /// Buffered membership requests older than this many epochs are dropped.
    pub pending_update_max_epochs: u64,
    /// Most MLS proposals one commit carries.
    pub commit_batch_max: usize,
    /// Winning commits kept to re-send to members that missed them.
    pub catch_up_window: usize,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            commit_inactivity: 60_000,
            freeze: 30_000,
            voting_delay: 10_000,
            election_voting_delay: 5_000,
            consensus_timeout: 30_000,
            proposal_expiration: 600_000,
            recovery_inactivity: 5_000,
            sn_min: 1,
            sn_max: 2,
            max_reelection_attempts: 1,
            liveness_criteria_yes: true,
            threshold_peer_score: 0,
            default_peer_score: 100,
            pending_update_max_epochs: 3,
            commit_batch_max: 50,
            catch_up_window: 16,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The offending field, as named in the node's `[protocol]` section.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConversationConfig {
    /// Checks the invariants the protocol relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        for (field, v) in [
            ("commit_inactivity", self.commit_inactivity),
            ("freeze", self.freeze),
            ("voting_delay", self.voting_delay),
            ("election_voting_delay", self.election_voting_delay),
            ("consensus_timeout", self.consensus_timeout),
            ("proposal_expiration", self.proposal_expiration),
            ("recovery_inactivity", self.recovery_inactivity),
        ] {
            if v == 0 {
                return err(field, "must be greater than zero");
            }
            if v > MAX_TIMER {
                return err(field, "must be at most 7 days");
            }
        }
        if self.voting_delay >= self.consensus_timeout {
            return err("voting_delay", "must be shorter than consensus_timeout");
        }
        if self.election_voting_delay >= self.consensus_timeout {
            return err(
                "election_voting_delay",
                "must be shorter than consensus_timeout",
            );
        }
        if self.consensus_timeout >= self.commit_inactivity {
            return err(
                "consensus_timeout",
                "must be shorter than commit_inactivity",
            );
        }
        if self.proposal_expiration < self.consensus_timeout {
            return err("proposal_expiration", "must be at least consensus_timeout");
        }
        if self.sn_min < 1 {
            return err("sn_min", "must be at least 1");
        }
        if self.sn_min > self.sn_max {
            return err("sn_min", "must not exceed sn_max");
        }
        if self.default_peer_score <= self.threshold_peer_score {
            return err("default_peer_score", "must be above threshold_peer_score");
        }
        if self.commit_batch_max == 0 {
            return err("commit_batch_max", "must be at least 1");
        }
        Ok(())
    }

    /// How long a member keeps asking for missing votes after the consensus timeout
    /// before it applies the timeout rule: `VOTE_ASKS` requests `recovery_inactivity`
    /// apart, then the answers' jitter.
    pub fn missing_votes_wait(&self) -> Millis {
        Millis::from(VOTE_ASKS) * self.recovery_inactivity + REPLY_JITTER_MS
    }

    /// How long a buffered membership request waits for the epoch steward to propose it
    /// before a backup steward does (the epoch steward is taken to be silent).
    pub fn takeover_window(&self) -> Millis {
        self.commit_inactivity + self.recovery_inactivity
    }

    /// How long members wait for an election (its deterministic proposer silent, or
    /// nobody electing in Reelection) before they reshuffle the list: the next retry
    /// round's first steward proposes then.
    pub fn reelection_patience(&self) -> Millis {
        self.election_voting_delay * 2 + self.consensus_timeout
    }

    /// Pending-join expiry: three commit-inactivity windows, as the reference, but never
    /// shorter than the slowest regular path from request to welcome. A joiner that gave
    /// up just before its welcome would be a member of the group that never reads it; and
    /// members drop announcements older than this (plus a minute of clock skew), so both
    /// sides use this one bound. The path's stages, one after the other, each at its
    /// slowest:
    ///
    /// - **takeover**: the epoch steward is silent, and a backup proposes the request
    ///   once it has waited `takeover_window`;
    /// - **busy**: nobody proposes while frozen, nor while the steward list is exhausted
    ///   (there is no epoch steward then). A request that lands as the last freeze round
    ///   of a list opens waits for that round (`freeze`), then for the election its
    ///   commit sets off: its proposer silent (one reshuffle, `reelection_patience`),
    ///   then the vote with its timeout and the requests for missing votes. It adds to
    ///   the takeover: the backup's window runs out while the backup is frozen;
    /// - **vote**: the request's own vote, with its timeout and the requests for missing
    ///   votes;
    /// - **commit**: a backup's inactivity window (the epoch steward silent), then the
    ///   whole freeze window (a steward's candidate never comes).
    ///
    /// Not covered: an election rejected, or reshuffled more than once; a freeze round
    /// that ends without a candidate (Reelection); fork healing; an announcement or a
    /// welcome lost on the way (the joiner repeats its announcement every
    /// `commit_inactivity`); delays beyond the timers (network, load); and the wake-up of
    /// a newly elected epoch steward, which proposes the requests that waited for the list
    /// at its next tick unless its backup takes them over (`docs/PROTOCOL.md`,
    /// "Pending-join expiry").
    pub fn pending_join_expiry(&self) -> Millis {
        let takeover = self.takeover_window();
        let election =
            self.election_voting_delay + self.consensus_timeout + self.missing_votes_wait();
        let busy = self.freeze + self.reelection_patience() + election;
        let vote = self.voting_delay + self.consensus_timeout + self.missing_votes_wait();
        let commit = self.commit_inactivity + self.recovery_inactivity + self.freeze;
        self.commit_inactivity
            .saturating_mul(3)
            .max(takeover + busy + vote + commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_values_and_valid() {
        let c = ConversationConfig::default();
        assert_eq!(c.commit_inactivity, 60_000);
        assert_eq!(c.freeze, 30_000);
        // The reference gives up after 3 × 60 s; the slowest regular path to a welcome
        // is longer: 65 s takeover, 121 s busy (30 s freeze round, then an election: 40 s
        // reshuffle, 51 s vote), 56 s vote, 95 s commit. So we wait 337 s.
        assert_eq!(c.pending_join_expiry(), 337_000);
        c.validate().unwrap();
    }

    #[test]
    fn inconsistent_timings_are_refused() {
        let c = ConversationConfig {
            voting_delay: 40_000,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "voting_delay");
        let c = ConversationConfig {
            sn_min: 3,
            sn_max: 2,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "sn_min");
    }
}
