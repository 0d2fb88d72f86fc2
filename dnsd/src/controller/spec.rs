//! The pool as configured, in the controller's terms: node names, and each service with
//! its members in round-robin order and the policy it decides by.

use super::ids::NodeId;

/// The pool as configured: node names, and each service with its members in
/// round-robin order and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Node names; a node's index is its [`NodeId`].
    pub nodes: Vec<String>,
    pub services: Vec<ServiceSpec>,
}

/// One configured service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// Members in round-robin order; the first is the preferred primary.
    pub members: Vec<NodeId>,
    pub policy: Policy,
}

/// How a service mirrors, promotes and fails back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The service has paths to mirror. Without, every live member counts as in sync.
    pub mirrored: bool,
    /// A pass to each secondary this often.
    pub sync_interval: Millis,
    /// A member whose last complete pass is older than this is not eligible.
    pub max_lag: Millis,
    pub failback: Failback,
    pub on_no_candidate: NoCandidate,
    pub fencing: Fencing,
    /// Which eligible member a failover promotes.
    pub election: Election,
    /// A `promote` hook is configured.
    pub promote_hook: bool,
    /// A `demote` hook is configured.
    pub demote_hook: bool,
}

impl Policy {
    /// A service with nothing to mirror and no hooks: promotion needs only a live member.
    pub fn plain() -> Policy {
        Policy {
            mirrored: false,
            sync_interval: 10_000,
            max_lag: 30_000,
            failback: Failback::Manual,
            on_no_candidate: NoCandidate::Wait,
            fencing: Fencing::Off,
            election: Election::RoundRobin,
            promote_hook: false,
            demote_hook: false,
        }
    }
}

/// When the preferred member takes the primary back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    /// Only on the operator's `failback` (or `promote`).
    Manual,
    /// Once it has been eligible for this long.
    Auto { after: Millis },
}

/// What a failover does when no member is eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCandidate {
    /// Keep DNS on the old primary until a member is eligible or the primary returns.
    Wait,
    /// Promote the live member with the most recent complete pass, however old.
    Freshest,
}

/// Which eligible member a failover promotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// The one holding the most recent complete copy of the primary's data (the latest
    /// pass); round-robin order from the failed primary breaks ties. For a service with
    /// nothing to mirror, this is round-robin order.
    Freshest,
    /// The first in round-robin order from the failed primary.
    RoundRobin,
}

/// Whether a failover fences the old primary first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// No `fence` command is configured.
    Off,
    /// Run `fence`; promote even if it fails (the event says so).
    BestEffort,
    /// Run `fence`; no promotion unless it succeeds.
    Required,
}

/// Wall-clock milliseconds since the Unix epoch, as given by the driver.
pub type Millis = u64;

/// How long a member whose `promote` hook failed is skipped by failovers.
pub const PROMOTE_BACKOFF: Millis = 30_000;
/// How long a failover waits before trying again after a required fence failed.
pub const FENCE_RETRY: Millis = 5_000;
/// Longest wait between two attempts of a failing mirroring pass.
pub const MAX_SYNC_BACKOFF: Millis = 300_000;

/// "5s", "1.5s".
pub(super) fn seconds(ms: Millis) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
