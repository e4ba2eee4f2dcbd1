//! Whether a served state saved by an earlier process (the `persisted` module) still describes
//! what a load would build now, judged without parsing a manifest: the inputs key (settings
//! after every layer, stack order, the manifest list, and so the trust policy, which the
//! settings alone determine) must be the one it was saved under, and every manifest it was
//! built from must still have the bytes it had (the local file, or the cached copy of a URL).

use serde::Serialize;

use super::{LoadRequest, LoadedSettings, ManifestReport, ManifestSource, Unavailable};

/// Why a saved state is not served. Each says what changed; none is an error of the service,
/// which then starts as it would without one.
#[derive(Debug, thiserror::Error)]
pub enum Stale {
    #[error("{origin}: changed since it was saved")]
    Changed { origin: String },
    #[error("{origin}: cannot read it: {message}")]
    Unreadable { origin: String, message: String },
    #[error("{origin}: a copy was fetched since it was saved")]
    Fetched { origin: String },
    #[error("{origin}: served then, not a manifest of this load")]
    Unknown { origin: String },
}

/// Settings sections and `remote` fields that change how the service runs, fetches or
/// probes, not what a load of the same bytes builds or accepts: left out of the key, so that
/// another port or refresh interval does not throw the saved state away.
const NOT_IN_KEY: &[&str] = &["http", "logging", "lifecycle"];
const REMOTE_NOT_IN_KEY: &[&str] = &[
    "auth",
    "refresh_interval",
    "refresh_splay",
    "refresh_max_interval",
    "max_retries",
    "retry_base_delay",
    "retry_max_delay",
    "retry_jitter",
    "circuit_breaker_threshold",
    "circuit_breaker_reset",
    "latency_budget_ms",
    "timeout_seconds",
];

/// The identity of everything a load reads besides manifest bytes, as a SHA-256 hex digest:
/// the settings that decide what is loaded and accepted (candidates, selections, trust
/// policy, manifest locations), the stack order and the manifest list. The version is part of
/// it: another binary may judge the same inputs differently.
pub fn inputs_key(req: &LoadRequest, loaded: &LoadedSettings) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        version: &'a str,
        settings: serde_json::Value,
        stack_order: &'a crate::config::StackOrder,
        builtin_defaults: bool,
        sources: Vec<ManifestSource>,
    }
    let mut settings = serde_json::to_value(&loaded.settings).unwrap_or_default();
    if let Some(all) = settings.as_object_mut() {
        for k in NOT_IN_KEY {
            all.remove(*k);
        }
        if let Some(remote) = all.get_mut("remote").and_then(|r| r.as_object_mut()) {
            for k in REMOTE_NOT_IN_KEY {
                remote.remove(*k);
            }
        }
    }
    let key = Key {
        version: env!("CARGO_PKG_VERSION"),
        settings,
        stack_order: &loaded.stack_order,
        builtin_defaults: loaded.builtin_defaults,
        sources: super::manifest_sources(req, loaded),
    };
    // Settings hold only ordered maps, so the serialisation is the same in every process.
    let bytes = serde_json::to_vec(&key).unwrap_or_default();
    crate::text::sha256_hex(&bytes)
}

/// Checks that every manifest a saved state was built from still has the bytes it had, and
/// that it accounts for every manifest of this load. The caller has compared the inputs key.
pub fn check_inputs(
    req: &LoadRequest,
    loaded: &LoadedSettings,
    manifests: &[ManifestReport],
    unavailable: &[Unavailable],
) -> Result<(), Stale> {
    let cache = super::cache_dir(req, loaded);
    for m in manifests {
        let bytes = if m.origin == super::DEMO_ORIGIN {
            super::DEMO_MANIFEST.as_bytes().to_vec()
        } else if m.remote {
            // The cache is the service's own directory: not read through a planted link or
            // FIFO.
            let path = crate::remote::cache_paths(&cache, &m.origin).manifest;
            crate::fsutil::read_own_file(&path, crate::manifest::MAX_MANIFEST_BYTES)
                .map_err(|e| unreadable(&m.origin, e))?
        } else {
            // As a load reads it: settings files may be links (NixOS links /etc to the store).
            super::read_manifest(std::path::Path::new(&m.origin))
                .map_err(|e| unreadable(&m.origin, e))?
                .into_bytes()
        };
        if m.sha256.as_deref() != Some(crate::text::sha256_hex(&bytes).as_str()) {
            return Err(Stale::Changed {
                origin: m.origin.clone(),
            });
        }
    }
    for u in unavailable {
        if crate::remote::cache_paths(&cache, &u.origin)
            .manifest
            .exists()
        {
            return Err(Stale::Fetched {
                origin: u.origin.clone(),
            });
        }
    }
    // Every source of this load is accounted for (the key covers the list; this covers a
    // saved state whose reports and key disagree).
    for source in super::manifest_sources(req, loaded) {
        let origin = match source {
            ManifestSource::Path(p) => p.display().to_string(),
            ManifestSource::Url(u) => u,
        };
        let known = manifests.iter().any(|m| m.origin == origin)
            || unavailable.iter().any(|u| u.origin == origin);
        if !known {
            return Err(Stale::Unknown { origin });
        }
    }
    Ok(())
}

fn unreadable(origin: &str, e: impl std::fmt::Display) -> Stale {
    Stale::Unreadable {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_what_is_loaded_not_how_the_service_runs() {
        let req = LoadRequest {
            config: super::super::SettingsSource {
                path: "/nonexistent/oneiric".into(),
                explicit: false,
            },
            manifests: vec![ManifestSource::Path("/etc/oneiric/manifest.yaml".into())],
            env: crate::config::Env::default(),
            overrides: Default::default(),
            dirs: super::super::Dirs::resolve(None, None, None, None, &Default::default()),
        };
        let base = super::super::settings(&req).unwrap();
        let key = inputs_key(&req, &base);
        assert_eq!(key, inputs_key(&req, &base.clone()));
        let mut ran = base.clone();
        ran.settings.http.port = 9191;
        ran.settings.remote.refresh_interval = 7;
        ran.settings.remote.auth.token_env = "OTHER_TOKEN".into();
        assert_eq!(inputs_key(&req, &ran), key);
        let mut trust = base.clone();
        trust.settings.remote.signature_required = true;
        assert_ne!(inputs_key(&req, &trust), key);
        let mut picked = base.clone();
        picked
            .settings
            .adapters
            .selections
            .insert("cache".into(), "redis".into());
        assert_ne!(inputs_key(&req, &picked), key);
        let mut other = req.clone();
        other
            .manifests
            .push(ManifestSource::Url("https://m.example/x".into()));
        assert_ne!(inputs_key(&other, &base), key);
    }
}
