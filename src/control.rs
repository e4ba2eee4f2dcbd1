//! The control protocol between the CLI and the running service: one JSON request and one JSON
//! response per connection, over the unix sockets of the runtime directory: `control.sock`
//! (mode 0660, root and group `oneiric`: reads, and changes by root or the service's user) and
//! `admin.sock` (held by `oneiric-admin.socket`, mode 0660 root:oneiric-admin: changes by whoever
//! the kernel let connect).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::Domain;
use crate::exit::Exit;

/// Requests are small; a peer sending more is cut off.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Reload,
    Swap {
        domain: Domain,
        key: String,
        provider: String,
        #[serde(default)]
        force: bool,
    },
    Unpin {
        domain: Domain,
        key: String,
    },
    Pause {
        domain: Domain,
        key: String,
        on: bool,
        #[serde(default)]
        note: Option<String>,
    },
    Drain {
        domain: Domain,
        key: String,
        on: bool,
        #[serde(default)]
        note: Option<String>,
    },
    Status,
}

/// What a request does to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads its state (`status`): anyone who can connect (the socket's mode decides).
    Read,
    /// Changes what it serves or how: root and the service's user.
    Change,
}

impl Request {
    pub fn access(&self) -> Access {
        match self {
            Request::Status => Access::Read,
            Request::Reload
            | Request::Swap { .. }
            | Request::Unpin { .. }
            | Request::Pause { .. }
            | Request::Drain { .. } => Access::Change,
        }
    }

    /// The operation's name, as the journal and the control log record it.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Reload => "reload",
            Request::Swap { .. } => "swap",
            Request::Unpin { .. } => "unpin",
            Request::Pause { .. } => "pause",
            Request::Drain { .. } => "drain",
            Request::Status => "status",
        }
    }

    /// `domain/key` for a request about one key.
    pub fn target(&self) -> Option<String> {
        match self {
            Request::Swap { domain, key, .. }
            | Request::Unpin { domain, key }
            | Request::Pause { domain, key, .. }
            | Request::Drain { domain, key, .. } => Some(format!("{domain}/{key}")),
            Request::Reload | Request::Status => None,
        }
    }
}

/// Which of the service's sockets a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `control.sock`: group `oneiric` may connect, so the peer's credentials decide.
    Control,
    /// `admin.sock`: only root and group `oneiric-admin` may connect (the socket unit's
    /// `SocketGroup=`/`SocketMode=`), so the kernel has decided already.
    Admin,
}

impl Via {
    pub fn socket_name(self) -> &'static str {
        match self {
            Via::Control => "control.sock",
            Via::Admin => "admin.sock",
        }
    }
}

/// Why a peer may change the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Root,
    /// The service's own user: it owns the state the request changes anyway.
    ServiceUser,
    /// A peer the kernel let connect to `admin.sock`: a member of group `oneiric-admin`.
    AdminGroup,
}

/// The rule for changes: root or the service's user on either socket; anyone on the admin
/// socket. Group membership is never judged here: under `PrivateUsers=yes` the service sees
/// every user but root and its own as 65534, so only the kernel, checking the socket file's
/// group on connect, can tell a member of `oneiric-admin` from anyone else.
pub fn change_authority(peer: &crate::peer::Peer, service_uid: u32, via: Via) -> Option<Authority> {
    if peer.uid == 0 {
        Some(Authority::Root)
    } else if peer.uid == service_uid && peer.uid != crate::peer::UNMAPPED {
        Some(Authority::ServiceUser)
    } else if via == Via::Admin {
        Some(Authority::AdminGroup)
    } else {
        None
    }
}

/// The sockets the CLI tries for a request, in order: a change goes to `admin.sock` first
/// (the one a member of `oneiric-admin` may change through), a read to `control.sock` first;
/// each falls back to the other when it cannot connect.
pub fn sockets_for(req: &Request, control: PathBuf, admin: PathBuf) -> [PathBuf; 2] {
    match req.access() {
        Access::Change => [admin, control],
        Access::Read => [control, admin],
    }
}

/// The service's answer. `outcome` is the exit code the CLI ends with, carried by name
/// (`"ok"`, `"invalid_config"`, ...): an outcome this CLI does not know is a protocol error,
/// never silently another code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub outcome: Exit,
    pub message: String,
    #[serde(default)]
    pub data: Value,
}

impl Response {
    pub fn ok(&self) -> bool {
        self.outcome == Exit::Ok
    }
}

/// Why the service could not set up its control socket.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("runtime directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another oneiric service is already listening on {0}")]
    InUse(String),
    #[error("control socket {path}: {source}")]
    Socket {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the control socket (mode 0660: root and the service's group), replacing a stale one
/// but never stealing a live service's.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, BindError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| BindError::Directory {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let socket_err = |source| BindError::Socket {
        path: shown.clone(),
        source,
    };
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(shown));
        }
        std::fs::remove_file(path).map_err(socket_err)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(socket_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(socket_err)?;
    listener.set_nonblocking(true).map_err(socket_err)?;
    Ok(listener)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No service is listening: the socket is absent or refuses connections.
    #[error("no running service at {0}")]
    NoService(String),
    /// The socket is there but this user may not connect (its mode and group).
    #[error("{path}: {source}")]
    Unreachable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: bad reply from service: {message}")]
    Protocol { path: String, message: String },
}

/// Sends one request and waits (up to `timeout`) for the answer.
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NoService(path));
        }
        Err(source) => return Err(ClientError::Unreachable { path, source }),
    };
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol {
        path: path.clone(),
        message: e.to_string(),
    })?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .take(1024 * 1024)
        .read_line(&mut reply)
        .map_err(io)?;
    serde_json::from_str(&reply).map_err(|e| ClientError::Protocol {
        path: path.clone(),
        message: if reply.is_empty() {
            "connection closed without a reply".into()
        } else {
            e.to_string()
        },
    })
}

/// Sends the request through the first of `sockets` this process can connect to. When none
/// can be reached: the first socket that exists but refused this user, else no service (at
/// any of them).
pub fn request_first(
    sockets: &[PathBuf],
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let mut unreachable = None;
    let mut absent = Vec::new();
    for socket in sockets {
        match request(socket, req, timeout) {
            Err(e @ ClientError::Unreachable { .. }) => {
                unreachable.get_or_insert(e);
            }
            Err(ClientError::NoService(path)) => absent.push(path),
            other => return other,
        }
    }
    Err(unreachable.unwrap_or_else(|| ClientError::NoService(absent.join(" or "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32) -> crate::peer::Peer {
        crate::peer::Peer {
            uid,
            gid: uid,
            pid: Some(7),
        }
    }

    #[test]
    fn on_the_control_socket_only_root_and_the_service_user_may_change() {
        let service = 990;
        let c = Via::Control;
        assert_eq!(
            change_authority(&peer(0), service, c),
            Some(Authority::Root)
        );
        assert_eq!(
            change_authority(&peer(990), service, c),
            Some(Authority::ServiceUser)
        );
        // Group `oneiric`, an unmapped user: reads only.
        assert_eq!(change_authority(&peer(1000), service, c), None);
        assert_eq!(
            change_authority(&peer(crate::peer::UNMAPPED), service, c),
            None
        );
        // A service running as nobody does not make every unmapped user its own.
        assert_eq!(
            change_authority(&peer(crate::peer::UNMAPPED), crate::peer::UNMAPPED, c),
            None
        );
    }

    #[test]
    fn on_the_admin_socket_whoever_connected_may_change() {
        let a = Via::Admin;
        assert_eq!(change_authority(&peer(0), 990, a), Some(Authority::Root));
        assert_eq!(
            change_authority(&peer(crate::peer::UNMAPPED), 990, a),
            Some(Authority::AdminGroup)
        );
        assert_eq!(
            change_authority(&peer(1000), 990, a),
            Some(Authority::AdminGroup)
        );
    }

    #[test]
    fn changes_try_the_admin_socket_first_and_reads_the_control_socket() {
        let (c, a) = (
            PathBuf::from("/r/control.sock"),
            PathBuf::from("/r/admin.sock"),
        );
        let [first, _] = sockets_for(&Request::Reload, c.clone(), a.clone());
        assert_eq!(first, a);
        let [first, second] = sockets_for(&Request::Status, c.clone(), a.clone());
        assert_eq!((first, second), (c, a));
    }

    #[test]
    fn a_socket_this_user_cannot_reach_falls_back_to_the_next() {
        let dir = std::env::temp_dir().join(format!("oneiric-ctl-first-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let absent = dir.join("absent.sock");
        let live = dir.join("live.sock");
        let listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let answer = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            (&stream)
                .write_all(b"{\"outcome\":\"ok\",\"message\":\"up\"}\n")
                .unwrap();
        });
        let got = request_first(
            &[absent.clone(), live.clone()],
            &Request::Status,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(got.message, "up");
        answer.join().unwrap();
        // Neither reachable: "no service", naming the first.
        let err = request_first(
            std::slice::from_ref(&absent),
            &Request::Status,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::NoService(ref p) if p.ends_with("absent.sock")));
        // A path this process cannot connect through (here: not a directory, which root
        // meets too) is an error other than "no service", and it wins over an absent one.
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = request_first(
            &[absent, file.join("x.sock")],
            &Request::Status,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_alone_is_a_read() {
        let d = Domain::Adapter;
        let k = || "cache".to_string();
        let changes = [
            Request::Reload,
            Request::Swap {
                domain: d,
                key: k(),
                provider: "redis".into(),
                force: false,
            },
            Request::Unpin {
                domain: d,
                key: k(),
            },
            Request::Pause {
                domain: d,
                key: k(),
                on: false,
                note: None,
            },
            Request::Drain {
                domain: d,
                key: k(),
                on: true,
                note: None,
            },
        ];
        for r in &changes {
            assert_eq!(r.access(), Access::Change, "{}", r.op());
        }
        assert_eq!(Request::Status.access(), Access::Read);
        assert_eq!(changes[1].target().as_deref(), Some("adapter/cache"));
        assert_eq!(Request::Reload.target(), None);
    }
}
