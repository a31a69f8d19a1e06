//! A deterministic simulator: N members over an in-memory network with a virtual clock and
//! a seeded scheduler that can drop, delay, duplicate and reorder messages, partition and
//! heal the network, and crash and restart members (their saved state and MLS storage
//! survive, as on disk). Every run is a function of its seed; a failing scenario prints
//! the seed so it can be replayed with `SIM_SEED=<seed>`.
//!
//! MLS key material comes from openmls' own RNG, so bytes differ between runs, but every
//! scheduling decision (delivery order, loss, delays, who acts when) is seeded.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use demls_core::config::{ConversationConfig, Millis};
use demls_core::conversation::{
    Conversation, ConversationState, Ctx, Event, LocalIdentity, OutPacket, Output, Subtopic,
};
use demls_core::identity::{EthSigner, MemberId};
use demls_core::mls::MlsIdentity;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub mod settle;

/// Network behaviour.
#[derive(Clone, Debug)]
pub struct Net {
    /// Probability a delivery is lost.
    pub loss: f64,
    /// Probability a delivery is duplicated.
    pub dup: f64,
    /// Delivery delay range (ms); a wide range reorders.
    pub min_delay: Millis,
    /// Upper bound of the delay.
    pub max_delay: Millis,
}

impl Net {
    /// Loss-free, 5-50 ms.
    pub fn clean() -> Self {
        Self {
            loss: 0.0,
            dup: 0.0,
            min_delay: 5,
            max_delay: 50,
        }
    }
    /// `loss` loss, duplicates, and delays up to 1 s (heavy reordering). The protocol
    /// assumes a freeze window longer than twice the network delay (a late steward's
    /// candidate must still reach members that heard the first one), as the RFC assumes
    /// members in sync within Δ; `fast_config`'s 3 s window against 1 s of delay keeps
    /// that, where real deployments have 30 s against well under a second.
    pub fn lossy(loss: f64) -> Self {
        Self {
            loss,
            dup: 0.05,
            min_delay: 5,
            max_delay: 1_000,
        }
    }
}

/// What a member does with its outbound packets.
pub type OutFilter = Box<dyn FnMut(&OutPacket) -> Option<OutPacket>>;

/// One simulated member.
pub struct Member {
    pub label: String,
    pub identity: LocalIdentity,
    pub provider: OpenMlsRustCrypto,
    pub conv: Option<Conversation>,
    pub alive: bool,
    pub saved: Option<Vec<u8>>,
    pub rng: ChaCha20Rng,
    pub events: Vec<(Millis, Event)>,
    /// Rewrites or drops outbound packets (a lying or silent member). None = honest.
    pub filter: Option<OutFilter>,
    /// Drops every inbound packet (a silent member still "alive" for the clock).
    pub deaf: bool,
    /// Real time spent inside this member's protocol calls (single-threaded, so this is
    /// its CPU time).
    pub cpu: std::time::Duration,
    /// Packets this member published (after its filter) and their payload bytes.
    pub sent_msgs: u64,
    /// See `sent_msgs`.
    pub sent_bytes: u64,
    /// Benchmark mode only ([`Sim::bench`]): time by the bench clock inside every call
    /// into this member's conversation (commands, packets, ticks, and the `next_wakeup`
    /// a node asks after each of them).
    pub bench_cpu: std::time::Duration,
}

impl Member {
    pub fn id(&self) -> MemberId {
        self.identity.member_id()
    }
    pub fn conv(&self) -> &Conversation {
        self.conv.as_ref().expect("member has no conversation")
    }
}

struct Delivery {
    to: usize,
    from: usize,
    subtopic: Subtopic,
    payload: Vec<u8>,
}

/// Benchmark mode: what the simulator measures and skips so that its own cost stays
/// small next to the members' (see [`Sim::bench`]).
pub struct BenchMode {
    /// Reads the clock member calls are timed with (e.g. the thread's CPU time).
    pub clock: fn() -> std::time::Duration,
    /// Each member's next wake-up, refreshed after every call into it: the next timer is
    /// a scan of this instead of asking every member after every step.
    wakeups: Vec<Option<Millis>>,
}

/// The simulator.
pub struct Sim {
    pub now: Millis,
    pub members: Vec<Member>,
    pub seed: u64,
    pub net: Net,
    pub name: String,
    pub config: ConversationConfig,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    pending: BTreeMap<u64, Delivery>,
    seq: u64,
    rng: ChaCha20Rng,
    /// Partition groups: members can only reach members with the same group number.
    groups: Option<Vec<usize>>,
    /// Every packet ever published: (time, from, subtopic, payload).
    pub log: Vec<(Millis, usize, Subtopic, Vec<u8>)>,
    /// A history store (13/WAKU2-STORE) every member reaches: a member's history ask
    /// (`Output::history_since`) is answered with every logged packet of the others
    /// since then. Off unless a test turns it on.
    pub store: bool,
    /// Every history ask: (when, who, since).
    pub history_asks: Vec<(Millis, usize, Millis)>,
    /// Benchmark mode (off unless a benchmark turns it on with [`Sim::bench`]).
    bench: Option<BenchMode>,
    /// Whether `log` keeps every published packet (a benchmark at size turns it off).
    pub keep_log: bool,
}

/// Virtual start time: a realistic Unix time (ms), so timestamps look real.
pub const T0: Millis = 1_790_000_000_000;

impl Sim {
    pub fn new(seed: u64, net: Net, config: ConversationConfig) -> Self {
        if std::env::var("SIM_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(std::env::var("SIM_LOG").unwrap_or_default())
                .without_time()
                .with_ansi(false)
                .with_test_writer()
                .try_init();
        }
        Self {
            now: T0,
            members: Vec::new(),
            seed,
            net,
            name: "sim-chat".to_string(),
            config,
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            groups: None,
            log: Vec::new(),
            store: false,
            history_asks: Vec::new(),
            bench: None,
            keep_log: true,
        }
    }

    /// Turns on benchmark mode: every call into a member (commands included) is timed
    /// with `clock` into [`Member::bench_cpu`], each member's next wake-up is cached
    /// (asked once after each call into it, as a node does) instead of asked of every
    /// member after every step, and the after-step check that approved work has a timer
    /// is skipped. Scenarios run unchanged; only the simulator's own work differs.
    pub fn bench(&mut self, clock: fn() -> std::time::Duration) {
        self.bench = Some(BenchMode {
            clock,
            wakeups: Vec::new(),
        });
        for i in 0..self.members.len() {
            self.refresh_wakeup(i);
        }
    }

    /// Benchmark mode: re-reads member `i`'s next wake-up (timed as its own work).
    fn refresh_wakeup(&mut self, i: usize) {
        let Some(b) = self.bench.as_mut() else { return };
        let m = &mut self.members[i];
        let t = (b.clock)();
        let w = m.conv.as_ref().and_then(|c| c.next_wakeup());
        m.bench_cpu += (b.clock)().saturating_sub(t);
        if b.wakeups.len() <= i {
            b.wakeups.resize(i + 1, None);
        }
        b.wakeups[i] = w;
    }

    /// Benchmark mode: the bench clock now (zero otherwise).
    fn bench_now(&self) -> std::time::Duration {
        self.bench
            .as_ref()
            .map_or(std::time::Duration::ZERO, |b| (b.clock)())
    }

    /// Benchmark mode: charges member `i` for the call that started at `t`.
    fn bench_charge(&mut self, i: usize, t: std::time::Duration) {
        if self.bench.is_some() {
            let spent = self.bench_now().saturating_sub(t);
            self.members[i].bench_cpu += spent;
            self.refresh_wakeup(i);
        }
    }

    /// Adds a member with a fresh Ethereum key (from the seeded RNG) and MLS identity.
    pub fn add_member(&mut self, label: &str) -> usize {
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.r#gen());
        let eth = EthSigner::random_with(&mut rng);
        let provider = OpenMlsRustCrypto::default();
        let mls = MlsIdentity::create(&provider, eth.member_id()).expect("mls identity");
        self.members.push(Member {
            label: label.to_string(),
            identity: LocalIdentity { eth, mls },
            provider,
            conv: None,
            alive: true,
            saved: None,
            rng,
            events: Vec::new(),
            filter: None,
            deaf: false,
            cpu: std::time::Duration::ZERO,
            sent_msgs: 0,
            sent_bytes: 0,
            bench_cpu: std::time::Duration::ZERO,
        });
        let i = self.members.len() - 1;
        self.refresh_wakeup(i);
        i
    }

    pub fn add_members(&mut self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| self.add_member(&format!("m{}", self.members.len() + i)))
            .collect()
    }

    /// A key-package announcement for member `who` made now, its key package generated
    /// with `provider` (the member's own, or another one to control its keys), signed
    /// with `who`'s key.
    pub fn announcement_with<P: openmls_traits::OpenMlsProvider>(
        &self,
        provider: &P,
        who: usize,
    ) -> Vec<u8> {
        let m = &self.members[who];
        let mls = demls_core::mls::MlsIdentity::create(provider, m.id()).unwrap();
        let kp = demls_core::mls::generate_key_package(provider, &mls).unwrap();
        demls_core::conversation::forge_announcement(
            &self.name,
            kp,
            m.id(),
            &m.identity.eth,
            self.now,
            false,
        )
    }

    pub fn id(&self, i: usize) -> MemberId {
        self.members[i].id()
    }

    /// Runs `f` with member `i`'s conversation and a context at the current time, then
    /// publishes its output.
    pub fn act<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Conversation, &mut Ctx<'_, OpenMlsRustCrypto>) -> (R, Output),
    ) -> R {
        let now = self.now;
        let _span =
            tracing::info_span!(target: "demls_core", "m", i, t = now - T0, act = true).entered();
        let t0 = self.bench_now();
        let m = &mut self.members[i];
        let conv = m.conv.as_mut().expect("member has no conversation");
        let mut ctx = Ctx {
            provider: &m.provider,
            identity: &m.identity,
            rng: &mut m.rng,
            now,
        };
        let (r, out) = f(conv, &mut ctx);
        self.bench_charge(i, t0);
        self.publish(i, out);
        r
    }

    pub fn create(&mut self, i: usize) {
        self.open(i, true);
    }

    pub fn join(&mut self, i: usize) {
        self.open(i, false);
    }

    fn open(&mut self, i: usize, create: bool) {
        let now = self.now;
        let name = self.name.clone();
        let cfg = self.config.clone();
        let t0 = self.bench_now();
        let m = &mut self.members[i];
        let mut ctx = Ctx {
            provider: &m.provider,
            identity: &m.identity,
            rng: &mut m.rng,
            now,
        };
        let made = if create {
            Conversation::create(&name, cfg, &mut ctx)
        } else {
            Conversation::join(&name, cfg, &mut ctx)
        };
        let (c, out) = made.expect("create or join");
        m.conv = Some(c);
        self.bench_charge(i, t0);
        self.publish(i, out);
    }

    pub fn chat(&mut self, i: usize, text: &str) {
        let t = text.to_string();
        self.act(i, |c, ctx| {
            let out = c.send_chat(ctx, &t).expect("chat");
            ((), out)
        })
    }

    pub fn propose_removal(&mut self, i: usize, target: usize) -> u32 {
        let t = self.id(target);
        self.act(i, |c, ctx| {
            c.propose_removal(ctx, t).expect("propose removal")
        })
    }

    pub fn vote(&mut self, i: usize, id: u32, yes: bool) {
        self.act(i, |c, ctx| {
            let out = c.vote(ctx, id, yes).expect("vote");
            ((), out)
        })
    }

    pub fn leave(&mut self, i: usize) {
        self.act(i, |c, ctx| {
            let out = c.leave(ctx).expect("leave");
            ((), out)
        })
    }

    /// Crash: the in-memory conversation is lost; what was saved (state + MLS storage) stays.
    pub fn crash(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.saved = m.conv.as_ref().map(|c| c.save().expect("save"));
        m.conv = None;
        m.alive = false;
        self.refresh_wakeup(i);
    }

    /// Restart from the saved state.
    pub fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(bytes) = m.saved.take() {
            m.conv = Some(Conversation::restore(&bytes, &m.provider).expect("restore"));
        }
        m.alive = true;
        self.refresh_wakeup(i);
    }

    /// Splits the network; members not listed are alone (members added later are in the
    /// first group).
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let mut g = (0..self.members.len())
            .map(|i| 1000 + i)
            .collect::<Vec<_>>();
        for (n, grp) in groups.iter().enumerate() {
            for &i in grp.iter() {
                g[i] = n;
            }
        }
        self.groups = Some(g);
    }

    /// Cuts each listed member off alone; everyone else, members added later included,
    /// stays together.
    pub fn isolate(&mut self, who: &[usize]) {
        let g = (0..self.members.len())
            .map(|i| if who.contains(&i) { 1000 + i } else { 0 })
            .collect();
        self.groups = Some(g);
    }

    pub fn heal(&mut self) {
        self.groups = None;
    }

    /// Members added after a partition are in its first group.
    fn reachable(&self, a: usize, b: usize) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|g| g.get(a).copied().unwrap_or(0) == g.get(b).copied().unwrap_or(0))
    }

    fn publish(&mut self, from: usize, out: Output) {
        for e in out.events {
            self.members[from].events.push((self.now, e));
        }
        if let Some(since) = out.history_since {
            self.history_asks.push((self.now, from, since));
            if self.store {
                let answer: Vec<_> = self
                    .log
                    .iter()
                    .filter(|(t, f, _, _)| *t >= since && *f != from)
                    .map(|(_, f, sub, p)| (*f, *sub, p.clone()))
                    .collect();
                for (f, sub, p) in answer {
                    self.deliver(from, f, sub, p);
                }
            }
        }
        for p in out.packets {
            let p = match self.members[from].filter.as_mut() {
                Some(f) => match f(&p) {
                    Some(p) => p,
                    None => continue,
                },
                None => p,
            };
            self.members[from].sent_msgs += 1;
            self.members[from].sent_bytes += p.payload.len() as u64;
            if self.keep_log {
                self.log
                    .push((self.now, from, p.subtopic, p.payload.clone()));
            }
            for to in 0..self.members.len() {
                if to == from {
                    continue;
                }
                let copies = if self.rng.gen_bool(self.net.loss) {
                    0
                } else if self.rng.gen_bool(self.net.dup) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let delay = self.rng.gen_range(self.net.min_delay..=self.net.max_delay);
                    self.seq += 1;
                    self.queue.push(Reverse((self.now + delay, self.seq)));
                    self.pending.insert(
                        self.seq,
                        Delivery {
                            to,
                            from,
                            subtopic: p.subtopic,
                            payload: p.payload.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Injects a raw packet as if `from` had published it.
    pub fn inject(&mut self, from: usize, subtopic: Subtopic, payload: Vec<u8>) {
        let out = Output {
            packets: vec![OutPacket { subtopic, payload }],
            ..Output::default()
        };
        self.publish(from, out);
    }

    /// Delivers a packet `from` published earlier to member `to` alone, now, as a store
    /// answering a history query would.
    pub fn deliver(&mut self, to: usize, from: usize, subtopic: Subtopic, payload: Vec<u8>) {
        self.seq += 1;
        self.queue.push(Reverse((self.now, self.seq)));
        self.pending.insert(
            self.seq,
            Delivery {
                to,
                from,
                subtopic,
                payload,
            },
        );
    }

    /// Publishes `payload` `times` times, `gap` apart, running the group in between: an
    /// adversary that re-sends like an honest steward, so that under loss every member
    /// gets to see (and judge) its message.
    pub fn inject_repeated(
        &mut self,
        from: usize,
        subtopic: Subtopic,
        payload: Vec<u8>,
        times: usize,
        gap: Millis,
    ) {
        for k in 0..times {
            if k > 0 {
                self.run_for(gap);
            }
            self.inject(from, subtopic, payload.clone());
        }
    }

    fn next_wakeup(&self) -> Option<(Millis, usize)> {
        if let Some(b) = self.bench.as_ref() {
            return b
                .wakeups
                .iter()
                .enumerate()
                .filter(|(i, _)| self.members[*i].alive)
                .filter_map(|(i, w)| w.map(|t| (t.max(self.now), i)))
                .min();
        }
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.alive)
            .filter_map(|(i, m)| {
                m.conv
                    .as_ref()
                    .and_then(|c| c.next_wakeup())
                    .map(|t| (t.max(self.now), i))
            })
            .min()
    }

    /// Advances to the next event (delivery or timer). Returns false when nothing is left
    /// before `limit`.
    pub fn step(&mut self, limit: Millis) -> bool {
        let next_delivery = self.queue.peek().map(|Reverse((t, _))| *t);
        let next_timer = self.next_wakeup();
        let t = match (next_delivery, next_timer) {
            (None, None) => return false,
            (Some(d), None) => d,
            (None, Some((w, _))) => w,
            (Some(d), Some((w, _))) => d.min(w),
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        if next_delivery == Some(t) {
            let Reverse((_, seq)) = self.queue.pop().expect("peeked");
            let d = self.pending.remove(&seq).expect("pending");
            if self.members[d.to].alive && !self.members[d.to].deaf && self.reachable(d.from, d.to)
            {
                let _span =
                    tracing::info_span!(target: "demls_core", "m", i = d.to, t = self.now - T0, from = d.from).entered();
                let now = self.now;
                let m = &mut self.members[d.to];
                if let Some(conv) = m.conv.as_mut() {
                    let mut ctx = Ctx {
                        provider: &m.provider,
                        identity: &m.identity,
                        rng: &mut m.rng,
                        now,
                    };
                    let t0 = self.bench.as_ref().map(|b| (b.clock)());
                    let t = std::time::Instant::now();
                    let out = conv.handle_packet(&mut ctx, d.subtopic, &d.payload);
                    m.cpu += t.elapsed();
                    if let Some(t0) = t0 {
                        self.bench_charge(d.to, t0);
                    }
                    self.publish(d.to, out);
                }
            }
        } else if let Some((_, i)) = next_timer {
            let _span =
                tracing::info_span!(target: "demls_core", "m", i, t = self.now - T0, tick = true)
                    .entered();
            let now = self.now;
            let m = &mut self.members[i];
            if let Some(conv) = m.conv.as_mut() {
                let mut ctx = Ctx {
                    provider: &m.provider,
                    identity: &m.identity,
                    rng: &mut m.rng,
                    now,
                };
                let t0 = self.bench.as_ref().map(|b| (b.clock)());
                let t = std::time::Instant::now();
                let out = conv.tick(&mut ctx);
                m.cpu += t.elapsed();
                if let Some(t0) = t0 {
                    self.bench_charge(i, t0);
                }
                self.publish(i, out);
            }
        }
        if self.bench.is_none() {
            self.check_scheduled();
        }
        true
    }

    /// Approved work must always have a timer behind it: the node ticks a conversation
    /// only when its next wake-up is due, so work with nothing scheduled never happens
    /// (the docker testnet stalled that way after a self-leave).
    fn check_scheduled(&self) {
        for (i, m) in self.members.iter().enumerate() {
            let Some(c) = m.conv.as_ref() else { continue };
            if m.alive
                && c.closed().is_none()
                && c.state() != ConversationState::PendingJoin
                && !c.approved().is_empty()
            {
                assert!(
                    c.next_wakeup().is_some(),
                    "member {i} has approved work and nothing scheduled (seed {})\n{}",
                    self.seed,
                    self.describe()
                );
            }
        }
    }

    /// Runs for `ms` of virtual time.
    pub fn run_for(&mut self, ms: Millis) {
        let limit = self.now + ms;
        let mut steps = 0u64;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 5_000_000, "runaway simulation (seed {})", self.seed);
        }
        self.now = self.now.max(limit);
    }

    /// Runs until `pred` holds (checked after every step) or `max_ms` passes.
    pub fn run_until(&mut self, max_ms: Millis, mut pred: impl FnMut(&Sim) -> bool) -> bool {
        let limit = self.now + max_ms;
        let mut steps = 0u64;
        loop {
            if pred(self) {
                return true;
            }
            if !self.step(limit) {
                self.now = self.now.max(limit);
                return pred(self);
            }
            steps += 1;
            assert!(
                steps < 5_000_000,
                "runaway simulation (seed {}); next timer {:?}\n{}",
                self.seed,
                self.next_wakeup(),
                self.describe()
            );
        }
    }

    pub fn state(&self, i: usize) -> Option<ConversationState> {
        self.members[i]
            .conv
            .as_ref()
            .filter(|c| c.closed().is_none())
            .map(|c| c.state())
    }

    pub fn working(&self, i: usize) -> bool {
        self.state(i) == Some(ConversationState::Working)
    }

    /// Every listed member: Working, same epoch, same roster (exactly `ids`), same epoch
    /// authenticator.
    pub fn converged(&self, idx: &[usize]) -> bool {
        self.agree(idx, idx)
    }

    /// `observers` are Working at one epoch with one epoch authenticator, and each sees
    /// exactly `roster` (which may include silent or crashed members).
    pub fn agree(&self, observers: &[usize], roster: &[usize]) -> bool {
        let Some(c0) = observers
            .first()
            .and_then(|i| self.members[*i].conv.as_ref())
        else {
            return false;
        };
        let mut want: Vec<MemberId> = roster.iter().map(|i| self.id(*i)).collect();
        want.sort();
        observers.iter().all(|i| {
            let Some(c) = self.members[*i].conv.as_ref() else {
                return false;
            };
            let mut r = c.members();
            r.sort();
            c.closed().is_none()
                && c.state() == ConversationState::Working
                && c.epoch() == c0.epoch()
                && r == want
                && c.epoch_authenticator() == c0.epoch_authenticator()
        })
    }

    pub fn assert_agree(&mut self, observers: &[usize], roster: &[usize], max_ms: Millis) {
        let ok = self.run_until(max_ms, |s| s.agree(observers, roster));
        assert!(
            ok,
            "observers {observers:?} did not agree on roster {roster:?}\n{}",
            self.describe()
        );
    }

    /// Makes member `i` silent: it sends nothing and hears nothing.
    pub fn silence(&mut self, i: usize) {
        self.members[i].filter = Some(Box::new(|_| None));
        self.members[i].deaf = true;
    }

    /// Index of the member holding `role` in `observer`'s view.
    pub fn holder(&self, observer: usize, role: demls_core::conversation::Role) -> Option<usize> {
        let c = self.members[observer].conv.as_ref()?;
        (0..self.members.len())
            .find(|j| c.role(&self.id(*j)) == role && c.members().contains(&self.id(*j)))
    }

    pub fn describe(&self) -> String {
        let mut s = format!("t=+{}ms seed={}\n", self.now - T0, self.seed);
        for (i, m) in self.members.iter().enumerate() {
            match m.conv.as_ref() {
                Some(c) => s.push_str(&format!(
                    "  [{i}] {} {:?} alive={} state={:?} closed={:?} epoch={} auth={} members={} approved={} stewards={:?} mode={:?}\n",
                    m.label,
                    m.id(),
                    m.alive,
                    c.state(),
                    c.closed(),
                    c.epoch(),
                    hex::encode(&c.epoch_authenticator()[..c.epoch_authenticator().len().min(4)]),
                    c.members().len(),
                    c.approved().len(),
                    c.steward_list().map(|l| (l.election_epoch, l.stewards.clone())),
                    c.mode(),
                )),
                None => s.push_str(&format!("  [{i}] {} {:?} (no conversation) alive={}\n", m.label, m.id(), m.alive)),
            }
        }
        s
    }

    /// Events of member `i` matching `f`.
    pub fn events_of<'a>(
        &'a self,
        i: usize,
        f: impl Fn(&Event) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Event> + 'a {
        self.members[i]
            .events
            .iter()
            .map(|(_, e)| e)
            .filter(move |e| f(e))
    }

    /// Like [`Sim::assert_converge`], but a member whose join expired joins again, as its
    /// user would (the epoch steward re-sends the welcome it missed).
    pub fn assert_converge_rejoining(&mut self, idx: &[usize], max_ms: Millis) {
        self.assert_agree_rejoining(idx, idx, max_ms);
    }

    /// Like [`Sim::assert_agree`], but an observer whose join expired joins again, as its
    /// user would (see [`Sim::assert_converge_rejoining`]).
    pub fn assert_agree_rejoining(
        &mut self,
        observers: &[usize],
        roster: &[usize],
        max_ms: Millis,
    ) {
        let idx = observers;
        let limit = self.now + max_ms;
        while self.now < limit {
            if self.run_until(10_000.min(limit - self.now), |s| s.agree(idx, roster)) {
                return;
            }
            for &i in idx {
                let expired = self.members[i].conv.as_ref().is_some_and(|c| {
                    c.closed() == Some(demls_core::conversation::LeaveReason::JoinExpired)
                });
                if expired {
                    self.join(i);
                }
            }
        }
        assert!(
            self.agree(idx, roster),
            "members {idx:?} did not converge on roster {roster:?}\n{}",
            self.describe()
        );
    }

    /// Sends a chat if member `i`'s state allows one now (chat is refused while frozen,
    /// pending or closed); returns whether it was sent.
    pub fn try_chat(&mut self, i: usize, text: &str) -> bool {
        let open = self.members[i]
            .conv
            .as_ref()
            .is_some_and(|c| c.closed().is_none());
        if !open || !self.members[i].alive {
            return false;
        }
        let t = text.to_string();
        self.act(i, |c, ctx| match c.send_chat(ctx, &t) {
            Ok(out) => (true, out),
            Err(_) => (false, Output::default()),
        })
    }

    /// Whether member `i` has received a chat with exactly `text`.
    pub fn got_chat(&self, i: usize, text: &str) -> bool {
        self.members[i]
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::Chat { text: t, sent_to: None, .. } if t == text))
    }

    /// Member `from` sends `text`; runs until every other member of `to` received it or
    /// `max_ms` passed. Chat is not retransmitted by the protocol, so on a lossy network the
    /// sender repeats it every 5 s (as `text #2`, `text #3`, …, as a user would) and a
    /// member counts as reached by any copy: a member of another group can open none.
    /// Returns the members it did not reach (empty: it reached all).
    pub fn chat_reaches(
        &mut self,
        from: usize,
        text: &str,
        to: &[usize],
        max_ms: Millis,
    ) -> Vec<usize> {
        let others: Vec<usize> = to.iter().copied().filter(|i| *i != from).collect();
        let limit = self.now + max_ms;
        let mut sent: Vec<String> = Vec::new();
        let reached = |s: &Sim, sent: &[String], i: usize| sent.iter().any(|t| s.got_chat(i, t));
        while self.now < limit {
            let t = if sent.is_empty() {
                text.to_string()
            } else {
                format!("{text} #{}", sent.len() + 1)
            };
            // Chat waits while a freeze round is open (the RFC's rule): a user retries.
            let accepted = self.act(from, |c, ctx| match c.send_chat(ctx, &t) {
                Ok(out) => (true, out),
                Err(demls_core::conversation::CommandError::Blocked(_)) => {
                    (false, Output::default())
                }
                Err(e) => panic!("chat: {e:?}"),
            });
            if !accepted {
                self.run_for(500);
                continue;
            }
            sent.push(t);
            let wait = if self.net.loss > 0.0 { 5_000 } else { max_ms };
            let done = self.run_until(wait.min(limit - self.now), |s| {
                others.iter().all(|i| reached(s, &sent, *i))
            });
            if done {
                break;
            }
        }
        others
            .into_iter()
            .filter(|i| !reached(self, &sent, *i))
            .collect()
    }

    /// One group, as after a fork has healed: the roster member `required[0]` sees holds
    /// every member of `required` and nothing outside `required ∪ optional`; every live
    /// member of that roster is Working at one epoch with one epoch authenticator and sees
    /// exactly it (crashed members may stay on the roster); and no member of `optional`
    /// left off the roster is Working in some other group. `optional` is for members a
    /// branch removed, which may end up out (closed or still pending) or back in.
    /// Returns the roster (member indices, sorted).
    pub fn one_group(&self, required: &[usize], optional: &[usize]) -> Option<Vec<usize>> {
        let c0 = self.members[*required.first()?].conv.as_ref()?;
        let mut roster = Vec::new();
        for id in c0.members() {
            let i = required
                .iter()
                .chain(optional)
                .copied()
                .find(|i| self.id(*i) == id)?;
            roster.push(i);
        }
        roster.sort_unstable();
        if !required.iter().all(|i| roster.contains(i)) {
            return None;
        }
        let observers: Vec<usize> = roster
            .iter()
            .copied()
            .filter(|i| self.members[*i].alive)
            .collect();
        if !self.agree(&observers, &roster) {
            return None;
        }
        let stray = optional
            .iter()
            .any(|i| !roster.contains(i) && self.members[*i].alive && self.working(*i));
        (!stray).then_some(roster)
    }

    /// Asserts convergence within `max_ms`, with a readable dump on failure.
    pub fn assert_converge(&mut self, idx: &[usize], max_ms: Millis) {
        let ok = self.run_until(max_ms, |s| s.converged(idx));
        assert!(ok, "members {idx:?} did not converge\n{}", self.describe());
    }
}

/// The networks a scenario runs on: clean and `lossy(0.1)`, or the one `SIM_NET=clean` /
/// `SIM_NET=lossy` picks (to replay a failure).
pub fn nets() -> Vec<Net> {
    match std::env::var("SIM_NET").as_deref() {
        Ok("clean") => vec![Net::clean()],
        Ok("lossy") => vec![Net::lossy(0.1)],
        _ => vec![Net::clean(), Net::lossy(0.1)],
    }
}

/// A measurement line (`what`, then `key=value` fields): printed to stderr (shown with
/// `--nocapture` or on failure) and, when `SIM_REPORT=<file>` is set, appended to that
/// file as a tab-separated line so a seed sweep's figures can be summed for the docs.
pub fn report(what: &str, fields: &[(&str, String)]) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("SIM_REPORT {what} {}", body.join(" "));
    if let Ok(path) = std::env::var("SIM_REPORT") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{what}\t{}", body.join("\t"));
        }
    }
}

/// Runs `scenario` once per seed; `SIM_SEED` replays one. On failure the seed is printed.
/// `SIM_SEEDS=a..b` sweeps another range instead and reports every failing seed (to
/// measure pass rates: `SIM_SEEDS=0..20 cargo test -p demls-core --release`).
pub fn for_seeds(seeds: std::ops::Range<u64>, scenario: impl Fn(u64)) {
    if let Some(range) = std::env::var("SIM_SEEDS").ok().and_then(|s| {
        let (a, b) = s.split_once("..")?;
        Some(a.parse::<u64>().ok()?..b.parse::<u64>().ok()?)
    }) {
        let failed: Vec<u64> = range
            .filter(|seed| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(*seed))).is_err()
            })
            .collect();
        assert!(failed.is_empty(), "failing seeds: {failed:?}");
        return;
    }
    let seeds: Vec<u64> = match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => seeds.collect(),
    };
    for seed in seeds {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        if let Err(e) = r {
            eprintln!("\n*** scenario failed with seed {seed}; replay with SIM_SEED={seed} ***\n");
            std::panic::resume_unwind(e);
        }
    }
}

/// [`for_seeds`] on each of [`nets`]: a network's failure does not stop the next one from
/// running; the test fails at the end, naming the networks that failed.
pub fn for_nets_and_seeds(seeds: std::ops::Range<u64>, scenario: impl Fn(Net, u64)) {
    let mut failed = Vec::new();
    for net in nets() {
        let name = if net.loss > 0.0 { "lossy" } else { "clean" };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_seeds(seeds.clone(), |seed| scenario(net.clone(), seed))
        }));
        if r.is_err() {
            eprintln!("\n*** failed on the {name} network (SIM_NET={name}) ***\n");
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed on networks: {failed:?}");
}

/// Timings scaled down 10x from the defaults; virtual time makes the real ones free, but
/// shorter runs keep logs small. Order and ratios are the reference's.
pub fn fast_config() -> ConversationConfig {
    ConversationConfig {
        commit_inactivity: 6_000,
        freeze: 3_000,
        voting_delay: 1_000,
        election_voting_delay: 500,
        consensus_timeout: 3_000,
        proposal_expiration: 60_000,
        recovery_inactivity: 500,
        ..ConversationConfig::default()
    }
}
