//! Helpers for the integration tests: the test lab of network-namespace hosts, the
//! harness that runs the real binaries, and a real etcd for the cluster tests.

pub mod etcd;
pub mod harness;
pub mod lab;
