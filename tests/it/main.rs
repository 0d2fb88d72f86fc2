//! The integration test binary: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cli;
mod cluster_etcd;
mod console;
mod dns;
mod failover;
mod lab_failover;
mod lab_smoke;
mod mirror;
mod rsync_sync;
mod soak;
