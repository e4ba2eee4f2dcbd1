//! Root's CLI acts on the service's directories as their owner.
//!
//! `/var/lib/oneiric` and `/var/cache/oneiric` belong to the service user. If root wrote or
//! read there as root, whoever controls that user (a compromised service) could plant links,
//! FIFOs and databases and make root's `swap`, `pause` or `remote-sync` write any file on the
//! host, or hang. So a command run as root that touches those directories first becomes their
//! owner — user, group, no other groups, for the rest of the process, which is short-lived —
//! and from then on the kernel's own permission checks bound what a planted link can reach:
//! exactly what the service user could reach anyway.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Whom the process acts as, once it switched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// The user's name when the user database has one (for messages only).
    pub name: Option<String>,
    /// The directory whose owner this is.
    pub dir: PathBuf,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "user {n} (uid {})", self.uid),
            None => write!(f, "uid {}", self.uid),
        }?;
        write!(f, ", the owner of {}", self.dir.display())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AsOwnerError {
    #[error("{}: cannot find its owner: {source}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to run as root: {} belongs to uid {first_uid} and {} to uid {second_uid}; \
         root acts on the service's directories only as their one owner. Give both to the \
         service user (chown -R oneiric:oneiric), or run the command as each owner \
         (sudo -u USER oneiric ...)",
        first.display(),
        second.display()
    )]
    TwoOwners {
        first: PathBuf,
        first_uid: u32,
        second: PathBuf,
        second_uid: u32,
    },
    #[error(
        "cannot act as {owner}: {call} failed: {source}; run the command as that user \
         (sudo -u {} oneiric ...)",
        owner.name.clone().unwrap_or_else(|| format!("'#{}'", owner.uid))
    )]
    Switch {
        owner: Owner,
        call: &'static str,
        #[source]
        source: std::io::Error,
    },
}

static ACTING: OnceLock<Owner> = OnceLock::new();

/// The owner this process switched to, if it did.
pub fn acting_as() -> Option<&'static Owner> {
    ACTING.get()
}

/// Run as root, becomes the one non-root owner of `dirs` (a directory that does not exist yet
/// counts as its nearest existing ancestor, where it would be created). Does nothing when not
/// root (also once switched), or when every directory belongs to root.
pub fn become_owner_of(dirs: &[&Path]) -> Result<(), AsOwnerError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    if let Some(owner) = owner_of(dirs)? {
        switch(&owner)?;
        ACTING.get_or_init(|| owner);
    }
    Ok(())
}

/// The one non-root owner of `dirs`, or `None` if all are root's.
pub fn owner_of(dirs: &[&Path]) -> Result<Option<Owner>, AsOwnerError> {
    let mut found: Option<Owner> = None;
    for dir in dirs {
        let (path, meta) = nearest_existing(dir)?;
        if meta.uid() == 0 {
            continue;
        }
        match &found {
            Some(o) if o.uid != meta.uid() => {
                return Err(AsOwnerError::TwoOwners {
                    first: o.dir.clone(),
                    first_uid: o.uid,
                    second: path,
                    second_uid: meta.uid(),
                });
            }
            Some(_) => {}
            None => {
                found = Some(Owner {
                    uid: meta.uid(),
                    gid: meta.gid(),
                    name: user_name(meta.uid()),
                    dir: path,
                });
            }
        }
    }
    Ok(found)
}

fn nearest_existing(dir: &Path) -> Result<(PathBuf, std::fs::Metadata), AsOwnerError> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) => return Ok((at.to_path_buf(), m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => at = Path::new("."),
            },
            Err(source) => {
                return Err(AsOwnerError::Inspect {
                    path: at.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Groups first (only root may change them), then the group ids, then the user ids: all three
/// of each, so nothing can switch back.
fn switch(owner: &Owner) -> Result<(), AsOwnerError> {
    let fail = |call| AsOwnerError::Switch {
        owner: owner.clone(),
        call,
        source: std::io::Error::last_os_error(),
    };
    let groups = [owner.gid as libc::gid_t];
    // SAFETY: a pointer to one valid gid and its count.
    if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
        return Err(fail("setgroups"));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresgid(owner.gid, owner.gid, owner.gid) } != 0 {
        return Err(fail("setresgid"));
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::setresuid(owner.uid, owner.uid, owner.uid) } != 0 {
        return Err(fail("setresuid"));
    }
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    let got = unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    if got != 0 || [r, e, s] != [owner.uid; 3] {
        return Err(AsOwnerError::Switch {
            owner: owner.clone(),
            call: "getresuid",
            source: std::io::Error::other("the user ids did not change"),
        });
    }
    Ok(())
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid out-value for getpwuid_r to fill.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s strings.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn the_owner_is_the_one_non_root_owner_and_missing_dirs_count_as_their_parent() {
        if !is_root() {
            eprintln!("SKIPPED: chown needs root (CI runs as root)");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let cache = d.path().join("cache");
        std::fs::create_dir(&state).unwrap();
        std::fs::create_dir(&cache).unwrap();
        assert_eq!(owner_of(&[&state, &cache]).unwrap(), None);
        std::os::unix::fs::chown(&state, Some(65534), Some(65533)).unwrap();
        let o = owner_of(&[&state, &cache, &state.join("not/yet")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.uid, o.gid, o.dir.as_path()),
            (65534, 65533, state.as_path())
        );
        std::os::unix::fs::chown(&cache, Some(65532), None).unwrap();
        let e = owner_of(&[&state, &cache]).unwrap_err().to_string();
        assert!(
            e.contains("uid 65534") && e.contains("uid 65532") && e.contains("sudo -u"),
            "{e}"
        );
    }
}
