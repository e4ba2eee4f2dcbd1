//! `list`, `resolve`, `explain`, `status`: read-only views of the resolution.

use serde::Serialize;
use serde_json::json;

use super::{CliError, CliResult, Ctx, Exit, KeyArgs, table};
use crate::activity::ActivityStore;
use crate::domain::Domain;
use crate::engine::{self, Overrides, TextDigest, World};
use crate::lifecycle::LifecycleStatus;
use crate::resolver::Requirements;

/// Loads the world with the operator pins recorded in the state directory; `digest` for the
/// commands that show or keep the manifests' SHA-256 (`status`, an offline state owner).
pub(super) fn load_world(ctx: &Ctx, digest: TextDigest) -> Result<World, CliError> {
    let status = read_status(ctx);
    Ok(engine::load(
        &ctx.request(Overrides::default()),
        &status.pins(),
        digest,
    )?)
}

/// The lifecycle status, or an empty one when the state directory cannot be read (an
/// unprivileged user inspecting files); the reason goes to stderr.
pub(super) fn read_status(ctx: &Ctx) -> LifecycleStatus {
    match LifecycleStatus::load(&ctx.dirs.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "oneiric: warning: {}",
                super::shown(&format!("{e}; showing resolution without operator pins"))
            );
            LifecycleStatus::default()
        }
    }
}

fn requirements(k: &KeyArgs) -> Requirements {
    Requirements {
        capabilities: k.capabilities.clone(),
        require_all: !k.any,
    }
}

pub fn list(ctx: &Ctx, domain: Option<Domain>, shadowed: bool) -> CliResult {
    let world = load_world(ctx, TextDigest::Skip)?;
    let snap = &world.snapshot;
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for d in Domain::ALL
        .into_iter()
        .filter(|d| domain.is_none_or(|x| x == *d))
    {
        for key in snap.keys(d) {
            for (i, c) in snap.candidates(d, key).iter().enumerate() {
                if i > 0 && !shadowed {
                    break;
                }
                let state = if i == 0 { "active" } else { "shadowed" };
                rows.push(vec![
                    d.to_string(),
                    key.to_string(),
                    c.provider.clone(),
                    state.into(),
                    c.priority.to_string(),
                    c.stack_level.unwrap_or(0).to_string(),
                    c.origin.clone(),
                ]);
                data.push(json!({"domain": d, "key": key, "provider": c.provider, "state": state,
                    "priority": c.priority, "stack_level": c.stack_level, "source": c.source, "origin": c.origin}));
            }
        }
    }
    ctx.print(&data, || {
        table::render(
            &[
                "DOMAIN", "KEY", "PROVIDER", "STATE", "PRIORITY", "STACK", "ORIGIN",
            ],
            &rows,
        )
    });
    Ok(Exit::Ok)
}

pub fn resolve(ctx: &Ctx, k: &KeyArgs) -> CliResult {
    let world = load_world(ctx, TextDigest::Skip)?;
    let winner = world
        .snapshot
        .resolve_with(k.domain, &k.key, &requirements(k))
        .ok_or_else(|| not_found(&world, k))?;
    ctx.print(&*winner, || format!("{}\n", winner.provider));
    Ok(Exit::Ok)
}

fn not_found(world: &World, k: &KeyArgs) -> CliError {
    if world.snapshot.candidates(k.domain, &k.key).is_empty() {
        CliError::new(
            Exit::NotFound,
            format!("no candidates for {}/{}", k.domain, k.key),
        )
    } else {
        CliError::new(
            Exit::NotFound,
            format!(
                "no candidate for {}/{} has every required capability ({})",
                k.domain,
                k.key,
                k.capabilities.join(", ")
            ),
        )
    }
}

pub fn explain(ctx: &Ctx, k: &KeyArgs) -> CliResult {
    let world = load_world(ctx, TextDigest::Skip)?;
    let e = world
        .snapshot
        .explain(k.domain, &k.key, &requirements(k))
        .ok_or_else(|| not_found(&world, k))?;
    ctx.print(&e, || {
        let mut out = format!(
            "{}/{}: {}\n",
            e.domain,
            e.key,
            e.selected.as_deref().unwrap_or("(none)")
        );
        for n in &e.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        for r in &e.candidates {
            let mark = if r.selected { "*" } else { " " };
            out.push_str(&format!(
                "{mark} {}. {} [{}] {}\n",
                r.rank,
                r.candidate.provider,
                r.candidate.origin,
                r.reasons.join(", ")
            ));
        }
        out
    });
    if e.selected.is_none() {
        return Ok(Exit::NotFound);
    }
    Ok(Exit::Ok)
}

#[derive(Serialize)]
struct KeyView {
    domain: Domain,
    key: String,
    winner: String,
    bound: Option<String>,
    state: String,
    pinned: Option<String>,
    paused: bool,
    draining: bool,
    candidates: usize,
    last_error: Option<String>,
}

pub fn status(ctx: &Ctx, domain: Option<Domain>, key: Option<&str>, shadowed: bool) -> CliResult {
    let world = load_world(ctx, TextDigest::Compute)?;
    let lifecycle = read_status(ctx);
    // Read-only: inspecting never creates or changes the service's database.
    let activity = ActivityStore::open_read_only(&ctx.dirs.state).unwrap_or_else(|e| {
        eprintln!("warning: pause and drain flags not shown: {e}");
        None
    });
    let mut views = Vec::new();
    for d in Domain::ALL
        .into_iter()
        .filter(|d| domain.is_none_or(|x| x == *d))
    {
        for k in world.snapshot.keys(d) {
            if key.is_some_and(|want| want != k) {
                continue;
            }
            let cands = world.snapshot.candidates(d, k);
            let Some(winner) = cands.first() else {
                continue;
            };
            let st = lifecycle.get(d, k);
            let act = activity
                .as_ref()
                .and_then(|a| a.get(d, k).ok())
                .unwrap_or_default();
            views.push(KeyView {
                domain: d,
                key: k.to_string(),
                winner: winner.provider.clone(),
                bound: st
                    .and_then(|s| s.active_provider.clone())
                    .or_else(|| Some(winner.provider.clone())),
                state: st
                    .map(|s| s.state.as_str().to_string())
                    .unwrap_or_else(|| "ready".into()),
                pinned: st.and_then(|s| s.pinned.clone()),
                paused: act.paused,
                draining: act.draining,
                candidates: if shadowed {
                    cands.len()
                } else {
                    1.min(cands.len())
                },
                last_error: st.and_then(|s| s.last_error.clone()),
            });
        }
    }
    if key.is_some() && views.is_empty() {
        return Err(CliError::new(Exit::NotFound, "no such key"));
    }
    // What the running service serves (generation, each manifest's serial and digest) can
    // differ from this offline load until its next refresh: both are shown.
    let served = match super::lifecycle::via_service(
        ctx,
        &crate::control::Request::Status,
        std::time::Duration::from_secs(10),
    ) {
        Some(Ok(r)) if r.ok() => Some(r.data),
        Some(Ok(r)) => {
            eprintln!(
                "oneiric: warning: the running service's status: {}",
                super::shown(&r.message)
            );
            None
        }
        Some(Err(e)) => {
            eprintln!("oneiric: warning: {}", super::shown(&e.message));
            None
        }
        None => None,
    };
    let summary = json!({
        "candidates": world.snapshot.candidate_count(),
        "keys": world.snapshot.key_count(),
        "manifests": world.manifests,
        "demo": world.demo,
        "entries": views,
        "service": served.as_ref().map(|d| json!({
            "generation": d["generation"],
            "manifests": d["manifests"],
        })),
    });
    ctx.print(&summary, || {
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|v| {
                let flags = [
                    v.pinned.as_ref().map(|p| format!("pinned:{p}")),
                    v.paused.then(|| "paused".to_string()),
                    v.draining.then(|| "draining".to_string()),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(",");
                vec![
                    v.domain.to_string(),
                    v.key.clone(),
                    v.winner.clone(),
                    v.bound.clone().unwrap_or_default(),
                    v.state.clone(),
                    flags,
                ]
            })
            .collect();
        let serving = match &served {
            Some(d) => served_lines(d),
            None => "no running service\n".to_string(),
        };
        format!(
            "{serving}{} candidates, {} keys\n{}",
            world.snapshot.candidate_count(),
            world.snapshot.key_count(),
            table::render(
                &["DOMAIN", "KEY", "WINNER", "BOUND", "STATE", "FLAGS"],
                &rows
            )
        )
    });
    Ok(Exit::Ok)
}

/// The running service's generation and, per manifest, what fleets compare: source, serial,
/// digest, signed and fetched times.
fn served_lines(d: &serde_json::Value) -> String {
    let mut out = format!(
        "service: serving generation {}\n",
        d["generation"].as_u64().unwrap_or(0)
    );
    let rows: Vec<Vec<String>> = d["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap_or("-").to_string();
            vec![
                crate::text::redact_url(m["origin"].as_str().unwrap_or("-")),
                m["serial"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                m["sha256"]
                    .as_str()
                    .map(|h| h.chars().take(12).collect())
                    .unwrap_or_else(|| "-".into()),
                text("signed_at"),
                m["fetched_at"]
                    .as_i64()
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                    .map(crate::text::fmt_time)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["SOURCE", "SERIAL", "SHA256", "SIGNED_AT", "FETCHED_AT"],
        &rows,
    ));
    out
}
