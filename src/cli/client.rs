//! Running the client subcommands and `keygen`.

use std::io::Write;
use std::path::Path;

use super::{Cli, Command, Vote, output};
use crate::api::client::{ApiClient, ClientError, Reply};
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
}

/// Writes to stdout; a closed pipe is not an error worth reporting.
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
        emit(&r.raw);
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

/// Runs one client subcommand against the API at `cli.api`.
pub async fn run_client(cli: &Cli) -> Result<(), CliError> {
    let api = ApiClient::new(&cli.api)?;
    let json = cli.json;
    match &cli.command {
        Command::Run { .. } => return Err(CliError::NotClient("run")),
        Command::Keygen { .. } => return Err(CliError::NotClient("keygen")),
        Command::Status => show(json, api.status().await?, output::status),
        Command::Health => show(json, api.health().await?, output::health),
        Command::Release { name } => show(json, api.release(name).await?, |v| {
            format!(
                "released {}: running again from its saved state\n{}",
                v.name,
                output::conversation(v)
            )
        }),
        Command::Drop { name } => show(json, api.drop_conversation(name).await?, |v| {
            format!("dropped {}: its state and messages are deleted", v.name)
        }),
        Command::Conversations => show(json, api.conversations().await?, |v| {
            output::conversations(v)
        }),
        Command::Create { name } => show(json, api.create(name).await?, output::conversation),
        Command::Join { name } => show(json, api.join(name).await?, output::conversation),
        Command::Leave { name } => show(json, api.leave(name).await?, |v| {
            format!("leaving {} (done once a commit removes us)", v.name)
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
                    ev.data
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
