//! Operator actions: each is checked against the same rules as automatic decisions and
//! is either applied whole or refused with a [`Refusal`] that says why, in words and
//! as a kind scripts can match on.

use dnsd_api::{Action, EventKind, RefusalKind};
use heartbeat::Health;

use super::election::Skip;
use super::ids::{NodeId, ServiceId};
use super::orders::Effect;
use super::orders::Fx;
use super::spec::Millis;
use super::state::Controller;
use super::state::{Initiator, ServiceState};

/// Why an operator action was refused. The message is what the operator reads; the
/// [`Refusal::kind`] is what a script matches on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error(
        "the health of the primary {0} is not known yet (too few heartbeats since dnsd started): wait, then move it"
    )]
    PrimaryHealthUnknown(String),
    #[error("there are {count} services; name one ({names})")]
    ServiceRequired { count: usize, names: String },
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    #[error("{node} is not a member of {service}")]
    NotAMember { node: String, service: String },
    #[error("{service} is busy: {transition}")]
    Busy { service: String, transition: String },
    #[error("no member of {service} can take over: {skips}")]
    NoCandidate { service: String, skips: String },
    #[error("{node} {skip}")]
    NotEligible { node: String, skip: Skip },
    #[error("{node}, the preferred member, is already the primary")]
    AlreadyPrimary { node: String },
    #[error("{node} cannot take the primary back: it {skip}")]
    CannotFailBack { node: String, skip: Skip },
    #[error("service {0} has no paths to mirror")]
    NotMirrored(String),
    #[error("the primary {0} is not up: there is nothing to copy from")]
    PrimaryNotUp(String),
    #[error("{0} is the primary: passes go from it, not to it")]
    SyncToPrimary(String),
    #[error("{0} is not up")]
    NodeNotUp(String),
    #[error("no secondary of {0} is up")]
    NoSecondaryUp(String),
    #[error("{node} is already {} maintenance", if *on { "in" } else { "out of" })]
    MaintenanceUnchanged { node: String, on: bool },
    #[error("{node} is the primary of {service}; fail over or promote another member first")]
    MaintenanceOfPrimary { node: String, service: String },
    #[error("{node} is being promoted in {service}; wait for it to finish")]
    BeingPromoted { node: String, service: String },
    /// `service` is `None` when the action named every service.
    #[error("{} is already {}", service.as_deref().unwrap_or("every service"), if *paused { "paused" } else { "running" })]
    PauseUnchanged {
        service: Option<String>,
        paused: bool,
    },
    /// `service` is `None` when the action named no service (every service was looked at).
    #[error("{node} is not quarantined{}", service.as_ref().map(|s| format!(" in {s}")).unwrap_or_default())]
    NotQuarantined {
        node: String,
        service: Option<String>,
    },
}

impl Refusal {
    /// The stable kind of this refusal, as the control API reports it.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::UnknownService(_) => RefusalKind::UnknownService,
            Refusal::PrimaryHealthUnknown(_) => RefusalKind::PrimaryHealthUnknown,
            Refusal::ServiceRequired { .. } => RefusalKind::ServiceRequired,
            Refusal::UnknownNode(_) => RefusalKind::UnknownNode,
            Refusal::NotAMember { .. } => RefusalKind::NotAMember,
            Refusal::Busy { .. } | Refusal::BeingPromoted { .. } => RefusalKind::Busy,
            Refusal::NoCandidate { .. } => RefusalKind::NoCandidate,
            Refusal::NotEligible { .. } | Refusal::CannotFailBack { .. } => {
                RefusalKind::NotEligible
            }
            Refusal::AlreadyPrimary { .. } => RefusalKind::AlreadyPrimary,
            Refusal::NotMirrored(_) => RefusalKind::NotMirrored,
            Refusal::PrimaryNotUp(_) => RefusalKind::PrimaryNotUp,
            Refusal::SyncToPrimary(_) | Refusal::MaintenanceOfPrimary { .. } => {
                RefusalKind::IsPrimary
            }
            Refusal::NodeNotUp(_) => RefusalKind::NodeNotUp,
            Refusal::NoSecondaryUp(_) => RefusalKind::NoSecondaryUp,
            Refusal::MaintenanceUnchanged { .. } | Refusal::PauseUnchanged { .. } => {
                RefusalKind::Unchanged
            }
            Refusal::NotQuarantined { .. } => RefusalKind::NotQuarantined,
        }
    }
}

impl Controller {
    /// An operator action. `origin` says who asked (logged with every decision).
    pub fn act(
        &mut self,
        action: &Action,
        origin: &str,
        now: Millis,
    ) -> (Result<String, Refusal>, Fx) {
        self.now = now;
        let mut fx = Vec::new();
        let result = self.apply(action, origin, &mut fx);
        match &result {
            Ok(_) => self.settle(&mut fx),
            Err(refusal) => {
                let mut e = self.event(
                    EventKind::Refused,
                    None,
                    format!("{action} from {origin}: {refusal}"),
                );
                e.service = action_service(action).map(str::to_owned);
                fx.push(Effect::Event(e));
            }
        }
        (result, fx)
    }

    fn apply(&mut self, action: &Action, origin: &str, fx: &mut Fx) -> Result<String, Refusal> {
        match action {
            Action::Failover { service } => {
                let s = self.resolve_service(service.as_deref())?;
                self.refuse_if_busy(s)?;
                self.refuse_if_primary_unknown(s)?;
                let Some(target) = self.next_candidate(s) else {
                    return Err(Refusal::NoCandidate {
                        service: self.services[s.0].name.clone(),
                        skips: self.explain_skips(s),
                    });
                };
                Ok(self.operator_move(
                    s,
                    target,
                    EventKind::Promotion,
                    format!("operator failover from {origin}"),
                    fx,
                ))
            }
            Action::Promote { service, node } => {
                let s = self.resolve_service(service.as_deref())?;
                let n = self.resolve_member(s, node)?;
                self.refuse_if_busy(s)?;
                if n != self.services[s.0].primary {
                    self.refuse_if_primary_unknown(s)?;
                }
                if let Err(skip) = self.eligibility(s, n) {
                    return Err(Refusal::NotEligible {
                        node: self.node_name(n).to_owned(),
                        skip,
                    });
                }
                Ok(self.operator_move(
                    s,
                    n,
                    EventKind::Promotion,
                    format!("operator promotion from {origin}"),
                    fx,
                ))
            }
            Action::Failback { service } => {
                let s = self.resolve_service(service.as_deref())?;
                let preferred = self.services[s.0].members[0];
                let node = self.node_name(preferred).to_owned();
                if self.services[s.0].primary == preferred {
                    return Err(Refusal::AlreadyPrimary { node });
                }
                self.refuse_if_busy(s)?;
                self.refuse_if_primary_unknown(s)?;
                if let Err(skip) = self.eligibility(s, preferred) {
                    return Err(Refusal::CannotFailBack { node, skip });
                }
                Ok(self.operator_move(
                    s,
                    preferred,
                    EventKind::Failback,
                    format!("operator failback from {origin}"),
                    fx,
                ))
            }
            Action::Sync { service, node } => {
                let s = self.resolve_service(service.as_deref())?;
                self.request_sync(s, node.as_deref(), origin)
            }
            Action::Maintenance { node, on } => self.set_maintenance(node, *on, origin, fx),
            Action::Pause { service } => self.set_paused(service.as_deref(), true, origin, fx),
            Action::Resume { service } => self.set_paused(service.as_deref(), false, origin, fx),
            Action::Unquarantine { service, node } => {
                self.unquarantine(service.as_deref(), node, origin, fx)
            }
        }
    }

    /// A move needs to know whether the primary is alive: alive means a lossless
    /// switchover, dead a failover with fencing. Right after start it is not known yet.
    fn refuse_if_primary_unknown(&self, s: ServiceId) -> Result<(), Refusal> {
        let primary = self.services[s.0].primary;
        if self.nodes[primary.0].health == Health::Unknown {
            return Err(Refusal::PrimaryHealthUnknown(
                self.node_name(primary).to_owned(),
            ));
        }
        Ok(())
    }

    fn refuse_if_busy(&self, s: ServiceId) -> Result<(), Refusal> {
        match self.transition(s) {
            Some(transition) => Err(Refusal::Busy {
                service: self.services[s.0].name.clone(),
                transition,
            }),
            None => Ok(()),
        }
    }

    /// An operator moves the primary: a planned switchover when the primary is alive,
    /// a failover (fence, promote) when it is not.
    fn operator_move(
        &mut self,
        s: ServiceId,
        target: NodeId,
        kind: EventKind,
        reason: String,
        fx: &mut Fx,
    ) -> String {
        let (name, old) = {
            let svc = &self.services[s.0];
            (svc.name.clone(), self.node_name(svc.primary).to_owned())
        };
        let to = self.node_name(target).to_owned();
        let why = format!("restart of {old} stopped: the operator moves {name} to {to}");
        self.end_recovery(s, EventKind::Hook, why, fx);
        let primary_up = self.nodes[self.services[s.0].primary.0].health == Health::Up;
        if primary_up && matches!(self.services[s.0].state, ServiceState::Stranded) {
            // Stranded with its host up: its service check fails (or has no verdict). The
            // host can still stop writes and hand over its data: a planned switchover.
            self.become_serving(s);
        }
        if primary_up {
            self.start_switchover(s, target, kind, Initiator::Operator, reason, fx);
        } else {
            self.start_failover(s, target, kind, Initiator::Operator, reason, fx);
        }
        match self.transition(s) {
            Some(t) => format!("{name}: {t} started (from {old})"),
            None => format!(
                "{name} moved from {old} to {to} (epoch {})",
                self.services[s.0].epoch
            ),
        }
    }

    fn request_sync(
        &mut self,
        s: ServiceId,
        node: Option<&str>,
        origin: &str,
    ) -> Result<String, Refusal> {
        let svc = &self.services[s.0];
        if !svc.policy.mirrored {
            return Err(Refusal::NotMirrored(svc.name.clone()));
        }
        if self.nodes[svc.primary.0].health != Health::Up {
            return Err(Refusal::PrimaryNotUp(
                self.node_name(svc.primary).to_owned(),
            ));
        }
        self.refuse_if_busy(s)?;
        let targets: Vec<NodeId> = match node {
            Some(name) => {
                let n = self.resolve_member(s, name)?;
                if n == svc.primary {
                    return Err(Refusal::SyncToPrimary(self.node_name(n).to_owned()));
                }
                if self.nodes[n.0].health != Health::Up {
                    return Err(Refusal::NodeNotUp(self.node_name(n).to_owned()));
                }
                vec![n]
            }
            None => svc
                .members
                .iter()
                .copied()
                .filter(|&n| n != svc.primary && self.nodes[n.0].health == Health::Up)
                .collect(),
        };
        if targets.is_empty() {
            return Err(Refusal::NoSecondaryUp(svc.name.clone()));
        }
        let now = self.now;
        let svc = &mut self.services[s.0];
        let mut names = Vec::new();
        for n in targets {
            if let Some(i) = svc.slot(n) {
                let ms = svc.sync_mut(i);
                ms.next_due = now;
                ms.failures = 0;
                let after = if ms.pass.is_some() {
                    " (after the running pass)"
                } else {
                    ""
                };
                names.push(format!("{}{after}", self.nodes[n.0].name));
            }
        }
        Ok(format!(
            "sync of {} to {} requested by {origin}",
            svc.name,
            names.join(", ")
        ))
    }

    fn set_maintenance(
        &mut self,
        node: &str,
        on: bool,
        origin: &str,
        fx: &mut Fx,
    ) -> Result<String, Refusal> {
        let n = self.resolve_node(node)?;
        let name = self.node_name(n).to_owned();
        if self.nodes[n.0].maintenance == on {
            return Err(Refusal::MaintenanceUnchanged { node: name, on });
        }
        if on {
            if let Some(s) = self.services.iter().find(|s| s.primary == n) {
                return Err(Refusal::MaintenanceOfPrimary {
                    node: name,
                    service: s.name.clone(),
                });
            }
            if let Some(s) = self.services.iter().find(|s| s.state.target() == Some(n)) {
                return Err(Refusal::BeingPromoted {
                    node: name,
                    service: s.name.clone(),
                });
            }
        }
        self.nodes[n.0].maintenance = on;
        let word = if on { "on" } else { "off" };
        let mut e = self.event(
            EventKind::Maintenance,
            None,
            format!("maintenance {word} by {origin}"),
        );
        e.node = Some(name.clone());
        fx.push(Effect::Event(e));
        fx.push(Effect::Persist);
        Ok(format!(
            "{name} is {} maintenance",
            if on { "in" } else { "out of" }
        ))
    }

    fn set_paused(
        &mut self,
        service: Option<&str>,
        paused: bool,
        origin: &str,
        fx: &mut Fx,
    ) -> Result<String, Refusal> {
        let targets: Vec<ServiceId> = match service {
            Some(name) => vec![
                self.service_index(name)
                    .ok_or_else(|| Refusal::UnknownService(name.to_owned()))?,
            ],
            None => (0..self.services.len()).map(ServiceId).collect(),
        };
        let changing: Vec<ServiceId> = targets
            .into_iter()
            .filter(|&s| self.services[s.0].paused != paused)
            .collect();
        if changing.is_empty() {
            return Err(Refusal::PauseUnchanged {
                service: service.map(str::to_owned),
                paused,
            });
        }
        let kind = if paused {
            EventKind::Paused
        } else {
            EventKind::Resumed
        };
        for &s in &changing {
            self.services[s.0].paused = paused;
            self.services[s.0].preferred_ready_since = None;
            fx.push(Effect::Event(self.event(
                kind,
                Some(s),
                format!("by {origin}"),
            )));
            // Pausing stops automatic decisions, including one under way.
            if paused {
                let primary = self.node_name(self.services[s.0].primary).to_owned();
                let why = format!("restart of {primary} stopped: service paused by {origin}");
                self.end_recovery(s, EventKind::Hook, why, fx);
            }
            if paused && self.services[s.0].state.initiator() == Some(Initiator::Automatic) {
                let why = format!("service paused by {origin}");
                if matches!(self.services[s.0].state, ServiceState::SwitchingOver(_)) {
                    self.roll_back(s, why, fx);
                } else {
                    self.abandon(s, why, fx);
                }
            }
        }
        fx.push(Effect::Persist);
        let names: Vec<&str> = changing
            .iter()
            .map(|&s| self.services[s.0].name.as_str())
            .collect();
        let word = if paused { "paused" } else { "running" };
        Ok(format!("{} {word}", names.join(", ")))
    }

    /// Lifts the quarantine of `node` in `service`, or in every service where it is
    /// quarantined.
    fn unquarantine(
        &mut self,
        service: Option<&str>,
        node: &str,
        origin: &str,
        fx: &mut Fx,
    ) -> Result<String, Refusal> {
        let n = self.resolve_node(node)?;
        let candidates: Vec<ServiceId> = match service {
            Some(name) => {
                let s = self
                    .service_index(name)
                    .ok_or_else(|| Refusal::UnknownService(name.to_owned()))?;
                self.resolve_member(s, node)?;
                vec![s]
            }
            None => self
                .service_ids()
                .filter(|&s| self.services[s.0].members.contains(&n))
                .collect(),
        };
        let quarantined: Vec<ServiceId> = candidates
            .into_iter()
            .filter(|&s| self.quarantined_until(s, n).is_some())
            .collect();
        let name = self.node_name(n).to_owned();
        if quarantined.is_empty() {
            return Err(Refusal::NotQuarantined {
                node: name,
                service: service
                    .and_then(|sv| self.service_index(sv))
                    .map(|s| self.services[s.0].name.clone()),
            });
        }
        let mut names = Vec::new();
        for s in quarantined {
            self.lift_quarantine(s, n);
            let reason = format!("quarantine lifted by {origin}");
            let mut e = self.event(EventKind::Maintenance, Some(s), reason);
            e.node = Some(name.clone());
            fx.push(Effect::Event(e));
            names.push(self.services[s.0].name.clone());
        }
        fx.push(Effect::Persist);
        Ok(format!(
            "{name} is no longer quarantined in {}",
            names.join(", ")
        ))
    }

    fn resolve_service(&self, name: Option<&str>) -> Result<ServiceId, Refusal> {
        match name {
            Some(name) => self
                .service_index(name)
                .ok_or_else(|| Refusal::UnknownService(name.to_owned())),
            None if self.services.len() == 1 => Ok(ServiceId(0)),
            None => Err(Refusal::ServiceRequired {
                count: self.services.len(),
                names: self
                    .services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn resolve_node(&self, node: &str) -> Result<NodeId, Refusal> {
        self.node_index(node)
            .ok_or_else(|| Refusal::UnknownNode(node.to_owned()))
    }

    fn resolve_member(&self, s: ServiceId, node: &str) -> Result<NodeId, Refusal> {
        let n = self.resolve_node(node)?;
        if !self.services[s.0].members.contains(&n) {
            return Err(Refusal::NotAMember {
                node: self.node_name(n).to_owned(),
                service: self.services[s.0].name.clone(),
            });
        }
        Ok(n)
    }
}

fn action_service(action: &Action) -> Option<&str> {
    match action {
        Action::Failover { service }
        | Action::Failback { service }
        | Action::Promote { service, .. }
        | Action::Sync { service, .. }
        | Action::Pause { service }
        | Action::Resume { service }
        | Action::Unquarantine { service, .. } => service.as_deref(),
        Action::Maintenance { .. } => None,
    }
}
