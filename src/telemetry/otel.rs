//! OpenTelemetry trace export over OTLP (gRPC, or HTTP/protobuf), configured by the standard
//! `OTEL_*` variables. Inert — no exporter, no thread — unless an OTLP endpoint is set.
//!
//! Spans go through the SDK's batch processor (bounded queue, its own thread, never blocking
//! the service). Export failures — a collector that is down — are counted in
//! `oneiric_otel_spans_dropped_total` and warned about at most once a minute.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use prometheus::IntCounter;

use crate::config::Env;

/// Why export is off, or how it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Off(&'static str),
    Grpc,
    HttpProtobuf,
}

/// Reads the standard variables: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`,
/// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`.
pub fn mode(env: &Env) -> Result<Mode, String> {
    if env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Ok(Mode::Off("OTEL_SDK_DISABLED=true"));
    }
    if env
        .get("OTEL_TRACES_EXPORTER")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return Ok(Mode::Off("OTEL_TRACES_EXPORTER=none"));
    }
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        && env.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
    {
        return Ok(Mode::Off("no OTEL_EXPORTER_OTLP_ENDPOINT"));
    }
    let protocol = env
        .get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env.get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or("grpc");
    match protocol.trim() {
        "grpc" => Ok(Mode::Grpc),
        "http/protobuf" => Ok(Mode::HttpProtobuf),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported (grpc or http/protobuf)"
        )),
    }
}

/// Sends OTLP/HTTP requests with the daemon's own reqwest client, on the tokio runtime it was
/// built in (the SDK's batch thread is not a tokio thread).
#[derive(Debug)]
struct ReqwestOnRuntime {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ReqwestOnRuntime {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = self.client.clone();
        let task = self.handle.spawn(async move {
            let req = reqwest::Request::try_from(request)?;
            let resp = client.execute(req).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            let mut out = opentelemetry_http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        });
        Ok(task.await??)
    }
}

/// Counts the spans of batches the collector did not take.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    dropped: IntCounter,
    last_warning: Mutex<Option<Instant>>,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.dropped.inc_by(n);
            let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                *last = Some(Instant::now());
                tracing::warn!(
                    oneiric_event = "otel_export_failed",
                    "OpenTelemetry export failed, {n} span(s) dropped (warning at most once a minute): {e}"
                );
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Builds the tracer provider. Must run inside the tokio runtime (the gRPC channel and the
/// HTTP client live on it).
pub fn provider(env: &Env, mode: &Mode, dropped: IntCounter) -> Result<SdkTracerProvider, String> {
    let mut resource = Resource::builder();
    let named_in_env = env.get("OTEL_SERVICE_NAME").is_some()
        || env
            .get("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.contains("service.name="));
    if !named_in_env {
        resource = resource.with_service_name("oneiric");
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let wrap = |inner| Counting {
        inner,
        dropped: dropped.clone(),
        last_warning: Mutex::new(None),
    };
    let provider = match mode {
        Mode::Off(_) => return Err("OpenTelemetry export is off".into()),
        Mode::Grpc => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .build()
                .map_err(|e| format!("OTLP gRPC exporter: {e}"))?;
            builder.with_batch_exporter(wrap(exporter)).build()
        }
        Mode::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .use_rustls_tls()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("OTLP HTTP client: {e}"))?;
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| "OTLP HTTP exporter needs the tokio runtime".to_string())?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(ReqwestOnRuntime { client, handle })
                .build()
                .map_err(|e| format!("OTLP HTTP exporter: {e}"))?;
            builder.with_batch_exporter(wrap(exporter)).build()
        }
    };
    Ok(provider)
}

pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("oneiric")
}

/// The current span's OpenTelemetry ids, when it is being exported.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
