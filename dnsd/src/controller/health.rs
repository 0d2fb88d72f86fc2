//! Health beyond the heartbeat: a service's own check on each member, restart-then-migrate
//! when the primary's host answers but its service does not, and the quarantine of
//! members whose health keeps changing (flap damping).
//!
//! A member *serves* a service when its host is up and, for a service with a check, its
//! check passes. The check's verdicts arrive like the heartbeat's, as an input
//! ([`Controller::check_changed`]); everything here is decided from them and the time.

use dnsd_api::EventKind;
use heartbeat::Health;

use super::ids::{HookId, NodeId, ServiceId};
use super::orders::{Effect, Fx, Hook, HookError, describe};
use super::spec::{Millis, seconds};
use super::state::{Controller, Recovery, RecoveryStep, ServiceState};

/// A recovery under way, for status views: what is being tried on which member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryView {
    /// The primary being restarted.
    pub node: NodeId,
    /// Restarts ordered so far, the one running included.
    pub attempt: u32,
    /// Restarts allowed.
    pub attempts: u32,
    /// When its check failed.
    pub since: Millis,
    /// When the service fails over if the check has not passed by then.
    pub deadline: Millis,
    /// A restart is running now.
    pub restarting: bool,
    /// When the next restart is due, if one is left and none is running.
    pub next_attempt: Option<Millis>,
}

impl Controller {
    // -- the input ----------------------------------------------------------------------

    /// The check of service `s` decided that member `n` changed health (passing: up).
    /// Like the heartbeat's verdicts, it comes with hysteresis already applied.
    pub fn check_changed(&mut self, s: ServiceId, n: NodeId, health: Health, now: Millis) -> Fx {
        self.now = now;
        let mut fx = Vec::new();
        let host = self.nodes[n.0].health;
        let Some(h) = self.services[s.0].health_mut(n) else {
            return fx;
        };
        let old = std::mem::replace(&mut h.check, health);
        if old == health {
            return fx;
        }
        let kind = match health {
            Health::Up => Some(EventKind::NodeUp),
            Health::Down => Some(EventKind::NodeDown),
            Health::Unknown => None,
        };
        if let Some(kind) = kind {
            let reason = format!(
                "{} check: {old} -> {health} (its host is {host})",
                self.services[s.0].name
            );
            let mut e = self.event(kind, Some(s), reason);
            e.node = Some(self.node_name(n).to_owned());
            fx.push(Effect::Event(e));
        }
        self.note_health(s, n, &mut fx);
        self.settle(&mut fx);
        fx
    }

    // -- read access --------------------------------------------------------------------

    /// The check's verdict on member `n` of service `s`; `None` for a service without a
    /// check (or a node that is not a member).
    pub fn check(&self, s: ServiceId, n: NodeId) -> Option<Health> {
        let svc = &self.services[s.0];
        svc.policy
            .checked
            .then(|| svc.health_of(n).map(|h| h.check))
            .flatten()
    }

    /// Whether member `n` serves service `s`: up when its host is up and its check (if
    /// any) passes, down when either is down, unknown otherwise.
    pub fn serves(&self, s: ServiceId, n: NodeId) -> Health {
        let host = self.nodes[n.0].health;
        let check = self.check(s, n).unwrap_or(Health::Up);
        match (host, check) {
            (Health::Down, _) | (_, Health::Down) => Health::Down,
            (Health::Up, Health::Up) => Health::Up,
            _ => Health::Unknown,
        }
    }

    /// Until when member `n` of service `s` is quarantined for flapping, if it is.
    pub fn quarantined_until(&self, s: ServiceId, n: NodeId) -> Option<Millis> {
        self.services[s.0]
            .health_of(n)
            .and_then(|h| h.quarantined_until)
            .filter(|&until| until > self.now)
    }

    /// How often member `n`'s health in service `s` changed within the flap window (as
    /// of the last input), since its last quarantine.
    pub fn health_changes(&self, s: ServiceId, n: NodeId) -> usize {
        let svc = &self.services[s.0];
        let (Some(flap), Some(h)) = (svc.policy.flap, svc.health_of(n)) else {
            return 0;
        };
        h.changes
            .iter()
            .filter(|&&t| self.now.saturating_sub(t) < flap.window)
            .count()
    }

    /// The recovery under way in service `s`, if its primary is being restarted.
    pub fn recovery(&self, s: ServiceId) -> Option<RecoveryView> {
        let svc = &self.services[s.0];
        let r = svc.state.recovery()?;
        let policy = svc.policy.restart?;
        let (restarting, next_attempt) = match r.step {
            RecoveryStep::Restarting(_) => (true, None),
            RecoveryStep::Waiting { next } => (false, next),
        };
        Some(RecoveryView {
            node: r.node,
            attempt: r.attempt,
            attempts: policy.attempts,
            since: r.since,
            deadline: r.since.saturating_add(policy.window),
            restarting,
            next_attempt,
        })
    }

    // -- flap damping -------------------------------------------------------------------

    /// Member `n`'s host or check health changed: count a change of whether it serves
    /// service `s`, and quarantine it when it changed too often.
    pub(super) fn note_health(&mut self, s: ServiceId, n: NodeId, fx: &mut Fx) {
        let serving = match self.serves(s, n) {
            Health::Up => true,
            Health::Down => false,
            // Not known yet (just started): nothing changed that a flap would count.
            Health::Unknown => return,
        };
        let now = self.now;
        let flap = self.services[s.0].policy.flap;
        let Some(h) = self.services[s.0].health_mut(n) else {
            return;
        };
        let changed = h.serving.is_some_and(|was| was != serving);
        h.serving = Some(serving);
        let Some(flap) = flap.filter(|_| changed) else {
            return;
        };
        h.changes.retain(|&t| now.saturating_sub(t) < flap.window);
        h.changes.push(now);
        let count = h.changes.len();
        if count <= flap.threshold as usize {
            return;
        }
        // The count starts afresh: flapping on through the hold-down extends it.
        h.changes.clear();
        let extended = h.quarantined_until.is_some_and(|until| until > now);
        h.quarantined_until = Some(now.saturating_add(flap.hold_down));
        let (name, service) = (self.node_name(n).to_owned(), &self.services[s.0].name);
        let reason = if extended {
            format!(
                "quarantine of {name} in {service} extended to {} from now: it keeps flapping ({count} changes of health within {})",
                seconds(flap.hold_down),
                seconds(flap.window)
            )
        } else {
            format!(
                "{name} quarantined in {service} for {}: its health changed {count} times within {} (flap_threshold {}); it is neither promoted nor failed back to until then",
                seconds(flap.hold_down),
                seconds(flap.window),
                flap.threshold
            )
        };
        let mut e = self.event(EventKind::Maintenance, Some(s), reason);
        e.node = Some(name);
        fx.push(Effect::Event(e));
        fx.push(Effect::Persist);
    }

    /// Ends the quarantines of service `s` whose hold-down is over.
    pub(super) fn release_quarantines(&mut self, s: ServiceId, fx: &mut Fx) {
        let now = self.now;
        let released: Vec<NodeId> = {
            let svc = &mut self.services[s.0];
            let members = svc.members.clone();
            members
                .into_iter()
                .zip(&mut svc.health)
                .filter(|(_, h)| h.quarantined_until.is_some_and(|until| until <= now))
                .map(|(n, h)| {
                    h.quarantined_until = None;
                    n
                })
                .collect()
        };
        for n in released {
            let reason = format!(
                "{} released from quarantine in {}: its hold-down is over",
                self.node_name(n),
                self.services[s.0].name
            );
            let mut e = self.event(EventKind::Maintenance, Some(s), reason);
            e.node = Some(self.node_name(n).to_owned());
            fx.push(Effect::Event(e));
            fx.push(Effect::Persist);
        }
    }

    /// An operator lifts the quarantine of `n` in service `s`; false if there was none.
    pub(super) fn lift_quarantine(&mut self, s: ServiceId, n: NodeId) -> bool {
        let now = self.now;
        let Some(h) = self.services[s.0].health_mut(n) else {
            return false;
        };
        let was = h.quarantined_until.is_some_and(|until| until > now);
        h.quarantined_until = None;
        if was {
            h.changes.clear();
        }
        was
    }

    // -- restart, then migrate ----------------------------------------------------------

    /// The primary's host answers but its check fails (the service is not paused and no
    /// change of primary is under way): restart it in place, wait, restart again, and
    /// fail over once the restart window is over; with no restart configured, fail over
    /// at once.
    pub(super) fn recover(&mut self, s: ServiceId, fx: &mut Fx) {
        let svc = &self.services[s.0];
        let primary = svc.primary;
        let name = self.node_name(primary).to_owned();
        let now = self.now;
        match (&svc.state, svc.policy.restart) {
            (ServiceState::Serving, Some(policy)) => {
                let running = svc.health_of(primary).and_then(|h| h.restart);
                let hook = match running {
                    Some(hook) => hook,
                    None => self.order_restart(s, primary, fx),
                };
                let started = self.begin_recovery(
                    s,
                    Recovery {
                        node: primary,
                        since: now,
                        attempt: 1,
                        step: RecoveryStep::Restarting(hook),
                    },
                );
                if started {
                    let note = if running.is_some() {
                        " (a restart ordered earlier is still running: waiting for it first)"
                    } else {
                        ""
                    };
                    let reason = format!(
                        "{name}'s service check fails while its host answers: restarting it (attempt 1 of {}){note}; failing over if the check has not passed {} from now",
                        policy.attempts,
                        seconds(policy.window)
                    );
                    self.push_recovery_event(s, primary, reason, fx);
                }
            }
            (ServiceState::Serving | ServiceState::Stranded, None) => {
                let cause = format!(
                    "{name}'s service check fails while its host answers, and no restart hook is configured"
                );
                self.fail_over_failing(s, &cause, fx);
            }
            (ServiceState::Stranded, Some(_)) => {
                let cause = format!("{name}'s service check still fails");
                self.fail_over_failing(s, &cause, fx);
            }
            (ServiceState::Recovering(r), Some(policy)) => {
                let RecoveryStep::Waiting { next } = r.step else {
                    // A restart is running: its report decides what comes next.
                    return;
                };
                let attempt = r.attempt;
                if now >= r.since.saturating_add(policy.window) {
                    if now < svc.retry_failover_at {
                        return;
                    }
                    let cause = format!(
                        "{name}'s service check has not passed within {} of failing, {attempt} restart(s) tried",
                        seconds(policy.window)
                    );
                    self.become_serving(s);
                    self.fail_over_failing(s, &cause, fx);
                    return;
                }
                let idle = svc.health_of(primary).is_some_and(|h| h.restart.is_none());
                if next.is_some_and(|at| now >= at) && idle {
                    let hook = self.order_restart(s, primary, fx);
                    if self.recovery_step(s, attempt + 1, RecoveryStep::Restarting(hook)) {
                        let reason = format!(
                            "{name}'s service check still fails: restarting it again (attempt {} of {})",
                            attempt + 1,
                            policy.attempts
                        );
                        self.push_recovery_event(s, primary, reason, fx);
                    }
                }
            }
            (ServiceState::Recovering(_), None) => {
                // Not reachable: a recovery starts only with a restart policy.
                self.become_serving(s);
            }
            (ServiceState::FailingOver(_) | ServiceState::SwitchingOver(_), _) => {}
        }
    }

    /// Fails over from a primary whose service is down, unless a retry is not due yet.
    fn fail_over_failing(&mut self, s: ServiceId, cause: &str, fx: &mut Fx) {
        if self.now >= self.services[s.0].retry_failover_at {
            self.fail_over(s, cause, fx);
        }
    }

    /// The restart the recovery of service `s` waited for ended.
    pub(super) fn restart_done(
        &mut self,
        s: ServiceId,
        outcome: Result<(), HookError>,
        fx: &mut Fx,
    ) {
        let svc = &self.services[s.0];
        let (Some(r), Some(policy)) = (svc.state.recovery(), svc.policy.restart) else {
            return;
        };
        let (node, attempt, since) = (r.node, r.attempt, r.since);
        let name = self.node_name(node).to_owned();
        let next = policy.next_after(attempt, self.now);
        let result = match &outcome {
            Ok(()) => "done".to_owned(),
            Err(e) => format!("failed: {}", describe(e)),
        };
        let then = match next {
            Some(at) => format!(
                "waiting for its check; next restart in {} if it still fails",
                seconds(at.saturating_sub(self.now))
            ),
            None => format!(
                "no restart left; failing over in {} if its check has not passed by then",
                seconds(since.saturating_add(policy.window).saturating_sub(self.now))
            ),
        };
        let reason = format!(
            "restart {attempt} of {} on {name} {result}; {then}",
            policy.attempts
        );
        self.recovery_step(s, attempt, RecoveryStep::Waiting { next });
        self.push_recovery_event(s, node, reason, fx);
    }

    /// A restart ended after the recovery that ordered it was over (its check passed, its
    /// host went down...): nothing waits for it, but the operator learns how it went.
    pub(super) fn restart_ended_late(
        &mut self,
        s: ServiceId,
        n: NodeId,
        outcome: Result<(), HookError>,
        fx: &mut Fx,
    ) {
        let result = match &outcome {
            Ok(()) => "done".to_owned(),
            Err(e) => format!("failed: {}", describe(e)),
        };
        let reason = format!(
            "restart on {} {result} (nothing waited for it any more)",
            self.node_name(n)
        );
        self.push_recovery_event(s, n, reason, fx);
    }

    /// Ends the recovery under way in service `s` (the check passes, the host went down,
    /// the service was paused, an operator moves it), saying why.
    pub(super) fn end_recovery(&mut self, s: ServiceId, kind: EventKind, why: String, fx: &mut Fx) {
        let Some(node) = self.services[s.0].state.recovery().map(|r| r.node) else {
            return;
        };
        if self.become_serving(s) {
            self.push_event_about(s, node, kind, why, fx);
        }
    }

    fn order_restart(&mut self, s: ServiceId, n: NodeId, fx: &mut Fx) -> HookId {
        let id = self.order_hook(s, n, Hook::Restart, fx);
        if let Some(h) = self.services[s.0].health_mut(n) {
            h.restart = Some(id);
        }
        id
    }

    fn push_recovery_event(&self, s: ServiceId, n: NodeId, reason: String, fx: &mut Fx) {
        self.push_event_about(s, n, EventKind::Hook, reason, fx);
    }

    fn push_event_about(
        &self,
        s: ServiceId,
        n: NodeId,
        kind: EventKind,
        reason: String,
        fx: &mut Fx,
    ) {
        let mut e = self.event(kind, Some(s), reason);
        e.node = Some(self.node_name(n).to_owned());
        fx.push(Effect::Event(e));
    }

    /// Checks what the recovery and member health states make expressible (part of
    /// [`Controller::check_states`]).
    #[cfg(test)]
    pub(super) fn check_health_states(&self, s: ServiceId) -> Result<(), String> {
        let svc = &self.services[s.0];
        let primary = svc.primary;
        if matches!(svc.state, ServiceState::Stranded) && self.serves(s, primary) == Health::Up {
            return Err(format!("{} is stranded while its primary serves", svc.name));
        }
        if svc.health.len() != svc.members.len() {
            return Err(format!(
                "{} has health for {} members",
                svc.name,
                svc.health.len()
            ));
        }
        let Some(r) = svc.state.recovery() else {
            return Ok(());
        };
        if r.node != primary {
            return Err(format!(
                "{} restarts {:?}, not its primary",
                svc.name, r.node
            ));
        }
        if self.nodes[primary.0].health != Health::Up {
            return Err(format!(
                "{} restarts its primary while the host is {}",
                svc.name, self.nodes[primary.0].health
            ));
        }
        if self.check(s, primary) != Some(Health::Down) {
            return Err(format!(
                "{} recovers a primary whose check does not fail",
                svc.name
            ));
        }
        if svc.paused {
            return Err(format!("{} recovers while paused", svc.name));
        }
        let Some(policy) = svc.policy.restart else {
            return Err(format!("{} recovers without a restart policy", svc.name));
        };
        if r.attempt == 0 || r.attempt > policy.attempts {
            return Err(format!(
                "{} is at restart {} of {}",
                svc.name, r.attempt, policy.attempts
            ));
        }
        if let RecoveryStep::Restarting(id) = r.step
            && svc.health_of(primary).and_then(|h| h.restart) != Some(id)
        {
            return Err(format!(
                "{} waits for a restart not recorded as running",
                svc.name
            ));
        }
        Ok(())
    }
}
