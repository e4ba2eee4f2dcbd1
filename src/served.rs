//! What the service serves, as plain data: the state of the last good load ([`Served`]), the
//! outcome of the latest reload ([`LastReload`]), and [`View`], the read-only handle that the
//! HTTP server and the control socket's `status` read from. Only the state owner
//! (`daemon::owner`) writes; readers load lock-free and never wait on a reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption, Guard};

use crate::engine::{LoadedSettings, ManifestReport};
use crate::metrics::Metrics;
use crate::resolver::Snapshot;

/// The inputs of the last good load and the snapshot built from them.
pub struct Served {
    pub settings: LoadedSettings,
    pub manifests: Vec<ManifestReport>,
    pub snapshot: Arc<Snapshot>,
    pub warnings: Vec<String>,
    pub demo: bool,
    /// Remote manifests with no copy yet (left out of the first load).
    pub unavailable: Vec<crate::engine::Unavailable>,
    /// Set while serving the state an earlier process saved (the `persisted` module), until this
    /// process's first load replaces it: when it was saved (Unix seconds).
    pub restored_from: Option<u64>,
    /// Strictly increasing: every published state has a number of its own.
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// `/v1/status`'s fields that change only with this state, serialised by the first request
    /// that needs them (every skip reason and warning of a large manifest), not by each.
    pub status_fixed: std::sync::OnceLock<Vec<u8>>,
}

impl Served {
    /// Manifests past their freshness at `now` (Unix seconds): origin and when it ended.
    pub fn expired(&self, now: i64) -> Vec<(&str, i64)> {
        self.manifests
            .iter()
            .filter_map(|m| {
                m.fresh_until
                    .filter(|t| *t <= now)
                    .map(|t| (m.origin.as_str(), t))
            })
            .collect()
    }

    /// One line naming every expired manifest, or `None` when all are fresh.
    pub fn expired_line(&self, now: i64) -> Option<String> {
        let expired = self.expired(now);
        if expired.is_empty() {
            return None;
        }
        let list: Vec<String> = expired
            .iter()
            .map(|(o, t)| {
                format!(
                    "{} expired at {}",
                    crate::text::redact_url(o),
                    crate::text::fmt_unix(*t)
                )
            })
            .collect();
        Some(format!(
            "manifest EXPIRED, not refreshed: {}",
            list.join(", ")
        ))
    }
}

/// Unix time with sub-second precision, for fetch scheduling.
pub fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn unix_now_i64() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The outcome of the latest reload or refresh, for `STATUS=`, `/v1/status` and `reload`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    pub trigger: &'static str,
    pub ok: bool,
    pub message: String,
    pub at_unix: u64,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Read-only access to the served state. Cloning is cheap (shared handles).
#[derive(Clone)]
pub struct View {
    served: Arc<ArcSwap<Served>>,
    last: Arc<ArcSwapOption<LastReload>>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl View {
    /// Only the state owner makes one, from the handles it writes through.
    pub(crate) fn new(
        served: Arc<ArcSwap<Served>>,
        last: Arc<ArcSwapOption<LastReload>>,
        ready: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            served,
            last,
            ready,
            metrics,
        }
    }

    pub fn served(&self) -> Guard<Arc<Served>> {
        self.served.load()
    }

    /// The current state, held (for work that spans awaits).
    pub fn served_full(&self) -> Arc<Served> {
        self.served.load_full()
    }

    /// Started and not stopping (the first load succeeded).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Why `/readyz` says not ready: still starting, or a served manifest expired.
    pub fn not_ready_reason(&self) -> Option<String> {
        if !self.ready() {
            return Some("not ready: starting or stopping".into());
        }
        let served = self.served();
        if !served.unavailable.is_empty() {
            return Some(format!(
                "waiting for the first copy of a remote manifest: {}",
                served
                    .unavailable
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        served.expired_line(unix_now_i64())
    }

    /// Why resolution answers are refused right now: an expired manifest while
    /// `remote.on_expired: refuse`.
    pub fn refusing(&self) -> Option<String> {
        let served = self.served();
        if served.settings.settings.remote.on_expired != crate::config::OnExpired::Refuse {
            return None;
        }
        served
            .expired_line(unix_now_i64())
            .map(|l| format!("{l} (remote.on_expired: refuse)"))
    }

    /// Sets `oneiric_manifest_expired` for every served manifest; returns the expired line.
    pub fn observe_expiry(&self) -> Option<String> {
        let served = self.served();
        let now = unix_now_i64();
        for m in &served.manifests {
            let expired = m.fresh_until.is_some_and(|t| t <= now);
            self.metrics
                .manifest_expired
                .with_label_values(&[crate::text::redact_url(&m.origin).as_str()])
                .set(i64::from(expired));
        }
        served.expired_line(now)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn last_reload(&self) -> Option<Arc<LastReload>> {
        self.last.load_full()
    }

    /// The human-readable `STATUS=` line.
    pub fn status_line(&self) -> String {
        let served = self.served();
        let snap = &served.snapshot;
        let mut line = format!(
            "Serving {} keys from {} candidates (generation {}{})",
            snap.key_count(),
            snap.candidate_count(),
            served.generation,
            if served.demo { ", built-in demo" } else { "" }
        );
        for m in &served.manifests {
            if let Some(age) = m.cached_age_seconds {
                line.push_str(&format!(
                    "; {} from cache, {age} s old",
                    crate::text::redact_url(&m.origin)
                ));
            }
        }
        for u in &served.unavailable {
            line.push_str(&format!("; NOT YET FETCHED: {u}"));
        }
        if let Some(at) = served.restored_from {
            line.push_str(&format!(
                "; restored from the state saved at {}, first load running",
                crate::text::fmt_unix(at)
            ));
        }
        if let Some(expired) = served.expired_line(unix_now_i64()) {
            line.push_str("; ");
            line.push_str(&expired);
        }
        let insecure = served.settings.settings.insecure_options();
        if !insecure.is_empty() {
            line.push_str(&format!("; INSECURE: {}", insecure.join(", ")));
        }
        match self.last_reload().as_deref() {
            Some(l) if l.ok => line.push_str(&format!("; last {}: ok", l.trigger)),
            Some(l) => line.push_str(&format!("; last {} FAILED: {}", l.trigger, l.message)),
            None => {}
        }
        line
    }

    /// The per-domain view of `/v1/status` and the control socket's `status`.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.status_body()).unwrap_or_default()
    }

    /// `/v1/status` as bytes: the fields fixed for the served state, serialised once per state,
    /// then those that change with the time, readiness and the latest reload.
    pub fn status_body(&self) -> Vec<u8> {
        let served = self.served();
        let fixed = served.status_fixed.get_or_init(|| fixed_status(&served));
        let not_ready = self.not_ready_reason();
        let dynamic = serde_json::json!({
            "ready": not_ready.is_none(),
            "not_ready_reason": not_ready,
            "last_reload": self.last_reload().as_deref(),
            "status": self.status_line(),
        });
        let mut body = Vec::with_capacity(fixed.len() + 256);
        // Both are JSON objects: `{fixed…` + `,` + `…dynamic}` is one object.
        body.extend_from_slice(fixed.strip_suffix(b"}").unwrap_or(fixed));
        let dynamic = serde_json::to_vec(&redacted(dynamic)).unwrap_or_else(|_| b"{}".to_vec());
        match dynamic.strip_prefix(b"{") {
            Some(rest) if rest != b"}" => {
                body.push(b',');
                body.extend_from_slice(rest);
            }
            _ => body.push(b'}'),
        }
        body
    }
}

fn fixed_status(served: &Served) -> Vec<u8> {
    let mut domains = HashMap::new();
    for (d, (cands, keys)) in served.snapshot.domain_counts() {
        domains.insert(
            d.to_string(),
            serde_json::json!({"candidates": cands, "keys": keys}),
        );
    }
    let since = |s: SystemTime| s.duration_since(UNIX_EPOCH).unwrap_or_default();
    serde_json::to_vec(&redacted(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "insecure_options": served.settings.settings.insecure_options(),
        "generation": served.generation,
        "loaded_at_unix": since(served.loaded_at).as_secs(),
        // Milliseconds, for measuring a fleet's convergence after a publish.
        "loaded_at_unix_ms": since(served.loaded_at).as_millis() as u64,
        "candidates": served.snapshot.candidate_count(),
        "keys": served.snapshot.key_count(),
        "domains": domains,
        "manifests": served.manifests,
        "warnings": served.warnings,
        "unavailable": served.unavailable,
        "demo": served.demo,
        "restored_from_unix": served.restored_from,
    })))
    .unwrap_or_else(|_| b"{}".to_vec())
}

/// Every string in `v` with the credentials of its URLs redacted: origins, skip reasons,
/// warnings and error messages all may hold one.
fn redacted(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(r) = crate::text::redact_urls_in(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => map.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}
