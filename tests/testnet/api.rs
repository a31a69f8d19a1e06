//! Calls to one node's API, whichever way the node is reached.
//!
//! Compose publishes every API on host loopback, so the runner speaks HTTP through the
//! project's own [`ApiClient`]. A swarm publishes nothing (it would publish on every
//! interface of every host): a task on this host is reached at its address on
//! `docker_gwbridge`, the bridge every task container has for its outside traffic, which
//! the host is on too; a task on another host only from inside the overlay, so there the
//! node's own CLI runs in a one-off container on the overlay and its `--json` output,
//! the API's answer verbatim, is decoded into the same types.

use std::fmt;

use demls_node::api::client::{ApiClient, ClientError};
use demls_node::api::types::{
    ConversationView, LeaveView, MessageView, ProposalRef, ProposalView, SentView, StatusView,
};
use serde::de::DeserializeOwned;

use crate::docker;
use crate::net::{Mode, Testnet};

/// How the runner reaches one node's API.
#[derive(Debug, Clone)]
pub enum Route {
    /// HTTP to the API, with the node's token.
    Http(ApiClient),
    /// The CLI in a one-off container on the swarm's overlay, against `http://NODE:8645`.
    Overlay {
        /// The node's API token (given in the container's environment).
        token: String,
    },
}

/// A failed call.
#[derive(Debug)]
pub enum CallError {
    /// The node answered 404: it is not in the conversation (or never was).
    NotFound(String),
    /// Anything else: unreachable, timed out, refused, or an answer that does not decode.
    Other(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotFound(m) | CallError::Other(m) => f.write_str(m),
        }
    }
}

/// One API operation on the testnet's conversation (or the node).
enum Op<'a> {
    Status,
    Show,
    Messages,
    Proposals,
    Create,
    Join,
    Leave,
    Send(&'a str),
    Remove(&'a str),
}

impl Op<'_> {
    /// The CLI command that makes the same call.
    fn cli_args(&self, conv: &str) -> Vec<String> {
        let (cmd, extra): (&str, Option<&str>) = match self {
            Op::Status => return vec!["status".into()],
            Op::Show => ("show", None),
            Op::Messages => ("messages", None),
            Op::Proposals => ("proposals", None),
            Op::Create => ("create", None),
            Op::Join => ("join", None),
            Op::Leave => ("leave", None),
            Op::Send(text) => ("send", Some(text)),
            Op::Remove(address) => ("remove", Some(address)),
        };
        let mut args = vec![cmd.to_string(), conv.to_string()];
        args.extend(extra.map(str::to_string));
        args
    }

    /// The same call through the client; the body as the node sent it.
    async fn http(&self, api: &ApiClient, conv: &str) -> Result<String, ClientError> {
        Ok(match self {
            Op::Status => api.status().await?.raw,
            Op::Show => api.show(conv).await?.raw,
            Op::Messages => api.messages(conv).await?.raw,
            Op::Proposals => api.proposals(conv).await?.raw,
            Op::Create => api.create(conv).await?.raw,
            Op::Join => api.join(conv).await?.raw,
            Op::Leave => api.leave(conv).await?.raw,
            Op::Send(text) => api.send(conv, text).await?.raw,
            Op::Remove(address) => api.remove(conv, address).await?.raw,
        })
    }
}

impl Testnet {
    /// `GET /status`.
    pub async fn status(&self, node: &str) -> Result<StatusView, CallError> {
        self.call(node, Op::Status).await
    }

    /// `GET /conversations/{conv}`.
    pub async fn show(&self, node: &str) -> Result<ConversationView, CallError> {
        self.call(node, Op::Show).await
    }

    /// `GET /conversations/{conv}/messages`.
    pub async fn messages(&self, node: &str) -> Result<Vec<MessageView>, CallError> {
        self.call(node, Op::Messages).await
    }

    /// `GET /conversations/{conv}/proposals`.
    pub async fn proposals(&self, node: &str) -> Result<Vec<ProposalView>, CallError> {
        self.call(node, Op::Proposals).await
    }

    /// `POST /conversations` (create the conversation).
    pub async fn create(&self, node: &str) -> Result<ConversationView, CallError> {
        self.call(node, Op::Create).await
    }

    /// `POST /conversations/{conv}/join`.
    pub async fn join(&self, node: &str) -> Result<ConversationView, CallError> {
        self.call(node, Op::Join).await
    }

    /// `POST /conversations/{conv}/leave`.
    pub async fn leave(&self, node: &str) -> Result<LeaveView, CallError> {
        self.call(node, Op::Leave).await
    }

    /// `POST /conversations/{conv}/messages`.
    pub async fn send(&self, node: &str, text: &str) -> Result<SentView, CallError> {
        self.call(node, Op::Send(text)).await
    }

    /// `POST /conversations/{conv}/remove`: proposes removing `address`.
    pub async fn remove(&self, node: &str, address: &str) -> Result<ProposalRef, CallError> {
        self.call(node, Op::Remove(address)).await
    }

    /// Forgets how `node` was reached: a swarm task that was killed or replaced has
    /// another container and address.
    pub fn forget(&self, node: &str) {
        self.routes.lock().unwrap().remove(node);
    }

    async fn call<T: DeserializeOwned>(&self, node: &str, op: Op<'_>) -> Result<T, CallError> {
        let route = self.route(node).await.map_err(CallError::Other)?;
        let answer = match &route {
            Route::Http(api) => {
                match tokio::time::timeout(self.call_timeout, op.http(api, &self.conv)).await {
                    Ok(Ok(raw)) => Ok(raw),
                    Ok(Err(ClientError::Http { status, message })) if status == 404 => {
                        Err(CallError::NotFound(format!("{node}: {message} (HTTP 404)")))
                    }
                    Ok(Err(e)) => Err(CallError::Other(format!("{node}: {e}"))),
                    Err(_) => Err(CallError::Other(format!(
                        "{node}: no answer within {:?}",
                        self.call_timeout
                    ))),
                }
            }
            Route::Overlay { token } => self.overlay_cli(node, token, &op).await,
        };
        if matches!(answer, Err(CallError::Other(_))) && self.mode == Mode::Swarm {
            self.forget(node);
        }
        let raw = answer?;
        serde_json::from_str(&raw)
            .map_err(|e| CallError::Other(format!("{node}: undecodable answer ({e}): {raw}")))
    }

    /// The CLI of the image in a one-off container on the overlay, against NODE by name.
    async fn overlay_cli(&self, node: &str, token: &str, op: &Op<'_>) -> Result<String, CallError> {
        let network = format!("{}_demls", self.project);
        let api = format!("http://{node}:8645");
        let mut args: Vec<String> = [
            "run",
            "--rm",
            "--network",
            &network,
            "-e",
            "DEMLS_API_TOKEN",
            &self.image,
        ]
        .map(String::from)
        .to_vec();
        args.extend(op.cli_args(&self.conv));
        args.extend(["--json", "--api", &api].map(String::from));
        let run = docker::run_with_env(&args, ("DEMLS_API_TOKEN", token));
        match tokio::time::timeout(self.call_timeout, run).await {
            Ok(Ok(out)) => Ok(out),
            // The CLI reports an HTTP error as `error: MESSAGE (HTTP 404)`.
            Ok(Err(e)) if e.contains("(HTTP 404)") => {
                Err(CallError::NotFound(format!("{node}: {e}")))
            }
            Ok(Err(e)) => Err(CallError::Other(format!("{node}: {e}"))),
            Err(_) => Err(CallError::Other(format!(
                "{node}: no answer within {:?}",
                self.call_timeout
            ))),
        }
    }

    /// How to reach `node` now: remembered, or worked out from the mode and, in a swarm,
    /// from where its task runs.
    async fn route(&self, node: &str) -> Result<Route, String> {
        if let Some(route) = self.routes.lock().unwrap().get(node) {
            return Ok(route.clone());
        }
        let token = self.token(node)?;
        let http = |host: String| {
            ApiClient::new(&format!("http://{host}"))
                .map(|api| Route::Http(api.with_token(Some(token.clone()))))
                .map_err(|e| format!("{node}: {e}"))
        };
        let route = match self.mode {
            Mode::Compose => http(format!("127.0.0.1:{}", self.api_port(node)?))?,
            Mode::Swarm if self.overlay_only => Route::Overlay {
                token: token.clone(),
            },
            Mode::Swarm => match docker::swarm_task(&self.project, node).await? {
                Some(task) => http(format!("{}:8645", docker::gwbridge_ip(&task).await?))?,
                None => Route::Overlay {
                    token: token.clone(),
                },
            },
        };
        self.routes
            .lock()
            .unwrap()
            .insert(node.to_string(), route.clone());
        Ok(route)
    }

    /// Compose: where `node`'s API is published (the script's numbering).
    fn api_port(&self, node: &str) -> Result<u16, String> {
        let offset = match node {
            "bootstrap" => 0,
            _ => node
                .strip_prefix("member")
                .and_then(|i| i.parse::<u16>().ok())
                .ok_or_else(|| format!("{node}: not a testnet node name"))?,
        };
        Ok(self.base_port + offset)
    }

    /// The node's API token, as the script keeps it (copied out of the node's volume, or
    /// generated for a swarm secret).
    fn token(&self, node: &str) -> Result<String, String> {
        let path = self.dir.join("tokens").join(node);
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            _ => Err(format!(
                "{node}: no API token in {} (scripts/testnet.sh up copies it there once the \
                 node started)",
                path.display()
            )),
        }
    }
}
