//! What the figures were measured on: the date, the machine (CPUs, model, kernel,
//! memory), the versions of everything compared and dnsd's commit, and the wait for a
//! quiet machine before a final measurement.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::procs;
use crate::report::say;

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Waits (up to `max_wait`) until the 1-minute load average is below `threshold`, saying
/// so every 30 s. Returns the load average when it stopped waiting and whether the machine
/// got quiet.
pub fn wait_quiet(threshold: f64, max_wait: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut last_said = Instant::now();
    loop {
        let load = loadavg().unwrap_or([f64::NAN; 3]);
        if load[0] < threshold {
            say(format!(
                "machine quiet: load average {:.2} {:.2} {:.2} (waited {:.0} s)",
                load[0],
                load[1],
                load[2],
                started.elapsed().as_secs_f64()
            ));
            return Ok(
                json!({"quiet": true, "loadavg": load, "waited_s": started.elapsed().as_secs()}),
            );
        }
        if started.elapsed() >= max_wait {
            say(format!(
                "machine NOT quiet after {:.0} s (load average {:.2}); measuring anyway",
                started.elapsed().as_secs_f64(),
                load[0]
            ));
            return Ok(
                json!({"quiet": false, "loadavg": load, "waited_s": started.elapsed().as_secs()}),
            );
        }
        if last_said.elapsed() >= Duration::from_secs(30) {
            say(format!(
                "waiting for a quiet machine: 1-minute load average {:.2} (want < {threshold})",
                load[0]
            ));
            last_said = Instant::now();
        }
        procs::sleep(Duration::from_secs(2))?;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The first line of a command's combined output that contains `needle` (or the first
/// line when `needle` is empty), trimmed; `None` if the command cannot run.
fn version_line(program: &str, args: &[&str], needle: &str) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.contains(needle))
        .map(str::to_owned)
}

/// CPUs online on the machine (not this process's affinity, which a benchmark narrows).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(0)
}

/// The value of `key` in /proc/cpuinfo (first CPU).
fn cpuinfo(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
}

/// The repository this binary was built from (the workspace root).
pub fn repo_root() -> &'static Path {
    // bench/ is one level below the workspace root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// dnsd's commit (short hash), with `+dirty` when the working tree has changes.
pub fn commit() -> String {
    let repo = repo_root();
    let hash = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    // Read-only: `diff --quiet` exits 1 when tracked files differ from HEAD, and
    // --no-optional-locks keeps git from refreshing the index behind the lead's back.
    let dirty = Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(repo)
        .args(["diff", "--quiet", "HEAD", "--"])
        .status()
        .ok()
        .is_some_and(|s| s.code() == Some(1));
    if dirty { format!("{hash}+dirty") } else { hash }
}

/// Everything the document records about a run: date, machine, versions, commit and the
/// exact command line.
pub fn environment(bench: &str) -> Value {
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({
        "bench": bench,
        "type": "environment",
        "date": utc_now(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "commit": commit(),
        "machine": {
            "nproc": online_cpus(),
            "cpu_model": cpuinfo("model name"),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
            "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            "os": std::fs::read_to_string("/etc/debian_version").ok().map(|s| format!("Debian {}", s.trim())),
        },
        "loadavg": loadavg(),
        "versions": {
            "dnsperf": version_line("dnsperf", &["-h"], "Version"),
            "knotd": version_line("knotd", &["--version"], "version"),
            "nsd": version_line("nsd", &["-v"], "version"),
            "gdnsd": version_line("gdnsd", &["-h"], "version"),
            "rsync": version_line("rsync", &["--version"], "version"),
            "ssh": version_line("ssh", &["-V"], "OpenSSH"),
            "rustc": version_line("rustc", &["--version"], "rustc"),
        },
    })
}
