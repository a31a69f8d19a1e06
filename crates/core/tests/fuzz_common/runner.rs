//! The fuzz loop shared by every `fuzz_*` test: a seeded generator, one independent RNG
//! per input, panics caught per input, and a report that replays.
//!
//! Input `i` of a run with base seed `s` is generated from its own RNG, seeded with
//! `(s, i, target name)`, so `FUZZ_SEED=s FUZZ_FROM=i FUZZ_ITERS=1` regenerates exactly
//! that input without running the ones before it. A case records what it fed in
//! ([`Case::input`], [`Case::note`]); when it panics (the code under test, or one of the
//! case's own oracle assertions) the report prints the seed, the iteration, the replay
//! command, every recorded input in hex, the panic message and where it was raised.
//!
//! Environment:
//! - `FUZZ_ITERS=n`  inputs to try (each target has a small default, for CI);
//! - `FUZZ_SEED=s`   base seed (default 0);
//! - `FUZZ_FROM=i`   first iteration (replay one input with `FUZZ_ITERS=1`);
//! - `FUZZ_SECS=t`   stop after `t` seconds even if fewer inputs were tried;
//! - `FUZZ_KEEP_GOING=1` do not stop at the first failure: collect the distinct ones
//!   (by panic location and message shape) and fail at the end with all of them;
//! - `FUZZ_VERBOSE=1` print every input before it runs (hex, `FUZZ_HEX_MAX` bytes each).
//!
//! Every run ends with a summary line on stderr (see it with `--nocapture`): inputs
//! tried, elapsed time, rate and failures.
//!
//! This file is shared with `crates/transport/tests` (included there by path), so it uses
//! only `std`, `rand` and `hex`.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

/// What one input was made of, for the report.
#[derive(Default)]
pub struct Case {
    inputs: Vec<(String, Vec<u8>)>,
    notes: Vec<String>,
}

impl Case {
    /// Records an input (printed in hex on failure, or every time with `FUZZ_VERBOSE`).
    pub fn input(&mut self, label: impl Into<String>, bytes: &[u8]) {
        let label = label.into();
        if verbose() {
            eprintln!("  {label}: {}", hex_prefix(bytes));
        }
        self.inputs.push((label, bytes.to_vec()));
    }

    /// Records a line of context (a structured description of the input).
    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        if verbose() {
            eprintln!("  note: {line}");
        }
        self.notes.push(line);
    }

    fn clear(&mut self) {
        self.inputs.clear();
        self.notes.clear();
    }
}

/// Run parameters, from the environment.
pub struct Params {
    pub seed: u64,
    pub from: u64,
    pub iters: u64,
    pub secs: Option<f64>,
    pub keep_going: bool,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn verbose() -> bool {
    std::env::var("FUZZ_VERBOSE").is_ok_and(|v| v != "0")
}

impl Params {
    /// Reads `FUZZ_*`; `default_iters` applies when `FUZZ_ITERS` is unset.
    pub fn from_env(default_iters: u64) -> Self {
        Self {
            seed: env_u64("FUZZ_SEED").unwrap_or(0),
            from: env_u64("FUZZ_FROM").unwrap_or(0),
            iters: env_u64("FUZZ_ITERS").unwrap_or(default_iters),
            secs: std::env::var("FUZZ_SECS")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            keep_going: std::env::var("FUZZ_KEEP_GOING").is_ok_and(|v| v != "0"),
        }
    }
}

/// The RNG of input `iter`: independent of every other input's.
pub fn case_rng<R: SeedableRng>(target: &str, seed: u64, iter: u64) -> R {
    let mut s = R::Seed::default();
    let bytes = s.as_mut();
    // FNV-1a of the target name keeps targets that share a seed apart.
    let name = target
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
        .to_le_bytes();
    for (i, b) in seed
        .to_le_bytes()
        .iter()
        .chain(iter.to_le_bytes().iter())
        .chain(name.iter())
        .enumerate()
    {
        if i < bytes.len() {
            bytes[i] = *b;
        }
    }
    R::from_seed(s)
}

// ---- panic capture ------------------------------------------------------------------------

thread_local! {
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) a panic hook that, on a thread running a case, records the
/// message and location instead of printing them; elsewhere the default hook runs.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(|c| c.get()) {
                let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
                    s.to_string()
                } else if let Some(s) = info.payload().downcast_ref::<String>() {
                    s.clone()
                } else {
                    "(non-string panic payload)".to_string()
                };
                let mut loc = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_else(|| "(unknown location)".into());
                // A panic inside the standard library (an overflowing `abs`, say) is
                // reported at its caller: the first frame outside std and the registry.
                if loc.starts_with("/rustc/") {
                    let bt = std::backtrace::Backtrace::force_capture().to_string();
                    let lines: Vec<&str> = bt.lines().map(str::trim).collect();
                    let caller = lines.windows(2).find_map(|w| {
                        let at = w[1].strip_prefix("at ")?;
                        let ours = !at.starts_with("/rustc/")
                            && !at.contains("/.cargo/")
                            && !at.contains("fuzz_common/runner.rs");
                        let func = w[0].split_once(": ").map_or(w[0], |x| x.1);
                        ours.then(|| format!("{func} at {}", at.trim_start_matches("./")))
                    });
                    if let Some(c) = caller {
                        loc = format!("{c} (in {loc})");
                    }
                }
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((msg, loc)));
            } else {
                previous(info);
            }
        }));
    });
}

/// A failure's identity for de-duplication: where it was raised, and the first line of
/// its message with each run of digits blanked (the same bug with other numbers is the
/// same bug).
fn failure_key(msg: &str, loc: &str) -> String {
    let mut shape = String::new();
    for c in msg.lines().next().unwrap_or("").chars().take(160) {
        if c.is_ascii_digit() {
            if !shape.ends_with('#') {
                shape.push('#');
            }
        } else {
            shape.push(c);
        }
    }
    format!("{loc} {shape}")
}

fn hex_max() -> usize {
    env_u64("FUZZ_HEX_MAX").map(|n| n as usize).unwrap_or(4096)
}

fn hex_prefix(b: &[u8]) -> String {
    let max = hex_max();
    if b.len() <= max {
        hex::encode(b)
    } else {
        format!(
            "{}… ({} bytes, first {max} shown; FUZZ_HEX_MAX=n for more)",
            hex::encode(&b[..max]),
            b.len()
        )
    }
}

struct Failure {
    first_iter: u64,
    count: u64,
    report: String,
}

/// Runs `case` on `FUZZ_ITERS` inputs (default `default_iters`), each with its own RNG
/// (see [`case_rng`]). Fails the calling test on the first panic (or, with
/// `FUZZ_KEEP_GOING`, after the run, listing every distinct one).
pub fn fuzz<R, F>(target: &str, default_iters: u64, mut case: F)
where
    R: RngCore + SeedableRng,
    F: FnMut(&mut R, &mut Case),
{
    install_hook();
    let p = Params::from_env(default_iters);
    let start = Instant::now();
    let deadline = p.secs.map(|s| start + Duration::from_secs_f64(s));
    let test_cmd = std::env::args().next().unwrap_or_default();
    let mut failures: BTreeMap<String, Failure> = BTreeMap::new();
    let mut tried = 0u64;
    let mut rec = Case::default();
    let mut last_progress = Instant::now();
    for iter in p.from..p.from.saturating_add(p.iters) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let mut rng: R = case_rng(target, p.seed, iter);
        rec.clear();
        if verbose() {
            eprintln!("[{target}] seed {} iteration {iter}", p.seed);
        }
        IN_CASE.with(|c| c.set(true));
        LAST_PANIC.with(|x| *x.borrow_mut() = None);
        let result = catch_unwind(AssertUnwindSafe(|| case(&mut rng, &mut rec)));
        IN_CASE.with(|c| c.set(false));
        tried += 1;
        if result.is_err() {
            let (msg, loc) = LAST_PANIC
                .with(|x| x.borrow_mut().take())
                .unwrap_or_else(|| ("(panic message lost)".into(), "(unknown)".into()));
            let key = failure_key(&msg, &loc);
            let f = failures.entry(key).or_insert_with(|| Failure {
                first_iter: iter,
                count: 0,
                report: report(target, &p, iter, &rec, &msg, &loc, &test_cmd),
            });
            f.count += 1;
            if f.count == 1 {
                eprintln!("{}", f.report);
            }
            if !p.keep_going {
                break;
            }
        }
        if p.keep_going && last_progress.elapsed() > Duration::from_secs(30) {
            last_progress = Instant::now();
            eprintln!(
                "[{target}] … {tried} inputs, {:.0} s, {} distinct failures",
                start.elapsed().as_secs_f64(),
                failures.len()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let failed: u64 = failures.values().map(|f| f.count).sum();
    eprintln!(
        "fuzz {target}: {tried} inputs in {secs:.2} s ({:.0}/s), seed {}, from {}, {} failing inputs, {} distinct",
        tried as f64 / secs.max(1e-9),
        p.seed,
        p.from,
        failed,
        failures.len()
    );
    if !failures.is_empty() {
        let mut all = String::new();
        for (key, f) in &failures {
            let _ = writeln!(
                all,
                "  {} input(s), first at iteration {}: {key}",
                f.count, f.first_iter
            );
        }
        panic!(
            "fuzz target {target} failed (seed {}): {} distinct failure(s)\n{all}(full reports above; replay with FUZZ_SEED={} FUZZ_FROM=<iteration> FUZZ_ITERS=1)",
            p.seed,
            failures.len(),
            p.seed
        );
    }
}

fn report(
    target: &str,
    p: &Params,
    iter: u64,
    rec: &Case,
    msg: &str,
    loc: &str,
    test_cmd: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n=== fuzz failure in {target} ===");
    let _ = writeln!(s, "seed {} iteration {iter}", p.seed);
    let _ = writeln!(
        s,
        "replay: FUZZ_SEED={} FUZZ_FROM={iter} FUZZ_ITERS=1 {test_cmd} {target} --exact --nocapture",
        p.seed
    );
    let _ = writeln!(s, "panic: {msg}");
    let _ = writeln!(s, "at: {loc}");
    for n in &rec.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for (label, bytes) in &rec.inputs {
        let _ = writeln!(
            s,
            "input {label} ({} bytes): {}",
            bytes.len(),
            hex_prefix(bytes)
        );
    }
    s
}
