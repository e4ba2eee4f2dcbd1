//! Manifests: the document format of the reference implementation (YAML or JSON), entry
//! validation (invalid entries are skipped with their index and reason, the rest load), and the
//! raw document kept for signature checks.

pub mod canonical;
mod raw;
pub mod signature;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{Domain, is_valid_name};

pub use raw::parse_document;

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
        if let Some(t) = self.timeout_seconds
            && !(t > 0.0 && t <= 300.0)
        {
            return Err("health.timeout_seconds: must be within (0, 300]".into());
        }
        if let Some(addr) = &self.tcp
            && addr
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(format!("health.tcp: `{addr}` is not HOST:PORT"));
        }
        if let Some(url) = &self.http
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("health.http: `{url}` is not an http(s) URL"));
        }
        if let Some(p) = &self.unix
            && !p.starts_with('/')
        {
            return Err(format!("health.unix: `{p}` is not an absolute path"));
        }
        Ok(())
    }
}

/// One manifest entry, typed. Fields the daemon does not act on are kept in the raw document
/// (for signatures and display) rather than here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Entry {
    pub domain: Domain,
    pub key: String,
    pub provider: String,
    pub factory: String,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub stack_level: Option<i64>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub health: Option<HealthCheck>,
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub event_fanout_policy: Option<String>,
}

/// The typed fields of [`Entry`]; other fields are checked against [`DESCRIPTIVE_FIELDS`] on
/// the raw document (a `#[serde(flatten)]` catch-all would buffer every entry twice).
const ENTRY_FIELDS: &[&str] = &[
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
    if let Some(p) = priority
        && !(-1000..=1000).contains(&p)
    {
        return Err(format!("priority {p} is outside -1000..=1000"));
    }
    if let Some(s) = stack_level
        && !(-100..=100).contains(&s)
    {
        return Err(format!("stack_level {s} is outside -100..=100"));
    }
    if let Some(h) = health {
        h.validate()?;
    }
    Ok(())
}

impl Entry {
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
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err("sha256 must be 64 hex digits".into());
        }
        if self.sha256.is_some() != self.uri.is_some() {
            return Err("uri and sha256 must be given together".into());
        }
        if let Some(policy) = &self.event_fanout_policy
            && policy != "broadcast"
            && policy != "exclusive"
        {
            return Err(format!(
                "event_fanout_policy `{policy}` is not broadcast or exclusive"
            ));
        }
        if let Some(layer) = &self.layer
            && !is_valid_name(layer)
        {
            return Err(format!("layer `{layer}` is not a valid name"));
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
                if let Some(n) = name
                    && !names.iter().any(|x| x == n)
                {
                    names.push(n.to_string());
                }
            }
        }
        names
    }
}

/// An entry that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub index: usize,
    pub key: Option<String>,
    pub reason: String,
}

/// A parsed, validated manifest. `raw` is the document exactly as read, for signatures.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub origin: String,
    pub source: Option<String>,
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    pub raw: Value,
}

impl Manifest {
    /// Total entries in the document: loaded plus skipped.
    pub fn total(&self) -> usize {
        self.entries.len() + self.skipped.len()
    }
}

/// Reads a manifest file (size-limited, UTF-8 checked) and parses it.
pub fn load_file(path: &Path) -> Result<Manifest, ManifestError> {
    let origin = path.display().to_string();
    let text = crate::config::load::read_text(path, MAX_MANIFEST_BYTES).map_err(|e| match e {
        crate::config::ConfigError::TooLarge { size, limit, .. } => ManifestError::TooLarge {
            origin: origin.clone(),
            size,
            limit,
        },
        crate::config::ConfigError::NotUtf8 { offset, .. } => ManifestError::NotUtf8 {
            origin: origin.clone(),
            offset,
        },
        crate::config::ConfigError::Read { source, .. } => ManifestError::Read {
            origin: origin.clone(),
            source,
        },
        other => ManifestError::Structure {
            origin: origin.clone(),
            message: other.to_string(),
        },
    })?;
    parse(&text, &origin)
}

/// Parses manifest text (YAML, or JSON, which is detected by its first character).
pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let raw = parse_document(text, origin)?;
    from_document(raw, origin)
}

/// Builds a manifest from an already parsed document.
pub fn from_document(raw: Value, origin: &str) -> Result<Manifest, ManifestError> {
    let structure = |message: String| ManifestError::Structure {
        origin: origin.to_string(),
        message,
    };
    let map = raw
        .as_object()
        .ok_or_else(|| structure("top level must be a mapping with `entries`".into()))?;
    let mut warnings = Vec::new();
    for k in map.keys() {
        if !TOP_LEVEL_FIELDS.contains(&k.as_str()) {
            warnings.push(format!("unknown top-level field `{k}` (ignored)"));
        }
    }
    let source = match map.get("source") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(structure("`source` must be a string".into())),
    };
    let items = match map.get("entries") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(structure("`entries` must be a list".into())),
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut skipped = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let parsed = Entry::deserialize(item)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                e.validate()?;
                Ok(e)
            });
        match parsed {
            Ok(entry) => {
                let extra = item
                    .as_object()
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .filter(|k| {
                        !ENTRY_FIELDS.contains(&k.as_str())
                            && !DESCRIPTIVE_FIELDS.contains(&k.as_str())
                    });
                for extra in extra {
                    warnings.push(format!(
                        "entry {index} ({}): unknown field `{extra}` (ignored)",
                        entry.key
                    ));
                }
                entries.push(entry);
            }
            Err(reason) => {
                let key = item.get("key").and_then(Value::as_str).map(str::to_string);
                skipped.push(Skipped { index, key, reason })
            }
        }
    }
    Ok(Manifest {
        origin: origin.to_string(),
        source,
        entries,
        skipped,
        warnings,
        raw,
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
    fn capabilities_from_both_places() {
        let m = parse(
            "entries:\n  - {domain: adapter, key: k, provider: p, factory: f, capabilities: [kv, {name: ttl}], metadata: {capabilities: [{name: list}]}}\n",
            "x",
        )
        .unwrap();
        assert_eq!(m.entries[0].capability_names(), ["kv", "ttl", "list"]);
    }
}
