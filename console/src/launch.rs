//! The one launcher of the real `dnsd` binary, for every program that runs one: the
//! integration tests' harness, the benchmarks and the demo.
//!
//! [`Launch::start`] runs `dnsd run --config FILE` with stdin closed and stderr (dnsd's
//! log) going to a file, then waits for the JSON ready line dnsd prints on stdout once
//! it serves ([`dnsd_api::Ready`]): a machine-readable signal, never a log pattern. A
//! thread reads that line and then keeps draining stdout, so dnsd never blocks on a full
//! pipe, and the caller waits on a channel with a deadline, so a silent dnsd cannot hang
//! it. The running [`Dnsd`] is stopped by its PID only: SIGTERM, so it saves its state,
//! then SIGKILL after a grace period; dropping it does the same.
//!
//! What differs between callers is an option of [`Launch`]: the log filter and extra
//! environment, scrubbing the caller's `DNSD_*` variables (dnsd reads configuration
//! overrides from them), the timeouts, a PID file, whether dnsd dies with its parent,
//! and whether a new start appends to the log (a demo's terminal server, revived). A
//! caller that plays a crash kills dnsd with [`Dnsd::kill`] (SIGKILL, no state saved).

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dnsd_api::Ready;

/// How long dnsd may take to print its ready line, unless [`Launch::ready_timeout`] says.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dnsd may take to exit after SIGTERM before it gets SIGKILL, unless
/// [`Launch::stop_grace`] says.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How much of dnsd's log an error about its start shows.
const LOG_LINES_IN_ERRORS: usize = 40;

/// Why dnsd could not be started. Every variant after the spawn has stopped the process.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create dnsd's log file {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {}", bin.display())]
    Spawn {
        bin: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write dnsd's PID file {}", path.display())]
    PidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("dnsd printed no ready line within {timeout:?}; the end of its log ({}):\n{tail}", log.display())]
    NotReady {
        timeout: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("dnsd ended ({status}) before it was ready; the end of its log ({}):\n{tail}", log.display())]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("dnsd printed an unreadable ready line {line:?}")]
    BadReady {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

/// How to run dnsd: the binary, where its log goes, and the options that differ between
/// callers. Build it, then [`Launch::start`] it on a configuration file (as often as
/// wanted: each start is a new process).
#[derive(Debug, Clone)]
pub struct Launch {
    bin: PathBuf,
    log: PathBuf,
    log_filter: String,
    env: Vec<(OsString, OsString)>,
    scrub_dnsd_env: bool,
    ready_timeout: Duration,
    stop_grace: Duration,
    die_with_parent: bool,
    pid_file: Option<PathBuf>,
    append_log: bool,
}

impl Launch {
    /// Runs the dnsd binary at `bin`, with its log (stderr) written to `log` (created, or
    /// truncated), the log filter `info`, and the default timeouts.
    pub fn new(bin: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Launch {
        Launch {
            bin: bin.into(),
            log: log.into(),
            log_filter: "info".to_owned(),
            env: Vec::new(),
            scrub_dnsd_env: false,
            ready_timeout: READY_TIMEOUT,
            stop_grace: STOP_GRACE,
            die_with_parent: false,
            pid_file: None,
            append_log: false,
        }
    }

    /// dnsd's log filter (`RUST_LOG`), e.g. `debug` to look into a run.
    pub fn log_filter(mut self, filter: impl Into<String>) -> Launch {
        self.log_filter = filter.into();
        self
    }

    /// Sets a variable in dnsd's environment (after the log filter, so `RUST_LOG` here
    /// wins, and after scrubbing, so a `DNSD_*` override here is kept).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes every `DNSD_*` variable of the caller's environment, so none of them can
    /// change the configuration under test (dnsd reads `DNSD_<SECTION>__<KEY>`).
    pub fn scrub_dnsd_env(mut self) -> Launch {
        self.scrub_dnsd_env = true;
        self
    }

    /// How long dnsd may take to print its ready line.
    pub fn ready_timeout(mut self, timeout: Duration) -> Launch {
        self.ready_timeout = timeout;
        self
    }

    /// How long dnsd may take to exit after SIGTERM before it gets SIGKILL.
    pub fn stop_grace(mut self, grace: Duration) -> Launch {
        self.stop_grace = grace;
        self
    }

    /// Has the kernel send dnsd SIGTERM when the thread that starts it dies, even by
    /// SIGKILL (see [`die_with_parent`]): for a caller that runs for dnsd's whole life
    /// on the thread that starts it, such as the demo.
    pub fn die_with_parent(mut self) -> Launch {
        self.die_with_parent = true;
        self
    }

    /// Writes dnsd's PID to `path` as soon as it is started (so a later run can find a
    /// dnsd left behind by a killed caller); removed when dnsd is stopped.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Launch {
        self.pid_file = Some(path.into());
        self
    }

    /// Appends each start's log to the log file instead of replacing it (a dnsd killed
    /// and started again keeps the log of its earlier life).
    pub fn append_log(mut self) -> Launch {
        self.append_log = true;
        self
    }

    /// Starts `dnsd run --config <config>` and waits for its ready line.
    pub fn start(&self, config: &Path) -> Result<Dnsd, LaunchError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append_log)
            .truncate(!self.append_log)
            .open(&self.log)
            .map_err(|source| LaunchError::Log {
                path: self.log.clone(),
                source,
            })?;
        let mut cmd = Command::new(&self.bin);
        if self.scrub_dnsd_env {
            for key in dnsd_variables(std::env::vars_os()) {
                cmd.env_remove(key);
            }
        }
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", &self.log_filter)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        if self.die_with_parent {
            die_with_parent(&mut cmd);
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            bin: self.bin.clone(),
            source,
        })?;
        let stdout = child.stdout.take();
        // From here on dnsd runs: every way out either hands it over in a `Dnsd` or stops
        // it, which dropping `process` does.
        let mut process = Process {
            pid: child.id(),
            child: Some(child),
            grace: self.stop_grace,
            pid_file: None,
        };
        if let Some(path) = &self.pid_file {
            std::fs::write(path, process.pid.to_string()).map_err(|source| {
                LaunchError::PidFile {
                    path: path.clone(),
                    source,
                }
            })?;
            process.pid_file = Some(path.clone());
        }
        let first_line = match stdout {
            Some(stdout) => first_line_then_drain(stdout),
            // Cannot happen with `Stdio::piped()`; a closed channel reads as no ready line.
            None => mpsc::channel().1,
        };
        let line = match first_line.recv_timeout(self.ready_timeout) {
            Ok(Some(line)) => line,
            Ok(None) => {
                let status = process
                    .stop()
                    .map_or_else(|| "status unknown".to_owned(), |s| s.to_string());
                return Err(LaunchError::Exited {
                    status,
                    log: self.log.clone(),
                    tail: tail(&self.log, LOG_LINES_IN_ERRORS),
                });
            }
            Err(_) => {
                process.stop();
                return Err(LaunchError::NotReady {
                    timeout: self.ready_timeout,
                    log: self.log.clone(),
                    tail: tail(&self.log, LOG_LINES_IN_ERRORS),
                });
            }
        };
        let ready =
            Ready::from_line(&line).map_err(|source| LaunchError::BadReady { line, source })?;
        Ok(Dnsd {
            process,
            ready,
            config: config.to_owned(),
            log: self.log.clone(),
        })
    }
}

/// The names among `vars` that dnsd reads as configuration overrides.
fn dnsd_variables(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<OsString> {
    vars.map(|(key, _)| key)
        .filter(|key| key.to_string_lossy().starts_with("DNSD_"))
        .collect()
}

/// Reads the first line of `stdout` on a thread and sends it (`None`: the pipe closed or
/// failed first, so dnsd is gone), then keeps reading until the pipe closes so that dnsd
/// never blocks writing to it. The thread ends with dnsd.
fn first_line_then_drain(stdout: std::process::ChildStdout) -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        // The receiver may have given up waiting; nobody to tell then.
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    rx
}

/// A running dnsd that has printed its ready line. Stopped (SIGTERM, then SIGKILL after
/// the grace period) when dropped.
#[derive(Debug)]
pub struct Dnsd {
    process: Process,
    ready: Ready,
    config: PathBuf,
    log: PathBuf,
}

impl Dnsd {
    /// What dnsd said in its ready line: where it serves DNS and its control API.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The process's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// The configuration file it runs on.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Whether the process has ended (it is reaped then).
    pub fn exited(&mut self) -> bool {
        match self.process.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Stops dnsd: SIGTERM, then SIGKILL after the grace period. Returns how it ended
    /// (`None` if it was stopped before, or cannot be waited for). Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.process.stop()
    }

    /// Kills dnsd at once (SIGKILL), as a crash of its machine would: it saves nothing and
    /// tells no one; in a cluster its lease runs out on its own. Idempotent.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.process.kill()
    }
}

/// The dnsd process, stopped when dropped, with its PID file.
#[derive(Debug)]
struct Process {
    /// `None` once stopped.
    child: Option<Child>,
    pid: u32,
    grace: Duration,
    pid_file: Option<PathBuf>,
}

impl Process {
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let status = stop_child(&mut child, self.grace);
        self.forget_pid_file();
        status
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // Child::kill sends SIGKILL to our own child, not reaped yet (we hold it).
        let _ = child.kill();
        let status = child.wait().ok();
        self.forget_pid_file();
        status
    }

    fn forget_pid_file(&mut self) {
        if let Some(path) = self.pid_file.take() {
            // Already gone is fine: the PID file only helps find a dnsd left running.
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops a child process by its PID: SIGTERM, up to `grace` to exit, then SIGKILL; reaps
/// it and returns how it ended (`None` if it cannot be waited for).
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the PID of our own child, which is not reaped yet (try_wait
        // above found it running), so the PID cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Asks the kernel to send SIGTERM to the child when its parent dies (even by SIGKILL),
/// so a daemon is never left behind. The "parent" is the spawning *thread*: use it only
/// from a thread that lives as long as the child should.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Writes `contents` to `path` as an executable (mode 0755), for a launcher script or a
/// hook that is run right after, without this process ever holding the file open for
/// writing. A process forked meanwhile by another thread inherits every open descriptor
/// until it execs, and while any process holds the file open for writing, running it fails
/// with "text file busy" (ETXTBSY). So `tee`, a child that forks nothing, writes the file.
pub fn write_executable(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut tee = Command::new("tee")
        .arg("--")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run tee to write {}: {e}", path.display()),
            )
        })?;
    if let Some(mut stdin) = tee.stdin.take() {
        // On a write error tee has exited; its status and message say why.
        let _ = stdin.write_all(contents);
    }
    let output = tee.wait_with_output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "tee could not write {} ({}): {}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// The last `lines` lines of a (log) file; empty when it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for dnsd: a shell script that prints `stdout` and then sleeps, so the
    /// launcher's reading, timeouts and stopping are tested without building dnsd.
    fn fake_dnsd(dir: &Path, script: &str) -> PathBuf {
        let bin = dir.join("fake-dnsd");
        write_executable(&bin, format!("#!/bin/sh\n{script}\n").as_bytes()).unwrap();
        bin
    }

    #[test]
    fn write_executable_writes_a_script_that_runs_and_names_a_path_it_cannot_write() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello");
        write_executable(&path, b"#!/bin/sh\necho \"hello $1\"\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let out = Command::new(&path).arg("there").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello there\n");

        let missing = dir.path().join("no-such-folder/hello");
        let e = write_executable(&missing, b"#!/bin/sh\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-folder/hello"), "{e}");
    }

    #[test]
    fn reads_the_ready_line_passes_options_and_stops_by_pid() {
        let dir = tempfile::tempdir().unwrap();
        let ready = Ready {
            dns: vec!["127.0.0.1:5353".parse().unwrap()],
            control: Some(dir.path().join("control.sock")),
            control_tcp: None,
            pid: 1,
        };
        // Reports its arguments and environment in its log, prints the ready line, and
        // keeps printing (the launcher must keep draining) until SIGTERM.
        let bin = fake_dnsd(
            dir.path(),
            &format!(
                "echo \"args=$*\" >&2\necho \"log=$RUST_LOG color=$NO_COLOR extra=$EXTRA override=$DNSD_DNS__TTL\" >&2\necho '{}'\nwhile true; do echo more; sleep 0.01; done",
                ready.to_line()
            ),
        );
        let pid_file = dir.path().join("dnsd.pid");
        let mut dnsd = Launch::new(&bin, dir.path().join("dnsd.log"))
            .log_filter("debug")
            .env("EXTRA", "yes")
            .env("DNSD_DNS__TTL", "7s")
            .scrub_dnsd_env()
            .pid_file(&pid_file)
            .start(&dir.path().join("dnsd.toml"))
            .unwrap();
        assert_eq!(dnsd.ready(), &ready);
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap(),
            dnsd.pid().to_string()
        );
        let log = dnsd.log();
        assert!(
            log.contains(&format!(
                "args=run --config {}",
                dir.path().join("dnsd.toml").display()
            )),
            "{log}"
        );
        assert!(
            log.contains("log=debug color=1 extra=yes override=7s"),
            "{log}"
        );
        assert!(!dnsd.exited());
        let status = dnsd.stop().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        assert!(!pid_file.exists(), "the PID file goes with dnsd");
        assert!(dnsd.exited());
    }

    #[test]
    fn a_dnsd_that_ends_early_or_stays_silent_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_dnsd(dir.path(), "echo 'config.toml: bad key' >&2\nexit 3");
        let err = Launch::new(&bin, dir.path().join("a.log"))
            .start(Path::new("config.toml"))
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LaunchError::Exited { .. }), "{text}");
        assert!(
            text.contains("exit status: 3") && text.contains("bad key"),
            "{text}"
        );

        let bin = fake_dnsd(dir.path(), "echo 'waiting' >&2\nexec sleep 30");
        let started = Instant::now();
        let err = Launch::new(&bin, dir.path().join("b.log"))
            .ready_timeout(Duration::from_millis(200))
            .stop_grace(Duration::from_secs(5))
            .start(Path::new("config.toml"))
            .unwrap_err();
        assert!(matches!(err, LaunchError::NotReady { .. }), "{err}");
        assert!(err.to_string().contains("waiting"), "{err}");
        // sleep dies on SIGTERM at once: the grace period was not waited out.
        assert!(started.elapsed() < Duration::from_secs(5));

        let bin = fake_dnsd(dir.path(), "echo 'starting'\nexec sleep 30");
        let err = Launch::new(&bin, dir.path().join("c.log"))
            .start(Path::new("config.toml"))
            .unwrap_err();
        assert!(
            matches!(&err, LaunchError::BadReady { line, .. } if line == "starting"),
            "{err}"
        );
    }

    #[test]
    fn kill_is_a_sigkill_and_an_appending_restart_keeps_the_earlier_log() {
        let dir = tempfile::tempdir().unwrap();
        let ready = Ready {
            dns: Vec::new(),
            control: None,
            control_tcp: None,
            pid: 1,
        };
        let bin = fake_dnsd(
            dir.path(),
            &format!(
                "echo \"life $$\" >&2\necho '{}'\nexec sleep 30",
                ready.to_line()
            ),
        );
        let pid_file = dir.path().join("dnsd.pid");
        let launch = Launch::new(&bin, dir.path().join("dnsd.log"))
            .pid_file(&pid_file)
            .append_log();
        let mut first = launch.start(Path::new("dnsd.toml")).unwrap();
        let status = first.kill().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!pid_file.exists());
        assert_eq!(first.kill(), None, "idempotent");
        let mut second = launch.start(Path::new("dnsd.toml")).unwrap();
        let log = second.log();
        assert_eq!(log.matches("life ").count(), 2, "{log}");
        second.stop();
    }

    #[test]
    fn only_dnsd_variables_are_scrubbed() {
        let vars = [("DNSD_DNS__TTL", "1s"), ("PATH", "/bin"), ("XDNSD_A", "x")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        assert_eq!(dnsd_variables(vars.into_iter()), ["DNSD_DNS__TTL"]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert_eq!(tail(&dir.path().join("missing"), 3), "");
    }
}
