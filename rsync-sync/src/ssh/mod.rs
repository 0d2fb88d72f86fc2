//! SSH sessions to pool members: verified host keys, key authentication, timeouts,
//! keepalive, and remote commands built only from quoted arguments.
//!
//! One job per module:
//! - [`error`]: [`SshError`] and its coarse class [`SshErrorKind`];
//! - [`host_key`]: known_hosts parsing and matching, fingerprints, and the refusal of
//!   unknown or changed keys;
//! - [`handshake`]: TCP connect and SSH handshake up to a verified host key, and
//!   [`verify_host_key`], for hosts we do not log into but must trust (the destination of
//!   a pass);
//! - [`session`]: [`Session`]: connect, authenticate, run commands, keepalive.
//!
//! This module holds the settings they share; everything public is re-exported here, so
//! callers name `ssh::Session`, `ssh::SshError`, `ssh::verify_host_key`.

mod error;
mod handshake;
mod host_key;
mod session;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use error::{SshError, SshErrorKind};
pub use handshake::verify_host_key;
pub use host_key::{HostKey, fingerprint};
pub use session::{ExitStatus, Finished, Output, Session};

/// How the terminal server authenticates to members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A private key file (OpenSSH or PEM format, without a passphrase).
    File(PathBuf),
    /// Every key offered by the ssh-agent at `SSH_AUTH_SOCK`, in turn.
    Agent,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::File(path) => write!(f, "key file {}", path.display()),
            Identity::Agent => f.write_str("ssh-agent"),
        }
    }
}

/// Everything needed to open a session to a member; built from the `[mirror]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// User to log in as.
    pub user: String,
    /// TCP port of the members' sshd.
    pub port: u16,
    /// Key used to authenticate.
    pub identity: Identity,
    /// OpenSSH known_hosts file that every member's host key must be found in.
    pub known_hosts: PathBuf,
    /// Bound on the TCP connect and on the handshake and authentication.
    pub connect_timeout: Duration,
    /// A call fails (and the session is marked broken) after this long without any data
    /// from the server.
    pub io_timeout: Duration,
    /// Interval of SSH keepalive requests; `None` sends none.
    pub keepalive: Option<Duration>,
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket
/// lives: bound, never listening, so no other socket can take the port meanwhile (a
/// listener dropped to free its port could be replaced by another test's).
#[cfg(test)]
pub(crate) fn refusing_port() -> (std::os::fd::OwnedFd, u16) {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: plain socket calls on a descriptor this function owns; the address structs
    // are fully initialised and their sizes are passed with them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let raw = fd.as_raw_fd();
        let sockaddr = (&raw mut addr).cast::<libc::sockaddr>();
        assert_eq!(
            libc::bind(raw, sockaddr, len),
            0,
            "bind: {}",
            io::Error::last_os_error()
        );
        assert_eq!(
            libc::getsockname(raw, sockaddr, &mut len),
            0,
            "getsockname: {}",
            io::Error::last_os_error()
        );
        (fd, u16::from_be(addr.sin_port))
    }
}
