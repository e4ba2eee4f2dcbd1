//! HTTP on one listener: `/metrics`, `/healthz`, `/readyz`, and the read-only JSON API
//! `/v1/status`, `/v1/resolve/{domain}/{key}`, `/v1/explain/{domain}/{key}`.
//!
//! Handlers read the current snapshot from the `ArcSwap`; nothing here waits on a reload.
//! Connections are capped, header reads time out, and oversized headers are refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::domain::Domain;
use crate::resolver::Requirements;
use crate::served::View;

const MAX_CONNECTIONS: usize = 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line plus headers; a GET needs far less.
const MAX_HEADER_BYTES: usize = 16 * 1024;

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

pub async fn serve(listener: TcpListener, view: View, mut shutdown: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Over the cap, drop the connection at once rather than queue it.
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else { continue };
                let _ = stream.set_nodelay(true);
                let view = view.clone();
                let service = hyper::service::service_fn(move |req| {
                    let view = view.clone();
                    async move { Ok::<_, Infallible>(handle(&req, &view)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_HEADER_BYTES)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
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

fn handle<B>(req: &Request<B>, view: &View) -> Response<Full<Bytes>> {
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
        Route::Status => json(view, StatusCode::OK, &view.status_json()),
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
        let (snapshot, _) = crate::engine::build_snapshot(&settings, &[m], &Default::default());
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
        handle(&req, view)
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
