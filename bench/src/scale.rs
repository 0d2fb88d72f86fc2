//! The controller at scale: `dnsd` heartbeating 10, 100 and 1,000 members (echo responders
//! on loopback addresses, served by heartbeat's `echod` example in processes of their
//! own) at a 200 ms interval. For each pool size: dnsd's CPU share and resident memory
//! over one minute, then the delay from a member's death (its responder killed) to
//! dnsd's `node_down` event, over several trials.
//!
//! dnsd is pinned to CPU 1 and the responders (and this program) to CPU 0, so the
//! responders' work is never billed to dnsd or competes with it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dnsd_api::{EventKind, Health};
use serde_json::{Value, json};

use crate::daemon::{Dnsd, wait_for};
use crate::machine;
use crate::procs::{self, Guard};
use crate::report::{Reporter, num, say};
use crate::stats;

/// The echo port of the responders.
const ECHO_PORT: u16 = 17_007;
/// The first member address; the pool counts up from it.
const BASE: Ipv4Addr = Ipv4Addr::new(127, 88, 0, 1);

/// Options of the scale benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Pool sizes.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub sizes: Vec<usize>,
    /// How long CPU and memory are measured per pool size.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub measure: Duration,
    /// `heartbeat.interval`.
    #[arg(long, default_value = "200ms")]
    pub interval: String,
    /// `heartbeat.timeout`.
    #[arg(long, default_value = "150ms")]
    pub timeout: String,
    /// `heartbeat.protocol` (tcp or udp).
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Member deaths timed per pool size.
    #[arg(long, default_value_t = 10)]
    pub death_trials: usize,
    /// Wait until the 1-minute load average is below this before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub quiet_load: f64,
    /// Longest wait for a quiet machine.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub quiet_wait: Duration,
}

fn member_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(BASE) + u32::try_from(i).unwrap_or(0))
}

fn config(n: usize, dir: &Path, args: &Args) -> String {
    let mut c = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"svc.test.\"\nnameservers = [{{ name = \"ns1.svc.test.\", address = \"127.0.0.1\" }}]\n\
         [heartbeat]\nprotocol = \"{}\"\nport = {ECHO_PORT}\ninterval = \"{}\"\ntimeout = \"{}\"\nfall = 3\nrise = 3\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n",
        args.protocol,
        args.interval,
        args.timeout,
        d = dir.display()
    );
    for i in 0..n {
        c.push_str(&format!(
            "[[node]]\nname = \"n{}\"\naddress = \"{}\"\n",
            i + 1,
            member_addr(i)
        ));
    }
    // Services of ten members each, as a pool of many small services would be.
    for (s, group) in (0..n).collect::<Vec<_>>().chunks(10).enumerate() {
        let nodes: Vec<String> = group.iter().map(|i| format!("\"n{}\"", i + 1)).collect();
        c.push_str(&format!(
            "[[service]]\nname = \"s{}\"\nnodes = [{}]\n",
            s + 1,
            nodes.join(", ")
        ));
    }
    c
}

fn echod(range: &str, protocol: &str, log: &Path) -> anyhow::Result<Guard> {
    let bin = procs::workspace_binary("examples/echod")?;
    let protocols = if protocol == "udp" { "udp" } else { "tcp" };
    Guard::spawn_logged(
        "echod",
        Command::new(bin)
            .arg("--addrs")
            .arg(range)
            .arg("--port")
            .arg(ECHO_PORT.to_string())
            .arg("--protocols")
            .arg(protocols),
        log,
    )
}

/// Runs the scale benchmark.
pub fn run(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    if machine::online_cpus() < 2 {
        bail!("this benchmark needs 2 CPUs (dnsd on CPU 1, the responders on CPU 0)");
    }
    procs::pin_self(0)?;
    out.emit(&machine::environment("scale"));
    let dir = procs::temp_dir("dnsd-bench-scale-")?;
    let interval = humantime::parse_duration(&args.interval).context("bad --interval")?;
    let hz = procs::clock_ticks();
    let mut sizes: Vec<Value> = Vec::new();
    for &n in &args.sizes {
        procs::check_stop()?;
        if n < 2 {
            bail!("pool sizes must be at least 2 (one member is the victim)");
        }
        let sdir = dir.path().join(format!("n{n}"));
        std::fs::create_dir_all(&sdir)?;
        // Before this size's processes exist: they add to the load average themselves.
        let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
        let victim = member_addr(n - 1);
        let victim_name = format!("n{n}");
        let _pool = echod(
            &format!("{}-{}", member_addr(0), member_addr(n - 2)),
            &args.protocol,
            &sdir.join("echod.log"),
        )?;
        let mut victim_echod = echod(
            &victim.to_string(),
            &args.protocol,
            &sdir.join("victim.log"),
        )?;
        let dnsd = Dnsd::start(&sdir, &config(n, &sdir, args))?;
        procs::pin_tree(dnsd.pid(), 1)?;
        let up = wait_for(Duration::from_secs(120), Duration::from_millis(200), || {
            let st = dnsd.status().ok()?;
            st.nodes
                .iter()
                .all(|m| m.health == Health::Up)
                .then_some(())
        })?;
        if up.is_none() {
            bail!(
                "not every one of {n} members came up; dnsd log:\n{}",
                dnsd.log_tail(20)
            );
        }
        say(format!("{n} members up; measuring {:?}", args.measure));

        // CPU and memory over the measuring window, sampled every second.
        procs::pin_tree(dnsd.pid(), 1)?;
        let pid = dnsd.pid();
        let split0 = procs::cpu_split_ticks(pid).unwrap_or_default();
        let t0 = Instant::now();
        let mut rss: Vec<f64> = Vec::new();
        while t0.elapsed() < args.measure {
            procs::sleep(Duration::from_secs(1))?;
            if let Some(b) = procs::rss_bytes(pid) {
                rss.push(b as f64 / (1024.0 * 1024.0));
            }
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let split1 = procs::cpu_split_ticks(pid).unwrap_or_default();
        let user_s = split1.0.saturating_sub(split0.0) as f64 / hz;
        let system_s = split1.1.saturating_sub(split0.1) as f64 / hz;
        let cpu_s = user_s + system_s;
        let probes = n as f64 * elapsed / interval.as_secs_f64();
        let cpu_pct = cpu_s / elapsed * 100.0;

        // Deaths: kill the victim's responder, time dnsd's node_down event.
        let mut since = dnsd.events(0)?.last().map_or(0, |e| e.seq);
        let mut delays: Vec<f64> = Vec::new();
        for trial in 1..=args.death_trials {
            procs::check_stop()?;
            // Anywhere in the victim's probe cycle.
            let jitter = u64::try_from(interval.as_millis()).unwrap_or(200) * 2;
            procs::sleep(Duration::from_millis(rand::random_range(0..jitter.max(1))))?;
            let kill_ms = machine::now_ms();
            victim_echod.kill_now();
            let down = wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
                let events = dnsd.events(since).ok()?;
                events
                    .iter()
                    .find(|e| {
                        e.kind == EventKind::NodeDown && e.node.as_deref() == Some(&victim_name)
                    })
                    .cloned()
            })?;
            let Some(down) = down else {
                bail!(
                    "no node_down for {victim_name} within 30 s; log:\n{}",
                    dnsd.log_tail(20)
                );
            };
            let delay = down.at_ms.saturating_sub(kill_ms) as f64;
            since = down.seq;
            delays.push(delay);
            out.emit(&json!({"bench": "scale", "type": "death", "members": n, "trial": trial, "down_delay_ms": delay}));
            victim_echod = echod(
                &victim.to_string(),
                &args.protocol,
                &sdir.join("victim.log"),
            )?;
            let back = wait_for(Duration::from_secs(30), Duration::from_millis(20), || {
                let events = dnsd.events(since).ok()?;
                events
                    .iter()
                    .find(|e| {
                        e.kind == EventKind::NodeUp && e.node.as_deref() == Some(&victim_name)
                    })
                    .cloned()
            })?;
            let Some(back) = back else {
                bail!(
                    "{victim_name} never came back up; log:\n{}",
                    dnsd.log_tail(20)
                );
            };
            since = back.seq;
        }
        let record = json!({
            "bench": "scale", "type": "size", "members": n, "services": n.div_ceil(10),
            "interval": args.interval, "protocol": args.protocol, "measured_s": elapsed,
            "cpu_pct_of_one_core": cpu_pct,
            "user_pct": user_s / elapsed * 100.0,
            "system_pct": system_s / elapsed * 100.0,
            "cpu_us_per_probe": cpu_s * 1e6 / probes,
            "probes_per_s": n as f64 / interval.as_secs_f64(),
            "rss_mib": stats::summary(&rss),
            "peak_rss_mib": procs::peak_rss_bytes(pid).map(|b| b as f64 / (1024.0 * 1024.0)),
            "down_delay_ms": stats::summary(&delays),
            "quiet": quiet,
        });
        say(format!(
            "{n:5} members: dnsd CPU {cpu_pct:.2}% of one core (user {:.2}%, system {:.2}%; {:.1} us per probe), RSS median {} MiB max {} MiB; node_down after median {} ms (min {}, p95 {}, max {})",
            user_s / elapsed * 100.0,
            system_s / elapsed * 100.0,
            cpu_s * 1e6 / probes,
            num(stats::median(&rss), 1),
            num(rss.iter().copied().reduce(f64::max), 1),
            num(stats::median(&delays), 0),
            num(delays.iter().copied().reduce(f64::min), 0),
            num(stats::percentile(&delays, 95.0), 0),
            num(delays.iter().copied().reduce(f64::max), 0),
        ));
        out.emit(&record);
        sizes.push(record);
        drop(dnsd);
    }
    out.emit(&json!({"bench": "scale", "type": "end", "loadavg": machine::loadavg()}));
    Ok(())
}
