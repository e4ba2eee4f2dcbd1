//! `swap`, `pause`, `drain`, `activity`: through the running service when there is one (so it
//! acts at once), otherwise directly on the state directory. Output says which.

use std::time::Duration;

use super::lifecycle_exit;
use super::{CliError, CliResult, Ctx, Exit, table};
use crate::activity::ActivityStore;
use crate::control::{self, ClientError, Request, Response};
use crate::domain::Domain;
use crate::lifecycle::{self, LifecycleStatus};

/// Sends a request to the service; `None` when no service is running.
fn via_service(ctx: &Ctx, req: &Request, timeout: Duration) -> Option<Result<Response, CliError>> {
    match control::request(&ctx.dirs.control_socket(), req, timeout) {
        Ok(r) => Some(Ok(r)),
        Err(ClientError::NoService(_)) => None,
        Err(e) => Some(Err(CliError::new(
            Exit::Failure,
            format!(
                "{e} (the service is running but cannot be reached; run as root or a member of group oneiric)"
            ),
        ))),
    }
}

fn report(ctx: &Ctx, r: Response) -> CliResult {
    ctx.print(&r, || format!("{} (via running service)\n", r.message));
    if r.ok {
        Ok(Exit::Ok)
    } else {
        Err(CliError::new(exit_from(r.code), r.message))
    }
}

pub(crate) fn exit_from(code: u8) -> Exit {
    match code {
        0 => Exit::Ok,
        3 => Exit::InvalidConfig,
        4 => Exit::Unhealthy,
        5 => Exit::NotFound,
        6 => Exit::Refused,
        7 => Exit::VerifyFailed,
        _ => Exit::Failure,
    }
}

fn store_err(e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Failure, e.to_string())
}

pub fn swap(
    ctx: &Ctx,
    domain: Domain,
    key: &str,
    provider: Option<&str>,
    force: bool,
    unpin: bool,
) -> CliResult {
    let req = match provider {
        Some(p) if !unpin => Request::Swap {
            domain,
            key: key.to_string(),
            provider: p.to_string(),
            force,
        },
        _ => Request::Unpin {
            domain,
            key: key.to_string(),
        },
    };
    if let Some(r) = via_service(ctx, &req, Duration::from_secs(120)) {
        return report(ctx, r?);
    }
    let mut status = LifecycleStatus::load(&ctx.dirs.state).map_err(store_err)?;
    if let Request::Unpin { .. } = req {
        let removed = lifecycle::unpin(&mut status, domain, key);
        status.save(&ctx.dirs.state).map_err(store_err)?;
        let msg = if removed {
            format!("{domain}/{key}: pin removed (offline, no service running)")
        } else {
            format!("{domain}/{key}: was not pinned (offline, no service running)")
        };
        ctx.print(&serde_json::json!({"ok": true, "message": msg}), || {
            format!("{msg}\n")
        });
        return Ok(Exit::Ok);
    }
    let provider = provider.unwrap_or_default();
    let world = super::inspect::load_world(ctx)?;
    let activity = ActivityStore::open(&ctx.dirs.state)
        .and_then(|a| a.get(domain, key))
        .map_err(store_err)?;
    let timeouts = world.settings.settings.lifecycle.clone();
    let outcome = super::block_on(lifecycle::swap(
        &world.snapshot,
        &mut status,
        &activity,
        lifecycle::SwapRequest {
            domain,
            key,
            provider,
            force,
        },
        &timeouts,
        &ctx.dirs.state,
    ))?;
    // Persist the attempt whatever its result: a failed swap is history too.
    let saved = status.save(&ctx.dirs.state);
    let outcome = outcome.map_err(|e| CliError::new(lifecycle_exit(&e), e.to_string()))?;
    saved.map_err(store_err)?;
    let msg = if outcome.bound {
        format!(
            "{domain}/{key}: swapped to {provider} in {:.1} ms{} (offline, no service running)",
            outcome.duration.as_secs_f64() * 1000.0,
            outcome
                .error
                .as_deref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        )
    } else {
        format!(
            "{domain}/{key}: swap to {provider} failed ({}); rolled back to {} (offline, no service running)",
            outcome.error.as_deref().unwrap_or("unknown"),
            outcome.previous.as_deref().unwrap_or("nothing")
        )
    };
    ctx.print(&outcome, || format!("{msg}\n"));
    if outcome.bound {
        Ok(Exit::Ok)
    } else {
        Err(CliError::new(Exit::Refused, msg))
    }
}

fn flag(
    ctx: &Ctx,
    domain: Domain,
    key: &str,
    on: bool,
    note: Option<String>,
    drain: bool,
) -> CliResult {
    if !crate::domain::is_valid_name(key) {
        return Err(CliError::new(
            Exit::Usage,
            format!("key `{key}` does not match ^[A-Za-z0-9_.-]+$"),
        ));
    }
    let req = if drain {
        Request::Drain {
            domain,
            key: key.into(),
            on,
            note: note.clone(),
        }
    } else {
        Request::Pause {
            domain,
            key: key.into(),
            on,
            note: note.clone(),
        }
    };
    if let Some(r) = via_service(ctx, &req, Duration::from_secs(30)) {
        return report(ctx, r?);
    }
    let mut store = ActivityStore::open(&ctx.dirs.state).map_err(store_err)?;
    let (a, word) = store
        .set_flag(drain, domain, key, on, note.as_deref())
        .map_err(store_err)?;
    ctx.print(&a, || {
        format!("{domain}/{key}: {word} (offline, no service running)\n")
    });
    Ok(Exit::Ok)
}

pub fn pause(ctx: &Ctx, domain: Domain, key: &str, on: bool, note: Option<String>) -> CliResult {
    flag(ctx, domain, key, on, note, false)
}

pub fn drain(ctx: &Ctx, domain: Domain, key: &str, on: bool, note: Option<String>) -> CliResult {
    flag(ctx, domain, key, on, note, true)
}

pub fn activity(ctx: &Ctx) -> CliResult {
    let store = ActivityStore::open(&ctx.dirs.state).map_err(store_err)?;
    let all = store.all().map_err(store_err)?;
    ctx.print(&all, || {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|a| {
                vec![
                    a.domain.clone(),
                    a.key.clone(),
                    a.paused.to_string(),
                    a.draining.to_string(),
                    a.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table::render(&["DOMAIN", "KEY", "PAUSED", "DRAINING", "NOTE"], &rows)
    });
    Ok(Exit::Ok)
}
