//! An authenticated session to one member and the commands run over it: connect (the
//! handshake of [`super::handshake`], then public-key authentication with a key file or the
//! ssh-agent), exec with every argument quoted, keepalive, and the I/O timeout.
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
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, ErrorCode};
use tracing::debug;

use super::error::{OPEN_CHANNEL, START_COMMAND, SshError};
use super::fingerprint::HostKey;
use super::handshake::{Handshaken, handshake, timeout_ms};
use super::settings::{Identity, SshSettings};
use crate::quote;

/// libssh2's `LIBSSH2_ERROR_EAGAIN`: the call would block in non-blocking mode.
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
/// Longest single `poll(2)` wait. Another thread sharing the session may drain the socket
/// into libssh2's queues between our poll and our read, so we never wait long on a socket
/// that may already have been read for us.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// Most stderr kept from one command; beyond it the oldest half is dropped.
const STDERR_CAP: usize = 256 * 1024;

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

fn would_block(error: &ssh2::Error) -> bool {
    error.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::error::SshErrorKind;

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
        let (_socket, port) = crate::ssh::testing::refusing_port();
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
