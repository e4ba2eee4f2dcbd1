//! The six resolution domains and the `(domain, key)` identity every other module uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A resolution domain. Settings files use the plural (`adapters.yml`), manifests and the CLI the
/// singular; both spellings parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    Adapter,
    Service,
    Task,
    Event,
    Workflow,
    Action,
}

impl Domain {
    pub const ALL: [Domain; 6] = [
        Domain::Adapter,
        Domain::Service,
        Domain::Task,
        Domain::Event,
        Domain::Workflow,
        Domain::Action,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Adapter => "adapter",
            Domain::Service => "service",
            Domain::Task => "task",
            Domain::Event => "event",
            Domain::Workflow => "workflow",
            Domain::Action => "action",
        }
    }

    /// Name of the settings section (and settings file stem) for this domain.
    pub fn section(self) -> &'static str {
        match self {
            Domain::Adapter => "adapters",
            Domain::Service => "services",
            Domain::Task => "tasks",
            Domain::Event => "events",
            Domain::Workflow => "workflows",
            Domain::Action => "actions",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown domain `{0}` (expected one of adapter, service, task, event, workflow, action)")]
pub struct UnknownDomain(pub String);

impl FromStr for Domain {
    type Err = UnknownDomain;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == lower || d.section() == lower)
            .ok_or_else(|| UnknownDomain(s.to_string()))
    }
}

/// Keys and provider names: the reference pattern `^[A-Za-z0-9_.-]+$`, which also keeps them
/// safe as path components, metric labels and URL segments.
pub fn is_valid_name(s: &str) -> bool {
    // All-dot names match the reference pattern but read as `.`/`..` path components.
    !s.is_empty()
        && s.len() <= 256
        && !s.bytes().all(|b| b == b'.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_singular_and_plural() {
        assert_eq!("adapters".parse::<Domain>().ok(), Some(Domain::Adapter));
        assert_eq!("Action".parse::<Domain>().ok(), Some(Domain::Action));
        assert!("widget".parse::<Domain>().is_err());
    }

    #[test]
    fn name_pattern() {
        assert!(is_valid_name("queue.kafka"));
        assert!(is_valid_name("https-upload"));
        assert!(!is_valid_name("../etc"));
        assert!(!is_valid_name(".."));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("caché"));
    }
}
