//! Helpers for the integration tests: the test lab of network-namespace hosts and the
//! harness that runs the real binaries.

pub mod harness;
pub mod lab;
