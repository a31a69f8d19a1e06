//! Who votes: the roster, without the members that left their leaf and wait to rejoin.

use prost::Message;

use super::*;

impl Conversation {
    /// Members of our roster whose own signed *rejoin* announcement we hold (waiting in
    /// the update buffer, in a proposal, or decided and not yet committed): each has left
    /// its leaf (it lost a fork, or fell too far behind) and waits for a welcome, so it
    /// can neither receive our proposals nor vote on them. Only the member itself can put
    /// itself here (the announcement is signed under the rejoin domain, fresh, and its key
    /// package unused), so this can only lower the weight of its own voice.
    pub(crate) fn rejoining(&self) -> BTreeSet<MemberId> {
        let in_roster = |m: &MemberId| self.mls.as_ref().is_some_and(|g| g.is_member(m));
        // A member we heard at our epoch after it announced holds its leaf: the
        // announcement (replayed, or overtaken by a re-add) is not its state.
        let heard_after = |m: &MemberId, announcement: &[u8]| {
            let made = pb::KeyPackageAnnouncement::decode(announcement)
                .map(|a| a.timestamp_ms)
                .unwrap_or(0);
            self.fork_watch
                .heard
                .get(m)
                .is_some_and(|t| *t > made.saturating_add(join::ANNOUNCE_SKEW_MS))
        };
        let asked = |a: &Action, since: u64| match a {
            Action::Add {
                member,
                announcement,
                ..
            } if in_roster(member)
                && join::announcement_rejoin(announcement)
                && !self.added_since(member, since)
                && !heard_after(member, announcement) =>
            {
                Some(*member)
            }
            _ => None,
        };
        let approved = self.gov.approved_rejoins().filter(|m| in_roster(m));
        self.gov
            .membership_asks()
            .filter_map(|(a, since)| asked(a, since))
            .chain(approved)
            .collect()
    }

    /// Whether a commit into an epoch after `epoch` added `member` (it has a fresh leaf
    /// since: a rejoin asked for before that is done).
    pub(crate) fn added_since(&self, member: &MemberId, epoch: u64) -> bool {
        self.recent_adds
            .iter()
            .any(|(e, _, added)| *e > epoch && added.contains(member))
    }

    /// Who votes on proposals made now: the roster without the members rejoining. Without
    /// this a group whose members on a losing fork branch are half of its roster (a fork
    /// with equal support) could decide nothing, not even their rejoin.
    pub(crate) fn voters(&self) -> Vec<MemberId> {
        let away = self.rejoining();
        let is_voter = Self::voter_check(self.mls.as_ref(), &away);
        self.members().into_iter().filter(|m| is_voter(m)).collect()
    }

    /// The test behind [`Self::voters`] for one member, without a copy of the roster:
    /// in our group and not rejoining (`away`, from [`Self::rejoining`]). Built from the
    /// group alone, so a caller can hold it while it changes the governance state (a vote
    /// checked as it is recorded).
    pub(crate) fn voter_check<'a>(
        mls: Option<&'a MlsConversation>,
        away: &'a BTreeSet<MemberId>,
    ) -> impl Fn(&MemberId) -> bool + 'a {
        move |m| mls.is_some_and(|g| g.is_member(m)) && !away.contains(m)
    }
}
