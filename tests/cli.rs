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

#[test]
fn both_upstream_manifests_load_every_entry_accounted_for() {
    let sb = Sandbox::new();
    let td = shared_testdata().join("manifests");
    for (file, entries) in [("upstream-sample.yaml", 35), ("upstream-sample-v2.yaml", 0)] {
        let path = td.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let in_file = text.matches("\n  - domain:").count();
        let o = sb.run(&["check", "--json", "--manifest", path.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let line = v
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["what"].as_str().unwrap().starts_with("manifest"))
            .unwrap();
        let detail = line["detail"].as_str().unwrap();
        // loaded + skipped == entries in the file
        let loaded: usize = detail.split(' ').next().unwrap().parse().unwrap();
        let skipped: usize = detail
            .split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(loaded + skipped, in_file, "{file}: {detail}");
        if entries > 0 {
            assert_eq!(loaded, entries);
        }
    }
}

#[test]
fn signature_vectors_give_expected_verdicts() {
    let sb = Sandbox::new();
    let td = shared_testdata().join("signatures");
    let trusted = format!("{KEY1},{KEY2}");
    for (file, threshold, want) in [
        ("upstream-sample-signed.json", None, 0),
        ("unicode-floats-signed.json", None, 0),
        ("threshold-2of3-signed.json", Some("2"), 0),
        ("threshold-2of3-signed.json", Some("3"), 7),
        ("upstream-sample-signed.yaml", None, 0),
        ("tampered-signed.json", None, 7),
    ] {
        let path = td.join(file);
        let mut args = vec!["manifest", "verify", path.to_str().unwrap()];
        if let Some(t) = threshold {
            args.extend(["--threshold", t]);
        }
        let mut c = sb.cmd(&args);
        c.env("ONEIRIC_TRUSTED_PUBLIC_KEYS", &trusted);
        let o = run_with_timeout(c, Duration::from_secs(30));
        assert_eq!(
            code(&o),
            want,
            "{file} threshold {threshold:?}: {} {}",
            stdout(&o),
            stderr(&o)
        );
    }
}

#[test]
fn canonical_bytes_match_python() {
    let sb = Sandbox::new();
    let td = shared_testdata().join("signatures");
    for name in [
        "unicode-floats-signed",
        "upstream-sample-signed",
        "threshold-2of3-signed",
    ] {
        let json = td.join(format!("{name}.json"));
        let o = sb.run(&["manifest", "pack", json.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let want = std::fs::read_to_string(td.join(format!("{name}.canonical.txt"))).unwrap();
        // pack includes the signature fields; the signed bytes are pack minus them.
        let mut doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let obj = doc.as_object_mut().unwrap();
        for f in ["signature", "signature_algorithm", "signatures"] {
            obj.remove(f);
        }
        let again = sb.write("tmp.json", &serde_json::to_string(&doc).unwrap());
        let o = sb.run(&["manifest", "pack", again.to_str().unwrap()]);
        assert_eq!(stdout(&o).trim_end(), want.trim_end(), "{name}");
    }
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
    assert_eq!(code(&o), 3, "{}", stderr(&o));
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
