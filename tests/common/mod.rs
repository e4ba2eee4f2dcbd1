//! Helpers shared by the integration tests: the real binary, temp dirs, a NOTIFY_SOCKET the
//! test owns, and a tiny HTTP client.
#![allow(dead_code)]

pub mod httpd;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_oneiric");

pub fn shared_testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata")
}

/// The bytes a signature covers: `manifest pack` of the document without its signature
/// fields (pack itself keeps them).
pub fn signed_bytes(sb: &Sandbox, signed: &Path) -> String {
    let o = sb.run(&["manifest", "pack", signed.to_str().expect("utf-8 path")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    if let Some(obj) = doc.as_object_mut() {
        for f in ["signature", "signature_algorithm", "signatures"] {
            obj.remove(f);
        }
    }
    let again = sb.write("unsigned.json", &doc.to_string());
    stdout(&sb.run(&["manifest", "pack", again.to_str().expect("utf-8 path")]))
        .trim_end()
        .to_string()
}

/// `oneiric manifest sign SRC --key KEY -o OUT ARGS…` through the binary; the signed bytes.
/// Fails the test when signing fails.
pub fn sign_file(sb: &Sandbox, src: &Path, key: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec![
        "manifest",
        "sign",
        src.to_str().expect("utf-8 path"),
        "--key",
        key.to_str().expect("utf-8 path"),
        "-o",
        out.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    let o = sb.run(&all);
    assert_eq!(code(&o), 0, "manifest sign: {}", stderr(&o));
    std::fs::read(out).expect("signed output")
}

/// The seed and public key of a signing key for tests (the `KEY1` of tests/remote.rs).
pub const TEST_KEY_SEED: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
pub const TEST_KEY: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

/// A fleet manifest (`service/api` → `v1`) signed with [`TEST_KEY_SEED`], valid for an hour:
/// the body a test's HTTP server serves as the remote manifest.
pub fn signed_fleet_manifest(sb: &Sandbox) -> Vec<u8> {
    let key = sb.write("signing.key", TEST_KEY_SEED);
    let src = sb.write(
        "fleet.src.yaml",
        "source: fleet\nentries:\n  - {domain: service, key: api, provider: v1, factory: f}\n",
    );
    sign_file(
        sb,
        &src,
        &key,
        &sb.path("fleet.json"),
        &["--expires-in", "3600"],
    )
}

/// A fixture file of `tests/fixtures`.
pub fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A sandbox: settings dir, state/cache/runtime dirs, and a clean environment.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// Extra environment for every command and service started from this sandbox.
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["etc", "state", "cache", "run"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Self {
            dir,
            env: Vec::new(),
        }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn write(&self, p: &str, body: &str) -> PathBuf {
        let path = self.path(p);
        std::fs::write(&path, body).expect("write");
        path
    }
    /// A command with the sandbox's dirs and no inherited ONEIRIC_/systemd variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ONEIRIC_CONFIG", self.path("etc"))
            .env("ONEIRIC_STATE_DIR", self.path("state"))
            .env("ONEIRIC_CACHE_DIR", self.path("cache"))
            .env("ONEIRIC_RUNTIME_DIR", self.path("run"))
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(self.cmd(args), Duration::from_secs(60))
    }
}

/// Runs a command, killing it if it exceeds `limit` (a hang is a test failure, not a stuck CI).
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command timed out after {limit:?}: stderr={}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A datagram socket standing in for systemd's notify socket; records every message.
pub struct Notify {
    pub path: PathBuf,
    pub messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Notify {
    pub fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = Arc::clone(&messages);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => m.lock().unwrap().push((
                        Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    )),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if Arc::strong_count(&m) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        Self { path, messages }
    }
    pub fn all(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }
    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|m| m.contains(needle)).count()
    }
    /// Waits until `n` messages contain `needle`.
    pub fn wait_for(&self, needle: &str, n: usize, limit: Duration) -> bool {
        poll_until(limit, || self.count(needle) >= n)
    }
}

/// The one polling helper: calls `done` every 20 ms until it is true or `limit` passed.
/// Returns whether it became true.
pub fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one async runtime setup for tests that drive async code themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `GET /metrics`, parsed as the Prometheus text format.
pub fn scrape(port: u16) -> prometheus_parse::Scrape {
    let (status, body) = http(port, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus text format")
}

/// The value of one sample (`name` with every label in `labels`), if present.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    raw_http(
        port,
        &format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

pub fn raw_http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).expect("write");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A running `oneiric orchestrate`, killed on drop.
pub struct Service {
    pub child: Child,
    pub port: u16,
}

impl Service {
    pub fn start(
        sb: &Sandbox,
        notify: Option<&Notify>,
        watchdog_usec: Option<u64>,
        extra: &[&str],
    ) -> Self {
        // Port 0: the service binds a free port itself and logs it (no race with other tests
        // for a port picked in advance).
        let port = 0;
        let mut args = vec!["orchestrate", "--http-port", "0", "--refresh-interval", "1"];
        args.extend_from_slice(extra);
        // WATCHDOG_PID must be the service's own PID, as systemd sets it: exec through sh.
        let mut shell = format!("exec {BIN}");
        for a in &args {
            shell.push(' ');
            shell.push_str(a);
        }
        if let Some(us) = watchdog_usec {
            shell = format!("WATCHDOG_PID=$$ WATCHDOG_USEC={us} {shell}");
        }
        let template = sb.cmd(&[]);
        let mut cmd = Command::new("sh");
        cmd.env_clear();
        for (k, v) in template.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.arg("-c").arg(shell).stdin(Stdio::null());
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", &n.path);
        }
        cmd.env("LOG_LEVEL", "debug");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(sb.path("service.log")).expect("log"),
            ))
            .spawn()
            .expect("spawn service");
        let mut svc = Self { child, port };
        svc.wait_ready(&sb.path("service.log"));
        svc
    }

    fn wait_ready(&mut self, log: &Path) {
        const MARK: &str = "HTTP on http://127.0.0.1:";
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(i) = text.find(MARK) {
                let digits: String = text[i + MARK.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(p) = digits.parse() {
                    self.port = p;
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "service exited ({st}) before listening: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "service did not start listening: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status();
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut code = None;
        poll_until(limit, || match self.child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                true
            }
            _ => false,
        });
        code
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
