//! Remote manifests: fetch over HTTPS (rustls), conditional requests, retries with backoff and
//! jitter, a circuit breaker, a time budget and a body limit; validation and signature check
//! before a fetched manifest replaces the last good one in the cache directory; artifacts
//! downloaded by digest.
//!
//! The loader (`engine`) never touches the network: it reads the last good copy from the cache
//! ([`load_cached`]). Fetching ([`Fetcher::sync`]) is a separate, async step run by the service
//! before a load and by `oneiric remote-sync`.

mod artifacts;
mod cache;
pub mod highwater;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::RemoteSettings;
use crate::manifest::signature::{TrustPolicy, Verdict};
use crate::manifest::{self, Manifest};

pub use cache::{CacheMeta, cache_paths, read_meta};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// New content fetched, validated and stored.
    Updated {
        bytes: u64,
        entries: usize,
        artifacts_failed: usize,
    },
    /// The server answered 304: the cached copy is current.
    NotModified,
    /// Fetched, but refused (invalid, bad signature, expired, older than the newest accepted,
    /// a forbidden redirect): the previous copy stays.
    Rejected { reason: String, kind: Rejection },
    /// The server could not be reached or kept failing; the previous copy stays.
    Failed { error: String, attempts: u32 },
    /// Too many consecutive failures: not even tried until the breaker resets.
    BreakerOpen { retry_in_seconds: u64 },
}

impl SyncOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            SyncOutcome::Updated { .. } => "updated",
            SyncOutcome::NotModified => "not_modified",
            SyncOutcome::Rejected { .. } => "rejected",
            SyncOutcome::Failed { .. } => "failed",
            SyncOutcome::BreakerOpen { .. } => "breaker_open",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SyncOutcome::Updated {
                bytes,
                entries,
                artifacts_failed,
            } => format!(
                "updated: {bytes} bytes, {entries} entries{}",
                if *artifacts_failed > 0 {
                    format!(", {artifacts_failed} artifact(s) failed")
                } else {
                    String::new()
                }
            ),
            SyncOutcome::NotModified => "not modified (304)".into(),
            SyncOutcome::Rejected { reason, .. } => {
                format!("rejected, keeping the previous copy: {reason}")
            }
            SyncOutcome::Failed { error, attempts } => {
                format!("failed after {attempts} attempt(s), keeping the previous copy: {error}")
            }
            SyncOutcome::BreakerOpen { retry_in_seconds } => {
                format!("circuit breaker open; next try in {retry_in_seconds} s")
            }
        }
    }
}

/// Why a fetched manifest was refused, for the `oneiric_remote_rejections_total` metric.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// Signature missing, invalid or below the threshold; expired; signed in the future.
    Signature,
    /// Older than the newest manifest this host accepted from the URL.
    Rollback,
    /// Not a manifest: syntax, structure, a parse-time limit.
    Invalid,
    /// A scheme or redirect the settings do not allow.
    Transport,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::Signature,
        Rejection::Rollback,
        Rejection::Invalid,
        Rejection::Transport,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejection::Signature => "signature",
            Rejection::Rollback => "rollback",
            Rejection::Invalid => "invalid",
            Rejection::Transport => "transport",
        }
    }
}

/// Redirects followed for one request, as browsers and curl's default cap go.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

/// Fetches remote manifests for one settings generation.
pub struct Fetcher {
    client: reqwest::Client,
    settings: RemoteSettings,
    cache_dir: PathBuf,
    state_dir: PathBuf,
    auth: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    breaker: Mutex<Breaker>,
}

#[derive(Debug, thiserror::Error)]
#[error("remote: {0}")]
pub struct RemoteError(pub String);

/// The auth header's value: a systemd credential first, then the environment variable. Never
/// from settings files, which are readable by the service group.
fn auth_value(
    settings: &RemoteSettings,
    env: &crate::config::Env,
) -> Result<Option<String>, RemoteError> {
    if let Some(dir) = env.get("CREDENTIALS_DIRECTORY") {
        let path = Path::new(dir).join(&settings.auth.token_credential);
        match std::fs::read_to_string(&path) {
            Ok(v) => return Ok(Some(v.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RemoteError(format!("credential {}: {e}", path.display()))),
        }
    }
    Ok(env
        .get(&settings.auth.token_env)
        .map(|v| v.trim().to_string()))
}

impl Fetcher {
    pub fn new(
        settings: &RemoteSettings,
        cache_dir: &Path,
        state_dir: &Path,
        env: &crate::config::Env,
    ) -> Result<Self, RemoteError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs_f64(settings.timeout_seconds))
            .connect_timeout(Duration::from_secs_f64(settings.timeout_seconds.min(10.0)))
            // Redirects are followed by hand (`get`): reqwest's policy would keep a custom auth
            // header across origins and has no notion of `allow_http`.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oneiric/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(!settings.verify_tls);
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| RemoteError(format!("remote.ca_file {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| RemoteError(format!("remote.ca_file {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| RemoteError(format!("http client: {}", crate::text::error_chain(&e))))?;
        let auth = match auth_value(settings, env)? {
            Some(v) => {
                let name =
                    reqwest::header::HeaderName::from_bytes(settings.auth.header_name.as_bytes())
                        .map_err(|_| {
                        RemoteError(format!(
                            "remote.auth.header_name `{}` is not a header name",
                            settings.auth.header_name
                        ))
                    })?;
                let mut value = reqwest::header::HeaderValue::from_str(&v).map_err(|_| {
                    RemoteError("the auth token contains characters not allowed in a header".into())
                })?;
                value.set_sensitive(true);
                Some((name, value))
            }
            None => None,
        };
        Ok(Self {
            client,
            settings: settings.clone(),
            cache_dir: cache_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            auth,
            breaker: Mutex::new(Breaker::default()),
        })
    }

    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    fn check_scheme(&self, url: &str) -> Result<(), String> {
        check_scheme(url, self.settings.allow_http)
    }

    /// One GET, redirects followed by hand, at most [`MAX_REDIRECTS`]: only to http(s), never
    /// from https to http, to http only with `allow_http`. The auth header (`with_auth`) goes
    /// only to the origin (scheme, host, port) of `url`, and is dropped for good once a
    /// redirect leaves it — like `Authorization` in browsers, for any header name.
    async fn get(
        &self,
        url: &str,
        headers: &[(reqwest::header::HeaderName, String)],
        with_auth: bool,
    ) -> Result<reqwest::Response, Attempt> {
        let fatal = |m: String| Attempt::Fatal(m);
        let mut current =
            reqwest::Url::parse(url).map_err(|e| fatal(format!("`{url}` is not a URL: {e}")))?;
        let first_origin = current.origin();
        let mut auth = with_auth;
        for hop in 0..=MAX_REDIRECTS {
            let mut req = self.client.get(current.clone());
            if auth && current.origin() == first_origin {
                if let Some((name, value)) = &self.auth {
                    req = req.header(name.clone(), value.clone());
                }
            } else {
                auth = false;
            }
            for (name, value) in headers {
                req = req.header(name.clone(), value.as_str());
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    Attempt::Retry(format!(
                        "timed out after {:.1} s",
                        self.settings.timeout_seconds
                    ))
                } else {
                    Attempt::Retry(crate::text::error_chain(&e))
                }
            })?;
            if !resp.status().is_redirection() || resp.status() == reqwest::StatusCode::NOT_MODIFIED
            {
                return Ok(resp);
            }
            if hop == MAX_REDIRECTS {
                break;
            }
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    Attempt::Fatal(format!(
                        "HTTP {} without a usable Location header",
                        resp.status().as_u16()
                    ))
                })?;
            let next = current.join(location).map_err(|e| {
                Attempt::Fatal(format!("redirect to `{location}` is not a URL: {e}"))
            })?;
            if current.scheme() == "https" && next.scheme() != "https" {
                return Err(Attempt::Refused(format!(
                    "redirect from {} to {} refused: never from https to another scheme",
                    crate::text::redact_url(current.as_str()),
                    crate::text::redact_url(next.as_str())
                )));
            }
            check_scheme(next.as_str(), self.settings.allow_http).map_err(|e| {
                Attempt::Refused(format!(
                    "redirect to {} refused: {e}",
                    crate::text::redact_url(next.as_str())
                ))
            })?;
            current = next;
        }
        Err(Attempt::Fatal(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Fetches `url` once (with retries), and stores it as the last good copy when it is valid
    /// and its signatures pass `policy`.
    pub async fn sync(&self, url: &str, policy: &TrustPolicy) -> SyncOutcome {
        self.sync_with_hints(url, policy).await.0
    }

    /// [`Fetcher::sync`], also returning what the origin said about when to ask again.
    pub async fn sync_with_hints(
        &self,
        url: &str,
        policy: &TrustPolicy,
    ) -> (SyncOutcome, schedule::Hints) {
        let mut hints = schedule::Hints::default();
        let outcome = self.sync_inner(url, policy, &mut hints).await;
        (outcome, hints)
    }

    async fn sync_inner(
        &self,
        url: &str,
        policy: &TrustPolicy,
        hints: &mut schedule::Hints,
    ) -> SyncOutcome {
        if let Err(e) = self.check_scheme(url) {
            return SyncOutcome::Rejected {
                reason: e,
                kind: Rejection::Transport,
            };
        }
        {
            let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = b.open_until {
                let now = Instant::now();
                if now < until {
                    return SyncOutcome::BreakerOpen {
                        retry_in_seconds: (until - now).as_secs().max(1),
                    };
                }
                // Half-open: one attempt decides.
                b.open_until = None;
            }
        }
        let paths = cache_paths(&self.cache_dir, url);
        let mut meta = read_meta(&paths).unwrap_or_else(|| CacheMeta::new(url));
        let cached_present = paths.manifest.exists();
        let outcome = self
            .fetch_with_retries(url, &meta, cached_present, hints)
            .await;
        let now = cache::unix_now();
        meta.last_attempt_at = now;
        let result = match outcome {
            // "Unchanged" only: a 304 carries no signature, so it says nothing about freshness,
            // which comes from the manifest's own signed timestamps.
            Ok(Fetched::NotModified) => {
                meta.not_modified_at = now;
                meta.last_error = None;
                SyncOutcome::NotModified
            }
            Ok(Fetched::Body {
                bytes,
                etag,
                last_modified,
            }) => match self.accept(url, &bytes, policy).await {
                Ok((entries, artifacts)) => {
                    let failed = artifacts.values().filter(|a| !a.ok).count();
                    let written = crate::fsutil::create_dir_owned(&paths.dir)
                        .and_then(|_| crate::fsutil::write_atomic(&paths.manifest, &bytes, 0o640));
                    if let Err(e) = written {
                        meta.last_error = Some(format!("cannot write cache: {e}"));
                        SyncOutcome::Failed {
                            error: format!("cannot write cache {}: {e}", paths.manifest.display()),
                            attempts: 1,
                        }
                    } else {
                        meta.etag = etag;
                        meta.last_modified = last_modified;
                        meta.fetched_at = now;
                        meta.verified_at = now;
                        meta.last_error = None;
                        meta.artifacts = artifacts;
                        SyncOutcome::Updated {
                            bytes: bytes.len() as u64,
                            entries,
                            artifacts_failed: failed,
                        }
                    }
                }
                Err((reason, kind)) => {
                    meta.last_error = Some(reason.clone());
                    SyncOutcome::Rejected { reason, kind }
                }
            },
            Err(FetchError::Refused(reason)) => {
                meta.last_error = Some(reason.clone());
                SyncOutcome::Rejected {
                    reason,
                    kind: Rejection::Transport,
                }
            }
            Err(FetchError::Failed(error, attempts)) => {
                meta.last_error = Some(error.clone());
                SyncOutcome::Failed { error, attempts }
            }
        };
        {
            let mut b = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(result, SyncOutcome::Failed { .. }) {
                b.consecutive_failures += 1;
                if b.consecutive_failures >= self.settings.circuit_breaker_threshold.max(1) {
                    b.open_until = Some(
                        Instant::now() + Duration::from_secs(self.settings.circuit_breaker_reset),
                    );
                }
            } else {
                b.consecutive_failures = 0;
            }
            meta.consecutive_failures = b.consecutive_failures;
        }
        if let Err(e) = cache::write_meta(&paths, &meta) {
            tracing::error!(oneiric_event = "remote_cache_write_failed", "{e}");
        }
        result
    }

    /// Validates a fetched body: parse (bounded), entry validation, signatures and freshness,
    /// the rollback mark; records the new mark; then fetches its artifacts.
    async fn accept(
        &self,
        url: &str,
        bytes: &[u8],
        policy: &TrustPolicy,
    ) -> Result<
        (
            usize,
            std::collections::BTreeMap<String, cache::ArtifactState>,
        ),
        (String, Rejection),
    > {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            (
                format!(
                    "not valid UTF-8 (first bad byte at offset {})",
                    e.valid_up_to()
                ),
                Rejection::Invalid,
            )
        })?;
        let (m, verdict) = manifest::parse_verified(text, url, policy, manifest::TextDigest::Skip)
            .map_err(|e| (e.to_string(), Rejection::Invalid))?;
        if let Verdict::Invalid { reason } = verdict {
            return Err((format!("signature: {reason}"), Rejection::Signature));
        }
        // Only what a trusted key vouched for moves the mark (an attacker cannot raise it);
        // without verification there is nothing to order by.
        if matches!(verdict, Verdict::Valid { .. }) {
            let mut marks = highwater::HighWater::load(&self.state_dir)
                .map_err(|e| (e.to_string(), Rejection::Rollback))?;
            marks
                .check(url, &m.header)
                .map_err(|e| (e, Rejection::Rollback))?;
            marks.sources.insert(
                url.to_string(),
                highwater::Mark::of(&m.header, cache::unix_now()),
            );
            // Written before the body replaces the cached copy: a crash in between leaves a
            // mark newer than the copy, never the other way round.
            marks
                .save(&self.state_dir)
                .map_err(|e| (e.to_string(), Rejection::Rollback))?;
        }
        let artifacts = artifacts::sync_all(self, &self.cache_dir, &m).await;
        Ok((m.entries.len(), artifacts))
    }

    async fn fetch_with_retries(
        &self,
        url: &str,
        meta: &CacheMeta,
        conditional: bool,
        hints: &mut schedule::Hints,
    ) -> Result<Fetched, FetchError> {
        let budget = Duration::from_millis(self.settings.latency_budget_ms.unwrap_or(30_000));
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let remaining = budget.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(FetchError::Failed(
                    format!("time budget of {} ms spent", budget.as_millis()),
                    attempt - 1,
                ));
            }
            let result =
                tokio::time::timeout(remaining, self.fetch_once(url, meta, conditional, hints))
                    .await;
            let err = match result {
                Ok(Ok(f)) => return Ok(f),
                Ok(Err(Attempt::Fatal(e))) => return Err(FetchError::Failed(e, attempt)),
                // The origin said when to come back: retrying sooner would be the stampede it
                // asked to avoid, so this fetch ends and the schedule honours the hint.
                Ok(Err(Attempt::Busy(e))) => return Err(FetchError::Failed(e, attempt)),
                Ok(Err(Attempt::Refused(e))) => return Err(FetchError::Refused(e)),
                Ok(Err(Attempt::Retry(e))) => e,
                Err(_) => format!("time budget of {} ms spent", budget.as_millis()),
            };
            if attempt > self.settings.max_retries {
                return Err(FetchError::Failed(err, attempt));
            }
            let base = self.settings.retry_base_delay * 2f64.powi(attempt as i32 - 1);
            let capped = base.min(self.settings.retry_max_delay);
            let jitter = 1.0 + self.settings.retry_jitter * (fastrand::f64() * 2.0 - 1.0);
            let delay = Duration::from_secs_f64((capped * jitter).max(0.0));
            if start.elapsed() + delay >= budget {
                return Err(FetchError::Failed(
                    format!("{err} (no time left in the budget for another attempt)"),
                    attempt,
                ));
            }
            tracing::warn!(
                oneiric_event = "remote_retry",
                "fetch {} attempt {attempt} failed: {err}; retrying in {:.2} s",
                crate::text::redact_url(url),
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn fetch_once(
        &self,
        url: &str,
        meta: &CacheMeta,
        conditional: bool,
        hints: &mut schedule::Hints,
    ) -> Result<Fetched, Attempt> {
        let mut headers = Vec::new();
        if conditional {
            if let Some(etag) = &meta.etag {
                headers.push((reqwest::header::IF_NONE_MATCH, etag.clone()));
            }
            if let Some(lm) = &meta.last_modified {
                headers.push((reqwest::header::IF_MODIFIED_SINCE, lm.clone()));
            }
        }
        let resp = self.get(url, &headers, true).await?;
        let status = resp.status();
        let header_str =
            |h: reqwest::header::HeaderName| resp.headers().get(h).and_then(|v| v.to_str().ok());
        if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
            hints.max_age =
                header_str(reqwest::header::CACHE_CONTROL).and_then(schedule::parse_max_age);
        }
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let after = header_str(reqwest::header::RETRY_AFTER)
                .and_then(|v| schedule::parse_retry_after(v, cache::unix_now() as i64));
            if let Some(after) = after {
                hints.retry_after = Some(after);
                return Err(Attempt::Busy(format!(
                    "HTTP {}, Retry-After {after} s",
                    status.as_u16()
                )));
            }
            return Err(Attempt::Retry(format!("HTTP {}", status.as_u16())));
        }
        if !status.is_success() {
            return Err(Attempt::Fatal(format!("HTTP {}", status.as_u16())));
        }
        let header = |h: reqwest::header::HeaderName| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let bytes = read_limited(resp, self.settings.max_body_bytes).await?;
        Ok(Fetched::Body {
            bytes,
            etag,
            last_modified,
        })
    }
}

/// `allow_http` decides about plain http; nothing but http(s) is fetched.
fn check_scheme(url: &str, allow_http: bool) -> Result<(), String> {
    if url.starts_with("https://") {
        Ok(())
    } else if url.starts_with("http://") {
        if allow_http {
            Ok(())
        } else {
            Err("plain http:// is refused; set remote.allow_http: true to allow it".into())
        }
    } else {
        Err(format!(
            "`{}` is not an http(s) URL",
            crate::text::redact_url(url)
        ))
    }
}

enum FetchError {
    /// A redirect or scheme the settings forbid: refused, not retried.
    Refused(String),
    /// The origin could not be reached or kept failing, after this many attempts.
    Failed(String, u32),
}

enum Fetched {
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

enum Attempt {
    Retry(String),
    /// The origin is overloaded and said when to return (`Retry-After`).
    Busy(String),
    Fatal(String),
    Refused(String),
}

/// Reads a body up to `limit` bytes, refusing (without retry) anything larger.
async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, Attempt> {
    if let Some(len) = resp.content_length() {
        if len > limit {
            return Err(Attempt::Fatal(format!(
                "body of {len} bytes exceeds the {limit}-byte limit"
            )));
        }
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() as u64 + chunk.len() as u64 > limit {
                    return Err(Attempt::Fatal(format!(
                        "body exceeds the {limit}-byte limit"
                    )));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) if e.is_timeout() => {
                return Err(Attempt::Retry("timed out reading the body".into()));
            }
            Err(e) => return Err(Attempt::Retry(crate::text::error_chain(&e))),
        }
    }
}

/// Why the last good copy of a remote manifest cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No usable copy: never fetched successfully, or the cache file is unreadable.
    #[error("{origin}: {message}")]
    Unavailable { origin: String, message: String },
    /// The copy is there but does not parse or verify (any more) under the current policy.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

/// The last good copy of a remote manifest, as the loader gets it.
pub struct Cached {
    pub manifest: Manifest,
    /// The signature verdict of the copy under the policy it was loaded with.
    pub verdict: Verdict,
    /// How old the copy is, when the latest fetch failed.
    pub stale_age: Option<u64>,
    /// Unix time the body was downloaded (0 when unknown).
    pub fetched_at: u64,
}

/// The last good copy of a remote manifest, for the loader. Entries whose artifact could not be
/// fetched and verified are skipped with the reason.
pub fn load_cached(
    cache_dir: &Path,
    state_dir: &Path,
    url: &str,
    policy: &TrustPolicy,
    digest: manifest::TextDigest,
) -> Result<Cached, CacheError> {
    let paths = cache_paths(cache_dir, url);
    let remote_err = |message: String| CacheError::Unavailable {
        origin: url.to_string(),
        message,
    };
    if !paths.manifest.exists() {
        let why = read_meta(&paths)
            .and_then(|m| m.last_error)
            .map(|e| format!(" (last fetch: {e})"))
            .unwrap_or_default();
        return Err(remote_err(format!(
            "no cached copy yet and the manifest could not be fetched{why}"
        )));
    }
    let text = crate::fsutil::read_own_text(&paths.manifest, manifest::MAX_MANIFEST_BYTES)
        .map_err(|e| remote_err(e.to_string()))?;
    // Accepted earlier, so judged for freshness by the service's expiry timer instead: an
    // expired copy is served (flagged, not ready) rather than keeping the service down.
    let mut accepted = policy.clone();
    accepted.check_freshness = false;
    // The digest is of the body as the origin served it (the manifest's `text_sha256`).
    let (mut m, verdict) = manifest::parse_verified(&text, url, &accepted, digest)?;
    // The copy must still be the newest this host accepted: the mark lives in the state
    // directory, beyond the reach of whatever replaced the cache.
    if matches!(verdict, Verdict::Valid { .. }) {
        let marks = highwater::HighWater::load(state_dir).map_err(|e| remote_err(e.to_string()))?;
        marks
            .check(url, &m.header)
            .map_err(|e| remote_err(format!("cached copy: {e}")))?;
    }
    let meta = read_meta(&paths);
    let mut kept = Vec::with_capacity(m.entries.len());
    for (i, e) in std::mem::take(&mut m.entries).into_iter().enumerate() {
        if let Some(sha) = &e.sha256 {
            let state = meta.as_ref().and_then(|mm| mm.artifacts.get(sha));
            match state {
                Some(a) if a.ok => {}
                other => {
                    let reason = other
                        .and_then(|a| a.error.clone())
                        .unwrap_or_else(|| "not downloaded".into());
                    m.skipped.push(manifest::Skipped {
                        index: i,
                        key: Some(e.key.clone()),
                        reason: format!("artifact {sha}: {reason}"),
                    });
                    continue;
                }
            }
        }
        kept.push(e);
    }
    m.entries = kept;
    m.skipped.sort_by_key(|s| s.index);
    let fetched_at = meta.as_ref().map(|mm| mm.fetched_at).unwrap_or(0);
    let age = meta.and_then(|mm| {
        mm.last_error
            .as_ref()
            .map(|_| cache::unix_now().saturating_sub(mm.fetched_at.max(mm.not_modified_at)))
    });
    Ok(Cached {
        manifest: m,
        verdict,
        stale_age: age,
        fetched_at,
    })
}

/// Unix time of the last answer from the origin that confirmed the cached copy (a new body or
/// a 304), from the cache's own record; 0 when there was none.
pub fn last_success(cache_dir: &Path, url: &str) -> u64 {
    read_meta(&cache_paths(cache_dir, url))
        .map(|m| m.fetched_at.max(m.not_modified_at))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An origin answering every request with `response`, counting requests.
    async fn origin(response: &'static [u8]) -> (u16, std::sync::Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let h = std::sync::Arc::clone(&hits);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response).await;
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn retry_after_ends_the_fetch_and_max_age_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let settings = RemoteSettings {
            allow_http: true,
            max_retries: 3,
            retry_base_delay: 0.01,
            ..Default::default()
        };
        let f = Fetcher::new(
            &settings,
            dir.path(),
            dir.path(),
            &crate::config::Env::default(),
        )
        .unwrap();
        let policy = TrustPolicy::new(Vec::new(), 1, time::OffsetDateTime::now_utc());
        let (port, hits) = origin(
            b"HTTP/1.1 503 Busy\r\nretry-after: 120\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let url = format!("http://127.0.0.1:{port}/m.json");
        let (outcome, hints) = f.sync_with_hints(&url, &policy).await;
        assert!(
            matches!(outcome, SyncOutcome::Failed { attempts: 1, .. }),
            "{outcome:?}"
        );
        assert_eq!(hints.retry_after, Some(120));
        // Not retried within the fetch although max_retries allows 3.
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        let (port, _) = origin(
            b"HTTP/1.1 304 Not Modified\r\ncache-control: public, max-age=900\r\nconnection: close\r\n\r\n",
        )
        .await;
        let url = format!("http://127.0.0.1:{port}/m.json");
        let (outcome, hints) = f.sync_with_hints(&url, &policy).await;
        assert_eq!(outcome, SyncOutcome::NotModified);
        assert_eq!(hints.max_age, Some(900));
        assert_eq!(hints.retry_after, None);
    }

    #[tokio::test]
    async fn breaker_opens_after_threshold_and_half_opens_after_reset() {
        let (port, hits) =
            origin(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        let dir = tempfile::tempdir().unwrap();
        let settings = RemoteSettings {
            allow_http: true,
            max_retries: 0,
            circuit_breaker_threshold: 2,
            circuit_breaker_reset: 1,
            ..Default::default()
        };
        let f = Fetcher::new(
            &settings,
            dir.path(),
            dir.path(),
            &crate::config::Env::default(),
        )
        .unwrap();
        let policy = TrustPolicy::new(Vec::new(), 1, time::OffsetDateTime::now_utc());
        let url = format!("http://127.0.0.1:{port}/m.yaml");
        assert!(matches!(
            f.sync(&url, &policy).await,
            SyncOutcome::Failed { .. }
        ));
        assert!(matches!(
            f.sync(&url, &policy).await,
            SyncOutcome::Failed { .. }
        ));
        assert!(matches!(
            f.sync(&url, &policy).await,
            SyncOutcome::BreakerOpen { .. }
        ));
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(matches!(
            f.sync(&url, &policy).await,
            SyncOutcome::Failed { .. }
        ));
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        let meta = read_meta(&cache_paths(dir.path(), &url)).unwrap();
        assert_eq!(meta.consecutive_failures, 3);
        assert!(meta.last_error.unwrap().contains("503"));
    }
}
