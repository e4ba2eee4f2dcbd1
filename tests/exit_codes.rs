//! Every kind of load failure ends with the same exit code on every path: `check` offline,
//! the service's start, and `oneiric reload` answered by the running service over its control
//! socket. The codes are the ones `errors::load_error_table` (and README) document.

mod common;

use std::time::Duration;

use common::*;

const KEY5: &str = "bnoc3Smwt4/ROvTFWY/v9O8qlxZuPKby5Pv8zYBQW/E=";
const GOOD: &str =
    "source: t\nentries:\n  - {domain: adapter, key: cache, provider: redis, factory: f}\n";

fn fixture(rel: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .expect("fixture")
}

/// Turns a good sandbox into one whose load fails in the given way.
fn break_it(sb: &Sandbox, case: usize) {
    match case {
        0 => {
            sb.write("etc/http.yml", "enabled: true\nbogus_field: 1\n");
        }
        1 => {
            sb.write("etc/manifest.yaml", "entries: [ {domain: adapter\n");
        }
        2 => {
            sb.write(
                "etc/manifest.yaml",
                &fixture("signatures/tampered-signed.json"),
            );
        }
        3 => {
            // Port 1 on loopback refuses at once: never fetched, nothing cached.
            sb.write(
                "etc/remote.yml",
                "manifest_url: http://127.0.0.1:1/manifest.json\nallow_http: true\nenabled: true\nmax_retries: 0\n",
            );
        }
        _ => unreachable!(),
    }
}

/// A good sandbox: its manifest signed with key5, which it trusts (with trusted keys set, an
/// unsigned manifest would itself be a signature failure).
fn sandbox() -> Sandbox {
    let mut sb = Sandbox::new();
    let src = sb.write("good.yaml", GOOD);
    let out = sb.path("etc/manifest.yaml");
    sign_file(&sb, &src, &fixture_path("signatures/key5.seed"), &out, &[]);
    sb.env
        .push(("ONEIRIC_TRUSTED_PUBLIC_KEYS".into(), KEY5.into()));
    sb
}

#[test]
fn each_failure_has_one_code_on_every_path() {
    let table = oneiric::errors::load_error_table();
    assert_eq!(table.len(), 4, "a new kind needs a case here");
    for (case, (what, exit)) in table.iter().enumerate() {
        let want = i32::from(exit.code());

        // Offline: `check`.
        let sb = sandbox();
        break_it(&sb, case);
        let o = sb.run(&["check"]);
        assert_eq!(code(&o), want, "check, {what}: {}", stderr(&o));

        // The service's start. A remote manifest never fetched is the one exception: the
        // service starts without it (it is what fetches), and is not ready until it has it.
        if case == 3 {
            let svc = Service::start(&sb, None, None, &[]);
            let (status, body) = http(svc.port, "GET", "/readyz");
            assert_eq!(status, 503, "orchestrate, {what}: {body}");
            assert!(body.contains("no cached copy"), "{body}");
        } else {
            let o = run_with_timeout(
                sb.cmd(&["orchestrate", "--http-port", "0"]),
                Duration::from_secs(60),
            );
            assert_eq!(code(&o), want, "orchestrate, {what}: {}", stderr(&o));
        }

        // Over the control socket: a good start, then the input breaks and `reload` fails.
        let sb = sandbox();
        let _svc = Service::start(&sb, None, None, &[]);
        break_it(&sb, case);
        let o = run_with_timeout(sb.cmd(&["reload"]), Duration::from_secs(60));
        assert_eq!(code(&o), want, "reload, {what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("still serving the previous state"),
            "{}",
            stderr(&o)
        );
    }
}
