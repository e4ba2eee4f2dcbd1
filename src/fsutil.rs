//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.
//! A reader (or a restart after `kill -9`) sees the old content or the new, never half of it.
//! Writes and reads in the service's own directories never follow a link someone planted
//! there: the directory is opened without following its last component, the file is created
//! exclusively relative to that descriptor, and reads refuse links, FIFOs and devices.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
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
    #[error("{what}, not a regular file")]
    NotRegular { what: &'static str },
}

/// Reads a text file with a size limit, reporting non-UTF-8 content by offset. A FIFO or
/// device in its place is refused, never waited on.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    utf8(read_regular(path, limit, 0)?)
}

/// [`ReadError::NotRegular`] for an error type that carries an `io::Error`.
pub fn not_regular(what: &'static str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file"),
    )
}

fn utf8(bytes: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Opens without blocking (a FIFO would wait for a writer), checks the file is regular and
/// within the limit, then reads at most one byte past it.
fn read_regular(path: &Path, limit: u64, flags: libc::c_int) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | flags)
        .open(path)
        .map_err(|e| {
            if flags & libc::O_NOFOLLOW != 0 && e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    e.kind(),
                    "a symbolic link, which is not followed in the service's directories",
                )
            } else {
                e
            }
        })?;
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
        return Err(ReadError::NotRegular { what });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, mode, |f| f.write_all(bytes))
}

/// [`write_atomic`] for content written in pieces (a large document serialised straight to
/// the file, never whole in memory). The directory is opened without following a link in its
/// place, and the temporary name is random and created exclusively relative to it, without
/// following a link: whoever else can write the directory cannot make this write land anywhere
/// but in a file it creates there.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "names no file"))?;
    let dir = open_dir_no_link(parent_dir(path))?;
    let tmp = c_name(OsStr::new(&format!(
        ".{}.tmp.{:016x}",
        name.to_string_lossy(),
        fastrand::u64(..)
    )))?;
    let target = c_name(name)?;
    // SAFETY: `dir` is an open descriptor and `tmp` a NUL-terminated name; the descriptor
    // returned is owned by the File below and nowhere else.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is not owned by anything else.
    let file = unsafe { File::from_raw_fd(fd) };
    let result = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
        fill(&mut w)?;
        let f = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        hand_to_dir_owner(&f, &dir)?;
        f.sync_all()?;
        drop(f);
        // SAFETY: both names are NUL-terminated and relative to the same open descriptor.
        let renamed = unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                dir.as_raw_fd(),
                target.as_ptr(),
            )
        };
        if renamed != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The rename is durable only once the directory entry is.
        dir.sync_all()
    })();
    if result.is_err() {
        // SAFETY: as above; removing our own temporary name, nothing else.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    result
}

/// A directory to create files in, opened without following a link put in its place.
fn open_dir_no_link(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{} is a symbolic link; files are not written through links in the \
                         service's directories (name the directory the link points to)",
                        dir.display()
                    ),
                )
            } else {
                e
            }
        })
}

fn c_name(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "file name contains NUL")
    })
}

/// [`match_dir_owner`] for a file being written, by descriptor.
fn hand_to_dir_owner(file: &File, dir: &File) -> std::io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    match owner_to_give(&dir.metadata()?, &file.metadata()?) {
        Some((uid, gid)) => std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The directory's owner and group, when the file has other ones.
fn owner_to_give(dir: &fs::Metadata, file: &fs::Metadata) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    (file.uid() != dir.uid() || file.gid() != dir.gid()).then(|| (dir.uid(), dir.gid()))
}

/// Reads a file the service wrote into one of its own directories, as bytes: not through a
/// symlink, never blocking on a FIFO or device put in its place, only a regular file, and at
/// most `limit` bytes.
pub fn read_own_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    read_regular(path, limit, libc::O_NOFOLLOW)
}

/// [`read_own_file`] for a text file.
pub fn read_own_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    utf8(read_own_file(path, limit)?)
}

/// When root creates a file in a directory of another owner (root's CLI becomes the owner of
/// the service's directories first, `as_owner`; this covers directories it did not), hand it
/// to the directory's owner, so that the service can still read and replace it. A no-op for
/// anyone else.
pub fn match_dir_owner(path: &Path) -> std::io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let dir = fs::metadata(parent_dir(path))?;
    match fs::symlink_metadata(path) {
        Ok(m) => match owner_to_give(&dir, &m) {
            Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
            None => Ok(()),
        },
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
            Err(ReadError::TooLarge { size: 3, limit: 2 })
        ));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(read_own_file(&link, 10), Err(ReadError::Io(_))));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_own_file(&fifo, 10),
            Err(ReadError::NotRegular { what: "a FIFO" })
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
