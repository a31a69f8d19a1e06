//! Grows a simulated conversation to N members (default 100), one membership change at a
//! time, and prints a table: per change, the wall time the whole simulation took and the
//! protocol CPU time per member (total, mean, max). Every member runs in this one thread,
//! so a member's CPU time is the real time spent in its protocol calls.
//!
//! `cargo bench -p demls-core --bench grow_conversation` (env `GROW_TO=N`, `EVERY=k`
//! to print every k-th change; default 100 and 10).

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::{Duration, Instant};

use sim::{Net, Sim, fast_config};

fn main() {
    let target: usize = std::env::var("GROW_TO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let every: usize = std::env::var("EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut s = Sim::new(1, Net::clean(), fast_config());
    let ids = s.add_members(target);
    s.create(ids[0]);
    println!(
        "| change | members after | wall ms | member CPU total ms | mean ms/member | max ms/member | virtual s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let start_all = Instant::now();
    for n in 1..target {
        let before: Vec<Duration> = s.members.iter().map(|m| m.cpu).collect();
        let t_virtual = s.now;
        let t = Instant::now();
        s.join(ids[n]);
        s.assert_converge(&ids[..=n], 3_600_000);
        let wall = t.elapsed();
        let deltas: Vec<Duration> = s.members[..=n]
            .iter()
            .zip(&before)
            .map(|(m, b)| m.cpu - *b)
            .collect();
        let total: Duration = deltas.iter().sum();
        let max = deltas.iter().max().copied().unwrap_or_default();
        if n % every == 0 || n == 1 || n == target - 1 {
            println!(
                "| {n} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} |",
                n + 1,
                wall.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3,
                total.as_secs_f64() * 1e3 / (n + 1) as f64,
                max.as_secs_f64() * 1e3,
                (s.now - t_virtual) as f64 / 1e3,
            );
        }
    }
    println!(
        "\ngrew to {target} members in {:.1} s wall",
        start_all.elapsed().as_secs_f64()
    );
}
