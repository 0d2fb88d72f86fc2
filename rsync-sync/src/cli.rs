//! One scripted mirror pass, as run by the `rsync-sync` binary:
//! `rsync-sync --config FILE --service S --from A --to B [--dry-run] [--json]`.
//!
//! The configuration file is dnsd's. This tool reads only what it needs, leniently at the
//! top level (the file has other sections): `[mirror]` (strictly, see [`crate::config`]),
//! `[[node]]` (`name`, `address`, optional `root`) and `[[service]]` (`name`, `nodes`,
//! `paths`). For each of the service's paths it runs one pass from node A to node B:
//! connect to A (verifying A's host key), verify B's host key, then run rsync on A pushing
//! to B. A node's `root`, when set, is put in front of every path on that node.
//!
//! Paths run in order. A host key, authentication or connection failure stops the run (no
//! later path could do better); other failures are reported and the next path still runs.
//! The exit status is the code of the first failure:
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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::info;

use crate::config::{MirrorConfig, MirrorSettings, Problem};
use crate::rsync::{FailureKind, PassError, Progress, Stats, rooted, run_pass};
use crate::ssh::{Session, SshError, SshErrorKind, verify_host_key};

/// The exit codes, as shown by `rsync-sync --help`.
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

    fn of_ssh(error: &SshError) -> ExitClass {
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

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// dnsd's configuration file.
    pub config: PathBuf,
    /// Service whose paths are mirrored.
    pub service: String,
    /// Node to mirror from (runs rsync).
    pub from: String,
    /// Node to mirror to.
    pub to: String,
    /// Report what would change without changing anything.
    pub dry_run: bool,
}

/// The configuration file as this tool reads it; other sections and keys are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigFile {
    /// The `[mirror]` section (strict).
    #[serde(default)]
    pub mirror: MirrorConfig,
    /// The `[[node]]` tables.
    #[serde(default)]
    pub node: Vec<NodeEntry>,
    /// The `[[service]]` tables.
    #[serde(default)]
    pub service: Vec<ServiceEntry>,
}

/// A `[[node]]` table, as far as mirroring needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct NodeEntry {
    /// Node name, as services list it.
    pub name: String,
    /// Address (or host name) to reach it at, by the terminal server and by other members.
    pub address: String,
    /// Optional prefix put in front of every path on this node (single-machine demos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// A `[[service]]` table, as far as mirroring needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceEntry {
    /// Service name.
    pub name: String,
    /// Its member nodes, by name.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Directories mirrored from the primary to the secondaries (absolute).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
}

/// A failure that ends the run before or between passes, with its exit class.
#[derive(Debug, Error)]
pub enum CliError {
    /// The configuration file cannot be read or parsed.
    #[error("cannot use configuration file {}: {message}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `[mirror]` section has problems (all listed).
    #[error("configuration file {} has {} problem(s): {}", path.display(), problems.len(), join_problems(problems))]
    Problems {
        /// The file.
        path: PathBuf,
        /// Every problem.
        problems: Vec<Problem>,
    },
    /// The request does not match the configuration (unknown service or node...).
    #[error("{0}")]
    Usage(String),
    /// A node could not be reached or trusted.
    #[error("{role} node {name} ({address}): {error}{}", hint(*role, error))]
    Node {
        /// `source` or `destination`.
        role: Role,
        /// Node name.
        name: String,
        /// Node address.
        address: String,
        /// What failed.
        error: Box<SshError>,
    },
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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

/// What to do about an SSH failure, when the error itself does not say.
fn hint(role: Role, error: &SshError) -> &'static str {
    match (error.kind(), role) {
        (SshErrorKind::Auth, _) => {
            "; add the public key to that user's authorized_keys on the node"
        }
        (SshErrorKind::Connection, _) => "; check that the node is up and its sshd reachable",
        _ => "",
    }
}

impl CliError {
    /// The exit class of this failure.
    pub fn class(&self) -> ExitClass {
        match self {
            CliError::ConfigFile { .. } | CliError::Problems { .. } | CliError::Usage(_) => {
                ExitClass::Config
            }
            CliError::Node { error, .. } => ExitClass::of_ssh(error),
        }
    }

    /// The fingerprint of the host key involved, for host key failures.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            CliError::Node { error, .. } => error.host_key().map(|k| k.fingerprint.as_str()),
            _ => None,
        }
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

impl From<&CliError> for ErrorReport {
    fn from(error: &CliError) -> Self {
        ErrorReport {
            ok: false,
            exit_code: error.class().code(),
            class: error.class(),
            error: error.to_string(),
            fingerprint: error.fingerprint().map(str::to_owned),
        }
    }
}

/// A node in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    /// Node name.
    pub name: String,
    /// Node address.
    pub address: String,
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
    /// The service path as configured.
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
    /// The service.
    pub service: String,
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
                let head = format!(
                    "{} {}: {} -> {}{}",
                    self.service,
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

/// Reads and checks the configuration file.
pub fn load(path: &Path) -> Result<(ConfigFile, MirrorSettings), CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| CliError::ConfigFile {
        path: path.to_owned(),
        message: error.to_string(),
    })?;
    let file: ConfigFile = toml::from_str(&text).map_err(|error| CliError::ConfigFile {
        path: path.to_owned(),
        message: error
            .to_string()
            .replace('\n', " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    })?;
    let settings = file
        .mirror
        .validate()
        .map_err(|problems| CliError::Problems {
            path: path.to_owned(),
            problems,
        })?;
    Ok((file, settings))
}

/// The plan of a run: both nodes and the path pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The source node.
    pub from: NodeEntry,
    /// The destination node.
    pub to: NodeEntry,
    /// (service path, directory on the source, directory on the destination).
    pub paths: Vec<(PathBuf, PathBuf, PathBuf)>,
}

/// Matches the request against the file: the service exists, both nodes are its members
/// and distinct, and it has absolute paths.
pub fn plan(file: &ConfigFile, request: &Request) -> Result<Plan, CliError> {
    let usage = |message: String| CliError::Usage(message);
    let service = file
        .service
        .iter()
        .find(|s| s.name == request.service)
        .ok_or_else(|| {
            usage(format!(
                "no [[service]] named {:?} in {}",
                request.service,
                request.config.display()
            ))
        })?;
    let node = |name: &str| -> Result<NodeEntry, CliError> {
        if !service.nodes.iter().any(|n| n == name) {
            return Err(usage(format!(
                "node {name:?} is not a member of service {:?} (members: {})",
                service.name,
                service.nodes.join(", ")
            )));
        }
        let entry = file.node.iter().find(|n| n.name == name).ok_or_else(|| {
            usage(format!(
                "no [[node]] named {name:?} in {}",
                request.config.display()
            ))
        })?;
        if entry.address.trim().is_empty() {
            return Err(usage(format!("node {name:?} has an empty address")));
        }
        if let Some(root) = &entry.root
            && !root.is_absolute()
        {
            return Err(usage(format!(
                "node {name:?}: root {:?} must be an absolute path",
                root.display().to_string()
            )));
        }
        Ok(entry.clone())
    };
    let from = node(&request.from)?;
    let to = node(&request.to)?;
    if from.name == to.name {
        return Err(usage(format!("--from and --to are both {:?}", from.name)));
    }
    if service.paths.is_empty() {
        return Err(usage(format!(
            "service {:?} has no paths to mirror",
            service.name
        )));
    }
    let mut paths = Vec::new();
    for path in &service.paths {
        if !path.is_absolute() {
            return Err(usage(format!(
                "service {:?}: path {:?} must be absolute",
                service.name,
                path.display().to_string()
            )));
        }
        paths.push((
            path.clone(),
            rooted(from.root.as_deref(), path),
            rooted(to.root.as_deref(), path),
        ));
    }
    Ok(Plan { from, to, paths })
}

/// Runs the request: load, plan, connect, verify, one pass per path.
/// `on_progress` receives the service path and each progress update.
pub fn run(
    request: &Request,
    mut on_progress: impl FnMut(&Path, &Progress),
) -> Result<Report, CliError> {
    let (file, settings) = load(&request.config)?;
    let plan = plan(&file, request)?;
    let node_error = |role, node: &NodeEntry, error| CliError::Node {
        role,
        name: node.name.clone(),
        address: node.address.clone(),
        error: Box::new(error),
    };
    let session = Session::connect(&plan.from.address, &settings.ssh)
        .map_err(|error| node_error(Role::Source, &plan.from, error))?;
    let to_key = verify_host_key(&plan.to.address, &settings.ssh)
        .map_err(|error| node_error(Role::Destination, &plan.to, error))?;

    let mut report = Report {
        ok: true,
        exit_code: 0,
        service: request.service.clone(),
        from: NodeRef {
            name: plan.from.name.clone(),
            address: plan.from.address.clone(),
        },
        to: NodeRef {
            name: plan.to.name.clone(),
            address: plan.to.address.clone(),
        },
        dry_run: request.dry_run,
        from_host_key: session.host_key().fingerprint.clone(),
        to_host_key: to_key.fingerprint,
        paths: Vec::new(),
    };
    for (path, source_dir, destination_dir) in &plan.paths {
        let mut spec = settings.pass(
            source_dir.clone(),
            &plan.to.address,
            destination_dir.clone(),
        );
        spec.dry_run = request.dry_run;
        let started = Instant::now();
        let result = run_pass(&session, &spec, |progress| on_progress(path, progress));
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (stats, error) = match result {
            Ok(stats) => {
                info!(path = %path.display(), literal = stats.literal_bytes, matched = stats.matched_bytes, "path mirrored");
                (Some(stats), None)
            }
            Err(error) => (None, Some(path_failure(&error, &plan, &settings))),
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
    let from = format!("{} ({})", plan.from.name, plan.from.address);
    let to = format!("{} ({})", plan.to.name, plan.to.address);
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

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [dns]
        zone = "example.test"

        [mirror]
        identity = "/etc/dnsd/id_ed25519"

        [[node]]
        name = "a"
        address = "10.0.0.1"
        echo_port = 7

        [[node]]
        name = "b"
        address = "10.0.0.2"
        root = "/demo/b"

        [[node]]
        name = "c"
        address = "10.0.0.3"

        [[service]]
        name = "web"
        nodes = ["a", "b"]
        paths = ["/srv/www", "/var/lib/app"]
    "#;

    fn request(service: &str, from: &str, to: &str) -> Request {
        Request {
            config: "/etc/dnsd/dnsd.toml".into(),
            service: service.into(),
            from: from.into(),
            to: to.into(),
            dry_run: false,
        }
    }

    #[test]
    fn plan_applies_node_roots() {
        let file: ConfigFile = toml::from_str(FILE).unwrap();
        let plan = plan(&file, &request("web", "a", "b")).unwrap();
        assert_eq!(plan.from.address, "10.0.0.1");
        assert_eq!(
            plan.paths,
            [
                (
                    "/srv/www".into(),
                    "/srv/www".into(),
                    "/demo/b/srv/www".into()
                ),
                (
                    "/var/lib/app".into(),
                    "/var/lib/app".into(),
                    "/demo/b/var/lib/app".into()
                ),
            ]
        );
    }

    #[test]
    fn plan_refuses_requests_that_do_not_match_the_file() {
        let file: ConfigFile = toml::from_str(FILE).unwrap();
        for (service, from, to, expected) in [
            ("mail", "a", "b", "no [[service]] named \"mail\""),
            (
                "web",
                "a",
                "c",
                "node \"c\" is not a member of service \"web\"",
            ),
            ("web", "a", "a", "--from and --to are both \"a\""),
        ] {
            let error = plan(&file, &request(service, from, to)).unwrap_err();
            assert_eq!(error.class(), ExitClass::Config);
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn load_lists_every_mirror_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsd.toml");
        std::fs::write(&path, "[mirror]\nidentity = \"rel\"\nconcurrency = 0\n").unwrap();
        let error = load(&path).unwrap_err();
        assert_eq!(error.class(), ExitClass::Config);
        let text = error.to_string();
        assert!(
            text.contains("2 problem(s)")
                && text.contains("mirror.identity")
                && text.contains("mirror.concurrency"),
            "{text}"
        );

        std::fs::write(&path, "[mirror]\nbogus = 1\n").unwrap();
        let text = load(&path).unwrap_err().to_string();
        assert!(
            text.contains("unknown field `bogus`") && !text.contains('\n'),
            "{text}"
        );

        let text = load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("missing.toml"), "{text}");
    }

    #[test]
    fn readme_example_is_a_valid_file() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let file: ConfigFile = toml::from_str(&readme[start..end]).unwrap();
        file.mirror.validate().unwrap();
        let plan = plan(&file, &request("web", "a", "b")).unwrap();
        assert!(!plan.paths.is_empty());
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
}
