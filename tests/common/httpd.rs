//! A scripted HTTP(S) server for the remote-manifest tests: each request is answered by a
//! closure the test controls (status, headers, delays, trickled bodies).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub enum Reply {
    Body {
        body: Vec<u8>,
        etag: Option<String>,
    },
    Status(u16),
    NotModified,
    /// Sleep, then answer with the body.
    Slow(Duration, Vec<u8>),
    /// Headers at once, then the body one byte per interval.
    Trickle(Duration, Vec<u8>),
    /// Claims a huge Content-Length.
    Huge(u64),
    /// 302 to this Location.
    Redirect(String),
}

pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

pub struct Server {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Req>>>,
    _rt: tokio::runtime::Runtime,
}

pub struct Tls {
    pub ca_pem: String,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
}

/// A CA generated for the test, and a server certificate for `localhost` signed by it.
pub fn make_tls() -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "oneiric test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(leaf.der().to_vec())],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    Tls {
        ca_pem: ca.pem(),
        config: Arc::new(config),
    }
}

impl Server {
    /// A plain-HTTP server answering every request with `body` (no ETag).
    pub fn serving(body: Vec<u8>) -> Self {
        Self::start(
            None,
            Arc::new(move |_| Reply::Body {
                body: body.clone(),
                etag: None,
            }),
        )
    }

    pub fn start(tls: Option<&Tls>, handler: Handler) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reqs = Arc::clone(&requests);
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(Arc::clone(&t.config)));
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let reqs = Arc::clone(&reqs);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                serve_one(s, handler, reqs).await;
                            }
                        }
                        None => serve_one(stream, handler, reqs).await,
                    }
                });
            }
        });
        Self {
            port,
            requests,
            _rt: rt,
        }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last(&self) -> Option<Req> {
        self.requests.lock().unwrap().last().cloned()
    }
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    handler: Handler,
    reqs: Arc<Mutex<Vec<Req>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let headers: Vec<(String, String)> = headers;
    let header_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(buf.len());
    let mut body = buf[header_end..].to_vec();
    let want: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(16 * 1024 * 1024);
    while body.len() < want {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let req = Req {
        path,
        headers,
        body,
    };
    reqs.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\ncontent-length: {len}\r\nconnection: close\r\n{extra}\r\n")
    };
    match reply {
        Reply::Body { body, etag } => {
            let extra = etag.map(|e| format!("etag: {e}\r\n")).unwrap_or_default();
            let _ = s
                .write_all(head("200 OK", body.len(), &extra).as_bytes())
                .await;
            let _ = s.write_all(&body).await;
        }
        Reply::Status(code) => {
            let _ = s
                .write_all(head(&format!("{code} Scripted"), 0, "").as_bytes())
                .await;
        }
        Reply::NotModified => {
            let _ = s
                .write_all(b"HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n")
                .await;
        }
        Reply::Redirect(to) => {
            let _ = s
                .write_all(head("302 Found", 0, &format!("location: {to}\r\n")).as_bytes())
                .await;
        }
        Reply::Slow(d, body) => {
            tokio::time::sleep(d).await;
            let _ = s.write_all(head("200 OK", body.len(), "").as_bytes()).await;
            let _ = s.write_all(&body).await;
        }
        Reply::Trickle(d, body) => {
            let _ = s.write_all(head("200 OK", body.len(), "").as_bytes()).await;
            for b in body {
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                let _ = s.flush().await;
                tokio::time::sleep(d).await;
            }
        }
        Reply::Huge(len) => {
            let _ = s
                .write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes())
                .await;
            let _ = s.write_all(&vec![b'#'; 64 * 1024]).await;
        }
    }
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}
