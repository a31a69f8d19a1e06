//! Waiting for a group's steward list to settle: after joins or a removal, elections can
//! still be open (under loss a second, concurrent one can still replace the list), so a
//! scenario that depends on who the stewards are first waits for the list to stop moving.

use demls_core::config::Millis;
use demls_core::conversation::{Action, ProposalStatus, Role};

use super::Sim;

/// How long (virtual ms) a group may take to settle before the scenario fails.
const SETTLE_WITHIN: Millis = 10 * 60_000;

/// How long (virtual ms) a settled list must stay settled: a list that an election still
/// in flight replaces within this is not settled yet.
const SETTLE_HOLD: Millis = 5_000;

impl Sim {
    /// Whether every member of `ids` sees the same steward list, sees an epoch steward in
    /// it, and is voting on no election.
    pub fn steward_list_settled(&self, ids: &[usize]) -> bool {
        let lists: std::collections::BTreeSet<_> = ids
            .iter()
            .map(|i| self.members[*i].conv().steward_list().cloned())
            .collect();
        lists.len() == 1
            && ids.iter().all(|i| {
                self.holder(*i, Role::EpochSteward).is_some()
                    && !self.members[*i].conv().proposals().any(|p| {
                        p.status == ProposalStatus::Voting
                            && matches!(p.action, Action::Election { .. })
                    })
            })
    }

    /// Runs until the steward list of `ids` has settled ([`Sim::steward_list_settled`])
    /// and is still settled [`SETTLE_HOLD`] later; fails the scenario, with a dump, if the
    /// list has not settled [`SETTLE_WITHIN`] from now.
    pub fn settle_steward_list(&mut self, ids: &[usize]) {
        self.settle_steward_list_and(ids, |_| true);
    }

    /// [`Sim::settle_steward_list`], with `also` (for instance [`Sim::converged`]) required
    /// of the settled group too.
    pub fn settle_steward_list_and(&mut self, ids: &[usize], also: impl Fn(&Sim) -> bool) {
        let settled = |s: &Sim| s.steward_list_settled(ids) && also(s);
        let deadline = self.now + SETTLE_WITHIN;
        loop {
            assert!(
                self.run_until(deadline.saturating_sub(self.now), settled),
                "steward list never settled\n{}",
                self.describe()
            );
            self.run_for(SETTLE_HOLD);
            if settled(self) {
                break;
            }
        }
    }
}

impl Sim {
    /// Grows the group of `ids` from `ids[0]`, which creates it, one join at a time: each
    /// joiner converges with the members before it (a rejoin allowed) within 20 minutes.
    pub fn join_one_by_one(&mut self, ids: &[usize]) {
        self.create(ids[0]);
        for &j in &ids[1..] {
            self.join(j);
            let upto: Vec<usize> = ids.iter().copied().take_while(|x| *x <= j).collect();
            self.assert_converge_rejoining(&upto, 20 * 60_000);
        }
    }
}

/// `n` members joined one at a time, then their steward list settled (no election still
/// being voted on anywhere): the starting point of the steward and hostile scenarios.
pub fn settled_group(
    seed: u64,
    net: super::Net,
    cfg: demls_core::config::ConversationConfig,
    n: usize,
) -> (Sim, Vec<usize>) {
    let mut s = Sim::new(seed, net, cfg);
    let ids = s.add_members(n);
    s.join_one_by_one(&ids);
    s.settle_steward_list(&ids);
    (s, ids)
}
