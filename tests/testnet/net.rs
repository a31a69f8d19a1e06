//! The testnet the script brought up, as it describes it in `DEMLS_TESTNET_*` variables.
//!
//! The script stays the one place that knows names, ports and paths; the runner reads
//! them rather than repeating them, so the two cannot drift apart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::api::Route;
use crate::wait::Failed;

/// Where the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// docker compose on this host: APIs published on loopback.
    Compose,
    /// A Docker Swarm stack, possibly over several hosts: no published ports.
    Swarm,
}

/// One running testnet: what the scenarios act on.
#[derive(Debug)]
pub struct Testnet {
    /// Compose or swarm.
    pub mode: Mode,
    /// The compose project or stack name (`demls-testnet`, `demls-swarm`).
    pub project: String,
    /// The script's directory for this testnet (tokens, heal times, compose file).
    pub dir: PathBuf,
    /// How many members the testnet was brought up with (`member1`…`memberN`).
    pub members: usize,
    /// The conversation the scenarios use.
    pub conv: String,
    /// Compose: member i's API is published on 127.0.0.1:(base_port + i).
    pub(crate) base_port: u16,
    /// The image the nodes run (swarm: for a one-off CLI container on the overlay).
    pub(crate) image: String,
    /// `scripts/testnet.sh`, for what only compose can do (recreating containers).
    pub(crate) script: PathBuf,
    /// Swarm: reach every node from a container on the overlay (`SWARM_API=overlay`).
    pub(crate) overlay_only: bool,
    /// How long one API call may take before a check counts it as failed.
    pub(crate) call_timeout: Duration,
    /// How each node was last reached (swarm tasks move: see `Testnet::forget`).
    pub(crate) routes: Mutex<HashMap<String, Route>>,
}

fn var(name: &str) -> Result<String, Failed> {
    std::env::var(name).map_err(|_| {
        Failed(format!(
            "{name} is not set: these tests run against a testnet that \
             scripts/testnet.sh brought up (scripts/testnet.sh scenario NAME)"
        ))
    })
}

fn parsed<T: std::str::FromStr>(name: &str) -> Result<T, Failed> {
    let v = var(name)?;
    v.parse()
        .map_err(|_| Failed(format!("{name}={v:?} is not a number")))
}

impl Testnet {
    /// The testnet described by the environment `scripts/testnet.sh` sets.
    pub fn from_env() -> Result<Self, Failed> {
        let mode = match var("DEMLS_TESTNET_MODE")?.as_str() {
            "compose" => Mode::Compose,
            "swarm" => Mode::Swarm,
            other => {
                return Err(Failed(format!(
                    "DEMLS_TESTNET_MODE={other:?}: compose or swarm"
                )));
            }
        };
        // A CLI round trip through a swarm's overlay is slower (docs/TESTNET.md).
        let call_timeout = Duration::from_secs(if mode == Mode::Compose { 10 } else { 30 });
        Ok(Self {
            mode,
            project: var("DEMLS_TESTNET_PROJECT")?,
            dir: var("DEMLS_TESTNET_DIR")?.into(),
            members: parsed("DEMLS_TESTNET_MEMBERS")?,
            conv: var("DEMLS_TESTNET_CONV")?,
            base_port: parsed("DEMLS_TESTNET_BASE_PORT")?,
            image: var("DEMLS_TESTNET_IMAGE")?,
            script: var("DEMLS_TESTNET_SCRIPT")?.into(),
            overlay_only: std::env::var("SWARM_API").is_ok_and(|v| v == "overlay"),
            call_timeout,
            routes: Mutex::new(HashMap::new()),
        })
    }

    /// `member1`…`member{n}`.
    pub fn first(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("member{i}")).collect()
    }
}
