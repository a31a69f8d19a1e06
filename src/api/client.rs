//! A small HTTP client for the API (hyper 1 + hyper-util), used by the CLI.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use super::types::*;

/// How long a request may take (creating a conversation includes MLS work).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the API failed. Each displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `--api` value is not an `http://host:port` URL.
    #[error("invalid API URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    /// Nothing answers at the address.
    #[error("cannot reach the node API at {0} (is the node running?)")]
    Unreachable(String),
    /// The node did not answer in time.
    #[error("the node API at {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The node answered with an error.
    #[error("{message} (HTTP {})", status.as_u16())]
    Http {
        /// HTTP status.
        status: StatusCode,
        /// The `error` field of the body, or the body.
        message: String,
    },
    /// The exchange broke off, or the answer is not what the API sends.
    #[error("bad answer from the node API: {0}")]
    Protocol(String),
}

/// A decoded answer with the exact body it was decoded from (for `--json`).
#[derive(Debug, Clone)]
pub struct Reply<T> {
    /// The body as the API sent it.
    pub raw: String,
    /// The decoded body.
    pub value: T,
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` if absent).
    pub event: String,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// A client for one node's API.
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Percent-encodes one path segment or query value.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn conv(name: &str, rest: &str) -> String {
    format!("/conversations/{}{rest}", encode_component(name))
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:8645`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let trimmed = base.trim().trim_end_matches('/');
        let uri: Uri = trimmed
            .parse()
            .map_err(|_| ClientError::BadUrl(base.to_string()))?;
        let path_ok = uri.path().is_empty() || uri.path() == "/";
        if uri.scheme_str() != Some("http") || uri.authority().is_none() || !path_ok {
            return Err(ClientError::BadUrl(base.to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            base: trimmed.to_string(),
            token: None,
            client,
        })
    }

    /// The same client, sending `token` as `Authorization: Bearer TOKEN` (every route but
    /// `/health` needs it).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.trim().is_empty());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|_| ClientError::BadUrl(format!("{}{path}", self.base)))?;
        let state_changing = method != Method::GET && method != Method::HEAD;
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {}", t.trim()));
        }
        // State-changing requests are JSON, even without fields (`{}`): the API refuses
        // what an HTML form could send.
        let body = match body {
            Some(json) => Some(json),
            None if state_changing => Some("{}".to_string()),
            None => None,
        };
        let body = match body {
            Some(json) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json))
            }
            None => Full::new(Bytes::new()),
        };
        b.body(body)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn map_send_error(&self, e: hyper_util::client::legacy::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable(self.base.clone())
        } else {
            ClientError::Protocol(e.to_string())
        }
    }

    /// Sends a request and returns the status and body of whatever answer came.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, String), ClientError> {
        let req = self.request(method, path, body.map(|b| b.to_string()))?;
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.map_send_error(e))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| ClientError::Timeout(self.base.clone(), REQUEST_TIMEOUT))?
    }

    /// Sends a request and returns the body of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String, ClientError> {
        let (status, text) = self.exchange(method, path, body).await?;
        {
            if status.is_success() {
                Ok(text)
            } else {
                let message = serde_json::from_str::<ErrorBody>(&text)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| {
                        let t = text.trim();
                        if t.is_empty() {
                            status.canonical_reason().unwrap_or("error").to_string()
                        } else {
                            t.lines().next().unwrap_or(t).to_string()
                        }
                    });
                Err(ClientError::Http { status, message })
            }
        }
    }

    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Reply<T>, ClientError> {
        let raw = self.call(method, path, body).await?;
        let value =
            serde_json::from_str(&raw).map_err(|e| ClientError::Protocol(format!("{e}: {raw}")))?;
        Ok(Reply { raw, value })
    }

    /// `GET /health` (readiness). A node that is not ready answers 503 with its
    /// `HealthView`, which is returned like a 200's; a node that is `down` is an `Http`
    /// error carrying the body's `error`.
    pub async fn health(&self) -> Result<Reply<HealthView>, ClientError> {
        let (status, raw) = self.exchange(Method::GET, "/health", None).await?;
        match serde_json::from_str::<HealthView>(&raw) {
            Ok(value)
                if status.is_success()
                    || (status == StatusCode::SERVICE_UNAVAILABLE && !value.is_down()) =>
            {
                Ok(Reply { raw, value })
            }
            Ok(value) => Err(ClientError::Http {
                status,
                message: value.error.unwrap_or_else(|| value.status.clone()),
            }),
            Err(_) => Err(ClientError::Http {
                status,
                message: serde_json::from_str::<ErrorBody>(&raw)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| raw.lines().next().unwrap_or("").to_string()),
            }),
        }
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<Reply<Vec<PeerView>>, ClientError> {
        self.typed(Method::GET, "/peers", None).await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Reply<VersionView>, ClientError> {
        self.typed(Method::GET, "/version", None).await
    }

    /// `GET /log-level`.
    pub async fn log_level(&self) -> Result<Reply<LogLevelView>, ClientError> {
        self.typed(Method::GET, "/log-level", None).await
    }

    /// `PUT /log-level`.
    pub async fn set_log_level(&self, level: &str) -> Result<Reply<LogLevelView>, ClientError> {
        self.typed(
            Method::PUT,
            "/log-level",
            Some(serde_json::json!({ "level": level })),
        )
        .await
    }

    /// `GET /metrics` (Prometheus text) on the API (the token is needed there; the
    /// `[metrics] listen` address serves it without).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.call(Method::GET, "/metrics", None).await
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Reply<StatusView>, ClientError> {
        self.typed(Method::GET, "/status", None).await
    }

    /// `GET /conversations`.
    pub async fn conversations(&self) -> Result<Reply<Vec<ConversationSummary>>, ClientError> {
        self.typed(Method::GET, "/conversations", None).await
    }

    /// `POST /conversations`.
    pub async fn create(&self, name: &str) -> Result<Reply<ConversationView>, ClientError> {
        let body = serde_json::json!({ "name": name });
        self.typed(Method::POST, "/conversations", Some(body)).await
    }

    /// `POST /conversations/{name}/join`.
    pub async fn join(&self, name: &str) -> Result<Reply<ConversationView>, ClientError> {
        self.typed(Method::POST, &conv(name, "/join"), None).await
    }

    /// `POST /conversations/{name}/leave`.
    pub async fn leave(&self, name: &str) -> Result<Reply<LeaveView>, ClientError> {
        self.typed(Method::POST, &conv(name, "/leave"), None).await
    }

    /// `POST /conversations/{name}/release`.
    pub async fn release(&self, name: &str) -> Result<Reply<ConversationView>, ClientError> {
        self.typed(Method::POST, &conv(name, "/release"), None)
            .await
    }

    /// `POST /conversations/{name}/drop`.
    pub async fn drop_conversation(&self, name: &str) -> Result<Reply<DroppedView>, ClientError> {
        self.typed(Method::POST, &conv(name, "/drop"), None).await
    }

    /// `GET /conversations/{name}`.
    pub async fn show(&self, name: &str) -> Result<Reply<ConversationView>, ClientError> {
        self.typed(Method::GET, &conv(name, ""), None).await
    }

    /// `POST /conversations/{name}/messages`.
    pub async fn send(&self, name: &str, text: &str) -> Result<Reply<SentView>, ClientError> {
        let body = serde_json::json!({ "text": text });
        self.typed(Method::POST, &conv(name, "/messages"), Some(body))
            .await
    }

    /// `GET /conversations/{name}/messages`.
    pub async fn messages(&self, name: &str) -> Result<Reply<Vec<MessageView>>, ClientError> {
        self.typed(Method::GET, &conv(name, "/messages"), None)
            .await
    }

    /// `POST /conversations/{name}/remove`.
    pub async fn remove(
        &self,
        name: &str,
        address: &str,
    ) -> Result<Reply<ProposalRef>, ClientError> {
        let body = serde_json::json!({ "address": address });
        self.typed(Method::POST, &conv(name, "/remove"), Some(body))
            .await
    }

    /// `GET /conversations/{name}/proposals`.
    pub async fn proposals(&self, name: &str) -> Result<Reply<Vec<ProposalView>>, ClientError> {
        self.typed(Method::GET, &conv(name, "/proposals"), None)
            .await
    }

    /// `POST /conversations/{name}/proposals/{id}/vote`.
    pub async fn vote(
        &self,
        name: &str,
        id: u32,
        yes: bool,
    ) -> Result<Reply<VoteView>, ClientError> {
        let body = serde_json::json!({ "vote": if yes { "yes" } else { "no" } });
        let path = conv(name, &format!("/proposals/{id}/vote"));
        self.typed(Method::POST, &path, Some(body)).await
    }

    /// `GET /events`: calls `on_event` for each event until it returns false, or the
    /// node ends the stream (then `Ok`).
    pub async fn events(
        &self,
        conversation: Option<&str>,
        mut on_event: impl FnMut(SseEvent) -> bool,
    ) -> Result<(), ClientError> {
        let path = match conversation {
            Some(c) => format!("/events?conversation={}", encode_component(c)),
            None => "/events".to_string(),
        };
        let mut req = self.request(Method::GET, &path, None)?;
        req.headers_mut().insert(
            header::ACCEPT,
            header::HeaderValue::from_static("text/event-stream"),
        );
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| ClientError::Timeout(self.base.clone(), REQUEST_TIMEOUT))?
            .map_err(|e| self.map_send_error(e))?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| ClientError::Protocol(e.to_string()))?
                .to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or_else(|_| text.trim().to_string());
            return Err(ClientError::Http { status, message });
        }
        let mut parser = SseParser::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                for ev in parser.push(&data) {
                    if !on_event(ev) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Incremental `text/event-stream` parser.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || self.event.is_some() {
                    out.push(SseEvent {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        out
    }
}
