//! Per-conversation consensus sessions.

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use serde::{Deserialize, Serialize};

use super::decide;
use super::error::{ConsensusError, Rejection};
use super::vote::{sign_vote, validate_header, validate_vote, vote_hash};
use crate::identity::{EthSigner, MemberId};
use crate::proto::cpb::{Proposal, Vote};

/// Sessions kept at most; decided and expired ones are pruned first.
const MAX_SESSIONS: usize = 256;

/// What to propose.
#[derive(Clone, Debug)]
pub struct NewProposal {
    /// Human-readable name.
    pub name: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// Expected voters (member count).
    pub expected_voters: u32,
    /// Lifetime in seconds from now.
    pub expiration_s: u64,
    /// Silent voters count as YES, ties break to YES.
    pub liveness_yes: bool,
    /// A fixed id (self-leave) instead of a random one.
    pub fixed_id: Option<u32>,
}

/// A proposal we created.
#[derive(Clone, Debug)]
pub struct Created {
    /// To broadcast (with our vote if we cast one).
    pub proposal: Proposal,
    /// Decided already (one-voter proposals).
    pub outcome: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(into = "SessionWire", try_from = "SessionWire")]
struct Session {
    /// Header (votes empty).
    header: Proposal,
    /// In the order received (the order a proposal re-broadcast carries them in).
    votes: Vec<Vote>,
    outcome: Option<bool>,
    /// Each vote's index in `votes`, by its owner's bytes, and how many say YES: every
    /// vote received is checked against the votes held and tallied, and a scan of all of
    /// them per vote made a vote's handling O(n) (a 1000-member group's member spent more
    /// on those scans than on the vote's signature). Rebuilt from `votes` when loaded.
    by_owner: HashMap<Vec<u8>, usize>,
    yes: u32,
}

#[derive(Serialize, Deserialize)]
struct SessionWire {
    header: Vec<u8>,
    votes: Vec<Vec<u8>>,
    outcome: Option<bool>,
}

impl From<Session> for SessionWire {
    fn from(s: Session) -> Self {
        Self {
            header: s.header.encode_to_vec(),
            votes: s.votes.iter().map(|v| v.encode_to_vec()).collect(),
            outcome: s.outcome,
        }
    }
}

impl TryFrom<SessionWire> for Session {
    type Error = prost::DecodeError;
    fn try_from(w: SessionWire) -> Result<Self, Self::Error> {
        let mut s = Session::empty(Proposal::decode(w.header.as_slice())?);
        for v in &w.votes {
            s.push(Vote::decode(v.as_slice())?);
        }
        s.outcome = w.outcome;
        Ok(s)
    }
}

impl Session {
    /// A session for `p`'s header, without votes yet.
    fn from_header(p: &Proposal) -> Self {
        let mut header = p.clone();
        header.votes.clear();
        Self::empty(header)
    }

    fn empty(header: Proposal) -> Self {
        Self {
            header,
            votes: Vec::new(),
            outcome: None,
            by_owner: HashMap::new(),
            yes: 0,
        }
    }

    /// The vote held of `owner` (its address bytes), if any: one owner, one vote.
    fn held_of(&self, owner: &[u8]) -> Option<&Vote> {
        self.by_owner.get(owner).and_then(|i| self.votes.get(*i))
    }

    /// Appends a vote (callers have refused a second vote of its owner). A vote whose
    /// owner already has one is not indexed: the first stays the owner's vote.
    fn push(&mut self, v: Vote) {
        self.by_owner
            .entry(v.vote_owner.clone())
            .or_insert(self.votes.len());
        self.yes += u32::from(v.vote);
        self.votes.push(v);
    }

    fn tally(&self) -> (u32, u32) {
        (self.yes, self.votes.len() as u32 - self.yes)
    }

    /// Decides before the timeout (only what no further vote can change), once.
    fn decide(&mut self) -> Option<bool> {
        if self.outcome.is_none() {
            let (yes, no) = self.tally();
            self.outcome = decide(
                self.header.expected_voters_count,
                yes,
                no,
                self.header.liveness_criteria_yes,
                false,
            );
        }
        self.outcome
    }

    /// The timeout rule, where a YES must also hold with the tally over at most `can_vote`
    /// voters (the header's count less the voters that cannot vote, never below the votes
    /// held). Only ever stricter than the header's count: a member that cuts its count
    /// never decides YES, nor on fewer votes, where the others would not.
    fn decide_at_timeout(&mut self, can_vote: u32) -> Option<bool> {
        if self.outcome.is_none() {
            let (yes, no) = self.tally();
            let liveness = self.header.liveness_criteria_yes;
            let n = self.header.expected_voters_count;
            let cut = n.min(can_vote).max(yes.saturating_add(no));
            self.outcome = match decide(n, yes, no, liveness, true) {
                Some(true) => Some(decide(cut, yes, no, liveness, true) == Some(true)),
                other => other,
            };
        }
        self.outcome
    }

    /// Like `decide`, but a quorum of signed YES votes overturns an earlier NO reached by
    /// timeout: under loss a member can time out on votes the others received, and the
    /// evidence a commit carries is the proof it missed.
    fn decide_with_proof(&mut self, timed_out: bool) -> Option<bool> {
        let (yes, no) = self.tally();
        let proven = decide(
            self.header.expected_voters_count,
            yes,
            no,
            self.header.liveness_criteria_yes,
            timed_out,
        );
        if proven == Some(true) {
            self.outcome = proven;
        }
        self.decide()
    }

    /// Adds a vote that passed [`validate_vote`], refusing duplicates and equivocation.
    fn add(&mut self, v: Vote, owner: MemberId) -> Result<(), Rejection> {
        if let Some(prev) = self.held_of(&v.vote_owner) {
            return Err(if prev.vote_hash == v.vote_hash {
                Rejection::Replayed(owner)
            } else {
                Rejection::DuplicateVoter(owner)
            });
        }
        if self.votes.len() >= self.header.expected_voters_count as usize {
            return Err(Rejection::TooManyVotes);
        }
        self.push(v);
        Ok(())
    }

    fn with_votes(&self) -> Proposal {
        let mut p = self.header.clone();
        p.votes = self.votes.clone();
        p
    }
}

/// All consensus sessions of one conversation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConsensusState {
    sessions: BTreeMap<u32, Session>,
}

impl ConsensusState {
    fn prune(&mut self, now_s: u64) {
        if self.sessions.len() < MAX_SESSIONS {
            return;
        }
        let expired: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.outcome.is_some() || now_s > s.header.expiration_timestamp)
            .map(|(id, _)| *id)
            .collect();
        for id in expired
            .into_iter()
            .take(self.sessions.len() + 1 - MAX_SESSIONS)
        {
            self.sessions.remove(&id);
        }
    }

    /// Creates a proposal, optionally with our vote.
    pub fn create_proposal(
        &mut self,
        signer: &EthSigner,
        rng: &mut dyn rand::RngCore,
        now_s: u64,
        req: NewProposal,
        creator_vote: Option<bool>,
    ) -> Result<Created, ConsensusError> {
        let id = match req.fixed_id {
            Some(id) => id,
            None => loop {
                let id = rng.next_u32();
                if !self.sessions.contains_key(&id) {
                    break id;
                }
            },
        };
        if self.sessions.contains_key(&id) {
            return Err(ConsensusError::ProposalAlreadyExists(id));
        }
        self.prune(now_s);
        let header = Proposal {
            name: req.name,
            payload: req.payload,
            proposal_id: id,
            proposal_owner: signer.member_id().to_vec(),
            votes: Vec::new(),
            expected_voters_count: req.expected_voters.max(1),
            round: 1,
            timestamp: now_s,
            expiration_timestamp: now_s + req.expiration_s,
            liveness_criteria_yes: req.liveness_yes,
        };
        self.sessions.insert(id, Session::empty(header));
        let mut outcome = None;
        if let Some(yes) = creator_vote {
            let (_, o) = self.cast_vote(signer, rng, id, yes, now_s)?;
            outcome = o;
        }
        let proposal = self
            .sessions
            .get(&id)
            .map(|s| s.with_votes())
            .ok_or(ConsensusError::UnknownProposal(id))?;
        Ok(Created { proposal, outcome })
    }

    /// Accepts a proposal from a peer: header and every vote in it are validated, and the
    /// vote list must be hash-chained as created.
    pub fn receive_proposal(
        &mut self,
        p: Proposal,
        now_s: u64,
        is_voter: &dyn Fn(&MemberId) -> bool,
    ) -> Result<Option<bool>, Rejection> {
        if self.sessions.contains_key(&p.proposal_id) {
            return Err(Rejection::ProposalAlreadyExists(p.proposal_id));
        }
        validate_header(&p, now_s)?;
        for w in p.votes.windows(2) {
            if w[1].received_hash != w[0].vote_hash {
                return Err(Rejection::BrokenChain(
                    "received_hash does not name the previous vote",
                ));
            }
        }
        let mut s = Session::from_header(&p);
        for v in p.votes {
            if !v.parent_hash.is_empty()
                && s.held_of(&v.vote_owner)
                    .is_none_or(|x| x.vote_hash != v.parent_hash)
            {
                return Err(Rejection::BrokenChain(
                    "parent_hash names no earlier vote of the owner",
                ));
            }
            let owner = validate_vote(&v, &s.header, now_s, is_voter)?;
            s.add(v, owner)?;
        }
        self.prune(now_s);
        let outcome = s.decide();
        self.sessions.insert(p.proposal_id, s);
        Ok(outcome)
    }

    /// Accepts one vote on a known proposal.
    pub fn receive_vote(
        &mut self,
        v: Vote,
        now_s: u64,
        is_voter: &dyn Fn(&MemberId) -> bool,
    ) -> Result<Option<bool>, Rejection> {
        let s = self
            .sessions
            .get_mut(&v.proposal_id)
            .ok_or(Rejection::UnknownProposal(v.proposal_id))?;
        if let Some(refused) = Self::refusal_by_owner(s, &v) {
            return Err(refused);
        }
        let owner = validate_vote(&v, &s.header, now_s, is_voter)?;
        s.add(v, owner)?;
        Ok(s.decide())
    }

    /// The refusal of a vote whose owner already voted on its proposal (the same vote
    /// again, or a second one), found by comparison alone, before any signature check:
    /// anyone can replay a vote off the relay, and a member can seal junk in another's
    /// name, as often as it likes. The vote held was checked; one owner, one vote.
    pub fn refused_as_held(&self, v: &Vote) -> Option<Rejection> {
        Self::refusal_by_owner(self.sessions.get(&v.proposal_id)?, v)
    }

    fn refusal_by_owner(s: &Session, v: &Vote) -> Option<Rejection> {
        let held = s.held_of(&v.vote_owner)?;
        let owner = MemberId::from_slice(&v.vote_owner).ok()?;
        Some(if held.vote_hash == v.vote_hash {
            Rejection::Replayed(owner)
        } else {
            Rejection::DuplicateVoter(owner)
        })
    }

    /// Casts our vote, chained to our previous vote and the last one we received.
    pub fn cast_vote(
        &mut self,
        signer: &EthSigner,
        rng: &mut dyn rand::RngCore,
        proposal_id: u32,
        yes: bool,
        now_s: u64,
    ) -> Result<(Vote, Option<bool>), ConsensusError> {
        let me = signer.member_id().to_vec();
        let s = self
            .sessions
            .get_mut(&proposal_id)
            .ok_or(ConsensusError::UnknownProposal(proposal_id))?;
        if s.held_of(&me).is_some() {
            return Err(ConsensusError::AlreadyVoted(proposal_id));
        }
        if now_s > s.header.expiration_timestamp {
            return Err(ConsensusError::Expired(proposal_id));
        }
        let mut v = Vote {
            vote_id: rng.next_u32(),
            vote_owner: me,
            proposal_id,
            timestamp: now_s.max(s.header.timestamp),
            vote: yes,
            parent_hash: Vec::new(),
            received_hash: s
                .votes
                .last()
                .map(|l| l.vote_hash.clone())
                .unwrap_or_default(),
            vote_hash: Vec::new(),
            signature: Vec::new(),
        };
        sign_vote(&mut v, &s.header, signer).map_err(|e| ConsensusError::Signing(e.to_string()))?;
        s.push(v.clone());
        Ok((v, s.decide()))
    }

    /// Applies the timeout rule (silent voters counted). `None`: still undecided, which
    /// callers treat as a failed (rejected) proposal.
    ///
    /// `can_vote` is how many members can vote now. A proposal may count members that
    /// cannot (rejoining ones, or ones removed since it was made); they are never silent
    /// voters, or a tie they make up would pass a proposal two signed NOs oppose.
    pub fn on_timeout(&mut self, proposal_id: u32, can_vote: u32) -> Option<bool> {
        self.sessions
            .get_mut(&proposal_id)?
            .decide_at_timeout(can_vote)
    }

    /// The proposal with every vote we hold.
    pub fn evidence(&self, proposal_id: u32) -> Option<Proposal> {
        self.sessions.get(&proposal_id).map(|s| s.with_votes())
    }

    /// Merges a peer's view of a proposal: unknown proposals are adopted, every valid vote
    /// we lack is added (invalid ones are skipped). Returns the outcome.
    pub fn ingest_evidence(
        &mut self,
        p: Proposal,
        now_s: u64,
        is_voter: &dyn Fn(&MemberId) -> bool,
    ) -> Result<Option<bool>, Rejection> {
        self.ingest_evidence_inner(p, now_s, is_voter, false)
    }

    /// Like [`Self::ingest_evidence`] for a proposal whose timeout passed here too: the
    /// merged votes are judged by the timeout rule (with its majority-turnout minimum),
    /// as the members that committed it judged them. Only for a proposal we hold (the
    /// header the silent voters are counted under is ours, not the committer's).
    pub fn ingest_evidence_after_timeout(
        &mut self,
        p: Proposal,
        now_s: u64,
        is_voter: &dyn Fn(&MemberId) -> bool,
    ) -> Result<Option<bool>, Rejection> {
        if !self.sessions.contains_key(&p.proposal_id) {
            return Err(Rejection::UnknownProposal(p.proposal_id));
        }
        self.ingest_evidence_inner(p, now_s, is_voter, true)
    }

    fn ingest_evidence_inner(
        &mut self,
        p: Proposal,
        now_s: u64,
        is_voter: &dyn Fn(&MemberId) -> bool,
        timed_out: bool,
    ) -> Result<Option<bool>, Rejection> {
        validate_header(&p, now_s)?;
        let id = p.proposal_id;
        if !self.sessions.contains_key(&id) {
            self.prune(now_s);
            self.sessions.insert(id, Session::from_header(&p));
        }
        let s = self
            .sessions
            .get_mut(&id)
            .ok_or(Rejection::UnknownProposal(id))?;
        if super::vote::header_digest(&s.header) != super::vote::header_digest(&p) {
            return Err(Rejection::Malformed(
                "evidence does not match the proposal we hold".into(),
            ));
        }
        for v in p.votes {
            // A voter we hold a vote of cannot add another (`add` refuses it): not worth
            // a signature check, which anyone can make us run by sending copies.
            // (A vote hash covers its owner: a held hash under another owner cannot
            // validate either.)
            if s.held_of(&v.vote_owner).is_some() {
                continue;
            }
            if let Ok(owner) = validate_vote(&v, &s.header, now_s, is_voter) {
                let _ = s.add(v, owner);
            }
        }
        Ok(s.decide_with_proof(timed_out))
    }

    /// Did `member` vote on the proposal?
    pub fn has_voted(&self, proposal_id: u32, member: &MemberId) -> bool {
        self.sessions
            .get(&proposal_id)
            .is_some_and(|s| s.held_of(member.as_bytes()).is_some())
    }

    /// How `member` voted on the proposal (true = YES), if it did.
    pub fn vote_of(&self, proposal_id: u32, member: &MemberId) -> Option<bool> {
        self.sessions
            .get(&proposal_id)
            .and_then(|s| s.held_of(member.as_bytes()).map(|v| v.vote))
    }

    /// Whether we hold a session for exactly this header (votes aside).
    pub fn holds_header(&self, p: &Proposal) -> bool {
        self.sessions
            .get(&p.proposal_id)
            .is_some_and(|s| super::vote::header_digest(&s.header) == super::vote::header_digest(p))
    }

    /// (yes, no, expected).
    pub fn tally(&self, proposal_id: u32) -> Option<(u32, u32, u32)> {
        self.sessions.get(&proposal_id).map(|s| {
            let (y, n) = s.tally();
            (y, n, s.header.expected_voters_count)
        })
    }

    /// The decided outcome, if any.
    pub fn outcome(&self, proposal_id: u32) -> Option<bool> {
        self.sessions.get(&proposal_id).and_then(|s| s.outcome)
    }

    /// Forgets a proposal.
    pub fn remove(&mut self, proposal_id: u32) {
        self.sessions.remove(&proposal_id);
    }

    /// Hash of a vote (re-export for callers holding votes).
    pub fn hash_of(v: &Vote) -> [u8; 32] {
        vote_hash(v)
    }
}
