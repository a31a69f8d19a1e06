//! The API's access checks over a test double: the token (every route but `/health`), the
//! `Host` check against DNS rebinding, the `Origin` check, state-changing requests that a
//! cross-site form could send (no JSON content type, no custom header), and the metrics
//! listener of its own.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demls_node::api::types::ErrorBody;
use demls_node::api::{ApiAccess, ApiToken};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[path = "api_fake.rs"]
mod api_fake;
use api_fake::Fake;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const HOST: &str = "127.0.0.1:8645";

fn access() -> ApiAccess {
    ApiAccess::new(
        ApiToken::parse(TOKEN).unwrap(),
        HOST.parse().unwrap(),
        Vec::new(),
    )
}

fn app() -> axum::Router {
    demls_node::api::router(Fake::new(), access())
}

/// A request with the given headers (`None` value: header left out).
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(
            body.map(|s| Body::from(s.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

const BEARER: &str = "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn error(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body)
        .unwrap_or_else(|_| panic!("not an error body: {body}"))
        .error
}

#[tokio::test]
async fn the_token_is_required_on_every_route_but_health() {
    let app = app();
    let (s, body) = call(&app, "GET", "/health", &[("host", HOST)], None).await;
    assert_eq!(s, 200, "{body}");

    for (method, uri) in [
        ("GET", "/status"),
        ("GET", "/conversations"),
        ("GET", "/conversations/general"),
        ("GET", "/conversations/general/messages"),
        ("GET", "/conversations/general/proposals"),
        ("GET", "/events"),
        ("GET", "/metrics"),
        ("GET", "/nowhere"),
        ("POST", "/conversations/general/leave"),
    ] {
        let json = [("host", HOST), ("content-type", "application/json")];
        let (s, body) = call(&app, method, uri, &json, None).await;
        assert_eq!(s, 401, "{method} {uri} without a token: {body}");
        assert!(error(&body).contains("API token"), "{body}");

        let wrong = [
            ("host", HOST),
            ("content-type", "application/json"),
            (
                "authorization",
                "Bearer 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee",
            ),
        ];
        let (s, body) = call(&app, method, uri, &wrong, None).await;
        assert_eq!(s, 401, "{method} {uri} with a wrong token: {body}");
        assert!(error(&body).contains("wrong API token"), "{body}");
    }
    // Not "Bearer …", or a token of another length.
    for auth in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer short", TOKEN] {
        let (s, body) = call(
            &app,
            "GET",
            "/status",
            &[("host", HOST), ("authorization", auth)],
            None,
        )
        .await;
        assert_eq!(s, 401, "{auth}: {body}");
    }
    // The right one.
    let (s, body) = call(
        &app,
        "GET",
        "/status",
        &[("host", HOST), ("authorization", BEARER)],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(
        &app,
        "GET",
        "/status",
        &[
            ("host", HOST),
            ("authorization", &format!("bearer  {TOKEN} ")),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "scheme case-insensitive, spaces ignored: {body}");
}

#[tokio::test]
async fn hosts_other_than_ours_or_loopback_are_refused() {
    let app = app();
    for host in [
        "evil.example",
        "evil.example:8645",
        "127.0.0.1.evil.example:8645",
        "localhost.evil.example:8645",
        "127.0.0.1:9999",
        "localhost:80",
        "",
    ] {
        for uri in ["/status", "/health"] {
            let (s, body) = call(
                &app,
                "GET",
                uri,
                &[("host", host), ("authorization", BEARER)],
                None,
            )
            .await;
            assert_eq!(s, 421, "Host {host:?} {uri}: {body}");
            assert!(error(&body).contains("Host"), "{body}");
        }
    }
    for host in [
        HOST,
        "localhost:8645",
        "LocalHost:8645",
        "[::1]:8645",
        "localhost.:8645",
    ] {
        let (s, body) = call(
            &app,
            "GET",
            "/status",
            &[("host", host), ("authorization", BEARER)],
            None,
        )
        .await;
        assert_eq!(s, 200, "Host {host:?}: {body}");
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let app = app();
    let json = "application/json";
    for origin in [
        "http://evil.example",
        "http://evil.example:8645",
        "null",
        "http://127.0.0.1:9999",
        "https://127.0.0.1",
    ] {
        for (method, uri) in [("POST", "/conversations/general/leave"), ("GET", "/status")] {
            let (s, body) = call(
                &app,
                method,
                uri,
                &[
                    ("host", HOST),
                    ("authorization", BEARER),
                    ("content-type", json),
                    ("origin", origin),
                ],
                None,
            )
            .await;
            assert_eq!(s, 403, "Origin {origin} {method} {uri}: {body}");
            assert!(error(&body).contains("Origin"), "{body}");
        }
    }
    // Our own origin (the UI the node serves) is fine.
    let (s, body) = call(
        &app,
        "POST",
        "/conversations/general/leave",
        &[
            ("host", HOST),
            ("authorization", BEARER),
            ("content-type", json),
            ("origin", "http://127.0.0.1:8645"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
}

/// A cross-site form can POST with no body (or a form body) and no custom header: refused
/// even with the token (the token alone stops it; this is the second lock).
#[tokio::test]
async fn a_bodyless_post_without_json_or_the_custom_header_is_refused() {
    let app = app();
    let auth = ("authorization", BEARER);
    for ctype in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let mut h = vec![("host", HOST), auth];
        if let Some(c) = ctype {
            h.push(("content-type", c));
        }
        let (s, body) = call(&app, "POST", "/conversations/general/leave", &h, None).await;
        assert_eq!(s, 415, "{ctype:?}: {body}");
        assert!(error(&body).contains("application/json"), "{body}");
    }
    // JSON content type with no body, with `{}`, or the custom header: accepted.
    let (s, body) = call(
        &app,
        "POST",
        "/conversations/general/leave",
        &[("host", HOST), auth, ("content-type", "application/json")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(
        &app,
        "POST",
        "/conversations/joinme/join",
        &[
            ("host", HOST),
            auth,
            ("content-type", "application/json; charset=utf-8"),
        ],
        Some("{}"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(
        &app,
        "POST",
        "/conversations/joinme/leave",
        &[("host", HOST), auth, ("x-demls-request", "1")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // A bodyless route refuses fields it does not take.
    let (s, body) = call(
        &app,
        "POST",
        "/conversations/general/join",
        &[("host", HOST), auth, ("content-type", "application/json")],
        Some(r#"{"force": true}"#),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(error(&body).contains("takes no"), "{body}");
}

/// Metrics have a listener of their own, served without a token (Prometheus needs no
/// control API); the control API's `/metrics` needs the token like every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_listener() {
    let fake = Fake::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(demls_node::api::serve_metrics(
        listener,
        fake.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let get = |path: &'static str, host: String| async move {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        })
        .await
        .unwrap()
    };
    let r = get("/metrics", addr.to_string()).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("demls_up 1"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{r}"
    );
    let r = get("/metrics", format!("localhost:{}", addr.port())).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Nothing else there, and the Host check holds (DNS rebinding).
    let r = get("/status", addr.to_string()).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = get("/metrics", format!("evil.example:{}", addr.port())).await;
    assert!(r.starts_with("HTTP/1.1 421"), "{r}");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();

    // The control API: with the token only.
    let app = app();
    let (s, _) = call(&app, "GET", "/metrics", &[("host", HOST)], None).await;
    assert_eq!(s, 401);
    let (s, body) = call(
        &app,
        "GET",
        "/metrics",
        &[("host", HOST), ("authorization", BEARER)],
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.contains("demls_up 1"));
}
