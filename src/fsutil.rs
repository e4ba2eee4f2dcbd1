//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.
//! A reader (or a restart after `kill -9`) sees the old content or the new, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The directory holding `path`: a bare file name has the empty path as parent, which is the
/// current directory.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Why a text file could not be read (the caller names the file in its own error).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("{size} bytes is more than the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
}

/// Reads a text file with a size limit, reporting non-UTF-8 content by offset.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    use std::io::Read;
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    // One byte past the limit: an oversized file is detected without reading it whole.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(limit + 1);
        return Err(ReadError::TooLarge { size, limit });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        match_dir_owner(&tmp)?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// When root (an admin running the CLI offline) creates a file in the service's directories,
/// hand it to the directory's owner, so that the service (user `oneiric`) can still read and
/// replace it. A no-op for anyone else.
pub fn match_dir_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let meta = fs::metadata(parent_dir(path))?;
    match fs::symlink_metadata(path) {
        Ok(m) if m.uid() != meta.uid() || m.gid() != meta.gid() => {
            std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `create_dir_all`, with each directory it creates handed to its parent's owner (see
/// [`match_dir_owner`]).
pub fn create_dir_owned(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_owned(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => match_dir_owner(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a directory accepts new files (what the service needs of its state and cache dirs).
pub fn check_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".oneiric-write-check.{}", std::process::id()));
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{}: not writable: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        write_atomic(&p, b"one", 0o640).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(check_writable(d.path()).is_ok());
        assert!(check_writable(&d.path().join("missing")).is_err());
    }

    #[test]
    fn root_hands_new_files_and_dirs_to_the_dir_owner() {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // Only root changes owners; CI runs as root.
        }
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(d.path(), Some(65534), Some(65534)).unwrap();
        let p = d.path().join("status.json");
        write_atomic(&p, b"{}", 0o640).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().uid(), 65534);
        let sub = d.path().join("remote/abc");
        create_dir_owned(&sub).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().uid(), 65534);
        assert_eq!(fs::metadata(d.path().join("remote")).unwrap().gid(), 65534);
    }
}
