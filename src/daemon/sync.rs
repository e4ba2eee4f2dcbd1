//! Fetching the remote manifests of a load into the cache, before the load reads them.
//! Failures leave the last good copy in place; they are logged, counted, and shown in
//! `STATUS=` by the load that follows.

use std::sync::Arc;

use tracing::Instrument;

use crate::engine::{self, LoadRequest, LoadedSettings};
use crate::metrics::Metrics;
use crate::remote::schedule::{self, Cadence};
use crate::remote::{Fetcher, SyncOutcome};

/// Which of a load's remote manifests to fetch.
pub enum Which<'a> {
    /// Every one: a reload (startup, SIGHUP, `oneiric reload`) wants the origin's latest.
    All,
    /// Those whose slot came (the refresh timer).
    Due(&'a [String]),
}

/// What the main loop hears about fetches. The loop owns the schedule and sleeps on it, so
/// whoever fetches reports here instead of changing the schedule itself.
#[derive(Debug)]
pub enum Report {
    /// One fetch ended, a refresh's or a reload's; it sets that URL's next slot.
    Fetched {
        url: String,
        result: schedule::Outcome,
        hints: schedule::Hints,
        /// The cadence of the settings this fetch ran under, which a reload may be replacing.
        cadence: Cadence,
        /// Unix seconds.
        started: f64,
    },
    /// A refresh ended, after every one of its fetches was reported: the next may start.
    RefreshDone,
}

/// The fetcher of the current remote settings, rebuilt when they change. Owned by the reload
/// pipeline, which runs one reload at a time.
pub struct RemoteSync {
    fetcher: Option<(crate::config::RemoteSettings, Arc<Fetcher>)>,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
}

impl RemoteSync {
    pub fn new(reports: tokio::sync::mpsc::UnboundedSender<Report>) -> Self {
        Self {
            fetcher: None,
            reports,
        }
    }

    fn fetcher(&mut self, req: &LoadRequest, settings: &LoadedSettings) -> Option<Arc<Fetcher>> {
        if let Some((s, f)) = &self.fetcher {
            if *s == settings.settings.remote {
                return Some(Arc::clone(f));
            }
        }
        let cache = engine::cache_dir(req, settings);
        match Fetcher::new(&settings.settings.remote, &cache, &req.dirs.state, &req.env) {
            Ok(f) => {
                let f = Arc::new(f);
                self.fetcher = Some((settings.settings.remote.clone(), Arc::clone(&f)));
                Some(f)
            }
            Err(e) => {
                tracing::error!(oneiric_event = "remote_setup_failed", "{e}");
                None
            }
        }
    }

    /// Fetches the URL manifests of the load that `settings` describe (all, or the due ones),
    /// and reports how each one went, which sets its next fetch.
    pub async fn sync(
        &mut self,
        req: &LoadRequest,
        settings: &LoadedSettings,
        metrics: &Metrics,
        which: Which<'_>,
    ) -> Vec<(String, SyncOutcome)> {
        let urls = match which {
            Which::All => engine::remote_urls(req, settings),
            Which::Due(due) => due.to_vec(),
        };
        if urls.is_empty() {
            return Vec::new();
        }
        let Some(fetcher) = self.fetcher(req, settings) else {
            return Vec::new();
        };
        let policy = match engine::trust_policy(settings) {
            Ok(p) => p.remote,
            Err(e) => {
                tracing::error!(oneiric_event = "remote_setup_failed", "{e}");
                return Vec::new();
            }
        };
        let cadence = Cadence::of(&settings.settings.remote);
        let mut out = Vec::new();
        for url in urls {
            let started = crate::served::unix_now_f64();
            let (outcome, hints) = fetch_one(&fetcher, &url, &policy, metrics).await;
            let result = match outcome {
                SyncOutcome::Updated { .. }
                | SyncOutcome::NotModified
                | SyncOutcome::Rejected { .. } => schedule::Outcome::Answered,
                SyncOutcome::Failed { .. } | SyncOutcome::BreakerOpen { .. } => {
                    schedule::Outcome::Failed
                }
            };
            // Fails only once the main loop has stopped, when no fetch is scheduled any more.
            let _ = self.reports.send(Report::Fetched {
                url: url.clone(),
                result,
                hints,
                cadence,
                started,
            });
            out.push((url, outcome));
        }
        out
    }
}

#[tracing::instrument(
    name = "remote_fetch",
    skip_all,
    fields(
        url = %crate::text::redact_url(url),
        result = tracing::field::Empty,
        bytes = tracing::field::Empty,
        cache_hit = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    )
)]
async fn fetch_one(
    fetcher: &Fetcher,
    url: &str,
    policy: &crate::manifest::signature::TrustPolicy,
    metrics: &Metrics,
) -> (SyncOutcome, schedule::Hints) {
    let span = crate::telemetry::traced(tracing::Span::current());
    let (outcome, hints) = fetcher.sync_with_hints(url, policy).in_current_span().await;
    span.record("result", outcome.label());
    span.record("cache_hit", matches!(outcome, SyncOutcome::NotModified));
    metrics
        .remote_fetches
        .with_label_values(&[outcome.label()])
        .inc();
    // From the cache's record, not only this process's fetches: a host restarted while its
    // origin is down must still show how long ago it last heard from it (0: never).
    metrics
        .remote_last_success
        .with_label_values(&[crate::text::redact_url(url).as_str()])
        .set(crate::remote::last_success(fetcher.cache_dir(), url) as f64);
    match &outcome {
        SyncOutcome::Updated { bytes, .. } => {
            span.record("bytes", *bytes);
            metrics.remote_bytes.inc_by(*bytes);
        }
        SyncOutcome::Rejected { kind, .. } => {
            metrics
                .remote_rejections
                .with_label_values(&[kind.label()])
                .inc();
            if *kind == crate::remote::Rejection::Signature {
                metrics.signature_failures.inc();
            }
        }
        SyncOutcome::NotModified | SyncOutcome::Failed { .. } | SyncOutcome::BreakerOpen { .. } => {
        }
    }
    match &outcome {
        SyncOutcome::Updated { .. } | SyncOutcome::NotModified => tracing::info!(
            oneiric_event = "remote_fetch",
            result = outcome.label(),
            "{}: {}",
            crate::text::redact_url(url),
            outcome.describe()
        ),
        SyncOutcome::Rejected { .. }
        | SyncOutcome::Failed { .. }
        | SyncOutcome::BreakerOpen { .. } => {
            tracing::warn!(
                oneiric_event = "remote_fetch",
                result = outcome.label(),
                "{}: {}",
                crate::text::redact_url(url),
                outcome.describe()
            )
        }
    }
    (outcome, hints)
}
