//! The driver: the one task that owns the [`Controller`]. It feeds it every input
//! (heartbeat reports, pass and hook reports, operator requests, ticks) and carries out
//! its effects in order: persist first, then publish the new DNS snapshot, then log and
//! broadcast the events, so a primary that DNS has announced is always one a restart
//! would keep.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dnsd_api::{ActionReply, Event, EventKind, Status};
use heartbeat::Report;
use tokio::sync::broadcast;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::config::Config;
use crate::controller::{
    Controller, Effect, Millis, NodeId, PassId, ServiceId, Withdrawn, describe,
};
use crate::dns::SharedZone;
use crate::handle::{Metrics, Request};
use crate::mirror::{self, Executor, PassProgress};
use crate::pool::build_zone;
use crate::state::StateStore;
use crate::status::{PROBE_HISTORY, ProbeHistory, View};

/// Events kept in memory for `/v1/events` and late subscribers.
pub(crate) const EVENT_LOG_CAPACITY: usize = 2000;

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// The controller and everything the driver keeps next to it.
pub(crate) struct Driver {
    config: Arc<Config>,
    controller: Controller,
    zone: SharedZone,
    store: Arc<StateStore>,
    events: VecDeque<Event>,
    next_seq: u64,
    event_tx: broadcast::Sender<Event>,
    probes: Vec<ProbeHistory>,
    started_ms: Millis,
    failovers: BTreeMap<String, u64>,
    executor: Executor,
    /// Passes under way: service, member, and the latest progress.
    running: HashMap<PassId, (ServiceId, NodeId, Option<PassProgress>)>,
    /// Bytes mirrored to each (service, member) since start: literal, matched.
    mirrored: BTreeMap<(ServiceId, NodeId), (u64, u64)>,
    /// State file writes that failed since start.
    persist_failures: u64,
}

impl Driver {
    /// A driver for `controller`, with an empty event log and no probe results yet.
    pub(crate) fn new(
        config: Arc<Config>,
        controller: Controller,
        zone: SharedZone,
        store: StateStore,
        event_tx: broadcast::Sender<Event>,
        executor: Executor,
        started_ms: Millis,
    ) -> Driver {
        let nodes = config.nodes.len();
        Driver {
            config,
            controller,
            zone,
            store: Arc::new(store),
            events: VecDeque::new(),
            next_seq: 1,
            event_tx,
            probes: vec![ProbeHistory::default(); nodes],
            started_ms,
            failovers: BTreeMap::new(),
            executor,
            running: HashMap::new(),
            mirrored: BTreeMap::new(),
            persist_failures: 0,
        }
    }

    /// The periodic re-evaluation.
    pub(crate) async fn tick(&mut self) {
        let fx = self.controller.tick(now_ms());
        self.apply(fx).await;
    }

    /// How many services the controller runs.
    pub(crate) fn service_count(&self) -> usize {
        self.controller.service_count()
    }

    /// Carries out effects in the order that keeps DNS behind the state file.
    /// Carries out effects in the order that keeps DNS behind the state file: a change
    /// of primary the state file could not take is withdrawn before anything of it is
    /// published, recorded or started.
    pub(crate) async fn apply(&mut self, mut effects: Vec<Effect>) {
        if effects.contains(&Effect::Persist) {
            match self.persist().await {
                Ok(()) => self.controller.persisted_ok(),
                Err(problem) => {
                    let (more, withdrawn) = self.controller.persist_failed(&problem, now_ms());
                    effects.retain(|e| !withdrawn_effect(e, &withdrawn));
                    // The state file is failing: the next input tries it again.
                    effects.extend(more.into_iter().filter(|e| *e != Effect::Persist));
                }
            }
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

    pub(crate) async fn on_mirror(&mut self, report: mirror::Report) {
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

    /// Writes the controller's state; a failure is logged, recorded as an event and
    /// counted, and returned in words.
    pub(crate) async fn persist(&mut self) -> Result<(), String> {
        let state = self.controller.persisted();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.save(&state)).await;
        let problem = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("state writer task failed: {e}"),
        };
        self.persist_failures += 1;
        error!(error = %problem, "cannot persist state; roles will not survive a restart until this is fixed");
        self.record(Event::new(now_ms(), EventKind::State, problem.clone()));
        Err(problem)
    }

    fn publish(&mut self) {
        match build_zone(&self.config, &self.controller) {
            Ok(zone) => self.zone.store(Arc::new(zone)),
            // Names were validated at start, so this cannot happen with a valid config;
            // if it did, the previous snapshot keeps serving.
            Err(e) => error!(error = %e, "cannot build the zone; DNS keeps the previous snapshot"),
        }
    }

    pub(crate) fn record(&mut self, mut e: Event) {
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

    pub(crate) async fn on_report(&mut self, report: Report) {
        let Some(history) = self.probes.get_mut(report.target) else {
            return;
        };
        if history.recent.len() == PROBE_HISTORY {
            history.recent.pop_front();
        }
        history
            .recent
            .push_back(report.outcome.as_ref().ok().map(|d| d.as_micros() as u64));
        history.last_error = report.outcome.as_ref().err().map(|e| describe(e));
        history.last_at_ms = report
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
        if let Some(t) = report.transition {
            let node = NodeId(report.target);
            let span = info_span!("heartbeat", node = %self.controller.node_name(node));
            let fx = span.in_scope(|| self.controller.health_changed(node, t.to, now_ms()));
            self.apply(fx).instrument(span).await;
        }
    }

    pub(crate) async fn on_request(&mut self, request: Request) {
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
                    Err(refusal) => ActionReply::refused(refusal.kind(), refusal.to_string()),
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
                    persist_failures: self.persist_failures,
                });
            }
        }
    }

    /// The status as the control API reports it.
    fn status(&self) -> Status {
        View {
            config: &self.config,
            controller: &self.controller,
            probes: &self.probes,
            running: &self.running,
            started_ms: self.started_ms,
            now: now_ms(),
        }
        .status()
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

/// Whether `effect` belongs to a change of primary the controller withdrew: its DNS
/// publication, its commit event, and the work the new primary's first moments ordered.
fn withdrawn_effect(effect: &Effect, withdrawn: &[Withdrawn]) -> bool {
    match effect {
        Effect::Publish => !withdrawn.is_empty(),
        Effect::Event(e) => withdrawn.iter().any(|w| {
            e.epoch == Some(w.epoch)
                && e.service.as_deref() == Some(w.name.as_str())
                && matches!(
                    e.kind,
                    EventKind::Failover | EventKind::Promotion | EventKind::Failback
                )
        }),
        Effect::StartSync(o) => withdrawn.iter().any(|w| w.service == o.service),
        Effect::RunHook(o) => withdrawn.iter().any(|w| w.service == o.service),
        Effect::Persist => false,
    }
}
