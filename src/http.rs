//! HTTP on one listener: `/metrics`, `/healthz`, `/readyz`, and the read-only JSON API
//! `/v1/status`, `/v1/resolve/{domain}/{key}`, `/v1/explain/{domain}/{key}`.
//!
//! Handlers read the current snapshot from the `ArcSwap`; nothing here waits on a reload.
//! Connections are capped, header reads time out, and oversized headers are refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::daemon::Shared;
use crate::domain::Domain;
use crate::resolver::Requirements;

const MAX_CONNECTIONS: usize = 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Request line plus headers; a GET needs far less.
const MAX_HEADER_BYTES: usize = 16 * 1024;

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
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
                let shared = Arc::clone(&shared);
                let service = hyper::service::service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, Infallible>(handle(&req, &shared)) }
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
    shared: &Shared,
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    shared
        .metrics
        .http_requests
        .with_label_values(&[status.as_str()])
        .inc();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(
    shared: &Shared,
    status: StatusCode,
    value: &impl serde::Serialize,
) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    respond(shared, status, "application/json", body)
}

fn error(shared: &Shared, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(
        shared,
        status,
        &serde_json::json!({"error": message, "status": status.as_u16()}),
    )
}

fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let known = matches!(
        segments.as_slice(),
        ["metrics"]
            | ["healthz"]
            | ["readyz"]
            | ["v1", "status"]
            | ["v1", "resolve", _, _]
            | ["v1", "explain", _, _]
    );
    if !known {
        return error(
            shared,
            StatusCode::NOT_FOUND,
            &format!("no such endpoint: {path}"),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = error(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are allowed",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match segments.as_slice() {
        ["metrics"] => match shared.metrics.encode() {
            Ok(body) => respond(
                shared,
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            ),
            Err(e) => error(shared, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        ["healthz"] => respond(
            shared,
            StatusCode::OK,
            "text/plain; charset=utf-8",
            b"ok\n".to_vec(),
        ),
        ["readyz"] => {
            if shared.ready.load(Ordering::SeqCst) {
                respond(
                    shared,
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    b"ready\n".to_vec(),
                )
            } else {
                respond(
                    shared,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    b"not ready\n".to_vec(),
                )
            }
        }
        ["v1", "status"] => json(shared, StatusCode::OK, &crate::daemon::status_json(shared)),
        ["v1", action, domain, key] => {
            let Ok(domain) = domain.parse::<Domain>() else {
                return error(
                    shared,
                    StatusCode::BAD_REQUEST,
                    &format!("unknown domain `{domain}`"),
                );
            };
            if !crate::domain::is_valid_name(key) {
                return error(
                    shared,
                    StatusCode::BAD_REQUEST,
                    "key does not match ^[A-Za-z0-9_.-]+$",
                );
            }
            let req_caps = match requirements(req.uri().query()) {
                Ok(r) => r,
                Err(e) => return error(shared, StatusCode::BAD_REQUEST, &e),
            };
            let served = shared.served.load();
            if *action == "resolve" {
                let winner = served.snapshot.resolve_with(domain, key, &req_caps);
                let result = if winner.is_some() { "hit" } else { "miss" };
                shared
                    .metrics
                    .resolutions
                    .with_label_values(&[domain.as_str(), result])
                    .inc();
                match winner {
                    Some(c) => json(
                        shared,
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
                        shared,
                        StatusCode::NOT_FOUND,
                        &format!("no candidate for {domain}/{key}"),
                    ),
                }
            } else {
                match served.snapshot.explain(domain, key, &req_caps) {
                    Some(e) => json(shared, StatusCode::OK, &e),
                    None => error(
                        shared,
                        StatusCode::NOT_FOUND,
                        &format!("no candidates for {domain}/{key}"),
                    ),
                }
            }
        }
        _ => error(shared, StatusCode::NOT_FOUND, "no such endpoint"),
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
