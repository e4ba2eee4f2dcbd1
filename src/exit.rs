//! The process exit codes: stable, scripts and the unit file depend on them. Which error gets
//! which code is decided in one place, the `errors` module; this module is only the vocabulary,
//! shared by the CLI, the control protocol (which carries it by name) and the service.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    Usage = 2,
    InvalidConfig = 3,
    Unhealthy = 4,
    NotFound = 5,
    Refused = 6,
    VerifyFailed = 7,
}

impl Exit {
    pub const ALL: [Exit; 8] = [
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::InvalidConfig,
        Exit::Unhealthy,
        Exit::NotFound,
        Exit::Refused,
        Exit::VerifyFailed,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, as README's exit-code table says it.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Failure => "error (I/O, no service, remote manifest unavailable, internal)",
            Exit::Usage => "usage (bad arguments or request)",
            Exit::InvalidConfig => "invalid settings or manifest",
            Exit::Unhealthy => "unhealthy (a directory or an active probe failed)",
            Exit::NotFound => "not found (domain/key/provider)",
            Exit::Refused => "refused or rolled back (paused, draining, failed probe)",
            Exit::VerifyFailed => "signature verification failed",
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
