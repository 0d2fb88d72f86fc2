//! Several terminal servers against one: three `dnsd` sharing one etcd (a cluster) and one
//! standalone `dnsd`, all watching the same three pool members with the same heartbeat
//! settings, on this machine's loopback.
//!
//! The pool: one heartbeat `echod` process per member (m1, m2, m3 on 127.77.0.1-3), so a
//! member is crashed by killing its echod by PID (SIGKILL): its address stays, probes are
//! refused at once, as with the lab's crash in `failover`. Loopback rather than the lab:
//! no root, no namespaces and no relayed frames, so fewer moving parts between the crash
//! and the answer, and the terminal servers (each its own process, its own DNS port and
//! control socket) see the pool the same way as standalone dnsd does. etcd is the tests'
//! single-node etcd on loopback ([`integration::etcd::EtcdServer`]).
//!
//! Five phases, each optional (`--phases`):
//!
//! - `steady`: etcd's writes over one window with nothing happening (views are written on
//!   change, keep-alives are not writes);
//! - `failover`: trials in which m1 (the primary) is crashed; DNS of standalone dnsd and of
//!   every terminal server is polled every 10 ms until it names m2; then m1 is revived and
//!   polled until every one names m1 again (`failback_after = "0s"`). Standalone and
//!   cluster are timed on the same crash, so both meet the same load;
//! - `takeover`: trials in which the leader's dnsd is killed (SIGKILL) and m1 crashed right
//!   after: timed until a survivor says it leads, and until DNS on both survivors names m2
//!   (the new leader's first decision). The killed dnsd is started again after each trial;
//! - `flap`: etcd's writes over one window while m3 (a secondary) goes down and up every
//!   `--flap-every`;
//! - `failovers`: etcd's writes over one window while m1 is crashed and revived every
//!   `--failover-every` (a failover, then a failback, and so on).
//!
//! etcd's writes are counted three ways: its revision (one per write transaction, a lease
//! expiry included), its history between two revisions (which keys, read back through a
//! watch from the first revision: views, state, epochs, servers, leader), and its own
//! metrics (puts, transactions, raft proposals, WAL fsyncs, and lease keep-alive requests,
//! which are not writes). The services here set `flap_threshold = 0`: the flap quarantine
//! would stop failbacks after two trials, and the figures are of the mechanism.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dnsd_api::{Event, EventKind, Health, Status};
use integration::etcd::EtcdServer;
use serde_json::{Value, json};

use crate::daemon::{Dnsd, wait_for};
use crate::dnsq;
use crate::machine;
use crate::procs::{self, Guard};
use crate::report::{Reporter, num, say};
use crate::stats;

/// The name every server answers for the service.
const NAME: &str = "www.svc.test.";
/// The zone, and etcd's prefix: keys live under `/dnsd/svc.test/`.
const ZONE: &str = "svc.test.";
const PREFIX: &str = "/dnsd/";
/// The members' echo port.
const ECHO_PORT: u16 = 17_077;
/// The members' names; member i is at 127.77.0.(i+1).
const MEMBERS: [&str; 3] = ["m1", "m2", "m3"];
/// The terminal servers' names.
const TS: [&str; 3] = ["ts1", "ts2", "ts3"];
/// How often DNS is polled during a trial.
const POLL: Duration = Duration::from_millis(10);
/// How often a survivor's status is asked who leads during a takeover (every third poll).
const STATUS_EVERY: u32 = 3;
/// Longest wait for a failover or failback before the trial is recorded as timed out.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for everything to settle (every server naming the primary, every
/// terminal server registered and seeing every member up).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for an echod to accept connections after its start.
const ECHOD_READY: Duration = Duration::from_secs(10);
/// Longest read of etcd's history for one window.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(20);

/// The phases of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Steady,
    Failover,
    Takeover,
    Flap,
    Failovers,
}

/// Options of the cluster benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Failover trials (each times standalone dnsd and the three terminal servers).
    #[arg(long, default_value_t = 25)]
    pub trials: usize,
    /// Leader takeover trials.
    #[arg(long, default_value_t = 25)]
    pub takeover_trials: usize,
    /// `heartbeat.interval`, for standalone and cluster alike.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// `heartbeat.timeout`.
    #[arg(long, default_value = "400ms", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// `heartbeat.fall`.
    #[arg(long, default_value_t = 3)]
    pub fall: u32,
    /// `heartbeat.rise`.
    #[arg(long, default_value_t = 3)]
    pub rise: u32,
    /// `cluster.lease`.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Length of each etcd window (steady, flap, failovers).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// In the `flap` window, m3 goes down or up this often.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub flap_every: Duration,
    /// In the `failovers` window, m1 is crashed or revived this often.
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub failover_every: Duration,
    /// The phases to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "steady,failover,takeover,flap,failovers"
    )]
    pub phases: Vec<Phase>,
    /// Stop starting trials and windows after this long (the run ends by itself).
    #[arg(long, default_value = "40m", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
    /// Wait until the 1-minute load average is below this before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub quiet_load: f64,
    /// Longest wait for a quiet machine.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub quiet_wait: Duration,
}

impl Args {
    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    /// What a failover should take at most: fall x interval + one interval.
    fn failover_bound_ms(&self) -> f64 {
        Self::ms(self.interval) * f64::from(self.fall + 1)
    }

    /// What a takeover should take at most: lease + fall x interval + one interval.
    fn takeover_bound_ms(&self) -> f64 {
        Self::ms(self.lease) + self.failover_bound_ms()
    }

    /// A random pause of up to two intervals (or a third of the lease, whichever is
    /// longer), so that a fault falls anywhere in the probe and keep-alive cycles.
    fn random_phase(&self) -> Duration {
        let span = (self.interval * 2).max(self.lease / 3).as_millis().max(1);
        Duration::from_millis(u64::try_from(rand::random_range(0..span)).unwrap_or(0))
    }
}

fn member_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 77, 0, u8::try_from(i + 1).unwrap_or(1))
}

/// The configuration of a dnsd watching the pool; `cluster` is its `[cluster]` section.
fn config(args: &Args, dir: &Path, cluster: Option<&str>) -> String {
    let mut c = String::new();
    if let Some(section) = cluster {
        c.push_str(section);
    }
    c.push_str(&format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"{ZONE}\"\nttl = \"1s\"\n\
         nameservers = [{{ name = \"ns1.{ZONE}\", address = \"127.0.0.1\" }}]\n\
         [heartbeat]\nprotocol = \"tcp\"\nport = {ECHO_PORT}\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\nfall = {}\nrise = {}\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n",
        args.interval.as_millis(),
        args.timeout.as_millis(),
        args.fall,
        args.rise,
        d = dir.display()
    ));
    for (i, m) in MEMBERS.iter().enumerate() {
        c.push_str(&format!(
            "[[node]]\nname = \"{m}\"\naddress = \"{}\"\n",
            member_addr(i)
        ));
    }
    c.push_str(
        "[[service]]\nname = \"www\"\nnodes = [\"m1\", \"m2\", \"m3\"]\nfailback = \"auto\"\n\
         failback_after = \"0s\"\nflap_threshold = 0\n",
    );
    c
}

/// The pool: one echod per member, crashed and revived by PID.
struct Pool {
    dir: PathBuf,
    echod: Vec<Option<Guard>>,
}

impl Pool {
    fn start(dir: &Path) -> anyhow::Result<Pool> {
        let mut pool = Pool {
            dir: dir.to_path_buf(),
            echod: (0..MEMBERS.len()).map(|_| None).collect(),
        };
        for i in 0..MEMBERS.len() {
            pool.revive(i)?;
        }
        Ok(pool)
    }

    fn up(&self, i: usize) -> bool {
        self.echod[i].is_some()
    }

    /// SIGKILL to member i's echod (a crash).
    fn crash(&mut self, i: usize) {
        if let Some(mut echod) = self.echod[i].take() {
            echod.kill_now();
        }
    }

    /// Starts member i's echod and returns once it accepts connections.
    fn revive(&mut self, i: usize) -> anyhow::Result<()> {
        if self.up(i) {
            return Ok(());
        }
        let addr = member_addr(i);
        let echod = Guard::spawn_logged(
            MEMBERS[i],
            Command::new(procs::workspace_binary("examples/echod")?)
                .arg("--addrs")
                .arg(addr.to_string())
                .arg("--port")
                .arg(ECHO_PORT.to_string())
                .arg("--protocols")
                .arg("tcp"),
            &self.dir.join(format!("{}.log", MEMBERS[i])),
        )?;
        self.echod[i] = Some(echod);
        let target = SocketAddr::from((addr, ECHO_PORT));
        let ready = wait_for(ECHOD_READY, Duration::from_millis(5), || {
            TcpStream::connect_timeout(&target, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        })?;
        if ready.is_none() {
            bail!(
                "echod for {} did not accept connections on {target}",
                MEMBERS[i]
            );
        }
        Ok(())
    }
}

/// One terminal server: its folder and configuration, its dnsd while it runs, and the
/// last event it reported.
struct Ts {
    name: &'static str,
    dir: PathBuf,
    config: String,
    dnsd: Option<Dnsd>,
    since: u64,
    starts: u32,
}

impl Ts {
    fn start(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = format!("dnsd-{}.log", self.starts);
        self.dnsd = Some(Dnsd::start_logged(&self.dir, &self.config, &log)?);
        self.since = 0;
        Ok(())
    }

    fn dnsd(&self) -> anyhow::Result<&Dnsd> {
        self.dnsd
            .as_ref()
            .with_context(|| format!("{} is not running", self.name))
    }
}

/// A dnsd (standalone or a terminal server) with its event cursor.
fn events_since(dnsd: &Dnsd, since: &mut u64) -> Vec<Event> {
    let events = dnsd.events(*since).unwrap_or_default();
    *since = events.last().map_or(*since, |e| e.seq);
    events
}

/// The time of the first event of `kind` (about `node` when given) in ms after `wall`.
fn event_after(events: &[Event], kind: EventKind, node: Option<&str>, wall: u64) -> Option<f64> {
    events
        .iter()
        .find(|e| e.kind == kind && node.is_none_or(|n| e.node.as_deref() == Some(n)))
        .map(|e| e.at_ms.saturating_sub(wall) as f64)
}

/// Reads etcd: its metrics (through the tests' etcd), and its revision and history through
/// a client of its own.
struct EtcdReader {
    rt: tokio::runtime::Runtime,
    client: etcd_client::Client,
}

/// A snapshot of etcd's counters (from `/metrics`).
#[derive(Debug, Clone, Default)]
struct Counters {
    revision: f64,
    values: BTreeMap<&'static str, f64>,
}

/// The counters kept: (label in the results, metric name, `grpc_method` label if any).
const COUNTERS: [(&str, &str, Option<&str>); 11] = [
    ("mvcc_puts", "etcd_mvcc_put_total", None),
    ("mvcc_deletes", "etcd_mvcc_delete_total", None),
    ("mvcc_txns", "etcd_mvcc_txn_total", None),
    (
        "raft_proposals",
        "etcd_server_proposals_committed_total",
        None,
    ),
    (
        "wal_fsyncs",
        "etcd_disk_wal_fsync_duration_seconds_count",
        None,
    ),
    (
        "keepalive_requests",
        "grpc_server_msg_received_total",
        Some("LeaseKeepAlive"),
    ),
    ("grpc_put", "grpc_server_handled_total", Some("Put")),
    ("grpc_txn", "grpc_server_handled_total", Some("Txn")),
    ("grpc_range", "grpc_server_handled_total", Some("Range")),
    (
        "grpc_lease_grant",
        "grpc_server_handled_total",
        Some("LeaseGrant"),
    ),
    (
        "grpc_lease_revoke",
        "grpc_server_handled_total",
        Some("LeaseRevoke"),
    ),
];

impl Counters {
    /// Parses Prometheus' text format, summing each kept counter over its other labels.
    fn parse(text: &str) -> Counters {
        let mut c = Counters::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            if name == "etcd_debugging_mvcc_current_revision" {
                c.revision = value;
            }
            for (label, metric, method) in COUNTERS {
                let method_ok =
                    method.is_none_or(|m| labels.contains(&format!("grpc_method=\"{m}\"")));
                if name == metric && method_ok {
                    *c.values.entry(label).or_default() += value;
                }
            }
        }
        c
    }

    fn delta(&self, before: &Counters) -> BTreeMap<&'static str, f64> {
        COUNTERS
            .iter()
            .map(|(label, _, _)| {
                let now = self.values.get(label).copied().unwrap_or(0.0);
                let then = before.values.get(label).copied().unwrap_or(0.0);
                (*label, now - then)
            })
            .collect()
    }
}

/// One change in etcd's history: its revision, key, kind and the value written.
#[derive(Debug)]
struct Change {
    revision: i64,
    key: String,
    put: bool,
    value: Vec<u8>,
}

/// Why a view was written, from the view before it: `new` (no view before), `health`
/// (another set of members, or a member's health or "since" changed), or `rtt_only` (only
/// round-trip times changed).
fn view_write_cause(before: Option<&[u8]>, after: &[u8]) -> &'static str {
    type View = BTreeMap<String, Value>;
    let parse = |bytes: &[u8]| serde_json::from_slice::<View>(bytes).ok();
    let (Some(before), Some(after)) = (before.and_then(parse), parse(after)) else {
        return "new";
    };
    let same_health = before.len() == after.len()
        && before.iter().zip(&after).all(|((a, va), (b, vb))| {
            a == b && va["health"] == vb["health"] && va["since_unix_ms"] == vb["since_unix_ms"]
        });
    if same_health { "rtt_only" } else { "health" }
}

impl EtcdReader {
    fn connect(endpoint: &str) -> anyhow::Result<EtcdReader> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a tokio runtime")?;
        let client = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    etcd_client::Client::connect([endpoint], None),
                )
                .await
            })
            .context("connecting to etcd: timed out")?
            .context("connecting to etcd")?;
        Ok(EtcdReader { rt, client })
    }

    fn counters(etcd: &EtcdServer) -> anyhow::Result<Counters> {
        let text = etcd.metrics().context("etcd did not give its metrics")?;
        Ok(Counters::parse(&text))
    }

    /// Every change with a revision in `(from, to]`, read through a watch from `from + 1`.
    fn history(&mut self, from: i64, to: i64) -> anyhow::Result<Vec<Change>> {
        if to <= from {
            return Ok(Vec::new());
        }
        let client = &mut self.client;
        self.rt.block_on(async {
            let options = etcd_client::WatchOptions::new()
                .with_all_keys()
                .with_start_revision(from + 1);
            let mut stream = client
                .watch("\0", Some(options))
                .await
                .context("watching etcd's history")?;
            let mut changes = Vec::new();
            let deadline = tokio::time::Instant::now() + HISTORY_TIMEOUT;
            let mut last = from;
            while last < to {
                let message = tokio::time::timeout_at(deadline, stream.message())
                    .await
                    .with_context(|| {
                        format!("etcd's history from {from} to {to}: stuck at {last}")
                    })?
                    .context("reading etcd's history")?;
                let Some(response) = message else {
                    bail!("etcd ended the history watch at revision {last}");
                };
                if response.canceled() {
                    bail!(
                        "etcd cancelled the history watch: {}",
                        response.cancel_reason()
                    );
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    last = last.max(kv.mod_revision());
                    if kv.mod_revision() > to {
                        continue;
                    }
                    changes.push(Change {
                        revision: kv.mod_revision(),
                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                        put: event.event_type() == etcd_client::EventType::Put,
                        value: kv.value().to_vec(),
                    });
                }
            }
            Ok(changes)
        })
    }

    /// The value of `key` at revision `revision`, if it existed then.
    fn value_at(&mut self, key: &str, revision: i64) -> anyhow::Result<Option<Vec<u8>>> {
        let client = &mut self.client;
        self.rt.block_on(async {
            let options = etcd_client::GetOptions::new().with_revision(revision);
            let answer = tokio::time::timeout(HISTORY_TIMEOUT, client.get(key, Some(options)))
                .await
                .with_context(|| format!("reading {key} at revision {revision}: timed out"))?
                .with_context(|| format!("reading {key} at revision {revision}"))?;
            Ok(answer.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }

    /// Why each view was written in `changes` (see [`view_write_cause`]), counted.
    fn view_write_causes(
        &mut self,
        changes: &[Change],
        from: i64,
    ) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        let mut last: BTreeMap<&str, Option<Vec<u8>>> = BTreeMap::new();
        let mut causes = BTreeMap::new();
        for c in changes.iter().filter(|c| key_class(&c.key) == "views") {
            if !last.contains_key(c.key.as_str()) {
                let before = self.value_at(&c.key, from)?;
                last.insert(&c.key, before);
            }
            let before = last.get(c.key.as_str()).cloned().flatten();
            let cause = if c.put {
                view_write_cause(before.as_deref(), &c.value)
            } else {
                "deleted"
            };
            *causes.entry(cause).or_default() += 1;
            last.insert(&c.key, c.put.then(|| c.value.clone()));
        }
        Ok(causes)
    }
}

/// The kind of a key below `<prefix><zone>/`: `views`, `servers`, `state`, `epochs`,
/// `leader`, or `other`.
fn key_class(key: &str) -> &'static str {
    let rest = key.strip_prefix(PREFIX).unwrap_or(key);
    let class = rest.split('/').nth(1).unwrap_or("");
    match class {
        "views" => "views",
        "servers" => "servers",
        "state" => "state",
        "epochs" => "epochs",
        "leader" => "leader",
        _ => "other",
    }
}

/// Everything running: the pool, etcd, the terminal servers and (in the failover phase)
/// standalone dnsd. Fields drop in order: dnsd first, then etcd, then the pool.
struct Bench<'a> {
    args: &'a Args,
    out: &'a Reporter,
    standalone: Option<(Dnsd, u64)>,
    ts: Vec<Ts>,
    reader: EtcdReader,
    etcd: EtcdServer,
    pool: Pool,
    client: dnsq::Client,
    dir: PathBuf,
}

impl Bench<'_> {
    fn running(&self) -> Vec<usize> {
        (0..self.ts.len())
            .filter(|&i| self.ts[i].dnsd.is_some())
            .collect()
    }

    /// The DNS addresses polled: standalone first (if running), then every running
    /// terminal server; with a label each.
    fn dns_servers(&self) -> Vec<(String, SocketAddr)> {
        let mut servers = Vec::new();
        if let Some((dnsd, _)) = &self.standalone {
            servers.push(("standalone".to_owned(), dnsd.dns()));
        }
        for ts in &self.ts {
            if let Some(dnsd) = &ts.dnsd {
                servers.push((ts.name.to_owned(), dnsd.dns()));
            }
        }
        servers
    }

    /// The leader, as every running terminal server names it (`None` unless they agree).
    fn leader(&self) -> Option<usize> {
        let mut names = self.running().into_iter().map(|i| {
            let status = self.ts[i].dnsd().ok()?.status().ok()?;
            status.cluster?.leader
        });
        let first = names.next()??;
        if names.all(|n| n.as_deref() == Some(first.as_str())) {
            TS.iter().position(|&t| t == first)
        } else {
            None
        }
    }

    /// Whether everything is settled on member `primary`: every running dnsd names it,
    /// sees every member up and has no transition under way; every terminal server counts
    /// every running one, agrees on a leader and has every member seen up by all.
    fn settled(&mut self, primary: usize) -> bool {
        let want = vec![IpAddr::V4(member_addr(primary))];
        let n = u32::try_from(self.running().len()).unwrap_or(0);
        let calm = |s: &Status, cluster: bool| {
            let www = s.service("www");
            www.is_some_and(|w| w.primary == MEMBERS[primary] && w.transition.is_none())
                && s.nodes.iter().all(|node| {
                    node.health == Health::Up
                        && (!cluster || node.observers.is_some_and(|o| o.up == n))
                })
                && (!cluster
                    || s.cluster.as_ref().is_some_and(|c| {
                        c.leader.is_some() && u32::try_from(c.servers.len()).ok() == Some(n)
                    }))
        };
        if let Some((dnsd, _)) = &self.standalone
            && !dnsd.status().is_ok_and(|s| calm(&s, false))
        {
            return false;
        }
        for i in self.running() {
            let Ok(dnsd) = self.ts[i].dnsd() else {
                return false;
            };
            if !dnsd.status().is_ok_and(|s| calm(&s, true)) {
                return false;
            }
        }
        if self.leader().is_none() {
            return false;
        }
        let servers = self.dns_servers();
        servers
            .iter()
            .all(|(_, addr)| self.client.a(*addr, NAME).as_ref() == Some(&want))
    }

    fn wait_settled(&mut self, primary: usize, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            procs::check_stop()?;
            if self.settled(primary) {
                return Ok(());
            }
            procs::sleep(Duration::from_millis(100))?;
        }
        bail!(
            "not settled on {} ({what}) within {SETTLE_TIMEOUT:?}\n{}",
            MEMBERS[primary],
            self.logs()
        )
    }

    /// Every dnsd's status and the tail of its log, for an error message.
    fn logs(&self) -> String {
        let mut text = String::new();
        if let Some((dnsd, _)) = &self.standalone {
            text.push_str(&format!(
                "--- standalone: {:?}\n{}\n",
                dnsd.status().ok(),
                dnsd.log_tail(20)
            ));
        }
        for ts in &self.ts {
            if let Some(dnsd) = &ts.dnsd {
                text.push_str(&format!(
                    "--- {}: {:?}\n{}\n",
                    ts.name,
                    dnsd.status().ok(),
                    dnsd.log_tail(20)
                ));
            }
        }
        text
    }

    /// Drains every dnsd's events up to now (so a trial sees only its own).
    fn skip_events(&mut self) {
        if let Some((dnsd, since)) = &mut self.standalone {
            events_since(dnsd, since);
        }
        for ts in &mut self.ts {
            if let Some(dnsd) = &ts.dnsd {
                events_since(dnsd, &mut ts.since);
            }
        }
    }

    fn ts_events(&mut self, i: usize) -> Vec<Event> {
        let ts = &mut self.ts[i];
        match &ts.dnsd {
            Some(dnsd) => events_since(dnsd, &mut ts.since),
            None => Vec::new(),
        }
    }

    fn revision(&self) -> anyhow::Result<i64> {
        Ok(EtcdReader::counters(&self.etcd)?.revision as i64)
    }

    /// One failover trial: crash m1, time every server to m2; revive m1, time every server
    /// back to m1.
    fn failover_trial(&mut self, trial: usize, last_revision: &mut i64) -> anyhow::Result<Value> {
        self.wait_settled(0, &format!("before failover trial {trial}"))?;
        let revision = self.revision()?;
        let revisions_since_last = revision - *last_revision;
        *last_revision = revision;
        let leader = self.leader().context("no leader")?;
        self.skip_events();
        procs::sleep(self.args.random_phase())?;

        let servers = self.dns_servers();
        let addrs: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();
        let crash_wall = machine::now_ms();
        let t0 = Instant::now();
        self.pool.crash(0);
        let crash_ms = Args::ms(t0.elapsed());
        let want = [IpAddr::V4(member_addr(1))];
        let failover = self
            .client
            .poll_until(&addrs, NAME, &want, t0, TRIAL_TIMEOUT, POLL)?;
        let leader_events = self.ts_events(leader);
        let standalone_events = match &mut self.standalone {
            Some((dnsd, since)) => events_since(dnsd, since),
            None => Vec::new(),
        };

        procs::sleep(self.args.random_phase())?;
        let t1 = Instant::now();
        self.pool.revive(0)?;
        let revive_ms = Args::ms(t1.elapsed());
        let want = [IpAddr::V4(member_addr(0))];
        let failback = self
            .client
            .poll_until(&addrs, NAME, &want, t1, TRIAL_TIMEOUT, POLL)?;

        let by_name = |v: &[Option<f64>]| -> BTreeMap<String, Option<f64>> {
            servers
                .iter()
                .zip(v)
                .map(|((name, _), t)| (name.clone(), *t))
                .collect()
        };
        let cluster_times = |v: &[Option<f64>]| -> Vec<Option<f64>> {
            servers
                .iter()
                .zip(v)
                .filter(|((name, _), _)| name != "standalone")
                .map(|(_, t)| *t)
                .collect()
        };
        let (fo_slowest, fo_median) = slowest_and_median(&cluster_times(&failover));
        let (fb_slowest, fb_median) = slowest_and_median(&cluster_times(&failback));
        let standalone_fo = servers
            .iter()
            .position(|(n, _)| n == "standalone")
            .and_then(|i| failover[i]);
        let standalone_fb = servers
            .iter()
            .position(|(n, _)| n == "standalone")
            .and_then(|i| failback[i]);
        let record = json!({
            "bench": "cluster", "type": "failover_trial", "trial": trial,
            "leader": TS[leader],
            "crash_call_ms": crash_ms, "revive_call_ms": revive_ms,
            "failover_ms": by_name(&failover),
            "failback_ms": by_name(&failback),
            "standalone_failover_ms": standalone_fo,
            "cluster_failover_slowest_ms": fo_slowest,
            "cluster_failover_median_ms": fo_median,
            "standalone_failback_ms": standalone_fb,
            "cluster_failback_slowest_ms": fb_slowest,
            "cluster_failback_median_ms": fb_median,
            "ratio_slowest": ratio(fo_slowest, standalone_fo),
            "ratio_median": ratio(fo_median, standalone_fo),
            "standalone_node_down_event_ms": event_after(&standalone_events, EventKind::NodeDown, Some(MEMBERS[0]), crash_wall),
            "standalone_failover_event_ms": event_after(&standalone_events, EventKind::Failover, None, crash_wall),
            "leader_failover_event_ms": event_after(&leader_events, EventKind::Failover, None, crash_wall),
            "etcd_revisions_since_last_trial": revisions_since_last,
        });
        say(format!(
            "failover {trial:2}: standalone {} ms; cluster slowest {} ms, median {} ms (leader {}); failback standalone {} ms, cluster slowest {} ms",
            num(standalone_fo, 0),
            num(fo_slowest, 0),
            num(fo_median, 0),
            TS[leader],
            num(standalone_fb, 0),
            num(fb_slowest, 0),
        ));
        Ok(record)
    }

    /// One takeover trial: SIGKILL the leader's dnsd, crash m1 at once; time until a
    /// survivor leads, and until every survivor's DNS names m2. Then start the killed dnsd
    /// again and revive m1.
    fn takeover_trial(&mut self, trial: usize) -> anyhow::Result<Value> {
        self.wait_settled(0, &format!("before takeover trial {trial}"))?;
        let old = self.leader().context("no leader")?;
        self.skip_events();
        procs::sleep(self.args.random_phase())?;

        let survivors: Vec<usize> = self.running().into_iter().filter(|&i| i != old).collect();
        let addrs: Vec<SocketAddr> = survivors
            .iter()
            .filter_map(|&i| self.ts[i].dnsd.as_ref().map(Dnsd::dns))
            .collect();
        let wall = machine::now_ms();
        let t0 = Instant::now();
        if let Some(dnsd) = self.ts[old].dnsd.as_mut() {
            let _ = dnsd.kill();
        }
        self.pool.crash(0);
        let kill_ms = Args::ms(t0.elapsed());

        let want = vec![IpAddr::V4(member_addr(1))];
        let limit = TRIAL_TIMEOUT + self.args.lease * 2;
        let mut dns: Vec<Option<f64>> = vec![None; addrs.len()];
        let mut new_leader: Option<(usize, f64)> = None;
        let mut tick = 0u32;
        while (new_leader.is_none() || dns.iter().any(Option::is_none)) && t0.elapsed() < limit {
            procs::check_stop()?;
            for (k, addr) in addrs.iter().enumerate() {
                if dns[k].is_none() && self.client.a(*addr, NAME).as_ref() == Some(&want) {
                    dns[k] = Some(Args::ms(t0.elapsed()));
                }
            }
            if new_leader.is_none() && tick.is_multiple_of(STATUS_EVERY) {
                for &i in &survivors {
                    let leading = self.ts[i]
                        .dnsd()
                        .ok()
                        .and_then(|d| d.status().ok())
                        .and_then(|s| s.cluster)
                        .is_some_and(|c| c.leading);
                    if leading {
                        new_leader = Some((i, Args::ms(t0.elapsed())));
                        break;
                    }
                }
            }
            tick += 1;
            let next = t0 + POLL * tick;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        let (leader_events, new_leader_name) = match new_leader {
            Some((i, _)) => (self.ts_events(i), Some(TS[i])),
            None => (Vec::new(), None),
        };
        let (slowest, median) = slowest_and_median(&dns);
        let leadership_event_ms = event_after(&leader_events, EventKind::Leadership, None, wall);
        let failover_event_ms = event_after(&leader_events, EventKind::Failover, None, wall);
        let record = json!({
            "bench": "cluster", "type": "takeover_trial", "trial": trial,
            "old_leader": TS[old], "new_leader": new_leader_name,
            "kill_call_ms": kill_ms,
            "new_leader_status_ms": new_leader.map(|(_, t)| t),
            "leadership_event_ms": leadership_event_ms,
            "failover_event_ms": failover_event_ms,
            "dns_all_ms": slowest,
            "dns_median_ms": median,
            "dns_ms": survivors.iter().zip(&dns).map(|(&i, t)| (TS[i].to_owned(), *t)).collect::<BTreeMap<_, _>>(),
            "bound_ms": self.args.takeover_bound_ms(),
            "lease_ms": Args::ms(self.args.lease),
        });
        say(format!(
            "takeover {trial:2}: {} killed; {} leads after {} ms (event {} ms); failover event {} ms; DNS everywhere {} ms (bound {:.0} ms)",
            TS[old],
            new_leader_name.unwrap_or("nobody"),
            num(new_leader.map(|(_, t)| t), 0),
            num(leadership_event_ms, 0),
            num(failover_event_ms, 0),
            num(slowest, 0),
            self.args.takeover_bound_ms(),
        ));

        // Back to three terminal servers and m1 primary.
        if let Some(mut dnsd) = self.ts[old].dnsd.take() {
            let _ = dnsd.kill();
        }
        self.ts[old].start()?;
        self.pool.revive(0)?;
        Ok(record)
    }

    /// An etcd window from a settled pool in which member `member` crashes and revives in
    /// turn every `every`; it is up again after.
    fn crash_revive_window(
        &mut self,
        name: &str,
        every: Duration,
        member: usize,
    ) -> anyhow::Result<Value> {
        self.wait_settled(0, &format!("before the {name} window"))?;
        let record = self.window(name, Some(every), |pool| {
            if pool.up(member) {
                pool.crash(member);
                Ok(())
            } else {
                pool.revive(member)
            }
        })?;
        self.pool.revive(member)?;
        Ok(record)
    }

    /// One etcd window: counters, revision and history over `self.args.window` while
    /// `churn` runs every `every` (if any); returns the window's record.
    fn window(
        &mut self,
        name: &str,
        every: Option<Duration>,
        mut churn: impl FnMut(&mut Pool) -> anyhow::Result<()>,
    ) -> anyhow::Result<Value> {
        let leader = self.leader();
        if let Some(l) = leader {
            self.ts_events(l);
        }
        let before = EtcdReader::counters(&self.etcd)?;
        let start = Instant::now();
        let mut actions = 0u32;
        if let Some(every) = every.filter(|e| !e.is_zero()) {
            for k in 1u32.. {
                let at = start + every * k;
                if at >= start + self.args.window {
                    break;
                }
                procs::sleep(at.saturating_duration_since(Instant::now()))?;
                churn(&mut self.pool)?;
                actions += 1;
            }
        }
        procs::sleep((start + self.args.window).saturating_duration_since(Instant::now()))?;
        let after = EtcdReader::counters(&self.etcd)?;
        let seconds = start.elapsed().as_secs_f64();
        let (from, to) = (before.revision as i64, after.revision as i64);
        let changes = self.reader.history(from, to)?;
        let view_causes = self.reader.view_write_causes(&changes, from)?;
        let leader_events = leader.map(|l| self.ts_events(l)).unwrap_or_default();
        let count = |kind: EventKind| leader_events.iter().filter(|e| e.kind == kind).count();

        let mut by_class: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
        for c in &changes {
            let class = by_class.entry(key_class(&c.key)).or_default();
            *class
                .entry(if c.put { "put" } else { "delete" })
                .or_default() += 1;
            *by_key.entry(c.key.clone()).or_default() += 1;
        }
        let mut revisions: Vec<i64> = changes.iter().map(|c| c.revision).collect();
        revisions.dedup();
        let metrics = after.delta(&before);
        let per_s: BTreeMap<&str, f64> = metrics.iter().map(|(k, v)| (*k, v / seconds)).collect();
        let record = json!({
            "bench": "cluster", "type": "etcd_window", "window": name,
            "seconds": seconds, "churn_actions": actions, "churn_every_s": every.map(|e| e.as_secs_f64()),
            "revision_from": from, "revision_to": to,
            "revisions": to - from, "revisions_per_s": (to - from) as f64 / seconds,
            "revisions_in_history": revisions.len(),
            "key_changes_by_class": by_class,
            "key_changes_by_key": by_key,
            "view_writes_by_cause": view_causes,
            "metrics": metrics, "metrics_per_s": per_s,
            "leader_failovers": count(EventKind::Failover),
            "leader_failbacks": count(EventKind::Failback),
            "leader_node_down": count(EventKind::NodeDown),
            "leader_node_up": count(EventKind::NodeUp),
            "loadavg": machine::loadavg(),
        });
        say(format!(
            "etcd {name:9}: {} revisions in {seconds:.0} s ({:.3}/s); keep-alive requests {:.2}/s; puts {:.3}/s, txns {:.3}/s, fsyncs {:.2}/s; changes by key class {:?}",
            to - from,
            (to - from) as f64 / seconds,
            per_s.get("keepalive_requests").copied().unwrap_or(0.0),
            per_s.get("grpc_put").copied().unwrap_or(0.0),
            per_s.get("grpc_txn").copied().unwrap_or(0.0),
            per_s.get("wal_fsyncs").copied().unwrap_or(0.0),
            by_class,
        ));
        say(format!("  view writes by cause: {view_causes:?}"));
        Ok(record)
    }
}

/// The slowest and the median of some times; `None` for the slowest when any is missing
/// (a server that never answered).
fn slowest_and_median(times: &[Option<f64>]) -> (Option<f64>, Option<f64>) {
    let got: Vec<f64> = times.iter().flatten().copied().collect();
    let slowest = if got.len() == times.len() {
        got.iter().copied().reduce(f64::max)
    } else {
        None
    };
    (slowest, stats::median(&got))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Runs the cluster benchmark.
pub fn run(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    procs::require_programs(&["etcd"])?;
    if args.lease < args.interval * 2 {
        bail!("--lease must be at least 2 x --interval (dnsd refuses it otherwise)");
    }
    let started = Instant::now();
    out.emit(&machine::environment("cluster"));
    out.emit(&json!({
        "bench": "cluster", "type": "settings",
        "interval_ms": Args::ms(args.interval), "timeout_ms": Args::ms(args.timeout),
        "fall": args.fall, "rise": args.rise, "lease_ms": Args::ms(args.lease),
        "failover_bound_ms": args.failover_bound_ms(), "takeover_bound_ms": args.takeover_bound_ms(),
        "window_s": args.window.as_secs_f64(), "flap_every_s": args.flap_every.as_secs_f64(),
        "failover_every_s": args.failover_every.as_secs_f64(),
        "members": MEMBERS.iter().enumerate().map(|(i, m)| format!("{m} {}", member_addr(i))).collect::<Vec<_>>(),
        "crash": "SIGKILL to the member's echod (its address stays: probes are refused at once)",
    }));
    // Before this benchmark's own processes exist: they add to the load themselves.
    let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
    out.emit(&json!({"bench": "cluster", "type": "quiet", "state": quiet}));

    let dir = procs::temp_dir("dnsd-bench-cluster-")?;
    let pool = Pool::start(dir.path())?;
    let etcd = EtcdServer::start().map_err(|e| anyhow::anyhow!("etcd did not start: {e}"))?;
    let endpoint = etcd.endpoint();
    say(format!(
        "etcd at {endpoint} (pid {}), members {}",
        etcd.pid(),
        (0..MEMBERS.len())
            .map(|i| format!("{} {}", MEMBERS[i], member_addr(i)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let reader = EtcdReader::connect(&endpoint)?;
    let ts = TS
        .iter()
        .map(|&name| -> anyhow::Result<Ts> {
            let tdir = dir.path().join(name);
            std::fs::create_dir_all(&tdir)?;
            let section = format!(
                "[cluster]\nname = \"{name}\"\netcd = [\"{endpoint}\"]\nprefix = \"{PREFIX}\"\nlease = \"{}ms\"\n",
                args.lease.as_millis()
            );
            Ok(Ts {
                name,
                config: config(args, &tdir, Some(&section)),
                dir: tdir,
                dnsd: None,
                since: 0,
                starts: 0,
            })
        })
        .collect::<anyhow::Result<Vec<Ts>>>()?;
    let mut bench = Bench {
        args,
        out,
        standalone: None,
        ts,
        reader,
        etcd,
        pool,
        client: dnsq::Client::new(Duration::from_millis(50))?,
        dir: dir.path().to_path_buf(),
    };
    for ts in &mut bench.ts {
        ts.start()?;
    }
    bench.wait_settled(0, "after the start")?;
    let result = phases(&mut bench, started);
    out.emit(&json!({"bench": "cluster", "type": "end", "loadavg": machine::loadavg(), "elapsed_s": started.elapsed().as_secs()}));
    result
}

fn phases(bench: &mut Bench<'_>, started: Instant) -> anyhow::Result<()> {
    let (args, out) = (bench.args, bench.out);
    let over = |what: &str| {
        let over = started.elapsed() > args.time_limit;
        if over {
            say(format!(
                "time limit {:?} reached: {what} not run",
                args.time_limit
            ));
            out.emit(&json!({"bench": "cluster", "type": "time_limit", "skipped": what}));
        }
        over
    };
    let mut failover_trials = Vec::new();
    let mut takeover_trials = Vec::new();
    let mut windows = Vec::new();
    for &phase in &args.phases {
        match phase {
            Phase::Steady => {
                if over("the steady window") {
                    break;
                }
                bench.wait_settled(0, "before the steady window")?;
                // Whatever settling wrote is behind us: a few intervals of nothing.
                procs::sleep(args.interval * (args.rise + 2))?;
                let record = bench.window("steady", None, |_| Ok(()))?;
                out.emit(&record);
                windows.push(record);
            }
            Phase::Failover => {
                let sdir = bench.dir.join("standalone");
                std::fs::create_dir_all(&sdir)?;
                let standalone = Dnsd::start(&sdir, &config(args, &sdir, None))?;
                bench.standalone = Some((standalone, 0));
                let mut last_revision = bench.revision()?;
                for trial in 1..=args.trials {
                    if over(&format!("failover trials from {trial}")) {
                        break;
                    }
                    let record = bench.failover_trial(trial, &mut last_revision)?;
                    out.emit(&record);
                    failover_trials.push(record);
                }
                bench.standalone = None;
                summarize_failover(&failover_trials, args, out);
            }
            Phase::Takeover => {
                for trial in 1..=args.takeover_trials {
                    if over(&format!("takeover trials from {trial}")) {
                        break;
                    }
                    let record = bench.takeover_trial(trial)?;
                    out.emit(&record);
                    takeover_trials.push(record);
                }
                summarize_takeover(&takeover_trials, args, out);
            }
            // A secondary flapping; the primary failing over and back.
            Phase::Flap | Phase::Failovers => {
                let (name, every, member) = match phase {
                    Phase::Flap => ("flap", args.flap_every, 2),
                    _ => ("failovers", args.failover_every, 0),
                };
                if over(&format!("the {name} window")) {
                    break;
                }
                let record = bench.crash_revive_window(name, every, member)?;
                out.emit(&record);
                windows.push(record);
            }
        }
    }
    if !windows.is_empty() {
        summarize_windows(&windows, out);
    }
    Ok(())
}

fn samples(trials: &[Value], key: &str) -> Vec<f64> {
    trials.iter().filter_map(|t| t[key].as_f64()).collect()
}

fn missing(trials: &[Value], key: &str) -> usize {
    trials.iter().filter(|t| t[key].is_null()).count()
}

/// Prints one row of a summary table and emits it.
fn summary_row(
    out: &Reporter,
    table: &str,
    label: &str,
    trials: &[Value],
    key: &str,
    digits: usize,
) {
    let v = samples(trials, key);
    let s = stats::summary(&v);
    say(format!(
        "{label:44} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8}",
        v.len(),
        num(s["min"].as_f64(), digits),
        num(s["median"].as_f64(), digits),
        num(s["p95"].as_f64(), digits),
        num(s["max"].as_f64(), digits),
        missing(trials, key),
    ));
    out.emit(&json!({
        "bench": "cluster", "type": "summary", "table": table, "row": label, "key": key,
        "stats": s, "missing": missing(trials, key),
    }));
}

fn table_header(title: &str) {
    say(format!("\n== {title} =="));
    say(format!(
        "{:44} {:>4} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "n", "min", "median", "p95", "max", "missing"
    ));
}

fn summarize_failover(trials: &[Value], args: &Args, out: &Reporter) {
    table_header(&format!(
        "failover: crash -> DNS names the next member (ms; bound fall x interval + interval = {:.0} ms)",
        args.failover_bound_ms()
    ));
    let rows = [
        ("standalone", "standalone_failover_ms", 0),
        (
            "cluster, slowest terminal server",
            "cluster_failover_slowest_ms",
            0,
        ),
        (
            "cluster, median terminal server",
            "cluster_failover_median_ms",
            0,
        ),
        ("ratio slowest / standalone (per trial)", "ratio_slowest", 2),
        ("ratio median / standalone (per trial)", "ratio_median", 2),
        (
            "standalone: failover event",
            "standalone_failover_event_ms",
            0,
        ),
        (
            "cluster: leader's failover event",
            "leader_failover_event_ms",
            0,
        ),
        ("failback, standalone", "standalone_failback_ms", 0),
        (
            "failback, cluster slowest",
            "cluster_failback_slowest_ms",
            0,
        ),
        ("failback, cluster median", "cluster_failback_median_ms", 0),
        (
            "etcd revisions per trial (crash + failback)",
            "etcd_revisions_since_last_trial",
            0,
        ),
    ];
    for (label, key, digits) in rows {
        summary_row(out, "failover", label, trials, key, digits);
    }
}

fn summarize_takeover(trials: &[Value], args: &Args, out: &Reporter) {
    table_header(&format!(
        "takeover: leader killed, then the primary (ms; lease {:.0} ms; bound lease + fall x interval + interval = {:.0} ms)",
        Args::ms(args.lease),
        args.takeover_bound_ms()
    ));
    let rows = [
        ("a survivor says it leads (status)", "new_leader_status_ms"),
        ("the new leader's leadership event", "leadership_event_ms"),
        ("the new leader's failover event", "failover_event_ms"),
        ("DNS on every survivor names m2", "dns_all_ms"),
    ];
    for (label, key) in rows {
        summary_row(out, "takeover", label, trials, key, 0);
    }
    let bound = args.takeover_bound_ms();
    let over = samples(trials, "dns_all_ms")
        .iter()
        .filter(|&&t| t > bound)
        .count()
        + missing(trials, "dns_all_ms");
    say(format!(
        "over the bound (or never): {over} of {}",
        trials.len()
    ));
    out.emit(&json!({"bench": "cluster", "type": "takeover_over_bound", "over": over, "of": trials.len(), "bound_ms": bound}));
}

fn summarize_windows(windows: &[Value], out: &Reporter) {
    say("\n== etcd writes ==");
    say(format!(
        "{:10} {:>6} {:>10} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "window", "s", "revisions", "revisions/s", "views", "state", "keepal./s", "fsyncs/s"
    ));
    for w in windows {
        let class = |c: &str| {
            w["key_changes_by_class"][c]
                .as_object()
                .map_or(0, |o| o.values().filter_map(Value::as_u64).sum::<u64>())
        };
        say(format!(
            "{:10} {:>6.0} {:>10} {:>12.3} {:>10} {:>10} {:>10.2} {:>10.2}",
            w["window"].as_str().unwrap_or("?"),
            w["seconds"].as_f64().unwrap_or(0.0),
            w["revisions"],
            w["revisions_per_s"].as_f64().unwrap_or(0.0),
            class("views"),
            class("state"),
            w["metrics_per_s"]["keepalive_requests"]
                .as_f64()
                .unwrap_or(0.0),
            w["metrics_per_s"]["wal_fsyncs"].as_f64().unwrap_or(0.0),
        ));
    }
    out.emit(&json!({"bench": "cluster", "type": "windows_done", "n": windows.len()}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_over_labels_and_pick_the_method() {
        let text = "# HELP x\n\
            etcd_debugging_mvcc_current_revision 42\n\
            etcd_mvcc_put_total 7\n\
            grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"} 5\n\
            grpc_server_msg_received_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 9\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 3\n\
            grpc_server_handled_total{grpc_code=\"FailedPrecondition\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n";
        let c = Counters::parse(text);
        assert_eq!(c.revision, 42.0);
        assert_eq!(c.values.get("mvcc_puts"), Some(&7.0));
        assert_eq!(c.values.get("keepalive_requests"), Some(&5.0));
        assert_eq!(c.values.get("grpc_txn"), Some(&4.0));
        let d = c.delta(&Counters::default());
        assert_eq!(d.get("grpc_put"), Some(&0.0));
    }

    #[test]
    fn keys_are_classed_by_their_first_segment_below_the_zone() {
        assert_eq!(key_class("/dnsd/svc.test/views/ts1"), "views");
        assert_eq!(
            key_class("/dnsd/svc.test/epochs/www/00000000000000000003"),
            "epochs"
        );
        assert_eq!(key_class("/dnsd/svc.test/state"), "state");
        assert_eq!(key_class("/elsewhere"), "other");
    }

    #[test]
    fn a_view_written_for_round_trip_times_alone_is_told_apart() {
        let a = br#"{"m1":{"health":"up","since_unix_ms":5,"rtt_us":100}}"#;
        let b = br#"{"m1":{"health":"up","since_unix_ms":5,"rtt_us":300}}"#;
        let c = br#"{"m1":{"health":"down","since_unix_ms":9}}"#;
        assert_eq!(view_write_cause(Some(a), b), "rtt_only");
        assert_eq!(view_write_cause(Some(b), c), "health");
        assert_eq!(view_write_cause(None, a), "new");
    }

    #[test]
    fn the_slowest_is_unknown_when_one_never_answered() {
        assert_eq!(
            slowest_and_median(&[Some(3.0), Some(1.0), Some(2.0)]),
            (Some(3.0), Some(2.0))
        );
        assert_eq!(slowest_and_median(&[Some(3.0), None]), (None, Some(3.0)));
    }
}
