//! `remote-sync` and `remote-status`: fetch remote manifests into the cache by hand, and show
//! what the cache holds.

use std::time::Duration;

use serde_json::json;

use super::{CliError, CliResult, Ctx, Exit, table};
use crate::engine::{self, Overrides};
use crate::remote::{self, SyncOutcome};

fn settings_and_urls(
    ctx: &Ctx,
) -> Result<
    (
        engine::LoadedSettings,
        Vec<String>,
        crate::engine::LoadRequest,
    ),
    CliError,
> {
    let req = ctx.request(Overrides::default());
    let mut loaded = engine::load_settings(&req.config, &req.env)
        .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
    engine::apply_overrides(&mut loaded, &req.overrides)
        .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
    let urls = engine::remote_urls(&req, &loaded);
    if urls.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            "no remote manifest: pass --manifest https://... or set remote.manifest_url",
        ));
    }
    Ok((loaded, urls, req))
}

pub fn sync(ctx: &Ctx, watch: bool, interval: Option<u64>) -> CliResult {
    let (loaded, urls, req) = settings_and_urls(ctx)?;
    let cache = engine::cache_dir(&req, &loaded);
    std::fs::create_dir_all(&cache)
        .map_err(|e| CliError::new(Exit::Failure, format!("{}: {e}", cache.display())))?;
    let fetcher = remote::Fetcher::new(&loaded.settings.remote, &cache, &req.dirs.state, &req.env)
        .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
    let policy = engine::trust_policy(&loaded)?.remote;
    let every = Duration::from_secs(
        interval
            .unwrap_or(loaded.settings.remote.refresh_interval)
            .max(1),
    );
    super::block_on(async {
        loop {
            let mut worst = Exit::Ok;
            let mut results = Vec::new();
            for url in &urls {
                let o = fetcher.sync(url, &policy).await;
                let exit = match &o {
                    SyncOutcome::Updated { .. } | SyncOutcome::NotModified => Exit::Ok,
                    SyncOutcome::Rejected {
                        kind: remote::Rejection::Signature | remote::Rejection::Rollback,
                        ..
                    } => Exit::VerifyFailed,
                    SyncOutcome::Rejected { .. } => Exit::InvalidConfig,
                    _ => Exit::Failure,
                };
                if exit != Exit::Ok {
                    worst = exit;
                }
                results.push(json!({"url": url, "outcome": o, "message": o.describe()}));
                if !ctx.global.json {
                    println!("{}", super::shown(&format!("{url}: {}", o.describe())));
                }
            }
            if ctx.global.json {
                let json = serde_json::to_string(&results).unwrap_or_default();
                println!("{}", crate::text::redact_urls_in(&json));
            }
            if !watch {
                return if worst == Exit::Ok {
                    Ok(Exit::Ok)
                } else {
                    Err(CliError::new(
                        worst,
                        "remote sync did not succeed; the previous cached copy (if any) is kept",
                    ))
                };
            }
            tokio::time::sleep(every).await;
        }
    })?
}

pub fn status(ctx: &Ctx) -> CliResult {
    let (loaded, urls, req) = settings_and_urls(ctx)?;
    let cache = engine::cache_dir(&req, &loaded);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let marks = remote::highwater::HighWater::load(&req.dirs.state);
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for url in &urls {
        let paths = remote::cache_paths(&cache, url);
        let meta = remote::read_meta(&paths);
        let cached = paths.manifest.exists();
        let age = meta
            .as_ref()
            .map(|m| now.saturating_sub(m.fetched_at.max(m.not_modified_at)));
        let mark = marks.as_ref().ok().and_then(|hw| hw.sources.get(url));
        rows.push(vec![
            url.clone(),
            if cached { "yes".into() } else { "no".into() },
            age.map(|a| format!("{a} s")).unwrap_or_else(|| "-".into()),
            meta.as_ref()
                .and_then(|m| m.etag.clone())
                .unwrap_or_else(|| "-".into()),
            mark.map(describe_mark).unwrap_or_else(|| "-".into()),
            meta.as_ref()
                .and_then(|m| m.last_error.clone())
                .unwrap_or_else(|| "ok".into()),
        ]);
        data.push(json!({
            "url": url,
            "cached": cached,
            "cache_file": paths.manifest,
            "age_seconds": age,
            "meta": meta,
            "rollback_mark": mark,
        }));
    }
    ctx.print(&data, || {
        let mut out = table::render(
            &[
                "URL",
                "CACHED",
                "AGE",
                "ETAG",
                "NEWEST ACCEPTED",
                "LAST RESULT",
            ],
            &rows,
        );
        if let Err(e) = &marks {
            out.push_str(&format!("warning: {e}\n"));
        }
        out
    });
    Ok(Exit::Ok)
}

fn describe_mark(m: &remote::highwater::Mark) -> String {
    let at = m
        .signed_at
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map(crate::text::fmt_time)
        .unwrap_or_else(|| "-".into());
    match m.serial {
        Some(n) => format!("serial {n}, {at}"),
        None => at,
    }
}

/// `oneiric remote-reset-rollback`: the deliberate way back to an older manifest.
pub fn reset_rollback(ctx: &Ctx, url: Option<&str>, all: bool) -> CliResult {
    use remote::highwater::HighWater;
    let req = ctx.request(Overrides::default());
    let state = &req.dirs.state;
    let mut marks = if all {
        HighWater::default()
    } else {
        HighWater::load(state).map_err(|e| CliError::new(Exit::Failure, e.to_string()))?
    };
    let message = match (url, all) {
        (_, true) => "forgot every rollback mark: the next fetch of each URL accepts any validly signed manifest, older ones included".to_string(),
        (Some(u), false) => match marks.sources.remove(u) {
            Some(m) => format!(
                "forgot the rollback mark of {} ({}): its next fetch accepts any validly signed manifest, older ones included",
                crate::text::redact_url(u),
                describe_mark(&m)
            ),
            None => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!(
                        "no rollback mark for {} (marks: {})",
                        crate::text::redact_url(u),
                        if marks.sources.is_empty() {
                            "none".to_string()
                        } else {
                            marks.sources.keys().map(|k| crate::text::redact_url(k)).collect::<Vec<_>>().join(", ")
                        }
                    ),
                ));
            }
        },
        (None, false) => return Err(CliError::new(Exit::Usage, "give a URL or --all")),
    };
    marks
        .save(state)
        .map_err(|e| CliError::new(Exit::Failure, e.to_string()))?;
    tracing::warn!(oneiric_event = "rollback_reset", "{message}");
    ctx.print(&json!({"reset": true, "message": message}), || {
        format!("{message}\n")
    });
    Ok(Exit::Ok)
}
