//! The errors that reach an edge — the CLI, the control protocol, the service's start — and
//! the one mapping from each error to its exit code. Every `match` here is exhaustive (no
//! catch-all arm): a new error variant does not compile until someone decides its code.

use std::path::PathBuf;

use crate::activation::ActivationError;
use crate::activity::ActivityError;
use crate::as_owner::AsOwnerError;
use crate::config::ConfigError;
use crate::control::{BindError, ClientError};
use crate::engine::LoadError;
use crate::exit::Exit;
use crate::instance::InstanceError;
use crate::lifecycle::LifecycleError;
use crate::manifest::ManifestError;
use crate::manifest::signature::KeyError;
use crate::metrics::MetricsError;
use crate::remote::RemoteError;

/// Why a reload (SIGHUP, `oneiric reload`, a refresh, or the service's first load) failed.
/// The served state is untouched by any of them.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("initial load failed: {0}")]
    Load(#[from] ReloadError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} directory {path}: {source}")]
    Directory {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] BindError),
    #[error("socket activation: {0}")]
    Activation(#[from] ActivationError),
    #[error(transparent)]
    Activity(#[from] ActivityError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Token(#[from] crate::http::TokenError),
}

/// The exit code an error ends a command (or a control request) with.
pub trait HasExit {
    fn exit(&self) -> Exit;
}

impl HasExit for ConfigError {
    fn exit(&self) -> Exit {
        match self {
            ConfigError::Read { .. }
            | ConfigError::NotUtf8 { .. }
            | ConfigError::TooLarge { .. }
            | ConfigError::Parse { .. }
            | ConfigError::Invalid { .. }
            | ConfigError::Env { .. }
            | ConfigError::Flag { .. } => Exit::InvalidConfig,
        }
    }
}

impl HasExit for ManifestError {
    fn exit(&self) -> Exit {
        match self {
            ManifestError::Read { .. }
            | ManifestError::TooLarge { .. }
            | ManifestError::NotUtf8 { .. }
            | ManifestError::Syntax { .. }
            | ManifestError::Structure { .. } => Exit::InvalidConfig,
            ManifestError::Signature { .. } => Exit::VerifyFailed,
        }
    }
}

impl HasExit for LoadError {
    fn exit(&self) -> Exit {
        match self {
            LoadError::Config(e) => e.exit(),
            LoadError::Manifest(e) => e.exit(),
            // Not the input's fault: the origin is down and nothing was cached yet.
            LoadError::Remote { .. } => Exit::Failure,
        }
    }
}

impl HasExit for ReloadError {
    fn exit(&self) -> Exit {
        match self {
            ReloadError::Load(e) => e.exit(),
            ReloadError::Task(_) => Exit::Failure,
        }
    }
}

impl HasExit for StartError {
    fn exit(&self) -> Exit {
        match self {
            StartError::Load(e) => e.exit(),
            StartError::Runtime(_)
            | StartError::Signal(_)
            | StartError::Listen { .. }
            | StartError::Directory { .. }
            | StartError::Control(_)
            | StartError::Activity(_)
            | StartError::Metrics(_) => Exit::Failure,
            StartError::Activation(e) => e.exit(),
            // The file the settings name is missing, unreadable or empty: a setting to fix.
            StartError::Token(_) => Exit::InvalidConfig,
        }
    }
}

impl HasExit for ActivationError {
    fn exit(&self) -> Exit {
        match self {
            // The socket unit and the settings disagree: a configuration to fix.
            ActivationError::HttpMismatch { .. }
            | ActivationError::HttpDisabled { .. }
            | ActivationError::PathMismatch { .. }
            | ActivationError::Duplicate(_) => Exit::InvalidConfig,
            ActivationError::BadCount(_)
            | ActivationError::NameCount { .. }
            | ActivationError::NotListening { .. }
            | ActivationError::Io { .. } => Exit::Failure,
        }
    }
}

impl HasExit for AsOwnerError {
    fn exit(&self) -> Exit {
        match self {
            AsOwnerError::TwoOwners { .. } => Exit::Refused,
            AsOwnerError::Inspect { .. } | AsOwnerError::Switch { .. } => Exit::Failure,
        }
    }
}

impl HasExit for InstanceError {
    fn exit(&self) -> Exit {
        Exit::Usage
    }
}

impl HasExit for LifecycleError {
    fn exit(&self) -> Exit {
        match self {
            LifecycleError::NotFound(_) => Exit::NotFound,
            LifecycleError::Refused(_) | LifecycleError::RolledBack { .. } => Exit::Refused,
            LifecycleError::Store { .. } | LifecycleError::Activity(_) => Exit::Failure,
        }
    }
}

impl HasExit for ActivityError {
    fn exit(&self) -> Exit {
        Exit::Failure
    }
}

impl HasExit for ClientError {
    fn exit(&self) -> Exit {
        match self {
            ClientError::NoService(_)
            | ClientError::Unreachable { .. }
            | ClientError::Io { .. }
            | ClientError::Protocol { .. } => Exit::Failure,
        }
    }
}

impl HasExit for BindError {
    fn exit(&self) -> Exit {
        Exit::Failure
    }
}

impl HasExit for KeyError {
    fn exit(&self) -> Exit {
        // Keys given on the command line; keys in settings arrive as `ConfigError`.
        Exit::Usage
    }
}

impl HasExit for MetricsError {
    fn exit(&self) -> Exit {
        Exit::Failure
    }
}

impl HasExit for RemoteError {
    fn exit(&self) -> Exit {
        // The fetcher refuses its settings (auth header, CA file, client options).
        Exit::InvalidConfig
    }
}

/// One example of every error kind that a load can end in, with its code: the table README's
/// "Exit codes" section documents, and that the tests drive through every path.
pub fn load_error_table() -> Vec<(&'static str, Exit)> {
    let path = PathBuf::from("x");
    let origin = || "x".to_string();
    let cases: Vec<(&'static str, LoadError)> = vec![
        (
            "settings unreadable, too large, not UTF-8, unparsable or invalid; bad variable or flag",
            ConfigError::Invalid {
                path,
                message: String::new(),
            }
            .into(),
        ),
        (
            "manifest unreadable, too large, not UTF-8, unparsable or malformed",
            ManifestError::Structure {
                origin: origin(),
                message: String::new(),
            }
            .into(),
        ),
        (
            "manifest signature invalid or below the threshold",
            ManifestError::Signature {
                origin: origin(),
                message: String::new(),
            }
            .into(),
        ),
        (
            "remote manifest unavailable (never fetched, nothing cached)",
            LoadError::Remote {
                origin: origin(),
                message: String::new(),
            },
        ),
    ];
    cases
        .into_iter()
        .map(|(what, e)| (what, e.exit()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_have_the_documented_codes() {
        let codes: Vec<u8> = load_error_table().iter().map(|(_, e)| e.code()).collect();
        assert_eq!(codes, vec![3, 3, 7, 1]);
    }

    #[test]
    fn readme_documents_every_exit_code() {
        let readme = include_str!("../README.md");
        for e in Exit::ALL {
            let row = format!("| {} | {} |", e.code(), e.meaning());
            assert!(readme.contains(&row), "README lacks the row `{row}`");
        }
        for (what, e) in load_error_table() {
            let row = format!("| {what} | {} |", e.code());
            assert!(readme.contains(&row), "README lacks the row `{row}`");
        }
    }
}
