//! The failover controller: a pure state machine that decides who is primary.
//!
//! It takes inputs (a member's health changed, an operator action, a timer tick), each
//! with the current wall-clock time, and returns [`Effect`]s for the driver to carry
//! out: publish a new DNS snapshot, persist the state, log an event. It never sleeps,
//! reads the clock or touches a socket, which is what lets the tests below and the
//! property test run thousands of fault sequences in milliseconds.
//!
//! Rules it enforces:
//! - exactly one primary per service, and an epoch per service that only grows (every
//!   change of primary bumps it, and the zone serial with it);
//! - when the primary goes down, the next member after it in the service's order
//!   (wrapping around) that is up and not in maintenance is promoted;
//! - when no member qualifies, DNS keeps answering the last primary and the service is
//!   marked *stranded* until the primary answers again or a member becomes eligible:
//!   answering a dead address is no worse than answering nothing, and a client retrying
//!   reaches the service the moment it is back;
//! - a paused service takes no automatic decision; operators may still act on it;
//! - a member coming back rejoins as a secondary and does not take the primary back;
//! - operator actions are checked against the same rules and are either applied whole
//!   or refused with a reason.

use std::fmt;

pub use dnsd_api::Role;
use dnsd_api::{Action, Event, EventKind};
use heartbeat::Health;
use serde::{Deserialize, Serialize};

/// Wall-clock milliseconds since the Unix epoch, as given by the driver.
pub type Millis = u64;

/// The pool as configured: node names, and each service's members in round-robin order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Node names; a node's index is its identity.
    pub nodes: Vec<String>,
    /// Services: name and member indices (the first is the preferred primary).
    pub services: Vec<(String, Vec<usize>)>,
}

/// What the driver must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The zone changed: build and publish a new DNS snapshot.
    Publish,
    /// Roles, epochs or flags changed: write the state file.
    Persist,
    /// Record and broadcast this event.
    Event(Event),
}

/// Why a member may not be promoted right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It is the primary already.
    IsPrimary,
    /// Its heartbeat says it is down.
    Down,
    /// Not enough probes yet to call it up.
    HealthUnknown,
    /// An operator put it in maintenance.
    Maintenance,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::IsPrimary => "is the primary",
            Skip::Down => "is down",
            Skip::HealthUnknown => "has not answered enough heartbeats yet",
            Skip::Maintenance => "is in maintenance",
        })
    }
}

/// One line of the election explanation: a member, in the order it would be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: usize,
    pub verdict: Result<(), Skip>,
}

/// What is persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The zone's SOA serial when the state was written.
    pub serial: u32,
    pub services: Vec<PersistedService>,
    /// Names of members in maintenance.
    pub maintenance: Vec<String>,
}

/// A service's persisted role assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedService {
    pub name: String,
    pub primary: String,
    pub epoch: u64,
    pub paused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    health: Health,
    maintenance: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    name: String,
    members: Vec<usize>,
    primary: usize,
    epoch: u64,
    paused: bool,
    /// The primary is down and nobody could be promoted; DNS keeps the old answer.
    stranded: bool,
}

/// The decision core. See the module documentation for its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    nodes: Vec<Node>,
    services: Vec<Service>,
    serial: u32,
}

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Controller {
    /// Builds the controller from the configured pool and, if there is one, the
    /// persisted state of a previous run. Persisted entries that no longer fit the
    /// configuration (a service or node that was removed) are dropped with an event.
    pub fn new(
        topology: &Topology,
        persisted: Option<&Persisted>,
        now: Millis,
    ) -> (Self, Vec<Effect>) {
        let nodes = topology
            .nodes
            .iter()
            .map(|name| Node {
                name: name.clone(),
                health: Health::Unknown,
                maintenance: false,
            })
            .collect();
        let services = topology
            .services
            .iter()
            .map(|(name, members)| Service {
                name: name.clone(),
                members: members.clone(),
                primary: members.first().copied().unwrap_or(0),
                epoch: 1,
                paused: false,
                stranded: false,
            })
            .collect();
        let mut c = Controller {
            nodes,
            services,
            serial: 1,
        };
        let mut effects = Vec::new();
        let mut notes = Vec::new();
        if let Some(p) = persisted {
            c.serial = p.serial.wrapping_add(1).max(1);
            for name in &p.maintenance {
                match c.node_index(name) {
                    Some(n) => c.nodes[n].maintenance = true,
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
                let svc = &mut c.services[s];
                svc.paused = ps.paused;
                let primary = c.nodes.iter().position(|n| n.name == ps.primary);
                match primary.filter(|p| svc.members.contains(p)) {
                    Some(p) => {
                        svc.primary = p;
                        svc.epoch = ps.epoch.max(1);
                    }
                    None => {
                        svc.epoch = ps.epoch.saturating_add(1);
                        notes.push(format!(
                            "service {}: persisted primary {} is no longer a member; starting from the preferred member at epoch {}",
                            ps.name, ps.primary, svc.epoch
                        ));
                    }
                }
            }
        }
        let reason = match persisted {
            Some(_) if notes.is_empty() => "state restored".to_owned(),
            Some(_) => format!("state restored; {}", notes.join("; ")),
            None => "no saved state; every service starts on its preferred member".to_owned(),
        };
        effects.push(Effect::Event(c.event(
            now,
            EventKind::Started,
            None,
            reason,
        )));
        effects.push(Effect::Publish);
        effects.push(Effect::Persist);
        (c, effects)
    }

    // -- read access for the driver, DNS and status --------------------------------

    /// The zone's SOA serial; grows on every role change.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The current primary of service `s` (an index into the topology's nodes).
    pub fn primary(&self, s: usize) -> usize {
        self.services[s].primary
    }

    /// The epoch of service `s`.
    pub fn epoch(&self, s: usize) -> u64 {
        self.services[s].epoch
    }

    /// Whether service `s` is paused.
    pub fn paused(&self, s: usize) -> bool {
        self.services[s].paused
    }

    /// Whether service `s` has a dead primary and nobody to promote.
    pub fn stranded(&self, s: usize) -> bool {
        self.services[s].stranded
    }

    /// Members of service `s` in round-robin order.
    pub fn members(&self, s: usize) -> &[usize] {
        &self.services[s].members
    }

    /// Name of service `s`.
    pub fn service_name(&self, s: usize) -> &str {
        &self.services[s].name
    }

    /// Name of node `n`.
    pub fn node_name(&self, n: usize) -> &str {
        &self.nodes[n].name
    }

    /// Health of node `n` as last reported by the heartbeat.
    pub fn health(&self, n: usize) -> Health {
        self.nodes[n].health
    }

    /// Whether node `n` is in maintenance.
    pub fn maintenance(&self, n: usize) -> bool {
        self.nodes[n].maintenance
    }

    /// The role of node `n` in service `s`.
    pub fn role(&self, s: usize, n: usize) -> Role {
        if self.services[s].primary == n {
            Role::Primary
        } else if self.nodes[n].health == Health::Down {
            Role::Down
        } else {
            Role::Secondary
        }
    }

    /// Whether `n` could be promoted in service `s` now, and if not, why.
    pub fn eligibility(&self, s: usize, n: usize) -> Result<(), Skip> {
        let node = &self.nodes[n];
        if self.services[s].primary == n {
            return Err(Skip::IsPrimary);
        }
        if node.maintenance {
            return Err(Skip::Maintenance);
        }
        match node.health {
            Health::Up => Ok(()),
            Health::Down => Err(Skip::Down),
            Health::Unknown => Err(Skip::HealthUnknown),
        }
    }

    /// The members other than the primary, in the order a failover would try them
    /// (round-robin from the primary's position), each with its verdict.
    pub fn election(&self, s: usize) -> Vec<Candidate> {
        let svc = &self.services[s];
        let len = svc.members.len();
        let pos = svc
            .members
            .iter()
            .position(|&m| m == svc.primary)
            .unwrap_or(0);
        (1..len)
            .map(|k| svc.members[(pos + k) % len])
            .map(|node| Candidate {
                node,
                verdict: self.eligibility(s, node),
            })
            .collect()
    }

    /// The member a failover would promote now, if any.
    pub fn next_candidate(&self, s: usize) -> Option<usize> {
        self.election(s)
            .into_iter()
            .find(|c| c.verdict.is_ok())
            .map(|c| c.node)
    }

    /// What to persist.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            serial: self.serial,
            services: self
                .services
                .iter()
                .map(|s| PersistedService {
                    name: s.name.clone(),
                    primary: self.nodes[s.primary].name.clone(),
                    epoch: s.epoch,
                    paused: s.paused,
                })
                .collect(),
            maintenance: self
                .nodes
                .iter()
                .filter(|n| n.maintenance)
                .map(|n| n.name.clone())
                .collect(),
        }
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.name.eq_ignore_ascii_case(name))
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.services
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(name))
    }

    // -- inputs ---------------------------------------------------------------------

    /// The heartbeat decided that node `n` changed health.
    pub fn health_changed(&mut self, n: usize, health: Health, now: Millis) -> Vec<Effect> {
        let mut fx = Vec::new();
        let old = self.nodes[n].health;
        if old == health {
            return fx;
        }
        self.nodes[n].health = health;
        let kind = match health {
            Health::Up => Some(EventKind::NodeUp),
            Health::Down => Some(EventKind::NodeDown),
            Health::Unknown => None,
        };
        if let Some(kind) = kind {
            let mut e = self.event(now, kind, None, format!("heartbeat: {old} -> {health}"));
            e.node = Some(self.nodes[n].name.clone());
            fx.push(Effect::Event(e));
        }
        // A role shown in DNS-adjacent status changed; the zone itself only changes
        // when a primary moves, which evaluate() handles.
        for s in 0..self.services.len() {
            if self.services[s].members.contains(&n) {
                self.evaluate(s, now, &mut fx);
            }
        }
        fx
    }

    /// Periodic re-evaluation (the driver calls it every heartbeat interval).
    pub fn tick(&mut self, now: Millis) -> Vec<Effect> {
        let mut fx = Vec::new();
        for s in 0..self.services.len() {
            self.evaluate(s, now, &mut fx);
        }
        fx
    }

    /// An operator action. `origin` says who asked (logged with every decision).
    pub fn act(
        &mut self,
        action: &Action,
        origin: &str,
        now: Millis,
    ) -> (Result<String, Refusal>, Vec<Effect>) {
        let mut fx = Vec::new();
        let result = self.apply(action, origin, now, &mut fx);
        if let Err(refusal) = &result {
            let mut e = self.event(
                now,
                EventKind::Refused,
                None,
                format!("{action} from {origin}: {refusal}"),
            );
            e.service = action_service(action).map(str::to_owned);
            fx.push(Effect::Event(e));
        }
        (result, fx)
    }

    fn apply(
        &mut self,
        action: &Action,
        origin: &str,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<String, Refusal> {
        match action {
            Action::Failover { service } => {
                let s = self.resolve_service(service.as_deref())?;
                let Some(target) = self.next_candidate(s) else {
                    return Err(Refusal(format!(
                        "no member of {} can take over: {}",
                        self.services[s].name,
                        self.explain_skips(s)
                    )));
                };
                let reason = format!("operator failover from {origin}");
                Ok(self.promote(s, target, EventKind::Promotion, reason, now, fx))
            }
            Action::Promote { service, node } => {
                let s = self.resolve_service(service.as_deref())?;
                let n = self.resolve_member(s, node)?;
                if let Err(skip) = self.eligibility(s, n) {
                    return Err(Refusal(format!("{} {skip}", self.nodes[n].name)));
                }
                let reason = format!("operator promotion from {origin}");
                Ok(self.promote(s, n, EventKind::Promotion, reason, now, fx))
            }
            Action::Failback { service } => {
                let s = self.resolve_service(service.as_deref())?;
                Err(Refusal(format!(
                    "failback of {} needs mirroring, which is not configured",
                    self.services[s].name
                )))
            }
            Action::Sync { service, .. } => {
                let s = self.resolve_service(service.as_deref())?;
                Err(Refusal(format!(
                    "service {} has nothing to mirror",
                    self.services[s].name
                )))
            }
            Action::Maintenance { node, on } => {
                let n = self
                    .node_index(node)
                    .ok_or_else(|| Refusal(format!("unknown node {node:?}")))?;
                let name = self.nodes[n].name.clone();
                if self.nodes[n].maintenance == *on {
                    return Err(Refusal(format!(
                        "{name} is already {} maintenance",
                        if *on { "in" } else { "out of" }
                    )));
                }
                if *on && let Some(s) = self.services.iter().find(|s| s.primary == n) {
                    return Err(Refusal(format!(
                        "{name} is the primary of {}; fail over or promote another member first",
                        s.name
                    )));
                }
                self.nodes[n].maintenance = *on;
                let mut e = self.event(
                    now,
                    EventKind::Maintenance,
                    None,
                    format!("maintenance {} by {origin}", if *on { "on" } else { "off" }),
                );
                e.node = Some(name.clone());
                fx.push(Effect::Event(e));
                fx.push(Effect::Persist);
                if !*on {
                    // A member leaving maintenance may be what a stranded service waits for.
                    for s in 0..self.services.len() {
                        self.evaluate(s, now, fx);
                    }
                }
                Ok(format!(
                    "{name} is {} maintenance",
                    if *on { "in" } else { "out of" }
                ))
            }
            Action::Pause { service } => self.set_paused(service.as_deref(), true, origin, now, fx),
            Action::Resume { service } => {
                self.set_paused(service.as_deref(), false, origin, now, fx)
            }
        }
    }

    fn set_paused(
        &mut self,
        service: Option<&str>,
        paused: bool,
        origin: &str,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<String, Refusal> {
        let targets: Vec<usize> = match service {
            Some(name) => vec![
                self.service_index(name)
                    .ok_or_else(|| Refusal(format!("unknown service {name:?}")))?,
            ],
            None => (0..self.services.len()).collect(),
        };
        let changing: Vec<usize> = targets
            .into_iter()
            .filter(|&s| self.services[s].paused != paused)
            .collect();
        let word = if paused { "paused" } else { "running" };
        if changing.is_empty() {
            return Err(Refusal(match service {
                Some(name) => format!("{name} is already {word}"),
                None => format!("every service is already {word}"),
            }));
        }
        let kind = if paused {
            EventKind::Paused
        } else {
            EventKind::Resumed
        };
        for &s in &changing {
            self.services[s].paused = paused;
            let e = self.event(now, kind, Some(s), format!("by {origin}"));
            fx.push(Effect::Event(e));
        }
        fx.push(Effect::Persist);
        if !paused {
            for &s in &changing {
                self.evaluate(s, now, fx);
            }
        }
        let names: Vec<&str> = changing
            .iter()
            .map(|&s| self.services[s].name.as_str())
            .collect();
        Ok(format!("{} {word}", names.join(", ")))
    }

    // -- decisions ------------------------------------------------------------------

    /// Looks at one service and fails over if its primary is down.
    fn evaluate(&mut self, s: usize, now: Millis, fx: &mut Vec<Effect>) {
        let svc = &self.services[s];
        let primary_down = self.nodes[svc.primary].health == Health::Down;
        if !primary_down {
            if svc.stranded {
                self.services[s].stranded = false;
                let reason = format!(
                    "{} answers again",
                    self.nodes[self.services[s].primary].name
                );
                fx.push(Effect::Event(self.event(
                    now,
                    EventKind::Recovered,
                    Some(s),
                    reason,
                )));
            }
            return;
        }
        if svc.paused {
            return;
        }
        match self.next_candidate(s) {
            Some(target) => {
                let old = self.nodes[self.services[s].primary].name.clone();
                let reason = format!("{old} is down; next eligible member in round-robin order");
                self.services[s].stranded = false;
                self.promote(s, target, EventKind::Failover, reason, now, fx);
            }
            None if !svc.stranded => {
                self.services[s].stranded = true;
                let reason = format!(
                    "{} is down and no member can take over ({}); DNS keeps answering it",
                    self.nodes[self.services[s].primary].name,
                    self.explain_skips(s)
                );
                let mut e = self.event(now, EventKind::Stranded, Some(s), reason);
                e.old_primary = Some(self.nodes[self.services[s].primary].name.clone());
                fx.push(Effect::Event(e));
            }
            None => {}
        }
    }

    /// Moves service `s` to `target`: new epoch, new serial, publish, persist, event.
    fn promote(
        &mut self,
        s: usize,
        target: usize,
        kind: EventKind,
        reason: String,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> String {
        let old = self.services[s].primary;
        let svc = &mut self.services[s];
        svc.primary = target;
        svc.epoch += 1;
        svc.stranded = false;
        self.serial = self.serial.wrapping_add(1).max(1);
        let old_name = self.nodes[old].name.clone();
        let new_name = self.nodes[target].name.clone();
        let mut e = self.event(now, kind, Some(s), reason);
        e.old_primary = Some(old_name.clone());
        e.new_primary = Some(new_name.clone());
        fx.push(Effect::Event(e));
        fx.push(Effect::Publish);
        fx.push(Effect::Persist);
        format!(
            "{} moved from {old_name} to {new_name} (epoch {})",
            self.services[s].name, self.services[s].epoch
        )
    }

    // -- helpers --------------------------------------------------------------------

    fn resolve_service(&self, name: Option<&str>) -> Result<usize, Refusal> {
        match name {
            Some(name) => self
                .service_index(name)
                .ok_or_else(|| Refusal(format!("unknown service {name:?}"))),
            None if self.services.len() == 1 => Ok(0),
            None => Err(Refusal(format!(
                "there are {} services; name one ({})",
                self.services.len(),
                self.services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn resolve_member(&self, s: usize, node: &str) -> Result<usize, Refusal> {
        let n = self
            .node_index(node)
            .ok_or_else(|| Refusal(format!("unknown node {node:?}")))?;
        if !self.services[s].members.contains(&n) {
            return Err(Refusal(format!(
                "{} is not a member of {}",
                self.nodes[n].name, self.services[s].name
            )));
        }
        Ok(n)
    }

    /// "app2 is down, app3 is in maintenance".
    fn explain_skips(&self, s: usize) -> String {
        let parts: Vec<String> = self
            .election(s)
            .into_iter()
            .filter_map(|c| {
                c.verdict
                    .err()
                    .map(|skip| format!("{} {skip}", self.nodes[c.node].name))
            })
            .collect();
        if parts.is_empty() {
            "it has no other member".to_owned()
        } else {
            parts.join(", ")
        }
    }

    fn event(&self, now: Millis, kind: EventKind, s: Option<usize>, reason: String) -> Event {
        Event {
            seq: 0,
            at_ms: now,
            kind,
            service: s.map(|s| self.services[s].name.clone()),
            node: None,
            old_primary: None,
            new_primary: None,
            epoch: s.map(|s| self.services[s].epoch),
            reason,
        }
    }
}

fn action_service(action: &Action) -> Option<&str> {
    match action {
        Action::Failover { service }
        | Action::Failback { service }
        | Action::Promote { service, .. }
        | Action::Sync { service, .. }
        | Action::Pause { service }
        | Action::Resume { service } => service.as_deref(),
        Action::Maintenance { .. } => None,
    }
}

#[cfg(test)]
mod tests;
