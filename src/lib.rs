//! Oneiric: the universal resolution layer.
//!
//! The pure core — [`config`] (settings), [`manifest`] (documents and signatures),
//! [`resolver`] (ranking and explanations) — turns input into an immutable
//! [`resolver::Snapshot`]. Around it: [`engine`] loads everything into a snapshot,
//! [`lifecycle`] and [`activity`] hold operator state, [`probe`] checks candidates, and
//! [`daemon`], [`http`], [`metrics`] and [`control`] make up the long-running service.
//! [`cli`] is the command line. See ARCHITECTURE.md for the flows.

pub mod activation;
pub mod activity;
pub mod alloc;
pub mod as_owner;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod domain;
pub mod engine;
pub mod errors;
pub mod exit;
pub mod fsutil;
pub mod http;
pub mod instance;
pub mod lifecycle;
pub mod manifest;
pub mod metrics;
pub mod peer;
pub mod persisted;
pub mod probe;
pub mod remote;
pub mod resolver;
pub mod served;
pub mod telemetry;
pub mod text;
