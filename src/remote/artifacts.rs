//! Artifacts named by an entry's `uri` + `sha256`: downloaded into
//! `<cache dir>/artifacts/<sha256>/<file name>`, digest-checked, and refused when the file name
//! taken from the URI would leave that directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cache::ArtifactState;
use crate::manifest::Manifest;

/// The file name an artifact is stored under: the URI's last path segment, percent-decoded,
/// which must be a plain name.
pub fn artifact_path(cache_dir: &Path, uri: &str, sha256: &str) -> Result<PathBuf, String> {
    let path_part = uri
        .split(['?', '#'])
        .next()
        .unwrap_or(uri)
        .splitn(4, '/')
        .nth(3)
        .unwrap_or("");
    let raw = path_part.rsplit('/').next().unwrap_or("");
    let name =
        percent_decode(raw).ok_or_else(|| format!("`{raw}` is not valid percent-encoding"))?;
    let mut comps = Path::new(&name).components();
    let plain = matches!(
        (comps.next(), comps.next()),
        (Some(Component::Normal(_)), None)
    );
    if name.is_empty() || !plain || name.contains('\0') || name.contains('\\') {
        return Err(format!(
            "artifact name `{name}` from {uri} would leave the cache directory; refused"
        ));
    }
    let base = cache_dir
        .join("artifacts")
        .join(sha256.to_ascii_lowercase());
    let full = base.join(&name);
    if !full.starts_with(&base) {
        return Err(format!(
            "artifact name `{name}` escapes the cache directory; refused"
        ));
    }
    Ok(full)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ensures every artifact of the manifest is present and verified; returns the state by sha256.
pub async fn sync_all(
    fetcher: &super::Fetcher,
    cache_dir: &Path,
    m: &Manifest,
) -> BTreeMap<String, ArtifactState> {
    let mut out = BTreeMap::new();
    for e in &m.entries {
        let (Some(uri), Some(sha)) = (&e.uri, &e.sha256) else {
            continue;
        };
        let sha = sha.to_ascii_lowercase();
        if out.contains_key(&sha) {
            continue;
        }
        let state = match sync_one(fetcher, cache_dir, uri, &sha).await {
            Ok(path) => ArtifactState {
                ok: true,
                path: Some(path),
                error: None,
            },
            Err(error) => {
                tracing::warn!(oneiric_event = "artifact_failed", oneiric_key = %e.key, "artifact {uri}: {error}");
                ArtifactState {
                    ok: false,
                    path: None,
                    error: Some(error),
                }
            }
        };
        out.insert(sha, state);
    }
    out
}

/// Artifacts obey the manifest's rules: `allow_http`, the same redirect checks, the body
/// limit; the auth header is not sent (it is for the manifest's origin).
async fn sync_one(
    fetcher: &super::Fetcher,
    cache_dir: &Path,
    uri: &str,
    sha: &str,
) -> Result<PathBuf, String> {
    let path = artifact_path(cache_dir, uri, sha)?;
    if let Ok(existing) = crate::fsutil::read_own_file(&path, fetcher.settings.max_body_bytes) {
        if digest_hex(&existing) == sha {
            return Ok(path);
        }
    }
    fetcher.check_scheme(uri)?;
    let message = |e: super::Attempt| match e {
        super::Attempt::Retry(s)
        | super::Attempt::Busy(s)
        | super::Attempt::Fatal(s)
        | super::Attempt::Refused(s) => s,
    };
    let resp = fetcher.get(uri, &[], false).await.map_err(message)?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let bytes = super::read_limited(resp, fetcher.settings.max_body_bytes)
        .await
        .map_err(message)?;
    let got = digest_hex(&bytes);
    if got != sha {
        return Err(format!("sha256 mismatch: expected {sha}, got {got}"));
    }
    if let Some(dir) = path.parent() {
        crate::fsutil::create_dir_owned(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    crate::fsutil::write_atomic(&path, &bytes, 0o640)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_cache_are_refused() {
        let d = Path::new("/var/cache/oneiric");
        let sha = "ab".repeat(32);
        assert_eq!(
            artifact_path(d, "https://x/releases/redis.whl", &sha).unwrap(),
            d.join("artifacts").join(&sha).join("redis.whl")
        );
        for bad in [
            "https://x/a/..%2F..%2Fetc%2Fpasswd",
            "https://x/a/%2Fetc%2Fpasswd",
            "https://x/a/..",
            "https://x/",
            "https://x/a/%00",
            "https://x/a/%zz",
        ] {
            assert!(artifact_path(d, bad, &sha).is_err(), "{bad}");
        }
    }
}
