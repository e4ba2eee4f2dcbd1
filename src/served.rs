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
    /// Strictly increasing: every published state has a number of its own.
    pub generation: u64,
    pub loaded_at: SystemTime,
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

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
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
                line.push_str(&format!("; {} from cache, {age} s old", m.origin));
            }
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
        let served = self.served();
        let mut domains = HashMap::new();
        for (d, (cands, keys)) in served.snapshot.domain_counts() {
            domains.insert(
                d.to_string(),
                serde_json::json!({"candidates": cands, "keys": keys}),
            );
        }
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.ready(),
            "generation": served.generation,
            "loaded_at_unix": served.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "candidates": served.snapshot.candidate_count(),
            "keys": served.snapshot.key_count(),
            "domains": domains,
            "manifests": served.manifests,
            "warnings": served.warnings,
            "demo": served.demo,
            "last_reload": self.last_reload().as_deref(),
            "status": self.status_line(),
        })
    }
}
