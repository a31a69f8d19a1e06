//! Fuzz targets for `Conversation::handle_packet` on both subtopics, against a converged
//! four-member group built once with the simulator (see `fuzz_common/fixture.rs`). Each
//! input restores one member (any of the four: epoch steward, backup or plain member) from
//! its snapshot, feeds it 1–6 packets, then runs its timers for a random horizon (0 to
//! 40 s of virtual time, ticking whenever `next_wakeup` is due), as the node would.
//!
//! - `fuzz_handle_packet_outsider`: what anyone on the network can send — every
//!   `AppEnvelope` and `WelcomeEnvelope` body with hostile field values (fake MLS headers,
//!   junk and truncated commits, evidence with extreme voter counts, forged or replayed
//!   votes, elections with duplicate or foreign stewards, catch-up for any epoch, key
//!   packages with bad signatures, junk welcomes), and mutations of real packets from the
//!   simulator's log; `_app`, `_welcome` and `mutated_real` are its three parts alone.
//! - `fuzz_handle_packet_insider`: the same mixed with MLS-authenticated application
//!   messages encrypted by another member (proposals, votes, proposal requests and states,
//!   syncs with hostile values; votes signed by that member alone, or by every member's
//!   key for a forged majority).
//! - `fuzz_welcome_joiner`: a pending joiner fed the real welcome that adds it (as is,
//!   mutated, with a junk sync) or a generated one; `fuzz_welcome_joiner_sync`: the real
//!   welcome with a conversation sync sealed by a member and hostile inside.
//!
//! Oracles, after every input: no panic; what the member publishes decodes and is at most
//! the relay limit (or the input's size); its saved state restores and grew by a bounded
//! amount; `next_wakeup` does not stay due (the node would tick every millisecond); an
//! outsider's input changed no membership; a joiner that joined sees the real roster.

#[path = "fuzz_common/fixture.rs"]
mod fixture;
mod fuzz_common;
mod sim;

use demls_core::config::Millis;
use demls_core::conversation::{Conversation, ConversationState, Output, Subtopic};
use demls_core::identity::{EthSigner, MemberId};
use demls_core::proto::pb;
use fixture::{Fixture, restore_storage};
use fuzz_common::Rng;
use fuzz_common::bytes::{crossover, mutate, random_bytes};
use fuzz_common::messages::{self as mk, World};
use fuzz_common::runner::{Case, fuzz};
use prost::Message;
use rand::Rng as _;
use rand::seq::SliceRandom;

/// The relay's message limit (`demls_transport::waku::MAX_MESSAGE_SIZE`).
const RELAY_LIMIT: usize = 150 * 1024;

fn fixture() -> Fixture {
    let seed = std::env::var("FUZZ_FIXTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let fx = Fixture::build(seed);
    eprintln!(
        "fixture (simulator seed {seed}): {} members at epoch {}, {} logged packets, built in {:.2} s",
        fx.ids.len(),
        fx.world.epoch,
        fx.log.len(),
        fx.build_time.as_secs_f64()
    );
    fx
}

fn subtopic_name(s: Subtopic) -> &'static str {
    s.as_str()
}

/// Checks what the member published.
fn check_output(out: &Output, largest_input: usize) {
    for p in &out.packets {
        assert!(
            p.payload.len() <= RELAY_LIMIT.max(largest_input),
            "published a {} byte {} packet (relay limit {RELAY_LIMIT})",
            p.payload.len(),
            p.subtopic.as_str()
        );
        match p.subtopic {
            Subtopic::AppMsg => {
                pb::AppEnvelope::decode(p.payload.as_slice())
                    .expect("published app_msg packet decodes");
            }
            Subtopic::Welcome => {
                pb::WelcomeEnvelope::decode(p.payload.as_slice())
                    .expect("published welcome packet decodes");
            }
        }
    }
}

/// A random time horizon for the timers, biased to short ones.
fn horizon(rng: &mut Rng) -> Millis {
    *[0, 300, 1_200, 1_200, 4_000, 4_000, 12_000, 40_000]
        .choose(rng)
        .expect("x")
}

/// Runs `conv`'s timers from `start` for `horizon` ms, as the node does: a tick whenever
/// `next_wakeup` is due, and an overdue wake-up retried 1 ms later.
fn run_timers(
    fx: &Fixture,
    i: usize,
    conv: &mut Conversation,
    rng: &mut Rng,
    start: Millis,
    horizon: Millis,
    largest_input: usize,
) {
    let end = start + horizon;
    let mut now = start;
    let mut last_tick: Option<Millis> = None;
    let mut overdue = 0;
    while conv.closed().is_none() {
        let Some(w) = conv.next_wakeup() else { break };
        if w > end {
            break;
        }
        if w <= now && last_tick == Some(now) {
            now += 1;
            overdue += 1;
            assert!(
                overdue < 200,
                "next_wakeup stays due ({w}, now {now}, state {:?}): the node would tick every millisecond",
                conv.state()
            );
        } else {
            overdue = 0;
            now = now.max(w);
        }
        let out = conv.tick(&mut fx.ctx(i, rng, now));
        check_output(&out, largest_input);
        last_tick = Some(now);
    }
    if conv.closed().is_none() {
        let out = conv.tick(&mut fx.ctx(i, rng, end.max(now)));
        check_output(&out, largest_input);
    }
}

/// Feeds `packets` to member `v` (restored from the snapshot), runs its timers, and
/// checks the oracles. `outsider_only`: the input carries no member's authority, so the
/// roster must not change.
#[allow(clippy::too_many_arguments)]
fn run_member(
    fx: &Fixture,
    v: usize,
    packets: &[(Subtopic, Vec<u8>)],
    rng: &mut Rng,
    case: &mut Case,
    outsider_only: bool,
) {
    let mut conv = fx.restore(v);
    let k = fx.ids.iter().position(|x| *x == v).expect("member");
    let base = fx.snaps[k].saved.len();
    let mut before = conv.members();
    before.sort();
    let largest = packets.iter().map(|p| p.1.len()).max().unwrap_or(0);
    let total: usize = packets.iter().map(|p| p.1.len()).sum();
    for (n, (st, p)) in packets.iter().enumerate() {
        case.input(format!("packet {n} on {}", subtopic_name(*st)), p);
    }
    let h = horizon(rng);
    case.note(format!(
        "target member {v} ({:?}, role {:?}), timers for {h} ms, outsider only: {outsider_only}",
        fx.id(v),
        conv.role(&fx.id(v))
    ));
    let mut now = fx.now;
    for (st, p) in packets {
        let out = conv.handle_packet(&mut fx.ctx(v, rng, now), *st, p);
        check_output(&out, largest);
        now += rng.gen_range(0..200);
    }
    run_timers(fx, v, &mut conv, rng, now, h, largest);
    let saved = conv.save().expect("save");
    let bound = base + 16 * total + 256 * 1024;
    assert!(
        saved.len() <= bound,
        "saved state grew from {base} to {} bytes on {total} bytes of input",
        saved.len()
    );
    Conversation::restore(&saved, &fx.sim.members[v].provider).expect("the saved state restores");
    if outsider_only {
        let mut after = conv.members();
        after.sort();
        assert!(
            conv.closed().is_none(),
            "closed by an outsider: {:?}",
            conv.closed()
        );
        assert_eq!(after, before, "an outsider's input changed the roster");
    }
}

/// The world as seen by someone holding `signers`' keys.
fn world_with(fx: &Fixture, signers: Vec<EthSigner>) -> World {
    World {
        signers,
        ..fx.world.clone()
    }
}

fn maybe_mutate(rng: &mut Rng, b: Vec<u8>, p: f64) -> Vec<u8> {
    if rng.gen_bool(p) {
        mutate(rng, &b, 6, 1 << 17)
    } else {
        b
    }
}

/// Which outsider packets a target generates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kinds {
    /// Everything below.
    All,
    /// Structured `AppEnvelope`s.
    App,
    /// Structured `WelcomeEnvelope`s.
    Welcome,
    /// Real packets from the simulator's log, replayed or mutated; crossovers; junk.
    Real,
}

/// A packet anyone can send: structured envelopes with hostile fields, real packets
/// (mutated or replayed), or junk.
fn outsider_packet(
    rng: &mut Rng,
    fx: &Fixture,
    w: &World,
    kinds: Kinds,
    case: &mut Case,
) -> (Subtopic, Vec<u8>) {
    let pick = match kinds {
        Kinds::All => rng.gen_range(0..20),
        Kinds::App => 0,
        Kinds::Welcome => 7,
        Kinds::Real => rng.gen_range(11..20),
    };
    match pick {
        0..=6 => {
            let env = mk::app_envelope(rng, w, &w.signers);
            case.note(format!("app envelope: {}", describe_app(&env)));
            (
                Subtopic::AppMsg,
                maybe_mutate(rng, env.encode_to_vec(), 0.2),
            )
        }
        7..=10 => {
            let env = mk::welcome_envelope(rng, w, None);
            case.note(format!("welcome envelope: {}", describe_welcome(&env)));
            (
                Subtopic::Welcome,
                maybe_mutate(rng, env.encode_to_vec(), 0.2),
            )
        }
        11..=16 => {
            let (st, p) = if rng.gen_bool(0.2) {
                let (_, p) = fx.fresh_chats.choose(rng).expect("chats");
                (Subtopic::AppMsg, p.clone())
            } else {
                fx.log.choose(rng).expect("log").clone()
            };
            case.note("real packet from the log");
            let st = if rng.gen_bool(0.1) { other(st) } else { st };
            (st, maybe_mutate(rng, p, 0.7))
        }
        17 => {
            let a = &fx.log.choose(rng).expect("log").1;
            let b = &fx.log.choose(rng).expect("log").1;
            let st = if rng.r#gen() {
                Subtopic::AppMsg
            } else {
                Subtopic::Welcome
            };
            case.note("crossover of two real packets");
            (st, crossover(rng, a, b))
        }
        _ => {
            let st = if rng.r#gen() {
                Subtopic::AppMsg
            } else {
                Subtopic::Welcome
            };
            case.note("random bytes");
            (st, random_bytes(rng, 4096))
        }
    }
}

fn other(s: Subtopic) -> Subtopic {
    match s {
        Subtopic::AppMsg => Subtopic::Welcome,
        Subtopic::Welcome => Subtopic::AppMsg,
    }
}

fn describe_app(e: &pb::AppEnvelope) -> String {
    use pb::app_envelope::Body;
    match &e.body {
        None => "empty".into(),
        Some(Body::MlsMessage(m)) => format!("mls_message of {} bytes", m.len()),
        Some(Body::CommitCandidate(c)) => format!("commit_candidate {}", describe_candidate(c)),
        Some(Body::CatchUpCommit(c)) => format!("catch_up_commit {}", describe_candidate(c)),
        Some(Body::CatchUpRequest(r)) => format!("catch_up_request {r:?}"),
        Some(Body::SealedVote(v)) => format!(
            "sealed_vote epoch {} salt {} bytes sealed {} bytes",
            v.epoch,
            v.salt.len(),
            v.sealed.len()
        ),
        Some(Body::Beacon(b)) => format!(
            "beacon epoch {} with {} hashes from {} bytes of sender",
            b.epoch,
            b.chain.len(),
            b.sender.len()
        ),
    }
}

fn describe_candidate(c: &pb::CommitCandidate) -> String {
    format!(
        "{{conversation: {:?}, epoch: {}, steward_id: {}, commit: {} bytes, {} mls proposals, evidence: [{}]}}",
        c.conversation,
        c.epoch,
        hex::encode(&c.steward_id),
        c.commit_message.len(),
        c.mls_proposals.len(),
        c.evidence
            .iter()
            .map(|p| format!(
                "id {} voters {} votes {} ts {} exp {}",
                p.proposal_id,
                p.expected_voters_count,
                p.votes.len(),
                p.timestamp,
                p.expiration_timestamp
            ))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

fn describe_welcome(e: &pb::WelcomeEnvelope) -> String {
    use pb::welcome_envelope::Body;
    match &e.body {
        None => "empty".into(),
        Some(Body::KeyPackage(a)) => format!(
            "key_package {{conversation: {:?}, key_package: {} bytes, member_id: {}, signature: {} bytes}}",
            a.conversation,
            a.key_package.len(),
            hex::encode(&a.member_id),
            a.signature.len()
        ),
        Some(Body::Welcome(w)) => format!(
            "welcome {{conversation: {:?}, welcome: {} bytes, sync: {} bytes, {} joiners, epoch {}}}",
            w.conversation,
            w.welcome.len(),
            w.sync.len(),
            w.joiner_ids.len(),
            w.epoch
        ),
    }
}

fn packet_count(rng: &mut Rng) -> usize {
    match rng.gen_range(0..10) {
        0..=5 => 1,
        6..=8 => rng.gen_range(2..=3),
        _ => rng.gen_range(4..=6),
    }
}

/// Outsider inputs of `kinds` against any of the four members; the roster must hold.
fn outsider_target(name: &str, default_iters: u64, kinds: Kinds) {
    let fx = fixture();
    let w = world_with(&fx, vec![fx.eth(fx.outsider)]);
    fuzz::<Rng, _>(name, default_iters, |rng, case| {
        fx.reset_storage();
        let v = *fx.ids.choose(rng).expect("x");
        let packets: Vec<_> = (0..packet_count(rng))
            .map(|_| outsider_packet(rng, &fx, &w, kinds, case))
            .collect();
        run_member(&fx, v, &packets, rng, case, true);
    });
}

/// Every kind of outsider packet, mixed within an input.
#[test]
fn fuzz_handle_packet_outsider() {
    outsider_target("fuzz_handle_packet_outsider", 150, Kinds::All);
}

/// Structured `AppEnvelope`s only (MLS messages with fake headers, commit candidates,
/// catch-up requests and commits).
#[test]
fn fuzz_handle_packet_outsider_app() {
    outsider_target("fuzz_handle_packet_outsider_app", 150, Kinds::App);
}

/// Structured `WelcomeEnvelope`s only (key package announcements, welcomes).
#[test]
fn fuzz_handle_packet_outsider_welcome() {
    outsider_target("fuzz_handle_packet_outsider_welcome", 150, Kinds::Welcome);
}

/// Real packets from the simulator's log, replayed and mutated; crossovers; junk.
#[test]
fn fuzz_handle_packet_mutated_real() {
    outsider_target("fuzz_handle_packet_mutated_real", 150, Kinds::Real);
}

/// An MLS application message from member `i`, with a hostile body.
fn insider_packet(
    rng: &mut Rng,
    fx: &Fixture,
    i: usize,
    w: &World,
    case: &mut Case,
) -> (Subtopic, Vec<u8>) {
    let me = fx.eth(i);
    let signers = &w.signers;
    let plain = match rng.gen_range(0..12) {
        0..=9 => {
            let m = mk::app_message(rng, w, Some(&me), signers);
            case.note(format!("insider {i} sends {}", describe_app_message(&m)));
            m.encode_to_vec()
        }
        10 => {
            let m = mk::app_message(rng, w, Some(&me), signers).encode_to_vec();
            case.note(format!("insider {i} sends a mutated application message"));
            mutate(rng, &m, 4, 1 << 16)
        }
        _ => {
            case.note(format!("insider {i} sends random plaintext"));
            random_bytes(rng, 512)
        }
    };
    case.input(format!("plaintext by insider {i}"), &plain);
    let env = fx.encrypt_as(i, &plain);
    (Subtopic::AppMsg, maybe_mutate(rng, env, 0.05))
}

fn describe_app_message(m: &pb::AppMessage) -> String {
    use pb::app_message::Body;
    let prop = |p: &demls_core::proto::cpb::Proposal| {
        format!(
            "{{id {}, owner {}, voters {}, {} votes, ts {}, exp {}, liveness {}, payload {:?}}}",
            p.proposal_id,
            hex::encode(&p.proposal_owner),
            p.expected_voters_count,
            p.votes.len(),
            p.timestamp,
            p.expiration_timestamp,
            p.liveness_criteria_yes,
            demls_core::conversation::Action::from_payload(&p.payload).map(|a| a.summary())
        )
    };
    match &m.body {
        None => "an empty application message".into(),
        Some(Body::Chat(c)) => format!("chat of {} bytes", c.text.len()),
        Some(Body::Proposal(p)) => format!("proposal {}", prop(p)),
        Some(Body::ProposalState(p)) => format!("proposal_state {}", prop(p)),
        Some(Body::Vote(v)) => format!(
            "vote {{proposal {}, owner {}, yes {}, ts {}}}",
            v.proposal_id,
            hex::encode(&v.vote_owner),
            v.vote,
            v.timestamp
        ),
        Some(Body::Sync(s)) => format!("sync {s:?}"),
        Some(Body::ProposalRequest(id)) => format!("proposal_request {id}"),
        Some(Body::Sds(s)) => format!(
            "sds {{sender {:?}, id {:?}, lamport {:?}, epoch {}, history {}, repairs {}, bloom {:?} bytes, content {:?} bytes}}",
            s.sender_id,
            s.message_id,
            s.lamport_timestamp,
            s.epoch,
            s.causal_history.len(),
            s.repair_request.len(),
            s.bloom_filter.as_ref().map(Vec::len),
            s.content.as_ref().map(Vec::len)
        ),
    }
}

#[test]
fn fuzz_handle_packet_insider() {
    let fx = fixture();
    let all: Vec<EthSigner> = fx.ids.iter().map(|i| fx.eth(*i)).collect();
    // The world of each single insider (its own key), and of a coalition (every key).
    let single: Vec<World> = fx
        .ids
        .iter()
        .map(|i| world_with(&fx, vec![fx.eth(*i)]))
        .collect();
    let coalition = world_with(&fx, all);
    let w_out = world_with(&fx, vec![fx.eth(fx.outsider)]);
    fuzz::<Rng, _>("fuzz_handle_packet_insider", 120, |rng, case| {
        fx.reset_storage();
        let v = *fx.ids.choose(rng).expect("x");
        let others: Vec<usize> = (0..fx.ids.len()).filter(|k| fx.ids[*k] != v).collect();
        let k = *others.choose(rng).expect("x");
        let i = fx.ids[k];
        // One insider's key, or every member's (a forged majority).
        let w = if rng.gen_bool(0.6) {
            &single[k]
        } else {
            &coalition
        };
        let mut packets = Vec::new();
        for _ in 0..packet_count(rng) {
            let p = match rng.gen_range(0..11) {
                0..=6 => insider_packet(rng, &fx, i, w, case),
                10 => {
                    // A plaintext beacon signed with a member's key (fork, absence and
                    // later-epoch claims that only a member can sign).
                    let env = mk::beacon_envelope(rng, w, &w.signers);
                    case.note(format!("insider {i}: {}", describe_app(&env)));
                    (
                        Subtopic::AppMsg,
                        maybe_mutate(rng, env.encode_to_vec(), 0.05),
                    )
                }
                7 => {
                    case.note("replay of a fresh removal proposal");
                    (Subtopic::AppMsg, fx.fresh_proposal.clone())
                }
                _ => outsider_packet(rng, &fx, &w_out, Kinds::All, case),
            };
            packets.push(p);
        }
        run_member(&fx, v, &packets, rng, case, false);
    });
}

/// A pending joiner fed a welcome: with `sealed_sync`, the real welcome carrying a
/// conversation sync (or another application message) sealed by a member with hostile
/// values; otherwise the real welcome as is, with a junk sync, mutated, or generated.
/// `extra` outsider packets follow.
fn joiner_target(name: &str, default_iters: u64, sealed_sync: bool, extra: Kinds) {
    let fx = fixture();
    let j = fx
        .joiner
        .as_ref()
        .expect("the fixture has a pending joiner and its welcome");
    let jid: MemberId = fx.id(j.idx);
    let mut roster: Vec<MemberId> = fx.world.members.clone();
    roster.sort();
    let all: Vec<EthSigner> = fx.ids.iter().map(|i| fx.eth(*i)).collect();
    let w = world_with(&fx, all.clone());
    let w_out = world_with(&fx, vec![fx.eth(fx.outsider)]);
    fuzz::<Rng, _>(name, default_iters, |rng, case| {
        fx.reset_storage();
        let provider = &fx.sim.members[j.idx].provider;
        restore_storage(provider, &j.snap.storage);
        let mut conv = Conversation::restore(&j.snap.saved, provider).expect("joiner restores");
        assert_eq!(conv.state(), ConversationState::PendingJoin);
        let sealer = *j.sealers.choose(rng).expect("x");
        let mut mw = j.welcome.clone();
        let pick = if sealed_sync {
            rng.gen_range(1..7)
        } else {
            *[0, 7, 8, 9].choose(rng).expect("x")
        };
        match pick {
            0 => case.note("the real welcome and sync"),
            1..=5 => {
                let s = mk::sync(rng, &w);
                case.note(format!("real welcome, sync sealed by {sealer}: {s:?}"));
                let m = pb::AppMessage {
                    body: Some(pb::app_message::Body::Sync(s)),
                };
                mw.sync = fx.seal_as(sealer, &m.encode_to_vec());
            }
            6 => {
                let m = mk::app_message(rng, &w, Some(&fx.eth(sealer)), &all);
                case.note(format!(
                    "real welcome, sealed by {sealer}: {}",
                    describe_app_message(&m)
                ));
                mw.sync = fx.seal_as(sealer, &m.encode_to_vec());
            }
            7 => {
                case.note("real welcome, junk sync");
                mw.sync = mk::blob(rng, &w.ciphertexts);
            }
            8 => {
                case.note("mutated welcome");
                mw.welcome = mutate(rng, &mw.welcome, 4, 1 << 16);
            }
            _ => {
                mw = mk::member_welcome(rng, &w, Some(jid));
                case.note("generated welcome");
            }
        }
        if rng.gen_bool(0.15) {
            mw.epoch = mk::epoch(rng, &w);
        }
        if rng.gen_bool(0.2) {
            // Re-signed by a member (a committer may sign whatever it likes).
            mw = mk::sign_welcome(rng, &w, &mw);
        }
        let env = pb::WelcomeEnvelope {
            body: Some(pb::welcome_envelope::Body::Welcome(mw)),
        }
        .encode_to_vec();
        let mut packets = vec![(Subtopic::Welcome, env)];
        for _ in 0..rng.gen_range(0..3) {
            packets.push(outsider_packet(rng, &fx, &w_out, extra, case));
        }
        for (n, (st, p)) in packets.iter().enumerate() {
            case.input(format!("packet {n} on {}", st.as_str()), p);
        }
        let largest = packets.iter().map(|p| p.1.len()).max().unwrap_or(0);
        let mut now = j.snap.now + rng.gen_range(0..5_000);
        for (st, p) in &packets {
            let out = conv.handle_packet(&mut fx.ctx(j.idx, rng, now), *st, p);
            check_output(&out, largest);
            now += rng.gen_range(0..200);
        }
        // The MLS welcome alone decides the roster a joiner starts with (what it does
        // afterwards may follow an insider's sync, so it is not checked).
        if conv.state() != ConversationState::PendingJoin && conv.closed().is_none() {
            let mut m = conv.members();
            m.sort();
            assert_eq!(m, roster, "joined, but with another roster");
        }
        let h = horizon(rng);
        case.note(format!("timers for {h} ms"));
        run_timers(&fx, j.idx, &mut conv, rng, now, h, largest);
        let saved = conv.save().expect("save");
        Conversation::restore(&saved, provider).expect("the saved state restores");
    });
}

/// The real welcome (as is, mutated, with a junk sync) or a generated one, then
/// replayed or mutated real packets.
#[test]
fn fuzz_welcome_joiner() {
    joiner_target("fuzz_welcome_joiner", 300, false, Kinds::Real);
}

/// The real welcome with a hostile conversation sync sealed by a member, then any
/// outsider packets.
#[test]
fn fuzz_welcome_joiner_sync() {
    joiner_target("fuzz_welcome_joiner_sync", 100, true, Kinds::All);
}
