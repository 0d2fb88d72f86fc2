//! The soak's workload client: runs on a lab host of its own, finds the service's primary
//! through the terminal server's DNS (keeping an answer exactly as long as its TTL), and
//! writes sequence-numbered records to it over SSH. A write counts as acknowledged only
//! when the member answers that the record is on its disk.
//!
//! Why SSH and not a TCP writer of our own on each member: sshd is already every member's
//! authenticated way in, the lab revives it after a crash (a writer service would need
//! reviving too), and one long-lived session per primary costs one handshake per change of
//! primary, not one per write. The session runs the member-side writer
//! (`dnsd-bench soak-member`) and speaks one line per request and per answer.
//!
//! A client writes one record at a time. An answer that does not come within
//! [`ANSWER_TIMEOUT`] ends the session and leaves that record *indeterminate*: it may or
//! may not be on disk, and the checker does not count it either way.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dnsq;
use crate::machine::now_ms;
use crate::procs;

/// Longest wait for the writer's answer to one write.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a new session's `READY` line.
const READY_TIMEOUT: Duration = Duration::from_secs(8);
/// Longest wait for a DNS answer.
const DNS_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause after a refused or failed write before the next attempt.
const BACKOFF: Duration = Duration::from_millis(200);

/// What every client of a run shares.
#[derive(Debug, Default)]
pub struct Shared {
    /// The next record number (records are numbered across clients, from 1).
    pub seq: AtomicU64,
    /// Raised when the clients must stop.
    pub stop: AtomicBool,
}

/// One client's settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub id: u64,
    /// The terminal servers' DNS addresses this client asks: the first until it fails to
    /// answer, then the next (a cluster's terminal servers all answer; one may be down).
    pub dns: Vec<SocketAddr>,
    /// The service's name, fully qualified.
    pub name: String,
    /// The address to send DNS queries from (the client host's).
    pub local: IpAddr,
    /// Writes per second this client aims at.
    pub rate: u32,
    /// `ssh` options (identity, known hosts, strict checking).
    pub ssh_options: Vec<String>,
    /// The writer's command line on the member.
    pub writer: Vec<String>,
    /// Where ssh's own errors go.
    pub ssh_log: PathBuf,
    /// Upper bound on attempts (with the stop flag, bounds the loop).
    pub max_attempts: u64,
    /// How long to wait before the first write, so that clients' DNS caches expire at
    /// different times, as independent clients' do.
    pub start_delay: Duration,
}

/// A write the primary acknowledged: the record is on its disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    pub seq: u64,
    pub client: u64,
    /// The member that took it, as it names itself.
    pub node: String,
    /// The epoch its gate was open in.
    pub epoch: u64,
    /// When the member wrote it (ns since the Unix epoch, the lab's one clock).
    pub at_ns: u64,
}

/// Everything a client saw.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClientReport {
    pub acks: Vec<Ack>,
    /// Writes the member refused (its gate was closed): never on disk.
    pub refused: Vec<u64>,
    /// Writes whose answer never came: maybe on disk, maybe not.
    pub indeterminate: Vec<u64>,
    /// Refusals by reason (first words).
    pub refusals: BTreeMap<String, u64>,
    pub sessions: u64,
    pub session_failures: u64,
    pub dns_queries: u64,
    pub dns_failures: u64,
    /// Each change of the DNS answer: (ms since the Unix epoch, the address named).
    pub answers: Vec<(u64, Option<IpAddr>)>,
}

/// An answer from DNS, kept until its TTL runs out.
struct Cached {
    addr: Option<IpAddr>,
    until: Instant,
}

/// Why no writer session could be opened on a member.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("opening {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("starting ssh: {0}")]
    Spawn(std::io::Error),
    #[error("ssh without pipes")]
    NoPipes,
    #[error("the writer said {0:?}")]
    Said(String),
    #[error("no READY from {addr} (see {log})")]
    NoReady { addr: IpAddr, log: String },
}

/// An SSH session running the writer on one member.
struct Session {
    addr: IpAddr,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Session {
    fn open(cfg: &ClientConfig, addr: IpAddr) -> Result<Session, SessionError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.ssh_log)
            .map_err(|source| SessionError::Log {
                path: cfg.ssh_log.display().to_string(),
                source,
            })?;
        // Our timeouts first: ssh keeps the first value it is given for an option.
        let mut child = Command::new("ssh")
            .args(["-o", "ConnectTimeout=3", "-o", "ServerAliveInterval=1"])
            .args(["-o", "ServerAliveCountMax=3"])
            .args(&cfg.ssh_options)
            .arg(format!("root@{addr}"))
            .args(&cfg.writer)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(SessionError::Spawn)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SessionError::NoPipes);
        };
        let (tx, lines) = mpsc::channel();
        // Ends at the end of ssh's output (when the session ends or is killed).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let session = Session {
            addr,
            child,
            stdin,
            lines,
        };
        match session.lines.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.starts_with("READY ") => Ok(session),
            Ok(line) => Err(SessionError::Said(line)),
            Err(_) => Err(SessionError::NoReady {
                addr,
                log: cfg.ssh_log.display().to_string(),
            }),
        }
    }

    /// Sends write `seq` and waits for its answer.
    fn write(&mut self, seq: u64, client: u64) -> Outcome {
        if writeln!(self.stdin, "W {seq} {client}")
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Outcome::Lost("the session ended".into());
        }
        // One request at a time: the next line is this write's answer.
        let Ok(line) = self.lines.recv_timeout(ANSWER_TIMEOUT) else {
            return Outcome::Lost("no answer in time".into());
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["OK", s, node, epoch, at] if s.parse() == Ok(seq) => {
                match (epoch.parse(), at.parse()) {
                    (Ok(epoch), Ok(at_ns)) => Outcome::Acked(Ack {
                        seq,
                        client,
                        node: (*node).to_owned(),
                        epoch,
                        at_ns,
                    }),
                    _ => Outcome::Lost(format!("unreadable answer {line:?}")),
                }
            }
            ["NO", s, why @ ..] if s.parse() == Ok(seq) => {
                Outcome::Refused(why.iter().take(2).copied().collect::<Vec<_>>().join(" "))
            }
            _ => Outcome::Lost(format!("unexpected answer {line:?}")),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Outcome {
    Acked(Ack),
    Refused(String),
    Lost(String),
}

/// Runs one client until `shared.stop` (or a stop request, or `max_attempts`). Call it on a
/// thread inside the client host's network namespace: its sockets and its ssh are the
/// host's.
pub fn run(cfg: &ClientConfig, shared: &Shared) -> ClientReport {
    let mut report = ClientReport::default();
    let mut resolver = match dnsq::Client::bound(SocketAddr::new(cfg.local, 0), DNS_TIMEOUT) {
        Ok(r) => r,
        Err(error) => {
            report
                .refusals
                .insert(format!("no DNS client: {error:#}"), 1);
            return report;
        }
    };
    let mut cached: Option<Cached> = None;
    let mut session: Option<Session> = None;
    // Which of `cfg.dns` is asked; moves on to the next after a failure.
    let mut server = 0usize;
    if procs::sleep(cfg.start_delay).is_err() {
        return report;
    }
    let period = Duration::from_secs(1) / cfg.rate.max(1);
    let mut next = Instant::now();
    for _ in 0..cfg.max_attempts {
        if shared.stop.load(Ordering::SeqCst) || procs::stopping() {
            break;
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next = next.max(Instant::now()) + period;
        // The address, from the cache while its TTL lasts, else from DNS.
        if cached.as_ref().is_none_or(|c| Instant::now() >= c.until) {
            report.dns_queries += 1;
            let Some(&dns) = cfg.dns.get(server % cfg.dns.len().max(1)) else {
                report.dns_failures += 1;
                std::thread::sleep(BACKOFF);
                continue;
            };
            match resolver.query(dns, &cfg.name, hickory_proto::rr::RecordType::A) {
                Ok(answer) => {
                    let addr = answer.addrs.first().copied();
                    if report.answers.last().map(|(_, a)| *a) != Some(addr) {
                        report.answers.push((now_ms(), addr));
                    }
                    let ttl = Duration::from_secs(u64::from(answer.ttl.unwrap_or(0)));
                    cached = Some(Cached {
                        addr,
                        until: Instant::now() + ttl,
                    });
                }
                Err(_) => {
                    report.dns_failures += 1;
                    cached = None;
                    server = server.wrapping_add(1);
                    std::thread::sleep(BACKOFF);
                    continue;
                }
            }
        }
        let Some(addr) = cached.as_ref().and_then(|c| c.addr) else {
            std::thread::sleep(BACKOFF);
            continue;
        };
        if session.as_ref().is_some_and(|s| s.addr != addr) {
            session = None;
        }
        if session.is_none() {
            report.sessions += 1;
            match Session::open(cfg, addr) {
                Ok(s) => session = Some(s),
                Err(why) => {
                    report.session_failures += 1;
                    *report
                        .refusals
                        .entry(first_words(&why.to_string()))
                        .or_default() += 1;
                    std::thread::sleep(BACKOFF);
                    continue;
                }
            }
        }
        let Some(open) = session.as_mut() else {
            continue;
        };
        let seq = shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        match open.write(seq, cfg.id) {
            Outcome::Acked(ack) => report.acks.push(ack),
            Outcome::Refused(why) => {
                report.refused.push(seq);
                *report.refusals.entry(why).or_default() += 1;
                std::thread::sleep(BACKOFF);
            }
            Outcome::Lost(why) => {
                report.indeterminate.push(seq);
                *report.refusals.entry(first_words(&why)).or_default() += 1;
                session = None;
                std::thread::sleep(BACKOFF);
            }
        }
    }
    report
}

/// The first three words of a message, as a counting key.
fn first_words(text: &str) -> String {
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
