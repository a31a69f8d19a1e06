//! The `demls-node` command line: `run`, `keygen`, and client subcommands that talk to a
//! running node's HTTP API. `--api URL`, `--api-token`, `--config` and `--json` are
//! accepted after any subcommand.
//!
//! A client finds a local node by itself: it reads the node's configuration (`--config`,
//! or the built-in default, with the same `DEMLS__*` overrides as `run`) for the API
//! address and the token file `api-token` in its data directory.

mod client;
mod output;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use demls_core::identity::MemberId;

pub use client::{CliError, Target, keygen, resolve_target, run_client};
pub use output::{escape, escape_json};

/// The API address of the built-in default configuration (`api.listen`); the client
/// uses the configuration's address unless `--api` or `DEMLS_API` says otherwise.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8645";

/// A de-MLS peer node: decentralized MLS group conversations over Waku relay.
#[derive(Debug, Parser)]
#[command(name = "demls-node", version, about, propagate_version = true)]
pub struct Cli {
    /// The node's configuration file (TOML): `run` runs it; client commands take the API
    /// address and the API token of that node from it. Without it, the built-in default.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node API to talk to [default: the configuration's api.listen,
    /// http://127.0.0.1:8645 by default].
    #[arg(long, global = true, env = "DEMLS_API", value_name = "URL")]
    pub api: Option<String>,
    /// The API token [default: read from the file api-token in the configuration's data
    /// directory, for the node at the configuration's address].
    #[arg(
        long,
        global = true,
        env = "DEMLS_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub api_token: Option<String>,
    /// Print the API's JSON answer as is instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// `run`: write log lines as text or as one JSON object a line.
    #[arg(long, global = true, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `yes` or `no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Vote {
    /// In favour.
    Yes,
    /// Against.
    No,
}

/// The subcommands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Run the node in the foreground (until Ctrl-C / SIGTERM), with the configuration of
    /// `--config FILE` (without it, the built-in defaults).
    Run,
    /// Write a new Ethereum key (mode 0600) and print its address. Never overwrites.
    Keygen {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The node's address, peer id, peers, conversations and quarantined conversations.
    Status,
    /// Whether the node is ready: ok, not_ready or degraded (quarantined conversations),
    /// with the reasons; down (the runtime stopped) exits 1.
    Health,
    /// The connected relay peers: direction, address, shards, gossipsub score.
    Peers,
    /// Show the node's log filter, or change it while the node runs.
    LogLevel {
        /// The new filter in RUST_LOG syntax (`debug`, `info,demls_node=trace`).
        level: Option<String>,
    },
    /// Print the link that opens this node's web UI with its token (in the URL fragment,
    /// which the browser never sends to a server); `--open` opens it in a browser.
    Ui {
        /// Open the link with the desktop's browser (xdg-open / open).
        #[arg(long)]
        open: bool,
    },
    /// The conversations the node is in.
    Conversations,
    /// Create a conversation (we become its first member and steward).
    Create {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Ask to join a conversation (a steward adds us after a vote).
    Join {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Leave a conversation.
    Leave {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Put a quarantined conversation back to work from its saved state.
    Release {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Delete everything stored for a quarantined conversation (state, MLS group,
    /// messages). The group still counts us as a member until it removes us.
    Drop {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// A conversation's state, epoch and members.
    Show {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Send a chat message.
    Send {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
        /// The message (quote it).
        text: String,
    },
    /// A conversation's chat messages.
    Messages {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Propose removing a member.
    Remove {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
        /// The member's address (0x…).
        #[arg(value_parser = address)]
        address: MemberId,
    },
    /// A conversation's proposals and their votes.
    Proposals {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
    },
    /// Vote on a proposal.
    Vote {
        /// Conversation name.
        #[arg(value_parser = conversation_name)]
        name: String,
        /// Proposal id (from `proposals`).
        proposal_id: u32,
        /// yes or no.
        #[arg(value_enum)]
        vote: Vote,
    },
    /// Follow the node's events (all conversations, or one) until interrupted.
    Events {
        /// Only this conversation.
        #[arg(value_parser = conversation_name)]
        name: Option<String>,
    },
}

fn conversation_name(s: &str) -> Result<String, String> {
    crate::config::check_conversation_name(s).map(|_| s.to_string())
}

fn address(s: &str) -> Result<MemberId, String> {
    crate::api::parse_address(s)
}
