//! Fuzz targets for `Conversation::restore`: real saved states (the simulator fixture's
//! four members, quiet and with a proposal in flight, and a pending joiner) mutated as
//! JSON (values replaced by edge numbers, odd strings and ids, arrays emptied or grown,
//! keys dropped or added, types swapped) or as bytes, and random bytes.
//!
//! - `fuzz_restore`: restore must not panic (an `Err` is fine); a state it accepts saves
//!   and restores again.
//! - `fuzz_restore_then_run`: a state restore accepts is then used: queries,
//!   `next_wakeup`, a few ticks and a real packet. Restore is the place to refuse a state
//!   the conversation cannot run on, so a panic here is a restore that accepted too much.

#[path = "fuzz_common/fixture.rs"]
mod fixture;
mod fuzz_common;
mod sim;

use demls_core::conversation::Conversation;
use fixture::{Fixture, Storage, restore_storage, snapshot_storage};
use fuzz_common::Rng;
use fuzz_common::bytes::{I64_EDGES, U64_EDGES, any_string, mutate, random_bytes};
use fuzz_common::runner::{Case, fuzz};
use rand::Rng as _;
use rand::seq::SliceRandom;
use serde_json::Value;

/// A saved state to mutate: (simulator member, state, its MLS storage).
struct Base {
    member: usize,
    saved: Vec<u8>,
    storage: Storage,
}

fn bases(fx: &Fixture) -> Vec<Base> {
    let mut v: Vec<Base> = fx
        .ids
        .iter()
        .zip(&fx.snaps)
        .map(|(i, s)| Base {
            member: *i,
            saved: s.saved.clone(),
            storage: s.storage.clone(),
        })
        .collect();
    // The live states after the fresh traffic (one holds a proposal in flight).
    for &i in &fx.ids {
        let m = &fx.sim.members[i];
        v.push(Base {
            member: i,
            saved: m.conv().save().expect("save"),
            storage: snapshot_storage(&m.provider),
        });
    }
    if let Some(j) = &fx.joiner {
        v.push(Base {
            member: j.idx,
            saved: j.snap.saved.clone(),
            storage: j.snap.storage.clone(),
        });
    }
    v
}

/// Every path (keys and indices) in a JSON value. Arrays of numbers (byte strings, in
/// serde's encoding of `Vec<u8>`) are not entered: they are mutated as a whole, so that
/// most mutations land on the state's own fields rather than on single bytes.
fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match v {
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {}
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(Step::Key(k.clone()));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(Step::Index(i));
                paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn hostile_number(rng: &mut Rng) -> Value {
    match rng.gen_range(0..6) {
        0 | 1 => Value::from(*U64_EDGES.choose(rng).expect("x")),
        2 => Value::from(*I64_EDGES.choose(rng).expect("x")),
        3 => serde_json::Number::from_f64(
            *[0.5, -1.5, 1e300, -1e300, f64::MIN_POSITIVE]
                .choose(rng)
                .expect("x"),
        )
        .map_or(Value::Null, Value::Number),
        _ => Value::from(rng.gen_range(0u64..100)),
    }
}

fn hostile_string(rng: &mut Rng, old: &str) -> Value {
    let s = match rng.gen_range(0..6) {
        0 => format!("0x{}", hex::encode(random_bytes(rng, 24))),
        1 => String::new(),
        2 => old.chars().rev().collect(),
        3 => "0x0000000000000000000000000000000000000000".into(),
        4 => old.repeat(rng.gen_range(2..50)),
        _ => any_string(rng, old),
    };
    Value::String(s)
}

/// One structural mutation at a random node.
fn mutate_json(rng: &mut Rng, root: &mut Value) {
    let mut all = Vec::new();
    paths(root, &mut Vec::new(), &mut all);
    let path = all.choose(rng).expect("at least the root").clone();
    let Some(node) = at(root, &path) else { return };
    match node {
        Value::Number(_) => *node = hostile_number(rng),
        Value::String(s) => {
            let old = s.clone();
            *node = hostile_string(rng, &old);
        }
        Value::Bool(b) => *b = !*b,
        Value::Null => {
            *node = match rng.gen_range(0..3) {
                0 => hostile_number(rng),
                1 => Value::Array(Vec::new()),
                _ => Value::Object(Default::default()),
            }
        }
        Value::Array(a) => match rng.gen_range(0..6) {
            0 => a.clear(),
            5 if !a.is_empty() => {
                let i = rng.gen_range(0..a.len());
                a[i] = hostile_number(rng);
            }
            1 if !a.is_empty() => {
                let x = a[rng.gen_range(0..a.len())].clone();
                for _ in 0..rng.gen_range(1..300) {
                    a.push(x.clone());
                }
            }
            2 if !a.is_empty() => {
                a.remove(rng.gen_range(0..a.len()));
            }
            3 => a.shuffle(rng),
            _ => a.push(hostile_number(rng)),
        },
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            match rng.gen_range(0..3) {
                0 if !keys.is_empty() => {
                    m.remove(keys.choose(rng).expect("x"));
                }
                1 => {
                    m.insert("unknown_field".into(), hostile_number(rng));
                }
                _ => *node = Value::Null,
            }
        }
    }
    // Sometimes swap the node's type entirely.
    if rng.gen_bool(0.1)
        && let Some(node) = at(root, &path)
    {
        *node = match rng.gen_range(0..4) {
            0 => Value::Null,
            1 => Value::Bool(true),
            2 => Value::String("x".into()),
            _ => Value::Array(vec![Value::from(1)]),
        };
    }
}

/// A mutated saved state, and the base it came from.
fn mutated_state<'a>(rng: &mut Rng, bases: &'a [Base], case: &mut Case) -> (&'a Base, Vec<u8>) {
    let b = bases.choose(rng).expect("bases");
    let bytes = match rng.gen_range(0..10) {
        0..=6 => {
            let mut v: Value = serde_json::from_slice(&b.saved).expect("saved state is JSON");
            let n = rng.gen_range(1..=4);
            for _ in 0..n {
                mutate_json(rng, &mut v);
            }
            case.note(format!(
                "{n} JSON mutation(s) of member {}'s state",
                b.member
            ));
            serde_json::to_vec(&v).expect("serialize")
        }
        7 | 8 => {
            case.note(format!("byte mutation of member {}'s state", b.member));
            mutate(rng, &b.saved, 6, 1 << 22)
        }
        _ => {
            case.note("random bytes");
            random_bytes(rng, 4096)
        }
    };
    case.input("state", &bytes);
    (b, bytes)
}

fn restore(fx: &Fixture, b: &Base, bytes: &[u8]) -> Option<Conversation> {
    let provider = &fx.sim.members[b.member].provider;
    restore_storage(provider, &b.storage);
    Conversation::restore(bytes, provider).ok()
}

#[test]
fn fuzz_restore() {
    let fx = Fixture::build(1);
    let bases = bases(&fx);
    let accepted = std::cell::Cell::new(0u64);
    fuzz::<Rng, _>("fuzz_restore", 300, |rng, case| {
        let (b, bytes) = mutated_state(rng, &bases, case);
        if let Some(c) = restore(&fx, b, &bytes) {
            accepted.set(accepted.get() + 1);
            let again = c.save().expect("a restored state saves");
            Conversation::restore(&again, &fx.sim.members[b.member].provider)
                .expect("a state restore accepted, saved again, restores");
        }
    });
    eprintln!("fuzz_restore: {} mutated states accepted", accepted.get());
}

#[test]
fn fuzz_restore_then_run() {
    let fx = Fixture::build(1);
    let bases = bases(&fx);
    let accepted = std::cell::Cell::new(0u64);
    fuzz::<Rng, _>("fuzz_restore_then_run", 200, |rng, case| {
        let (b, bytes) = mutated_state(rng, &bases, case);
        let Some(mut c) = restore(&fx, b, &bytes) else {
            return;
        };
        accepted.set(accepted.get() + 1);
        let ids: Vec<_> = fx.ids.iter().map(|i| fx.id(*i)).collect();
        let _ = (
            c.name(),
            c.state(),
            c.mode(),
            c.config(),
            c.epoch(),
            c.members(),
        );
        let _ = (
            c.closed(),
            c.steward_list(),
            c.approved(),
            c.open_emergencies(),
        );
        for p in c.proposals() {
            let _ = (p.id, c.tally(p.id));
        }
        for m in &ids {
            let _ = (c.role(m), c.score(m));
        }
        let mut now = fx.now;
        for _ in 0..3 {
            if let Some(w) = c.next_wakeup() {
                now = now.max(w.min(now + 60_000));
            }
            let _ = c.tick(&mut fx.ctx(b.member, rng, now));
            now += 1;
        }
        let (st, p) = fx.log.choose(rng).expect("log").clone();
        let _ = c.handle_packet(&mut fx.ctx(b.member, rng, now), st, &p);
        let _ = c.next_wakeup();
        let _ = c.save();
    });
    eprintln!(
        "fuzz_restore_then_run: {} mutated states accepted and run",
        accepted.get()
    );
}
