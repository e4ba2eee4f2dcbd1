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
    let fetcher = remote::Fetcher::new(&loaded.settings.remote, &cache, &req.env)
        .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
    let policy = engine::trust_policy(&loaded)?;
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
                        signature: true, ..
                    } => Exit::VerifyFailed,
                    SyncOutcome::Rejected { .. } => Exit::InvalidConfig,
                    _ => Exit::Failure,
                };
                if exit != Exit::Ok {
                    worst = exit;
                }
                results.push(json!({"url": url, "outcome": o, "message": o.describe()}));
                if !ctx.global.json {
                    println!("{url}: {}", o.describe());
                }
            }
            if ctx.global.json {
                println!("{}", serde_json::to_string(&results).unwrap_or_default());
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
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for url in &urls {
        let paths = remote::cache_paths(&cache, url);
        let meta = remote::read_meta(&paths);
        let cached = paths.manifest.exists();
        let age = meta
            .as_ref()
            .map(|m| now.saturating_sub(m.verified_at.max(m.fetched_at)));
        rows.push(vec![
            url.clone(),
            if cached { "yes".into() } else { "no".into() },
            age.map(|a| format!("{a} s")).unwrap_or_else(|| "-".into()),
            meta.as_ref()
                .and_then(|m| m.etag.clone())
                .unwrap_or_else(|| "-".into()),
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
        }));
    }
    ctx.print(&data, || {
        table::render(&["URL", "CACHED", "AGE", "ETAG", "LAST RESULT"], &rows)
    });
    Ok(Exit::Ok)
}
