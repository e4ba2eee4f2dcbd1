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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// The exit code the CLI should use (see `cli::Exit`).
    pub code: u8,
    pub message: String,
    #[serde(default)]
    pub data: Value,
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
