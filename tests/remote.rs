//! Remote manifests against real local HTTPS and HTTP servers started by the test (a CA made in
//! the test): what is served, what is logged, which metric moved.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::httpd::{Reply, Server, make_tls};
use common::*;

const KEY1_SEED: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY1: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

fn sign(sb: &Sandbox, name: &str, yaml: &str, expires_in: u64) -> Vec<u8> {
    let key = sb.write("signing.key", KEY1_SEED);
    let src = sb.write(&format!("{name}.src.yaml"), yaml);
    let out = sb.path(&format!("{name}.signed.json"));
    sign_file(
        sb,
        &src,
        &key,
        &out,
        &["--expires-in", &expires_in.to_string()],
    )
}

fn manifest(provider: &str) -> String {
    format!(
        "source: fleet\nentries:\n  - {{domain: adapter, key: cache, provider: {provider}, factory: f, priority: 50}}\n  - {{domain: service, key: api, provider: v1, factory: f}}\n"
    )
}

fn remote_settings(sb: &Sandbox, url: &str, ca: Option<&str>, extra: &str) {
    let ca_line = ca
        .map(|pem| format!("ca_file: {}\n", sb.write("ca.pem", pem).display()))
        .unwrap_or_default();
    sb.write(
        "etc/remote.yml",
        &format!(
            "enabled: true\nmanifest_url: {url}\n{ca_line}max_retries: 3\nretry_base_delay: 0.05\nretry_max_delay: 0.2\ntimeout_seconds: 1\nlatency_budget_ms: 4000\ncircuit_breaker_threshold: 100\nsignature_required: true\ntrusted_public_keys: [\"{KEY1}\"]\n{extra}"
        ),
    );
}

fn metric(port: u16, series: &str) -> f64 {
    let (_, body) = http(port, "GET", "/metrics");
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn provider(port: u16) -> Option<String> {
    let (s, body) = http(port, "GET", "/v1/resolve/adapter/cache");
    if s != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["provider"].as_str().map(str::to_string)
}

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.path("service.log")).unwrap_or_default()
}

#[derive(Clone)]
enum Mode {
    Serve(Vec<u8>, &'static str),
    FailThenServe(u32, Vec<u8>, &'static str),
    Fixed(Reply),
}

#[test]
fn https_fetch_304_retries_signature_expiry_limits_and_cache() {
    let mut sb = Sandbox::new();
    sb.env
        .push(("ONEIRIC_REMOTE_TOKEN".into(), "Bearer s3cret-token".into()));
    let tls = make_tls();
    let v1 = sign(&sb, "v1", &manifest("redis-v1"), 3600);
    let mode = Arc::new(Mutex::new(Mode::Serve(v1.clone(), "\"v1\"")));
    let m = Arc::clone(&mode);
    let server = Server::start(
        Some(&tls),
        Arc::new(move |req| {
            let mut mode = m.lock().unwrap();
            match &mut *mode {
                Mode::Serve(body, etag) => {
                    if req.header("if-none-match") == Some(*etag) {
                        Reply::NotModified
                    } else {
                        Reply::Body {
                            body: body.clone(),
                            etag: Some(etag.to_string()),
                        }
                    }
                }
                Mode::FailThenServe(n, body, etag) => {
                    if *n > 0 {
                        *n -= 1;
                        Reply::Status(500)
                    } else {
                        Reply::Body {
                            body: body.clone(),
                            etag: Some(etag.to_string()),
                        }
                    }
                }
                Mode::Fixed(r) => r.clone(),
            }
        }),
    );
    let url = format!("https://localhost:{}/manifest.json", server.port);
    remote_settings(&sb, &url, Some(&tls.ca_pem), "");

    // Good manifest: fetched over TLS with the auth header, verified, served.
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port).as_deref(), Some("redis-v1"));
    assert_eq!(
        metric(svc.port, "oneiric_remote_fetches_total{result=\"updated\"}"),
        1.0
    );
    assert_eq!(
        server.last().unwrap().header("authorization"),
        Some("Bearer s3cret-token")
    );
    assert!(log(&sb).contains("remote_fetch"), "{}", log(&sb));
    assert!(!log(&sb).contains("s3cret"), "token leaked into the log");

    // Unchanged: a conditional request and a 304, nothing else moves.
    eventually("a 304", Duration::from_secs(10), || {
        metric(
            svc.port,
            "oneiric_remote_fetches_total{result=\"not_modified\"}",
        ) >= 1.0
    });
    assert_eq!(
        server.last().unwrap().header("if-none-match"),
        Some("\"v1\"")
    );
    assert_eq!(provider(svc.port).as_deref(), Some("redis-v1"));

    // 500s, then recovery within the retries: the new manifest is served.
    let v2 = sign(&sb, "v2", &manifest("redis-v2"), 3600);
    *mode.lock().unwrap() = Mode::FailThenServe(2, v2.clone(), "\"v2\"");
    eventually("v2 served", Duration::from_secs(15), || {
        provider(svc.port).as_deref() == Some("redis-v2")
    });
    assert!(log(&sb).contains("remote_retry"), "{}", log(&sb));
    assert_eq!(
        metric(svc.port, "oneiric_remote_fetches_total{result=\"updated\"}"),
        2.0
    );

    // Tampered signature: refused, counted, v2 keeps serving.
    let tampered = String::from_utf8(v2.clone())
        .unwrap()
        .replace("redis-v2", "evil");
    *mode.lock().unwrap() = Mode::Serve(tampered.into_bytes(), "\"v3\"");
    eventually("signature failure counted", Duration::from_secs(10), || {
        metric(svc.port, "oneiric_signature_failures_total") >= 1.0
    });
    assert_eq!(provider(svc.port).as_deref(), Some("redis-v2"));
    assert!(log(&sb).contains("signature"), "{}", log(&sb));

    // Expired manifest: refused, v2 keeps serving.
    let expired = sign(&sb, "v4", &manifest("redis-expired"), 1);
    std::thread::sleep(Duration::from_millis(1500));
    let rejected = metric(
        svc.port,
        "oneiric_remote_fetches_total{result=\"rejected\"}",
    );
    *mode.lock().unwrap() = Mode::Serve(expired, "\"v4\"");
    eventually("expired rejected", Duration::from_secs(10), || {
        metric(
            svc.port,
            "oneiric_remote_fetches_total{result=\"rejected\"}",
        ) > rejected
    });
    assert!(log(&sb).contains("expired"), "{}", log(&sb));
    assert_eq!(provider(svc.port).as_deref(), Some("redis-v2"));

    // Oversized body, a timeout, a trickling server: each fails, v2 keeps serving, and the
    // status says a cached copy is being served.
    for reply in [
        Reply::Huge(10 * 1024 * 1024 * 1024),
        Reply::Slow(Duration::from_secs(3), v2.clone()),
        Reply::Trickle(Duration::from_millis(300), v2.clone()),
    ] {
        let failed = metric(svc.port, "oneiric_remote_fetches_total{result=\"failed\"}");
        *mode.lock().unwrap() = Mode::Fixed(reply);
        eventually("fetch failure", Duration::from_secs(20), || {
            metric(svc.port, "oneiric_remote_fetches_total{result=\"failed\"}") > failed
        });
        assert_eq!(provider(svc.port).as_deref(), Some("redis-v2"));
    }
    assert!(log(&sb).contains("limit"), "{}", log(&sb));
    assert!(log(&sb).contains("timed out"), "{}", log(&sb));
    eventually(
        "status shows the cached copy",
        Duration::from_secs(10),
        || {
            let (_, body) = http(svc.port, "GET", "/v1/status");
            body.contains("from cache")
        },
    );
    drop(svc);

    // Server down at start, cache present: starts and serves the cached copy, and says so.
    drop(server);
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port).as_deref(), Some("redis-v2"));
    let (_, body) = http(svc.port, "GET", "/v1/status");
    assert!(body.contains("from cache"), "{body}");
    assert!(
        metric(
            svc.port,
            &format!("oneiric_manifest_age_seconds{{origin=\"{url}\"}}")
        ) >= 1.0
    );
    assert!(metric(svc.port, "oneiric_remote_fetches_total{result=\"failed\"}") >= 1.0);
    drop(svc);

    // Server down at start, no cache: the service starts without it (so that it can fetch
    // once the origin answers), is not ready, and says why; `check` fails on it.
    std::fs::remove_dir_all(sb.path("cache")).unwrap();
    std::fs::create_dir_all(sb.path("cache")).unwrap();
    let svc = Service::start(&sb, None, None, &[]);
    let (status, body) = http(svc.port, "GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no cached copy"), "{body}");
    assert_eq!(provider(svc.port), None);
    drop(svc);
    let o = sb.run(&["check"]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("no cached copy"), "{}", stderr(&o));
}

#[test]
fn artifacts_are_digest_checked_and_names_confined() {
    let sb = Sandbox::new();
    let payload = b"wheel bytes".to_vec();
    let good = sha256_hex(&payload);
    let p = payload.clone();
    let server = Server::start(
        None,
        Arc::new(move |req| {
            if req.path.starts_with("/m.yaml") {
                Reply::Status(404)
            } else {
                Reply::Body {
                    body: p.clone(),
                    etag: None,
                }
            }
        }),
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let yaml = format!(
        "source: fleet\nentries:\n  - {{domain: adapter, key: good, provider: p, factory: f, uri: \"{base}/dl/good.whl\", sha256: \"{good}\"}}\n  - {{domain: adapter, key: wrongsum, provider: p, factory: f, uri: \"{base}/dl/bad.whl\", sha256: \"{}\"}}\n  - {{domain: adapter, key: escape, provider: p, factory: f, uri: \"{base}/dl/..%2F..%2Fescape\", sha256: \"{good}0\"}}\n  - {{domain: adapter, key: plain, provider: p, factory: f}}\n",
        "0".repeat(64)
    );
    // The escape entry's sha256 is 65 chars: fix to a distinct valid digest.
    let yaml = yaml.replace(&format!("{good}0"), &"1".repeat(64));
    let signed = sign(&sb, "art", &yaml, 3600);
    let mserver = Server::serving(signed);
    let url = format!("http://127.0.0.1:{}/manifest.json", mserver.port);

    // Plain http is refused unless allowed.
    remote_settings(&sb, &url, None, "");
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 3, "{} {}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("allow_http"), "{}", stdout(&o));

    remote_settings(&sb, &url, None, "allow_http: true\n");
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("2 artifact(s) failed"),
        "{}",
        stdout(&o)
    );
    let stored = sb.path(&format!("cache/artifacts/{good}/good.whl"));
    assert_eq!(std::fs::read(&stored).unwrap(), payload);
    // Nothing was written outside the artifacts directory.
    assert!(!sb.path("cache/escape").exists() && !sb.path("escape").exists());

    // The loader serves the good and plain entries and skips the others with the reason.
    let o = sb.run(&["check"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("2 entries loaded, 2 skipped"), "{out}");
    assert!(out.contains("sha256 mismatch"), "{out}");
    assert!(out.contains("would leave the cache directory"), "{out}");
    let o = sb.run(&["remote-status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["cached"], true);
    drop(server);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
