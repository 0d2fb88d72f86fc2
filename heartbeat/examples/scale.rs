//! Scale check: runs the heartbeat monitor on ONE thread (a current-thread tokio
//! runtime) against a pool of echo responders and prints what it cost.
//!
//! The responders run in a separate `echod` process (started here, killed by PID at
//! the end) so that only the monitor's own work is counted. Build both first:
//!
//! ```text
//! cargo build --release -p heartbeat --examples
//! cargo run --release -p heartbeat --example scale -- --members 1000 --interval 200ms --protocol tcp
//! ```
//!
//! Output is one JSON object on stdout: probes sent and answered, misses by kind, CPU
//! seconds of this process (getrusage: user + system) and its share of one core, RTT
//! percentiles, and the spacing of consecutive probes of the same target.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;
use heartbeat::{Health, MonitorConfig, Protocol, Report, Target, spawn_monitor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Run the heartbeat monitor on one thread against N loopback echo responders.
#[derive(Debug, Parser)]
struct Args {
    /// Pool size: targets at --base, --base + 1, ...
    #[arg(long, default_value_t = 1000)]
    members: u32,
    /// Probe interval per target.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Probe timeout.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How long to run the monitor.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// tcp or udp.
    #[arg(long, default_value = "tcp")]
    protocol: Protocol,
    /// First target address (must stay within 127.0.0.0/8).
    #[arg(long, default_value = "127.0.1.1")]
    base: Ipv4Addr,
    /// Echo port the responders listen on.
    #[arg(long, default_value_t = 17007)]
    port: u16,
    /// Detector thresholds.
    #[arg(long, default_value_t = 2)]
    rise: u32,
    #[arg(long, default_value_t = 3)]
    fall: u32,
    /// Make the first N members hang (accept or receive, never echo), to show that
    /// dead members do not slow the others.
    #[arg(long, default_value_t = 0)]
    silent: u32,
    /// The echod binary; defaults to `echod` beside this example's binary.
    #[arg(long)]
    echod: Option<PathBuf>,
    /// Worker threads for echod (1: current-thread runtime).
    #[arg(long, default_value_t = 1)]
    echod_threads: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let config = MonitorConfig {
        protocol: args.protocol,
        port: args.port,
        interval: args.interval,
        timeout: args.timeout,
        rise: args.rise,
        fall: args.fall,
    };
    if let Some(problem) = config.problems().first() {
        bail!("invalid --{}: {problem}", problem.field());
    }
    let first = u32::from(args.base);
    let last = first
        .checked_add(args.members.saturating_sub(1))
        .map(Ipv4Addr::from)
        .filter(|last| args.members > 0 && args.base.is_loopback() && last.is_loopback())
        .context("--members addresses from --base must lie within 127.0.0.0/8")?;

    let mut echod = start_echod(&args, last).await?;
    let echod_pid = echod.id().context("echod exited right after starting")?;
    let outcome = measure(&args, config).await;
    // Stop the responders whatever happened, by the PID we started.
    let echod_cpu = process_cpu(echod_pid);
    echod
        .kill()
        .await
        .with_context(|| format!("killing echod (pid {echod_pid})"))?;

    let mut figures = outcome?;
    if let Some(cpu) = echod_cpu {
        figures["echod_cpu_seconds"] = serde_json::json!(round3(cpu.as_secs_f64()));
    }
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}

/// Starts echod on the pool's addresses and waits for its ready line.
async fn start_echod(args: &Args, last: Ipv4Addr) -> anyhow::Result<Child> {
    let path = match &args.echod {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating this example's binary")?
            .with_file_name("echod"),
    };
    if !path.exists() {
        bail!(
            "echod not found at {}: build it with `cargo build --release -p heartbeat --examples` or pass --echod PATH",
            path.display()
        );
    }
    let mut child = Command::new(&path)
        .arg("--addrs")
        .arg(format!("{}-{last}", args.base))
        .arg("--port")
        .arg(args.port.to_string())
        .arg("--protocols")
        .arg(args.protocol.to_string())
        .arg("--silent")
        .arg(args.silent.to_string())
        .arg("--threads")
        .arg(args.echod_threads.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let stdout = child.stdout.take().context("echod stdout was not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("echod did not report ready within 60 s")?
        .context("reading echod's ready line")?
        .context("echod exited before reporting ready")?;
    let ready: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("echod ready line {line:?}"))?;
    if ready["ready"] != serde_json::json!(true) {
        bail!("unexpected line from echod: {line}");
    }
    Ok(child)
}

/// Runs the monitor for the configured time and returns the figures.
async fn measure(args: &Args, config: MonitorConfig) -> anyhow::Result<serde_json::Value> {
    let targets: Vec<Target> = (0..args.members)
        .map(|i| Target {
            id: i as usize,
            addr: IpAddr::V4(Ipv4Addr::from(u32::from(args.base) + i)),
            initial: Health::Unknown,
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<Report>(2 * args.members as usize);
    let cancel = CancellationToken::new();

    let cpu_start = own_cpu()?;
    let wall_start = Instant::now();
    let monitor = spawn_monitor(config, targets, tx, cancel.clone());

    let mut stats = Stats::new(args.members as usize);
    let end = wall_start + args.duration;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            report = rx.recv() => match report {
                Some(report) => stats.add(report),
                None => bail!("the monitor stopped before the run ended"),
            },
        }
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), monitor.join())
        .await
        .context("monitor did not stop within 10 s of cancellation")?;
    let wall = wall_start.elapsed();
    let cpu = own_cpu()? - cpu_start;

    Ok(stats.figures(args, wall, cpu))
}

/// What the run observed.
struct Stats {
    sent: u64,
    answered: u64,
    misses: HashMap<&'static str, u64>,
    transitions: u64,
    rtts_us: Vec<u64>,
    /// Time between consecutive probe starts of the same target.
    gaps_us: Vec<u64>,
    last_at: Vec<Option<SystemTime>>,
    health: Vec<Health>,
}

impl Stats {
    fn new(members: usize) -> Self {
        Self {
            sent: 0,
            answered: 0,
            misses: HashMap::new(),
            transitions: 0,
            rtts_us: Vec::new(),
            gaps_us: Vec::new(),
            last_at: vec![None; members],
            health: vec![Health::Unknown; members],
        }
    }

    fn add(&mut self, report: Report) {
        self.sent += 1;
        match &report.outcome {
            Ok(rtt) => {
                self.answered += 1;
                self.rtts_us.push(micros(*rtt));
            }
            Err(error) => *self.misses.entry(error.kind()).or_default() += 1,
        }
        if report.transition.is_some() {
            self.transitions += 1;
        }
        if let Some(last) = self.last_at.get_mut(report.target) {
            if let Some(previous) = *last
                && let Ok(gap) = report.at.duration_since(previous)
            {
                self.gaps_us.push(micros(gap));
            }
            *last = Some(report.at);
        }
        if let Some(health) = self.health.get_mut(report.target) {
            *health = report.health;
        }
    }

    fn figures(mut self, args: &Args, wall: Duration, cpu: Duration) -> serde_json::Value {
        self.rtts_us.sort_unstable();
        self.gaps_us.sort_unstable();
        let count = |h: Health| self.health.iter().filter(|&&x| x == h).count();
        let expected = args.members as f64 * wall.as_secs_f64() / args.interval.as_secs_f64();
        serde_json::json!({
            "protocol": args.protocol.to_string(),
            "members": args.members,
            "silent_members": args.silent.min(args.members),
            "interval_ms": args.interval.as_millis() as u64,
            "timeout_ms": args.timeout.as_millis() as u64,
            "wall_seconds": round3(wall.as_secs_f64()),
            "probes_sent": self.sent,
            "probes_expected": expected.round() as u64,
            "probes_answered": self.answered,
            "misses": self.sent - self.answered,
            "misses_by_kind": self.misses,
            "probes_per_second": round3(self.sent as f64 / wall.as_secs_f64()),
            "cpu_seconds": round3(cpu.as_secs_f64()),
            "cpu_share_of_one_core": round3(cpu.as_secs_f64() / wall.as_secs_f64()),
            "cpu_us_per_probe": round3(cpu.as_secs_f64() * 1e6 / self.sent.max(1) as f64),
            "rtt_p50_us": percentile(&self.rtts_us, 0.50),
            "rtt_p99_us": percentile(&self.rtts_us, 0.99),
            "rtt_max_us": self.rtts_us.last().copied(),
            "probe_gap_p1_ms": percentile(&self.gaps_us, 0.01).map(|us| us as f64 / 1000.0),
            "probe_gap_p50_ms": percentile(&self.gaps_us, 0.50).map(|us| us as f64 / 1000.0),
            "probe_gap_p99_ms": percentile(&self.gaps_us, 0.99).map(|us| us as f64 / 1000.0),
            "probe_gap_max_ms": self.gaps_us.last().map(|&us| us as f64 / 1000.0),
            "transitions": self.transitions,
            "final_up": count(Health::Up),
            "final_down": count(Health::Down),
            "final_unknown": count(Health::Unknown),
        })
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// User + system CPU time of this process so far.
fn own_cpu() -> anyhow::Result<Duration> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct, and
    // getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// User + system CPU time of another process from /proc/PID/stat, if readable.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and
    // 15 of the whole line, i.e. 12 and 13 after "pid (comm) state".
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}
