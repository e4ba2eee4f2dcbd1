//! `health`, `check`, `reload`, `orchestrate`: the commands the unit file runs.

use std::time::Duration;

use serde::Serialize;

use super::{CliError, CliResult, Ctx, Exit, OrchestrateArgs};
use crate::control::{self, ClientError, Request};
use crate::domain::Domain;
use crate::engine::{self, Overrides, World};

#[derive(Serialize)]
struct CheckLine {
    ok: bool,
    what: String,
    detail: String,
}

fn summary_lines(world: &World) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let s = &world.settings;
    lines.push(CheckLine {
        ok: true,
        what: "settings".into(),
        detail: if s.builtin_defaults {
            "no settings location; built-in defaults".into()
        } else {
            format!(
                "{} file(s): {}",
                s.files.len(),
                s.files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    });
    for m in &world.manifests {
        lines.push(CheckLine {
            ok: true,
            what: format!("manifest {}", m.origin),
            detail: format!(
                "{} entries loaded, {} skipped; {}",
                m.loaded,
                m.skipped.len(),
                m.signature.describe()
            ),
        });
        for sk in &m.skipped {
            lines.push(CheckLine {
                ok: true,
                what: format!("  skipped entry {}", sk.index),
                detail: format!(
                    "{}{}",
                    sk.key
                        .as_deref()
                        .map(|k| format!("key {k}: "))
                        .unwrap_or_default(),
                    sk.reason
                ),
            });
        }
        for w in &m.warnings {
            lines.push(CheckLine {
                ok: true,
                what: "  warning".into(),
                detail: w.clone(),
            });
        }
    }
    for w in &world.warnings {
        lines.push(CheckLine {
            ok: true,
            what: "warning".into(),
            detail: w.clone(),
        });
    }
    lines.push(CheckLine {
        ok: true,
        what: "resolution".into(),
        detail: format!(
            "{} candidates, {} keys",
            world.snapshot.candidate_count(),
            world.snapshot.key_count()
        ),
    });
    lines
}

fn render(lines: &[CheckLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {}: {}\n",
                if l.ok { "ok  " } else { "FAIL" },
                l.what,
                l.detail
            )
        })
        .collect()
}

pub fn check(ctx: &Ctx) -> CliResult {
    let world = engine::load(&ctx.request(Overrides::default()), &Default::default())?;
    let lines = summary_lines(&world);
    ctx.print(&lines, || render(&lines));
    Ok(Exit::Ok)
}

pub fn health(ctx: &Ctx, probe: bool) -> CliResult {
    let world = super::inspect::load_world(ctx)?;
    let mut lines = summary_lines(&world);
    if probe {
        for (name, dir) in [
            ("state directory", &ctx.dirs.state),
            ("cache directory", &ctx.dirs.cache),
        ] {
            let r = crate::fsutil::check_writable(dir);
            lines.push(CheckLine {
                ok: r.is_ok(),
                what: name.into(),
                detail: r
                    .err()
                    .unwrap_or_else(|| format!("{} writable", dir.display())),
            });
        }
        let timeout = Duration::from_secs_f64(world.settings.settings.lifecycle.health_timeout);
        let snap = &world.snapshot;
        let checks: Vec<_> = Domain::ALL
            .iter()
            .flat_map(|d| snap.keys(*d).into_iter().map(move |k| (*d, k)))
            .filter_map(|(d, k)| {
                let c = snap.resolve(d, k)?;
                Some((d, k.to_string(), c.provider.clone(), c.health.clone()?))
            })
            .collect();
        // All probes run at once; each is bounded by its own timeout.
        let results = super::block_on(async {
            let handles: Vec<_> = checks
                .iter()
                .map(|(_, _, _, h)| {
                    let h = h.clone();
                    tokio::spawn(async move { crate::probe::run(&h, timeout).await })
                })
                .collect();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(h.await.ok());
            }
            out
        })?;
        for ((d, k, p, h), r) in checks.iter().zip(results) {
            let (ok, detail) = match r {
                Some(r) => (r.ok, format!("{}: {}", r.target, r.detail)),
                None => (false, format!("{}: probe task failed", h.target())),
            };
            lines.push(CheckLine {
                ok,
                what: format!("probe {d}/{k} ({p})"),
                detail,
            });
        }
    }
    let healthy = lines.iter().all(|l| l.ok);
    ctx.print(
        &serde_json::json!({"healthy": healthy, "checks": lines}),
        || render(&lines),
    );
    if healthy {
        Ok(Exit::Ok)
    } else {
        let failed: Vec<String> = lines
            .iter()
            .filter(|l| !l.ok)
            .map(|l| format!("{}: {}", l.what, l.detail))
            .collect();
        Err(CliError::new(
            Exit::Unhealthy,
            format!("unhealthy: {}", failed.join("; ")),
        ))
    }
}

pub fn reload(ctx: &Ctx, timeout: u64) -> CliResult {
    match control::request(
        &ctx.dirs.control_socket(),
        &Request::Reload,
        Duration::from_secs(timeout.max(1)),
    ) {
        Ok(r) => {
            ctx.print(&r, || format!("{}\n", r.message));
            if r.ok {
                Ok(Exit::Ok)
            } else {
                Err(CliError::new(
                    super::lifecycle::exit_from(r.code),
                    r.message,
                ))
            }
        }
        Err(ClientError::NoService(p)) => Err(CliError::new(
            Exit::Failure,
            format!("no running service at {p}: nothing to reload"),
        )),
        Err(e) => Err(CliError::new(Exit::Failure, e.to_string())),
    }
}

pub fn orchestrate(ctx: &Ctx, args: OrchestrateArgs) -> CliResult {
    let overrides = Overrides {
        refresh_interval: args.refresh_interval,
        http_port: args.http_port,
        no_http: args.no_http,
        log_level: None,
    };
    let req = ctx.request(overrides);
    crate::daemon::run(req).map_err(|e| CliError::new(e.exit(), e.to_string()))?;
    Ok(Exit::Ok)
}
