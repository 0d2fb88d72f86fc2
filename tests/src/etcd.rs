//! A real single-node etcd for the cluster tests: started on loopback with ports of its
//! own and a temporary data folder, waited for until healthy, paused and resumed on
//! demand (SIGSTOP/SIGCONT: etcd "lost" without killing it), and stopped by PID on drop.
//!
//! [`EtcdServer::start_in`] runs it in a (bare) lab host instead, on the host's address and
//! etcd's usual ports, so that terminal servers in other lab hosts reach it over the lab
//! network and a test can cut one of them from it ([`crate::lab::Lab::block`]). The root
//! namespace reaches it too (the bridge routes to every host), so the test reads etcd's keys
//! itself.
//!
//! Ports on loopback: a child cannot be handed a bound socket, so the ports are chosen by binding port
//! 0, reading the port and closing the socket before etcd starts. Another process may take
//! such a port in between; etcd then exits with "address already in use", and the start is
//! retried with fresh ports (a few times, then it is a failure with etcd's log).
//!
//! Cleanup: the child gets `PR_SET_PDEATHSIG(SIGKILL)`, so an etcd never outlives a test
//! run that was killed. The signal follows the *thread* that started etcd: start it from
//! the test's own thread (not from a `spawn_blocking` or a runtime worker that may end
//! first).
//!
//! Missing `etcd`: outside CI the test skips with one loud line on stderr; with `CI=true`
//! it fails (the convention of [`crate::lab`]).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::have;
use crate::lab::{Host, Lab, in_ci};

/// How long a fresh etcd may take to answer its health check.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a start is retried after losing a port to another process.
const PORT_ATTEMPTS: u32 = 5;
/// How long etcd may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's client and peer ports, used in a lab host (whose ports are all its own).
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

/// Why an etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("cannot {what}: {error}")]
    Io { what: String, error: io::Error },
    #[error("etcd exited ({status}) before it was healthy; its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("etcd was not healthy within {timeout:?}; its log:\n{log}")]
    NotHealthy { timeout: Duration, log: String },
    #[error("etcd lost its ports to other processes {attempts} times in a row; last log:\n{log}")]
    NoPorts { attempts: u32, log: String },
}

/// A running single-node etcd on 127.0.0.1. Stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    client: SocketAddr,
    log: PathBuf,
    paused: AtomicBool,
    // Last field: removed after the child is stopped (fields drop in order).
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// An etcd for test `test`, or `None` when `etcd` is not installed and this is not CI.
    ///
    /// # Panics
    /// In CI when `etcd` is missing, and whenever starting an installed etcd fails.
    pub fn require(test: &str) -> Option<EtcdServer> {
        if !installed(test) {
            return None;
        }
        match EtcdServer::start() {
            Ok(etcd) => Some(etcd),
            Err(error) => panic!("{test}: etcd did not start: {error}"),
        }
    }

    /// Like [`EtcdServer::require`], for an etcd in lab host `host` ([`EtcdServer::start_in`]).
    ///
    /// # Panics
    /// In CI when `etcd` is missing, and whenever starting an installed etcd fails.
    pub fn require_in(test: &str, lab: &Lab, host: &Host) -> Option<EtcdServer> {
        if !installed(test) {
            return None;
        }
        match EtcdServer::start_in(lab, host) {
            Ok(etcd) => Some(etcd),
            Err(error) => panic!("{test}: etcd did not start in {}: {error}", host.name),
        }
    }

    /// Starts etcd and returns once `/health` answers `"health":"true"`.
    pub fn start() -> Result<EtcdServer, EtcdError> {
        Self::start_at(None)
    }

    /// Starts etcd inside lab host `host` (best a bare one: [`crate::lab::LabOptions::bare_hosts`]),
    /// listening for clients on the host's address, port 2379 (its peer port stays on the
    /// host's loopback), and returns once it is healthy. It is one of the host's processes:
    /// a crash of the host kills it, and so does the lab's teardown.
    ///
    /// Its data goes on the host's `/srv` tmpfs: etcd fsyncs every write, and on a busy
    /// disk one fsync can outlast a test's whole lease.
    pub fn start_in(lab: &Lab, host: &Host) -> Result<EtcdServer, EtcdError> {
        Self::start_at(Some(Place {
            command: lab.command(host, "etcd"),
            addr: host.addr,
            dir: lab.host_dir(host),
        }))
    }

    fn start_at(mut place: Option<Place>) -> Result<EtcdServer, EtcdError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("dnsd-etcd-");
        // In a lab, its folder goes with the lab's, even after a killed run.
        let dir = match &place {
            Some(place) => builder.tempdir_in(&place.dir),
            None => builder.tempdir(),
        }
        .map_err(|error| EtcdError::Io {
            what: "create etcd's temporary folder".into(),
            error,
        })?;
        let mut last_log = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let (client, peer) = match &place {
                Some(place) => (
                    SocketAddr::from((place.addr, CLIENT_PORT)),
                    SocketAddr::from((Ipv4Addr::LOCALHOST, PEER_PORT)),
                ),
                None => (
                    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                ),
            };
            // A fresh data folder per attempt: a half-started etcd may have written one.
            let data = match &place {
                Some(_) => PathBuf::from(format!("{}/etcd-{attempt}", crate::lab::DATA_DIR)),
                None => dir.path().join(format!("data-{attempt}")),
            };
            let log = dir.path().join(format!("etcd-{attempt}.log"));
            let command = match &mut place {
                Some(place) => std::mem::replace(&mut place.command, Command::new("etcd")),
                None => Command::new("etcd"),
            };
            let mut child = spawn(command, &data, &log, client, peer)?;
            match wait_healthy(&mut child, client, &log) {
                Ok(()) => {
                    return Ok(EtcdServer {
                        child,
                        client,
                        log,
                        paused: AtomicBool::new(false),
                        dir,
                    });
                }
                Err(EtcdError::Exited { log: text, .. })
                    if text.contains("address already in use") =>
                {
                    last_log = text;
                }
                Err(error) => {
                    stop(&mut child);
                    return Err(error);
                }
            }
        }
        Err(EtcdError::NoPorts {
            attempts: PORT_ATTEMPTS,
            log: last_log,
        })
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// etcd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes etcd (SIGSTOP): its sockets stay open but nothing answers, as when the
    /// machine hosting it hangs or the network drops everything silently.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Thaws a paused etcd (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// etcd's Prometheus metrics (`GET /metrics`, the text format), or `None` when etcd
    /// does not answer: its revision, writes, raft proposals, fsyncs and gRPC calls by
    /// method (lease keep-alives among them), for the benchmarks.
    pub fn metrics(&self) -> Option<String> {
        http_get(self.client, "/metrics")
    }

    /// etcd's log so far (stdout and stderr), for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The temporary folder holding etcd's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the PID of our own child, which is reaped only in `Drop`, so
        // the PID cannot have been reused by another process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if self.paused.load(Ordering::SeqCst) {
            // A stopped process would not act on SIGTERM until continued.
            self.signal(libc::SIGCONT);
        }
        stop(&mut self.child);
    }
}

/// Whether `etcd` is installed; if not, test `test` skips with one loud line outside CI
/// and fails in CI.
fn installed(test: &str) -> bool {
    if have("etcd") {
        return true;
    }
    if in_ci() {
        panic!("{test}: etcd is missing; `scripts/deps test` installs etcd-server");
    }
    // Straight to stderr: the test harness swallows `eprintln!` of a passing test.
    let _ = writeln!(
        io::stderr(),
        "SKIPPED {test}: etcd is missing; `scripts/deps test` installs etcd-server \
         (CI=true makes this a failure)"
    );
    false
}

/// Where an etcd in a lab host runs: the command that runs `etcd` inside the host, the
/// host's address, and the folder (seen from here) that takes etcd's log.
struct Place {
    command: Command,
    addr: Ipv4Addr,
    dir: PathBuf,
}

/// A port on 127.0.0.1 that was free a moment ago (see the module's note on the race).
fn free_port() -> Result<u16, EtcdError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|error| EtcdError::Io {
            what: "find a free port on 127.0.0.1".into(),
            error,
        })
}

/// Starts etcd through `command` (`etcd`, or `nsenter ... etcd` for a lab host, which execs
/// etcd in place: the child's PID is etcd's) with these client and peer addresses.
fn spawn(
    mut command: Command,
    data: &Path,
    log: &Path,
    client: SocketAddr,
    peer: SocketAddr,
) -> Result<Child, EtcdError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |error| EtcdError::Io { what, error }
    };
    let out = std::fs::File::create(log).map_err(io("create etcd's log"))?;
    let err = out.try_clone().map_err(io("duplicate etcd's log"))?;
    let client_url = format!("http://{client}");
    let peer_url = format!("http://{peer}");
    command
        .arg("--name=test")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .arg("--initial-cluster-state=new")
        .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: prctl(2) is async-signal-safe and touches only the child being set up.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(io("start etcd"))
}

fn wait_healthy(child: &mut Child, client: SocketAddr, log: &Path) -> Result<(), EtcdError> {
    let deadline = Instant::now() + HEALTHY_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(EtcdError::Exited {
                    status: status.to_string(),
                    log: read_log(log),
                });
            }
            Ok(None) => {}
            Err(error) => {
                return Err(EtcdError::Io {
                    what: "check on etcd".into(),
                    error,
                });
            }
        }
        if healthy(client) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(EtcdError::NotHealthy {
        timeout: HEALTHY_TIMEOUT,
        log: read_log(log),
    })
}

/// Whether etcd's `/health` endpoint answers that it is healthy (it has a raft leader).
fn healthy(client: SocketAddr) -> bool {
    http_get(client, "/health").is_some_and(|body| body.contains(r#""health":"true""#))
}

/// The body of etcd's answer to `GET path` on its client URL, when the status is 200.
/// HTTP/1.0, so that the body comes whole, never chunked, and the connection closes.
fn http_get(client: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&client, Duration::from_millis(500)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nhost: etcd\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_owned())
}

/// SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL; always reaps the child.
fn stop(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        // Already reaped (std keeps the status): its PID may belong to someone else now.
        return;
    }
    // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet (above).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()))
}
