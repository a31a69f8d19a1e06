//! The axum server: routes, request checking, error bodies, the SSE event stream, and the
//! metrics listener.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use futures::{Stream, StreamExt, future};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::access::{self, ApiAccess, HostPolicy};
use super::types::*;
use super::{ApiError, NodeControl, parse_address};
use crate::config::check_conversation_name;

/// Shared handler state.
#[derive(Clone)]
struct AppState {
    node: Arc<dyn NodeControl>,
    /// Turns true when the server shuts down; ends the event streams.
    stopping: Option<watch::Receiver<bool>>,
}

type ApiResult<T> = Result<T, ApiError>;

/// `{"error": message}` with `status`.
pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

/// Serves the API on `listener` until `shutdown` resolves, behind the checks of `access`
/// (token, `Host`, `Origin`, no form posts); open event streams are ended then, so the
/// graceful shutdown does not wait for them.
pub async fn serve(
    listener: TcpListener,
    node: Arc<dyn NodeControl>,
    access: ApiAccess,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = build(node, access, Some(rx));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}

/// The API's routes over `node`, behind the checks of `access` (event streams end only
/// when the client goes away).
pub fn router(node: Arc<dyn NodeControl>, access: ApiAccess) -> Router {
    build(node, access, None)
}

fn build(
    node: Arc<dyn NodeControl>,
    access: ApiAccess,
    stopping: Option<watch::Receiver<bool>>,
) -> Router {
    Router::new()
        .route("/", get(super::ui::index))
        .route("/ui/{file}", get(super::ui::asset))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/version", get(version))
        .route("/peers", get(peers))
        .route("/log-level", get(log_level).put(set_log_level))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/events", get(events))
        .route("/conversations", get(conversations).post(create))
        .route("/conversations/{name}", get(show))
        .route("/conversations/{name}/join", post(join))
        .route("/conversations/{name}/leave", post(leave))
        .route("/conversations/{name}/release", post(release))
        .route("/conversations/{name}/drop", post(drop_conversation))
        .route("/conversations/{name}/messages", get(messages).post(send))
        .route("/conversations/{name}/remove", post(remove))
        .route("/conversations/{name}/proposals", get(proposals))
        .route("/conversations/{name}/proposals/{id}/vote", post(vote))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::new(access),
            access::middleware,
        ))
        .with_state(AppState { node, stopping })
}

/// Serves `GET /metrics` alone (Prometheus text, no token) on `listener` until `shutdown`
/// resolves: the `[metrics] listen` address, so that a scraper never needs the control
/// API. Requests must name the listener in `Host` (as the API's, without
/// `allowed_hosts`).
pub async fn serve_metrics(
    listener: TcpListener,
    node: Arc<dyn NodeControl>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    axum::serve(listener, metrics_router(node, listen))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The metrics listener's routes: `GET /metrics` without a token, behind the `Host` check
/// of a listener on `listen`.
pub fn metrics_router(node: Arc<dyn NodeControl>, listen: SocketAddr) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::new(HostPolicy::new(listen, Vec::new())),
            access::host_only,
        ))
        .with_state(AppState {
            node,
            stopping: None,
        })
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("no such route: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

fn bad_json(r: JsonRejection) -> ApiError {
    ApiError::BadRequest(format!("invalid request body: {}", r.body_text()))
}

/// The body of a route that takes no fields: nothing, or an empty JSON object.
fn no_fields(body: &Bytes) -> ApiResult<()> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("invalid request body: not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Ok(());
    }
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(m) if m.is_empty() => Ok(()),
        Ok(m) => Err(ApiError::BadRequest(format!(
            "this route takes no fields (send no body or {{}}), got {}",
            m.keys()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "invalid request body: {e} (this route takes no body or {{}})"
        ))),
    }
}

fn conversation(name: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(name) = name.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    check_conversation_name(&name).map_err(ApiError::BadRequest)?;
    Ok(name)
}

/// Readiness: 200 when the node is ready (`ok`), 503 otherwise (`not_ready`,
/// `degraded`, `down`), with the reasons in the body.
async fn health(State(s): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let h = s.node.health().await;
    let code = if h.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h))
}

/// Liveness: 200 while the runtime runs (whatever its readiness), 503 when it is `down`.
async fn live(State(s): State<AppState>) -> (StatusCode, Json<HealthView>) {
    let h = s.node.health().await;
    let code = if h.is_down() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(h))
}

/// The build's name and version, and the protocols it speaks.
pub fn version_view() -> VersionView {
    VersionView {
        name: env!("CARGO_PKG_NAME").into(),
        version: env!("CARGO_PKG_VERSION").into(),
        relay_protocol: "/vac/waku/relay/2.0.0".into(),
        store_protocol: "/vac/waku/store-query/3.0.0".into(),
    }
}

async fn version() -> Json<VersionView> {
    Json(version_view())
}

async fn peers(State(s): State<AppState>) -> ApiResult<Json<Vec<PeerView>>> {
    Ok(Json(s.node.peers().await?))
}

async fn log_level(State(s): State<AppState>) -> ApiResult<Json<LogLevelView>> {
    Ok(Json(LogLevelView {
        level: s.node.log_level()?,
    }))
}

async fn set_log_level(
    State(s): State<AppState>,
    body: Result<Json<LogLevelRequest>, JsonRejection>,
) -> ApiResult<Json<LogLevelView>> {
    let Json(req) = body.map_err(bad_json)?;
    s.node.log_level()?;
    Ok(Json(LogLevelView {
        level: s.node.set_log_level(&req.level)?,
    }))
}

async fn metrics(State(s): State<AppState>) -> Response {
    let node = s.node.clone();
    match tokio::task::spawn_blocking(move || node.metrics()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("metrics failed: {e}")).into_response(),
    }
}

async fn status(State(s): State<AppState>) -> ApiResult<Json<StatusView>> {
    Ok(Json(s.node.status().await?))
}

async fn conversations(State(s): State<AppState>) -> ApiResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(s.node.conversations().await?))
}

async fn create(
    State(s): State<AppState>,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ConversationView>)> {
    let Json(req) = body.map_err(bad_json)?;
    check_conversation_name(&req.name).map_err(ApiError::BadRequest)?;
    Ok((StatusCode::CREATED, Json(s.node.create(&req.name).await?)))
}

async fn show(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ConversationView>> {
    let name = conversation(name)?;
    Ok(Json(s.node.show(&name).await?))
}

async fn join(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<ConversationView>> {
    let name = conversation(name)?;
    no_fields(&body)?;
    Ok(Json(s.node.join(&name).await?))
}

async fn leave(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<LeaveView>> {
    let name = conversation(name)?;
    no_fields(&body)?;
    Ok(Json(s.node.leave(&name).await?))
}

async fn release(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<ConversationView>> {
    let name = conversation(name)?;
    no_fields(&body)?;
    Ok(Json(s.node.release(&name).await?))
}

async fn drop_conversation(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Json<DroppedView>> {
    let name = conversation(name)?;
    no_fields(&body)?;
    Ok(Json(s.node.drop_conversation(&name).await?))
}

/// Most messages one page may ask for.
pub const MAX_PAGE: u32 = 1000;

/// `GET …/messages` query: a page of the history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesQuery {
    /// Only messages with a larger `seq`.
    after: Option<u64>,
    /// At most this many (1 to [`MAX_PAGE`]).
    limit: Option<u32>,
}

async fn messages(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<MessageView>>> {
    let name = conversation(name)?;
    let Query(q) = q.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    if q.after.is_none() && q.limit.is_none() {
        return Ok(Json(s.node.messages(&name).await?));
    }
    let limit = match q.limit {
        None => MAX_PAGE,
        Some(l) if (1..=MAX_PAGE).contains(&l) => l,
        Some(l) => {
            return Err(ApiError::BadRequest(format!(
                "limit {l} is out of range: 1 to {MAX_PAGE}"
            )));
        }
    };
    Ok(Json(
        s.node
            .messages_after(&name, q.after.unwrap_or(0), limit)
            .await?,
    ))
}

async fn send(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> ApiResult<Json<SentView>> {
    let name = conversation(name)?;
    let Json(req) = body.map_err(bad_json)?;
    if req.text.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "message text must not be empty".into(),
        ));
    }
    Ok(Json(s.node.send(&name, &req.text).await?))
}

async fn remove(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<RemoveRequest>, JsonRejection>,
) -> ApiResult<Json<ProposalRef>> {
    let name = conversation(name)?;
    let Json(req) = body.map_err(bad_json)?;
    let member = parse_address(&req.address).map_err(ApiError::BadRequest)?;
    Ok(Json(s.node.remove(&name, member).await?))
}

async fn proposals(
    State(s): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Vec<ProposalView>>> {
    let name = conversation(name)?;
    Ok(Json(s.node.proposals(&name).await?))
}

async fn vote(
    State(s): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<VoteRequest>, JsonRejection>,
) -> ApiResult<Json<VoteView>> {
    let Path((name, id)) = params.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    check_conversation_name(&name).map_err(ApiError::BadRequest)?;
    let id: u32 = id.parse().map_err(|_| {
        ApiError::BadRequest(format!("invalid proposal id {id:?}: expected a number"))
    })?;
    let Json(req) = body.map_err(bad_json)?;
    Ok(Json(s.node.vote(&name, id, req.vote.is_yes()).await?))
}

/// `GET /events` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Only this conversation's events.
    conversation: Option<String>,
}

fn sse_event(ev: &EventView) -> Option<Event> {
    let mut e = Event::default().event(ev.kind.clone());
    if ev.id != 0 {
        e = e.id(ev.id.to_string());
    }
    e.json_data(ev).ok()
}

fn lagged(missed: u64) -> Event {
    Event::default()
        .event("lagged")
        .data(format!("{{\"missed\":{missed}}}"))
}

async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Query(q) = q.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    if let Some(name) = &q.conversation {
        check_conversation_name(name).map_err(ApiError::BadRequest)?;
    }
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "invalid Last-Event-ID: expected the id of an event (a number)".into(),
                    )
                })?,
        ),
    };
    let filter = q.conversation;
    let stopping = s.stopping.clone();
    let stop = async move {
        match stopping {
            Some(mut rx) => {
                let _ = rx.wait_for(|v| *v).await;
            }
            None => future::pending::<()>().await,
        }
    };
    let (backlog, missed, live) = match last_id {
        Some(after) => {
            let r = s.node.events_since(after);
            (r.backlog, r.missed, r.live)
        }
        None => (Vec::new(), 0, s.node.events()),
    };
    // Live events already in the backlog (none, when the node's log is consistent) are
    // skipped by id.
    let seen = backlog.last().map(|e| e.id).unwrap_or(0);
    let wanted = {
        let filter = filter.clone();
        move |ev: &EventView| filter.as_ref().is_none_or(|f| *f == ev.conversation)
    };
    let head: Vec<Event> = (missed > 0)
        .then(|| lagged(missed))
        .into_iter()
        .chain(backlog.iter().filter(|e| wanted(e)).filter_map(sse_event))
        .collect();
    let live = BroadcastStream::new(live).filter_map(move |item| {
        let out = match item {
            Ok(ev) if (ev.id == 0 || ev.id > seen) && wanted(&ev) => sse_event(&ev),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(lagged(n)),
        };
        future::ready(out.map(Ok))
    });
    let stream = futures::stream::iter(head.into_iter().map(Ok))
        .chain(live)
        .take_until(Box::pin(stop));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
