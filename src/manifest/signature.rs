//! ed25519 manifest signatures: verification against trusted keys with a threshold, expiry and
//! max-age policy, and signing that produces manifests which verify.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::canonical::signing_bytes;
use super::node::Node;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{0}` is not base64")]
    NotBase64(String),
    #[error("public key must be 32 raw bytes (base64), got {0} bytes")]
    PublicLength(usize),
    #[error("not a valid ed25519 public key")]
    BadPoint,
    #[error(
        "private key must be a base64 32-byte seed, 64-byte keypair, raw 32 bytes, or PKCS#8 PEM (got {0} bytes)"
    )]
    PrivateLength(usize),
}

/// Base64, bare or inside PEM armour (`-----BEGIN …-----` lines), whitespace ignored.
fn decode_armored(s: &str) -> Option<Vec<u8>> {
    let body: String = s
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(str::split_whitespace)
        .collect();
    B64.decode(body.as_bytes()).ok()
}

/// Accepts base64 of the raw 32-byte key (the reference format) or a PEM/DER
/// SubjectPublicKeyInfo, as `openssl pkey -pubout` writes.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = decode_armored(s).ok_or_else(|| KeyError::NotBase64(abbreviate(s)))?;
    const SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let raw: &[u8] = if bytes.len() == 44 && bytes.starts_with(&SPKI_PREFIX) {
        &bytes[12..]
    } else {
        &bytes
    };
    let arr: [u8; 32] = raw
        .try_into()
        .map_err(|_| KeyError::PublicLength(raw.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::BadPoint)
}

/// Reads a signing key from file contents: base64 seed (32) or keypair (64), raw 32 bytes, or
/// PKCS#8 PEM as Python's `cryptography` writes it.
pub fn parse_signing_key(contents: &[u8]) -> Result<SigningKey, KeyError> {
    if contents.len() == 32 {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(contents);
        return Ok(SigningKey::from_bytes(&seed));
    }
    let bytes = decode_armored(&String::from_utf8_lossy(contents))
        .ok_or_else(|| KeyError::NotBase64("<private key file>".into()))?;
    const PKCS8_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let seed: &[u8] = match bytes.len() {
        32 | 64 => &bytes[..32],
        48 if bytes.starts_with(&PKCS8_PREFIX) => &bytes[16..],
        n => return Err(KeyError::PrivateLength(n)),
    };
    let mut arr = [0u8; 32];
    arr.copy_from_slice(seed);
    Ok(SigningKey::from_bytes(&arr))
}

pub fn public_key_base64(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

fn abbreviate(s: &str) -> String {
    let mut t: String = s.chars().take(16).collect();
    if s.chars().count() > 16 {
        t.push('…');
    }
    t
}

/// What a manifest must satisfy to be accepted.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Distinct keys: one key listed twice still counts once towards the threshold.
    pub trusted: Vec<VerifyingKey>,
    pub threshold: usize,
    /// Unsigned manifests, and signed ones that cannot be checked (no trusted keys), are
    /// refused.
    pub required: bool,
    pub max_age_seconds: Option<u64>,
    pub require_expiry: bool,
    /// `signed_at` may be at most this many seconds in the future.
    pub max_skew_seconds: u64,
    /// Judge `expires_at`, the maximum age and the skew against `now`. Off for a copy that
    /// was accepted earlier (the cache): its freshness is tracked by the service, which keeps
    /// serving it, flagged, instead of refusing to start.
    pub check_freshness: bool,
    /// The setting that would accept what `required` refuses, named in the refusal.
    pub opt_out: &'static str,
    pub now: OffsetDateTime,
}

impl TrustPolicy {
    /// A policy over `trusted`, deduplicated (by key bytes, first occurrence kept).
    pub fn new(trusted: Vec<VerifyingKey>, threshold: usize, now: OffsetDateTime) -> Self {
        let mut distinct: Vec<VerifyingKey> = Vec::with_capacity(trusted.len());
        for k in trusted {
            if !distinct.iter().any(|d| d.as_bytes() == k.as_bytes()) {
                distinct.push(k);
            }
        }
        TrustPolicy {
            trusted: distinct,
            threshold: threshold.max(1),
            required: false,
            max_age_seconds: None,
            require_expiry: false,
            max_skew_seconds: 300,
            check_freshness: true,
            opt_out: "",
            now,
        }
    }
}

/// The outcome of checking a manifest's signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Verified by `valid` distinct trusted keys (at least the threshold).
    Valid {
        valid: usize,
        threshold: usize,
    },
    /// No signature, and none required: accepted with a warning.
    Unsigned,
    /// Signed, but no trusted keys are configured, and signatures are not required.
    Unchecked,
    Invalid {
        reason: String,
    },
}

impl Verdict {
    pub fn accepted(&self) -> bool {
        !matches!(self, Verdict::Invalid { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Verdict::Valid { valid, threshold } => {
                format!("signature valid ({valid} trusted key(s), threshold {threshold})")
            }
            Verdict::Unsigned => "unsigned (signatures not required)".into(),
            Verdict::Unchecked => "signed, but no trusted keys configured: not checked".into(),
            Verdict::Invalid { reason } => format!("signature INVALID: {reason}"),
        }
    }
}

/// Every algorithm named beside a signature is ed25519.
fn algorithms_supported(doc: &Node) -> Result<(), String> {
    fn unsupported(alg: Option<&str>) -> Option<&str> {
        alg.filter(|a| !a.eq_ignore_ascii_case("ed25519"))
    }
    let single = doc
        .get("signature")
        .filter(|v| !v.is_null())
        .and_then(|_| doc.get("signature_algorithm"))
        .and_then(Node::as_str);
    if let Some(alg) = unsupported(single) {
        return Err(format!("unsupported signature_algorithm `{alg}`"));
    }
    if let Some(list) = doc.get("signatures").and_then(Node::as_seq) {
        for (i, item) in list.iter().enumerate() {
            if let Some(alg) = unsupported(item.get("algorithm").and_then(Node::as_str)) {
                return Err(format!("signatures[{i}]: unsupported algorithm `{alg}`"));
            }
        }
    }
    Ok(())
}

struct Sig {
    bytes: Vec<u8>,
    label: String,
}

fn collect_signatures(doc: &Node) -> Result<Vec<Sig>, String> {
    let mut sigs = Vec::new();
    if let Some(s) = doc.get("signature").filter(|v| !v.is_null()) {
        let s = s.as_str().ok_or("`signature` must be a base64 string")?;
        if let Some(alg) = doc.get("signature_algorithm").and_then(Node::as_str) {
            if !alg.eq_ignore_ascii_case("ed25519") {
                return Err(format!("unsupported signature_algorithm `{alg}`"));
            }
        }
        sigs.push(Sig {
            bytes: B64
                .decode(s.trim())
                .map_err(|_| "`signature` is not base64".to_string())?,
            label: "signature".into(),
        });
    }
    if let Some(list) = doc.get("signatures").filter(|v| !v.is_null()) {
        let list = list.as_seq().ok_or("`signatures` must be a list")?;
        for (i, item) in list.iter().enumerate() {
            let s = item
                .get("signature")
                .and_then(Node::as_str)
                .ok_or_else(|| format!("signatures[{i}].signature must be a base64 string"))?;
            if let Some(alg) = item.get("algorithm").and_then(Node::as_str) {
                if !alg.eq_ignore_ascii_case("ed25519") {
                    return Err(format!("signatures[{i}]: unsupported algorithm `{alg}`"));
                }
            }
            let label = item
                .get("key_id")
                .and_then(Node::as_str)
                .map(|k| format!("signatures[{i}] ({k})"))
                .unwrap_or_else(|| format!("signatures[{i}]"));
            sigs.push(Sig {
                bytes: B64
                    .decode(s.trim())
                    .map_err(|_| format!("signatures[{i}].signature is not base64"))?,
                label,
            });
        }
    }
    Ok(sigs)
}

/// [`verify`] of an owned document.
pub fn verify_value(doc: &Value, policy: &TrustPolicy) -> Verdict {
    verify(&Node::from_value(doc), policy)
}

/// Checks a manifest document against a policy. Never fails: every problem is an `Invalid`
/// verdict with a reason.
pub fn verify(doc: &Node, policy: &TrustPolicy) -> Verdict {
    let invalid = |reason: String| Verdict::Invalid { reason };
    if doc.as_map().is_none() {
        return invalid("manifest is not a mapping".into());
    }
    let hint = if policy.opt_out.is_empty() {
        String::new()
    } else {
        format!(" (to accept it anyway, set {})", policy.opt_out)
    };
    // An unknown algorithm is refused even where nothing would be checked: "not checked"
    // must never be what a downgraded algorithm name buys.
    if let Err(e) = algorithms_supported(doc) {
        return invalid(e);
    }
    let signed = ["signature", "signatures"]
        .iter()
        .any(|f| doc.get(f).is_some_and(|v| !v.is_null()));
    if signed && policy.trusted.is_empty() && !policy.required {
        // Nothing to check against (the upstream v2 sample carries a placeholder signature).
        return Verdict::Unchecked;
    }
    let sigs = match collect_signatures(doc) {
        Ok(s) => s,
        Err(e) => return invalid(e),
    };
    if sigs.is_empty() {
        return if policy.required {
            invalid(format!(
                "manifest is unsigned, but signatures are required{hint}"
            ))
        } else {
            Verdict::Unsigned
        };
    }
    if let Err(reason) = check_times(doc, policy) {
        return invalid(reason);
    }
    if policy.trusted.is_empty() {
        return invalid(format!(
            "signatures are required, but no trusted public keys are configured{hint}"
        ));
    }
    let message = signing_bytes(doc);
    let mut used = vec![false; policy.trusted.len()];
    let mut bad = Vec::new();
    for sig in &sigs {
        let Ok(arr) = <[u8; 64]>::try_from(sig.bytes.as_slice()) else {
            bad.push(format!("{} is not 64 bytes", sig.label));
            continue;
        };
        let signature = Signature::from_bytes(&arr);
        let hit = policy.trusted.iter().enumerate().find(|(i, key)| {
            !used[*i] && key.verify_strict(message.as_bytes(), &signature).is_ok()
        });
        match hit {
            Some((i, _)) => used[i] = true,
            None => bad.push(format!("{} matches no trusted key", sig.label)),
        }
    }
    let valid = used.iter().filter(|u| **u).count();
    if valid >= policy.threshold {
        Verdict::Valid {
            valid,
            threshold: policy.threshold,
        }
    } else {
        let detail = if bad.is_empty() {
            String::new()
        } else {
            format!(" ({})", bad.join("; "))
        };
        invalid(format!(
            "{valid} valid signature(s) from distinct trusted keys, {} required{detail}",
            policy.threshold
        ))
    }
}

pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
        .map_err(|_| format!("`{s}` is not an RFC 3339 timestamp"))
}

fn check_times(doc: &Node, policy: &TrustPolicy) -> Result<(), String> {
    let get = |field: &str| -> Result<Option<OffsetDateTime>, String> {
        match doc.get(field) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::Str(s)) => parse_time(s).map(Some).map_err(|e| format!("{field}: {e}")),
            Some(_) => Err(format!("{field} must be a timestamp string")),
        }
    };
    let signed_at = get("signed_at")?;
    let expires_at = get("expires_at")?;
    if !policy.check_freshness {
        return Ok(());
    }
    if let Some(signed) = signed_at {
        let ahead = (signed - policy.now).whole_seconds();
        if ahead > policy.max_skew_seconds as i64 {
            return Err(format!(
                "signed_at {} is {ahead} s in the future, more than the {} s of clock skew \
                 allowed (remote.max_clock_skew_seconds; check this host's clock)",
                crate::text::fmt_time(signed),
                policy.max_skew_seconds
            ));
        }
    }
    if let Some(exp) = expires_at {
        if exp <= policy.now {
            return Err(format!(
                "manifest expired at {}",
                crate::text::fmt_time(exp)
            ));
        }
    } else if policy.require_expiry {
        return Err(
            "manifest has no expires_at, but expiry is required (remote.signature_require_expiry; \
             URL manifests always, unless remote.insecure_no_expiry)"
                .into(),
        );
    }
    if let Some(max_age) = policy.max_age_seconds {
        let Some(signed) = signed_at else {
            return Err("manifest has no signed_at, but a maximum signature age is set".into());
        };
        let age = (policy.now - signed).whole_seconds();
        if age > max_age as i64 {
            return Err(format!(
                "signature is {age} s old (signed_at {}), more than the {max_age} s allowed",
                crate::text::fmt_time(signed)
            ));
        }
    }
    Ok(())
}

/// Signs a manifest in place. `signed_at` (and `expires_at`, when asked) are set *before* the
/// bytes are signed — the Python tool set them afterwards, so its output never verified.
/// With `append`, the signature joins `signatures` and the timestamps are left as they are
/// (changing them would invalidate the signatures already there).
pub fn sign(
    doc: &mut Value,
    key: &SigningKey,
    key_id: Option<&str>,
    expires_in: Option<std::time::Duration>,
    now: OffsetDateTime,
    append: bool,
) -> Result<(), String> {
    let map = doc.as_object_mut().ok_or("manifest is not a mapping")?;
    if !append {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        map.insert(
            "signed_at".into(),
            Value::String(crate::text::fmt_time(now)),
        );
        if let Some(d) = expires_in {
            let exp = now + time::Duration::seconds(d.as_secs() as i64);
            map.insert(
                "expires_at".into(),
                Value::String(crate::text::fmt_time(exp)),
            );
        }
        for f in super::canonical::SIGNATURE_FIELDS {
            map.remove(f);
        }
    }
    let signature = key.sign(signing_bytes(&Node::from_value(doc)).as_bytes());
    let encoded = B64.encode(signature.to_bytes());
    let map = doc.as_object_mut().ok_or("manifest is not a mapping")?;
    if append {
        let list = map
            .entry("signatures")
            .or_insert_with(|| Value::Array(Vec::new()));
        let arr = list.as_array_mut().ok_or("`signatures` is not a list")?;
        let mut item = Map::new();
        item.insert("signature".into(), Value::String(encoded));
        item.insert("algorithm".into(), Value::String("ed25519".into()));
        if let Some(id) = key_id {
            item.insert("key_id".into(), Value::String(id.into()));
        }
        arr.push(Value::Object(item));
    } else {
        map.insert("signature".into(), Value::String(encoded));
        map.insert(
            "signature_algorithm".into(),
            Value::String("ed25519".into()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keys: Vec<VerifyingKey>) -> TrustPolicy {
        TrustPolicy::new(keys, 1, OffsetDateTime::now_utc())
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut doc = serde_json::json!({"source": "t", "entries": [{"domain": "adapter", "key": "k", "provider": "p", "factory": "f", "priority": 1}]});
        sign(
            &mut doc,
            &key,
            None,
            Some(std::time::Duration::from_secs(3600)),
            OffsetDateTime::now_utc(),
            false,
        )
        .unwrap();
        let p = policy(vec![key.verifying_key()]);
        assert!(matches!(
            verify_value(&doc, &p),
            Verdict::Valid { valid: 1, .. }
        ));
        doc["entries"][0]["priority"] = 2.into();
        assert!(!verify_value(&doc, &p).accepted());
    }

    #[test]
    fn expiry_and_age() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut doc = serde_json::json!({"entries": []});
        let past = OffsetDateTime::now_utc() - time::Duration::days(2);
        sign(
            &mut doc,
            &key,
            None,
            Some(std::time::Duration::from_secs(60)),
            past,
            false,
        )
        .unwrap();
        let v = verify_value(&doc, &policy(vec![key.verifying_key()]));
        assert!(
            matches!(&v, Verdict::Invalid { reason } if reason.contains("expired")),
            "{v:?}"
        );

        let mut doc = serde_json::json!({"entries": []});
        sign(&mut doc, &key, None, None, past, false).unwrap();
        let mut p = policy(vec![key.verifying_key()]);
        p.max_age_seconds = Some(3600);
        assert!(!verify_value(&doc, &p).accepted());
        p.max_age_seconds = None;
        p.require_expiry = true;
        assert!(!verify_value(&doc, &p).accepted());
    }

    #[test]
    fn unsigned_policy() {
        let doc = serde_json::json!({"entries": []});
        let mut p = policy(vec![]);
        assert_eq!(verify_value(&doc, &p), Verdict::Unsigned);
        p.required = true;
        assert!(!verify_value(&doc, &p).accepted());
    }

    #[test]
    fn key_formats() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\n-----END PRIVATE KEY-----\n";
        let k = parse_signing_key(pem.as_bytes()).unwrap();
        assert_eq!(
            public_key_base64(&k.verifying_key()),
            "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
        );
        assert!(parse_public_key("iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=").is_ok());
        assert!(parse_public_key("AAAA").is_err());
        assert!(parse_signing_key(b"short").is_err());
    }
}
