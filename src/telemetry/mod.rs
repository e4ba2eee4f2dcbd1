//! Logging setup: native journald under systemd (structured `ONEIRIC_*` fields), otherwise
//! stderr as text or JSON; and, for the service, OpenTelemetry trace export when configured.

#[cfg(feature = "otel")]
pub mod otel;

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Accepts the spellings of Python's logging and of tracing: `INFO`, `warning`, `CRITICAL`...
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    use crate::config::LogLevel;
    crate::config::parse_log_level(s).map(|l| match l {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Off => LevelFilter::OFF,
    })
}

/// True when stderr is the journal stream systemd set up (`JOURNAL_STREAM=dev:inode`).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(var) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = var.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(owned) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let file = std::fs::File::from(owned);
    file.metadata()
        .map(|m| m.dev() == dev && m.ino() == ino)
        .unwrap_or(false)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journald,
    Text,
    Json,
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Journald => "the journal",
            Sink::Text => "stderr (text)",
            Sink::Json => "stderr (JSON)",
        })
    }
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// What `init` set up. Keep it alive for the process; `shutdown` flushes pending spans.
pub struct Telemetry {
    pub sink: Sink,
    /// How trace export is configured, for the startup log line.
    pub otel: String,
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops trace export within `timeout`. Blocking: call off the async threads.
    pub fn shutdown(&self, timeout: std::time::Duration) {
        #[cfg(feature = "otel")]
        if let Some(p) = &self.provider {
            if let Err(e) = p.shutdown_with_timeout(timeout) {
                tracing::warn!(
                    oneiric_event = "otel_shutdown",
                    "OpenTelemetry flush at shutdown: {e}"
                );
            }
        }
        #[cfg(not(feature = "otel"))]
        let _ = timeout;
    }
}

/// Trace export settings: the environment and the counter for dropped spans.
pub struct TraceExport<'a> {
    pub env: &'a crate::config::Env,
    pub dropped: prometheus::IntCounter,
}

/// Installs the global subscriber (once per process). With `traces`, and an OTLP endpoint in
/// the environment, spans are exported too; this must then run inside the tokio runtime.
pub fn init(
    level: LevelFilter,
    format: Option<LogFormat>,
    traces: Option<TraceExport<'_>>,
) -> Telemetry {
    // Our own events at the chosen level; libraries (hyper, reqwest, rustls) only from warn up,
    // so that debug logging stays readable.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("oneiric", level)
        .with_default(level.min(LevelFilter::WARN));
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let mut otel_note = "off".to_string();
    #[cfg(feature = "otel")]
    let mut provider = None;
    #[cfg(feature = "otel")]
    if let Some(t) = traces {
        match otel::mode(t.env) {
            Ok(otel::Mode::Off(why)) => otel_note = format!("off ({why})"),
            Ok(mode) => match otel::provider(t.env, &mode, t.dropped) {
                Ok(p) => {
                    let tracer = otel::tracer(&p);
                    // Spans of our own code only; library internals would flood the collector.
                    let span_filter = tracing_subscriber::filter::Targets::new()
                        .with_target("oneiric", LevelFilter::INFO);
                    layers.push(Box::new(
                        tracing_opentelemetry::layer()
                            .with_tracer(tracer)
                            .with_filter(span_filter),
                    ));
                    otel_note = match mode {
                        otel::Mode::Grpc => "OTLP/gRPC export on".to_string(),
                        otel::Mode::HttpProtobuf => "OTLP/HTTP export on".to_string(),
                        otel::Mode::Off(why) => format!("off ({why})"),
                    };
                    provider = Some(p);
                }
                Err(e) => otel_note = format!("off (error: {e})"),
            },
            Err(e) => otel_note = format!("off (error: {e})"),
        }
    }
    #[cfg(not(feature = "otel"))]
    if traces.is_some() {
        otel_note = "off (built without the otel feature)".into();
    }

    let journald = if stderr_is_journal() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let sink = if let Some(layer) = journald {
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("oneiric".into());
        layers.push(Box::new(layer.with_filter(filter)));
        Sink::Journald
    } else {
        match format {
            Some(LogFormat::Json) => {
                let layer = tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr);
                layers.push(Box::new(layer.with_filter(filter)));
                Sink::Json
            }
            _ => {
                let layer = tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false);
                layers.push(Box::new(layer.with_filter(filter)));
                Sink::Text
            }
        }
    };
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Telemetry {
        sink,
        otel: otel_note,
        #[cfg(feature = "otel")]
        provider,
    }
}

/// Records the span's OpenTelemetry `trace_id`/`span_id` in its own fields (declared empty at
/// creation), so log lines inside it carry them — as journald fields `TRACE_ID`/`SPAN_ID` and
/// in JSON output. Without export the span is returned as it is.
pub fn traced(span: tracing::Span) -> tracing::Span {
    #[cfg(feature = "otel")]
    if let Some((trace_id, span_id)) = otel::ids(&span) {
        span.record("trace_id", trace_id.as_str());
        span.record("span_id", span_id.as_str());
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_and_tracing_level_names() {
        assert_eq!(parse_level("INFO"), Ok(LevelFilter::INFO));
        assert_eq!(parse_level("WARNING"), Ok(LevelFilter::WARN));
        assert_eq!(parse_level("critical"), Ok(LevelFilter::ERROR));
        assert!(parse_level("loud").is_err());
    }
}
