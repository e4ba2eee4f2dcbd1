//! The service side of the control socket: reload, swap, pause, drain, status.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::{ReloadReply, Shared};
use crate::cli::Exit;
use crate::control::{MAX_REQUEST_BYTES, Request, Response};
use crate::lifecycle;

/// Binds the socket, replacing a stale one but never stealing a live service's.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("runtime directory {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another oneiric service is already listening on {}",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", path.display()))?;
    // Root and the service's group only: these requests change what the fleet runs.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set mode of {}: {e}", path.display()))?;
    Ok(listener)
}

pub async fn serve(
    listener: UnixListener,
    shared: Arc<Shared>,
    reload_tx: mpsc::Sender<ReloadReply>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let tx = reload_tx.clone();
                tokio::spawn(async move { handle(stream, shared, tx).await });
            }
        }
    }
}

fn reply(ok: bool, exit: Exit, message: impl Into<String>, data: serde_json::Value) -> Response {
    Response {
        ok,
        code: exit as u8,
        message: message.into(),
        data,
    }
}

async fn handle(
    stream: tokio::net::UnixStream,
    shared: Arc<Shared>,
    tx: mpsc::Sender<ReloadReply>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    let got = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
    let response = match got {
        Err(_) => reply(
            false,
            Exit::Usage,
            "request timed out",
            serde_json::Value::Null,
        ),
        Ok(Err(e)) => reply(
            false,
            Exit::Usage,
            format!("read error: {e}"),
            serde_json::Value::Null,
        ),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => reply(
                false,
                Exit::Usage,
                format!("bad request: {e}"),
                serde_json::Value::Null,
            ),
            Ok(req) => dispatch(req, &shared, &tx).await,
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&response) {
        bytes.push(b'\n');
        let _ = write.write_all(&bytes).await;
    }
}

async fn dispatch(req: Request, shared: &Arc<Shared>, tx: &mpsc::Sender<ReloadReply>) -> Response {
    use tracing::Instrument;
    let span = match &req {
        Request::Swap {
            domain,
            key,
            provider,
            force,
        } => crate::traced_span!(
            "swap",
            domain = %domain,
            key = %key,
            provider = %provider,
            forced = *force,
            outcome = tracing::field::Empty
        ),
        _ => tracing::Span::none(),
    };
    let response = dispatch_inner(req, shared, tx)
        .instrument(span.clone())
        .await;
    span.record("outcome", if response.ok { "success" } else { "failure" });
    response
}

async fn dispatch_inner(
    req: Request,
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<ReloadReply>,
) -> Response {
    use serde_json::Value::Null;
    match req {
        Request::Reload => {
            let (rtx, rrx) = oneshot::channel();
            if tx.send(rtx).await.is_err() {
                return reply(false, Exit::Failure, "service is stopping", Null);
            }
            match rrx.await {
                Ok(Ok(msg)) => reply(true, Exit::Ok, msg, Null),
                Ok(Err(msg)) => reply(
                    false,
                    Exit::InvalidConfig,
                    format!("reload failed, still serving the previous state: {msg}"),
                    Null,
                ),
                Err(_) => reply(
                    false,
                    Exit::Failure,
                    "reload abandoned (service stopping)",
                    Null,
                ),
            }
        }
        Request::Status => reply(
            true,
            Exit::Ok,
            shared.status_line(),
            super::status_json(shared),
        ),
        Request::Swap {
            domain,
            key,
            provider,
            force,
        } => {
            let served = shared.served.load_full();
            let timeouts = served.settings.settings.lifecycle.clone();
            // Read the pause/drain row, then release the store before probing.
            let activity = match shared.activity.lock() {
                Ok(store) => store.get(domain, &key).map_err(|e| e.to_string()),
                Err(_) => Err("activity store lock poisoned".to_string()),
            };
            let activity = match activity {
                Ok(a) => a,
                Err(e) => return reply(false, Exit::Failure, e, Null),
            };
            let mut status = shared.lifecycle.lock().await;
            let outcome = lifecycle::swap(
                &served.snapshot,
                &mut status,
                &activity,
                lifecycle::SwapRequest {
                    domain,
                    key: &key,
                    provider: &provider,
                    force,
                },
                &timeouts,
                &shared.req.dirs.state,
            )
            .await;
            let saved = status.save(&shared.req.dirs.state);
            drop(status);
            match outcome {
                Err(e) => {
                    let exit = crate::cli::lifecycle_exit(&e);
                    reply(false, exit, e.to_string(), Null)
                }
                Ok(a) => {
                    shared.record_activations(std::slice::from_ref(&a));
                    if let Err(e) = saved {
                        return reply(
                            false,
                            Exit::Failure,
                            format!("swap done but state not saved: {e}"),
                            Null,
                        );
                    }
                    if a.bound {
                        shared.rebuild_with_pins().await;
                        reply(
                            true,
                            Exit::Ok,
                            format!(
                                "{domain}/{key}: swapped to {provider} in {:.1} ms",
                                a.duration.as_secs_f64() * 1000.0
                            ),
                            serde_json::to_value(&a).unwrap_or(Null),
                        )
                    } else {
                        reply(
                            false,
                            Exit::Refused,
                            format!(
                                "{domain}/{key}: swap to {provider} failed ({}); rolled back to {}",
                                a.error.as_deref().unwrap_or("unknown"),
                                a.previous.as_deref().unwrap_or("nothing")
                            ),
                            serde_json::to_value(&a).unwrap_or(Null),
                        )
                    }
                }
            }
        }
        Request::Unpin { domain, key } => {
            let mut status = shared.lifecycle.lock().await;
            let removed = lifecycle::unpin(&mut status, domain, &key);
            let saved = status.save(&shared.req.dirs.state);
            drop(status);
            if let Err(e) = saved {
                return reply(false, Exit::Failure, e.to_string(), Null);
            }
            shared.rebuild_with_pins().await;
            let msg = if removed {
                "pin removed"
            } else {
                "was not pinned"
            };
            reply(true, Exit::Ok, format!("{domain}/{key}: {msg}"), Null)
        }
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
                false,
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
        } => flag(shared, domain, &key, on, note, false),
        Request::Drain {
            domain,
            key,
            on,
            note,
        } => flag(shared, domain, &key, on, note, true),
    }
}

fn flag(
    shared: &Shared,
    domain: crate::domain::Domain,
    key: &str,
    on: bool,
    note: Option<String>,
    drain: bool,
) -> Response {
    let mut store = match shared.activity.lock() {
        Ok(s) => s,
        Err(_) => {
            return reply(
                false,
                Exit::Failure,
                "activity store lock poisoned",
                serde_json::Value::Null,
            );
        }
    };
    match store.set_flag(drain, domain, key, on, note.as_deref()) {
        Ok((a, word)) => {
            tracing::info!(oneiric_event = word, oneiric_domain = %domain, oneiric_key = %key, "{domain}/{key}: {word}");
            reply(
                true,
                Exit::Ok,
                format!("{domain}/{key}: {word}"),
                serde_json::to_value(&a).unwrap_or_default(),
            )
        }
        Err(e) => reply(false, Exit::Failure, e.to_string(), serde_json::Value::Null),
    }
}
