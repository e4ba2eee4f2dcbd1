//! `oneiric orchestrate` as a real process: the notify protocol, signals, HTTP, metrics, the
//! control socket, and crash safety.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn settings(sb: &Sandbox, provider: &str) {
    sb.write(
        "etc/manifest.yaml",
        &format!("source: t\nentries:\n  - {{domain: adapter, key: cache, provider: {provider}, factory: f, priority: 5}}\n  - {{domain: adapter, key: cache, provider: fallback, factory: f}}\n"),
    );
}

fn resolve(svc: &Service) -> String {
    let (status, body) = http(svc.port, "GET", "/v1/resolve/adapter/cache");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["provider"].as_str().unwrap().to_string()
}

#[test]
fn notify_sequence_reload_and_stop() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let notify = Notify::new(sb.dir.path());
    let mut svc = Service::start(&sb, Some(&notify), Some(400_000), &[]);
    assert!(notify.wait_for("READY=1", 1, Duration::from_secs(10)));
    // The listeners the service bound itself go to the fd store first (FDSTORE=1), then
    // the first state message is READY=1 with its status.
    let first = notify.all();
    let state: Vec<&String> = first.iter().filter(|m| !m.contains("FDSTORE=1")).collect();
    assert!(
        state[0].contains("READY=1")
            && state[0].contains("STATUS=Serving 1 keys from 2 candidates"),
        "{first:?}"
    );
    // WATCHDOG=1 at half of WATCHDOG_USEC (200 ms): several within a second.
    assert!(notify.wait_for("WATCHDOG=1", 4, Duration::from_secs(3)));
    assert_eq!(resolve(&svc), "redis");

    // SIGHUP with a good change: RELOADING=1 + MONOTONIC_USEC, then READY=1, new state served.
    settings(&sb, "memcached");
    let readies = notify.count("READY=1");
    svc.signal("HUP");
    assert!(notify.wait_for("RELOADING=1", 1, Duration::from_secs(10)));
    assert!(notify.wait_for("READY=1", readies + 1, Duration::from_secs(10)));
    let reloading = notify
        .all()
        .into_iter()
        .find(|m| m.contains("RELOADING=1"))
        .unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert_eq!(resolve(&svc), "memcached");

    // SIGHUP with a broken manifest: old state kept, failure reported in STATUS and metrics.
    sb.write("etc/manifest.yaml", "entries: [ {domain: adapter\n");
    let readies = notify.count("READY=1");
    svc.signal("HUP");
    assert!(notify.wait_for("READY=1", readies + 1, Duration::from_secs(10)));
    assert!(
        notify.all().last().unwrap().contains("FAILED"),
        "{:?}",
        notify.all()
    );
    assert_eq!(resolve(&svc), "memcached");
    let (_, metrics) = http(svc.port, "GET", "/metrics");
    assert_eq!(
        sample(
            &scrape(svc.port),
            "oneiric_reloads_total",
            &[("result", "failure"), ("trigger", "sighup")]
        ),
        Some(1.0),
        "{metrics}"
    );

    // `oneiric reload` is synchronous and fails while the manifest is broken ...
    let o = sb.run(&["reload"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("manifest.yaml"), "{}", stderr(&o));
    // ... and succeeds once it is fixed.
    settings(&sb, "redis");
    let o = sb.run(&["reload"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(resolve(&svc), "redis");

    // SIGTERM: STOPPING=1 and a clean exit well inside TimeoutStopSec.
    let t = Instant::now();
    svc.signal("TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(notify.wait_for("STOPPING=1", 1, Duration::from_secs(2)));
    // The control socket went to the fd store with FDSTORE=1, so its path stays for the
    // next process that gets the socket back (without a notify socket, the path is removed
    // at exit: tests/inprocess.rs).
    assert!(
        notify
            .all()
            .iter()
            .any(|m| m.contains("FDNAME=stored-control"))
    );
    assert!(sb.path("run/control.sock").exists());
}

#[test]
fn refresh_picks_up_changes_without_signal() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(resolve(&svc), "redis");
    std::thread::sleep(Duration::from_millis(1100));
    settings(&sb, "valkey");
    let start = Instant::now();
    while resolve(&svc) != "valkey" {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "refresh did not pick up the change"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watchdog_pings_stop_while_frozen() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let notify = Notify::new(sb.dir.path());
    let svc = Service::start(&sb, Some(&notify), Some(200_000), &[]);
    assert!(notify.wait_for("WATCHDOG=1", 3, Duration::from_secs(5)));
    svc.signal("STOP");
    std::thread::sleep(Duration::from_millis(300));
    let before = notify.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(notify.count("WATCHDOG=1"), before, "pings while stopped");
    svc.signal("CONT");
    assert!(notify.wait_for("WATCHDOG=1", before + 2, Duration::from_secs(5)));
}

#[test]
fn http_endpoints_and_bad_requests() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(http(svc.port, "GET", "/healthz").0, 200);
    assert_eq!(http(svc.port, "GET", "/readyz").0, 200);
    let (s, body) = http(svc.port, "GET", "/v1/status");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["candidates"], 2);
    assert_eq!(v["ready"], true);
    let (s, body) = http(svc.port, "GET", "/v1/explain/adapter/cache");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
    assert!(
        v["candidates"][1]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "shadowed")
    );
    assert_eq!(http(svc.port, "GET", "/v1/resolve/adapter/nosuch").0, 404);
    assert_eq!(http(svc.port, "GET", "/v1/resolve/widget/cache").0, 400);
    assert_eq!(
        http(svc.port, "GET", "/v1/resolve/adapter/cache?bogus=1").0,
        400
    );
    assert_eq!(http(svc.port, "GET", "/nope").0, 404);
    assert_eq!(http(svc.port, "POST", "/v1/status").0, 405);
    assert_eq!(http(svc.port, "DELETE", "/metrics").0, 405);
    // Oversized headers are refused, not buffered.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (s, _) = raw_http(svc.port, &big);
    assert!(s == 431 || s == 0, "status {s}");
    // Garbage is a 400, and the service keeps serving.
    let (s, _) = raw_http(svc.port, "NOT HTTP AT ALL\r\n\r\n");
    assert!(s == 400 || s == 0, "status {s}");
    assert_eq!(http(svc.port, "GET", "/healthz").0, 200);

    // /metrics parses as Prometheus text and carries the promised families.
    let scrape = scrape(svc.port);
    let names: std::collections::HashSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "oneiric_build_info",
        "oneiric_candidates",
        "oneiric_active_providers",
        "oneiric_resolutions_total",
        "oneiric_reloads_total",
        "oneiric_refreshes_total",
        "oneiric_manifest_entries",
        "oneiric_signature_failures_total",
        "oneiric_ready",
        "process_resident_memory_bytes",
    ] {
        assert!(names.contains(want), "missing {want}");
    }
    assert_eq!(
        sample(&scrape, "oneiric_candidates", &[("domain", "adapter")]),
        Some(2.0)
    );
}

#[test]
fn control_socket_swap_pause_drain_and_crash_safety() {
    let sb = Sandbox::new();
    // A unix-socket probe target: removing it is a certain "down", unlike a freed TCP port.
    let sock = sb.path("probe.sock");
    let probe = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    sb.write(
        "etc/lifecycle.yml",
        &format!(
            "probes: {{unix_directories: [\"{}\"]}}\n",
            sb.dir.path().display()
        ),
    );
    sb.write(
        "etc/manifest.yaml",
        &format!("entries:\n  - {{domain: adapter, key: cache, provider: redis, factory: f, priority: 5}}\n  - {{domain: adapter, key: cache, provider: memory, factory: f, health: {{unix: \"{}\", timeout_seconds: 1}}}}\n  - {{domain: adapter, key: db, provider: pg, factory: f, health: {{tcp: \"127.0.0.1:1\", timeout_seconds: 1}}}}\n", sock.display()),
    );
    let mut svc = Service::start(&sb, None, None, &[]);
    assert_eq!(resolve(&svc), "redis");
    let o = sb.run(&["swap", "adapter", "cache", "memory"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("via running service"), "{}", stdout(&o));
    assert_eq!(resolve(&svc), "memory");
    drop(probe);
    std::fs::remove_file(&sock).unwrap();
    let o = sb.run(&["swap", "adapter", "cache", "redis"]);
    assert_eq!(code(&o), 0);
    let o = sb.run(&["swap", "adapter", "cache", "memory"]);
    assert_eq!(code(&o), 6, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("rolled back to redis"),
        "{}",
        stderr(&o)
    );
    assert_eq!(resolve(&svc), "redis");
    assert_eq!(
        code(&sb.run(&["pause", "adapter", "cache", "--note", "incident"])),
        0
    );
    assert_eq!(code(&sb.run(&["drain", "adapter", "db"])), 0);
    let o = sb.run(&["swap", "adapter", "cache", "memory", "--force"]);
    assert_eq!(code(&o), 6);
    assert!(stderr(&o).contains("paused"), "{}", stderr(&o));
    // The activation of db failed at startup (probe down): recorded as failed.
    let (_, metrics) = http(svc.port, "GET", "/metrics");
    // The series exists from the start (at 0); the failed activation must have counted.
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("oneiric_swaps_total{domain=\"adapter\",result=\"failure\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{metrics}");

    // kill -9 and restart: pause, drain, pin and lifecycle history all survive.
    svc.signal("KILL");
    svc.wait_exit(Duration::from_secs(5));
    let svc = Service::start(&sb, None, None, &[]);
    assert_eq!(resolve(&svc), "redis");
    let o = sb.run(&["activity", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.path("state/lifecycle_status.json")).unwrap())
            .unwrap();
    assert_eq!(status["keys"]["adapter/cache"]["pinned"], "redis");
    assert!(
        status["keys"]["adapter/cache"]["swaps_failed"]
            .as_u64()
            .unwrap()
            >= 1
    );
    drop(svc);
}

#[test]
fn kill_during_writes_never_corrupts_state() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    for round in 0..3 {
        let mut svc = Service::start(&sb, None, None, &[]);
        // Hammer state-changing requests, then kill -9 in the middle of them.
        let sbp = sb.dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            for i in 0..30 {
                let mut c = std::process::Command::new(BIN);
                c.env_clear()
                    .env("ONEIRIC_CONFIG", sbp.join("etc"))
                    .env("ONEIRIC_STATE_DIR", sbp.join("state"))
                    .env("ONEIRIC_RUNTIME_DIR", sbp.join("run"))
                    .args([
                        "swap",
                        "adapter",
                        "cache",
                        if i % 2 == 0 { "fallback" } else { "redis" },
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                let _ = c.status();
            }
        });
        std::thread::sleep(Duration::from_millis(150 + 50 * round));
        svc.signal("KILL");
        svc.wait_exit(Duration::from_secs(5));
        let _ = writer.join();
        let bytes = std::fs::read(sb.path("state/lifecycle_status.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("status file is whole JSON");
        let o = sb.run(&["activity"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let svc = Service::start(&sb, None, None, &[]);
    assert!(["redis", "fallback"].contains(&resolve(&svc).as_str()));
}

#[test]
fn startup_fails_cleanly_on_bad_config() {
    let sb = Sandbox::new();
    sb.write("etc/manifest.yaml", "entries: [");
    let mut c = sb.cmd(&["orchestrate", "--http-port", &free_port().to_string()]);
    c.env("NOTIFY_SOCKET", sb.path("nonexistent.sock"));
    let o = run_with_timeout(c, Duration::from_secs(20));
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("manifest.yaml"), "{}", stderr(&o));
}

#[test]
fn slow_requests_are_cut_off() {
    use std::io::{Read, Write};
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let svc = Service::start(&sb, None, None, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", svc.port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // The header-read timeout (10 s) closes the connection; the service keeps serving others.
    assert!(start.elapsed() < Duration::from_secs(15), "not cut off");
    assert_eq!(http(svc.port, "GET", "/healthz").0, 200);
}

/// Starts `oneiric orchestrate` the way systemd starts a socket-activated service: the
/// listeners at fd 3.., `LISTEN_FDS`/`LISTEN_FDNAMES`, and `LISTEN_PID` set to the service's
/// own PID (exec through sh, whose `$$` the service inherits).
fn start_activated(
    sb: &Sandbox,
    fds: &[(&str, std::os::fd::RawFd)],
    extra: &[&str],
    notify: Option<&std::path::Path>,
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let names: Vec<&str> = fds.iter().map(|(n, _)| *n).collect();
    let sources: Vec<std::os::fd::RawFd> = fds.iter().map(|(_, fd)| *fd).collect();
    let mut shell = format!(
        "LISTEN_PID=$$ LISTEN_FDS={} LISTEN_FDNAMES={} exec {BIN} orchestrate",
        fds.len(),
        names.join(":")
    );
    for a in extra {
        shell.push(' ');
        shell.push_str(a);
    }
    let template = sb.cmd(&[]);
    let mut cmd = std::process::Command::new("sh");
    cmd.env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    if let Some(n) = notify {
        cmd.env("NOTIFY_SOCKET", n);
    }
    cmd.arg("-c")
        .arg(shell)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(sb.path("service.log"))
                .expect("log"),
        ));
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. Sources are
    // first moved above the targets so that placing one cannot overwrite another, and dup2
    // onto a different number clears FD_CLOEXEC as exec needs.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = Vec::with_capacity(sources.len());
            for fd in &sources {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().expect("spawn service")
}

fn wait_log(sb: &Sandbox, needle: &str, n: usize) -> bool {
    poll_until(Duration::from_secs(20), || {
        std::fs::read_to_string(sb.path("service.log"))
            .unwrap_or_default()
            .matches(needle)
            .count()
            >= n
    })
}

fn stop(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let done = poll_until(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(done, "service did not stop on SIGTERM");
}

/// A client that connects while no process serves the port: the request waits in the
/// listening socket's backlog, which systemd (or the fd store) keeps open.
fn queue_request(port: u16, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    c.write_all(request.as_bytes()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c
}

fn read_answer(mut c: std::net::TcpStream) -> String {
    use std::io::Read;
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn inherited_sockets_are_served_and_survive_a_restart() {
    use std::os::fd::AsRawFd;
    let sb = Sandbox::new();
    settings(&sb, "redis");
    // What systemd's oneiric.socket holds: the HTTP listener, the control socket, and one
    // socket the service does not serve (closed and logged).
    let http_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http_l.local_addr().unwrap().port();
    let control = std::os::unix::net::UnixListener::bind(sb.path("run/control.sock")).unwrap();
    let stray = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fds = [
        ("http", http_l.as_raw_fd()),
        ("control", control.as_raw_fd()),
        ("metrics-extra", stray.as_raw_fd()),
    ];
    let port_arg = port.to_string();
    let args = ["--http-port", port_arg.as_str(), "--refresh-interval", "1"];

    // A client that connects before the service exists waits in the backlog, and is
    // answered once the service is up: no refusal.
    let early = queue_request(port, "/healthz");
    let mut first = start_activated(&sb, &fds, &args, None);
    let answer = read_answer(early);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(wait_log(
        &sb,
        "listening on sockets passed by systemd: http from the socket unit, control from the socket unit",
        1
    ));
    assert!(wait_log(
        &sb,
        "closed a passed socket named \"metrics-extra\"",
        1
    ));
    let o = sb.run(&["status"]);
    assert_eq!(
        code(&o),
        0,
        "status over the passed control socket: {}",
        stderr(&o)
    );
    let (status, body) = http(port, "GET", "/v1/resolve/adapter/cache");
    assert_eq!(status, 200, "{body}");

    // Stopped: the passed control socket's path stays (systemd owns it), and a client that
    // connects while no service runs is answered by the next one.
    stop(&mut first);
    assert!(sb.path("run/control.sock").exists());
    let between = queue_request(port, "/v1/resolve/adapter/cache");
    let mut second = start_activated(&sb, &fds, &args, None);
    let answer = read_answer(between);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("redis"), "{answer}");
    stop(&mut second);
}

#[test]
fn inherited_sockets_that_disagree_with_the_settings_are_refused() {
    use std::os::fd::AsRawFd;
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = free_port().to_string();
    let mut child = start_activated(
        &sb,
        &[("http", http.as_raw_fd())],
        &["--http-port", other.as_str()],
        None,
    );
    let mut code = None;
    poll_until(Duration::from_secs(20), || match child.try_wait() {
        Ok(Some(st)) => {
            code = st.code();
            true
        }
        _ => false,
    });
    let log = std::fs::read_to_string(sb.path("service.log")).unwrap_or_default();
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("ListenStream="), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{other}")), "{log}");
    // Nothing was bound in the passed socket's place, and the control socket it would have
    // bound itself is not left behind by the refused start.
    assert!(!sb.path("run/control.sock").exists(), "{log}");
}

/// systemd's side of `FDSTORE=1`: a notify socket that keeps the descriptors sent with
/// SCM_RIGHTS under their `FDNAME=` and drops them on `FDSTOREREMOVE=1`.
struct FdStore {
    path: std::path::PathBuf,
    sock: std::os::unix::net::UnixDatagram,
    fds: Vec<(String, std::os::fd::OwnedFd)>,
    messages: Vec<String>,
}

impl FdStore {
    fn new(sb: &Sandbox) -> Self {
        let path = sb.path("fdstore-notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        Self {
            path,
            sock,
            fds: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Takes every message sent so far.
    fn drain(&mut self) {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        loop {
            let mut buf = [0u8; 4096];
            let mut control = [0u64; 64];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain data; every pointer set below outlives the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: msg points at live buffers of the sizes it states.
            let n = unsafe {
                libc::recvmsg(
                    self.sock.as_raw_fd(),
                    &mut msg,
                    libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
                )
            };
            if n < 0 {
                return;
            }
            let mut got = Vec::new();
            // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled in.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                        let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                        let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                            / std::mem::size_of::<libc::c_int>();
                        for i in 0..count {
                            got.push(OwnedFd::from_raw_fd(*data.add(i)));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("FDNAME="))
                .unwrap_or("stored")
                .to_string();
            if text.lines().any(|l| l == "FDSTORE=1") {
                self.fds
                    .extend(got.into_iter().map(|fd| (name.clone(), fd)));
            } else if text.lines().any(|l| l == "FDSTOREREMOVE=1") {
                self.fds.retain(|(n, _)| *n != name);
            }
            self.messages.push(text);
        }
    }

    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.fds.iter().map(|(n, _)| n.clone()).collect();
        n.sort();
        n
    }

    fn passed(&self) -> Vec<(&str, std::os::fd::RawFd)> {
        use std::os::fd::AsRawFd;
        self.fds
            .iter()
            .map(|(n, fd)| (n.as_str(), fd.as_raw_fd()))
            .collect()
    }
}

fn wait_healthy(port: u16) -> bool {
    poll_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/healthz").0 == 200
    })
}

#[test]
fn own_listeners_go_to_the_fd_store_and_come_back_after_a_restart() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let mut store = FdStore::new(&sb);
    let port = free_port();
    let port_arg = port.to_string();
    let args = ["--http-port", port_arg.as_str(), "--refresh-interval", "1"];

    // Started without passed sockets (oneiric.socket masked): it binds its own and stores them.
    let mut first = start_activated(&sb, &[], &args, Some(&store.path));
    assert!(wait_healthy(port), "first start never answered");
    store.drain();
    assert_eq!(
        store.names(),
        ["stored-control", "stored-http"],
        "{:?}",
        store.messages
    );

    // Stopped: the stored sockets keep listening (the store holds them), the control socket's
    // path stays, and a client connecting now waits in the backlog.
    stop(&mut first);
    assert!(sb.path("run/control.sock").exists());
    let between = queue_request(port, "/v1/resolve/adapter/cache");

    // Restarted with the store's sockets, as systemd passes them: the queued client is
    // answered, and nothing is stored twice.
    let before = store.messages.len();
    let passed = store.passed();
    let mut second = start_activated(&sb, &passed, &args, Some(&store.path));
    let answer = read_answer(between);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(wait_log(
        &sb,
        "listening on sockets passed by systemd: http from the fd store, control from the fd store",
        1
    ));
    assert_eq!(
        code(&sb.run(&["status"])),
        0,
        "status over the stored control socket"
    );
    store.drain();
    assert!(
        store.messages[before..]
            .iter()
            .all(|m| !m.contains("FDSTORE=1")),
        "{:?}",
        &store.messages[before..]
    );
    stop(&mut second);

    // The settings moved the port: the stored listener is dropped from the store and the
    // service binds and stores the new one.
    let moved = free_port();
    let moved_arg = moved.to_string();
    let passed = store.passed();
    let mut third = start_activated(
        &sb,
        &passed,
        &["--http-port", moved_arg.as_str(), "--refresh-interval", "1"],
        Some(&store.path),
    );
    assert!(wait_healthy(moved), "no answer on the moved port");
    assert!(wait_log(&sb, "dropping the stored http listener", 1));
    store.drain();
    assert!(
        store
            .messages
            .iter()
            .any(|m| m.contains("FDSTOREREMOVE=1") && m.contains("FDNAME=stored-http")),
        "{:?}",
        store.messages
    );
    let http_fd = store
        .fds
        .iter()
        .find(|(n, _)| n == "stored-http")
        .map(|(_, fd)| fd.try_clone().unwrap());
    let l = std::net::TcpListener::from(http_fd.expect("a new stored-http"));
    assert_eq!(l.local_addr().unwrap().port(), moved);
    stop(&mut third);
}

/// A service process killed when a failed assertion unwinds past it (a survivor would hold
/// the port, and the build lock a test runner may hold).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many starts so far answered from a saved state.
fn restores(sb: &Sandbox) -> usize {
    std::fs::read_to_string(sb.path("service.log"))
        .unwrap_or_default()
        .matches("answering from the state saved at")
        .count()
}

/// Connects as soon as the port listens and asks once: the answer and whether the service
/// had sent READY=1 by then.
fn first_answer(port: u16, path: &str, notify: &Notify, readies_before: usize) -> (String, bool) {
    let mut queued = None;
    assert!(
        poll_until(Duration::from_secs(20), || {
            queued = std::net::TcpStream::connect(("127.0.0.1", port)).ok();
            queued.is_some()
        }),
        "port {port} never listened"
    );
    drop(queued);
    let answer = read_answer(queue_request(port, path));
    (answer, notify.count("READY=1") > readies_before)
}

#[test]
fn a_restart_answers_from_the_saved_state_before_its_first_load() {
    let sb = Sandbox::new();
    // Probes hang for their whole timeout (a peer that never answers), and adapter/queue's
    // never succeeds, so every first load takes at least that long.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let manifest = |provider: &str| {
        format!(
            "source: t\nentries:\n  - {{domain: adapter, key: cache, provider: {provider}, factory: f, priority: 5, health: {{http: \"http://127.0.0.1:{silent_port}/\", timeout_seconds: 3}}}}\n  - {{domain: adapter, key: cache, provider: fallback, factory: f, health: {{http: \"http://127.0.0.1:{silent_port}/f\", timeout_seconds: 3}}}}\n  - {{domain: adapter, key: queue, provider: nats, factory: f, health: {{http: \"http://127.0.0.1:{silent_port}/q\", timeout_seconds: 3}}}}\n"
        )
    };
    sb.write("etc/manifest.yaml", &manifest("redis"));
    let notify = Notify::new(sb.dir.path());
    let port = free_port();
    let port_arg = port.to_string();
    let args = ["--http-port", port_arg.as_str(), "--refresh-interval", "60"];
    let saved = sb.path("state/served_snapshot.json");

    // No saved state yet: the first answer comes with the first load.
    let mut svc = Running(start_activated(&sb, &[], &args, Some(&notify.path)));
    let (answer, _) = first_answer(port, "/v1/resolve/adapter/cache", &notify, 0);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"redis\""),
        "{answer}"
    );
    assert_eq!(restores(&sb), 0, "restored without a saved state");
    assert!(poll_until(Duration::from_secs(10), || saved.exists()));
    stop(&mut svc.0);
    // The unit's pre-start check sees the inputs of the last good load and does not parse them
    // again; by hand (`health`) it is the full check.
    let o = sb.run(&["health", "--pre-start"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("unchanged since the last good load"),
        "{}",
        stdout(&o)
    );
    let o = sb.run(&["health"]);
    assert!(!stdout(&o).contains("unchanged since"), "{}", stdout(&o));

    // Restarted with nothing changed: answered from the saved state while the first load
    // still waits on the probe, and /v1/status says so.
    let readies = notify.count("READY=1");
    let mut svc = Running(start_activated(&sb, &[], &args, Some(&notify.path)));
    let (answer, ready) = first_answer(port, "/v1/resolve/adapter/cache", &notify, readies);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"redis\""),
        "{answer}"
    );
    assert!(!ready, "the answer waited for the first load: {answer}");
    let (_, status) = http(port, "GET", "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["restored_from_unix"].is_u64(), "{status}");
    assert!(
        status["status"]
            .as_str()
            .unwrap()
            .contains("restored from the state saved at"),
        "{status}"
    );
    assert!(notify.wait_for("READY=1", readies + 1, Duration::from_secs(20)));
    let (_, status) = http(port, "GET", "/v1/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["restored_from_unix"].is_null(), "{status}");
    stop(&mut svc.0);

    // An operator pin made while the service was down holds in the restored answer: the
    // saved state has candidates, not winners.
    let o = sb.run(&["swap", "adapter", "cache", "fallback", "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let readies = notify.count("READY=1");
    let mut svc = Running(start_activated(&sb, &[], &args, Some(&notify.path)));
    let (answer, ready) = first_answer(port, "/v1/resolve/adapter/cache", &notify, readies);
    assert!(answer.contains("\"fallback\""), "{answer}");
    assert!(!ready, "{answer}");
    assert!(notify.wait_for("READY=1", readies + 1, Duration::from_secs(20)));
    stop(&mut svc.0);
    let o = sb.run(&["swap", "adapter", "cache", "--unpin"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // A manifest edited while it was down: the saved state is not served (it no longer says
    // what the files say), and the log names the file; the pre-start check parses it again.
    sb.write("etc/manifest.yaml", &manifest("memcached"));
    let o = sb.run(&["health", "--pre-start"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("unchanged since"), "{}", stdout(&o));
    let readies = notify.count("READY=1");
    let mut svc = Running(start_activated(&sb, &[], &args, Some(&notify.path)));
    let (answer, _) = first_answer(port, "/v1/resolve/adapter/cache", &notify, readies);
    assert!(answer.contains("\"memcached\""), "{answer}");
    assert_eq!(
        restores(&sb),
        2,
        "restored a state the files no longer describe"
    );
    assert!(wait_log(&sb, "not answering from the saved state", 1));
    assert!(wait_log(
        &sb,
        "manifest.yaml: changed since it was saved",
        1
    ));
    stop(&mut svc.0);

    // A damaged file is reported with its place and the service starts as without one.
    std::fs::write(&saved, "{\"format\":1,").unwrap();
    let readies = notify.count("READY=1");
    let mut svc = Running(start_activated(&sb, &[], &args, Some(&notify.path)));
    let (answer, _) = first_answer(port, "/v1/resolve/adapter/cache", &notify, readies);
    assert!(answer.contains("\"memcached\""), "{answer}");
    assert!(wait_log(&sb, "served_snapshot.json:1:", 1));
    stop(&mut svc.0);
    drop(silent);
}

#[test]
fn manifest_text_reaches_status_and_the_terminal_on_one_line_without_escapes() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let notify = Notify::new(sb.dir.path());
    let mut svc = Service::start(&sb, Some(&notify), None, &[]);
    assert!(notify.wait_for("READY=1", 1, Duration::from_secs(10)));

    // A reload that fails on a manifest whose key holds a newline, an assignment and a
    // terminal escape: the failure is in STATUS=, on one line, with nothing injected.
    sb.write(
        "etc/manifest.yaml",
        "{\"entries\": [], \"a\\nMAINPID=1\\u001b[2J\": 1, \"a\\nMAINPID=1\\u001b[2J\": 2}\n",
    );
    let readies = notify.count("READY=1");
    svc.signal("HUP");
    assert!(notify.wait_for("READY=1", readies + 1, Duration::from_secs(10)));
    let last = notify.all().last().cloned().unwrap_or_default();
    assert!(
        last.contains("FAILED") && last.contains("duplicate key"),
        "{last:?}"
    );
    assert!(
        !last.lines().any(|l| l.starts_with("MAINPID=")) && !last.contains('\u{1b}'),
        "{last:?}"
    );
    svc.signal("TERM");
    assert_eq!(svc.wait_exit(Duration::from_secs(15)), Some(0));

    // The CLI: a skipped entry's reason (with a newline) stays one line of `check`, and a
    // manifest origin holding an escape sequence is printed escaped by `list`.
    settings(&sb, "redis");
    let evil = sb.write(
        "evil\u{1b}]0;pwned\u{7}.yaml",
        "entries:\n  - {domain: adapter, key: k, provider: p, factory: f, health: {tcp: \"x\\nMAINPID=1\"}}\n  - {domain: adapter, key: q, provider: p, factory: f}\n",
    );
    let evil = evil.to_str().unwrap();
    for args in [
        vec!["--manifest", evil, "check"],
        vec!["--manifest", evil, "list"],
    ] {
        let o = sb.run(&args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}'),
            "{args:?}: {out:?}"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("MAINPID=")),
            "{args:?}: {out:?}"
        );
    }
    let list = stdout(&sb.run(&["--manifest", evil, "list"]));
    assert!(list.contains("evil\\u{1b}]0;pwned\\u{7}.yaml"), "{list}");
}

#[test]
fn a_page_that_rebinds_its_name_to_the_listener_reads_nothing() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    sb.write("etc/http.yml", "allowed_hosts: [prometheus.example.org]\n");
    let svc = Service::start(&sb, None, None, &[]);
    let get = |host: &str, path: &str| {
        raw_http(
            svc.port,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    let (status, body) = get("rebind.attacker.example:9090", "/v1/status");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("http.allowed_hosts"), "{body}");
    assert_eq!(get("rebind.attacker.example", "/metrics").0, 403);
    assert_eq!(get("rebind.attacker.example", "/healthz").0, 200);
    let port = svc.port.to_string();
    assert_eq!(
        get(&format!("127.0.0.1:{port}"), "/v1/resolve/adapter/cache").0,
        200
    );
    assert_eq!(get("prometheus.example.org", "/metrics").0, 200);
}

/// One peer that opens 2 000 connections, pipelines requests on each and never reads an
/// answer holds at most its share of the slots: a second peer's `/healthz` is still answered
/// at once. (The cap is per address: the second client connects from 127.0.0.2.)
#[test]
fn two_thousand_pipelining_connections_that_never_read_do_not_starve_another_peer() {
    use std::io::{Read, Write};
    // The test and the service it starts need more than the usual 1024 descriptors.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer, then the same struct back.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max.min(65_536);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 4_096,
        "RLIMIT_NOFILE hard limit {} is too low",
        lim.rlim_max
    );
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let svc = Service::start(&sb, None, None, &[]);
    let pipelined = format!(
        "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        svc.port
    )
    .repeat(64);
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], svc.port));
    let mut hogs = Vec::new();
    let t0 = Instant::now();
    for _ in 0..2_000 {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        // A small receive window: the service's answers stall after a few kilobytes.
        let _ = sock.set_recv_buffer_size(4096);
        if sock.connect(&server.into()).is_err() {
            continue;
        }
        let mut c: std::net::TcpStream = sock.into();
        c.set_nonblocking(true).unwrap();
        // Requests, about 250, whose answers outgrow the receive window many times over:
        // the service's writes stall with the rest unread. Over the cap the service closes
        // the connection and a write fails.
        let mut sent = 0;
        while sent < 16 << 10 {
            match c.write(pipelined.as_bytes()) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        hogs.push(c);
    }
    // Let the service answer what fits and stall on the rest.
    std::thread::sleep(Duration::from_secs(1));
    let held = std::fs::read_dir(format!("/proc/{}/fd", svc.pid()))
        .unwrap()
        .count();
    eprintln!(
        "{} connections opened in {:?}; the service holds {held} descriptors",
        hogs.len(),
        t0.elapsed()
    );
    assert!(
        hogs.len() >= 1_500,
        "only {} connections opened",
        hogs.len()
    );
    assert!(held > 256, "the service holds only {held} descriptors");
    let healthz = || {
        let start = Instant::now();
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 2], 0)).into())
            .expect("bind 127.0.0.2");
        sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], svc.port)).into())
            .expect("connect");
        let mut c: std::net::TcpStream = sock.into();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        start.elapsed()
    };
    let cpu = cpu_seconds(svc.pid());
    let mut times: Vec<Duration> = (0..9).map(|_| healthz()).collect();
    let cpu = cpu_seconds(svc.pid()) - cpu;
    times.sort();
    // Starved, the second peer's connection would be closed unanswered (the assertion in
    // `healthz`). How fast the answer is belongs to the benchmarks, not to a timed test;
    // printed here for the record (the target: under 100 ms).
    eprintln!(
        "/healthz from a second peer beside 2000 hogs: median {:?}, worst {:?}; service CPU {cpu:.2} s",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    drop(hogs);
}

/// utime + stime of a process, in seconds (/proc/PID/stat, clock ticks of 1/100 s).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn out_of_file_descriptors_the_accept_loop_pauses_instead_of_spinning() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let svc = Service::start(&sb, None, None, &[]);
    let pid = svc.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // A few descriptors above what it holds: the connections below use them up.
    let limit = open + 8;
    let o = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .output()
        .expect("prlimit (util-linux)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conns: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", svc.port)).expect("connect"))
        .collect();
    let log = || std::fs::read_to_string(sb.path("service.log")).unwrap_or_default();
    let count = |needle: &str| log().matches(needle).count();
    assert!(
        poll_until(Duration::from_secs(10), || count("accept failed") >= 1),
        "no accept failure logged: {}",
        log()
    );
    // A loop retrying at once would burn about the whole window on one core.
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let burnt = cpu_seconds(pid) - before;
    assert!(
        burnt < 0.5,
        "{burnt:.2} s of CPU in 2 s while out of descriptors"
    );
    assert_eq!(
        count("accept failed"),
        1,
        "said once per run, not per failure"
    );
    drop(conns);
    assert!(
        poll_until(Duration::from_secs(20), || http(
            svc.port, "GET", "/healthz"
        )
        .0 == 200),
        "no answer after the descriptors came back"
    );
    assert!(
        poll_until(Duration::from_secs(10), || count("accepting again after")
            >= 1),
        "{}",
        log()
    );
}

/// `oneiric ARGS` run by `setpriv` as uid/gid 65534, from a copy of the binary that user can
/// execute (the build tree may sit under /root).
fn as_nobody(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    as_user(sb, 65534, &[], args)
}

/// Runs the CLI as `uid` (group `uid`) with exactly the supplementary `groups`, as a login of
/// that user in those groups would.
fn as_user(sb: &Sandbox, uid: u32, groups: &[u32], args: &[&str]) -> std::process::Output {
    let copy = sb.path("oneiric-for-nobody");
    if !copy.exists() {
        std::fs::copy(BIN, &copy).expect("copy the binary");
    }
    let template = sb.cmd(&[]);
    let mut c = std::process::Command::new("setpriv");
    c.env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        c.arg(format!("--groups={}", list.join(",")));
    }
    c.arg(&copy).args(args).stdin(std::process::Stdio::null());
    run_with_timeout(c, Duration::from_secs(60))
}

#[test]
fn the_control_socket_lets_its_group_read_and_only_root_change() {
    use std::os::unix::fs::PermissionsExt;
    if oneiric::peer::own_uid() != 0 {
        eprintln!(
            "SKIPPED: connecting as another user takes root (CI runs this as root); \
             the rule itself is tested in control::tests"
        );
        return;
    }
    let sb = Sandbox::new();
    settings(&sb, "redis");
    for d in ["", "etc", "state", "cache", "run"] {
        std::fs::set_permissions(sb.path(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let svc = Service::start(&sb, None, None, &[]);
    // The socket's mode lets group `oneiric` connect; here gid 65534 plays that group.
    std::os::unix::fs::chown(sb.path("run/control.sock"), None, Some(65534)).unwrap();

    // A reader: status answers from the service.
    let o = as_nobody(&sb, &["status", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v["service"]["generation"].is_u64(), "{v}");

    // Neither root nor the service's user: every change is refused, nothing changes.
    for args in [
        &["pause", "adapter", "cache"][..],
        &["swap", "adapter", "cache", "fallback"],
        &["reload"],
    ] {
        let o = as_nobody(&sb, args);
        assert_eq!(code(&o), 6, "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("permission denied") && e.contains("uid 65534") && e.contains("sudo"),
            "{e}"
        );
    }
    assert_eq!(resolve(&svc), "redis");
    let o = sb.run(&["activity", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]", "a refused pause left a flag");

    // Root (the test) changes it.
    let o = sb.run(&["pause", "adapter", "cache", "--note", "by root"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Every change request is on record with who sent it, newest first.
    let o = sb.run(&["activity", "--changes", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let log: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = log.as_array().unwrap();
    let summary: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["op"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
                r["uid"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    let row = |op: &str, outcome: &str, uid| (op.to_string(), outcome.to_string(), uid);
    assert_eq!(
        summary,
        [
            row("pause", "ok", 0),
            row("reload", "refused", 65534),
            row("swap", "refused", 65534),
            row("pause", "refused", 65534),
        ],
        "{log}"
    );
    assert_eq!(rows[2]["target"], "adapter/cache");
    assert!(rows[1]["pid"].as_u64().is_some_and(|p| p > 0), "{log}");
    let journal = std::fs::read_to_string(sb.path("service.log")).unwrap();
    assert!(
        journal.contains("control: swap adapter/cache by uid 65534")
            && journal.contains("refused: not allowed to change the service")
            && journal.contains("control: pause adapter/cache by uid 0"),
        "{journal}"
    );
    drop(svc);
}

/// The three kinds of local user the README documents, against the two sockets as the packages
/// set them up (the group and mode systemd gives each): root changes through either; a member
/// of group `oneiric` reads through control.sock and is refused every change; a member of
/// `oneiric-admin` reads and changes through admin.sock, and is in no group that reaches
/// control.sock. The journal and the control log name each peer and the socket it used.
#[test]
fn root_the_oneiric_group_and_the_admin_group_have_exactly_their_documented_rights() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    if oneiric::peer::own_uid() != 0 {
        eprintln!(
            "SKIPPED: connecting as other users takes root (CI runs this as root); \
             the rule itself is tested in control::tests"
        );
        return;
    }
    // Ids in no user database: the group `oneiric` and `oneiric-admin` stand-ins and one user
    // in each.
    const GROUP_ONEIRIC: u32 = 61300;
    const GROUP_ADMIN: u32 = 61301;
    const READER: u32 = 61310;
    const ADMIN: u32 = 61311;
    let sb = Sandbox::new();
    settings(&sb, "redis");
    for d in ["", "etc", "state", "cache"] {
        std::fs::set_permissions(sb.path(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(sb.path("run"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let socket = |name: &str, gid: u32| {
        let path = sb.path(&format!("run/{name}"));
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        l
    };
    let control = socket("control.sock", GROUP_ONEIRIC);
    let admin = socket("admin.sock", GROUP_ADMIN);
    let http_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http_l.local_addr().unwrap().port();
    // As the two socket units pass them: oneiric.socket's under its unit's name.
    let fds = [
        ("oneiric.socket", http_l.as_raw_fd()),
        ("oneiric.socket", control.as_raw_fd()),
        ("admin", admin.as_raw_fd()),
    ];
    let port_arg = port.to_string();
    let mut service = start_activated(&sb, &fds, &["--http-port", port_arg.as_str()], None);
    assert!(wait_healthy(port), "service did not answer");
    let served_provider = |_: &Sandbox| {
        let (status, body) = http(port, "GET", "/v1/resolve/adapter/cache");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["provider"].as_str().unwrap_or_default().to_string()
    };
    let log = || std::fs::read_to_string(sb.path("service.log")).unwrap_or_default();
    assert!(
        log().contains("admin from the socket unit"),
        "the admin socket was not taken: {}",
        log()
    );

    let reader = |args: &[&str]| as_user(&sb, READER, &[GROUP_ONEIRIC], args);
    let admin_user = |args: &[&str]| as_user(&sb, ADMIN, &[GROUP_ADMIN], args);
    let served = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_str(&stdout(o)).unwrap_or_default()
    };

    // Group `oneiric`: reads; every change refused (admin.sock tried first, not reachable),
    // nothing changed.
    let o = reader(&["status", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        served(&o)["service"]["generation"].is_u64(),
        "{}",
        stdout(&o)
    );
    for args in [
        &["pause", "adapter", "cache"][..],
        &["drain", "adapter", "cache"],
        &["swap", "adapter", "cache", "fallback"],
        &["reload"],
    ] {
        let o = reader(args);
        assert_eq!(code(&o), 6, "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("permission denied")
                && e.contains(&format!("uid {READER}"))
                && e.contains("oneiric-admin"),
            "{e}"
        );
    }
    assert_eq!(served_provider(&sb), "redis");

    // Group `oneiric-admin`: reads through admin.sock (control.sock is not its group's) and
    // changes.
    let o = admin_user(&["status", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        served(&o)["service"]["generation"].is_u64(),
        "{}",
        stdout(&o)
    );
    let o = admin_user(&["swap", "adapter", "cache", "fallback"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("via running service"), "{}", stdout(&o));
    assert_eq!(served_provider(&sb), "fallback");
    let o = admin_user(&["pause", "adapter", "cache", "--note", "by the admin group"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = admin_user(&["reload"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // Root: through either socket.
    let o = sb.run(&["pause", "adapter", "cache", "--resume"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = sb.run(&["swap", "adapter", "cache", "--unpin"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(served_provider(&sb), "redis");

    // On record: who, from which process, through which socket.
    let o = sb.run(&["activity", "--changes", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let summary: Vec<(String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["op"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
                r["uid"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    let row = |op: &str, outcome: &str, uid: u32| (op.to_string(), outcome.to_string(), uid as u64);
    assert_eq!(
        summary,
        [
            row("unpin", "ok", 0),
            row("pause", "ok", 0),
            row("reload", "ok", ADMIN),
            row("pause", "ok", ADMIN),
            row("swap", "ok", ADMIN),
            row("reload", "refused", READER),
            row("swap", "refused", READER),
            row("drain", "refused", READER),
            row("pause", "refused", READER),
        ],
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["pid"].as_u64().is_some_and(|p| p > 1)),
        "{rows:?}"
    );
    let journal = log();
    for line in [
        format!("control: swap adapter/cache by uid {ADMIN} (pid "),
        format!("control: pause adapter/cache by uid {READER} (pid "),
        "control: unpin adapter/cache by uid 0 (pid ".to_string(),
    ] {
        assert!(journal.contains(&line), "no {line:?} in {journal}");
    }
    let admin_swap = journal
        .lines()
        .find(|l| l.contains(&format!("control: swap adapter/cache by uid {ADMIN}")))
        .unwrap_or_default();
    assert!(admin_swap.contains("via admin.sock: ok"), "{admin_swap}");
    let refused = journal
        .lines()
        .find(|l| l.contains(&format!("control: swap adapter/cache by uid {READER}")))
        .unwrap_or_default();
    assert!(refused.contains("via control.sock refused"), "{refused}");
    let _ = service.kill();
    let _ = service.wait();
}

/// Reads one response from a kept-alive connection: the head, then `Content-Length` bytes.
/// `None` when the connection closed (or reset) before a whole response came.
fn read_one_response(c: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).ok()?;
    Some(head)
}

#[test]
fn a_stopping_service_answers_the_next_request_of_a_kept_alive_client() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let http_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http_l.local_addr().unwrap().port();
    let control = std::os::unix::net::UnixListener::bind(sb.path("run/control.sock")).unwrap();
    let fds = [
        ("http", http_l.as_raw_fd()),
        ("control", control.as_raw_fd()),
    ];
    let port_arg = port.to_string();
    let args = ["--http-port", port_arg.as_str()];
    let mut service = start_activated(&sb, &fds, &args, None);
    assert!(wait_healthy(port), "service did not answer");

    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = b"GET /v1/resolve/adapter/cache HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    c.write_all(request).unwrap();
    let head = read_one_response(&mut c).expect("the first answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The client is idle when the service is told to stop, as a kept-alive client mostly is;
    // its next request must be answered (and told to reconnect), not met by a closed socket.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status();
    let told = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    let mut asked = 0;
    loop {
        asked += 1;
        c.write_all(request).unwrap();
        let head = read_one_response(&mut c).unwrap_or_else(|| {
            panic!(
                "request {asked} after SIGTERM ({} ms): the connection closed without an answer",
                told.elapsed().as_millis()
            )
        });
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        if head.to_ascii_lowercase().contains("connection: close") {
            break;
        }
        assert!(
            told.elapsed() < Duration::from_secs(10),
            "no `Connection: close` answer 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = poll_until(Duration::from_secs(20), || {
        matches!(service.try_wait(), Ok(Some(_)))
    });
    assert!(done, "service did not stop on SIGTERM");
}

#[test]
fn off_loopback_the_listener_takes_a_named_setting_and_a_token() {
    let sb = Sandbox::new();
    settings(&sb, "redis");
    let refused = |why: &str| {
        let o = sb.run(&["orchestrate", "--http-port", "0"]);
        assert_eq!(code(&o), 3, "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "want `{why}` in {}", stderr(&o));
    };
    sb.write("etc/http.yml", "address: 0.0.0.0\n");
    refused("http.address: `0.0.0.0` is not a loopback address");
    sb.write(
        "etc/http.yml",
        "address: 0.0.0.0\nallow_non_loopback: true\n",
    );
    refused("http.bearer_token_file: required");
    let token_path = sb.path("etc/http-token");
    let http_yml = format!(
        "address: 0.0.0.0\nallow_non_loopback: true\nbearer_token_file: {}\n",
        token_path.display()
    );
    sb.write("etc/http.yml", &http_yml);
    refused("http.bearer_token_file");
    sb.write("etc/http-token", "short\n");
    refused("shorter than 16 characters");

    sb.write("etc/http-token", "s3cret-token-0123456789\n");
    let mut child = sb
        .cmd(&["orchestrate", "--http-port", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(sb.path("service.log")).unwrap())
        .spawn()
        .unwrap();
    let mut port = 0u16;
    let found = poll_until(Duration::from_secs(20), || {
        let log = std::fs::read_to_string(sb.path("service.log")).unwrap_or_default();
        match log.split("HTTP on http://0.0.0.0:").nth(1) {
            Some(rest) => {
                port = rest
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap_or(0);
                port != 0
            }
            None => false,
        }
    });
    assert!(found, "no listener on 0.0.0.0 in the log");
    let ask = |path: &str, auth: &str| {
        raw_http(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    for path in ["/v1/status", "/metrics", "/v1/resolve/adapter/cache"] {
        assert_eq!(ask(path, "").0, 401, "{path} without the token");
        assert_eq!(
            ask(path, "Authorization: Bearer s3cret-token-012345678X\r\n").0,
            401,
            "{path} with a wrong token"
        );
        let (status, body) = ask(path, "Authorization: Bearer s3cret-token-0123456789\r\n");
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(ask("/healthz", "").0, 200);
    let log = std::fs::read_to_string(sb.path("service.log")).unwrap_or_default();
    assert!(!log.contains("s3cret-token"), "the token reached the log");
    stop(&mut child);
}
