//! Coordination between several terminal servers through etcd (being built: for now the
//! `[cluster]` configuration section).

pub mod config;

pub use config::ClusterConfig;
