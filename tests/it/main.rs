//! The integration test binary: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod api_tls;
mod cli;
mod cluster;
mod cluster_etcd;
mod console;
mod dns;
mod dns_secondaries;
mod dns_serving;
mod dns_xfr;
mod epoch_guard;
mod failover;
mod lab_checks;
mod lab_failover;
mod lab_smoke;
mod mirror;
mod reload;
mod rsync_sync;
mod soak;
