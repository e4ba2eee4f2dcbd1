//! The one owner of the served state.
//!
//! Every change — a reload's new world, a refresh's retried activations, a swap, an unpin, a
//! pause or drain — goes through [`StateOwner::transition`]: under one lock it builds the next
//! state from the current one, persists what changed, and publishes it with the next
//! generation number. Nothing else writes the served state, the lifecycle status or the
//! activity store. Readers ([`View`]) load lock-free.
//!
//! Slow work never happens under the lock: a reload loads and probes outside it and comes back
//! to install the result; a swap probes outside it between its two transitions. So swaps and
//! unpins wait at most for another transition's bookkeeping, never for probes of other keys.
//! A reload whose pins went stale while it loaded (a swap or unpin landed meanwhile) re-ranks
//! with the current pins when it installs, so an operator's choice is never overwritten.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::activity::{Activity, ActivityError, ActivityStore, ControlRecord};
use crate::domain::Domain;
use crate::engine::{self, LoadedSettings, ManifestReport, World};
use crate::lifecycle::{self, Activation, LifecycleError, LifecycleStatus, Pins, Probed};
use crate::metrics::Metrics;
use crate::resolver::Snapshot;
use crate::served::{LastReload, Served, View, unix_now};

use super::Trigger;

/// What the owner guards, besides the published state itself.
struct Inner {
    lifecycle: LifecycleStatus,
    activity: ActivityStore,
    generation: u64,
    /// Bumped by every change of operator pins, so that a reload can tell its pins are stale.
    pins_version: u64,
    /// Keys with a swap between its two transitions (probing): a second swap is refused.
    swapping: HashSet<(Domain, String)>,
}

/// A whole new served state, minus what the owner assigns (generation, time).
pub struct Next {
    pub settings: LoadedSettings,
    pub manifests: Vec<ManifestReport>,
    pub snapshot: Arc<Snapshot>,
    pub warnings: Vec<String>,
    pub demo: bool,
    pub unavailable: Vec<crate::engine::Unavailable>,
    /// When the state an earlier process saved was saved, if this is it.
    pub restored_from: Option<u64>,
}

impl Next {
    /// The current state with a snapshot re-ranked under `pins` (after a swap or an unpin).
    fn reselected(current: &Served, pins: &Pins) -> Self {
        Next {
            settings: current.settings.clone(),
            manifests: current.manifests.clone(),
            snapshot: Arc::new(
                current
                    .snapshot
                    .reselect(&engine::selections(&current.settings, pins)),
            ),
            warnings: current.warnings.clone(),
            demo: current.demo,
            unavailable: current.unavailable.clone(),
            restored_from: current.restored_from,
        }
    }
}

impl From<World> for Next {
    fn from(w: World) -> Self {
        Next {
            settings: w.settings,
            manifests: w.manifests,
            snapshot: Arc::new(w.snapshot),
            warnings: w.warnings,
            demo: w.demo,
            unavailable: w.unavailable,
            restored_from: None,
        }
    }
}

/// What installing a reload did, for its message.
#[derive(Debug)]
pub struct Installed {
    pub generation: u64,
    pub activations: usize,
    pub cut: usize,
}

pub struct StateOwner {
    served: Arc<ArcSwap<Served>>,
    last: Arc<ArcSwapOption<LastReload>>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    state_dir: PathBuf,
    inner: tokio::sync::Mutex<Inner>,
}

impl StateOwner {
    /// An owner serving `initial` as generation 0 (the service before its first load, or the
    /// offline CLI's freshly loaded world).
    pub fn new(
        state_dir: PathBuf,
        lifecycle: LifecycleStatus,
        activity: ActivityStore,
        initial: Next,
        metrics: Arc<Metrics>,
    ) -> Self {
        let served = Served {
            settings: initial.settings,
            manifests: initial.manifests,
            snapshot: initial.snapshot,
            warnings: initial.warnings,
            demo: initial.demo,
            unavailable: initial.unavailable,
            restored_from: initial.restored_from,
            generation: 0,
            loaded_at: SystemTime::now(),
            status_fixed: Default::default(),
        };
        Self {
            served: Arc::new(ArcSwap::from_pointee(served)),
            last: Arc::new(ArcSwapOption::empty()),
            ready: Arc::new(AtomicBool::new(false)),
            metrics,
            state_dir,
            inner: tokio::sync::Mutex::new(Inner {
                lifecycle,
                activity,
                generation: 0,
                pins_version: 0,
                swapping: HashSet::new(),
            }),
        }
    }

    pub fn view(&self) -> View {
        View::new(
            Arc::clone(&self.served),
            Arc::clone(&self.last),
            Arc::clone(&self.ready),
            Arc::clone(&self.metrics),
        )
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.metrics.ready.set(i64::from(ready));
    }

    /// The one way the state changes: `f` sees the guarded state and the current published
    /// state, and returns the next published state (if any) and its own result.
    async fn transition<R>(&self, f: impl FnOnce(&mut Inner, &Served) -> (Option<Next>, R)) -> R {
        let mut inner = self.inner.lock().await;
        let (next, result) = {
            let current = self.served.load_full();
            f(&mut inner, &current)
            // `current` is released here, before publishing: otherwise the previous state
            // would be freed on this path (before READY=1), not on a blocking thread.
        };
        if let Some(next) = next {
            inner.generation += 1;
            self.publish(next, inner.generation);
        }
        result
    }

    fn publish(&self, next: Next, generation: u64) {
        let loaded: usize = next.manifests.iter().map(|m| m.loaded).sum();
        let skipped: usize = next.manifests.iter().map(|m| m.skipped.len()).sum();
        self.metrics
            .observe_snapshot(&next.snapshot, loaded, skipped);
        // Series of manifests and options that are gone must not linger at their last value.
        self.metrics.manifest_expired.reset();
        let now = crate::served::unix_now_i64();
        for m in &next.manifests {
            self.metrics
                .manifest_expired
                .with_label_values(&[crate::text::redact_url(&m.origin).as_str()])
                .set(i64::from(m.fresh_until.is_some_and(|t| t <= now)));
        }
        self.metrics.insecure_options.reset();
        for opt in next.settings.settings.insecure_options() {
            self.metrics
                .insecure_options
                .with_label_values(&[opt])
                .set(1);
        }
        self.metrics.manifest_info.reset();
        self.metrics.manifest_signed.reset();
        self.metrics.manifest_fetched.reset();
        for m in &next.manifests {
            // A URL's credentials never become a label.
            let origin = crate::text::redact_url(&m.origin);
            let serial = m.serial.map(|s| s.to_string());
            self.metrics
                .manifest_info
                .with_label_values(&[
                    origin.as_str(),
                    serial.as_deref().unwrap_or("none"),
                    m.sha256.as_deref().unwrap_or("none"),
                ])
                .set(1);
            if let Some(t) = m.signed_at_unix {
                self.metrics
                    .manifest_signed
                    .with_label_values(&[origin.as_str()])
                    .set(t as f64);
            }
            if let Some(t) = m.fetched_at {
                self.metrics
                    .manifest_fetched
                    .with_label_values(&[origin.as_str()])
                    .set(t as f64);
            }
        }
        self.metrics.generation.set(generation as i64);
        let cadence = crate::remote::schedule::Cadence::of(&next.settings.settings.remote);
        self.metrics.refresh_interval.set(cadence.interval);
        self.metrics.refresh_max_interval.set(cadence.max_interval);
        for m in &next.manifests {
            if let Some(age) = m.cached_age_seconds {
                self.metrics
                    .manifest_age
                    .with_label_values(&[crate::text::redact_url(&m.origin).as_str()])
                    .set(age as f64);
            }
        }
        let previous = self.served.swap(Arc::new(Served {
            settings: next.settings,
            manifests: next.manifests,
            snapshot: next.snapshot,
            warnings: next.warnings,
            demo: next.demo,
            unavailable: next.unavailable,
            restored_from: next.restored_from,
            generation,
            loaded_at: SystemTime::now(),
            status_fixed: Default::default(),
        }));
        // Freeing the previous snapshot (every candidate of every key) is left to a blocking
        // thread, not done before READY=1; readers still holding it keep it alive anyway.
        if Arc::strong_count(&previous) == 1 && tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::spawn_blocking(move || drop(previous));
        }
    }

    /// Publishes the state an earlier process saved, unless this process's first load was
    /// installed already (it runs at the same time); returns whether it was published. It is
    /// a transition like any other: the first load then installs over it.
    pub async fn restore(&self, next: Next) -> bool {
        self.transition(|inner, _| {
            let first = inner.generation == 0;
            (first.then_some(next), first)
        })
        .await
    }

    /// Operator pins and their version, for a load about to start.
    pub async fn pins(&self) -> (Pins, u64) {
        let inner = self.inner.lock().await;
        (inner.lifecycle.pins(), inner.pins_version)
    }

    /// The activations `snapshot` calls for against the current lifecycle status (paused and
    /// draining keys left alone). Decides only.
    pub async fn plan(&self, snapshot: &Snapshot) -> Vec<lifecycle::Planned> {
        self.transition(|inner, _| {
            let refused = refused_keys(&inner.activity);
            let check = |d: Domain, k: &str| refused.contains(&(d, k.to_string()));
            (None, lifecycle::plan(snapshot, &inner.lifecycle, &check))
        })
        .await
    }

    /// Installs a reload: re-ranks with the current pins when they changed while it loaded,
    /// records the probe outcomes that still apply, persists, and publishes.
    pub async fn install(&self, world: World, pins_version: u64, probed: Probed) -> Installed {
        self.transition(|inner, _| {
            let mut next = Next::from(world);
            let stale = inner.pins_version != pins_version;
            if stale {
                next.snapshot = Arc::new(
                    next.snapshot
                        .reselect(&engine::selections(&next.settings, &inner.lifecycle.pins())),
                );
            }
            // An outcome for a provider that is no longer the winner (a swap or unpin
            // landed meanwhile), or for a key being swapped right now, is dropped.
            let done: Vec<Activation> = probed
                .done
                .into_iter()
                .filter(|a| {
                    !inner.swapping.contains(&(a.domain, a.key.clone()))
                        && (!stale
                            || next
                                .snapshot
                                .resolve(a.domain, &a.key)
                                .is_some_and(|w| w.provider == a.provider))
                })
                .collect();
            self.persist_activations(inner, &next.snapshot, &done);
            let n = done.len();
            (
                Some(next),
                Installed {
                    generation: inner.generation + 1,
                    activations: n,
                    cut: probed.cut.len(),
                },
            )
        })
        .await
    }

    /// A refresh with unchanged inputs: records retried activations against the served
    /// snapshot, without publishing (the ranking did not change).
    pub async fn retried(&self, probed: Probed) -> usize {
        self.transition(|inner, current| {
            let done: Vec<Activation> = probed
                .done
                .into_iter()
                .filter(|a| {
                    !inner.swapping.contains(&(a.domain, a.key.clone()))
                        && current
                            .snapshot
                            .resolve(a.domain, &a.key)
                            .is_some_and(|w| w.provider == a.provider)
                })
                .collect();
            let snapshot = Arc::clone(&current.snapshot);
            self.persist_activations(inner, &snapshot, &done);
            (None, done.len())
        })
        .await
    }

    fn persist_activations(&self, inner: &mut Inner, snapshot: &Snapshot, done: &[Activation]) {
        // An unchanged status is not rewritten: no fsync on every refresh tick.
        if lifecycle::apply(&mut inner.lifecycle, snapshot, done) {
            if let Err(e) = inner.lifecycle.save(&self.state_dir) {
                tracing::error!(oneiric_event = "state_write_failed", "{e}");
            }
        }
        self.record_activations(done);
    }

    /// Records how the latest reload went (what `STATUS=` and `/v1/status` show).
    pub async fn record_reload(&self, trigger: Trigger, ok: bool, message: String) {
        self.transition(|_, _| {
            self.last.store(Some(Arc::new(LastReload {
                trigger: trigger.as_str(),
                ok,
                message,
                at_unix: unix_now(),
            })));
            (None, ())
        })
        .await;
        if ok {
            self.metrics.last_reload_success.set(unix_now() as f64);
        }
    }

    /// An operator swap: probe (outside the lock), bind and pin, or record the failure and keep
    /// the previous provider. The one implementation behind the control socket and the
    /// offline CLI.
    #[tracing::instrument(
        name = "swap",
        skip_all,
        fields(
            domain = %req.domain,
            key = %req.key,
            provider = %req.provider,
            forced = req.force,
            outcome = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        )
    )]
    pub async fn swap(
        &self,
        req: lifecycle::SwapRequest<'_>,
    ) -> Result<Activation, LifecycleError> {
        let span = crate::telemetry::traced(tracing::Span::current());
        let id = (req.domain, req.key.to_string());
        let prepared = self
            .transition(|inner, current| {
                let r = (|| {
                    let activity = inner.activity.get(req.domain, req.key)?;
                    let (target, previous) = lifecycle::prepare_swap(
                        &current.snapshot,
                        &inner.lifecycle,
                        &activity,
                        req,
                    )?;
                    if !inner.swapping.insert(id.clone()) {
                        return Err(LifecycleError::Refused(format!(
                            "a swap of {}/{} is already running",
                            req.domain, req.key
                        )));
                    }
                    lifecycle::mark_activating(&mut inner.lifecycle, req.domain, req.key);
                    if let Err(e) = inner.lifecycle.save(&self.state_dir) {
                        inner.swapping.remove(&id);
                        return Err(e);
                    }
                    Ok((
                        target,
                        previous,
                        current.settings.settings.lifecycle.clone(),
                    ))
                })();
                (None, r)
            })
            .await;
        let (target, previous, timeouts) = match prepared {
            Ok(p) => p,
            Err(e) => {
                span.record("outcome", "refused");
                return Err(e);
            }
        };
        let outcome = lifecycle::activate(&target, previous, &timeouts, req.force).await;
        span.record("outcome", if outcome.bound { "success" } else { "failure" });
        self.transition(|inner, current| {
            inner.swapping.remove(&id);
            lifecycle::finish_swap(&mut inner.lifecycle, &outcome);
            // The attempt is history whatever its result: persist it either way.
            let saved = inner.lifecycle.save(&self.state_dir);
            self.record_activations(std::slice::from_ref(&outcome));
            let next = if outcome.bound {
                inner.pins_version += 1;
                Some(Next::reselected(current, &inner.lifecycle.pins()))
            } else {
                None
            };
            (next, saved.map(|()| outcome))
        })
        .await
    }

    /// Removes an operator pin; returns whether there was one.
    pub async fn unpin(&self, domain: Domain, key: &str) -> Result<bool, LifecycleError> {
        self.transition(|inner, current| {
            let removed = lifecycle::unpin(&mut inner.lifecycle, domain, key);
            if !removed {
                return (None, Ok(false));
            }
            inner.pins_version += 1;
            match inner.lifecycle.save(&self.state_dir) {
                Ok(()) => (
                    Some(Next::reselected(current, &inner.lifecycle.pins())),
                    Ok(true),
                ),
                Err(e) => (None, Err(e)),
            }
        })
        .await
    }

    /// Pauses/resumes (`drain == false`) or drains/clears a key. Ranking is unaffected (the
    /// flags refuse swaps and hold reconciliation), so nothing is republished.
    pub async fn set_flag(
        &self,
        drain: bool,
        domain: Domain,
        key: &str,
        on: bool,
        note: Option<&str>,
    ) -> Result<(Activity, &'static str), ActivityError> {
        self.transition(|inner, _| (None, inner.activity.set_flag(drain, domain, key, on, note)))
            .await
    }

    /// Appends a control request (allowed or refused) to the activity store's log. A failed
    /// write is logged: the request's own answer does not depend on it.
    pub async fn record_request(&self, rec: ControlRecord) {
        let written = self
            .transition(|inner, _| (None, inner.activity.record_request(&rec)))
            .await;
        if let Err(e) = written {
            tracing::error!(oneiric_event = "activity_error", "{e}");
        }
    }

    /// Writes the lifecycle status (at shutdown).
    pub async fn save(&self) -> Result<(), LifecycleError> {
        self.transition(|inner, _| (None, inner.lifecycle.save(&self.state_dir)))
            .await
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
}

/// Keys that refuse swaps and hold reconciliation (paused or draining): few, read per plan.
fn refused_keys(store: &ActivityStore) -> HashSet<(Domain, String)> {
    match store.all() {
        Ok(rows) => rows
            .into_iter()
            .filter(|a| a.paused || a.draining)
            .filter_map(|a| Some((a.domain.parse().ok()?, a.key)))
            .collect(),
        Err(e) => {
            tracing::error!(oneiric_event = "activity_error", "{e}");
            HashSet::new()
        }
    }
}
