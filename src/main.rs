//! `demls-node`: run a node, make a key, or talk to a running node's API.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use demls_node::cli::{self, Cli, Command};
use demls_node::config::NodeConfig;
use demls_node::keyfile::{self, KeySource};
use demls_node::storage::Storage;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Run => run(cli.config.as_deref(), cli.log_format),
        Command::Keygen { out } => match cli::keygen(out, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string()),
        },
        _ => client(&cli),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn client(cli: &Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(cli::run_client(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The message may carry what a remote node answered: no raw control characters.
        Err(e) => fail(&cli::escape(&e.to_string())),
    }
}

fn run(config_path: Option<&Path>, log_format: demls_node::logging::LogFormat) -> ExitCode {
    // Configuration errors come before logging is set up: one line, then exit.
    let config = match NodeConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::FAILURE;
        }
    };
    demls_node::logging::init(&config.log.level, log_format);
    match start(config_path, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn start(config_path: Option<&Path>, config: NodeConfig) -> anyhow::Result<()> {
    match config_path {
        Some(p) => tracing::info!(file = %p.display(), "configuration loaded"),
        None => tracing::info!("no --config given: using the built-in default configuration"),
    }
    for w in config.warnings() {
        tracing::warn!("!!! {w}");
    }
    let (identity, source) = keyfile::load_identity(&config).context("loading the node key")?;
    let address = identity.member_id();
    match &source {
        KeySource::KeyFile(p) => {
            tracing::info!(%address, key_file = %p.display(), "identity loaded")
        }
        KeySource::NewKeyFile(p) => {
            tracing::info!(%address, key_file = %p.display(), "created a new identity (keep this file safe)")
        }
        KeySource::Keystore(p) => {
            tracing::info!(%address, keystore = %p.display(), "identity loaded from keystore")
        }
    }
    let storage = Storage::open(&config.storage.data_dir, address).context("opening storage")?;
    tracing::info!(db = %storage.path().display(), "storage opened");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(demls_node::node::run(config, identity, storage))
}
