//! Loading everything the resolver needs — settings, manifests, signatures, operator pins —
//! into one [`World`]: the single entry point shared by the CLI and the service, so that
//! `check`, `health --probe`, a reload and a refresh all judge input the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod restore;
mod settings;

pub use restore::{Stale, check_inputs, inputs_key};
pub use settings::{LoadedSettings, SettingsSource, json_error, load_settings, yaml_error};

use crate::config::{self, ConfigError, Env};
use crate::domain::Domain;
use crate::instance::Instance;
pub use crate::manifest::TextDigest;
use crate::manifest::signature::{TrustPolicy, Verdict};
use crate::manifest::{self, Manifest, ManifestError, Skipped};
use crate::resolver::{Pins, Registry, SelectionOrigin, Snapshot};

pub(crate) const DEMO_MANIFEST: &str = include_str!("demo-manifest.yaml");
/// The origin the built-in demo manifest is reported under.
pub(crate) const DEMO_ORIGIN: &str = "builtin:demo";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A remote manifest with no usable cached copy (never fetched, or unreadable).
    #[error("{origin}: {message}")]
    Remote { origin: String, message: String },
}

impl From<crate::remote::CacheError> for LoadError {
    fn from(e: crate::remote::CacheError) -> Self {
        match e {
            crate::remote::CacheError::Unavailable { origin, message } => {
                LoadError::Remote { origin, message }
            }
            crate::remote::CacheError::Manifest(m) => LoadError::Manifest(m),
        }
    }
}

/// The service's directories, each from flag, `ONEIRIC_*`, systemd's `*_DIRECTORY`, or the
/// packaged default (for a named instance, the instance's directory under it), in that order.
#[derive(Debug, Clone, Serialize)]
pub struct Dirs {
    pub state: PathBuf,
    pub cache: PathBuf,
    pub runtime: PathBuf,
}

impl Dirs {
    pub fn resolve(
        state: Option<&Path>,
        cache: Option<&Path>,
        runtime: Option<&Path>,
        instance: Option<&Instance>,
        env: &Env,
    ) -> Self {
        // systemd may pass several colon-separated directories; ours is the first.
        let pick = |flag: Option<&Path>, ours: &str, systemd: &str, default: &str| -> PathBuf {
            flag.map(Path::to_path_buf)
                .or_else(|| env.get(ours).map(PathBuf::from))
                .or_else(|| {
                    env.get(systemd)
                        .and_then(|v| v.split(':').next())
                        .map(PathBuf::from)
                })
                .unwrap_or_else(|| match instance {
                    Some(i) => i.under(default),
                    None => PathBuf::from(default),
                })
        };
        Self {
            state: pick(
                state,
                "ONEIRIC_STATE_DIR",
                "STATE_DIRECTORY",
                "/var/lib/oneiric",
            ),
            cache: pick(
                cache,
                "ONEIRIC_CACHE_DIR",
                "CACHE_DIRECTORY",
                "/var/cache/oneiric",
            ),
            runtime: pick(
                runtime,
                "ONEIRIC_RUNTIME_DIR",
                "RUNTIME_DIRECTORY",
                "/run/oneiric",
            ),
        }
    }

    pub fn control_socket(&self) -> PathBuf {
        self.runtime.join("control.sock")
    }

    /// The administrators' socket (`oneiric-admin.socket`): changes from group `oneiric-admin`.
    pub fn admin_socket(&self) -> PathBuf {
        self.runtime.join("admin.sock")
    }

    /// The sockets a request to the service tries, in order (`control::sockets_for`).
    pub fn sockets_for(&self, req: &crate::control::Request) -> [PathBuf; 2] {
        crate::control::sockets_for(req, self.control_socket(), self.admin_socket())
    }
}

/// A manifest location: a local path (the packaged default) or a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "location", rename_all = "lowercase")]
pub enum ManifestSource {
    Path(PathBuf),
    Url(String),
}

impl ManifestSource {
    pub fn parse(s: &str) -> Self {
        if s.starts_with("https://") || s.starts_with("http://") {
            ManifestSource::Url(s.to_string())
        } else if let Some(p) = s.strip_prefix("file://") {
            ManifestSource::Path(PathBuf::from(p))
        } else {
            ManifestSource::Path(PathBuf::from(s))
        }
    }
}

/// Flags that override settings (the highest layer).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub refresh_interval: Option<u64>,
    pub http_port: Option<u16>,
    pub no_http: bool,
    pub log_level: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub config: SettingsSource,
    pub manifests: Vec<ManifestSource>,
    pub env: Env,
    pub overrides: Overrides,
    pub dirs: Dirs,
}

/// What happened to one manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestReport {
    pub origin: String,
    pub source: Option<String>,
    pub loaded: usize,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub signature: Verdict,
    /// Set when a remote manifest was served from the cache; its age in seconds.
    pub cached_age_seconds: Option<u64>,
    /// Fetched from a URL (through the cache), as opposed to a file of this host.
    pub remote: bool,
    pub serial: Option<u64>,
    /// SHA-256 (hex) of the manifest's bytes (as served by the origin, for a URL): what hosts
    /// of a fleet compare to see that they serve the same release. Absent only from a load
    /// that prints no digest (`check`, [`TextDigest::Skip`]); a served state always has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Unix time the served copy of a URL manifest was downloaded.
    pub fetched_at: Option<u64>,
    /// RFC 3339, as signed.
    pub signed_at: Option<String>,
    /// `signed_at` as Unix seconds, for the `oneiric_manifest_signed_timestamp_seconds` gauge.
    pub signed_at_unix: Option<i64>,
    pub expires_at: Option<String>,
    /// When this manifest stops being fresh (Unix seconds): `expires_at`, or `signed_at` plus
    /// `remote.signature_max_age_seconds`, whichever comes first. The service re-checks it on
    /// its own timer (`served::Served::expired`).
    pub fresh_until: Option<i64>,
}

impl ManifestReport {
    fn new(
        m: &Manifest,
        signature: Verdict,
        cached_age_seconds: Option<u64>,
        origin: Origin,
        max_age: Option<u64>,
    ) -> Self {
        let (remote, fetched_at) = match origin {
            Origin::Local => (false, None),
            Origin::Remote { fetched_at } => (true, Some(fetched_at)),
        };
        let h = &m.header;
        let by_age = h.signed_at.zip(max_age).map(|(s, a)| {
            s.unix_timestamp()
                .saturating_add(a.min(i64::MAX as u64) as i64)
        });
        let by_expiry = h.expires_at.map(|e| e.unix_timestamp());
        let fresh_until = match (by_age, by_expiry) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) => a.or(e),
        };
        ManifestReport {
            origin: m.origin.clone(),
            source: m.source.clone(),
            loaded: m.entries.len(),
            skipped: m.skipped.clone(),
            warnings: m.warnings.clone(),
            signature,
            cached_age_seconds,
            remote,
            serial: h.serial,
            sha256: m.text_sha256.clone(),
            fetched_at,
            signed_at: h.signed_at.map(crate::text::fmt_time),
            signed_at_unix: h.signed_at.map(|t| t.unix_timestamp()),
            expires_at: h.expires_at.map(crate::text::fmt_time),
            fresh_until,
        }
    }
}

/// Where a manifest's bytes came from, for its report.
enum Origin {
    Local,
    Remote { fetched_at: u64 },
}

/// Everything loaded, ready to serve.
#[derive(Debug)]
pub struct World {
    pub settings: LoadedSettings,
    pub manifests: Vec<ManifestReport>,
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    pub demo: bool,
    /// Remote manifests left out because no copy was ever fetched ([`MissingRemote::Skip`]).
    pub unavailable: Vec<Unavailable>,
}

/// A remote manifest left out of a load, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unavailable {
    pub origin: String,
    pub message: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            crate::text::redact_url(&self.origin),
            self.message
        )
    }
}

/// What a load does with a URL manifest that has no cached copy yet (first boot, or the cache
/// was removed) and could not be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingRemote {
    /// The load fails: a reload keeps serving what it had, `check` reports it.
    Fail,
    /// The load goes on without it and says so: the service's first load (which keeps
    /// fetching and reports not ready until a copy arrives) and the pre-start check.
    Skip,
}

/// Applies command-line overrides on top of loaded settings, re-validating.
pub fn apply_overrides(loaded: &mut LoadedSettings, o: &Overrides) -> Result<(), ConfigError> {
    let s = &mut loaded.settings;
    if let Some(r) = o.refresh_interval {
        if r == 0 {
            return Err(ConfigError::Flag {
                flag: "--refresh-interval".into(),
                message: "must be at least 1 second".into(),
            });
        }
        s.remote.refresh_interval = r;
    }
    if let Some(p) = o.http_port {
        s.http.port = p;
    }
    if o.no_http {
        s.http.enabled = false;
    }
    if let Some(l) = &o.log_level {
        config::parse_log_level(l).map_err(|message| ConfigError::Flag {
            flag: "--log-level".into(),
            message,
        })?;
        s.logging.level = Some(l.clone());
    }
    Ok(())
}

/// The trust policy of a load: the one place settings become a [`TrustPolicy`] (the loader,
/// the service's fetcher and `remote-sync` all judge signatures by it).
pub fn trust_policy(loaded: &LoadedSettings) -> Result<Trust, ConfigError> {
    let origin = loaded
        .files
        .first()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("settings"));
    trust_policy_of(&loaded.settings.remote).map_err(|e| ConfigError::Invalid {
        path: origin,
        message: format!("remote.trusted_public_keys: {e}"),
    })
}

/// The two policies of one settings generation: files on this host, and manifests fetched
/// from a URL (which an attacker on the network may answer for).
#[derive(Debug, Clone)]
pub struct Trust {
    pub local: TrustPolicy,
    pub remote: TrustPolicy,
}

/// [`trust_policy`] for remote settings given directly (`manifest verify --trusted-key`).
///
/// Secure by default: once trusted keys are configured, every manifest must carry enough
/// valid signatures (opt-out: `remote.insecure_accept_unsigned`); a URL manifest must be
/// signed by a trusted key even when none are configured (opt-out:
/// `remote.insecure_unverified_urls`) and must carry `expires_at` (opt-out:
/// `remote.insecure_no_expiry`).
pub fn trust_policy_of(
    r: &config::RemoteSettings,
) -> Result<Trust, crate::manifest::signature::KeyError> {
    let trusted = r
        .trusted_public_keys
        .iter()
        .map(|k| crate::manifest::signature::parse_public_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let mut local = TrustPolicy::new(
        trusted,
        r.signature_threshold,
        time::OffsetDateTime::now_utc(),
    );
    let keys = !local.trusted.is_empty();
    local.required = r.signature_required || (keys && !r.insecure_accept_unsigned);
    local.opt_out = if keys {
        "remote.insecure_accept_unsigned: true"
    } else {
        ""
    };
    local.max_age_seconds = r.signature_max_age_seconds;
    local.require_expiry = r.signature_require_expiry;
    local.max_skew_seconds = r.max_clock_skew_seconds;
    let mut remote = local.clone();
    if !keys {
        remote.required = r.signature_required || !r.insecure_unverified_urls;
        remote.opt_out = "remote.insecure_unverified_urls: true";
    }
    remote.require_expiry = r.signature_require_expiry || !r.insecure_no_expiry;
    Ok(Trust { local, remote })
}

/// Reads manifest text from a file: size-limited and UTF-8 checked.
pub fn read_manifest(path: &Path) -> Result<String, ManifestError> {
    use crate::fsutil::ReadError;
    let origin = path.display().to_string();
    crate::fsutil::read_text(path, manifest::MAX_MANIFEST_BYTES).map_err(|e| match e {
        ReadError::Io(source) => ManifestError::Read { origin, source },
        ReadError::TooLarge { size, limit } => ManifestError::TooLarge {
            origin,
            size,
            limit,
        },
        ReadError::NotUtf8 { offset } => ManifestError::NotUtf8 { origin, offset },
        ReadError::NotRegular { what } => ManifestError::Read {
            origin,
            source: crate::fsutil::not_regular(what),
        },
    })
}

/// Loads settings and every manifest, checks signatures, and builds the snapshot with the
/// given operator pins. Any error leaves nothing half-built: the caller keeps what it had.
/// `digest`: whether the manifests' reports carry the SHA-256 of their text.
pub fn load(req: &LoadRequest, pins: &Pins, digest: TextDigest) -> Result<World, LoadError> {
    load_with(req, settings(req)?, pins, MissingRemote::Fail, digest)
}

/// The settings of a load: the layers, then the command-line overrides, validated.
pub fn settings(req: &LoadRequest) -> Result<LoadedSettings, LoadError> {
    let mut loaded = load_settings(&req.config, &req.env)?;
    apply_overrides(&mut loaded, &req.overrides)?;
    Ok(loaded)
}

/// [`load`] with settings already read (a reload reads them once, before fetching).
pub fn load_with(
    req: &LoadRequest,
    loaded: LoadedSettings,
    pins: &Pins,
    missing: MissingRemote,
    digest: TextDigest,
) -> Result<World, LoadError> {
    let mut warnings = loaded.warnings.clone();

    let trust = trust_policy(&loaded)?;
    for opt in loaded.settings.remote.insecure_options() {
        warnings.push(format!(
            "INSECURE: {opt} is set: a protection of remote manifests is off (README \"Remote manifests\")"
        ));
    }
    if loaded.settings.lifecycle.probes.insecure_any_address {
        warnings.push(
            "INSECURE: lifecycle.probes.insecure_any_address is set: health probes a manifest names may reach link-local and cloud metadata addresses (README \"Health probes\")".into(),
        );
    }

    let sources = manifest_sources(req, &loaded);

    let mut manifests = Vec::new();
    let mut reports = Vec::new();
    let mut unavailable = Vec::new();
    for source in &sources {
        let (m, verdict, cached_age, origin) = match source {
            ManifestSource::Path(p) => {
                let text = read_manifest(p)?;
                let (m, verdict) = manifest::parse_verified(
                    &text,
                    &p.display().to_string(),
                    &trust.local,
                    digest,
                )?;
                (m, verdict, None, Origin::Local)
            }
            // The network is never touched here: remote manifests come from the cache that
            // `remote::Fetcher::sync` keeps (run by the service and by `remote-sync`).
            ManifestSource::Url(u) => match crate::remote::load_cached(
                &cache_dir(req, &loaded),
                &req.dirs.state,
                u,
                &trust.remote,
                digest,
            ) {
                Ok(c) => (
                    c.manifest,
                    c.verdict,
                    c.stale_age,
                    Origin::Remote {
                        fetched_at: c.fetched_at,
                    },
                ),
                Err(crate::remote::CacheError::Unavailable { origin, message })
                    if missing == MissingRemote::Skip
                        && !crate::remote::cache_paths(&cache_dir(req, &loaded), u)
                            .manifest
                            .exists() =>
                {
                    let u = Unavailable { origin, message };
                    warnings.push(format!("left out until a copy is fetched: {u}"));
                    unavailable.push(u);
                    continue;
                }
                Err(e) => return Err(e.into()),
            },
        };
        if let Verdict::Invalid { reason } = &verdict {
            return Err(ManifestError::Signature {
                origin: m.origin.clone(),
                message: reason.clone(),
            }
            .into());
        }
        if verdict == Verdict::Unsigned && !m.entries.is_empty() {
            warnings.push(format!("{}: manifest is unsigned", m.origin));
        }
        reports.push(ManifestReport::new(
            &m,
            verdict,
            cached_age,
            origin,
            loaded.settings.remote.signature_max_age_seconds,
        ));
        manifests.push(m);
    }

    let has_local = Domain::ALL
        .iter()
        .any(|d| !loaded.settings.domain(*d).candidates.is_empty());
    let demo = loaded.builtin_defaults && sources.is_empty() && !has_local;
    if demo {
        let mut m = manifest::parse(DEMO_MANIFEST, DEMO_ORIGIN)?;
        m.text_sha256 = Some(crate::text::sha256_hex(DEMO_MANIFEST.as_bytes()));
        reports.push(ManifestReport::new(
            &m,
            Verdict::Unsigned,
            None,
            Origin::Local,
            None,
        ));
        manifests.push(m);
    }

    // The manifests are moved into the registry: their strings become the candidates'
    // without a copy, and the parse's structures are gone before the snapshot is built.
    let (snapshot, mut dups) = build_snapshot(&loaded, manifests, pins);
    warnings.append(&mut dups);
    Ok(World {
        settings: loaded,
        manifests: reports,
        snapshot,
        warnings,
        demo,
        unavailable,
    })
}

/// The manifests of a load in registration order, without duplicates (the unit passes the
/// same file the settings directory holds).
pub fn manifest_sources(req: &LoadRequest, loaded: &LoadedSettings) -> Vec<ManifestSource> {
    let mut sources: Vec<ManifestSource> = Vec::new();
    let urls = remote_urls(req, loaded);
    let mut push = |s: ManifestSource| {
        let key = |s: &ManifestSource| match s {
            ManifestSource::Path(p) => {
                ManifestSource::Path(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            }
            other => other.clone(),
        };
        let k = key(&s);
        if !sources.iter().any(|x| key(x) == k) {
            sources.push(s);
        }
    };
    if let Some(p) = &loaded.dir_manifest {
        push(ManifestSource::Path(p.clone()));
    }
    for s in &req.manifests {
        push(s.clone());
    }
    for url in urls {
        push(ManifestSource::Url(url));
    }
    if let Some(url) = &loaded.settings.remote.manifest_url {
        if let ManifestSource::Path(p) = ManifestSource::parse(url) {
            if remote_wanted(req, loaded) {
                push(ManifestSource::Path(p));
            }
        }
    }
    sources
}

/// Registers settings candidates then manifests (registration order) and ranks them, with
/// settings selections overlaid by operator pins. Returns duplicate-registration warnings.
pub fn build_snapshot(
    settings: &LoadedSettings,
    manifests: Vec<Manifest>,
    pins: &Pins,
) -> (Snapshot, Vec<String>) {
    let mut registry = Registry::new();
    let settings_origin = settings
        .files
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "settings".into());
    registry.register_settings(&settings.settings, &settings.stack_order, &settings_origin);
    for m in manifests {
        registry.register_manifest(m, &settings.stack_order);
    }
    let dups = std::mem::take(&mut registry.duplicates);
    (registry.build(&selections(settings, pins)), dups)
}

/// Settings selections overlaid by operator pins.
pub fn selections(settings: &LoadedSettings, pins: &Pins) -> Pins {
    let mut selections = HashMap::new();
    for d in Domain::ALL {
        for (k, p) in &settings.settings.domain(d).selections {
            selections.insert((d, k.clone()), (p.clone(), SelectionOrigin::Settings));
        }
    }
    for (k, v) in pins {
        selections.insert(k.clone(), v.clone());
    }
    selections
}

/// The settings' `remote.manifest_url` applies when remote is enabled, or when no manifest was
/// given on the command line.
fn remote_wanted(req: &LoadRequest, loaded: &LoadedSettings) -> bool {
    loaded.settings.remote.enabled || req.manifests.is_empty()
}

/// Every URL manifest of a load, in order: `--manifest` URLs, then `remote.manifest_url`.
pub fn remote_urls(req: &LoadRequest, loaded: &LoadedSettings) -> Vec<String> {
    let mut urls: Vec<String> = req
        .manifests
        .iter()
        .filter_map(|m| match m {
            ManifestSource::Url(u) => Some(u.clone()),
            ManifestSource::Path(_) => None,
        })
        .collect();
    if let Some(url) = &loaded.settings.remote.manifest_url {
        if remote_wanted(req, loaded) {
            if let ManifestSource::Url(u) = ManifestSource::parse(url) {
                if !urls.contains(&u) {
                    urls.push(u);
                }
            }
        }
    }
    urls
}

/// Where remote manifests and artifacts are cached: `remote.cache_dir`, else the cache dir.
pub fn cache_dir(req: &LoadRequest, loaded: &LoadedSettings) -> PathBuf {
    loaded
        .settings
        .remote
        .cache_dir
        .clone()
        .unwrap_or_else(|| req.dirs.cache.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_instance_nests_its_directories_unless_told_otherwise() {
        let staging = Instance::parse("staging", "test").unwrap();
        let d = Dirs::resolve(None, None, None, Some(&staging), &Env::default());
        assert_eq!(d.state, Path::new("/var/lib/oneiric/staging"));
        assert_eq!(d.cache, Path::new("/var/cache/oneiric/staging"));
        assert_eq!(
            d.control_socket(),
            Path::new("/run/oneiric/staging/control.sock")
        );
        // systemd's StateDirectory=oneiric/%i says the same; an explicit one still wins.
        let env = Env::from_pairs([
            ("STATE_DIRECTORY", "/var/lib/oneiric/staging"),
            ("ONEIRIC_CACHE_DIR", "/srv/cache"),
        ]);
        let d = Dirs::resolve(None, None, Some(Path::new("/r")), Some(&staging), &env);
        assert_eq!(d.state, Path::new("/var/lib/oneiric/staging"));
        assert_eq!(d.cache, Path::new("/srv/cache"));
        assert_eq!(d.runtime, Path::new("/r"));
        let d = Dirs::resolve(None, None, None, None, &Env::default());
        assert_eq!(d.state, Path::new("/var/lib/oneiric"));
    }
}
