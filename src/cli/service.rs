//! `health`, `check`, `reload`, `orchestrate`: the commands the unit file runs.

use std::time::Duration;

use serde::Serialize;

use super::{CliError, CliResult, Ctx, Exit, OrchestrateArgs};
use crate::control::{self, ClientError, Request};
use crate::domain::Domain;
use crate::engine::{self, Overrides, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Serialize)]
struct CheckLine {
    level: Level,
    what: String,
    detail: String,
}

impl CheckLine {
    fn new(level: Level, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            level,
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// What `check` and `health` print: every line, and the counts that decide the exit code.
/// `--json` prints it whether the command passes or fails.
#[derive(Serialize)]
struct Report {
    ok: bool,
    warnings: usize,
    failures: usize,
    checks: Vec<CheckLine>,
}

impl Report {
    fn new(checks: Vec<CheckLine>, strict: bool) -> Self {
        let warnings = checks.iter().filter(|l| l.level == Level::Warn).count();
        let failures = checks.iter().filter(|l| l.level == Level::Fail).count();
        Self {
            ok: failures == 0 && !(strict && warnings > 0),
            warnings,
            failures,
            checks,
        }
    }

    fn render(&self) -> String {
        let mut out: String = self
            .checks
            .iter()
            .map(|l| {
                let tag = match l.level {
                    Level::Ok => "ok  ",
                    Level::Warn => "warn",
                    Level::Fail => "FAIL",
                };
                // One line each: a manifest's text in a detail cannot fake another check.
                format!(
                    "{tag} {}: {}\n",
                    crate::text::one_line(&l.what),
                    crate::text::one_line(&l.detail)
                )
            })
            .collect();
        out.push_str(&format!(
            "{} failure(s), {} warning(s)\n",
            self.failures, self.warnings
        ));
        out
    }

    /// Prints the report and turns it into the command's result: `fail` for failures, and
    /// warnings under `--strict` fail as invalid input.
    fn finish(self, ctx: &Ctx, strict: bool, fail: Exit) -> CliResult {
        ctx.print(&self, || self.render());
        if self.failures > 0 {
            let failed: Vec<String> = self
                .checks
                .iter()
                .filter(|l| l.level == Level::Fail)
                .map(|l| format!("{}: {}", l.what, l.detail))
                .collect();
            Err(CliError::new(fail, failed.join("; ")))
        } else if strict && self.warnings > 0 {
            Err(CliError::new(
                Exit::InvalidConfig,
                format!("{} warning(s), and --strict makes them fail", self.warnings),
            ))
        } else {
            Ok(Exit::Ok)
        }
    }
}

/// A load that failed, as a report (so that `--json` still prints one) and its error.
fn load_failed(ctx: &Ctx, e: crate::engine::LoadError, strict: bool) -> CliResult {
    let err = CliError::from(e);
    let report = Report::new(
        vec![CheckLine::new(Level::Fail, "load", err.message.clone())],
        strict,
    );
    ctx.print(&report, String::new);
    Err(err)
}

fn summary_lines(world: &World) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let s = &world.settings;
    lines.push(CheckLine::new(
        Level::Ok,
        "settings",
        if s.builtin_defaults {
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
    ));
    for m in &world.manifests {
        lines.push(CheckLine::new(
            Level::Ok,
            format!("manifest {}", m.origin),
            format!(
                "{} entries loaded, {} skipped; {}",
                m.loaded,
                m.skipped.len(),
                m.signature.describe()
            ),
        ));
        for sk in &m.skipped {
            lines.push(CheckLine::new(
                Level::Warn,
                format!("  skipped entry {}", sk.index),
                format!(
                    "{}{}",
                    sk.key
                        .as_deref()
                        .map(|k| format!("key {k}: "))
                        .unwrap_or_default(),
                    sk.reason
                ),
            ));
        }
        for w in &m.warnings {
            lines.push(CheckLine::new(Level::Warn, "  warning", w.clone()));
        }
    }
    for w in &world.warnings {
        lines.push(CheckLine::new(Level::Warn, "warning", w.clone()));
    }
    lines.push(CheckLine::new(
        Level::Ok,
        "resolution",
        format!(
            "{} candidates, {} keys",
            world.snapshot.candidate_count(),
            world.snapshot.key_count()
        ),
    ));
    lines
}

pub fn check(ctx: &Ctx, strict: bool) -> CliResult {
    // The report prints no digest: the manifests' SHA-256 is not computed.
    let loaded = engine::load(
        &ctx.request(Overrides::default()),
        &Default::default(),
        engine::TextDigest::Skip,
    );
    let world = match loaded {
        Ok(w) => w,
        Err(e) => return load_failed(ctx, e, strict),
    };
    let report = Report::new(summary_lines(&world), strict);
    // The process ends with the report: freeing a large load one allocation at a time would
    // cost a twentieth of the command for nothing (a World is plain data, with no Drop that
    // does I/O).
    std::mem::forget(world);
    report.finish(ctx, strict, Exit::InvalidConfig)
}

/// `health`; with `pre_start` (the unit's ExecStartPre, or `--probe` run by systemd) nothing
/// that only the running service can settle fails the start: the service is what fetches a
/// first remote copy and what keeps probing a dependency, and it reports both itself.
pub fn health(ctx: &Ctx, probe: bool, pre_start: bool, strict: bool) -> CliResult {
    // `health --probe` as the guide's ExecStartPre= (systemd sets INVOCATION_ID for every
    // process of a unit) behaves as the pre-start check; by hand it is the full check.
    let pre_start =
        pre_start || (probe && ctx.env.get("INVOCATION_ID").is_some() && !stdin_is_tty());
    let req = ctx.request(Overrides::default());
    let missing = if pre_start {
        engine::MissingRemote::Skip
    } else {
        engine::MissingRemote::Fail
    };
    let settings = match engine::settings(&req) {
        Ok(s) => s,
        Err(e) => return load_failed(ctx, e, strict),
    };
    // Before a start, inputs byte-identical to the last good load (as saved by the service)
    // need no second parse: the service verifies them again as it loads, and fails its start
    // if they no longer pass.
    let unchanged = if pre_start {
        unchanged_since_saved(&req, &settings)
    } else {
        None
    };
    let (mut lines, world) = match unchanged {
        Some(line) => (vec![line], None),
        None => match engine::load_with(
            &req,
            settings,
            &super::inspect::read_status(ctx).pins(),
            missing,
            engine::TextDigest::Skip,
        ) {
            Ok(w) => (summary_lines(&w), Some(w)),
            Err(e) => return load_failed(ctx, e, strict),
        },
    };
    if probe || pre_start {
        for (name, dir) in [
            ("state directory", &ctx.dirs.state),
            ("cache directory", &ctx.dirs.cache),
        ] {
            lines.push(match crate::fsutil::check_writable(dir) {
                Ok(()) => CheckLine::new(Level::Ok, name, format!("{} writable", dir.display())),
                Err(e) => CheckLine::new(Level::Fail, name, e),
            });
        }
    }
    if let (true, false, Some(world)) = (probe, pre_start, &world) {
        let timeout = Duration::from_secs_f64(world.settings.settings.lifecycle.health_timeout);
        let policy = std::sync::Arc::new(world.settings.settings.lifecycle.probes.clone());
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
                    let policy = std::sync::Arc::clone(&policy);
                    tokio::spawn(async move { crate::probe::run(&h, &policy, timeout).await })
                })
                .collect();
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(h.await.ok());
            }
            out
        })?;
        for ((d, k, p, h), r) in checks.iter().zip(results) {
            let (level, detail) = match r {
                Some(r) if r.ok => (Level::Ok, format!("{}: {}", r.target, r.detail)),
                Some(r) => (Level::Fail, format!("{}: {}", r.target, r.detail)),
                None => (Level::Fail, format!("{}: probe task failed", h.target())),
            };
            lines.push(CheckLine::new(
                level,
                format!("probe {d}/{k} ({p})"),
                detail,
            ));
        }
    }
    Report::new(lines, strict).finish(ctx, strict, Exit::Unhealthy)
}

/// The pre-start check's line when the settings and every manifest are those of the state the
/// service saved after its last good load (same version, inputs key and manifest bytes).
fn unchanged_since_saved(
    req: &engine::LoadRequest,
    settings: &engine::LoadedSettings,
) -> Option<CheckLine> {
    let key = engine::inputs_key(req, settings);
    let saved = crate::persisted::load_reports(&req.dirs.state, &key).ok()?;
    engine::check_inputs(req, settings, &saved.manifests, &saved.unavailable).ok()?;
    Some(CheckLine::new(
        Level::Ok,
        "settings and manifests",
        format!(
            "unchanged since the last good load ({} manifest(s), saved at {}): not parsed again; the service verifies them as it loads",
            saved.manifests.len(),
            crate::text::fmt_unix(saved.saved_at_unix)
        ),
    ))
}

fn stdin_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

pub fn reload(ctx: &Ctx, timeout: u64) -> CliResult {
    match control::request_first(
        &ctx.dirs.sockets_for(&Request::Reload),
        &Request::Reload,
        Duration::from_secs(timeout.max(1)),
    ) {
        Ok(r) => {
            ctx.print(&r, || format!("{}\n", r.message));
            if r.ok() {
                Ok(Exit::Ok)
            } else {
                Err(CliError::new(r.outcome, r.message))
            }
        }
        Err(ClientError::NoService(p)) => Err(CliError::new(
            Exit::Failure,
            format!("no running service at {p}: nothing to reload"),
        )),
        Err(e) => Err(e.into()),
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
    crate::daemon::run(req)?;
    Ok(Exit::Ok)
}
