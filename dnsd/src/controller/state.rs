//! What the controller knows about each node and service, and the service's state
//! machine: a service is serving, stranded, recovering (restarting its primary in
//! place), failing over or switching over, and moves between these only through the
//! named methods at the bottom, which log old -> new with the epoch and refuse a move
//! that the state does not allow.

use std::fmt;

use dnsd_api::EventKind;
use heartbeat::Health;
use tracing::{debug, error, info};

use super::ids::{HookId, NodeId, PassId, ServiceId, Slot};
use super::orders::{PassKind, PassSummary, Watermark};
use super::spec::{Millis, Policy};

/// The decision core. See the module documentation for its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub(super) nodes: Vec<Node>,
    pub(super) services: Vec<Service>,
    pub(super) serial: u32,
    /// Time of the input being handled (or the last one).
    pub(super) now: Millis,
    pub(super) next_id: u64,
    /// Moves of a service's state that its state did not allow (a bug if ever > 0;
    /// the property tests check it stays 0).
    pub(super) illegal_moves: u32,
    /// Changes of primary since the state file last took the controller's state: what
    /// each replaced, so that a failed write withdraws them ([`Controller::persist_failed`]).
    pub(super) undo: Vec<Undo>,
}

/// A committed change of primary, not yet durable: the service as it was before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Undo {
    pub(super) service: ServiceId,
    pub(super) before: Service,
    pub(super) serial: u32,
    pub(super) target: NodeId,
    /// A planned switchover (the old primary was alive), not a failover.
    pub(super) planned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) health: Health,
    pub(super) maintenance: bool,
    /// Failovers skip it until then, after its promote hook failed.
    pub(super) promote_failed_until: Millis,
}

/// A pass under way to one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pass {
    pub(super) id: PassId,
    /// Its number in the service ([`super::SyncOrder::number`]).
    pub(super) number: u64,
    pub(super) kind: PassKind,
    pub(super) started: Millis,
    pub(super) epoch: u64,
    pub(super) from: NodeId,
    /// Ordered to keep what it deletes or overwrites.
    pub(super) keep: bool,
}

/// One member's mirroring state in one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct MemberSync {
    pub(super) watermark: Option<Watermark>,
    pub(super) resyncing: bool,
    /// When it last came back from down: only a resync pass started since counts.
    pub(super) returned_at: Millis,
    pub(super) pass: Option<Pass>,
    pub(super) next_due: Millis,
    pub(super) failures: u32,
    pub(super) last_error: Option<String>,
    /// The next pass sorts out what it overwrites (keeps what holds writes the primary
    /// lacks).
    pub(super) keep: bool,
    /// The number of the last pass ordered to it.
    pub(super) last_number: u64,
    pub(super) last: Option<PassSummary>,
}

/// How one member is doing in one service, beyond its host's heartbeat: the service's
/// check, its recent changes of health (flap damping), its quarantine, and a restart
/// running on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberHealth {
    /// The service check's verdict (unknown until it has one; unused without a check).
    pub(super) check: Health,
    /// Whether it served the service (host up and check passing) at its last definite
    /// change; `None` before the first.
    pub(super) serving: Option<bool>,
    /// When its health changed, oldest first, within the flap window.
    pub(super) changes: Vec<Millis>,
    /// Quarantined for flapping until then: never promoted, never failed back to.
    pub(super) quarantined_until: Option<Millis>,
    /// The `restart` hook running on it for this service, whether or not the service still
    /// waits for it: a second restart is never ordered while one runs.
    pub(super) restart: Option<HookId>,
}

impl Default for MemberHealth {
    fn default() -> Self {
        MemberHealth {
            check: Health::Unknown,
            serving: None,
            changes: Vec::new(),
            quarantined_until: None,
            restart: None,
        }
    }
}

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ServiceState {
    /// No change of primary under way and nothing stranded: the primary serves, or has
    /// just failed and the next evaluation decides.
    Serving,
    /// The primary is down and no member could be promoted: DNS keeps answering the old
    /// primary (no worse than answering nothing), until a member is eligible or the
    /// primary returns.
    Stranded,
    /// The primary's host answers but its service check fails: it is restarted in place,
    /// and the service fails over only if the check has not passed within the restart
    /// window. The primary does not move in this state.
    Recovering(Recovery),
    /// The primary is down (or presumed so): fence it if configured, then promote.
    FailingOver(Move<FailoverStep>),
    /// The primary is alive: stop its writes, copy the last of them, promote the target;
    /// or, after a step failed, re-promote the old primary.
    SwitchingOver(Move<SwitchoverStep>),
}

impl ServiceState {
    /// The target of a change of primary under way.
    pub(super) fn target(&self) -> Option<NodeId> {
        match self {
            ServiceState::FailingOver(m) => Some(m.target),
            ServiceState::SwitchingOver(m) => Some(m.target),
            ServiceState::Serving | ServiceState::Stranded | ServiceState::Recovering(_) => None,
        }
    }

    /// Whether a change of primary is under way.
    pub(super) fn moving(&self) -> bool {
        self.target().is_some()
    }

    /// Who started the change of primary under way.
    pub(super) fn initiator(&self) -> Option<Initiator> {
        match self {
            ServiceState::FailingOver(m) => Some(m.by),
            ServiceState::SwitchingOver(m) => Some(m.by),
            ServiceState::Serving | ServiceState::Stranded | ServiceState::Recovering(_) => None,
        }
    }

    /// The hook the state is waiting for, if any, and what it is for.
    pub(super) fn awaited_hook(&self) -> Option<(HookId, Awaited)> {
        match self {
            ServiceState::FailingOver(m) => Some(match m.step {
                FailoverStep::Fencing(id) => (id, Awaited::Fence),
                FailoverStep::Promoting(id) => (id, Awaited::FailoverPromote),
            }),
            ServiceState::SwitchingOver(m) => match &m.step {
                SwitchoverStep::Demoting(id) => Some((*id, Awaited::Demote)),
                SwitchoverStep::Promoting(id) => Some((*id, Awaited::SwitchoverPromote)),
                SwitchoverStep::RollingBack { hook, why } => {
                    Some((*hook, Awaited::RollBack(why.clone())))
                }
                SwitchoverStep::AwaitingPass | SwitchoverStep::FinalSync(_) => None,
            },
            ServiceState::Recovering(r) => match r.step {
                RecoveryStep::Restarting(id) => Some((id, Awaited::Restart)),
                RecoveryStep::Waiting { .. } => None,
            },
            ServiceState::Serving | ServiceState::Stranded => None,
        }
    }

    /// The recovery under way, if the service is recovering its primary in place.
    pub(super) fn recovery(&self) -> Option<&Recovery> {
        match self {
            ServiceState::Recovering(r) => Some(r),
            _ => None,
        }
    }
}

/// Restarting a primary whose host answers but whose service check fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recovery {
    /// The primary being restarted; always the service's primary.
    pub(super) node: NodeId,
    /// When the recovery started (its check had just failed): the restart window counts
    /// from here.
    pub(super) since: Millis,
    /// Restarts ordered so far, the one running included (1 to `attempts`).
    pub(super) attempt: u32,
    pub(super) step: RecoveryStep,
}

/// Where a recovery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecoveryStep {
    /// Restart number `attempt` is running.
    Restarting(HookId),
    /// The last restart ended; the check has not passed yet. The next restart is due at
    /// `next`, if any attempt is left.
    Waiting { next: Option<Millis> },
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            RecoveryStep::Restarting(_) => write!(f, "restart #{} running", self.attempt),
            RecoveryStep::Waiting { next: Some(_) } => {
                write!(f, "waiting after restart #{}", self.attempt)
            }
            RecoveryStep::Waiting { next: None } => {
                write!(f, "waiting after the last restart (#{})", self.attempt)
            }
        }
    }
}

/// What a hook a service waits for is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Awaited {
    /// A failover's fence of the old primary.
    Fence,
    /// A failover's promote of the target.
    FailoverPromote,
    /// A switchover's demote of the old primary.
    Demote,
    /// A switchover's promote of the target.
    SwitchoverPromote,
    /// The re-promote of the old primary after step `why` failed.
    RollBack(String),
    /// A restart of the primary, to recover its failing service in place.
    Restart,
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceState::Serving => f.write_str("serving"),
            ServiceState::Stranded => f.write_str("stranded"),
            ServiceState::Recovering(r) => write!(f, "recovering ({r})"),
            ServiceState::FailingOver(m) => write!(f, "failing over ({})", m.step),
            ServiceState::SwitchingOver(m) => write!(f, "switching over ({})", m.step),
        }
    }
}

/// A change of primary under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Move<S> {
    pub(super) target: NodeId,
    /// The kind of event its commit logs (failover, promotion, failback).
    pub(super) kind: EventKind,
    pub(super) by: Initiator,
    pub(super) reason: String,
    pub(super) step: S,
}

/// Who started a change of primary: pausing a service stops only automatic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Initiator {
    Automatic,
    Operator,
}

/// The steps of a failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FailoverStep {
    /// Running `fence` against the old primary.
    Fencing(HookId),
    /// Running `promote` on the target.
    Promoting(HookId),
}

impl fmt::Display for FailoverStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailoverStep::Fencing(_) => "fencing the old primary",
            FailoverStep::Promoting(_) => "promoting",
        })
    }
}

/// The steps of a planned switchover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SwitchoverStep {
    /// Running `demote` on the old primary (stop writes).
    Demoting(HookId),
    /// A periodic pass to the target is running; the final one starts after it.
    AwaitingPass,
    /// The final pass to the target, after the old primary stopped writing.
    FinalSync(PassId),
    /// Running `promote` on the target.
    Promoting(HookId),
    /// Re-promoting the old primary after step `why` failed.
    RollingBack { hook: HookId, why: String },
}

impl fmt::Display for SwitchoverStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchoverStep::Demoting(_) => "demoting the old primary",
            SwitchoverStep::AwaitingPass => "waiting for a running pass",
            SwitchoverStep::FinalSync(_) => "final sync",
            SwitchoverStep::Promoting(_) => "promoting",
            SwitchoverStep::RollingBack { .. } => "rolling back",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Service {
    pub(super) name: String,
    pub(super) members: Vec<NodeId>,
    pub(super) policy: Policy,
    pub(super) primary: NodeId,
    pub(super) epoch: u64,
    pub(super) paused: bool,
    pub(super) state: ServiceState,
    /// Indexed by [`Slot`], like `members`.
    pub(super) sync: Vec<MemberSync>,
    /// Indexed by [`Slot`], like `members`.
    pub(super) health: Vec<MemberHealth>,
    /// The number of the last passes ordered, and when: passes ordered by one input
    /// share a number (they copy the same data), later ones get the next.
    pub(super) passes: u64,
    pub(super) passes_at: Option<Millis>,
    /// Since when the preferred member has been eligible (automatic failback).
    pub(super) preferred_ready_since: Option<Millis>,
    /// No automatic failover before this time (after a required fence failed).
    pub(super) retry_failover_at: Millis,
    /// When the primary last changed.
    pub(super) committed_at: Option<Millis>,
}

impl Service {
    /// The slot of member `n`, if it is one.
    pub(super) fn slot(&self, n: NodeId) -> Option<Slot> {
        self.members.iter().position(|&m| m == n).map(Slot)
    }

    pub(super) fn member(&self, slot: Slot) -> NodeId {
        self.members[slot.0]
    }

    pub(super) fn sync(&self, slot: Slot) -> &MemberSync {
        &self.sync[slot.0]
    }

    pub(super) fn sync_mut(&mut self, slot: Slot) -> &mut MemberSync {
        &mut self.sync[slot.0]
    }

    /// Every slot, in round-robin order.
    pub(super) fn slots(&self) -> impl Iterator<Item = Slot> + use<> {
        (0..self.members.len()).map(Slot)
    }

    /// The mirroring state of member `n`.
    pub(super) fn sync_of(&self, n: NodeId) -> Option<&MemberSync> {
        self.slot(n).map(|i| self.sync(i))
    }

    /// The check, flap and quarantine state of member `n`.
    pub(super) fn health_of(&self, n: NodeId) -> Option<&MemberHealth> {
        self.slot(n).map(|i| &self.health[i.0])
    }

    pub(super) fn health_mut(&mut self, n: NodeId) -> Option<&mut MemberHealth> {
        self.slot(n).map(|i| &mut self.health[i.0])
    }
}

// -- the state machine's moves -------------------------------------------------------
//
// Every change of `Service::state` goes through one of these methods. Each says which
// states it may be called from; a call from another state is a bug in the controller,
// which is logged and ignored (the property tests check it never happens).

impl Controller {
    fn set_state(&mut self, s: ServiceId, new: ServiceState, allowed: bool, what: &str) -> bool {
        let svc = &mut self.services[s.0];
        if !allowed {
            self.illegal_moves += 1;
            error!(service = %svc.name, epoch = svc.epoch, from = %svc.state, to = %new, "controller bug: {what} is not allowed from this state; ignored");
            return false;
        }
        let kind_changed = std::mem::discriminant(&svc.state) != std::mem::discriminant(&new);
        if kind_changed {
            info!(service = %svc.name, epoch = svc.epoch, from = %svc.state, to = %new, "{what}");
        } else {
            debug!(service = %svc.name, epoch = svc.epoch, from = %svc.state, to = %new, "{what}");
        }
        svc.state = new;
        true
    }

    /// No member can take over: from serving (the primary just failed).
    pub(super) fn become_stranded(&mut self, s: ServiceId) -> bool {
        let ok = matches!(self.services[s.0].state, ServiceState::Serving);
        self.set_state(s, ServiceState::Stranded, ok, "stranded")
    }

    /// The change under way ended (committed, abandoned or rolled back), or a stranded
    /// service's primary answers again: back to serving.
    pub(super) fn become_serving(&mut self, s: ServiceId) -> bool {
        let ok = !matches!(self.services[s.0].state, ServiceState::Serving);
        self.set_state(s, ServiceState::Serving, ok, "serving")
    }

    /// The primary's check failed while its host answers: restart it in place, from
    /// serving.
    pub(super) fn begin_recovery(&mut self, s: ServiceId, r: Recovery) -> bool {
        let ok = matches!(self.services[s.0].state, ServiceState::Serving);
        self.set_state(s, ServiceState::Recovering(r), ok, "recovery started")
    }

    /// The next step of the recovery under way.
    pub(super) fn recovery_step(&mut self, s: ServiceId, attempt: u32, step: RecoveryStep) -> bool {
        let next = match &self.services[s.0].state {
            ServiceState::Recovering(r) => Some(Recovery {
                attempt,
                step,
                ..r.clone()
            }),
            _ => None,
        };
        match next {
            Some(r) => self.set_state(s, ServiceState::Recovering(r), true, "recovery step"),
            None => {
                let state = self.services[s.0].state.clone();
                self.set_state(s, state, false, "a recovery step")
            }
        }
    }

    /// A failover starts, from serving or stranded.
    pub(super) fn begin_failover(&mut self, s: ServiceId, m: Move<FailoverStep>) -> bool {
        let ok = matches!(
            self.services[s.0].state,
            ServiceState::Serving | ServiceState::Stranded
        );
        self.set_state(s, ServiceState::FailingOver(m), ok, "failover started")
    }

    /// The next step of the failover under way.
    pub(super) fn failover_step(&mut self, s: ServiceId, step: FailoverStep) -> bool {
        let next = match &self.services[s.0].state {
            ServiceState::FailingOver(m) => Some(Move { step, ..m.clone() }),
            _ => None,
        };
        match next {
            Some(m) => self.set_state(s, ServiceState::FailingOver(m), true, "failover step"),
            None => {
                let state = self.services[s.0].state.clone();
                self.set_state(s, state, false, "a failover step")
            }
        }
    }

    /// A planned switchover starts, from serving (the primary is alive).
    pub(super) fn begin_switchover(&mut self, s: ServiceId, m: Move<SwitchoverStep>) -> bool {
        let ok = matches!(self.services[s.0].state, ServiceState::Serving);
        self.set_state(s, ServiceState::SwitchingOver(m), ok, "switchover started")
    }

    /// The next step of the switchover under way.
    pub(super) fn switchover_step(&mut self, s: ServiceId, step: SwitchoverStep) -> bool {
        let next = match &self.services[s.0].state {
            ServiceState::SwitchingOver(m) => Some(Move { step, ..m.clone() }),
            _ => None,
        };
        match next {
            Some(m) => self.set_state(s, ServiceState::SwitchingOver(m), true, "switchover step"),
            None => {
                let state = self.services[s.0].state.clone();
                self.set_state(s, state, false, "a switchover step")
            }
        }
    }
}
