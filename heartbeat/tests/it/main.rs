//! Integration tests of the heartbeat crate against real sockets on loopback: echo
//! probes over TCP and UDP, and the monitor's scheduling, detection and shutdown.

// Helpers outside #[test] functions are test code too: a failed setup should panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod monitor;
mod probe;
mod servers;
