//! The HTTP layer over a test double of `NodeControl`: every route, malformed input → 4xx
//! with `{"error": …}`, and the client and event stream over a real loopback socket.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demls_node::api::client::{ApiClient, ClientError};
use demls_node::api::types::*;
use demls_node::api::{ApiAccess, ApiToken, router, serve};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[path = "api_fake.rs"]
mod api_fake;
use api_fake::{BOB, Fake, ME};

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn access(listen: std::net::SocketAddr) -> ApiAccess {
    ApiAccess::new(ApiToken::parse(TOKEN).unwrap(), listen, Vec::new())
}

/// The router as the node serves it on 127.0.0.1:8645.
fn app() -> axum::Router {
    router(Fake::new(), access("127.0.0.1:8645".parse().unwrap()))
}

/// A request as the CLI sends it: our Host, the token, JSON on state-changing methods.
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, String, String) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:8645")
        .header("authorization", format!("Bearer {TOKEN}"));
    if body.is_some() || method != "GET" {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(
            body.map(|s| Body::from(s.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn every_route() {
    let app = app();
    // (method, uri, body, status, fragment of the body)
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("GET", "/health", None, 200, r#"{"status":"ok"}"#),
        ("GET", "/metrics", None, 200, "demls_up 1"),
        (
            "GET",
            "/status",
            None,
            200,
            r#""address":"0x1111111111111111111111111111111111111111","peer_id":"16Uiu2HAm","peers":2,"conversations":["general","waiting"]"#,
        ),
        (
            "GET",
            "/conversations",
            None,
            200,
            r#"{"name":"general","state":"working","epoch":3,"members":2}"#,
        ),
        (
            "GET",
            "/conversations/general",
            None,
            200,
            r#""members":[{"address":"0x1111111111111111111111111111111111111111","score":100,"role":"epoch_steward","pending_leave":false}"#,
        ),
        (
            "GET",
            "/conversations/general/messages",
            None,
            200,
            r#"[{"sender":"0x2222222222222222222222222222222222222222","text":"hello","epoch":3,"timestamp":1700000000000}]"#,
        ),
        (
            "POST",
            "/conversations/general/messages",
            Some(r#"{"text":"hi"}"#),
            200,
            r#"{"sent":true}"#,
        ),
        (
            "POST",
            "/conversations/general/remove",
            Some(&format!(r#"{{"address":"{BOB}"}}"#)),
            200,
            r#"{"proposal_id":7}"#,
        ),
        (
            "POST",
            "/conversations/general/remove",
            Some(r#"{"address":"0x2222222222222222222222222222222222222222"}"#),
            200,
            r#"{"proposal_id":7}"#,
        ),
        (
            "GET",
            "/conversations/general/proposals",
            None,
            200,
            r#"{"id":7,"kind":"remove_member","status":"open","yes":1,"no":0,"expected":2"#,
        ),
        (
            "POST",
            "/conversations/general/proposals/7/vote",
            Some(r#"{"vote":"yes"}"#),
            200,
            r#"{"proposal_id":7,"vote":true}"#,
        ),
        (
            "POST",
            "/conversations/general/proposals/7/vote",
            Some(r#"{"vote":"no"}"#),
            200,
            r#""vote":false"#,
        ),
        (
            "POST",
            "/conversations/general/proposals/7/vote",
            Some(r#"{"vote":true}"#),
            200,
            r#""vote":true"#,
        ),
        (
            "POST",
            "/conversations",
            Some(r#"{"name":"fresh"}"#),
            201,
            r#"{"name":"fresh","state":"working","epoch":1"#,
        ),
        (
            "POST",
            "/conversations/other/join",
            None,
            200,
            r#""state":"pending_join""#,
        ),
        (
            "POST",
            "/conversations/fresh/leave",
            None,
            200,
            r#"{"name":"fresh","leaving":true}"#,
        ),
        // Unknown conversation / proposal → 404.
        (
            "GET",
            "/conversations/fresh",
            None,
            404,
            "not in conversation",
        ),
        (
            "GET",
            "/conversations/nope/messages",
            None,
            404,
            "not in conversation",
        ),
        (
            "GET",
            "/conversations/nope/proposals",
            None,
            404,
            "not in conversation",
        ),
        (
            "POST",
            "/conversations/nope/leave",
            None,
            404,
            "not in conversation",
        ),
        (
            "POST",
            "/conversations/nope/messages",
            Some(r#"{"text":"x"}"#),
            404,
            "not in conversation",
        ),
        (
            "POST",
            "/conversations/general/proposals/8/vote",
            Some(r#"{"vote":"yes"}"#),
            404,
            "no proposal 8",
        ),
        // Not allowed now → 409 with the reason.
        (
            "POST",
            "/conversations",
            Some(r#"{"name":"general"}"#),
            409,
            "already in conversation",
        ),
        (
            "POST",
            "/conversations/general/join",
            None,
            409,
            "already in conversation",
        ),
        (
            "POST",
            "/conversations/waiting/messages",
            Some(r#"{"text":"x"}"#),
            409,
            "join is pending",
        ),
        // Malformed → 4xx.
        (
            "POST",
            "/conversations",
            Some("{not json"),
            400,
            "invalid request body",
        ),
        (
            "POST",
            "/conversations",
            Some(r#"{"nam":"x"}"#),
            400,
            "invalid request body",
        ),
        (
            "POST",
            "/conversations",
            Some(r#"{"name":"a b"}"#),
            400,
            "whitespace",
        ),
        (
            "POST",
            "/conversations",
            Some(r#"{"name":""}"#),
            400,
            "empty",
        ),
        ("POST", "/conversations/a%2Fb/join", None, 400, "'/'"),
        ("GET", "/conversations/a%20b", None, 400, "whitespace"),
        (
            "GET",
            "/conversations/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            None,
            400,
            "at most 64",
        ),
        (
            "POST",
            "/conversations/general/messages",
            Some(r#"{"text":"  "}"#),
            400,
            "must not be empty",
        ),
        (
            "POST",
            "/conversations/general/messages",
            Some(r#"{"text":5}"#),
            400,
            "invalid request body",
        ),
        (
            "POST",
            "/conversations/general/messages",
            None,
            400,
            "invalid request body",
        ),
        (
            "POST",
            "/conversations/general/remove",
            Some(r#"{"address":"0x12"}"#),
            400,
            "invalid address",
        ),
        (
            "POST",
            "/conversations/general/remove",
            Some(r#"{"address":"bob"}"#),
            400,
            "invalid address",
        ),
        // Mixed case that is not the EIP-55 checksum (that is 0xABCDeF…).
        (
            "POST",
            "/conversations/general/remove",
            Some(r#"{"address":"0xabcdefabcdefabcdefabcdefabcdefabcdefABCD"}"#),
            400,
            "EIP-55 checksum",
        ),
        (
            "POST",
            "/conversations/general/remove",
            Some(r#"{"address":"0x3333333333333333333333333333333333333333"}"#),
            400,
            "is not a member",
        ),
        (
            "POST",
            "/conversations/general/proposals/7/vote",
            Some(r#"{"vote":"maybe"}"#),
            400,
            "unknown vote",
        ),
        (
            "POST",
            "/conversations/general/proposals/7/vote",
            Some(r#"{"vote":1}"#),
            400,
            "a vote is",
        ),
        (
            "POST",
            "/conversations/general/proposals/x7/vote",
            Some(r#"{"vote":"yes"}"#),
            400,
            "invalid proposal id",
        ),
        (
            "POST",
            "/conversations/general/proposals/-1/vote",
            Some(r#"{"vote":"yes"}"#),
            400,
            "invalid proposal id",
        ),
        (
            "POST",
            "/conversations/general/proposals/99999999999/vote",
            Some(r#"{"vote":"yes"}"#),
            400,
            "invalid proposal id",
        ),
        ("GET", "/events?conversation=a%2Fb", None, 400, "'/'"),
        (
            "GET",
            "/events?conversaton=general",
            None,
            400,
            "unknown field",
        ),
        ("GET", "/nowhere", None, 404, "no such route"),
        ("DELETE", "/status", None, 405, "not allowed"),
    ];
    for (method, uri, body, status, fragment) in cases {
        let (got, ctype, text) = call(&app, method, uri, *body).await;
        assert_eq!(got.as_u16(), *status, "{method} {uri} {body:?}: {text}");
        assert!(
            text.contains(fragment),
            "{method} {uri}: {text:?} lacks {fragment:?}"
        );
        if *status >= 400 {
            let e: ErrorBody = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {uri}: not an error body: {text}"));
            assert!(!e.error.is_empty());
            assert!(
                ctype.starts_with("application/json"),
                "{method} {uri}: {ctype}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_is_prometheus_text() {
    let app = app();
    let (status, ctype, body) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(body.contains("# TYPE demls_up gauge"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_event_stream_over_a_socket() {
    let fake = Fake::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let access = access(listener.local_addr().unwrap());
    let server = tokio::spawn(serve(listener, fake.clone(), access, async {
        let _ = stop_rx.await;
    }));

    // Without the token: refused, with the API's message.
    match ApiClient::new(&url).unwrap().status().await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 401);
            assert!(message.contains("missing API token"), "{message}");
        }
        other => panic!("expected 401, got {other:?}"),
    }
    let api = ApiClient::new(&url)
        .unwrap()
        .with_token(Some(TOKEN.to_string()));
    let st = api.status().await.unwrap();
    assert_eq!(st.value.address, ME);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&st.raw).unwrap()["peers"],
        2
    );
    assert_eq!(api.show("general").await.unwrap().value.members.len(), 2);
    assert_eq!(
        api.remove("general", BOB).await.unwrap().value.proposal_id,
        7
    );
    assert!(
        api.vote("general", 7, false)
            .await
            .unwrap()
            .value
            .proposal_id
            == 7
    );
    assert_eq!(api.proposals("general").await.unwrap().value[0].expected, 2);
    assert_eq!(
        api.messages("general").await.unwrap().value[0].text,
        "hello"
    );
    assert_eq!(api.create("new").await.unwrap().value.state, "working");
    assert_eq!(
        api.join("joinme").await.unwrap().value.state,
        "pending_join"
    );
    assert!(api.leave("joinme").await.unwrap().value.leaving);
    assert_eq!(api.conversations().await.unwrap().value.len(), 3);
    assert!(api.metrics().await.unwrap().contains("demls_up"));
    assert_eq!(api.health().await.unwrap().value.status, "ok");
    match api.show("joinme").await {
        Err(ClientError::Http { status, message }) => {
            assert_eq!(status, 404);
            assert!(message.contains("not in conversation"));
        }
        other => panic!("expected 404, got {other:?}"),
    }
    // Names that need escaping in a URL reach the server intact (and are refused there).
    match api.show("a?b#c%").await {
        Err(ClientError::Http { status, .. }) => assert_eq!(status, 404),
        other => panic!("expected 404, got {other:?}"),
    }

    // Events: filtered by conversation; the stream ends when the server stops.
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let api2 = api.clone();
    let reader = tokio::spawn(async move {
        api2.events(Some("general"), |e| ev_tx.send(e).is_ok())
            .await
    });
    // Wait until the stream is subscribed, then send to two conversations.
    for _ in 0..100 {
        if fake.events.receiver_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.send("new", "elsewhere").await.unwrap();
    api.send("general", "hi there").await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), ev_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.event, "chat");
    let view: EventView = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(view.conversation, "general");
    assert_eq!(view.data["text"], "hi there");

    stop_tx.send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("stream ended at shutdown");
    done.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // And now nothing answers.
    match api.status().await {
        Err(e @ ClientError::Unreachable(_)) => {
            assert_eq!(
                e.to_string(),
                format!("cannot reach the node API at {url} (is the node running?)")
            );
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}
