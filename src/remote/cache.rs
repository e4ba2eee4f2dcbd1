//! The cache of remote manifests: the last good body and what we know about it, per URL,
//! under `<cache dir>/remote/<digest of the URL>/`. Both files are replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub struct CachePaths {
    pub dir: PathBuf,
    pub manifest: PathBuf,
    pub meta: PathBuf,
}

pub fn cache_paths(cache_dir: &Path, url: &str) -> CachePaths {
    let digest = Sha256::digest(url.as_bytes());
    let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let dir = cache_dir.join("remote").join(name);
    CachePaths {
        manifest: dir.join("manifest"),
        meta: dir.join("meta.json"),
        dir,
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ArtifactState {
    pub ok: bool,
    pub path: Option<PathBuf>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CacheMeta {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Unix time the current body was downloaded.
    pub fetched_at: u64,
    /// Unix time the current body was accepted (parsed, verified, newer than the mark).
    pub verified_at: u64,
    /// Unix time the server last answered 304 (unchanged). Says nothing about freshness.
    #[serde(default)]
    pub not_modified_at: u64,
    pub last_attempt_at: u64,
    /// The latest attempt's failure, if it failed: then the copy is served stale.
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// By sha256.
    #[serde(default)]
    pub artifacts: BTreeMap<String, ArtifactState>,
}

impl CacheMeta {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            ..Default::default()
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The metadata of one URL (its artifacts included) is a few kilobytes.
const MAX_META_BYTES: u64 = 16 * 1024 * 1024;

pub fn read_meta(paths: &CachePaths) -> Option<CacheMeta> {
    let bytes = crate::fsutil::read_own_file(&paths.meta, MAX_META_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn write_meta(paths: &CachePaths, meta: &CacheMeta) -> Result<(), String> {
    crate::fsutil::create_dir_owned(&paths.dir)
        .map_err(|e| format!("{}: {e}", paths.dir.display()))?;
    let bytes = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(&paths.meta, &bytes, 0o640)
        .map_err(|e| format!("{}: {e}", paths.meta.display()))
}
