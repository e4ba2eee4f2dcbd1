//! HTTP on one listener: `/metrics`, `/healthz`, `/readyz`, and the read-only JSON API
//! `/v1/status`, `/v1/resolve/{domain}/{key}`, `/v1/explain/{domain}/{key}`.
//!
//! Handlers read the current snapshot from the `ArcSwap`; nothing here waits on a reload.
//! Connections are capped, header reads time out, a connection with no byte moving either way
//! for a minute is closed (also while a response waits to be read), oversized headers are
//! refused, and the data routes answer only the `Host:` names of this machine (DNS
//! rebinding).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{
    ALLOW, AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::domain::Domain;
use crate::resolver::Requirements;
use crate::served::View;

const MAX_CONNECTIONS: usize = 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// One address may hold a quarter of the slots: the others stay for everyone else.
const MAX_PER_PEER: usize = MAX_CONNECTIONS / 4;
/// No byte read or written for this long ends a connection (see [`Idle`]).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request line plus headers; a GET needs far less.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a stopping server keeps its kept-alive connections open so that each client's
/// next request is answered, with `Connection: close`, instead of meeting a closed socket.
/// HTTP/1.1 cannot tell an idle client the server is going, so closing at once loses the
/// request a client had already sent (RFC 9112 9.3.1: only some clients retry it). Connections
/// still open after this are closed as before; active clients are done within one request.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Every endpoint: the one route table, from which the 404/405 answers and the ready log
/// line are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Metrics,
    Healthz,
    Readyz,
    Status,
    Resolve(&'a str, &'a str),
    Explain(&'a str, &'a str),
}

impl<'a> Route<'a> {
    /// The paths, as the ready line and README list them.
    pub const PATTERNS: [&'static str; 6] = [
        "/metrics",
        "/healthz",
        "/readyz",
        "/v1/status",
        "/v1/resolve/DOMAIN/KEY",
        "/v1/explain/DOMAIN/KEY",
    ];
    /// Every route answers these; anything else is 405 with `Allow:` this list.
    pub const METHODS: &'static str = "GET, HEAD";

    pub fn parse(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match segments.as_slice() {
            ["metrics"] => Route::Metrics,
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            ["v1", "status"] => Route::Status,
            ["v1", "resolve", d, k] => Route::Resolve(d, k),
            ["v1", "explain", d, k] => Route::Explain(d, k),
            _ => return None,
        })
    }
}

/// The bearer token of `http.bearer_token_file`. Never printed: its `Debug` says only that
/// it is set.
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("http.bearer_token_file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "http.bearer_token_file {path}: {why} (one line of 16 to 4096 visible ASCII characters)"
    )]
    Invalid {
        path: std::path::PathBuf,
        why: &'static str,
    },
}

impl Token {
    const MAX: u64 = 4096;

    pub fn read(path: &std::path::Path) -> Result<Self, TokenError> {
        use std::io::Read;
        let read_err = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |why| TokenError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut raw = Vec::new();
        file.take(Self::MAX + 2)
            .read_to_end(&mut raw)
            .map_err(read_err)?;
        // One trailing newline, as `echo` and editors leave it.
        let token = raw
            .strip_suffix(b"\n")
            .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
            .unwrap_or(&raw);
        if token.len() as u64 > Self::MAX {
            return Err(invalid("longer than 4096 bytes"));
        }
        if token.len() < 16 {
            return Err(invalid("shorter than 16 characters"));
        }
        if !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "holds a space, a control character or a non-ASCII byte",
            ));
        }
        Ok(Self(token.to_vec()))
    }

    /// Whether `header` is `Bearer <token>`, in time that does not depend on where a wrong
    /// token first differs.
    fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(given) = header.and_then(|h| h.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        if given.len() != self.0.len() {
            return false;
        }
        let diff = given
            .iter()
            .zip(&self.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

pub async fn serve(
    listener: TcpListener,
    view: View,
    token: Option<Arc<Token>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut backoff = crate::backoff::AcceptBackoff::default();
    let peers = PeerSlots::new(MAX_PER_PEER);
    let hostname = host_name();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Some((stream, _)) = backoff.check("http", accepted).await else {
                    continue;
                };
                // Over a cap, drop the connection at once rather than queue it.
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else { continue };
                let Some(slot) = stream.peer_addr().ok().and_then(|a| peers.take(a.ip())) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let view = view.clone();
                let hostname = hostname.clone();
                let stopping = shutdown.clone();
                let token = token.clone();
                let service = hyper::service::service_fn(move |req| {
                    let view = view.clone();
                    let hostname = hostname.clone();
                    let token = token.clone();
                    let closing = *stopping.borrow();
                    async move {
                        let mut response =
                            handle(&req, &view, hostname.as_deref(), token.as_deref());
                        if closing {
                            // hyper closes the connection once this response is written.
                            response
                                .headers_mut()
                                .insert(CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_HEADER_BYTES)
                    .serve_connection(TokioIo::new(Idle::new(stream, IDLE_TIMEOUT)), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop((permit, slot));
                });
            }
        }
    }
    // Every connection holds one of `limit`'s permits until it ends: all of them back means
    // every client has had its `Connection: close` answer.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(CLOSE_GRACE, limit.acquire_many(all)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// Connections per peer address. `take` is the one way in, dropping the slot the one way
/// out, so the count cannot drift from the connections alive.
#[derive(Clone)]
struct PeerSlots {
    max: usize,
    held: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

struct PeerSlot {
    ip: std::net::IpAddr,
    slots: PeerSlots,
}

impl PeerSlots {
    fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::default(),
        }
    }

    fn take(&self, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            ip,
            slots: self.clone(),
        })
    }

    #[cfg(test)]
    fn held(&self, ip: std::net::IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// A connection's idle deadline: no byte read or written for `idle` ends it with
/// `TimedOut`. hyper's header timeout covers only the wait for a request's head; this also
/// covers a response the peer never reads (its receive window full, pipelined requests
/// queued behind it) and a keep-alive connection left open, either of which would otherwise
/// hold one of the `MAX_CONNECTIONS` slots for good.
struct Idle<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// After a pending read or write: whether the deadline has passed (polling it also asks
    /// to be woken when it does).
    fn expired<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn after<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => self.expired(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.after(polled, cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after(polled, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.after(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn respond(
    view: &View,
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    view.metrics()
        .http_requests
        .with_label_values(&[status.as_str()])
        .inc();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(view: &View, status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    respond(view, status, "application/json", body)
}

fn error(view: &View, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(
        view,
        status,
        &serde_json::json!({"error": message, "status": status.as_u16()}),
    )
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The name a client on this network may rightly call the machine by, read once. From
/// uname(2): the unit's `ProcSubset=pid` hides /proc/sys/kernel/hostname.
fn host_name() -> Option<Arc<str>> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is 256 writable bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..end])
        .ok()
        .filter(|h| !h.is_empty())
        .map(Arc::from)
}

/// Whether a `Host:` value may be served the data routes (`/metrics`, `/v1/*`). A web page
/// that rebinds its own name to 127.0.0.1 reaches this listener with that name in `Host:`
/// (DNS rebinding); a client of this machine names it by an IP address, `localhost`, its
/// host name, or a name `http.allowed_hosts` adds. Names compare without case, port and
/// trailing dot.
pub fn host_allowed(host: &str, hostname: Option<&str>, allowed: &[String]) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').is_some_and(|(addr, port)| {
            addr.parse::<std::net::Ipv6Addr>().is_ok()
                && (port.is_empty()
                    || port
                        .strip_prefix(':')
                        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        });
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hostname.is_some_and(|h| h.eq_ignore_ascii_case(name))
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

fn handle<B>(
    req: &Request<B>,
    view: &View,
    hostname: Option<&str>,
    token: Option<&Token>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let Some(route) = Route::parse(path) else {
        return error(
            view,
            StatusCode::NOT_FOUND,
            &format!("no such endpoint: {path}"),
        );
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            view,
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(Route::METHODS));
        return r;
    }
    // Health answers whatever the name: it says nothing, and load balancers probe by theirs.
    // A request without `Host` (HTTP/1.0) is served: browsers always send one.
    if !matches!(route, Route::Healthz | Route::Readyz) {
        if let Some(host) = req.headers().get(HOST) {
            let host = String::from_utf8_lossy(host.as_bytes());
            let allowed = host_allowed(
                &host,
                hostname,
                &view.served().settings.settings.http.allowed_hosts,
            );
            if !allowed {
                return error(
                    view,
                    StatusCode::FORBIDDEN,
                    &format!(
                        "Host `{}` is not a name of this listener (DNS rebinding protection); to serve it, add it to http.allowed_hosts",
                        crate::text::one_line(&host)
                    ),
                );
            }
        }
    }
    if let Some(token) = token {
        if !matches!(route, Route::Healthz | Route::Readyz)
            && !token.accepts(req.headers().get(AUTHORIZATION))
        {
            let mut r = error(
                view,
                StatusCode::UNAUTHORIZED,
                "this endpoint needs `Authorization: Bearer TOKEN` (the token of http.bearer_token_file)",
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"oneiric\""),
            );
            return r;
        }
    }
    match route {
        Route::Metrics => match view.metrics().encode() {
            Ok(body) => respond(
                view,
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ),
            Err(e) => error(view, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Route::Healthz => respond(view, StatusCode::OK, TEXT, b"ok\n".to_vec()),
        Route::Readyz => match view.not_ready_reason() {
            None => respond(view, StatusCode::OK, TEXT, b"ready\n".to_vec()),
            Some(why) => respond(
                view,
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("{why}\n").into_bytes(),
            ),
        },
        Route::Status => respond(view, StatusCode::OK, "application/json", view.status_body()),
        Route::Resolve(domain, key) | Route::Explain(domain, key) => {
            if let Some(why) = view.refusing() {
                return error(view, StatusCode::SERVICE_UNAVAILABLE, &why);
            }
            let Ok(domain) = domain.parse::<Domain>() else {
                return error(
                    view,
                    StatusCode::BAD_REQUEST,
                    &format!("unknown domain `{domain}`"),
                );
            };
            if !crate::domain::is_valid_name(key) {
                return error(
                    view,
                    StatusCode::BAD_REQUEST,
                    "key does not match ^[A-Za-z0-9_.-]+$",
                );
            }
            let req_caps = match requirements(req.uri().query()) {
                Ok(r) => r,
                Err(e) => return error(view, StatusCode::BAD_REQUEST, &e),
            };
            let served = view.served();
            if matches!(route, Route::Resolve(..)) {
                let winner = served.snapshot.resolve_with(domain, key, &req_caps);
                let result = if winner.is_some() { "hit" } else { "miss" };
                view.metrics()
                    .resolutions
                    .with_label_values(&[domain.as_str(), result])
                    .inc();
                match winner {
                    Some(c) => json(
                        view,
                        StatusCode::OK,
                        &Resolved {
                            domain,
                            key,
                            provider: &c.provider,
                            candidate: &c,
                            generation: served.generation,
                        },
                    ),
                    None => error(
                        view,
                        StatusCode::NOT_FOUND,
                        &format!("no candidate for {domain}/{key}"),
                    ),
                }
            } else {
                match served.snapshot.explain(domain, key, &req_caps) {
                    Some(e) => json(view, StatusCode::OK, &e),
                    None => error(
                        view,
                        StatusCode::NOT_FOUND,
                        &format!("no candidates for {domain}/{key}"),
                    ),
                }
            }
        }
    }
}

/// The body of `/v1/resolve`, serialised straight from the snapshot (no intermediate tree).
#[derive(serde::Serialize)]
struct Resolved<'a> {
    domain: Domain,
    key: &'a str,
    provider: &'a str,
    candidate: &'a crate::resolver::Candidate,
    generation: u64,
}

/// `?capability=a&capability=b&any=true`.
fn requirements(query: Option<&str>) -> Result<Requirements, String> {
    let mut r = Requirements::none();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "capability" if crate::domain::is_valid_name(v) => r.capabilities.push(v.to_string()),
            "capability" => return Err(format!("bad capability `{v}`")),
            "any" => r.require_all = !matches!(v, "1" | "true" | ""),
            other => return Err(format!("unknown query parameter `{other}`")),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    use arc_swap::{ArcSwap, ArcSwapOption};

    use crate::engine::{LoadedSettings, SettingsSource};
    use crate::served::Served;

    #[test]
    fn every_pattern_parses_and_nothing_else_does() {
        let examples = [
            "/metrics",
            "/healthz",
            "/readyz",
            "/v1/status",
            "/v1/resolve/adapter/cache",
            "/v1/explain/adapter/cache",
        ];
        assert_eq!(examples.len(), Route::PATTERNS.len());
        for p in examples {
            assert!(Route::parse(p).is_some(), "{p}");
        }
        assert_eq!(
            Route::parse("/v1/resolve/adapter/cache"),
            Some(Route::Resolve("adapter", "cache"))
        );
        for p in [
            "/",
            "/v1",
            "/v1/resolve/adapter",
            "/v1/resolve/a/b/c",
            "/metrics/x",
        ] {
            assert_eq!(Route::parse(p), None, "{p}");
        }
    }

    fn view() -> (Arc<AtomicBool>, View) {
        let settings: LoadedSettings = crate::engine::load_settings(
            &SettingsSource {
                path: "/nonexistent-oneiric-test".into(),
                explicit: false,
            },
            &crate::config::Env::default(),
        )
        .expect("defaults");
        let m = crate::manifest::parse(
            "entries:\n  - {domain: adapter, key: cache, provider: redis, factory: f}\n",
            "t",
        )
        .expect("manifest");
        let (snapshot, _) = crate::engine::build_snapshot(&settings, vec![m], &Default::default());
        let served = Served {
            settings,
            manifests: Vec::new(),
            snapshot: Arc::new(snapshot),
            warnings: Vec::new(),
            demo: false,
            unavailable: Vec::new(),
            restored_from: None,
            generation: 1,
            loaded_at: std::time::SystemTime::now(),
            status_fixed: Default::default(),
        };
        let ready = Arc::new(AtomicBool::new(false));
        let v = View::new(
            Arc::new(ArcSwap::from_pointee(served)),
            Arc::new(ArcSwapOption::empty()),
            Arc::clone(&ready),
            Arc::new(crate::metrics::Metrics::new().expect("metrics")),
        );
        (ready, v)
    }

    fn get(view: &View, method: Method, uri: &str) -> Response<Full<Bytes>> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request");
        handle(&req, view, Some("node1"), None)
    }

    fn get_as(view: &View, host: &str, uri: &str) -> StatusCode {
        let req = Request::builder()
            .uri(uri)
            .header(HOST, host)
            .body(())
            .expect("request");
        handle(&req, view, Some("node1"), None).status()
    }

    #[test]
    fn the_status_body_is_one_object_whose_fixed_part_is_serialised_once_per_state() {
        let (ready, v) = view();
        let before: serde_json::Value = serde_json::from_slice(&v.status_body()).expect("json");
        assert_eq!(before["ready"], false);
        let fixed = v.served().status_fixed.get().map(|f| f.as_ptr());
        assert!(fixed.is_some());
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        let after: serde_json::Value = serde_json::from_slice(&v.status_body()).expect("json");
        // The readiness is read per request; the fixed part is the same bytes as before.
        assert_eq!(after["ready"], true);
        assert_eq!(v.served().status_fixed.get().map(|f| f.as_ptr()), fixed);
        for k in [
            "version",
            "generation",
            "candidates",
            "keys",
            "domains",
            "manifests",
            "warnings",
            "unavailable",
            "demo",
            "insecure_options",
            "not_ready_reason",
            "last_reload",
            "status",
        ] {
            assert!(after.get(k).is_some(), "{k} missing: {after}");
        }
        assert_eq!(after["keys"], 1);
        assert_eq!(v.status_json(), after);
    }

    #[test]
    fn a_token_guards_metrics_and_the_api_but_not_health() {
        let (_ready, v) = view();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("token");
        std::fs::write(&path, "0123456789abcdef-secret\n").unwrap();
        let token = Token::read(&path).expect("token");
        assert_eq!(format!("{token:?}"), "Token(***)");
        let ask = |uri: &str, auth: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(a) = auth {
                b = b.header(AUTHORIZATION, a);
            }
            handle(
                &b.body(()).expect("request"),
                &v,
                Some("node1"),
                Some(&token),
            )
        };
        for uri in ["/metrics", "/v1/status", "/v1/resolve/adapter/cache"] {
            let r = ask(uri, None);
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
            assert!(r.headers().contains_key(WWW_AUTHENTICATE));
            for wrong in [
                "Bearer 0123456789abcdef-secreX",
                "Bearer 0123456789abcdef",
                "bearer 0123456789abcdef-secret",
                "Basic MDEyMw==",
            ] {
                assert_eq!(
                    ask(uri, Some(wrong)).status(),
                    StatusCode::UNAUTHORIZED,
                    "{wrong}"
                );
            }
            assert_ne!(
                ask(uri, Some("Bearer 0123456789abcdef-secret")).status(),
                StatusCode::UNAUTHORIZED,
                "{uri}"
            );
        }
        assert_eq!(ask("/healthz", None).status(), StatusCode::OK);
        assert_ne!(ask("/readyz", None).status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_token_file_that_is_missing_short_or_odd_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("token");
        assert!(matches!(Token::read(&path), Err(TokenError::Read { .. })));
        for (body, why) in [
            ("short\n", "shorter than 16"),
            ("", "shorter than 16"),
            ("0123456789abcdef 0123\n", "a space"),
            ("0123456789abcdef\n\n", "control character"),
        ] {
            std::fs::write(&path, body).unwrap();
            let e = Token::read(&path).unwrap_err().to_string();
            assert!(
                e.contains(why) && e.contains("http.bearer_token_file"),
                "{body:?}: {e}"
            );
            assert!(!e.contains("0123456789abcdef"), "the token is printed: {e}");
        }
        std::fs::write(&path, "x".repeat(5000)).unwrap();
        assert!(
            Token::read(&path)
                .unwrap_err()
                .to_string()
                .contains("longer than 4096")
        );
    }

    #[test]
    fn one_peer_holds_at_most_its_share_of_the_connections() {
        let slots = PeerSlots::new(3);
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let mut held: Vec<PeerSlot> = (0..3).map(|_| slots.take(a).expect("slot")).collect();
        assert!(slots.take(a).is_none(), "a fourth connection from one peer");
        let other = slots.take(b).expect("another peer still gets one");
        held.pop();
        assert_eq!(slots.held(a), 2);
        held.push(slots.take(a).expect("a slot freed by a closed connection"));
        drop(held);
        drop(other);
        assert_eq!((slots.held(a), slots.held(b)), (0, 0));
        assert!(
            slots.held.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_loses_the_connection_at_the_idle_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The peer connects and never reads.
        let _peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        let mut conn = Idle::new(stream, Duration::from_millis(300));
        let chunk = vec![b'x'; 64 * 1024];
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = conn.write_all(&chunk).await {
                break e;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never timed out"
            );
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Progress keeps a connection alive: a read that gets bytes resets the deadline.
        let (mut a, b) = tokio::io::duplex(64);
        let mut b = Idle::new(b, Duration::from_millis(300));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            a.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            b.read_exact(&mut buf)
                .await
                .expect("read within the deadline");
        }
        let mut buf = [0u8; 1];
        let idle = b.read(&mut buf).await.expect_err("an idle read times out");
        assert_eq!(idle.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn host_names_of_this_machine_are_served_and_others_are_not() {
        let allowed = ["metrics.example.org".to_string()];
        let ok = |h| host_allowed(h, Some("node1"), &allowed);
        for h in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "10.1.2.3:9090",
            "[::1]:9090",
            "[fe80::1]",
            "localhost:9090",
            "LOCALHOST.",
            "node1:9090",
            "Metrics.Example.Org:443",
        ] {
            assert!(ok(h), "{h}");
        }
        for h in [
            "attacker.example:9090",
            "127.0.0.1.attacker.example",
            "localhost.attacker.example",
            "node1.attacker.example",
            "[::1",
            "[::1]x",
            "[evil]:80",
            "",
        ] {
            assert!(!ok(h), "{h}");
        }
        assert!(!host_allowed("node1", None, &[]));
    }

    #[test]
    fn a_rebound_name_gets_no_data_but_health_answers() {
        let (ready, view) = view();
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        for path in ["/v1/status", "/metrics", "/v1/resolve/adapter/cache"] {
            assert_eq!(
                get_as(&view, "rebind.attacker.example:9090", path),
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
        assert_eq!(
            get_as(&view, "127.0.0.1:9090", "/v1/status"),
            StatusCode::OK
        );
        assert_eq!(get_as(&view, "node1:9090", "/metrics"), StatusCode::OK);
        assert_eq!(
            get_as(&view, "rebind.attacker.example", "/healthz"),
            StatusCode::OK
        );
    }

    #[test]
    fn routes_answer_with_the_documented_statuses() {
        let (ready, view) = view();
        assert_eq!(
            get(&view, Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        let r = get(&view, Method::POST, "/v1/status");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            r.headers().get(ALLOW).map(|v| v.as_bytes()),
            Some(&b"GET, HEAD"[..])
        );
        // 404 before 405: an unknown path is unknown whatever the method.
        assert_eq!(
            get(&view, Method::POST, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&view, Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::SeqCst);
        assert_eq!(get(&view, Method::GET, "/readyz").status(), StatusCode::OK);
        assert_eq!(
            get(&view, Method::HEAD, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(
            get(&view, Method::GET, "/v1/resolve/adapter/cache").status(),
            StatusCode::OK
        );
        assert_eq!(
            get(&view, Method::GET, "/v1/resolve/adapter/nokey").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&view, Method::GET, "/v1/resolve/widget/cache").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            get(&view, Method::GET, "/v1/explain/adapter/cache?bogus=1").status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(get(&view, Method::GET, "/metrics").status(), StatusCode::OK);
        assert_eq!(
            get(&view, Method::GET, "/v1/status").status(),
            StatusCode::OK
        );
    }
}
