//! SSH sessions to pool members: verified host keys, key authentication, timeouts,
//! keepalive, and remote commands built only from quoted arguments.
//!
//! A [`Session`] is connected by [`Session::connect`]: TCP connect (bounded by
//! `connect_timeout`), SSH handshake, the server's host key checked against the configured
//! known_hosts file with libssh2's known-hosts API (an unknown or changed key is refused and
//! reported with its OpenSSH-style `SHA256:` fingerprint), then public-key authentication with
//! a key file or the ssh-agent. [`verify_host_key`] does only the first half, for hosts we do
//! not log into but must trust (the destination of a pass).
//!
//! After authentication the libssh2 session is switched to non-blocking mode for good, and
//! every call retries on `EAGAIN` after waiting for the socket with `poll(2)`. This is what
//! lets several threads run commands on one session at once (the ssh2 session lock is held
//! only for each short libssh2 call, never while waiting; only opening a channel is done by
//! one thread at a time, because libssh2 keeps that step's progress in the session), and what
//! lets one loop read a command's stdout and stderr together without a full stderr window
//! stalling the stdout read.
//! Any thread that sees data arrive marks the session as alive; when nothing at all arrives
//! for `io_timeout` (keepalives are sent while waiting, so an idle but healthy connection
//! answers them), the session is marked broken and the call fails with a timeout.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use ssh2::{BlockDirections, CheckResult, ErrorCode, KnownHostFileKind, MethodType};
use thiserror::Error;
use tracing::debug;

use crate::quote::{self, QuoteError};

/// libssh2's `LIBSSH2_ERROR_EAGAIN`: the call would block in non-blocking mode.
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
/// Longest single `poll(2)` wait. Another thread sharing the session may drain the socket
/// into libssh2's queues between our poll and our read, so we never wait long on a socket
/// that may already have been read for us.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// Most stderr kept from one command; beyond it the oldest half is dropped.
const STDERR_CAP: usize = 256 * 1024;

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

/// The host key a server presented, as OpenSSH prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// Key algorithm name from the key blob, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:` followed by the unpadded base64 of the SHA-256 of the key blob.
    pub fingerprint: String,
}

impl HostKey {
    /// Describes a raw public key blob (SSH wire format) the way `ssh-keygen -l` does.
    pub fn from_blob(blob: &[u8]) -> HostKey {
        HostKey {
            key_type: blob_key_type(blob),
            fingerprint: fingerprint(blob),
        }
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key_type, self.fingerprint)
    }
}

/// OpenSSH-style fingerprint of a public key blob: `SHA256:` + unpadded base64.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The algorithm name at the start of an SSH public key blob (a length-prefixed string).
fn blob_key_type(blob: &[u8]) -> String {
    let name = blob
        .get(..4)
        .and_then(|len| <[u8; 4]>::try_from(len).ok())
        .map(|len| u32::from_be_bytes(len) as usize)
        .and_then(|len| blob.get(4..4usize.checked_add(len)?))
        .and_then(|name| std::str::from_utf8(name).ok());
    name.unwrap_or("unknown").to_owned()
}

/// How a command ended on the remote side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (name without `SIG`).
    Signal(String),
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Code(code) => Some(*code),
            ExitStatus::Signal(_) => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit code {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Everything a finished command produced (see [`Session::exec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output, decoded lossily as UTF-8.
    pub stdout: String,
    /// Its standard error, decoded lossily as UTF-8 (the tail, if it was very long).
    pub stderr: String,
}

/// How a streamed command ended (see [`Session::exec_lines`]); stdout went to the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard error, decoded lossily as UTF-8 (the tail, if it was very long).
    pub stderr: String,
}

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
const OPEN_CHANNEL: &str = "open a channel";
const START_COMMAND: &str = "start the command";

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

fn would_block(error: &ssh2::Error) -> bool {
    error.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

/// Milliseconds for libssh2's blocking timeout (0 would mean "forever", so at least 1).
fn timeout_ms(duration: Duration) -> u32 {
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

/// Host key algorithms libssh2 may negotiate for a key type found in known_hosts.
fn algorithms_for(key_type: &str) -> &'static [&'static str] {
    match key_type {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => &["ssh-dss"],
        _ => &[],
    }
}

/// Names under which a known_hosts line may list `host` on `port`.
fn host_names(host: &str, port: u16) -> [String; 2] {
    [host.to_owned(), format!("[{host}]:{port}")]
}

/// A connected, host-key-verified libssh2 session before authentication.
struct Handshaken {
    session: ssh2::Session,
    socket: TcpStream,
    host_key: HostKey,
}

/// TCP connect, handshake and host key verification against `settings.known_hosts`.
fn handshake(host: &str, settings: &SshSettings) -> Result<Handshaken, SshError> {
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

    let mut known = session.known_hosts().map_err(handshake_error)?;
    known
        .read_file(&settings.known_hosts, KnownHostFileKind::OpenSSH)
        .map_err(|error| SshError::KnownHosts {
            path: settings.known_hosts.clone(),
            error,
        })?;
    prefer_known_algorithms(&session, &known, host, port);

    session.handshake().map_err(handshake_error)?;
    let (blob, _) = session.host_key().ok_or_else(|| {
        handshake_error(ssh2::Error::new(
            ErrorCode::Session(-1),
            "server presented no host key",
        ))
    })?;
    let host_key = HostKey::from_blob(blob);
    match known.check_port(host, port, blob) {
        CheckResult::Match => {
            debug!(%host, port, key = %host_key, "host key verified");
            Ok(Handshaken {
                session,
                socket: ours,
                host_key,
            })
        }
        CheckResult::NotFound => Err(SshError::HostKeyUnknown {
            host: host.to_owned(),
            port,
            key: host_key,
            known_hosts: settings.known_hosts.clone(),
        }),
        CheckResult::Mismatch => Err(SshError::HostKeyChanged {
            host: host.to_owned(),
            port,
            key: host_key,
            known_hosts: settings.known_hosts.clone(),
        }),
        CheckResult::Failure => Err(SshError::HostKeyCheck {
            host: host.to_owned(),
            known_hosts: settings.known_hosts.clone(),
        }),
    }
}

/// Asks the server for a host key of a type known_hosts holds for this host, as OpenSSH
/// does; otherwise a server with several host keys could present one we do not list and be
/// reported as changed. Hashed entries count too, since their host cannot be read.
fn prefer_known_algorithms(
    session: &ssh2::Session,
    known: &ssh2::KnownHosts,
    host: &str,
    port: u16,
) {
    let Ok(entries) = known.hosts() else { return };
    let names = host_names(host, port);
    let mut wanted: Vec<&'static str> = Vec::new();
    for entry in &entries {
        let listed = match entry.name() {
            Some(name) => names.iter().any(|n| n == name),
            None => true,
        };
        if !listed {
            continue;
        }
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(entry.key()) else {
            continue;
        };
        for algorithm in algorithms_for(&blob_key_type(&blob)) {
            if !wanted.contains(algorithm) {
                wanted.push(algorithm);
            }
        }
    }
    let supported = session
        .supported_algs(MethodType::HostKey)
        .unwrap_or_default();
    wanted.retain(|a| supported.contains(a));
    if !wanted.is_empty() {
        let prefs = wanted.join(",");
        if let Err(error) = session.method_pref(MethodType::HostKey, &prefs) {
            debug!(%host, %prefs, %error, "cannot set host key preference");
        }
    }
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

/// An authenticated SSH session to one member; shareable between threads (`Arc<Session>`).
pub struct Session {
    host: String,
    user: String,
    inner: ssh2::Session,
    /// A clone of the session's socket, used to poll and to probe liveness.
    socket: TcpStream,
    host_key: HostKey,
    io_timeout: Duration,
    keepalive: Option<Duration>,
    /// Last time any thread saw data arrive (or the session was opened).
    /// No lock is held across anything but the read or write of this `Instant`.
    last_activity: Mutex<Instant>,
    /// Set once a transport error or timeout showed the session is unusable.
    broken: AtomicBool,
    /// Held while one thread opens a channel and starts its command. libssh2 keeps the
    /// state of a channel open that is in progress (between EAGAIN retries) in the session,
    /// so two opens must not interleave. Held across socket waits, bounded by `io_timeout`;
    /// reading and closing channels (per-channel state) do not take it.
    setup: Mutex<()>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("host_key", &self.host_key)
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens a session: connect, handshake, verify the host key against
    /// `settings.known_hosts`, authenticate with `settings.identity`, enable keepalive.
    pub fn connect(host: &str, settings: &SshSettings) -> Result<Session, SshError> {
        let Handshaken {
            session,
            socket,
            host_key,
        } = handshake(host, settings)?;
        authenticate(&session, host, settings)?;
        if let Some(interval) = settings.keepalive {
            let secs = u32::try_from(interval.as_secs()).unwrap_or(u32::MAX).max(1);
            session.set_keepalive(true, secs);
        }
        session.set_timeout(timeout_ms(settings.io_timeout));
        session.set_blocking(false);
        debug!(%host, user = %settings.user, "SSH session open");
        Ok(Session {
            host: host.to_owned(),
            user: settings.user.clone(),
            inner: session,
            socket,
            host_key,
            io_timeout: settings.io_timeout,
            keepalive: settings.keepalive,
            last_activity: Mutex::new(Instant::now()),
            broken: AtomicBool::new(false),
            setup: Mutex::new(()),
        })
    }

    /// The host this session was opened to, as given to [`Session::connect`].
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The user logged in.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The verified host key of the server.
    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// False once the session failed or its peer closed the connection; such a session
    /// must be replaced. A peer that silently vanished is only noticed by the next call
    /// timing out after `io_timeout`.
    pub fn is_alive(&self) -> bool {
        if self.broken.load(Ordering::Relaxed) {
            return false;
        }
        // The socket is non-blocking (libssh2 made it so), so peek never waits.
        let mut byte = [0u8; 1];
        match self.socket.peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Runs `args` (program and arguments, each quoted) and collects everything it prints.
    pub fn exec<S: AsRef<str>>(&self, args: &[S]) -> Result<Output, SshError> {
        let mut stdout = Vec::new();
        let finished = self.run(args, |chunk| stdout.extend_from_slice(chunk))?;
        Ok(Output {
            status: finished.status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: finished.stderr,
        })
    }

    /// Runs `args` (each quoted) and calls `on_line` for every line of its stdout as it
    /// arrives. Lines end at `\n` or `\r` (progress meters rewrite their line with `\r`);
    /// empty lines are skipped. Stderr is collected and returned.
    pub fn exec_lines<S: AsRef<str>>(
        &self,
        args: &[S],
        mut on_line: impl FnMut(&str),
    ) -> Result<Finished, SshError> {
        let mut lines = LineSplitter::default();
        let finished = self.run(args, |chunk| lines.push(chunk, &mut on_line))?;
        lines.finish(&mut on_line);
        Ok(finished)
    }

    /// Runs one command, feeding stdout chunks to `on_stdout`.
    fn run<S: AsRef<str>>(
        &self,
        args: &[S],
        mut on_stdout: impl FnMut(&[u8]),
    ) -> Result<Finished, SshError> {
        let command = quote::command_line(args).map_err(|error| SshError::Command {
            host: self.host.clone(),
            error,
        })?;
        debug!(host = %self.host, %command, "running remote command");
        let mut channel = {
            let _setup = self.setup.lock().unwrap_or_else(PoisonError::into_inner);
            let mut channel = self.retry(OPEN_CHANNEL, || self.inner.channel_session())?;
            self.retry(START_COMMAND, || channel.exec(&command))?;
            channel
        };

        let mut stderr = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        let (mut out_done, mut err_done) = (false, false);
        let mut next_keepalive = self.keepalive.map(|k| Instant::now() + k);
        while !(out_done && err_done) {
            let mut progressed = false;
            if !out_done {
                match channel.read(&mut buf) {
                    Ok(0) => {
                        out_done = true;
                        progressed = true;
                    }
                    Ok(n) => {
                        progressed = true;
                        on_stdout(&buf[..n]);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(self.io_failed("read the command's output", error)),
                }
            }
            if !err_done {
                match channel.stderr().read(&mut buf) {
                    Ok(0) => {
                        err_done = true;
                        progressed = true;
                    }
                    Ok(n) => {
                        progressed = true;
                        stderr.extend_from_slice(&buf[..n]);
                        if stderr.len() > STDERR_CAP {
                            stderr.drain(..stderr.len() / 2);
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(self.io_failed("read the command's errors", error)),
                }
            }
            // An end of stream counts as progress: reading it may have pulled the other
            // stream's last data off the socket into libssh2's buffers, where polling the
            // socket would not see it (a 50 ms stall at the end of every command).
            if progressed {
                self.touch();
                continue;
            }
            if let Some(due) = next_keepalive
                && Instant::now() >= due
            {
                next_keepalive = self.send_keepalive()?;
            }
            self.wait_or_time_out("read the command's output")?;
        }
        self.retry("close the channel", || channel.wait_close())?;
        let status = match channel.exit_signal() {
            Ok(ssh2::ExitSignal {
                exit_signal: Some(signal),
                ..
            }) => ExitStatus::Signal(signal),
            _ => ExitStatus::Code(
                channel
                    .exit_status()
                    .map_err(|error| self.failed("read the exit status", error))?,
            ),
        };
        debug!(host = %self.host, %status, "remote command finished");
        Ok(Finished {
            status,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Sends a keepalive if one is due; returns when the next one is due.
    fn send_keepalive(&self) -> Result<Option<Instant>, SshError> {
        let Some(interval) = self.keepalive else {
            return Ok(None);
        };
        match self.inner.keepalive_send() {
            Ok(secs) => {
                let wait = Duration::from_secs(u64::from(secs.max(1))).min(interval);
                Ok(Some(Instant::now() + wait))
            }
            // The transport is busy writing; try again shortly.
            Err(error) if would_block(&error) => Ok(Some(Instant::now() + POLL_SLICE)),
            Err(error) => Err(self.failed("send a keepalive", error)),
        }
    }

    /// Repeats a libssh2 call until it stops returning `EAGAIN`, waiting on the socket
    /// in between, or fails after `io_timeout` without any incoming data.
    fn retry<T>(
        &self,
        action: &'static str,
        mut call: impl FnMut() -> Result<T, ssh2::Error>,
    ) -> Result<T, SshError> {
        loop {
            match call() {
                Ok(value) => return Ok(value),
                Err(error) if would_block(&error) => self.wait_or_time_out(action)?,
                Err(error) => return Err(self.failed(action, error)),
            }
        }
    }

    /// Waits up to [`POLL_SLICE`] for the socket; fails when nothing has arrived on the
    /// session for `io_timeout`.
    fn wait_or_time_out(&self, action: &'static str) -> Result<(), SshError> {
        if self.wait_socket() {
            self.touch();
        }
        let idle = self
            .last_activity
            .lock()
            .map(|last| last.elapsed())
            .unwrap_or_default();
        if idle >= self.io_timeout {
            self.broken.store(true, Ordering::Relaxed);
            return Err(SshError::Timeout {
                host: self.host.clone(),
                action,
                after: self.io_timeout,
            });
        }
        Ok(())
    }

    /// Polls the socket in the directions libssh2 is blocked on; true if it became readable.
    fn wait_socket(&self) -> bool {
        let events = match self.inner.block_directions() {
            BlockDirections::Outbound => libc::POLLOUT,
            BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
            BlockDirections::Inbound | BlockDirections::None => libc::POLLIN,
        };
        let mut fd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events,
            revents: 0,
        };
        let slice = i32::try_from(POLL_SLICE.as_millis()).unwrap_or(50);
        // SAFETY: `fd` is one valid, initialised pollfd that outlives the call, and the
        // count passed is 1. The descriptor is owned by `self.socket`, which is alive.
        let ready = unsafe { libc::poll(&mut fd, 1, slice) };
        ready > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last_activity.lock() {
            *last = Instant::now();
        }
    }

    fn failed(&self, action: &'static str, error: ssh2::Error) -> SshError {
        self.broken.store(true, Ordering::Relaxed);
        SshError::Session {
            host: self.host.clone(),
            action,
            error,
        }
    }

    fn io_failed(&self, action: &'static str, error: io::Error) -> SshError {
        self.broken.store(true, Ordering::Relaxed);
        SshError::Io {
            host: self.host.clone(),
            action,
            error,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Nobody else holds this session any more. Back to blocking mode (with a short bound)
        // so that the goodbye and libssh2's own cleanup complete instead of stopping at EAGAIN.
        self.inner.set_timeout(1000);
        self.inner.set_blocking(true);
        let _ = self.inner.disconnect(None, "closing", None);
    }
}

/// Public-key authentication with a key file or each key of the agent.
fn authenticate(
    session: &ssh2::Session,
    host: &str,
    settings: &SshSettings,
) -> Result<(), SshError> {
    let user = settings.user.as_str();
    let auth_error = |message: String| SshError::Auth {
        host: host.to_owned(),
        user: user.to_owned(),
        identity: settings.identity.to_string(),
        message,
    };
    match &settings.identity {
        Identity::File(path) => {
            check_readable(path)?;
            session
                .userauth_pubkey_file(user, None, path, None)
                .map_err(|error| auth_error(error.message().to_owned()))?;
        }
        Identity::Agent => {
            let mut agent = session
                .agent()
                .map_err(|error| auth_error(format!("no ssh-agent: {}", error.message())))?;
            agent.connect().map_err(|error| {
                auth_error(format!(
                    "cannot reach the ssh-agent (SSH_AUTH_SOCK): {}",
                    error.message()
                ))
            })?;
            agent
                .list_identities()
                .map_err(|error| auth_error(format!("ssh-agent: {}", error.message())))?;
            let keys = agent
                .identities()
                .map_err(|error| auth_error(format!("ssh-agent: {}", error.message())))?;
            if keys.is_empty() {
                return Err(auth_error("the ssh-agent holds no keys".to_owned()));
            }
            let accepted = keys.iter().any(|key| agent.userauth(user, key).is_ok());
            let _ = agent.disconnect();
            if !accepted {
                return Err(auth_error(format!(
                    "none of the agent's {} key(s) was accepted",
                    keys.len()
                )));
            }
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(auth_error(
            "the server did not confirm the authentication".to_owned(),
        ))
    }
}

/// A clear error for a missing key file, rather than libssh2's generic one.
fn check_readable(path: &Path) -> Result<(), SshError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|error| SshError::Identity {
            path: path.to_owned(),
            error,
        })
}

/// Cuts a byte stream into lines at `\n` and `\r`, across chunk boundaries.
#[derive(Debug, Default)]
struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    fn push(&mut self, chunk: &[u8], on_line: &mut impl FnMut(&str)) {
        for &byte in chunk {
            if byte == b'\n' || byte == b'\r' {
                self.emit(on_line);
            } else {
                self.partial.push(byte);
            }
        }
    }

    fn finish(&mut self, on_line: &mut impl FnMut(&str)) {
        self.emit(on_line);
    }

    fn emit(&mut self, on_line: &mut impl FnMut(&str)) {
        if !self.partial.is_empty() {
            on_line(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the returned socket
/// lives: bound, never listening, so no other socket can take the port meanwhile (a
/// listener dropped to free its port could be replaced by another test's).
#[cfg(test)]
pub(crate) fn refusing_port() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // The host key of the sshd that produced the fixtures, what `ssh-keygen -lf` printed
        // for it, and OpenSSH's own warning naming it (all from fixtures/capture.sh).
        let public = include_str!("../fixtures/host_key.pub");
        let keygen = include_str!("../fixtures/host_key.fingerprint");
        let warning = include_str!("../fixtures/hostkey_changed.stderr");
        let base64 = public.split_whitespace().nth(1).unwrap();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(base64)
            .unwrap();
        let key = HostKey::from_blob(&blob);
        assert_eq!(key.key_type, "ssh-ed25519");
        assert_eq!(
            keygen.split_whitespace().nth(1),
            Some(key.fingerprint.as_str())
        );
        // ssh ends this warning's lines with CRLF.
        let named = format!("{}.", key.fingerprint);
        assert!(warning.lines().any(|l| l.trim_end() == named), "{warning}");
        assert_eq!(key.to_string(), format!("ssh-ed25519 {}", key.fingerprint));
    }

    #[test]
    fn key_type_of_a_truncated_blob_is_unknown() {
        assert_eq!(blob_key_type(&[0, 0, 0, 20, b's']), "unknown");
        assert_eq!(blob_key_type(&[]), "unknown");
    }

    #[test]
    fn splitter_cuts_at_cr_and_lf_across_chunks() {
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        let mut sink = |l: &str| lines.push(l.to_owned());
        splitter.push(b"\r   10  1%\r   2", &mut sink);
        splitter.push(b"0  2%\n\nNumber of files: 3\nlast", &mut sink);
        splitter.finish(&mut sink);
        assert_eq!(
            lines,
            ["   10  1%", "   20  2%", "Number of files: 3", "last"]
        );
    }

    #[test]
    fn connect_to_a_closed_port_is_a_connection_error() {
        let (_socket, port) = super::refusing_port();
        let settings = SshSettings {
            user: "root".into(),
            port,
            identity: Identity::Agent,
            known_hosts: "/nonexistent".into(),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
            keepalive: None,
        };
        let error = Session::connect("127.0.0.1", &settings).unwrap_err();
        assert_eq!(error.kind(), SshErrorKind::Connection, "{error}");
        assert!(
            error
                .to_string()
                .contains(&format!("127.0.0.1 port {port}")),
            "{error}"
        );
    }

    #[test]
    fn exit_status_reports_success_and_code() {
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Code(23).success());
        assert_eq!(ExitStatus::Code(23).code(), Some(23));
        assert_eq!(ExitStatus::Signal("KILL".into()).code(), None);
    }
}
