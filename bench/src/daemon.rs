//! Runs the real `dnsd` binary for a benchmark through the console's launcher
//! (`console::launch`): writes its configuration, starts it without the caller's
//! `DNSD_*` variables, waits for its ready line, and talks to its control API (status,
//! events, actions).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use console::client::{Client, Endpoint};
use console::launch::{self, Launch};
use dnsd_api::{Action, ActionReply, Event, Status};

use crate::procs;

/// The last lines of a log file, for error messages.
pub use console::launch::tail;

/// How long dnsd may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dnsd may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running dnsd, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Dnsd {
    dnsd: launch::Dnsd,
    dns: SocketAddr,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Dnsd {
    /// Writes `config` to `dir/dnsd.toml`, starts `dnsd run` on it and waits until it
    /// serves.
    pub fn start(dir: &Path, config: &str) -> anyhow::Result<Dnsd> {
        Dnsd::start_logged(dir, config, "dnsd.log")
    }

    /// [`Dnsd::start`] with its log in `dir/log` (a dnsd restarted in the same folder
    /// keeps the log of its previous run).
    pub fn start_logged(dir: &Path, config: &str, log: &str) -> anyhow::Result<Dnsd> {
        let binary = procs::workspace_binary("dnsd")?;
        Dnsd::launch(&binary, dir, config, &dir.join(log), "info")
    }

    /// [`Dnsd::start`] with the `dnsd` binary at `binary` (a test's, in its own profile)
    /// and `filter` as its log filter unless `BENCH_DNSD_LOG` sets one.
    pub fn start_binary(
        binary: &Path,
        dir: &Path,
        config: &str,
        filter: &str,
    ) -> anyhow::Result<Dnsd> {
        Dnsd::launch(binary, dir, config, &dir.join("dnsd.log"), filter)
    }

    /// [`Dnsd::start_binary`] inside network namespace `netns` (a lab host's: dnsd listens
    /// and probes from the host's address, and the host's network faults apply to it),
    /// logging to `log_file`. dnsd runs through a launcher script in `dir` that execs
    /// `nsenter --net=... dnsd`, so the process started, signalled and waited for is dnsd.
    pub fn start_in_netns(
        binary: &Path,
        netns: &str,
        dir: &Path,
        config: &str,
        filter: &str,
        log_file: &Path,
    ) -> anyhow::Result<Dnsd> {
        let script = dir.join("dnsd-in-netns");
        let text = format!(
            "#!/bin/sh\n# dnsd in network namespace {netns}; exec keeps its PID.\n\
             exec nsenter --net=/run/netns/{netns} -- {} \"$@\"\n",
            crate::mirror::shell_quote(&binary.display().to_string()),
        );
        launch::write_executable(&script, text.as_bytes())
            .with_context(|| format!("writing {}", script.display()))?;
        Dnsd::launch(&script, dir, config, log_file, filter)
    }

    fn launch(
        binary: &Path,
        dir: &Path,
        config: &str,
        log_file: &Path,
        filter: &str,
    ) -> anyhow::Result<Dnsd> {
        let path = dir.join("dnsd.toml");
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        let dnsd = Launch::new(binary.to_owned(), log_file.to_owned())
            // BENCH_DNSD_LOG sets dnsd's log filter (e.g. "debug" to look into a run).
            .log_filter(std::env::var("BENCH_DNSD_LOG").unwrap_or_else(|_| filter.to_owned()))
            // dnsd reads DNSD_<SECTION>__<KEY> from its environment: none of the caller's
            // may change the configuration under test.
            .scrub_dnsd_env()
            .ready_timeout(READY_TIMEOUT)
            .stop_grace(STOP_GRACE)
            .start(&path)?;
        let ready = dnsd.ready();
        let dns = *ready.dns.first().context("dnsd serves no DNS address")?;
        let control = ready
            .control
            .clone()
            .context("dnsd has no control socket")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a tokio runtime")?;
        Ok(Dnsd {
            dnsd,
            dns,
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
        i32::try_from(self.dnsd.ready().pid).unwrap_or(0)
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
        self.dnsd.log_tail(lines)
    }

    /// Stops it (SIGTERM, then SIGKILL after the grace period) and says how it ended
    /// (`None` if it was stopped before or cannot be waited for).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.dnsd.stop()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.dnsd.exited()
    }

    /// Kills it with SIGKILL, by its PID (as a crash would: no shutdown, a cluster lease
    /// left to expire), and reaps it. Returns how it ended.
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        if !self.dnsd.exited()
            && let Ok(pid) = libc::pid_t::try_from(self.dnsd.pid())
        {
            // SAFETY: kill(2) on the PID of our own child, which `exited` just found not
            // reaped, so the PID cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        // Reaps it; a process already dead is not signalled again.
        self.dnsd.stop()
    }
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
