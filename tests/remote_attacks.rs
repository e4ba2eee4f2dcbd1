//! A hostile origin on loopback, one attack at a time (issue 14, after TUF's attack list): each
//! must be refused with the served provider unchanged, the refusal logged with its reason,
//! counted in `oneiric_remote_rejections_total`, and visible in `oneiric remote-status`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::httpd::{Reply, Server, make_tls};
use common::*;

const KEY1_SEED: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY1: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

/// Signs `yaml` with KEY1 through the binary; `serial` and `expires_in` as `manifest sign`
/// takes them. `append` keeps the file's own timestamps (for a forged future `signed_at`).
fn sign_with(sb: &Sandbox, name: &str, yaml: &str, args: &[&str]) -> Vec<u8> {
    let key = sb.write("signing.key", KEY1_SEED);
    let src = sb.write(&format!("{name}.src.yaml"), yaml);
    let out = sb.path(&format!("{name}.signed.json"));
    sign_file(sb, &src, &key, &out, args)
}

fn signed(sb: &Sandbox, name: &str, provider: &str, serial: u64, expires_in: u64) -> Vec<u8> {
    sign_with(
        sb,
        name,
        &manifest(provider),
        &[
            "--serial",
            &serial.to_string(),
            "--expires-in",
            &expires_in.to_string(),
        ],
    )
}

/// `expires_at` of a signed manifest, as an `Instant` on this process's monotonic clock.
fn signed_expiry(signed: &[u8]) -> Instant {
    let doc: serde_json::Value = serde_json::from_slice(signed).unwrap();
    let text = doc["expires_at"].as_str().unwrap();
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    let left = at - time::OffsetDateTime::now_utc();
    let now = Instant::now();
    match Duration::try_from(left) {
        Ok(d) => now + d,
        Err(_) => now.checked_sub(Duration::try_from(-left).unwrap()).unwrap(),
    }
}

fn manifest(provider: &str) -> String {
    format!(
        "source: fleet\nentries:\n  - {{domain: adapter, key: cache, provider: {provider}, factory: f, priority: 50}}\n"
    )
}

/// An origin whose answer the test changes at will.
struct Origin {
    server: Server,
    reply: Arc<Mutex<Reply>>,
}

impl Origin {
    fn start(tls: Option<&common::httpd::Tls>, first: Reply) -> Self {
        let reply = Arc::new(Mutex::new(first));
        let r = Arc::clone(&reply);
        let server = Server::start(tls, Arc::new(move |_| r.lock().unwrap().clone()));
        Origin { server, reply }
    }

    fn serve(&self, body: Vec<u8>, etag: &str) {
        *self.reply.lock().unwrap() = Reply::Body {
            body,
            etag: Some(etag.into()),
        };
    }

    fn set(&self, r: Reply) {
        *self.reply.lock().unwrap() = r;
    }
}

/// An https origin serving `first`, settings trusting KEY1 for it, and the service started on
/// them (`extra` settings lines appended).
fn https_service(sb: &Sandbox, first: Vec<u8>, extra: &str) -> (Origin, String, Service) {
    let tls = make_tls();
    let origin = Origin::start(Some(&tls), Reply::Status(404));
    origin.serve(first, "\"first\"");
    let url = format!("https://localhost:{}/m.json", origin.server.port);
    settings(sb, &url, Some(&tls.ca_pem), extra);
    let svc = Service::start(sb, None, None, &[]);
    (origin, url, svc)
}

/// Settings with trusted keys and the *default* policy (no `signature_required`): what the
/// secure defaults must hold on their own.
fn settings(sb: &Sandbox, url: &str, ca: Option<&str>, extra: &str) {
    let ca_line = ca
        .map(|pem| format!("ca_file: {}\n", sb.write("ca.pem", pem).display()))
        .unwrap_or_default();
    sb.write(
        "etc/remote.yml",
        &format!(
            "enabled: true\nmanifest_url: {url}\n{ca_line}max_retries: 0\ntimeout_seconds: 2\nlatency_budget_ms: 3000\ncircuit_breaker_threshold: 1000\ntrusted_public_keys: [\"{KEY1}\"]\n{extra}"
        ),
    );
}

fn provider(port: u16) -> Option<String> {
    let (s, body) = http(port, "GET", "/v1/resolve/adapter/cache");
    if s != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["provider"].as_str().map(str::to_string)
}

/// Waits until the service serves `want` and `/readyz` says ready.
fn serving_and_ready(svc: &Service, want: &str) {
    assert!(
        poll_until(Duration::from_secs(30), || provider(svc.port).as_deref()
            == Some(want)),
        "{want} not served"
    );
    assert!(
        poll_until(Duration::from_secs(10), || http(svc.port, "GET", "/readyz")
            .0
            == 200),
        "not ready while serving {want}"
    );
}

fn rejections(port: u16, reason: &str) -> f64 {
    sample(
        &scrape(port),
        "oneiric_remote_rejections_total",
        &[("reason", reason)],
    )
    .unwrap_or(0.0)
}

fn log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.path("service.log")).unwrap_or_default()
}

/// Serves `body`, waits for one more rejection of `reason`, and checks the rest of the
/// contract: provider unchanged, reason in the log and in `remote-status`.
fn refused(sb: &Sandbox, svc: &Service, origin: &Origin, body: Reply, reason: &str, needle: &str) {
    let before = rejections(svc.port, reason);
    let logged = log(sb).matches(needle).count();
    let served = provider(svc.port);
    origin.set(body);
    // Both: a refusal of the body before this one may still be counted meanwhile.
    assert!(
        poll_until(Duration::from_secs(45), || rejections(svc.port, reason)
            > before
            && log(sb).matches(needle).count() > logged),
        "no `{reason}` rejection with `{needle}` counted and logged; log:\n{}",
        log(sb)
    );
    assert_eq!(provider(svc.port), served, "the served provider changed");
    let o = sb.run(&["remote-status", "--json"]);
    assert!(
        stdout(&o).contains(needle),
        "`{needle}` not in remote-status: {}",
        stdout(&o)
    );
}

fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / tck
}

#[test]
fn stripped_downgraded_duplicated_and_future_signatures_are_refused() {
    let sb = Sandbox::new();
    let (origin, url, svc) = https_service(&sb, signed(&sb, "v1", "good", 1, 3600), "");
    assert_eq!(provider(svc.port).as_deref(), Some("good"));

    // Signature stripping: trusted keys set, default policy: unsigned is refused.
    refused(
        &sb,
        &svc,
        &origin,
        Reply::Body {
            body: manifest("evil").into_bytes(),
            etag: Some("\"u\"".into()),
        },
        "signature",
        "unsigned, but signatures are required",
    );
    // An unknown algorithm is refused, not "not checked".
    let weird = String::from_utf8(signed(&sb, "alg", "evil", 2, 3600))
        .unwrap()
        .replace("\"ed25519\"", "\"none\"");
    refused(
        &sb,
        &svc,
        &origin,
        Reply::Body {
            body: weird.into_bytes(),
            etag: Some("\"alg\"".into()),
        },
        "signature",
        "unsupported signature_algorithm",
    );
    // signed_at in the future (a forged timestamp, validly signed): refused.
    let future = sign_with(
        &sb,
        "future",
        &format!(
            "{}signed_at: \"2099-01-01T00:00:00Z\"\nexpires_at: \"2099-02-01T00:00:00Z\"\nserial: 9\n",
            manifest("evil")
        ),
        &["--append"],
    );
    refused(
        &sb,
        &svc,
        &origin,
        Reply::Body {
            body: future,
            etag: Some("\"f\"".into()),
        },
        "signature",
        "in the future",
    );
    drop(svc);

    // The same key listed twice counts once: threshold 2 is not met by one signature.
    let ca = sb.path("ca.pem");
    sb.write(
        "etc/remote.yml",
        &format!(
            "enabled: true\nmanifest_url: {url}\nca_file: {}\nmax_retries: 0\nsignature_threshold: 2\ntrusted_public_keys: [\"{KEY1}\", \"{KEY1}\"]\n",
            ca.display()
        ),
    );
    let two = signed(&sb, "two", "evil", 10, 3600);
    origin.serve(two, "\"two\"");
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 7, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("1 valid signature(s) from distinct trusted keys, 2 required"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rollback_is_refused_live_after_restart_and_after_the_cache_is_gone() {
    let sb = Sandbox::new();
    let v1 = signed(&sb, "v1", "old", 1, 3600);
    let v2 = signed(&sb, "v2", "new", 2, 3600);
    // Same serial 2, different content: a second release must bump the serial.
    let v2b = signed(&sb, "v2b", "other", 2, 3600);
    let (origin, url, svc) = https_service(&sb, v2, "");
    assert_eq!(provider(svc.port).as_deref(), Some("new"));

    let older = Reply::Body {
        body: v1.clone(),
        etag: Some("\"v1\"".into()),
    };
    refused(
        &sb,
        &svc,
        &origin,
        older.clone(),
        "rollback",
        "rollback refused",
    );
    refused(
        &sb,
        &svc,
        &origin,
        Reply::Body {
            body: v2b,
            etag: Some("\"v2b\"".into()),
        },
        "rollback",
        "the same serial 2",
    );
    drop(svc);

    // Restarted with the origin still serving v1: the cached v2 is served, v1 refused.
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port).as_deref(), Some("new"));
    refused(
        &sb,
        &svc,
        &origin,
        older.clone(),
        "rollback",
        "rollback refused",
    );
    // kill -9: the mark is on disk already.
    svc.signal("KILL");
    drop(svc);

    // The cache deleted (as a purge would): still no way back to v1. The service starts
    // without the manifest, says it waits for a copy, and refuses v1 on every try.
    std::fs::remove_dir_all(sb.path("cache")).unwrap();
    std::fs::create_dir_all(sb.path("cache")).unwrap();
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port), None);
    let (status, body) = http(svc.port, "GET", "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("rollback refused"), "{body}");
    let o = sb.run(&["remote-status"]);
    assert!(stdout(&o).contains("serial 2"), "{}", stdout(&o));

    // A newer release is accepted, and the service becomes ready.
    origin.serve(signed(&sb, "v3", "newest", 3, 3600), "\"v3\"");
    serving_and_ready(&svc, "newest");
    drop(svc);

    // The deliberate way back says what it does, and then v1 is accepted.
    let o = sb.run(&["remote-reset-rollback", &url]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("older ones included"), "{}", stdout(&o));
    origin.set(older);
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn freeze_expiry_makes_the_service_not_ready_and_a_fresh_manifest_recovers() {
    let sb = Sandbox::new();
    let short = signed(&sb, "short", "soon-stale", 1, 8);
    // The deadline is the one the manifest carries (signed_at is whole seconds, so it lies
    // 7 to 8 s after signing), not a guess from the test's own clock.
    let expired_at = signed_expiry(&short);
    let (origin, url, svc) = https_service(&sb, short, "");
    assert_eq!(http(svc.port, "GET", "/readyz").0, 200);

    // The origin answers 304 from now on (conditional requests match): unauthenticated
    // "unchanged" must not count as fresh.
    origin.set(Reply::NotModified);
    assert!(
        poll_until(Duration::from_secs(15), || http(svc.port, "GET", "/readyz")
            .0
            == 503),
        "still ready after expires_at; log:\n{}",
        log(&sb)
    );
    let seen = Instant::now();
    // Not before expires_at (the daemon judges it by the same clock), and within one refresh
    // interval (1 s) of it plus the poll's slack.
    assert!(
        seen + Duration::from_millis(200) >= expired_at,
        "not ready {:?} before expires_at",
        expired_at - seen
    );
    assert!(
        seen < expired_at + Duration::from_secs(3),
        "not ready only {:?} after expires_at",
        seen - expired_at
    );
    let (_, why) = http(svc.port, "GET", "/readyz");
    assert!(why.contains("EXPIRED"), "{why}");
    // The gauge follows on the next refresh tick.
    assert!(poll_until(Duration::from_secs(3), || sample(
        &scrape(svc.port),
        "oneiric_manifest_expired",
        &[("origin", url.as_str())]
    ) == Some(1.0)));
    let (_, status) = http(svc.port, "GET", "/v1/status");
    assert!(status.contains("EXPIRED"), "{status}");
    assert!(log(&sb).contains("manifest_expired"));
    // keep_serving (the default): answers continue from the last good state.
    assert_eq!(provider(svc.port).as_deref(), Some("soon-stale"));

    // Origin down entirely: still not ready, still serving.
    origin.set(Reply::Status(503));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(http(svc.port, "GET", "/readyz").0, 503);

    // A fresh manifest: ready again.
    origin.serve(signed(&sb, "fresh", "fresh", 2, 3600), "\"f\"");
    assert!(poll_until(Duration::from_secs(15), || http(
        svc.port, "GET", "/readyz"
    )
    .0 == 200));
    assert_eq!(provider(svc.port).as_deref(), Some("fresh"));
    assert!(poll_until(Duration::from_secs(3), || sample(
        &scrape(svc.port),
        "oneiric_manifest_expired",
        &[("origin", url.as_str())]
    ) == Some(0.0)));
    drop(svc);

    // on_expired: refuse stops resolution answers while expired.
    let ca = std::fs::read_to_string(sb.path("ca.pem")).unwrap();
    settings(&sb, &url, Some(&ca), "on_expired: refuse\n");
    origin.serve(signed(&sb, "short2", "soon-stale", 3, 8), "\"s2\"");
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port).as_deref(), Some("soon-stale"));
    origin.set(Reply::Status(503));
    assert!(poll_until(Duration::from_secs(20), || http(
        svc.port,
        "GET",
        "/v1/resolve/adapter/cache"
    )
    .0 == 503));
}

#[test]
fn endless_data_and_slow_parses_are_cut_by_named_limits_in_under_a_second() {
    let sb = Sandbox::new();
    let good = signed(&sb, "good", "good", 1, 3600);
    let origin = Origin::start(None, Reply::Status(404));
    origin.serve(good, "\"g\"");
    let url = format!("http://127.0.0.1:{}/m.json", origin.server.port);
    settings(&sb, &url, None, "allow_http: true\n");
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port).as_deref(), Some("good"));

    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let wide = format!(
        "base: &b [{}]\nrefs: [{}]\nentries: []\n",
        vec!["v"; 2000].join(", "),
        vec!["*b"; 50_000].join(", ")
    );
    let empty_entries = format!(
        "{{\"entries\":[{}]}}",
        vec!["{}"; 11 * 1024 * 1024 / 3].join(",")
    );
    let tiny_yaml = format!("x: [{}]\n", vec!["[]"; 2_100_000].join(","));
    for (name, body, needle) in [
        ("alias bomb", laughs, "expands to more"),
        ("wide aliases", wide, "expands to more"),
        ("empty entries", empty_entries, "items (manifest limit)"),
        ("tiny YAML nodes", tiny_yaml, "YAML events"),
    ] {
        let cpu = cpu_seconds(svc.pid());
        let counted = rejections(svc.port, "invalid");
        let t = Instant::now();
        refused(
            &sb,
            &svc,
            &origin,
            Reply::Body {
                body: body.into_bytes(),
                etag: Some(format!("\"{name}\"")),
            },
            "invalid",
            needle,
        );
        let spent = cpu_seconds(svc.pid()) - cpu;
        // Per refused document: on a slow machine the refresh timer (1 s here) fetches and
        // refuses the same body again before the refusal is seen, and each costs its own.
        let refusals = (rejections(svc.port, "invalid") - counted).max(1.0);
        let per_document = spent / refusals;
        assert!(
            per_document < 1.0,
            "{name}: {per_document:.2} s of CPU per refusal ({spent:.2} s for {refusals} refusals, wall {:?})",
            t.elapsed()
        );
        assert_eq!(http(svc.port, "GET", "/readyz").0, 200, "{name}: not ready");
    }
}

#[test]
fn redirects_keep_to_https_and_the_auth_header_to_its_origin() {
    let mut sb = Sandbox::new();
    sb.env
        .push(("ONEIRIC_REMOTE_TOKEN".into(), "s3cret-token".into()));
    let tls = make_tls();
    let good = signed(&sb, "good", "good", 1, 3600);
    // Another origin (127.0.0.1, not localhost) that records what it is sent.
    let elsewhere = Origin::start(Some(&tls), Reply::Status(404));
    let http_origin = Origin::start(None, Reply::Status(404));
    http_origin.serve(good.clone(), "\"h\"");
    let origin = Origin::start(Some(&tls), Reply::Status(404));
    let url = format!("https://localhost:{}/m.json", origin.server.port);
    settings(
        &sb,
        &url,
        Some(&tls.ca_pem),
        "allow_http: true\nauth:\n  header_name: X-Fleet-Token\n",
    );

    // https -> http: refused even with allow_http.
    origin.set(Reply::Redirect(format!(
        "http://127.0.0.1:{}/m.json",
        http_origin.server.port
    )));
    let o = sb.run(&["remote-sync"]);
    assert_ne!(code(&o), 0);
    assert!(
        stdout(&o).contains("never from https to another scheme"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        http_origin.server.count(),
        0,
        "the http origin was contacted"
    );

    // To another https origin: followed, but the custom auth header stays behind.
    elsewhere.serve(good, "\"e\"");
    origin.set(Reply::Redirect(format!(
        "https://localhost:{}/m.json",
        elsewhere.server.port
    )));
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        origin.server.last().unwrap().header("x-fleet-token"),
        Some("s3cret-token")
    );
    let got = elsewhere.server.last().unwrap();
    assert_eq!(got.header("x-fleet-token"), None, "auth header forwarded");

    // Artifacts obey allow_http too.
    let payload = b"artifact".to_vec();
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    http_origin.set(Reply::Body {
        body: payload,
        etag: None,
    });
    let art = sign_with(
        &sb,
        "art",
        &format!(
            "source: fleet\nentries:\n  - {{domain: adapter, key: cache, provider: a, factory: f, uri: \"http://127.0.0.1:{}/a.whl\", sha256: \"{sha}\"}}\n",
            http_origin.server.port
        ),
        &["--serial", "5", "--expires-in", "3600"],
    );
    origin.serve(art, "\"a\"");
    settings(&sb, &url, Some(&tls.ca_pem), "");
    let o = sb.run(&["remote-sync"]);
    assert!(
        stdout(&o).contains("1 artifact(s) failed"),
        "{}",
        stdout(&o)
    );
    assert_eq!(http_origin.server.count(), 0, "artifact fetched over http");
}

#[test]
fn first_boot_with_a_remote_only_configuration_and_no_cache_starts() {
    let sb = Sandbox::new();
    let tls = make_tls();
    let origin = Origin::start(Some(&tls), Reply::Status(503));
    let url = format!("https://localhost:{}/m.json", origin.server.port);
    settings(&sb, &url, Some(&tls.ca_pem), "");
    // The unit's pre-start check passes (nothing offline is wrong); by hand, `--probe` says
    // the remote manifest is missing.
    let o = sb.run(&["health", "--pre-start"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("left out until a copy is fetched"),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["health", "--probe"]);
    assert_ne!(code(&o), 0, "{}", stdout(&o));

    let svc = Service::start(&sb, None, None, &[]);
    let (status, body) = http(svc.port, "GET", "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("waiting for the first copy"), "{body}");
    assert_eq!(http(svc.port, "GET", "/healthz").0, 200);

    // The origin comes up: fetched on the refresh timer, served, ready.
    origin.serve(signed(&sb, "v1", "first", 1, 3600), "\"v1\"");
    serving_and_ready(&svc, "first");
}

#[test]
fn urls_without_keys_and_without_expiry_need_named_opt_outs() {
    let sb = Sandbox::new();
    let origin = Origin::start(None, Reply::Status(404));
    origin.serve(manifest("plain").into_bytes(), "\"p\"");
    let url = format!("http://127.0.0.1:{}/m.yaml", origin.server.port);
    let plain = |extra: &str| {
        sb.write(
            "etc/remote.yml",
            &format!(
                "enabled: true\nmanifest_url: {url}\nallow_http: true\nmax_retries: 0\n{extra}"
            ),
        );
    };
    plain("");
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 7, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("insecure_unverified_urls"),
        "{}",
        stdout(&o)
    );
    // The migration of a reference user: both opt-outs, and loud.
    plain("insecure_unverified_urls: true\n");
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let o = sb.run(&["check"]);
    assert!(
        stdout(&o).contains("INSECURE: remote.insecure_unverified_urls"),
        "{}",
        stdout(&o)
    );
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(provider(svc.port).as_deref(), Some("plain"));
    assert_eq!(
        sample(
            &scrape(svc.port),
            "oneiric_insecure_option",
            &[("option", "remote.insecure_unverified_urls")]
        ),
        Some(1.0)
    );
    let (_, status) = http(svc.port, "GET", "/v1/status");
    assert!(status.contains("INSECURE"), "{status}");
    drop(svc);

    // Signed without expires_at: refused for a URL unless insecure_no_expiry.
    let key_settings = format!("trusted_public_keys: [\"{KEY1}\"]\n");
    plain(&key_settings);
    origin.serve(
        sign_with(&sb, "noexp", &manifest("signed"), &["--serial", "1"]),
        "\"n\"",
    );
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 7, "{}", stdout(&o));
    assert!(stdout(&o).contains("no expires_at"), "{}", stdout(&o));
    plain(&format!("{key_settings}insecure_no_expiry: true\n"));
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn a_signing_key_rolls_over_without_a_gap() {
    const KEY5: &str = "bnoc3Smwt4/ROvTFWY/v9O8qlxZuPKby5Pv8zYBQW/E=";
    let sb = Sandbox::new();
    let key5 = fixture_path("signatures/key5.seed");
    let origin = Origin::start(None, Reply::Status(404));
    let url = format!("http://127.0.0.1:{}/m.json", origin.server.port);
    let trust = |keys: &[&str]| {
        let list: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
        sb.write(
            "etc/remote.yml",
            &format!(
                "enabled: true\nmanifest_url: {url}\nallow_http: true\nmax_retries: 0\ntrusted_public_keys: [{}]\n",
                list.join(", ")
            ),
        );
    };
    let sync_ok = |step: &str| {
        let o = sb.run(&["remote-sync"]);
        assert_eq!(code(&o), 0, "{step}: {}{}", stdout(&o), stderr(&o));
        let o = sb.run(&["check"]);
        assert_eq!(code(&o), 0, "{step}: {}{}", stdout(&o), stderr(&o));
    };
    let append = |signed: Vec<u8>, name: &str| -> Vec<u8> {
        let src = sb.path(&format!("{name}.in.json"));
        std::fs::write(&src, signed).unwrap();
        let out = sb.path(&format!("{name}.both.json"));
        sign_file(&sb, &src, &key5, &out, &["--append", "--key-id", "new"])
    };

    // 0. The old key alone.
    trust(&[KEY1]);
    origin.serve(signed(&sb, "r1", "one", 1, 3600), "\"1\"");
    sync_ok("old key");
    // 1. Hosts trust both; 2. releases carry both signatures.
    trust(&[KEY1, KEY5]);
    origin.serve(append(signed(&sb, "r2", "two", 2, 3600), "r2"), "\"2\"");
    sync_ok("both keys, both signatures");
    // A host that has not picked up the new key yet still accepts the doubly signed release.
    trust(&[KEY1]);
    sync_ok("old settings, both signatures");
    // 3. The new key alone, once every host trusts it; then the old key goes.
    trust(&[KEY1, KEY5]);
    let mut only_new = append(signed(&sb, "r3", "three", 3, 3600), "r3");
    let mut v: serde_json::Value = serde_json::from_slice(&only_new).unwrap();
    let map = v.as_object_mut().unwrap();
    map.remove("signature");
    map.remove("signature_algorithm");
    only_new = serde_json::to_vec(&v).unwrap();
    origin.serve(only_new, "\"3\"");
    sync_ok("new key alone");
    trust(&[KEY5]);
    sync_ok("old key removed");
    // Never an unsigned one, at any step.
    origin.serve(manifest("evil").into_bytes(), "\"u\"");
    let o = sb.run(&["remote-sync"]);
    assert_eq!(code(&o), 7, "{}", stdout(&o));
}
