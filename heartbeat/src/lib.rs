//! RFC 862 echo probes and the rise/fall failure detector.
//!
//! The crate knows nothing of DNS, roles or consoles; it answers one question per pool
//! member, "is its echo port answering?", with hysteresis so one lost packet does not
//! move a service:
//!
//! - [`probe`] sends a fresh random nonce to an echo port over TCP or UDP and accepts
//!   only the same bytes back within a timeout, returning the round-trip time;
//! - [`Detector`] is the pure rise/fall state machine (no clock, no I/O);
//! - [`spawn_monitor`] runs one probing task per target on the current tokio runtime
//!   and sends a [`Report`] per probe, with the detector's verdict.

mod detector;
mod monitor;
mod probe;

pub use detector::{Detector, Health, Transition};
pub use monitor::{
    ConfigError, JITTER, Monitor, MonitorConfig, Report, Target, jittered, spawn_monitor,
};
pub use probe::{NONCE_LEN, ParseProtocolError, ProbeError, Protocol, Stage, probe};
