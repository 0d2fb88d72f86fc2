//! Processes the benchmarks start and what they cost: a guard that stops a child by PID
//! when dropped, CPU time from `/proc` (per process tree and per CPU), resident memory,
//! CPU affinity, and a stop flag raised by SIGINT/SIGTERM so a run interrupted by hand
//! still tears down its lab and children.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM raise the stop flag instead of killing the process, so the
/// benchmark's loops end and every guard (lab, children) is dropped in order.
pub fn install_stop_handler() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM asked us to stop.
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails when a stop was requested, so `?` unwinds to the guards.
pub fn check_stop() -> anyhow::Result<()> {
    if stopping() {
        bail!("interrupted (SIGINT/SIGTERM)");
    }
    Ok(())
}

/// Sleeps `d`, waking early (and failing) when a stop is requested.
pub fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_stop()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace period) and reaped
/// when the guard is dropped. The kill goes to this child's PID only.
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Option<Child>,
}

impl Guard {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn_logged(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Guard> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Guard::adopt(name, child))
    }

    /// Takes ownership of a child spawned elsewhere.
    pub fn adopt(name: &str, child: Child) -> Guard {
        Guard {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .unwrap_or(0)
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child has exited (and been reaped).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Sends SIGKILL to the child at once (a crash, not a shutdown) and reaps it.
    pub fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the child: SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            console::launch::stop_child(&mut child, grace);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// `(ppid, utime + stime)` of a process from `/proc/PID/stat` (all its threads, in ticks).
fn stat_of(pid: i32) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU time (user + system, ticks) of this process's children that have been waited for
/// (`cutime + cstime` of `/proc/self/stat`).
pub fn children_cpu_ticks() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some(end) = text.rfind(')') else { return 0 };
    let fields: Vec<&str> = text[end + 2..].split_whitespace().collect();
    // rest starts at field 3; cutime and cstime are fields 16 and 17.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(13) + get(14)
}

/// `(utime, stime)` of one process in ticks (all its threads): user and kernel time apart.
pub fn cpu_split_ticks(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// `root` and all its descendants, found by walking `/proc`.
pub fn process_tree(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = stat_of(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    tree
}

/// Sum of utime + stime, in ticks, over the processes listed (all threads of each).
pub fn cpu_ticks(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|&p| stat_of(p))
        .map(|(_, t)| t)
        .sum()
}

/// `(utime, stime)` summed over the processes listed, in ticks.
pub fn cpu_split_sum(pids: &[i32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|&p| cpu_split_ticks(p))
        .fold((0, 0), |(u, s), (pu, ps)| (u + pu, s + ps))
}

/// Busy ticks of one CPU from `/proc/stat`: user + nice + system + irq + softirq + steal
/// (softirq work billed to ksoftirqd or to whoever ran included).
pub fn cpu_busy_ticks(cpu: usize) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let label = format!("cpu{cpu}");
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(label.as_str()) {
            continue;
        }
        let v: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal ...
        if v.len() < 8 {
            bail!("short {label} line in /proc/stat: {line}");
        }
        return Ok(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    }
    bail!("no {label} line in /proc/stat")
}

/// Resident set size of a process in bytes (`VmRSS`).
pub fn rss_bytes(pid: i32) -> Option<u64> {
    status_field(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Peak resident set size of a process in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: i32) -> Option<u64> {
    status_field(pid, "VmHWM:").map(|kib| kib * 1024)
}

fn status_field(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Restricts the calling thread (and so every child it spawns later) to `cpu`.
pub fn pin_self(cpu: usize) -> anyhow::Result<()> {
    set_affinity(0, cpu).context("pinning this process")
}

fn set_affinity(tid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it, and
    // sched_setaffinity reads `size_of` bytes from it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One thread's name and the CPUs it may run on, after pinning.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThreadPin {
    pub pid: i32,
    pub tid: i32,
    pub name: String,
    pub cpus: String,
}

/// Pins every thread of `root` and its descendants to `cpu` (some servers pin their own
/// workers at start) and returns what each thread may run on afterwards, read back from
/// `Cpus_allowed_list`.
pub fn pin_tree(root: i32, cpu: usize) -> anyhow::Result<Vec<ThreadPin>> {
    let mut pins = Vec::new();
    for pid in process_tree(root) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            set_affinity(tid, cpu).with_context(|| format!("pinning thread {tid} of {pid}"))?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                .unwrap_or_default();
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            pins.push(ThreadPin {
                pid,
                tid,
                name: field("Name:"),
                cpus: field("Cpus_allowed_list:"),
            });
        }
    }
    let wrong: Vec<&ThreadPin> = pins.iter().filter(|p| p.cpus != cpu.to_string()).collect();
    if !wrong.is_empty() {
        bail!("threads not pinned to CPU {cpu}: {wrong:?}");
    }
    Ok(pins)
}

/// A temporary directory for a benchmark's configurations and logs, removed at the end
/// unless `BENCH_KEEP=1` is set (then its path is printed, for looking at the logs).
pub fn temp_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a temporary directory")?;
    if std::env::var_os("BENCH_KEEP").is_some_and(|v| v == "1") {
        dir.disable_cleanup(true);
        crate::report::say(format!("keeping {}", dir.path().display()));
    }
    Ok(dir)
}

/// The directory holding this executable (`target/release`), where the workspace's other
/// binaries are built too.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this executable has no directory")
}

/// A workspace binary beside this one (`dnsd`, `rsync-sync`) or one of its examples
/// (`examples/echod`); fails with the build command when it is missing.
pub fn workspace_binary(relative: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(relative);
    if !path.is_file() {
        bail!(
            "{} not found: build first with `cargo build --release --workspace --bins --examples`",
            path.display()
        );
    }
    Ok(path)
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Fails naming the missing programs and the script that installs them.
pub fn require_programs(programs: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    if !missing.is_empty() {
        bail!(
            "missing programs: {} (run `scripts/deps bench` as root)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Runs a command to completion with a time limit; returns its output, or fails with its
/// stderr when it exits non-zero or overruns.
pub fn run(command: &mut Command, limit: Duration) -> anyhow::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            break status;
        }
        if Instant::now() > deadline || stopping() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{command:?} did not finish within {limit:?} (or a stop was requested)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = std::process::Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    };
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
