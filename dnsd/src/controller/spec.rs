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
    /// The service has a check of its own: a member serves it only when its host is up and
    /// its check passes.
    pub checked: bool,
    /// What a failing check on a live primary tries before a failover; `None`: fail over
    /// at once, as for a dead host.
    pub restart: Option<RestartPolicy>,
    /// When a member whose health keeps changing is quarantined; `None`: never.
    pub flap: Option<FlapPolicy>,
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
            checked: false,
            restart: None,
            flap: None,
        }
    }
}

/// Restart, then migrate: when the primary's host answers but its check fails, run the
/// `restart` hook on it before moving the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts at most, each after the previous one ended (at least 1).
    pub attempts: u32,
    /// Fail over when the check has not passed this long after it failed, restarts included.
    pub window: Millis,
    /// Wait after the first restart before the second; doubled for each further one. The
    /// configuration derives it from the time a restarted service needs to be seen passing.
    pub backoff: Millis,
}

impl RestartPolicy {
    /// When restart `attempt + 1` is due, `attempt` (1-based) having ended at `ended`.
    pub(super) fn next_after(&self, attempt: u32, ended: Millis) -> Option<Millis> {
        (attempt < self.attempts).then(|| {
            let doublings = attempt.saturating_sub(1).min(16);
            ended.saturating_add(self.backoff.saturating_mul(1 << doublings))
        })
    }
}

/// Flap damping: a member whose health changed more than `threshold` times within
/// `window` is quarantined for `hold_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapPolicy {
    /// Changes allowed within `window` (at least 1); one more quarantines.
    pub threshold: u32,
    pub window: Millis,
    pub hold_down: Millis,
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
