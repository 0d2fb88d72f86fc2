//! The driver: the one task that owns the [`Controller`]. It feeds it every input
//! (heartbeat reports, pass and hook reports, operator requests, ticks) and carries out
//! its effects in order: persist first, then publish the new DNS snapshot, then log and
//! broadcast the events, so a primary that DNS has announced is always one a restart
//! would keep.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use std::time::Instant;

use dnsd_api::{
    ActionReply, ClusterStatus, Event, EventKind, Observers, RefusalKind, Status, TerminalServer,
};
use heartbeat::Report;
use tokio::sync::broadcast;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::checks::CheckReport;
pub(crate) use crate::clock::now_ms;
use crate::cluster::observe::{ClusterViews, MemberView, Views, check_key};
use crate::cluster::quorum::{self, Verdict};
use crate::cluster::{Leader, Versioned};
use crate::config::Config;
use crate::controller::Persisted;
use crate::controller::{
    Controller, Effect, Millis, NodeId, PassId, Reconfiguration, ServiceId, Withdrawn, describe,
};
use crate::coordinator::{Link, Signal};
use crate::dns::ZonePublisher;
use crate::handle::{Metrics, Reloads, Request};
use crate::mirror::{self, Executor, PassProgress};
use crate::pool::{build_zone, topology};
use crate::reload::{self, Renames};
use crate::state::StateStore;
use crate::status::{CheckHistory, PROBE_HISTORY, ProbeHistory, View};

/// Events kept in memory for `/v1/events` and late subscribers.
pub(crate) const EVENT_LOG_CAPACITY: usize = 2000;

/// The controller and everything the driver keeps next to it.
pub(crate) struct Driver {
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
    running: HashMap<PassId, (ServiceId, NodeId, Option<PassProgress>)>,
    /// Bytes mirrored to each (service, member) since start: literal, matched.
    mirrored: BTreeMap<(ServiceId, NodeId), (u64, u64)>,
    /// State file writes that failed since start.
    persist_failures: u64,
    reloads: Reloads,
    /// The last service check of each member of each service with a check.
    checks: HashMap<(ServiceId, NodeId), CheckHistory>,
    /// The cluster side, when `[cluster]` is configured; `None` runs standalone.
    cluster: Option<ClusterSide>,
    /// The configuration file, re-read on a reload.
    source: Option<PathBuf>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reloaded {
    /// The new file configures what runs already.
    Unchanged,
    /// Taken; what changed, in words.
    Applied(String),
}

/// Why the state could not be written (etcd in a cluster, else the state file).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PersistError {
    #[error("{}", describe(.0))]
    Cluster(crate::coordinator::WriteError),
    #[error("{0}")]
    File(crate::state::StateError),
    #[error("state writer task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Why a reload was refused; dnsd keeps its configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("dnsd was started without a configuration file: nothing to re-read")]
    NoFile,
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    #[error("the configuration reader failed: {0}")]
    Reader(#[from] tokio::task::JoinError),
    #[error("{} cannot change while dnsd runs; nothing was changed (restart dnsd to apply them)", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    #[error("{0}; nothing was changed")]
    Refused(#[from] crate::controller::ReconfigureRefusal),
}

/// What the driver keeps of the cluster: whether this terminal server leads, what etcd
/// says, and the objective health of every member.
struct ClusterSide {
    link: Link,
    /// Leading: the controller decides. Following: it shows the state in etcd.
    leading: bool,
    etcd_up: bool,
    /// Since when etcd has been away (the answers are the last known state since).
    etcd_down_since: Option<Millis>,
    leader: Option<Leader>,
    views: ClusterViews,
    /// Each node's verdict from the live observers' views, indexed like the nodes.
    verdicts: Vec<Option<Verdict>>,
    /// Each checked member's check verdict from the live observers' views.
    check_verdicts: HashMap<(ServiceId, NodeId), Verdict>,
    /// This terminal server's own view (its heartbeat's), as published.
    local: Views,
    /// The configured down quorum, if any.
    quorum: Option<u32>,
    /// Per service, the last epoch whose log entry is in etcd.
    written_epochs: HashMap<ServiceId, u64>,
}

impl ClusterSide {
    /// This terminal server's heartbeat or check saw `key` (a member, or a service's
    /// check of one: [`check_key`]) change, or answer in `rtt_us`: its published view
    /// follows.
    fn observe(
        &mut self,
        key: &str,
        transition: Option<heartbeat::Transition>,
        rtt_us: Option<u64>,
    ) {
        let view = self.local.entry(key.to_owned()).or_insert(MemberView {
            health: heartbeat::Health::Unknown,
            since_unix_ms: now_ms(),
            rtt_us: None,
        });
        if let Some(t) = transition {
            view.health = t.to;
            view.since_unix_ms = now_ms();
        }
        if rtt_us.is_some() {
            view.rtt_us = rtt_us;
        }
        self.link.publish(self.local.clone());
    }

    /// What this terminal server last observed of `key`.
    fn observed(&self, key: &str) -> heartbeat::Health {
        self.local
            .get(key)
            .map_or(heartbeat::Health::Unknown, |v| v.health)
    }
}

impl Driver {
    /// A driver for `controller`, with an empty event log and no probe results yet.
    pub(crate) fn new(
        config: Arc<Config>,
        controller: Controller,
        zone: ZonePublisher,
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
            reloads: Reloads::default(),
            cluster: None,
            checks: HashMap::new(),
            source: None,
        }
    }

    /// Reloads re-read `source`, the file the configuration came from.
    pub(crate) fn reload_from(&mut self, source: PathBuf) {
        self.source = Some(source);
    }

    /// Runs as one of several terminal servers: decisions only while leading, the state
    /// in etcd, health from the observers' quorum.
    pub(crate) fn join_cluster(&mut self, link: Link, quorum: Option<u32>) {
        let nodes = self.config.nodes.len();
        self.cluster = Some(ClusterSide {
            link,
            leading: false,
            etcd_up: false,
            etcd_down_since: Some(now_ms()),
            leader: None,
            views: ClusterViews::default(),
            verdicts: vec![None; nodes],
            check_verdicts: HashMap::new(),
            local: Views::new(),
            quorum,
            written_epochs: HashMap::new(),
        });
    }

    /// Whether this terminal server decides: always standalone, while leading in a
    /// cluster.
    fn deciding(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.leading)
    }

    /// The periodic re-evaluation (only a terminal server that decides).
    pub(crate) async fn tick(&mut self) {
        if !self.deciding() {
            return;
        }
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
                    let problem = problem.to_string();
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
        // Before any pass starts: passes of an older epoch still waiting must not.
        for s in self.controller.service_ids() {
            let name = &self.config.service(s).name;
            self.executor.epochs().set(name, self.controller.epoch(s));
        }
        // In a cluster, nothing reaches a member unless this terminal server leads with a
        // lease that surely holds: a pass or hook of a deposed leader is never started.
        let may_act = self
            .cluster
            .as_ref()
            .is_none_or(|c| c.leading && c.link.may_act(Instant::now()));
        for effect in effects {
            match effect {
                Effect::Event(e) => self.record(e),
                Effect::StartSync(order) if may_act => {
                    self.running
                        .insert(order.id, (order.service, order.to, None));
                    self.executor.start_pass(order);
                }
                Effect::RunHook(order) if may_act => self.executor.run_hook(order),
                Effect::StartSync(_) | Effect::RunHook(_) => {
                    warn!("not leading with a live lease: a pass or hook is not started");
                }
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
                if !self.deciding() {
                    return;
                }
                self.controller.sync_finished(id, outcome, now_ms())
            }
            // Work ordered in an earlier term: the new leader decides afresh.
            mirror::Report::Hook { .. } if !self.deciding() => return,
            mirror::Report::Hook { id, outcome } => {
                self.controller.hook_finished(id, outcome, now_ms())
            }
        };
        self.apply(fx).await;
    }

    /// Writes the controller's state (the state file, or etcd in a cluster); a failure
    /// is logged, recorded as an event and counted, and returned in words.
    pub(crate) async fn persist(&mut self) -> Result<(), PersistError> {
        let state = self.controller.persisted();
        let problem = match &self.cluster {
            Some(cluster) => {
                let epochs = self.new_epochs(cluster);
                match cluster
                    .link
                    .write(crate::state::encode(&state), epochs.clone())
                    .await
                {
                    Ok(()) => {
                        if let Some(cluster) = &mut self.cluster {
                            for (service, epoch, _) in epochs {
                                if let Some(s) = self.controller.service_index(&service) {
                                    cluster.written_epochs.insert(s, epoch);
                                }
                            }
                        }
                        // Kept locally too, as a follower keeps what it follows: restarted
                        // while etcd is away, it answers its own last decisions.
                        self.keep_locally(state).await;
                        return Ok(());
                    }
                    Err(e) => PersistError::Cluster(e),
                }
            }
            None => {
                let store = self.store.clone();
                let result = tokio::task::spawn_blocking(move || store.save(&state)).await;
                match result {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => PersistError::File(e),
                    Err(e) => PersistError::Task(e),
                }
            }
        };
        self.persist_failures += 1;
        error!(error = %problem, "cannot persist state; roles will not survive a restart until this is fixed");
        self.record(Event::new(now_ms(), EventKind::State, problem.to_string()));
        Err(problem)
    }

    /// The epoch log entries the next state write creates: every epoch a service reached
    /// since the last write, each created once (a repeat makes etcd refuse the write).
    fn new_epochs(&self, cluster: &ClusterSide) -> Vec<(String, u64, Vec<u8>)> {
        let c = &self.controller;
        c.epochs_after(&cluster.written_epochs)
            .into_iter()
            .map(|(s, epoch)| {
                let entry = serde_json::json!({
                    "primary": c.node_name(c.primary(s)),
                    "leader": cluster.link.name(),
                    "at_ms": now_ms(),
                });
                let value = serde_json::to_vec(&entry).unwrap_or_default();
                (c.service_name(s).to_owned(), epoch, value)
            })
            .collect()
    }

    fn publish(&mut self) {
        match build_zone(&self.config, &self.controller) {
            Ok(zone) => self.zone.publish(zone),
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
        let node = NodeId(report.target);
        if let Some(cluster) = &mut self.cluster {
            // In a cluster this is one observer's view; the quorum's verdict decides.
            let rtt_us = report.outcome.as_ref().ok().map(|d| d.as_micros() as u64);
            cluster.observe(&self.config.node(node).name, report.transition, rtt_us);
            return;
        }
        if let Some(t) = report.transition {
            let span = info_span!("heartbeat", node = %self.controller.node_name(node));
            let fx = span.in_scope(|| self.controller.health_changed(node, t.to, now_ms()));
            self.apply(fx).instrument(span).await;
        }
    }

    /// Something changed in the cluster: etcd, the views, the state, the leadership.
    pub(crate) async fn on_cluster(&mut self, signal: Signal) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let now = now_ms();
        match signal {
            Signal::Etcd { up } => {
                if up != cluster.etcd_up {
                    cluster.etcd_up = up;
                    cluster.etcd_down_since = (!up).then_some(now);
                    let what = if up {
                        "etcd reachable: a session is open".to_owned()
                    } else {
                        "etcd unreachable: answering the last known state, deciding nothing"
                            .to_owned()
                    };
                    self.record(Event::new(now, EventKind::State, what));
                }
            }
            Signal::Leader(leader) => cluster.leader = leader,
            Signal::Views(views) => {
                cluster.views = views;
                self.judge().await;
            }
            Signal::State(state) => {
                if cluster.leading {
                    return;
                }
                let Some(state) = state else { return };
                match crate::state::decode(&state.bytes) {
                    Ok(persisted) => self.follow(&persisted),
                    Err(e) => {
                        let why = format!("the state in etcd is unusable: {}", describe(&e));
                        error!(%why);
                        self.record(Event::new(now, EventKind::State, why));
                    }
                }
            }
            Signal::Won { state } => self.lead(state).await,
            Signal::Lost { why } => {
                cluster.leading = false;
                // Whatever etcd said before, this one leads no more.
                if cluster
                    .leader
                    .as_ref()
                    .is_some_and(|l| l.name == cluster.link.name())
                {
                    cluster.leader = None;
                }
                let reason = format!("{} no longer decides: {why}", cluster.link.name());
                self.running.clear();
                self.record(Event::new(now, EventKind::State, reason));
            }
        }
    }

    /// Judges every member from the live observers' views; the leader's controller takes
    /// a changed verdict as a change of health, a follower shows it.
    async fn judge(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let now = now_ms();
        let mut changed = Vec::new();
        for (i, node) in self.config.nodes.iter().enumerate() {
            let previous = cluster.verdicts[i].map_or(heartbeat::Health::Unknown, |v| v.health);
            let verdict =
                quorum::evaluate(&node.name, &cluster.views, cluster.quorum, previous, now);
            if verdict.health != previous {
                changed.push((NodeId(i), verdict.health));
            }
            cluster.verdicts[i] = Some(verdict);
        }
        let mut checks_changed = Vec::new();
        for (s, n) in checked_members(&self.config) {
            let key = check_key(&self.config.service(s).name, &self.config.node(n).name);
            let previous = cluster
                .check_verdicts
                .get(&(s, n))
                .map_or(heartbeat::Health::Unknown, |v| v.health);
            let verdict = quorum::evaluate(&key, &cluster.views, cluster.quorum, previous, now);
            if verdict.health != previous {
                checks_changed.push((s, n, verdict.health));
            }
            cluster.check_verdicts.insert((s, n), verdict);
        }
        if !cluster.leading {
            for (n, health) in changed {
                self.controller.show_health(n, health);
            }
            for (s, n, health) in checks_changed {
                self.controller.show_check(s, n, health);
            }
            return;
        }
        for (n, health) in changed {
            let fx = self.controller.health_changed(n, health, now);
            self.apply(fx).await;
        }
        for (s, n, health) in checks_changed {
            let fx = self.controller.check_changed(s, n, health, now);
            self.apply(fx).await;
        }
    }

    /// This terminal server leads now: take the state in etcd as a restart takes the
    /// state file (a switchover cut short is rolled back), feed it the verdicts, decide.
    async fn lead(&mut self, state: Option<Versioned>) {
        let now = now_ms();
        let topology = topology(&self.config);
        let (persisted, note) = match state.map(|v| crate::state::decode(&v.bytes)) {
            None => (None, None),
            Some(Ok(p)) => (Some(p), None),
            Some(Err(e)) => (
                None,
                Some(format!(
                    "the state in etcd is unusable ({}); starting from the configuration",
                    describe(&e)
                )),
            ),
        };
        let (controller, mut fx) = Controller::new(&topology, persisted.as_ref(), now);
        self.controller = controller;
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.leading = true;
        cluster.written_epochs = persisted
            .iter()
            .flat_map(|p| &p.services)
            .filter_map(|ps| {
                self.controller
                    .service_index(&ps.name)
                    .map(|s| (s, ps.epoch))
            })
            .collect();
        let name = cluster.link.name().to_owned();
        if let Some(note) = note {
            self.record(Event::new(now, EventKind::State, note));
        }
        self.record(Event::new(
            now,
            EventKind::Leadership,
            format!("{name} leads: it decides from now on"),
        ));
        // A new term: every service takes the next epoch, so nothing this leader orders
        // carries an epoch an earlier leader may have used.
        // Written on its own, before any decision of the term: the epoch log then says
        // which primary the term began with.
        fx.extend(self.controller.begin_term(&name, now));
        self.apply(fx).await;
        // The objective health as the observers see it now.
        let known: Vec<(NodeId, heartbeat::Health)> =
            self.cluster.as_ref().map_or_else(Vec::new, |cluster| {
                cluster
                    .verdicts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (NodeId(i), v.health)))
                    .filter(|(_, h)| *h != heartbeat::Health::Unknown)
                    .collect()
            });
        for (n, health) in known {
            let fx = self.controller.health_changed(n, health, now);
            self.apply(fx).await;
        }
        let checks: Vec<(ServiceId, NodeId, heartbeat::Health)> =
            self.cluster.as_ref().map_or_else(Vec::new, |cluster| {
                cluster
                    .check_verdicts
                    .iter()
                    .map(|(&(s, n), v)| (s, n, v.health))
                    .filter(|(_, _, h)| *h != heartbeat::Health::Unknown)
                    .collect()
            });
        for (s, n, health) in checks {
            let fx = self.controller.check_changed(s, n, health, now);
            self.apply(fx).await;
        }
    }

    /// Shows the state another terminal server decided: DNS answers it, status shows it.
    fn follow(&mut self, persisted: &Persisted) {
        let topology = topology(&self.config);
        self.controller = Controller::mirror_of(&topology, persisted, now_ms());
        self.show_verdicts();
        self.publish();
        // Kept locally too: a terminal server restarted while etcd is away answers the
        // last state it knew rather than the configuration's preferred members.
        if let Err(e) = self.store.save(persisted) {
            warn!(error = %e, "cannot keep the cluster's state in the local state file");
        }
    }

    /// A follower's controller shows the observers' verdicts on hosts and checks.
    fn show_verdicts(&mut self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        for (i, v) in cluster.verdicts.iter().enumerate() {
            if let Some(v) = v {
                self.controller.show_health(NodeId(i), v.health);
            }
        }
        for (&(s, n), v) in &cluster.check_verdicts {
            self.controller.show_check(s, n, v.health);
        }
    }

    /// In a cluster, the local state file is a copy of the last state known: written off
    /// the driver's task, and a failure only logged (etcd holds the state).
    async fn keep_locally(&self, state: Persisted) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.save(&state)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "cannot keep the cluster's state in the local state file")
            }
            Err(e) => warn!(error = %e, "the local state writer failed"),
        }
    }

    /// At shutdown: standalone, the last write of the state file; in a cluster, the
    /// coordinator has stopped and etcd holds the state: only the local copy is kept.
    pub(crate) async fn persist_at_exit(&mut self) {
        if self.cluster.is_some() {
            self.keep_locally(self.controller.persisted()).await;
        } else {
            // A failure has been logged and recorded already, and there is no decision
            // left to withdraw.
            let _ = self.persist().await;
        }
    }

    /// A service check ended: keep its result for the status, and give a change of
    /// verdict to the controller.
    pub(crate) async fn on_check(&mut self, report: CheckReport) {
        let (s, n) = (report.service, report.node);
        let last = self.checks.entry((s, n)).or_default();
        last.last_at_ms = report.at_ms;
        last.rtt_us = report.outcome.as_ref().ok().map(|d| d.as_micros() as u64);
        last.last_error = report.outcome.as_ref().err().map(|e| describe(e));
        if let Some(cluster) = &mut self.cluster {
            // One observer's view, like the heartbeat's: the quorum's verdict decides.
            let key = check_key(&self.config.service(s).name, &self.config.node(n).name);
            cluster.observe(&key, report.transition, last.rtt_us);
            return;
        }
        if let Some(t) = report.transition {
            let span = info_span!("check", service = %self.controller.service_name(s), node = %self.controller.node_name(n));
            let fx = span.in_scope(|| self.controller.check_changed(s, n, t.to, now_ms()));
            self.apply(fx).instrument(span).await;
        }
    }

    /// Answers a request. True when a reload changed the configuration: the daemon then
    /// restarts the heartbeat and the service checks on the new one.
    pub(crate) async fn on_request(&mut self, request: Request) -> bool {
        match request {
            Request::Reload { origin, reply } => {
                info!(%origin, "reload asked");
                let (answer, changed) = self.reload_file(&origin).await;
                // The asker may have gone away; the reload stands either way.
                let _ = reply.send(answer);
                return changed;
            }
            Request::Act {
                action,
                origin,
                reply,
            } => {
                info!(%action, %origin, "operator action");
                if let Some(refusal) = self.not_leading() {
                    info!(%action, %origin, "{refusal}");
                    let _ = reply.send(ActionReply::refused(RefusalKind::NotLeader, refusal));
                    return false;
                }
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
                    reloads: self.reloads,
                });
            }
        }
        false
    }

    /// Re-reads the configuration file and takes it, or says why not; true when the
    /// configuration changed.
    async fn reload_file(&mut self, origin: &str) -> (ActionReply, bool) {
        let outcome = match self.source.clone() {
            None => Err(ReloadError::NoFile),
            Some(path) => {
                match tokio::task::spawn_blocking(move || crate::config::load(&path)).await {
                    Ok(Ok(new)) => self.reload(new, origin).await,
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(e.into()),
                }
            }
        };
        match &outcome {
            Ok(_) => self.reloads.applied += 1,
            Err(_) => self.reloads.refused += 1,
        }
        match outcome {
            Ok(Reloaded::Unchanged) => (
                ActionReply::done("the file configures what runs already: nothing changed".into()),
                false,
            ),
            Ok(Reloaded::Applied(what)) => (
                ActionReply::done(format!("configuration reloaded: {what}")),
                true,
            ),
            Err(why) => {
                let why = format!("reload refused, dnsd keeps its configuration: {why}");
                warn!(%origin, "{why}");
                let one_line = why.replace("\n  ", "; ").replace(":;", ":");
                self.record(Event::new(
                    now_ms(),
                    EventKind::Refused,
                    format!("{one_line} ({origin})"),
                ));
                (ActionReply::refused(RefusalKind::ReloadRefused, why), false)
            }
        }
    }

    /// Takes `new` as the configuration, asked by `origin`: checked against the running
    /// one, given to the controller (which refuses it under a change of primary, or if it
    /// removes a primary), then to the executor; what the driver keeps per node and
    /// service follows the names. Nothing changes unless everything can. The heartbeat and
    /// the service checks are the daemon's to restart ([`Reloaded::Applied`]).
    pub(crate) async fn reload(
        &mut self,
        new: Config,
        origin: &str,
    ) -> Result<Reloaded, ReloadError> {
        let now = now_ms();
        let restart = reload::needs_restart(&self.config, &new);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        for warning in new.warnings() {
            warn!(key = %warning.path, "{}", warning.message);
        }
        let changes = reload::changes(&self.config, &new);
        if changes.is_empty() {
            return Ok(Reloaded::Unchanged);
        }
        let topology = topology(&new);
        let (readdressed, rechecked) = (
            reload::readdressed(&self.config, &new),
            reload::rechecked(&self.config, &new),
        );
        let (controller, fx) = if self.deciding() {
            let r = Reconfiguration {
                topology: &topology,
                readdressed: &readdressed,
                rechecked: &rechecked,
            };
            self.controller.reconfigure(&r, now)?
        } else {
            // A follower shows the leader's state in the new pool; the leader's next state
            // replaces it.
            let c = Controller::mirror_of(&topology, &self.controller.persisted(), now);
            (c, vec![Effect::Publish])
        };
        let renames = Renames::new(&self.config, &new);
        self.follow_renames(&renames, &new, &readdressed, &rechecked);
        self.controller = controller;
        self.config = Arc::new(new);
        self.executor = self.executor.reconfigured(self.config.clone());
        if self.cluster.as_ref().is_some_and(|c| !c.leading) {
            self.show_verdicts();
        }
        let what = changes.join("; ");
        self.record(Event::new(
            now,
            EventKind::Reloaded,
            format!("configuration reloaded ({origin}): {what}"),
        ));
        self.apply(fx).await;
        // The observers' verdicts, by the new names.
        self.judge().await;
        Ok(Reloaded::Applied(what))
    }

    /// Re-indexes what the driver keeps per node and service by the new configuration's
    /// ids; what belongs to a removed node or service, a readdressed node's probes and a
    /// changed check's results are dropped.
    fn follow_renames(
        &mut self,
        renames: &Renames,
        new: &Config,
        readdressed: &[String],
        rechecked: &[String],
    ) {
        let count = new.nodes.len();
        self.probes = renames.nodes_of(std::mem::take(&mut self.probes), count, Default::default);
        for (probe, node) in self.probes.iter_mut().zip(&new.nodes) {
            if readdressed.contains(&node.name) {
                *probe = ProbeHistory::default();
            }
        }
        self.running = std::mem::take(&mut self.running)
            .into_iter()
            .filter_map(|(id, (s, n, p))| renames.member(s, n).map(|(s, n)| (id, (s, n, p))))
            .collect();
        self.mirrored = std::mem::take(&mut self.mirrored)
            .into_iter()
            .filter_map(|((s, n), bytes)| renames.member(s, n).map(|m| (m, bytes)))
            .collect();
        self.checks = std::mem::take(&mut self.checks)
            .into_iter()
            .filter_map(|((s, n), check)| renames.member(s, n).map(|m| (m, check)))
            .filter(|((s, _), _)| !rechecked.contains(&new.service(*s).name))
            .collect();
        if let Some(cluster) = &mut self.cluster {
            cluster.verdicts =
                renames.nodes_of(std::mem::take(&mut cluster.verdicts), count, || None);
            cluster.check_verdicts = std::mem::take(&mut cluster.check_verdicts)
                .into_iter()
                .filter_map(|((s, n), v)| renames.member(s, n).map(|m| (m, v)))
                .filter(|((s, _), _)| !rechecked.contains(&new.service(*s).name))
                .collect();
            // What it observes of nodes and checks that are no more is no longer published.
            let keys: std::collections::BTreeSet<String> = new
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .chain(
                    checked_members(new)
                        .map(|(s, n)| check_key(&new.service(s).name, &new.node(n).name)),
                )
                .collect();
            cluster.local.retain(|key, _| keys.contains(key));
            for name in rechecked {
                cluster
                    .local
                    .retain(|key, _| !key.starts_with(&format!("{name}/")));
            }
            cluster.written_epochs = std::mem::take(&mut cluster.written_epochs)
                .into_iter()
                .filter_map(|(s, epoch)| renames.service(s).map(|s| (s, epoch)))
                .collect();
        }
    }

    /// What the heartbeat last concluded of node `n`: where a restarted monitor starts
    /// from (in a cluster, this terminal server's own view, not the quorum's verdict).
    pub(crate) fn observed_health(&self, n: NodeId) -> heartbeat::Health {
        match &self.cluster {
            Some(cluster) => cluster.observed(&self.config.node(n).name),
            None => self.controller.health(n),
        }
    }

    /// The check's last verdict on member `n` of service `s`: where a restarted check
    /// starts from (in a cluster, this terminal server's own).
    pub(crate) fn check_verdict(&self, s: ServiceId, n: NodeId) -> heartbeat::Health {
        match &self.cluster {
            Some(cluster) => cluster.observed(&check_key(
                &self.config.service(s).name,
                &self.config.node(n).name,
            )),
            None => self
                .controller
                .check(s, n)
                .unwrap_or(heartbeat::Health::Unknown),
        }
    }

    /// The configuration in force.
    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Starts no more passes or hooks and waits up to `grace` for those under way;
    /// returns how many were still running.
    pub(crate) async fn shutdown_work(&self, grace: std::time::Duration) -> usize {
        self.executor.shutdown(grace).await
    }

    /// Why this terminal server cannot take an operator action now, if it cannot.
    fn not_leading(&self) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        if cluster.leading {
            return None;
        }
        let me = cluster.link.name();
        Some(match &cluster.leader {
            Some(l) => format!(
                "{me} does not decide: {} leads; send the action there{}",
                l.name,
                l.contact
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
            None => format!("{me} does not decide, and no terminal server leads right now"),
        })
    }

    /// The status as the control API reports it.
    fn status(&self) -> Status {
        let now = now_ms();
        let cluster = self.cluster.as_ref().map(|c| {
            let live = quorum::live_observers(&c.views);
            ClusterStatus {
                name: c.link.name().to_owned(),
                leading: c.leading,
                leader: c.leader.as_ref().map(|l| l.name.clone()),
                leader_contact: c.leader.as_ref().and_then(|l| l.contact.clone()),
                lease_left_ms: c
                    .link
                    .lease_left(Instant::now())
                    .map(|d| d.as_millis() as u64),
                etcd_reachable: c.etcd_up,
                stale_for_ms: c.etcd_down_since.map(|since| now.saturating_sub(since)),
                down_quorum: quorum::down_quorum(c.quorum, live),
                servers: c
                    .views
                    .servers
                    .values()
                    .map(|s| TerminalServer {
                        name: s.name.clone(),
                        contact: s.contact.clone(),
                        leader: c.leader.as_ref().is_some_and(|l| l.name == s.name),
                    })
                    .collect(),
            }
        });
        let observers: Vec<Option<Observers>> = self.cluster.as_ref().map_or_else(Vec::new, |c| {
            c.verdicts
                .iter()
                .map(|v| {
                    v.map(|v| Observers {
                        up: v.tally.up,
                        down: v.tally.down,
                        unknown: v.tally.unknown,
                    })
                })
                .collect()
        });
        View {
            config: &self.config,
            controller: &self.controller,
            probes: &self.probes,
            running: &self.running,
            checks: &self.checks,
            started_ms: self.started_ms,
            now,
            cluster,
            observers: &observers,
        }
        .status()
    }
}

/// Every member of every service with a check.
fn checked_members(config: &Config) -> impl Iterator<Item = (ServiceId, NodeId)> + '_ {
    config
        .services
        .iter()
        .enumerate()
        .filter(|(_, svc)| svc.check.is_some())
        .flat_map(|(s, svc)| svc.nodes.iter().map(move |&n| (ServiceId(s), n)))
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
