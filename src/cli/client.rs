//! Running the client subcommands and `keygen`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::output::{escape, escape_json};
use super::{Cli, Command, Vote, output};
use crate::api::access::{ApiToken, TokenError};
use crate::api::client::{ApiClient, ClientError, Reply};
use crate::config::{ConfigError, NodeConfig};
use crate::keyfile::{self, KeyFileError};

/// A failed command; displays as one line (printed after `error: `).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The key could not be written.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// Not a client subcommand.
    #[error("`{0}` is not a client command")]
    NotClient(&'static str),
    /// `ui` needs the token to put in the link.
    #[error("no API token to put in the link: {0}; pass --api-token / DEMLS_API_TOKEN")]
    NoToken(String),
    /// The node's configuration (for its API address and token) cannot be read.
    #[error("reading the node's configuration for its API address and token: {0}")]
    Config(#[from] ConfigError),
    /// The token file is there but cannot be used.
    #[error("{0}; or pass --api-token")]
    Token(#[from] TokenError),
    /// The node refused our token (or its absence); the hint says where we looked.
    #[error("{message} (HTTP 401); {hint}")]
    Unauthorized {
        /// The node's message.
        message: String,
        /// What to do about it.
        hint: String,
    },
}

/// Where a client command goes and the token it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The API's base URL.
    pub url: String,
    /// The token (`None`: none found; the node will answer 401).
    pub token: Option<String>,
    /// The token file looked at, if any.
    pub token_file: Option<PathBuf>,
}

/// The URL of an API listening on `listen` (all interfaces: its loopback address).
fn url_of(listen: std::net::SocketAddr) -> String {
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{a}")
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/').eq_ignore_ascii_case(b)
}

/// Works out the API URL and token of a client command: `--api` / `DEMLS_API`, else the
/// node configuration's `api.listen`; `--api-token` / `DEMLS_API_TOKEN`, else the file
/// `api-token` in the configuration's data directory. The configuration is `--config`,
/// or the built-in default with the `DEMLS__*` overrides (as `run` reads it). The token
/// file is only used for that node: with `--config`, or when the URL is the
/// configuration's own API address, so that a local token is never sent elsewhere.
pub fn resolve_target(cli: &Cli) -> Result<Target, CliError> {
    let explicit = cli
        .api_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if let (Some(url), Some(token)) = (&cli.api, &explicit) {
        return Ok(Target {
            url: url.clone(),
            token: Some(token.clone()),
            token_file: None,
        });
    }
    let config = NodeConfig::load(cli.config.as_deref())?;
    let own_url = url_of(config.api.listen);
    let url = cli.api.clone().unwrap_or_else(|| own_url.clone());
    if explicit.is_some() {
        return Ok(Target {
            url,
            token: explicit,
            token_file: None,
        });
    }
    if cli.config.is_none() && !same_url(&url, &own_url) {
        return Ok(Target {
            url,
            token: None,
            token_file: None,
        });
    }
    let path = ApiToken::path_in(&config.storage.data_dir);
    let token = match std::fs::symlink_metadata(&path) {
        Ok(_) => Some(ApiToken::read(&path)?.as_str().to_string()),
        Err(_) => None,
    };
    Ok(Target {
        url,
        token,
        token_file: Some(path),
    })
}

/// A 401 becomes [`CliError::Unauthorized`] with a hint; other errors stay as they are.
fn explain(e: ClientError, target: &Target) -> CliError {
    match e {
        ClientError::Http { status, message } if status == 401 => {
            let hint = match (&target.token_file, &target.token) {
                (Some(p), None) => format!(
                    "no token file {} (is this the node's --config, and has it started once?); \
                     or pass --api-token / DEMLS_API_TOKEN",
                    p.display()
                ),
                (Some(p), Some(_)) => format!(
                    "the token in {} is not this node's: pass the node's --config, or \
                     --api-token / DEMLS_API_TOKEN",
                    p.display()
                ),
                (None, Some(_)) => "check --api-token / DEMLS_API_TOKEN".to_string(),
                (None, None) => "pass --api-token / DEMLS_API_TOKEN (the node's api-token \
                     file), or the node's --config"
                    .to_string(),
            };
            CliError::Unauthorized { message, hint }
        }
        other => CliError::Client(other),
    }
}

/// Writes to stdout (the caller has escaped what others control); a closed pipe is not an
/// error worth reporting.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

fn show<T>(json: bool, r: Reply<T>, human: impl FnOnce(&T) -> String) {
    if json {
        emit(&escape_json(&r.raw));
    } else {
        emit(&human(&r.value));
    }
}

/// `keygen --out FILE`: writes a new key with mode 0600 and prints its address.
pub fn keygen(out: &Path, json: bool) -> Result<(), CliError> {
    let signer = keyfile::generate();
    keyfile::write_new(out, &signer)?;
    let address = signer.member_id().to_string();
    if json {
        let v = serde_json::json!({ "address": address, "key_file": out.display().to_string() });
        emit(&v.to_string());
    } else {
        emit(&address);
    }
    Ok(())
}

/// Runs one client subcommand against the node [`resolve_target`] finds.
pub async fn run_client(cli: &Cli) -> Result<(), CliError> {
    if matches!(cli.command, Command::Run) {
        return Err(CliError::NotClient("run"));
    }
    if matches!(cli.command, Command::Keygen { .. }) {
        return Err(CliError::NotClient("keygen"));
    }
    let target = resolve_target(cli)?;
    if let Command::Ui { open } = cli.command {
        return ui_link(&target, open);
    }
    let api = ApiClient::new(&target.url)?.with_token(target.token.clone());
    commands(cli, &api).await.map_err(|e| match e {
        CliError::Client(c) => explain(c, &target),
        other => other,
    })
}

/// The web UI's address with the token in its fragment.
pub fn ui_url(url: &str, token: &str) -> String {
    format!(
        "{}/#token={}",
        url.trim_end_matches('/'),
        crate::api::client::encode_component(token)
    )
}

/// `ui`: prints (and with `open`, opens) the link to the node's web UI.
fn ui_link(target: &Target, open: bool) -> Result<(), CliError> {
    let Some(token) = &target.token else {
        let looked = target
            .token_file
            .as_ref()
            .map(|p| format!("no token file {} (has the node started once?)", p.display()))
            .unwrap_or_else(|| "no token for this API address".into());
        return Err(CliError::NoToken(looked));
    };
    let link = ui_url(&target.url, token);
    println!("{link}");
    if open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        match std::process::Command::new(opener)
            .arg(&link)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => eprintln!("opened with {opener}"),
            Err(e) => eprintln!("could not run {opener} ({e}); open the link above by hand"),
        }
    }
    Ok(())
}

async fn commands(cli: &Cli, api: &ApiClient) -> Result<(), CliError> {
    let json = cli.json;
    match &cli.command {
        Command::Run => return Err(CliError::NotClient("run")),
        Command::Keygen { .. } => return Err(CliError::NotClient("keygen")),
        Command::Status => show(json, api.status().await?, output::status),
        Command::Health => show(json, api.health().await?, output::health),
        Command::Peers => show(json, api.peers().await?, |v| output::peers(v)),
        Command::LogLevel { level } => {
            let r = match level {
                Some(l) => api.set_log_level(l).await?,
                None => api.log_level().await?,
            };
            show(json, r, |v| format!("log level: {}", escape(&v.level)))
        }
        Command::Ui { .. } => return Err(CliError::NotClient("ui")),
        Command::Release { name } => show(json, api.release(name).await?, |v| {
            format!(
                "released {}: running again from its saved state\n{}",
                escape(&v.name),
                output::conversation(v)
            )
        }),
        Command::Drop { name } => show(json, api.drop_conversation(name).await?, |v| {
            format!(
                "dropped {}: its state and messages are deleted",
                escape(&v.name)
            )
        }),
        Command::Conversations => show(json, api.conversations().await?, |v| {
            output::conversations(v)
        }),
        Command::Create { name } => show(json, api.create(name).await?, output::conversation),
        Command::Join { name } => show(json, api.join(name).await?, output::conversation),
        Command::Leave { name } => show(json, api.leave(name).await?, |v| {
            format!(
                "leaving {} (done once a commit removes us)",
                escape(&v.name)
            )
        }),
        Command::Show { name } => show(json, api.show(name).await?, output::conversation),
        Command::Send { name, text } => {
            show(json, api.send(name, text).await?, |_| "sent".to_string())
        }
        Command::Messages { name } => {
            show(json, api.messages(name).await?, |v| output::messages(v))
        }
        Command::Remove { name, address } => {
            let addr = address.to_string();
            show(json, api.remove(name, &addr).await?, |v| {
                format!("proposal {} opened: remove {addr}", v.proposal_id)
            })
        }
        Command::Proposals { name } => {
            show(json, api.proposals(name).await?, |v| output::proposals(v))
        }
        Command::Vote {
            name,
            proposal_id,
            vote,
        } => {
            let yes = *vote == Vote::Yes;
            show(json, api.vote(name, *proposal_id, yes).await?, |v| {
                format!(
                    "voted {} on proposal {}",
                    if v.vote { "yes" } else { "no" },
                    v.proposal_id
                )
            })
        }
        Command::Events { name } => {
            api.events(name.as_deref(), |ev| {
                let line = if json {
                    escape_json(&ev.data)
                } else {
                    output::event(&ev.data)
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
            })
            .await?;
        }
    }
    Ok(())
}
