//! The controller's entry points: building it (from the configuration and a previous
//! run's state), reading it for DNS and status views, and the inputs that drive it —
//! health changes, ticks, finished passes and hooks (service checks: [`super::health`]) —
//! each followed by a re-evaluation of every service.

use dnsd_api::{Event, EventKind, Role};
use heartbeat::Health;

use super::ids::{HookId, NodeId, PassId, ServiceId};
use super::orders::{Effect, Fx, HookError, PassError, PassSummary};
use super::persist::Persisted;
use super::spec::{FENCE_RETRY, Millis, Policy, Topology, seconds};
use super::state::{
    Awaited, Controller, Initiator, MemberHealth, MemberSync, Node, Service, ServiceState,
};

/// A change of primary withdrawn because the state file could not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    pub service: ServiceId,
    pub name: String,
    /// The epoch the change would have started.
    pub epoch: u64,
}

impl Controller {
    /// Builds the controller from the configured pool and, if there is one, the
    /// persisted state of a previous run. Persisted entries that no longer fit the
    /// configuration (a service or node that was removed) are dropped with a note in
    /// the start event. A switchover cut short by a restart is rolled back.
    pub fn new(topology: &Topology, persisted: Option<&Persisted>, now: Millis) -> (Self, Fx) {
        let nodes = topology
            .nodes
            .iter()
            .map(|name| Node {
                name: name.clone(),
                health: Health::Unknown,
                maintenance: false,
                promote_failed_until: 0,
            })
            .collect();
        let services = topology
            .services
            .iter()
            .map(|spec| Service {
                name: spec.name.clone(),
                members: spec.members.clone(),
                policy: spec.policy.clone(),
                primary: spec.members.first().copied().unwrap_or(NodeId(0)),
                epoch: 1,
                paused: false,
                state: ServiceState::Serving,
                sync: vec![MemberSync::default(); spec.members.len()],
                health: vec![MemberHealth::default(); spec.members.len()],
                passes: 0,
                passes_at: None,
                preferred_ready_since: None,
                retry_failover_at: 0,
                committed_at: None,
            })
            .collect();
        let mut c = Controller {
            nodes,
            services,
            serial: 1,
            now,
            next_id: 1,
            illegal_moves: 0,
            undo: Vec::new(),
        };
        let mut fx = Vec::new();
        let mut notes = Vec::new();
        let mut interrupted = Vec::new();
        if let Some(p) = persisted {
            c.serial = p.serial.wrapping_add(1).max(1);
            for name in &p.maintenance {
                match c.node_index(name) {
                    Some(n) => c.nodes[n.0].maintenance = true,
                    None => notes.push(format!(
                        "forgot maintenance of {name}: no longer configured"
                    )),
                }
            }
            for ps in &p.services {
                let Some(s) = c.service_index(&ps.name) else {
                    notes.push(format!("forgot service {}: no longer configured", ps.name));
                    continue;
                };
                c.restore_service(s, ps, &mut notes, &mut interrupted);
            }
        }
        let reason = match persisted {
            Some(_) if notes.is_empty() => "state restored".to_owned(),
            Some(_) => format!("state restored; {}", notes.join("; ")),
            None => "no saved state; every service starts on its preferred member".to_owned(),
        };
        fx.push(Effect::Event(c.event(EventKind::Started, None, reason)));
        for (s, target) in interrupted {
            c.roll_back_interrupted(s, target, &mut fx);
        }
        fx.push(Effect::Publish);
        fx.push(Effect::Persist);
        (c, fx)
    }

    /// A new term of decisions: a terminal server that just took the lead gives every
    /// service the next epoch, so that nothing it orders carries an epoch another leader
    /// may have used (members refuse what carries an older one). The primaries stay.
    pub fn begin_term(&mut self, leader: &str, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        for s in self.service_ids() {
            self.services[s.0].epoch += 1;
            let primary = self.node_name(self.services[s.0].primary).to_owned();
            let reason = format!("{leader} leads: a new term, {primary} stays primary");
            fx.push(Effect::Event(self.event(
                EventKind::Leadership,
                Some(s),
                reason,
            )));
        }
        self.serial = self.serial.wrapping_add(1).max(1);
        fx.push(Effect::Publish);
        fx.push(Effect::Persist);
        fx
    }

    /// The epochs each service reached after `recorded` (the last epoch of each already
    /// in a cluster's epoch log), in order: the entries the next state write creates.
    pub fn epochs_after(
        &self,
        recorded: &std::collections::HashMap<ServiceId, u64>,
    ) -> Vec<(ServiceId, u64)> {
        self.service_ids()
            .flat_map(|s| {
                let last = recorded.get(&s).copied().unwrap_or(0);
                (last + 1..=self.services[s.0].epoch).map(move |e| (s, e))
            })
            .collect()
    }

    /// A controller that shows the state another terminal server decided, as written in
    /// `persisted`: for a terminal server that follows, answering DNS and status from it.
    /// Unlike [`Controller::new`] it changes nothing (the serial is the leader's, nothing
    /// is rolled back) and it is never given inputs; it is replaced by the next state.
    pub fn mirror_of(topology: &Topology, persisted: &Persisted, now: Millis) -> Controller {
        let (mut c, _) = Controller::new(topology, Some(persisted), now);
        c.serial = persisted.serial;
        for svc in &mut c.services {
            svc.state = ServiceState::Serving;
        }
        c.undo.clear();
        c
    }

    /// Sets node `n`'s health for display, deciding nothing (a following terminal server
    /// shows the pool's health as the observers see it).
    pub fn show_health(&mut self, n: NodeId, health: Health) {
        self.nodes[n.0].health = health;
    }

    /// Sets the check verdict on member `n` of service `s` for display, deciding nothing
    /// (as [`Controller::show_health`]). A no-op for a node that is not a member.
    pub fn show_check(&mut self, s: ServiceId, n: NodeId, health: Health) {
        if let Some(h) = self.services[s.0].health_mut(n) {
            h.check = health;
        }
    }

    // -- read access for the driver, DNS and status --------------------------------

    /// The zone's SOA serial; grows on every role change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Every service id.
    pub fn service_ids(&self) -> impl Iterator<Item = ServiceId> + use<> {
        (0..self.services.len()).map(ServiceId)
    }

    /// The current primary of service `s`.
    pub fn primary(&self, s: ServiceId) -> NodeId {
        self.services[s.0].primary
    }

    pub fn epoch(&self, s: ServiceId) -> u64 {
        self.services[s.0].epoch
    }

    pub fn paused(&self, s: ServiceId) -> bool {
        self.services[s.0].paused
    }

    /// Whether service `s` has a dead primary and nobody to promote.
    pub fn stranded(&self, s: ServiceId) -> bool {
        matches!(self.services[s.0].state, ServiceState::Stranded)
    }

    /// Members of service `s` in round-robin order.
    pub fn members(&self, s: ServiceId) -> &[NodeId] {
        &self.services[s.0].members
    }

    pub fn policy(&self, s: ServiceId) -> &Policy {
        &self.services[s.0].policy
    }

    pub fn service_name(&self, s: ServiceId) -> &str {
        &self.services[s.0].name
    }

    pub fn node_name(&self, n: NodeId) -> &str {
        &self.nodes[n.0].name
    }

    /// Health of node `n` as last reported by the heartbeat.
    pub fn health(&self, n: NodeId) -> Health {
        self.nodes[n.0].health
    }

    pub fn maintenance(&self, n: NodeId) -> bool {
        self.nodes[n.0].maintenance
    }

    /// A primary change under way in service `s`, in words.
    pub fn transition(&self, s: ServiceId) -> Option<String> {
        let (what, target, step) = match &self.services[s.0].state {
            ServiceState::FailingOver(m) => ("failover", m.target, m.step.to_string()),
            ServiceState::SwitchingOver(m) => ("switchover", m.target, m.step.to_string()),
            ServiceState::Serving | ServiceState::Stranded | ServiceState::Recovering(_) => {
                return None;
            }
        };
        Some(format!("{what} to {}: {step}", self.node_name(target)))
    }

    /// Whether the transition under way in `s` (if any) was started by an operator.
    pub fn transition_by_operator(&self, s: ServiceId) -> Option<bool> {
        self.services[s.0]
            .state
            .initiator()
            .map(|by| by == Initiator::Operator)
    }

    /// The role of node `n` in service `s`.
    pub fn role(&self, s: ServiceId, n: NodeId) -> Role {
        let svc = &self.services[s.0];
        if svc.primary == n {
            Role::Primary
        } else if self.nodes[n.0].health == Health::Down {
            Role::Down
        } else if svc.sync_of(n).is_some_and(|ms| ms.resyncing) {
            Role::Resyncing
        } else {
            Role::Secondary
        }
    }

    pub fn node_index(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name.eq_ignore_ascii_case(name))
            .map(NodeId)
    }

    pub fn service_index(&self, name: &str) -> Option<ServiceId> {
        self.services
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
            .map(ServiceId)
    }

    // -- inputs ---------------------------------------------------------------------

    /// The heartbeat decided that node `n` changed health.
    pub fn health_changed(&mut self, n: NodeId, health: Health, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        let old = self.nodes[n.0].health;
        if old == health {
            return fx;
        }
        self.nodes[n.0].health = health;
        let kind = match health {
            Health::Up => Some(EventKind::NodeUp),
            Health::Down => Some(EventKind::NodeDown),
            Health::Unknown => None,
        };
        if let Some(kind) = kind {
            let mut e = self.event(kind, None, format!("heartbeat: {old} -> {health}"));
            e.node = Some(self.nodes[n.0].name.clone());
            fx.push(Effect::Event(e));
        }
        if health == Health::Up {
            let mut marked = false;
            for svc in &mut self.services {
                let Some(i) = svc.slot(n) else { continue };
                let back_from_down = old == Health::Down && svc.primary != n && svc.policy.mirrored;
                let ms = svc.sync_mut(i);
                ms.next_due = now;
                // Back from down: whatever it holds may differ from the primary's data.
                if back_from_down {
                    ms.resyncing = true;
                    ms.returned_at = now;
                    ms.keep = true;
                    marked = true;
                }
            }
            if marked {
                fx.push(Effect::Persist);
            }
        }
        for s in self.service_ids() {
            if self.services[s.0].members.contains(&n) {
                self.note_health(s, n, &mut fx);
            }
        }
        self.settle(&mut fx);
        fx
    }

    /// Periodic re-evaluation (the driver calls it every heartbeat interval).
    pub fn tick(&mut self, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        self.settle(&mut fx);
        fx
    }

    /// A pass ordered with [`Effect::StartSync`] finished. Unknown ids are ignored.
    pub fn sync_finished(
        &mut self,
        id: PassId,
        outcome: Result<PassSummary, PassError>,
        now: Millis,
    ) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        let found = self.service_ids().find_map(|s| {
            let svc = &self.services[s.0];
            svc.slots()
                .find(|&i| svc.sync(i).pass.as_ref().is_some_and(|p| p.id == id))
                .map(|i| (s, i))
        });
        if let Some((s, i)) = found {
            self.pass_finished(s, i, outcome, &mut fx);
        }
        self.settle(&mut fx);
        fx
    }

    /// A hook ordered with [`Effect::RunHook`] finished. Unknown ids are ignored.
    pub fn hook_finished(&mut self, id: HookId, outcome: Result<(), HookError>, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        // A restart has ended, awaited or not: its member may be restarted again.
        let mut restarted = None;
        for (s, svc) in self.services.iter_mut().enumerate() {
            for (&n, h) in svc.members.iter().zip(&mut svc.health) {
                if h.restart == Some(id) {
                    h.restart = None;
                    restarted = Some((ServiceId(s), n));
                }
            }
        }
        let found = self.service_ids().find_map(|s| {
            self.services[s.0]
                .state
                .awaited_hook()
                .filter(|(awaited, _)| *awaited == id)
                .map(|(_, what)| (s, what))
        });
        match (found, restarted) {
            (Some((s, Awaited::Restart)), _) => self.restart_done(s, outcome, &mut fx),
            (Some((s, what)), _) => self.hook_done(s, what, outcome, &mut fx),
            (None, Some((s, n))) => self.restart_ended_late(s, n, outcome, &mut fx),
            (None, None) => {}
        }
        self.settle(&mut fx);
        fx
    }

    // -- durability -----------------------------------------------------------------

    /// The state file now holds the controller's state: the changes of primary made
    /// since can no longer be withdrawn.
    pub fn persisted_ok(&mut self) {
        self.undo.clear();
    }

    /// Writing the state file failed: every change of primary made since it last
    /// succeeded is withdrawn, since a restart would not keep it. A failover's service
    /// stays stranded on its old primary and tries again after [`FENCE_RETRY`]; a
    /// switchover is rolled back. Returns the effects, and the services and epochs whose
    /// change was withdrawn: the driver must not publish them, record their commit events
    /// or start the work they ordered.
    pub fn persist_failed(&mut self, problem: &str, now: Millis) -> (Fx, Vec<Withdrawn>) {
        self.now = now;
        let mut fx = Vec::new();
        let mut withdrawn = Vec::new();
        while let Some(undo) = self.undo.pop() {
            let s = undo.service;
            withdrawn.push(Withdrawn {
                service: s,
                name: undo.before.name.clone(),
                epoch: undo.before.epoch + 1,
            });
            self.services[s.0] = undo.before;
            self.serial = undo.serial;
            let old = self.node_name(self.services[s.0].primary).to_owned();
            let to = self.node_name(undo.target).to_owned();
            let why = format!(
                "cannot write the state file ({problem}), so {to} is not made primary: a restart would not keep it"
            );
            match self.services[s.0].state {
                // Hooks ran: the old primary may be demoted; re-promote it.
                ServiceState::SwitchingOver(_) => self.roll_back(s, why, &mut fx),
                // Nothing was asked of the live old primary: it simply stays.
                _ if undo.planned => {
                    let mut e = self.event(
                        EventKind::SwitchoverFailed,
                        Some(s),
                        format!("{why}; {old} stays primary"),
                    );
                    e.old_primary = Some(old);
                    e.new_primary = Some(to);
                    fx.push(Effect::Event(e));
                }
                // A failover: the old primary is dead; the service waits on it.
                ref state => {
                    if state.moving() {
                        self.become_serving(s);
                    }
                    let primary = self.services[s.0].primary;
                    let dead = self.serves(s, primary) != Health::Up;
                    if dead && !matches!(self.services[s.0].state, ServiceState::Stranded) {
                        self.become_stranded(s);
                    }
                    self.services[s.0].retry_failover_at = now + FENCE_RETRY;
                    let reason = format!(
                        "{why}; DNS stays on {old}; trying again in {}",
                        seconds(FENCE_RETRY)
                    );
                    let mut e = self.event(EventKind::SwitchoverFailed, Some(s), reason);
                    e.old_primary = Some(old);
                    e.new_primary = Some(to);
                    fx.push(Effect::Event(e));
                }
            }
        }
        (fx, withdrawn)
    }

    // -- decisions ------------------------------------------------------------------

    /// Re-evaluates every service after an input.
    pub(super) fn settle(&mut self, fx: &mut Fx) {
        for s in self.service_ids() {
            self.evaluate(s, fx);
        }
    }

    fn evaluate(&mut self, s: ServiceId, fx: &mut Fx) {
        self.release_quarantines(s, fx);
        if self.services[s.0].state.moving() {
            self.advance(s, fx);
            if self.services[s.0].state.moving() {
                return;
            }
        }
        let svc = &self.services[s.0];
        let primary = svc.primary;
        let name = self.node_name(primary).to_owned();
        let host = self.nodes[primary.0].health;
        let check = self.check(s, primary);
        if host == Health::Down {
            // A dead host fails over at once, whatever was being tried on it.
            let why = format!("restart of {name} stopped: its host went down");
            self.end_recovery(s, EventKind::Hook, why, fx);
            let svc = &self.services[s.0];
            if !svc.paused && self.now >= svc.retry_failover_at {
                self.fail_over(s, &format!("{name} is down"), fx);
            }
            return;
        }
        if self.services[s.0].state.recovery().is_some() && check != Some(Health::Down) {
            let why = match check {
                Some(Health::Up) => {
                    format!(
                        "{name}'s service check passes again after its restart: it stays primary"
                    )
                }
                _ => format!("restart of {name} stopped: its check has no verdict"),
            };
            self.end_recovery(s, EventKind::Recovered, why, fx);
        }
        if host == Health::Up && check == Some(Health::Down) {
            // Host up, service down: restart it in place, then migrate. Passes go on (the
            // data is there), a failback waits.
            if !self.services[s.0].paused {
                self.recover(s, fx);
            }
            if !self.services[s.0].state.moving() {
                self.schedule_passes(s, fx);
            }
            return;
        }
        if matches!(self.services[s.0].state, ServiceState::Stranded) {
            if self.serves(s, primary) == Health::Up {
                self.become_serving(s);
                let what = if check.is_some() { "serves" } else { "answers" };
                fx.push(Effect::Event(self.event(
                    EventKind::Recovered,
                    Some(s),
                    format!("{name} {what} again"),
                )));
            } else {
                // Its host is back but its service has no verdict yet: clients still get
                // nothing from it, so a member that serves is promoted as soon as there is
                // one.
                let svc = &self.services[s.0];
                if !svc.paused && self.now >= svc.retry_failover_at {
                    let cause = format!("{name}'s service check has no verdict yet");
                    self.fail_over(s, &cause, fx);
                }
                return;
            }
        }
        if !self.services[s.0].paused {
            self.check_failback(s, fx);
        }
        if !self.services[s.0].state.moving() {
            self.schedule_passes(s, fx);
        }
    }

    pub(super) fn event(&self, kind: EventKind, s: Option<ServiceId>, reason: String) -> Event {
        let mut e = Event::new(self.now, kind, reason);
        if let Some(s) = s {
            e.service = Some(self.services[s.0].name.clone());
            e.epoch = Some(self.services[s.0].epoch);
        }
        e
    }

    /// Checks what the state enum makes expressible: a stranded service's primary does
    /// not serve; a change under way targets another member; a recovery restarts the
    /// primary only, only while its host is up and its check fails, one restart at a
    /// time; no illegal move happened.
    #[cfg(test)]
    pub(super) fn check_states(&self) -> Result<(), String> {
        if self.illegal_moves > 0 {
            return Err(format!("{} illegal state move(s)", self.illegal_moves));
        }
        for s in self.service_ids() {
            self.check_health_states(s)?;
        }
        for svc in &self.services {
            if let Some(t) = svc.state.target()
                && (t == svc.primary || !svc.members.contains(&t))
            {
                return Err(format!("{} moves to {t:?}, not another member", svc.name));
            }
        }
        Ok(())
    }
}
