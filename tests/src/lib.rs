//! Helpers for the integration tests: the test lab of network-namespace hosts, the
//! harness that runs the real binaries, a real etcd for the cluster tests, Knot and NSD
//! as secondaries of dnsd, and DNS clients that ask again when a busy machine makes them
//! time out.

pub mod dig;
pub mod etcd;
pub mod harness;
pub mod lab;
pub mod secondary;
pub mod tls;
