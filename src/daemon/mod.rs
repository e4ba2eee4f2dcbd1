//! `oneiric orchestrate`: the long-running service.
//!
//! One main loop owns signals, the refresh timer, reload requests and the watchdog. Reloads run
//! as tasks, one at a time; each loads everything off to the side and swaps the served state in
//! only when all of it is good. Readers (HTTP, control) take the current state from an
//! `ArcSwap` and never wait on a reload.

mod control_server;
pub mod notify;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use crate::activity::ActivityStore;
use crate::cli::Exit;
use crate::config::{self, LoadedSettings};
use crate::domain::Domain;
use crate::engine::{self, LoadError, LoadRequest, ManifestReport};
use crate::lifecycle::{self, Activation, LifecycleStatus};
use crate::manifest::ManifestError;
use crate::metrics::Metrics;
use crate::resolver::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("initial load failed: {0}")]
    Load(#[from] LoadError),
    #[error("{0}")]
    Startup(String),
}

impl DaemonError {
    pub fn exit(&self) -> Exit {
        match self {
            DaemonError::Load(LoadError::Remote { .. }) => Exit::Failure,
            DaemonError::Load(_) => Exit::InvalidConfig,
            DaemonError::Startup(_) => Exit::Failure,
        }
    }
}

/// What the service serves: the inputs of the last good load and the snapshot built from them.
pub struct Served {
    pub settings: LoadedSettings,
    pub manifests: Vec<ManifestReport>,
    pub snapshot: Arc<Snapshot>,
    pub warnings: Vec<String>,
    pub demo: bool,
    pub generation: u64,
    pub loaded_at: SystemTime,
}

/// The outcome of the latest reload or refresh, for `STATUS=`, `/v1/status` and `reload`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    pub trigger: String,
    pub ok: bool,
    pub message: String,
    pub at_unix: u64,
}

/// State shared by the main loop, the HTTP server and the control server.
pub struct Shared {
    pub served: ArcSwap<Served>,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    pub req: LoadRequest,
    pub lifecycle: tokio::sync::Mutex<LifecycleStatus>,
    pub activity: Mutex<ActivityStore>,
    pub last_reload: Mutex<Option<LastReload>>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Remote fetcher for the current remote settings (rebuilt when they change).
    fetcher: Mutex<Option<(crate::config::RemoteSettings, Arc<crate::remote::Fetcher>)>>,
    /// Millis since start when the running reload began (0 = none), for the watchdog.
    reload_started: AtomicU64,
    /// Loads published so far, so that only the last of a burst releases memory.
    loads_published: AtomicU64,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Sighup,
    Control,
    Refresh,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Sighup => "sighup",
            Trigger::Control => "control",
            Trigger::Refresh => "refresh",
        }
    }
}

pub type ReloadReply = oneshot::Sender<Result<String, String>>;

/// Quiet time after the last load before its garbage is returned to the system.
const MEMORY_RELEASE_DELAY: Duration = Duration::from_secs(2);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Longest a reload may run before the watchdog treats the service as hung.
const RELOAD_DEADLINE: Duration = Duration::from_secs(300);

impl Shared {
    pub fn status_line(&self) -> String {
        let served = self.served.load();
        let snap = &served.snapshot;
        let base = format!(
            "Serving {} keys from {} candidates (generation {}{})",
            snap.key_count(),
            snap.candidate_count(),
            served.generation,
            if served.demo { ", built-in demo" } else { "" }
        );
        let cached: Vec<String> = served
            .manifests
            .iter()
            .filter_map(|m| {
                m.cached_age_seconds
                    .map(|a| format!("{} from cache, {a} s old", m.origin))
            })
            .collect();
        let cached = if cached.is_empty() {
            String::new()
        } else {
            format!("; {}", cached.join("; "))
        };
        let last = match &*self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(l) if l.ok => format!("; last {}: ok", l.trigger),
            Some(l) => format!("; last {} FAILED: {}", l.trigger, l.message),
            None => String::new(),
        };
        format!("{base}{cached}{last}")
    }

    fn set_last(&self, trigger: Trigger, ok: bool, message: &str) {
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastReload {
            trigger: trigger.as_str().into(),
            ok,
            message: message.into(),
            at_unix: unix_now(),
        });
    }

    /// Keys that refuse swaps (paused or draining): read once per reload, they are few.
    fn refused_keys(&self) -> HashSet<(String, String)> {
        let store = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        match store.all() {
            Ok(rows) => rows
                .into_iter()
                .filter(|a| a.paused || a.draining)
                .map(|a| (a.domain, a.key))
                .collect(),
            Err(e) => {
                tracing::error!(oneiric_event = "activity_error", "{e}");
                HashSet::new()
            }
        }
    }

    fn record_activations(&self, attempts: &[Activation]) {
        for a in attempts {
            self.metrics
                .observe_activation(a.domain, a.bound, a.duration.as_secs_f64());
            let result = if a.bound && a.error.is_none() {
                "success"
            } else {
                "failure"
            };
            self.metrics
                .probes
                .with_label_values(&[a.domain.as_str(), result])
                .inc();
            if a.bound {
                tracing::info!(
                    oneiric_event = "activate",
                    oneiric_domain = %a.domain,
                    oneiric_key = %a.key,
                    oneiric_provider = %a.provider,
                    "activated {}/{} -> {} in {:.1} ms",
                    a.domain, a.key, a.provider, a.duration.as_secs_f64() * 1000.0
                );
            } else {
                tracing::warn!(
                    oneiric_event = "activate_failed",
                    oneiric_domain = %a.domain,
                    oneiric_key = %a.key,
                    oneiric_provider = %a.provider,
                    "activation of {}/{} -> {} failed: {}; kept {}",
                    a.domain, a.key, a.provider,
                    a.error.as_deref().unwrap_or("unknown"),
                    a.previous.as_deref().unwrap_or("nothing")
                );
            }
        }
    }

    /// Serves a new world, and schedules the release of what building it freed.
    fn publish(self: &Arc<Self>, world: engine::World, generation: u64) {
        let loaded: usize = world.manifests.iter().map(|m| m.loaded).sum();
        let skipped: usize = world.manifests.iter().map(|m| m.skipped.len()).sum();
        self.metrics
            .observe_snapshot(&world.snapshot, loaded, skipped);
        for m in &world.manifests {
            if let Some(age) = m.cached_age_seconds {
                self.metrics
                    .manifest_age
                    .with_label_values(&[&m.origin])
                    .set(age as f64);
            }
        }
        let previous = self.served.swap(Arc::new(Served {
            settings: world.settings,
            manifests: world.manifests,
            snapshot: Arc::new(world.snapshot),
            warnings: world.warnings,
            demo: world.demo,
            generation,
            loaded_at: SystemTime::now(),
        }));
        self.metrics.last_reload_success.set(unix_now() as f64);
        // Freeing the previous snapshot (every candidate of every key) is left to a blocking
        // thread, not done before READY=1; readers still holding it keep it alive anyway.
        if Arc::strong_count(&previous) == 1 {
            tokio::task::spawn_blocking(move || drop(previous));
        }
        self.release_memory_later();
    }

    /// Hands what a load freed back to the system once loads have stopped for a while. Doing
    /// it right after every load made the next one fault that memory in again: a reload of
    /// 10 000 entries spent a third of its time in the kernel clearing fresh pages.
    fn release_memory_later(self: &Arc<Self>) {
        let ticket = self.loads_published.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(MEMORY_RELEASE_DELAY).await;
            if shared.loads_published.load(Ordering::Relaxed) == ticket {
                // A few milliseconds once after a burst of loads; no thread is started for it
                // (an idle service has no threads left to wake).
                crate::alloc::release_free_memory();
            }
        });
    }

    /// Fetches every remote manifest of this load into the cache (conditional requests,
    /// retries, breaker). Failures leave the last good copy in place; they are logged, counted
    /// and shown in `STATUS=` by the load that follows.
    pub async fn sync_remote(
        &self,
        settings: &LoadedSettings,
    ) -> Vec<(String, crate::remote::SyncOutcome)> {
        let urls = engine::remote_urls(&self.req, settings);
        if urls.is_empty() {
            return Vec::new();
        }
        let fetcher = {
            let mut slot = self.fetcher.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some((s, f)) if *s == settings.settings.remote => Some(Arc::clone(f)),
                _ => {
                    let cache = engine::cache_dir(&self.req, settings);
                    match crate::remote::Fetcher::new(
                        &settings.settings.remote,
                        &cache,
                        &self.req.env,
                    ) {
                        Ok(f) => {
                            let f = Arc::new(f);
                            *slot = Some((settings.settings.remote.clone(), Arc::clone(&f)));
                            Some(f)
                        }
                        Err(e) => {
                            tracing::error!(oneiric_event = "remote_setup_failed", "{e}");
                            None
                        }
                    }
                }
            }
        };
        let Some(fetcher) = fetcher else {
            return Vec::new();
        };
        let policy =
            match crate::manifest::signature::TrustPolicy::from_settings(&settings.settings.remote)
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(oneiric_event = "remote_setup_failed", "trusted keys: {e}");
                    return Vec::new();
                }
            };
        let mut out = Vec::new();
        for url in urls {
            use tracing::Instrument;
            let span = crate::traced_span!(
                "remote_fetch",
                url = %url,
                result = tracing::field::Empty,
                bytes = tracing::field::Empty,
                cache_hit = tracing::field::Empty
            );
            let outcome = fetcher.sync(&url, &policy).instrument(span.clone()).await;
            span.record("result", outcome.label());
            span.record(
                "cache_hit",
                matches!(outcome, crate::remote::SyncOutcome::NotModified),
            );
            if let crate::remote::SyncOutcome::Updated { bytes, .. } = &outcome {
                span.record("bytes", *bytes);
            }
            let _entered = span.enter();
            self.metrics
                .remote_fetches
                .with_label_values(&[outcome.label()])
                .inc();
            if let crate::remote::SyncOutcome::Updated { bytes, .. } = &outcome {
                self.metrics.remote_bytes.inc_by(*bytes);
            }
            if matches!(
                outcome,
                crate::remote::SyncOutcome::Rejected {
                    signature: true,
                    ..
                }
            ) {
                self.metrics.signature_failures.inc();
            }
            match &outcome {
                crate::remote::SyncOutcome::Updated { .. }
                | crate::remote::SyncOutcome::NotModified => {
                    tracing::info!(
                        oneiric_event = "remote_fetch",
                        result = outcome.label(),
                        "{url}: {}",
                        outcome.describe()
                    );
                }
                _ => tracing::warn!(
                    oneiric_event = "remote_fetch",
                    result = outcome.label(),
                    "{url}: {}",
                    outcome.describe()
                ),
            }
            out.push((url, outcome));
        }
        out
    }

    /// One refresh tick: fetch remote manifests; reload when they or the local files changed,
    /// or when a remote manifest went stale or recovered (so `STATUS=` says so); otherwise only
    /// retry activations that failed.
    async fn refresh(self: &Arc<Self>, local_changed: bool) {
        use tracing::Instrument;
        let span = crate::traced_span!("refresh", local_changed, result = tracing::field::Empty);
        let result = self
            .refresh_traced(local_changed)
            .instrument(span.clone())
            .await;
        span.record("result", result);
    }

    async fn refresh_traced(self: &Arc<Self>, local_changed: bool) -> &'static str {
        let served = self.served.load_full();
        let outcomes = self.sync_remote(&served.settings).await;
        let remote_changed = outcomes.iter().any(|(url, o)| {
            let stale_now = !matches!(
                o,
                crate::remote::SyncOutcome::Updated { .. }
                    | crate::remote::SyncOutcome::NotModified
            );
            let stale_before = served
                .manifests
                .iter()
                .any(|m| &m.origin == url && m.cached_age_seconds.is_some());
            matches!(o, crate::remote::SyncOutcome::Updated { .. }) || stale_now != stale_before
        });
        if local_changed || remote_changed {
            if self.reload(Trigger::Refresh).await.is_ok() {
                self.metrics
                    .refreshes
                    .with_label_values(&["reloaded"])
                    .inc();
                "reloaded"
            } else {
                "failure"
            }
        } else {
            self.metrics
                .refreshes
                .with_label_values(&["unchanged"])
                .inc();
            let attempts = self.reconcile(&served.snapshot, &served.settings).await;
            if !attempts.is_empty() {
                notify::status(&self.status_line());
            }
            "unchanged"
        }
    }

    /// Reloads settings and manifests. On any error the served state is untouched.
    pub async fn reload(self: &Arc<Self>, trigger: Trigger) -> Result<String, String> {
        use tracing::Instrument;
        let span = crate::traced_span!(
            "reload",
            trigger = trigger.as_str(),
            result = tracing::field::Empty,
            candidates = tracing::field::Empty,
            entries_loaded = tracing::field::Empty,
            entries_skipped = tracing::field::Empty
        );
        let result = self.reload_traced(trigger).instrument(span.clone()).await;
        span.record("result", if result.is_ok() { "success" } else { "failure" });
        let served = self.served.load();
        span.record("candidates", served.snapshot.candidate_count() as u64);
        span.record(
            "entries_loaded",
            served.manifests.iter().map(|m| m.loaded).sum::<usize>() as u64,
        );
        span.record(
            "entries_skipped",
            served
                .manifests
                .iter()
                .map(|m| m.skipped.len())
                .sum::<usize>() as u64,
        );
        result
    }

    async fn reload_traced(self: &Arc<Self>, trigger: Trigger) -> Result<String, String> {
        let _guard = self.reload_lock.lock().await;
        let notify_systemd = matches!(trigger, Trigger::Sighup | Trigger::Control);
        if notify_systemd {
            notify::reloading();
        }
        self.reload_started.store(
            self.started.elapsed().as_millis().max(1) as u64,
            Ordering::SeqCst,
        );
        let result = self.reload_inner(trigger).await;
        self.reload_started.store(0, Ordering::SeqCst);
        let (ok, message) = match &result {
            Ok(m) => (true, m.clone()),
            Err(m) => (false, m.clone()),
        };
        self.set_last(trigger, ok, &message);
        let result_label = if ok { "success" } else { "failure" };
        if trigger == Trigger::Refresh {
            if !ok {
                self.metrics.refreshes.with_label_values(&["failure"]).inc();
            }
        } else {
            self.metrics
                .reloads
                .with_label_values(&[trigger.as_str(), result_label])
                .inc();
        }
        if ok {
            tracing::info!(
                oneiric_event = "reload",
                trigger = trigger.as_str(),
                "{message}"
            );
        } else {
            tracing::error!(
                oneiric_event = "reload_failed",
                trigger = trigger.as_str(),
                "reload failed, still serving the previous state: {message}"
            );
        }
        let status = self.status_line();
        if notify_systemd {
            notify::ready(&status);
        } else {
            notify::status(&status);
        }
        result
    }

    async fn reload_inner(self: &Arc<Self>, trigger: Trigger) -> Result<String, String> {
        // Remote manifests are fetched with the settings about to be loaded; a refresh has
        // fetched already.
        if trigger != Trigger::Refresh
            && let Ok(mut settings) = config::load_settings(&self.req.config, &self.req.env)
            && engine::apply_overrides(&mut settings, &self.req.overrides).is_ok()
        {
            self.sync_remote(&settings).await;
        }
        let pins = self.lifecycle.lock().await.pins();
        let req = self.req.clone();
        let loaded = tokio::task::spawn_blocking(move || engine::load(&req, &pins))
            .await
            .map_err(|e| format!("load task failed: {e}"))?;
        let world = match loaded {
            Ok(w) => w,
            Err(e) => {
                if matches!(e, LoadError::Manifest(ManifestError::Signature { .. })) {
                    self.metrics.signature_failures.inc();
                }
                return Err(e.to_string());
            }
        };
        let attempts = self.reconcile(&world.snapshot, &world.settings).await;
        let generation = self.served.load().generation + 1;
        let message = format!(
            "{} {}: {} candidates, {} keys, {} manifest(s), {} entries skipped, {} activation(s)",
            if trigger == Trigger::Startup {
                "loaded"
            } else {
                "reloaded"
            },
            generation,
            world.snapshot.candidate_count(),
            world.snapshot.key_count(),
            world.manifests.len(),
            world
                .manifests
                .iter()
                .map(|m| m.skipped.len())
                .sum::<usize>(),
            attempts.len()
        );
        for w in &world.warnings {
            tracing::warn!(oneiric_event = "load_warning", "{w}");
        }
        self.publish(world, generation);
        Ok(message)
    }

    /// Activates winners that changed, persisting the lifecycle status.
    async fn reconcile(&self, snapshot: &Snapshot, settings: &LoadedSettings) -> Vec<Activation> {
        let refused = self.refused_keys();
        let check = |d: Domain, k: &str| refused.contains(&(d.to_string(), k.to_string()));
        let mut status = self.lifecycle.lock().await;
        let tracked = status.keys.len();
        let attempts =
            lifecycle::reconcile(snapshot, &mut status, &check, &settings.settings.lifecycle).await;
        // Reconcile changes the status only by recording attempts or forgetting keys; an
        // unchanged status is not rewritten (no fsync on every refresh tick).
        if (!attempts.is_empty() || status.keys.len() != tracked)
            && let Err(e) = status.save(&self.req.dirs.state)
        {
            tracing::error!(oneiric_event = "state_write_failed", "{e}");
        }
        drop(status);
        self.record_activations(&attempts);
        attempts
    }

    /// Rebuilds the served snapshot from the same inputs with the current pins (after a swap).
    pub async fn rebuild_with_pins(&self) {
        let pins = self.lifecycle.lock().await.pins();
        let served = self.served.load_full();
        let snapshot = served
            .snapshot
            .reselect(&engine::selections(&served.settings, &pins));
        self.served.store(Arc::new(Served {
            settings: served.settings.clone(),
            manifests: served.manifests.clone(),
            snapshot: Arc::new(snapshot),
            warnings: served.warnings.clone(),
            demo: served.demo,
            generation: served.generation + 1,
            loaded_at: SystemTime::now(),
        }));
        notify::status(&self.status_line());
    }

    /// Whether the service is making progress: no reload stuck past its deadline.
    fn progressing(&self) -> bool {
        let started = self.reload_started.load(Ordering::SeqCst);
        started == 0
            || self.started.elapsed().as_millis() as u64 - started
                < RELOAD_DEADLINE.as_millis() as u64
    }
}

/// Fingerprint of the local inputs (paths, sizes, mtimes) to notice changes cheaply.
fn fingerprint(served: &Served, req: &LoadRequest) -> Vec<(PathBuf, u64, i128)> {
    let mut paths: Vec<PathBuf> = served.settings.files.clone();
    if let Some(p) = &served.settings.dir_manifest {
        paths.push(p.clone());
    }
    paths.push(req.config.path.clone());
    for m in &req.manifests {
        if let engine::ManifestSource::Path(p) = m {
            paths.push(p.clone());
        }
    }
    // New files in the settings directory count as changes too.
    if let Ok(rd) = std::fs::read_dir(&req.config.path) {
        paths.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let size = meta.as_ref().map(|m| m.len()).unwrap_or(u64::MAX);
            let mtime = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(-1);
            (p, size, mtime)
        })
        .collect()
}

/// Runs the service until SIGTERM/SIGINT. Returns an error when it cannot start.
pub fn run(req: LoadRequest) -> Result<(), DaemonError> {
    // Logging first, from settings alone, so that a bad manifest is reported in the right place.
    let pre = config::load_settings(&req.config, &req.env);
    let (level, format) = match &pre {
        Ok(l) => {
            let level = req
                .overrides
                .log_level
                .as_deref()
                .or(l.settings.logging.level.as_deref())
                .and_then(|s| crate::telemetry::parse_level(s).ok())
                .unwrap_or(tracing::level_filters::LevelFilter::INFO);
            let format = l
                .settings
                .logging
                .format
                .or(match l.settings.logging.emit_json {
                    Some(true) => Some(config::LogFormat::Json),
                    Some(false) => Some(config::LogFormat::Text),
                    None => None,
                });
            (level, format)
        }
        Err(_) => (tracing::level_filters::LevelFilter::INFO, None),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("oneiric")
        .build()
        .map_err(|e| DaemonError::Startup(format!("cannot start runtime: {e}")))?;
    let metrics = Metrics::new().map_err(|e| DaemonError::Startup(e.to_string()))?;
    // Inside the runtime: the OTLP exporter's channel and HTTP client live on it.
    let telemetry = {
        let _guard = runtime.enter();
        crate::telemetry::init(
            level,
            format,
            Some(crate::telemetry::TraceExport {
                env: &req.env,
                dropped: metrics.otel_spans_dropped.clone(),
            }),
        )
    };
    let mut pre_settings = match pre {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(oneiric_event = "startup_failed", "{e}");
            return Err(DaemonError::Load(e.into()));
        }
    };
    if let Err(e) = engine::apply_overrides(&mut pre_settings, &req.overrides) {
        tracing::error!(oneiric_event = "startup_failed", "{e}");
        return Err(DaemonError::Load(e.into()));
    }

    let result = runtime.block_on(serve(req, &telemetry, metrics, pre_settings));
    // Flush pending spans while the runtime (which carries the exporter) still runs, bounded
    // well inside TimeoutStopSec.
    telemetry.shutdown(Duration::from_secs(5));
    // Tasks still parked on I/O must not delay exit past TimeoutStopSec.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve(
    req: LoadRequest,
    telemetry: &crate::telemetry::Telemetry,
    metrics: Metrics,
    pre_settings: LoadedSettings,
) -> Result<(), DaemonError> {
    let sink = telemetry.sink;
    // Handlers first: a SIGHUP or SIGTERM during startup waits for the main loop instead of
    // killing the process with the default action.
    let mut sighup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigterm = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = signal(tokio::signal::unix::SignalKind::interrupt())?;

    let dirs = req.dirs.clone();
    for (what, dir) in [("state", &dirs.state), ("cache", &dirs.cache)] {
        std::fs::create_dir_all(dir).map_err(|e| {
            DaemonError::Startup(format!("{what} directory {}: {e}", dir.display()))
        })?;
    }
    let lifecycle_status = match LifecycleStatus::load(&dirs.state) {
        Ok(s) => s,
        Err(e) => {
            // A corrupt status file must not keep the service down; keep it for inspection.
            let path = LifecycleStatus::path(&dirs.state);
            let aside = path.with_extension(format!("json.corrupt-{}", unix_now()));
            let _ = std::fs::rename(&path, &aside);
            tracing::error!(
                oneiric_event = "state_corrupt",
                "{e}; moved to {} and starting with an empty lifecycle status",
                aside.display()
            );
            LifecycleStatus::default()
        }
    };
    let activity =
        ActivityStore::open(&dirs.state).map_err(|e| DaemonError::Startup(e.to_string()))?;

    let shared = Arc::new(Shared {
        served: ArcSwap::from_pointee(Served {
            settings: pre_settings.clone(),
            manifests: Vec::new(),
            snapshot: Arc::new(Snapshot::default()),
            warnings: Vec::new(),
            demo: false,
            generation: 0,
            loaded_at: SystemTime::now(),
        }),
        metrics,
        ready: AtomicBool::new(false),
        req: req.clone(),
        lifecycle: tokio::sync::Mutex::new(lifecycle_status),
        activity: Mutex::new(activity),
        last_reload: Mutex::new(None),
        reload_lock: tokio::sync::Mutex::new(()),
        fetcher: Mutex::new(None),
        reload_started: AtomicU64::new(0),
        loads_published: AtomicU64::new(0),
        started: Instant::now(),
    });
    // First load, synchronously: no READY until it succeeded. Remote manifests are fetched
    // first; when the server is down the cached copy is served (and says how old it is).
    let startup_span = crate::traced_span!(
        "startup_load",
        result = tracing::field::Empty,
        candidates = tracing::field::Empty,
        manifests = tracing::field::Empty
    );
    let first = {
        use tracing::Instrument;
        let shared = Arc::clone(&shared);
        let settings = pre_settings.clone();
        let req = req.clone();
        async move {
            shared.sync_remote(&settings).await;
            let pins = shared.lifecycle.lock().await.pins();
            tokio::task::spawn_blocking(move || engine::load(&req, &pins))
                .await
                .map_err(|e| DaemonError::Startup(format!("load task failed: {e}")))
        }
        .instrument(startup_span.clone())
        .await?
    };
    let world = match first {
        Ok(w) => w,
        Err(e) => {
            startup_span.record("result", "failure");
            let _entered = startup_span.enter();
            tracing::error!(oneiric_event = "startup_failed", "{e}");
            if matches!(e, LoadError::Manifest(ManifestError::Signature { .. })) {
                shared.metrics.signature_failures.inc();
            }
            return Err(e.into());
        }
    };
    startup_span.record("result", "success");
    startup_span.record("candidates", world.snapshot.candidate_count() as u64);
    startup_span.record("manifests", world.manifests.len() as u64);
    let http_settings = world.settings.settings.http.clone();
    let refresh = Duration::from_secs(world.settings.settings.remote.refresh_interval.max(1));

    for w in &world.warnings {
        tracing::warn!(oneiric_event = "load_warning", "{w}");
    }
    let attempts = {
        use tracing::Instrument;
        shared
            .reconcile(&world.snapshot, &world.settings)
            .instrument(startup_span.clone())
            .await
    };
    // The span ends here, so that it is exported now rather than at shutdown.
    drop(startup_span);
    let message = format!(
        "loaded: {} candidates, {} keys, {} manifest(s), {} activation(s)",
        world.snapshot.candidate_count(),
        world.snapshot.key_count(),
        world.manifests.len(),
        attempts.len()
    );
    shared.publish(world, 1);
    shared.set_last(Trigger::Startup, true, &message);
    shared
        .metrics
        .reloads
        .with_label_values(&["startup", "success"])
        .inc();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadReply>(16);

    // Listeners before READY, so that whoever waits for READY can connect.
    let mut tasks = Vec::new();
    let http_addr = if http_settings.enabled {
        let addr = format!("{}:{}", http_settings.address, http_settings.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| DaemonError::Startup(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| DaemonError::Startup(e.to_string()))?;
        tasks.push(tokio::spawn(crate::http::serve(
            listener,
            Arc::clone(&shared),
            shutdown_rx.clone(),
        )));
        Some(local)
    } else {
        None
    };
    let control_path = dirs.control_socket();
    let control = control_server::bind(&control_path).map_err(DaemonError::Startup)?;
    tasks.push(tokio::spawn(control_server::serve(
        control,
        Arc::clone(&shared),
        reload_tx.clone(),
        shutdown_rx.clone(),
    )));

    shared.ready.store(true, Ordering::SeqCst);
    shared.metrics.ready.set(1);
    let status = shared.status_line();
    notify::ready(&status);
    match http_addr {
        Some(a) => tracing::info!(
            oneiric_event = "ready",
            "ready: {status}; HTTP on http://{a} (/metrics, /healthz, /readyz, /v1/status, /v1/resolve/DOMAIN/KEY, /v1/explain/DOMAIN/KEY); control socket {}; logging to {sink:?}; traces {}",
            control_path.display(),
            telemetry.otel
        ),
        None => tracing::info!(
            oneiric_event = "ready",
            "ready: {status}; HTTP disabled; control socket {}",
            control_path.display()
        ),
    }

    let mut refresh_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    refresh_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog = notify::watchdog_interval();
    // Without a watchdog the tick is effectively never: no idle wake-ups.
    let mut watchdog_timer = tokio::time::interval(
        watchdog
            .map(|w| w / 2)
            .unwrap_or(Duration::from_secs(86_400 * 365)),
    );
    let mut last_fingerprint = fingerprint(&shared.served.load(), &req);
    let refreshing = Arc::new(AtomicBool::new(false));

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!(oneiric_event = "stop", "SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!(oneiric_event = "stop", "SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                let s = Arc::clone(&shared);
                tokio::spawn(async move { let _ = s.reload(Trigger::Sighup).await; });
            }
            Some(reply) = reload_rx.recv() => {
                let s = Arc::clone(&shared);
                tokio::spawn(async move { let _ = reply.send(s.reload(Trigger::Control).await); });
            }
            _ = refresh_timer.tick() => {
                let current = fingerprint(&shared.served.load(), &req);
                let local_changed = current != last_fingerprint;
                last_fingerprint = current;
                // A slow remote must not pile up refreshes.
                if !refreshing.swap(true, Ordering::SeqCst) {
                    let s = Arc::clone(&shared);
                    let flag = Arc::clone(&refreshing);
                    tokio::spawn(async move {
                        s.refresh(local_changed).await;
                        flag.store(false, Ordering::SeqCst);
                    });
                }
            }
            _ = watchdog_timer.tick(), if watchdog.is_some() => {
                if shared.progressing() {
                    notify::watchdog();
                } else {
                    tracing::error!(oneiric_event = "watchdog_withheld", "a reload has run for more than {} s; withholding watchdog pings", RELOAD_DEADLINE.as_secs());
                }
            }
        }
    }

    notify::stopping();
    shared.ready.store(false, Ordering::SeqCst);
    shared.metrics.ready.set(0);
    let _ = shutdown_tx.send(true);
    // Let servers finish in-flight requests briefly, then move on.
    let drain = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    // Any reload in flight finishes or is abandoned; state on disk is always whole.
    let _ = tokio::time::timeout(Duration::from_secs(5), shared.reload_lock.lock()).await;
    let status = shared.lifecycle.lock().await;
    if let Err(e) = status.save(&dirs.state) {
        tracing::error!(oneiric_event = "state_write_failed", "{e}");
    }
    let _ = std::fs::remove_file(&control_path);
    tracing::info!(oneiric_event = "stopped", "stopped");
    Ok(())
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, DaemonError> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| DaemonError::Startup(format!("cannot install signal handler: {e}")))
}

/// Per-key view used by `/v1/status` and the control socket's `status`.
pub fn status_json(shared: &Shared) -> serde_json::Value {
    let served = shared.served.load();
    let mut domains = HashMap::new();
    for (d, (cands, keys)) in served.snapshot.domain_counts() {
        domains.insert(
            d.to_string(),
            serde_json::json!({"candidates": cands, "keys": keys}),
        );
    }
    let last = shared.last_reload.lock().map(|l| l.clone()).unwrap_or(None);
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": shared.ready.load(Ordering::SeqCst),
        "generation": served.generation,
        "loaded_at_unix": served.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "candidates": served.snapshot.candidate_count(),
        "keys": served.snapshot.key_count(),
        "domains": domains,
        "manifests": served.manifests,
        "warnings": served.warnings,
        "demo": served.demo,
        "last_reload": last,
        "status": shared.status_line(),
    })
}
