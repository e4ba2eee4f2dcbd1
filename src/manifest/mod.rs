//! Manifests: the document format of the reference implementation (YAML or JSON), entry
//! validation (invalid entries are skipped with their index and reason, the rest load), and the
//! raw document kept for signature checks.

pub mod canonical;
pub mod node;
mod raw;
pub mod signature;
pub mod yaml_scan;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{Domain, UnknownDomain, is_valid_name};

pub use node::Node;
pub use raw::{parse_document, parse_tree};
use signature::{TrustPolicy, Verdict};

/// Largest manifest accepted, local or remote. 100 000 entries of a typical size fit.
pub const MAX_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {size} bytes is more than the {limit}-byte manifest limit")]
    TooLarge {
        origin: String,
        size: u64,
        limit: u64,
    },
    #[error("{origin}: not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { origin: String, offset: usize },
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Structure { origin: String, message: String },
    #[error("{origin}: {message}")]
    Signature { origin: String, message: String },
}

/// A capability: a bare string, or an object with a `name` (extra fields are descriptive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Capability {
    Name(String),
    Described {
        name: String,
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
}

impl Capability {
    pub fn name(&self) -> &str {
        match self {
            Capability::Name(n) => n,
            Capability::Described { name, .. } => name,
        }
    }
}

/// An optional health probe of a candidate: exactly one of `tcp`, `http` (http or https URL)
/// or `unix`. Oneiric never runs programs as probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

impl HealthCheck {
    pub fn validate(&self) -> Result<(), String> {
        let set = [&self.tcp, &self.http, &self.unix]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set != 1 {
            return Err("health: set exactly one of tcp, http, unix".into());
        }
        if let Some(t) = self.timeout_seconds {
            if !(t > 0.0 && t <= 300.0) {
                return Err("health.timeout_seconds: must be within (0, 300]".into());
            }
        }
        if let Some(addr) = &self.tcp {
            if addr
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(format!("health.tcp: `{addr}` is not HOST:PORT"));
            }
        }
        if let Some(url) = &self.http {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("health.http: `{url}` is not an http(s) URL"));
            }
        }
        if let Some(p) = &self.unix {
            if !p.starts_with('/') {
                return Err(format!("health.unix: `{p}` is not an absolute path"));
            }
        }
        Ok(())
    }
}

/// One manifest entry, typed. Fields the daemon does not act on are only checked by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub domain: Domain,
    pub key: String,
    pub provider: String,
    pub factory: String,
    pub uri: Option<String>,
    pub sha256: Option<String>,
    pub stack_level: Option<i64>,
    pub priority: Option<i64>,
    pub version: Option<String>,
    pub metadata: Map<String, Value>,
    pub capabilities: Vec<Capability>,
    pub health: Option<HealthCheck>,
    pub layer: Option<String>,
    pub event_fanout_policy: Option<String>,
}

/// The typed fields of [`Entry`], in the order [`Entry::from_node`] destructures them.
const ENTRY_FIELDS: [&str; 14] = [
    "domain",
    "key",
    "provider",
    "factory",
    "uri",
    "sha256",
    "stack_level",
    "priority",
    "version",
    "metadata",
    "capabilities",
    "health",
    "layer",
    "event_fanout_policy",
];

/// Entry fields the reference format defines but the resolver does not act on; accepted
/// silently. Anything outside this list and the typed fields is reported as a warning.
const DESCRIPTIVE_FIELDS: &[&str] = &[
    "owner",
    "requires_secrets",
    "side_effect_free",
    "timeout_seconds",
    "retry_policy",
    "requires",
    "conflicts_with",
    "license",
    "documentation_url",
    "event_topics",
    "event_max_concurrency",
    "event_filters",
    "event_priority",
    "dag",
    // Python-only fields of the reference implementation.
    "settings_model",
    "python_version",
    "os_platform",
];

const TOP_LEVEL_FIELDS: &[&str] = &[
    "source",
    "entries",
    "signature",
    "signature_algorithm",
    "signatures",
    "signed_at",
    "expires_at",
    "serial",
    "version",
    "description",
];

/// Validation shared by manifest entries and local candidates.
pub fn validate_fields(
    key: &str,
    provider: &str,
    priority: Option<i64>,
    stack_level: Option<i64>,
    health: Option<&HealthCheck>,
) -> Result<(), String> {
    if !is_valid_name(key) {
        return Err(format!("key `{key}` does not match ^[A-Za-z0-9_.-]+$"));
    }
    if !is_valid_name(provider) {
        return Err(format!(
            "provider `{provider}` does not match ^[A-Za-z0-9_.-]+$"
        ));
    }
    if let Some(p) = priority {
        if !(-1000..=1000).contains(&p) {
            return Err(format!("priority {p} is outside -1000..=1000"));
        }
    }
    if let Some(s) = stack_level {
        if !(-100..=100).contains(&s) {
            return Err(format!("stack_level {s} is outside -100..=100"));
        }
    }
    if let Some(h) = health {
        h.validate()?;
    }
    Ok(())
}

/// Field readers for [`Entry::from_node`]: a present `null` counts as absent, as the reference
/// implementation's optional fields allow.
fn opt_str(name: &str, v: Option<&Node>) -> Result<Option<String>, String> {
    match v {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Str(s)) => Ok(Some(s.to_string())),
        Some(other) => Err(format!("`{name}` must be a string, not {}", other.kind())),
    }
}

fn req_str(name: &str, v: Option<&Node>) -> Result<String, String> {
    opt_str(name, v)?.ok_or_else(|| format!("missing field `{name}`"))
}

fn opt_int(name: &str, v: Option<&Node>) -> Result<Option<i64>, String> {
    match v {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("`{name}` must be a 64-bit integer, not {n}")),
        Some(other) => Err(format!("`{name}` must be an integer, not {}", other.kind())),
    }
}

fn capability(i: usize, v: &Node) -> Result<Capability, String> {
    match v {
        Node::Str(s) => Ok(Capability::Name(s.to_string())),
        Node::Map(fields) => {
            let name = req_str(&format!("capabilities[{i}].name"), v.get("name"))?;
            Ok(Capability::Described {
                name,
                extra: node::map_to_value(fields.iter().filter(|(k, _)| k != "name")),
            })
        }
        other => Err(format!(
            "capabilities[{i}] must be a name or a mapping with `name`, not {}",
            other.kind()
        )),
    }
}

fn health_check(v: &Node) -> Result<HealthCheck, String> {
    let fields = v
        .as_map()
        .ok_or_else(|| format!("`health` must be a mapping, not {}", v.kind()))?;
    let mut h = HealthCheck {
        tcp: None,
        http: None,
        unix: None,
        timeout_seconds: None,
    };
    for (k, v) in fields {
        match k.as_ref() {
            "tcp" => h.tcp = opt_str("health.tcp", Some(v))?,
            "http" => h.http = opt_str("health.http", Some(v))?,
            "unix" => h.unix = opt_str("health.unix", Some(v))?,
            "timeout_seconds" => {
                h.timeout_seconds = match v {
                    Node::Null => None,
                    Node::Number(n) => n.as_f64(),
                    other => {
                        return Err(format!(
                            "`health.timeout_seconds` must be a number, not {}",
                            other.kind()
                        ));
                    }
                }
            }
            other => {
                return Err(format!(
                    "health: unknown field `{other}` (expected tcp, http, unix, timeout_seconds)"
                ));
            }
        }
    }
    Ok(h)
}

impl Entry {
    /// Reads an entry in one pass over its fields; names outside the typed and descriptive
    /// fields are returned for a warning.
    fn from_node<'n>(item: &'n Node) -> Result<(Entry, Vec<&'n str>), String> {
        let fields = item
            .as_map()
            .ok_or_else(|| format!("an entry must be a mapping, not {}", item.kind()))?;
        let mut f: [Option<&Node>; 14] = [None; 14];
        let mut unknown = Vec::new();
        for (k, v) in fields {
            match ENTRY_FIELDS.iter().position(|n| k == n) {
                Some(i) => f[i] = Some(v),
                None if DESCRIPTIVE_FIELDS.contains(&k.as_ref()) => {}
                None => unknown.push(k.as_ref()),
            }
        }
        let [
            domain,
            key,
            provider,
            factory,
            uri,
            sha256,
            stack_level,
            priority,
            version,
            metadata,
            capabilities,
            health,
            layer,
            event_fanout_policy,
        ] = f;
        let domain = req_str("domain", domain)?;
        let domain = Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == domain)
            .ok_or_else(|| UnknownDomain(domain).to_string())?;
        let entry = Entry {
            domain,
            key: req_str("key", key)?,
            provider: req_str("provider", provider)?,
            factory: req_str("factory", factory)?,
            uri: opt_str("uri", uri)?,
            sha256: opt_str("sha256", sha256)?,
            stack_level: opt_int("stack_level", stack_level)?,
            priority: opt_int("priority", priority)?,
            version: opt_str("version", version)?,
            metadata: match metadata {
                None | Some(Node::Null) => Map::new(),
                Some(Node::Map(m)) => node::map_to_value(m),
                Some(other) => {
                    return Err(format!(
                        "`metadata` must be a mapping, not {}",
                        other.kind()
                    ));
                }
            },
            capabilities: match capabilities {
                None | Some(Node::Null) => Vec::new(),
                Some(Node::Seq(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, c)| capability(i, c))
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(format!(
                        "`capabilities` must be a list, not {}",
                        other.kind()
                    ));
                }
            },
            health: match health {
                None | Some(Node::Null) => None,
                Some(h) => Some(health_check(h)?),
            },
            layer: opt_str("layer", layer)?,
            event_fanout_policy: opt_str("event_fanout_policy", event_fanout_policy)?,
        };
        entry.validate()?;
        Ok((entry, unknown))
    }

    fn validate(&self) -> Result<(), String> {
        validate_fields(
            &self.key,
            &self.provider,
            self.priority,
            self.stack_level,
            self.health.as_ref(),
        )?;
        if self.factory.trim().is_empty() {
            return Err("factory is empty".into());
        }
        if let Some(sha) = &self.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("sha256 must be 64 hex digits".into());
            }
        }
        if self.sha256.is_some() != self.uri.is_some() {
            return Err("uri and sha256 must be given together".into());
        }
        if let Some(policy) = &self.event_fanout_policy {
            if policy != "broadcast" && policy != "exclusive" {
                return Err(format!(
                    "event_fanout_policy `{policy}` is not broadcast or exclusive"
                ));
            }
        }
        if let Some(layer) = &self.layer {
            if !is_valid_name(layer) {
                return Err(format!("layer `{layer}` is not a valid name"));
            }
        }
        Ok(())
    }

    /// Capability names from `capabilities` and, as the upstream sample writes them,
    /// `metadata.capabilities`.
    pub fn capability_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .capabilities
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        if let Some(Value::Array(items)) = self.metadata.get("capabilities") {
            for item in items {
                let name = match item {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) => o.get("name").and_then(Value::as_str),
                    _ => None,
                };
                if let Some(n) = name {
                    if !names.iter().any(|x| x == n) {
                        names.push(n.to_string());
                    }
                }
            }
        }
        names
    }
}

/// An entry that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub index: usize,
    pub key: Option<String>,
    pub reason: String,
}

/// A parsed, validated manifest. The document itself is not kept: its signature is checked
/// while it is parsed ([`parse_verified`]).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub origin: String,
    pub source: Option<String>,
    pub header: Header,
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    /// SHA-256 (hex) of the text, when the parse was asked for it ([`TextDigest::Compute`]).
    pub text_sha256: Option<String>,
}

/// Whether [`parse_verified`] also digests the text: a served state reports the digest (fleet
/// hosts compare it); `check` and a fetch's validation print none and skip the work, which
/// under emulation or without SHA instructions costs as much as the parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextDigest {
    Compute,
    Skip,
}

/// What a manifest says about itself at the top level, for the rollback and freeze checks.
/// Every field is covered by the signature (only the signature fields are not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Increases with every release of the manifest (`oneiric manifest sign --serial`).
    pub serial: Option<u64>,
    pub signed_at: Option<time::OffsetDateTime>,
    pub expires_at: Option<time::OffsetDateTime>,
    /// SHA-256 (hex) over the signatures in document order. The same signed content gives the
    /// same signatures (ed25519 signing is deterministic); other content gives others.
    pub signature_digest: Option<String>,
}

impl Header {
    fn from_tree(doc: &Node, warnings: &mut Vec<String>) -> Result<Self, String> {
        let serial = match doc.get("serial") {
            None | Some(Node::Null) => None,
            Some(Node::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(_) => return Err("`serial` must be an integer from 0 to 2^64 - 1".into()),
        };
        let mut time = |field: &str| match doc.get(field) {
            Some(Node::Str(s)) => match signature::parse_time(s) {
                Ok(t) => Some(t),
                Err(e) => {
                    warnings.push(format!("{field}: {e} (ignored)"));
                    None
                }
            },
            _ => None,
        };
        let signed_at = time("signed_at");
        let expires_at = time("expires_at");
        let mut sigs: Vec<&str> = Vec::new();
        if let Some(s) = doc.get("signature").and_then(Node::as_str) {
            sigs.push(s);
        }
        if let Some(list) = doc.get("signatures").and_then(Node::as_seq) {
            sigs.extend(
                list.iter()
                    .filter_map(|i| i.get("signature").and_then(Node::as_str)),
            );
        }
        let signature_digest = (!sigs.is_empty()).then(|| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for s in sigs {
                h.update(s.trim().as_bytes());
                h.update(b"\n");
            }
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        Ok(Header {
            serial,
            signed_at,
            expires_at,
            signature_digest,
        })
    }
}

impl Manifest {
    /// Total entries in the document: loaded plus skipped.
    pub fn total(&self) -> usize {
        self.entries.len() + self.skipped.len()
    }
}

/// Parses manifest text (YAML, or JSON, which is detected by its first character).
pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    from_tree(&parse_tree(text, origin)?, origin)
}

/// Documents at least this long have their signature checked on a second thread while the
/// entries are read: both take milliseconds per 10 000 entries, a thread start microseconds.
const PARALLEL_CHECK_BYTES: usize = 256 * 1024;

/// Parses manifest text and checks its signature against `policy` from the same parse. The
/// verdict is returned, not judged: the caller decides what an invalid signature means.
pub fn parse_verified(
    text: &str,
    origin: &str,
    policy: &TrustPolicy,
    digest: TextDigest,
) -> Result<(Manifest, Verdict), ManifestError> {
    let sha = || (digest == TextDigest::Compute).then(|| crate::text::sha256_hex(text.as_bytes()));
    if text.len() < PARALLEL_CHECK_BYTES {
        let tree = parse_tree(text, origin)?;
        let verdict = signature::verify(&tree, policy);
        let mut m = from_tree(&tree, origin)?;
        m.text_sha256 = sha();
        return Ok((m, verdict));
    }
    std::thread::scope(|s| {
        // The digest needs only the text, so it runs beside the parse; the signature check
        // needs the tree, so it runs beside the entries' extraction. Without a second thread
        // (resource limits) each runs inline.
        let digester = match digest {
            TextDigest::Compute => std::thread::Builder::new()
                .name("manifest-digest".into())
                .spawn_scoped(s, sha)
                .ok(),
            TextDigest::Skip => None,
        };
        let tree = parse_tree(text, origin)?;
        let (manifest, verdict) = std::thread::scope(|inner| {
            let verify = || signature::verify(&tree, policy);
            let checker = std::thread::Builder::new()
                .name("manifest-verify".into())
                .spawn_scoped(inner, verify);
            let manifest = from_tree(&tree, origin);
            let verdict = match checker {
                Ok(handle) => handle.join().unwrap_or_else(|_| Verdict::Invalid {
                    reason: "the signature check failed unexpectedly".into(),
                }),
                Err(_) => verify(),
            };
            (manifest, verdict)
        });
        drop(tree);
        let mut manifest = manifest?;
        manifest.text_sha256 = match digester {
            Some(handle) => handle.join().ok().flatten().or_else(sha),
            None => sha(),
        };
        Ok((manifest, verdict))
    })
}

/// Builds a manifest from an owned document (the CLI's `manifest` commands).
pub fn from_document(doc: &Value, origin: &str) -> Result<Manifest, ManifestError> {
    from_tree(&Node::from_value(doc), origin)
}

/// Builds a manifest from a parsed document: entries that do not validate are skipped with
/// their index and reason, the rest load.
pub fn from_tree(doc: &Node, origin: &str) -> Result<Manifest, ManifestError> {
    let structure = |message: String| ManifestError::Structure {
        origin: origin.to_string(),
        message,
    };
    let map = doc
        .as_map()
        .ok_or_else(|| structure("top level must be a mapping with `entries`".into()))?;
    let mut warnings = Vec::new();
    for (k, _) in map {
        if !TOP_LEVEL_FIELDS.contains(&k.as_ref()) {
            warnings.push(format!("unknown top-level field `{k}` (ignored)"));
        }
    }
    let source = match doc.get("source") {
        None | Some(Node::Null) => None,
        Some(Node::Str(s)) => Some(s.to_string()),
        Some(_) => return Err(structure("`source` must be a string".into())),
    };
    let header = Header::from_tree(doc, &mut warnings).map_err(structure)?;
    let items = match doc.get("entries") {
        Some(Node::Seq(a)) => a.as_slice(),
        None | Some(Node::Null) => &[],
        Some(_) => return Err(structure("`entries` must be a list".into())),
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match Entry::from_node(item) {
            Ok((entry, unknown)) => {
                for extra in unknown {
                    warnings.push(format!(
                        "entry {index} ({}): unknown field `{extra}` (ignored)",
                        entry.key
                    ));
                }
                entries.push(entry);
            }
            Err(reason) => {
                let key = item.get("key").and_then(Node::as_str).map(str::to_string);
                skipped.push(Skipped { index, key, reason })
            }
        }
    }
    Ok(Manifest {
        origin: origin.to_string(),
        source,
        header,
        entries,
        skipped,
        warnings,
        text_sha256: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_entries_are_skipped_with_reasons() {
        let text = r#"
source: t
entries:
  - {domain: adapter, key: ok, provider: p, factory: f}
  - {domain: widget, key: k, provider: p, factory: f}
  - {domain: adapter, key: "a/b", provider: p, factory: f}
  - {domain: adapter, key: k, provider: p, factory: f, priority: 1001}
  - {domain: adapter, key: k, provider: p, factory: f, stack_level: -101}
  - {domain: adapter, key: k, provider: p}
  - {domain: adapter, key: k, provider: p, factory: f, priority: 99999999999999999999999}
  - "just a string"
  - {domain: adapter, key: k2, provider: p, factory: f, health: {tcp: "127.0.0.1:1", http: "http://x"}}
"#;
        let m = parse(text, "t.yaml").unwrap();
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.skipped.len(), 8);
        assert_eq!(m.total(), 9);
        assert!(m.skipped[0].reason.contains("widget"), "{:?}", m.skipped[0]);
        assert!(m.skipped[2].reason.contains("1001"));
        assert!(m.skipped[4].reason.contains("factory"));
        assert_eq!(m.skipped[6].index, 7);
    }

    #[test]
    fn field_errors_name_the_field() {
        let text = r#"
entries:
  - {domain: adapter, key: k, provider: p, factory: f, priority: 1.5}
  - {domain: adapter, key: k, provider: p, factory: f, health: {tcp: "h:1", bogus: 1}}
  - {domain: adapter, key: k, provider: p, factory: f, capabilities: [kv, 3]}
  - {domain: adapter, key: k, provider: 7, factory: f}
  - {domain: adapters, key: k, provider: p, factory: f}
  - {domain: adapter, key: k, provider: p, factory: f, metadata: [1]}
  - {domain: adapter, key: ok, provider: p, factory: f, version: null, colour: red}
"#;
        let m = parse(text, "t.yaml").unwrap();
        let reasons: Vec<&str> = m.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].contains("`priority` must be a 64-bit integer, not 1.5"));
        assert!(reasons[1].contains("unknown field `bogus`"));
        assert!(reasons[2].contains("capabilities[1]"));
        assert!(reasons[3].contains("`provider` must be a string, not an integer"));
        assert!(reasons[4].contains("unknown domain `adapters`"));
        assert!(reasons[5].contains("`metadata` must be a mapping"));
        assert_eq!(m.entries[0].version, None);
        assert_eq!(
            m.warnings,
            ["entry 6 (ok): unknown field `colour` (ignored)"]
        );
    }

    /// Big documents are checked on a second thread: the verdict must be the same.
    #[test]
    fn parse_verified_checks_big_documents_on_the_side() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let entries: Vec<Value> = (0..3000)
            .map(|i| {
                serde_json::json!({"domain": "service", "key": format!("k{i}"),
                    "provider": "p", "factory": "pkg:F", "metadata": {"n": i}})
            })
            .collect();
        let mut doc = serde_json::json!({"source": "big", "entries": entries});
        let now = time::OffsetDateTime::now_utc();
        signature::sign(&mut doc, &key, None, None, now, false).unwrap();
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.len() > PARALLEL_CHECK_BYTES);
        let mut policy = TrustPolicy::new(vec![key.verifying_key()], 1, now);
        policy.required = true;
        let (m, verdict) = parse_verified(&text, "big.json", &policy, TextDigest::Compute).unwrap();
        assert_eq!(
            m.text_sha256.as_deref(),
            Some(crate::text::sha256_hex(text.as_bytes()).as_str())
        );
        assert_eq!(m.entries.len(), 3000);
        assert!(
            matches!(verdict, Verdict::Valid { valid: 1, .. }),
            "{verdict:?}"
        );
        let tampered = text.replacen("\"k2999\"", "\"k2998\"", 1);
        let (m, verdict) =
            parse_verified(&tampered, "big.json", &policy, TextDigest::Skip).unwrap();
        assert_eq!(m.text_sha256, None);
        assert!(!verdict.accepted(), "{verdict:?}");
        // Small documents take the inline path to the same answer.
        let small = serde_json::to_string(&serde_json::json!({"entries": []})).unwrap();
        let (m, verdict) = parse_verified(&small, "s.json", &policy, TextDigest::Compute).unwrap();
        assert_eq!(
            m.text_sha256.as_deref(),
            Some(crate::text::sha256_hex(small.as_bytes()).as_str())
        );
        assert!(!verdict.accepted());
    }

    /// The tree keeps exactly what a plain JSON parse sees, strings with escapes included.
    #[test]
    fn tree_matches_a_plain_parse() {
        let text =
            r#"{"a": "x\ny \u00e9", "b": [1, -2, 2.5e3, true, null, {"c": ""}], "k\"q": {}}"#;
        let tree = parse_tree(text, "t").unwrap();
        let plain: Value = serde_json::from_str(text).unwrap();
        assert_eq!(tree.to_value(), plain);
        let yaml = "a: \"x\\ny \\u00e9\"\nb: [1, -2, 2.5e3, true, null, {c: ''}]\n'k\"q': {}\n";
        assert_eq!(parse_tree(yaml, "t").unwrap().to_value(), plain);
    }

    #[test]
    fn capabilities_from_both_places() {
        let m = parse(
            "entries:\n  - {domain: adapter, key: k, provider: p, factory: f, capabilities: [kv, {name: ttl}], metadata: {capabilities: [{name: list}]}}\n",
            "x",
        )
        .unwrap();
        assert_eq!(m.entries[0].capability_names(), ["kv", "ttl", "list"]);
    }
}
