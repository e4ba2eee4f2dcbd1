//! The control protocol between the CLI and the running service: one JSON request and one JSON
//! response per connection, over the unix socket `control.sock` in the runtime directory
//! (mode 0660, so root and group `oneiric` only).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
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

/// Why a peer may change the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Root,
    /// The service's own user: it owns the state the request changes anyway.
    ServiceUser,
}

/// The control socket's rule for changes: root or the service's user. Group `oneiric` reads.
/// A group of administrators is not part of the rule: under `PrivateUsers=yes` the service
/// sees every other user as 65534, so membership can only be checked by the kernel, on a
/// socket file owned by that group, not here.
pub fn change_authority(peer: &crate::peer::Peer, service_uid: u32) -> Option<Authority> {
    if peer.uid == 0 {
        Some(Authority::Root)
    } else if peer.uid == service_uid && peer.uid != crate::peer::UNMAPPED {
        Some(Authority::ServiceUser)
    } else {
        None
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
        Err(source) => return Err(ClientError::Io { path, source }),
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
    fn only_root_and_the_service_user_may_change() {
        let service = 990;
        assert_eq!(change_authority(&peer(0), service), Some(Authority::Root));
        assert_eq!(
            change_authority(&peer(990), service),
            Some(Authority::ServiceUser)
        );
        // Group `oneiric`, an unmapped user: reads only.
        assert_eq!(change_authority(&peer(1000), service), None);
        assert_eq!(
            change_authority(&peer(crate::peer::UNMAPPED), service),
            None
        );
        // A service running as nobody does not make every unmapped user its own.
        assert_eq!(
            change_authority(&peer(crate::peer::UNMAPPED), crate::peer::UNMAPPED),
            None
        );
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
