//! Failover through standard secondaries: dnsd as the hidden primary of Knot and NSD
//! (configured from `etc/secondaries/`, TSIG on), and the time from dnsd's failover
//! decision until each secondary answers the new primary.
//!
//! One trial: wait a random 1.5-2.5 s, start one poller per server (dnsd itself, Knot,
//! NSD) asking for the service's address every millisecond, ask dnsd for a failover
//! (`POST /v1/actions {"action":"failover"}`; with two members it alternates), and
//! record when each poller first receives the new address. Times are from the decision
//! (the `at_ms` of dnsd's event for it) to that receipt, on the same clock. The path
//! measured is the whole of it: dnsd publishes, sends NOTIFY, the secondary asks for the
//! SOA, transfers the differences (IXFR) and starts answering from the new version.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use dnsd_api::{Action, Health};
use integration::harness::EchoPool;
use integration::secondary::{self, Kind, Secondary, Setup};
use serde_json::json;

use crate::daemon::{Dnsd, wait_for};
use crate::dnsq;
use crate::machine;
use crate::procs;
use crate::report::{Reporter, num, say};
use crate::stats;

/// The service the pollers ask for.
const NAME: &str = "pg.db.example.net.";
/// The base64 TSIG secret the run shares with the secondaries.
const SECRET: &str = "YmVuY2htYXJrIGtleSBvZiB0aGlydHktdHdvIGJ5dGVzIQ==";
/// Longest a server may take to answer the new primary before the trial counts as lost.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of the secondaries benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Failovers to time (at least 20 for the document).
    #[arg(long, default_value_t = 25)]
    pub trials: usize,
    /// Port Knot and NSD listen on (at 127.0.55.1 and 127.0.55.2).
    #[arg(long, default_value_t = 5300)]
    pub port: u16,
    /// Transfers and NOTIFY unsigned.
    #[arg(long)]
    pub no_tsig: bool,
    /// Wait until the 1-minute load average is below this before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub quiet_load: f64,
    /// Longest wait for a quiet machine.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub quiet_wait: Duration,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn dnsd_config(
    pool: &EchoPool,
    dir: &std::path::Path,
    notify: &[SocketAddr],
    tsig: bool,
) -> String {
    let key = dir.join("xfr.key");
    let tsig = if tsig {
        format!(
            "tsig = {{ name = \"{}\", secret_file = \"{}\" }}\n",
            secondary::KEY_NAME,
            key.display()
        )
    } else {
        String::new()
    };
    let targets: Vec<String> = notify.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"{zone}\"\nttl = \"1s\"\n\
         nameservers = [{{ name = \"ns1.{zone}\", address = \"127.0.55.1\" }}]\n\
         allow_transfer = [\"127.0.0.1\"]\nnotify = [{targets}]\n{tsig}\
         [heartbeat]\nprotocol = \"tcp\"\nport = {port}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 3\nrise = 1\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n\
         [[node]]\nname = \"app1\"\naddress = \"{a1}\"\n[[node]]\nname = \"app2\"\naddress = \"{a2}\"\n\
         [[service]]\nname = \"pg\"\nnodes = [\"app1\", \"app2\"]\n",
        zone = secondary::ZONE,
        targets = targets.join(", "),
        port = pool.port,
        d = dir.display(),
        a1 = pool.addrs[0],
        a2 = pool.addrs[1],
    )
}

/// Polls `server` every millisecond until it answers `want`; the wall-clock time of
/// that answer (ms), or `None` after [`TRIAL_TIMEOUT`].
fn poll_until(server: SocketAddr, want: IpAddr) -> Option<f64> {
    let mut client = dnsq::Client::new(Duration::from_millis(100)).ok()?;
    let deadline = Instant::now() + TRIAL_TIMEOUT;
    while Instant::now() < deadline {
        if client.a(server, NAME).is_some_and(|a| a == vec![want]) {
            return Some(now_ms());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Runs the benchmark and reports every trial, then the medians and 95th percentiles.
pub fn run(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    if args.trials < 20 {
        bail!("--trials must be at least 20 (the figures are medians and 95th percentiles)");
    }
    procs::require_programs(&["knotd", "nsd", "dig"])?;
    out.emit(&machine::environment("secondaries"));
    let dir = procs::temp_dir("dnsd-bench-secondaries-")?;
    let tsig = !args.no_tsig;
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("xfr.key");
        std::fs::write(&key, SECRET)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    let pool = EchoPool::start(2).context("starting the members' echo services")?;
    let knot_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 55, 1), args.port));
    let nsd_addr = SocketAddr::from((Ipv4Addr::new(127, 0, 55, 2), args.port));
    let dnsd = Dnsd::start(
        dir.path(),
        &dnsd_config(&pool, dir.path(), &[knot_addr, nsd_addr], tsig),
    )?;
    let up = wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        let s = dnsd.status().ok()?;
        ["app1", "app2"]
            .iter()
            .all(|n| s.node(n).is_some_and(|n| n.health == Health::Up))
            .then_some(())
    })?;
    if up.is_none() {
        bail!("members never came up; dnsd's log:\n{}", dnsd.log_tail(30));
    }
    let secret = tsig.then_some(SECRET);
    let mut secondaries = Vec::new();
    for (kind, addr) in [(Kind::Knot, knot_addr), (Kind::Nsd, nsd_addr)] {
        let sdir = dir.path().join(kind.name());
        let s = Secondary::start(
            kind,
            &Setup {
                primary: dnsd.dns(),
                notify_source: IpAddr::V4(Ipv4Addr::LOCALHOST),
                listen: addr,
                secret,
                dir: &sdir,
                workers: None,
            },
        )
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", kind.name()))?;
        if !s.wait_answer(NAME, &pool.addrs[0].to_string(), Duration::from_secs(30)) {
            bail!(
                "{} never answered {NAME}; its log:\n{}",
                kind.name(),
                s.log()
            );
        }
        say(format!(
            "{}: secondary on {addr}, serial {:?}",
            kind.name(),
            s.serial()
        ));
        secondaries.push(s);
    }
    let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
    out.emit(&json!({"bench": "secondaries", "type": "quiet", "state": quiet, "tsig": tsig}));

    let servers: Vec<(&str, SocketAddr)> = std::iter::once(("dnsd", dnsd.dns()))
        .chain(secondaries.iter().map(|s| (s.kind().name(), s.addr())))
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); servers.len()];
    let mut since = dnsd.events(0)?.last().map_or(0, |e| e.seq);
    let mut primary = 0usize;
    for trial in 1..=args.trials {
        procs::check_stop()?;
        // 1.5 to 2.5 s apart: a real failover comes long after the previous one, and NSD
        // throttles its reloads to one a second (xfrd-reload-timeout), which trials in
        // quick succession would measure instead.
        procs::sleep(Duration::from_millis(rand::random_range(1500..2500)))?;
        let next = 1 - primary;
        let want = pool.addrs[next];
        let pollers: Vec<_> = servers
            .iter()
            .map(|(_, addr)| {
                let addr = *addr;
                std::thread::spawn(move || poll_until(addr, want))
            })
            .collect();
        let asked = now_ms();
        dnsd.act(&Action::Failover { service: None })?;
        let seen: Vec<Option<f64>> = pollers
            .into_iter()
            .map(|p| p.join().ok().flatten())
            .collect();
        let events = dnsd.events(since)?;
        since = events.last().map_or(since, |e| e.seq);
        let new_primary = format!("app{}", next + 1);
        let decided = events
            .iter()
            .filter(|e| e.new_primary.as_deref() == Some(new_primary.as_str()))
            .map(|e| e.at_ms as f64)
            .reduce(f64::min)
            .unwrap_or(asked);
        let times: Vec<Option<f64>> = seen.iter().map(|t| t.map(|t| t - decided)).collect();
        let mut record = json!({"bench": "secondaries", "type": "trial", "trial": trial,
            "to": new_primary, "decision_after_request_ms": decided - asked});
        for ((name, _), (t, all)) in servers.iter().zip(times.iter().zip(samples.iter_mut())) {
            record[format!("{name}_ms")] = json!(t);
            if let Some(t) = t {
                all.push(*t);
            }
        }
        out.emit(&record);
        say(format!(
            "trial {trial:2} -> {new_primary}: {}",
            servers
                .iter()
                .zip(&times)
                .map(|((n, _), t)| format!("{n} {} ms", num(*t, 1)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        primary = next;
    }
    say("\n== decision -> answering the new primary, ms ==");
    for ((name, _), all) in servers.iter().zip(&samples) {
        let s = stats::summary(all);
        say(format!(
            "{name:5} median {:>7} p95 {:>7} max {:>7} (n = {})",
            num(s["median"].as_f64(), 1),
            num(s["p95"].as_f64(), 1),
            num(s["max"].as_f64(), 1),
            all.len()
        ));
        out.emit(&json!({"bench": "secondaries", "type": "summary", "server": name, "tsig": tsig, "ms": s}));
    }
    let metrics = {
        let socket = dir.path().join("control.sock");
        let client = console::client::Client::new(console::client::Endpoint::Unix(socket));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(client.metrics())
            .context("asking dnsd for its metrics")?
    };
    let notify: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("dnsd_dns_notify_total") || l.starts_with("dnsd_dns_transfers_total")
        })
        .collect();
    out.emit(&json!({"bench": "secondaries", "type": "counters", "lines": notify}));
    out.emit(&json!({"bench": "secondaries", "type": "end", "loadavg": machine::loadavg()}));
    Ok(())
}
