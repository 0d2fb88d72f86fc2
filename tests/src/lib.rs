//! Helpers for the integration tests: the test lab of network-namespace hosts, the
//! harness that runs the real binaries, and Knot and NSD as secondaries of dnsd.

pub mod harness;
pub mod lab;
pub mod secondary;
