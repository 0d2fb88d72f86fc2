//! What a failed rsync run means: its exit code in words, and the class of failure
//! decided from the exit code and the messages ssh and rsync printed on stderr.

use std::fmt;

use serde::Serialize;

use crate::ssh::ExitStatus;

/// Class of a failed pass, for callers that react by class (retry, alert, refuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A host key was unknown or changed (ours for the source, or the source's ssh for
    /// the destination): an operator must check the fingerprint.
    HostKey,
    /// A key was refused (ours by the source, or the source's by the destination).
    Auth,
    /// A member could not be reached, or the connection broke.
    Connection,
    /// The destination ran out of disk space (or quota).
    NoSpace,
    /// Some files were not transferred (rsync exit 23).
    Partial,
    /// Some source files vanished during the pass (rsync exit 24); usually harmless.
    Vanished,
    /// The two rsyncs could not speak to each other (exit 2, 4, 5, 12).
    Protocol,
    /// rsync rejected its command line (exit 1).
    Syntax,
    /// rsync's own data or connect timeout fired (exit 30, 35).
    Timeout,
    /// The pass was refused before running: invalid settings or local setup.
    Invalid,
    /// Anything else, with rsync's exit code (-1 when killed by a signal).
    Other(i32),
}

impl FailureKind {
    /// A stable snake_case name, as used in JSON (`host_key`, ..., `other`).
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::HostKey => "host_key",
            FailureKind::Auth => "auth",
            FailureKind::Connection => "connection",
            FailureKind::NoSpace => "no_space",
            FailureKind::Partial => "partial",
            FailureKind::Vanished => "vanished",
            FailureKind::Protocol => "protocol",
            FailureKind::Syntax => "syntax",
            FailureKind::Timeout => "timeout",
            FailureKind::Invalid => "invalid",
            FailureKind::Other(_) => "other",
        }
    }

    /// The messages that reveal this kind on stderr (empty for kinds known by code only).
    fn messages(self) -> &'static [&'static str] {
        match self {
            FailureKind::HostKey => HOST_KEY,
            FailureKind::Auth => AUTH,
            FailureKind::NoSpace => NO_SPACE,
            FailureKind::Connection => CONNECTION,
            _ => &[],
        }
    }
}

/// Serialised as its [`name`](FailureKind::name); the code of `Other` travels separately.
impl Serialize for FailureKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FailureKind::HostKey => "host key",
            FailureKind::Auth => "authentication",
            FailureKind::Connection => "connection",
            FailureKind::NoSpace => "no space",
            FailureKind::Partial => "partial transfer",
            FailureKind::Vanished => "vanished files",
            FailureKind::Protocol => "protocol",
            FailureKind::Syntax => "syntax",
            FailureKind::Timeout => "timeout",
            FailureKind::Invalid => "invalid settings",
            FailureKind::Other(code) => return write!(f, "rsync error {code}"),
        };
        f.write_str(text)
    }
}

/// rsync's exit codes (see EXIT VALUES in rsync(1)), with 126/127/255 as they arrive
/// through the remote shell.
pub fn exit_code_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "rsync did not accept its command line",
        2 => "the two rsync versions cannot talk to each other",
        3 => "a source or destination file or directory could not be selected",
        4 => "an action was asked that this rsync or the other side does not support",
        5 => "the client and server rsync could not start their protocol",
        6 => "the daemon could not write to its log file",
        10 => "reading or writing the network connection failed",
        11 => "reading or writing a file failed",
        12 => "the data stream between the two rsyncs broke or was garbled",
        13 => "rsync could not write its own diagnostics",
        14 => "communication between rsync's own processes failed",
        15 => "one of rsync's processes crashed",
        16 => "one of rsync's processes was killed by a signal",
        19 => "rsync received SIGUSR1",
        20 => "rsync was interrupted (SIGINT, SIGTERM or SIGHUP)",
        21 => "waiting for one of rsync's processes failed",
        22 => "rsync ran out of memory for its buffers",
        23 => "some files or attributes were not transferred because of errors",
        24 => "some source files vanished before they could be transferred",
        25 => "the --max-delete limit stopped deletions",
        30 => "no data moved for longer than the I/O timeout",
        35 => "the connection to the rsync daemon timed out",
        126 => "the remote command could not be executed",
        127 => "rsync (or the remote shell) was not found",
        255 => "the remote shell (ssh) failed: connection, host key or login problem",
        _ => "an error rsync does not document",
    }
}

/// Messages by which ssh and rsync report a class of failure on stderr.
/// Most telling first: [`telling_line`] picks the line of the first message found.
const HOST_KEY: &[&str] = &[
    "has changed and you have requested strict checking",
    "host key is known for",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "Host key verification failed",
];
const AUTH: &[&str] = &[
    "Permission denied (publickey",
    "Too many authentication failures",
];
const NO_SPACE: &[&str] = &["No space left on device", "Disk quota exceeded"];
const CONNECTION: &[&str] = &[
    "Connection refused",
    "Connection timed out",
    "Operation timed out",
    "No route to host",
    "Network is unreachable",
    "Connection closed by",
    "Connection reset",
    "Could not resolve hostname",
    "Host is down",
    "Broken pipe",
    "timeout, server",
];

/// Decides the class of a failed run (`status` not success) from its exit status and stderr.
///
/// Messages win over codes, because ssh's failures all exit 255 and "no space" shows up as
/// 11 or 23: host key, then authentication, then no space, then (for the codes a broken
/// connection produces: 255, 12, 10, 5) connection messages; then the code alone.
pub fn classify(status: &ExitStatus, stderr: &str) -> FailureKind {
    let says = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
    let code = match status {
        ExitStatus::Code(code) => *code,
        ExitStatus::Signal(_) => return FailureKind::Other(-1),
    };
    if says(HOST_KEY) {
        return FailureKind::HostKey;
    }
    if says(AUTH) {
        return FailureKind::Auth;
    }
    if says(NO_SPACE) {
        return FailureKind::NoSpace;
    }
    if matches!(code, 255 | 12 | 10 | 5) && says(CONNECTION) {
        return FailureKind::Connection;
    }
    match code {
        1 => FailureKind::Syntax,
        2 | 4 | 5 | 12 => FailureKind::Protocol,
        10 | 255 => FailureKind::Connection,
        23 => FailureKind::Partial,
        24 => FailureKind::Vanished,
        30 | 35 => FailureKind::Timeout,
        other => FailureKind::Other(other),
    }
}

/// The stderr line that best explains a failure of `kind`: the first line carrying one of
/// the kind's messages, else the last line that is not rsync's generic `rsync error:` trailer.
pub fn telling_line(kind: FailureKind, stderr: &str) -> Option<&str> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    kind.messages()
        .iter()
        .find_map(|needle| lines().find(|line| line.contains(needle)))
        .or_else(|| {
            lines().rfind(|l| {
                !l.starts_with("rsync error:")
                    && !l.starts_with("rsync: connection unexpectedly closed")
            })
        })
        .or_else(|| lines().next_back())
}

/// The first OpenSSH fingerprint (`SHA256:...`) printed on stderr, if any.
pub fn fingerprint_in(stderr: &str) -> Option<&str> {
    let start = stderr.find("SHA256:")?;
    let rest = &stderr[start..];
    let end = rest[7..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/'))
        .map_or(rest.len(), |i| i + 7);
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: i32, stderr: &str) -> FailureKind {
        classify(&ExitStatus::Code(code), stderr)
    }

    #[test]
    fn real_ssh_failures_are_classified_by_message() {
        assert_eq!(
            class(255, include_str!("../../fixtures/hostkey_changed.stderr")),
            FailureKind::HostKey
        );
        assert_eq!(
            class(255, include_str!("../../fixtures/hostkey_unknown.stderr")),
            FailureKind::HostKey
        );
        assert_eq!(
            class(255, include_str!("../../fixtures/auth.stderr")),
            FailureKind::Auth
        );
        assert_eq!(
            class(255, include_str!("../../fixtures/refused.stderr")),
            FailureKind::Connection
        );
    }

    #[test]
    fn real_rsync_failures_are_classified() {
        assert_eq!(
            class(11, include_str!("../../fixtures/nospace.stderr")),
            FailureKind::NoSpace
        );
        assert_eq!(
            class(23, include_str!("../../fixtures/missing_source.stderr")),
            FailureKind::Partial
        );
        assert_eq!(
            class(1, include_str!("../../fixtures/syntax.stderr")),
            FailureKind::Syntax
        );
        assert_eq!(
            class(127, include_str!("../../fixtures/no_rsync_remote.stderr")),
            FailureKind::Other(127)
        );
    }

    #[test]
    fn codes_alone_decide_without_telling_messages() {
        assert_eq!(
            class(24, "file has vanished: \"/srv/data/tmp.1\""),
            FailureKind::Vanished
        );
        assert_eq!(
            class(23, "No space left on device (28)"),
            FailureKind::NoSpace
        );
        assert_eq!(
            class(12, "rsync: connection unexpectedly closed"),
            FailureKind::Protocol
        );
        assert_eq!(
            class(12, "Connection reset by peer"),
            FailureKind::Connection
        );
        assert_eq!(class(2, ""), FailureKind::Protocol);
        assert_eq!(class(30, ""), FailureKind::Timeout);
        assert_eq!(class(35, ""), FailureKind::Timeout);
        assert_eq!(class(255, ""), FailureKind::Connection);
        assert_eq!(class(23, "Connection refused"), FailureKind::Partial);
        assert_eq!(class(3, ""), FailureKind::Other(3));
        assert_eq!(
            classify(&ExitStatus::Signal("KILL".into()), ""),
            FailureKind::Other(-1)
        );
    }

    #[test]
    fn every_documented_code_has_its_own_meaning() {
        let unknown = exit_code_meaning(99);
        for code in [
            0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 24, 25, 30, 35,
            126, 127, 255,
        ] {
            assert_ne!(exit_code_meaning(code), unknown, "{code}");
        }
    }

    #[test]
    fn telling_lines_explain_the_failure() {
        let line = |code, fixture| telling_line(class(code, fixture), fixture);
        assert_eq!(
            line(255, include_str!("../../fixtures/auth.stderr")),
            Some("root@127.0.0.1: Permission denied (publickey).")
        );
        assert_eq!(
            line(255, include_str!("../../fixtures/hostkey_unknown.stderr")),
            Some(
                "No ED25519 host key is known for [127.0.0.1]:22022 and you have requested strict checking."
            )
        );
        assert_eq!(
            line(255, include_str!("../../fixtures/refused.stderr")),
            Some("ssh: connect to host 127.0.0.1 port 22023: Connection refused")
        );
        assert!(
            line(11, include_str!("../../fixtures/nospace.stderr"))
                .unwrap()
                .contains("No space left on device")
        );
        assert!(
            line(23, include_str!("../../fixtures/missing_source.stderr"))
                .unwrap()
                .contains("link_stat")
        );
        assert_eq!(
            telling_line(FailureKind::Protocol, "rsync error: x (code 12)"),
            Some("rsync error: x (code 12)")
        );
        assert_eq!(telling_line(FailureKind::Protocol, ""), None);
    }

    #[test]
    fn fingerprint_is_found_in_openssh_warning() {
        let stderr = include_str!("../../fixtures/hostkey_changed.stderr");
        // What `ssh-keygen -lf` printed for the key of the sshd that produced the warning.
        let keygen = include_str!("../../fixtures/host_key.fingerprint");
        assert_eq!(fingerprint_in(stderr), keygen.split_whitespace().nth(1));
        assert_eq!(fingerprint_in("no key here"), None);
    }
}
