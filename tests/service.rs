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
    let first = notify.all();
    assert!(
        first[0].contains("READY=1")
            && first[0].contains("STATUS=Serving 1 keys from 2 candidates"),
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
    assert!(!sb.path("run/control.sock").exists());
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

#[test]
fn inherited_sockets_are_served_and_survive_a_restart() {
    use std::io::{Read, Write};
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
    let mut early = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    early
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut first = start_activated(&sb, &fds, &args);
    let mut answer = String::new();
    early.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(wait_log(
        &sb,
        "listening on sockets passed by systemd: http, control",
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
    let mut between = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    between
        .write_all(b"GET /v1/resolve/adapter/cache HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    between
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut second = start_activated(&sb, &fds, &args);
    let mut answer = String::new();
    between.read_to_string(&mut answer).unwrap();
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
