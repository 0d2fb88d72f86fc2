//! DNS throughput and cost per query: dnsperf against `dnsd`, Knot, NSD and gdnsd serving
//! the same zone, each on its own loopback address.
//!
//! Every server is pinned to CPU 1 (all its threads, re-pinned after start because Knot
//! pins its own workers) and dnsperf to CPU 0, so a server can never borrow dnsperf's core
//! or the other way round. Runs are interleaved in rounds (the starting server rotates each
//! round) at a fixed offered load with per-query latencies (`dnsperf -v`, from which the
//! 99th percentile is computed) and unthrottled; each server's figure is the median over
//! rounds, and the dnsd/peer ratio is the median of the per-round ratios, so both servers
//! of a ratio saw the same conditions.
//!
//! Cost per query is measured two ways: the server's own CPU time (utime + stime of every
//! process of the server, all threads, from `/proc/PID/stat`) over the run divided by the
//! queries completed, and CPU 1's busy time from `/proc/stat` over the same window, which
//! also counts softirq work done for the server's sockets and anything else that ran there.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::daemon::{Dnsd, wait_for};
use crate::dnsq;
use crate::machine;
use crate::procs::{self, Guard};
use crate::report::{Reporter, num, say};
use crate::stats::{self, Histogram};

/// The zone every server serves.
const ZONE: &str = "bench.test.";
/// The echo port of the members' responder (echod), for dnsd's heartbeat.
const ECHO_PORT: u16 = 17_007;
/// The CPU dnsperf (and this program) runs on.
const CLIENT_CPU: usize = 0;
/// The CPU every server runs on.
const SERVER_CPU: usize = 1;
/// Latency histogram range: 5 s in 1 µs buckets (dnsperf's timeout is shorter).
const HISTOGRAM_LIMIT_US: usize = 5_000_000;

/// Options of the DNS benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Rounds of runs; each server's figure is the median over rounds (at least 3).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Length of one dnsperf run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Offered load of the fixed-load runs (dnsperf -Q).
    #[arg(long, default_value_t = 50_000)]
    pub qps: u64,
    /// dnsperf clients (sockets), -c.
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// Servers to compare, dnsd first (its ratios are taken against the others).
    #[arg(long, value_delimiter = ',', default_value = "dnsd,knot,nsd,gdnsd")]
    pub servers: Vec<String>,
    /// UDP/TCP port every server listens on (each on its own loopback address).
    #[arg(long, default_value_t = 5300)]
    pub port: u16,
    /// Number of services in the zone (3 members each).
    #[arg(long, default_value_t = 10)]
    pub services: usize,
    /// Skip the unthrottled runs.
    #[arg(long)]
    pub no_max: bool,
    /// Wait until the 1-minute load average is below this before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub quiet_load: f64,
    /// Longest wait for a quiet machine.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub quiet_wait: Duration,
    /// Worker threads of every server: dnsd's `dns.threads` (UDP sockets with
    /// SO_REUSEPORT), Knot's udp-/tcp-workers, NSD's server-count, gdnsd's
    /// udp_/tcp_threads. With 1, each server is pinned to CPU 1 and dnsperf to CPU 0; with
    /// more, nothing is pinned (servers and dnsperf share every CPU).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Queries over `udp` or `tcp` (dnsperf -m).
    #[arg(long, default_value = "udp", value_parser = ["udp", "tcp"])]
    pub transport: String,
}

/// The zone's contents, from which every server's configuration is written.
struct ZoneModel {
    /// (member name, address).
    members: Vec<(String, Ipv4Addr)>,
    /// (service name, member indexes, preferred first).
    services: Vec<(String, Vec<usize>)>,
    /// Address of ns1 (the glue record; dnsd's own address).
    ns_addr: Ipv4Addr,
}

impl ZoneModel {
    fn new(services: usize) -> ZoneModel {
        let members = (0..services * 3)
            .map(|i| {
                let n = u8::try_from(i + 1).unwrap_or(u8::MAX);
                (format!("m{}", i + 1), Ipv4Addr::new(127, 0, 54, n))
            })
            .collect();
        let services = (0..services)
            .map(|s| (format!("svc{}", s + 1), vec![3 * s, 3 * s + 1, 3 * s + 2]))
            .collect();
        ZoneModel {
            members,
            services,
            ns_addr: Ipv4Addr::new(127, 0, 53, 1),
        }
    }

    /// The query mix: every service three times, every member once, and one NXDOMAIN
    /// name per service; as (name, expected answer: `Some(addr)` or NXDOMAIN).
    fn queries(&self) -> Vec<(String, Option<Ipv4Addr>)> {
        let mut q = Vec::new();
        for round in 0..3 {
            for (i, (name, members)) in self.services.iter().enumerate() {
                q.push((format!("{name}.{ZONE}"), Some(self.members[members[0]].1)));
                let (m, addr) = &self.members[(i * 3 + round) % self.members.len()];
                q.push((format!("{m}.{ZONE}"), Some(*addr)));
                if round == 0 {
                    q.push((format!("nx{}.{ZONE}", i + 1), None));
                }
            }
        }
        q
    }

    /// The zone in RFC 1035 format, with the SOA dnsd itself serves (serial 1, refresh
    /// 3600, retry 600, expire 86400, minimum = negative TTL 5).
    fn zone_file(&self) -> String {
        let mut z = format!(
            "$ORIGIN {ZONE}\n$TTL 5\n@ 5 IN SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 5\n@ 5 IN NS ns1.{ZONE}\nns1 5 IN A {}\n",
            self.ns_addr
        );
        for (name, members) in &self.services {
            let _ = writeln!(z, "{name} 5 IN A {}", self.members[members[0]].1);
        }
        for (name, addr) in &self.members {
            let _ = writeln!(z, "{name} 5 IN A {addr}");
        }
        z
    }

    fn dnsd_config(&self, listen: SocketAddr, dir: &Path, threads: usize) -> String {
        let mut c = format!(
            "[dns]\nlisten = [\"{listen}\"]\nzone = \"{ZONE}\"\nttl = \"5s\"\nnameservers = [{{ name = \"ns1.{ZONE}\", address = \"{}\" }}]\n\
             threads = {threads}\ntcp_max_connections = 1024\nsoa_refresh = \"1h\"\nsoa_retry = \"10m\"\nsoa_expire = \"1d\"\n\
             [heartbeat]\nprotocol = \"udp\"\nport = {ECHO_PORT}\n\
             [control]\nsocket = \"{}\"\n[state]\ndir = \"{}\"\n",
            self.ns_addr,
            dir.join("control.sock").display(),
            dir.join("state").display()
        );
        for (name, addr) in &self.members {
            let _ = write!(c, "[[node]]\nname = \"{name}\"\naddress = \"{addr}\"\n");
        }
        for (name, members) in &self.services {
            let nodes: Vec<String> = members
                .iter()
                .map(|&m| format!("\"{}\"", self.members[m].0))
                .collect();
            let _ = write!(
                c,
                "[[service]]\nname = \"{name}\"\nnodes = [{}]\n",
                nodes.join(", ")
            );
        }
        c
    }
}

/// One server under test.
struct Server {
    name: String,
    addr: SocketAddr,
    /// The process whose tree is the server.
    pid: i32,
    /// Keeps a peer running (dnsd is held in `dnsd`).
    _guard: Option<Guard>,
    _dnsd: Option<Dnsd>,
}

/// Starts server `name` on `addr` and returns it once it answers.
fn start_server(
    name: &str,
    addr: SocketAddr,
    model: &ZoneModel,
    dir: &Path,
    threads: usize,
) -> anyhow::Result<Server> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let zone_path = dir.join("bench.test.zone");
    let (ip, port) = (addr.ip(), addr.port());
    let server = match name {
        "dnsd" => {
            let dnsd = Dnsd::start(&dir, &model.dnsd_config(addr, &dir, threads))?;
            Server {
                name: name.into(),
                addr: dnsd.dns(),
                pid: dnsd.pid(),
                _guard: None,
                _dnsd: Some(dnsd),
            }
        }
        "knot" => {
            std::fs::write(&zone_path, model.zone_file())?;
            let conf = dir.join("knot.conf");
            std::fs::write(
                &conf,
                format!(
                    "server:\n    listen: {ip}@{port}\n    rundir: {d}\n    pidfile: {d}/knot.pid\n\
                     \x20   udp-workers: {threads}\n    tcp-workers: {threads}\n    background-workers: 1\n\
                     log:\n  - target: stderr\n    any: warning\n\
                     database:\n    storage: {d}\n\
                     zone:\n  - domain: {ZONE}\n    file: {z}\n    storage: {d}\n    journal-content: none\n    zonefile-sync: -1\n",
                    d = dir.display(),
                    z = zone_path.display()
                ),
            )?;
            let guard = Guard::spawn_logged(
                "knotd",
                Command::new("knotd").arg("-c").arg(&conf),
                &dir.join("knotd.log"),
            )?;
            peer(name, addr, guard)
        }
        "nsd" => {
            std::fs::write(&zone_path, model.zone_file())?;
            let conf = dir.join("nsd.conf");
            // minimal-responses: answer like dnsd and Knot do (no NS and glue added to
            // positive answers), so every server sends the same records. Response rate
            // limiting is on by default in Debian's NSD (200 qps per source) and would
            // drop most of the benchmark's queries: off, as in the other three.
            std::fs::write(
                &conf,
                format!(
                    "server:\n    ip-address: {ip}@{port}\n    username: \"\"\n    chroot: \"\"\n    zonesdir: \"{d}\"\n    database: \"\"\n\
                     \x20   pidfile: \"{d}/nsd.pid\"\n    xfrdfile: \"{d}/xfrd.state\"\n    zonelistfile: \"{d}/zone.list\"\n\
                     \x20   logfile: \"{d}/nsd.log\"\n    verbosity: 0\n    minimal-responses: yes\n\
                     \x20   rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n    server-count: {threads}\n\
                     remote-control:\n    control-enable: no\n\
                     zone:\n    name: {ZONE}\n    zonefile: \"{z}\"\n",
                    d = dir.display(),
                    z = zone_path.display()
                ),
            )?;
            let guard = Guard::spawn_logged(
                "nsd",
                Command::new("nsd").arg("-d").arg("-c").arg(&conf),
                &dir.join("nsd.out"),
            )?;
            peer(name, addr, guard)
        }
        "gdnsd" => {
            let zones = dir.join("zones");
            std::fs::create_dir_all(&zones)?;
            std::fs::write(zones.join("bench.test"), model.zone_file())?;
            std::fs::write(
                dir.join("config"),
                format!(
                    "options => {{\n  listen => [ \"{ip}:{port}\" ]\n  run_dir => {d}/run\n  state_dir => {d}/state\n  udp_threads => {threads}\n  tcp_threads => {threads}\n}}\n",
                    d = dir.display()
                ),
            )?;
            let guard = Guard::spawn_logged(
                "gdnsd",
                Command::new("gdnsd").arg("-c").arg(&dir).arg("start"),
                &dir.join("gdnsd.log"),
            )?;
            peer(name, addr, guard)
        }
        other => bail!("unknown server {other:?} (dnsd, knot, nsd, gdnsd)"),
    };
    let (first, expected) = &model.queries()[0];
    let mut client = dnsq::Client::new(Duration::from_millis(200))?;
    let answered = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        (client.a(server.addr, first)?
            == vec![IpAddr::V4(expected.unwrap_or(Ipv4Addr::UNSPECIFIED))])
        .then_some(())
    })?;
    if answered.is_none() {
        let log = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x == "log" || x == "out")
            })
            .map(|e| {
                format!(
                    "{}:\n{}",
                    e.path().display(),
                    crate::daemon::tail(&e.path(), 20)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        bail!("{name} did not answer {first} correctly on {addr} within 30 s\n{log}");
    }
    Ok(server)
}

fn peer(name: &str, addr: SocketAddr, guard: Guard) -> Server {
    Server {
        name: name.into(),
        addr,
        pid: guard.pid(),
        _guard: Some(guard),
        _dnsd: None,
    }
}

/// Checks that every server gives the expected answer to every query of the mix, and
/// records the response sizes (they differ when servers compress or add records
/// differently, which changes the work per query).
fn check_equivalence(servers: &[Server], model: &ZoneModel) -> anyhow::Result<Value> {
    let mut client = dnsq::Client::new(Duration::from_millis(500))?;
    let mut sizes = serde_json::Map::new();
    for server in servers {
        let mut per_kind: Vec<(String, usize)> = Vec::new();
        for (name, expected) in model.queries() {
            let answer = client
                .query(server.addr, &name, RecordType::A)
                .with_context(|| format!("{} did not answer {name}", server.name))?;
            let ok = match expected {
                Some(addr) => {
                    answer.rcode == ResponseCode::NoError && answer.addrs == vec![IpAddr::V4(addr)]
                }
                None => answer.rcode == ResponseCode::NXDomain && answer.addrs.is_empty(),
            };
            if !ok {
                bail!(
                    "{} answered {name} with {:?} {:?}; expected {expected:?}",
                    server.name,
                    answer.rcode,
                    answer.addrs
                );
            }
            let kind = if name.starts_with("svc") {
                "service"
            } else if name.starts_with("nx") {
                "nxdomain"
            } else {
                "member"
            };
            if !per_kind.iter().any(|(k, _)| k == kind) {
                per_kind.push((kind.to_owned(), answer.size));
            }
        }
        sizes.insert(
            server.name.clone(),
            Value::Object(per_kind.into_iter().map(|(k, n)| (k, json!(n))).collect()),
        );
    }
    Ok(
        json!({"bench": "dns", "type": "equivalence", "all_answers_match": true, "response_bytes_without_edns": sizes}),
    )
}

/// What one dnsperf run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Run {
    round: usize,
    mode: &'static str,
    server: String,
    sent: u64,
    completed: u64,
    lost: u64,
    qps: f64,
    avg_latency_us: f64,
    max_latency_us: f64,
    /// From the per-query latencies (fixed-load runs only).
    p50_latency_us: Option<f64>,
    p99_latency_us: Option<f64>,
    response_bytes: f64,
    server_cpu_us_per_query: f64,
    /// The same split into user and kernel time (utime, stime).
    server_user_us_per_query: f64,
    server_system_us_per_query: f64,
    cpu1_us_per_query: f64,
    cpu0_busy_pct: f64,
    cpu1_busy_pct: f64,
    /// CPU 1's busy share just before the run, with every server idle.
    cpu1_idle_busy_pct: f64,
    elapsed_s: f64,
    rcodes: String,
    /// Worker threads of the server, and the transport of the queries.
    threads: usize,
    transport: String,
}

/// A number after `label` in dnsperf's summary.
fn field(text: &str, label: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

fn run_dnsperf(
    server: &Server,
    queries: &Path,
    args: &Args,
    mode: &'static str,
    round: usize,
) -> anyhow::Result<Run> {
    let hz = procs::clock_ticks();
    // CPU 1 with every server idle, for the record.
    let idle0 = procs::cpu_busy_ticks(SERVER_CPU)?;
    procs::sleep(Duration::from_secs(1))?;
    let idle_pct = (procs::cpu_busy_ticks(SERVER_CPU)? - idle0) as f64 / hz * 100.0;

    let tree = procs::process_tree(server.pid);
    let (proc0, cpu1_0, cpu0_0) = (
        procs::cpu_split_sum(&tree),
        procs::cpu_busy_ticks(SERVER_CPU)?,
        procs::cpu_busy_ticks(CLIENT_CPU)?,
    );
    let started = Instant::now();
    let mut cmd = Command::new("dnsperf");
    cmd.arg("-s")
        .arg(server.addr.ip().to_string())
        .arg("-p")
        .arg(server.addr.port().to_string())
        .arg("-d")
        .arg(queries)
        .arg("-c")
        .arg(args.clients.to_string())
        .arg("-l")
        .arg(args.duration.to_string())
        .args(["-t", "2"])
        .args(["-m", &args.transport]);
    let fixed = mode == "fixed";
    if fixed {
        cmd.arg("-Q").arg(args.qps.to_string()).arg("-v");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting dnsperf")?;
    let stdout = child.stdout.take().context("no stdout from dnsperf")?;
    let mut guard = Guard::adopt("dnsperf", child);
    let mut hist = Histogram::new(HISTOGRAM_LIMIT_US);
    let mut summary = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading dnsperf's output")?;
        if let Some(rest) = line.strip_prefix("> ") {
            // "> NOERROR name A 0.000123": the last word is the latency in seconds.
            if let Some(secs) = rest.rsplit(' ').next().and_then(|w| w.parse::<f64>().ok()) {
                hist.record(secs * 1e6);
            }
        } else {
            summary.push_str(&line);
            summary.push('\n');
        }
    }
    // dnsperf has closed its stdout: it is done; reap it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !guard.exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (proc1, cpu1_1, cpu0_1) = (
        procs::cpu_split_sum(&procs::process_tree(server.pid)),
        procs::cpu_busy_ticks(SERVER_CPU)?,
        procs::cpu_busy_ticks(CLIENT_CPU)?,
    );
    let completed = field(&summary, "Queries completed:").unwrap_or(0.0);
    if completed <= 0.0 {
        bail!(
            "dnsperf against {} completed no query:\n{summary}",
            server.name
        );
    }
    let per_query = |ticks: u64| ticks as f64 / hz * 1e6 / completed;
    let latency_line = summary
        .lines()
        .find(|l| l.contains("Average Latency (s):"))
        .unwrap_or_default();
    let max_latency = latency_line
        .split("max ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(')').trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let response_bytes = summary
        .lines()
        .find(|l| l.contains("Average packet size:"))
        .and_then(|l| l.split("response ").nth(1))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let rcodes = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("Response codes:"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(Run {
        round,
        mode,
        server: server.name.clone(),
        sent: field(&summary, "Queries sent:").unwrap_or(0.0) as u64,
        completed: completed as u64,
        lost: field(&summary, "Queries lost:").unwrap_or(0.0) as u64,
        qps: field(&summary, "Queries per second:").unwrap_or(f64::NAN),
        avg_latency_us: field(&summary, "Average Latency (s):").unwrap_or(f64::NAN) * 1e6,
        max_latency_us: max_latency * 1e6,
        p50_latency_us: fixed.then(|| hist.percentile_us(50.0)).flatten(),
        p99_latency_us: fixed.then(|| hist.percentile_us(99.0)).flatten(),
        response_bytes,
        server_cpu_us_per_query: per_query((proc1.0 + proc1.1).saturating_sub(proc0.0 + proc0.1)),
        server_user_us_per_query: per_query(proc1.0.saturating_sub(proc0.0)),
        server_system_us_per_query: per_query(proc1.1.saturating_sub(proc0.1)),
        cpu1_us_per_query: per_query(cpu1_1.saturating_sub(cpu1_0)),
        cpu0_busy_pct: (cpu0_1.saturating_sub(cpu0_0)) as f64 / hz / elapsed * 100.0,
        cpu1_busy_pct: (cpu1_1.saturating_sub(cpu1_0)) as f64 / hz / elapsed * 100.0,
        cpu1_idle_busy_pct: idle_pct,
        elapsed_s: elapsed,
        rcodes,
        threads: args.threads,
        transport: args.transport.clone(),
    })
}

/// Runs the DNS benchmark and reports every run, then the medians and ratios.
pub fn run(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    if args.rounds < 3 {
        bail!("--rounds must be at least 3 (the figures are medians)");
    }
    procs::require_programs(&["dnsperf", "knotd", "nsd", "gdnsd"])?;
    let cpus = machine::online_cpus();
    if cpus < 2 {
        bail!("this benchmark needs 2 CPUs (dnsperf on CPU 0, the server on CPU 1)");
    }
    if args.servers.first().map(String::as_str) != Some("dnsd") {
        bail!("--servers must start with dnsd (ratios are dnsd/peer)");
    }
    let pinned = args.threads == 1;
    if pinned {
        procs::pin_self(CLIENT_CPU)?;
    }
    out.emit(&machine::environment("dns"));
    out.emit(
        &json!({"bench": "dns", "type": "setup", "threads": args.threads,
        "transport": args.transport, "pinned": pinned, "servers": args.servers}),
    );

    let dir = procs::temp_dir("dnsd-bench-dns-")?;
    let model = ZoneModel::new(args.services);
    let queries_path = dir.path().join("queries.txt");
    let mut qtext = String::new();
    for (name, _) in model.queries() {
        let _ = writeln!(qtext, "{name} A");
    }
    std::fs::write(&queries_path, qtext)?;

    // dnsd's members answer their heartbeat (echod on CPU 0), so dnsd runs in its normal
    // state: every member up, probed every 500 ms.
    let echod = procs::workspace_binary("examples/echod")?;
    let first = model.members[0].1;
    let last = model.members[model.members.len() - 1].1;
    let _echod = Guard::spawn_logged(
        "echod",
        Command::new(&echod)
            .arg("--addrs")
            .arg(format!("{first}-{last}"))
            .arg("--port")
            .arg(ECHO_PORT.to_string())
            .args(["--protocols", "udp"]),
        &dir.path().join("echod.log"),
    )?;

    let mut servers = Vec::new();
    for (i, name) in args.servers.iter().enumerate() {
        let ip = Ipv4Addr::new(127, 0, 53, u8::try_from(i + 1).unwrap_or(1));
        let server = start_server(
            name,
            SocketAddr::from((ip, args.port)),
            &model,
            dir.path(),
            args.threads,
        )?;
        say(format!(
            "{name}: answering on {} (pid {})",
            server.addr, server.pid
        ));
        servers.push(server);
    }
    // Let dnsd see every member up before pinning and checking answers.
    procs::sleep(Duration::from_secs(3))?;
    for server in servers.iter().filter(|_| pinned) {
        let pins = procs::pin_tree(server.pid, SERVER_CPU)?;
        out.emit(&json!({
            "bench": "dns", "type": "pinning", "server": server.name, "cpu": SERVER_CPU,
            "threads": pins.iter().map(|p| format!("{}/{} {} cpus={}", p.pid, p.tid, p.name, p.cpus)).collect::<Vec<_>>(),
        }));
    }
    out.emit(&check_equivalence(&servers, &model)?);

    let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
    out.emit(&json!({"bench": "dns", "type": "quiet", "state": quiet}));

    let modes: &[&'static str] = if args.no_max {
        &["fixed"]
    } else {
        &["fixed", "max"]
    };
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..args.rounds {
        for &mode in modes {
            for k in 0..servers.len() {
                procs::check_stop()?;
                let server = &servers[(k + round) % servers.len()];
                // Re-pin before every run: a server may have started threads since.
                if pinned {
                    procs::pin_tree(server.pid, SERVER_CPU)?;
                }
                let r = run_dnsperf(server, &queries_path, args, mode, round + 1)?;
                say(format!(
                    "round {} {mode:5} {:6}: {:>9.0} qps, avg {:>6.1} us, p99 {:>6} us, lost {}, server {:.2} us/q (user {:.2}, sys {:.2}), cpu1 {:.2} us/q (cpu0 {:.0}%, cpu1 {:.0}%)",
                    round + 1,
                    r.server,
                    r.qps,
                    r.avg_latency_us,
                    num(r.p99_latency_us, 0),
                    r.lost,
                    r.server_cpu_us_per_query,
                    r.server_user_us_per_query,
                    r.server_system_us_per_query,
                    r.cpu1_us_per_query,
                    r.cpu0_busy_pct,
                    r.cpu1_busy_pct,
                ));
                let mut record = serde_json::to_value(&r)?;
                if let Value::Object(m) = &mut record {
                    m.insert("bench".into(), json!("dns"));
                    m.insert("type".into(), json!("run"));
                }
                out.emit(&record);
                runs.push(r);
            }
        }
    }
    summarize(&runs, &servers, modes, out);
    out.emit(&json!({"bench": "dns", "type": "end", "loadavg": machine::loadavg()}));
    Ok(())
}

type Metric = (&'static str, fn(&Run) -> Option<f64>);

const METRICS: [Metric; 10] = [
    ("qps", |r| Some(r.qps)),
    ("avg_latency_us", |r| Some(r.avg_latency_us)),
    ("p99_latency_us", |r| r.p99_latency_us),
    ("lost", |r| Some(r.lost as f64)),
    ("server_cpu_us_per_query", |r| {
        Some(r.server_cpu_us_per_query)
    }),
    ("server_user_us_per_query", |r| {
        Some(r.server_user_us_per_query)
    }),
    ("server_system_us_per_query", |r| {
        Some(r.server_system_us_per_query)
    }),
    ("cpu1_us_per_query", |r| Some(r.cpu1_us_per_query)),
    ("cpu0_busy_pct", |r| Some(r.cpu0_busy_pct)),
    ("cpu1_busy_pct", |r| Some(r.cpu1_busy_pct)),
];

fn summarize(runs: &[Run], servers: &[Server], modes: &[&'static str], out: &Reporter) {
    for &mode in modes {
        say(format!(
            "\n== {mode} load: medians over rounds (ratio = median of per-round dnsd/peer) =="
        ));
        say(format!(
            "{:8} {:>10} {:>9} {:>8} {:>6} {:>10} {:>10}",
            "server", "qps", "avg us", "p99 us", "lost", "srv us/q", "cpu1 us/q"
        ));
        for server in servers {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.mode == mode && r.server == server.name)
                .collect();
            let mut medians = serde_json::Map::new();
            for (metric, get) in METRICS {
                let values: Vec<f64> = mine.iter().filter_map(|r| get(r)).collect();
                medians.insert(metric.into(), json!(stats::median(&values)));
            }
            let mut ratios = serde_json::Map::new();
            if server.name != "dnsd" {
                for (metric, get) in METRICS {
                    let per_round: Vec<f64> = mine
                        .iter()
                        .filter_map(|peer| {
                            let dnsd = runs.iter().find(|r| {
                                r.mode == mode && r.server == "dnsd" && r.round == peer.round
                            })?;
                            let (a, b) = (get(dnsd)?, get(peer)?);
                            (b != 0.0).then_some(a / b)
                        })
                        .collect();
                    ratios.insert(metric.into(), json!(stats::median(&per_round)));
                }
            }
            let m = |k: &str| medians.get(k).and_then(Value::as_f64);
            say(format!(
                "{:8} {:>10} {:>9} {:>8} {:>6} {:>10} {:>10}",
                server.name,
                num(m("qps"), 0),
                num(m("avg_latency_us"), 1),
                num(m("p99_latency_us"), 0),
                num(m("lost"), 0),
                num(m("server_cpu_us_per_query"), 2),
                num(m("cpu1_us_per_query"), 2),
            ));
            if server.name != "dnsd" {
                let r = |k: &str| ratios.get(k).and_then(Value::as_f64);
                say(format!(
                    "{:8} {:>10} {:>9} {:>8} {:>6} {:>10} {:>10}",
                    "  dnsd/it",
                    num(r("qps"), 3),
                    num(r("avg_latency_us"), 3),
                    num(r("p99_latency_us"), 3),
                    "",
                    num(r("server_cpu_us_per_query"), 3),
                    num(r("cpu1_us_per_query"), 3),
                ));
            }
            out.emit(&json!({
                "bench": "dns", "type": "summary", "mode": mode, "server": server.name,
                "runs": mine.len(), "median": medians, "dnsd_over_peer": ratios,
            }));
        }
    }
}
