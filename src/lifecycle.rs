//! Activation and hot-swap with rollback, and the persisted lifecycle status
//! (`lifecycle_status.json` in the state directory, written atomically).
//!
//! Activate: state `activating` → probe the candidate (timeout) → bind → `ready`. Any failure:
//! `failed`, and the previously bound provider stays bound. `force` binds despite a failed probe.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::activity::Activity;
use crate::config::LifecycleSettings;
use crate::domain::Domain;
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
    crate::manifest::signature::fmt_time(time::OffsetDateTime::now_utc())
}

impl LifecycleStatus {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Loads the status; a missing file is an empty status.
    pub fn load(state_dir: &Path) -> Result<Self, LifecycleError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LifecycleError::Store {
                path,
                message: format!("unreadable lifecycle status: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                version: 1,
                keys: BTreeMap::new(),
            }),
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
    pub fn pins(&self) -> HashMap<(Domain, String), (String, SelectionOrigin)> {
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

    fn entry(&mut self, domain: Domain, key: &str) -> &mut KeyStatus {
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
pub async fn activate(
    candidate: &Candidate,
    previous: Option<String>,
    timeouts: &LifecycleSettings,
    force: bool,
) -> Activation {
    use tracing::Instrument;
    let span = crate::traced_span!(
        "activate",
        domain = %candidate.domain,
        key = %candidate.key,
        provider = %candidate.provider,
        forced = force,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty
    );
    let a = activate_inner(candidate, previous, timeouts, force)
        .instrument(span.clone())
        .await;
    span.record("outcome", if a.bound { "bound" } else { "rolled_back" });
    span.record("duration_ms", a.duration.as_secs_f64() * 1000.0);
    a
}

async fn activate_inner(
    candidate: &Candidate,
    previous: Option<String>,
    timeouts: &LifecycleSettings,
    force: bool,
) -> Activation {
    let start = Instant::now();
    let verdict = match &candidate.health {
        None => Ok(()),
        Some(check) => {
            let health = Duration::from_secs_f64(timeouts.health_timeout);
            let overall = Duration::from_secs_f64(timeouts.activation_timeout);
            match tokio::time::timeout(overall, crate::probe::run(check, health)).await {
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
    Activation {
        domain: candidate.domain,
        key: candidate.key.clone(),
        provider: candidate.provider.clone(),
        previous,
        bound,
        forced: force,
        error,
        duration: start.elapsed(),
    }
}

/// An operator swap of `(domain, key)` to `provider`. Refused for paused or draining keys; on a
/// failed probe (without `force`) nothing changes but the recorded failure. On success the
/// provider is pinned, so later reloads keep it.
/// What an operator asked to swap.
#[derive(Debug, Clone, Copy)]
pub struct SwapRequest<'a> {
    pub domain: Domain,
    pub key: &'a str,
    pub provider: &'a str,
    pub force: bool,
}

pub async fn swap(
    snapshot: &Snapshot,
    status: &mut LifecycleStatus,
    activity: &Activity,
    req: SwapRequest<'_>,
    timeouts: &LifecycleSettings,
    state_dir: &Path,
) -> Result<Activation, LifecycleError> {
    let SwapRequest {
        domain,
        key,
        provider,
        force,
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
    // `activating` is on disk while the probe runs: a crash mid-swap leaves that trace.
    status.entry(domain, key).state = State::Activating;
    status.save(state_dir)?;
    let outcome = activate(target, previous.clone(), timeouts, force).await;
    status.record(domain, key, &outcome);
    if outcome.bound {
        status.entry(domain, key).pinned = Some(provider.to_string());
    }
    Ok(outcome)
}

/// Removes an operator pin, returning the key to ordinary ranking.
pub fn unpin(status: &mut LifecycleStatus, domain: Domain, key: &str) -> bool {
    status
        .keys
        .get_mut(&status_key(domain, key))
        .and_then(|s| s.pinned.take())
        .is_some()
}

/// Brings every key's bound provider in line with the snapshot's winner, activating (and
/// probing) where they differ. Paused and draining keys keep what they have. Returns the
/// attempts made.
pub async fn reconcile(
    snapshot: &Snapshot,
    status: &mut LifecycleStatus,
    refused: &(dyn Fn(Domain, &str) -> bool + Sync),
    timeouts: &LifecycleSettings,
) -> Vec<Activation> {
    let mut attempts = Vec::new();
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
            // A failed attempt at the same provider is retried only when it has a probe that
            // may since have recovered; without one the outcome cannot change.
            let previous = current.and_then(|s| s.active_provider.clone());
            let outcome = activate(winner, previous, timeouts, false).await;
            status.record(domain, key, &outcome);
            attempts.push(outcome);
        }
    }
    // Keys that vanished from every source are forgotten, unless pinned by an operator.
    status.keys.retain(|id, st| {
        st.pinned.is_some()
            || id
                .split_once('/')
                .and_then(|(d, k)| Some((d.parse::<Domain>().ok()?, k)))
                .is_some_and(|(d, k)| !snapshot.candidates(d, k).is_empty())
    });
    attempts
}
