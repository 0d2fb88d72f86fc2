//! Wire types of dnsd's control API (`/v1/...`): status, events and operator actions.
//!
//! This crate holds data only, no I/O, so that the daemon and the console share one
//! definition of what crosses the socket and the console never depends on daemon
//! internals. Everything is plain serde; times are milliseconds since the Unix epoch.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The control API's paths, written once for the server's router and the console's client.
pub mod paths {
    /// `GET`: [`crate::Status`].
    pub const STATUS: &str = "/v1/status";
    /// `GET ?since=N`: the event log after sequence number N.
    pub const EVENTS: &str = "/v1/events";
    /// `GET ?since=N`: server-sent events, live.
    pub const EVENT_STREAM: &str = "/v1/events/stream";
    /// `POST` an [`crate::Action`]; answered with an [`crate::ActionReply`].
    pub const ACTIONS: &str = "/v1/actions";
    /// `GET`: Prometheus text format. Unversioned, where scrapers look for it.
    pub const METRICS: &str = "/metrics";
    /// `POST` (no body): re-read the configuration file and apply it; answered with an
    /// [`crate::ActionReply`] (refused with the problems when the new file is not usable).
    pub const RELOAD: &str = "/v1/reload";
}

/// What `dnsd run` prints on stdout, as one JSON line `{"ready":{...}}`, once it serves:
/// the machine-readable signal supervisors, tests, benchmarks and the demo wait for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// DNS addresses actually bound (UDP and TCP on each).
    pub dns: Vec<std::net::SocketAddr>,
    /// The control socket.
    pub control: Option<std::path::PathBuf>,
    /// The control API's TCP address, if it listens on TCP.
    pub control_tcp: Option<std::net::SocketAddr>,
    /// The daemon's process id.
    pub pid: u32,
}

/// The envelope of the ready line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyLine {
    pub ready: Ready,
}

impl Ready {
    /// The line `dnsd run` prints, without its newline.
    pub fn to_line(&self) -> String {
        // A struct of addresses, paths and numbers always serialises.
        serde_json::to_string(&ReadyLine {
            ready: self.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a line printed by [`Ready::to_line`].
    pub fn from_line(line: &str) -> Result<Ready, serde_json::Error> {
        serde_json::from_str::<ReadyLine>(line.trim()).map(|l| l.ready)
    }
}

/// What happened, as recorded in the event log and streamed to live views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the daemon's event log, growing by one per event (0 until logged).
    #[serde(default)]
    pub seq: u64,
    /// Wall-clock time of the decision, ms since the Unix epoch.
    pub at_ms: u64,
    /// What kind of decision or observation this is.
    pub kind: EventKind,
    /// The service concerned, if the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The member concerned, if the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Primary before the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_primary: Option<String>,
    /// Primary after the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_primary: Option<String>,
    /// The service's epoch after the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Why, in words.
    pub reason: String,
}

impl Event {
    /// An event about nothing in particular yet: callers fill in the service, node,
    /// primaries and epoch it concerns.
    pub fn new(at_ms: u64, kind: EventKind, reason: String) -> Event {
        Event {
            seq: 0,
            at_ms,
            kind,
            service: None,
            node: None,
            old_primary: None,
            new_primary: None,
            epoch: None,
            reason,
        }
    }

    /// How loudly a view should show this event.
    pub fn level(&self) -> Level {
        self.kind.level()
    }
}

/// The kinds of events. Views colour them by [`Level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The daemon started (or restored its state).
    Started,
    /// The primary went down and another member was promoted automatically.
    Failover,
    /// An operator moved the primary.
    Promotion,
    /// The preferred member took the primary back.
    Failback,
    /// A planned switchover (failback or promotion of a healthy primary's secondary) started.
    SwitchoverStarted,
    /// A planned switchover failed and was rolled back to the old primary.
    SwitchoverFailed,
    /// The primary is down and no member may be promoted; DNS keeps answering the old primary.
    Stranded,
    /// A stranded service's primary answered again, or a primary whose service check
    /// failed passes it again (after a restart) and stays primary.
    Recovered,
    /// A member stopped answering its heartbeat; with `service` set, the service's check
    /// started failing on it (its host may still answer: the reason says).
    NodeDown,
    /// A member answers its heartbeat again; with `service` set, the service's check
    /// passes on it again.
    NodeUp,
    /// Maintenance was switched on or off for a member; or, with `service` set, a member
    /// was quarantined for flapping, released, or had its quarantine lifted.
    Maintenance,
    /// Automatic decisions were paused for a service.
    Paused,
    /// Automatic decisions were resumed for a service.
    Resumed,
    /// An operator action was refused.
    Refused,
    /// A mirroring pass finished.
    SyncDone,
    /// A mirroring pass failed.
    SyncFailed,
    /// A returning member was resynced; files it alone had were kept aside.
    Resynced,
    /// A hook or fence command ran (or failed); also every step of restarting a primary
    /// whose service check fails (restart-then-migrate).
    Hook,
    /// The state file could not be used (it was moved aside) or written.
    State,
    /// In a cluster: a terminal server took the lead, and a new term (epoch) began.
    Leadership,
    /// The configuration file was reloaded (the reason lists what changed); a reload that
    /// was refused is a `Refused` event.
    Reloaded,
}

impl EventKind {
    /// How loudly a view should show this kind.
    pub fn level(self) -> Level {
        match self {
            EventKind::Failover
            | EventKind::Stranded
            | EventKind::NodeDown
            | EventKind::SwitchoverFailed
            | EventKind::SyncFailed
            | EventKind::State => Level::Alert,
            EventKind::Promotion
            | EventKind::Failback
            | EventKind::SwitchoverStarted
            | EventKind::Maintenance
            | EventKind::Paused
            | EventKind::Refused
            | EventKind::Resynced
            | EventKind::Hook
            | EventKind::Leadership
            | EventKind::Reloaded => Level::Notice,
            EventKind::Started
            | EventKind::Recovered
            | EventKind::NodeUp
            | EventKind::Resumed
            | EventKind::SyncDone => Level::Info,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            EventKind::Started => "started",
            EventKind::Failover => "failover",
            EventKind::Promotion => "promotion",
            EventKind::Leadership => "leadership",
            EventKind::Reloaded => "reloaded",
            EventKind::Failback => "failback",
            EventKind::SwitchoverStarted => "switchover",
            EventKind::SwitchoverFailed => "switchover-failed",
            EventKind::Stranded => "stranded",
            EventKind::Recovered => "recovered",
            EventKind::NodeDown => "node-down",
            EventKind::NodeUp => "node-up",
            EventKind::Maintenance => "maintenance",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Refused => "refused",
            EventKind::SyncDone => "sync",
            EventKind::SyncFailed => "sync-failed",
            EventKind::Resynced => "resynced",
            EventKind::Hook => "hook",
            EventKind::State => "state",
        };
        f.write_str(s)
    }
}

/// How loudly to show an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Notice,
    Alert,
}

/// An operator action. Every one goes through the controller's validation and is
/// either applied as a whole or refused with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Move the primary to the next eligible member in round-robin order.
    Failover {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Give the primary back to the preferred member (the first in the service's list).
    Failback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Make `node` the primary.
    Promote {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        node: String,
    },
    /// Start a mirroring pass now (to every secondary, or to `node` only).
    Sync {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// Switch maintenance on or off for a member: a member in maintenance is never promoted.
    Maintenance { node: String, on: bool },
    /// Stop automatic decisions (one service, or all when `service` is absent).
    Pause {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Resume automatic decisions (one service, or all when `service` is absent).
    Resume {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Lift the flap quarantine of `node` (in `service`, or in every service where it is
    /// quarantined), so that it may be promoted and failed back to again.
    Unquarantine {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        node: String,
    },
}

impl Action {
    /// A short verb for logs and prompts.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Failover { .. } => "failover",
            Action::Failback { .. } => "failback",
            Action::Promote { .. } => "promote",
            Action::Sync { .. } => "sync",
            Action::Maintenance { .. } => "maintenance",
            Action::Pause { .. } => "pause",
            Action::Resume { .. } => "resume",
            Action::Unquarantine { .. } => "unquarantine",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let svc = |s: &Option<String>| match s {
            Some(s) => format!(" service {s}"),
            None => String::new(),
        };
        match self {
            Action::Failover { service } => write!(f, "failover{}", svc(service)),
            Action::Failback { service } => write!(f, "failback{}", svc(service)),
            Action::Promote { service, node } => write!(f, "promote {node}{}", svc(service)),
            Action::Sync { service, node } => match node {
                Some(n) => write!(f, "sync to {n}{}", svc(service)),
                None => write!(f, "sync{}", svc(service)),
            },
            Action::Maintenance { node, on } => {
                write!(f, "maintenance {node} {}", if *on { "on" } else { "off" })
            }
            Action::Pause { service } => write!(f, "pause{}", svc(service)),
            Action::Resume { service } => write!(f, "resume{}", svc(service)),
            Action::Unquarantine { service, node } => {
                write!(f, "unquarantine {node}{}", svc(service))
            }
        }
    }
}

/// A member's health according to its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not enough probes yet to decide.
    Unknown,
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        })
    }
}

/// A member's role in one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// DNS answers the service's name with this member.
    Primary,
    /// Up and holding a copy; may be promoted if in sync.
    Secondary,
    /// Its heartbeat says it is down.
    Down,
    /// Back from down, its copy being brought up to date; never promoted until done.
    Resyncing,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Down => "down",
            Role::Resyncing => "resyncing",
        })
    }
}

/// Everything an operator view shows: `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's clock when this was taken, ms since the Unix epoch.
    pub now_ms: u64,
    /// When the daemon started.
    pub started_ms: u64,
    /// The zone served, with its trailing dot.
    pub zone: String,
    /// The zone's SOA serial; grows on every role change.
    pub serial: u32,
    /// TTL of answers, seconds.
    pub ttl: u32,
    /// How members are probed.
    pub heartbeat: HeartbeatSettings,
    /// Every member of the pool.
    pub nodes: Vec<NodeStatus>,
    /// Every service.
    pub services: Vec<ServiceStatus>,
    /// The terminal servers sharing this pool, when `[cluster]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatus>,
}

/// The terminal servers of a cluster, as this one sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This terminal server's name.
    pub name: String,
    /// Whether this one leads (decides).
    pub leading: bool,
    /// Who leads, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// How the leader's control API is reached, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_contact: Option<String>,
    /// While leading: how long its lease surely holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_left_ms: Option<u64>,
    /// Whether it has a live session with etcd.
    pub etcd_reachable: bool,
    /// While etcd is away: for how long the answers have been the last known state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_for_ms: Option<u64>,
    /// Observers needed to declare a member down now.
    pub down_quorum: u32,
    /// The live terminal servers.
    pub servers: Vec<TerminalServer>,
}

/// One live terminal server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalServer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub leader: bool,
}

/// How the live terminal servers see one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observers {
    pub up: u32,
    pub down: u32,
    pub unknown: u32,
}

/// The heartbeat configuration, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatSettings {
    pub protocol: String,
    pub port: u16,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

/// One pool member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub health: Health,
    /// An operator put it in maintenance: it is never promoted.
    pub maintenance: bool,
    /// Round-trip time of the last answered probe, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
    /// Recent probes, oldest first: RTT in microseconds, or `null` for a miss.
    #[serde(default)]
    pub probes: Vec<Option<u64>>,
    /// Why the last probe failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// In a cluster: how the live terminal servers see it ("down 2/3"); `health` is their
    /// quorum's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observers: Option<Observers>,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// `<name>.<zone>`.
    pub fqdn: String,
    /// The member DNS answers with.
    pub primary: String,
    /// The first member in the service's order (failback returns to it).
    pub preferred: String,
    /// Grows by one on every change of primary.
    pub epoch: u64,
    /// Automatic decisions are paused.
    pub paused: bool,
    /// The primary is down and nobody can be promoted: DNS keeps answering it.
    pub stranded: bool,
    /// Who a failover would promote now, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Why `next` would win: "holds the freshest copy (pass #12; app2 #11 only)" or "the
    /// next eligible member in round-robin order".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reason: Option<String>,
    /// The election rule: "freshest" or "round-robin".
    #[serde(default)]
    pub election: String,
    /// Why this service risks two primaries in a partition (mirrored, automatic
    /// failover, neither fence nor demote), unless the operator chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain_risk: Option<String>,
    /// A primary change in progress, in words (e.g. "switchover to app1: final sync").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<String>,
    /// Directories mirrored from the primary to the secondaries (none: nothing to mirror).
    #[serde(default)]
    pub paths: Vec<String>,
    /// A member whose last complete pass is older than this is not promoted.
    #[serde(default)]
    pub max_lag_ms: u64,
    /// "manual", or "auto after 30s".
    #[serde(default)]
    pub failback: String,
    /// Which hooks the service has, so a view can say exactly what a move will do.
    #[serde(default)]
    pub hooks: HookSettings,
    /// The service's own check of its members, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckSettings>,
    /// Flap damping: when a member is quarantined (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap: Option<FlapSettings>,
    /// The primary is being restarted because its service check fails while its host
    /// answers: what is being tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,
    /// Members in round-robin order.
    pub members: Vec<MemberStatus>,
}

/// The hooks a service has configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookSettings {
    /// Runs on a member before it becomes primary.
    pub promote: bool,
    /// Runs on the primary to stop writes before a planned switchover.
    pub demote: bool,
    /// Runs on the terminal server against a failed primary.
    pub fence: bool,
    /// A failed fence stops the promotion.
    pub fencing_required: bool,
    /// Runs on a primary whose service check fails while its host answers.
    #[serde(default)]
    pub restart: bool,
}

/// A member as seen by one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node: String,
    pub role: Role,
    /// Whether it could be promoted now.
    pub eligible: bool,
    /// Why it would be skipped by a failover, when it would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// Mirroring state, for services with paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// The service's own check on this member, for a service with a check: its host's
    /// health is the node's ([`NodeStatus::health`]); this says whether the service answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckStatus>,
    /// Quarantined for flapping until then (ms since the Unix epoch): never promoted,
    /// never failed back to, until it ends or an operator lifts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_until_ms: Option<u64>,
    /// Changes of its health (host or service) within the flap window, since its last
    /// quarantine.
    #[serde(default)]
    pub health_changes: u32,
}

/// A service check's view of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    /// The check's verdict, with rise/fall applied: up is passing.
    pub health: Health,
    /// How long the last passing check took, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
    /// When the last check ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at_ms: Option<u64>,
    /// Why the last check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How a service checks its members, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSettings {
    /// What is checked, in words: "http :8080/health expects 200", "tcp :5432",
    /// "command /usr/local/bin/check-app {service}".
    pub probe: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    /// Restarts tried on a primary whose check fails before it fails over (0: none, it
    /// fails over at once).
    #[serde(default)]
    pub restart_attempts: u32,
    /// How long its check may fail, restarts included, before it fails over.
    #[serde(default)]
    pub restart_window_ms: u64,
}

/// Flap damping of a service's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlapSettings {
    /// Changes of health allowed within `window_ms`; one more quarantines.
    pub threshold: u32,
    pub window_ms: u64,
    /// How long a quarantine lasts.
    pub hold_down_ms: u64,
}

/// A primary whose host answers but whose service check fails, being restarted in place
/// before the service fails over (restart, then migrate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryStatus {
    /// The primary being restarted.
    pub node: String,
    /// Restarts ordered so far, the one running included.
    pub attempt: u32,
    /// Restarts allowed.
    pub attempts: u32,
    /// When its check failed.
    pub since_ms: u64,
    /// When the service fails over if the check has not passed by then.
    pub deadline_ms: u64,
    /// A restart is running now.
    pub restarting: bool,
    /// When the next restart is due, if one is left and none is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<u64>,
}

/// A member's mirroring state in one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Start of its last complete pass: its copy holds the primary's data as of then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_ms: Option<u64>,
    /// How old that copy is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Back from down; not promoted until its resync completes.
    pub resyncing: bool,
    /// The pass running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningPass>,
    /// Consecutive failed passes.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Earliest start of the next periodic pass.
    pub next_due_ms: u64,
    /// What the last complete pass moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<PassReport>,
}

/// A pass under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningPass {
    /// "regular", "resync" or "final".
    pub kind: String,
    pub started_ms: u64,
    /// Bytes moved so far and rsync's estimate of completion (of the current path).
    pub bytes: u64,
    pub percent: u8,
    pub rate_bytes_per_sec: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
}

/// What a complete pass moved, from rsync's `--stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassReport {
    pub files_transferred: u64,
    /// Bytes sent as new data.
    pub literal_bytes: u64,
    /// Bytes the receiver already had (delta transfer).
    pub matched_bytes: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
    /// Files set aside instead of deleted or overwritten, and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_dir: Option<String>,
    /// Stale files the pass replaced without keeping them (a pass that sorted what it
    /// overwrote: the first after a change of primary or a member's return).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_files: Option<u64>,
    /// The pass's number in its service: a higher number is a later copy.
    #[serde(default)]
    pub pass: u64,
}

impl Status {
    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl ServiceStatus {
    /// This service's view of member `node`.
    pub fn member(&self, node: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.node == node)
    }
}

/// The daemon's answer to an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReply {
    /// True when the action was applied (or, for a switchover, started).
    pub accepted: bool,
    /// What was done, or why it was refused.
    pub message: String,
    /// Why it was refused, for scripts to match on (absent when accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RefusalKind>,
}

impl ActionReply {
    /// An accepted action and what was done.
    pub fn done(message: String) -> ActionReply {
        ActionReply {
            accepted: true,
            message,
            kind: None,
        }
    }

    /// A refusal: its kind and the reason in words.
    pub fn refused(kind: RefusalKind, message: String) -> ActionReply {
        ActionReply {
            accepted: false,
            message,
            kind: Some(kind),
        }
    }
}

/// Why an action was refused: a stable, machine-readable kind beside the human message.
/// New kinds may be added; a client should treat one it does not know as "refused".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalKind {
    /// The named service is not configured.
    UnknownService,
    /// Several services are configured and the action named none.
    ServiceRequired,
    /// The named node is not configured.
    UnknownNode,
    /// The node is configured but is not a member of the service.
    NotAMember,
    /// A change of primary is under way in the service.
    Busy,
    /// No member could take over.
    NoCandidate,
    /// The member cannot be promoted now (down, lagging, resyncing...).
    NotEligible,
    /// The member is the primary already.
    AlreadyPrimary,
    /// The service has no paths to mirror.
    NotMirrored,
    /// The primary is not up.
    PrimaryNotUp,
    /// The primary's health is not known yet (too few heartbeats since start).
    PrimaryHealthUnknown,
    /// The action targets the primary, which it cannot.
    IsPrimary,
    /// The member is not up.
    NodeNotUp,
    /// No secondary of the service is up.
    NoSecondaryUp,
    /// The flag already has the requested value.
    Unchanged,
    /// The member is not quarantined (in the service named, or in any).
    NotQuarantined,
    /// The request body is not an action.
    Malformed,
    /// The TCP request carried no valid token.
    Unauthorized,
    /// dnsd could not handle the request (shutting down, or not deciding).
    Unavailable,
    /// This terminal server does not decide: another one leads (the message names it).
    NotLeader,
    /// A reload was refused: the new configuration has problems (listed in the message)
    /// or cannot be applied while dnsd runs (the message says why).
    ReloadRefused,
}

impl RefusalKind {
    /// The kind's wire name, e.g. `not_eligible`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::UnknownService => "unknown_service",
            RefusalKind::ServiceRequired => "service_required",
            RefusalKind::UnknownNode => "unknown_node",
            RefusalKind::NotAMember => "not_a_member",
            RefusalKind::Busy => "busy",
            RefusalKind::NoCandidate => "no_candidate",
            RefusalKind::NotEligible => "not_eligible",
            RefusalKind::AlreadyPrimary => "already_primary",
            RefusalKind::NotMirrored => "not_mirrored",
            RefusalKind::PrimaryNotUp => "primary_not_up",
            RefusalKind::PrimaryHealthUnknown => "primary_health_unknown",
            RefusalKind::IsPrimary => "is_primary",
            RefusalKind::NodeNotUp => "node_not_up",
            RefusalKind::NoSecondaryUp => "no_secondary_up",
            RefusalKind::Unchanged => "unchanged",
            RefusalKind::NotQuarantined => "not_quarantined",
            RefusalKind::Malformed => "malformed",
            RefusalKind::Unauthorized => "unauthorized",
            RefusalKind::Unavailable => "unavailable",
            RefusalKind::NotLeader => "not_leader",
            RefusalKind::ReloadRefused => "reload_refused",
        }
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_as_tagged_json() {
        let a = Action::Promote {
            service: Some("www".into()),
            node: "app2".into(),
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"action":"promote","service":"www","node":"app2"}"#
        );
        assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), a);
        let pause: Action = serde_json::from_str(r#"{"action":"pause"}"#).unwrap();
        assert_eq!(pause, Action::Pause { service: None });
        let lift: Action =
            serde_json::from_str(r#"{"action":"unquarantine","node":"app3"}"#).unwrap();
        assert_eq!(
            lift,
            Action::Unquarantine {
                service: None,
                node: "app3".into()
            }
        );
        assert_eq!(lift.to_string(), "unquarantine app3");
    }

    #[test]
    fn status_from_a_dnsd_without_checks_still_reads() {
        // A member and a service as a dnsd from before service checks sends them.
        let member: MemberStatus =
            serde_json::from_str(r#"{"node":"app1","role":"primary","eligible":false}"#).unwrap();
        assert_eq!((member.check, member.quarantined_until_ms), (None, None));
        assert_eq!(member.health_changes, 0);
        let hooks: HookSettings = serde_json::from_str(
            r#"{"promote":true,"demote":false,"fence":false,"fencing_required":false}"#,
        )
        .unwrap();
        assert!(!hooks.restart);
    }

    #[test]
    fn ready_line_round_trips() {
        let ready = Ready {
            dns: vec!["127.0.0.1:5353".parse().unwrap()],
            control: Some("/run/dnsd/control.sock".into()),
            control_tcp: None,
            pid: 42,
        };
        let line = ready.to_line();
        assert!(
            line.starts_with(r#"{"ready":{"dns":["127.0.0.1:5353"]"#),
            "{line}"
        );
        assert_eq!(Ready::from_line(&line).unwrap(), ready);
        assert!(Ready::from_line("starting").is_err());
    }

    #[test]
    fn refusal_kinds_match_their_wire_names() {
        for kind in [
            RefusalKind::NotEligible,
            RefusalKind::PrimaryHealthUnknown,
            RefusalKind::Unavailable,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        let reply: ActionReply =
            serde_json::from_str(r#"{"accepted":true,"message":"ok"}"#).unwrap();
        assert_eq!(reply.kind, None);
    }

    #[test]
    fn event_kinds_are_snake_case_on_the_wire() {
        let json = serde_json::to_string(&EventKind::SwitchoverFailed).unwrap();
        assert_eq!(json, r#""switchover_failed""#);
        assert_eq!(EventKind::Failover.level(), Level::Alert);
    }
}
