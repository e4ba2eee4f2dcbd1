//! Rollback protection: per URL, the newest manifest ever accepted, kept in the *state*
//! directory (`remote-highwater.json`), not the cache, so that deleting the cache (or a
//! package purge of it) does not reopen the door to an older, validly signed manifest.
//!
//! Order: `serial` first (the signer's release counter, covered by the signature), then
//! `signed_at`. A manifest older than the mark is refused; one with the mark's serial (or,
//! without serials, its `signed_at`) must be the very same signed content. The mark is written
//! (and synced) before the fetched body replaces the cached copy, so a crash in between leaves
//! a mark at least as new as the copy: never a way back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::Header;

pub const FILE: &str = "remote-highwater.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mark {
    pub serial: Option<u64>,
    /// Unix seconds of `signed_at`.
    pub signed_at: Option<i64>,
    pub signature_digest: Option<String>,
    /// Unix seconds this host accepted it.
    pub accepted_at: u64,
}

impl Mark {
    pub fn of(h: &Header, now: u64) -> Self {
        Mark {
            serial: h.serial,
            signed_at: h.signed_at.map(|t| t.unix_timestamp()),
            signature_digest: h.signature_digest.clone(),
            accepted_at: now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HighWaterError {
    #[error("{path}: cannot read the rollback high-water marks: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: the rollback high-water marks are corrupt ({message}); refusing remote manifests until `oneiric remote-reset-rollback --all` says to start over"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: cannot write the rollback high-water marks: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Every URL's mark.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HighWater {
    pub sources: BTreeMap<String, Mark>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl HighWater {
    /// The marks on disk; none yet is an empty set. A corrupt file is an error, never "no
    /// marks": that would be exactly the reset an attacker wants.
    pub fn load(state_dir: &Path) -> Result<Self, HighWaterError> {
        let path = path(state_dir);
        let text = match crate::fsutil::read_own_text(&path, 16 * 1024 * 1024) {
            Ok(t) => t,
            Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(crate::fsutil::ReadError::Io(source)) => {
                return Err(HighWaterError::Read { path, source });
            }
            Err(e) => {
                return Err(HighWaterError::Corrupt {
                    path,
                    message: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| HighWaterError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), HighWaterError> {
        let path = path(state_dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| HighWaterError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        crate::fsutil::create_dir_owned(state_dir)
            .and_then(|()| crate::fsutil::write_atomic(&path, &bytes, 0o640))
            .map_err(|source| HighWaterError::Write { path, source })
    }

    /// Whether `h` may replace what `url` served so far. `Err` is the refusal's reason.
    pub fn check(&self, url: &str, h: &Header) -> Result<(), String> {
        let Some(mark) = self.sources.get(url) else {
            return Ok(());
        };
        check_against(mark, h)
    }
}

/// The ordering rule, on its own for the tests.
pub fn check_against(mark: &Mark, h: &Header) -> Result<(), String> {
    let signed_at = h.signed_at.map(|t| t.unix_timestamp());
    let same_content =
        mark.signature_digest.is_some() && mark.signature_digest == h.signature_digest;
    let describe = |serial: Option<u64>, at: Option<i64>| {
        let at = at
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .map(crate::text::fmt_time)
            .unwrap_or_else(|| "no signed_at".into());
        match serial {
            Some(n) => format!("serial {n}, {at}"),
            None => format!("no serial, {at}"),
        }
    };
    let older = || {
        Err(format!(
            "rollback refused: the manifest ({}) is older than the newest one this host accepted ({}); `oneiric remote-reset-rollback` forgets that mark",
            describe(h.serial, signed_at),
            describe(mark.serial, mark.signed_at)
        ))
    };
    let same_but_different = |what: String| {
        Err(format!(
            "rollback refused: {what} as the manifest this host accepted, but different signed content (a new release needs a higher serial)"
        ))
    };
    match (mark.serial, h.serial) {
        (Some(m), Some(n)) if n > m => Ok(()),
        (Some(m), Some(n)) if n < m => older(),
        (Some(m), Some(_)) => {
            if same_content {
                Ok(())
            } else {
                same_but_different(format!("the same serial {m}"))
            }
        }
        // A serial once seen is never given up: a manifest without one is older.
        (Some(_), None) => older(),
        (None, _) => match (mark.signed_at, signed_at) {
            (Some(m), Some(n)) if n > m => Ok(()),
            (Some(m), Some(n)) if n < m => older(),
            (Some(_), Some(_)) => {
                if same_content || h.serial.is_some() {
                    Ok(())
                } else {
                    same_but_different("the same signed_at".into())
                }
            }
            (Some(_), None) => older(),
            // Nothing to order by: the mark was made without signed_at.
            (None, _) => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(serial: Option<u64>, at: Option<i64>, digest: &str) -> Header {
        Header {
            serial,
            signed_at: at.map(|s| time::OffsetDateTime::from_unix_timestamp(s).unwrap()),
            expires_at: None,
            signature_digest: Some(digest.into()),
        }
    }

    #[test]
    fn ordering_by_serial_then_signed_at() {
        let mark = Mark::of(&header(Some(5), Some(1000), "a"), 0);
        assert!(check_against(&mark, &header(Some(6), Some(900), "b")).is_ok());
        assert!(check_against(&mark, &header(Some(5), Some(1000), "a")).is_ok());
        let e = check_against(&mark, &header(Some(4), Some(2000), "c")).unwrap_err();
        assert!(e.contains("older") && e.contains("serial 5"), "{e}");
        let e = check_against(&mark, &header(Some(5), Some(2000), "c")).unwrap_err();
        assert!(e.contains("same serial 5"), "{e}");
        assert!(check_against(&mark, &header(None, Some(2000), "c")).is_err());

        let mark = Mark::of(&header(None, Some(1000), "a"), 0);
        assert!(check_against(&mark, &header(None, Some(1001), "b")).is_ok());
        assert!(check_against(&mark, &header(None, Some(999), "b")).is_err());
        assert!(check_against(&mark, &header(None, Some(1000), "b")).is_err());
        assert!(check_against(&mark, &header(None, Some(1000), "a")).is_ok());
        assert!(check_against(&mark, &header(Some(1), Some(1000), "b")).is_ok());
        assert!(check_against(&mark, &header(None, None, "b")).is_err());
    }

    #[test]
    fn marks_survive_a_reload_from_disk_and_corruption_is_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mut hw = HighWater::load(dir.path()).unwrap();
        assert!(hw.sources.is_empty());
        hw.sources.insert(
            "https://x/m".into(),
            Mark::of(&header(Some(3), None, "a"), 7),
        );
        hw.save(dir.path()).unwrap();
        let back = HighWater::load(dir.path()).unwrap();
        assert!(
            back.check("https://x/m", &header(Some(2), None, "z"))
                .is_err()
        );
        std::fs::write(path(dir.path()), b"{ not json").unwrap();
        assert!(matches!(
            HighWater::load(dir.path()),
            Err(HighWaterError::Corrupt { .. })
        ));
    }
}
