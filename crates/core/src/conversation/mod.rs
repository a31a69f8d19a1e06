//! One de-MLS conversation as a sans-IO state machine.
//!
//! Inputs: [`Conversation::handle_packet`], the command methods (`send_chat`,
//! `propose_removal`, `vote`, `leave`) and [`Conversation::tick`]; each takes a [`Ctx`]
//! carrying the MLS provider, our identity, an RNG and the current time, and returns an
//! [`Output`] (packets to publish, events). [`Conversation::next_wakeup`] says when the
//! next tick is due. The state is serializable ([`Conversation::save`]); the MLS group
//! itself lives in the provider's storage and is reloaded by [`Conversation::restore`].
//!
//! The flows are split by concern: `inbound` routes packets, `proposals` runs consensus
//! bookkeeping, `freeze` builds, selects and applies commits, `join` handles key packages,
//! welcomes and the conversation sync, `stewardship` keeps the steward list and scores,
//! `catchup` lets members that missed a commit fetch it.

mod action;
#[cfg(feature = "adversary")]
mod adversary;
mod budget;
mod catchup;
mod chat;
mod evidence;
mod fork;
mod freeze;
mod inbound;
mod join;
mod proposals;
mod reject;
mod schedule;
mod sealed_vote;
mod stewardship;
mod timer;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

pub use action::{Action, Approved, Change, ProposalStatus, Tracked};
use catchup::CatchUp;
pub use fork::SentChat;
#[cfg(feature = "adversary")]
pub use fork::sign_beacon;
#[cfg(feature = "adversary")]
pub use join::forge_announcement;
use join::{PendingJoin, RecentWelcome};
use reject::Cause;
pub use reject::{InboundKind, RejectCause};
use timer::{Deadline, Soonest, Timer};
pub use types::*;

use crate::config::{ConversationConfig, Millis};
use crate::consensus::ConsensusState;
use crate::identity::{IdentityError, MemberId};
use crate::mls::{MlsConversation, MlsError};
use crate::scoring::Scores;
use crate::steward::StewardList;

/// Longest conversation name (it becomes part of a content topic).
pub const MAX_NAME_LEN: usize = 64;

/// Why a conversation cannot be created, joined or restored.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// Bad name; the text says which rule it breaks.
    #[error("{0}")]
    BadName(String),
    /// Bad configuration.
    #[error("invalid conversation config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// MLS failure.
    #[error("MLS: {0}")]
    Mls(#[from] MlsError),
    /// Our Ethereum key did not sign our key package announcement.
    #[error("cannot sign the key package announcement: {0}")]
    Sign(#[source] IdentityError),
    /// The state does not serialize (a bug: it is plain data).
    #[error("cannot serialize the conversation state: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Saved state unreadable.
    #[error("saved conversation state is unreadable: {0}")]
    Corrupt(#[from] CorruptState),
}

/// What is wrong with a saved conversation state.
#[derive(Debug, thiserror::Error)]
pub enum CorruptState {
    /// The bytes are not a saved state.
    #[error(transparent)]
    Decode(serde_json::Error),
    /// Its timings could not have been configured.
    #[error("saved timings: {0}")]
    Timings(#[source] crate::config::ConfigError),
    /// Its MLS group is not in the provider's storage.
    #[error("MLS state for {0:?} is missing from storage")]
    MissingMls(String),
}

/// Checks a conversation name: non-empty, at most 64 bytes, no `/`, no whitespace or
/// control characters (it becomes a segment of a Waku content topic). The error says
/// which rule failed.
pub fn validate_name(name: &str) -> Result<(), ConversationError> {
    let problem = if name.is_empty() {
        "a conversation name must not be empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "conversation name {name:?} is {} bytes; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )
    } else if name.contains('/') {
        format!("conversation name {name:?} must not contain '/'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        format!("conversation name {name:?} must not contain whitespace or control characters")
    } else {
        return Ok(());
    };
    Err(ConversationError::BadName(problem))
}

/// A freeze round: candidates collected for one epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct FreezeRound {
    pub epoch: u64,
    pub started_at: Millis,
    pub candidates: Vec<Candidate>,
    /// We hold a pending MLS commit of our own.
    pub own_pending: bool,
    /// When our candidate is next re-sent (a lost candidate forks the group, so it is
    /// sent several times within the window).
    pub next_resend: Option<Millis>,
    /// When the first other steward's candidate arrived. The window runs `freeze` from
    /// the later of this and our own start, so a member whose inactivity timer fired
    /// early still waits long enough to hear every steward.
    #[serde(default)]
    pub first_foreign_at: Option<Millis>,
}

impl FreezeRound {
    /// When selection is due (unless every steward's candidate is in before).
    pub fn deadline(&self, freeze: Millis) -> Millis {
        self.started_at.max(self.first_foreign_at.unwrap_or(0)) + freeze
    }
}

/// A commit candidate buffered in a freeze round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Candidate {
    /// Encoded `CommitCandidate`.
    pub bytes: Vec<u8>,
    pub hash: [u8; 32],
    pub steward: MemberId,
    pub actions: usize,
    pub local: bool,
    pub welcome: Option<Vec<u8>>,
    /// Whether the sealed welcome in `bytes` is known to open (so no later copy can
    /// better it; learnt when a second copy comes, see `prefer_sealed_copy`).
    pub sealed_opens: bool,
    /// The commit's authenticated data: the digest of the evidence its steward sent.
    #[serde(default)]
    pub evidence_aad: Vec<u8>,
    /// Whether the evidence in `bytes` is that list (a copy stripped or altered on the
    /// way is replaced by one that carries it: see `merge_second_copy`).
    #[serde(default)]
    pub evidence_bound: bool,
}

/// An application message for a later epoch, kept until we reach it or it expires.
#[derive(Clone, Debug)]
pub(crate) struct FutureMessage {
    pub epoch: u64,
    pub kind: FutureKind,
    pub ciphertext: Vec<u8>,
    pub arrived_at: Millis,
}

/// What a [`FutureMessage`]'s bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutureKind {
    /// An MLS application message (TLS `MlsMessageIn`).
    Mls,
    /// An encoded `SealedVote`.
    SealedVote,
}

/// A buffered membership request (key package announcement or removal) that the epoch
/// steward turns into a proposal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingUpdate {
    pub action: Action,
    pub first_seen_epoch: u64,
    pub first_seen_at: Millis,
}

/// The winning candidate of the round we just left, re-sent for a while by a steward.
///
/// A member selects early once every steward's candidate is in, and stops re-sending its
/// own. A member whose window is still open may by then hold only a losing candidate (the
/// winner's copies lost on the way) and would apply that one: a fork. So stewards keep
/// sending the winner until such windows have closed. Losing candidates are not re-sent:
/// a member holding nothing at the end of its window probes and catches up instead.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TrailingWinner {
    /// The `AppEnvelope` carrying the winning candidate, as published.
    pub envelope: Vec<u8>,
    pub next: Millis,
    pub until: Millis,
}

/// One conversation, from our point of view.
#[derive(Serialize, Deserialize)]
pub struct Conversation {
    name: String,
    me: MemberId,
    config: ConversationConfig,
    state: ConversationState,
    mode: OperatingMode,
    #[serde(skip)]
    mls: Option<MlsConversation>,
    consensus: ConsensusState,
    proposals: BTreeMap<u32, Tracked>,
    approved: Vec<Approved>,
    emergencies: BTreeSet<u32>,
    pending_updates: BTreeMap<MemberId, PendingUpdate>,
    resolved: VecDeque<u32>,
    anchor: Option<Millis>,
    reelection_since: Option<Millis>,
    /// Since when our steward list has been exhausted with no election decided.
    exhausted_since: Option<Millis>,
    freeze: Option<FreezeRound>,
    stewards: Option<StewardList>,
    next_retry_round: u32,
    /// Stewards found silent this epoch: left out of recovery elections.
    silent: BTreeSet<MemberId>,
    scores: Scores,
    committed_hashes: VecDeque<[u8; 32]>,
    recent_commits: VecDeque<(u64, Vec<u8>)>,
    recent_welcomes: VecDeque<RecentWelcome>,
    pending_join: Option<PendingJoin>,
    urgent_target: Option<MemberId>,
    score_removals: BTreeSet<MemberId>,
    /// Application messages from later epochs, replayed when we get there (under
    /// reordering the first messages of an epoch can overtake its commit). Nobody has
    /// authenticated them, so they are bounded (see `inbound`) and never saved.
    #[serde(skip)]
    future: Vec<FutureMessage>,
    /// Candidates refused on arrival (see `freeze::authenticate_candidate`).
    #[serde(default)]
    refused_candidates: VecDeque<[u8; 32]>,
    /// Key packages our recent commits consumed: announcing one again adds nobody.
    #[serde(default)]
    used_key_packages: VecDeque<[u8; 32]>,
    /// Recent commits that added members: (new epoch, committer, added). A welcome is
    /// kept for re-sending only when it matches one of these.
    #[serde(default)]
    recent_adds: VecDeque<(u64, MemberId, Vec<MemberId>)>,
    /// Member counts of the groups we had at recent epochs (see `evidence`).
    #[serde(default)]
    recent_sizes: VecDeque<evidence::GroupSize>,
    synced: bool,
    /// Proposals open or accepted (not committed) when we joined, from the conversation
    /// sync: they count fewer voters than we have members, so their evidence is taken
    /// as it comes (see `judged_evidence`).
    #[serde(default)]
    inherited_approvals: BTreeSet<u32>,
    catch_up: CatchUp,
    /// The accepted election proposal that installed the current steward list, if it came
    /// by vote. Its evidence travels with our candidates, so a member that missed the
    /// election learns the list before judging the commit.
    #[serde(default)]
    election_proof: Option<u32>,
    /// Candidates for our epoch that came before we knew of any approved change (a
    /// joiner still tallying the votes), with when they arrived: kept, and judged once
    /// something is approved.
    #[serde(default)]
    early_stash: Vec<(Vec<u8>, Millis)>,
    /// A welcome naming us into our next epoch, come while we are still a member: the
    /// committer of a duplicate rejoin of ours sends it before we apply that commit
    /// (see `fork::await_welcome`). One per signing member (the committer is not known
    /// yet), a few at most, and not saved.
    #[serde(skip)]
    early_welcome: Vec<(MemberId, Vec<u8>)>,
    /// Our last key package announcement before we joined: a second rejoin commit may
    /// still add us with it (see `fork::await_welcome`).
    #[serde(default)]
    last_announcement: Vec<u8>,
    #[serde(default)]
    trailing: Option<TrailingWinner>,
    /// Epoch log, beacons and known forks (see `fork`).
    #[serde(default)]
    fork_watch: fork::ForkWatch,
    /// Reliable chat (see `chat` and [`crate::sds`]).
    #[serde(default)]
    sds: crate::sds::Channel,
    closed: Option<LeaveReason>,
}

const RESOLVED_CAP: usize = 256;
const COMMITTED_CAP: usize = 16;

impl Conversation {
    fn blank(
        name: &str,
        me: MemberId,
        config: ConversationConfig,
        state: ConversationState,
    ) -> Self {
        Self {
            name: name.to_string(),
            me,
            config,
            state,
            mode: OperatingMode::Normal,
            mls: None,
            consensus: ConsensusState::default(),
            proposals: BTreeMap::new(),
            approved: Vec::new(),
            emergencies: BTreeSet::new(),
            pending_updates: BTreeMap::new(),
            resolved: VecDeque::new(),
            anchor: None,
            reelection_since: None,
            exhausted_since: None,
            freeze: None,
            stewards: None,
            next_retry_round: 0,
            silent: BTreeSet::new(),
            scores: Scores::default(),
            committed_hashes: VecDeque::new(),
            recent_commits: VecDeque::new(),
            recent_welcomes: VecDeque::new(),
            pending_join: None,
            urgent_target: None,
            score_removals: BTreeSet::new(),
            future: Vec::new(),
            recent_sizes: VecDeque::new(),
            used_key_packages: VecDeque::new(),
            refused_candidates: VecDeque::new(),
            recent_adds: VecDeque::new(),
            synced: false,
            inherited_approvals: BTreeSet::new(),
            catch_up: CatchUp::default(),
            election_proof: None,
            early_stash: Vec::new(),
            early_welcome: Vec::new(),
            last_announcement: Vec::new(),
            trailing: None,
            fork_watch: fork::ForkWatch::default(),
            sds: crate::sds::Channel::default(),
            closed: None,
        }
    }

    /// Creates a conversation with us as its only member and sole steward at epoch 0.
    pub fn create<P: OpenMlsProvider>(
        name: &str,
        config: ConversationConfig,
        ctx: &mut Ctx<'_, P>,
    ) -> Result<(Self, Output), ConversationError> {
        validate_name(name)?;
        config.validate()?;
        let mls = MlsConversation::create(ctx.provider, &ctx.identity.mls, name)?;
        let me = ctx.identity.member_id();
        let mut c = Self::blank(name, me, config, ConversationState::Working);
        c.stewards = Some(StewardList {
            stewards: vec![me],
            election_epoch: 0,
            retry_round: 0,
        });
        c.synced = true;
        c.mls = Some(mls);
        c.scores.sync_roster(&[me], c.config.default_peer_score);
        c.note_group_size(ctx.now);
        let mut out = Output::default();
        out.event(Event::StateChanged {
            state: ConversationState::Working,
        });
        tracing::info!(conversation = name, "created conversation at epoch 0");
        Ok((c, out))
    }

    /// Starts joining `name`: announces a fresh key package (signed with our Ethereum key)
    /// on the welcome subtopic and waits in PendingJoin.
    pub fn join<P: OpenMlsProvider>(
        name: &str,
        config: ConversationConfig,
        ctx: &mut Ctx<'_, P>,
    ) -> Result<(Self, Output), ConversationError> {
        validate_name(name)?;
        config.validate()?;
        let me = ctx.identity.member_id();
        let mut c = Self::blank(name, me, config, ConversationState::PendingJoin);
        let mut out = Output::default();
        c.pending_join = Some(PendingJoin::announce(
            name, &c.config, ctx, &mut out, false, 0,
        )?);
        out.event(Event::StateChanged {
            state: ConversationState::PendingJoin,
        });
        tracing::info!(
            conversation = name,
            "announced key package, waiting for a welcome"
        );
        Ok((c, out))
    }

    /// Serializes everything but the MLS group (which lives in the provider's storage).
    pub fn save(&self) -> Result<Vec<u8>, ConversationError> {
        serde_json::to_vec(self).map_err(ConversationError::Serialize)
    }

    /// Restores a saved conversation and reloads its MLS group from storage.
    pub fn restore<P: OpenMlsProvider>(
        bytes: &[u8],
        provider: &P,
    ) -> Result<Self, ConversationError> {
        let mut c: Self = serde_json::from_slice(bytes).map_err(CorruptState::Decode)?;
        // Saved state is input too (a damaged disk, an older build): a conversation must
        // never run on timings it could not have been created with.
        c.config.validate().map_err(CorruptState::Timings)?;
        validate_name(&c.name)?;
        if c.state != ConversationState::PendingJoin && c.closed.is_none() {
            c.mls = MlsConversation::load(provider, &c.name)?;
            if c.mls.is_none() {
                return Err(CorruptState::MissingMls(c.name.clone()).into());
            }
        }
        c.date_legacy_sizes();
        // Back from a restart: our filter tells the others what we missed meanwhile.
        c.sds.sync_soon();
        Ok(c)
    }

    // ---- queries ---------------------------------------------------------------------------

    /// Conversation name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Current state.
    pub fn state(&self) -> ConversationState {
        self.state
    }
    /// Operating mode.
    pub fn mode(&self) -> OperatingMode {
        self.mode
    }
    /// The protocol parameters in force (updated by the conversation sync).
    pub fn config(&self) -> &ConversationConfig {
        &self.config
    }
    /// MLS epoch (0 while pending).
    pub fn epoch(&self) -> u64 {
        self.mls.as_ref().map(|m| m.epoch()).unwrap_or(0)
    }
    /// Members in MLS leaf order (empty while pending).
    pub fn members(&self) -> Vec<MemberId> {
        self.mls.as_ref().map(|m| m.members()).unwrap_or_default()
    }
    /// The MLS epoch authenticator: equal at every member iff they share the group state.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.mls
            .as_ref()
            .map(|m| m.epoch_authenticator())
            .unwrap_or_default()
    }
    /// Closed (left, removed, expired)?
    pub fn closed(&self) -> Option<LeaveReason> {
        self.closed
    }
    /// The installed steward list.
    pub fn steward_list(&self) -> Option<&StewardList> {
        self.stewards.as_ref()
    }
    /// Score of a member.
    pub fn score(&self, m: &MemberId) -> i64 {
        self.scores.get(m, self.config.default_peer_score)
    }
    /// Approved membership changes waiting for a commit.
    pub fn approved(&self) -> &[Approved] {
        &self.approved
    }
    /// Every proposal we know, by id.
    pub fn proposals(&self) -> impl Iterator<Item = &Tracked> {
        self.proposals.values()
    }
    /// Vote tally of a proposal: (yes, no, expected).
    pub fn tally(&self, id: u32) -> Option<(u32, u32, u32)> {
        self.consensus.tally(id)
    }
    /// Open emergency proposals.
    pub fn open_emergencies(&self) -> usize {
        self.emergencies.len()
    }

    /// The role of `m` in the current epoch.
    pub fn role(&self, m: &MemberId) -> Role {
        let Some(list) = &self.stewards else {
            return Role::Member;
        };
        let (es, bs) = list.live_roles(self.epoch(), |x| self.eligible(x));
        if es == Some(*m) {
            Role::EpochSteward
        } else if bs == Some(*m) {
            Role::BackupSteward
        } else if list.contains(m) {
            Role::Steward
        } else {
            Role::Member
        }
    }

    /// When the next tick is needed (None: only inbound packets or commands can matter).
    pub fn next_wakeup(&self) -> Option<Millis> {
        self.deadline().map(|(t, _)| t)
    }

    /// The soonest deadline of any part of the conversation, and which part asked.
    /// Anything overdue is due now; callers tick at max(now, wakeup).
    pub(crate) fn deadline(&self) -> Deadline {
        if self.closed.is_some() {
            return None;
        }
        let mut s = Soonest::default();
        self.fold_deadlines(&mut s);
        s.get()
    }

    /// Adds the deadline of every part of the conversation to `soonest`: one fold for
    /// when to wake ([`Conversation::deadline`]) and for what a tick runs (`schedule`).
    fn fold_deadlines(&self, soonest: &mut Soonest) {
        if let Some(pj) = &self.pending_join {
            soonest.add(pj.deadline(&self.config));
        }
        for p in self.proposals.values() {
            if p.status == ProposalStatus::Voting {
                soonest.add(timer::at(p.auto_vote_at, Timer::AutoVote));
                soonest.add(Some((p.timeout_at, Timer::VoteTimeout)));
            }
        }
        // Approved work and no inactivity anchor yet: tick now so the anchor is set.
        // Without this a state change that happened outside a tick (a local steward list
        // after Reelection, say) left nothing scheduled, and a quiet group never froze.
        if self.anchor.is_none() && self.freeze_work_waiting() {
            soonest.add(Some((0, Timer::AnchorUnset)));
        }
        if let Some(a) = self.anchor.filter(|_| {
            matches!(
                self.state,
                ConversationState::Working | ConversationState::Reelection
            )
        }) {
            // A window that ran out during a catch-up probe freezes when the probe ends.
            // Saturating: the anchor comes from saved state (a damaged file overflowed).
            let due = a.saturating_add(self.inactivity_window());
            let due = self.catch_up.probe_until.map_or(due, |u| due.max(u));
            soonest.add(Some((due, Timer::Inactivity)));
        }
        if let Some(f) = self
            .freeze
            .as_ref()
            .filter(|_| self.state == ConversationState::Freezing)
        {
            soonest.add(Some((f.deadline(self.config.freeze), Timer::FreezeSelect)));
            soonest.add(timer::at(f.next_resend, Timer::FreezeResend));
        }
        soonest.add(timer::at(
            self.trailing.as_ref().map(|w| w.next),
            Timer::TrailingWinner,
        ));
        if let Some(s) = self
            .reelection_since
            .filter(|_| self.state == ConversationState::Reelection)
        {
            let due = s.saturating_add(self.reelection_patience());
            soonest.add(Some((due, Timer::ReelectionPatience)));
        }
        if let Some(s) = self
            .exhausted_since
            .filter(|_| self.state == ConversationState::Working)
        {
            let due = s.saturating_add(self.reelection_patience());
            soonest.add(Some((due, Timer::ExhaustedPatience)));
        }
        soonest.add(self.fork_deadline());
        soonest.add(self.catch_up.deadline(self.epoch()));
        // A backup steward takes over requests the epoch steward left unproposed.
        if self.state == ConversationState::Working
            && self.emergencies.is_empty()
            && self.role(&self.me) == Role::BackupSteward
        {
            let members = self.members();
            for (m, u) in &self.pending_updates {
                // Only what the takeover would propose (a request it skips would be due
                // for ever).
                if !self.change_in_flight(m) && Self::buffered_applies(&u.action, &members) {
                    let due = u.first_seen_at.saturating_add(self.takeover_window());
                    soonest.add(Some((due, Timer::Takeover)));
                }
            }
        }
        soonest.add(timer::at(self.chat_deadline(), Timer::Chat));
        soonest.add(self.welcome_resend_deadline());
    }

    // ---- commands --------------------------------------------------------------------------

    fn check_open(&self) -> Result<(), CommandError> {
        if self.closed.is_some() {
            Err(CommandError::Closed)
        } else {
            Ok(())
        }
    }

    /// Sends a chat message (an MLS application message).
    pub fn send_chat<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        text: &str,
    ) -> Result<Output, CommandError> {
        self.check_open()?;
        if text.is_empty() || text.len() > 4096 {
            return Err(CommandError::BadText);
        }
        match self.state {
            ConversationState::Working | ConversationState::Reelection => {}
            s => return Err(CommandError::Blocked(s)),
        }
        let mut out = Output::default();
        let id = self.send_sds_chat(ctx, &mut out, text)?;
        self.note_sent_chat(ctx.now, text);
        let recipients = self.members().len().saturating_sub(1) as u32;
        out.event(Event::Chat {
            sender: self.me,
            text: text.to_string(),
            epoch: self.epoch(),
            timestamp: ctx.now,
            id: Some(hex::encode(id)),
            sent_to: Some(recipients),
        });
        Ok(out)
    }

    /// Proposes removing `member`, with our YES vote bundled. Returns the proposal id.
    pub fn propose_removal<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        member: MemberId,
    ) -> Result<(u32, Output), CommandError> {
        self.check_open()?;
        if self.state != ConversationState::Working {
            return Err(CommandError::Blocked(self.state));
        }
        if !self.emergencies.is_empty() {
            return Err(CommandError::PartialFreeze);
        }
        if member == self.me {
            return Err(CommandError::SelfRemoval);
        }
        if !self.members().contains(&member) {
            return Err(CommandError::NotAMember(member));
        }
        if self.removal_under_way(&member) {
            return Err(CommandError::AlreadyProposed(member));
        }
        let mut out = Output::default();
        let id = self.open_proposal(
            ctx,
            &mut out,
            Action::Remove { member },
            Some(true),
            None,
            None,
        )?;
        Ok((id, out))
    }

    /// Files an emergency criteria proposal against `target` (our YES bundled). Emergencies
    /// take priority: lower-priority proposals wait until it is decided.
    pub fn report_violation<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        violation: crate::proto::pb::ViolationType,
        target: MemberId,
    ) -> Result<(u32, Output), CommandError> {
        self.check_open()?;
        if !matches!(
            self.state,
            ConversationState::Working | ConversationState::Reelection
        ) {
            return Err(CommandError::Blocked(self.state));
        }
        if !self.members().contains(&target) {
            return Err(CommandError::NotAMember(target));
        }
        let action = Action::Emergency {
            violation: violation as i32,
            target: Some(target),
            creator: self.me,
            epoch: self.epoch(),
        };
        let mut out = Output::default();
        let id = self.open_proposal(ctx, &mut out, action, Some(true), None, None)?;
        Ok((id, out))
    }

    /// Votes on a proposal by hand (cancels the automatic vote).
    pub fn vote<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        id: u32,
        yes: bool,
    ) -> Result<Output, CommandError> {
        self.check_open()?;
        match self.state {
            ConversationState::Working | ConversationState::Reelection => {}
            s => return Err(CommandError::Blocked(s)),
        }
        match self.proposals.get(&id) {
            Some(p) if p.status == ProposalStatus::Voting => {}
            _ => return Err(CommandError::UnknownProposal(id)),
        }
        if self.consensus.has_voted(id, &self.me) {
            return Err(CommandError::AlreadyVoted(id));
        }
        let mut out = Output::default();
        self.cast_vote(ctx, &mut out, id, yes)?;
        Ok(out)
    }

    /// Leaves: while pending, locally and silently; otherwise by a one-voter self-leave
    /// proposal (deterministic id, so asking twice proposes once) that a steward commits.
    pub fn leave<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
    ) -> Result<Output, CommandError> {
        self.check_open()?;
        let mut out = Output::default();
        if self.state == ConversationState::PendingJoin {
            self.close(ctx, &mut out, LeaveReason::LeftWhilePending);
            return Ok(out);
        }
        if self.members().len() <= 1 {
            // Nobody is left to commit our removal: the group simply ends here.
            self.close(ctx, &mut out, LeaveReason::Removed);
            return Ok(out);
        }
        let id = crate::consensus::self_leave_proposal_id(&self.me);
        if self.proposals.contains_key(&id) || self.removal_under_way(&self.me.clone()) {
            return Ok(out);
        }
        self.open_proposal(
            ctx,
            &mut out,
            Action::Remove { member: self.me },
            Some(true),
            Some(id),
            Some(1),
        )?;
        Ok(out)
    }

    // ---- shared helpers --------------------------------------------------------------------

    fn set_state(&mut self, out: &mut Output, state: ConversationState) {
        if self.state != state {
            tracing::debug!(conversation = %self.name, from = self.state.as_str(), to = state.as_str(), "state");
            self.state = state;
            out.event(Event::StateChanged { state });
        }
        if state != ConversationState::Reelection {
            self.reelection_since = None;
        }
        if !matches!(
            state,
            ConversationState::Working | ConversationState::Reelection
        ) {
            self.catch_up.probe_until = None;
        }
    }

    fn close<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        reason: LeaveReason,
    ) {
        self.delete_mls(ctx, out);
        self.pending_join = None;
        self.freeze = None;
        self.anchor = None;
        self.closed = Some(reason);
        tracing::info!(conversation = %self.name, ?reason, "conversation closed");
        out.event(Event::Left { reason });
    }

    /// Drops our MLS group for this conversation, from memory and storage.
    fn delete_mls<P: OpenMlsProvider>(&mut self, ctx: &mut Ctx<'_, P>, out: &mut Output) {
        if let Some(mls) = self.mls.take()
            && let Err(e) = mls.delete(ctx.provider)
        {
            out.event(Event::Error {
                operation: "delete MLS state",
                message: e.to_string(),
            });
        }
    }

    /// A member that may be steward: in the group and not on its way out.
    fn eligible(&self, m: &MemberId) -> bool {
        self.mls.as_ref().is_some_and(|g| g.is_member(m))
            && !self
                .approved
                .iter()
                .any(|a| a.change == Change::Remove { member: *m })
    }

    fn removal_under_way(&self, m: &MemberId) -> bool {
        self.approved
            .iter()
            .any(|a| a.change == Change::Remove { member: *m })
            || self.proposals.values().any(|p| {
                p.status == ProposalStatus::Voting
                    && matches!(p.action, Action::Remove { member } if member == *m)
            })
    }

    /// How long approved work waits before we freeze. The epoch steward goes first; every
    /// other member waits `recovery_inactivity` longer (the reference's later backup
    /// takeover rule). A steward that hears a candidate before its own timer is late and
    /// withholds a candidate that would win (see `submit_if_late_is_harmless`); the head
    /// start keeps that from happening to the epoch steward whenever the group decided
    /// the change within `recovery_inactivity` of each other.
    fn inactivity_window(&self) -> Millis {
        if self.mode == OperatingMode::Recovery || self.next_retry_round > 0 {
            self.config.recovery_inactivity
        } else if self.ranking_steward() == Some(self.me) {
            self.config.commit_inactivity
        } else {
            self.config.commit_inactivity + self.config.recovery_inactivity
        }
    }

    /// How long a backup waits for the epoch steward to propose a buffered request.
    fn takeover_window(&self) -> Millis {
        self.config.takeover_window()
    }

    /// How long Reelection waits for an election before reshuffling the proposer.
    fn reelection_patience(&self) -> Millis {
        self.config.reelection_patience()
    }

    fn send_app<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        msg: crate::proto::pb::AppMessage,
    ) -> Result<(), SendError> {
        use prost::Message;
        let mls = self.mls.as_mut().ok_or(SendError::NoGroup)?;
        let ct = mls.encrypt(ctx.provider, &ctx.identity.mls, &msg.encode_to_vec())?;
        let env = crate::proto::pb::AppEnvelope {
            body: Some(crate::proto::pb::app_envelope::Body::MlsMessage(ct)),
        };
        out.send(Subtopic::AppMsg, env.encode_to_vec());
        Ok(())
    }
}
