//! Health probes of candidates: TCP connect, HTTP(S) GET expecting 2xx, unix-socket connect.
//! Each runs under a timeout; none runs a program. A manifest names the targets, so each
//! probe first passes `lifecycle.probes`: its kind, every address it would connect to (after
//! name resolution, and on every redirect) and the directory of its socket. A refused probe
//! fails with the reason and connects nowhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::config::{ProbeKind, ProbeSettings};
use crate::manifest::HealthCheck;

/// Refused unless `insecure_any_address`: the cloud metadata services (169.254.169.254 and
/// 169.254.170.2 are link-local; Alibaba's 100.100.100.200; AWS's IPv6 fd00:ec2::254), all of
/// link-local, and addresses that are no single host.
fn builtin_denied() -> [IpNet; 9] {
    [
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16)),
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(100, 100, 100, 200), 32)),
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8)),
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4)),
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::BROADCAST, 32)),
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
        )),
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
            128,
        )),
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128)),
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
        )),
    ]
}

/// Why `policy` refuses a connection to `ip`, or `None`. IPv4-mapped IPv6 addresses are
/// judged as the IPv4 address they reach.
pub fn address_refusal(ip: IpAddr, policy: &ProbeSettings) -> Option<String> {
    let ip = ip.to_canonical();
    if !policy.insecure_any_address {
        if let Some(n) = builtin_denied().iter().find(|n| n.contains(&ip)) {
            return Some(format!(
                "{ip} is in {n}, which probes may not reach (link-local, cloud metadata, unspecified, multicast and broadcast addresses; lifecycle.probes.insecure_any_address lifts this)"
            ));
        }
    }
    if let Some(n) = policy.denied_networks.iter().find(|n| n.contains(&ip)) {
        return Some(format!("{ip} is in {n} (lifecycle.probes.denied_networks)"));
    }
    if !policy.allowed_networks.is_empty()
        && !policy.allowed_networks.iter().any(|n| n.contains(&ip))
    {
        return Some(format!("{ip} is outside lifecycle.probes.allowed_networks"));
    }
    None
}

fn kind_refusal(kind: ProbeKind, policy: &ProbeSettings) -> Result<(), String> {
    if policy.kinds.contains(&kind) {
        Ok(())
    } else {
        Err(format!(
            "not probed: {} probes are not in lifecycle.probes.kinds",
            kind.as_str()
        ))
    }
}

/// The addresses `policy` lets a probe connect to, or why there are none.
fn allowed(
    addrs: Vec<SocketAddr>,
    what: &str,
    policy: &ProbeSettings,
) -> Result<Vec<SocketAddr>, String> {
    let mut reason = None;
    let ok: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match address_refusal(a.ip(), policy) {
            Some(r) => {
                reason.get_or_insert(r);
                false
            }
            None => true,
        })
        .collect();
    match (ok.is_empty(), reason) {
        (false, _) => Ok(ok),
        (true, Some(r)) => Err(format!("not probed: {what}: {r}")),
        (true, None) => Err(format!("{what}: the name has no address")),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Name resolution for HTTP probes that hands the client only addresses the policy allows:
/// the check and the connection use the same answer, so a name cannot resolve to an allowed
/// address for the check and to a refused one for the connection.
struct GuardedResolver(Arc<ProbeSettings>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.0);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok = allowed(found, &host, &policy).map_err(Refused)?;
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The policy's verdict on a URL before a request goes to it: its scheme, and its host when
/// that is an address (names are judged by the resolver).
fn url_refusal(url: &reqwest::Url, policy: &ProbeSettings) -> Result<(), String> {
    let kind = match url.scheme() {
        "http" => ProbeKind::Http,
        "https" => ProbeKind::Https,
        other => {
            return Err(format!(
                "not probed: {}: scheme `{other}` is not http or https",
                crate::text::redact_url(url.as_str())
            ));
        }
    };
    kind_refusal(kind, policy)?;
    let Some(host) = url.host_str() else {
        return Err("not probed: the URL has no host".into());
    };
    // IPv6 hosts come bracketed; a host that is no address is a name, for the resolver.
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    match address_refusal(ip, policy) {
        Some(r) => Err(format!("not probed: {r}")),
        None => Ok(()),
    }
}

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
            format!("http {}", crate::text::redact_url(u))
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
pub async fn run(
    check: &HealthCheck,
    policy: &ProbeSettings,
    default_timeout: Duration,
) -> ProbeResult {
    let span = crate::telemetry::traced(tracing::Span::current());
    let timeout = check
        .timeout_seconds
        .map(Duration::from_secs_f64)
        .unwrap_or(default_timeout);
    let start = Instant::now();
    let outcome = tokio::time::timeout(timeout, attempt(check, policy, timeout)).await;
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

async fn attempt(
    check: &HealthCheck,
    policy: &ProbeSettings,
    timeout: Duration,
) -> Result<String, String> {
    if let Some(addr) = &check.tcp {
        kind_refusal(ProbeKind::Tcp, policy)?;
        let found: Vec<SocketAddr> = tokio::net::lookup_host(addr.as_str())
            .await
            .map_err(|e| format!("resolve {addr}: {e}"))?
            .collect();
        let mut last = None;
        for a in allowed(found, addr, policy)? {
            match tokio::net::TcpStream::connect(a).await {
                Ok(_) => return Ok("connected".to_string()),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => format!("connect {addr}: {e}"),
            None => format!("connect {addr}: no address"),
        })
    } else if let Some(given) = &check.http {
        // What reaches logs, status and errors has its credentials redacted.
        let url = crate::text::redact_url(given);
        let parsed = reqwest::Url::parse(given).map_err(|e| format!("GET {url}: {e}"))?;
        url_refusal(&parsed, policy)?;
        let shared = Arc::new(policy.clone());
        let for_redirects = Arc::clone(&shared);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A proxy would connect where the policy cannot see.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(shared)))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 3 {
                    return attempt.error(Refused("more than 3 redirects".into()));
                }
                match url_refusal(attempt.url(), &for_redirects) {
                    Ok(()) => attempt.follow(),
                    Err(r) => {
                        let to = crate::text::redact_url(attempt.url().as_str());
                        attempt.error(Refused(format!("redirected to {to}: {r}")))
                    }
                }
            }))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let resp = client.get(parsed).send().await.map_err(|e| {
            if e.is_timeout() {
                format!("timed out after {:.1} s", timeout.as_secs_f64())
            } else {
                format!("GET {url}: {}", crate::text::error_chain(&e.without_url()))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(format!("HTTP {}", status.as_u16()))
        } else {
            Err(format!("GET {url}: HTTP {}", status.as_u16()))
        }
    } else if let Some(path) = &check.unix {
        kind_refusal(ProbeKind::Unix, policy)?;
        if policy.unix_directories.is_empty() {
            return Err(format!(
                "not probed: {path}: unix probes reach only sockets in lifecycle.probes.unix_directories, which is empty"
            ));
        }
        // Judged where it leads: a link in an allowed directory to a socket elsewhere (the
        // D-Bus system bus, say) is refused.
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|e| format!("connect {path}: {e}"))?;
        let mut inside = false;
        for d in &policy.unix_directories {
            if let Ok(dir) = tokio::fs::canonicalize(d).await {
                inside |= real.starts_with(&dir);
            }
        }
        if !inside {
            return Err(format!(
                "not probed: {path} (which is {}) is outside lifecycle.probes.unix_directories",
                real.display()
            ));
        }
        tokio::net::UnixStream::connect(&real)
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

    fn open() -> ProbeSettings {
        ProbeSettings::default()
    }

    #[tokio::test]
    async fn tcp_and_unix_probes_against_real_listeners() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let r = run(
            &check(|c| c.tcp = Some(addr.clone())),
            &open(),
            Duration::from_secs(1),
        )
        .await;
        assert!(r.ok, "{r:?}");
        drop(l);
        let r = run(
            &check(|c| c.tcp = Some(addr.clone())),
            &open(),
            Duration::from_secs(1),
        )
        .await;
        assert!(!r.ok);

        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s.sock");
        let _u = tokio::net::UnixListener::bind(&sock).unwrap();
        let p = sock.display().to_string();
        let mut policy = open();
        policy.unix_directories = vec![d.path().to_path_buf()];
        let r = run(
            &check(|c| c.unix = Some(p.clone())),
            &policy,
            Duration::from_secs(1),
        )
        .await;
        assert!(r.ok, "{r:?}");
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
        assert!(run(&c, &open(), Duration::from_secs(1)).await.ok);
        let r = run(&c, &open(), Duration::from_secs(1)).await;
        assert!(!r.ok && r.detail.contains("503"), "{r:?}");
        let c = check(|c| {
            c.http = Some(url.clone());
            c.timeout_seconds = Some(0.3)
        });
        let r = run(&c, &open(), Duration::from_secs(1)).await;
        assert!(!r.ok && r.detail.contains("timed out"), "{r:?}");
    }

    async fn probe(f: impl FnOnce(&mut HealthCheck), policy: &ProbeSettings) -> ProbeResult {
        run(&check(f), policy, Duration::from_secs(1)).await
    }

    fn refused(r: &ProbeResult, why: &str) {
        assert!(!r.ok, "{r:?}");
        assert!(r.detail.starts_with("not probed: "), "{r:?}");
        assert!(r.detail.contains(why), "want `{why}` in {r:?}");
    }

    #[tokio::test]
    async fn metadata_and_link_local_addresses_are_refused_before_connecting() {
        let p = open();
        let r = probe(|c| c.tcp = Some("169.254.169.254:80".into()), &p).await;
        refused(&r, "169.254.169.254 is in 169.254.0.0/16");
        assert!(r.seconds < 0.5, "it waited to connect: {r:?}");
        // The same address spelt as IPv4-mapped IPv6, and in a URL.
        let r = probe(|c| c.tcp = Some("[::ffff:169.254.169.254]:80".into()), &p).await;
        refused(&r, "169.254.169.254 is in 169.254.0.0/16");
        let r = probe(
            |c| c.http = Some("http://169.254.169.254/latest/meta-data/".into()),
            &p,
        )
        .await;
        refused(&r, "169.254.0.0/16");
        let r = probe(
            |c| c.http = Some("http://[fd00:ec2::254]/latest/".into()),
            &p,
        )
        .await;
        refused(&r, "fd00:ec2::254");
        let r = probe(|c| c.tcp = Some("100.100.100.200:80".into()), &p).await;
        refused(&r, "100.100.100.200");
        let r = probe(|c| c.tcp = Some("0.0.0.0:22".into()), &p).await;
        refused(&r, "0.0.0.0/8");
        // The named opt-out lets it try (and fail or time out like any unreachable target).
        let mut lifted = open();
        lifted.insecure_any_address = true;
        let r = run(
            &check(|c| {
                c.tcp = Some("169.254.169.254:80".into());
                c.timeout_seconds = Some(0.2);
            }),
            &lifted,
            Duration::from_secs(1),
        )
        .await;
        assert!(!r.detail.starts_with("not probed"), "{r:?}");
    }

    #[tokio::test]
    async fn names_are_judged_by_the_addresses_they_resolve_to() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let mut p = open();
        p.allowed_networks = vec!["10.0.0.0/8".parse().unwrap()];
        let r = probe(|c| c.tcp = Some(format!("localhost:{port}")), &p).await;
        refused(&r, "outside lifecycle.probes.allowed_networks");
        let r = probe(|c| c.http = Some(format!("http://localhost:{port}/")), &p).await;
        assert!(!r.ok, "{r:?}");
        assert!(
            r.detail
                .contains("outside lifecycle.probes.allowed_networks"),
            "{r:?}"
        );
        p.allowed_networks = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let r = probe(|c| c.tcp = Some(format!("localhost:{port}")), &p).await;
        assert!(r.ok, "{r:?}");
        let r = probe(|c| c.http = Some(format!("http://localhost:{port}/")), &p).await;
        assert!(r.ok, "{r:?}");
        p.denied_networks = vec!["127.0.0.1/32".parse().unwrap()];
        let r = probe(|c| c.tcp = Some(format!("127.0.0.1:{port}")), &p).await;
        refused(&r, "lifecycle.probes.denied_networks");
        p.denied_networks.clear();
        p.kinds = vec![ProbeKind::Tcp];
        let r = probe(|c| c.http = Some(format!("http://127.0.0.1:{port}/")), &p).await;
        refused(&r, "http probes are not in lifecycle.probes.kinds");
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_address_is_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // A hostile target that answers every probe with a redirect to the metadata service.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/iam/\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let r = probe(|c| c.http = Some(format!("http://{addr}/health")), &open()).await;
        assert!(!r.ok, "{r:?}");
        assert!(
            r.detail.contains("redirected to http://169.254.169.254/")
                && r.detail.contains("169.254.0.0/16"),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn unix_probes_reach_only_sockets_in_the_listed_directories() {
        let allowed_dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let inside = allowed_dir.path().join("app.sock");
        let outside = elsewhere.path().join("bus.sock");
        let _a = tokio::net::UnixListener::bind(&inside).unwrap();
        let _b = tokio::net::UnixListener::bind(&outside).unwrap();
        // A link in the allowed directory to a socket elsewhere (as to the D-Bus system bus).
        let link = allowed_dir.path().join("link.sock");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let path = |p: &std::path::Path| p.display().to_string();

        let r = probe(|c| c.unix = Some(path(&inside)), &open()).await;
        refused(&r, "lifecycle.probes.unix_directories, which is empty");
        let mut p = open();
        p.unix_directories = vec![allowed_dir.path().to_path_buf()];
        let r = probe(|c| c.unix = Some(path(&inside)), &p).await;
        assert!(r.ok, "{r:?}");
        let r = probe(|c| c.unix = Some(path(&outside)), &p).await;
        refused(&r, "is outside lifecycle.probes.unix_directories");
        let r = probe(|c| c.unix = Some(path(&link)), &p).await;
        refused(&r, "is outside lifecycle.probes.unix_directories");
        let dotdot = format!(
            "{}/../{}/bus.sock",
            path(allowed_dir.path()),
            elsewhere.path().file_name().unwrap().to_string_lossy()
        );
        let r = probe(|c| c.unix = Some(dotdot.clone()), &p).await;
        refused(&r, "is outside lifecycle.probes.unix_directories");
    }

    #[tokio::test]
    async fn credentials_in_a_probe_url_are_not_repeated() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = l.accept().await {
                n += 1;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                if n == 1 {
                    let _ = s
                        .write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
                // The second connection is dropped unanswered: a transport error.
            }
        });
        let url = format!("http://probe:s3cret@{addr}/health");
        for _ in 0..2 {
            let r = probe(|c| c.http = Some(url.clone()), &open()).await;
            assert!(!r.ok, "{r:?}");
            let shown = format!("{} {}", r.target, r.detail);
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("probe:***@"), "{shown}");
        }
    }

    #[test]
    fn networks_in_settings_are_typed_and_bad_ones_are_refused() {
        let p: ProbeSettings =
            serde_yaml::from_str("denied_networks: [10.1.0.0/16]\nkinds: [tcp, unix]\n").unwrap();
        assert_eq!(p.denied_networks[0].to_string(), "10.1.0.0/16");
        assert!(serde_yaml::from_str::<ProbeSettings>("denied_networks: [10.1.0.0/99]\n").is_err());
        assert!(serde_yaml::from_str::<ProbeSettings>("kinds: [exec]\n").is_err());
    }
}
