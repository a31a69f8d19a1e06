//! The docker testnet's scenarios (`docs/TESTNET.md`), checked through each node's HTTP API.
//!
//! `scripts/testnet.sh` owns the containers: it writes the compose file (or the swarm
//! stack), brings a fresh testnet up before each scenario, keeps the logs of a failure and
//! takes the testnet down afterwards. In between it runs one of the ignored tests below,
//! telling it where the testnet is through `DEMLS_TESTNET_*` variables
//! ([`net::Testnet::from_env`]). So a plain `cargo test` lists them as ignored and starts
//! nothing; `scripts/testnet.sh scenario NAME` is the way to run one.
//!
//! Every wait is bounded, and a scenario that fails says what it waited for and what it
//! saw last. A failure is reported as it is: nothing here runs a scenario again, since an
//! intermittent failure is a bug to find, not to hide.

mod api;
mod checks;
mod docker;
mod heal;
mod net;
mod scenario;
mod status;
mod wait;

use net::Testnet;
use wait::Failed;

// Each test runs one scenario against the testnet the script brought up, then prints the
// status table, pass or fail, as the script did after each scenario.

/// Create, join, chat, a removal by vote, a leave.
#[tokio::test]
#[ignore = "needs the docker testnet: scripts/testnet.sh scenario basic"]
async fn basic() -> Result<(), Failed> {
    let net = Testnet::from_env()?;
    let outcome = scenario::basic(&net).await;
    status::print(&net).await;
    outcome
}

/// The epoch steward is killed in the middle of a join.
#[tokio::test]
#[ignore = "needs the docker testnet: scripts/testnet.sh scenario kill-steward"]
async fn kill_steward() -> Result<(), Failed> {
    let net = Testnet::from_env()?;
    let outcome = scenario::kill_steward(&net).await;
    status::print(&net).await;
    outcome
}

/// A member cut off the network catches up after the group moved on.
#[tokio::test]
#[ignore = "needs the docker testnet: scripts/testnet.sh scenario partition"]
async fn partition() -> Result<(), Failed> {
    let net = Testnet::from_env()?;
    let outcome = scenario::partition(&net).await;
    status::print(&net).await;
    outcome
}

/// The node everyone dials, also the epoch steward, is killed mid-removal.
#[tokio::test]
#[ignore = "needs the docker testnet: scripts/testnet.sh scenario kill-bootstrap"]
async fn kill_bootstrap() -> Result<(), Failed> {
    let net = Testnet::from_env()?;
    let outcome = scenario::kill_bootstrap(&net).await;
    status::print(&net).await;
    outcome
}

/// Two halves of the group each change it, then are joined again.
#[tokio::test]
#[ignore = "needs the docker testnet: scripts/testnet.sh scenario split-brain"]
async fn split_brain() -> Result<(), Failed> {
    let net = Testnet::from_env()?;
    let outcome = scenario::split_brain(&net).await;
    status::print(&net).await;
    outcome
}

/// The per-node table of `scripts/testnet.sh status`.
#[tokio::test]
#[ignore = "needs the docker testnet: scripts/testnet.sh status"]
async fn status_table() -> Result<(), Failed> {
    status::print(&Testnet::from_env()?).await;
    Ok(())
}
