//! Answering from the state an earlier process saved, and saving each new state for the
//! next one. At start, [`restore`] runs beside the first load and publishes the saved state
//! when the current settings (and so the trust policy) and every manifest's bytes are those
//! it was built from, unless the load was installed first; the load then installs over it. The [`Saver`] task is the one writer of
//! the file: reloads tell it a state was installed, and it saves the latest whenever what a
//! restore would check changed.

use std::sync::Arc;
use std::time::Instant;

use crate::engine::{self, LoadRequest, LoadedSettings};
use crate::lifecycle::Pins;
use crate::persisted::{self, PersistError};
use crate::resolver::Snapshot;
use crate::served::Served;

use super::Service;
use super::owner::Next;

#[derive(Debug, thiserror::Error)]
enum RestoreError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Stale(#[from] engine::Stale),
}

/// Publishes the saved state if it still applies; returns when it was saved. Why it does
/// not apply is logged: the service then starts as it would without one.
pub(super) async fn restore(service: &Arc<Service>, settings: &LoadedSettings) -> Option<u64> {
    let started = Instant::now();
    let (pins, _) = service.owner.pins().await;
    let req = service.req.clone();
    let settings = settings.clone();
    let read = tokio::task::spawn_blocking(move || read(&req, settings, &pins)).await;
    match read {
        Ok(Ok(next)) => {
            let at = next.restored_from;
            let candidates = next.snapshot.candidate_count();
            if !service.owner.restore(next).await {
                // Said at info: without it a restart that had a good saved state and one
                // that had none read the same in the journal.
                tracing::info!(
                    oneiric_event = "not_restored",
                    "the saved state was good but not needed: the first load finished before it was checked ({:.1} ms)",
                    started.elapsed().as_secs_f64() * 1000.0
                );
                return None;
            }
            tracing::info!(
                oneiric_event = "restored",
                "answering from the state saved at {} ({candidates} candidates, checked in {:.1} ms) while the first load runs",
                at.map(crate::text::fmt_unix).unwrap_or_default(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            at
        }
        Ok(Err(RestoreError::Persist(PersistError::Missing { .. }))) => None,
        Ok(Err(e)) => {
            tracing::info!(
                oneiric_event = "not_restored",
                "not answering from the saved state: {e}"
            );
            None
        }
        Err(e) => {
            tracing::error!(oneiric_event = "not_restored", "restore task failed: {e}");
            None
        }
    }
}

fn read(req: &LoadRequest, settings: LoadedSettings, pins: &Pins) -> Result<Next, RestoreError> {
    let key = engine::inputs_key(req, &settings);
    let saved = persisted::load(&req.dirs.state, &key)?;
    engine::check_inputs(req, &settings, &saved.manifests, &saved.unavailable)?;
    // Ranked under the selections of now: a swap made while the service was down holds.
    let snapshot =
        Snapshot::from_registered(saved.candidates, &engine::selections(&settings, pins));
    Ok(Next {
        settings,
        manifests: saved.manifests,
        snapshot: Arc::new(snapshot),
        warnings: saved.warnings,
        demo: saved.demo,
        unavailable: saved.unavailable,
        restored_from: Some(saved.saved_at_unix),
    })
}

/// What a restore checks of a state, to tell whether the saved file is still current.
#[derive(PartialEq, Eq)]
struct Identity {
    inputs_key: String,
    manifests: Vec<String>,
    unavailable: Vec<String>,
}

impl Identity {
    fn of(req: &LoadRequest, served: &Served) -> Self {
        Identity {
            inputs_key: engine::inputs_key(req, &served.settings),
            manifests: served
                .manifests
                .iter()
                .map(|m| m.sha256.clone().unwrap_or_default())
                .collect(),
            unavailable: served
                .unavailable
                .iter()
                .map(|u| u.origin.clone())
                .collect(),
        }
    }
}

/// Starts the one writer of the saved state. `installed` carries the generation of each
/// state a reload installed (`Service::installed`); with `restored`, the file already holds
/// the served state and is not written again until something it records changes.
pub(super) fn spawn_saver(
    service: &Arc<Service>,
    mut installed: tokio::sync::watch::Receiver<u64>,
    restored: bool,
) -> tokio::task::JoinHandle<()> {
    let service = Arc::clone(service);
    tokio::spawn(async move {
        let mut last: Option<Identity> = None;
        let served = service.view.served_full();
        // Only the restored state itself is what the file holds: when the first load was
        // installed meanwhile (with, say, a newer cached copy), that one is written.
        if restored && served.restored_from.is_some() {
            let req = service.req.clone();
            last = tokio::task::spawn_blocking(move || Identity::of(&req, &served))
                .await
                .ok();
        }
        while installed.changed().await.is_ok() {
            let served = service.view.served_full();
            if served.restored_from.is_some() {
                continue;
            }
            let req = service.req.clone();
            let previous = last.take();
            let outcome = tokio::task::spawn_blocking(move || {
                let id = Identity::of(&req, &served);
                if previous.as_ref() == Some(&id) {
                    return (Ok(()), id);
                }
                let saved = persisted::save(&req.dirs.state, &id.inputs_key, &served);
                // The serialiser's buffers were this blocking thread's: without this they
                // stay resident until the thread exits, after the reload's own release.
                crate::alloc::release_free_memory();
                (saved, id)
            })
            .await;
            match outcome {
                Ok((Ok(()), id)) => last = Some(id),
                Ok((Err(e), _)) => tracing::warn!(
                    oneiric_event = "state_write_failed",
                    "{e}; the next start loads before answering"
                ),
                Err(e) => tracing::error!(oneiric_event = "state_write_failed", "{e}"),
            }
        }
    })
}
