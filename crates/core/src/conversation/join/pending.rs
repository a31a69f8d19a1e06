//! The pending join: our announcement, re-sent until a welcome comes, and given up (or,
//! for a rejoin, renewed) when none does.

use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

use super::{build_announcement, welcome_envelope_kp};
use crate::conversation::*;

/// State kept while waiting for a welcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PendingJoin {
    /// When this attempt began (its expiry runs from here).
    pub started_at: Millis,
    /// Our encoded announcement (empty when we wait for a welcome without one).
    pub announcement: Vec<u8>,
    /// When the announcement is next repeated.
    pub next_announce: Millis,
    /// We were a member and join afresh (see `fork`): the announcement says so, and the
    /// attempt is renewed instead of given up.
    #[serde(default)]
    pub rejoin: bool,
    /// Rejoin attempts renewed so far (each waits twice as long, up to 32×).
    #[serde(default)]
    pub attempts: u32,
    /// A rejoin whose renewal failed (no key package could be made or signed): when the
    /// renewal is tried again. `None` otherwise, and then not saved at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_retry_at: Option<Millis>,
}

impl PendingJoin {
    /// Announces a fresh signed key package for `name` (sent on `out`) and returns the
    /// attempt that waits for its welcome.
    pub(crate) fn announce<P: OpenMlsProvider>(
        name: &str,
        config: &ConversationConfig,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
        rejoin: bool,
        attempts: u32,
    ) -> Result<Self, ConversationError> {
        let announcement = build_announcement(name, ctx, rejoin)?;
        out.send(Subtopic::Welcome, welcome_envelope_kp(&announcement));
        Ok(Self {
            started_at: ctx.now,
            announcement,
            next_announce: ctx.now + config.commit_inactivity,
            rejoin,
            attempts,
            renew_retry_at: None,
        })
    }

    /// When this attempt is given up (or, for a rejoin, renewed).
    pub fn expires_at(&self, config: &ConversationConfig) -> Millis {
        let expiry = config.pending_join_expiry();
        self.started_at
            .saturating_add(expiry.saturating_mul(1 << self.attempts.min(5)))
    }

    /// When this attempt is next given up or renewed: at its expiry, or, after a renewal
    /// that failed, when that renewal is retried.
    fn due_at(&self, config: &ConversationConfig) -> Millis {
        self.renew_retry_at
            .unwrap_or_else(|| self.expires_at(config))
    }

    /// A rejoin that waits for the welcome of a commit that already re-added us (see
    /// `fork::await_welcome`): nothing new is announced; `announcement`, our last one, is
    /// repeated after `commit_inactivity` (never, if there is none).
    pub(crate) fn awaiting(
        now: Millis,
        announcement: Vec<u8>,
        config: &ConversationConfig,
    ) -> Self {
        let next_announce = if announcement.is_empty() {
            Millis::MAX
        } else {
            now.saturating_add(config.commit_inactivity)
        };
        Self {
            started_at: now,
            announcement,
            next_announce,
            rejoin: true,
            attempts: 0,
            renew_retry_at: None,
        }
    }

    /// The attempt of a state saved with none (an older build dropped it when it gave
    /// the join up): started at 0 with nothing to announce, so it has expired.
    pub(crate) fn expired() -> Self {
        Self {
            started_at: 0,
            announcement: Vec::new(),
            next_announce: Millis::MAX,
            rejoin: false,
            attempts: 0,
            renew_retry_at: None,
        }
    }

    /// Repeats our announcement if it is due: a steward that already committed our add
    /// re-sends the welcome we missed; otherwise it is a fresh request.
    /// An attempt that expired and waits to retry its renewal repeats nothing: its
    /// announcement is stale (members refuse it, after checking it, once it is older than
    /// the expiry) and could bring back a key package the renewal replaces.
    fn reannounce(&mut self, now: Millis, config: &ConversationConfig, out: &mut Output) {
        if self.renew_retry_at.is_some() {
            return;
        }
        if now >= self.next_announce && !self.announcement.is_empty() {
            self.next_announce = now.saturating_add(config.commit_inactivity);
            out.send(Subtopic::Welcome, welcome_envelope_kp(&self.announcement));
        }
    }

    /// When the announcement is repeated or the attempt expires, whichever is sooner.
    pub(crate) fn deadline(&self, config: &ConversationConfig) -> Deadline {
        let mut soonest = Soonest::default();
        if self.renew_retry_at.is_none() {
            soonest.add(Some((self.next_announce, Timer::JoinAnnounce)));
        }
        soonest.add(Some((self.due_at(config), Timer::JoinExpiry)));
        soonest.get()
    }
}

impl Conversation {
    /// While we wait for a welcome: renew or give up an attempt that expired, else repeat
    /// our announcement when it is due.
    pub(crate) fn tick_pending_join<P: OpenMlsProvider>(
        &mut self,
        ctx: &mut Ctx<'_, P>,
        out: &mut Output,
    ) {
        let Some(pj) = self.phase.pending_join_mut() else {
            return;
        };
        if ctx.now >= pj.due_at(&self.config) {
            if pj.rejoin {
                // We were a member: try again with a fresh key package (an old one may
                // have been consumed by an add whose welcome we never got), waiting
                // longer each time, rather than give up a conversation we belong to.
                let attempts = pj.attempts.saturating_add(1);
                tracing::warn!(conversation = %self.name, attempts, "no welcome arrived: announcing a fresh key package");
                match PendingJoin::announce(&self.name, &self.config, ctx, out, true, attempts) {
                    Ok(renewed) => {
                        *pj = renewed;
                        out.event(Event::Rejoining {
                            reason: RejoinReason::Retry,
                        });
                    }
                    Err(e) => {
                        out.event(Event::Error {
                            operation: "rejoin",
                            message: e.to_string(),
                        });
                        // Left due, the expired attempt would ask for a tick at once,
                        // and fail again, at every tick. Giving up instead would leave a
                        // conversation we belong to over what may be a passing local
                        // fault (storage, randomness, a signer). So keep the attempt we
                        // have (its repeats go on as before) and retry the renewal after
                        // `commit_inactivity`, the pace of those repeats: one error per
                        // window while the fault lasts, and a fresh key package as soon
                        // as one can be made.
                        pj.renew_retry_at =
                            Some(ctx.now.saturating_add(self.config.commit_inactivity));
                    }
                }
                return;
            }
            tracing::warn!(conversation = %self.name, "no welcome arrived: giving up the join");
            self.close(ctx, out, LeaveReason::JoinExpired);
            return;
        }
        pj.reannounce(ctx.now, &self.config, out);
    }
}

#[cfg(test)]
mod tests {
    use openmls_rust_crypto::{MemoryStorage, OpenMlsRustCrypto, RustCrypto};
    use rand::SeedableRng;

    use super::*;
    use crate::identity::EthSigner;
    use crate::mls::MlsIdentity;

    /// A realistic Unix time (ms) to start from.
    const T0: Millis = 1_790_000_000_000;

    /// Randomness that is never there: openmls cannot make a key package with it.
    #[derive(Default)]
    struct NoRandomness;

    impl openmls_traits::random::OpenMlsRand for NoRandomness {
        type Error = std::io::Error;
        fn random_array<const N: usize>(&self) -> Result<[u8; N], Self::Error> {
            Err(std::io::Error::other("no randomness"))
        }
        fn random_vec(&self, _len: usize) -> Result<Vec<u8>, Self::Error> {
            Err(std::io::Error::other("no randomness"))
        }
    }

    /// A provider whose key package generation fails, as a node's can when its
    /// randomness or storage breaks while a rejoin is pending.
    #[derive(Default)]
    struct Broken {
        crypto: RustCrypto,
        rand: NoRandomness,
        storage: MemoryStorage,
    }

    impl OpenMlsProvider for Broken {
        type CryptoProvider = RustCrypto;
        type RandProvider = NoRandomness;
        type StorageProvider = MemoryStorage;
        fn storage(&self) -> &MemoryStorage {
            &self.storage
        }
        fn crypto(&self) -> &RustCrypto {
            &self.crypto
        }
        fn rand(&self) -> &NoRandomness {
            &self.rand
        }
    }

    /// Our identity, made with `provider`.
    fn identity(provider: &OpenMlsRustCrypto) -> LocalIdentity {
        let eth = EthSigner::random_with(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let mls = MlsIdentity::create(provider, eth.member_id()).expect("mls identity");
        LocalIdentity { eth, mls }
    }

    /// One tick of `c` at `now` with `provider`.
    fn tick<P: OpenMlsProvider>(
        c: &mut Conversation,
        provider: &P,
        identity: &LocalIdentity,
        now: Millis,
    ) -> Output {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(now);
        c.tick(&mut Ctx {
            provider,
            identity,
            rng: &mut rng,
            now,
        })
    }

    /// Whether `out` reports a failed rejoin.
    fn rejoin_errors(out: &Output) -> usize {
        out.events
            .iter()
            .filter(|e| matches!(e, Event::Error { operation, .. } if *operation == "rejoin"))
            .count()
    }

    /// A rejoin whose renewal fails (no key package can be made) must not make the
    /// conversation ask to be woken at once, again and again, each tick reporting the same
    /// failure: the renewal is retried after `commit_inactivity`, and succeeds once the
    /// provider works again. (Failed before: the expired attempt stayed, its expiry in
    /// the past, so `next_wakeup` was that past time and every tick was a new error.)
    #[test]
    fn a_failed_rejoin_renewal_is_retried_after_a_back_off() {
        let good = OpenMlsRustCrypto::default();
        let me = identity(&good);
        let mut ctx_rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let (mut c, _) = Conversation::join(
            "t",
            ConversationConfig::default(),
            &mut Ctx {
                provider: &good,
                identity: &me,
                rng: &mut ctx_rng,
                now: T0,
            },
        )
        .expect("join");
        // A rejoin, as `fork` starts one.
        c.phase.pending_join_mut().expect("pending").rejoin = true;
        let config = c.config.clone();
        let expiry = c.phase.pending_join().unwrap().expires_at(&config);

        // Three back-off windows with a broken provider, ticked as the node does: at the
        // wake-up asked for, never before now.
        let broken = Broken::default();
        let end = expiry + 3 * config.commit_inactivity;
        let (mut now, mut ticks, mut errors, mut sent) = (expiry, 0, 0, 0);
        while now < end && ticks < 1_000 {
            let out = tick(&mut c, &broken, &me, now);
            errors += rejoin_errors(&out);
            sent += out.packets.len();
            ticks += 1;
            now = c.next_wakeup().expect("a wake-up").max(now);
        }
        assert_eq!(
            (errors, c.state()),
            (3, ConversationState::PendingJoin),
            "one failed renewal per commit_inactivity ({ticks} ticks, stuck at +{} ms)",
            now - expiry
        );
        assert_eq!(c.phase.pending_join().unwrap().attempts, 0);
        // The expired attempt's announcement is stale: it is not repeated meanwhile.
        assert_eq!(
            sent, 0,
            "packets sent while the renewal waits to be retried"
        );

        // The provider works again: the next renewal goes through.
        let out = tick(&mut c, &good, &me, now);
        assert!(
            out.events.iter().any(|e| matches!(
                e,
                Event::Rejoining {
                    reason: RejoinReason::Retry
                }
            )),
            "{:?}",
            out.events
        );
        let pj = c.phase.pending_join().expect("still pending");
        assert_eq!((pj.attempts, pj.started_at), (1, now));
        assert!(c.next_wakeup().expect("a wake-up") > now);
    }
}
