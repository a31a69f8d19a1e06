//! Who may use the API: the per-node token, the `Host` check (DNS rebinding), the
//! `Origin` check, and state-changing requests a cross-site form could send.
//!
//! Every request goes through [`check`], in this order:
//!
//! 1. `Host` must name this API: `localhost`, a loopback address or the listen address,
//!    at the listen port, or an entry of `api.allowed_hosts`. A node listening on all
//!    interfaces (`0.0.0.0`, `::`) also accepts any IP address at any port (a DNS
//!    rebinding page always sends its own *name*; an IP literal never comes from one).
//!    Otherwise 421.
//! 2. An `Origin` header, when present, must be this API's own origin (`http://` and the
//!    request's `Host`): a page of another origin gets 403, whatever it asks.
//! 3. Every route but `GET /health`, `GET /health/live` and the web UI's static files
//!    (`GET /`, `GET /ui/…`) needs `Authorization: Bearer TOKEN`; 401 otherwise.
//! 4. `POST`, `PUT`, `PATCH` and `DELETE` need `Content-Type: application/json` or the
//!    header `X-Demls-Request` (what an HTML form cannot send); 415 otherwise.
//!
//! The token is created at first start in the data directory ([`ApiToken::load_or_create`],
//! file `api-token`, mode 0600) and compared in constant time.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::server::error_response;

/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "api-token";

/// The custom header that marks a state-changing request as not coming from an HTML form
/// (an alternative to `Content-Type: application/json`).
pub const REQUEST_HEADER: &str = "x-demls-request";

/// Shortest and longest token accepted from a file someone wrote by hand.
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 32..=256;

/// Why the token file could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading or creating the file failed.
    #[error("API token file {path}: {source}")]
    Io {
        /// The token file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file may be read by other users.
    #[error(
        "API token file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a usable token.
    #[error("API token file {path}: {reason}")]
    Malformed {
        /// The token file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The secret that every API request but `GET /health` carries as
/// `Authorization: Bearer TOKEN`. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

impl ApiToken {
    /// A new random token: 32 bytes from the operating system's RNG, as 64 hex digits.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// A token from text (surrounding whitespace ignored): 32 to 256 visible ASCII
    /// characters.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if !TOKEN_LEN.contains(&t.len()) {
            return Err(format!(
                "a token is {} to {} characters, got {}",
                TOKEN_LEN.start(),
                TOKEN_LEN.end(),
                t.len()
            ));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is visible ASCII characters only (no spaces)".into());
        }
        Ok(Self(t.to_string()))
    }

    /// The token text (what goes after `Bearer `).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }

    /// The token file of a data directory.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(TOKEN_FILE)
    }

    /// Reads a token file; refuses one that group or others may read.
    pub fn read(path: &Path) -> Result<Self, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(TokenError::Malformed {
                path: path.to_path_buf(),
                reason: "not a regular file".into(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TokenError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|reason| TokenError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Reads `path`, or creates it with a new token if it does not exist: the file is
    /// created with mode 0600 (never wider, not even for a moment). The flag says whether
    /// it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), TokenError> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Ok((Self::read(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TokenError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let token = Self::generate();
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let write = || -> std::io::Result<()> {
            let mut f = opts.open(path)?;
            f.write_all(format!("{}\n", token.0).as_bytes())?;
            f.sync_all()
        };
        match write() {
            Ok(()) => Ok((token, true)),
            // Another process created it in between: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::read(path)?, false))
            }
            Err(source) => {
                let _ = fs::remove_file(path);
                Err(TokenError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Equality of two byte strings whose running time depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// An `api.allowed_hosts` entry: a host name or address the API answers to besides
/// loopback and its listen address, at the listen port or at `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case host name, or IP address text (IPv6 without brackets).
    pub host: String,
    /// The port clients use; `None`: the API's listen port.
    pub port: Option<u16>,
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

impl std::str::FromStr for AllowedHost {
    type Err = String;
    /// `name`, `name:port`, `1.2.3.4[:port]`, `[::1][:port]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(s.trim()).ok_or_else(|| {
            format!("{s:?} is not HOST or HOST:PORT (e.g. \"node.example\", \"127.0.0.1:18646\")")
        })?;
        if host.parse::<IpAddr>().is_err() && !is_dns_name(&host) {
            return Err(format!("{host:?} is neither a host name nor an IP address"));
        }
        Ok(Self { host, port })
    }
}

fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Splits `host[:port]` (IPv6 in brackets) into the lower-case host without brackets or a
/// trailing dot, and the port. `None` if it is not of that form.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return None, // bare IPv6 without brackets
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

/// The hosts a listener answers to (see the module documentation).
#[derive(Debug, Clone)]
pub struct HostPolicy {
    listen: SocketAddr,
    allowed: Vec<AllowedHost>,
}

impl HostPolicy {
    /// For a listener on `listen`, plus the `allowed` hosts.
    pub fn new(listen: SocketAddr, allowed: Vec<AllowedHost>) -> Self {
        Self { listen, allowed }
    }

    /// Whether a `Host` header value names this listener; the error says what it expects.
    pub fn check(&self, host: &str) -> Result<(), String> {
        let port = self.listen.port();
        if let Some((h, p)) = split_host_port(host) {
            let p = p.unwrap_or(80);
            let any_ip = self.listen.ip().is_unspecified();
            let ours = match h.parse::<IpAddr>() {
                Ok(ip) => any_ip || (p == port && (ip.is_loopback() || ip == self.listen.ip())),
                Err(_) => h == "localhost" && (p == port || any_ip),
            };
            let listed = self
                .allowed
                .iter()
                .any(|a| a.host == h && a.port.unwrap_or(port) == p);
            if ours || listed {
                return Ok(());
            }
        }
        let mut expected = vec![format!("localhost:{port}"), format!("127.0.0.1:{port}")];
        if self.listen.ip().is_unspecified() {
            expected = vec!["localhost".into(), "any IP address".into()];
        } else if !self.listen.ip().is_loopback() {
            expected.push(self.listen.to_string());
        }
        expected.extend(self.allowed.iter().map(|a| match a.port {
            Some(_) => a.to_string(),
            None => format!("{a}:{port}"),
        }));
        Err(format!(
            "request refused: Host {host:?} is not this node's API (it answers to {}; add \
             other names to api.allowed_hosts)",
            expected.join(", ")
        ))
    }
}

/// Everything the API checks before a request reaches a route.
#[derive(Debug, Clone)]
pub struct ApiAccess {
    token: ApiToken,
    hosts: HostPolicy,
}

impl ApiAccess {
    /// The checks of an API listening on `listen` that answers to `allowed_hosts` too.
    pub fn new(token: ApiToken, listen: SocketAddr, allowed_hosts: Vec<AllowedHost>) -> Self {
        Self {
            token,
            hosts: HostPolicy::new(listen, allowed_hosts),
        }
    }

    /// The token requests must carry.
    pub fn token(&self) -> &ApiToken {
        &self.token
    }
}

/// A refusal: status and message.
type Refusal = (StatusCode, String);

fn host_of(req: &Request) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// Step 1: the `Host` header (421 Misdirected Request otherwise).
pub(crate) fn check_host(hosts: &HostPolicy, req: &Request) -> Result<(), Refusal> {
    let host = host_of(req).unwrap_or("");
    hosts
        .check(host)
        .map_err(|m| (StatusCode::MISDIRECTED_REQUEST, m))
}

/// Step 2: an `Origin` must be the API's own (`http(s)://` + the accepted `Host`).
fn check_origin(req: &Request) -> Result<(), Refusal> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let own = host_of(req).and_then(split_host_port);
    let same = origin
        .split_once("://")
        .and_then(|(scheme, rest)| {
            let default = match scheme.to_ascii_lowercase().as_str() {
                "http" => 80,
                "https" => 443,
                _ => return None,
            };
            let (h, p) = split_host_port(rest)?;
            Some((h, p.unwrap_or(default), default))
        })
        .zip(own)
        // A Host without a port means the default port of the scheme the page used.
        .is_some_and(|((oh, op, default), (hh, hp))| oh == hh && op == hp.unwrap_or(default));
    if same {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            format!(
                "request refused: Origin {origin:?} is not this API's origin (a web page of \
                 another origin may not use the node's API)"
            ),
        ))
    }
}

/// Step 3: `Authorization: Bearer TOKEN`.
fn check_token(token: &ApiToken, headers: &HeaderMap) -> Result<(), Refusal> {
    let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_string());
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing API token: send the header \"Authorization: Bearer TOKEN\"; the token is \
             in the file api-token of the node's data directory (the CLI reads it by itself \
             given the node's --config, or takes --api-token / DEMLS_API_TOKEN)",
        ));
    };
    let value = value.to_str().unwrap_or("").trim();
    let candidate = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => {
            return Err(unauthorized(
                "the Authorization header must be \"Bearer TOKEN\" (the API token)",
            ));
        }
    };
    if token.matches(candidate) {
        Ok(())
    } else {
        Err(unauthorized(
            "wrong API token (it is in the file api-token of the node's data directory)",
        ))
    }
}

/// Step 4: what an HTML form cannot send, on state-changing methods.
fn check_not_a_form(req: &Request) -> Result<(), Refusal> {
    if !matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return Ok(());
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if json || req.headers().contains_key(REQUEST_HEADER) {
        return Ok(());
    }
    Err((
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "state-changing requests need \"Content-Type: application/json\" (routes without a body \
         take an empty body or {}) or the header \"X-Demls-Request: 1\""
            .into(),
    ))
}

/// The routes that need no token: the health checks, and the web UI's page and assets
/// (static files without any secret; the page asks for the token and sends it as
/// `Authorization` itself).
fn open_route(req: &Request) -> bool {
    if req.method() != Method::GET {
        return false;
    }
    let path = req.uri().path();
    matches!(path, "/health" | "/health/live" | "/") || path.starts_with("/ui/")
}

/// Runs every check on `req`; the refusal's status and message otherwise.
pub(crate) fn check(access: &ApiAccess, req: &Request) -> Result<(), Refusal> {
    check_host(&access.hosts, req)?;
    check_origin(req)?;
    if !open_route(req) {
        check_token(&access.token, req.headers())?;
    }
    check_not_a_form(req)
}

/// The axum middleware around every route of the control API.
pub(crate) async fn middleware(
    State(access): State<Arc<ApiAccess>>,
    req: Request,
    next: Next,
) -> Response {
    match check(&access, &req) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => {
            let mut resp = error_response(status, message);
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"demls-node\""),
                );
            }
            resp
        }
    }
}

/// The middleware of the metrics listener: the `Host` check only (no token).
pub(crate) async fn host_only(
    State(hosts): State<Arc<HostPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    match check_host(&hosts, &req) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => error_response(status, message).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let a = ApiToken::generate();
        assert_eq!(a.as_str().len(), 64);
        assert_ne!(a, ApiToken::generate());
        assert!(a.matches(a.as_str()));
        assert!(!a.matches(&a.as_str()[1..]));
        assert!(!a.matches(""));
        assert!(!format!("{a:?}").contains(a.as_str()));
        assert!(ApiToken::parse("short").is_err());
        assert!(ApiToken::parse(&"x".repeat(257)).is_err());
        assert!(ApiToken::parse(&format!("{} x", "y".repeat(40))).is_err());
        assert_eq!(
            ApiToken::parse(&format!("  {}\n", "z".repeat(40)))
                .unwrap()
                .as_str(),
            "z".repeat(40)
        );
    }

    /// The token file is created with mode 0600 (never wider), read back on the next start,
    /// and refused once readable by others.
    #[test]
    fn token_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = ApiToken::path_in(tmp.path());
        let (a, created) = ApiToken::load_or_create(&p).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (b, created) = ApiToken::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            let e = ApiToken::load_or_create(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(&p, "bad").unwrap();
        let e = ApiToken::read(&p).unwrap_err().to_string();
        assert!(e.contains("32 to 256"), "{e}");
    }

    #[test]
    fn allowed_hosts_parse() {
        let h: AllowedHost = "Node.Example.".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("node.example", None));
        let h: AllowedHost = "127.0.0.1:18646".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("127.0.0.1", Some(18646)));
        let h: AllowedHost = "[::1]:9".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", Some(9)));
        assert_eq!(h.to_string(), "[::1]:9");
        for bad in [
            "", "a b", "x:y", "x:99999", "::1", "[zz]:1", "http://x", "-a.b",
        ] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_policy() {
        let local = HostPolicy::new("127.0.0.1:8645".parse().unwrap(), vec![]);
        for ok in [
            "127.0.0.1:8645",
            "localhost:8645",
            "[::1]:8645",
            "127.0.0.2:8645",
        ] {
            assert!(local.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:8645",
            "127.0.0.1:1",
            "localhost",
            "10.0.0.1:8645",
            "",
            "[::1",
        ] {
            let e = local.check(bad).unwrap_err();
            assert!(e.contains("localhost:8645"), "{e}");
        }
        let lan = HostPolicy::new(
            "192.168.1.5:8645".parse().unwrap(),
            vec![
                "node.lan".parse().unwrap(),
                "proxy.lan:443".parse().unwrap(),
            ],
        );
        for ok in [
            "192.168.1.5:8645",
            "node.lan:8645",
            "proxy.lan:443",
            "localhost:8645",
        ] {
            assert!(lan.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "192.168.1.6:8645",
            "node.lan:80",
            "proxy.lan",
            "evil.example:8645",
        ] {
            assert!(lan.check(bad).is_err(), "{bad}");
        }
        // All interfaces (the testnet, behind docker's port mapping): any IP literal.
        let any = HostPolicy::new("0.0.0.0:8645".parse().unwrap(), vec![]);
        for ok in [
            "127.0.0.1:18646",
            "172.31.250.11:8645",
            "localhost:18646",
            "[::1]:1",
        ] {
            assert!(any.check(ok).is_ok(), "{ok}");
        }
        assert!(any.check("evil.example:8645").is_err());
    }
}
