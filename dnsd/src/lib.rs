//! The terminal server: heartbeats a pool of servers on their echo port, keeps one
//! primary per service, mirrors its data to the others, and answers authoritative DNS
//! with the current primary; alone, or as one of several sharing an etcd cluster.
//!
//! Layout, each module using only those listed after it: [`daemon`] wires the tasks;
//! the driver owns the [`controller`] (the pure decision core) and carries out its
//! effects, and takes a new configuration by comparing it in [`reload`]; [`coordinator`] is the cluster side (etcd through [`cluster`]); [`control`]
//! serves the API over a [`handle`], with the [`status`] view; [`mirror`] runs passes
//! and hooks; [`pool`] turns the [`config`] into the controller's topology and the zone;
//! [`dns`] serves the zone; [`state`] persists the controller's decisions.

pub mod checks;
mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod controller;
pub mod coordinator;
pub mod daemon;
pub mod dns;
mod driver;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod handle;
pub mod mirror;
pub mod oneshot;
pub mod pool;
pub mod reload;
pub mod state;
pub mod status;

#[cfg(test)]
mod cluster_sim;
