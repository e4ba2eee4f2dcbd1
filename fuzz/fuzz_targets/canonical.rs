//! `manifest::canonical::signing_bytes` of a parsed document (YAML or JSON).
//! Properties: the bytes are ASCII (`ensure_ascii`), they are JSON meaning exactly the
//! document minus its signature fields, and (for a mapping or a list) they are a fixed point:
//! parsed by oneiric again, they canonicalise to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneiric::manifest::{self, canonical};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tree) = manifest::parse_tree(text, "fuzz") else {
        return;
    };
    let bytes = canonical::signing_bytes(&tree);
    assert!(bytes.is_ascii(), "canonical bytes are ASCII: {bytes}");

    let value: serde_json::Value =
        serde_json::from_str(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes}"));
    let mut want = tree.to_value();
    if let Some(map) = want.as_object_mut() {
        for field in canonical::SIGNATURE_FIELDS {
            map.remove(field);
        }
    }
    assert_eq!(value, want, "canonical bytes: {bytes}");

    // Oneiric reads text as JSON when it starts with `{` or `[` (a manifest is a mapping); a
    // bare scalar would be read as YAML, which has no surrogate-pair escapes.
    if !(bytes.starts_with('{') || bytes.starts_with('[')) {
        return;
    }
    let again = manifest::parse_tree(&bytes, "canonical")
        .unwrap_or_else(|e| panic!("oneiric refuses its own canonical bytes ({e}): {bytes}"));
    assert_eq!(canonical::signing_bytes(&again), bytes);
    assert_eq!(canonical::to_canonical(&again), bytes);
});
