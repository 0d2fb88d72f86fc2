//! Why DNS could not start, or stopped: the errors the daemon reports and exits with.

use std::net::SocketAddr;

use super::tsig::TsigKeyError;

/// Why DNS could not start (before the ready line).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for DNS on {proto} {addr}: {error}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot open a socket to send NOTIFY from {addr}: {error}")]
    NotifySocket {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Tsig(#[from] TsigKeyError),
}

/// Why DNS stopped serving without being asked to. Any of these stops the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("DNS TCP listener {addr} failed: {error}")]
    TcpAccept {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("DNS UDP socket {addr} failed: {error}")]
    Udp {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("NOTIFY socket failed: {error}")]
    Notify { error: std::io::Error },
    #[error("DNS {task} ended without being asked to")]
    Ended { task: String },
    #[error("DNS {task} panicked")]
    Panicked { task: String },
}

/// Errors after which a socket cannot serve again (it was closed under us, or is not a
/// socket); any other error is one client's or a passing shortage, and serving goes on.
pub(super) fn is_fatal(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)
    )
}
