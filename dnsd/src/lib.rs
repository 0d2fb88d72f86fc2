//! The terminal server: heartbeats a pool of servers on their echo port, keeps one
//! primary per service, and answers authoritative DNS with the current primary.
//!
//! Layout: [`config`] parses and validates the file; [`controller`] is the pure
//! decision core; [`dns`] serves the zone from snapshots the daemon publishes;
//! [`state`] persists the controller's decisions; [`daemon`] wires them together.

pub mod cluster;
pub mod config;
pub mod control;
pub mod controller;
pub mod daemon;
pub mod dns;
mod driver;
pub mod handle;
pub mod mirror;
pub mod oneshot;
pub mod pool;
pub mod state;
pub mod status;
