//! Logging setup: native journald under systemd (structured `ONEIRIC_*` fields), otherwise
//! stderr as text or JSON.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Accepts the spellings of Python's logging and of tracing: `INFO`, `warning`, `CRITICAL`...
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(LevelFilter::TRACE),
        "debug" => Ok(LevelFilter::DEBUG),
        "info" => Ok(LevelFilter::INFO),
        "warn" | "warning" => Ok(LevelFilter::WARN),
        "error" | "critical" | "fatal" => Ok(LevelFilter::ERROR),
        "off" => Ok(LevelFilter::OFF),
        other => Err(format!(
            "`{other}` is not a log level (trace, debug, info, warning, error, critical)"
        )),
    }
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

/// Installs the global subscriber. Returns where logs go. Safe to call once per process.
pub fn init(level: LevelFilter, format: Option<LogFormat>) -> Sink {
    // Our own events at the chosen level; libraries (hyper, reqwest, rustls) only from warn up,
    // so that debug logging stays readable.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("oneiric", level)
        .with_default(level.min(LevelFilter::WARN));
    if stderr_is_journal()
        && let Ok(layer) = tracing_journald::layer()
    {
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("oneiric".into());
        if tracing_subscriber::registry()
            .with(layer.with_filter(filter.clone()))
            .try_init()
            .is_ok()
        {
            return Sink::Journald;
        }
    }
    match format {
        Some(LogFormat::Json) => {
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(std::io::stderr);
            let _ = tracing_subscriber::registry()
                .with(layer.with_filter(filter))
                .try_init();
            Sink::Json
        }
        _ => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false);
            let _ = tracing_subscriber::registry()
                .with(layer.with_filter(filter))
                .try_init();
            Sink::Text
        }
    }
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
