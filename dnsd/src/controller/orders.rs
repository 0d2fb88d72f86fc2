//! The contract between the controller and the executor that carries out its work: the
//! effects it returns, the passes and hooks it orders, and what comes back from them
//! (a pass's summary, or why a pass or hook failed).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use dnsd_api::Event;
use rsync_sync::connector::ConnectError;
use rsync_sync::ssh::SshError;
use serde::{Deserialize, Serialize};

use super::ids::{HookId, NodeId, PassId, ServiceId};
use super::spec::Millis;

/// What the driver must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The zone changed: build and publish a new DNS snapshot.
    Publish,
    /// Roles, epochs, flags or watermarks changed: write the state file.
    Persist,
    /// Record and broadcast this event.
    Event(Event),
    /// Start a mirroring pass; report it with [`super::Controller::sync_finished`].
    StartSync(SyncOrder),
    /// Run a hook; report it with [`super::Controller::hook_finished`].
    RunHook(HookOrder),
}

/// The effects of one input, in the order the driver must carry them out.
pub(super) type Fx = Vec<Effect>;

/// A mirroring pass to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOrder {
    pub id: PassId,
    pub service: ServiceId,
    /// The pass's number in its service: passes ordered later have higher numbers, passes
    /// ordered together share one. A copy from a higher number is a later copy.
    pub number: u64,
    /// The service's epoch: the pass carries it to the members (`epoch_guard`).
    pub epoch: u64,
    /// Where rsync runs (the primary).
    pub from: NodeId,
    /// Who receives.
    pub to: NodeId,
    pub kind: PassKind,
    /// For the first pass to a member after a change of primary or its return: set aside
    /// what the pass overwrites or deletes, then keep only what `Keep` says holds writes
    /// the primary lacks (in a folder of its own) and count the rest as replaced.
    pub keep: Option<Keep>,
}

/// Which of the files a pass overwrites or deletes on a member hold writes the primary
/// lacks, and are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// None: the member's copy is no fresher than the primary's; stale files are replaced.
    Nothing,
    /// Those changed after this moment of the clock the primary's copy was taken by: the
    /// member holds writes (its own, or a fresher copy's) made after the primary's last
    /// complete pass started.
    NewerThan(SourceClock),
    /// All of them: how the member's copy relates to the primary's is not known.
    Everything,
}

/// A moment on a member's own clock, as `date +%s.%N` prints it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceClock {
    pub secs: i64,
    pub nanos: u32,
}

impl SourceClock {
    /// Reads `date +%s.%N` output ("1764150000.123456789").
    pub fn parse(text: &str) -> Option<SourceClock> {
        let (secs, nanos) = text.trim().split_once('.')?;
        let nanos = format!("{nanos:0<9}");
        Some(SourceClock {
            secs: secs.parse().ok()?,
            nanos: nanos.get(..9)?.parse().ok()?,
        })
    }
}

impl fmt::Display for SourceClock {
    /// `@1764150000.123456789`, as GNU `find -newermt` and `date -d` read it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}.{:09}", self.secs, self.nanos)
    }
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
    pub id: HookId,
    pub service: ServiceId,
    /// The member the hook concerns (for `fence`, the old primary; for `restart`, the
    /// primary).
    pub node: NodeId,
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
    /// Run on the primary over SSH when its host answers but its service check fails.
    Restart,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Promote => "promote",
            Hook::Demote => "demote",
            Hook::Fence => "fence",
            Hook::Restart => "restart",
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
    /// The source's clock when the pass started (`date +%s.%N` there).
    pub source_clock: Option<SourceClock>,
    /// What a pass ordered with [`SyncOrder::keep`] set aside and what it replaced.
    pub kept: Option<Kept>,
}

/// What a pass ordered to keep found: files holding writes the primary lacks, kept in a
/// folder of this pass's own, and stale files it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub files: u64,
    pub bytes: u64,
    /// Where on the member, e.g. `/srv/data.dnsd-kept/epoch-4-pass-17` (several paths
    /// are listed with ", "); empty when nothing was kept.
    pub dir: String,
    /// Stale files the pass overwrote or deleted without keeping them.
    pub replaced: u64,
}

/// The last complete pass to a member: its copy holds the source's data as of the pass's
/// start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// When the pass was ordered, on the terminal server's clock (for lag).
    pub at: Millis,
    pub epoch: u64,
    /// The pass's number in its service ([`SyncOrder::number`]): a higher number is a
    /// later copy. 0 in state files older than the field.
    #[serde(default)]
    pub pass: u64,
    /// The member the pass copied from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The source's clock when the pass started: what changed there after it is not in
    /// this copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_clock: Option<SourceClock>,
}

/// Why a mirroring pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// There is no `[mirror]` section, so members cannot be reached.
    #[error("no [mirror] section: members cannot be reached over SSH")]
    NoMirror,
    /// The terminal server could not open (or reuse) its session to a member.
    #[error("{node} ({address})")]
    Connect {
        node: String,
        address: IpAddr,
        #[source]
        source: Box<ConnectError>,
    },
    /// The member's host key is unknown or changed, or could not be checked.
    #[error("{node} ({address})")]
    HostKey {
        node: String,
        address: IpAddr,
        #[source]
        source: Box<SshError>,
    },
    /// rsync, run on the source, failed; `kept` says where what it had already set
    /// aside that holds writes the primary lacks was kept.
    #[error("{from} -> {to}{}", kept.as_ref().map(|d| format!(" (what it overwrote with writes the primary lacks is kept in {d})")).unwrap_or_default())]
    Rsync {
        from: String,
        to: String,
        kept: Option<String>,
        #[source]
        source: Box<rsync_sync::rsync::PassError>,
    },
    /// A command the pass runs on a member beside rsync (its clock, the epoch guard,
    /// sorting what it set aside) could not run.
    #[error("{what} on {node}")]
    Remote {
        what: &'static str,
        node: String,
        #[source]
        source: Box<SshError>,
    },
    /// Such a command ran and failed; `detail` is the last line it printed.
    #[error("{what} on {node} failed: {detail}")]
    RemoteFailed {
        what: &'static str,
        node: String,
        detail: String,
    },
    /// Sorting what the pass set aside failed: everything it overwrote is still on the
    /// member, unsorted, in `kept` (with what earlier paths of the pass kept).
    #[error("{node} (what the pass overwrote is kept in {kept}, unsorted)")]
    Unsorted {
        node: String,
        kept: String,
        #[source]
        source: Box<PassError>,
    },
    /// The pass failed after it had kept files with writes the primary lacks: `kept`
    /// says where they are.
    #[error("{source} (what the pass overwrote with writes the primary lacks is kept in {kept})")]
    KeptThenFailed {
        kept: String,
        #[source]
        source: Box<PassError>,
    },
    /// The service's epoch moved on (a change of primary) before rsync started: a pass of
    /// an older epoch never runs, since its `--delete` could remove what the new primary
    /// accepted.
    #[error("not started: ordered in epoch {epoch}, and the service is at epoch {current} now")]
    Superseded { epoch: u64, current: u64 },
    /// The task running the pass died.
    #[error("pass task failed")]
    Task(#[source] tokio::task::JoinError),
    /// dnsd stopped before the pass could start.
    #[error("dnsd is shutting down")]
    ShuttingDown,
    /// A failure a test feeds the controller, with the words it should report.
    #[cfg(test)]
    #[error("{0}")]
    Simulated(&'static str),
}

/// How a hook command ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status (as the member's shell reports it).
    Status(String),
    /// It ran longer than `hook_timeout` and was killed.
    TimedOut(Duration),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Status(status) => f.write_str(status),
            Ended::TimedOut(after) => write!(f, "timed out after {}s", after.as_secs().max(1)),
        }
    }
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The service has no such hook.
    #[error("no {0} hook is configured")]
    NotConfigured(Hook),
    /// There is no `[mirror]` section, so members cannot be reached.
    #[error("no [mirror] section: members cannot be reached over SSH")]
    NoMirror,
    /// The terminal server could not open (or reuse) its session to the member.
    #[error("on {node} ({address})")]
    Connect {
        node: String,
        address: IpAddr,
        #[source]
        source: Box<ConnectError>,
    },
    /// The session to the member failed while running the command.
    #[error("on {node} ({address})")]
    Ssh {
        node: String,
        address: IpAddr,
        #[source]
        source: Box<SshError>,
    },
    /// The command ran on the member and failed; `detail` is the last line it printed.
    #[error("on {node}: {ended}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Failed {
        node: String,
        ended: Ended,
        detail: Option<String>,
    },
    /// The local (fence) command could not be started or waited for.
    #[error("cannot {action} {program}")]
    Local {
        action: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The local (fence) command ran and failed.
    #[error("{program} {ended}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    LocalFailed {
        program: String,
        ended: LocalEnd,
        detail: Option<String>,
    },
    /// The task running the hook died.
    #[error("hook task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A failure a test feeds the controller, with the words it should report.
    #[cfg(test)]
    #[error("{0}")]
    Simulated(&'static str),
}

/// How a local command ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalEnd {
    /// It exited with this status.
    Exited(std::process::ExitStatus),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
}

impl fmt::Display for LocalEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalEnd::Exited(status) => write!(f, "ended with {status}"),
            LocalEnd::TimedOut(after) => write!(f, "timed out after {}s", after.as_secs()),
        }
    }
}

/// An error and its causes on one line: "app2 (10.0.0.12): cannot connect to 10.0.0.12
/// port 22: Connection refused (os error 111)". Causes a message already quotes are not
/// repeated.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not connect to echo port 10.0.0.1:7")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn describe_shows_every_cause_once() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            describe(&e),
            "could not connect to echo port 10.0.0.1:7: connection refused"
        );
        let plain = std::io::Error::other("x");
        assert_eq!(describe(&plain), "x");
    }
}
