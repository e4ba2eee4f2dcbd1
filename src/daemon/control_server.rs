//! The service side of the control socket: reload, swap, unpin, pause, drain, status. Every
//! change goes through the state owner; answers carry the typed outcome.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::{Service, Trigger};
use crate::control::{MAX_REQUEST_BYTES, Request, Response};
use crate::errors::HasExit;
use crate::exit::Exit;
use crate::lifecycle::{self, SwapRequest};

pub async fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let service = Arc::clone(&service);
                tokio::spawn(async move { handle(stream, service).await });
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

async fn handle(stream: tokio::net::UnixStream, service: Arc<Service>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    let got = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
    let response = match got {
        Err(_) => reply(Exit::Usage, "request timed out", Value::Null),
        Ok(Err(e)) => reply(Exit::Usage, format!("read error: {e}"), Value::Null),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => reply(Exit::Usage, format!("bad request: {e}"), Value::Null),
            Ok(req) => dispatch(req, &service).await,
        },
    };
    if let Ok(mut bytes) = serde_json::to_vec(&response) {
        bytes.push(b'\n');
        let _ = write.write_all(&bytes).await;
    }
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
