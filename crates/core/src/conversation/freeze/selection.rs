//! Selection: the candidates ranked (longest proposal sequence, the epoch steward, the
//! smallest steward id, the smallest commit hash), the best one that validates applied,
//! and a round that yields nothing turned into Reelection.

use openmls_traits::OpenMlsProvider;
use prost::Message;

use super::*;
use crate::conversation::evidence::Judge;
use crate::proto::pb;
use crate::scoring::ScoreEvent;

/// See [`Conversation::rank`].
type RankKey = (std::cmp::Reverse<usize>, bool, MemberId);

impl Conversation {
    /// Selection: rank, then apply the best candidate that validates.
    pub(in crate::conversation) fn finalize_freeze<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let mut round = match self.enter(out, Phase::Selection) {
            Phase::Freezing(round) => round,
            _ => FreezeRound::default(),
        };
        let epoch = self.epoch();
        self.learn_candidate_elections(ctx, out, &round);
        let (live_es, _) = self
            .stewards
            .as_ref()
            .map(|l| l.live_roles(epoch, |m| self.eligible(m)))
            .unwrap_or((None, None));
        self.rank_candidates(&mut round, epoch);
        let steward = self.stewards.as_ref().is_some_and(|l| l.contains(&self.me));
        let window_end = round.select_at(self.config.freeze);
        match self.first_valid(ctx, out, &round, epoch) {
            Some((i, w)) => {
                let won = &round.candidates[i];
                if (steward || won.local)
                    && let Some(envelope) = won.envelope()
                {
                    self.trailing = Some(TrailingWinner::new(
                        envelope,
                        ctx.now,
                        self.resend_gap(),
                        window_end,
                        self.config.freeze,
                    ));
                }
                self.score_selection(&round.candidates[i + 1..], &w, live_es);
                self.on_committed(ctx, out, w);
            }
            None => {
                if round.own_pending
                    && let Some(mls) = self.mls.as_mut()
                {
                    let _ = mls.discard_own_commit(ctx.provider);
                }
                self.no_candidate(ctx, out, live_es);
            }
        }
    }

    /// Learns the elections the candidates carry before ranking: ranking names the
    /// list's epoch steward, and a member that missed the election behind the list (it
    /// caught up on the epoch's commit after the group elected) ranked with its old list
    /// and applied another winner than the group, a fork. Every candidate here staged
    /// and is signed by the member it names, and an election counts only by its signed
    /// votes, as from any member's `ProposalState`.
    fn learn_candidate_elections<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        round: &FreezeRound,
    ) {
        let elections: Vec<_> = round
            .candidates
            .iter()
            .filter(|c| !c.local && c.evidence_bound)
            .filter_map(|c| {
                pb::CommitCandidate::decode(c.bytes.as_slice())
                    .ok()
                    .map(|d| (d.evidence, c.actions))
            })
            .flat_map(|(evidence, actions)| {
                let judged = judged_evidence(&evidence, actions).len();
                evidence.into_iter().take(judged)
            })
            .filter(|p| {
                matches!(
                    Action::from_payload(&p.payload),
                    Ok(Action::Election { .. })
                )
            })
            .collect();
        if !elections.is_empty() {
            self.adopt_commit_evidence(ctx, out, &elections, Judge::Now);
        }
    }

    /// Orders the round's candidates best first: by rank, then the smallest commit hash.
    fn rank_candidates(&self, round: &mut FreezeRound, epoch: u64) {
        let es = self.ranking_steward();
        round
            .candidates
            .sort_by_key(|c| (Self::rank(c.actions, c.steward, es), c.hash));
        tracing::debug!(
            conversation = %self.name,
            epoch,
            candidates = ?round.candidates.iter().map(|c| (c.steward, c.actions)).collect::<Vec<_>>(),
            "selection"
        );
    }

    /// Applies the round's candidates in order until one validates: its place in the
    /// round and what it did.
    fn first_valid<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        round: &FreezeRound,
        epoch: u64,
    ) -> Option<(usize, Winner)> {
        for (i, cand) in round.candidates.iter().enumerate() {
            let result = if cand.local {
                self.apply_local(ctx, cand, epoch)
            } else {
                self.try_remote(ctx, out, cand, epoch, round.own_pending, Judge::Now)
            };
            if let Some(w) = result {
                return Some((i, w));
            }
        }
        None
    }

    /// Scores the round once `w` won: stewards whose later candidates we never had to
    /// try (`losers`) made an honest attempt; a live epoch steward (`live_es`) whose
    /// commit did not win held it back.
    fn score_selection(&mut self, losers: &[Candidate], w: &Winner, live_es: Option<MemberId>) {
        // Honest losers: stewards' later candidates that we never had to try.
        if let Some(list) = &self.stewards {
            for c in losers {
                if list.contains(&c.steward) && c.steward != w.committer {
                    self.scores
                        .apply(&c.steward, ScoreEvent::HonestCommitAttempt);
                }
            }
        }
        if let Some(es) = live_es
            && es != w.committer
            && es != self.me
        {
            self.scores.apply(&es, ScoreEvent::CensorshipInactivity);
        }
    }

    /// Selection rank of a candidate (smaller wins), up to the commit hash: longest
    /// proposal sequence, then the epoch steward, then the smallest steward id.
    pub(super) fn rank(actions: usize, steward: MemberId, es: Option<MemberId>) -> RankKey {
        (std::cmp::Reverse(actions), Some(steward) != es, steward)
    }

    /// The epoch steward that ranking prefers: the list's slot for this epoch. The RFC
    /// says the *live* epoch steward, but liveness here is each member's own observation
    /// (whom it saw fall silent, whose removal it has queued), and members that rank with
    /// different views apply different winners. A silent slot steward has no candidate
    /// to prefer anyway.
    pub(in crate::conversation) fn ranking_steward(&self) -> Option<MemberId> {
        let epoch = self.epoch();
        self.stewards
            .as_ref()
            .and_then(|l| l.live_roles(epoch, |_| true).0)
    }

    /// Nothing valid arrived: with approved work this is a missed commit → Reelection.
    fn no_candidate<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        live_es: Option<MemberId>,
    ) {
        if self.gov.approved.is_empty() {
            self.enter(out, Phase::Working);
            return;
        }
        if let Some(es) = live_es {
            if es != self.me {
                self.scores.apply(&es, ScoreEvent::CensorshipInactivity);
            }
            self.silent.insert(es);
        }
        tracing::warn!(conversation = %self.name, epoch = self.epoch(), "no valid commit candidate: reelection");
        self.enter(out, Phase::Reelection { since: ctx.now });
        // The election waits for the probe: we may just have missed the round.
        self.start_probe(ctx.now);
        self.check_score_removals(ctx, out);
    }
}
