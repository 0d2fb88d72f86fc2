//! The fault soak: real writes under random faults, then a checker that counts what was lost.
//!
//! **Hosts.** Three (or more) lab hosts are the members of one mirrored service (`www`,
//! `/srv/data`), each with its real sshd, rsync and echo service; the last lab host is the
//! workload client's. dnsd, the terminal server, runs outside them (the lab's root side),
//! answering DNS on the lab's bridge address. In cluster mode ([`ClusterOptions`]) there
//! are several terminal servers ([`TerminalServer`]), each dnsd with a `[cluster]` section
//! in a bare lab host of its own (`ts1`, `ts2`...), sharing one real etcd in another bare
//! host (`etcd`), over the same pool; every one answers DNS, the leader decides.
//!
//! **Workload.** Clients on their own host resolve `www` through dnsd's DNS (honouring the
//! TTL; in cluster mode through any terminal server's, the next one when one fails) and write numbered records to the primary over SSH ([`client`]); a member's writer
//! answers only once the record is on its disk, and only while its gate is open
//! ([`member`]): dnsd's promote hook opens it, demote and the fence (out of band) close it,
//! and the epoch guard closes it as soon as a newer epoch reaches the member.
//!
//! **Faults.** A seeded plan ([`plan`]) of crashes (then revives), partitions of the
//! terminal server from the primary, cut links, slow and lossy links, and the operator's
//! failover and switchover, 0.5 to 4 s apart and holding 1 to 10 s, so they overlap.
//! In cluster mode, targets are resolved against the leader's view, the operator's moves
//! go to the leader, a partition cuts every terminal server from the primary (the clients
//! still reach it), and two more kinds hit one terminal server at a time: kill -9 (it is
//! started again, on the same folder, when the fault ends) and a partition from etcd.
//!
//! **Checker.** At the end every fault is healed, the clients stop, dnsd is given time to
//! settle (members up, resynced, synced after the last write), and [`check`] judges what the
//! clients were told against what the final primary holds and what kept folders dnsd
//! reported. In cluster mode it also samples every terminal server's DNS answer all
//! along: two terminal servers in touch with etcd (not held cut from it, and saying they
//! have a session) naming different primaries for longer than the lease plus one watch is
//! a violation, and so is a terminal server that exits or panics unless the soak killed
//! it. See `docs/soak.md`.

pub mod check;
pub mod client;
pub mod member;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dnsd_api::{Action, Event, Health, Role, Status};
use integration::etcd::EtcdServer;
use integration::lab::{Host, Lab, LabOptions, report as lab_report};
use serde_json::{Value, json};

use self::check::{Evidence, Seen, Verdict};
use self::client::{ClientConfig, ClientReport, Shared};
use self::member::{Hooks, MEMBER_DIR, RECORDS, Unsafe};
use self::plan::{FaultKind, Mix, Planned, Target};
use crate::daemon::{Dnsd, wait_for};
use crate::dnsq;
use crate::machine;
use crate::procs;
use crate::report::{Reporter, say};
use crate::stats;

/// The service the soak writes to, and its name in DNS.
const SERVICE: &str = "www";
const FQDN: &str = "www.svc.test.";
/// How often dnsd's events and liveness are polled during the run.
const POLL: Duration = Duration::from_millis(500);
/// How long the clients go on writing after every fault is healed.
const SETTLE_WRITES: Duration = Duration::from_secs(5);
/// dnsd's log filter in a soak (BENCH_DNSD_LOG overrides it).
const DNSD_LOG: &str =
    "info,dnsd::mirror=debug,rsync_sync::ssh::session=debug,rsync_sync::rsync=debug";
/// At most this many members are impaired at once (one stays healthy).
const MAX_IMPAIRED: usize = 2;
/// Cluster mode: at most this many terminal servers are killed or cut from etcd at once.
const MAX_TS_IMPAIRED: usize = 1;
/// Cluster mode: the bare lab host that runs etcd.
pub const ETCD_HOST: &str = "etcd";
/// Cluster mode: how often every terminal server's DNS answer is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Cluster mode: "one watch", the slack beyond the lease that terminal servers in touch
/// with etcd may take to agree: etcd's watch delivering the leader's commit, and a sample.
const WATCH: Duration = Duration::from_secs(1);

/// Options of `dnsd-bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Faults to inject.
    #[arg(long, default_value_t = 500)]
    pub faults: usize,
    /// Stop injecting after this long even if faults remain (e.g. "30m").
    #[arg(long, default_value = "3h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Seed of the fault plan (default: the current time, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Relative weights of the fault kinds (default: crash=3,partition=2,cut=2,slow=1,
    /// lossy=1,failover=1,switchover=1; with --cluster also kill_ts=2,etcd_partition=2).
    #[arg(long, value_parser = Mix::parse)]
    pub mix: Option<Mix>,
    /// Several terminal servers on one etcd (each in a lab host of its own).
    #[arg(long)]
    pub cluster: bool,
    /// With --cluster: how many terminal servers.
    #[arg(long, default_value_t = 3, requires = "cluster")]
    pub terminal_servers: usize,
    /// With --cluster: the leader's lease (`[cluster] lease`).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "cluster")]
    pub lease: Duration,
    /// Workload clients (each with its own DNS cache and SSH session).
    #[arg(long, default_value_t = 2)]
    pub clients: u64,
    /// Writes per second per client.
    #[arg(long, default_value_t = 5)]
    pub rate: u32,
    /// Break the setup on purpose, to see the checker fail.
    #[arg(long = "unsafe", value_enum)]
    pub unsafe_mode: Option<Unsafe>,
    /// Longest wait for dnsd to settle after the last fault.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub settle_timeout: Duration,
    /// The service's `flap_threshold` (default: dnsd's). Faults a few seconds apart make
    /// every member flap, and quarantined members are never promoted: 0 turns the damping
    /// off, so that the soak's faults lead to failovers.
    #[arg(long)]
    pub flap_threshold: Option<u32>,
}

/// Everything a soak run needs besides its lab.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub faults: usize,
    pub duration: Duration,
    pub mix: Mix,
    pub clients: u64,
    pub rate: u32,
    pub unsafe_mode: Option<Unsafe>,
    pub settle_timeout: Duration,
    /// The service's `flap_threshold`, when not dnsd's default.
    pub flap_threshold: Option<u32>,
    /// Cluster mode (several terminal servers on etcd); `None`: one terminal server.
    pub cluster: Option<ClusterOptions>,
    /// The `dnsd` binary.
    pub dnsd: PathBuf,
    /// The `dnsd-bench` binary, whose `soak-member` subcommand is the members' writer.
    pub tool: PathBuf,
    /// The checkout (for `etc/dnsd-epoch-guard`).
    pub repo: PathBuf,
}

impl Options {
    /// `faults` faults from `seed` with the default mix, two clients at 5 writes/s, at most
    /// three hours of faults and three minutes to settle.
    pub fn new(seed: u64, faults: usize, dnsd: PathBuf, tool: PathBuf, repo: PathBuf) -> Options {
        Options {
            seed,
            faults,
            duration: Duration::from_secs(3 * 3600),
            mix: Mix::standalone(),
            clients: 2,
            rate: 5,
            unsafe_mode: None,
            settle_timeout: Duration::from_secs(180),
            flap_threshold: None,
            cluster: None,
            dnsd,
            tool,
            repo,
        }
    }

    /// The options of the command line, with the binaries beside this one.
    pub fn from_args(args: &Args, seed: u64) -> anyhow::Result<Options> {
        let cluster = args.cluster.then_some(ClusterOptions {
            servers: args.terminal_servers,
            lease: args.lease,
        });
        let mix = match (&args.mix, &cluster) {
            (Some(mix), _) => mix.clone(),
            (None, Some(_)) => Mix::cluster(),
            (None, None) => Mix::standalone(),
        };
        Ok(Options {
            duration: args.duration,
            mix,
            cluster,
            clients: args.clients,
            rate: args.rate,
            unsafe_mode: args.unsafe_mode,
            settle_timeout: args.settle_timeout,
            flap_threshold: args.flap_threshold,
            ..Options::new(
                seed,
                args.faults,
                procs::workspace_binary("dnsd")?,
                std::env::current_exe().context("finding this executable")?,
                machine::repo_root().to_owned(),
            )
        })
    }
}

/// Cluster mode: how many terminal servers, on what lease.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Terminal servers (lab hosts `ts1`..`tsN`); at least 2.
    pub servers: usize,
    /// The leader's lease, `[cluster] lease`.
    pub lease: Duration,
}

impl ClusterOptions {
    /// Three terminal servers on a 2 s lease.
    pub fn new() -> ClusterOptions {
        ClusterOptions {
            servers: 3,
            lease: Duration::from_secs(2),
        }
    }

    /// The names of the terminal servers, which are also their lab hosts'.
    pub fn names(&self) -> Vec<String> {
        (1..=self.servers).map(|i| format!("ts{i}")).collect()
    }

    /// The bare lab hosts the cluster mode needs: the terminal servers' and etcd's.
    pub fn bare_hosts(&self) -> Vec<String> {
        let mut names = self.names();
        names.push(ETCD_HOST.to_owned());
        names
    }
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions::new()
    }
}

/// The lab a soak with `options` needs: three members and a client host, and in cluster
/// mode the terminal servers' and etcd's bare hosts.
pub fn lab_options(options: &Options) -> LabOptions {
    let lab = LabOptions::new(4);
    match &options.cluster {
        Some(cluster) => lab.bare_hosts(&cluster.bare_hosts()),
        None => lab,
    }
}

/// `dnsd-bench soak`: a lab of four hosts (and, with `--cluster`, the terminal servers'
/// and etcd's), one run, its record appended to the results. Fails when the checker finds
/// a violation.
pub fn run_cli(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    procs::require_programs(&["ssh", "sshd", "rsync", "socat", "flock", "nsenter"])?;
    if args.cluster {
        procs::require_programs(&["etcd"])?;
    }
    let seed = args.seed.unwrap_or_else(machine::now_ms);
    let options = Options::from_args(args, seed)?;
    out.emit(&machine::environment("soak"));
    let lab = Lab::start(lab_options(&options).data_size_mib(512))
        .map_err(|e| anyhow::anyhow!("lab setup failed: {}", lab_report(&e)))?;
    let dir = procs::temp_dir("dnsd-soak-")?;
    let verdict = run(&lab, &options, dir.path(), out)?;
    let violations: Vec<String> = verdict.violations().iter().map(|v| v.to_string()).collect();
    if !violations.is_empty() {
        // A failed run keeps its folder (dnsd's log and events, every acknowledgement,
        // the members' hook logs): it is the diagnosis.
        say(format!("kept {} for the diagnosis", dir.keep().display()));
        bail!(
            "the checker found {} violation(s):\n- {}",
            violations.len(),
            violations.join("\n- ")
        );
    }
    Ok(())
}

/// One terminal server under test. Standalone, there is one, in the lab's root namespace;
/// with the cluster mode, one per terminal-server host, all on one etcd.
pub struct TerminalServer {
    pub name: String,
    /// Its dnsd; `None` while the soak holds it killed.
    pub dnsd: Option<Dnsd>,
    /// Its DNS address on the lab network.
    pub dns: SocketAddr,
    /// Its folder: configuration, logs, state.
    pub dir: PathBuf,
    /// Cluster mode: its lab host (dnsd runs in the host's network namespace).
    pub host: Option<Host>,
    config: String,
    /// How many times it was started: start N logs to `dnsd.log` (N = 1) or `dnsd-N.log`.
    starts: u32,
    /// The events of the running dnsd (each start begins a new log).
    events: EventLog,
}

impl TerminalServer {
    /// The log of start `n`.
    fn log_path(&self, n: u32) -> PathBuf {
        if n <= 1 {
            self.dir.join("dnsd.log")
        } else {
            self.dir.join(format!("dnsd-{n}.log"))
        }
    }

    /// Starts its dnsd (again), on its folder and configuration as they are.
    fn start(&mut self, binary: &Path) -> anyhow::Result<()> {
        let n = self.starts + 1;
        let log = self.log_path(n);
        // Every pass's commands and timing in the log: what a diagnosis of a loss needs.
        let dnsd = match &self.host {
            Some(host) => {
                Dnsd::start_in_netns(binary, &host.netns, &self.dir, &self.config, DNSD_LOG, &log)
            }
            None => Dnsd::start_binary(binary, &self.dir, &self.config, DNSD_LOG),
        }
        .with_context(|| format!("starting {}", self.name))?;
        self.dns = dnsd.dns();
        self.dnsd = Some(dnsd);
        self.starts = n;
        self.events = EventLog::default();
        Ok(())
    }

    /// Every log it wrote, oldest first.
    fn logs(&self) -> Vec<PathBuf> {
        (1..=self.starts).map(|n| self.log_path(n)).collect()
    }
}

/// dnsd's events, read as they come (its own log keeps only the last 2,000).
#[derive(Default)]
struct EventLog {
    events: Vec<Event>,
    /// Events that scrolled out of dnsd's log between two reads.
    missed: u64,
}

impl EventLog {
    fn poll(&mut self, dnsd: &Dnsd) {
        let since = self.events.last().map_or(0, |e| e.seq);
        let Ok(new) = dnsd.events(since) else {
            return;
        };
        if let Some(first) = new.first() {
            self.missed += first.seq.saturating_sub(since + 1);
        }
        self.events
            .extend(new.into_iter().filter(|e| e.seq > since));
    }
}

/// Every folder an event said it kept writes in, with the member and the event.
fn kept_folders(events: &[&Event]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for e in events {
        let (Some(node), Some((_, rest))) = (&e.node, e.reason.split_once(" kept in ")) else {
            continue;
        };
        let dirs = rest.split([';', ')']).next().unwrap_or_default();
        for dir in dirs
            .split(", ")
            .map(str::trim)
            .filter(|d| d.starts_with('/'))
        {
            let by = format!("{:?} event #{}", e.kind, e.seq);
            out.push((node.clone(), dir.to_owned(), by));
        }
    }
    out
}

/// A fault being held, until it is undone.
struct Active {
    index: usize,
    kind: FaultKind,
    /// The member it hits, or (terminal-server faults) the terminal server's host.
    host: Host,
    /// Terminal-server faults: which terminal server.
    ts: Option<usize>,
    until: Instant,
}

/// What became of one planned fault.
enum Started {
    /// Applied; held until undone.
    Held(Active),
    /// The operator's move, accepted or refused by dnsd: nothing to undo.
    Done,
    /// Not applied: no free target.
    Skipped,
}

/// What the injection did.
#[derive(Default)]
struct Injected {
    /// By kind: started, skipped (no target) and refused (the operator's, by dnsd).
    started: BTreeMap<String, u64>,
    skipped: BTreeMap<String, u64>,
    refused: BTreeMap<String, u64>,
    revived: u64,
    healed: u64,
    /// Faults injected: started, or the operator's moves dnsd refused.
    injected: usize,
    /// Entries of the plan used (skipped ones included).
    drawn: usize,
}

/// The run's members, client host and terminal servers.
struct Soak<'a> {
    lab: &'a Lab,
    options: &'a Options,
    members: Vec<Host>,
    servers: Vec<TerminalServer>,
    /// Events of terminal servers' earlier runs (before a kill).
    past_events: Vec<Event>,
    /// Events that scrolled out of a dnsd's log before they were read, all runs.
    past_missed: u64,
    /// Cluster mode: etcd and its host (etcd stops when this is dropped).
    etcd: Option<(EtcdServer, Host)>,
    /// Cluster mode: the DNS sampler's shared state.
    sampler: &'a Sampler,
    out: &'a Reporter,
    started: Instant,
    /// Terminal servers that exited or panicked.
    crashes: Vec<String>,
    /// Terminal servers the soak killed (`kill_ts`), how many times, by name.
    killed: BTreeMap<String, u64>,
}

/// Cluster mode: every terminal server's DNS answer, sampled every [`SAMPLE_EVERY`].
#[derive(Default)]
struct Sampler {
    stop: AtomicBool,
    /// The terminal servers the soak holds cut from etcd now (bit i: the i-th).
    cut: AtomicU64,
    rounds: Mutex<Vec<Round>>,
}

/// One sample of every terminal server's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Round {
    at_ms: u64,
    /// Per terminal server: its answer's addresses (sorted), or `None` when it did not
    /// answer.
    answers: Vec<Option<Vec<IpAddr>>>,
    /// Which terminal servers were held cut from etcd then (bit i: the i-th).
    cut: u64,
    /// Which terminal servers said they had no etcd session (or did not say), just before
    /// their answer was asked (bit i: the i-th): they answer their last known state, as
    /// documented.
    away: u64,
}

impl Sampler {
    /// Samples until stopped (bounded by `max_rounds`), from the root namespace: each
    /// terminal server's status (on its control socket), then its DNS answer.
    fn run(&self, servers: &[(SocketAddr, PathBuf)], max_rounds: u64) {
        let Ok(mut client) = dnsq::Client::bound(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Duration::from_millis(300),
        ) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let controls: Vec<console::client::Client> = servers
            .iter()
            .map(|(_, socket)| {
                console::client::Client::new(console::client::Endpoint::Unix(socket.clone()))
                    .with_operator("dnsd-bench")
            })
            .collect();
        let in_touch = |i: usize| -> bool {
            let Some(control) = controls.get(i) else {
                return false;
            };
            rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(300), control.status()).await
            })
            .ok()
            .and_then(Result::ok)
            .and_then(|st| st.cluster)
            .is_some_and(|c| c.etcd_reachable)
        };
        for _ in 0..max_rounds {
            if self.stop.load(Ordering::SeqCst) || procs::stopping() {
                break;
            }
            let started = Instant::now();
            let cut = self.cut.load(Ordering::SeqCst);
            let at_ms = machine::now_ms();
            let mut away = 0u64;
            let answers = servers
                .iter()
                .enumerate()
                .map(|(i, (dns, _))| {
                    if !in_touch(i) {
                        away |= 1u64 << i.min(63);
                    }
                    client.a(*dns, FQDN).map(|mut addrs| {
                        addrs.sort();
                        addrs
                    })
                })
                .collect();
            if let Ok(mut rounds) = self.rounds.lock() {
                rounds.push(Round {
                    at_ms,
                    answers,
                    cut,
                    away,
                });
            }
            let spent = started.elapsed();
            if spent < SAMPLE_EVERY {
                std::thread::sleep(SAMPLE_EVERY - spent);
            }
        }
    }

    fn rounds(&self) -> Vec<Round> {
        self.rounds.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// What the DNS samples show.
#[derive(Debug, Default, Clone, PartialEq)]
struct Agreement {
    /// Intervals longer than the bound in which terminal servers in touch with etcd named
    /// different primaries: the violations.
    conflicts: Vec<String>,
    /// Every interval of disagreement among them (ms), however short.
    spans_ms: Vec<f64>,
    /// Samples in which a terminal server without an etcd session (held cut by the soak,
    /// or saying it has none) named another primary than those in touch (documented: it
    /// answers its last known state).
    stale_while_away: u64,
    /// For each heal of an etcd partition: how long (ms) until that terminal server said
    /// it had a session again (as sampled).
    rejoin_ms: Vec<f64>,
}

/// Judges the samples: an interval in which the terminal servers that answered and were
/// in touch with etcd (not held cut from it, and saying they had a session) named two or
/// more different primaries (non-empty answers) is a conflict, and one longer than
/// `bound` a violation.
fn agreement(rounds: &[Round], names: &[String], bound: Duration) -> Agreement {
    let mut out = Agreement::default();
    // The open interval: when it began, and what was answered then.
    let mut open: Option<(u64, String)> = None;
    let close = |out: &mut Agreement, began: u64, what: &str, end: u64| {
        let span = end.saturating_sub(began);
        out.spans_ms.push(span as f64);
        if u128::from(span) > bound.as_millis() {
            out.conflicts.push(format!(
                "{what} for {:.1} s (from {began} ms since the Unix epoch; bound {:.1} s)",
                span as f64 / 1000.0,
                bound.as_secs_f64()
            ));
        }
    };
    // Per terminal server: when the soak last healed its etcd partition, until it rejoins.
    let mut healed_at: BTreeMap<usize, u64> = BTreeMap::new();
    let mut previous_cut = 0u64;
    for round in rounds {
        let away = round.cut | round.away;
        for i in 0..round.answers.len() {
            let bit = 1u64 << i.min(63);
            if previous_cut & bit != 0 && round.cut & bit == 0 {
                healed_at.insert(i, round.at_ms);
            }
            if round.cut & bit != 0 {
                healed_at.remove(&i);
            } else if away & bit == 0
                && let Some(at) = healed_at.remove(&i)
            {
                out.rejoin_ms.push(round.at_ms.saturating_sub(at) as f64);
            }
        }
        previous_cut = round.cut;
        let in_touch: Vec<(usize, &Vec<IpAddr>)> = round
            .answers
            .iter()
            .enumerate()
            .filter(|(i, _)| away & (1u64 << (*i).min(63)) == 0)
            .filter_map(|(i, a)| a.as_ref().filter(|a| !a.is_empty()).map(|a| (i, a)))
            .collect();
        let distinct: BTreeSet<&Vec<IpAddr>> = in_touch.iter().map(|(_, a)| *a).collect();
        let stale = round.answers.iter().enumerate().any(|(i, a)| {
            away & (1u64 << i.min(63)) != 0
                && a.as_ref().is_some_and(|a| {
                    !a.is_empty() && !distinct.is_empty() && !distinct.contains(&a)
                })
        });
        if stale {
            out.stale_while_away += 1;
        }
        if distinct.len() > 1 {
            if open.is_none() {
                let what = in_touch
                    .iter()
                    .map(|(i, a)| {
                        let name = names.get(*i).map_or("?", String::as_str);
                        let addrs: Vec<String> = a.iter().map(ToString::to_string).collect();
                        format!("{name} {}", addrs.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                open = Some((round.at_ms, what));
            }
        } else if let Some((began, what)) = open.take() {
            close(&mut out, began, &what, round.at_ms);
        }
    }
    if let (Some((began, what)), Some(last)) = (open, rounds.last()) {
        close(&mut out, began, &what, last.at_ms);
    }
    out
}

/// Runs one soak on `lab` (at least four hosts: the last is the client's), with its
/// configuration, hooks and logs in `dir` (which the hosts must see: under /tmp). Emits
/// the plan, every fault and the verdict; returns the verdict.
pub fn run(lab: &Lab, options: &Options, dir: &Path, out: &Reporter) -> anyhow::Result<Verdict> {
    let hosts = lab.hosts();
    let Some((client_host, members)) = hosts.split_last().filter(|(_, m)| m.len() >= 3) else {
        bail!("the soak needs a lab of at least four hosts (three members and a client)");
    };
    if options.cluster.is_none()
        && let Some(kind) = options.mix.kinds().find(|k| k.needs_cluster())
    {
        bail!("fault kind {kind} needs the cluster mode (several terminal servers on etcd)");
    }
    if let Some(cluster) = &options.cluster
        && !(2..=64).contains(&cluster.servers)
    {
        bail!(
            "the cluster mode needs 2 to 64 terminal servers, not {}",
            cluster.servers
        );
    }
    // Faults whose target is impaired already are skipped and do not count: draw more
    // than asked for, and stop once `faults` were injected.
    let plan = plan::plan(
        options.seed,
        &options.mix,
        options.faults.saturating_mul(4).saturating_add(16),
    );
    out.emit(&json!({
        "bench": "soak", "type": "plan", "seed": options.seed, "faults": options.faults,
        "mix": options.mix.to_string(), "clients": options.clients, "rate": options.rate,
        "unsafe": options.unsafe_mode, "duration_s": options.duration.as_secs(),
        "flap_threshold": options.flap_threshold,
        "kinds": count_kinds(&plan),
    }));
    say(format!(
        "soak: seed {}, {} faults ({}), {} client(s) at {}/s{}{}",
        options.seed,
        options.faults,
        options.mix,
        options.clients,
        options.rate,
        options
            .cluster
            .as_ref()
            .map(|c| format!(
                ", {} terminal servers on etcd (lease {:?})",
                c.servers, c.lease
            ))
            .unwrap_or_default(),
        options
            .unsafe_mode
            .map(|u| format!(", DELIBERATELY UNSAFE: {u:?}"))
            .unwrap_or_default()
    ));

    let hooks = prepare_members(lab, members, dir, options)?;
    // Cluster mode: etcd first, in its own host (started from this thread: it dies with it).
    let etcd = match &options.cluster {
        Some(_) => {
            let host = lab
                .host(ETCD_HOST)
                .cloned()
                .with_context(|| format!("the lab has no host {ETCD_HOST} for etcd"))?;
            let etcd = EtcdServer::start_in(lab, &host)
                .map_err(|e| anyhow::anyhow!("etcd did not start in {}: {e}", host.name))?;
            Some((etcd, host))
        }
        None => None,
    };
    let flap = options
        .flap_threshold
        .map(|n| format!("flap_threshold = {n}\n"))
        .unwrap_or_default();
    let mut servers = Vec::new();
    let names = options
        .cluster
        .as_ref()
        .map_or_else(|| vec!["ts1".to_owned()], ClusterOptions::names);
    for name in &names {
        let ts_dir = dir.join(name);
        std::fs::create_dir_all(&ts_dir)
            .with_context(|| format!("creating {}", ts_dir.display()))?;
        let (host, config) = match (&options.cluster, &etcd) {
            (Some(cluster), Some((etcd, _))) => {
                let host = lab
                    .host(name)
                    .cloned()
                    .with_context(|| format!("the lab has no host {name}"))?;
                let listen = format!("{}:53", host.addr);
                let nameservers: Vec<(String, IpAddr)> = names
                    .iter()
                    .filter_map(|n| lab.host(n).map(|h| (n.clone(), h.addr.into())))
                    .collect();
                let mut config = dnsd_config(
                    lab,
                    members,
                    &ts_dir,
                    &hooks,
                    options.unsafe_mode,
                    &listen,
                    &nameservers,
                );
                config.push_str(&flap);
                config.push_str(&format!(
                    "[cluster]\nname = \"{name}\"\netcd = [\"{}\"]\nlease = \"{}ms\"\n",
                    etcd.endpoint(),
                    cluster.lease.as_millis()
                ));
                (Some(host), config)
            }
            _ => {
                let ts = lab.ts_addr();
                let config = dnsd_config(
                    lab,
                    members,
                    &ts_dir,
                    &hooks,
                    options.unsafe_mode,
                    &format!("{ts}:0"),
                    &[("ts1".to_owned(), ts.into())],
                );
                (None, config + &flap)
            }
        };
        let mut ts = TerminalServer {
            name: name.clone(),
            dnsd: None,
            dns: SocketAddr::from(([0, 0, 0, 0], 0)),
            dir: ts_dir,
            host,
            config,
            starts: 0,
            events: EventLog::default(),
        };
        ts.start(&options.dnsd)?;
        servers.push(ts);
    }
    let sampler = Sampler::default();
    let mut soak = Soak {
        lab,
        options,
        members: members.to_vec(),
        servers,
        past_events: Vec::new(),
        past_missed: 0,
        etcd,
        sampler: &sampler,
        out,
        started: Instant::now(),
        crashes: Vec::new(),
        killed: BTreeMap::new(),
    };
    soak.wait_ready()?;
    soak.open_first_primary()?;
    let dns_servers: Vec<SocketAddr> = soak.servers.iter().map(|ts| ts.dns).collect();

    let shared = Shared::default();
    let configs: Vec<ClientConfig> = (1..=options.clients)
        .map(|id| {
            // Each client starts with another terminal server, and moves on when it fails.
            let mut dns = dns_servers.clone();
            dns.rotate_left((id as usize - 1) % dns_servers.len().max(1));
            let mut writer = vec![options.tool.display().to_string(), "soak-member".to_owned()];
            if options.unsafe_mode == Some(Unsafe::NoGuard) {
                writer.push("--ignore-epoch".to_owned());
            }
            ClientConfig {
                id,
                dns,
                name: FQDN.to_owned(),
                local: client_host.addr.into(),
                rate: options.rate,
                ssh_options: lab.ssh_options(),
                writer,
                ssh_log: dir.join(format!("client{id}-ssh.log")),
                // With a 2 s TTL, clients 0.7 s apart follow a change of primary at
                // different times.
                start_delay: Duration::from_millis(700 * (id - 1)),
                max_attempts: u64::from(options.rate.max(1))
                    .saturating_mul(options.duration.as_secs() + 3600)
                    .saturating_mul(2),
            }
        })
        .collect();
    let sampled = soak.options.cluster.is_some();
    let sampled_servers: Vec<(SocketAddr, PathBuf)> = soak
        .servers
        .iter()
        .map(|ts| (ts.dns, ts.dir.join("control.sock")))
        .collect();
    let scoped = std::thread::scope(|scope| {
        let sampler = &sampler;
        let servers = &sampled_servers;
        let rounds = (options.duration + options.settle_timeout + Duration::from_secs(600))
            .as_millis()
            / SAMPLE_EVERY.as_millis().max(1);
        let sampling = sampled.then(|| {
            scope.spawn(move || sampler.run(servers, u64::try_from(rounds).unwrap_or(u64::MAX)))
        });
        let clients: Vec<_> = configs
            .iter()
            .map(|cfg| {
                let shared = &shared;
                scope.spawn(move || lab.in_netns(client_host, || client::run(cfg, shared)))
            })
            .collect();
        let injected = soak.inject(&plan);
        // Every fault undone, whatever happened; the clients write a little longer.
        let healed = soak.heal_all();
        if injected.is_ok() && healed.is_ok() {
            let _ = procs::sleep(SETTLE_WRITES);
        }
        shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let reports: Vec<ClientReport> = clients
            .into_iter()
            .map(|c| match c.join() {
                Ok(Ok(report)) => report,
                _ => ClientReport::default(),
            })
            .collect();
        // The answers are sampled while dnsd settles too.
        let stopped_ms = machine::now_ms();
        let converged = soak.settle(stopped_ms);
        sampler.stop.store(true, Ordering::SeqCst);
        if let Some(sampling) = sampling {
            let _ = sampling.join();
        }
        (
            injected.and_then(|i| healed.map(|()| i)),
            reports,
            converged,
        )
    });
    let (injected, reports, converged) = scoped;
    let injected = injected?;
    let agreement = sampled.then(|| {
        let bound = options.cluster.as_ref().map_or(Duration::ZERO, |c| c.lease) + WATCH;
        agreement(&sampler.rounds(), &names, bound)
    });
    let verdict = soak.judge(&reports, converged, agreement.as_ref())?;
    soak.save(dir, &reports);
    soak.report(&injected, &reports, &verdict, agreement.as_ref());
    Ok(verdict)
}

/// Counts of a plan's faults by kind.
fn count_kinds(plan: &[Planned]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for p in plan {
        *counts.entry(p.kind.to_string()).or_default() += 1;
    }
    counts
}

/// Each member's gate folder and name, a clean slate, and the hooks (with the fence's way
/// into each member).
fn prepare_members(
    lab: &Lab,
    members: &[Host],
    dir: &Path,
    options: &Options,
) -> anyhow::Result<Hooks> {
    let mut fences = Vec::new();
    for host in members {
        let srv = srv_of(lab, host)?;
        let gate = srv.join(MEMBER_DIR.trim_start_matches("/srv/"));
        let _ = std::fs::remove_dir_all(&gate);
        std::fs::create_dir_all(&gate).with_context(|| format!("creating {}", gate.display()))?;
        std::fs::write(gate.join("name"), format!("{}\n", host.name))
            .with_context(|| format!("writing {}", gate.join("name").display()))?;
        // The fence's way in: the lab's own command into the host, without the program.
        let enter = lab.command(host, "");
        let mut argv = vec![enter.get_program().to_string_lossy().into_owned()];
        argv.extend(enter.get_args().map(|a| a.to_string_lossy().into_owned()));
        argv.pop();
        fences.push((host.name.clone(), argv));
    }
    let guard = member::epoch_guard(&options.repo, dir)?;
    Hooks::write(&dir.join("hooks"), &guard, &fences, options.unsafe_mode)
}

/// A host's `/srv`, as the root namespace sees it.
fn srv_of(lab: &Lab, host: &Host) -> anyhow::Result<PathBuf> {
    lab.data_path(host)
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no /srv", host.name))
}

/// dnsd for the soak: quick heartbeats, a pass every second, automatic failback, the hooks;
/// DNS on `listen`, naming `nameservers` (in cluster mode the caller adds `[cluster]`).
fn dnsd_config(
    lab: &Lab,
    members: &[Host],
    dir: &Path,
    hooks: &Hooks,
    unsafe_mode: Option<Unsafe>,
    listen: &str,
    nameservers: &[(String, IpAddr)],
) -> String {
    let ns: Vec<String> = nameservers
        .iter()
        .enumerate()
        .map(|(i, (_, addr))| {
            format!(
                "{{ name = \"ns{}.svc.test.\", address = \"{addr}\" }}",
                i + 1
            )
        })
        .collect();
    let nodes: String = members
        .iter()
        .map(|h| {
            format!(
                "[[node]]\nname = \"{}\"\naddress = \"{}\"\n",
                h.name, h.addr
            )
        })
        .collect();
    let names: Vec<String> = members.iter().map(|h| format!("\"{}\"", h.name)).collect();
    format!(
        "[dns]\nlisten = [\"{listen}\"]\nzone = \"svc.test.\"\nttl = \"2s\"\n\
         nameservers = [{ns}]\n\
         [heartbeat]\nprotocol = \"tcp\"\nport = 7\ninterval = \"300ms\"\ntimeout = \"250ms\"\nfall = 3\nrise = 2\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n\
         [mirror]\ninterval = \"1s\"\nidentity = \"{k}\"\nknown_hosts = \"{kh}\"\n\
         peer_identity = \"{k}\"\npeer_known_hosts = \"{kh}\"\nconnect_timeout = \"3s\"\nio_timeout = \"20s\"\n\
         {mirror}{nodes}\
         [[service]]\nname = \"{SERVICE}\"\nnodes = [{members}]\npaths = [\"/srv/data\"]\n\
         failback = \"auto\"\nfailback_after = \"5s\"\nhook_timeout = \"10s\"\n{hooks}",
        d = dir.display(),
        k = lab.client_key().display(),
        kh = lab.known_hosts().display(),
        members = names.join(", "),
        ns = ns.join(", "),
        hooks = hooks.service_keys(unsafe_mode),
        mirror = hooks.mirror_keys(unsafe_mode),
    )
}

impl Soak<'_> {
    /// The running terminal servers, by index.
    fn running(&self) -> impl Iterator<Item = (usize, &Dnsd)> {
        self.servers
            .iter()
            .enumerate()
            .filter_map(|(i, ts)| ts.dnsd.as_ref().map(|d| (i, d)))
    }

    /// The terminal server that decides: standalone the only one, in a cluster the one
    /// whose status says it leads (`None` while none does).
    fn leader(&self) -> Option<(usize, &Dnsd)> {
        if self.options.cluster.is_none() {
            return self.running().next();
        }
        self.running().find(|(_, d)| {
            d.status()
                .ok()
                .and_then(|st| st.cluster)
                .is_some_and(|c| c.leading)
        })
    }

    /// The terminal server to talk to: the leader, else any that runs.
    fn control(&self) -> anyhow::Result<&Dnsd> {
        self.leader()
            .or_else(|| self.running().next())
            .map(|(_, d)| d)
            .context("no terminal server runs")
    }

    /// The leader's view (standalone: dnsd's); while none leads, any terminal server's.
    fn status(&self) -> anyhow::Result<Status> {
        self.control()?.status()
    }

    /// Cluster mode: whether every terminal server runs, exactly one leads, all of them
    /// reach etcd and name it, and all hold the same primary and epoch for www.
    fn cluster_agrees(&self) -> bool {
        if self.options.cluster.is_none() {
            return true;
        }
        let mut seen = Vec::new();
        for ts in &self.servers {
            let Some(st) = ts.dnsd.as_ref().and_then(|d| d.status().ok()) else {
                return false;
            };
            seen.push(st);
        }
        let leaders: Vec<&str> = seen
            .iter()
            .filter_map(|st| st.cluster.as_ref().filter(|c| c.leading))
            .map(|c| c.name.as_str())
            .collect();
        let [leader] = leaders[..] else {
            return false;
        };
        let service = |st: &Status| st.service(SERVICE).map(|s| (s.primary.clone(), s.epoch));
        let first = seen.first().and_then(service);
        first.is_some()
            && seen.iter().all(|st| {
                st.cluster
                    .as_ref()
                    .is_some_and(|c| c.etcd_reachable && c.leader.as_deref() == Some(leader))
                    && service(st) == first
            })
    }

    fn host(&self, name: &str) -> Option<&Host> {
        self.members.iter().find(|h| h.name == name)
    }

    /// Waits until every member is up and every secondary has a complete pass.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let ready = wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
            let st = self.status().ok()?;
            let svc = st.service(SERVICE)?;
            let synced = svc
                .members
                .iter()
                .filter(|m| m.node != svc.primary)
                .all(|m| m.sync.as_ref().is_some_and(|s| s.last_sync_ms.is_some()));
            (st.nodes.iter().all(|n| n.health == Health::Up) && synced && self.cluster_agrees())
                .then_some(())
        })?;
        if ready.is_none() {
            let logs: Vec<String> = self
                .running()
                .map(|(i, d)| format!("--- {}:\n{}", self.servers[i].name, d.log_tail(30)))
                .collect();
            bail!(
                "dnsd never had every member up and synced{}; log:\n{}",
                if self.options.cluster.is_some() {
                    " (and its terminal servers agreeing on one leader)"
                } else {
                    ""
                },
                logs.join("\n")
            );
        }
        Ok(())
    }

    /// Opens the first primary's gate in the epoch dnsd starts in (its first passes have
    /// recorded that epoch on every member already, so no promote hook can: dnsd ran none).
    fn open_first_primary(&mut self) -> anyhow::Result<()> {
        let st = self.status()?;
        let svc = st.service(SERVICE).context("dnsd has no service www")?;
        let host = self
            .host(&svc.primary)
            .cloned()
            .with_context(|| format!("the primary {} is no member", svc.primary))?;
        let epoch = svc.epoch.to_string();
        let lock = format!("{MEMBER_DIR}/epoch.lock");
        let script = format!("printf '%s\\n' \"$1\" > {MEMBER_DIR}/open");
        self.lab
            .exec(
                &host,
                &[
                    "flock", "-w", "10", &lock, "sh", "-c", &script, "sh", &epoch,
                ],
            )
            .map_err(|e| anyhow::anyhow!("opening {}'s gate: {}", host.name, lab_report(&e)))?;
        say(format!(
            "{} is primary in epoch {epoch}: its gate is open",
            host.name
        ));
        Ok(())
    }

    /// Polls events and liveness; true when every terminal server the soak did not kill
    /// still runs.
    fn watch(&mut self) -> bool {
        for ts in &mut self.servers {
            let Some(dnsd) = ts.dnsd.as_mut() else {
                continue;
            };
            if dnsd.exited() && !self.crashes.iter().any(|c| c.starts_with(&ts.name)) {
                self.crashes.push(format!(
                    "{} exited during the run; log:\n{}",
                    ts.name,
                    dnsd.log_tail(20)
                ));
            }
        }
        if self.crashes.is_empty() {
            for ts in &mut self.servers {
                if let Some(dnsd) = &ts.dnsd {
                    ts.events.poll(dnsd);
                }
            }
        }
        self.crashes.is_empty()
    }

    /// Every event read, from every terminal server and every run of it.
    fn all_events(&self) -> Vec<&Event> {
        self.past_events
            .iter()
            .chain(self.servers.iter().flat_map(|ts| ts.events.events.iter()))
            .collect()
    }

    /// Runs the plan; returns what it did. Stops early (without error) when the time limit
    /// passes or dnsd dies.
    fn inject(&mut self, plan: &[Planned]) -> anyhow::Result<Injected> {
        let mut done = Injected::default();
        let mut active: Vec<Active> = Vec::new();
        let deadline = self.started + self.options.duration;
        let mut next_at = self.started + plan.first().map_or(Duration::ZERO, |p| p.after);
        let mut next = 0;
        let mut last_poll = Instant::now();
        // Bounded: the deadline, and a tick cap well beyond it.
        let ticks = self.options.duration.as_millis() / 50 + 10_000;
        for _ in 0..ticks {
            procs::check_stop()?;
            if last_poll.elapsed() >= POLL {
                last_poll = Instant::now();
                if !self.watch() {
                    say("a terminal server died: stopping the faults");
                    break;
                }
            }
            let now = Instant::now();
            let (due, held): (Vec<Active>, Vec<Active>) =
                active.into_iter().partition(|a| now >= a.until);
            active = held;
            for a in due {
                self.undo(&a, &mut done)?;
            }
            let wanted = done.injected < self.options.faults && next < plan.len();
            if wanted && now >= next_at && now < deadline {
                let p = &plan[next];
                match self.start(p, &active, &mut done)? {
                    Started::Held(a) => {
                        active.push(a);
                        done.injected += 1;
                    }
                    Started::Done => done.injected += 1,
                    Started::Skipped => {}
                }
                next += 1;
                done.drawn = next;
                next_at = Instant::now() + plan.get(next).map_or(Duration::ZERO, |p| p.after);
            }
            let wanted = done.injected < self.options.faults && next < plan.len();
            if (!wanted || now >= deadline) && active.is_empty() {
                break;
            }
            if now >= deadline {
                // Out of time: undo what is held now rather than wait for it.
                for a in std::mem::take(&mut active) {
                    self.undo(&a, &mut done)?;
                }
                break;
            }
            procs::sleep(Duration::from_millis(50))?;
        }
        for a in active {
            self.undo(&a, &mut done)?;
        }
        Ok(done)
    }

    /// Starts one planned fault.
    fn start(
        &mut self,
        p: &Planned,
        active: &[Active],
        done: &mut Injected,
    ) -> anyhow::Result<Started> {
        let status = self.status();
        let (primary, secondaries, preferred) =
            match status.as_ref().ok().and_then(|st| st.service(SERVICE)) {
                Some(svc) => (
                    svc.primary.clone(),
                    svc.members
                        .iter()
                        .filter(|m| m.role == Role::Secondary)
                        .map(|m| m.node.clone())
                        .collect::<Vec<_>>(),
                    svc.preferred.clone(),
                ),
                None => (String::new(), Vec::new(), String::new()),
            };
        let member_faults: Vec<&Active> = active.iter().filter(|a| a.ts.is_none()).collect();
        let impaired: BTreeSet<&str> = member_faults.iter().map(|a| a.host.name.as_str()).collect();
        let free: Vec<&Host> = self
            .members
            .iter()
            .filter(|h| !impaired.contains(h.name.as_str()))
            .collect();
        let pick = |list: &[&Host]| -> Option<Host> {
            (!list.is_empty()).then(|| list[(p.pick % list.len() as u64) as usize].clone())
        };
        let at_s = self.started.elapsed().as_secs_f64();
        let mut record = json!({
            "bench": "soak", "type": "fault", "i": p.index, "kind": p.kind, "at_s": (at_s * 10.0).round() / 10.0,
            "primary": primary,
        });
        if p.kind.is_operator() {
            let kind = p.kind.to_string();
            let action = match p.kind {
                FaultKind::Switchover if primary != preferred && p.pick.is_multiple_of(2) => {
                    Action::Failback {
                        service: Some(SERVICE.into()),
                    }
                }
                FaultKind::Switchover => {
                    let Some(node) = (!secondaries.is_empty())
                        .then(|| secondaries[(p.pick % secondaries.len() as u64) as usize].clone())
                    else {
                        return Ok(self.skip(p, record, "no secondary", done));
                    };
                    Action::Promote {
                        service: Some(SERVICE.into()),
                        node,
                    }
                }
                _ => Action::Failover {
                    service: Some(SERVICE.into()),
                },
            };
            record["action"] = json!(action.to_string());
            // In a cluster, to the leader (none while a takeover is under way: refused).
            match self.control().and_then(|dnsd| dnsd.act(&action)) {
                Ok(reply) => {
                    *done.started.entry(kind).or_default() += 1;
                    record["result"] = json!(format!("accepted: {}", reply.message));
                }
                Err(error) => {
                    *done.refused.entry(kind).or_default() += 1;
                    record["result"] = json!(format!("{error:#}"));
                }
            }
            self.out.emit(&record);
            return Ok(Started::Done);
        }
        if p.kind.needs_cluster() {
            return self.start_ts_fault(p, active, record, done);
        }
        let free_primary = self
            .host(&primary)
            .filter(|h| !impaired.contains(h.name.as_str()))
            .cloned();
        let target = if member_faults.len() >= MAX_IMPAIRED {
            None
        } else {
            match (p.target, p.kind) {
                // Only the primary can be partitioned from the terminal server.
                (Target::Primary, FaultKind::Partition) => free_primary,
                // The primary if it is free, else any free member.
                (Target::Primary, _) => free_primary.or_else(|| pick(&free)),
                _ => pick(&free),
            }
        };
        let Some(host) = target else {
            return Ok(self.skip(
                p,
                record,
                "its target is impaired already (or two members are)",
                done,
            ));
        };
        let lab = self.lab;
        let applied = match p.kind {
            FaultKind::Crash => lab.crash(&host),
            // In a cluster, every terminal server loses the primary (so that a quorum of
            // them sees it down); the clients still reach it. Undone by healing the member.
            FaultKind::Partition if self.options.cluster.is_some() => self
                .servers
                .iter()
                .filter_map(|ts| ts.host.as_ref())
                .try_for_each(|ts| lab.block(ts, &host)),
            FaultKind::Partition => lab.partition(&host),
            FaultKind::Cut => lab.cut(&host),
            FaultKind::Slow | FaultKind::Lossy => lab.slow(&host, p.delay, p.loss),
            _ => bail!("{} is not a member fault", p.kind),
        };
        applied.map_err(|e| anyhow::anyhow!("{} of {}: {}", p.kind, host.name, lab_report(&e)))?;
        record["host"] = json!(host.name);
        if matches!(p.kind, FaultKind::Slow | FaultKind::Lossy) {
            record["delay_ms"] = json!(p.delay.as_millis() as u64);
            record["loss"] = json!((p.loss * 1000.0).round() / 1000.0);
        }
        Ok(self.hold(p, host, None, record, done))
    }

    /// Records fault `p` as skipped, saying why.
    fn skip(&mut self, p: &Planned, mut record: Value, why: &str, done: &mut Injected) -> Started {
        *done.skipped.entry(p.kind.to_string()).or_default() += 1;
        record["result"] = json!(format!("skipped: {why}"));
        self.out.emit(&record);
        Started::Skipped
    }

    /// Records fault `p` as applied (on `host`, or terminal server `ts`) and holds it for
    /// its planned time.
    fn hold(
        &mut self,
        p: &Planned,
        host: Host,
        ts: Option<usize>,
        mut record: Value,
        done: &mut Injected,
    ) -> Started {
        *done.started.entry(p.kind.to_string()).or_default() += 1;
        record["hold_s"] = json!(p.hold.as_secs_f64());
        record["result"] = json!("applied");
        self.out.emit(&record);
        Started::Held(Active {
            index: p.index,
            kind: p.kind,
            host,
            ts,
            until: Instant::now() + p.hold,
        })
    }

    /// Starts a fault on a terminal server (cluster mode): even picks hit the leader,
    /// odd ones any terminal server free of faults; one terminal server at a time.
    fn start_ts_fault(
        &mut self,
        p: &Planned,
        active: &[Active],
        mut record: Value,
        done: &mut Injected,
    ) -> anyhow::Result<Started> {
        let busy: BTreeSet<usize> = active.iter().filter_map(|a| a.ts).collect();
        let free: Vec<usize> = (0..self.servers.len())
            .filter(|i| !busy.contains(i) && self.servers[*i].dnsd.is_some())
            .collect();
        let leader = self.leader().map(|(i, _)| i);
        let target = if busy.len() >= MAX_TS_IMPAIRED || free.is_empty() {
            None
        } else if p.pick.is_multiple_of(2)
            && let Some(leader) = leader.filter(|l| free.contains(l))
        {
            Some(leader)
        } else {
            free.get((p.pick / 2 % free.len() as u64) as usize).copied()
        };
        let (Some(i), Some((_, etcd_host))) = (target, &self.etcd) else {
            return Ok(self.skip(p, record, "a terminal server is impaired already", done));
        };
        let etcd_host = etcd_host.clone();
        let ts = &self.servers[i];
        let Some(host) = ts.host.clone() else {
            bail!("{} has no lab host", ts.name);
        };
        record["host"] = json!(ts.name);
        record["leader"] = json!(leader.map(|l| self.servers[l].name.clone()));
        let ts = &mut self.servers[i];
        match p.kind {
            FaultKind::KillTs => {
                let status = ts.dnsd.as_mut().and_then(Dnsd::kill);
                record["exit"] = json!(status.map(|s| s.to_string()));
                *self.killed.entry(ts.name.clone()).or_default() += 1;
                // Its events so far stay part of the run.
                let old = std::mem::take(&mut ts.events);
                self.past_missed += old.missed;
                self.past_events.extend(old.events);
                ts.dnsd = None;
            }
            FaultKind::EtcdPartition => {
                self.lab.block(&host, &etcd_host).map_err(|e| {
                    anyhow::anyhow!("cutting {} from etcd: {}", ts.name, lab_report(&e))
                })?;
                self.sampler
                    .cut
                    .fetch_or(1u64 << i.min(63), Ordering::SeqCst);
            }
            _ => bail!("{} is not a terminal-server fault", p.kind),
        }
        Ok(self.hold(p, host, Some(i), record, done))
    }

    /// Undoes a held fault: revive after a crash, start a killed terminal server again,
    /// heal otherwise.
    fn undo(&mut self, a: &Active, done: &mut Injected) -> anyhow::Result<()> {
        let what = if let (Some(i), FaultKind::KillTs) = (a.ts, a.kind) {
            done.revived += 1;
            self.restart(i)?;
            "restart"
        } else if let (Some(i), FaultKind::EtcdPartition) = (a.ts, a.kind) {
            done.healed += 1;
            if let Some((_, etcd_host)) = &self.etcd {
                self.lab.unblock(&a.host, etcd_host).map_err(|e| {
                    anyhow::anyhow!("reconnecting {} to etcd: {}", a.host.name, lab_report(&e))
                })?;
            }
            self.sampler
                .cut
                .fetch_and(!(1u64 << i.min(63)), Ordering::SeqCst);
            "heal"
        } else if a.kind == FaultKind::Crash {
            done.revived += 1;
            // A loaded machine may take long to start sshd: try a few times.
            let mut result = self.lab.revive(&a.host);
            for _ in 0..2 {
                if result.is_ok() {
                    break;
                }
                result = self.lab.revive(&a.host);
            }
            result.map_err(|e| anyhow::anyhow!("reviving {}: {}", a.host.name, lab_report(&e)))?;
            "revive"
        } else {
            done.healed += 1;
            self.lab
                .heal(&a.host)
                .map_err(|e| anyhow::anyhow!("healing {}: {}", a.host.name, lab_report(&e)))?;
            "heal"
        };
        self.out.emit(&json!({
            "bench": "soak", "type": "undo", "i": a.index, "kind": what, "host": a.host.name,
            "at_s": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        }));
        Ok(())
    }

    /// Starts killed terminal server `i` again, on its folder (a few tries: a loaded
    /// machine may be slow to start it).
    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let binary = self.options.dnsd.clone();
        let ts = &mut self.servers[i];
        if ts.dnsd.is_some() {
            return Ok(());
        }
        let mut result = ts.start(&binary);
        for _ in 0..2 {
            if result.is_ok() {
                break;
            }
            result = ts.start(&binary);
        }
        result
    }

    /// Heals and revives every member (harmless on healthy ones); in a cluster, also
    /// reconnects every terminal server to etcd and starts any that is not running.
    fn heal_all(&mut self) -> anyhow::Result<()> {
        for host in &self.members {
            self.lab
                .heal(host)
                .and_then(|()| self.lab.revive(host))
                .map_err(|e| anyhow::anyhow!("restoring {}: {}", host.name, lab_report(&e)))?;
        }
        if let Some((_, etcd_host)) = &self.etcd {
            for ts in &self.servers {
                if let Some(host) = &ts.host {
                    self.lab.unblock(host, etcd_host).map_err(|e| {
                        anyhow::anyhow!("reconnecting {} to etcd: {}", ts.name, lab_report(&e))
                    })?;
                }
            }
            self.sampler.cut.store(0, Ordering::SeqCst);
            for i in 0..self.servers.len() {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// Waits (bounded) until dnsd has every member up, no move under way, nothing
    /// resyncing, and a complete pass to every secondary that began after `since_ms` (the
    /// last write). Returns whether it got there.
    fn settle(&mut self, since_ms: u64) -> bool {
        let deadline = Instant::now() + self.options.settle_timeout;
        // Bounded by the deadline.
        while Instant::now() < deadline {
            if !self.watch() {
                return false;
            }
            if let Ok(st) = self.status()
                && let Some(svc) = st.service(SERVICE)
            {
                let secondaries_synced =
                    svc.members
                        .iter()
                        .filter(|m| m.node != svc.primary)
                        .all(|m| {
                            m.sync.as_ref().is_some_and(|s| {
                                !s.resyncing
                                    && s.running.is_none()
                                    && s.last_sync_ms.is_some_and(|t| t >= since_ms)
                            })
                        });
                if st.nodes.iter().all(|n| n.health == Health::Up)
                    && svc.transition.is_none()
                    && !svc.stranded
                    && secondaries_synced
                    && self.cluster_agrees()
                    && self.every_answer_names(&svc.primary)
                {
                    return true;
                }
            }
            if procs::sleep(Duration::from_millis(250)).is_err() {
                return false;
            }
        }
        false
    }

    /// Cluster mode: whether every terminal server's DNS answers `primary`'s address
    /// (standalone: true; settling asks dnsd's status there).
    fn every_answer_names(&self, primary: &str) -> bool {
        if self.options.cluster.is_none() {
            return true;
        }
        let Some(want) = self.host(primary).map(|h| IpAddr::from(h.addr)) else {
            return false;
        };
        let Ok(mut client) = dnsq::Client::bound(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            Duration::from_millis(500),
        ) else {
            return false;
        };
        self.servers
            .iter()
            .all(|ts| client.a(ts.dns, FQDN).is_some_and(|a| a == [want]))
    }

    /// Collects the evidence and runs the checker; stops dnsd (and checks how it ended).
    fn judge(
        &mut self,
        reports: &[ClientReport],
        converged: bool,
        agreement: Option<&Agreement>,
    ) -> anyhow::Result<Verdict> {
        self.watch();
        let final_primary = self
            .status()
            .ok()
            .and_then(|st| st.service(SERVICE).map(|s| s.primary.clone()))
            .unwrap_or_default();
        let records = |host: &Host| -> anyhow::Result<Vec<u64>> {
            Ok(member::records_under(
                &srv_of(self.lab, host)?.join(RECORDS.trim_start_matches("/srv/")),
            ))
        };
        let mut e = Evidence {
            final_primary: final_primary.clone(),
            converged,
            ..Evidence::default()
        };
        for r in reports {
            e.acks.extend(r.acks.iter().cloned());
            e.refused.extend(r.refused.iter().copied());
            e.indeterminate.extend(r.indeterminate.iter().copied());
        }
        if let Some(primary) = self.host(&final_primary).cloned() {
            e.live = records(&primary)?.into_iter().collect();
        }
        for (node, dir, by) in kept_folders(&self.all_events()) {
            let Some(host) = self.host(&node).cloned() else {
                continue;
            };
            let path = srv_of(self.lab, &host)?.join(dir.trim_start_matches("/srv/"));
            for seq in member::records_under(&path) {
                e.kept
                    .entry(seq)
                    .or_insert_with(|| format!("{node}:{dir} ({by})"));
            }
        }
        // Where the records found in neither are, for the diagnosis.
        let missing: BTreeSet<u64> = e
            .acks
            .iter()
            .map(|a| a.seq)
            .filter(|s| !e.live.contains(s) && !e.kept.contains_key(s))
            .collect();
        if !missing.is_empty() {
            for host in self.members.clone() {
                let srv = srv_of(self.lab, &host)?;
                for seq in records(&host)? {
                    if missing.contains(&seq) {
                        e.elsewhere.entry(seq).or_default().push(Seen::Live {
                            node: host.name.clone(),
                        });
                    }
                }
                let kept_root = srv.join("data.dnsd-kept");
                for entry in std::fs::read_dir(&kept_root)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    for seq in member::records_under(&entry.path()) {
                        if missing.contains(&seq) {
                            e.elsewhere.entry(seq).or_default().push(Seen::Unreported {
                                node: host.name.clone(),
                                dir: format!(
                                    "/srv/data.dnsd-kept/{}",
                                    entry.file_name().to_string_lossy()
                                ),
                            });
                        }
                    }
                }
            }
        }
        // How each terminal server ended: it must still run, stop on SIGTERM with 0, and
        // its log must hold no panic.
        // (In a cluster, every run of each: the soak's kills end a run without a panic.)
        let mut crashes = std::mem::take(&mut self.crashes);
        for ts in &mut self.servers {
            if !crashes.iter().any(|c| c.starts_with(&ts.name)) {
                match ts.dnsd.as_mut().and_then(Dnsd::stop) {
                    Some(status) if !status.success() => {
                        crashes.push(format!("{} ended with {status} on SIGTERM", ts.name));
                    }
                    _ => {}
                }
            }
            for path in ts.logs() {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                for line in log.lines().filter(|l| l.contains("panicked")).take(3) {
                    crashes.push(format!("{} ({}): {line}", ts.name, path.display()));
                }
            }
        }
        e.crashes = crashes;
        e.conflicting_answers = agreement.map(|a| a.conflicts.clone());
        Ok(check::check(&e))
    }

    /// Keeps what a diagnosis needs in `dir` (kept with `BENCH_KEEP=1`): dnsd's events,
    /// every acknowledgement, and each member's hook log.
    fn save(&self, dir: &Path, reports: &[ClientReport]) {
        let lines =
            |items: Vec<Value>| -> String { items.iter().map(|v| format!("{v}\n")).collect() };
        let events = self
            .all_events()
            .into_iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        let _ = std::fs::write(dir.join("events.jsonl"), lines(events));
        let acks = reports
            .iter()
            .flat_map(|r| r.acks.iter())
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect();
        let _ = std::fs::write(dir.join("acks.jsonl"), lines(acks));
        let clients = reports
            .iter()
            .map(|r| json!({"refused": r.refused, "indeterminate": r.indeterminate, "answers": r.answers}))
            .collect();
        let _ = std::fs::write(dir.join("clients.jsonl"), lines(clients));
        if self.options.cluster.is_some() {
            let rounds = self
                .sampler
                .rounds()
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            let _ = std::fs::write(dir.join("samples.jsonl"), lines(rounds));
        }
        for host in &self.members {
            if let Ok(srv) = srv_of(self.lab, host) {
                let _ = std::fs::copy(
                    srv.join("soak/hooks.log"),
                    dir.join(format!("{}-hooks.log", host.name)),
                );
            }
        }
    }

    /// The summary record and the human summary.
    fn report(
        &self,
        injected: &Injected,
        reports: &[ClientReport],
        v: &Verdict,
        agreement: Option<&Agreement>,
    ) {
        let mut dnsd_events: BTreeMap<String, u64> = BTreeMap::new();
        for e in self.all_events() {
            *dnsd_events.entry(format!("{:?}", e.kind)).or_default() += 1;
        }
        let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
        for r in reports {
            for (why, n) in &r.refusals {
                *refusals.entry(why.clone()).or_default() += n;
            }
        }
        let sessions: u64 = reports.iter().map(|r| r.sessions).sum();
        let dns_failures: u64 = reports.iter().map(|r| r.dns_failures).sum();
        let violations: Vec<String> = v.violations().iter().map(|v| v.to_string()).collect();
        let spans: Vec<f64> = v.episodes.iter().map(|e| e.span_ms).collect();
        let mut record = json!({
            "bench": "soak", "type": "summary", "seed": self.options.seed,
            "faults_wanted": self.options.faults, "faults_injected": injected.injected,
            "plan_drawn": injected.drawn,
            "faults_started": injected.started, "faults_skipped": injected.skipped,
            "faults_refused": injected.refused, "revived": injected.revived, "healed": injected.healed,
            "ran_s": self.started.elapsed().as_secs(),
            "dnsd_events": dnsd_events,
            "events_missed": self.past_missed + self.servers.iter().map(|ts| ts.events.missed).sum::<u64>(),
            "client_sessions": sessions, "dns_failures": dns_failures, "refusals": refusals,
            "lost_window_ms": stats::summary(&spans),
            "violations": violations, "pass": violations.is_empty(),
            "loadavg": machine::loadavg(), "unsafe": self.options.unsafe_mode,
        });
        if let (Value::Object(m), Ok(Value::Object(verdict))) =
            (&mut record, serde_json::to_value(v))
        {
            for (k, val) in verdict {
                m.insert(k, val);
            }
        }
        if let (Some(a), Value::Object(m)) = (agreement, &mut record) {
            m.insert("terminal_servers".into(), json!(self.servers.len()));
            m.insert("terminal_servers_killed".into(), json!(self.killed));
            m.insert("disagreement_ms".into(), json!(stats::summary(&a.spans_ms)));
            m.insert("stale_answers_while_away".into(), json!(a.stale_while_away));
            m.insert("etcd_rejoin_ms".into(), json!(stats::summary(&a.rejoin_ms)));
        }
        self.out.emit(&record);
        say(format!(
            "\n== soak: seed {}, {} of {} faults injected ({} drawn) in {} s ==",
            self.options.seed,
            injected.injected,
            self.options.faults,
            injected.drawn,
            self.started.elapsed().as_secs()
        ));
        let by_kind = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        say(format!(
            "started: {}; revived {}, healed {}",
            by_kind(&injected.started),
            injected.revived,
            injected.healed
        ));
        if !injected.skipped.is_empty() || !injected.refused.is_empty() {
            say(format!(
                "skipped: {}; refused by dnsd: {}",
                by_kind(&injected.skipped),
                by_kind(&injected.refused)
            ));
        }
        say(format!(
            "writes: {} acknowledged, {} refused, {} indeterminate; final primary {}",
            v.acknowledged, v.refused, v.indeterminate, v.final_primary
        ));
        say(format!(
            "lost from the live data: {} in {} episode(s) (per episode {}); {} in reported kept folders, {} in unreported ones, {} nowhere",
            v.lost_live,
            v.episodes.len(),
            v.lost_per_episode,
            v.lost_live_kept,
            v.kept_unreported.len(),
            v.lost_silently.len()
        ));
        say(format!(
            "two-writer intervals: {} ({:.0} ms); dnsd crashes: {}; settled: {}",
            v.two_writer.len(),
            v.two_writer_ms,
            v.crashes.len(),
            v.converged
        ));
        if let Some(a) = agreement {
            let longest = a.spans_ms.iter().copied().fold(0.0, f64::max);
            say(format!(
                "terminal servers: {} (killed: {}); answers of those in touch with etcd disagreed {} time(s), longest {:.0} ms, {} over the bound; {} sample(s) of one without etcd answering its last known state; after an etcd partition healed, a session again within {:.0} ms at most ({} heal(s))",
                self.servers.len(),
                by_kind(&self.killed),
                a.spans_ms.len(),
                longest,
                a.conflicts.len(),
                a.stale_while_away,
                a.rejoin_ms.iter().copied().fold(0.0, f64::max),
                a.rejoin_ms.len()
            ));
        }
        if violations.is_empty() {
            say("checker: PASS");
        } else {
            say(format!("checker: FAIL\n- {}", violations.join("\n- ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(at_ms: u64, answers: &[Option<u8>], cut: u64) -> Round {
        Round {
            at_ms,
            answers: answers
                .iter()
                .map(|a| a.map(|last| vec![IpAddr::from([10, 0, 0, last])]))
                .collect(),
            cut,
            away: 0,
        }
    }

    fn names() -> Vec<String> {
        ClusterOptions::new().names()
    }

    #[test]
    fn short_disagreements_pass_and_long_ones_are_conflicts() {
        let bound = Duration::from_millis(3000);
        // ts2 follows the change 1 s late: a disagreement, under the bound.
        let rounds = [
            round(0, &[Some(1), Some(1), Some(1)], 0),
            round(1000, &[Some(2), Some(1), Some(2)], 0),
            round(2000, &[Some(2), Some(2), Some(2)], 0),
        ];
        let a = agreement(&rounds, &names(), bound);
        assert_eq!(a.spans_ms, [1000.0]);
        assert!(a.conflicts.is_empty(), "{:?}", a.conflicts);
        // ts3 stays on h1 for 4 s, to the end of the samples.
        let rounds = [
            round(0, &[Some(2), Some(2), Some(1)], 0),
            round(2000, &[Some(2), Some(2), Some(1)], 0),
            round(4000, &[Some(2), Some(2), Some(1)], 0),
        ];
        let a = agreement(&rounds, &names(), bound);
        assert_eq!(a.conflicts.len(), 1, "{a:?}");
        assert!(a.conflicts[0].contains("ts3 10.0.0.1"), "{a:?}");
    }

    #[test]
    fn silent_empty_and_cut_servers_are_not_conflicts() {
        let bound = Duration::from_millis(1000);
        let rounds = [
            // ts1 killed (no answer), ts2 answers nothing (no primary), ts3 cut from etcd.
            round(0, &[None, Some(1), Some(2)], 0b100),
            round(5000, &[None, Some(1), Some(2)], 0b100),
            round(9000, &[Some(1), Some(1), Some(2)], 0b100),
        ];
        let a = agreement(&rounds, &names(), bound);
        assert!(a.conflicts.is_empty(), "{a:?}");
        assert!(a.spans_ms.is_empty(), "{a:?}");
        assert_eq!(a.stale_while_away, 3);
        // One that says it has no session is out of touch too; its rejoin is measured.
        let mut rounds = [
            round(0, &[Some(1), Some(1), Some(1)], 0b001),
            round(1000, &[Some(2), Some(2), Some(1)], 0),
            round(5000, &[Some(2), Some(2), Some(1)], 0),
            round(6000, &[Some(2), Some(2), Some(2)], 0),
        ];
        rounds[1].away = 0b101;
        rounds[2].away = 0b100;
        let a = agreement(&rounds, &names(), bound);
        assert!(a.conflicts.is_empty(), "{a:?}");
        assert_eq!(a.stale_while_away, 2);
        assert_eq!(a.rejoin_ms, [4000.0]);
        let mut empty = round(0, &[Some(1), None, Some(1)], 0);
        empty.answers[1] = Some(Vec::new());
        assert!(agreement(&[empty], &names(), bound).spans_ms.is_empty());
    }
}
