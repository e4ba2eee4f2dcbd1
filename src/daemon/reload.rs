//! The reload pipeline, one reload at a time. Startup is the first reload; SIGHUP, `oneiric
//! reload` and a refresh that saw a change are the others. Each reads the settings once,
//! fetches remote manifests, loads everything off to the side, probes what changed (bounded
//! in parallelism and in total time), and hands the result to the state owner, which installs
//! it. Any error leaves the served state as it was.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use crate::engine::{self, LoadedSettings};
use crate::errors::ReloadError;
use crate::lifecycle;
use crate::manifest::ManifestError;
use crate::remote::SyncOutcome;

use super::sync::{RemoteSync, Which};
use super::{Service, Trigger, notify};

/// Quiet time after the last load before its garbage is returned to the system.
const MEMORY_RELEASE_DELAY: Duration = Duration::from_secs(2);

/// Longest a reload may run before the watchdog treats the service as hung.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(300);

impl Service {
    /// Reloads settings and manifests. `preloaded` are settings already read for this reload
    /// (startup reads them first, to set up logging and listeners).
    pub async fn reload(
        self: &Arc<Self>,
        trigger: Trigger,
        preloaded: Option<LoadedSettings>,
    ) -> Result<String, ReloadError> {
        let mut pipeline = self.pipeline.lock().await;
        self.reload_locked(trigger, preloaded, &mut pipeline).await
    }

    /// The refresh timer's work: fetch the remote manifests whose slot came (`due`), and reload
    /// when a local file or a remote manifest changed; otherwise retry failed activations only.
    #[tracing::instrument(
        name = "refresh",
        skip_all,
        fields(
            local_changed,
            outcome = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        )
    )]
    pub async fn refresh(self: &Arc<Self>, local_changed: bool, due: Vec<String>) {
        let span = crate::telemetry::traced(tracing::Span::current());
        let mut pipeline = self.pipeline.lock().await;
        let served = self.view.served_full();
        let outcomes = pipeline
            .sync(
                &self.req,
                &served.settings,
                self.owner.metrics(),
                Which::Due(&due),
            )
            .await;
        let remote_changed = outcomes.iter().any(|(url, o)| {
            let stale_now = !matches!(o, SyncOutcome::Updated { .. } | SyncOutcome::NotModified);
            let stale_before = served
                .manifests
                .iter()
                .any(|m| &m.origin == url && m.cached_age_seconds.is_some())
                || served.unavailable.iter().any(|u| &u.origin == url);
            matches!(o, SyncOutcome::Updated { .. }) || stale_now != stale_before
        });
        let metrics = self.owner.metrics();
        let outcome = if local_changed || remote_changed {
            match self
                .reload_locked(Trigger::Refresh, None, &mut pipeline)
                .await
            {
                Ok(_) => {
                    metrics.refreshes.with_label_values(&["reloaded"]).inc();
                    "reloaded"
                }
                Err(_) => "failure",
            }
        } else {
            metrics.refreshes.with_label_values(&["unchanged"]).inc();
            let plans = self.owner.plan(&served.snapshot).await;
            let probed = lifecycle::probe_all(plans, &served.settings.settings.lifecycle).await;
            if self.owner.retried(probed).await > 0 {
                notify::status(&self.view.status_line());
            }
            "unchanged"
        };
        span.record("outcome", outcome);
    }

    #[tracing::instrument(
        name = "reload",
        skip_all,
        fields(
            trigger = trigger.as_str(),
            result = tracing::field::Empty,
            candidates = tracing::field::Empty,
            entries_loaded = tracing::field::Empty,
            entries_skipped = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        )
    )]
    async fn reload_locked(
        self: &Arc<Self>,
        trigger: Trigger,
        preloaded: Option<LoadedSettings>,
        pipeline: &mut RemoteSync,
    ) -> Result<String, ReloadError> {
        let span = crate::telemetry::traced(tracing::Span::current());
        // systemd is told about reloads it asked for (or an operator did); startup ends in
        // READY=1 from the main loop, a refresh only updates STATUS=.
        let announce = matches!(trigger, Trigger::Sighup | Trigger::Control);
        if announce {
            notify::reloading();
        }
        self.reload_started.store(
            self.started.elapsed().as_millis().max(1) as u64,
            Ordering::SeqCst,
        );
        let result = self.load_and_install(trigger, preloaded, pipeline).await;
        self.reload_started.store(0, Ordering::SeqCst);

        let metrics = self.owner.metrics();
        let ok = result.is_ok();
        let message = match &result {
            Ok(m) => m.clone(),
            Err(e) => e.to_string(),
        };
        self.owner.record_reload(trigger, ok, message.clone()).await;
        if trigger == Trigger::Refresh {
            if !ok {
                metrics.refreshes.with_label_values(&["failure"]).inc();
            }
        } else {
            metrics
                .reloads
                .with_label_values(&[trigger.as_str(), if ok { "success" } else { "failure" }])
                .inc();
        }
        if let Err(ReloadError::Load(engine::LoadError::Manifest(ManifestError::Signature {
            ..
        }))) = &result
        {
            metrics.signature_failures.inc();
        }
        let served = self.view.served();
        span.record("result", if ok { "success" } else { "failure" });
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
        drop(served);
        if ok {
            tracing::info!(
                oneiric_event = "reload",
                trigger = trigger.as_str(),
                "{message}"
            );
            self.release_memory_later();
        } else if trigger == Trigger::Startup {
            tracing::error!(oneiric_event = "startup_failed", "{message}");
        } else {
            tracing::error!(
                oneiric_event = "reload_failed",
                trigger = trigger.as_str(),
                "reload failed, still serving the previous state: {message}"
            );
        }
        match trigger {
            Trigger::Startup => {}
            Trigger::Sighup | Trigger::Control => notify::ready(&self.view.status_line()),
            Trigger::Refresh => notify::status(&self.view.status_line()),
        }
        result
    }

    async fn load_and_install(
        self: &Arc<Self>,
        trigger: Trigger,
        preloaded: Option<LoadedSettings>,
        pipeline: &mut RemoteSync,
    ) -> Result<String, ReloadError> {
        let settings = match preloaded {
            Some(s) => s,
            None => engine::settings(&self.req)?,
        };
        // A refresh has fetched already, with the settings being served.
        if trigger != Trigger::Refresh {
            pipeline
                .sync(&self.req, &settings, self.owner.metrics(), Which::All)
                .await;
        }
        let (pins, pins_version) = self.owner.pins().await;
        let req = self.req.clone();
        // The first load goes on without a remote manifest that was never fetched (first
        // boot, origin down): the service runs, fetches on its refresh timer and says it is
        // not ready. Later loads fail instead, keeping what they serve.
        let missing = if trigger == Trigger::Startup {
            engine::MissingRemote::Skip
        } else {
            engine::MissingRemote::Fail
        };
        let world = tokio::task::spawn_blocking(move || {
            engine::load_with(&req, settings, &pins, missing, engine::TextDigest::Compute)
        })
        .await??;
        for w in &world.warnings {
            tracing::warn!(oneiric_event = "load_warning", "{w}");
        }
        let plans = self.owner.plan(&world.snapshot).await;
        let probed = lifecycle::probe_all(plans, &world.settings.settings.lifecycle).await;
        for (d, k) in &probed.cut {
            tracing::warn!(
                oneiric_event = "probe_deadline",
                oneiric_domain = %d,
                oneiric_key = %k,
                "{d}/{k}: not probed within lifecycle.reconcile_deadline; previous binding kept"
            );
        }
        let counts = (
            world.snapshot.candidate_count(),
            world.snapshot.key_count(),
            world.manifests.len(),
            world
                .manifests
                .iter()
                .map(|m| m.skipped.len())
                .sum::<usize>(),
        );
        let installed = self.owner.install(world, pins_version, probed).await;
        let _ = self.installed.send(installed.generation);
        let cut = if installed.cut > 0 {
            format!(
                ", {} probe(s) cut by the deadline (previous bindings kept)",
                installed.cut
            )
        } else {
            String::new()
        };
        Ok(format!(
            "{} {}: {} candidates, {} keys, {} manifest(s), {} entries skipped, {} activation(s){cut}",
            if trigger == Trigger::Startup {
                "loaded"
            } else {
                "reloaded"
            },
            installed.generation,
            counts.0,
            counts.1,
            counts.2,
            counts.3,
            installed.activations,
        ))
    }

    /// Hands what a load freed back to the system once loads have stopped for a while. Doing
    /// it right after every load made the next one fault that memory in again: a reload of
    /// 10 000 entries spent a third of its time in the kernel clearing fresh pages.
    fn release_memory_later(self: &Arc<Self>) {
        let ticket = self.loads_published.fetch_add(1, Ordering::Relaxed) + 1;
        let service = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(MEMORY_RELEASE_DELAY).await;
            if service.loads_published.load(Ordering::Relaxed) == ticket {
                crate::alloc::release_free_memory();
            }
        });
    }

    /// Whether the service is making progress: no reload stuck past its deadline.
    pub(super) fn progressing(&self) -> bool {
        let started = self.reload_started.load(Ordering::SeqCst);
        started == 0
            || (self.started.elapsed().as_millis() as u64).saturating_sub(started)
                < RELOAD_DEADLINE.as_millis() as u64
    }

    /// Fingerprint of the local inputs (paths, sizes, mtimes) to notice changes cheaply.
    pub(super) fn fingerprint(&self) -> Vec<(PathBuf, u64, i128)> {
        let served = self.view.served();
        let req = &self.req;
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
}
