//! The served state saved in the state directory (`served_snapshot.json`), so that the next
//! process of the service answers from it at once instead of after its first load.
//!
//! The file is one JSON line of header (format, version, inputs key), then the body: the
//! manifests' reports, warnings, and every candidate in registration order. Selections are
//! not saved: they come from the settings and the operator pins current at restore, so a
//! `swap` made while the service was down is honoured. Whether the inputs are still the same
//! is the engine's judgement (`engine::check_inputs`); this module reads and writes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{ManifestReport, Unavailable};
use crate::fsutil::ReadError;
use crate::resolver::Candidate;
use crate::served::Served;

pub const FILE_NAME: &str = "served_snapshot.json";

/// Bumped when the body's shape changes; a file of another format is not read.
const FORMAT: u32 = 1;

/// A snapshot of 100 000 candidates is about 40 MB; this bounds what a corrupted or planted
/// file can make the service allocate.
const MAX_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("no saved state at {}", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{}:{line}:{column}: not a saved state: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: format {found}, this oneiric reads format {FORMAT}", path.display())]
    Format { path: PathBuf, found: u32 },
    #[error("{}: saved by oneiric {saved}; this is {}", path.display(), env!("CARGO_PKG_VERSION"))]
    Version { path: PathBuf, saved: String },
    #[error(
        "{}: the settings, stack order, manifest list or trust policy changed since it was saved",
        path.display()
    )]
    Inputs { path: PathBuf },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Head<S> {
    format: u32,
    version: S,
    inputs_key: S,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    saved_at_unix: u64,
    manifests: &'a [ManifestReport],
    warnings: &'a [String],
    demo: bool,
    unavailable: &'a [Unavailable],
    candidates: Vec<&'a Candidate>,
}

/// A saved state, read back.
#[derive(Debug, Deserialize)]
pub struct Saved {
    pub saved_at_unix: u64,
    pub manifests: Vec<ManifestReport>,
    pub warnings: Vec<String>,
    pub demo: bool,
    pub unavailable: Vec<Unavailable>,
    /// In registration order, each with its `seq`.
    pub candidates: Vec<Candidate>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Writes `served` (crash-safe: the previous file or this one, never half of either),
/// streamed to the file rather than built in memory.
pub fn save(state_dir: &Path, inputs_key: &str, served: &Served) -> Result<(), PersistError> {
    let path = path(state_dir);
    let head = Head {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION"),
        inputs_key,
    };
    let body = BodyRef {
        saved_at_unix: crate::served::unix_now(),
        manifests: &served.manifests,
        warnings: &served.warnings,
        demo: served.demo,
        unavailable: &served.unavailable,
        candidates: served.snapshot.candidates_in_order(),
    };
    crate::fsutil::write_atomic_with(&path, 0o640, |w| {
        use std::io::Write;
        serde_json::to_writer(&mut *w, &head)?;
        w.write_all(b"\n")?;
        serde_json::to_writer(&mut *w, &body)?;
        w.write_all(b"\n")
    })
    .map_err(|source| PersistError::Write { path, source })
}

/// What the pre-start check needs of a saved state: the candidates are skipped, not built.
#[derive(Debug, Deserialize)]
pub struct SavedReports {
    pub saved_at_unix: u64,
    pub manifests: Vec<ManifestReport>,
    pub unavailable: Vec<Unavailable>,
}

/// Reads the saved state if it was saved by this version under `inputs_key`; the body is
/// parsed only then.
pub fn load(state_dir: &Path, inputs_key: &str) -> Result<Saved, PersistError> {
    read(state_dir, inputs_key)
}

/// [`load`] without the candidates.
pub fn load_reports(state_dir: &Path, inputs_key: &str) -> Result<SavedReports, PersistError> {
    read(state_dir, inputs_key)
}

fn read<T: serde::de::DeserializeOwned>(
    state_dir: &Path,
    inputs_key: &str,
) -> Result<T, PersistError> {
    let path = path(state_dir);
    let bytes = match crate::fsutil::read_own_file(&path, MAX_BYTES) {
        Ok(b) => b,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PersistError::Missing { path });
        }
        Err(source) => return Err(PersistError::Unreadable { path, source }),
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    let (head, body) = bytes.split_at(split);
    // `body` keeps the header's newline, so its line numbers are the file's.
    let corrupt = |e: serde_json::Error| PersistError::Corrupt {
        path: path.clone(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let head: Head<String> = serde_json::from_slice(head).map_err(corrupt)?;
    if head.format != FORMAT {
        return Err(PersistError::Format {
            path,
            found: head.format,
        });
    }
    if head.version != env!("CARGO_PKG_VERSION") {
        return Err(PersistError::Version {
            path,
            saved: head.version,
        });
    }
    if head.inputs_key != inputs_key {
        return Err(PersistError::Inputs { path });
    }
    serde_json::from_slice(body).map_err(corrupt)
}

/// Removes the saved state (a load it described failed at start: it must not be served again).
pub fn remove(state_dir: &Path) {
    let _ = std::fs::remove_file(path(state_dir));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::{PriorityOrigin, Registry, Source};
    use std::sync::Arc;

    fn candidate(key: &str, provider: &str, priority: i64) -> Candidate {
        Candidate {
            domain: crate::domain::Domain::Adapter,
            key: key.into(),
            provider: provider.into(),
            factory: Some("f".into()),
            priority,
            priority_origin: PriorityOrigin::Explicit,
            stack_level: None,
            capabilities: vec!["x".into()],
            source: Source::RemoteManifest,
            origin: "m.yaml".into(),
            layer: "default".into(),
            seq: 0,
            health: None,
            version: None,
            metadata: Default::default(),
        }
    }

    fn served() -> Served {
        let mut r = Registry::new();
        r.register(candidate("cache", "redis", 5));
        r.register(candidate("cache", "memory", 5));
        r.register(candidate("queue", "nats", 1));
        let source = crate::engine::SettingsSource {
            path: "/nonexistent/oneiric".into(),
            explicit: false,
        };
        let settings =
            crate::engine::load_settings(&source, &crate::config::Env::default()).unwrap();
        Served {
            settings,
            manifests: Vec::new(),
            snapshot: Arc::new(r.build(&Default::default())),
            warnings: vec!["w".into()],
            demo: false,
            unavailable: Vec::new(),
            restored_from: None,
            generation: 3,
            loaded_at: std::time::SystemTime::now(),
            status_fixed: Default::default(),
        }
    }

    #[test]
    fn round_trip_keeps_registration_order_and_ranking() {
        let d = tempfile::tempdir().unwrap();
        let s = served();
        save(d.path(), "k1", &s).unwrap();
        let back = load(d.path(), "k1").unwrap();
        assert_eq!(back.candidates.len(), 3);
        assert_eq!(back.warnings, vec!["w".to_string()]);
        let snap = crate::resolver::Snapshot::from_registered(back.candidates, &Default::default());
        // A full tie goes to the later registration, as in the original.
        assert_eq!(
            snap.resolve(crate::domain::Domain::Adapter, "cache")
                .unwrap()
                .provider,
            "memory"
        );
        assert_eq!(
            s.snapshot
                .resolve(crate::domain::Domain::Adapter, "cache")
                .unwrap()
                .provider,
            "memory"
        );
        assert_eq!(snap.key_count(), 2);
    }

    #[test]
    fn another_key_version_or_a_damaged_file_is_refused_with_its_reason() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(d.path(), "k"),
            Err(PersistError::Missing { .. })
        ));
        save(d.path(), "k1", &served()).unwrap();
        assert!(matches!(
            load(d.path(), "k2"),
            Err(PersistError::Inputs { .. })
        ));
        let p = path(d.path());
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace(env!("CARGO_PKG_VERSION"), "0.0.0-old")).unwrap();
        assert!(matches!(
            load(d.path(), "k1"),
            Err(PersistError::Version { .. })
        ));
        std::fs::write(&p, text.replace("\"format\":1", "\"format\":9")).unwrap();
        assert!(matches!(
            load(d.path(), "k1"),
            Err(PersistError::Format { found: 9, .. })
        ));
        let cut = &text[..text.len() - 20];
        std::fs::write(&p, cut).unwrap();
        match load(d.path(), "k1") {
            Err(e @ PersistError::Corrupt { line: 2, .. }) => {
                assert!(e.to_string().contains("served_snapshot.json:2:"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        // A FIFO planted in its place does not hang the reader.
        std::fs::remove_file(&p).unwrap();
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            load(d.path(), "k1"),
            Err(PersistError::Unreadable { .. })
        ));
    }
}
