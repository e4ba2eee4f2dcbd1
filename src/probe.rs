//! Health probes of candidates: TCP connect, HTTP(S) GET expecting 2xx, unix-socket connect.
//! Each runs under a timeout; none runs a program.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::manifest::HealthCheck;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    pub ok: bool,
    pub target: String,
    pub detail: String,
    pub seconds: f64,
}

impl HealthCheck {
    pub fn target(&self) -> String {
        if let Some(t) = &self.tcp {
            format!("tcp {t}")
        } else if let Some(u) = &self.http {
            format!("http {u}")
        } else if let Some(p) = &self.unix {
            format!("unix {p}")
        } else {
            "none".into()
        }
    }
}

/// Runs one probe. `default_timeout` applies when the check sets none.
#[tracing::instrument(
    name = "probe",
    skip_all,
    fields(
        target = %check.target(),
        ok = tracing::field::Empty,
        seconds = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty
    )
)]
pub async fn run(check: &HealthCheck, default_timeout: Duration) -> ProbeResult {
    let span = crate::telemetry::traced(tracing::Span::current());
    let timeout = check
        .timeout_seconds
        .map(Duration::from_secs_f64)
        .unwrap_or(default_timeout);
    let start = Instant::now();
    let outcome = tokio::time::timeout(timeout, attempt(check, timeout)).await;
    let (ok, detail) = match outcome {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (false, e),
        Err(_) => (
            false,
            format!("timed out after {:.1} s", timeout.as_secs_f64()),
        ),
    };
    let result = ProbeResult {
        ok,
        target: check.target(),
        detail,
        seconds: start.elapsed().as_secs_f64(),
    };
    span.record("ok", result.ok);
    span.record("seconds", result.seconds);
    result
}

async fn attempt(check: &HealthCheck, timeout: Duration) -> Result<String, String> {
    if let Some(addr) = &check.tcp {
        tokio::net::TcpStream::connect(addr.as_str())
            .await
            .map(|_| "connected".to_string())
            .map_err(|e| format!("connect {addr}: {e}"))
    } else if let Some(url) = &check.http {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let resp = client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("timed out after {:.1} s", timeout.as_secs_f64())
            } else {
                format!("GET {url}: {}", crate::text::error_chain(&e))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("GET {url}: HTTP {}", status.as_u16()))
        }
    } else if let Some(path) = &check.unix {
        tokio::net::UnixStream::connect(path)
            .await
            .map(|_| "connected".to_string())
            .map_err(|e| format!("connect {path}: {e}"))
    } else {
        Err("probe has no target".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut HealthCheck)) -> HealthCheck {
        let mut c = HealthCheck {
            tcp: None,
            http: None,
            unix: None,
            timeout_seconds: Some(2.0),
        };
        f(&mut c);
        c
    }

    #[tokio::test]
    async fn tcp_and_unix_probes_against_real_listeners() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let r = run(
            &check(|c| c.tcp = Some(addr.clone())),
            Duration::from_secs(1),
        )
        .await;
        assert!(r.ok, "{r:?}");
        drop(l);
        let r = run(
            &check(|c| c.tcp = Some(addr.clone())),
            Duration::from_secs(1),
        )
        .await;
        assert!(!r.ok);

        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s.sock");
        let _u = tokio::net::UnixListener::bind(&sock).unwrap();
        let p = sock.display().to_string();
        assert!(
            run(&check(|c| c.unix = Some(p.clone())), Duration::from_secs(1))
                .await
                .ok
        );
    }

    #[tokio::test]
    async fn http_probe_needs_2xx_and_times_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                n += 1;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                match n {
                    1 => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                    2 => {
                        let _ = s
                            .write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        });
        let url = format!("http://{addr}/health");
        let c = check(|c| c.http = Some(url.clone()));
        assert!(run(&c, Duration::from_secs(1)).await.ok);
        let r = run(&c, Duration::from_secs(1)).await;
        assert!(!r.ok && r.detail.contains("503"), "{r:?}");
        let c = check(|c| {
            c.http = Some(url.clone());
            c.timeout_seconds = Some(0.3)
        });
        let r = run(&c, Duration::from_secs(1)).await;
        assert!(!r.ok && r.detail.contains("timed out"), "{r:?}");
    }
}
