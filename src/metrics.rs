//! Prometheus metrics. One registry per service instance (no globals), names and help text
//! following the Prometheus conventions (`_total`, `_seconds`, base units).

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::Domain;
use crate::resolver::Snapshot;

pub struct Metrics {
    pub registry: Registry,
    pub candidates: IntGaugeVec,
    pub active_keys: IntGaugeVec,
    pub resolutions: IntCounterVec,
    pub swaps: IntCounterVec,
    pub swap_duration: HistogramVec,
    pub probes: IntCounterVec,
    pub reloads: IntCounterVec,
    pub refreshes: IntCounterVec,
    pub manifest_entries: IntGaugeVec,
    pub signature_failures: IntCounter,
    pub ready: IntGauge,
    pub last_reload_success: Gauge,
    pub manifest_age: GaugeVec,
    pub http_requests: IntCounterVec,
    pub remote_fetches: IntCounterVec,
    pub remote_bytes: IntCounter,
    pub remote_rejections: IntCounterVec,
    pub manifest_expired: IntGaugeVec,
    pub insecure_options: IntGaugeVec,
    pub otel_spans_dropped: IntCounter,
    pub manifest_info: IntGaugeVec,
    pub manifest_signed: GaugeVec,
    pub manifest_fetched: GaugeVec,
    pub generation: IntGauge,
    pub remote_last_success: GaugeVec,
    pub remote_next_fetch: GaugeVec,
    pub refresh_interval: Gauge,
    pub refresh_max_interval: Gauge,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "oneiric_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build))?;

        let m = Self {
            candidates: IntGaugeVec::new(
                Opts::new("oneiric_candidates", "Registered candidates per domain."),
                &["domain"],
            )?,
            active_keys: IntGaugeVec::new(
                Opts::new(
                    "oneiric_active_providers",
                    "Keys with an active provider per domain.",
                ),
                &["domain"],
            )?,
            resolutions: IntCounterVec::new(
                Opts::new(
                    "oneiric_resolutions_total",
                    "Resolutions served over HTTP, by domain and result.",
                ),
                &["domain", "result"],
            )?,
            swaps: IntCounterVec::new(
                Opts::new(
                    "oneiric_swaps_total",
                    "Provider activations and swaps, by domain and result.",
                ),
                &["domain", "result"],
            )?,
            swap_duration: HistogramVec::new(
                HistogramOpts::new(
                    "oneiric_swap_duration_seconds",
                    "Duration of activations and swaps, including the health probe.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["domain", "result"],
            )?,
            probes: IntCounterVec::new(
                Opts::new(
                    "oneiric_probe_results_total",
                    "Health probe results, by domain and result.",
                ),
                &["domain", "result"],
            )?,
            reloads: IntCounterVec::new(
                Opts::new(
                    "oneiric_reloads_total",
                    "Reloads of settings and manifests, by trigger and result.",
                ),
                &["trigger", "result"],
            )?,
            refreshes: IntCounterVec::new(
                Opts::new(
                    "oneiric_refreshes_total",
                    "Periodic refreshes, by result (unchanged, reloaded, failed).",
                ),
                &["result"],
            )?,
            manifest_entries: IntGaugeVec::new(
                Opts::new(
                    "oneiric_manifest_entries",
                    "Manifest entries in the serving state, by state (loaded, skipped).",
                ),
                &["state"],
            )?,
            signature_failures: IntCounter::new(
                "oneiric_signature_failures_total",
                "Manifests refused because their signature did not verify.",
            )?,
            ready: IntGauge::new(
                "oneiric_ready",
                "1 once the first load succeeded and the service serves.",
            )?,
            last_reload_success: Gauge::new(
                "oneiric_last_reload_success_timestamp_seconds",
                "Unix time of the last successful load.",
            )?,
            manifest_age: GaugeVec::new(
                Opts::new(
                    "oneiric_manifest_age_seconds",
                    "Age of a manifest served from the cache (0 when fresh).",
                ),
                &["origin"],
            )?,
            http_requests: IntCounterVec::new(
                Opts::new(
                    "oneiric_http_requests_total",
                    "HTTP requests by status code.",
                ),
                &["code"],
            )?,
            remote_fetches: IntCounterVec::new(
                Opts::new(
                    "oneiric_remote_fetches_total",
                    "Remote manifest fetches by result (updated, not_modified, rejected, failed, breaker_open).",
                ),
                &["result"],
            )?,
            remote_bytes: IntCounter::new(
                "oneiric_remote_fetch_bytes_total",
                "Bytes of remote manifests downloaded.",
            )?,
            remote_rejections: IntCounterVec::new(
                Opts::new(
                    "oneiric_remote_rejections_total",
                    "Fetched remote manifests refused, by reason (signature, rollback, invalid, transport).",
                ),
                &["reason"],
            )?,
            manifest_expired: IntGaugeVec::new(
                Opts::new(
                    "oneiric_manifest_expired",
                    "1 while a served manifest is past its expires_at (or its maximum signature age).",
                ),
                &["origin"],
            )?,
            insecure_options: IntGaugeVec::new(
                Opts::new(
                    "oneiric_insecure_option",
                    "1 for each explicitly set opt-out of a protection (remote manifests, probes).",
                ),
                &["option"],
            )?,
            otel_spans_dropped: IntCounter::new(
                "oneiric_otel_spans_dropped_total",
                "Spans not delivered to the OpenTelemetry collector (failed exports).",
            )?,
            manifest_info: IntGaugeVec::new(
                Opts::new(
                    "oneiric_manifest_info",
                    "One series per served manifest: its source (URL or path), serial and SHA-256; the value is always 1.",
                ),
                &["source", "serial", "sha256"],
            )?,
            manifest_signed: GaugeVec::new(
                Opts::new(
                    "oneiric_manifest_signed_timestamp_seconds",
                    "signed_at of a served manifest, Unix seconds.",
                ),
                &["source"],
            )?,
            manifest_fetched: GaugeVec::new(
                Opts::new(
                    "oneiric_manifest_fetched_timestamp_seconds",
                    "When the served copy of a remote manifest was downloaded, Unix seconds.",
                ),
                &["source"],
            )?,
            generation: IntGauge::new(
                "oneiric_served_generation",
                "Generation of the served state; increases with every published change.",
            )?,
            remote_last_success: GaugeVec::new(
                Opts::new(
                    "oneiric_remote_last_success_timestamp_seconds",
                    "Last time the origin confirmed the cached copy (new body or 304), Unix seconds; 0 if never.",
                ),
                &["source"],
            )?,
            remote_next_fetch: GaugeVec::new(
                Opts::new(
                    "oneiric_remote_next_fetch_timestamp_seconds",
                    "When the next fetch of a remote manifest is scheduled (splay, max-age, Retry-After, backoff), Unix seconds.",
                ),
                &["source"],
            )?,
            refresh_interval: Gauge::new(
                "oneiric_remote_refresh_interval_seconds",
                "The configured remote.refresh_interval, for alerts counted in intervals.",
            )?,
            refresh_max_interval: Gauge::new(
                "oneiric_remote_refresh_max_interval_seconds",
                "The longest gap between two fetches that hints or backoff may cause (remote.refresh_max_interval).",
            )?,
            registry,
        };
        for c in [
            Box::new(m.candidates.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.active_keys.clone()),
            Box::new(m.resolutions.clone()),
            Box::new(m.swaps.clone()),
            Box::new(m.swap_duration.clone()),
            Box::new(m.probes.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.refreshes.clone()),
            Box::new(m.manifest_entries.clone()),
            Box::new(m.signature_failures.clone()),
            Box::new(m.ready.clone()),
            Box::new(m.last_reload_success.clone()),
            Box::new(m.manifest_age.clone()),
            Box::new(m.http_requests.clone()),
            Box::new(m.remote_fetches.clone()),
            Box::new(m.remote_bytes.clone()),
            Box::new(m.remote_rejections.clone()),
            Box::new(m.manifest_expired.clone()),
            Box::new(m.insecure_options.clone()),
            Box::new(m.otel_spans_dropped.clone()),
            Box::new(m.manifest_info.clone()),
            Box::new(m.manifest_signed.clone()),
            Box::new(m.manifest_fetched.clone()),
            Box::new(m.generation.clone()),
            Box::new(m.remote_last_success.clone()),
            Box::new(m.remote_next_fetch.clone()),
            Box::new(m.refresh_interval.clone()),
            Box::new(m.refresh_max_interval.clone()),
        ] {
            m.registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        // Zero the labelled series an operator alerts on, so `rate()` sees them from the start.
        for trigger in ["sighup", "control", "startup"] {
            for result in ["success", "failure"] {
                m.reloads.with_label_values(&[trigger, result]);
            }
        }
        for result in [
            "updated",
            "not_modified",
            "rejected",
            "failed",
            "breaker_open",
        ] {
            m.remote_fetches.with_label_values(&[result]);
        }
        for r in crate::remote::Rejection::ALL {
            m.remote_rejections.with_label_values(&[r.label()]);
        }
        for d in Domain::ALL {
            for result in ["success", "failure"] {
                m.swaps.with_label_values(&[d.as_str(), result]);
            }
        }
        for result in ["unchanged", "reloaded", "failure"] {
            m.refreshes.with_label_values(&[result]);
        }
        Ok(m)
    }

    /// Sets the gauges that describe a snapshot.
    pub fn observe_snapshot(&self, snap: &Snapshot, loaded: usize, skipped: usize) {
        for (d, (cands, keys)) in snap.domain_counts() {
            self.candidates
                .with_label_values(&[d.as_str()])
                .set(cands as i64);
            self.active_keys
                .with_label_values(&[d.as_str()])
                .set(keys as i64);
        }
        self.manifest_entries
            .with_label_values(&["loaded"])
            .set(loaded as i64);
        self.manifest_entries
            .with_label_values(&["skipped"])
            .set(skipped as i64);
    }

    pub fn observe_activation(&self, domain: Domain, bound: bool, seconds: f64) {
        let result = if bound { "success" } else { "failure" };
        self.swaps
            .with_label_values(&[domain.as_str(), result])
            .inc();
        self.swap_duration
            .with_label_values(&[domain.as_str(), result])
            .observe(seconds);
    }

    pub fn encode(&self) -> Result<Vec<u8>, MetricsError> {
        let mut buf = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(buf)
    }
}
