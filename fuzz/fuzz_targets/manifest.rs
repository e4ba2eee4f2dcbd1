//! Manifest text, YAML or JSON (JSON when it starts with `{` or `[`), to `manifest::parse`
//! (as `parse_tree` then `from_tree`, keeping the tree) and to `manifest::parse_verified` with
//! trusted keys and signatures required.
//! Properties: every entry of the document is loaded or skipped with its index; the document
//! means the same written as JSON (the YAML and the JSON parser agree); `parse_verified` loads
//! what `parse` loads, with the verdict `signature::verify` gives on the same tree, inline and
//! (JSON padded past 256 KiB with trailing spaces, which change nothing) on the path that
//! checks the signature on a second thread; the text's SHA-256 is there when asked for
//! (`TextDigest::Compute`, on both paths) and absent when not (`TextDigest::Skip`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneiric::manifest::{self, Node, TextDigest, signature};
use oneiric_fuzz::{assert_same_manifest, lax_policy};

/// `manifest::PARALLEL_CHECK_BYTES` (private): documents this long are checked on the side.
const PARALLEL_CHECK_BYTES: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = lax_policy();
    let verified = manifest::parse_verified(text, "fuzz", &policy, TextDigest::Compute);
    // `parse` is `from_tree(&parse_tree(..)?)`: the tree is kept for the checks below.
    let Ok(tree) = manifest::parse_tree(text, "fuzz") else {
        assert!(
            verified.is_err(),
            "parse_verified loaded what parse_tree refused"
        );
        return;
    };
    let Ok(m) = manifest::from_tree(&tree, "fuzz") else {
        assert!(
            verified.is_err(),
            "parse_verified loaded what parse refused"
        );
        return;
    };
    let total = match tree.get("entries") {
        Some(Node::Seq(items)) => items.len(),
        _ => 0,
    };
    assert_eq!(m.total(), total, "each entry is loaded or skipped");
    let indices: Vec<usize> = m.skipped.iter().map(|s| s.index).collect();
    assert!(
        indices.windows(2).all(|w| w[0] < w[1]) && indices.iter().all(|i| *i < total),
        "skipped indices {indices:?} of {total} entries"
    );

    let json = serde_json::to_string(&tree.to_value()).expect("a tree is JSON");
    let again = manifest::parse(&json, "fuzz").expect("the JSON form of a manifest parses");
    assert_same_manifest(&m, &again);

    let (vm, verdict) = verified.expect("parse loaded it, so parse_verified does");
    assert_same_manifest(&vm, &m);
    let sha = oneiric::text::sha256_hex(text.as_bytes());
    assert_eq!(vm.text_sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(verdict, signature::verify(&tree, &policy));
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('[')) && text.len() < PARALLEL_CHECK_BYTES {
        let padded = format!("{text}{}", " ".repeat(PARALLEL_CHECK_BYTES - text.len()));
        let (big, big_verdict) =
            manifest::parse_verified(&padded, "fuzz", &policy, TextDigest::Compute)
                .expect("trailing spaces change nothing");
        assert_same_manifest(&big, &m);
        assert_eq!(big_verdict, verdict);
        let sha = oneiric::text::sha256_hex(padded.as_bytes());
        assert_eq!(big.text_sha256.as_deref(), Some(sha.as_str()));
        let (skipped, _) = manifest::parse_verified(&padded, "fuzz", &policy, TextDigest::Skip)
            .expect("the digest changes nothing else");
        assert_same_manifest(&skipped, &m);
        assert_eq!(skipped.text_sha256, None);
    }
});
