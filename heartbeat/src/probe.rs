//! One RFC 862 echo probe over TCP or UDP: send a fresh random nonce, accept only the
//! same bytes back within a deadline, and measure the round-trip time.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::trace;

/// Length of the random nonce each probe sends. 16 bytes make a stale or forged echo
/// matching by chance practically impossible, and fit in any echo service's buffer.
pub const NONCE_LEN: usize = 16;

/// UDP datagrams that do not carry the current nonce (late echoes, garbage) are
/// discarded; after this many the probe gives up early instead of reading on until the
/// deadline, so a flood cannot keep a probe busy.
const MAX_STRAY_DATAGRAMS: usize = 64;

/// The UDP receive buffer: larger than the nonce so that an over-long answer is seen as
/// such (its reported length is capped at this size).
const UDP_BUF_LEN: usize = 4 * NONCE_LEN;

/// The transport an echo probe uses; members run the echo service on TCP, UDP or both
/// (port 7 from inetd, xinetd or systemd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A fresh connection per probe: also proves the service still accepts connections.
    Tcp,
    /// One datagram per probe from a fresh connected socket.
    Udp,
}

impl Protocol {
    /// The stable lower-case name accepted by [`FromStr`] and printed by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name that is neither `tcp` nor `udp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown echo protocol {value:?}: expected \"tcp\" or \"udp\"")]
pub struct ParseProtocolError {
    /// The text that was refused.
    pub value: String,
}

impl FromStr for Protocol {
    type Err = ParseProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(ParseProtocolError {
                value: other.to_owned(),
            }),
        }
    }
}

/// Where in a probe a [`ProbeError::Timeout`] struck, to tell a target that does not
/// accept connections from one that accepts but does not echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Establishing the TCP connection.
    Connect,
    /// Writing the nonce.
    Send,
    /// Waiting for the echoed nonce.
    Echo,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "while connecting",
            Stage::Send => "while sending the nonce",
            Stage::Echo => "waiting for the echo",
        })
    }
}

/// Why a probe counts as a miss. Every variant names the probed address.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TCP connect failed (refused, unreachable, ...), or a UDP socket could not be
    /// connected to the target (no route).
    #[error("could not connect to echo port {addr}")]
    Connect {
        /// The probed echo port.
        addr: SocketAddr,
        /// The error the connect returned.
        #[source]
        source: io::Error,
    },
    /// UDP: the target answered ICMP port unreachable (nothing listens on the port).
    #[error("echo port {addr} refused the datagram (ICMP port unreachable)")]
    Refused {
        /// The probed echo port.
        addr: SocketAddr,
    },
    /// The probe did not complete within its timeout.
    #[error("echo probe of {addr} timed out after {timeout:?} {stage}")]
    Timeout {
        /// The probed echo port.
        addr: SocketAddr,
        /// The bound on the whole probe.
        timeout: Duration,
        /// What the probe was doing when the time ran out.
        stage: Stage,
    },
    /// The target sent bytes other than the nonce. TCP fails at the first wrong byte;
    /// UDP discards wrong datagrams (they may be late echoes of earlier probes) and
    /// reports this instead of [`ProbeError::Timeout`] if no right one arrived in time.
    #[error("{addr} echoed wrong bytes ({got_len} bytes received, {expected_len} expected)")]
    Mismatch {
        /// The probed echo port.
        addr: SocketAddr,
        /// The nonce length.
        expected_len: usize,
        /// Bytes received (TCP: up to and including the first wrong one; UDP: the
        /// length of the last wrong datagram, capped at 64).
        got_len: usize,
    },
    /// TCP: the target closed the connection before echoing the whole nonce.
    #[error("{addr} closed the connection after echoing {got_len} of {expected_len} bytes")]
    Closed {
        /// The probed echo port.
        addr: SocketAddr,
        /// The nonce length.
        expected_len: usize,
        /// Correct bytes received before the close.
        got_len: usize,
    },
    /// Any other socket error (reset, unreachable, local resource exhaustion).
    #[error("i/o error during echo probe of {addr}")]
    Io {
        /// The probed echo port.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: io::Error,
    },
}

impl ProbeError {
    /// A short, stable name of the failure for metrics labels and the console:
    /// `timeout`, `refused`, `unreachable`, `reset`, `mismatch`, `closed`, `connect`
    /// (another connect failure) or `io` (another socket error).
    pub fn kind(&self) -> &'static str {
        fn io_kind(error: &io::Error, fallback: &'static str) -> &'static str {
            match error.kind() {
                io::ErrorKind::ConnectionRefused => "refused",
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "unreachable",
                io::ErrorKind::ConnectionReset => "reset",
                _ => fallback,
            }
        }
        match self {
            ProbeError::Connect { source, .. } => io_kind(source, "connect"),
            ProbeError::Refused { .. } => "refused",
            ProbeError::Timeout { .. } => "timeout",
            ProbeError::Mismatch { .. } => "mismatch",
            ProbeError::Closed { .. } => "closed",
            ProbeError::Io { source, .. } => io_kind(source, "io"),
        }
    }

    /// The probed address, whichever the failure.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ProbeError::Connect { addr, .. }
            | ProbeError::Refused { addr }
            | ProbeError::Timeout { addr, .. }
            | ProbeError::Mismatch { addr, .. }
            | ProbeError::Closed { addr, .. }
            | ProbeError::Io { addr, .. } => *addr,
        }
    }
}

/// Sends one fresh random nonce to the echo service at `addr` and waits for it to come
/// back; returns the round-trip time, or why the probe is a miss.
///
/// The whole probe (socket setup, connect, send and the complete echo) is bounded by
/// `timeout`. The RTT runs from the start of the TCP connect (or the UDP send) to the
/// arrival of the last echoed byte, so for TCP it includes the handshake.
///
/// TCP uses a fresh connection per probe, which also tests that the service still
/// accepts, and closes it with a FIN once the echo is complete. UDP sends from a fresh
/// socket connected to the target; datagrams that do not carry this probe's nonce are
/// discarded, and ICMP port unreachable is reported as [`ProbeError::Refused`].
pub async fn probe(
    protocol: Protocol,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let deadline = Instant::now() + timeout;
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce[..]);
    match protocol {
        Protocol::Tcp => probe_tcp(addr, &nonce, timeout, deadline).await,
        Protocol::Udp => probe_udp(addr, &nonce, timeout, deadline).await,
    }
}

async fn probe_tcp(
    addr: SocketAddr,
    nonce: &[u8; NONCE_LEN],
    timeout: Duration,
    deadline: Instant,
) -> Result<Duration, ProbeError> {
    let timed_out = |stage| ProbeError::Timeout {
        addr,
        timeout,
        stage,
    };
    let start = Instant::now();
    let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out(Stage::Connect)),
        Ok(Err(source)) => return Err(ProbeError::Connect { addr, source }),
        Ok(Ok(stream)) => stream,
    };
    match timeout_at(deadline, stream.write_all(nonce)).await {
        Err(_) => return Err(timed_out(Stage::Send)),
        Ok(Err(source)) => return Err(ProbeError::Io { addr, source }),
        Ok(Ok(())) => {}
    }

    // Read until every nonce byte is back; each read returns at least one byte or
    // ends the probe, so the loop runs at most NONCE_LEN times.
    let mut echo = [0u8; NONCE_LEN];
    let mut got = 0;
    while got < NONCE_LEN {
        let n = match timeout_at(deadline, stream.read(&mut echo[got..])).await {
            Err(_) => return Err(timed_out(Stage::Echo)),
            Ok(Err(source)) => return Err(ProbeError::Io { addr, source }),
            Ok(Ok(0)) => {
                return Err(ProbeError::Closed {
                    addr,
                    expected_len: NONCE_LEN,
                    got_len: got,
                });
            }
            Ok(Ok(n)) => n,
        };
        if echo[got..got + n] != nonce[got..got + n] {
            return Err(ProbeError::Mismatch {
                addr,
                expected_len: NONCE_LEN,
                got_len: got + n,
            });
        }
        got += n;
    }
    let rtt = start.elapsed();

    // Close cleanly: send our FIN now (the echo server closes its side when it reads
    // it); dropping the stream afterwards releases the socket without a reset because
    // nothing unread is left. The echo is complete, so a failure here is not a miss.
    if let Err(error) = stream.shutdown().await {
        trace!(%addr, %error, "echo connection shutdown failed after a complete echo");
    }
    Ok(rtt)
}

async fn probe_udp(
    addr: SocketAddr,
    nonce: &[u8; NONCE_LEN],
    timeout: Duration,
    deadline: Instant,
) -> Result<Duration, ProbeError> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|source| ProbeError::Io { addr, source })?;
    // Connecting makes the kernel drop datagrams from any other source and deliver
    // ICMP port unreachable for the target to us as ECONNREFUSED.
    socket
        .connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;

    let start = Instant::now();
    match timeout_at(deadline, socket.send(nonce)).await {
        Err(_) => {
            return Err(ProbeError::Timeout {
                addr,
                timeout,
                stage: Stage::Send,
            });
        }
        Ok(Err(source)) => return Err(udp_error(addr, source)),
        Ok(Ok(_)) => {}
    }

    let mut buf = [0u8; UDP_BUF_LEN];
    let mut wrong_len = None;
    for _ in 0..MAX_STRAY_DATAGRAMS {
        match timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => break,
            Ok(Err(source)) => return Err(udp_error(addr, source)),
            Ok(Ok(n)) if buf[..n] == nonce[..] => return Ok(start.elapsed()),
            Ok(Ok(n)) => {
                trace!(%addr, len = n, "discarding a datagram that does not carry the nonce");
                wrong_len = Some(n);
            }
        }
    }
    Err(match wrong_len {
        Some(got_len) => ProbeError::Mismatch {
            addr,
            expected_len: NONCE_LEN,
            got_len,
        },
        None => ProbeError::Timeout {
            addr,
            timeout,
            stage: Stage::Echo,
        },
    })
}

fn udp_error(addr: SocketAddr, source: io::Error) -> ProbeError {
    if source.kind() == io::ErrorKind::ConnectionRefused {
        ProbeError::Refused { addr }
    } else {
        ProbeError::Io { addr, source }
    }
}
