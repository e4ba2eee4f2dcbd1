//! What the fuzz targets share: fixed keys, a fixed clock and the trust policies.
//! Nothing here reads the environment or the real clock, so a reproducer replays exactly.

use ed25519_dalek::{SigningKey, VerifyingKey};
use oneiric::manifest::signature::TrustPolicy;
use time::OffsetDateTime;

/// The fuzz clock, 2026-12-02T00:00:00Z: after the `signed_at` of every fixture.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_169_600).expect("a valid timestamp")
}

/// The signing keys of the fixtures: seed 0x01, 0x02 (the shared signature vectors) and 0x05
/// (tests/fixtures/signatures/key5.seed), each its byte repeated 32 times.
pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn trusted() -> Vec<VerifyingKey> {
    [1, 2, 5].map(|s| signing_key(s).verifying_key()).to_vec()
}

/// Trusted keys, threshold 1, signatures required, no time rules beyond `expires_at`.
pub fn lax_policy() -> TrustPolicy {
    let mut p = TrustPolicy::new(trusted(), 1, now());
    p.required = true;
    p
}

/// The same keys, with everything [`lax_policy`] asks and more: two signatures, an expiry and
/// at most 30 days of age.
pub fn strict_policy() -> TrustPolicy {
    TrustPolicy {
        threshold: 2,
        max_age_seconds: Some(30 * 24 * 3600),
        require_expiry: true,
        ..lax_policy()
    }
}

/// No trusted keys, signatures not required (the reference implementation's default).
pub fn open_policy() -> TrustPolicy {
    TrustPolicy {
        trusted: Vec::new(),
        required: false,
        ..lax_policy()
    }
}

/// Two parses of the same document must load the same manifest (the origin aside).
pub fn assert_same_manifest(a: &oneiric::manifest::Manifest, b: &oneiric::manifest::Manifest) {
    assert_eq!(a.source, b.source);
    assert_eq!(a.entries, b.entries);
    assert_eq!(a.skipped, b.skipped);
    assert_eq!(a.warnings, b.warnings);
}
