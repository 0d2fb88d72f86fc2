//! Service checks: whether each member's copy of a service answers, beside its host's
//! echo heartbeat. For every service with a `check`, one task per member checks on a
//! jittered interval — an HTTP status, a TCP connection, or a command run on the member
//! over SSH — applies rise/fall with the heartbeat's [`Detector`], and reports every
//! check as a [`CheckReport`].
//!
//! Like the heartbeat, the checker only observes: its verdicts reach the controller as
//! an input (`check_changed`), and the controller decides. A report is a plain value
//! (ids, time, outcome, verdict), so it can be published to other terminal servers the
//! way the heartbeat's views are.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use heartbeat::{Detector, Health, Transition, jittered};
use rsync_sync::connector::{Backoff, Connector};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, info_span};

use crate::clock::now_ms;
use crate::config::{CHECK_PLACEHOLDERS, CheckProbe, Config, ServiceCheck};
use crate::controller::{HookError, Millis, NodeId, ServiceId};
use crate::mirror::command_outcome;

/// The result of one check of one member of one service, with the rise/fall verdict after
/// it.
#[derive(Debug)]
pub struct CheckReport {
    pub service: ServiceId,
    pub node: NodeId,
    /// When the check started, ms since the Unix epoch.
    pub at_ms: Millis,
    /// How long a passing check took, or why it failed.
    pub outcome: Result<Duration, CheckError>,
    /// The verdict after this check (up: passing).
    pub health: Health,
    /// Set when this check changed the verdict.
    pub transition: Option<Transition>,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing (or not all of the answer) came back in time.
    #[error("no answer from {target} within {}", humantime::format_duration(*after))]
    TimedOut { target: String, after: Duration },
    /// The connection was refused or could not be made.
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The connection failed while the request was sent or the answer read.
    #[error("talking HTTP with {addr}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The answer did not start with an HTTP status line.
    #[error("{addr} answered {line:?}, not an HTTP status line")]
    NotHttp { addr: SocketAddr, line: String },
    /// The HTTP status was not the one expected.
    #[error("{addr} answered {path} with HTTP {got}, not {expected}")]
    Status {
        addr: SocketAddr,
        path: String,
        got: u16,
        expected: u16,
    },
    /// A command check could not run on the member, or ran and failed: it fails the way
    /// a hook does (no `[mirror]`, no session, the command's exit status and last line).
    #[error(transparent)]
    Command(#[from] HookError),
}

/// The running checks; [`Checker::join`] waits for them at shutdown.
#[derive(Debug, Clone)]
pub struct Checker {
    tracker: TaskTracker,
}

impl Checker {
    /// Waits until every check task has ended (after cancellation, or once nobody
    /// receives reports).
    pub async fn join(&self) {
        self.tracker.wait().await;
    }
}

/// One member of one service, and how to check it.
#[derive(Clone)]
struct Target {
    service: ServiceId,
    node: NodeId,
    service_name: String,
    node_name: String,
    address: IpAddr,
    check: ServiceCheck,
    /// SSH sessions for command checks, when there is a `[mirror]` section.
    connector: Option<Arc<Connector>>,
    /// The verdict it starts from.
    initial: Health,
}

/// Starts one check task per member of every service with a check, on the current tokio
/// runtime, each from the verdict `initial` gives (unknown at start; the last one after a
/// reload). Each sends a [`CheckReport`] after every check; sending waits for room, so a
/// slow driver slows the checks rather than losing a verdict.
pub fn spawn(
    config: &Config,
    initial: impl Fn(ServiceId, NodeId) -> Health,
    reports: mpsc::Sender<CheckReport>,
    cancel: CancellationToken,
) -> Checker {
    let tracker = TaskTracker::new();
    // Sessions of their own: a check never waits behind a pass on the executor's.
    let connector = config
        .mirror
        .as_ref()
        .map(|m| Arc::new(Connector::new(m.ssh.clone(), Backoff::default())));
    for (s, service) in config.services.iter().enumerate() {
        let Some(check) = &service.check else {
            continue;
        };
        for &n in &service.nodes {
            let node = config.node(n);
            let target = Target {
                service: ServiceId(s),
                node: n,
                service_name: service.name.clone(),
                node_name: node.name.clone(),
                address: node.address,
                check: check.clone(),
                connector: connector.clone(),
                initial: initial(ServiceId(s), n),
            };
            let span = info_span!("check", service = %service.name, node = %node.name);
            tracker.spawn(run(target, reports.clone(), cancel.clone()).instrument(span));
        }
    }
    tracker.close();
    Checker { tracker }
}

async fn run(target: Target, reports: mpsc::Sender<CheckReport>, cancel: CancellationToken) {
    let interval = target.check.interval.max(Duration::from_millis(1));
    let mut detector = Detector::with_initial(target.check.rise, target.check.fall, target.initial);
    // Spread the first checks of all members over the first interval.
    let mut next = Instant::now() + interval.mul_f64(rand::random_range(0.0..1.0));
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = sleep_until(next) => {}
        }
        let at_ms = now_ms();
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            outcome = check_once(&target) => outcome,
        };
        let transition = detector.observe(outcome.is_ok());
        if let Err(error) = &outcome {
            debug!(%error, "check failed");
        }
        if let Some(t) = transition {
            info!(from = %t.from, to = %t.to, "service check verdict changed");
        }
        let report = CheckReport {
            service: target.service,
            node: target.node,
            at_ms,
            outcome,
            health: detector.health(),
            transition,
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            sent = reports.send(report) => {
                if sent.is_err() {
                    return;
                }
            }
        }
        // As the heartbeat does: from the planned time, skipping (never bursting) what
        // is overdue.
        next += jittered(interval);
        next = next.max(Instant::now());
    }
}

/// One check, bounded by the check's timeout; how long it took when it passed.
async fn check_once(target: &Target) -> Result<Duration, CheckError> {
    let started = Instant::now();
    let timeout = target.check.timeout;
    match &target.check.probe {
        CheckProbe::Http { port, path, expect } => {
            let addr = SocketAddr::new(target.address, *port);
            bounded(timeout, addr, http(addr, path, *expect)).await?;
        }
        CheckProbe::Tcp { port } => {
            let addr = SocketAddr::new(target.address, *port);
            let connect = async {
                TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|source| CheckError::Connect { addr, source })
            };
            bounded(timeout, addr, connect).await?;
        }
        CheckProbe::Command { argv } => command(target, argv).await?,
    }
    Ok(started.elapsed())
}

async fn bounded(
    timeout: Duration,
    addr: SocketAddr,
    work: impl Future<Output = Result<(), CheckError>>,
) -> Result<(), CheckError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(CheckError::TimedOut {
                target: addr.to_string(),
                after: timeout,
            })
        })
}

/// The longest status line read; anything longer is not HTTP.
const STATUS_LINE_MAX: usize = 1024;

/// `GET path` over HTTP/1.0; passes when the status is `expect`.
async fn http(addr: SocketAddr, path: &str, expect: u16) -> Result<(), CheckError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| CheckError::Connect { addr, source })?;
    let io = |source| CheckError::Io { addr, source };
    // `path` was validated: it starts with "/" and holds no whitespace or control
    // characters, so it cannot break the request line.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: dnsd-check\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !answer.contains(&b'\n') && answer.len() < STATUS_LINE_MAX {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect::<String>();
    match status_code(&line) {
        Some(got) if got == expect => Ok(()),
        Some(got) => Err(CheckError::Status {
            addr,
            path: path.to_owned(),
            got,
            expected: expect,
        }),
        None => Err(CheckError::NotHttp { addr, line }),
    }
}

/// The status code of an HTTP status line ("HTTP/1.1 200 OK").
fn status_code(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    words
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..=599).contains(c))
}

/// Runs the check's command on the member over SSH, under `timeout(1)` there; passes when
/// it exits with status 0. Blocking SSH work runs on tokio's blocking pool, and the check
/// waits for it, so checks of one member never pile up.
async fn command(target: &Target, argv: &[String]) -> Result<(), HookError> {
    let connector = target.connector.clone().ok_or(HookError::NoMirror)?;
    let values = [
        target.service_name.as_str(),
        target.node_name.as_str(),
        &target.address.to_string(),
    ];
    let timeout = target.check.timeout;
    // timeout(1) counts whole seconds: round up, so a check is never cut shorter.
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let mut wrapped = vec![
        "timeout".to_owned(),
        "--kill-after=1".to_owned(),
        secs.max(1).to_string(),
    ];
    wrapped.extend(argv.iter().map(|a| substitute(a, &values)));
    let (node, address) = (target.node_name.clone(), target.address);
    tokio::task::spawn_blocking(move || {
        let host = address.to_string();
        let session = connector.get(&host).map_err(|source| HookError::Connect {
            node: node.clone(),
            address,
            source: Box::new(source),
        })?;
        let out = session.exec(&wrapped).map_err(|source| {
            // The next check starts on a fresh session.
            connector.reset(&host);
            HookError::Ssh {
                node: node.clone(),
                address,
                source: Box::new(source),
            }
        })?;
        command_outcome(&node, &out, timeout)
    })
    .await
    .map_err(HookError::Task)?
}

/// Replaces `{service}`, `{node}` and `{address}` in one argument.
fn substitute(arg: &str, values: &[&str; 3]) -> String {
    let mut out = arg.to_owned();
    for (placeholder, value) in CHECK_PLACEHOLDERS.iter().zip(values) {
        out = out.replace(placeholder, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn target(probe: CheckProbe) -> Target {
        Target {
            service: ServiceId(0),
            node: NodeId(0),
            service_name: "www".into(),
            node_name: "app1".into(),
            address: IpAddr::from([127, 0, 0, 1]),
            check: ServiceCheck {
                probe,
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                rise: 1,
                fall: 1,
            },
            connector: None,
            initial: Health::Unknown,
        }
    }

    /// A one-connection-at-a-time server on loopback that answers every request with
    /// `answer` (nothing at all when it is empty: it reads and keeps the connection open).
    async fn server(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                if answer.is_empty() {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                } else {
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
        });
        port
    }

    fn http_probe(port: u16, expect: u16) -> CheckProbe {
        CheckProbe::Http {
            port,
            path: "/health".into(),
            expect,
        }
    }

    #[tokio::test]
    async fn http_passes_on_the_expected_status_only() {
        let ok = server("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert!(check_once(&target(http_probe(ok, 200))).await.is_ok());
        let e = check_once(&target(http_probe(ok, 204))).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("127.0.0.1:{ok} answered /health with HTTP 200, not 204")
        );
        let garbage = server("SSH-2.0-OpenSSH\r\n").await;
        let e = check_once(&target(http_probe(garbage, 200)))
            .await
            .unwrap_err();
        assert!(matches!(e, CheckError::NotHttp { .. }), "{e}");
        let silent = server("").await;
        let e = check_once(&target(http_probe(silent, 200)))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("no answer from 127.0.0.1:{silent} within 500ms")
        );
    }

    #[tokio::test]
    async fn tcp_passes_when_the_port_accepts_and_fails_when_refused() {
        let open = server("x").await;
        assert!(
            check_once(&target(CheckProbe::Tcp { port: open }))
                .await
                .is_ok()
        );
        // A port that was just free: bound, then closed.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let e = check_once(&target(CheckProbe::Tcp { port: closed }))
            .await
            .unwrap_err();
        assert!(
            crate::controller::describe(&e)
                .starts_with(&format!("cannot connect to 127.0.0.1:{closed}: ")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_command_check_without_ssh_says_so() {
        let argv = vec!["true".to_owned()];
        let e = check_once(&target(CheckProbe::Command { argv }))
            .await
            .unwrap_err();
        assert!(matches!(e, CheckError::Command(HookError::NoMirror)), "{e}");
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_code("HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(status_code("HTTP/1.0 200"), Some(200));
        assert_eq!(status_code("HTTP/1.1 99 Odd"), None);
        assert_eq!(status_code("ICY 200 OK"), None);
        assert_eq!(status_code(""), None);
        assert_eq!(
            substitute(
                "--svc={service}@{node}:{address}",
                &["www", "app1", "10.0.0.1"]
            ),
            "--svc=www@app1:10.0.0.1"
        );
    }
}
