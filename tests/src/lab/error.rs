//! The lab's error type, shared by the lab and its helper modules, and the one-line
//! report of an error with its causes.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while building a lab or injecting a fault.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// This machine cannot run the lab (not root, a tool missing).
    #[error("the lab cannot run here: {reason}")]
    Unavailable { reason: String },
    /// The options asked for something the lab cannot build.
    #[error("invalid lab request: {0}")]
    Invalid(String),
    /// A command could not be started at all.
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A host's process or service did not come up in time.
    #[error("host {host}: {what} not ready after {waited:?}: {detail}")]
    NotReady {
        host: String,
        what: &'static str,
        waited: Duration,
        detail: String,
    },
    /// Every /24 of 198.18.0.0/15 is in use on this machine.
    #[error("no free /24 left in 198.18.0.0/15")]
    NoFreeSubnet,
    /// No unused lab id was found (65536 ids; practically never).
    #[error("no free lab id")]
    NoFreeId,
    /// A fault or query named a host that is not part of this lab.
    #[error("host {host} ({netns}) is not part of lab {lab}")]
    UnknownHost {
        host: String,
        netns: String,
        lab: String,
    },
    /// Entering a host's network namespace failed.
    #[error("could not enter network namespace {netns}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
    /// The frame relay of `slow` could not be set up.
    #[error("relay on {interface}: could not {action}")]
    Relay {
        interface: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// Processes of a host survived being killed.
    #[error("host {host}: processes {pids:?} survived SIGKILL")]
    Survivors { host: String, pids: Vec<i32> },
}

/// An error with its chain of causes on one line, for panic messages and logs.
pub fn report(error: &dyn StdError) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let _ = write!(line, ": {inner}");
        cause = inner.source();
    }
    line
}
