//! Reaching a host, up to a trusted but not yet authenticated session: TCP connect within
//! `connect_timeout` (every resolved address in turn), the SSH handshake, and the host key
//! presented checked by [`super::host_key`]. [`Session::connect`](super::Session::connect)
//! goes on from here to log in; [`verify_host_key`] stops here.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use ssh2::ErrorCode;
use tracing::debug;

use super::error::SshError;
use super::fingerprint::HostKey;
use super::host_key::KnownHosts;
use super::settings::SshSettings;

/// Milliseconds for libssh2's blocking timeout (0 would mean "forever", so at least 1).
pub(super) fn timeout_ms(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// TCP connect to the first address of `host` that answers within `timeout`.
fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, SshError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| SshError::Resolve {
            host: host.to_owned(),
            error,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => {
                debug!(%host, %addr, %error, "TCP connect failed");
                last = if error.kind() == io::ErrorKind::TimedOut {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("timed out after {}", humantime::format_duration(timeout)),
                    )
                } else {
                    error
                };
            }
        }
    }
    Err(SshError::Connect {
        host: host.to_owned(),
        port,
        error: last,
    })
}

/// A connected, host-key-verified libssh2 session before authentication.
pub(super) struct Handshaken {
    pub(super) session: ssh2::Session,
    /// A clone of the session's socket, for polling and liveness probes.
    pub(super) socket: TcpStream,
    pub(super) host_key: HostKey,
}

/// TCP connect, handshake and host key verification against `settings.known_hosts`.
pub(super) fn handshake(host: &str, settings: &SshSettings) -> Result<Handshaken, SshError> {
    let port = settings.port;
    let handshake_error = |error| SshError::Handshake {
        host: host.to_owned(),
        error,
    };
    if host.contains('\0') {
        return Err(SshError::Resolve {
            host: host.escape_debug().to_string(),
            error: io::Error::new(io::ErrorKind::InvalidInput, "host name contains a NUL byte"),
        });
    }
    let socket = tcp_connect(host, port, settings.connect_timeout)?;
    // Best effort: small SSH packets should not wait for Nagle.
    let _ = socket.set_nodelay(true);
    let ours = socket.try_clone().map_err(|error| SshError::Connect {
        host: host.to_owned(),
        port,
        error,
    })?;

    let mut session = ssh2::Session::new().map_err(handshake_error)?;
    session.set_timeout(timeout_ms(settings.connect_timeout));
    session.set_tcp_stream(socket);

    let known = KnownHosts::read(&session, host, &settings.known_hosts)?;
    known.prefer_listed_algorithms(&session, host, port);

    session.handshake().map_err(handshake_error)?;
    let (blob, _) = session.host_key().ok_or_else(|| {
        handshake_error(ssh2::Error::new(
            ErrorCode::Session(-1),
            "server presented no host key",
        ))
    })?;
    let host_key = known.check(host, port, blob)?;
    Ok(Handshaken {
        session,
        socket: ours,
        host_key,
    })
}

/// Connects to `host` and verifies its host key, without logging in.
///
/// The terminal server uses this on the destination of a pass, so that a member whose key
/// is unknown or changed is refused (with its fingerprint) before anything is sent to it.
pub fn verify_host_key(host: &str, settings: &SshSettings) -> Result<HostKey, SshError> {
    let done = handshake(host, settings)?;
    let _ = done.session.disconnect(None, "host key checked", None);
    Ok(done.host_key)
}
