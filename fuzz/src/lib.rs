//! What the fuzz targets share: fixed keys, a fixed clock and the trust policies.
//! Nothing here reads the environment or the real clock, so a reproducer replays exactly.

use ed25519_dalek::{SigningKey, VerifyingKey};
use oneiric::manifest::signature::TrustPolicy;
use time::OffsetDateTime;

/// The fuzz clock, 2026-12-02T01:00:00Z: after the `signed_at` of every signed seed, before
/// the `expires_at` of the one that expires soonest.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_173_200).expect("a valid timestamp")
}

/// The signing keys of the fixtures: seed 0x01, 0x02 (the shared signature vectors) and 0x05
/// (tests/fixtures/signatures/key5.seed), each its byte repeated 32 times.
pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Three distinct keys, key 0x05 listed twice: the policy must count it once.
pub fn trusted() -> Vec<VerifyingKey> {
    [1, 2, 5, 5]
        .map(|s| signing_key(s).verifying_key())
        .to_vec()
}

/// Trusted keys, threshold 1, signatures required, `expires_at` judged, a day of clock skew.
pub fn lax_policy() -> TrustPolicy {
    TrustPolicy {
        required: true,
        max_skew_seconds: 24 * 3600,
        ..TrustPolicy::new(trusted(), 1, now())
    }
}

/// The same keys, with everything [`lax_policy`] asks and more: two signatures, an expiry, at
/// most 30 days of age and 5 minutes of skew.
pub fn strict_policy() -> TrustPolicy {
    TrustPolicy {
        threshold: 2,
        max_age_seconds: Some(30 * 24 * 3600),
        require_expiry: true,
        max_skew_seconds: 300,
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
