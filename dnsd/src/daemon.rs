//! The running terminal server: wires the heartbeat, the controller, DNS and the state
//! file together.
//!
//! One driver task owns the [`Controller`]. Everything that changes it arrives on the
//! driver's inputs: heartbeat reports, a tick every heartbeat interval, and requests
//! from the control API ([`DaemonHandle`]). For each input the driver carries out the
//! controller's effects in order: persist first, then publish the new DNS snapshot,
//! then log and broadcast the events, so a primary that DNS has announced is always
//! one a restart would keep.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use dnsd_api::{
    Action, ActionReply, Event, EventKind, HeartbeatSettings, HookSettings, MemberStatus,
    NodeStatus, PassReport, Ready, RunningPass, ServiceStatus, Status, SyncStatus,
};
use heartbeat::{Health, Report, Target};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::control::{self, ControlListeners};
use crate::controller::{
    Controller, Effect, Failback, Fencing, Millis, Policy, ServiceSpec, Topology,
};
use crate::dns::{self, DnsStats, Listeners, Zone, ZonePublisher, ZoneSpec};
use crate::mirror::{self, Executor, PassProgress};
use crate::state::{Loaded, StateStore};

/// Events kept in memory for `/v1/events` and late subscribers.
const EVENT_LOG_CAPACITY: usize = 2000;
/// Probe results kept per member for sparklines.
pub const PROBE_HISTORY: usize = 60;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// A request to the driver from the control API.
#[derive(Debug)]
pub enum Request {
    /// Apply an operator action; `origin` says who asked.
    Act {
        action: Action,
        origin: String,
        reply: oneshot::Sender<ActionReply>,
    },
    /// The recent event log, oldest first.
    Events { reply: oneshot::Sender<Vec<Event>> },
    /// The full status.
    Status { reply: oneshot::Sender<Status> },
    /// The status plus the counters `/metrics` needs.
    Metrics { reply: oneshot::Sender<Metrics> },
}

/// What `/metrics` renders, besides the DNS counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub status: Status,
    /// Automatic failovers per service since start.
    pub failovers: BTreeMap<String, u64>,
    /// Bytes mirrored since start per (service, member): literal, matched.
    pub mirrored: Vec<(String, String, u64, u64)>,
}

/// How the rest of the process talks to the driver.
#[derive(Debug, Clone)]
pub struct DaemonHandle {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
}

impl DaemonHandle {
    /// Sends an operator action through the controller's validation.
    pub async fn act(&self, action: Action, origin: String) -> anyhow::Result<ActionReply> {
        self.ask(|reply| Request::Act {
            action,
            origin,
            reply,
        })
        .await
    }

    /// The recent event log.
    pub async fn events(&self) -> anyhow::Result<Vec<Event>> {
        self.ask(|reply| Request::Events { reply }).await
    }

    /// The full status.
    pub async fn status(&self) -> anyhow::Result<Status> {
        self.ask(|reply| Request::Status { reply }).await
    }

    /// The status plus counters, for `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        self.ask(|reply| Request::Metrics { reply }).await
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> anyhow::Result<T> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .context("the daemon is shutting down")?;
        rx.await.context("the daemon is shutting down")
    }

    /// A live stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Per-member probe results, for status views and metrics.
#[derive(Debug, Clone, Default)]
pub struct ProbeHistory {
    /// Most recent probe results, newest last: RTT in microseconds, or None for a miss.
    pub recent: VecDeque<Option<u64>>,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// When the last probe ended.
    pub last_at_ms: Millis,
}

/// The controller and everything the driver keeps next to it.
struct Driver {
    config: Arc<Config>,
    controller: Controller,
    zone: ZonePublisher,
    store: Arc<StateStore>,
    events: VecDeque<Event>,
    next_seq: u64,
    event_tx: broadcast::Sender<Event>,
    probes: Vec<ProbeHistory>,
    started_ms: Millis,
    failovers: BTreeMap<String, u64>,
    executor: Executor,
    /// Passes under way: service, member, and the latest progress.
    running: HashMap<u64, (usize, usize, Option<PassProgress>)>,
    /// Bytes mirrored to each (service, member) since start: literal, matched.
    mirrored: BTreeMap<(usize, usize), (u64, u64)>,
}

impl Driver {
    /// Carries out effects in the order that keeps DNS behind the state file.
    async fn apply(&mut self, effects: Vec<Effect>) {
        if effects.contains(&Effect::Persist) {
            self.persist().await;
        }
        if effects.contains(&Effect::Publish) {
            self.publish();
        }
        for effect in effects {
            match effect {
                Effect::Event(e) => self.record(e),
                Effect::StartSync(order) => {
                    self.running
                        .insert(order.id, (order.service, order.to, None));
                    self.executor.start_pass(order);
                }
                Effect::RunHook(order) => self.executor.run_hook(order),
                Effect::Persist | Effect::Publish => {}
            }
        }
    }

    async fn on_mirror(&mut self, report: mirror::Report) {
        let fx = match report {
            mirror::Report::Progress { id, progress } => {
                if let Some(entry) = self.running.get_mut(&id) {
                    entry.2 = Some(progress);
                }
                return;
            }
            mirror::Report::Pass { id, outcome } => {
                if let (Some((s, n, _)), Ok(summary)) = (self.running.remove(&id), &outcome) {
                    let total = self.mirrored.entry((s, n)).or_default();
                    total.0 += summary.literal_bytes;
                    total.1 += summary.matched_bytes;
                }
                self.controller.sync_finished(id, outcome, now_ms())
            }
            mirror::Report::Hook { id, outcome } => {
                self.controller.hook_finished(id, outcome, now_ms())
            }
        };
        self.apply(fx).await;
    }

    async fn persist(&mut self) {
        let state = self.controller.persisted();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.save(&state)).await;
        let problem = match result {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("state writer task failed: {e}"),
        };
        error!(error = %problem, "cannot persist state; roles will not survive a restart until this is fixed");
        self.record(Event::new(now_ms(), EventKind::State, problem));
    }

    fn publish(&mut self) {
        match build_zone(&self.config, &self.controller) {
            Ok(zone) => self.zone.publish(zone),
            // Names were validated at start, so this cannot happen with a valid config;
            // if it did, the previous snapshot keeps serving.
            Err(e) => error!(error = %e, "cannot build the zone; DNS keeps the previous snapshot"),
        }
    }

    fn record(&mut self, mut e: Event) {
        if e.kind == EventKind::Failover
            && let Some(service) = &e.service
        {
            *self.failovers.entry(service.clone()).or_default() += 1;
        }
        e.seq = self.next_seq;
        self.next_seq += 1;
        log_event(&e);
        if self.events.len() == EVENT_LOG_CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(e.clone());
        // No receiver is fine: nobody is watching.
        let _ = self.event_tx.send(e);
    }

    async fn on_report(&mut self, report: Report) {
        let Some(history) = self.probes.get_mut(report.target) else {
            return;
        };
        if history.recent.len() == PROBE_HISTORY {
            history.recent.pop_front();
        }
        history
            .recent
            .push_back(report.outcome.as_ref().ok().map(|d| d.as_micros() as u64));
        history.last_error = report.outcome.as_ref().err().map(|e| error_chain(e));
        history.last_at_ms = report
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
        if let Some(t) = report.transition {
            let fx = self
                .controller
                .health_changed(report.target, t.to, now_ms());
            self.apply(fx).await;
        }
    }

    async fn on_request(&mut self, request: Request) {
        match request {
            Request::Act {
                action,
                origin,
                reply,
            } => {
                info!(%action, %origin, "operator action");
                let (result, fx) = self.controller.act(&action, &origin, now_ms());
                self.apply(fx).await;
                let answer = match result {
                    Ok(message) => ActionReply::done(message),
                    Err(refusal) => ActionReply {
                        accepted: false,
                        message: refusal.0,
                        kind: None,
                    },
                };
                // The asker may have gone away; the action stands either way.
                let _ = reply.send(answer);
            }
            Request::Events { reply } => {
                let _ = reply.send(self.events.iter().cloned().collect());
            }
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::Metrics { reply } => {
                let c = &self.controller;
                let mirrored = self
                    .mirrored
                    .iter()
                    .map(|(&(s, n), &(literal, matched))| {
                        (
                            c.service_name(s).to_owned(),
                            c.node_name(n).to_owned(),
                            literal,
                            matched,
                        )
                    })
                    .collect();
                let _ = reply.send(Metrics {
                    status: self.status(),
                    failovers: self.failovers.clone(),
                    mirrored,
                });
            }
        }
    }

    /// The status as the control API reports it.
    fn status(&self) -> Status {
        let c = &self.controller;
        let cfg = &self.config;
        let nodes = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let probes = &self.probes[n];
                NodeStatus {
                    name: node.name.clone(),
                    address: node.address.to_string(),
                    health: api_health(c.health(n)),
                    maintenance: c.maintenance(n),
                    rtt_us: probes.recent.iter().rev().find_map(|p| *p),
                    probes: probes.recent.iter().copied().collect(),
                    last_error: probes.last_error.clone(),
                }
            })
            .collect();
        let services = (0..c.service_count())
            .map(|s| {
                let name = c.service_name(s);
                ServiceStatus {
                    name: name.to_owned(),
                    fqdn: format!("{name}.{}", cfg.dns.zone),
                    primary: c.node_name(c.primary(s)).to_owned(),
                    preferred: c.node_name(c.members(s)[0]).to_owned(),
                    epoch: c.epoch(s),
                    paused: c.paused(s),
                    stranded: c.stranded(s),
                    next: c.next_candidate(s).map(|n| c.node_name(n).to_owned()),
                    transition: c.transition(s),
                    paths: cfg.services[s]
                        .paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                    max_lag_ms: c.policy(s).max_lag,
                    failback: match c.policy(s).failback {
                        Failback::Manual => "manual".to_owned(),
                        Failback::Auto { after } => format!(
                            "auto after {}",
                            humantime::format_duration(Duration::from_millis(after))
                        ),
                    },
                    hooks: {
                        let h = &cfg.services[s].hooks;
                        HookSettings {
                            promote: h.promote.is_some(),
                            demote: h.demote.is_some(),
                            fence: h.fence.is_some(),
                            fencing_required: cfg.services[s].fencing == Fencing::Required,
                        }
                    },
                    members: c
                        .members(s)
                        .iter()
                        .map(|&n| {
                            let verdict = c.eligibility(s, n);
                            MemberStatus {
                                node: c.node_name(n).to_owned(),
                                role: c.role(s, n),
                                eligible: verdict.is_ok(),
                                skip_reason: verdict.err().map(|skip| skip.to_string()),
                                sync: self.sync_status(s, n),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Status {
            now_ms: now_ms(),
            started_ms: self.started_ms,
            zone: cfg.dns.zone.clone(),
            serial: c.serial(),
            ttl: cfg.dns.ttl,
            heartbeat: HeartbeatSettings {
                protocol: cfg.heartbeat.protocol.to_string(),
                port: cfg.heartbeat.port,
                interval_ms: cfg.heartbeat.interval.as_millis() as u64,
                timeout_ms: cfg.heartbeat.timeout.as_millis() as u64,
                rise: cfg.heartbeat.rise,
                fall: cfg.heartbeat.fall,
            },
            nodes,
            services,
        }
    }
}

impl Driver {
    /// Mirroring state of member `n` in service `s`, for services with paths.
    fn sync_status(&self, s: usize, n: usize) -> Option<SyncStatus> {
        let c = &self.controller;
        if !c.policy(s).mirrored || c.primary(s) == n {
            return None;
        }
        let v = c.sync_view(s, n)?;
        let now = now_ms();
        let progress = self
            .running
            .values()
            .find(|(rs, rn, _)| *rs == s && *rn == n)
            .and_then(|(_, _, p)| *p);
        Some(SyncStatus {
            last_sync_ms: v.watermark.map(|w| w.at),
            lag_ms: v.watermark.map(|w| now.saturating_sub(w.at)),
            resyncing: v.resyncing,
            running: v.running.map(|(kind, started)| RunningPass {
                kind: kind.to_string(),
                started_ms: started,
                bytes: progress.map_or(0, |p| p.bytes),
                percent: progress.map_or(0, |p| p.percent),
                rate_bytes_per_sec: progress.map_or(0, |p| p.rate_bytes_per_sec as u64),
                eta_secs: progress.and_then(|p| p.eta_secs),
            }),
            failures: v.failures,
            last_error: v.last_error,
            next_due_ms: v.next_due,
            last_pass: v.last.map(|l| PassReport {
                files_transferred: l.files_transferred,
                literal_bytes: l.literal_bytes,
                matched_bytes: l.matched_bytes,
                bytes_sent: l.bytes_sent,
                bytes_received: l.bytes_received,
                duration_ms: l.duration_ms,
                kept_files: l.kept.as_ref().map(|k| k.files),
                kept_bytes: l.kept.as_ref().map(|k| k.bytes),
                kept_dir: l.kept.map(|k| k.dir),
            }),
        })
    }
}

/// An error and its causes on one line: "could not connect to echo port ...: Connection
/// refused (os error 111)".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // Some errors repeat their cause in their own message; print it once.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn api_health(h: Health) -> dnsd_api::Health {
    match h {
        Health::Unknown => dnsd_api::Health::Unknown,
        Health::Up => dnsd_api::Health::Up,
        Health::Down => dnsd_api::Health::Down,
    }
}

fn log_event(e: &Event) {
    let service = e.service.as_deref().unwrap_or("-");
    let node = e.node.as_deref().unwrap_or("-");
    let old = e.old_primary.as_deref().unwrap_or("-");
    let new = e.new_primary.as_deref().unwrap_or("-");
    let epoch = e.epoch.unwrap_or(0);
    match e.level() {
        dnsd_api::Level::Alert => {
            warn!(kind = %e.kind, service, node, old_primary = old, new_primary = new, epoch, "{}", e.reason)
        }
        _ => {
            info!(kind = %e.kind, service, node, old_primary = old, new_primary = new, epoch, "{}", e.reason)
        }
    }
}

/// The pool as the controller sees it.
pub fn topology(config: &Config) -> Topology {
    Topology {
        nodes: config.nodes.iter().map(|n| n.name.clone()).collect(),
        services: config
            .services
            .iter()
            .map(|s| ServiceSpec {
                name: s.name.clone(),
                members: s.nodes.clone(),
                policy: Policy {
                    mirrored: !s.paths.is_empty(),
                    sync_interval: config
                        .mirror
                        .as_ref()
                        .map_or(Policy::plain().sync_interval, |m| {
                            m.interval.as_millis() as Millis
                        }),
                    max_lag: s.max_lag.as_millis() as Millis,
                    failback: match s.failback_after {
                        Some(after) => Failback::Auto {
                            after: after.as_millis() as Millis,
                        },
                        None => Failback::Manual,
                    },
                    on_no_candidate: s.on_no_candidate,
                    fencing: s.fencing,
                    promote_hook: s.hooks.promote.is_some(),
                    demote_hook: s.hooks.demote.is_some(),
                },
            })
            .collect(),
    }
}

/// Builds the DNS snapshot for the controller's current primaries.
pub fn build_zone(config: &Config, c: &Controller) -> Result<Zone, dns::ZoneError> {
    let dns = &config.dns;
    let mut hosts: Vec<(&str, std::net::IpAddr)> = config
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.address))
        .collect();
    for (s, svc) in config.services.iter().enumerate() {
        hosts.push((svc.name.as_str(), config.nodes[c.primary(s)].address));
    }
    Zone::build(&ZoneSpec {
        origin: &dns.zone,
        serial: c.serial(),
        ttl: dns.ttl,
        negative_ttl: dns.negative_ttl,
        hostmaster: &dns.hostmaster,
        soa: dns.soa,
        nameservers: dns
            .nameservers
            .iter()
            .map(|n| (n.name.as_str(), n.address))
            .collect(),
        hosts,
    })
}

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
    } = &*config;

    // State first: a daemon that cannot keep its decisions should not make any.
    let store = StateStore::open(&state_config.dir).context("state directory")?;
    let start = now_ms();
    let (persisted, state_note) = match store.load(start).context("state file")? {
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
    let (controller, initial) = Controller::new(&topology(&config), persisted.as_ref(), start);
    let zone = ZonePublisher::new(build_zone(&config, &controller).context("building the zone")?);
    let (event_tx, _) = broadcast::channel(1024);
    let (mirror_tx, mut mirror_rx) = mpsc::channel(256);
    let mut driver = Driver {
        config: config.clone(),
        controller,
        zone: zone.clone(),
        store: Arc::new(store),
        events: VecDeque::new(),
        next_seq: 1,
        event_tx: event_tx.clone(),
        probes: vec![ProbeHistory::default(); nodes.len()],
        started_ms: start,
        failovers: BTreeMap::new(),
        executor: Executor::new(config.clone(), mirror_tx),
        running: HashMap::new(),
        mirrored: BTreeMap::new(),
    };
    if let Some(note) = state_note {
        driver.record(Event::new(start, EventKind::State, note));
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

    let (request_tx, mut requests) = mpsc::channel(64);
    let handle = DaemonHandle {
        requests: request_tx,
        events: event_tx,
    };
    let control = ControlListeners::bind(
        &control_config.socket,
        control_config
            .tcp
            .as_ref()
            .map(|(addr, token)| (*addr, token.as_path())),
    )
    .await?;
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
    info!(zone = %dns_config.zone, nodes = nodes.len(), services = driver.controller.service_count(), "serving");

    let mut tick = tokio::time::interval(hb.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(request) = requests.recv() => driver.on_request(request).await,
            Some(report) = mirror_rx.recv() => driver.on_mirror(report).await,
            Some(report) = reports.recv() => driver.on_report(report).await,
            _ = tick.tick() => {
                let fx = driver.controller.tick(now_ms());
                driver.apply(fx).await;
            }
            Some(done) = tasks.join_next() => {
                // A serving task ending before shutdown is a failure, never a quiet exit.
                let detail = match done {
                    Ok(Ok(())) => "ended".to_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                cancel.cancel();
                monitor.join().await;
                anyhow::bail!("a serving task stopped unexpectedly: {detail}");
            }
        }
    }

    info!("shutting down");
    dns_cancel.cancel();
    control_cancel.cancel();
    monitor.join().await;
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            warn!(error = %e, "a serving task reported an error at shutdown");
        }
    }
    driver.persist().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not connect to echo port 10.0.0.1:7")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_shows_every_cause_once() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            error_chain(&e),
            "could not connect to echo port 10.0.0.1:7: connection refused"
        );
        let plain = std::io::Error::other("x");
        assert_eq!(error_chain(&plain), "x");
    }
}
