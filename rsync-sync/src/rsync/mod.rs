//! One mirror pass: `rsync` run on the source member, pushing to the destination over ssh.
//!
//! The terminal server holds an SSH [`Session`] to the source (the primary) and runs there
//!
//! ```text
//! rsync -a --stats --info=progress2 --no-human-readable --no-msgs2stderr --delete
//!       [--dry-run] [--bwlimit=N] [--timeout=N] [--backup --backup-dir=DIR] [extra options]
//!       -e '<remote shell>' SRC/ USER@DEST:DSTDIR/
//! ```
//!
//! `--no-msgs2stderr` (rsync's "client" message mode) makes the destination's rsync send its
//! errors through the rsync protocol, ahead of its exit status, instead of writing them to
//! its own stderr: that stderr reaches us through the source's ssh, which rsync may stop
//! before it has passed them on, so a full disk could otherwise end as a bare exit 11 with
//! no message (seen in about 1 run in 6 with rsync 3.5.0). rsync 3.1 or newer is needed on
//! both members (`--info=progress2` needs it anyway).
//!
//! so data flows directly from source to destination; only progress and the report cross
//! the terminal server's session. Push from the source is the only mode. Every argument is
//! quoted for the source's shell by [`Session::exec_lines`]. The `-e` value is split into
//! words by rsync itself (not by a shell), so the values in it are checked to contain no
//! whitespace, quotes or backslashes ([`RemoteShell::render`]). The destination path is
//! passed to the destination's shell by rsync, which protects it by default since rsync
//! 3.2.4; with an older rsync on the source, keep destination paths free of shell characters.
//!
//! Progress lines become [`Progress`] events, the `--stats` report becomes [`Stats`], and a
//! failure becomes a [`PassError`] whose [`kind`](PassError::kind) says what went wrong.

mod exit;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod progress;
mod stats;

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tracing::debug;

use crate::ssh::{ExitStatus, Session, SshError, SshErrorKind};

pub use exit::{FailureKind, classify, exit_code_meaning, fingerprint_in, telling_line};
pub use progress::Progress;
pub use stats::{Stats, StatsError};

/// Lines of stderr kept in a failure report.
const STDERR_TAIL_LINES: usize = 8;

/// How the source's rsync reaches the destination: the `ssh` command given to `rsync -e`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteShell {
    /// Private key, as a path on the source member.
    pub identity: PathBuf,
    /// known_hosts file holding the destinations' keys, as a path on the source member.
    pub known_hosts: PathBuf,
    /// sshd port on the destination.
    pub port: u16,
    /// ssh `ConnectTimeout` (rounded up to whole seconds).
    pub connect_timeout: Duration,
    /// ssh `ServerAliveInterval` (whole seconds, with `ServerAliveCountMax=3`), so a
    /// destination that vanishes mid-pass is noticed; `None` leaves it off.
    pub server_alive: Option<Duration>,
    /// Further ssh arguments, one word each (e.g. `["-o", "Compression=no"]`).
    pub extra: Vec<String>,
}

/// Why a pass was refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// A value that goes into the `-e` string (which rsync splits on whitespace) or into
    /// the `user@host:` argument contains a character that would break it.
    #[error("{what} {value:?} must not contain whitespace, quotes or backslashes")]
    UnsafeWord {
        /// Which setting.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A path that must be absolute is not.
    #[error("{what} {} must be an absolute path", path.display())]
    NotAbsolute {
        /// Which path.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A path is not valid UTF-8 or contains a NUL byte, so it cannot be put on a command line.
    #[error("{what} {} cannot be put on a command line (not UTF-8 or contains NUL)", path.display())]
    BadPath {
        /// Which path.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The destination host or user is not usable in `user@host:path`.
    #[error("{what} {value:?} is not usable in rsync's user@host:path ({reason})")]
    BadRemote {
        /// `destination host` or `destination user`.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An extra rsync argument is not an option, or clashes with what the pass sets itself.
    #[error(
        "extra rsync argument {0:?} is not allowed (only options that do not change -e, --info, --stats or number formatting)"
    )]
    BadOption(String),
}

/// True for characters that rsync's `-e` splitting or ssh option parsing would mangle.
fn is_unsafe_in_word(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '\\')
}

fn check_word(what: &'static str, value: &str) -> Result<(), SpecError> {
    if value.is_empty() || value.chars().any(is_unsafe_in_word) {
        return Err(SpecError::UnsafeWord {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn path_str<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, SpecError> {
    let text = path.to_str().filter(|t| !t.contains('\0'));
    let text = text.ok_or_else(|| SpecError::BadPath {
        what,
        path: path.to_owned(),
    })?;
    if !path.is_absolute() {
        return Err(SpecError::NotAbsolute {
            what,
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// Whole seconds, rounded up, at least 1.
fn whole_secs(duration: Duration) -> u64 {
    (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1)
}

impl RemoteShell {
    /// The `-e` value: `ssh -p PORT -i ID -o BatchMode=yes -o StrictHostKeyChecking=yes
    /// -o UserKnownHostsFile=KH -o IdentitiesOnly=yes -o ConnectTimeout=N
    /// [-o ServerAliveInterval=N -o ServerAliveCountMax=3] [extra]`.
    pub fn render(&self) -> Result<String, SpecError> {
        let identity = path_str("peer identity", &self.identity)?;
        check_word("peer identity", identity)?;
        let known_hosts = path_str("peer known_hosts", &self.known_hosts)?;
        check_word("peer known_hosts", known_hosts)?;
        for word in &self.extra {
            check_word("peer ssh option", word)?;
        }
        let mut words = vec![
            "ssh".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
            "-i".to_owned(),
            identity.to_owned(),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-o".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "-o".to_owned(),
            format!("UserKnownHostsFile={known_hosts}"),
            "-o".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
            "-o".to_owned(),
            format!("ConnectTimeout={}", whole_secs(self.connect_timeout)),
        ];
        if let Some(interval) = self.server_alive {
            words.push("-o".to_owned());
            words.push(format!("ServerAliveInterval={}", whole_secs(interval)));
            words.push("-o".to_owned());
            words.push("ServerAliveCountMax=3".to_owned());
        }
        words.extend(self.extra.iter().cloned());
        Ok(words.join(" "))
    }
}

/// Checks an extra rsync argument: it must be an option, and must not replace the remote
/// shell or change the output this crate parses.
pub fn check_rsync_option(option: &str) -> Result<(), SpecError> {
    let bad = || SpecError::BadOption(option.to_owned());
    if option.contains('\0') || !option.starts_with('-') || option == "-" || option == "--" {
        return Err(bad());
    }
    if let Some(long) = option.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        const CLASHING: &[&str] = &[
            "rsh",
            "info",
            "stats",
            "human-readable",
            "no-human-readable",
            "stderr",
            "server",
            "sender",
            "daemon",
            "out-format",
            "log-format",
            "progress",
            "quiet",
            "msgs2stderr",
            "no-msgs2stderr",
            "outbuf",
            "8-bit-output",
            "remove-source-files",
        ];
        if CLASHING.contains(&name) {
            return Err(bad());
        }
    } else if option[1..].contains(['e', 'h', 'P', 'q', '8']) {
        // Short options: -e (remote shell), -h, -P (progress), -q (quiet), -8 change
        // the remote shell or the output format. Other clusters such as -vz are fine.
        return Err(bad());
    }
    Ok(())
}

/// One pass from a directory on the source member to a directory on the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassSpec {
    /// Directory on the source member whose contents are mirrored.
    pub src_dir: PathBuf,
    /// Destination member as the source reaches it (address or name).
    pub dest_host: String,
    /// User the source logs into the destination as.
    pub dest_user: String,
    /// Directory on the destination that receives the contents.
    pub dest_dir: PathBuf,
    /// Delete destination files that are not in the source (`--delete`).
    pub delete: bool,
    /// Keep what would be overwritten or deleted in this directory on the destination
    /// (`--backup --backup-dir`; relative paths are relative to `dest_dir`).
    pub backup_dir: Option<PathBuf>,
    /// Bandwidth limit in KiB/s (`--bwlimit`); `None` or 0 is unlimited.
    pub bwlimit_kib: Option<u64>,
    /// Report what would change without changing anything (`--dry-run`).
    pub dry_run: bool,
    /// rsync's own I/O timeout (`--timeout`, whole seconds): a stalled transfer fails.
    pub io_timeout: Option<Duration>,
    /// Extra rsync options, checked by [`check_rsync_option`].
    pub extra_args: Vec<String>,
    /// How the source reaches the destination.
    pub remote_shell: RemoteShell,
}

/// `/srv/data` as `/srv/data/`: rsync then copies the directory's contents.
fn with_slash(path: &str) -> String {
    if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

/// Puts an optional per-node `root` in front of an absolute `path`: `/srv/demo/b` and
/// `/srv/data` give `/srv/demo/b/srv/data`. Used where several "members" share one
/// filesystem (a single-machine demo); without a root the path is unchanged.
pub fn rooted(root: Option<&Path>, path: &Path) -> PathBuf {
    match root {
        Some(root) => {
            let relative: PathBuf = path
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            root.join(relative)
        }
        None => path.to_owned(),
    }
}

impl PassSpec {
    /// The source directory argument (`SRC/`).
    pub fn source_arg(&self) -> Result<String, SpecError> {
        Ok(with_slash(path_str("source directory", &self.src_dir)?))
    }

    /// The destination argument (`USER@HOST:DSTDIR/`, IPv6 addresses in brackets).
    pub fn destination_arg(&self) -> Result<String, SpecError> {
        let user = &self.dest_user;
        let user_error = |reason| SpecError::BadRemote {
            what: "destination user",
            value: user.clone(),
            reason,
        };
        if user.is_empty() {
            return Err(user_error("empty"));
        }
        if user.starts_with('-') {
            return Err(user_error("starts with '-'"));
        }
        if user
            .chars()
            .any(|c| is_unsafe_in_word(c) || matches!(c, '@' | ':' | '/'))
        {
            return Err(user_error("contains whitespace, a quote, '@', ':' or '/'"));
        }
        let host = &self.dest_host;
        let host_error = |reason| SpecError::BadRemote {
            what: "destination host",
            value: host.clone(),
            reason,
        };
        if host.is_empty() {
            return Err(host_error("empty"));
        }
        if host.starts_with('-') {
            return Err(host_error("starts with '-'"));
        }
        if host
            .chars()
            .any(|c| is_unsafe_in_word(c) || matches!(c, '@' | '/' | '[' | ']'))
        {
            return Err(host_error(
                "contains whitespace, a quote, '@', '/' or brackets",
            ));
        }
        let host = if host.contains(':') {
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(host_error("contains ':' but is not an IPv6 address"));
            }
            format!("[{host}]")
        } else {
            host.clone()
        };
        let dir = path_str("destination directory", &self.dest_dir)?;
        Ok(format!("{user}@{host}:{}", with_slash(dir)))
    }

    /// The full argument vector run on the source member, program name first.
    pub fn argv(&self) -> Result<Vec<String>, SpecError> {
        let mut argv: Vec<String> = [
            "rsync",
            "-a",
            "--stats",
            "--info=progress2",
            "--no-human-readable",
            "--no-msgs2stderr",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if self.delete {
            argv.push("--delete".to_owned());
        }
        if self.dry_run {
            argv.push("--dry-run".to_owned());
        }
        if let Some(kib) = self.bwlimit_kib.filter(|kib| *kib > 0) {
            argv.push(format!("--bwlimit={kib}"));
        }
        if let Some(timeout) = self.io_timeout {
            argv.push(format!("--timeout={}", whole_secs(timeout)));
        }
        if let Some(dir) = &self.backup_dir {
            let text = dir.to_str().filter(|t| !t.is_empty() && !t.contains('\0'));
            let text = text.ok_or_else(|| SpecError::BadPath {
                what: "backup directory",
                path: dir.clone(),
            })?;
            argv.push("--backup".to_owned());
            argv.push(format!("--backup-dir={text}"));
        }
        for option in &self.extra_args {
            check_rsync_option(option)?;
            argv.push(option.clone());
        }
        argv.push("-e".to_owned());
        argv.push(self.remote_shell.render()?);
        argv.push(self.source_arg()?);
        argv.push(self.destination_arg()?);
        Ok(argv)
    }

    /// `HOST:DSTDIR` for messages.
    fn destination_label(&self) -> String {
        format!("{}:{}", self.dest_host, self.dest_dir.display())
    }
}

/// A pass that ran and failed: what rsync said and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncFailure {
    /// The class of failure.
    pub kind: FailureKind,
    /// How rsync ended.
    pub status: ExitStatus,
    /// The exit code in words.
    pub meaning: &'static str,
    /// `HOST:DIR` of the source.
    pub source: String,
    /// `HOST:DIR` of the destination.
    pub destination: String,
    /// The last lines of rsync's (and ssh's) stderr.
    pub stderr_tail: Vec<String>,
    /// The host key fingerprint ssh printed, for host key failures.
    pub fingerprint: Option<String>,
    /// The stderr line that best explains the failure (see [`telling_line`]).
    pub detail: Option<String>,
}

impl fmt::Display for RsyncFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rsync from {} to {} failed ({}): {}",
            self.source, self.destination, self.status, self.meaning
        )?;
        if self.kind == FailureKind::HostKey {
            match &self.fingerprint {
                Some(fp) => write!(
                    f,
                    "; the source's ssh refused the destination's host key {fp} (unknown or changed in its known_hosts)"
                )?,
                None => write!(
                    f,
                    "; the source's ssh refused the destination's host key (unknown or changed in its known_hosts)"
                )?,
            }
        }
        if let Some(detail) = &self.detail {
            write!(f, "; stderr: {detail}")?;
        }
        Ok(())
    }
}

/// Why a pass did not complete.
#[derive(Debug, Error)]
pub enum PassError {
    /// The pass was refused before running.
    #[error("pass from {source_host} to {destination} refused: {error}")]
    Spec {
        /// The source member.
        source_host: String,
        /// `HOST:DIR` of the destination.
        destination: String,
        /// What is wrong.
        error: SpecError,
    },
    /// The command could not be run on the source, or the session to it failed.
    #[error("pass from {source_host} to {destination}: {error}")]
    Ssh {
        /// The source member.
        source_host: String,
        /// `HOST:DIR` of the destination.
        destination: String,
        /// The SSH failure.
        error: Box<SshError>,
    },
    /// rsync ran and failed.
    #[error("{0}")]
    Rsync(Box<RsyncFailure>),
    /// rsync succeeded but its report could not be read.
    #[error(
        "pass from {source_host} to {destination} succeeded but its report is unreadable: {error}"
    )]
    Report {
        /// The source member.
        source_host: String,
        /// `HOST:DIR` of the destination.
        destination: String,
        /// What is wrong with the report.
        error: StatsError,
    },
}

impl PassError {
    /// The class of failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            PassError::Spec { .. } => FailureKind::Invalid,
            PassError::Ssh { error, .. } => match error.kind() {
                SshErrorKind::HostKey => FailureKind::HostKey,
                SshErrorKind::Auth => FailureKind::Auth,
                SshErrorKind::Connection => FailureKind::Connection,
                SshErrorKind::Setup => FailureKind::Invalid,
            },
            PassError::Rsync(failure) => failure.kind,
            PassError::Report { .. } => FailureKind::Protocol,
        }
    }

    /// rsync's exit code, when rsync ran and exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            PassError::Rsync(failure) => failure.status.code(),
            _ => None,
        }
    }

    /// The last lines of stderr, when rsync ran.
    pub fn stderr_tail(&self) -> &[String] {
        match self {
            PassError::Rsync(failure) => &failure.stderr_tail,
            _ => &[],
        }
    }
}

/// The last `n` non-empty lines of `text`.
fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// Runs one pass on the source member over `session`, calling `on_progress` for every
/// progress update, and returns rsync's statistics.
///
/// Blocks until rsync ends (bounded by the session's I/O timeout while nothing arrives,
/// and by rsync's own `--timeout` when [`PassSpec::io_timeout`] is set).
pub fn run_pass(
    session: &Session,
    spec: &PassSpec,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Stats, PassError> {
    let source_host = session.host().to_owned();
    let destination = spec.destination_label();
    let argv = spec.argv().map_err(|error| PassError::Spec {
        source_host: source_host.clone(),
        destination: destination.clone(),
        error,
    })?;
    let mut report = Vec::new();
    let finished = session
        .exec_lines(&argv, |line| match Progress::parse(line) {
            Some(progress) => on_progress(&progress),
            None => report.push(line.to_owned()),
        })
        .map_err(|error| PassError::Ssh {
            source_host: source_host.clone(),
            destination: destination.clone(),
            error: Box::new(error),
        })?;
    if !finished.status.success() {
        let kind = classify(&finished.status, &finished.stderr);
        let meaning = match &finished.status {
            ExitStatus::Code(code) => exit_code_meaning(*code),
            ExitStatus::Signal(_) => "rsync was killed by a signal",
        };
        debug!(source = %source_host, %destination, status = %finished.status, %kind, "pass failed");
        return Err(PassError::Rsync(Box::new(RsyncFailure {
            kind,
            status: finished.status,
            meaning,
            source: format!("{source_host}:{}", spec.src_dir.display()),
            destination,
            stderr_tail: tail_lines(&finished.stderr, STDERR_TAIL_LINES),
            fingerprint: fingerprint_in(&finished.stderr).map(str::to_owned),
            detail: telling_line(kind, &finished.stderr).map(str::to_owned),
        })));
    }
    Stats::parse(report.iter().map(String::as_str)).map_err(|error| PassError::Report {
        source_host,
        destination,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> RemoteShell {
        RemoteShell {
            identity: "/etc/dnsd/id_ed25519".into(),
            known_hosts: "/etc/dnsd/known_hosts".into(),
            port: 22,
            connect_timeout: Duration::from_millis(4500),
            server_alive: Some(Duration::from_secs(15)),
            extra: vec![],
        }
    }

    fn spec() -> PassSpec {
        PassSpec {
            src_dir: "/srv/data".into(),
            dest_host: "10.0.0.2".into(),
            dest_user: "root".into(),
            dest_dir: "/srv/data".into(),
            delete: true,
            backup_dir: None,
            bwlimit_kib: None,
            dry_run: false,
            io_timeout: Some(Duration::from_secs(60)),
            extra_args: vec![],
            remote_shell: shell(),
        }
    }

    #[test]
    fn default_pass_argv() {
        assert_eq!(
            spec().argv().unwrap(),
            [
                "rsync",
                "-a",
                "--stats",
                "--info=progress2",
                "--no-human-readable",
                "--no-msgs2stderr",
                "--delete",
                "--timeout=60",
                "-e",
                "ssh -p 22 -i /etc/dnsd/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=yes \
                 -o UserKnownHostsFile=/etc/dnsd/known_hosts -o IdentitiesOnly=yes -o ConnectTimeout=5 \
                 -o ServerAliveInterval=15 -o ServerAliveCountMax=3",
                "/srv/data/",
                "root@10.0.0.2:/srv/data/",
            ]
        );
    }

    #[test]
    fn optional_flags_appear_in_order() {
        let mut spec = spec();
        spec.dry_run = true;
        spec.bwlimit_kib = Some(2048);
        spec.backup_dir = Some("/srv/.backup/epoch-7".into());
        spec.extra_args = vec!["--numeric-ids".into(), "-z".into()];
        spec.remote_shell.extra = vec!["-o".into(), "Compression=no".into()];
        spec.dest_host = "fd00::2".into();
        spec.src_dir = "/".into();
        let argv = spec.argv().unwrap();
        let flags: Vec<&str> = argv[6..argv.len() - 4].iter().map(String::as_str).collect();
        assert_eq!(
            flags,
            [
                "--delete",
                "--dry-run",
                "--bwlimit=2048",
                "--timeout=60",
                "--backup",
                "--backup-dir=/srv/.backup/epoch-7",
                "--numeric-ids",
                "-z"
            ]
        );
        assert!(argv[argv.len() - 3].ends_with(" -o Compression=no"));
        assert_eq!(argv[argv.len() - 2], "/");
        assert_eq!(argv[argv.len() - 1], "root@[fd00::2]:/srv/data/");
    }

    #[test]
    fn zero_bwlimit_means_unlimited() {
        let mut spec = spec();
        spec.bwlimit_kib = Some(0);
        assert!(
            !spec
                .argv()
                .unwrap()
                .iter()
                .any(|a| a.starts_with("--bwlimit"))
        );
    }

    #[test]
    fn quoted_command_line_keeps_each_argument_whole() {
        let mut spec = spec();
        spec.src_dir = "/srv/my data; rm -rf /".into();
        let line = crate::quote::command_line(&spec.argv().unwrap()).unwrap();
        assert!(line.contains("'/srv/my data; rm -rf /'"), "{line}");
        assert!(
            line.contains(" -e 'ssh -p 22 -i /etc/dnsd/id_ed25519 "),
            "{line}"
        );
    }

    #[test]
    fn unsafe_remote_shell_values_are_refused() {
        for (identity, known_hosts, extra) in [
            ("/etc/my key", "/kh", ""),
            ("/id", "/etc/k\"h", ""),
            ("/id", "/kh", "-oProxyCommand=x y"),
            ("/id", "/kh", "a'b"),
            ("/id", "/kh", "back\\slash"),
        ] {
            let mut shell = shell();
            shell.identity = identity.into();
            shell.known_hosts = known_hosts.into();
            if !extra.is_empty() {
                shell.extra = vec![extra.into()];
            }
            let error = shell.render().unwrap_err();
            assert!(matches!(error, SpecError::UnsafeWord { .. }), "{error}");
        }
        let mut relative = shell();
        relative.identity = "id_ed25519".into();
        assert!(matches!(
            relative.render(),
            Err(SpecError::NotAbsolute { .. })
        ));
    }

    #[test]
    fn bad_destinations_are_refused() {
        for (user, host) in [
            ("", "h"),
            ("-oX", "h"),
            ("a b", "h"),
            ("u@v", "h"),
            ("root", ""),
            ("root", "-h"),
            ("root", "h:x"),
            ("root", "a b"),
            ("root", "u@h"),
            ("root", "[::1]"),
        ] {
            let mut spec = spec();
            spec.dest_user = user.into();
            spec.dest_host = host.into();
            let error = spec.argv().unwrap_err();
            assert!(
                matches!(error, SpecError::BadRemote { .. }),
                "{user}@{host}: {error}"
            );
        }
        let mut spec = spec();
        spec.dest_dir = "srv/data".into();
        assert!(matches!(
            spec.argv(),
            Err(SpecError::NotAbsolute {
                what: "destination directory",
                ..
            })
        ));
    }

    #[test]
    fn clashing_rsync_options_are_refused() {
        for ok in [
            "--numeric-ids",
            "-z",
            "-vz",
            "--exclude=*.tmp",
            "--checksum",
            "--mkpath",
        ] {
            assert_eq!(check_rsync_option(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/etc",
            "--rsh=sh",
            "-e",
            "-ave",
            "-h",
            "--human-readable",
            "--info=name",
            "--progress",
            "--stderr=all",
            "-P",
            "--",
            "-",
            "--stats",
            "-q",
            "--remove-source-files",
        ] {
            assert!(check_rsync_option(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roots_prefix_absolute_paths() {
        assert_eq!(
            rooted(None, Path::new("/srv/data")),
            PathBuf::from("/srv/data")
        );
        assert_eq!(
            rooted(Some(Path::new("/demo/b")), Path::new("/srv/data")),
            PathBuf::from("/demo/b/srv/data")
        );
        assert_eq!(
            rooted(Some(Path::new("/demo/b")), Path::new("/")),
            PathBuf::from("/demo/b")
        );
    }

    #[test]
    fn failure_message_names_both_ends_and_the_fingerprint() {
        let stderr = include_str!("../../fixtures/hostkey_changed.stderr");
        let failure = RsyncFailure {
            kind: classify(&ExitStatus::Code(255), stderr),
            status: ExitStatus::Code(255),
            meaning: exit_code_meaning(255),
            source: "10.0.0.1:/srv/data".into(),
            destination: "10.0.0.2:/srv/data".into(),
            stderr_tail: tail_lines(stderr, STDERR_TAIL_LINES),
            fingerprint: fingerprint_in(stderr).map(str::to_owned),
            detail: telling_line(FailureKind::HostKey, stderr).map(str::to_owned),
        };
        let text = failure.to_string();
        assert!(
            text.contains("10.0.0.1:/srv/data") && text.contains("10.0.0.2:/srv/data"),
            "{text}"
        );
        assert!(text.contains("exit code 255"), "{text}");
        assert!(text.contains("stderr: Host key for [127.0.0.1]:22022 has changed and you have requested strict checking."), "{text}");
        let keygen = include_str!("../../fixtures/host_key.fingerprint");
        let fingerprint = keygen.split_whitespace().nth(1).unwrap();
        assert!(
            text.contains(&format!("host key {fingerprint} (")),
            "{text}"
        );
        assert_eq!(failure.stderr_tail.len(), STDERR_TAIL_LINES);
        assert_eq!(
            failure.stderr_tail.last().unwrap(),
            "rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]"
        );
    }
}
