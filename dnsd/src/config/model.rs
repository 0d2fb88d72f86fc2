//! The validated configuration: what the daemon is built from. Names are lower case,
//! addresses parsed, durations typed; nodes and services are named by the controller's
//! ids.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::problem::Problem;
use crate::controller::{Election, Fencing, NoCandidate, NodeId, ServiceId};

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
    /// What is valid but risky, for `check-config` and the log at start: each with the
    /// key path it concerns.
    pub fn warnings(&self) -> Vec<Problem> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.split_brain_risk()
                    .map(|why| Problem::new(format!("service[{i}]"), format!("{}: {why}", s.name)))
            })
            .collect()
    }

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
    /// Which eligible member a failover promotes.
    pub election: Election,
    pub fencing: Fencing,
    /// `fencing = "none"`: the operator has chosen to run without fence or demote, and
    /// is not warned of the split-brain risk.
    pub unfenced_by_choice: bool,
    pub hooks: Hooks,
    pub hook_timeout: Duration,
}

impl ServiceConfig {
    /// A mirrored service that fails over automatically with neither `fence` nor
    /// `demote`: a partition between the terminal server and a live primary would
    /// leave two primaries taking writes. `None` when it is safe or chosen.
    pub fn split_brain_risk(&self) -> Option<&'static str> {
        let unfenced = self.hooks.fence.is_none() && self.hooks.demote.is_none();
        (!self.paths.is_empty() && unfenced && !self.unfenced_by_choice).then_some(
            "mirrored with automatic failover and neither fence nor demote: a partition \
             between the terminal server and a live primary would leave two primaries taking \
             writes; configure fence (or demote), or say fencing = \"none\" to accept it",
        )
    }
}

/// Hook commands of a service, as argv lists. `{service}`, `{node}`, `{address}` and
/// `{epoch}` in an argument are replaced before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub promote: Option<Vec<String>>,
    pub demote: Option<Vec<String>>,
    pub fence: Option<Vec<String>>,
    /// Run on the source and the destination over SSH before every pass, with the
    /// pass's epoch: a member that knows a newer epoch refuses (e.g. `dnsd-epoch-guard`).
    pub epoch_guard: Option<Vec<String>>,
}

/// The placeholders a hook argument may contain.
pub const HOOK_PLACEHOLDERS: [&str; 4] = ["{service}", "{node}", "{address}", "{epoch}"];
