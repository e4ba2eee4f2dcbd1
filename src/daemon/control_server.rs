//! The service side of the control sockets: reload, swap, unpin, pause, drain, status. Every
//! change goes through the state owner; answers carry the typed outcome. Who may change is
//! decided per request from the socket it came through and the peer's kernel credentials
//! (`peer`, `control::change_authority`): every change request, allowed or not, goes to the
//! journal and the activity store's log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

use super::{Service, Trigger};
use crate::activity::ControlRecord;
use crate::control::{self, Access, MAX_REQUEST_BYTES, Request, Response, Via};
use crate::errors::HasExit;
use crate::exit::Exit;
use crate::lifecycle::{self, SwapRequest};
use crate::peer::{self, Peer};

/// Connections served at once, per socket. Past it, clients wait in the socket's listen
/// backlog rather than in this process's memory.
const MAX_CONNECTIONS: usize = 32;
/// For the request line to arrive, and for the answer to be taken.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: UnixListener,
    via: Via,
    service: Arc<Service>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = crate::backoff::AcceptBackoff::default();
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => return,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Some((stream, _)) = backoff.check(via.socket_name(), accepted).await else {
                    continue;
                };
                let service = Arc::clone(&service);
                tokio::spawn(async move {
                    handle(stream, via, service).await;
                    drop(permit);
                });
            }
        }
    }
}

fn reply(outcome: Exit, message: impl Into<String>, data: Value) -> Response {
    Response {
        outcome,
        message: message.into(),
        data,
    }
}

fn failed(e: &(impl HasExit + std::fmt::Display)) -> Response {
    reply(e.exit(), e.to_string(), Value::Null)
}

async fn handle(stream: tokio::net::UnixStream, via: Via, service: Arc<Service>) {
    // Taken before anything is read: what the kernel recorded at connect time.
    let peer = Peer::of(&stream);
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    let got = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match got {
        Err(_) => reply(Exit::Usage, "request timed out", Value::Null),
        Ok(Err(e)) => reply(Exit::Usage, format!("read error: {e}"), Value::Null),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => reply(Exit::Usage, format!("bad request: {e}"), Value::Null),
            Ok(req) => match &peer {
                Ok(peer) => authorised(req, peer, via, &service).await,
                Err(e) => reply(
                    Exit::Failure,
                    format!("cannot tell who sent the request (SO_PEERCRED): {e}"),
                    Value::Null,
                ),
            },
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&response) {
        bytes.push(b'\n');
        let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes)).await;
    }
}

/// Reads are answered for anyone who could connect; changes only for the peers
/// `control::change_authority` names, and every change request is journalled and recorded.
async fn authorised(req: Request, peer: &Peer, via: Via, service: &Arc<Service>) -> Response {
    if req.access() == Access::Read {
        return dispatch(req, service).await;
    }
    let (op, target) = (req.op(), req.target());
    let allowed = control::change_authority(peer, peer::own_uid(), via).is_some();
    let response = if allowed {
        dispatch(req, service).await
    } else {
        reply(Exit::Refused, denial(op, peer), Value::Null)
    };
    let request = Audited {
        peer,
        via,
        op,
        target,
        allowed,
    };
    audit(service, request, &response).await;
    response
}

fn denial(op: &str, peer: &Peer) -> String {
    format!(
        "permission denied: `{op}` changes the service, and {} is neither root nor the service's user; \
         members of group `oneiric` may read (`oneiric status`), members of group `oneiric-admin` \
         change (through admin.sock, which the CLI tries first). Run it with sudo, or add the user \
         to oneiric-admin (`usermod -aG oneiric-admin USER`, then log in again)",
        peer.describe()
    )
}

/// A change request as the audit trail records it.
struct Audited<'a> {
    peer: &'a Peer,
    via: Via,
    op: &'static str,
    target: Option<String>,
    allowed: bool,
}

async fn audit(service: &Service, request: Audited<'_>, response: &Response) {
    let Audited {
        peer,
        via,
        op,
        target,
        allowed,
    } = request;
    let outcome = serde_json::to_value(response.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let message = crate::text::one_line(&response.message).into_owned();
    let on = target
        .as_deref()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let pid = peer.pid.unwrap_or(0);
    let socket = via.socket_name();
    if allowed {
        tracing::info!(
            oneiric_event = "control_change",
            oneiric_peer_uid = peer.uid,
            oneiric_peer_pid = pid,
            oneiric_op = op,
            oneiric_socket = socket,
            "control: {op}{on} by {} via {socket}: {outcome}: {message}",
            peer.describe()
        );
    } else {
        tracing::warn!(
            oneiric_event = "control_denied",
            oneiric_peer_uid = peer.uid,
            oneiric_peer_pid = pid,
            oneiric_op = op,
            oneiric_socket = socket,
            "control: {op}{on} by {} via {socket} refused: not allowed to change the service",
            peer.describe()
        );
    }
    service
        .owner
        .record_request(ControlRecord {
            at_unix: crate::served::unix_now_i64(),
            uid: peer.uid,
            pid: peer.pid,
            op: op.to_owned(),
            target,
            outcome,
            message,
        })
        .await;
}

async fn dispatch(req: Request, service: &Arc<Service>) -> Response {
    use serde_json::Value::Null;
    match req {
        Request::Reload => match service.reload(Trigger::Control, None).await {
            Ok(msg) => reply(Exit::Ok, msg, Null),
            Err(e) => reply(
                e.exit(),
                format!("reload failed, still serving the previous state: {e}"),
                Null,
            ),
        },
        Request::Status => reply(
            Exit::Ok,
            service.view.status_line(),
            service.view.status_json(),
        ),
        Request::Swap {
            domain,
            key,
            provider,
            force,
        } => {
            let outcome = service
                .owner
                .swap(SwapRequest {
                    domain,
                    key: &key,
                    provider: &provider,
                    force,
                })
                .await;
            match outcome {
                Err(e) => failed(&e),
                Ok(a) => reply(
                    if a.bound { Exit::Ok } else { Exit::Refused },
                    lifecycle::swap_message(&a),
                    serde_json::to_value(&a).unwrap_or(Null),
                ),
            }
        }
        Request::Unpin { domain, key } => match service.owner.unpin(domain, &key).await {
            Ok(removed) => reply(
                Exit::Ok,
                format!(
                    "{domain}/{key}: {}",
                    if removed {
                        "pin removed"
                    } else {
                        "was not pinned"
                    }
                ),
                Null,
            ),
            Err(e) => failed(&e),
        },
        Request::Pause {
            domain,
            key,
            on,
            note,
        }
        | Request::Drain {
            domain,
            key,
            on,
            note,
        } if !crate::domain::is_valid_name(&key) => {
            let _ = (domain, on, note);
            reply(
                Exit::Usage,
                format!("key `{key}` does not match ^[A-Za-z0-9_.-]+$"),
                Null,
            )
        }
        Request::Pause {
            domain,
            key,
            on,
            note,
        } => flag(service, false, domain, &key, on, note).await,
        Request::Drain {
            domain,
            key,
            on,
            note,
        } => flag(service, true, domain, &key, on, note).await,
    }
}

async fn flag(
    service: &Service,
    drain: bool,
    domain: crate::domain::Domain,
    key: &str,
    on: bool,
    note: Option<String>,
) -> Response {
    match service
        .owner
        .set_flag(drain, domain, key, on, note.as_deref())
        .await
    {
        Ok((a, word)) => {
            tracing::info!(oneiric_event = word, oneiric_domain = %domain, oneiric_key = %key, "{domain}/{key}: {word}");
            reply(
                Exit::Ok,
                format!("{domain}/{key}: {word}"),
                serde_json::to_value(&a).unwrap_or_default(),
            )
        }
        Err(e) => failed(&e),
    }
}
