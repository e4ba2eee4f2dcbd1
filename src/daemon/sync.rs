//! Fetching the remote manifests of a load into the cache, before the load reads them.
//! Failures leave the last good copy in place; they are logged, counted, and shown in
//! `STATUS=` by the load that follows.

use std::sync::Arc;

use tracing::Instrument;

use crate::engine::{self, LoadRequest, LoadedSettings};
use crate::metrics::Metrics;
use crate::remote::{Fetcher, SyncOutcome};

/// The fetcher of the current remote settings, rebuilt when they change. Owned by the reload
/// pipeline, which runs one reload at a time.
#[derive(Default)]
pub struct RemoteSync {
    fetcher: Option<(crate::config::RemoteSettings, Arc<Fetcher>)>,
}

impl RemoteSync {
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

    /// Fetches every URL manifest of the load that `settings` describe.
    pub async fn sync(
        &mut self,
        req: &LoadRequest,
        settings: &LoadedSettings,
        metrics: &Metrics,
    ) -> Vec<(String, SyncOutcome)> {
        let urls = engine::remote_urls(req, settings);
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
        let mut out = Vec::new();
        for url in urls {
            let outcome = fetch_one(&fetcher, &url, &policy, metrics).await;
            out.push((url, outcome));
        }
        out
    }
}

#[tracing::instrument(
    name = "remote_fetch",
    skip_all,
    fields(
        url = %url,
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
) -> SyncOutcome {
    let span = crate::telemetry::traced(tracing::Span::current());
    let outcome = fetcher.sync(url, policy).in_current_span().await;
    span.record("result", outcome.label());
    span.record("cache_hit", matches!(outcome, SyncOutcome::NotModified));
    metrics
        .remote_fetches
        .with_label_values(&[outcome.label()])
        .inc();
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
    outcome
}
