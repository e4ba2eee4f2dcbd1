//! Listening sockets handed over by systemd (`oneiric.socket`), by `sd_listen_fds(3)`'s
//! protocol: `LISTEN_PID` names the process they are for, `LISTEN_FDS` counts them from fd 3,
//! `LISTEN_FDNAMES` names them (`FileDescriptorName=`). systemd keeps these sockets open while
//! the service restarts, crashes or is upgraded, so clients wait in the kernel's backlog
//! instead of being refused.
//!
//! Names `http`, `control` and `admin` (`FileDescriptorName=`) say what a socket serves: `admin`
//! is `oneiric-admin.socket`'s, the administrators' socket, which only systemd can create
//! (its group is `oneiric-admin`), so it is never bound here nor stored. A socket with
//! another name (packaging/oneiric.socket passes both under its unit name) fills a slot no name
//! claimed, by its family. [`STORED_HTTP`] and [`STORED_CONTROL`] are the service's own
//! listeners, handed back from systemd's fd store (`FileDescriptorStoreMax=`): they fill a slot
//! only when no socket unit did, and the caller may replace them when the settings moved.
//! Anything left over is closed and logged: a socket unit edited to pass more than we serve
//! must not leave listeners nobody accepts on.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::config::Env;

/// `SD_LISTEN_FDS_START`.
const FIRST_FD: RawFd = 3;
/// More than any socket unit of ours passes; a larger count is a corrupt environment, and
/// taking ownership of arbitrary descriptors would close files that are not sockets.
const MAX_FDS: usize = 64;
/// The fd store names of the listeners the service bound itself (`FDNAME=`).
pub const STORED_HTTP: &str = "stored-http";
pub const STORED_CONTROL: &str = "stored-control";

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a count of passed sockets (0..={MAX_FDS})")]
    BadCount(String),
    #[error("LISTEN_FDNAMES names {names} socket(s) but LISTEN_FDS={fds}")]
    NameCount { names: usize, fds: usize },
    #[error("passed socket {name:?} (fd {fd}) is not a listening stream socket ({detail})")]
    NotListening {
        name: String,
        fd: RawFd,
        detail: &'static str,
    },
    #[error("passed socket {name:?} (fd {fd}): {source}")]
    Io {
        name: String,
        fd: RawFd,
        #[source]
        source: std::io::Error,
    },
    #[error("two passed sockets serve {0}; oneiric.socket must pass one of each")]
    Duplicate(&'static str),
    #[error(
        "oneiric.socket listens on {passed} but the settings say http.address:http.port = {configured}; \
         change ListenStream= (systemctl edit oneiric.socket) or the settings so that they agree"
    )]
    HttpMismatch {
        passed: SocketAddr,
        configured: String,
    },
    #[error(
        "oneiric.socket passes an HTTP socket ({passed}) but http.enabled is false; \
         remove its ListenStream= for HTTP or enable http"
    )]
    HttpDisabled { passed: SocketAddr },
    #[error(
        "{unit}'s socket is {passed}, but the service's is {expected} \
         (the CLI looks there); make ListenStream= and RUNTIME_DIRECTORY agree"
    )]
    PathMismatch {
        unit: &'static str,
        passed: String,
        expected: PathBuf,
    },
}

/// The sockets systemd passed, sorted by what they serve.
#[derive(Debug, Default)]
pub struct Inherited {
    pub http: Option<TcpListener>,
    pub control: Option<UnixListener>,
    /// The administrators' socket (`FileDescriptorName=admin`).
    pub admin: Option<UnixListener>,
    /// Whether `http` / `control` came from the fd store rather than a socket unit.
    pub http_stored: bool,
    pub control_stored: bool,
    /// Names of passed sockets that were not ours and were closed.
    pub closed: Vec<String>,
    /// Stored listeners a socket unit's took the place of: to be removed from the store.
    pub superseded: Vec<&'static str>,
}

/// Takes the sockets passed to this process, if any. `Ok(None)` when there are none (a
/// manual start, a test, `cargo run`): the caller binds its own.
pub fn take(env: &Env) -> Result<Option<Inherited>, ActivationError> {
    // LISTEN_PID guards against a variable inherited by a child that was not meant to have
    // the sockets (sd_listen_fds does the same).
    match env.get("LISTEN_PID").map(str::parse::<u32>) {
        Some(Ok(pid)) if pid == std::process::id() => {}
        _ => return Ok(None),
    }
    let Some(raw) = env.get("LISTEN_FDS") else {
        return Ok(None);
    };
    let count: usize = raw
        .parse()
        .ok()
        .filter(|n| *n <= MAX_FDS)
        .ok_or_else(|| ActivationError::BadCount(raw.to_string()))?;
    let names: Vec<String> = match env.get("LISTEN_FDNAMES") {
        Some(n) => n.split(':').map(str::to_string).collect(),
        None => vec![String::new(); count],
    };
    if names.len() != count {
        return Err(ActivationError::NameCount {
            names: names.len(),
            fds: count,
        });
    }
    let mut fds = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let fd = FIRST_FD + i as RawFd;
        // Checked before ownership is taken: an fd number that is not open must not be
        // wrapped (its drop would close whatever opens there later).
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(ActivationError::Io {
                name,
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: fd is open (checked above), was passed to this process for it to own, and
        // nothing else in the process refers to it.
        fds.push((name, unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    sort(fds).map(Some)
}

fn sort(fds: Vec<(String, OwnedFd)>) -> Result<Inherited, ActivationError> {
    let mut out = Inherited::default();
    // Explicitly named sockets first, so that an unnamed one (systemd names it after the
    // socket unit when FileDescriptorName= is absent) only fills a slot no name claimed.
    let mut unnamed = Vec::new();
    let mut stored = Vec::new();
    for (name, fd) in fds {
        let raw = fd.as_raw_fd();
        // systemd does not set FD_CLOEXEC on what it passes; a probe's child must not
        // inherit the listeners.
        set_cloexec(raw).map_err(|source| ActivationError::Io {
            name: name.clone(),
            fd: raw,
            source,
        })?;
        let family = socket_family(&name, &fd)?;
        let tcp = matches!(family, libc::AF_INET | libc::AF_INET6);
        let unix = family == libc::AF_UNIX;
        let fits = match name.as_str() {
            "http" | STORED_HTTP => tcp,
            "control" | "admin" | STORED_CONTROL => unix,
            _ => true,
        };
        if !fits {
            return Err(ActivationError::NotListening {
                name,
                fd: raw,
                detail: "wrong address family for its name",
            });
        }
        match name.as_str() {
            "http" if out.http.is_some() => return Err(ActivationError::Duplicate("http")),
            "control" if out.control.is_some() => {
                return Err(ActivationError::Duplicate("control"));
            }
            "admin" if out.admin.is_some() => return Err(ActivationError::Duplicate("admin")),
            "http" => out.http = Some(listener(&name, fd)?),
            "control" => out.control = Some(listener(&name, fd)?),
            "admin" => out.admin = Some(listener(&name, fd)?),
            STORED_HTTP => stored.push((STORED_HTTP, fd)),
            STORED_CONTROL => stored.push((STORED_CONTROL, fd)),
            _ => unnamed.push((name, fd, tcp, unix)),
        }
    }
    for (name, fd, tcp, unix) in unnamed {
        if tcp && out.http.is_none() {
            out.http = Some(listener(&name, fd)?);
        } else if unix && out.control.is_none() {
            out.control = Some(listener(&name, fd)?);
        } else {
            drop(fd);
            out.closed.push(name);
        }
    }
    // Two entries under one name cannot come from our own FDSTORE calls (each name is
    // stored once); the second is superseded like any other loser.
    for (name, fd) in stored {
        if name == STORED_HTTP && out.http.is_none() {
            out.http = Some(listener(name, fd)?);
            out.http_stored = true;
        } else if name == STORED_CONTROL && out.control.is_none() {
            out.control = Some(listener(name, fd)?);
            out.control_stored = true;
        } else {
            drop(fd);
            out.superseded.push(name);
        }
    }
    Ok(out)
}

/// A passed socket as a non-blocking listener of the type its family says.
fn listener<T: From<OwnedFd> + AsRawFd + SetNonblocking>(
    name: &str,
    fd: OwnedFd,
) -> Result<T, ActivationError> {
    let raw = fd.as_raw_fd();
    let l = T::from(fd);
    l.nonblocking().map_err(|source| ActivationError::Io {
        name: name.to_string(),
        fd: raw,
        source,
    })?;
    Ok(l)
}

trait SetNonblocking {
    fn nonblocking(&self) -> std::io::Result<()>;
}

impl SetNonblocking for TcpListener {
    fn nonblocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(true)
    }
}

impl SetNonblocking for UnixListener {
    fn nonblocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(true)
    }
}

fn set_cloexec(fd: RawFd) -> std::io::Result<()> {
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid for the call and sized for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// The family of a listening stream socket, or why it is not one.
fn socket_family(name: &str, fd: &OwnedFd) -> Result<libc::c_int, ActivationError> {
    let raw = fd.as_raw_fd();
    let not = |detail| ActivationError::NotListening {
        name: name.to_string(),
        fd: raw,
        detail,
    };
    let ty = sockopt(raw, libc::SO_TYPE).map_err(|_| not("not a socket"))?;
    if ty != libc::SOCK_STREAM {
        return Err(not("not a stream socket; use ListenStream="));
    }
    if sockopt(raw, libc::SO_ACCEPTCONN).map_err(|_| not("not a socket"))? != 1 {
        return Err(not("not listening (Accept=no sockets only)"));
    }
    sockopt(raw, libc::SO_DOMAIN).map_err(|_| not("not a socket"))
}

/// Refuses a passed HTTP socket that does not listen where the settings say: the settings
/// are what `oneiric status`, the docs and the metrics target name, so a silent difference
/// would send clients to the wrong place.
pub fn check_http(
    passed: &TcpListener,
    enabled: bool,
    address: &str,
    port: u16,
) -> Result<(), ActivationError> {
    let passed_addr = passed.local_addr().map_err(|source| ActivationError::Io {
        name: "http".into(),
        fd: passed.as_raw_fd(),
        source,
    })?;
    if !enabled {
        return Err(ActivationError::HttpDisabled {
            passed: passed_addr,
        });
    }
    let configured = format!("{address}:{port}");
    let same = (address, port)
        .to_socket_addrs()
        .map(|mut addrs| addrs.any(|a| a == passed_addr))
        .unwrap_or(false);
    if same {
        Ok(())
    } else {
        Err(ActivationError::HttpMismatch {
            passed: passed_addr,
            configured,
        })
    }
}

/// Refuses a passed unix socket (of socket unit `unit`) at a path other than the one the CLI
/// connects to.
pub fn check_path(
    passed: &UnixListener,
    expected: &Path,
    unit: &'static str,
) -> Result<(), ActivationError> {
    let addr = passed.local_addr().map_err(|source| ActivationError::Io {
        name: unit.into(),
        fd: passed.as_raw_fd(),
        source,
    })?;
    match addr.as_pathname() {
        Some(p) if p == expected => Ok(()),
        other => Err(ActivationError::PathMismatch {
            unit,
            passed: other.map_or_else(|| "unnamed".to_string(), |p| p.display().to_string()),
            expected: expected.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned<T: Into<OwnedFd>>(t: T) -> OwnedFd {
        t.into()
    }

    /// A fresh directory of this test process and the control socket path in it.
    fn socket_dir(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let _ = std::fs::remove_file(&path);
        (dir, path)
    }

    #[test]
    fn sorts_by_name_and_family_and_closes_the_rest() {
        let (dir, path) = socket_dir("oneiric-act");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let extra = TcpListener::bind("127.0.0.1:0").unwrap();
        let unix = UnixListener::bind(&path).unwrap();
        let got = sort(vec![
            ("metrics".into(), owned(extra)),
            ("".into(), owned(unix)),
            ("http".into(), owned(tcp)),
        ])
        .unwrap();
        assert!(got.http.is_some());
        assert!(got.control.is_some());
        assert_eq!(got.closed, vec!["metrics".to_string()]);
        check_path(got.control.as_ref().unwrap(), &path, "oneiric.socket").unwrap();
        let err = check_path(
            got.control.as_ref().unwrap(),
            &dir.join("other"),
            "oneiric.socket",
        )
        .unwrap_err();
        assert!(err.to_string().contains("c.sock"), "{err}");
        assert!(got.admin.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_admin_socket_is_known_by_its_name_alone() {
        let (dir, path) = socket_dir("oneiric-act-adm");
        let admin_path = dir.join("admin.sock");
        let _ = std::fs::remove_file(&admin_path);
        let control = UnixListener::bind(&path).unwrap();
        let admin = UnixListener::bind(&admin_path).unwrap();
        let got = sort(vec![
            ("admin".into(), owned(admin)),
            ("oneiric.socket".into(), owned(control)),
        ])
        .unwrap();
        check_path(got.control.as_ref().unwrap(), &path, "oneiric.socket").unwrap();
        check_path(
            got.admin.as_ref().unwrap(),
            &admin_path,
            "oneiric-admin.socket",
        )
        .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(sort(vec![("admin".into(), owned(tcp))]).is_err());
        let a = UnixListener::bind(dir.join("a1.sock")).unwrap();
        let b = UnixListener::bind(dir.join("a2.sock")).unwrap();
        let err = sort(vec![("admin".into(), owned(a)), ("admin".into(), owned(b))]).unwrap_err();
        assert!(matches!(err, ActivationError::Duplicate("admin")), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stored_listeners_fill_only_what_no_socket_unit_passed() {
        let (dir, path) = socket_dir("oneiric-act-st");
        let unit_http = TcpListener::bind("127.0.0.1:0").unwrap();
        let unit_port = unit_http.local_addr().unwrap().port();
        let stored_http = TcpListener::bind("127.0.0.1:0").unwrap();
        let stored_control = UnixListener::bind(&path).unwrap();
        let got = sort(vec![
            (STORED_HTTP.into(), owned(stored_http)),
            (STORED_CONTROL.into(), owned(stored_control)),
            ("oneiric.socket".into(), owned(unit_http)),
        ])
        .unwrap();
        let http = got.http.as_ref().unwrap();
        assert_eq!(http.local_addr().unwrap().port(), unit_port);
        assert!(!got.http_stored);
        assert!(got.control_stored);
        assert_eq!(got.superseded, vec![STORED_HTTP]);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(sort(vec![(STORED_HTTP.into(), owned(udp))]).is_err());
        assert!(sort(vec![(STORED_CONTROL.into(), owned(tcp))]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_listening_stream() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = sort(vec![("http".into(), owned(udp))]).unwrap_err();
        assert!(err.to_string().contains("not a stream socket"), "{err}");
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = sort(vec![("http".into(), owned(file))]).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = sort(vec![("http".into(), owned(a)), ("http".into(), owned(b))]).unwrap_err();
        assert!(matches!(err, ActivationError::Duplicate("http")), "{err}");
    }

    #[test]
    fn http_must_match_the_settings() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        check_http(&l, true, "127.0.0.1", port).unwrap();
        let other = if port == 65535 { 1 } else { port + 1 };
        let err = check_http(&l, true, "127.0.0.1", other).unwrap_err();
        assert!(err.to_string().contains("ListenStream="), "{err}");
        let err = check_http(&l, false, "127.0.0.1", port).unwrap_err();
        assert!(matches!(err, ActivationError::HttpDisabled { .. }), "{err}");
    }

    #[test]
    fn ignores_sockets_meant_for_another_process() {
        let env = Env::from_pairs([("LISTEN_PID", "1"), ("LISTEN_FDS", "2")]);
        assert!(take(&env).unwrap().is_none());
        let env = Env::from_pairs([("LISTEN_FDS", "2")]);
        assert!(take(&env).unwrap().is_none());
        let me = std::process::id().to_string();
        let env = Env::from_pairs([("LISTEN_PID", me.as_str()), ("LISTEN_FDS", "x")]);
        assert!(matches!(take(&env), Err(ActivationError::BadCount(_))));
        let env = Env::from_pairs([
            ("LISTEN_PID", me.as_str()),
            ("LISTEN_FDS", "2"),
            ("LISTEN_FDNAMES", "http"),
        ]);
        assert!(matches!(
            take(&env),
            Err(ActivationError::NameCount { names: 1, fds: 2 })
        ));
    }
}
