//! The running terminal server: binds its listeners, wires the heartbeat, the
//! controller's driver, DNS, mirroring and the control API together, and runs until
//! it is cancelled or one of its serving tasks fails.
//!
//! One driver task owns the controller. Everything that changes it arrives on the
//! driver's inputs: heartbeat reports, a tick every heartbeat interval, pass and hook
//! reports, and requests from the control API ([`DaemonHandle`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dnsd_api::{Event, EventKind, Ready};
use heartbeat::{Health, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checks;
use crate::config::{Config, ControlTransport};
use crate::control::{self, ControlListeners};
use crate::controller::Controller;
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
/// and the first snapshot is published.
pub async fn run(
    config: Config,
    cancel: CancellationToken,
    ready: impl FnOnce(Ready),
) -> anyhow::Result<()> {
    // Whatever way this function ends (an error half-way through start-up included),
    // every task and serving thread it started is told to stop.
    let _stop_all = cancel.clone().drop_guard();
    let config = Arc::new(config);
    let Config {
        dns: dns_config,
        heartbeat: hb,
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
        executor.clone(),
        start,
    );
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

    let (report_tx, mut reports) = mpsc::channel(nodes.len().max(16) * 2);
    let monitor = heartbeat::spawn_monitor(
        *hb,
        nodes
            .iter()
            .enumerate()
            .map(|(id, n)| Target {
                id,
                addr: n.address,
                initial: Health::Unknown,
            })
            .collect(),
        report_tx,
        cancel.child_token(),
    );
    // Service checks: observations like the heartbeat's, one task per checked member.
    let (check_tx, mut check_rx) = mpsc::channel(64);
    let checker = checks::spawn(&config, check_tx, cancel.child_token());

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

    let mut tick = tokio::time::interval(hb.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(request) = requests.recv() => driver.on_request(request).await,
            Some(report) = mirror_rx.recv() => driver.on_mirror(report).await,
            Some(report) = reports.recv() => driver.on_report(report).await,
            Some(signal) = signals.recv() => driver.on_cluster(signal).await,
            Some(report) = check_rx.recv() => driver.on_check(report).await,
            _ = tick.tick() => {
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
                monitor.join().await;
                checker.join().await;
                anyhow::bail!("a serving task stopped unexpectedly: {detail}");
            }
        }
    }

    info!("shutting down");
    dns_cancel.cancel();
    control_cancel.cancel();
    monitor.join().await;
    checker.join().await;
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
    let left = executor.shutdown(WORK_GRACE).await;
    if left > 0 {
        warn!(
            left,
            "passes or hooks still running at shutdown; they end with the process"
        );
    }
    driver.persist_at_exit().await;
    Ok(())
}

/// Runs the terminal server on its own runtime until SIGTERM or SIGINT.
pub fn run_until_signalled(config: Config, ready: impl FnOnce(Ready)) -> anyhow::Result<()> {
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
        run(config, cancel, ready).await
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
