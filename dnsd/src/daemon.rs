//! The running terminal server: binds its listeners, wires the heartbeat, the
//! controller's driver, DNS, mirroring and the control API together, and runs until
//! it is cancelled or one of its serving tasks fails.
//!
//! One driver task owns the controller. Everything that changes it arrives on the
//! driver's inputs: heartbeat reports, a tick every heartbeat interval, pass and hook
//! reports, and requests from the control API ([`DaemonHandle`]). A reload (`SIGHUP`, or
//! `POST /v1/reload`) is one such request: when it changes the configuration, the
//! heartbeat and the service checks are restarted on the new one (`Watch`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dnsd_api::{Event, EventKind, Ready};
use heartbeat::Target;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checks::{self, CheckReport};
use crate::config::{Config, ControlTransport};
use crate::control::{self, ControlListeners};
use crate::controller::{Controller, NodeId};
use crate::coordinator;
use crate::dns::{self, DnsStats, Listeners, ZonePublisher};
use crate::driver::{Driver, now_ms};
use crate::handle::DaemonHandle;
use crate::mirror::Executor;
use crate::pool::{build_zone, topology};
use crate::state::{Loaded, StateStore};

/// How long shutdown waits for passes and hooks under way.
const WORK_GRACE: Duration = Duration::from_secs(5);

/// Runs the terminal server until `cancel` fires. `ready` is called once DNS is bound
/// and the first snapshot is published. `source` is the file `config` was read from,
/// re-read on a reload (`SIGHUP` included: the handler is installed here).
pub async fn run(
    config: Config,
    source: Option<PathBuf>,
    cancel: CancellationToken,
    ready: impl FnOnce(Ready),
) -> anyhow::Result<()> {
    // Whatever way this function ends (an error half-way through start-up included),
    // every task and serving thread it started is told to stop.
    let _stop_all = cancel.clone().drop_guard();
    let config = Arc::new(config);
    let Config {
        dns: dns_config,
        heartbeat: _,
        control: control_config,
        state: state_config,
        nodes,
        services: _,
        mirror: _,
        cluster: cluster_config,
    } = &*config;

    for warning in config.warnings() {
        warn!(key = %warning.path, "{}", warning.message);
    }
    // State first: a daemon that cannot keep its decisions should not make any.
    let store = StateStore::open(&state_config.dir)?;
    let start = now_ms();
    let (persisted, state_note) = match store.load(start)? {
        Loaded::Fresh => (None, None),
        Loaded::State(p) => (Some(p), None),
        Loaded::SetAside { problem, moved_to } => (
            None,
            Some(format!(
                "state file {} was unusable ({problem}); moved to {} and started from the configuration",
                store.path().display(),
                moved_to.display()
            )),
        ),
    };
    let topology = topology(&config);
    let (controller, initial) = match (cluster_config, &persisted) {
        // One of several: decide nothing until leading; until etcd says otherwise, answer
        // the state last seen (kept in the local state file).
        (Some(_), Some(p)) => (Controller::mirror_of(&topology, p, start), Vec::new()),
        (Some(_), None) => (Controller::new(&topology, None, start).0, Vec::new()),
        (None, _) => Controller::new(&topology, persisted.as_ref(), start),
    };
    let zone = ZonePublisher::new(build_zone(&config, &controller).context("building the zone")?);
    let (handle, mut requests, event_tx) = DaemonHandle::channel(64);
    let (mirror_tx, mut mirror_rx) = mpsc::channel(256);
    let executor = Executor::new(config.clone(), mirror_tx);
    let mut driver = Driver::new(
        config.clone(),
        controller,
        zone.clone(),
        store,
        event_tx,
        executor,
        start,
    );
    if let Some(source) = source {
        driver.reload_from(source);
    }
    if let Some(note) = state_note {
        driver.record(Event::new(start, EventKind::State, note));
    }
    // The coordinator's signals; standalone, a channel that never speaks.
    let (_no_cluster, mut signals) = mpsc::channel(1);
    let mut coordinator_task = None;
    if let Some(cluster) = cluster_config {
        // How an operator reaches this terminal server's API: named in refusals of
        // followers, so that the action can be sent to the leader.
        let contact = control_config.tcp.as_ref().map(|tcp| match tcp.transport {
            ControlTransport::Tls { .. } => format!("https://{}", tcp.addr),
            ControlTransport::PlainLoopback => format!("http://{}", tcp.addr),
        });
        let (link, cluster_signals, task) =
            coordinator::start(cluster, &dns_config.zone, contact, cancel.child_token())
                .await
                .context("starting the cluster coordinator")?;
        signals = cluster_signals;
        coordinator_task = Some(task);
        driver.join_cluster(link, cluster.quorum);
        driver.record(Event::new(
            start,
            EventKind::Started,
            format!(
                "{} joins the cluster at {}; it decides only while it leads",
                cluster.name,
                cluster.endpoints.join(", ")
            ),
        ));
    }
    driver.apply(initial).await;

    let listeners = Listeners::bind(dns_config).await?;
    let dns_addrs = listeners.local_addrs();
    let stats = Arc::new(DnsStats::default());
    let mut tasks = tokio::task::JoinSet::new();
    let dns_cancel = cancel.child_token();
    tasks.spawn({
        let (zone, stats, cancel) = (zone.clone(), stats.clone(), dns_cancel.clone());
        async move {
            dns::serve(listeners, zone, stats, cancel)
                .await
                .map_err(anyhow::Error::from)
        }
    });

    let mut watch = Watch::start(&driver, &cancel);
    reload_on_sighup(handle.clone(), cancel.clone());

    let control = ControlListeners::bind(control_config).await?;
    let control_tcp = control.tcp_addr();
    let control_cancel = cancel.child_token();
    tasks.spawn({
        let (handle, stats, cancel) = (handle.clone(), stats.clone(), control_cancel.clone());
        async move {
            control::serve(control, handle, stats, cancel)
                .await
                .map_err(|e| anyhow::anyhow!("control API: {e}"))
        }
    });

    ready(Ready {
        dns: dns_addrs,
        control: Some(control_config.socket.clone()),
        control_tcp,
        pid: std::process::id(),
    });
    info!(zone = %dns_config.zone, nodes = nodes.len(), services = driver.service_count(), "serving");

    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(request) = requests.recv() => {
                if driver.on_request(request).await {
                    // A new configuration: watch the pool it configures, from what was
                    // last concluded of each member.
                    let old = std::mem::replace(&mut watch, Watch::start(&driver, &cancel));
                    old.stop().await;
                }
            }
            Some(report) = mirror_rx.recv() => driver.on_mirror(report).await,
            Some(report) = watch.reports.recv() => driver.on_report(report).await,
            Some(signal) = signals.recv() => driver.on_cluster(signal).await,
            Some(report) = watch.checks.recv() => driver.on_check(report).await,
            _ = watch.tick.tick() => {
                driver.tick().await;
            }
            Some(done) = tasks.join_next() => {
                // A serving task ending before shutdown is a failure, never a quiet exit.
                let detail = match done {
                    Ok(Ok(())) => "ended".to_owned(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => e.to_string(),
                };
                cancel.cancel();
                watch.stop().await;
                anyhow::bail!("a serving task stopped unexpectedly: {detail}");
            }
        }
    }

    info!("shutting down");
    dns_cancel.cancel();
    control_cancel.cancel();
    watch.stop().await;
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            warn!(error = %e, "a serving task reported an error at shutdown");
        }
    }
    if let Some(task) = coordinator_task {
        // It resigns and revokes its lease, so another terminal server leads at once.
        if tokio::time::timeout(WORK_GRACE, task).await.is_err() {
            warn!("the cluster coordinator did not stop in time");
        }
    }
    // Passes and hooks under way report to nobody now; give them a moment to end.
    drop(mirror_rx);
    let left = driver.shutdown_work(WORK_GRACE).await;
    if left > 0 {
        warn!(
            left,
            "passes or hooks still running at shutdown; they end with the process"
        );
    }
    driver.persist_at_exit().await;
    Ok(())
}

/// What watches the pool for the driver: the heartbeat monitor, the service checks, the
/// channels their reports arrive on, and the tick (every heartbeat interval). Replaced
/// whole when a reload changes the configuration.
struct Watch {
    cancel: CancellationToken,
    monitor: heartbeat::Monitor,
    checker: checks::Checker,
    reports: mpsc::Receiver<heartbeat::Report>,
    checks: mpsc::Receiver<CheckReport>,
    tick: tokio::time::Interval,
}

impl Watch {
    /// Starts watching the driver's configuration, each member from what the driver last
    /// concluded of it (unknown at start).
    fn start(driver: &Driver, parent: &CancellationToken) -> Watch {
        let config = driver.config().clone();
        let cancel = parent.child_token();
        let (report_tx, reports) = mpsc::channel(config.nodes.len().max(16) * 2);
        let targets = config
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| Target {
                id,
                addr: n.address,
                initial: driver.observed_health(NodeId(id)),
            })
            .collect();
        let monitor =
            heartbeat::spawn_monitor(config.heartbeat, targets, report_tx, cancel.clone());
        // Service checks: observations like the heartbeat's, one task per checked member.
        let (check_tx, checks) = mpsc::channel(64);
        let checker = checks::spawn(
            &config,
            |s, n| driver.check_verdict(s, n),
            check_tx,
            cancel.clone(),
        );
        let mut tick =
            tokio::time::interval(config.heartbeat.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Watch {
            cancel,
            monitor,
            checker,
            reports,
            checks,
            tick,
        }
    }

    /// Stops every probe and check, and waits for their tasks; what they report from now
    /// on is dropped.
    async fn stop(self) {
        let Watch {
            cancel,
            monitor,
            checker,
            reports,
            checks,
            tick: _,
        } = self;
        drop((reports, checks));
        cancel.cancel();
        monitor.join().await;
        checker.join().await;
    }
}

/// On `SIGHUP`, asks the driver to reload the configuration file (the driver logs and
/// records what it did). Without a handler, `SIGHUP` would end the process.
fn reload_on_sighup(handle: DaemonHandle, cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            warn!(error = %e, "cannot handle SIGHUP: reload with `console reload` (a SIGHUP would stop dnsd)");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            info!("SIGHUP received: reloading the configuration");
            if handle.reload("SIGHUP".to_owned()).await.is_err() {
                return;
            }
        }
    });
}

/// Runs the terminal server on its own runtime until SIGTERM or SIGINT; SIGHUP reloads
/// `source`, the file `config` was read from.
pub fn run_until_signalled(
    config: Config,
    source: PathBuf,
    ready: impl FnOnce(Ready),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        let signals = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        run(config, Some(source), cancel, ready).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop dnsd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}
