//! The `oneiric` command line, run as a real process on real files.

mod common;

use std::time::Duration;

use common::*;

const KEY1: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
const KEY2: &str = "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=";

#[test]
fn version() {
    let sb = Sandbox::new();
    let o = sb.run(&["--version"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        stdout(&o).trim(),
        format!("oneiric {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The public key of tests/fixtures/signatures/key5.seed (seed 0x05 x 32).
const KEY5: &str = "bnoc3Smwt4/ROvTFWY/v9O8qlxZuPKby5Pv8zYBQW/E=";

fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

#[test]
fn every_entry_is_accounted_for_and_skips_are_warnings() {
    let sb = Sandbox::new();
    let path = fixture("manifests/mixed.yaml");
    let o = sb.run(&["check", "--json", "--manifest", path.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    let checks = v["checks"].as_array().unwrap();
    let manifest = checks
        .iter()
        .find(|l| l["what"].as_str().unwrap().starts_with("manifest"))
        .unwrap();
    assert_eq!(
        manifest["detail"].as_str().unwrap().split(';').next(),
        Some("7 entries loaded, 3 skipped")
    );
    let skipped: Vec<_> = checks
        .iter()
        .filter(|l| l["what"].as_str().unwrap().contains("skipped entry"))
        .collect();
    assert_eq!(skipped.len(), 3);
    assert!(skipped.iter().all(|l| l["level"] == "warn"), "{skipped:?}");
    // 3 skipped entries + the unsigned manifest.
    assert_eq!(v["warnings"], 4);

    // Human output: warn lines and a count, never `ok` beside a skipped entry.
    let o = sb.run(&["check", "--manifest", path.to_str().unwrap()]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    assert!(out.contains("warn   skipped entry 7"), "{out}");
    assert!(!out.contains("ok     skipped"), "{out}");
    assert!(out.ends_with("0 failure(s), 4 warning(s)\n"), "{out}");

    // --strict: warnings fail as invalid input; --json still prints the report.
    let o = sb.run(&[
        "check",
        "--strict",
        "--json",
        "--manifest",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);

    // A load that fails prints a JSON report too.
    let bad = sb.write("bad.yaml", "entries: [ {domain: adapter\n");
    let o = sb.run(&["check", "--json", "--manifest", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["checks"][0]["level"], "fail");
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("bad.yaml")
    );

    // The same for health.
    let o = sb.run(&["health", "--json", "--manifest", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    let o = sb.run(&["health", "--strict", "--manifest", path.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
}

#[test]
fn own_signature_fixtures_keep_their_verdicts() {
    let sb = Sandbox::new();
    for (file, threshold, want) in [
        ("signatures/unicode-signed.json", None, 0),
        // One signature cannot meet a threshold of two.
        ("signatures/unicode-signed.json", Some("2"), 7),
        ("signatures/tampered-signed.json", None, 7),
    ] {
        let path = fixture(file);
        let mut args = vec![
            "manifest",
            "verify",
            path.to_str().unwrap(),
            "--trusted-key",
            KEY5,
        ];
        if let Some(t) = threshold {
            args.extend(["--threshold", t]);
        }
        let o = sb.run(&args);
        assert_eq!(
            code(&o),
            want,
            "{file} {threshold:?}: {} {}",
            stdout(&o),
            stderr(&o)
        );
    }
    // The loader agrees, and a bad signature is exit 7 there too.
    let mut c = sb.cmd(&[
        "check",
        "--manifest",
        fixture("signatures/tampered-signed.json").to_str().unwrap(),
    ]);
    c.env("ONEIRIC_TRUSTED_PUBLIC_KEYS", KEY5);
    assert_eq!(code(&run_with_timeout(c, Duration::from_secs(30))), 7);
}

#[test]
fn own_canonical_bytes_are_stable() {
    let sb = Sandbox::new();
    let want = std::fs::read_to_string(fixture("signatures/unicode-signed.canonical.txt")).unwrap();
    assert_eq!(
        signed_bytes(&sb, &fixture("signatures/unicode-signed.json")),
        want.trim_end()
    );
}

#[test]
fn sign_then_verify_then_tamper() {
    let sb = Sandbox::new();
    let key = sb.write("key", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n");
    let m = sb.write(
        "m.yaml",
        "source: t\nentries:\n  - {domain: adapter, key: cache, provider: redis, factory: x:y, priority: 3, metadata: {note: \"Caché ✓\", ratio: 0.1}}\n",
    );
    let signed = sb.path("signed.json");
    let o = sb.run(&[
        "manifest",
        "sign",
        m.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--expires-in",
        "3600",
        "-o",
        signed.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = sb.run(&[
        "manifest",
        "verify",
        signed.to_str().unwrap(),
        "--trusted-key",
        KEY1,
        "--require-expiry",
    ]);
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    let o = sb.run(&[
        "manifest",
        "verify",
        signed.to_str().unwrap(),
        "--trusted-key",
        KEY2,
    ]);
    assert_eq!(code(&o), 7);
    let text = std::fs::read_to_string(&signed)
        .unwrap()
        .replace("\"priority\": 3", "\"priority\": 4");
    let tampered = sb.write("tampered.json", &text);
    let o = sb.run(&[
        "manifest",
        "verify",
        tampered.to_str().unwrap(),
        "--trusted-key",
        KEY1,
    ]);
    assert_eq!(code(&o), 7);
    // YAML output verifies too
    let signed_yaml = sb.path("signed.yaml");
    let o = sb.run(&[
        "manifest",
        "sign",
        m.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        signed_yaml.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0);
    let o = sb.run(&[
        "manifest",
        "verify",
        signed_yaml.to_str().unwrap(),
        "--trusted-key",
        KEY1,
    ]);
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    // A signed manifest is accepted by the loader only with the right key.
    let mut c = sb.cmd(&["check", "--manifest", tampered.to_str().unwrap()]);
    c.env("ONEIRIC_TRUSTED_PUBLIC_KEYS", KEY1);
    let o = run_with_timeout(c, Duration::from_secs(30));
    // A signature that does not verify is exit 7, whichever command met it.
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("tampered.json"), "{}", stderr(&o));
}

#[test]
fn hostile_manifests_fail_cleanly() {
    let sb = Sandbox::new();
    let mut big = String::from("entries:\n");
    let line = "  - {domain: adapter, key: k, provider: p, factory: f, metadata: {pad: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n";
    while big.len() < 50 * 1024 * 1024 {
        big.push_str(line);
    }
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\nentries: *i\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed.yaml",
            b"entries:\n  - domain: adapter\n   key: [unclosed\n".to_vec(),
            "malformed.yaml:",
        ),
        (
            "nested.yaml",
            format!("entries: {}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "nested.yaml",
        ),
        ("bomb.yaml", bomb.as_bytes().to_vec(), "bomb.yaml"),
        ("big.yaml", big.into_bytes(), "limit"),
        (
            "binary.yaml",
            vec![b'a', b':', b' ', 0xff, 0xfe, b'\n'],
            "UTF-8",
        ),
        (
            "dup.yaml",
            b"entries: []\nentries: []\n".to_vec(),
            "duplicate",
        ),
        (
            "dup.json",
            b"{\"entries\": [], \"entries\": []}".to_vec(),
            "duplicate",
        ),
        ("scalar.yaml", b"just a string\n".to_vec(), "mapping"),
    ];
    for (name, body, needle) in cases {
        let p = sb.path(name);
        std::fs::write(&p, body).unwrap();
        let o = sb.run(&["check", "--manifest", p.to_str().unwrap()]);
        assert_eq!(code(&o), 3, "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
    }
    // Bad entries are skipped with index and reason, the rest load.
    let p = sb.write(
        "entries.yaml",
        "entries:\n  - {domain: adapter, key: ok, provider: p, factory: f}\n  - {domain: adapter, key: ../../etc/passwd, provider: p, factory: f}\n  - {domain: adapter, key: k, provider: p, factory: f, priority: 99999999999999999999999}\n  - {domain: adapter, key: k, provider: p, factory: f, stack_level: 101}\n",
    );
    let o = sb.run(&["check", "--manifest", p.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("1 entries loaded, 3 skipped"), "{out}");
    assert!(
        out.contains("skipped entry 1") && out.contains("../../etc/passwd"),
        "{out}"
    );
    assert!(
        out.contains("skipped entry 3") && out.contains("stack_level 101"),
        "{out}"
    );
}

#[test]
fn settings_errors_name_file_line_field_and_variable() {
    let sb = Sandbox::new();
    sb.write("etc/app.yml", "name: x\nenviroment: prod\n");
    let o = sb.run(&["check"]);
    assert_eq!(code(&o), 3);
    assert!(
        stderr(&o).contains("app.yml:2:") && stderr(&o).contains("enviroment"),
        "{}",
        stderr(&o)
    );

    let sb = Sandbox::new();
    let mut c = sb.cmd(&["check"]);
    c.env("ONEIRIC_REMOTE__MAX_RETRIES", "many");
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(code(&o), 3);
    assert!(
        stderr(&o).contains("ONEIRIC_REMOTE__MAX_RETRIES"),
        "{}",
        stderr(&o)
    );

    let mut c = sb.cmd(&["check"]);
    c.env("ONEIRIC_STACK_ORDER", "prod:high");
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("ONEIRIC_STACK_ORDER"), "{}", stderr(&o));
}

#[test]
fn numbers_too_large_for_a_deadline_are_refused_not_a_panic() {
    let sb = Sandbox::new();
    let huge = u64::MAX.to_string();
    for args in [
        vec!["reload", "--timeout", huge.as_str()],
        vec!["orchestrate", "--refresh-interval", huge.as_str()],
        vec!["remote-sync", "--refresh-interval", "0"],
    ] {
        let o = sb.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(args[1]) && !stderr(&o).contains("panicked"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    sb.write(
        "etc/remote.yml",
        &format!(
            "circuit_breaker_reset: {huge}
"
        ),
    );
    let o = sb.run(&["check"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("remote.circuit_breaker_reset") && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(sb.path("etc/remote.yml")).unwrap();
    let mut c = sb.cmd(&["check"]);
    c.env("ONEIRIC_REMOTE__LATENCY_BUDGET_MS", &huge);
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("remote.latency_budget_ms"),
        "{}",
        stderr(&o)
    );
}

fn write_settings(sb: &Sandbox, probe_port: u16) {
    sb.write(
        "etc/adapters.yml",
        &format!(
            "selections: {{}}\ncandidates:\n  - {{key: cache, provider: memory, factory: 'builtin:memory', priority: 1}}\n  - {{key: cache, provider: redis, factory: 'builtin:redis', priority: 5, health: {{tcp: \"127.0.0.1:{probe_port}\", timeout_seconds: 1}}}}\n"
        ),
    );
    sb.write(
        "etc/manifest.yaml",
        "source: production\nentries:\n  - {domain: service, key: api, provider: v1, factory: f}\n  - {domain: service, key: api, provider: v2, factory: f, stack_level: 3}\n",
    );
}

#[test]
fn resolve_explain_list_and_stack_order() {
    let sb = Sandbox::new();
    write_settings(&sb, 1);
    let o = sb.run(&["resolve", "adapter", "cache"]);
    assert_eq!(stdout(&o).trim(), "redis");
    let o = sb.run(&["explain", "service", "api"]);
    let out = stdout(&o);
    assert!(out.starts_with("service/api: v2"), "{out}");
    assert!(
        out.contains("shadowed") && out.contains("registration_order="),
        "{out}"
    );
    let o = sb.run(&["explain", "service", "nope"]);
    assert_eq!(code(&o), 5);
    let o = sb.run(&["list", "--shadowed", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    // A stack layer named after the manifest's source raises its unprioritised entries.
    sb.write(
        "etc/adapters.yml",
        "candidates:\n  - {key: cache, provider: memory, priority: 1}\n",
    );
    sb.write("etc/manifest.yaml", "source: production\nentries:\n  - {domain: adapter, key: cache, provider: remote, factory: f}\n");
    let mut c = sb.cmd(&["explain", "adapter", "cache"]);
    c.env("ONEIRIC_STACK_ORDER", "production:100,staging:50,default:0");
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert!(
        stdout(&o).contains("priority=100 (inferred from stack layer production)"),
        "{}",
        stdout(&o)
    );
    // Explicit selection beats priority.
    sb.write("etc/adapters.yml", "selections: {cache: memory}\ncandidates:\n  - {key: cache, provider: memory, priority: 1}\n");
    let o = sb.run(&["explain", "adapter", "cache"]);
    assert!(
        stdout(&o).starts_with("adapter/cache: memory"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("matched selection override memory (settings)"));
}

#[test]
fn offline_swap_probes_rolls_back_and_persists() {
    let sb = Sandbox::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    write_settings(&sb, port);
    let o = sb.run(&["swap", "adapter", "cache", "memory"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("offline"), "{}", stdout(&o));
    // The pin survives: memory now wins over the higher-priority redis.
    let o = sb.run(&["resolve", "adapter", "cache"]);
    assert_eq!(stdout(&o).trim(), "memory");
    // Swap to redis while its probe target listens: success.
    let o = sb.run(&["swap", "adapter", "cache", "redis"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Probe target down (port 1: nothing listens, unlike a just-freed port another test may take).
    drop(listener);
    write_settings(&sb, 1);
    // Back to memory, then redis with its probe down: rolled back, exit 6.
    assert_eq!(code(&sb.run(&["swap", "adapter", "cache", "memory"])), 0);
    let o = sb.run(&["swap", "adapter", "cache", "redis"]);
    assert_eq!(code(&o), 6, "{} {}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("rolled back to memory"),
        "{}",
        stderr(&o)
    );
    let o = sb.run(&["swap", "adapter", "cache", "redis", "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.path("state/lifecycle_status.json")).unwrap())
            .unwrap();
    let st = &status["keys"]["adapter/cache"];
    assert_eq!(st["active_provider"], "redis");
    assert_eq!(st["swaps_failed"], 1);
    assert!(st["swap_durations_ms"].as_array().unwrap().len() >= 4);
    // Unknown provider / key: not found.
    assert_eq!(code(&sb.run(&["swap", "adapter", "cache", "nosuch"])), 5);
    assert_eq!(code(&sb.run(&["swap", "adapter", "nokey", "x"])), 5);
    // Pause refuses swaps until resumed; state is in SQLite.
    assert_eq!(
        code(&sb.run(&["pause", "adapter", "cache", "--note", "maintenance"])),
        0
    );
    let o = sb.run(&["swap", "adapter", "cache", "memory"]);
    assert_eq!(code(&o), 6);
    assert!(
        stderr(&o).contains("paused") && stderr(&o).contains("maintenance"),
        "{}",
        stderr(&o)
    );
    assert_eq!(code(&sb.run(&["pause", "adapter", "cache", "--resume"])), 0);
    assert_eq!(code(&sb.run(&["drain", "adapter", "cache"])), 0);
    assert_eq!(code(&sb.run(&["swap", "adapter", "cache", "memory"])), 6);
    let o = sb.run(&["activity", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["draining"], true);
    assert_eq!(code(&sb.run(&["drain", "adapter", "cache", "--clear"])), 0);
    assert_eq!(code(&sb.run(&["swap", "adapter", "cache", "--unpin"])), 0);
}

#[test]
fn health_probe_checks_dirs_and_active_probes() {
    let sb = Sandbox::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    write_settings(&sb, listener.local_addr().unwrap().port());
    let o = sb.run(&["health", "--probe"]);
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
    drop(listener);
    write_settings(&sb, 1);
    let o = sb.run(&["health", "--probe"]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("FAIL probe adapter/cache (redis)"),
        "{}",
        stdout(&o)
    );
    let mut c = sb.cmd(&["health", "--probe"]);
    c.env("ONEIRIC_STATE_DIR", sb.path("missing/state"));
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(code(&o), 4);
    assert!(
        stdout(&o).contains("FAIL state directory"),
        "{}",
        stdout(&o)
    );
    sb.write("etc/manifest.yaml", "entries: [");
    assert_eq!(code(&sb.run(&["health", "--probe"])), 3);
}

#[test]
fn probes_a_manifest_names_do_not_reach_metadata_or_stray_sockets() {
    let sb = Sandbox::new();
    // Whoever writes the manifest picks the targets: the cloud metadata service, and a unix
    // socket outside any directory the settings list (e.g. the D-Bus system bus).
    sb.write(
        "etc/manifest.yaml",
        "entries:\n  - {domain: adapter, key: meta, provider: p, factory: f, health: {http: \"http://169.254.169.254/latest/meta-data/\", timeout_seconds: 5}}\n  - {domain: adapter, key: bus, provider: p, factory: f, health: {unix: /run/dbus/system_bus_socket, timeout_seconds: 5}}\n",
    );
    let o = sb.run(&["health", "--probe"]);
    let out = stdout(&o);
    assert_eq!(code(&o), 4, "{out}");
    assert!(
        out.contains("not probed: 169.254.169.254 is in 169.254.0.0/16"),
        "{out}"
    );
    assert!(
        out.contains("not probed: /run/dbus/system_bus_socket: unix probes reach only sockets in lifecycle.probes.unix_directories"),
        "{out}"
    );
    // A bad setting is refused with its field named.
    sb.write(
        "etc/lifecycle.yml",
        "probes: {denied_networks: [10.0.0.0/40]}\n",
    );
    let o = sb.run(&["health", "--probe"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("denied_networks"), "{}", stderr(&o));
    sb.write("etc/lifecycle.yml", "probes: {unix_directories: [run/x]}\n");
    let o = sb.run(&["health", "--probe"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("lifecycle.probes.unix_directories[0]"),
        "{}",
        stderr(&o)
    );
    // The opt-out is named and loud.
    sb.write(
        "etc/lifecycle.yml",
        "probes: {insecure_any_address: true}\n",
    );
    let o = sb.run(&["health"]);
    assert!(
        stderr(&o).contains("INSECURE: lifecycle.probes.insecure_any_address")
            || stdout(&o).contains("INSECURE: lifecycle.probes.insecure_any_address"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn completions_and_man_pages() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = sb.run(&["completions", shell]);
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("orchestrate"), "{shell}");
    }
    let out = sb.path("man");
    let o = sb.run(&["man", "--out-dir", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(out.join("oneiric.1").exists());
    assert!(out.join("oneiric-orchestrate.1").exists());
    assert_eq!(code(&sb.run(&["resolve", "widget", "x"])), 2);
    assert_eq!(code(&sb.run(&["reload"])), 1);
}

#[test]
fn keygen_with_a_relative_path_then_sign_and_verify() {
    let sb = Sandbox::new();
    let mut c = sb.cmd(&["manifest", "keygen", "--out", "k.key"]);
    c.current_dir(sb.dir.path());
    let o = run_with_timeout(c, Duration::from_secs(30));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let public = stdout(&o).trim().to_string();
    let m = sb.write(
        "m.yaml",
        "entries: [{domain: task, key: t, provider: p, factory: f}]\n",
    );
    let signed = sb.path("s.json");
    let key = sb.path("k.key");
    let o = sb.run(&[
        "manifest",
        "sign",
        m.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = sb.run(&[
        "manifest",
        "verify",
        signed.to_str().unwrap(),
        "--trusted-key",
        &public,
    ]);
    assert_eq!(code(&o), 0, "{} {}", stdout(&o), stderr(&o));
}

#[test]
fn instance_names_are_checked_and_name_the_directories() {
    let sb = Sandbox::new();
    // A name that would leave /etc/oneiric: a usage error that says where it came from.
    let o = sb.run(&["--instance", "../etc", "list"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("\"../etc\" (--instance)"),
        "{}",
        stderr(&o)
    );
    let mut c = sb.cmd(&["list"]);
    c.env("ONEIRIC_INSTANCE", "a/b");
    let o = run_with_timeout(c, Duration::from_secs(60));
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("(ONEIRIC_INSTANCE)"), "{}", stderr(&o));
    // A valid name with no settings directory of its own is refused, naming the directory
    // (ONEIRIC_CONFIG, which the sandbox sets, is dropped so the instance's default applies).
    let mut c = sb.cmd(&["--instance", "no-such-instance-7f3a", "check"]);
    c.env_remove("ONEIRIC_CONFIG");
    let o = run_with_timeout(c, Duration::from_secs(60));
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/etc/oneiric/no-such-instance-7f3a"),
        "{}",
        stderr(&o)
    );
    // The control socket the CLI looks for is the instance's: `reload` needs the service.
    let mut c = sb.cmd(&["--instance", "staging", "reload"]);
    c.env_remove("ONEIRIC_RUNTIME_DIR");
    let o = run_with_timeout(c, Duration::from_secs(60));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "no running service at /run/oneiric/staging/admin.sock or /run/oneiric/staging/control.sock"
        ),
        "{}",
        stderr(&o)
    );
}
