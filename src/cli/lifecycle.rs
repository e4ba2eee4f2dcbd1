//! `swap`, `pause`, `drain`, `activity`: through the running service when there is one (so it
//! acts at once), otherwise directly on the state directory. Output says which.

use std::time::Duration;

use std::sync::Arc;

use super::{CliError, CliResult, Ctx, Exit, table};
use crate::activity::ActivityStore;
use crate::control::{self, ClientError, Request, Response};
use crate::daemon::owner::StateOwner;
use crate::domain::Domain;
use crate::errors::HasExit;
use crate::lifecycle::{self, LifecycleStatus};

/// Sends a request to the service; `None` when no service is running.
pub(super) fn via_service(
    ctx: &Ctx,
    req: &Request,
    timeout: Duration,
) -> Option<Result<Response, CliError>> {
    match control::request_first(&ctx.dirs.sockets_for(req), req, timeout) {
        Ok(r) => Some(Ok(r)),
        Err(ClientError::NoService(_)) => None,
        Err(e) => Some(Err(CliError::new(
            e.exit(),
            format!(
                "{e} (the service is running but cannot be reached; run as root, or as a member of group oneiric to read, of group oneiric-admin to change)"
            ),
        ))),
    }
}

/// Prints the service's answer; its outcome is the exit code.
pub(super) fn report(ctx: &Ctx, r: Response) -> CliResult {
    ctx.print(&r, || format!("{} (via running service)\n", r.message));
    if r.ok() {
        Ok(Exit::Ok)
    } else {
        Err(CliError::new(r.outcome, r.message))
    }
}

const OFFLINE: &str = " (offline, no service running)";

/// The state owner over the state directory, for a command that runs with no service: the
/// same transitions the service runs.
fn offline_owner(ctx: &Ctx) -> Result<StateOwner, CliError> {
    let world = super::inspect::load_world(ctx, crate::engine::TextDigest::Compute)?;
    let status = LifecycleStatus::load(&ctx.dirs.state)?;
    let activity = ActivityStore::open(&ctx.dirs.state)?;
    let metrics = Arc::new(crate::metrics::Metrics::new()?);
    Ok(StateOwner::new(
        ctx.dirs.state.clone(),
        status,
        activity,
        world.into(),
        metrics,
    ))
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
    ctx.act_as_dir_owner()?;
    let owner = offline_owner(ctx)?;
    let Request::Swap { provider, .. } = &req else {
        let removed = super::block_on(owner.unpin(domain, key))??;
        let msg = format!(
            "{domain}/{key}: {}{OFFLINE}",
            if removed {
                "pin removed"
            } else {
                "was not pinned"
            }
        );
        ctx.print(&serde_json::json!({"ok": true, "message": msg}), || {
            format!("{msg}\n")
        });
        return Ok(Exit::Ok);
    };
    let outcome = super::block_on(owner.swap(lifecycle::SwapRequest {
        domain,
        key,
        provider,
        force,
    }))??;
    let msg = format!("{}{OFFLINE}", lifecycle::swap_message(&outcome));
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
        return Err(CliError::usage(format!(
            "key `{key}` does not match ^[A-Za-z0-9_.-]+$"
        )));
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
    ctx.act_as_dir_owner()?;
    // Pause and drain do not need the manifests: the activity store alone.
    let mut store = ActivityStore::open(&ctx.dirs.state)?;
    let (a, word) = store.set_flag(drain, domain, key, on, note.as_deref())?;
    ctx.print(&a, || format!("{domain}/{key}: {word}{OFFLINE}\n"));
    Ok(Exit::Ok)
}

pub fn pause(ctx: &Ctx, domain: Domain, key: &str, on: bool, note: Option<String>) -> CliResult {
    flag(ctx, domain, key, on, note, false)
}

pub fn drain(ctx: &Ctx, domain: Domain, key: &str, on: bool, note: Option<String>) -> CliResult {
    flag(ctx, domain, key, on, note, true)
}

/// Rows `activity --changes` shows.
const CHANGES_SHOWN: usize = 50;

pub fn activity(ctx: &Ctx, changes: bool) -> CliResult {
    // Read-only: listing never creates or changes the service's database.
    let store = ActivityStore::open_read_only(&ctx.dirs.state)?;
    if changes {
        let rows = match &store {
            Some(s) => s.requests(CHANGES_SHOWN)?,
            None => Vec::new(),
        };
        ctx.print(&rows, || {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        crate::text::fmt_unix(r.at_unix),
                        r.uid.to_string(),
                        r.pid.map(|p| p.to_string()).unwrap_or_default(),
                        r.op.clone(),
                        r.target.clone().unwrap_or_default(),
                        r.outcome.clone(),
                        r.message.clone(),
                    ]
                })
                .collect();
            table::render(
                &["AT", "UID", "PID", "OP", "TARGET", "OUTCOME", "MESSAGE"],
                &cells,
            )
        });
        return Ok(Exit::Ok);
    }
    let all = match &store {
        Some(s) => s.all()?,
        None => Vec::new(),
    };
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
