//! Settings: typed sections, and their layered loading
//! (built-in defaults → settings dir or file → environment → command-line flags).
//!
//! Every file is first parsed into its typed section so that errors carry the file, line and
//! column and unknown fields are rejected; the layers are then merged as JSON values and the
//! result is deserialised once more into [`Settings`].

pub mod env;

pub mod stack;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Domain;
use crate::manifest::{Capability, HealthCheck};

pub use env::{Env, KNOWN_PLAIN_VARS};
pub use stack::StackOrder;

/// A log level as settings, variables and flags name it (Python's names accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

pub fn parse_log_level(s: &str) -> Result<LogLevel, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(LogLevel::Trace),
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" | "critical" | "fatal" => Ok(LogLevel::Error),
        "off" => Ok(LogLevel::Off),
        other => Err(format!(
            "`{other}` is not a log level (trace, debug, info, warning, error, critical)"
        )),
    }
}

/// Errors reading settings. Each names the file (and line/column) or the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{path}: file is {size} bytes, larger than the {limit}-byte limit for settings")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("command-line flag {flag}: {message}")]
    Flag { flag: String, message: String },
}

/// The whole settings document. Field names follow the Python implementation's sections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub app: AppSettings,
    pub adapters: DomainSettings,
    pub services: DomainSettings,
    pub tasks: DomainSettings,
    pub events: DomainSettings,
    pub workflows: DomainSettings,
    pub actions: DomainSettings,
    pub remote: RemoteSettings,
    pub logging: LoggingSettings,
    pub http: HttpSettings,
    pub lifecycle: LifecycleSettings,
}

impl Settings {
    pub fn domain(&self, domain: Domain) -> &DomainSettings {
        match domain {
            Domain::Adapter => &self.adapters,
            Domain::Service => &self.services,
            Domain::Task => &self.tasks,
            Domain::Event => &self.events,
            Domain::Workflow => &self.workflows,
            Domain::Action => &self.actions,
        }
    }

    /// Checks that serde cannot express: names, ranges, combinations.
    pub fn validate(&self) -> Result<(), String> {
        for domain in Domain::ALL {
            let section = self.domain(domain);
            for (key, provider) in &section.selections {
                if !crate::domain::is_valid_name(key) {
                    return Err(format!(
                        "{}.selections: key `{key}` does not match ^[A-Za-z0-9_.-]+$",
                        domain.section()
                    ));
                }
                if !crate::domain::is_valid_name(provider) {
                    return Err(format!(
                        "{}.selections.{key}: provider `{provider}` does not match ^[A-Za-z0-9_.-]+$",
                        domain.section()
                    ));
                }
            }
            for (i, c) in section.candidates.iter().enumerate() {
                c.validate()
                    .map_err(|e| format!("{}.candidates[{i}]: {e}", domain.section()))?;
            }
        }
        let r = &self.remote;
        if r.signature_threshold == 0 {
            return Err("remote.signature_threshold: must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&r.retry_jitter) {
            return Err("remote.retry_jitter: must be between 0 and 1".into());
        }
        if r.retry_base_delay < 0.0 || r.retry_max_delay < r.retry_base_delay {
            return Err("remote.retry_max_delay: must be >= retry_base_delay >= 0".into());
        }
        // Durations are built from these; an absurd value must be a located error, never a
        // panic in the retry path.
        if r.retry_max_delay.is_nan() || r.retry_max_delay > 3600.0 {
            return Err("remote.retry_max_delay: must be at most 3600 seconds".into());
        }
        if !(r.timeout_seconds > 0.0 && r.timeout_seconds <= 600.0) {
            return Err("remote.timeout_seconds: must be within (0, 600]".into());
        }
        if r.max_body_bytes == 0 || r.max_body_bytes > crate::manifest::MAX_MANIFEST_BYTES {
            return Err(format!(
                "remote.max_body_bytes: must be within 1..={}",
                crate::manifest::MAX_MANIFEST_BYTES
            ));
        }
        if let Some(url) = &r.manifest_url {
            if !(url.starts_with("https://")
                || url.starts_with("http://")
                || url.starts_with('/')
                || url.starts_with("file://"))
            {
                return Err(format!(
                    "remote.manifest_url: `{url}` is not an https:// URL or an absolute path"
                ));
            }
        }
        if r.refresh_interval == 0 {
            return Err("remote.refresh_interval: must be at least 1 second".into());
        }
        // Slots are computed in f64 seconds; a week keeps them exact and the backoff bounded.
        if r.refresh_interval > 604_800 {
            return Err("remote.refresh_interval: must be at most 604800 seconds (a week)".into());
        }
        if !(0.0..=1.0).contains(&r.refresh_splay) {
            return Err(
                "remote.refresh_splay: must be between 0 and 1 (a fraction of refresh_interval)"
                    .into(),
            );
        }
        if let Some(max) = r.refresh_max_interval {
            if max < r.refresh_interval || max > 604_800 {
                return Err(format!(
                    "remote.refresh_max_interval: must be within refresh_interval ({}) and 604800 seconds",
                    r.refresh_interval
                ));
            }
        }
        // Added to `Instant::now()`: an absurd value would overflow it and abort the process.
        if r.circuit_breaker_reset > 86_400 {
            return Err(
                "remote.circuit_breaker_reset: must be at most 86400 seconds (a day)".into(),
            );
        }
        if r.latency_budget_ms
            .is_some_and(|ms| ms == 0 || ms > 3_600_000)
        {
            return Err("remote.latency_budget_ms: must be within 1..=3600000 (an hour)".into());
        }
        if r.max_clock_skew_seconds > 86_400 {
            return Err("remote.max_clock_skew_seconds: must be at most 86400 (one day)".into());
        }
        for key in &r.trusted_public_keys {
            crate::manifest::signature::parse_public_key(key)
                .map_err(|e| format!("remote.trusted_public_keys: {e}"))?;
        }
        if let Some(level) = &self.logging.level {
            parse_log_level(level).map_err(|e| format!("logging.level: {e}"))?;
        }
        let Ok(address) = self.http.address.parse::<std::net::IpAddr>() else {
            return Err(format!(
                "http.address: `{}` is not an IP address",
                crate::text::one_line(&self.http.address)
            ));
        };
        if let Some(p) = &self.http.bearer_token_file {
            if !p.is_absolute() {
                return Err(format!(
                    "http.bearer_token_file: `{}` is not an absolute path",
                    p.display()
                ));
            }
        }
        // Off loopback, /metrics and /v1/* answer whoever can reach the port: only when asked
        // for by name, and never without a credential.
        if self.http.enabled && !address.is_loopback() {
            if !self.http.allow_non_loopback {
                return Err(format!(
                    "http.address: `{address}` is not a loopback address, so /metrics and /v1/* would answer whoever can reach it; to listen there, set http.allow_non_loopback: true and http.bearer_token_file (README \"HTTP outside the host\")"
                ));
            }
            if self.http.bearer_token_file.is_none() {
                return Err(format!(
                    "http.bearer_token_file: required with http.address `{address}` (not loopback): /metrics and /v1/* must not answer without a credential there"
                ));
            }
        }
        for (i, name) in self.http.allowed_hosts.iter().enumerate() {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(format!(
                    "http.allowed_hosts[{i}]: `{}` is not a host name (letters, digits, `.` and `-`; no port)",
                    crate::text::one_line(name)
                ));
            }
        }
        for (name, v) in [
            (
                "lifecycle.activation_timeout",
                self.lifecycle.activation_timeout,
            ),
            ("lifecycle.health_timeout", self.lifecycle.health_timeout),
            ("lifecycle.cleanup_timeout", self.lifecycle.cleanup_timeout),
        ] {
            if !(v > 0.0 && v <= 3600.0) {
                return Err(format!("{name}: must be between 0 and 3600 seconds"));
            }
        }
        // The reload deadline (300 s, after which the watchdog stops being fed) must never be
        // reached by probing alone.
        let deadline = self.lifecycle.reconcile_deadline;
        if !(deadline > 0.0 && deadline <= 240.0) {
            return Err("lifecycle.reconcile_deadline: must be within (0, 240] seconds".into());
        }
        if !(1..=1024).contains(&self.lifecycle.probe_parallelism) {
            return Err("lifecycle.probe_parallelism: must be between 1 and 1024".into());
        }
        for (i, d) in self.lifecycle.probes.unix_directories.iter().enumerate() {
            if !d.is_absolute() || d.components().any(|c| c == std::path::Component::ParentDir) {
                return Err(format!(
                    "lifecycle.probes.unix_directories[{i}]: `{}` is not an absolute path without `..`",
                    d.display()
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    pub name: String,
    pub environment: String,
    pub debug: bool,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            name: "oneiric".into(),
            environment: "production".into(),
            debug: false,
        }
    }
}

/// One domain section (`adapters.yml`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DomainSettings {
    /// key → provider: explicit selection override.
    pub selections: BTreeMap<String, String>,
    /// provider → free-form settings handed to that provider.
    pub provider_settings: BTreeMap<String, Value>,
    pub options: BTreeMap<String, Value>,
    /// Candidates declared locally (source `local_pkg`).
    pub candidates: Vec<LocalCandidate>,
}

/// A candidate declared in settings; the same fields as a manifest entry, minus `domain`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalCandidate {
    pub key: String,
    pub provider: String,
    #[serde(default)]
    pub factory: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub stack_level: Option<i64>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Named layer for `ONEIRIC_STACK_ORDER`; defaults to `local`.
    #[serde(default)]
    pub layer: Option<String>,
}

impl LocalCandidate {
    fn validate(&self) -> Result<(), String> {
        crate::manifest::validate_fields(
            &self.key,
            &self.provider,
            self.priority,
            self.stack_level,
            self.health.as_ref(),
        )
    }
}

/// Remote manifest fetching and signature policy. Defaults are the reference implementation's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteSettings {
    pub enabled: bool,
    pub manifest_url: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub verify_tls: bool,
    /// Plain `http://` manifests are refused unless this is set.
    pub allow_http: bool,
    pub auth: AuthSettings,
    pub signature_required: bool,
    pub signature_threshold: usize,
    pub signature_max_age_seconds: Option<u64>,
    pub signature_require_expiry: bool,
    pub trusted_public_keys: Vec<String>,
    pub refresh_interval: u64,
    /// Fraction of `refresh_interval` over which hosts spread their fetches, each at its own
    /// stable offset (from `/etc/machine-id` and the URL). 0 = every host on the full second.
    pub refresh_splay: f64,
    /// Longest gap between two fetches that `Cache-Control: max-age`, `Retry-After` or backoff
    /// after failures may cause, in seconds; default 10 × `refresh_interval`.
    pub refresh_max_interval: Option<u64>,
    pub max_retries: u32,
    pub retry_base_delay: f64,
    pub retry_max_delay: f64,
    pub retry_jitter: f64,
    pub circuit_breaker_threshold: u32,
    pub circuit_breaker_reset: u64,
    /// `file://` URIs in `manifest_url`; plain local paths are always allowed.
    pub allow_file_uris: bool,
    pub allowed_file_uri_roots: Vec<PathBuf>,
    /// Time budget of one fetch, retries included.
    pub latency_budget_ms: Option<u64>,
    /// Timeout of one HTTP attempt (connect, headers and body).
    pub timeout_seconds: f64,
    pub max_body_bytes: u64,
    /// Extra CA certificate (PEM) trusted for remote fetches, besides the system store.
    pub ca_file: Option<PathBuf>,
    /// `signed_at` may lie at most this far in the future (clock skew between signer and host).
    pub max_clock_skew_seconds: u64,
    /// What resolution answers do while a served remote manifest is expired.
    pub on_expired: OnExpired,
    /// Opt-out: accept manifests without a valid signature although trusted keys are set.
    pub insecure_accept_unsigned: bool,
    /// Opt-out: accept URL manifests when no trusted keys are configured (nothing verified).
    pub insecure_unverified_urls: bool,
    /// Opt-out: accept URL manifests without `expires_at` (no protection against a freeze).
    pub insecure_no_expiry: bool,
}

/// While a served remote manifest is past its `expires_at` (or its maximum signature age), the
/// service reports not ready either way; this decides whether it keeps answering from it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnExpired {
    /// Keep answering from the last good state (apt keeps installed packages when a
    /// repository's `Valid-Until` passes): clients keep working, monitoring sees not-ready.
    #[default]
    KeepServing,
    /// Answer `/v1/resolve` and `/v1/explain` with 503 until a fresh manifest arrives.
    Refuse,
}

impl Settings {
    /// The explicitly named protections switched off, for warnings, `STATUS=` and metrics.
    pub fn insecure_options(&self) -> Vec<&'static str> {
        let mut out = self.remote.insecure_options();
        if self.lifecycle.probes.insecure_any_address {
            out.push("lifecycle.probes.insecure_any_address");
        }
        out
    }
}

impl RemoteSettings {
    /// The explicitly named protections switched off, for warnings, `STATUS=` and metrics.
    pub fn insecure_options(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.insecure_accept_unsigned {
            out.push("remote.insecure_accept_unsigned");
        }
        if self.insecure_unverified_urls {
            out.push("remote.insecure_unverified_urls");
        }
        if self.insecure_no_expiry {
            out.push("remote.insecure_no_expiry");
        }
        if !self.verify_tls {
            out.push("remote.verify_tls=false");
        }
        out
    }
}

impl Default for RemoteSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            manifest_url: None,
            cache_dir: None,
            verify_tls: true,
            allow_http: false,
            auth: AuthSettings::default(),
            signature_required: false,
            signature_threshold: 1,
            signature_max_age_seconds: None,
            signature_require_expiry: false,
            trusted_public_keys: Vec::new(),
            refresh_interval: 300,
            refresh_splay: 0.5,
            refresh_max_interval: None,
            max_retries: 3,
            retry_base_delay: 1.0,
            retry_max_delay: 30.0,
            retry_jitter: 0.25,
            circuit_breaker_threshold: 5,
            circuit_breaker_reset: 60,
            allow_file_uris: false,
            allowed_file_uri_roots: Vec::new(),
            latency_budget_ms: None,
            timeout_seconds: 10.0,
            max_body_bytes: crate::manifest::MAX_MANIFEST_BYTES,
            ca_file: None,
            max_clock_skew_seconds: 300,
            on_expired: OnExpired::KeepServing,
            insecure_accept_unsigned: false,
            insecure_unverified_urls: false,
            insecure_no_expiry: false,
        }
    }
}

/// The auth header for remote fetches. The token itself never lives in settings: it comes from
/// an environment variable (the unit's `EnvironmentFile=`) or a systemd credential.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub header_name: String,
    /// Name of the environment variable holding the header value (e.g. `Bearer abc`).
    pub token_env: String,
    /// Name of the systemd credential (`LoadCredential=NAME:...`) holding it; preferred over
    /// the environment variable when present.
    pub token_credential: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            header_name: "Authorization".into(),
            token_env: "ONEIRIC_REMOTE_TOKEN".into(),
            token_credential: "oneiric-remote-token".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSettings {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
    /// Python-compatible spelling of `format: json`.
    pub emit_json: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub enabled: bool,
    pub address: String,
    pub port: u16,
    /// Names besides IP addresses, `localhost` and the host name that `/metrics` and `/v1/*`
    /// answer in `Host:` (DNS rebinding protection), e.g. the name Prometheus scrapes by.
    pub allowed_hosts: Vec<String>,
    /// Lets `address` be other than a loopback address (which also takes
    /// `bearer_token_file`).
    pub allow_non_loopback: bool,
    /// A file holding the token that `/metrics` and `/v1/*` require as `Authorization: Bearer
    /// TOKEN` (Prometheus: `authorization: {credentials_file: ...}`), read when the service
    /// starts. `/healthz` and `/readyz` stay open.
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "127.0.0.1".into(),
            port: 9090,
            allowed_hosts: Vec::new(),
            allow_non_loopback: false,
            bearer_token_file: None,
        }
    }
}

/// Timeouts of the activate/swap sequence, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSettings {
    pub activation_timeout: f64,
    pub health_timeout: f64,
    pub cleanup_timeout: f64,
    /// Probes a reload runs at once.
    pub probe_parallelism: usize,
    /// Seconds a reload waits for its probes in all; keys not probed by then keep their
    /// binding. Well inside the unit's `TimeoutStartSec=` (60 s) and the reload deadline.
    pub reconcile_deadline: f64,
    /// What `health` probes (from settings or from manifests) may reach.
    pub probes: ProbeSettings,
}

/// What a probe may reach. A manifest names its probes' targets, so whoever can make the
/// service load a manifest picks where the service connects: by default not the cloud
/// metadata service, link-local, unspecified, multicast or broadcast addresses
/// (`insecure_any_address` lifts that, named as an insecure option), and unix sockets only
/// in the directories listed here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeSettings {
    /// Kinds of probes allowed: tcp, http, https, unix.
    pub kinds: Vec<ProbeKind>,
    /// When not empty, probes reach only addresses in these networks (e.g. `127.0.0.0/8`).
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// Networks refused besides the built-in ones.
    pub denied_networks: Vec<ipnet::IpNet>,
    /// Directories a unix probe's socket must be in, after following links. Empty: every
    /// unix probe is refused.
    pub unix_directories: Vec<PathBuf>,
    /// Lets probes reach the built-in refused networks (link-local and cloud metadata
    /// addresses among them).
    pub insecure_any_address: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Tcp,
    Http,
    Https,
    Unix,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http => "http",
            ProbeKind::Https => "https",
            ProbeKind::Unix => "unix",
        }
    }
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            kinds: vec![
                ProbeKind::Tcp,
                ProbeKind::Http,
                ProbeKind::Https,
                ProbeKind::Unix,
            ],
            allowed_networks: Vec::new(),
            denied_networks: Vec::new(),
            unix_directories: Vec::new(),
            insecure_any_address: false,
        }
    }
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            activation_timeout: 30.0,
            health_timeout: 5.0,
            cleanup_timeout: 10.0,
            probe_parallelism: 16,
            reconcile_deadline: 30.0,
            probes: ProbeSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_bounds_are_validated() {
        let mut s = Settings::default();
        assert_eq!(s.validate(), Ok(()));
        s.lifecycle.reconcile_deadline = 241.0;
        assert!(
            s.validate()
                .unwrap_err()
                .contains("lifecycle.reconcile_deadline")
        );
        s.lifecycle.reconcile_deadline = 0.0;
        assert!(s.validate().is_err());
        s.lifecycle.reconcile_deadline = 30.0;
        s.lifecycle.probe_parallelism = 0;
        assert!(
            s.validate()
                .unwrap_err()
                .contains("lifecycle.probe_parallelism")
        );
        s.lifecycle.probe_parallelism = 16;
        s.lifecycle.health_timeout = f64::NAN;
        assert!(
            s.validate()
                .unwrap_err()
                .contains("lifecycle.health_timeout")
        );
    }

    #[test]
    fn numbers_that_would_overflow_a_deadline_are_refused() {
        let mut s = Settings::default();
        s.remote.circuit_breaker_reset = u64::MAX;
        assert!(
            s.validate()
                .unwrap_err()
                .starts_with("remote.circuit_breaker_reset: ")
        );
        s.remote.circuit_breaker_reset = 60;
        s.remote.latency_budget_ms = Some(u64::MAX);
        assert!(
            s.validate()
                .unwrap_err()
                .starts_with("remote.latency_budget_ms: ")
        );
        s.remote.latency_budget_ms = Some(500);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn allowed_hosts_are_host_names() {
        let mut s = Settings::default();
        s.http.allowed_hosts = vec!["prom.example.org".into(), "node-1".into()];
        assert_eq!(s.validate(), Ok(()));
        s.http.allowed_hosts.push("evil:9090".into());
        let e = s.validate().unwrap_err();
        assert!(e.starts_with("http.allowed_hosts[2]: "), "{e}");
    }

    #[test]
    fn refresh_cadence_bounds_are_validated() {
        let mut s = Settings::default();
        s.remote.refresh_splay = 1.5;
        assert!(s.validate().unwrap_err().contains("remote.refresh_splay"));
        s.remote.refresh_splay = f64::NAN;
        assert!(s.validate().unwrap_err().contains("remote.refresh_splay"));
        s.remote.refresh_splay = 1.0;
        assert_eq!(s.validate(), Ok(()));
        s.remote.refresh_max_interval = Some(299);
        assert!(
            s.validate()
                .unwrap_err()
                .contains("remote.refresh_max_interval")
        );
        s.remote.refresh_max_interval = Some(300);
        assert_eq!(s.validate(), Ok(()));
        s.remote.refresh_interval = 1_000_000;
        assert!(
            s.validate()
                .unwrap_err()
                .contains("remote.refresh_interval")
        );
    }

    #[test]
    fn log_levels_accept_python_names() {
        assert_eq!(parse_log_level("WARNING"), Ok(LogLevel::Warn));
        assert_eq!(parse_log_level(" critical "), Ok(LogLevel::Error));
        assert!(parse_log_level("loud").is_err());
    }
}
