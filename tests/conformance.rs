//! Cross-implementation conformance: the reference implementation's manifests and signature
//! vectors in `../shared/testdata` (beside the checkout, not part of it). When that directory
//! is absent every test here says so on stderr and passes without checking anything: the
//! project's own fixtures (tests/fixtures, used by tests/cli.rs) cover the same code paths.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const KEY1: &str = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
const KEY2: &str = "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=";

/// The vectors' directory, or `None` (after saying plainly that the test was skipped).
fn testdata(test: &str) -> Option<PathBuf> {
    let dir = shared_testdata();
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED {test}: {} is not present (optional cross-implementation vectors)",
            dir.display()
        );
        None
    }
}

#[test]
fn reference_manifests_load_every_entry_accounted_for() {
    let Some(td) = testdata("reference_manifests_load_every_entry_accounted_for") else {
        return;
    };
    let sb = Sandbox::new();
    for (file, entries) in [("upstream-sample.yaml", 35), ("upstream-sample-v2.yaml", 0)] {
        let path = td.join("manifests").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let in_file = text.matches("\n  - domain:").count();
        let o = sb.run(&["check", "--json", "--manifest", path.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let line = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["what"].as_str().unwrap().starts_with("manifest"))
            .unwrap();
        let detail = line["detail"].as_str().unwrap();
        let number = |s: &str| -> usize { s.split(' ').next().unwrap().parse().unwrap() };
        let loaded = number(detail);
        let skipped = number(detail.split(", ").nth(1).unwrap());
        assert_eq!(loaded + skipped, in_file, "{file}: {detail}");
        if entries > 0 {
            assert_eq!(loaded, entries);
        }
    }
}

#[test]
fn reference_signature_vectors_keep_their_verdicts() {
    let Some(td) = testdata("reference_signature_vectors_keep_their_verdicts") else {
        return;
    };
    let sb = Sandbox::new();
    let trusted = format!("{KEY1},{KEY2}");
    for (file, threshold, want) in [
        ("upstream-sample-signed.json", None, 0),
        ("unicode-floats-signed.json", None, 0),
        ("threshold-2of3-signed.json", Some("2"), 0),
        ("threshold-2of3-signed.json", Some("3"), 7),
        ("upstream-sample-signed.yaml", None, 0),
        ("tampered-signed.json", None, 7),
    ] {
        let path = td.join("signatures").join(file);
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
fn reference_canonical_bytes_match_python() {
    let Some(td) = testdata("reference_canonical_bytes_match_python") else {
        return;
    };
    let sb = Sandbox::new();
    for name in [
        "unicode-floats-signed",
        "upstream-sample-signed",
        "threshold-2of3-signed",
    ] {
        let json = td.join("signatures").join(format!("{name}.json"));
        let want =
            std::fs::read_to_string(td.join("signatures").join(format!("{name}.canonical.txt")))
                .unwrap();
        assert_eq!(signed_bytes(&sb, &json), want.trim_end(), "{name}");
    }
}
