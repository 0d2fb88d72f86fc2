//! What a session needs to know before it connects: the user, port, identity and
//! known_hosts file, and the timeouts; built by the configuration from the `[mirror]`
//! section.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
