//! Signatures. Input: 2 bytes of position and 1 byte of change, then a document (YAML or JSON).
//! 1. `signature::verify` of the document as it is, against fixed trusted keys (seeds 0x01,
//!    0x02, 0x05: the fixtures' keys; 0x05 listed twice) under three policies: what the strict
//!    one accepts the lax one accepts (same keys, fewer rules); nothing is `Valid` without
//!    trusted keys; a `Valid` count is within threshold..=3 (a key listed twice counts once).
//! 2. `signature::sign` of the document's content with key 0x05: it verifies as
//!    `oneiric manifest sign` writes it, as JSON and as YAML; with one byte of its JSON text
//!    changed it never verifies if the signed bytes changed, and still verifies if neither they
//!    nor the signature fields did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oneiric::manifest::{self, canonical, signature, signature::Verdict};
use oneiric_fuzz::{lax_policy, now, open_policy, signing_key, strict_policy};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_at_checked(3) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(tree) = manifest::parse_tree(text, "fuzz") else {
        return;
    };
    let policy = lax_policy();
    let lax = signature::verify(&tree, &policy);
    let strict = signature::verify(&tree, &strict_policy());
    let open = signature::verify(&tree, &open_policy());
    if matches!(strict, Verdict::Valid { .. }) {
        assert!(
            matches!(lax, Verdict::Valid { .. }),
            "strict {strict:?}, lax {lax:?}"
        );
    }
    assert!(!matches!(open, Verdict::Valid { .. }), "{open:?}");
    for v in [&lax, &strict] {
        if let Verdict::Valid { valid, threshold } = v {
            assert!(*valid >= *threshold && *valid <= 3, "{v:?}");
        }
    }

    let mut doc = tree.to_value();
    if !doc.is_object() {
        return;
    }
    let expires = Some(std::time::Duration::from_secs(3600));
    signature::sign(&mut doc, &signing_key(5), None, expires, now(), false)
        .expect("a mapping signs");
    let json = serde_json::to_string_pretty(&doc).expect("JSON");
    let yaml = serde_yaml::to_string(&doc).expect("YAML");
    for (form, signed) in [("json", &json), ("yaml", &yaml)] {
        let tree = manifest::parse_tree(signed, form)
            .unwrap_or_else(|e| panic!("the signed {form} does not parse: {e}\n{signed}"));
        let verdict = signature::verify(&tree, &policy);
        assert!(
            matches!(verdict, Verdict::Valid { .. }),
            "the signed {form} does not verify: {verdict:?}\n{signed}"
        );
    }

    let signed = manifest::parse_tree(&json, "json").expect("checked above");
    let original = canonical::signing_bytes(&signed);
    let mut bytes = json.clone().into_bytes();
    let at = usize::from(u16::from_le_bytes([head[0], head[1]])) % bytes.len();
    bytes[at] ^= head[2].max(1);
    let Ok(changed) = String::from_utf8(bytes) else {
        return;
    };
    let Ok(tree) = manifest::parse_tree(&changed, "changed") else {
        return;
    };
    let verdict = signature::verify(&tree, &policy);
    if canonical::signing_bytes(&tree) != original {
        assert!(
            !verdict.accepted(),
            "changed content verifies: {verdict:?}\n{changed}"
        );
    } else if canonical::SIGNATURE_FIELDS
        .iter()
        .all(|f| tree.get(f) == signed.get(f))
    {
        assert!(
            verdict.accepted(),
            "unchanged content fails: {verdict:?}\n{changed}"
        );
    }
});
