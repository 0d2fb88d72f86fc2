//! The terminal server's configuration: one TOML file, `DNSD_` environment overrides,
//! and a validation pass that names the key path of every problem it finds.
//!
//! Parsing happens in two layers. The `Raw*` structs mirror the file: durations,
//! addresses and names are kept as the strings the operator wrote, so that a bad value
//! does not stop the deserializer at the first mistake. [`RawConfig::validate`] then
//! checks everything and either returns the typed [`Config`] or the full list of
//! [`Problem`]s. Unknown keys are collected while deserializing (every one of them,
//! with its path) and refused like any other problem.
//!
//! Layout: [`raw`] holds the file as written and its parsing (unknown keys collected);
//! [`validate`] turns it into this module's typed [`Config`] or the list of problems.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::controller::{Fencing, NoCandidate, NodeId, ServiceId};

mod raw;
#[cfg(test)]
mod tests;
mod validate;

pub use raw::{
    ParseFailure, RawConfig, RawControl, RawDns, RawHeartbeat, RawNameserver, RawNode, RawService,
    RawState, parse,
};
pub use validate::parse_duration;

/// Prefix of the environment variables that override file keys
/// (`DNSD_HEARTBEAT__INTERVAL=1s` overrides `heartbeat.interval`).
pub const ENV_PREFIX: &str = "DNSD";

/// One thing wrong with a configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Where, e.g. `node[2].address` or `heartbeat.timeout`.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    #[error("cannot read configuration {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The file was read but its content is wrong; every problem is listed.
    #[error("{} problem(s) in configuration {}:\n{}", problems.len(), path.display(), ProblemList(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A configuration that passed validation; the daemon only ever sees this.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dns: DnsConfig,
    /// `[heartbeat]`: the heartbeat crate's own configuration, validated by its rules.
    pub heartbeat: heartbeat::MonitorConfig,
    pub control: ControlConfig,
    pub state: StateConfig,
    pub nodes: Vec<NodeConfig>,
    pub services: Vec<ServiceConfig>,
    /// Present when any service mirrors or has member hooks.
    pub mirror: Option<rsync_sync::config::MirrorSettings>,
}

impl Config {
    /// The node the controller calls `n`.
    pub fn node(&self, n: NodeId) -> &NodeConfig {
        &self.nodes[n.0]
    }

    /// The service the controller calls `s`.
    pub fn service(&self, s: ServiceId) -> &ServiceConfig {
        &self.services[s.0]
    }
}

/// Validated `[dns]`. Names are lower case and end with a dot.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub listen: Vec<SocketAddr>,
    pub zone: String,
    pub ttl: u32,
    pub negative_ttl: u32,
    pub hostmaster: String,
    pub nameservers: Vec<NameserverConfig>,
}

/// Validated name server entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NameserverConfig {
    pub name: String,
    pub address: IpAddr,
}

/// Validated `[control]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// TCP listener and the token file that guards it; both or neither.
    pub tcp: Option<(SocketAddr, PathBuf)>,
}

/// Validated `[state]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub dir: PathBuf,
}

/// Validated node. Its index in [`Config::nodes`] is its identity inside the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    pub address: IpAddr,
    /// Prefix of every service path on this node.
    pub root: Option<PathBuf>,
}

/// Validated service; `nodes` are indices into [`Config::nodes`], in round-robin order.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub nodes: Vec<NodeId>,
    /// Absolute directories, without trailing slash.
    pub paths: Vec<PathBuf>,
    pub max_lag: Duration,
    /// `Some(after)` for automatic failback.
    pub failback_after: Option<Duration>,
    pub on_no_candidate: NoCandidate,
    pub fencing: Fencing,
    pub hooks: Hooks,
    pub hook_timeout: Duration,
}

/// Hook commands of a service, as argv lists. `{service}`, `{node}`, `{address}` and
/// `{epoch}` in an argument are replaced before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub promote: Option<Vec<String>>,
    pub demote: Option<Vec<String>>,
    pub fence: Option<Vec<String>>,
}

/// The placeholders a hook argument may contain.
pub const HOOK_PLACEHOLDERS: [&str; 4] = ["{service}", "{node}", "{address}", "{epoch}"];

// ---------------------------------------------------------------------------
// Loading.

/// Reads `path` and applies `DNSD_*` overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests use this).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let raw = parse(&text, env).map_err(|e| match e {
        ParseFailure::Syntax(message) => ConfigError::Read {
            path: path.to_owned(),
            message,
        },
        ParseFailure::Problems(problems) => ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        },
    })?;
    raw.validate().map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}
