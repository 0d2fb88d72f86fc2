//! What can go wrong with SSH: [`SshError`], one variant per failure with what failed
//! (host, port, file, action), and [`SshErrorKind`], the coarse class callers react to
//! (check the host key, fix authentication, retry the connection, fix local setup).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::fingerprint::HostKey;
use crate::quote::QuoteError;

/// Coarse class of an [`SshError`], for callers that react by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SshErrorKind {
    /// The host key is unknown or changed: an operator must check it.
    HostKey,
    /// The server refused our key, or no key was available.
    Auth,
    /// The host could not be reached, or the connection failed or timed out.
    Connection,
    /// Local setup is wrong: unreadable known_hosts or key file, bad argument.
    Setup,
}

/// Why a session could not be opened or a command could not be run.
#[derive(Debug, Error)]
pub enum SshError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {error}")]
    Resolve {
        /// Host as given.
        host: String,
        /// What the resolver said.
        error: io::Error,
    },
    /// No TCP connection (refused, unreachable, timed out).
    #[error("cannot connect to {host} port {port}: {error}")]
    Connect {
        /// Host as given.
        host: String,
        /// TCP port tried.
        port: u16,
        /// The last connect error.
        error: io::Error,
    },
    /// The SSH handshake failed.
    #[error("SSH handshake with {host} failed: {error}")]
    Handshake {
        /// Host as given.
        host: String,
        /// What libssh2 reported.
        error: ssh2::Error,
    },
    /// The known_hosts file could not be read or parsed.
    #[error("cannot read known_hosts file {}: {error}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What libssh2 reported.
        error: ssh2::Error,
    },
    /// The host is not in known_hosts: refused until an operator adds its key.
    #[error(
        "host key of {host} (port {port}) is unknown: it presented {key}, which is not in {}; \
         check this fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and \
         add it to {} after checking it",
        known_hosts.display(), known_hosts.display()
    )]
    HostKeyUnknown {
        /// Host as given.
        host: String,
        /// TCP port.
        port: u16,
        /// The key it presented.
        key: HostKey,
        /// The file it was looked up in.
        known_hosts: PathBuf,
    },
    /// The host presented a different key than known_hosts holds: refused.
    #[error(
        "host key of {host} (port {port}) has CHANGED: it presented {key}, which does not match \
         its entry in {}; refusing to connect (possible man-in-the-middle); if the host was \
         reinstalled, check the new fingerprint and replace its entry in {}",
        known_hosts.display(), known_hosts.display()
    )]
    HostKeyChanged {
        /// Host as given.
        host: String,
        /// TCP port.
        port: u16,
        /// The key it presented.
        key: HostKey,
        /// The file holding the old key.
        known_hosts: PathBuf,
    },
    /// libssh2 could not perform the known-hosts check at all.
    #[error("cannot check the host key of {host} against {}", known_hosts.display())]
    HostKeyCheck {
        /// Host as given.
        host: String,
        /// The file.
        known_hosts: PathBuf,
    },
    /// The private key file is missing or unreadable.
    #[error("cannot read identity file {}: {error}", path.display())]
    Identity {
        /// The key file.
        path: PathBuf,
        /// The read error.
        error: io::Error,
    },
    /// The server did not accept any of our keys.
    #[error("authentication as {user}@{host} with {identity} failed: {message}")]
    Auth {
        /// Host as given.
        host: String,
        /// User we tried to log in as.
        user: String,
        /// What we authenticated with.
        identity: String,
        /// What went wrong.
        message: String,
    },
    /// Nothing arrived from the server for the I/O timeout.
    #[error("{host} did not answer for {} while trying to {action}", humantime::format_duration(*after))]
    Timeout {
        /// Host as given.
        host: String,
        /// What we were doing.
        action: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// A libssh2 call failed on an established session.
    #[error("SSH session to {host} failed to {action}: {error}")]
    Session {
        /// Host as given.
        host: String,
        /// What we were doing.
        action: &'static str,
        /// What libssh2 reported.
        error: ssh2::Error,
    },
    /// Reading the socket failed on an established session.
    #[error("connection to {host} failed while trying to {action}: {error}")]
    Io {
        /// Host as given.
        host: String,
        /// What we were doing.
        action: &'static str,
        /// The I/O error.
        error: io::Error,
    },
    /// The command cannot be turned into a command line.
    #[error("cannot run a command on {host}: {error}")]
    Command {
        /// Host as given.
        host: String,
        /// Why the arguments were refused.
        error: QuoteError,
    },
}

/// What [`Session`] is doing when it opens a channel and when it starts the command
/// on it; before the second succeeds, the remote command has not run.
pub(super) const OPEN_CHANNEL: &str = "open a channel";
pub(super) const START_COMMAND: &str = "start the command";

impl SshError {
    /// True when the session failed before the remote command was started (opening the
    /// channel or requesting the command): running it again cannot run it twice.
    pub fn before_command(&self) -> bool {
        match self {
            SshError::Session { action, .. }
            | SshError::Io { action, .. }
            | SshError::Timeout { action, .. } => {
                *action == OPEN_CHANNEL || *action == START_COMMAND
            }
            _ => false,
        }
    }

    /// The coarse class of this error.
    pub fn kind(&self) -> SshErrorKind {
        match self {
            SshError::HostKeyUnknown { .. } | SshError::HostKeyChanged { .. } => {
                SshErrorKind::HostKey
            }
            SshError::Auth { .. } => SshErrorKind::Auth,
            SshError::Resolve { .. }
            | SshError::Connect { .. }
            | SshError::Handshake { .. }
            | SshError::Timeout { .. }
            | SshError::Session { .. }
            | SshError::Io { .. } => SshErrorKind::Connection,
            SshError::KnownHosts { .. }
            | SshError::HostKeyCheck { .. }
            | SshError::Identity { .. }
            | SshError::Command { .. } => SshErrorKind::Setup,
        }
    }

    /// The presented host key, for host key errors.
    pub fn host_key(&self) -> Option<&HostKey> {
        match self {
            SshError::HostKeyUnknown { key, .. } | SshError::HostKeyChanged { key, .. } => {
                Some(key)
            }
            _ => None,
        }
    }
}
