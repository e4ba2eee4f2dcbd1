//! Activation and hot-swap with rollback, and the persisted lifecycle status
//! (`lifecycle_status.json` in the state directory, written atomically).
//!
//! Activate: state `activating` → probe the candidate (timeout) → bind → `ready`. Any failure:
//! `failed`, and the previously bound provider stays bound. `force` binds despite a failed probe.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::activity::Activity;
use crate::config::LifecycleSettings;
use crate::domain::Domain;
use tracing::Instrument;

pub use crate::resolver::Pins;
use crate::resolver::{Candidate, SelectionOrigin, Snapshot};

pub const FILE_NAME: &str = "lifecycle_status.json";
/// Swap durations kept per key, as the reference keeps.
const HISTORY: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("{path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("swap to {provider} failed: {reason}; {rolled_back}")]
    RolledBack {
        provider: String,
        reason: String,
        rolled_back: String,
    },
    #[error(transparent)]
    Activity(#[from] crate::activity::ActivityError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Activating,
    Ready,
    Failed,
}

impl State {
    /// The name state files and `status` use.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Activating => "activating",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyStatus {
    pub state: State,
    pub active_provider: Option<String>,
    #[serde(default)]
    pub previous_provider: Option<String>,
    /// Provider pinned by an operator swap; acts as a selection override until unpinned.
    #[serde(default)]
    pub pinned: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub updated_at: String,
    #[serde(default)]
    pub swap_durations_ms: Vec<f64>,
    #[serde(default)]
    pub swaps_ok: u64,
    #[serde(default)]
    pub swaps_failed: u64,
}

/// All keys' lifecycle state. Keys are `domain/key`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifecycleStatus {
    pub version: u32,
    pub keys: BTreeMap<String, KeyStatus>,
}

pub fn status_key(domain: Domain, key: &str) -> String {
    format!("{domain}/{key}")
}

fn now_string() -> String {
    crate::text::fmt_time(time::OffsetDateTime::now_utc())
}

/// Far above what any number of pins and notes takes; a bound on what a replaced file can
/// make the CLI or the service allocate.
const MAX_STATUS_BYTES: u64 = 64 * 1024 * 1024;

impl LifecycleStatus {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Loads the status; a missing file is an empty status.
    pub fn load(state_dir: &Path) -> Result<Self, LifecycleError> {
        let path = Self::path(state_dir);
        // The service's own file: never through a link or from a FIFO put in its place.
        match crate::fsutil::read_own_file(&path, MAX_STATUS_BYTES) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LifecycleError::Store {
                path,
                message: format!("unreadable lifecycle status: {e}"),
            }),
            Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self {
                    version: 1,
                    keys: BTreeMap::new(),
                })
            }
            Err(e) => Err(LifecycleError::Store {
                path,
                message: e.to_string(),
            }),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), LifecycleError> {
        let path = Self::path(state_dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| LifecycleError::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&path, &bytes, 0o640).map_err(|e| LifecycleError::Store {
            path,
            message: format!("cannot write: {e}"),
        })
    }

    /// Operator pins, as selection overrides for the resolver.
    pub fn pins(&self) -> Pins {
        self.keys
            .iter()
            .filter_map(|(id, st)| {
                let (d, k) = id.split_once('/')?;
                let domain = d.parse().ok()?;
                Some((
                    (domain, k.to_string()),
                    (st.pinned.clone()?, SelectionOrigin::Swap),
                ))
            })
            .collect()
    }

    pub fn get(&self, domain: Domain, key: &str) -> Option<&KeyStatus> {
        self.keys.get(&status_key(domain, key))
    }

    pub fn entry(&mut self, domain: Domain, key: &str) -> &mut KeyStatus {
        self.keys
            .entry(status_key(domain, key))
            .or_insert_with(|| KeyStatus {
                state: State::Activating,
                active_provider: None,
                previous_provider: None,
                pinned: None,
                last_error: None,
                updated_at: now_string(),
                swap_durations_ms: Vec::new(),
                swaps_ok: 0,
                swaps_failed: 0,
            })
    }

    /// Records a finished activation attempt.
    pub fn record(&mut self, domain: Domain, key: &str, outcome: &Activation) {
        let st = self.entry(domain, key);
        st.updated_at = now_string();
        st.swap_durations_ms
            .push(outcome.duration.as_secs_f64() * 1000.0);
        if st.swap_durations_ms.len() > HISTORY {
            let excess = st.swap_durations_ms.len() - HISTORY;
            st.swap_durations_ms.drain(..excess);
        }
        if outcome.bound {
            if st.active_provider.as_deref() != Some(outcome.provider.as_str()) {
                st.previous_provider = st.active_provider.take();
            }
            st.active_provider = Some(outcome.provider.clone());
            st.state = State::Ready;
            st.last_error = outcome.error.clone();
            st.swaps_ok += 1;
        } else {
            st.state = State::Failed;
            st.last_error = outcome.error.clone();
            st.swaps_failed += 1;
        }
    }
}

/// The result of one activation attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    pub domain: Domain,
    pub key: String,
    pub provider: String,
    pub previous: Option<String>,
    pub bound: bool,
    pub forced: bool,
    pub error: Option<String>,
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Probes a candidate within the activation timeout and decides whether to bind it.
#[tracing::instrument(
    name = "activate",
    skip_all,
    fields(
        domain = %candidate.domain,
        key = %candidate.key,
        provider = %candidate.provider,
        forced = force,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    )
)]
pub async fn activate(
    candidate: &Candidate,
    previous: Option<String>,
    timeouts: &LifecycleSettings,
    force: bool,
) -> Activation {
    let span = crate::telemetry::traced(tracing::Span::current());
    let start = Instant::now();
    let verdict = match &candidate.health {
        None => Ok(()),
        Some(check) => {
            let health = Duration::from_secs_f64(timeouts.health_timeout);
            let overall = Duration::from_secs_f64(timeouts.activation_timeout);
            match tokio::time::timeout(overall, crate::probe::run(check, &timeouts.probes, health))
                .await
            {
                Ok(r) if r.ok => Ok(()),
                Ok(r) => Err(format!("health check {} failed: {}", r.target, r.detail)),
                Err(_) => Err(format!(
                    "activation timed out after {:.1} s",
                    overall.as_secs_f64()
                )),
            }
        }
    };
    let (bound, error) = match verdict {
        Ok(()) => (true, None),
        Err(e) if force => (true, Some(format!("forced despite: {e}"))),
        Err(e) => (false, Some(e)),
    };
    let a = Activation {
        domain: candidate.domain,
        key: candidate.key.clone(),
        provider: candidate.provider.clone(),
        previous,
        bound,
        forced: force,
        error,
        duration: start.elapsed(),
    };
    span.record("outcome", if a.bound { "bound" } else { "rolled_back" });
    span.record("duration_ms", a.duration.as_secs_f64() * 1000.0);
    a
}

/// What an operator asked to swap.
#[derive(Debug, Clone, Copy)]
pub struct SwapRequest<'a> {
    pub domain: Domain,
    pub key: &'a str,
    pub provider: &'a str,
    pub force: bool,
}

/// The first half of an operator swap, decided on the current state without waiting: the
/// target candidate and the provider bound before. Refused for paused or draining keys.
pub fn prepare_swap(
    snapshot: &Snapshot,
    status: &LifecycleStatus,
    activity: &Activity,
    req: SwapRequest<'_>,
) -> Result<(Candidate, Option<String>), LifecycleError> {
    let SwapRequest {
        domain,
        key,
        provider,
        ..
    } = req;
    let candidates = snapshot.candidates(domain, key);
    if candidates.is_empty() {
        return Err(LifecycleError::NotFound(format!(
            "no candidates for {domain}/{key}"
        )));
    }
    let Some(target) = candidates.iter().find(|c| c.provider == provider) else {
        let known: Vec<&str> = candidates.iter().map(|c| c.provider.as_str()).collect();
        return Err(LifecycleError::NotFound(format!(
            "{domain}/{key} has no provider `{provider}` (candidates: {})",
            known.join(", ")
        )));
    };
    if let Some(reason) = activity.refusal() {
        return Err(LifecycleError::Refused(format!("swap refused: {reason}")));
    }
    let previous = status
        .get(domain, key)
        .and_then(|s| s.active_provider.clone())
        .or_else(|| snapshot.resolve(domain, key).map(|c| c.provider.clone()));
    Ok((Candidate::clone(target), previous))
}

/// Marks a key `activating` while its probe runs: a crash mid-swap leaves that trace on disk.
pub fn mark_activating(status: &mut LifecycleStatus, domain: Domain, key: &str) {
    status.entry(domain, key).state = State::Activating;
}

/// The second half of an operator swap: records the attempt and, when bound, pins the provider
/// so that later reloads keep it.
pub fn finish_swap(status: &mut LifecycleStatus, outcome: &Activation) {
    status.record(outcome.domain, &outcome.key, outcome);
    if outcome.bound {
        status.entry(outcome.domain, &outcome.key).pinned = Some(outcome.provider.clone());
    }
}

/// The message for a finished swap, the same whether the service or the offline CLI ran it.
pub fn swap_message(outcome: &Activation) -> String {
    let (d, k, p) = (outcome.domain, &outcome.key, &outcome.provider);
    if outcome.bound {
        format!(
            "{d}/{k}: swapped to {p} in {:.1} ms{}",
            outcome.duration.as_secs_f64() * 1000.0,
            outcome
                .error
                .as_deref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        )
    } else {
        format!(
            "{d}/{k}: swap to {p} failed ({}); rolled back to {}",
            outcome.error.as_deref().unwrap_or("unknown"),
            outcome.previous.as_deref().unwrap_or("nothing")
        )
    }
}

/// Removes an operator pin, returning the key to ordinary ranking.
pub fn unpin(status: &mut LifecycleStatus, domain: Domain, key: &str) -> bool {
    status
        .keys
        .get_mut(&status_key(domain, key))
        .and_then(|s| s.pinned.take())
        .is_some()
}

/// An activation that reconciling a snapshot calls for.
#[derive(Debug, Clone)]
pub struct Planned {
    pub candidate: Candidate,
    pub previous: Option<String>,
}

/// The keys whose bound provider differs from the snapshot's winner (or whose last attempt at
/// it failed and has a probe that may since have recovered). Paused and draining keys keep
/// what they have. Decides only; nothing is probed.
pub fn plan(
    snapshot: &Snapshot,
    status: &LifecycleStatus,
    refused: &dyn Fn(Domain, &str) -> bool,
) -> Vec<Planned> {
    let mut plans = Vec::new();
    for domain in Domain::ALL {
        for key in snapshot.keys(domain) {
            let Some(winner) = snapshot.resolve(domain, key) else {
                continue;
            };
            let current = status.get(domain, key);
            let settled = current.is_some_and(|s| {
                s.active_provider.as_deref() == Some(winner.provider.as_str())
                    && s.state == State::Ready
            });
            // Keys whose winner has no probe and that were never tracked bind trivially; not
            // recording them keeps the status file small at 100 000 candidates.
            let untracked = current.is_none() && winner.health.is_none();
            if settled || untracked || refused(domain, key) {
                continue;
            }
            plans.push(Planned {
                candidate: Candidate::clone(winner),
                previous: current.and_then(|s| s.active_provider.clone()),
            });
        }
    }
    plans
}

/// What probing a plan gave: the finished attempts, and the keys the deadline cut off (their
/// previous binding stays).
#[derive(Debug, Default)]
pub struct Probed {
    pub done: Vec<Activation>,
    pub cut: Vec<(Domain, String)>,
}

/// Runs the planned activations concurrently, at most `probe_parallelism` at a time, and stops
/// waiting at `reconcile_deadline`: a reload never waits longer than that on probes, however
/// many targets do not answer.
pub async fn probe_all(plans: Vec<Planned>, timeouts: &LifecycleSettings) -> Probed {
    let mut probed = Probed::default();
    if plans.is_empty() {
        return probed;
    }
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(
        timeouts.probe_parallelism.max(1),
    ));
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs_f64(timeouts.reconcile_deadline.max(0.1));
    let mut pending: std::collections::HashSet<(Domain, String)> = plans
        .iter()
        .map(|p| (p.candidate.domain, p.candidate.key.clone()))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for p in plans {
        let limit = std::sync::Arc::clone(&limit);
        let timeouts = timeouts.clone();
        set.spawn(
            async move {
                // A closed semaphore cannot happen (it is never closed); probe anyway.
                let _permit = limit.acquire_owned().await.ok();
                activate(&p.candidate, p.previous, &timeouts, false).await
            }
            .in_current_span(),
        );
    }
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(a))) => {
                pending.remove(&(a.domain, a.key.clone()));
                probed.done.push(a);
            }
            // A probe task that panicked counts as not probed: its key keeps its binding.
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                set.abort_all();
                break;
            }
        }
    }
    probed.cut = pending.into_iter().collect();
    probed.cut.sort();
    probed
}

/// Records finished attempts, then forgets keys that vanished from every source (unless an
/// operator pinned them). Returns whether the status changed.
pub fn apply(status: &mut LifecycleStatus, snapshot: &Snapshot, done: &[Activation]) -> bool {
    let tracked = status.keys.len();
    for a in done {
        status.record(a.domain, &a.key, a);
    }
    status.keys.retain(|id, st| {
        st.pinned.is_some()
            || id
                .split_once('/')
                .and_then(|(d, k)| Some((d.parse::<Domain>().ok()?, k)))
                .is_some_and(|(d, k)| !snapshot.candidates(d, k).is_empty())
    });
    !done.is_empty() || status.keys.len() != tracked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LifecycleSettings;

    fn snapshot(text: &str) -> Snapshot {
        let settings = crate::engine::load_settings(
            &crate::engine::SettingsSource {
                path: "/nonexistent-oneiric-test".into(),
                explicit: false,
            },
            &crate::config::Env::default(),
        )
        .expect("defaults");
        let m = crate::manifest::parse(text, "t").expect("manifest");
        crate::engine::build_snapshot(&settings, vec![m], &Default::default()).0
    }

    const PROBED: &str = "entries:\n  - {domain: adapter, key: a, provider: p, factory: f, health: {unix: /nonexistent/sock}}\n  - {domain: adapter, key: b, provider: q, factory: f}\n";

    #[test]
    fn plan_takes_changed_probed_winners_and_skips_refused_and_settled() {
        let snap = snapshot(PROBED);
        let mut status = LifecycleStatus::default();
        let none = |_: Domain, _: &str| false;
        // `a` has a probe and was never bound; `b` has none and is untracked: nothing to do.
        let plans = plan(&snap, &status, &none);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].candidate.key, "a");
        // A paused key keeps what it has.
        let paused = |_: Domain, k: &str| k == "a";
        assert!(plan(&snap, &status, &paused).is_empty());
        // Once bound and ready, `a` is settled.
        let bound = Activation {
            domain: Domain::Adapter,
            key: "a".into(),
            provider: "p".into(),
            previous: None,
            bound: true,
            forced: false,
            error: None,
            duration: Duration::ZERO,
        };
        assert!(apply(&mut status, &snap, std::slice::from_ref(&bound)));
        assert!(plan(&snap, &status, &none).is_empty());
        // A key that vanished from every source is forgotten, unless pinned.
        let empty = snapshot("entries: []\n");
        assert!(apply(&mut status, &empty, &[]));
        assert!(status.keys.is_empty());
    }

    #[tokio::test]
    async fn probe_all_runs_plans_and_reports_failures() {
        let snap = snapshot(PROBED);
        let plans = plan(&snap, &LifecycleStatus::default(), &|_, _| false);
        let probed = probe_all(plans, &LifecycleSettings::default()).await;
        assert_eq!(probed.done.len(), 1);
        assert!(!probed.done[0].bound, "{:?}", probed.done[0]);
        assert!(probed.cut.is_empty());
        assert!(
            probe_all(Vec::new(), &LifecycleSettings::default())
                .await
                .done
                .is_empty()
        );
    }

    #[test]
    fn swap_message_says_what_happened() {
        let mut a = Activation {
            domain: Domain::Adapter,
            key: "k".into(),
            provider: "p".into(),
            previous: Some("o".into()),
            bound: false,
            forced: false,
            error: Some("down".into()),
            duration: Duration::from_millis(2),
        };
        assert_eq!(
            swap_message(&a),
            "adapter/k: swap to p failed (down); rolled back to o"
        );
        a.bound = true;
        a.error = None;
        assert_eq!(swap_message(&a), "adapter/k: swapped to p in 2.0 ms");
    }
}
