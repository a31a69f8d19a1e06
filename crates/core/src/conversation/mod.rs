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
mod error;
mod evidence;
mod fork;
mod freeze;
mod governance;
mod inbound;
mod join;
mod phase;
mod proposals;
mod reject;
mod saved;
mod schedule;
mod sealed_vote;
mod stewardship;
mod timer;
mod types;

use std::collections::{BTreeSet, VecDeque};

use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

pub use action::{Action, Approved, Change, ProposalStatus, Tracked};
use catchup::CatchUp;
pub use error::{ConversationError, CorruptState, MAX_NAME_LEN, validate_name};
pub use fork::SentChat;
#[cfg(feature = "adversary")]
pub use fork::sign_beacon;
use freeze::{Candidate, TrailingWinner};
use governance::Governance;
#[cfg(feature = "adversary")]
pub use join::forge_announcement;
use join::{PendingJoin, RecentWelcome};
use phase::Phase;
use reject::Cause;
pub use reject::{InboundKind, RejectCause};
use timer::{Deadline, Soonest, Timer};
pub use types::*;

use crate::config::{ConversationConfig, Millis};
use crate::identity::MemberId;
use crate::mls::MlsConversation;
use crate::scoring::Scores;
use crate::steward::StewardList;

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

/// One conversation, from our point of view.
///
/// Saved as JSON (`save`) and read back through `saved::SavedConversation`, which holds
/// which keys an older state may lack.
#[derive(Serialize, Deserialize)]
#[serde(from = "saved::SavedConversation")]
pub struct Conversation {
    name: String,
    me: MemberId,
    config: ConversationConfig,
    /// The state and the data only it has (see `phase`). Flattened: saved as the keys
    /// `state`, `freeze`, `pending_join`, `reelection_since` and `closed`.
    #[serde(flatten)]
    phase: Phase,
    mode: OperatingMode,
    #[serde(skip)]
    mls: Option<MlsConversation>,
    /// Proposals, votes, approved work, emergencies and their bookkeeping (see
    /// `governance`). Flattened: its fields are saved as top-level keys.
    #[serde(flatten)]
    gov: Governance,
    anchor: Option<Millis>,
    /// Since when our steward list has been exhausted with no election decided.
    exhausted_since: Option<Millis>,
    stewards: Option<StewardList>,
    next_retry_round: u32,
    /// Stewards found silent this epoch: left out of recovery elections.
    silent: BTreeSet<MemberId>,
    scores: Scores,
    committed_hashes: VecDeque<[u8; 32]>,
    recent_commits: VecDeque<(u64, Vec<u8>)>,
    recent_welcomes: VecDeque<RecentWelcome>,
    /// Application messages from later epochs, replayed when we get there (under
    /// reordering the first messages of an epoch can overtake its commit). Nobody has
    /// authenticated them, so they are bounded (see `inbound`) and never saved.
    #[serde(skip)]
    future: Vec<FutureMessage>,
    /// Candidates refused on arrival (see `freeze::authenticate_candidate`).
    refused_candidates: VecDeque<[u8; 32]>,
    /// Key packages our recent commits consumed: announcing one again adds nobody.
    used_key_packages: VecDeque<[u8; 32]>,
    /// Recent commits that added members: (new epoch, committer, added). A welcome is
    /// kept for re-sending only when it matches one of these.
    recent_adds: VecDeque<(u64, MemberId, Vec<MemberId>)>,
    /// Member counts of the groups we had at recent epochs (see `evidence`).
    recent_sizes: VecDeque<evidence::GroupSize>,
    synced: bool,
    catch_up: CatchUp,
    /// The accepted election proposal that installed the current steward list, if it came
    /// by vote. Its evidence travels with our candidates, so a member that missed the
    /// election learns the list before judging the commit.
    election_proof: Option<u32>,
    /// Candidates for our epoch that came before we knew of any approved change (a
    /// joiner still tallying the votes), with when they arrived: kept, and judged once
    /// something is approved.
    early_stash: Vec<(Vec<u8>, Millis)>,
    /// A welcome naming us into our next epoch, come while we are still a member: the
    /// committer of a duplicate rejoin of ours sends it before we apply that commit
    /// (see `fork::await_welcome`). One per signing member (the committer is not known
    /// yet), a few at most, and not saved.
    #[serde(skip)]
    early_welcome: Vec<(MemberId, Vec<u8>)>,
    /// Our last key package announcement before we joined: a second rejoin commit may
    /// still add us with it (see `fork::await_welcome`).
    last_announcement: Vec<u8>,
    trailing: Option<TrailingWinner>,
    /// Epoch log, beacons and known forks (see `fork`).
    fork_watch: fork::ForkWatch,
    /// Reliable chat (see `chat` and [`crate::sds`]).
    sds: crate::sds::Channel,
}

const COMMITTED_CAP: usize = 16;

impl Conversation {
    fn blank(name: &str, me: MemberId, config: ConversationConfig, phase: Phase) -> Self {
        Self {
            name: name.to_string(),
            me,
            config,
            phase,
            mode: OperatingMode::Normal,
            mls: None,
            gov: Governance::default(),
            anchor: None,
            exhausted_since: None,
            stewards: None,
            next_retry_round: 0,
            silent: BTreeSet::new(),
            scores: Scores::default(),
            committed_hashes: VecDeque::new(),
            recent_commits: VecDeque::new(),
            recent_welcomes: VecDeque::new(),
            future: Vec::new(),
            recent_sizes: VecDeque::new(),
            used_key_packages: VecDeque::new(),
            refused_candidates: VecDeque::new(),
            recent_adds: VecDeque::new(),
            synced: false,
            catch_up: CatchUp::default(),
            election_proof: None,
            early_stash: Vec::new(),
            early_welcome: Vec::new(),
            last_announcement: Vec::new(),
            trailing: None,
            fork_watch: fork::ForkWatch::default(),
            sds: crate::sds::Channel::default(),
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
        let mut c = Self::blank(name, me, config, Phase::Working);
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
        let mut out = Output::default();
        let pending = PendingJoin::announce(name, &config, ctx, &mut out, false, 0)?;
        let c = Self::blank(name, me, config, Phase::PendingJoin(pending));
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
        if !matches!(c.phase, Phase::PendingJoin(_) | Phase::Closed { .. }) {
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
        self.phase.state()
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
        self.phase.closed()
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
        &self.gov.approved
    }
    /// Every proposal we know, by id.
    pub fn proposals(&self) -> impl Iterator<Item = &Tracked> {
        self.gov.proposals.values()
    }
    /// Vote tally of a proposal: (yes, no, expected).
    pub fn tally(&self, id: u32) -> Option<(u32, u32, u32)> {
        self.gov.consensus.tally(id)
    }
    /// Open emergency proposals.
    pub fn open_emergencies(&self) -> usize {
        self.gov.emergencies.len()
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
        if self.closed().is_some() {
            return None;
        }
        let mut s = Soonest::default();
        self.fold_deadlines(&mut s);
        s.get()
    }

    /// Adds the deadline of every part of the conversation to `soonest`: one fold for
    /// when to wake ([`Conversation::deadline`]) and for what a tick runs (`schedule`).
    fn fold_deadlines(&self, soonest: &mut Soonest) {
        if let Some(pj) = self.phase.pending_join() {
            soonest.add(pj.deadline(&self.config));
        }
        soonest.add(self.gov.deadline());
        // Approved work and no inactivity anchor yet: tick now so the anchor is set.
        // Without this a state change that happened outside a tick (a local steward list
        // after Reelection, say) left nothing scheduled, and a quiet group never froze.
        if self.anchor.is_none() && self.freeze_work_waiting() {
            soonest.add(Some((0, Timer::AnchorUnset)));
        }
        if let Some(a) = self.anchor.filter(|_| {
            matches!(
                self.state(),
                ConversationState::Working | ConversationState::Reelection
            )
        }) {
            // A window that ran out during a catch-up probe freezes when the probe ends.
            // Saturating: the anchor comes from saved state (a damaged file overflowed).
            let due = a.saturating_add(self.inactivity_window());
            let due = self.catch_up.probe_until.map_or(due, |u| due.max(u));
            soonest.add(Some((due, Timer::Inactivity)));
        }
        if let Some(f) = self.phase.round() {
            soonest.add(f.deadline(self.config.freeze));
        }
        soonest.add(self.trailing.as_ref().and_then(TrailingWinner::deadline));
        if let Some(s) = self.phase.reelection_since() {
            let due = s.saturating_add(self.reelection_patience());
            soonest.add(Some((due, Timer::ReelectionPatience)));
        }
        if let Some(s) = self
            .exhausted_since
            .filter(|_| self.state() == ConversationState::Working)
        {
            let due = s.saturating_add(self.reelection_patience());
            soonest.add(Some((due, Timer::ExhaustedPatience)));
        }
        soonest.add(self.fork_deadline());
        soonest.add(self.catch_up.deadline(self.epoch()));
        // A backup steward takes over requests the epoch steward left unproposed.
        if self.state() == ConversationState::Working
            && self.gov.emergencies.is_empty()
            && self.role(&self.me) == Role::BackupSteward
        {
            let members = self.members();
            soonest.add(self.gov.takeover_deadline(self.takeover_window(), |a| {
                Self::buffered_applies(a, &members)
            }));
        }
        soonest.add(timer::at(self.chat_deadline(), Timer::Chat));
        soonest.add(self.welcome_resend_deadline());
    }

    // ---- commands (in `chat.rs` and `proposals/commands.rs`) --------------------------------

    /// Every command is refused once the conversation is closed.
    fn check_open(&self) -> Result<(), CommandError> {
        if self.closed().is_some() {
            Err(CommandError::Closed)
        } else {
            Ok(())
        }
    }

    // ---- shared helpers --------------------------------------------------------------------

    /// Moves to `next` and returns the phase we left, with its data. A change of state is
    /// reported; a catch-up probe runs only in Working and Reelection.
    ///
    /// Once closed we stay closed: a step that closed us may still move on as it unwinds,
    /// and only the state it reaches is kept (it is the state views show).
    fn enter(&mut self, out: &mut Output, next: Phase) -> Phase {
        let (from, to) = (self.phase.state(), next.state());
        if from != to {
            tracing::debug!(conversation = %self.name, from = from.as_str(), to = to.as_str(), "state");
            out.event(Event::StateChanged { state: to });
        }
        let next = match self.phase.closed() {
            Some(reason) => Phase::Closed { reason, last: to },
            None => next,
        };
        if !matches!(
            to,
            ConversationState::Working | ConversationState::Reelection
        ) {
            self.catch_up.probe_until = None;
        }
        std::mem::replace(&mut self.phase, next)
    }

    fn close<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        reason: LeaveReason,
    ) {
        self.delete_mls(ctx, out);
        self.anchor = None;
        let last = self.phase.state();
        self.phase = Phase::Closed { reason, last };
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
        self.mls.as_ref().is_some_and(|g| g.is_member(m)) && !self.gov.removal_approved(m)
    }

    /// Is the removal of `m` approved, or in vote?
    fn removal_under_way(&self, m: &MemberId) -> bool {
        self.gov.removal_under_way(m)
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
