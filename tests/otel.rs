//! OpenTelemetry export against real OTLP receivers on loopback (gRPC via tonic, and
//! HTTP/protobuf), and with the collector down.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::httpd::{Reply, Server};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attrs: HashMap<String, String>,
    service: String,
}

type Store = Arc<Mutex<Vec<Span>>>;

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn collect(req: ExportTraceServiceRequest, store: &Store) {
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| value(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                store.lock().unwrap().push(Span {
                    name: s.name,
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent: s.parent_span_id,
                    attrs: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), value(&a.value)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        collect(request.into_inner(), &self.0);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn grpc_receiver() -> (u16, Store, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let store: Store = Arc::default();
    let svc = TraceServiceServer::new(Grpc(Arc::clone(&store)));
    rt.spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    (port, store, rt)
}

fn setup(sb: &mut Sandbox, endpoint: &str, protocol: &str) -> std::net::TcpListener {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    sb.write(
        "etc/manifest.yaml",
        &format!("source: t\nentries:\n  - {{domain: adapter, key: cache, provider: redis, factory: f, priority: 5}}\n  - {{domain: adapter, key: cache, provider: memory, factory: f, health: {{tcp: \"127.0.0.1:{port}\"}}}}\n"),
    );
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_SERVICE_NAME", "oneiric-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("ONEIRIC_LOG_FORMAT", "json"),
    ] {
        sb.env.push((k.into(), v.into()));
    }
    probe
}

fn wait_spans(store: &Store, names: &[&str], limit: Duration) -> Vec<Span> {
    let all = |spans: &[Span]| names.iter().all(|n| spans.iter().any(|s| s.name == *n));
    let arrived = poll_until(limit, || all(&store.lock().unwrap()));
    let spans = store.lock().unwrap().clone();
    assert!(
        arrived,
        "spans {names:?} not all received; got {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    spans
}

fn exercise_and_check(sb: &Sandbox, store: &Store) {
    let mut svc = Service::start(sb, None, None, &[]);
    svc.signal("HUP");
    let o = sb.run(&["swap", "adapter", "cache", "memory"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    wait_spans(
        store,
        &["reload", "swap", "activate", "probe"],
        Duration::from_secs(20),
    );
    // Startup is the first reload: the same span, with its own trigger.
    let has = |spans: &[Span], t: &str| {
        spans
            .iter()
            .any(|s| s.name == "reload" && s.attrs.get("trigger").map(String::as_str) == Some(t))
    };
    assert!(
        poll_until(Duration::from_secs(20), || {
            let spans = store.lock().unwrap();
            has(&spans, "startup") && has(&spans, "sighup")
        }),
        "no startup and sighup reload spans"
    );
    let spans = store.lock().unwrap().clone();
    assert!(
        spans.iter().all(|s| s.service == "oneiric-test"),
        "service names: {:?}",
        spans.iter().map(|s| &s.service).collect::<Vec<_>>()
    );
    let reload = spans
        .iter()
        .find(|s| {
            s.name == "reload" && s.attrs.get("trigger").map(String::as_str) == Some("sighup")
        })
        .unwrap();
    assert_eq!(
        reload.attrs.get("trigger").map(String::as_str),
        Some("sighup")
    );
    assert_eq!(
        reload.attrs.get("result").map(String::as_str),
        Some("success")
    );
    // swap → activate → probe, one trace.
    let swap = spans.iter().find(|s| s.name == "swap").unwrap();
    assert_eq!(
        swap.attrs.get("provider").map(String::as_str),
        Some("memory")
    );
    let activate = spans
        .iter()
        .find(|s| s.name == "activate" && s.parent == swap.span_id)
        .expect("activate under swap");
    assert_eq!(activate.trace_id, swap.trace_id);
    assert_eq!(
        activate.attrs.get("outcome").map(String::as_str),
        Some("bound")
    );
    let probe = spans
        .iter()
        .find(|s| s.name == "probe" && s.parent == activate.span_id)
        .expect("probe under activate");
    assert_eq!(probe.attrs.get("ok").map(String::as_str), Some("true"));
    // Log lines inside a span carry its trace id.
    let trace_hex: String = reload.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    svc.signal("TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(15)), Some(0));
    let log = std::fs::read_to_string(sb.path("service.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"oneiric_event\":\"reload\"") && l.contains(&trace_hex)),
        "no reload log line with trace id {trace_hex}: {log}"
    );
}

#[test]
fn grpc_export_of_reload_swap_and_probe_spans() {
    let mut sb = Sandbox::new();
    let (port, store, _rt) = grpc_receiver();
    let _probe = setup(&mut sb, &format!("http://127.0.0.1:{port}"), "grpc");
    exercise_and_check(&sb, &store);
}

#[test]
fn http_protobuf_export() {
    let mut sb = Sandbox::new();
    let store: Store = Arc::default();
    let st = Arc::clone(&store);
    let server = Server::start(
        None,
        Arc::new(move |req| {
            if req.path == "/v1/traces" {
                if let Ok(r) = ExportTraceServiceRequest::decode(req.body.as_slice()) {
                    collect(r, &st);
                }
                Reply::Body {
                    body: Vec::new(),
                    etag: None,
                }
            } else {
                Reply::Status(404)
            }
        }),
    );
    let _probe = setup(
        &mut sb,
        &format!("http://127.0.0.1:{}", server.port),
        "http/protobuf",
    );
    exercise_and_check(&sb, &store);
}

#[test]
fn collector_down_never_blocks_and_counts_drops() {
    let mut sb = Sandbox::new();
    let dead = free_port();
    let _probe = setup(&mut sb, &format!("http://127.0.0.1:{dead}"), "grpc");
    let svc = Service::start(&sb, None, None, &[]);
    let start = Instant::now();
    loop {
        svc.signal("HUP");
        // Still serving, quickly, while exports fail.
        let t = Instant::now();
        assert_eq!(http(svc.port, "GET", "/v1/resolve/adapter/cache").0, 200);
        assert!(t.elapsed() < Duration::from_secs(1));
        let (_, metrics) = http(svc.port, "GET", "/metrics");
        let dropped: f64 = metrics
            .lines()
            .find(|l| l.starts_with("oneiric_otel_spans_dropped_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no drops counted: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(http(svc.port, "GET", "/readyz").0, 200);
    // The batch exporter runs on its own thread, off the service's runtime.
    assert!(
        thread_names(svc.pid())
            .iter()
            .any(|n| n.starts_with("OpenTelemetry")),
        "{:?}",
        thread_names(svc.pid())
    );
    let log = std::fs::read_to_string(sb.path("service.log")).unwrap();
    assert_eq!(
        log.matches("otel_export_failed").count(),
        1,
        "warning not rate-limited: {log}"
    );
}

#[test]
fn unset_means_no_exporter() {
    let sb = Sandbox::new();
    sb.write(
        "etc/manifest.yaml",
        "entries: [{domain: adapter, key: cache, provider: p, factory: f}]\n",
    );
    let svc = Service::start(&sb, None, None, &[]);
    // The "ready" line follows the listener by a moment.
    let start = Instant::now();
    let mut log = String::new();
    while !log.contains("traces off") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(sb.path("service.log")).unwrap();
    }
    assert!(
        log.contains("traces off (no OTEL_EXPORTER_OTLP_ENDPOINT)"),
        "{log}"
    );
    // No exporter thread.
    assert!(
        !thread_names(svc.pid())
            .iter()
            .any(|n| n.starts_with("OpenTelemetry"))
    );
}

fn thread_names(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

/// A manifest URL and a probe URL with credentials in them: the passwords reach neither the
/// log (at debug), nor `/v1/status`, `/metrics`, the CLI's views, nor any span exported.
#[test]
fn credentials_in_urls_reach_no_log_status_metric_cli_or_span() {
    let mut sb = Sandbox::new();
    let (otlp, store, _rt) = grpc_receiver();
    let _probe = setup(&mut sb, &format!("http://127.0.0.1:{otlp}"), "grpc");
    // Only the signed remote manifest: with trusted keys a local unsigned one is refused.
    std::fs::remove_file(sb.path("etc/manifest.yaml")).unwrap();
    let body = signed_fleet_manifest(&sb);
    // The first fetch fails (an error message with the URL in it), then the body.
    let failed_once = Arc::new(Mutex::new(false));
    let server = Server::start(
        None,
        Arc::new(move |req| {
            if req.path.starts_with("/health") {
                return Reply::Status(200);
            }
            let mut f = failed_once.lock().unwrap();
            if !*f {
                *f = true;
                return Reply::Status(500);
            }
            Reply::Body {
                body: body.clone(),
                etag: None,
            }
        }),
    );
    let url = format!(
        "http://fleet:s3cr3t-pw@127.0.0.1:{}/fleet.json",
        server.port
    );
    sb.write(
        "etc/remote.yml",
        &format!(
            "enabled: true\nmanifest_url: {url}\nallow_http: true\nmax_retries: 2\nretry_base_delay: 0.05\nretry_max_delay: 0.1\ntimeout_seconds: 2\nsignature_required: true\ntrusted_public_keys: [\"{TEST_KEY}\"]\n"
        ),
    );
    sb.write(
        "etc/adapters.yml",
        &format!(
            "candidates:\n  - {{key: queue, provider: mq, factory: f, priority: 9, health: {{http: \"http://probe:pr0be-pw@127.0.0.1:{}/health\", timeout_seconds: 2}}}}\n",
            server.port
        ),
    );
    let mut svc = Service::start(&sb, None, None, &[]);
    assert!(
        poll_until(Duration::from_secs(20), || http(
            svc.port,
            "GET",
            "/v1/resolve/service/api"
        )
        .0 == 200),
        "the remote manifest was not served: {}",
        std::fs::read_to_string(sb.path("service.log")).unwrap_or_default()
    );
    svc.signal("HUP");
    let o = sb.run(&["swap", "adapter", "queue", "mq", "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    wait_spans(
        &store,
        &["reload", "swap", "probe"],
        Duration::from_secs(20),
    );
    let mut seen = vec![
        ("/v1/status", http(svc.port, "GET", "/v1/status").1),
        ("/metrics", http(svc.port, "GET", "/metrics").1),
    ];
    for args in [
        &["status"][..],
        &["list"],
        &["explain", "adapter", "queue"],
        &["remote-status"],
        &["status", "--json"],
        &["remote-status", "--json"],
    ] {
        let o = sb.run(args);
        seen.push(("cli", format!("{args:?}: {}{}", stdout(&o), stderr(&o))));
    }
    svc.signal("TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(15)), Some(0));
    seen.push((
        "log",
        std::fs::read_to_string(sb.path("service.log")).unwrap(),
    ));
    for s in store.lock().unwrap().iter() {
        seen.push(("span", format!("{} {:?}", s.name, s.attrs)));
    }
    for (where_, text) in &seen {
        for secret in ["s3cr3t-pw", "pr0be-pw"] {
            assert!(
                !text.contains(secret),
                "{secret} in {where_}: {}",
                text.lines()
                    .filter(|l| l.contains(secret))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    // Redacted, not merely absent.
    let status = &seen[0].1;
    assert!(status.contains("fleet:***@127.0.0.1"), "{status}");
}
