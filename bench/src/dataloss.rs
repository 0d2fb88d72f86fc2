//! The data-loss window of dnsd's mirroring side by side with lsyncd, on lab hosts.
//!
//! The same load in every configuration: `mirror`'s writer creates one small numbered
//! file per write on the primary (h1), 100 a second, each written aside and renamed into
//! place, so a write exists whole or not at all and its presence anywhere (a live copy,
//! a kept folder) is a test of one name. After a random time the primary is crashed (the
//! lab's crash: every process of the host dies, its data stays) and two counts are taken:
//!
//! - **lost on the promoted member**: writes h1 had that the member now serving lacks
//!   once the pool has converged. For dnsd, the member its election promoted; for lsyncd,
//!   which has no failover of its own, the secondary one would fail over to (h2, the next
//!   in order). What every secondary held at the failover (when dnsd promoted; for lsyncd
//!   1.5 s after the crash) is recorded too, to see what the election changed;
//! - **lost anywhere**: writes in no member's live data nor in any kept folder
//!   (`<path>.dnsd-kept/...`; lsyncd keeps nothing) once the pool runs normally again:
//!   h1 revived and every member mirrored from the new primary (dnsd does this itself;
//!   for lsyncd, lsyncd is started on the new primary towards the others, as an operator
//!   or a failover script would).
//!
//! Configurations (`--systems`): `lsyncd` (its default `delay`), `lsyncd:N` (`delay = N`),
//! lsyncd on the primary pushing to every secondary with `default.rsync` over ssh; and
//! `dnsd:INTERVAL[:ELECTION]`, `[mirror] interval` with `[[service]] election` (left out:
//! dnsd's default). Trials are interleaved (one of each configuration, then the next),
//! so a drift of the machine affects all alike and a time limit leaves equal counts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dnsd_api::Health;
use integration::lab::{DATA_DIR, Host, Lab, LabOptions, report as lab_report};
use serde_json::{Value, json};

use crate::daemon::{Dnsd, tail, wait_for};
use crate::machine;
use crate::mirror::for_each_file;
use crate::procs::{self, Guard};
use crate::report::{Reporter, num, say};
use crate::stats;

/// lsyncd's `delay` when none is set (seconds; its manual and `default.rsync`).
const LSYNCD_DEFAULT_DELAY: u64 = 15;
/// Longest wait for a replicator to be ready, for a promotion, and for the pool to
/// converge after the failed primary is back.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// When lsyncd's secondaries are looked at after the crash: when dnsd, at its default
/// heartbeat (3 misses at 500 ms), would have promoted one. Either way a transfer the
/// crash interrupted has about that long to land before the copies are counted.
const LSYNCD_FAILOVER_AFTER: Duration = Duration::from_millis(1500);
/// Writing before the crash beyond one sync cycle and a random part of another (and the
/// 2 s `crash_after` adds), so every system is in its steady state when the crash comes:
/// lsyncd's first copy starts only `delay` after the first write, and one rsync over a
/// fresh ssh connection took 1 to 2 s on a busy 2-CPU machine.
const SETTLE: Duration = Duration::from_secs(3);

/// Options of the data-loss benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Crash trials per configuration.
    #[arg(long, default_value_t = 10)]
    pub trials: usize,
    /// Configurations: `lsyncd` (default delay), `lsyncd:SECONDS`, `dnsd:INTERVAL` or
    /// `dnsd:INTERVAL:freshest|round-robin`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lsyncd,lsyncd:1,dnsd:1s:freshest,dnsd:1s:round-robin,dnsd:5s:freshest,dnsd:5s:round-robin"
    )]
    pub systems: Vec<System>,
    /// Lab hosts: the primary and its secondaries (2 or more).
    #[arg(long, default_value_t = 3)]
    pub hosts: usize,
    /// Writes (files) per second on the primary.
    #[arg(long, default_value_t = 100)]
    pub write_rate: u32,
    /// No new round of trials starts after this much measuring.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
    /// Wait until the 1-minute load average is below this before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub quiet_load: f64,
    /// Longest wait for a quiet machine.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub quiet_wait: Duration,
    /// Measure nothing: print the table of the trial records in this results file (run
    /// without `--out`, which would truncate it first).
    #[arg(long)]
    pub table_of: Option<PathBuf>,
}

/// One configuration under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum System {
    /// lsyncd on the primary, `default.rsync` over ssh to every secondary.
    Lsyncd {
        /// `delay` in seconds; `None`: lsyncd's default.
        delay: Option<u64>,
    },
    /// dnsd mirroring every `interval`, with `election` (`None`: dnsd's default).
    Dnsd {
        interval: Duration,
        interval_text: String,
        election: Option<String>,
    },
}

impl FromStr for System {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<System> {
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("lsyncd"), None, None, None) => Ok(System::Lsyncd { delay: None }),
            (Some("lsyncd"), Some(delay), None, None) => Ok(System::Lsyncd {
                delay: Some(
                    delay
                        .parse()
                        .with_context(|| format!("{text:?}: lsyncd's delay is whole seconds"))?,
                ),
            }),
            (Some("dnsd"), Some(interval), election, None) => {
                let parsed = humantime::parse_duration(interval)
                    .with_context(|| format!("{text:?}: bad interval"))?;
                if let Some(e) = election.filter(|e| !["freshest", "round-robin"].contains(e)) {
                    bail!("{text:?}: election is freshest or round-robin, not {e:?}");
                }
                Ok(System::Dnsd {
                    interval: parsed,
                    interval_text: interval.to_owned(),
                    election: election.map(str::to_owned),
                })
            }
            _ => bail!(
                "{text:?}: expected lsyncd, lsyncd:SECONDS, dnsd:INTERVAL or dnsd:INTERVAL:ELECTION"
            ),
        }
    }
}

impl System {
    /// The name in results and tables.
    fn name(&self) -> &'static str {
        match self {
            System::Lsyncd { .. } => "lsyncd",
            System::Dnsd { .. } => "dnsd",
        }
    }

    /// Its setting, as the table shows it.
    fn setting(&self) -> String {
        match self {
            System::Lsyncd { delay: None } => format!("delay {LSYNCD_DEFAULT_DELAY} s (default)"),
            System::Lsyncd { delay: Some(d) } => format!("delay = {d}"),
            System::Dnsd {
                interval_text,
                election,
                ..
            } => format!(
                "interval {interval_text}, {}",
                election.as_deref().unwrap_or("default election")
            ),
        }
    }

    /// How often it copies at most: the crash falls anywhere in one such cycle.
    fn cycle(&self) -> Duration {
        match self {
            System::Lsyncd { delay } => {
                Duration::from_secs(delay.unwrap_or(LSYNCD_DEFAULT_DELAY).max(1))
            }
            System::Dnsd { interval, .. } => *interval,
        }
    }
}

/// Revives every host and empties its data folder and kept folders: a clean start.
pub fn fresh_hosts(lab: &Lab) -> anyhow::Result<()> {
    for h in lab.hosts() {
        lab.revive(h)
            .map_err(|e| anyhow::anyhow!("revive: {}", lab_report(&e)))?;
        lab.exec(
            h,
            &[
                "sh",
                "-c",
                "rm -rf /srv/data /srv/data.dnsd-kept && mkdir -m 0755 /srv/data",
            ],
        )
        .map_err(|e| anyhow::anyhow!("clearing {}: {}", h.name, lab_report(&e)))?;
    }
    Ok(())
}

/// dnsd's configuration: every lab host a member of `www`, in order, `/srv/data`
/// mirrored every `interval`, and `service_extra` (lines of the `[[service]]` table).
pub fn dnsd_config(lab: &Lab, dir: &Path, interval: &str, service_extra: &str) -> String {
    format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"svc.test.\"\nnameservers = [{{ name = \"ns1.svc.test.\", address = \"127.0.0.1\" }}]\n\
         [control]\nsocket = \"{d}/control.sock\"\n[state]\ndir = \"{d}/state\"\n\
         [mirror]\ninterval = \"{interval}\"\nidentity = \"{k}\"\nknown_hosts = \"{kh}\"\npeer_identity = \"{k}\"\npeer_known_hosts = \"{kh}\"\n\
         {nodes}\
         [[service]]\nname = \"www\"\nnodes = [{m}]\npaths = [\"{DATA_DIR}\"]\n{service_extra}",
        d = dir.display(),
        k = lab.client_key().display(),
        kh = lab.known_hosts().display(),
        nodes = lab.node_tables(),
        m = lab.node_list()
    )
}

/// Waits until dnsd sees every member up, `primary` primary and every secondary synced
/// at least once.
pub fn wait_mirrored(dnsd: &Dnsd, primary: &str) -> anyhow::Result<()> {
    let ready = wait_for(READY_TIMEOUT, Duration::from_millis(100), || {
        let st = dnsd.status().ok()?;
        let www = st.service("www")?;
        let synced = www
            .members
            .iter()
            .filter(|m| m.node != www.primary)
            .all(|m| m.sync.as_ref().is_some_and(|s| s.last_sync_ms.is_some()));
        (st.nodes.iter().all(|n| n.health == Health::Up) && synced && www.primary == primary)
            .then_some(())
    })?;
    if ready.is_none() {
        bail!(
            "dnsd never had every member up and synced; log:\n{}",
            dnsd.log_tail(30)
        );
    }
    Ok(())
}

/// How long to write before the crash: `whole` sync cycles, a random part of one more
/// (so the crash falls anywhere in the cycle), and 2 s.
pub fn crash_after(cycle: Duration, whole: u32) -> Duration {
    let cycle_ms = u64::try_from(cycle.as_millis()).unwrap_or(1000);
    cycle * whole + Duration::from_millis(rand::random_range(0..=cycle_ms)) + Duration::from_secs(2)
}

/// Runs the writer on `host` (files under `/srv/data/w`, `rate` a second) for `run_for`,
/// then crashes the host, which kills the writer with everything else there. Returns
/// the time of the crash.
pub fn write_then_crash(
    lab: &Lab,
    host: &Host,
    rate: u32,
    run_for: Duration,
    log: &Path,
) -> anyhow::Result<Instant> {
    let me = std::env::current_exe().context("finding this executable")?;
    let mut writer = Guard::spawn_logged(
        "writer",
        lab.command(host, &me.to_string_lossy()).args([
            "writer",
            "--dir",
            &format!("{DATA_DIR}/w"),
            "--rate",
            &rate.to_string(),
        ]),
        log,
    )?;
    procs::sleep(run_for)?;
    if writer.exited() {
        bail!("the writer stopped early: {}", tail(log, 10));
    }
    let crashed = Instant::now();
    lab.crash(host)
        .map_err(|e| anyhow::anyhow!("crash: {}", lab_report(&e)))?;
    writer.kill_now();
    Ok(crashed)
}

/// Waits for dnsd to name a primary other than `old`, and returns it.
pub fn wait_promoted(dnsd: &Dnsd, old: &str) -> anyhow::Result<String> {
    let promoted = wait_for(PROMOTE_TIMEOUT, Duration::from_millis(20), || {
        let st = dnsd.status().ok()?;
        let p = st.service("www")?.primary.clone();
        (p != old).then_some(p)
    })?;
    promoted.with_context(|| {
        format!(
            "dnsd promoted nobody within {PROMOTE_TIMEOUT:?}; log:\n{}",
            dnsd.log_tail(30)
        )
    })
}

/// The sequence numbers of the writer's files anywhere under `root` (files whose name is
/// a number; the writer's temporary files are not).
pub fn seqs_under(root: &Path) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for_each_file(root, |path, _| {
        if let Some(seq) = path.file_name().and_then(|n| n.to_str()?.parse().ok()) {
            out.insert(seq);
        }
    });
    out
}

/// Where a host keeps what dnsd's resyncs set aside (`/srv/data.dnsd-kept`).
fn kept_root(lab: &Lab, host: &Host) -> PathBuf {
    let data = lab.data_path(host);
    let mut kept = data.into_os_string();
    kept.push(".dnsd-kept");
    PathBuf::from(kept)
}

/// A string in Lua's syntax.
fn lua_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// lsyncd on `from`, pushing `/srv/data` to every other host with rsync over ssh (the
/// lab's key and known_hosts, strict host key checking), logging to `log`.
fn lsyncd_config(lab: &Lab, from: &Host, delay: Option<u64>, log: &Path) -> String {
    let mut text = format!(
        "settings {{\n    logfile = {},\n    nodaemon = true,\n    insist = true,\n}}\n",
        lua_string(&log.display().to_string())
    );
    for to in lab.hosts().iter().filter(|h| h.name != from.name) {
        let delay = delay.map_or(String::new(), |d| format!("    delay = {d},\n"));
        text.push_str(&format!(
            "sync {{\n    default.rsync,\n    source = {},\n    target = {},\n{delay}    rsync = {{ archive = true, rsh = {} }},\n}}\n",
            lua_string(&format!("{DATA_DIR}/")),
            lua_string(&format!("root@{}:{DATA_DIR}/", to.addr)),
            lua_string(&lab.rsync_rsh()),
        ));
    }
    text
}

/// Starts lsyncd on `from` and waits until it has finished its start-up copy to every
/// other host (it sets its inotify watches up before that copy, so every later change is
/// seen).
fn start_lsyncd(
    lab: &Lab,
    from: &Host,
    delay: Option<u64>,
    dir: &Path,
) -> anyhow::Result<(Guard, PathBuf)> {
    let log = dir.join(format!("lsyncd-{}.log", from.name));
    let config = lab.data_path(from).with_file_name("lsyncd.lua");
    std::fs::write(&config, lsyncd_config(lab, from, delay, &log))
        .with_context(|| format!("writing {}", config.display()))?;
    let mut lsyncd = Guard::spawn_logged(
        "lsyncd",
        lab.command(from, "lsyncd").arg("/srv/lsyncd.lua"),
        &dir.join(format!("lsyncd-{}.out", from.name)),
    )?;
    let targets = lab.hosts().len() - 1;
    let started = wait_for(READY_TIMEOUT, Duration::from_millis(100), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let done = text
            .lines()
            .filter(|l| l.contains("Startup of") && l.contains("finished"))
            .count();
        (done >= targets).then_some(())
    })?;
    if started.is_none() || lsyncd.exited() {
        bail!(
            "lsyncd on {} did not finish its start-up; log:\n{}",
            from.name,
            tail(&log, 20)
        );
    }
    Ok((lsyncd, log))
}

/// Whether a pass is still sorting what it set aside on `host` (dnsd's
/// `<path>.dnsd-kept/.staging-*`: what it keeps is known only once that is gone).
fn sorting_aside(lab: &Lab, host: &Host) -> bool {
    std::fs::read_dir(kept_root(lab, host)).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
    })
}

/// Waits until every host's live data holds exactly what `primary`'s does and no pass
/// is still sorting what it set aside; whether that happened.
fn converge(lab: &Lab, primary: &Host) -> anyhow::Result<bool> {
    let done = wait_for(CONVERGE_TIMEOUT, Duration::from_millis(200), || {
        let want = seqs_under(&lab.data_path(primary));
        lab.hosts()
            .iter()
            .all(|h| seqs_under(&lab.data_path(h)) == want && !sorting_aside(lab, h))
            .then_some(())
    })?;
    Ok(done.is_some())
}

/// What the hosts held live at the failover, before anything was resynced.
struct Counts {
    /// h1's writes: all that was written.
    written: BTreeSet<u64>,
    /// Every secondary's live copy.
    at_failover: Vec<(String, BTreeSet<u64>)>,
}

impl Counts {
    /// What every host holds live now (h1: what was written).
    fn take(lab: &Lab) -> Counts {
        let mut at_failover: Vec<(String, BTreeSet<u64>)> = lab
            .hosts()
            .iter()
            .map(|h| (h.name.clone(), seqs_under(&lab.data_path(h))))
            .collect();
        let (_, written) = at_failover.remove(0);
        Counts {
            written,
            at_failover,
        }
    }
}

/// Runs one trial of `system`; returns its record.
fn trial(lab: &Lab, system: &System, round: usize, rate: u32, dir: &Path) -> anyhow::Result<Value> {
    let hosts = lab.hosts();
    let h1 = &hosts[0];
    fresh_hosts(lab)?;
    let tdir = dir.join(format!(
        "{}-{}-{round}",
        system.name(),
        system.setting().replace([' ', ',', '=', '(', ')'], "")
    ));
    std::fs::create_dir_all(&tdir).with_context(|| format!("creating {}", tdir.display()))?;
    let run_for = crash_after(system.cycle(), 1) + SETTLE;
    let writer_log = tdir.join("writer.log");
    let mut record = json!({
        "bench": "dataloss", "type": "trial", "system": system.name(), "setting": system.setting(),
        "round": round, "ran_s": run_for.as_secs_f64(), "write_rate": rate,
    });
    let (counts, promoted, converged) = match system {
        System::Dnsd {
            interval_text,
            election,
            ..
        } => {
            let extra = election
                .as_ref()
                .map_or(String::new(), |e| format!("election = \"{e}\"\n"));
            let dnsd = Dnsd::start(&tdir, &dnsd_config(lab, &tdir, interval_text, &extra))?;
            wait_mirrored(&dnsd, &h1.name)?;
            let crashed = write_then_crash(lab, h1, rate, run_for, &writer_log)?;
            let promoted = wait_promoted(&dnsd, &h1.name)?;
            record["failover_ms"] = json!(crashed.elapsed().as_secs_f64() * 1000.0);
            let counts = Counts::take(lab);
            lab.revive(h1)
                .map_err(|e| anyhow::anyhow!("revive: {}", lab_report(&e)))?;
            let host = hosts
                .iter()
                .find(|h| h.name == promoted)
                .context("dnsd promoted an unknown member")?;
            let converged = converge(lab, host)?;
            if !converged {
                say(format!(
                    "  the pool did not converge on {promoted} within {CONVERGE_TIMEOUT:?}; dnsd log:\n{}",
                    dnsd.log_tail(15)
                ));
            }
            (counts, promoted, converged)
        }
        System::Lsyncd { delay } => {
            let (mut lsyncd, log) = start_lsyncd(lab, h1, *delay, &tdir)?;
            write_then_crash(lab, h1, rate, run_for, &writer_log)?;
            lsyncd.kill_now();
            let calls = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("Calling rsync"))
                .count();
            record["rsync_calls_per_target"] = json!(calls / (hosts.len() - 1));
            procs::sleep(LSYNCD_FAILOVER_AFTER)?;
            let counts = Counts::take(lab);
            // Failing over by hand: h2 serves, h1 is revived, and lsyncd now runs on h2.
            let h2 = &hosts[1];
            lab.revive(h1)
                .map_err(|e| anyhow::anyhow!("revive: {}", lab_report(&e)))?;
            let after = tdir.join("after");
            std::fs::create_dir_all(&after)
                .with_context(|| format!("creating {}", after.display()))?;
            let (_lsyncd_on_h2, _) = start_lsyncd(lab, h2, *delay, &after)?;
            let converged = converge(lab, h2)?;
            (counts, h2.name.clone(), converged)
        }
    };
    // What the promoted member serves once the pool has converged (a transfer the crash
    // interrupted may have landed after the failover).
    let on_promoted = hosts
        .iter()
        .find(|h| h.name == promoted)
        .map(|h| seqs_under(&lab.data_path(h)))
        .unwrap_or_default();
    let mut anywhere: BTreeSet<u64> = BTreeSet::new();
    let mut kept_files = 0usize;
    let mut live_now: BTreeSet<u64> = BTreeSet::new();
    for h in hosts {
        live_now.extend(seqs_under(&lab.data_path(h)));
        let kept = seqs_under(&kept_root(lab, h));
        kept_files += kept.len();
        anywhere.extend(kept);
    }
    anywhere.extend(live_now.iter().copied());
    let written = &counts.written;
    let lost_promoted = written.difference(&on_promoted).count();
    let lost_anywhere = written.difference(&anywhere).count();
    let only_kept = written
        .iter()
        .filter(|s| anywhere.contains(s) && !live_now.contains(s))
        .count();
    let newest = |s: &BTreeSet<u64>| s.iter().next_back().copied().unwrap_or(0);
    let period_ms = 1000.0 / f64::from(rate.max(1));
    let members: serde_json::Map<String, Value> = counts
        .at_failover
        .iter()
        .map(|(h, s)| (h.clone(), json!(written.difference(s).count())))
        .collect();
    let fields = json!({
        "written": written.len(), "promoted": promoted, "on_promoted": on_promoted.len(),
        "lost_promoted": lost_promoted, "lost_anywhere": lost_anywhere,
        "only_in_kept": only_kept, "kept_files": kept_files,
        "lost_on_member_at_failover": members,
        "extra_on_promoted": on_promoted.difference(written).count(),
        "window_ms": newest(written).saturating_sub(newest(&on_promoted)) as f64 * period_ms,
        "converged": converged,
    });
    if let (Some(r), Some(f)) = (record.as_object_mut(), fields.as_object()) {
        r.extend(f.clone());
    }
    Ok(record)
}

/// Runs the data-loss benchmark (or prints the table of an earlier run).
pub fn run(args: &Args, out: &Reporter) -> anyhow::Result<()> {
    if let Some(path) = &args.table_of {
        return summarise_file(path);
    }
    procs::require_programs(&["rsync", "ssh", "sshd", "socat", "lsyncd"])?;
    if args.hosts < 2 {
        bail!("--hosts: a primary and at least one secondary");
    }
    let mut env = machine::environment("dataloss");
    env["versions"]["lsyncd"] = json!(lsyncd_version());
    out.emit(&env);
    let lab = Lab::start(LabOptions::new(args.hosts))
        .map_err(|e| anyhow::anyhow!("lab setup failed: {}", lab_report(&e)))?;
    let dir = procs::temp_dir("dnsd-bench-dataloss-")?;
    let quiet = machine::wait_quiet(args.quiet_load, args.quiet_wait)?;
    out.emit(&json!({"bench": "dataloss", "type": "quiet", "state": quiet}));
    let started = Instant::now();
    let mut trials: Vec<Value> = Vec::new();
    'rounds: for round in 1..=args.trials {
        for system in &args.systems {
            procs::check_stop()?;
            if started.elapsed() > args.time_limit {
                say(format!(
                    "time limit {} reached: no more trials after round {}",
                    humantime::format_duration(args.time_limit),
                    round - 1
                ));
                break 'rounds;
            }
            let record = trial(&lab, system, round, args.write_rate, dir.path())?;
            say(format!(
                "round {round:2} {:6} {:32} wrote {:5}, promoted {} lacks {:4}, lost anywhere {:4}, only in kept folders {:4}",
                system.name(),
                system.setting(),
                record["written"],
                record["promoted"].as_str().unwrap_or("?"),
                record["lost_promoted"],
                record["lost_anywhere"],
                record["only_in_kept"],
            ));
            out.emit(&record);
            trials.push(record);
        }
    }
    for summary in summarise(&trials, args.write_rate) {
        out.emit(&summary);
    }
    out.emit(
        &json!({"bench": "dataloss", "type": "end", "loadavg": machine::loadavg(),
        "measured_s": started.elapsed().as_secs()}),
    );
    Ok(())
}

/// lsyncd's version line (`Version: 2.2.3`).
fn lsyncd_version() -> Option<String> {
    let out = std::process::Command::new("lsyncd")
        .arg("--version")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("Version"))
        .map(|l| l.trim().to_owned())
}

/// The member a round-robin election promotes when h1 fails: the next in order.
const NEXT_IN_ORDER: &str = "h2";

/// Prints the table (Markdown, on stderr) and returns one summary record per
/// configuration, in the order the trials first name them.
///
/// Beside what the promoted member lacked, two figures from the same trials show what
/// the election changed: what h2, the next member in order (round-robin's choice), lacked
/// at the failover, and what the secondary holding the most writes then lacked (the best
/// any election could have done, counting writes of a pass still under way).
fn summarise(trials: &[Value], write_rate: u32) -> Vec<Value> {
    say(format!(
        "\n== writes lost at a primary crash, {write_rate} writes/s: medians (p95, max) ==",
    ));
    say(
        "| system | setting | trials | lost on the promoted member | had h2 been promoted | on the best secondary | lost anywhere | only in kept folders | promoted |",
    );
    say("|---|---|---:|---:|---:|---:|---:|---:|---|");
    let mut configurations: Vec<(&Value, &Value)> = Vec::new();
    for t in trials {
        let key = (&t["system"], &t["setting"]);
        if !configurations.contains(&key) {
            configurations.push(key);
        }
    }
    let mut summaries = Vec::new();
    for (system, setting) in configurations {
        let mine: Vec<&Value> = trials
            .iter()
            .filter(|t| &t["system"] == system && &t["setting"] == setting)
            .collect();
        let pick = |get: &dyn Fn(&Value) -> Option<f64>| -> Value {
            stats::summary(&mine.iter().filter_map(|t| get(t)).collect::<Vec<f64>>())
        };
        let at_failover = |t: &Value| t["lost_on_member_at_failover"].as_object().cloned();
        let promoted = pick(&|t| t["lost_promoted"].as_f64());
        let next = pick(&|t| at_failover(t)?.get(NEXT_IN_ORDER)?.as_f64());
        let best = pick(&|t| {
            at_failover(t)?
                .values()
                .filter_map(Value::as_f64)
                .min_by(f64::total_cmp)
        });
        let anywhere = pick(&|t| t["lost_anywhere"].as_f64());
        let kept = pick(&|t| t["only_in_kept"].as_f64());
        let window = pick(&|t| t["window_ms"].as_f64());
        let mut who: Vec<String> = Vec::new();
        for t in &mine {
            if let Some(p) = t["promoted"].as_str() {
                let n = mine.iter().filter(|u| u["promoted"] == p).count();
                let entry = format!("{p} ×{n}");
                if !who.contains(&entry) {
                    who.push(entry);
                }
            }
        }
        let cell = |v: &Value| {
            let g = |k: &str| num(v[k].as_f64(), 0);
            format!("{} ({}, {})", g("median"), g("p95"), g("max"))
        };
        say(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            system.as_str().unwrap_or("?"),
            setting.as_str().unwrap_or("?"),
            mine.len(),
            cell(&promoted),
            cell(&next),
            cell(&best),
            cell(&anywhere),
            cell(&kept),
            who.join(", ")
        ));
        summaries.push(
            json!({"bench": "dataloss", "type": "summary", "system": system,
            "setting": setting, "write_rate": write_rate,
            "lost_promoted": promoted, "lost_had_next_been_promoted": next,
            "lost_on_best_secondary": best, "lost_anywhere": anywhere, "only_in_kept": kept,
            "window_ms": window, "promoted": who,
            "not_converged": mine.iter().filter(|t| t["converged"] == false).count()}),
        );
    }
    summaries
}

/// Prints the table of an earlier run from its results file (its trial records).
fn summarise_file(path: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut trials = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let record: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        if record["bench"] == "dataloss" && record["type"] == "trial" {
            trials.push(record);
        }
    }
    if trials.is_empty() {
        bail!("{} holds no dataloss trial", path.display());
    }
    let rate = trials[0]["write_rate"].as_u64().unwrap_or(0);
    summarise(&trials, u32::try_from(rate).unwrap_or(0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_and_bad_ones_are_named() {
        assert_eq!(
            "lsyncd".parse::<System>().unwrap(),
            System::Lsyncd { delay: None }
        );
        assert_eq!(
            "lsyncd:1".parse::<System>().unwrap(),
            System::Lsyncd { delay: Some(1) }
        );
        let dnsd: System = "dnsd:5s:round-robin".parse().unwrap();
        assert_eq!(dnsd.cycle(), Duration::from_secs(5));
        assert_eq!(dnsd.setting(), "interval 5s, round-robin");
        assert_eq!(
            "dnsd:1s".parse::<System>().unwrap().setting(),
            "interval 1s, default election"
        );
        for bad in [
            "rsync",
            "lsyncd:x",
            "dnsd",
            "dnsd:soon",
            "dnsd:1s:random",
            "dnsd:1s:freshest:x",
        ] {
            let error = bad.parse::<System>().unwrap_err().to_string();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn lua_strings_are_quoted() {
        assert_eq!(lua_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
