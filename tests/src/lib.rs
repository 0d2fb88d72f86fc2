//! Helpers for the integration tests: the test lab of network-namespace hosts, the
//! harness that runs the real binaries, Knot and NSD as secondaries of dnsd, and DNS
//! clients that ask again when a busy machine makes them time out.

pub mod dig;
pub mod harness;
pub mod lab;
pub mod secondary;
