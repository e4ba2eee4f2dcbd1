//! A reload whose probes never answer: bounded by `lifecycle.reconcile_deadline`, the watchdog
//! keeps being fed meanwhile, and a swap of another key answers at once.

mod common;

use std::fmt::Write as _;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

const KEYS: usize = 200;
const DEADLINE_S: f64 = 3.0;

/// A listener that accepts connections and never answers them (held until the test ends).
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    let t = std::thread::spawn(move || {
        let mut held = Vec::new();
        let start = Instant::now();
        // Bounded: the test is over well before this.
        while start.elapsed() < Duration::from_secs(120) {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (port, t)
}

#[test]
fn unanswered_probes_are_cut_by_the_deadline_and_block_nothing() {
    let (port, _hole) = black_hole();
    let sb = Sandbox::new();
    sb.write(
        "etc/lifecycle.yml",
        &format!("reconcile_deadline: {DEADLINE_S}\nhealth_timeout: 20\nactivation_timeout: 30\n"),
    );
    let mut m = String::from("source: t\nentries:\n");
    m.push_str("  - {domain: adapter, key: free, provider: a, factory: f, priority: 2}\n");
    m.push_str("  - {domain: adapter, key: free, provider: b, factory: f, priority: 1}\n");
    for i in 0..KEYS {
        let _ = writeln!(
            m,
            "  - {{domain: service, key: k{i}, provider: p, factory: f, health: {{http: \"http://127.0.0.1:{port}/k{i}\"}}}}"
        );
    }
    sb.write("etc/manifest.yaml", &m);
    let notify = Notify::new(sb.dir.path());
    // WATCHDOG_USEC 1 s: a ping every 500 ms while the loop progresses.
    let _svc = Service::start(&sb, Some(&notify), Some(1_000_000), &[]);
    assert!(notify.wait_for("READY=1", 1, Duration::from_secs(30)));

    // `oneiric reload` waits for the reload; its probes all hang (20 s timeout each).
    let reload_cmd = sb.cmd(&["reload"]);
    let started = Instant::now();
    let reload = std::thread::spawn(move || {
        let o = run_with_timeout(reload_cmd, Duration::from_secs(60));
        (o, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));

    // Meanwhile a swap of another key is answered at once: no waiting behind those probes.
    let t = Instant::now();
    let o = sb.run(&["swap", "adapter", "free", "b"]);
    let swap_took = t.elapsed();
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    assert!(
        swap_took < Duration::from_secs(1),
        "swap took {swap_took:?} during the reload"
    );

    let (o, reload_took) = reload.join().expect("reload thread");
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{KEYS} probe(s) cut by the deadline")),
        "{}",
        stdout(&o)
    );
    let limit = Duration::from_secs_f64(DEADLINE_S + 3.0);
    assert!(
        reload_took < limit,
        "reload took {reload_took:?}, more than the deadline + 3 s"
    );
    // The watchdog was fed while the reload ran.
    let pings = notify
        .messages
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, m)| {
            *at >= started && at.duration_since(started) < reload_took && m.contains("WATCHDOG=1")
        })
        .count();
    assert!(
        pings >= 3,
        "{pings} watchdog pings during a {reload_took:?} reload"
    );
    // The swap's pin survived the reload that was running when it landed.
    let (status, body) = http(_svc.port, "GET", "/v1/resolve/adapter/free");
    assert_eq!(status, 200);
    assert!(body.contains("\"provider\":\"b\""), "{body}");
}
