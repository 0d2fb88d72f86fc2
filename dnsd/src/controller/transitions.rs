//! Changes of primary: a failover (fence, promote, switch DNS) when the primary is dead,
//! a planned switchover (demote, final sync, promote, switch DNS) when it is alive, the
//! rollback of a switchover whose step failed, and the automatic failback that starts
//! one. The commit is the only place a primary changes.

use dnsd_api::EventKind;
use heartbeat::Health;

use super::ids::{NodeId, ServiceId};
use super::orders::{Effect, Fx, Hook, HookError, PassKind, Watermark, describe};
use super::spec::{FENCE_RETRY, PROMOTE_BACKOFF, seconds};
use super::spec::{Failback, Fencing};
use super::state::{
    Awaited, Controller, FailoverStep, Initiator, Move, ServiceState, SwitchoverStep, Undo,
};

/// A change of primary, before or between its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) target: NodeId,
    pub(super) kind: EventKind,
    pub(super) by: Initiator,
    pub(super) reason: String,
}

impl Plan {
    fn with<S>(self, step: S) -> Move<S> {
        Move {
            target: self.target,
            kind: self.kind,
            by: self.by,
            reason: self.reason,
            step,
        }
    }
}

impl<S> Move<S> {
    fn plan(&self) -> Plan {
        Plan {
            target: self.target,
            kind: self.kind,
            by: self.by,
            reason: self.reason.clone(),
        }
    }
}

impl Controller {
    /// Starts a failover to `target`: fence the old primary if configured, then
    /// promote. The old primary is dead (or presumed so): nothing is asked of it but
    /// the fence.
    pub(super) fn start_failover(
        &mut self,
        s: ServiceId,
        target: NodeId,
        kind: EventKind,
        by: Initiator,
        reason: String,
        fx: &mut Fx,
    ) {
        let plan = Plan {
            target,
            kind,
            by,
            reason,
        };
        if self.services[s.0].policy.fencing != Fencing::Off {
            let old = self.services[s.0].primary;
            let hook = self.order_hook(s, old, Hook::Fence, fx);
            self.begin_failover(s, plan.with(FailoverStep::Fencing(hook)));
        } else {
            self.failover_promote(s, plan, fx);
        }
    }

    /// Failover: the old primary is fenced (or there is no fence): promote the target.
    fn failover_promote(&mut self, s: ServiceId, plan: Plan, fx: &mut Fx) {
        if !self.services[s.0].policy.promote_hook {
            self.commit(s, plan, false, fx);
            return;
        }
        let hook = self.order_hook(s, plan.target, Hook::Promote, fx);
        let step = FailoverStep::Promoting(hook);
        if matches!(self.services[s.0].state, ServiceState::FailingOver(_)) {
            self.failover_step(s, step);
        } else {
            self.begin_failover(s, plan.with(step));
        }
    }

    /// Starts a planned switchover to `target`: demote, final sync, promote, switch.
    pub(super) fn start_switchover(
        &mut self,
        s: ServiceId,
        target: NodeId,
        kind: EventKind,
        by: Initiator,
        reason: String,
        fx: &mut Fx,
    ) {
        let old = self.services[s.0].primary;
        let mut e = self.event(EventKind::SwitchoverStarted, Some(s), reason.clone());
        e.old_primary = Some(self.node_name(old).to_owned());
        e.new_primary = Some(self.node_name(target).to_owned());
        fx.push(Effect::Event(e));
        let plan = Plan {
            target,
            kind,
            by,
            reason,
        };
        if self.services[s.0].policy.demote_hook {
            let hook = self.order_hook(s, old, Hook::Demote, fx);
            self.begin_switchover(s, plan.with(SwitchoverStep::Demoting(hook)));
        } else {
            self.final_sync_step(s, plan, fx);
        }
        fx.push(Effect::Persist);
    }

    /// Enters switchover step `step`: the first step starts the switchover.
    fn switchover_enter(&mut self, s: ServiceId, plan: Plan, step: SwitchoverStep) {
        if matches!(self.services[s.0].state, ServiceState::SwitchingOver(_)) {
            self.switchover_step(s, step);
        } else {
            self.begin_switchover(s, plan.with(step));
        }
    }

    /// Switchover: the old primary stopped writing; copy the last of its data.
    fn final_sync_step(&mut self, s: ServiceId, plan: Plan, fx: &mut Fx) {
        if !self.services[s.0].policy.mirrored {
            self.switchover_promote(s, plan, fx);
            return;
        }
        let Some(i) = self.services[s.0].slot(plan.target) else {
            return;
        };
        if self.services[s.0].sync(i).pass.is_some() {
            self.switchover_enter(s, plan, SwitchoverStep::AwaitingPass);
            return;
        }
        let id = self.order_pass(s, i, PassKind::Final, fx);
        self.switchover_enter(s, plan, SwitchoverStep::FinalSync(id));
    }

    /// Switchover: the target holds every write: promote it, or commit if there is no
    /// promote hook.
    fn switchover_promote(&mut self, s: ServiceId, plan: Plan, fx: &mut Fx) {
        if !self.services[s.0].policy.promote_hook {
            self.commit(s, plan, true, fx);
            return;
        }
        let hook = self.order_hook(s, plan.target, Hook::Promote, fx);
        self.switchover_enter(s, plan, SwitchoverStep::Promoting(hook));
    }

    /// The final pass of the switchover under way completed.
    pub(super) fn final_sync_done(&mut self, s: ServiceId, fx: &mut Fx) {
        if let ServiceState::SwitchingOver(m) = &self.services[s.0].state {
            let plan = m.plan();
            self.switchover_promote(s, plan, fx);
        }
    }

    /// Watches a change under way for what would make it pointless or unsafe.
    pub(super) fn advance(&mut self, s: ServiceId, fx: &mut Fx) {
        let (plan, planned) = match &self.services[s.0].state {
            ServiceState::Serving | ServiceState::Stranded | ServiceState::Recovering(_) => return,
            ServiceState::SwitchingOver(m) => match m.step {
                SwitchoverStep::RollingBack { .. } => return,
                _ => (m.plan(), true),
            },
            ServiceState::FailingOver(m) => (m.plan(), false),
        };
        if self.serves(s, plan.target) == Health::Down {
            let what = if self.nodes[plan.target.0].health == Health::Down {
                "went down"
            } else {
                "fails its service check"
            };
            let why = format!("{} {what}", self.node_name(plan.target));
            if planned {
                self.roll_back(s, why, fx);
            } else {
                self.abandon(s, why, fx);
            }
            return;
        }
        let old = self.services[s.0].primary;
        if planned && self.nodes[old.0].health == Health::Down {
            // Nothing to roll back to: the failover logic takes it from here.
            let why = format!("{}, the old primary, went down", self.node_name(old));
            self.abandon(s, why, fx);
            return;
        }
        if let ServiceState::SwitchingOver(m) = &self.services[s.0].state
            && m.step == SwitchoverStep::AwaitingPass
        {
            self.final_sync_step(s, plan, fx);
        }
    }

    /// Ends a change that will not complete, with an event; the next evaluation decides
    /// afresh.
    pub(super) fn abandon(&mut self, s: ServiceId, why: String, fx: &mut Fx) {
        let (what, target) = match &self.services[s.0].state {
            ServiceState::FailingOver(m) => ("failover", m.target),
            ServiceState::SwitchingOver(m) => ("switchover", m.target),
            ServiceState::Serving | ServiceState::Stranded | ServiceState::Recovering(_) => return,
        };
        self.become_serving(s);
        let reason = format!("{what} to {} abandoned: {why}", self.node_name(target));
        fx.push(Effect::Event(self.event(
            EventKind::SwitchoverFailed,
            Some(s),
            reason,
        )));
        fx.push(Effect::Persist);
    }

    /// A switchover step failed: re-promote the old primary (if a promote hook exists)
    /// and say which step failed.
    pub(super) fn roll_back(&mut self, s: ServiceId, why: String, fx: &mut Fx) {
        let target = match &self.services[s.0].state {
            ServiceState::SwitchingOver(m) => match m.step {
                SwitchoverStep::RollingBack { .. } => return,
                _ => m.target,
            },
            _ => return,
        };
        if self.services[s.0].policy.promote_hook {
            let old = self.services[s.0].primary;
            let hook = self.order_hook(s, old, Hook::Promote, fx);
            self.switchover_step(s, SwitchoverStep::RollingBack { hook, why });
        } else {
            let old = self.node_name(self.services[s.0].primary).to_owned();
            let demoted = matches!(
                &self.services[s.0].state,
                ServiceState::SwitchingOver(m) if !matches!(m.step, SwitchoverStep::Demoting(_))
            ) && self.services[s.0].policy.demote_hook;
            let reason = if demoted {
                format!(
                    "{why}; {old} was demoted and there is no promote hook to re-enable it: it stays primary in DNS but may not accept writes: fix by hand"
                )
            } else {
                format!("{why}; {old} stays primary")
            };
            self.finish_rollback(s, target, reason, fx);
        }
    }

    /// dnsd restarted during a switchover to `target`: the old primary may have been
    /// demoted, so it is re-promoted (when there is a promote hook) before anything else.
    pub(super) fn roll_back_interrupted(&mut self, s: ServiceId, target: NodeId, fx: &mut Fx) {
        let why = format!(
            "dnsd restarted during a switchover to {}",
            self.node_name(target)
        );
        if self.services[s.0].policy.promote_hook {
            let old = self.services[s.0].primary;
            let hook = self.order_hook(s, old, Hook::Promote, fx);
            let plan = Plan {
                target,
                kind: EventKind::SwitchoverFailed,
                // Not automatic: pausing the service must not stop the rollback.
                by: Initiator::Operator,
                reason: why.clone(),
            };
            self.begin_switchover(s, plan.with(SwitchoverStep::RollingBack { hook, why }));
        } else {
            let old = self.node_name(self.services[s.0].primary).to_owned();
            let reason = if self.services[s.0].policy.demote_hook {
                format!(
                    "{why}; {old} may have been demoted and there is no promote hook to re-enable it: it stays primary in DNS but may not accept writes: fix by hand"
                )
            } else {
                format!("{why}; {old} stays primary")
            };
            self.finish_rollback(s, target, reason, fx);
        }
    }

    /// The rollback of a switchover to `target` ended, well or not: `reason` says which.
    fn finish_rollback(&mut self, s: ServiceId, target: NodeId, reason: String, fx: &mut Fx) {
        if self.services[s.0].state.moving() {
            self.become_serving(s);
        }
        let mut e = self.event(EventKind::SwitchoverFailed, Some(s), reason);
        e.old_primary = Some(self.node_name(self.services[s.0].primary).to_owned());
        e.new_primary = Some(self.node_name(target).to_owned());
        fx.push(Effect::Event(e));
        fx.push(Effect::Persist);
    }

    /// The hook service `s` was waiting for ended; `awaited` says what it was for.
    pub(super) fn hook_done(
        &mut self,
        s: ServiceId,
        awaited: Awaited,
        outcome: Result<(), HookError>,
        fx: &mut Fx,
    ) {
        let (plan, target) = match &self.services[s.0].state {
            ServiceState::FailingOver(m) => (m.plan(), m.target),
            ServiceState::SwitchingOver(m) => (m.plan(), m.target),
            ServiceState::Serving | ServiceState::Stranded | ServiceState::Recovering(_) => return,
        };
        let old = self.node_name(self.services[s.0].primary).to_owned();
        let to = self.node_name(target).to_owned();
        match (awaited, outcome.map_err(|e| describe(&e))) {
            (Awaited::Fence, Ok(())) => {
                fx.push(Effect::Event(self.event(
                    EventKind::Hook,
                    Some(s),
                    format!("fence of {old} done"),
                )));
                self.failover_promote(s, plan, fx);
            }
            (Awaited::Fence, Err(e)) => match self.services[s.0].policy.fencing {
                Fencing::Required => {
                    // Nobody can be promoted safely: the service is stranded on its dead
                    // primary (status, metrics and console say so) until the fence works.
                    self.become_serving(s);
                    self.become_stranded(s);
                    self.services[s.0].retry_failover_at = self.now + FENCE_RETRY;
                    let reason = format!(
                        "fence of {old} failed: {e}; not promoting {to} (fencing = \"required\"); retrying in {}",
                        seconds(FENCE_RETRY)
                    );
                    let mut ev = self.event(EventKind::SwitchoverFailed, Some(s), reason);
                    ev.old_primary = Some(old);
                    ev.new_primary = Some(to);
                    fx.push(Effect::Event(ev));
                }
                Fencing::BestEffort | Fencing::Off => {
                    let reason = format!(
                        "fence of {old} failed: {e}; promoting {to} anyway (fencing = \"best-effort\")"
                    );
                    fx.push(Effect::Event(self.event(EventKind::Hook, Some(s), reason)));
                    self.failover_promote(s, plan, fx);
                }
            },
            (Awaited::FailoverPromote, Ok(())) => self.commit(s, plan, false, fx),
            (Awaited::FailoverPromote, Err(e)) => {
                self.nodes[target.0].promote_failed_until = self.now + PROMOTE_BACKOFF;
                let why = format!(
                    "promote hook failed on {to}: {e}; {to} is skipped for {}",
                    seconds(PROMOTE_BACKOFF)
                );
                self.abandon(s, why, fx);
            }
            (Awaited::Demote, Ok(())) => self.final_sync_step(s, plan, fx),
            (Awaited::Demote, Err(e)) => {
                self.roll_back(s, format!("demote hook failed on {old}: {e}"), fx)
            }
            (Awaited::SwitchoverPromote, Ok(())) => self.commit(s, plan, true, fx),
            (Awaited::SwitchoverPromote, Err(e)) => {
                self.roll_back(s, format!("promote hook failed on {to}: {e}"), fx)
            }
            (Awaited::RollBack(why), Ok(())) => {
                let reason = format!("{why}; rolled back: {old} re-promoted and stays primary");
                self.finish_rollback(s, target, reason, fx);
            }
            (Awaited::RollBack(why), Err(e)) => {
                let reason = format!(
                    "{why}; the rollback failed too: re-promoting {old}: {e}; {old} may not accept writes: fix by hand"
                );
                self.finish_rollback(s, target, reason, fx);
            }
            // A restart is not a step of a change of primary (see `restart_done`).
            (Awaited::Restart, _) => {}
        }
    }

    /// The change succeeded: new primary, new epoch, new serial, DNS switches. `planned`
    /// says the old primary stopped writing and the target got all of it.
    fn commit(&mut self, s: ServiceId, plan: Plan, planned: bool, fx: &mut Fx) {
        // Until the driver has written the new primary to the state file, the change can
        // be withdrawn (`persist_failed`): keep what it replaces.
        self.undo.push(Undo {
            service: s,
            before: self.services[s.0].clone(),
            serial: self.serial,
            target: plan.target,
            planned,
        });
        if !matches!(self.services[s.0].state, ServiceState::Serving) {
            self.become_serving(s);
        }
        let now = self.now;
        let old_name = self.node_name(self.services[s.0].primary).to_owned();
        let svc = &mut self.services[s.0];
        let old = svc.primary;
        svc.primary = plan.target;
        svc.epoch += 1;
        svc.committed_at = Some(now);
        svc.preferred_ready_since = None;
        let epoch = svc.epoch;
        let target_copy = svc.sync_of(plan.target).and_then(|ms| ms.watermark.clone());
        for ms in &mut svc.sync {
            // The first pass from the new primary sorts out what it overwrites: what
            // holds writes the new primary lacks is kept, stale files are replaced.
            ms.keep = true;
            ms.next_due = now;
        }
        if let Some(i) = svc.slot(old) {
            let mirrored = svc.policy.mirrored;
            let passes = svc.passes;
            let ms = svc.sync_mut(i);
            if planned {
                // The old primary stopped writing and the target got all of it: both
                // hold the copy the final pass made.
                ms.watermark = target_copy.map(|w| Watermark {
                    at: now,
                    epoch,
                    ..w
                });
                ms.resyncing = false;
            } else if mirrored {
                // The old primary may hold writes the new one never got: it must be
                // resynced (keeping them aside) before it can be promoted again. Its
                // copy is its own now, whatever it last received.
                ms.resyncing = true;
                ms.watermark = Some(Watermark {
                    at: ms.watermark.as_ref().map_or(now, |w| w.at),
                    epoch: epoch - 1,
                    pass: passes,
                    source: Some(old_name),
                    source_clock: None,
                });
            }
        }
        self.serial = self.serial.wrapping_add(1).max(1);
        let mut e = self.event(plan.kind, Some(s), plan.reason);
        e.old_primary = Some(self.node_name(old).to_owned());
        e.new_primary = Some(self.node_name(plan.target).to_owned());
        fx.push(Effect::Event(e));
        fx.push(Effect::Publish);
        fx.push(Effect::Persist);
    }

    /// Automatic failback: the preferred member, eligible for `after`, takes over.
    pub(super) fn check_failback(&mut self, s: ServiceId, fx: &mut Fx) {
        let svc = &self.services[s.0];
        let Failback::Auto { after } = svc.policy.failback else {
            return;
        };
        let preferred = svc.members[0];
        // A failback never follows a change of primary at the same moment, even with
        // `failback_after` = 0: the primary would move twice in one input.
        let ready = svc.committed_at != Some(self.now)
            && !svc.state.moving()
            && svc.primary != preferred
            && self.nodes[svc.primary.0].health == Health::Up
            && self.eligibility(s, preferred).is_ok();
        if !ready {
            self.services[s.0].preferred_ready_since = None;
            return;
        }
        let since = *self.services[s.0]
            .preferred_ready_since
            .get_or_insert(self.now);
        if self.now.saturating_sub(since) >= after {
            // Should this one fail, the next waits for `after` of readiness again: a
            // failback retried on every input hammers a primary that cannot answer.
            self.services[s.0].preferred_ready_since = None;
            let reason = format!(
                "automatic failback: {} has been up and in sync for {}",
                self.node_name(preferred),
                seconds(after)
            );
            self.start_switchover(
                s,
                preferred,
                EventKind::Failback,
                Initiator::Automatic,
                reason,
                fx,
            );
        }
    }
}
