//! The steward list: who may commit in which epoch.
//!
//! A list is elected (or, in small groups, installed locally) at `election_epoch` and covers
//! the epochs `[election_epoch, election_epoch + len)`: slot `E − election_epoch` is the
//! epoch steward of epoch `E`, the next slot its backup. Candidates are ordered by
//! `SHA-256(epoch BE u64 ‖ retry_round BE u32 ‖ member id ‖ conversation id)` (ties by id).
//! The RFC's formula has no retry round; we keep the reference's addition so that a
//! rejected election can reshuffle within the same epoch.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::MemberId;

/// An installed steward list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StewardList {
    /// Stewards in slot order.
    pub stewards: Vec<MemberId>,
    /// The epoch the list was generated for; slot 0 serves this epoch.
    pub election_epoch: u64,
    /// The retry round the ordering was seeded with.
    pub retry_round: u32,
}

/// The ordering key of one candidate.
pub fn steward_rank(
    epoch: u64,
    retry_round: u32,
    member: &MemberId,
    conversation: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(epoch.to_be_bytes());
    h.update(retry_round.to_be_bytes());
    h.update(member.as_bytes());
    h.update(conversation.as_bytes());
    h.finalize().into()
}

/// The valid list sizes for a pool of `pool` members: all of them when fewer than `sn_min`,
/// else `[sn_min, min(sn_max, pool)]`.
pub fn valid_sizes(pool: usize, sn_min: u32, sn_max: u32) -> std::ops::RangeInclusive<usize> {
    let (lo, hi) = (sn_min as usize, sn_max as usize);
    if pool < lo {
        pool..=pool
    } else {
        lo..=hi.min(pool)
    }
}

/// Generates the list for `pool` (order of `pool` is irrelevant), of the preferred size
/// (the largest valid one).
pub fn generate(
    pool: &[MemberId],
    epoch: u64,
    retry_round: u32,
    conversation: &str,
    sn_min: u32,
    sn_max: u32,
) -> StewardList {
    let size = *valid_sizes(pool.len(), sn_min, sn_max).end();
    let mut ranked: Vec<([u8; 32], MemberId)> = pool
        .iter()
        .map(|m| (steward_rank(epoch, retry_round, m, conversation), *m))
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    StewardList {
        stewards: ranked.into_iter().take(size).map(|(_, m)| m).collect(),
        election_epoch: epoch,
        retry_round,
    }
}

/// Why a proposed list is not the deterministic one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Size outside `[sn_min, sn_max]` for the pool.
    #[error("list of {got} stewards is not a valid size for {pool} candidates")]
    BadSize {
        /// Proposed size.
        got: usize,
        /// Pool size.
        pool: usize,
    },
    /// Not the first `len` candidates in hash order.
    #[error("steward list is not the deterministic ordering of the candidates")]
    NotDeterministic,
    /// A member is listed twice.
    #[error("steward list names {0} more than once")]
    Duplicate(MemberId),
    /// The retry round is beyond [`MAX_RETRY_ROUND`].
    #[error("retry round {0} is beyond the limit of {MAX_RETRY_ROUND}")]
    RetryRound(u32),
}

/// Highest retry round a list may be seeded with. Rounds grow by one per failed election
/// or reshuffle, so an honest group never gets near it; a claimed round beyond it is a
/// forgery (a high round would win every same-epoch tie-break).
pub const MAX_RETRY_ROUND: u32 = 1_024;

/// Checks that `proposed` is exactly the deterministic prefix of `pool` for its size.
pub fn validate(
    proposed: &[MemberId],
    pool: &[MemberId],
    epoch: u64,
    retry_round: u32,
    conversation: &str,
    sn_min: u32,
    sn_max: u32,
) -> Result<(), ListError> {
    if retry_round > MAX_RETRY_ROUND {
        return Err(ListError::RetryRound(retry_round));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = proposed.iter().find(|m| !seen.insert(**m)) {
        return Err(ListError::Duplicate(*twice));
    }
    let pool: Vec<MemberId> = {
        let mut p = pool.to_vec();
        p.sort();
        p.dedup();
        p
    };
    if !valid_sizes(pool.len(), sn_min, sn_max).contains(&proposed.len()) || proposed.is_empty() {
        return Err(ListError::BadSize {
            got: proposed.len(),
            pool: pool.len(),
        });
    }
    let all = u32::try_from(pool.len()).unwrap_or(u32::MAX);
    let full = generate(&pool, epoch, retry_round, conversation, all, all);
    if full.stewards.get(..proposed.len()) == Some(proposed) {
        Ok(())
    } else {
        Err(ListError::NotDeterministic)
    }
}

impl StewardList {
    /// Whether `epoch` is outside the list's coverage window.
    pub fn is_exhausted(&self, epoch: u64) -> bool {
        epoch < self.election_epoch || epoch - self.election_epoch >= self.stewards.len() as u64
    }

    /// Whether `m` is on the list.
    pub fn contains(&self, m: &MemberId) -> bool {
        self.stewards.contains(m)
    }

    /// The live epoch steward and backup for `epoch`: start at the epoch's slot and walk
    /// forward (cyclically) past ineligible entries (gone, or queued for removal).
    pub fn live_roles(
        &self,
        epoch: u64,
        eligible: impl Fn(&MemberId) -> bool,
    ) -> (Option<MemberId>, Option<MemberId>) {
        let n = self.stewards.len();
        if n == 0 || self.is_exhausted(epoch) {
            return (None, None);
        }
        let start = (epoch - self.election_epoch) as usize;
        let mut live = (0..n)
            .map(|i| self.stewards[(start + i) % n])
            .filter(|m| eligible(m));
        let es = live.next();
        let bs = live.next();
        (es, bs)
    }

    /// The stewards that are still eligible, in slot order.
    pub fn live_stewards(&self, eligible: impl Fn(&MemberId) -> bool) -> Vec<MemberId> {
        self.stewards
            .iter()
            .copied()
            .filter(|m| eligible(m))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<MemberId> {
        (1..=n).map(|i| MemberId([i; 20])).collect()
    }

    #[test]
    fn sizes_follow_sn_bounds() {
        assert_eq!(valid_sizes(1, 2, 3), 1..=1);
        assert_eq!(valid_sizes(5, 2, 3), 2..=3);
        assert_eq!(valid_sizes(2, 1, 3), 1..=2);
    }

    #[test]
    fn generation_is_order_independent_and_validates() {
        let pool = ids(6);
        let mut rev = pool.clone();
        rev.reverse();
        let a = generate(&pool, 7, 0, "chat", 1, 3);
        let b = generate(&rev, 7, 0, "chat", 1, 3);
        assert_eq!(a, b);
        assert_eq!(a.stewards.len(), 3);
        validate(&a.stewards, &pool, 7, 0, "chat", 1, 3).unwrap();
        // A shorter valid prefix is fine too.
        validate(&a.stewards[..2], &pool, 7, 0, "chat", 1, 3).unwrap();
    }

    #[test]
    fn tampered_lists_are_refused() {
        let pool = ids(6);
        let good = generate(&pool, 7, 0, "chat", 1, 3);
        let mut swapped = good.stewards.clone();
        swapped.swap(0, 1);
        assert_eq!(
            validate(&swapped, &pool, 7, 0, "chat", 1, 3),
            Err(ListError::NotDeterministic)
        );
        let outsider = vec![MemberId([99; 20])];
        assert!(validate(&outsider, &pool, 7, 0, "chat", 1, 3).is_err());
        assert!(matches!(
            validate(&pool, &pool, 7, 0, "chat", 1, 3),
            Err(ListError::BadSize { .. })
        ));
        // Duplicates and absurd retry rounds are refused, never sliced past.
        let a = pool[0];
        assert_eq!(
            validate(&[a, a], &[a, a], 7, 0, "chat", 1, 3),
            Err(ListError::Duplicate(a))
        );
        assert!(matches!(
            validate(&good.stewards, &pool, 7, u32::MAX, "chat", 1, 3),
            Err(ListError::RetryRound(_))
        ));
        // Another retry round or epoch reshuffles.
        let other = generate(&pool, 7, 1, "chat", 1, 3);
        assert_ne!(other.stewards, good.stewards);
    }

    #[test]
    fn roles_rotate_and_skip_ineligible() {
        let list = StewardList {
            stewards: ids(3),
            election_epoch: 10,
            retry_round: 0,
        };
        assert_eq!(
            list.live_roles(10, |_| true),
            (Some(ids(3)[0]), Some(ids(3)[1]))
        );
        assert_eq!(
            list.live_roles(12, |_| true),
            (Some(ids(3)[2]), Some(ids(3)[0]))
        );
        assert!(list.is_exhausted(13));
        assert!(list.is_exhausted(9));
        let gone = ids(3)[1];
        assert_eq!(
            list.live_roles(11, |m| *m != gone),
            (Some(ids(3)[2]), Some(ids(3)[0]))
        );
    }
}
