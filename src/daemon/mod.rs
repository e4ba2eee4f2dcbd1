//! `oneiric orchestrate`: the long-running service.
//!
//! - [`owner`]: the one owner of the served state; every change is a transition there.
//! - [`reload`]: the reload pipeline (startup is the first reload), and the refresh timer's work.
//! - [`restore`]: answering from the state an earlier process saved, and saving each new one.
//! - [`sync`]: fetching remote manifests into the cache before a load.
//! - [`run`]: process setup (logging, runtime, listeners) and the main loop.
//! - [`control_server`]: the control socket's requests, answered through the owner.
//! - [`notify`]: `sd_notify` messages to systemd.

mod control_server;
pub mod notify;
pub mod owner;
mod reload;
mod restore;
mod run;
mod sync;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

pub use run::{Listeners, ServeOptions, bind_listeners, run, serve};

use crate::engine::LoadRequest;
use crate::served::View;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Sighup,
    Control,
    Refresh,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Sighup => "sighup",
            Trigger::Control => "control",
            Trigger::Refresh => "refresh",
        }
    }
}

/// The running service: the state owner, what it loads from, and the reload pipeline.
pub struct Service {
    owner: owner::StateOwner,
    view: View,
    req: LoadRequest,
    /// One reload at a time; the guard also owns the remote fetcher.
    pipeline: tokio::sync::Mutex<sync::RemoteSync>,
    /// Millis since `started` when the running reload began (0 = none), for the watchdog.
    reload_started: AtomicU64,
    /// Loads published so far, so that only the last of a burst releases memory.
    loads_published: AtomicU64,
    started: Instant,
    /// The generation of each state a reload installed, for the saver (`restore`).
    installed: tokio::sync::watch::Sender<u64>,
}
