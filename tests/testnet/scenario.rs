//! The scenarios, one file each, and what they share: forming the group.
//!
//! Each starts from a fresh testnet of [`Testnet::members`] members that the script
//! brought up (it gives kill-bootstrap at least five and split-brain six), and leaves the
//! teardown to the script.

mod basic;
mod kill_bootstrap;
mod kill_steward;
mod partition;
mod split_brain;

use std::time::Duration;

pub use basic::basic;
pub use kill_bootstrap::kill_bootstrap;
pub use kill_steward::kill_steward;
pub use partition::partition;
pub use split_brain::split_brain;

use crate::api::CallError;
use crate::net::Testnet;
use crate::wait::{Failed, wait_for};

/// Seconds, for the time bounds below.
const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// For an action that must succeed: what it was, and why it failed.
fn failed(action: &str) -> impl FnOnce(CallError) -> Failed + '_ {
    move |e| Failed(format!("{action}: {e}"))
}

/// member1 creates the conversation; member2…member{n} join one at a time, each join
/// awaited until everyone so far is converged.
async fn form_group(net: &Testnet, n: usize) -> Result<(), Failed> {
    net.create("member1")
        .await
        .map_err(failed("member1 creates the conversation"))?;
    let mut joined = vec!["member1".to_string()];
    for i in 2..=n {
        let node = format!("member{i}");
        net.join(&node)
            .await
            .map_err(failed(&format!("{node} joins")))?;
        joined.push(node.clone());
        let what = format!("{node} joined ({} members converged)", joined.len());
        wait_for(secs(180), &what, async || net.converged(&joined).await).await?;
    }
    Ok(())
}
