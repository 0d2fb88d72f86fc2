//! Runs the real `dnsd` binary for a benchmark: writes its configuration, starts it,
//! waits for its JSON ready line, and talks to its control API (status, events).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use console::client::{Client, Endpoint};
use dnsd_api::{Action, ActionReply, Event, Status};

use crate::procs::{self, Guard};

/// How long dnsd may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(serde::Deserialize)]
struct ReadyLine {
    ready: Ready,
}

#[derive(serde::Deserialize)]
struct Ready {
    dns: Vec<SocketAddr>,
    control: Option<PathBuf>,
    pid: u32,
}

/// A running dnsd, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Dnsd {
    guard: Guard,
    dns: SocketAddr,
    pid: i32,
    log: PathBuf,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Dnsd {
    /// Writes `config` to `dir/dnsd.toml`, starts `dnsd run` on it and waits until it
    /// serves.
    pub fn start(dir: &Path, config: &str) -> anyhow::Result<Dnsd> {
        let path = dir.join("dnsd.toml");
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        let bin = procs::workspace_binary("dnsd")?;
        let log = dir.join("dnsd.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(&bin);
        // dnsd reads DNSD_<SECTION>__<KEY> from its environment: none of the caller's may
        // change the configuration under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DNSD_") {
                command.env_remove(&key);
            }
        }
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&path)
            // BENCH_DNSD_LOG sets dnsd's log filter (e.g. "debug" to look into a run).
            .env(
                "RUST_LOG",
                std::env::var("BENCH_DNSD_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe from dnsd")?;
        let guard = Guard::adopt("dnsd", child);
        // Read the ready line on a thread so a silent dnsd cannot hang the benchmark; keep
        // draining afterwards so dnsd never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let Ok(Some(Ok(line))) = rx.recv_timeout(READY_TIMEOUT) else {
            bail!(
                "dnsd printed no ready line within {READY_TIMEOUT:?}; its log:\n{}",
                tail(&log, 30)
            );
        };
        let ready: ReadyLine = serde_json::from_str(&line)
            .with_context(|| format!("dnsd's ready line {line:?} is not what was expected"))?;
        let dns = *ready
            .ready
            .dns
            .first()
            .context("dnsd serves no DNS address")?;
        let control = ready.ready.control.context("dnsd has no control socket")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a tokio runtime")?;
        Ok(Dnsd {
            guard,
            dns,
            pid: i32::try_from(ready.ready.pid).unwrap_or(0),
            log,
            client: Client::new(Endpoint::Unix(control)).with_operator("dnsd-bench"),
            rt,
        })
    }

    /// The first DNS address it serves.
    pub fn dns(&self) -> SocketAddr {
        self.dns
    }

    /// Its PID (from the ready line).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> anyhow::Result<Status> {
        self.rt
            .block_on(self.client.status())
            .context("asking dnsd for its status")
    }

    /// `GET /v1/events?since=N`.
    pub fn events(&self, since: u64) -> anyhow::Result<Vec<Event>> {
        self.rt
            .block_on(self.client.events(since))
            .context("asking dnsd for its events")
    }

    /// `POST /v1/actions`; a refused action is an error here.
    pub fn act(&self, action: &Action) -> anyhow::Result<ActionReply> {
        let reply = self
            .rt
            .block_on(self.client.act(action))
            .with_context(|| format!("asking dnsd to {action}"))?;
        if !reply.accepted {
            bail!("dnsd refused {action}: {}", reply.message);
        }
        Ok(reply)
    }

    /// The last `lines` lines of its log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.guard.exited()
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes (or a stop is
/// requested).
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<Option<T>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(Some(v));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        procs::sleep(every)?;
    }
}
