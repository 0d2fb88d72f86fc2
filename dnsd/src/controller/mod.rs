//! The failover controller: a pure state machine that decides who is primary, when a
//! member is in sync, and when to fail over or fail back.
//!
//! It takes inputs (a member's health changed, an operator action, a mirroring pass or a
//! hook finished, a timer tick), each with the current wall-clock time, and returns
//! [`Effect`]s for the driver to carry out: publish a new DNS snapshot, persist the
//! state, log an event, start a mirroring pass, run a hook. It never sleeps, reads the
//! clock or touches a socket, which is what lets the tests below and the property test
//! run thousands of fault sequences in milliseconds.
//!
//! Rules it enforces:
//! - exactly one primary per service, and an epoch per service that only grows (every
//!   change of primary bumps it, and the zone serial with it);
//! - a member is *eligible* when it is up, not in maintenance, and, for a service with
//!   paths to mirror, has finished its resync and completed a pass within `max_lag`;
//! - when the primary goes down, the next eligible member after it in the service's
//!   order (wrapping around) is promoted: `fence` runs on the old primary first (a
//!   failed fence stops the promotion when fencing is required), then `promote` on the
//!   new one, then DNS switches;
//! - when no member is eligible, `on_no_candidate` decides: `wait` keeps DNS on the old
//!   primary and marks the service *stranded* (answering a dead address is no worse than
//!   answering nothing, and clients reach the service the moment it is back);
//!   `freshest` promotes the member with the most recent complete pass;
//! - a member that comes back from down is *resyncing*: its first pass keeps every file
//!   it would delete or overwrite in a folder named for the epoch, and it is never
//!   promoted before that pass completes;
//! - a planned switchover (failback, or an operator moving a live primary) demotes the
//!   old primary, runs a final pass to the target, promotes the target, then switches
//!   DNS; if a step fails it re-promotes the old primary and says which step failed;
//! - a paused service takes no automatic decision; operators may still act on it;
//! - operator actions are checked against the same rules and are either applied whole
//!   or refused with a reason.

use std::collections::BTreeMap;
use std::fmt;

pub use dnsd_api::Role;
use dnsd_api::{Action, Event, EventKind};
use heartbeat::Health;
use serde::{Deserialize, Serialize};

/// Wall-clock milliseconds since the Unix epoch, as given by the driver.
pub type Millis = u64;

/// How long a member whose `promote` hook failed is skipped by failovers.
pub const PROMOTE_BACKOFF: Millis = 30_000;
/// How long a failover waits before trying again after a required fence failed.
pub const FENCE_RETRY: Millis = 5_000;
/// Longest wait between two attempts of a failing mirroring pass.
pub const MAX_SYNC_BACKOFF: Millis = 300_000;

/// The pool as configured: node names, and each service with its members in
/// round-robin order and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Node names; a node's index is its identity.
    pub nodes: Vec<String>,
    pub services: Vec<ServiceSpec>,
}

/// One configured service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// Member indices; the first is the preferred primary.
    pub members: Vec<usize>,
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

/// What the driver must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The zone changed: build and publish a new DNS snapshot.
    Publish,
    /// Roles, epochs, flags or watermarks changed: write the state file.
    Persist,
    /// Record and broadcast this event.
    Event(Event),
    /// Start a mirroring pass; report it with [`Controller::sync_finished`].
    StartSync(SyncOrder),
    /// Run a hook; report it with [`Controller::hook_finished`].
    RunHook(HookOrder),
}

/// A mirroring pass to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOrder {
    pub id: u64,
    pub service: usize,
    /// Where rsync runs (the primary).
    pub from: usize,
    /// Who receives.
    pub to: usize,
    pub kind: PassKind,
    /// Keep what the pass deletes or overwrites on `to` in a folder named for this
    /// epoch (first pass after a role change, and every resync).
    pub keep_epoch: Option<u64>,
}

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassKind {
    /// The periodic pass.
    Regular,
    /// The first pass to a member that came back; it is not eligible until it completes.
    Resync,
    /// The last pass of a switchover, after the old primary stopped writing.
    Final,
}

impl fmt::Display for PassKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PassKind::Regular => "regular",
            PassKind::Resync => "resync",
            PassKind::Final => "final",
        })
    }
}

/// A hook to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOrder {
    pub id: u64,
    pub service: usize,
    /// The member the hook concerns (for `fence`, the old primary).
    pub node: usize,
    pub hook: Hook,
    /// The service's epoch when the hook was ordered.
    pub epoch: u64,
}

/// The hooks a service may configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Run on a member over SSH before it becomes primary (and to roll back).
    Promote,
    /// Run on the primary over SSH to stop writes before a switchover.
    Demote,
    /// Run on the terminal server against the old primary before a failover.
    Fence,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Promote => "promote",
            Hook::Demote => "demote",
            Hook::Fence => "fence",
        })
    }
}

/// What a completed pass reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub files_transferred: u64,
    pub literal_bytes: u64,
    pub matched_bytes: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
    /// Files this pass set aside instead of deleting or overwriting them.
    pub kept: Option<Kept>,
}

/// Files kept aside by a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub files: u64,
    pub bytes: u64,
    /// Where on the member, e.g. `/srv/data.dnsd-kept/epoch-4`.
    pub dir: String,
}

/// The start of the last complete pass to a member: its copy holds at least the
/// primary's data as of `at`, in `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub at: Millis,
    pub epoch: u64,
}

/// Why a member may not be promoted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It is the primary already.
    IsPrimary,
    /// Its heartbeat says it is down.
    Down,
    /// Not enough probes yet to call it up.
    HealthUnknown,
    /// An operator put it in maintenance.
    Maintenance,
    /// Its `promote` hook failed recently.
    PromoteFailed,
    /// Back from down and its resync has not completed.
    Resyncing,
    /// No pass to it has ever completed.
    NeverSynced,
    /// Its last complete pass is older than `max_lag`.
    Lagging { lag: Millis, max_lag: Millis },
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::IsPrimary => f.write_str("is the primary"),
            Skip::Down => f.write_str("is down"),
            Skip::HealthUnknown => f.write_str("has not answered enough heartbeats yet"),
            Skip::Maintenance => f.write_str("is in maintenance"),
            Skip::PromoteFailed => f.write_str("failed its promote hook recently"),
            Skip::Resyncing => f.write_str("is resyncing"),
            Skip::NeverSynced => f.write_str("has never completed a sync"),
            Skip::Lagging { lag, max_lag } => write!(
                f,
                "last synced {} ago, more than max_lag {}",
                seconds(*lag),
                seconds(*max_lag)
            ),
        }
    }
}

fn seconds(ms: Millis) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// One line of the election explanation: a member, in the order it would be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: usize,
    pub verdict: Result<(), Skip>,
}

/// A member's mirroring state in one service, for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncView {
    pub watermark: Option<Watermark>,
    pub resyncing: bool,
    /// The pass running now: its kind and start.
    pub running: Option<(PassKind, Millis)>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Earliest start of the next periodic pass.
    pub next_due: Millis,
    pub last: Option<PassSummary>,
}

/// What is persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The zone's SOA serial when the state was written.
    pub serial: u32,
    pub services: Vec<PersistedService>,
    /// Names of members in maintenance.
    pub maintenance: Vec<String>,
}

/// A service's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedService {
    pub name: String,
    pub primary: String,
    pub epoch: u64,
    pub paused: bool,
    /// Last complete pass per member.
    #[serde(default)]
    pub watermarks: BTreeMap<String, Watermark>,
    /// Members whose resync has not completed.
    #[serde(default)]
    pub resyncing: Vec<String>,
    /// Target of a switchover that was under way (the old primary may have been demoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    health: Health,
    maintenance: bool,
    /// Failovers skip it until then, after its promote hook failed.
    promote_failed_until: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pass {
    id: u64,
    kind: PassKind,
    started: Millis,
    epoch: u64,
    from: usize,
    /// Ordered to keep what it deletes or overwrites.
    keep: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MemberSync {
    watermark: Option<Watermark>,
    resyncing: bool,
    /// When it last came back from down: only a resync pass started since counts.
    returned_at: Millis,
    pass: Option<Pass>,
    next_due: Millis,
    failures: u32,
    last_error: Option<String>,
    /// The next pass keeps what it would delete or overwrite.
    keep: bool,
    last: Option<PassSummary>,
}

/// A primary change under way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transition {
    target: usize,
    /// Planned (the old primary is alive: demote, final sync, promote) or a failover.
    planned: bool,
    /// The kind of event the commit will log.
    kind: EventKind,
    /// Started by an operator (pausing the service does not stop it).
    by_operator: bool,
    reason: String,
    step: Step,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Fencing(u64),
    Demoting(u64),
    /// Waiting for a periodic pass to the target to finish before the final one.
    AwaitPass,
    FinalSync(u64),
    Promoting(u64),
    /// Re-promoting the old primary after step `why` failed.
    RollingBack {
        id: u64,
        why: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Fencing(_) => "fencing the old primary",
            Step::Demoting(_) => "demoting the old primary",
            Step::AwaitPass => "waiting for a running pass",
            Step::FinalSync(_) => "final sync",
            Step::Promoting(_) => "promoting",
            Step::RollingBack { .. } => "rolling back",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    name: String,
    members: Vec<usize>,
    policy: Policy,
    primary: usize,
    epoch: u64,
    paused: bool,
    /// The primary is down and nobody could be promoted; DNS keeps the old answer.
    stranded: bool,
    /// Indexed like `members`.
    sync: Vec<MemberSync>,
    transition: Option<Transition>,
    /// Since when the preferred member has been eligible (automatic failback).
    preferred_ready_since: Option<Millis>,
    /// No automatic failover before this time (after a required fence failed).
    retry_failover_at: Millis,
}

impl Service {
    fn slot(&self, n: usize) -> Option<usize> {
        self.members.iter().position(|&m| m == n)
    }
}

/// The decision core. See the module documentation for its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    nodes: Vec<Node>,
    services: Vec<Service>,
    serial: u32,
    /// Time of the input being handled (or the last one).
    now: Millis,
    next_id: u64,
}

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Fx = Vec<Effect>;

impl Controller {
    /// Builds the controller from the configured pool and, if there is one, the
    /// persisted state of a previous run. Persisted entries that no longer fit the
    /// configuration (a service or node that was removed) are dropped with a note in
    /// the start event. A switchover cut short by a restart is rolled back.
    pub fn new(topology: &Topology, persisted: Option<&Persisted>, now: Millis) -> (Self, Fx) {
        let nodes = topology
            .nodes
            .iter()
            .map(|name| Node {
                name: name.clone(),
                health: Health::Unknown,
                maintenance: false,
                promote_failed_until: 0,
            })
            .collect();
        let services = topology
            .services
            .iter()
            .map(|spec| Service {
                name: spec.name.clone(),
                members: spec.members.clone(),
                policy: spec.policy.clone(),
                primary: spec.members.first().copied().unwrap_or(0),
                epoch: 1,
                paused: false,
                stranded: false,
                sync: vec![MemberSync::default(); spec.members.len()],
                transition: None,
                preferred_ready_since: None,
                retry_failover_at: 0,
            })
            .collect();
        let mut c = Controller {
            nodes,
            services,
            serial: 1,
            now,
            next_id: 1,
        };
        let mut fx = Vec::new();
        let mut notes = Vec::new();
        let mut interrupted = Vec::new();
        if let Some(p) = persisted {
            c.serial = p.serial.wrapping_add(1).max(1);
            for name in &p.maintenance {
                match c.node_index(name) {
                    Some(n) => c.nodes[n].maintenance = true,
                    None => notes.push(format!(
                        "forgot maintenance of {name}: no longer configured"
                    )),
                }
            }
            for ps in &p.services {
                let Some(s) = c.service_index(&ps.name) else {
                    notes.push(format!("forgot service {}: no longer configured", ps.name));
                    continue;
                };
                c.restore_service(s, ps, &mut notes, &mut interrupted);
            }
        }
        let reason = match persisted {
            Some(_) if notes.is_empty() => "state restored".to_owned(),
            Some(_) => format!("state restored; {}", notes.join("; ")),
            None => "no saved state; every service starts on its preferred member".to_owned(),
        };
        fx.push(Effect::Event(c.event(EventKind::Started, None, reason)));
        for (s, target) in interrupted {
            let why = format!(
                "dnsd restarted during a switchover to {}",
                c.nodes[target].name
            );
            c.services[s].transition = Some(Transition {
                target,
                planned: true,
                kind: EventKind::SwitchoverFailed,
                by_operator: true,
                reason: why.clone(),
                step: Step::AwaitPass,
            });
            c.roll_back(s, why, &mut fx);
        }
        fx.push(Effect::Publish);
        fx.push(Effect::Persist);
        (c, fx)
    }

    fn restore_service(
        &mut self,
        s: usize,
        ps: &PersistedService,
        notes: &mut Vec<String>,
        interrupted: &mut Vec<(usize, usize)>,
    ) {
        let nodes = &self.nodes;
        let svc = &mut self.services[s];
        svc.paused = ps.paused;
        let primary = nodes.iter().position(|n| n.name == ps.primary);
        match primary.filter(|p| svc.members.contains(p)) {
            Some(p) => {
                svc.primary = p;
                svc.epoch = ps.epoch.max(1);
            }
            None => {
                svc.epoch = ps.epoch.saturating_add(1);
                notes.push(format!(
                    "service {}: persisted primary {} is no longer a member; starting from the preferred member at epoch {}",
                    ps.name, ps.primary, svc.epoch
                ));
            }
        }
        for (name, w) in &ps.watermarks {
            if let Some(i) = nodes
                .iter()
                .position(|n| &n.name == name)
                .and_then(|n| svc.slot(n))
            {
                svc.sync[i].watermark = Some(*w);
            }
        }
        for name in &ps.resyncing {
            if let Some(i) = nodes
                .iter()
                .position(|n| &n.name == name)
                .and_then(|n| svc.slot(n))
            {
                svc.sync[i].resyncing = true;
                svc.sync[i].keep = true;
            }
        }
        if let Some(target) = ps
            .switchover_to
            .as_ref()
            .and_then(|t| nodes.iter().position(|n| &n.name == t))
        {
            interrupted.push((s, target));
        }
    }

    // -- read access for the driver, DNS and status --------------------------------

    /// The zone's SOA serial; grows on every role change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The current primary of service `s` (an index into the topology's nodes).
    pub fn primary(&self, s: usize) -> usize {
        self.services[s].primary
    }

    pub fn epoch(&self, s: usize) -> u64 {
        self.services[s].epoch
    }

    pub fn paused(&self, s: usize) -> bool {
        self.services[s].paused
    }

    /// Whether service `s` has a dead primary and nobody to promote.
    pub fn stranded(&self, s: usize) -> bool {
        self.services[s].stranded
    }

    /// Members of service `s` in round-robin order.
    pub fn members(&self, s: usize) -> &[usize] {
        &self.services[s].members
    }

    pub fn policy(&self, s: usize) -> &Policy {
        &self.services[s].policy
    }

    pub fn service_name(&self, s: usize) -> &str {
        &self.services[s].name
    }

    pub fn node_name(&self, n: usize) -> &str {
        &self.nodes[n].name
    }

    /// Health of node `n` as last reported by the heartbeat.
    pub fn health(&self, n: usize) -> Health {
        self.nodes[n].health
    }

    pub fn maintenance(&self, n: usize) -> bool {
        self.nodes[n].maintenance
    }

    /// A primary change under way in service `s`, in words.
    pub fn transition(&self, s: usize) -> Option<String> {
        let svc = &self.services[s];
        svc.transition.as_ref().map(|t| {
            let what = if t.planned { "switchover" } else { "failover" };
            format!("{what} to {}: {}", self.nodes[t.target].name, t.step)
        })
    }

    /// Whether the transition under way in `s` (if any) was started by an operator.
    pub fn transition_by_operator(&self, s: usize) -> Option<bool> {
        self.services[s].transition.as_ref().map(|t| t.by_operator)
    }

    /// The role of node `n` in service `s`.
    pub fn role(&self, s: usize, n: usize) -> Role {
        let svc = &self.services[s];
        if svc.primary == n {
            Role::Primary
        } else if self.nodes[n].health == Health::Down {
            Role::Down
        } else if svc.slot(n).is_some_and(|i| svc.sync[i].resyncing) {
            Role::Resyncing
        } else {
            Role::Secondary
        }
    }

    /// Mirroring state of member `n` in service `s`.
    pub fn sync_view(&self, s: usize, n: usize) -> Option<SyncView> {
        let svc = &self.services[s];
        let ms = &svc.sync[svc.slot(n)?];
        Some(SyncView {
            watermark: ms.watermark,
            resyncing: ms.resyncing,
            running: ms.pass.as_ref().map(|p| (p.kind, p.started)),
            failures: ms.failures,
            last_error: ms.last_error.clone(),
            next_due: ms.next_due,
            last: ms.last.clone(),
        })
    }

    /// Whether `n` could be promoted in service `s` now, and if not, why.
    pub fn eligibility(&self, s: usize, n: usize) -> Result<(), Skip> {
        let svc = &self.services[s];
        let node = &self.nodes[n];
        if svc.primary == n {
            return Err(Skip::IsPrimary);
        }
        if node.maintenance {
            return Err(Skip::Maintenance);
        }
        match node.health {
            Health::Up => {}
            Health::Down => return Err(Skip::Down),
            Health::Unknown => return Err(Skip::HealthUnknown),
        }
        if self.now < node.promote_failed_until {
            return Err(Skip::PromoteFailed);
        }
        if svc.policy.mirrored {
            let Some(ms) = svc.slot(n).map(|i| &svc.sync[i]) else {
                return Err(Skip::NeverSynced);
            };
            if ms.resyncing {
                return Err(Skip::Resyncing);
            }
            let Some(w) = ms.watermark else {
                return Err(Skip::NeverSynced);
            };
            let lag = self.now.saturating_sub(w.at);
            if lag > svc.policy.max_lag {
                return Err(Skip::Lagging {
                    lag,
                    max_lag: svc.policy.max_lag,
                });
            }
        }
        Ok(())
    }

    /// The members other than the primary, in the order a failover would try them
    /// (round-robin from the primary's position), each with its verdict.
    pub fn election(&self, s: usize) -> Vec<Candidate> {
        let svc = &self.services[s];
        let len = svc.members.len();
        let pos = svc.slot(svc.primary).unwrap_or(0);
        (1..len)
            .map(|k| svc.members[(pos + k) % len])
            .map(|node| Candidate {
                node,
                verdict: self.eligibility(s, node),
            })
            .collect()
    }

    /// The member a failover would promote now, if any.
    pub fn next_candidate(&self, s: usize) -> Option<usize> {
        self.election(s)
            .into_iter()
            .find(|c| c.verdict.is_ok())
            .map(|c| c.node)
    }

    /// The live member with the most recent complete pass (for `on_no_candidate =
    /// "freshest"`): up, not in maintenance, not resyncing, ever synced.
    fn freshest(&self, s: usize) -> Option<usize> {
        let svc = &self.services[s];
        svc.members
            .iter()
            .zip(&svc.sync)
            .filter(|&(&n, ms)| {
                n != svc.primary
                    && self.nodes[n].health == Health::Up
                    && !self.nodes[n].maintenance
                    && self.now >= self.nodes[n].promote_failed_until
                    && !ms.resyncing
            })
            .filter_map(|(&n, ms)| ms.watermark.map(|w| (w.at, n)))
            .max_by_key(|&(at, _)| at)
            .map(|(_, n)| n)
    }

    /// What to persist.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            serial: self.serial,
            services: self
                .services
                .iter()
                .map(|s| PersistedService {
                    name: s.name.clone(),
                    primary: self.nodes[s.primary].name.clone(),
                    epoch: s.epoch,
                    paused: s.paused,
                    watermarks: s
                        .members
                        .iter()
                        .zip(&s.sync)
                        .filter_map(|(&n, ms)| {
                            ms.watermark.map(|w| (self.nodes[n].name.clone(), w))
                        })
                        .collect(),
                    resyncing: s
                        .members
                        .iter()
                        .zip(&s.sync)
                        .filter(|(_, ms)| ms.resyncing)
                        .map(|(&n, _)| self.nodes[n].name.clone())
                        .collect(),
                    switchover_to: s
                        .transition
                        .as_ref()
                        .filter(|t| t.planned && !matches!(t.step, Step::RollingBack { .. }))
                        .map(|t| self.nodes[t.target].name.clone()),
                })
                .collect(),
            maintenance: self
                .nodes
                .iter()
                .filter(|n| n.maintenance)
                .map(|n| n.name.clone())
                .collect(),
        }
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.name.eq_ignore_ascii_case(name))
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
    }

    // -- inputs ---------------------------------------------------------------------

    /// The heartbeat decided that node `n` changed health.
    pub fn health_changed(&mut self, n: usize, health: Health, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        let old = self.nodes[n].health;
        if old == health {
            return fx;
        }
        self.nodes[n].health = health;
        let kind = match health {
            Health::Up => Some(EventKind::NodeUp),
            Health::Down => Some(EventKind::NodeDown),
            Health::Unknown => None,
        };
        if let Some(kind) = kind {
            let mut e = self.event(kind, None, format!("heartbeat: {old} -> {health}"));
            e.node = Some(self.nodes[n].name.clone());
            fx.push(Effect::Event(e));
        }
        if health == Health::Up {
            let mut marked = false;
            for svc in &mut self.services {
                let Some(i) = svc.slot(n) else { continue };
                let ms = &mut svc.sync[i];
                ms.next_due = now;
                // Back from down: whatever it holds may differ from the primary's data.
                if old == Health::Down && svc.primary != n && svc.policy.mirrored {
                    ms.resyncing = true;
                    ms.returned_at = now;
                    ms.keep = true;
                    marked = true;
                }
            }
            if marked {
                fx.push(Effect::Persist);
            }
        }
        self.settle(&mut fx);
        fx
    }

    /// Periodic re-evaluation (the driver calls it every heartbeat interval).
    pub fn tick(&mut self, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        self.settle(&mut fx);
        fx
    }

    /// A pass ordered with [`Effect::StartSync`] finished. Unknown ids are ignored.
    pub fn sync_finished(
        &mut self,
        id: u64,
        outcome: Result<PassSummary, String>,
        now: Millis,
    ) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        let found = self.services.iter().enumerate().find_map(|(s, svc)| {
            svc.sync
                .iter()
                .position(|ms| ms.pass.as_ref().is_some_and(|p| p.id == id))
                .map(|i| (s, i))
        });
        if let Some((s, i)) = found {
            self.pass_finished(s, i, outcome, &mut fx);
        }
        self.settle(&mut fx);
        fx
    }

    /// A hook ordered with [`Effect::RunHook`] finished. Unknown ids are ignored.
    pub fn hook_finished(&mut self, id: u64, outcome: Result<(), String>, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        let found = self.services.iter().position(|svc| {
            svc.transition.as_ref().is_some_and(|t| match &t.step {
                Step::Fencing(x)
                | Step::Demoting(x)
                | Step::Promoting(x)
                | Step::RollingBack { id: x, .. } => *x == id,
                Step::AwaitPass | Step::FinalSync(_) => false,
            })
        });
        if let Some(s) = found {
            self.hook_done(s, outcome, &mut fx);
        }
        self.settle(&mut fx);
        fx
    }

    /// An operator action. `origin` says who asked (logged with every decision).
    pub fn act(
        &mut self,
        action: &Action,
        origin: &str,
        now: Millis,
    ) -> (Result<String, Refusal>, Fx) {
        self.now = now;
        let mut fx = Vec::new();
        let result = self.apply(action, origin, &mut fx);
        match &result {
            Ok(_) => self.settle(&mut fx),
            Err(refusal) => {
                let mut e = self.event(
                    EventKind::Refused,
                    None,
                    format!("{action} from {origin}: {refusal}"),
                );
                e.service = action_service(action).map(str::to_owned);
                fx.push(Effect::Event(e));
            }
        }
        (result, fx)
    }

    fn apply(&mut self, action: &Action, origin: &str, fx: &mut Fx) -> Result<String, Refusal> {
        match action {
            Action::Failover { service } => {
                let s = self.resolve_service(service.as_deref())?;
                self.refuse_if_busy(s)?;
                let Some(target) = self.next_candidate(s) else {
                    return Err(Refusal(format!(
                        "no member of {} can take over: {}",
                        self.services[s].name,
                        self.explain_skips(s)
                    )));
                };
                Ok(self.operator_move(
                    s,
                    target,
                    EventKind::Promotion,
                    format!("operator failover from {origin}"),
                    fx,
                ))
            }
            Action::Promote { service, node } => {
                let s = self.resolve_service(service.as_deref())?;
                let n = self.resolve_member(s, node)?;
                self.refuse_if_busy(s)?;
                if let Err(skip) = self.eligibility(s, n) {
                    return Err(Refusal(format!("{} {skip}", self.nodes[n].name)));
                }
                Ok(self.operator_move(
                    s,
                    n,
                    EventKind::Promotion,
                    format!("operator promotion from {origin}"),
                    fx,
                ))
            }
            Action::Failback { service } => {
                let s = self.resolve_service(service.as_deref())?;
                let preferred = self.services[s].members[0];
                let name = self.nodes[preferred].name.clone();
                if self.services[s].primary == preferred {
                    return Err(Refusal(format!(
                        "{name}, the preferred member, is already the primary"
                    )));
                }
                self.refuse_if_busy(s)?;
                if let Err(skip) = self.eligibility(s, preferred) {
                    return Err(Refusal(format!(
                        "{name} cannot take the primary back: it {skip}"
                    )));
                }
                Ok(self.operator_move(
                    s,
                    preferred,
                    EventKind::Failback,
                    format!("operator failback from {origin}"),
                    fx,
                ))
            }
            Action::Sync { service, node } => {
                let s = self.resolve_service(service.as_deref())?;
                self.request_sync(s, node.as_deref(), origin)
            }
            Action::Maintenance { node, on } => self.set_maintenance(node, *on, origin, fx),
            Action::Pause { service } => self.set_paused(service.as_deref(), true, origin, fx),
            Action::Resume { service } => self.set_paused(service.as_deref(), false, origin, fx),
        }
    }

    fn refuse_if_busy(&self, s: usize) -> Result<(), Refusal> {
        match self.transition(s) {
            Some(t) => Err(Refusal(format!("{} is busy: {t}", self.services[s].name))),
            None => Ok(()),
        }
    }

    /// An operator moves the primary: a planned switchover when the primary is alive,
    /// a failover (fence, promote) when it is not.
    fn operator_move(
        &mut self,
        s: usize,
        target: usize,
        kind: EventKind,
        reason: String,
        fx: &mut Fx,
    ) -> String {
        let svc = &self.services[s];
        let (name, old) = (svc.name.clone(), self.nodes[svc.primary].name.clone());
        let to = self.nodes[target].name.clone();
        if self.nodes[svc.primary].health == Health::Up {
            self.start_switchover(s, target, kind, true, reason, fx);
        } else {
            self.start_failover(s, target, kind, true, reason, fx);
        }
        match self.transition(s) {
            Some(t) => format!("{name}: {t} started (from {old})"),
            None => format!(
                "{name} moved from {old} to {to} (epoch {})",
                self.services[s].epoch
            ),
        }
    }

    fn request_sync(
        &mut self,
        s: usize,
        node: Option<&str>,
        origin: &str,
    ) -> Result<String, Refusal> {
        let svc = &self.services[s];
        if !svc.policy.mirrored {
            return Err(Refusal(format!(
                "service {} has no paths to mirror",
                svc.name
            )));
        }
        if self.nodes[svc.primary].health != Health::Up {
            return Err(Refusal(format!(
                "the primary {} is not up: there is nothing to copy from",
                self.nodes[svc.primary].name
            )));
        }
        self.refuse_if_busy(s)?;
        let targets: Vec<usize> = match node {
            Some(name) => {
                let n = self.resolve_member(s, name)?;
                if n == svc.primary {
                    return Err(Refusal(format!(
                        "{} is the primary: passes go from it, not to it",
                        self.nodes[n].name
                    )));
                }
                if self.nodes[n].health != Health::Up {
                    return Err(Refusal(format!("{} is not up", self.nodes[n].name)));
                }
                vec![n]
            }
            None => svc
                .members
                .iter()
                .copied()
                .filter(|&n| n != svc.primary && self.nodes[n].health == Health::Up)
                .collect(),
        };
        if targets.is_empty() {
            return Err(Refusal(format!("no secondary of {} is up", svc.name)));
        }
        let now = self.now;
        let svc = &mut self.services[s];
        let mut names = Vec::new();
        for n in targets {
            if let Some(i) = svc.slot(n) {
                svc.sync[i].next_due = now;
                svc.sync[i].failures = 0;
                let running = svc.sync[i].pass.is_some();
                names.push(format!(
                    "{}{}",
                    self.nodes[n].name,
                    if running {
                        " (after the running pass)"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(format!(
            "sync of {} to {} requested by {origin}",
            svc.name,
            names.join(", ")
        ))
    }

    fn set_maintenance(
        &mut self,
        node: &str,
        on: bool,
        origin: &str,
        fx: &mut Fx,
    ) -> Result<String, Refusal> {
        let n = self
            .node_index(node)
            .ok_or_else(|| Refusal(format!("unknown node {node:?}")))?;
        let name = self.nodes[n].name.clone();
        if self.nodes[n].maintenance == on {
            return Err(Refusal(format!(
                "{name} is already {} maintenance",
                if on { "in" } else { "out of" }
            )));
        }
        if on {
            if let Some(s) = self.services.iter().find(|s| s.primary == n) {
                return Err(Refusal(format!(
                    "{name} is the primary of {}; fail over or promote another member first",
                    s.name
                )));
            }
            if let Some(s) = self
                .services
                .iter()
                .find(|s| s.transition.as_ref().is_some_and(|t| t.target == n))
            {
                return Err(Refusal(format!(
                    "{name} is being promoted in {}; wait for it to finish",
                    s.name
                )));
            }
        }
        self.nodes[n].maintenance = on;
        let mut e = self.event(
            EventKind::Maintenance,
            None,
            format!("maintenance {} by {origin}", if on { "on" } else { "off" }),
        );
        e.node = Some(name.clone());
        fx.push(Effect::Event(e));
        fx.push(Effect::Persist);
        Ok(format!(
            "{name} is {} maintenance",
            if on { "in" } else { "out of" }
        ))
    }

    fn set_paused(
        &mut self,
        service: Option<&str>,
        paused: bool,
        origin: &str,
        fx: &mut Fx,
    ) -> Result<String, Refusal> {
        let targets: Vec<usize> = match service {
            Some(name) => vec![
                self.service_index(name)
                    .ok_or_else(|| Refusal(format!("unknown service {name:?}")))?,
            ],
            None => (0..self.services.len()).collect(),
        };
        let changing: Vec<usize> = targets
            .into_iter()
            .filter(|&s| self.services[s].paused != paused)
            .collect();
        let word = if paused { "paused" } else { "running" };
        if changing.is_empty() {
            return Err(Refusal(match service {
                Some(name) => format!("{name} is already {word}"),
                None => format!("every service is already {word}"),
            }));
        }
        let kind = if paused {
            EventKind::Paused
        } else {
            EventKind::Resumed
        };
        for &s in &changing {
            self.services[s].paused = paused;
            self.services[s].preferred_ready_since = None;
            fx.push(Effect::Event(self.event(
                kind,
                Some(s),
                format!("by {origin}"),
            )));
            // Pausing stops automatic decisions, including one under way.
            let automatic = self.services[s]
                .transition
                .as_ref()
                .filter(|t| !t.by_operator)
                .map(|t| t.planned);
            if paused && let Some(planned) = automatic {
                let why = format!("service paused by {origin}");
                if planned {
                    self.roll_back(s, why, fx);
                } else {
                    self.abandon(s, why, fx);
                }
            }
        }
        fx.push(Effect::Persist);
        let names: Vec<&str> = changing
            .iter()
            .map(|&s| self.services[s].name.as_str())
            .collect();
        Ok(format!("{} {word}", names.join(", ")))
    }

    // -- decisions ------------------------------------------------------------------

    /// Re-evaluates every service after an input.
    fn settle(&mut self, fx: &mut Fx) {
        for s in 0..self.services.len() {
            self.evaluate(s, fx);
        }
    }

    fn evaluate(&mut self, s: usize, fx: &mut Fx) {
        if self.services[s].transition.is_some() {
            self.advance(s, fx);
            if self.services[s].transition.is_some() {
                return;
            }
        }
        let svc = &self.services[s];
        match self.nodes[svc.primary].health {
            Health::Down => {
                if !svc.paused && self.now >= svc.retry_failover_at {
                    self.fail_over(s, fx);
                }
                return;
            }
            Health::Up if svc.stranded => {
                self.services[s].stranded = false;
                let reason = format!(
                    "{} answers again",
                    self.nodes[self.services[s].primary].name
                );
                fx.push(Effect::Event(self.event(
                    EventKind::Recovered,
                    Some(s),
                    reason,
                )));
            }
            _ => {}
        }
        if !self.services[s].paused {
            self.check_failback(s, fx);
        }
        if self.services[s].transition.is_none() {
            self.schedule_passes(s, fx);
        }
    }

    /// The primary is down: promote the next eligible member, or apply the policy.
    fn fail_over(&mut self, s: usize, fx: &mut Fx) {
        let old = self.nodes[self.services[s].primary].name.clone();
        if let Some(target) = self.next_candidate(s) {
            // Name the members passed over on the way, with why.
            let skipped: Vec<String> = self
                .election(s)
                .into_iter()
                .take_while(|c| c.node != target)
                .filter_map(|c| {
                    c.verdict
                        .err()
                        .map(|skip| format!("{} {skip}", self.nodes[c.node].name))
                })
                .collect();
            let skipped = if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped: {})", skipped.join(", "))
            };
            let reason = format!(
                "{old} is down; {} is the next eligible member in round-robin order{skipped}",
                self.nodes[target].name
            );
            self.start_failover(s, target, EventKind::Failover, false, reason, fx);
            return;
        }
        let skips = self.explain_skips(s);
        let policy = self.services[s].policy.on_no_candidate;
        if policy == NoCandidate::Freshest
            && let Some(target) = self.freshest(s)
        {
            let age = self.services[s]
                .slot(target)
                .and_then(|i| self.services[s].sync[i].watermark)
                .map_or(0, |w| self.now.saturating_sub(w.at));
            let reason = format!(
                "{old} is down and no member is eligible ({skips}); promoting the freshest, {}, last synced {} ago, as on_no_candidate = \"freshest\" says",
                self.nodes[target].name,
                seconds(age)
            );
            self.start_failover(s, target, EventKind::Failover, false, reason, fx);
            return;
        }
        if !self.services[s].stranded {
            self.services[s].stranded = true;
            let policy_word = match policy {
                NoCandidate::Wait => "on_no_candidate = \"wait\"",
                NoCandidate::Freshest => {
                    "on_no_candidate = \"freshest\" but no live member has ever synced"
                }
            };
            let reason = format!(
                "{old} is down and no member can take over ({skips}); waiting ({policy_word}); DNS keeps answering {old}"
            );
            let mut e = self.event(EventKind::Stranded, Some(s), reason);
            e.old_primary = Some(old);
            fx.push(Effect::Event(e));
        }
    }

    /// Starts a failover to `target`: fence the old primary if configured, then
    /// promote. The old primary is dead (or presumed so): nothing is asked of it but
    /// the fence.
    fn start_failover(
        &mut self,
        s: usize,
        target: usize,
        kind: EventKind,
        by_operator: bool,
        reason: String,
        fx: &mut Fx,
    ) {
        let svc = &mut self.services[s];
        svc.stranded = false;
        let mut t = Transition {
            target,
            planned: false,
            kind,
            by_operator,
            reason,
            step: Step::AwaitPass,
        };
        if svc.policy.fencing != Fencing::Off {
            let old = svc.primary;
            t.step = Step::Fencing(self.order_hook(s, old, Hook::Fence, fx));
            self.services[s].transition = Some(t);
        } else {
            self.services[s].transition = Some(t);
            self.promote_step(s, fx);
        }
    }

    /// Starts a planned switchover to `target`: demote, final sync, promote, switch.
    fn start_switchover(
        &mut self,
        s: usize,
        target: usize,
        kind: EventKind,
        by_operator: bool,
        reason: String,
        fx: &mut Fx,
    ) {
        let old = self.services[s].primary;
        let mut e = self.event(EventKind::SwitchoverStarted, Some(s), reason.clone());
        e.old_primary = Some(self.nodes[old].name.clone());
        e.new_primary = Some(self.nodes[target].name.clone());
        fx.push(Effect::Event(e));
        let mut t = Transition {
            target,
            planned: true,
            kind,
            by_operator,
            reason,
            step: Step::AwaitPass,
        };
        if self.services[s].policy.demote_hook {
            t.step = Step::Demoting(self.order_hook(s, old, Hook::Demote, fx));
            self.services[s].transition = Some(t);
        } else {
            self.services[s].transition = Some(t);
            self.final_sync_step(s, fx);
        }
        fx.push(Effect::Persist);
    }

    /// Switchover: the old primary stopped writing; copy the last of its data.
    fn final_sync_step(&mut self, s: usize, fx: &mut Fx) {
        let Some(target) = self.services[s].transition.as_ref().map(|t| t.target) else {
            return;
        };
        if !self.services[s].policy.mirrored {
            self.promote_step(s, fx);
            return;
        }
        let Some(i) = self.services[s].slot(target) else {
            return;
        };
        if self.services[s].sync[i].pass.is_some() {
            self.set_step(s, Step::AwaitPass);
            return;
        }
        let id = self.order_pass(s, i, PassKind::Final, fx);
        self.set_step(s, Step::FinalSync(id));
    }

    /// Runs the promote hook on the target, or commits if there is none.
    fn promote_step(&mut self, s: usize, fx: &mut Fx) {
        let Some(target) = self.services[s].transition.as_ref().map(|t| t.target) else {
            return;
        };
        if self.services[s].policy.promote_hook {
            let id = self.order_hook(s, target, Hook::Promote, fx);
            self.set_step(s, Step::Promoting(id));
        } else {
            self.commit(s, fx);
        }
    }

    fn set_step(&mut self, s: usize, step: Step) {
        if let Some(t) = &mut self.services[s].transition {
            t.step = step;
        }
    }

    /// Watches a transition for what would make it pointless or unsafe.
    fn advance(&mut self, s: usize, fx: &mut Fx) {
        let Some(t) = self.services[s].transition.clone() else {
            return;
        };
        if matches!(t.step, Step::RollingBack { .. }) {
            return;
        }
        let target_name = self.nodes[t.target].name.clone();
        if self.nodes[t.target].health == Health::Down {
            let why = format!("{target_name} went down");
            if t.planned {
                self.roll_back(s, why, fx);
            } else {
                self.abandon(s, why, fx);
            }
            return;
        }
        if t.planned && self.nodes[self.services[s].primary].health == Health::Down {
            // Nothing to roll back to: the failover logic takes it from here.
            let old = self.nodes[self.services[s].primary].name.clone();
            self.abandon(s, format!("{old}, the old primary, went down"), fx);
            return;
        }
        if t.step == Step::AwaitPass {
            self.final_sync_step(s, fx);
        }
    }

    /// Ends a failover that will not complete, with an event; the next evaluation
    /// decides afresh.
    fn abandon(&mut self, s: usize, why: String, fx: &mut Fx) {
        let Some(t) = self.services[s].transition.take() else {
            return;
        };
        let what = if t.planned { "switchover" } else { "failover" };
        let reason = format!("{what} to {} abandoned: {why}", self.nodes[t.target].name);
        fx.push(Effect::Event(self.event(
            EventKind::SwitchoverFailed,
            Some(s),
            reason,
        )));
        fx.push(Effect::Persist);
    }

    /// A switchover step failed: re-promote the old primary (if a promote hook exists)
    /// and say which step failed.
    fn roll_back(&mut self, s: usize, why: String, fx: &mut Fx) {
        if self.services[s].transition.is_none() {
            return;
        }
        if self.services[s].policy.promote_hook {
            let old = self.services[s].primary;
            let id = self.order_hook(s, old, Hook::Promote, fx);
            self.set_step(s, Step::RollingBack { id, why });
        } else {
            let old = self.nodes[self.services[s].primary].name.clone();
            self.finish_rollback(s, format!("{why}; {old} stays primary"), fx);
        }
    }

    fn finish_rollback(&mut self, s: usize, reason: String, fx: &mut Fx) {
        let Some(t) = self.services[s].transition.take() else {
            return;
        };
        let mut e = self.event(EventKind::SwitchoverFailed, Some(s), reason);
        e.old_primary = Some(self.nodes[self.services[s].primary].name.clone());
        e.new_primary = Some(self.nodes[t.target].name.clone());
        fx.push(Effect::Event(e));
        fx.push(Effect::Persist);
    }

    fn hook_done(&mut self, s: usize, outcome: Result<(), String>, fx: &mut Fx) {
        let Some(t) = self.services[s].transition.clone() else {
            return;
        };
        let old = self.nodes[self.services[s].primary].name.clone();
        let target = self.nodes[t.target].name.clone();
        match (t.step, outcome) {
            (Step::Fencing(_), Ok(())) => {
                fx.push(Effect::Event(self.event(
                    EventKind::Hook,
                    Some(s),
                    format!("fence of {old} done"),
                )));
                self.promote_step(s, fx);
            }
            (Step::Fencing(_), Err(e)) => match self.services[s].policy.fencing {
                Fencing::Required => {
                    self.services[s].transition = None;
                    self.services[s].retry_failover_at = self.now + FENCE_RETRY;
                    let reason = format!(
                        "fence of {old} failed: {e}; not promoting {target} (fencing = \"required\"); retrying in {}",
                        seconds(FENCE_RETRY)
                    );
                    let mut ev = self.event(EventKind::SwitchoverFailed, Some(s), reason);
                    ev.old_primary = Some(old);
                    ev.new_primary = Some(target);
                    fx.push(Effect::Event(ev));
                }
                Fencing::BestEffort | Fencing::Off => {
                    let reason = format!(
                        "fence of {old} failed: {e}; promoting {target} anyway (fencing = \"best-effort\")"
                    );
                    fx.push(Effect::Event(self.event(EventKind::Hook, Some(s), reason)));
                    self.promote_step(s, fx);
                }
            },
            (Step::Demoting(_), Ok(())) => self.final_sync_step(s, fx),
            (Step::Demoting(_), Err(e)) => {
                self.roll_back(s, format!("demote hook failed on {old}: {e}"), fx)
            }
            (Step::Promoting(_), Ok(())) => self.commit(s, fx),
            (Step::Promoting(_), Err(e)) => {
                if t.planned {
                    self.roll_back(s, format!("promote hook failed on {target}: {e}"), fx);
                } else {
                    self.nodes[t.target].promote_failed_until = self.now + PROMOTE_BACKOFF;
                    self.abandon(
                        s,
                        format!(
                            "promote hook failed on {target}: {e}; {target} is skipped for {}",
                            seconds(PROMOTE_BACKOFF)
                        ),
                        fx,
                    );
                }
            }
            (Step::RollingBack { why, .. }, Ok(())) => {
                self.finish_rollback(
                    s,
                    format!("{why}; rolled back: {old} re-promoted and stays primary"),
                    fx,
                );
            }
            (Step::RollingBack { why, .. }, Err(e)) => {
                let reason = format!(
                    "{why}; the rollback failed too: re-promoting {old}: {e}; {old} may not accept writes: fix by hand"
                );
                self.finish_rollback(s, reason, fx);
            }
            (Step::AwaitPass | Step::FinalSync(_), _) => {}
        }
    }

    /// The transition succeeded: new primary, new epoch, new serial, DNS switches.
    fn commit(&mut self, s: usize, fx: &mut Fx) {
        let Some(t) = self.services[s].transition.take() else {
            return;
        };
        let now = self.now;
        let svc = &mut self.services[s];
        let old = svc.primary;
        svc.primary = t.target;
        svc.epoch += 1;
        svc.stranded = false;
        svc.preferred_ready_since = None;
        let epoch = svc.epoch;
        for ms in &mut svc.sync {
            // The first pass from the new primary keeps what it would delete.
            ms.keep = true;
            ms.next_due = now;
        }
        if let Some(i) = svc.slot(old) {
            if t.planned {
                // The old primary stopped writing and the target got all of it: both
                // hold the same data as of now.
                svc.sync[i].watermark = Some(Watermark { at: now, epoch });
                svc.sync[i].resyncing = false;
            } else if svc.policy.mirrored {
                // The old primary may hold writes the new one never got: it must be
                // resynced (keeping them aside) before it can be promoted again.
                svc.sync[i].resyncing = true;
            }
        }
        self.serial = self.serial.wrapping_add(1).max(1);
        let mut e = self.event(t.kind, Some(s), t.reason);
        e.old_primary = Some(self.nodes[old].name.clone());
        e.new_primary = Some(self.nodes[t.target].name.clone());
        fx.push(Effect::Event(e));
        fx.push(Effect::Publish);
        fx.push(Effect::Persist);
    }

    /// Automatic failback: the preferred member, eligible for `after`, takes over.
    fn check_failback(&mut self, s: usize, fx: &mut Fx) {
        let svc = &self.services[s];
        let Failback::Auto { after } = svc.policy.failback else {
            return;
        };
        let preferred = svc.members[0];
        let ready = svc.transition.is_none()
            && svc.primary != preferred
            && self.nodes[svc.primary].health == Health::Up
            && self.eligibility(s, preferred).is_ok();
        if !ready {
            self.services[s].preferred_ready_since = None;
            return;
        }
        let since = *self.services[s]
            .preferred_ready_since
            .get_or_insert(self.now);
        if self.now.saturating_sub(since) >= after {
            let reason = format!(
                "automatic failback: {} has been up and in sync for {}",
                self.nodes[preferred].name,
                seconds(after)
            );
            self.start_switchover(s, preferred, EventKind::Failback, false, reason, fx);
        }
    }

    // -- mirroring --------------------------------------------------------------------

    /// Starts the passes that are due: to every live secondary, one at a time each.
    fn schedule_passes(&mut self, s: usize, fx: &mut Fx) {
        let svc = &self.services[s];
        if !svc.policy.mirrored || self.nodes[svc.primary].health != Health::Up {
            return;
        }
        let due: Vec<usize> = (0..svc.members.len())
            .filter(|&i| {
                let n = svc.members[i];
                let ms = &svc.sync[i];
                n != svc.primary
                    && self.nodes[n].health == Health::Up
                    && ms.pass.is_none()
                    && self.now >= ms.next_due
            })
            .collect();
        for i in due {
            let kind = if self.services[s].sync[i].resyncing {
                PassKind::Resync
            } else {
                PassKind::Regular
            };
            self.order_pass(s, i, kind, fx);
        }
    }

    fn order_pass(&mut self, s: usize, i: usize, kind: PassKind, fx: &mut Fx) -> u64 {
        let id = self.next_id();
        let now = self.now;
        let svc = &mut self.services[s];
        let ms = &mut svc.sync[i];
        ms.pass = Some(Pass {
            id,
            kind,
            started: now,
            epoch: svc.epoch,
            from: svc.primary,
            keep: ms.keep,
        });
        fx.push(Effect::StartSync(SyncOrder {
            id,
            service: s,
            from: svc.primary,
            to: svc.members[i],
            kind,
            keep_epoch: ms.keep.then_some(svc.epoch),
        }));
        id
    }

    fn order_hook(&mut self, s: usize, node: usize, hook: Hook, fx: &mut Fx) -> u64 {
        let id = self.next_id();
        fx.push(Effect::RunHook(HookOrder {
            id,
            service: s,
            node,
            hook,
            epoch: self.services[s].epoch,
        }));
        id
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn pass_finished(
        &mut self,
        s: usize,
        i: usize,
        outcome: Result<PassSummary, String>,
        fx: &mut Fx,
    ) {
        let now = self.now;
        let Some(pass) = self.services[s].sync[i].pass.take() else {
            return;
        };
        let member = self.services[s].members[i];
        let name = self.nodes[member].name.clone();
        let interval = self.services[s].policy.sync_interval;
        let current = pass.epoch == self.services[s].epoch && pass.from == self.services[s].primary;
        let in_final = self.services[s]
            .transition
            .as_ref()
            .is_some_and(|t| t.step == Step::FinalSync(pass.id));
        match outcome {
            Ok(summary) => {
                let ms = &mut self.services[s].sync[i];
                let recovered = ms.failures > 0;
                ms.failures = 0;
                ms.last_error = None;
                ms.next_due = now + interval;
                ms.last = Some(summary.clone());
                if current {
                    ms.watermark = Some(Watermark {
                        at: pass.started,
                        epoch: pass.epoch,
                    });
                    if pass.keep {
                        ms.keep = false;
                    }
                    // Only a resync pass that started after the member came back
                    // brings its copy up to date; an older pass does not.
                    let resynced = ms.resyncing
                        && pass.kind == PassKind::Resync
                        && pass.started >= ms.returned_at;
                    if resynced {
                        ms.resyncing = false;
                    }
                    fx.push(Effect::Persist);
                    if resynced {
                        let reason = match &summary.kept {
                            Some(k) if k.files > 0 => format!(
                                "{name} resynced; {} file(s), {} bytes it alone had were kept in {}",
                                k.files, k.bytes, k.dir
                            ),
                            _ => format!("{name} resynced; it had nothing of its own to keep"),
                        };
                        let mut e = self.event(EventKind::Resynced, Some(s), reason);
                        e.node = Some(name.clone());
                        fx.push(Effect::Event(e));
                    } else if let Some(k) = summary.kept.as_ref().filter(|k| k.files > 0) {
                        let reason = format!(
                            "{name}: {} file(s), {} bytes it alone had were kept in {}",
                            k.files, k.bytes, k.dir
                        );
                        let mut e = self.event(EventKind::Resynced, Some(s), reason);
                        e.node = Some(name.clone());
                        fx.push(Effect::Event(e));
                    } else if recovered {
                        let mut e = self.event(
                            EventKind::SyncDone,
                            Some(s),
                            format!("sync to {name} works again"),
                        );
                        e.node = Some(name.clone());
                        fx.push(Effect::Event(e));
                    }
                }
                if in_final {
                    self.promote_step(s, fx);
                }
            }
            Err(error) => {
                let ms = &mut self.services[s].sync[i];
                ms.failures = ms.failures.saturating_add(1);
                let backoff = interval
                    .saturating_mul(1 << ms.failures.saturating_sub(1).min(10))
                    .min(MAX_SYNC_BACKOFF.max(interval));
                ms.next_due = now + backoff;
                let repeated = ms.last_error.as_deref() == Some(error.as_str());
                ms.last_error = Some(error.clone());
                if in_final {
                    self.roll_back(s, format!("final sync to {name} failed: {error}"), fx);
                } else if !repeated {
                    let reason = format!(
                        "{} pass to {name} failed: {error}; next attempt in {}",
                        pass.kind,
                        seconds(backoff)
                    );
                    let mut e = self.event(EventKind::SyncFailed, Some(s), reason);
                    e.node = Some(name);
                    fx.push(Effect::Event(e));
                }
            }
        }
    }

    // -- helpers --------------------------------------------------------------------

    fn resolve_service(&self, name: Option<&str>) -> Result<usize, Refusal> {
        match name {
            Some(name) => self
                .service_index(name)
                .ok_or_else(|| Refusal(format!("unknown service {name:?}"))),
            None if self.services.len() == 1 => Ok(0),
            None => Err(Refusal(format!(
                "there are {} services; name one ({})",
                self.services.len(),
                self.services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn resolve_member(&self, s: usize, node: &str) -> Result<usize, Refusal> {
        let n = self
            .node_index(node)
            .ok_or_else(|| Refusal(format!("unknown node {node:?}")))?;
        if !self.services[s].members.contains(&n) {
            return Err(Refusal(format!(
                "{} is not a member of {}",
                self.nodes[n].name, self.services[s].name
            )));
        }
        Ok(n)
    }

    /// "app2 is down, app3 is in maintenance".
    fn explain_skips(&self, s: usize) -> String {
        let parts: Vec<String> = self
            .election(s)
            .into_iter()
            .filter_map(|c| {
                c.verdict
                    .err()
                    .map(|skip| format!("{} {skip}", self.nodes[c.node].name))
            })
            .collect();
        if parts.is_empty() {
            "it has no other member".to_owned()
        } else {
            parts.join(", ")
        }
    }

    fn event(&self, kind: EventKind, s: Option<usize>, reason: String) -> Event {
        let mut e = Event::new(self.now, kind, reason);
        if let Some(s) = s {
            e.service = Some(self.services[s].name.clone());
            e.epoch = Some(self.services[s].epoch);
        }
        e
    }
}

fn action_service(action: &Action) -> Option<&str> {
    match action {
        Action::Failover { service }
        | Action::Failback { service }
        | Action::Promote { service, .. }
        | Action::Sync { service, .. }
        | Action::Pause { service }
        | Action::Resume { service } => service.as_deref(),
        Action::Maintenance { .. } => None,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mirror_tests;
