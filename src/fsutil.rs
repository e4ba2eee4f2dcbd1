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

/// Why a file of the service's own directories was not read ([`read_own_file`]).
#[derive(Debug, thiserror::Error)]
pub enum OwnReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("{size} bytes is more than the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("{what}, not a regular file")]
    NotRegular { what: &'static str },
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
    write_atomic_with(path, mode, |f| f.write_all(bytes))
}

/// [`write_atomic`] for content written in pieces (a large document serialised straight to
/// the file, never whole in memory). The temporary name is random and created exclusively
/// without following a symlink: whoever else can write the directory cannot make this write
/// land anywhere but in a file it creates.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{:016x}", fastrand::u64(..)));
    let mut created = false;
    let result = (|| {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp)?;
        created = true;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        fill(&mut w)?;
        let f = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        f.sync_all()?;
        drop(f);
        match_dir_owner(&tmp)?;
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() && created {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a file the service wrote into one of its own directories, as bytes: not through a
/// symlink, never blocking on a FIFO or device put in its place, only a regular file, and at
/// most `limit` bytes.
pub fn read_own_file(path: &Path, limit: u64) -> Result<Vec<u8>, OwnReadError> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "a special file"
        };
        return Err(OwnReadError::NotRegular { what });
    }
    if meta.len() > limit {
        return Err(OwnReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(OwnReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
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
    fn own_files_are_read_only_when_regular_and_not_through_a_link() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        write_atomic_with(&p, 0o640, |w| w.write_all(b"abc")).unwrap();
        assert_eq!(read_own_file(&p, 3).unwrap(), b"abc");
        assert!(matches!(
            read_own_file(&p, 2),
            Err(OwnReadError::TooLarge { size: 3, limit: 2 })
        ));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(read_own_file(&link, 10), Err(OwnReadError::Io(_))));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_own_file(&fifo, 10),
            Err(OwnReadError::NotRegular { what: "a FIFO" })
        ));
        // A symlink planted at a temporary name cannot be written through: the name is
        // random and created exclusively.
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        for _ in 0..3 {
            write_atomic(&p, b"new", 0o640).unwrap();
        }
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&p).unwrap(), b"new");
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
