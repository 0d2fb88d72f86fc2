//! One scripted mirror run, whoever planned it: the paths of a [`Plan`] mirrored from host A
//! to host B, one pass each, into a [`Report`] whose [`ExitClass`] is the command's exit
//! code; and how a command prints that report (human lines or one JSON object) and exits.
//!
//! Two commands plan runs: `rsync-sync` from explicit hosts and paths ([`crate::cli`]), and
//! `dnsd sync` from dnsd's configuration file (in dnsd; this crate does not know that file).
//! Both hand [`execute`] a plan, or the reason there is none, and exit with what it returns.
//!
//! A run connects to A (verifying A's host key), verifies B's host key, then runs rsync on A
//! pushing each path to B. Paths run in order. A host key, authentication or connection
//! failure stops the run (no later path could do better); other failures are reported and
//! the next path still runs. The exit status is the code of the first failure:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | every path mirrored |
//! | 1 | unexpected error (e.g. the report could not be written) |
//! | 2 | usage or configuration error (also a missing local key or known_hosts file) |
//! | 3 | host key unknown or changed (of A or B) |
//! | 4 | authentication refused |
//! | 5 | connection failed or timed out |
//! | 6 | no space left on the destination |
//! | 7 | partial transfer, or source files vanished |
//! | 8 | other rsync error (protocol, syntax, unexpected exit) |

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;
use tracing::info;

use crate::config::MirrorSettings;
use crate::rsync::{FailureKind, PassError, Progress, Stats, rooted, run_pass};
use crate::ssh::{Session, SshError, SshErrorKind, verify_host_key};

/// The exit codes, as shown by `--help` of both commands.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (the first failure decides):
  0  every path mirrored
  1  unexpected error (e.g. the report could not be written)
  2  usage or configuration error (also a missing local key or known_hosts file)
  3  host key unknown or changed (of the source or the destination)
  4  authentication refused
  5  connection failed or timed out
  6  no space left on the destination
  7  partial transfer, or source files vanished
  8  other rsync error (protocol, syntax, unexpected exit)";

/// Outcome classes, each with its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitClass {
    /// Everything mirrored.
    Ok,
    /// Usage or configuration error.
    Config,
    /// Host key unknown or changed.
    HostKey,
    /// Authentication refused.
    Auth,
    /// Connection failed or timed out.
    Connection,
    /// No space on the destination.
    NoSpace,
    /// Partial transfer or vanished files.
    Partial,
    /// Any other rsync failure.
    Rsync,
}

impl ExitClass {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitClass::Ok => 0,
            ExitClass::Config => 2,
            ExitClass::HostKey => 3,
            ExitClass::Auth => 4,
            ExitClass::Connection => 5,
            ExitClass::NoSpace => 6,
            ExitClass::Partial => 7,
            ExitClass::Rsync => 8,
        }
    }

    /// The class of a pass failure.
    pub fn of(kind: FailureKind) -> ExitClass {
        match kind {
            FailureKind::HostKey => ExitClass::HostKey,
            FailureKind::Auth => ExitClass::Auth,
            FailureKind::Connection | FailureKind::Timeout => ExitClass::Connection,
            FailureKind::NoSpace => ExitClass::NoSpace,
            FailureKind::Partial | FailureKind::Vanished => ExitClass::Partial,
            FailureKind::Invalid => ExitClass::Config,
            FailureKind::Protocol | FailureKind::Syntax | FailureKind::Other(_) => ExitClass::Rsync,
        }
    }

    /// The class of a failure to reach or trust a host.
    pub fn of_ssh(error: &SshError) -> ExitClass {
        match error.kind() {
            SshErrorKind::HostKey => ExitClass::HostKey,
            SshErrorKind::Auth => ExitClass::Auth,
            SshErrorKind::Connection => ExitClass::Connection,
            SshErrorKind::Setup => ExitClass::Config,
        }
    }

    /// True for failures after which no further path can succeed.
    fn stops_the_run(self) -> bool {
        matches!(
            self,
            ExitClass::HostKey | ExitClass::Auth | ExitClass::Connection | ExitClass::Config
        )
    }
}

/// One end of a run as its planner names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Name in messages and reports: a dnsd node's name, or the host as given.
    pub name: String,
    /// Address or host name the terminal server and the other end reach it at.
    pub address: String,
    /// Absolute prefix put in front of every path on this end (members sharing one
    /// filesystem, as in a single-machine demo).
    pub root: Option<PathBuf>,
}

/// One end of a run, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    /// Node name.
    pub name: String,
    /// Node address.
    pub address: String,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.address {
            f.write_str(&self.name)
        } else {
            write!(f, "{} ({})", self.name, self.address)
        }
    }
}

/// One path of a plan, on both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPath {
    /// The path as the planner was given it.
    pub path: PathBuf,
    /// The directory on the source (the path under the source's root).
    pub source_dir: PathBuf,
    /// The directory on the destination (the path under the destination's root).
    pub destination_dir: PathBuf,
}

/// What a run does: which paths go from which host to which. Built by [`Plan::new`],
/// which refuses a plan no pass could carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The service the paths belong to, when the planner knows one (`dnsd sync`).
    pub service: Option<String>,
    /// The source: rsync runs there.
    pub from: NodeRef,
    /// The destination.
    pub to: NodeRef,
    /// The paths, in the order they run.
    pub paths: Vec<PlannedPath>,
}

/// Why a plan was refused (exit class [`ExitClass::Config`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// Both ends are the same node.
    #[error("--from and --to are both {0:?}")]
    SameNode(String),
    /// An end has no address.
    #[error("node {0:?} has an empty address")]
    EmptyAddress(String),
    /// An end's root is relative.
    #[error("node {name:?}: root {:?} must be an absolute path", root.display().to_string())]
    RelativeRoot {
        /// The node.
        name: String,
        /// Its root.
        root: PathBuf,
    },
    /// There is nothing to mirror.
    #[error("no paths to mirror")]
    NoPaths,
    /// A path is relative.
    #[error("path {:?} must be absolute", .0.display().to_string())]
    RelativePath(PathBuf),
}

impl Plan {
    /// Checks the two ends and the paths and puts each path under each end's root.
    pub fn new(
        service: Option<String>,
        from: Endpoint,
        to: Endpoint,
        paths: &[PathBuf],
    ) -> Result<Plan, PlanError> {
        for end in [&from, &to] {
            if end.address.trim().is_empty() {
                return Err(PlanError::EmptyAddress(end.name.clone()));
            }
            if let Some(root) = &end.root
                && !root.is_absolute()
            {
                return Err(PlanError::RelativeRoot {
                    name: end.name.clone(),
                    root: root.clone(),
                });
            }
        }
        if from.name == to.name {
            return Err(PlanError::SameNode(from.name));
        }
        if paths.is_empty() {
            return Err(PlanError::NoPaths);
        }
        let paths = paths
            .iter()
            .map(|path| {
                if !path.is_absolute() {
                    return Err(PlanError::RelativePath(path.clone()));
                }
                Ok(PlannedPath {
                    path: path.clone(),
                    source_dir: rooted(from.root.as_deref(), path),
                    destination_dir: rooted(to.root.as_deref(), path),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let end = |e: Endpoint| NodeRef {
            name: e.name,
            address: e.address,
        };
        Ok(Plan {
            service,
            from: end(from),
            to: end(to),
            paths,
        })
    }
}

/// Which end of the pass a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The node rsync runs on.
    Source,
    /// The node receiving the data.
    Destination,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Destination => "destination",
        })
    }
}

/// A node could not be reached or trusted: the run ends before any pass.
#[derive(Debug, Error)]
#[error("{role} node {node}: {error}{}", hint(error))]
pub struct NodeError {
    /// Which end.
    pub role: Role,
    /// The node.
    pub node: NodeRef,
    /// What failed.
    pub error: Box<SshError>,
}

/// What to do about an SSH failure, when the error itself does not say.
fn hint(error: &SshError) -> &'static str {
    match error.kind() {
        SshErrorKind::Auth => "; add the public key to that user's authorized_keys on the node",
        SshErrorKind::Connection => "; check that the node is up and its sshd reachable",
        SshErrorKind::HostKey | SshErrorKind::Setup => "",
    }
}

/// The `--json` output when the run ended before any pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// Always false.
    pub ok: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// The exit class.
    pub class: ExitClass,
    /// The message, as printed on stderr.
    pub error: String,
    /// The host key fingerprint involved, for host key failures.
    pub fingerprint: Option<String>,
}

impl ErrorReport {
    /// A usage or configuration error found while planning (exit 2).
    pub fn config(error: &dyn std::error::Error) -> ErrorReport {
        ErrorReport {
            ok: false,
            exit_code: ExitClass::Config.code(),
            class: ExitClass::Config,
            error: error.to_string(),
            fingerprint: None,
        }
    }
}

impl From<&NodeError> for ErrorReport {
    fn from(error: &NodeError) -> Self {
        let class = ExitClass::of_ssh(&error.error);
        ErrorReport {
            ok: false,
            exit_code: class.code(),
            class,
            error: error.to_string(),
            fingerprint: error.error.host_key().map(|k| k.fingerprint.clone()),
        }
    }
}

/// A failed path in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathFailure {
    /// Exit class.
    pub class: ExitClass,
    /// Failure kind as the library classifies it.
    pub kind: FailureKind,
    /// rsync's exit code, if it ran.
    pub exit_code: Option<i32>,
    /// The whole message, one line.
    pub message: String,
    /// Last lines of stderr.
    pub stderr_tail: Vec<String>,
}

/// The outcome of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathReport {
    /// The path as planned.
    pub path: PathBuf,
    /// The directory on the source node.
    pub source_dir: PathBuf,
    /// The directory on the destination node.
    pub destination_dir: PathBuf,
    /// How long the pass took, in milliseconds.
    pub duration_ms: u64,
    /// rsync's statistics, when it succeeded.
    pub stats: Option<Stats>,
    /// What went wrong, when it failed.
    pub error: Option<PathFailure>,
}

/// The outcome of a run; serialised as the `--json` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when every path mirrored.
    pub ok: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// The service, when the run was planned from one (`null` for explicit paths).
    pub service: Option<String>,
    /// The source node.
    pub from: NodeRef,
    /// The destination node.
    pub to: NodeRef,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The source's host key fingerprint, as verified.
    pub from_host_key: String,
    /// The destination's host key fingerprint, as verified.
    pub to_host_key: String,
    /// One entry per path, in order; paths after a run-stopping failure are absent.
    pub paths: Vec<PathReport>,
}

impl Report {
    /// The exit class: that of the first failed path, or OK.
    pub fn class(&self) -> ExitClass {
        self.paths
            .iter()
            .find_map(|p| p.error.as_ref().map(|e| e.class))
            .unwrap_or(ExitClass::Ok)
    }

    /// Human-readable lines: one per path.
    pub fn lines(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| {
                let service = self
                    .service
                    .as_ref()
                    .map(|s| format!("{s} "))
                    .unwrap_or_default();
                let head = format!(
                    "{service}{}: {} -> {}{}",
                    p.path.display(),
                    self.from.name,
                    self.to.name,
                    if self.dry_run { " (dry run)" } else { "" }
                );
                let took = humantime::format_duration(Duration::from_millis(p.duration_ms));
                match (&p.stats, &p.error) {
                    (Some(s), _) => format!(
                        "{head}: {} of {} files transferred, {} created, {} deleted; literal {} B, matched {} B; sent {} B, received {} B; {took}",
                        s.files_transferred, s.files_total, s.files_created, s.files_deleted,
                        s.literal_bytes, s.matched_bytes, s.bytes_sent, s.bytes_received
                    ),
                    (None, Some(e)) => format!("{head}: FAILED ({:?}): {}", e.class, e.message),
                    (None, None) => format!("{head}: no result"),
                }
            })
            .collect()
    }
}

/// Runs `plan` with `settings`: connect to the source, verify the destination, one pass
/// per path. `on_progress` receives the planned path and each progress update.
pub fn run(
    plan: &Plan,
    settings: &MirrorSettings,
    dry_run: bool,
    mut on_progress: impl FnMut(&Path, &Progress),
) -> Result<Report, NodeError> {
    let node_error = |role, node: &NodeRef, error| NodeError {
        role,
        node: node.clone(),
        error: Box::new(error),
    };
    let session = Session::connect(&plan.from.address, &settings.ssh)
        .map_err(|error| node_error(Role::Source, &plan.from, error))?;
    let to_key = verify_host_key(&plan.to.address, &settings.ssh)
        .map_err(|error| node_error(Role::Destination, &plan.to, error))?;

    let mut report = Report {
        ok: true,
        exit_code: 0,
        service: plan.service.clone(),
        from: plan.from.clone(),
        to: plan.to.clone(),
        dry_run,
        from_host_key: session.host_key().fingerprint.clone(),
        to_host_key: to_key.fingerprint,
        paths: Vec::new(),
    };
    for planned in &plan.paths {
        let PlannedPath {
            path,
            source_dir,
            destination_dir,
        } = planned;
        let mut spec = settings.pass(
            source_dir.clone(),
            &plan.to.address,
            destination_dir.clone(),
        );
        spec.dry_run = dry_run;
        let started = Instant::now();
        let result = run_pass(&session, &spec, |progress| on_progress(path, progress));
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (stats, error) = match result {
            Ok(stats) => {
                info!(path = %path.display(), literal = stats.literal_bytes, matched = stats.matched_bytes, "path mirrored");
                (Some(stats), None)
            }
            Err(error) => (None, Some(path_failure(&error, plan, settings))),
        };
        let stop = error.as_ref().is_some_and(|e| e.class.stops_the_run());
        report.paths.push(PathReport {
            path: path.clone(),
            source_dir: source_dir.clone(),
            destination_dir: destination_dir.clone(),
            duration_ms,
            stats,
            error,
        });
        if stop {
            break;
        }
    }
    let class = report.class();
    report.ok = class == ExitClass::Ok;
    report.exit_code = class.code();
    Ok(report)
}

/// Describes a failed pass in one line, naming the nodes and what to do.
fn path_failure(error: &PassError, plan: &Plan, settings: &MirrorSettings) -> PathFailure {
    let kind = error.kind();
    let (from, to) = (&plan.from, &plan.to);
    let advice = match (kind, error) {
        (_, PassError::Ssh { .. }) => format!("; the session to source node {from} failed"),
        (FailureKind::HostKey, _) => format!(
            "; check the fingerprint on destination node {to} and add its key to {} on source node {from}",
            settings.peer_shell.known_hosts.display()
        ),
        (FailureKind::Auth, _) => format!(
            "; add the public key of {} on source node {from} to {}'s authorized_keys on destination node {to}",
            settings.peer_shell.identity.display(),
            settings.ssh.user
        ),
        (FailureKind::Connection, _) => format!(
            "; check that destination node {to} is up and reachable from source node {from}"
        ),
        (FailureKind::NoSpace, _) => format!("; free space on destination node {to}"),
        _ => String::new(),
    };
    PathFailure {
        class: ExitClass::of(kind),
        kind,
        exit_code: error.exit_code(),
        message: format!("{error}{advice}"),
        stderr_tail: error.stderr_tail().to_vec(),
    }
}

/// The options every one-shot command has, flattened into its arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct RunFlags {
    /// Show what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object on stdout instead of human lines
    #[arg(long)]
    pub json: bool,
    /// Show transfer progress on stderr
    #[arg(long)]
    pub progress: bool,
}

impl RunFlags {
    /// [`execute`] on this process's stdout and stderr.
    pub fn execute(
        self,
        program: &str,
        planned: Result<(Plan, MirrorSettings), ErrorReport>,
    ) -> u8 {
        execute(
            program,
            self,
            planned,
            &mut io::stdout().lock(),
            &mut io::stderr().lock(),
        )
    }
}

/// Runs a planned command to its end: the plan (with its settings) or the reason there is
/// none, then the run, the report on `stdout`, failures one line each on `stderr`, each
/// line prefixed with `program` (`rsync-sync`, `dnsd sync`). Returns the process exit
/// code; 1 when the report could not be written.
pub fn execute(
    program: &str,
    flags: RunFlags,
    planned: Result<(Plan, MirrorSettings), ErrorReport>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let outcome = match planned {
        Ok((plan, settings)) => {
            let mut meter = ProgressLine::new(flags.progress);
            let result = run(&plan, &settings, flags.dry_run, |path, p| {
                meter.show(&mut *stderr, path, p)
            });
            meter.finish(&mut *stderr);
            result.map_err(|error| ErrorReport::from(&error))
        }
        Err(failure) => Err(failure),
    };
    let printed = match &outcome {
        Ok(report) => print_report(program, flags.json, report, stdout, stderr),
        Err(failure) => print_failure(program, flags.json, failure, stdout, stderr),
    };
    match printed {
        Ok(code) => code,
        Err(error) => {
            // Best effort: if stderr is gone too there is no one left to tell.
            let _ = writeln!(stderr, "{program}: cannot write the report: {error}");
            1
        }
    }
}

fn print_report(
    program: &str,
    json: bool,
    report: &Report,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> io::Result<u8> {
    if json {
        serde_json::to_writer(&mut *stdout, report)?;
        writeln!(stdout)?;
    } else {
        for line in report.lines() {
            writeln!(stdout, "{line}")?;
        }
    }
    stdout.flush()?;
    for failure in report.paths.iter().filter_map(|p| p.error.as_ref()) {
        writeln!(stderr, "{}: {}", program, failure.message)?;
    }
    Ok(report.exit_code)
}

fn print_failure(
    program: &str,
    json: bool,
    failure: &ErrorReport,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> io::Result<u8> {
    if json {
        serde_json::to_writer(&mut *stdout, failure)?;
        writeln!(stdout)?;
        stdout.flush()?;
    }
    writeln!(stderr, "{}: {}", program, failure.error)?;
    Ok(failure.exit_code)
}

/// The `--progress` line on stderr, redrawn only when the percentage moves: rsync reports
/// far more often than that.
struct ProgressLine {
    enabled: bool,
    shown: Option<(PathBuf, u8)>,
}

impl ProgressLine {
    fn new(enabled: bool) -> Self {
        ProgressLine {
            enabled,
            shown: None,
        }
    }

    fn show(&mut self, stderr: &mut dyn Write, path: &Path, p: &Progress) {
        let unchanged = self
            .shown
            .as_ref()
            .is_some_and(|(at, pct)| at == path && *pct == p.percent);
        if !self.enabled || unchanged {
            return;
        }
        self.shown = Some((path.to_owned(), p.percent));
        // A progress line that cannot be drawn is no reason to stop the pass.
        let _ = write!(
            stderr,
            "\r{}: {:>3}% {} bytes, {} files ",
            path.display(),
            p.percent,
            p.bytes,
            p.transfers.unwrap_or(0)
        );
    }

    fn finish(&self, stderr: &mut dyn Write) {
        if self.shown.is_some() {
            let _ = writeln!(stderr);
        }
    }
}

/// Logs to stderr, at `warn` unless `RUST_LOG` says otherwise, so that stdout carries only
/// the report. For the commands built on [`execute`].
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(name: &str, address: &str, root: Option<&str>) -> Endpoint {
        Endpoint {
            name: name.into(),
            address: address.into(),
            root: root.map(PathBuf::from),
        }
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn a_plan_puts_each_path_under_each_end_root() {
        let plan = Plan::new(
            Some("web".into()),
            end("a", "10.0.0.1", None),
            end("b", "10.0.0.2", Some("/demo/b")),
            &paths(&["/srv/www", "/var/lib/app"]),
        )
        .unwrap();
        assert_eq!(plan.from.address, "10.0.0.1");
        let dirs: Vec<(&Path, &Path)> = plan
            .paths
            .iter()
            .map(|p| (p.source_dir.as_path(), p.destination_dir.as_path()))
            .collect();
        assert_eq!(
            dirs,
            [
                (Path::new("/srv/www"), Path::new("/demo/b/srv/www")),
                (Path::new("/var/lib/app"), Path::new("/demo/b/var/lib/app")),
            ]
        );
    }

    #[test]
    fn a_plan_no_pass_could_carry_out_is_refused() {
        let a = || end("a", "10.0.0.1", None);
        let b = || end("b", "10.0.0.2", None);
        for (from, to, list, expected) in [
            (a(), a(), paths(&["/srv"]), "--from and --to are both \"a\""),
            (a(), b(), vec![], "no paths to mirror"),
            (a(), b(), paths(&["srv"]), "path \"srv\" must be absolute"),
            (
                a(),
                end("b", " ", None),
                paths(&["/srv"]),
                "node \"b\" has an empty address",
            ),
            (
                end("a", "10.0.0.1", Some("demo")),
                b(),
                paths(&["/srv"]),
                "node \"a\": root \"demo\" must be an absolute path",
            ),
        ] {
            let error = Plan::new(None, from, to, &list).unwrap_err();
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn exit_classes_have_distinct_codes() {
        let classes = [
            ExitClass::Ok,
            ExitClass::Config,
            ExitClass::HostKey,
            ExitClass::Auth,
            ExitClass::Connection,
            ExitClass::NoSpace,
            ExitClass::Partial,
            ExitClass::Rsync,
        ];
        let mut codes: Vec<u8> = classes.iter().map(|c| c.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), classes.len());
        for class in &classes[1..] {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {}  ", class.code())),
                "{class:?}"
            );
        }
        assert_eq!(ExitClass::of(FailureKind::Vanished), ExitClass::Partial);
        assert_eq!(ExitClass::of(FailureKind::Timeout), ExitClass::Connection);
        assert_eq!(ExitClass::of(FailureKind::Other(11)), ExitClass::Rsync);
    }

    fn executed(
        json: bool,
        planned: Result<(Plan, MirrorSettings), ErrorReport>,
    ) -> (u8, String, String) {
        let flags = RunFlags {
            json,
            ..RunFlags::default()
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let code = execute("test-sync", flags, planned, &mut stdout, &mut stderr);
        (
            code,
            String::from_utf8(stdout).unwrap(),
            String::from_utf8(stderr).unwrap(),
        )
    }

    #[test]
    fn a_planning_failure_exits_2_with_one_line_and_its_json() {
        let error = PlanError::NoPaths;
        let (code, stdout, stderr) = executed(false, Err(ErrorReport::config(&error)));
        assert_eq!(code, 2);
        assert_eq!(stdout, "");
        assert_eq!(stderr, "test-sync: no paths to mirror\n");

        let (code, stdout, _) = executed(true, Err(ErrorReport::config(&error)));
        assert_eq!(code, 2);
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "ok": false, "exit_code": 2, "class": "config",
                "error": "no paths to mirror", "fingerprint": null,
            })
        );
    }

    #[test]
    fn an_unreachable_source_is_a_connection_failure_before_any_pass() {
        let (_socket, port) = crate::ssh::refusing_port();
        let mut mirror = crate::config::MirrorConfig {
            identity: "agent".into(),
            port,
            connect_timeout: "2s".into(),
            ..Default::default()
        };
        mirror.known_hosts = "/nonexistent/known_hosts".into();
        let settings = mirror.validate().unwrap();
        let plan = Plan::new(
            None,
            end("127.0.0.1", "127.0.0.1", None),
            end("127.0.0.2", "127.0.0.2", None),
            &paths(&["/srv/data"]),
        )
        .unwrap();
        let (code, stdout, stderr) = executed(true, Ok((plan, settings)));
        assert_eq!(code, 5, "{stderr}");
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(value["class"], "connection");
        let line = stderr.trim_end();
        assert!(!line.contains('\n'), "{stderr}");
        assert!(
            line.starts_with("test-sync: source node 127.0.0.1: cannot connect to 127.0.0.1 port")
                && line.ends_with("check that the node is up and its sshd reachable"),
            "{line}"
        );
    }
}
