//! Taking a new configuration of the pool while running (a reload): nodes and services
//! may come and go, members may be added, removed or reordered, policies may change.
//! Nothing moves: every service keeps its primary and epoch, every member it keeps keeps
//! what is known of it (health, mirroring state and passes under way, check verdicts,
//! quarantines), and a reload that would need a change of primary is refused.

use heartbeat::Health;

use super::ids::NodeId;
use super::orders::{Effect, Fx};
use super::spec::{Millis, Topology};
use super::state::{Controller, MemberHealth, MemberSync, Service};

/// A new configuration of the pool, and what in it makes earlier observations void.
#[derive(Debug, Clone, Copy)]
pub struct Reconfiguration<'a> {
    pub topology: &'a Topology,
    /// Nodes whose address changed: what the heartbeat said of the old address says
    /// nothing of the new one, so their health starts unknown again.
    pub readdressed: &'a [String],
    /// Services whose check changed: their check verdicts start unknown again.
    pub rechecked: &'a [String],
}

/// Why a new configuration cannot be taken now. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigureRefusal {
    /// A change of primary or a restart is under way; members and policies may not
    /// change under it.
    #[error("service {service} is {state}; reload once that has ended")]
    Busy { service: String, state: String },
    /// The new configuration removes a service's primary from its members.
    #[error(
        "service {service}: its primary {primary} is not among its members in the new configuration; promote one of them first (console promote)"
    )]
    PrimaryRemoved { service: String, primary: String },
    /// A pass under way copies from a node the new configuration removes.
    #[error(
        "service {service}: a pass from {source_node} to {member} is under way, and {source_node} is not in the new configuration; reload once it has ended"
    )]
    SourceRemoved {
        service: String,
        source_node: String,
        member: String,
    },
}

impl Controller {
    /// The controller for the new configuration `r`, and its effects (publish the zone,
    /// persist the state). `self` is left as it was: on a refusal, nothing changed.
    ///
    /// Kept, by name: every node's health (unless readdressed), maintenance and promote
    /// back-off; every service's primary, epoch, pause, state (serving or stranded), pass
    /// numbers and timers; every kept member's mirroring state (a pass under way reports
    /// as usual) and check, flap and quarantine state. A member new to a mirrored service
    /// keeps aside whatever its first pass overwrites: nothing it held is lost. A new
    /// service starts on its preferred member. The zone serial grows.
    pub fn reconfigure(
        &self,
        r: &Reconfiguration<'_>,
        now: Millis,
    ) -> Result<(Controller, Fx), ReconfigureRefusal> {
        self.may_reconfigure(r.topology)?;
        let (mut next, _) = Controller::new(r.topology, Some(&self.persisted()), now);
        next.serial = self.serial.wrapping_add(1).max(1);
        next.next_id = self.next_id;
        next.illegal_moves = self.illegal_moves;
        for node in &mut next.nodes {
            let Some(old) = self.node_index(&node.name).map(|n| &self.nodes[n.0]) else {
                continue;
            };
            node.promote_failed_until = old.promote_failed_until;
            if !r
                .readdressed
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&node.name))
            {
                node.health = old.health;
            }
        }
        for s in next.service_ids() {
            let Some(old) = self.service_index(&next.services[s.0].name) else {
                continue;
            };
            let old = &self.services[old.0];
            let rechecked = r
                .rechecked
                .iter()
                .any(|name| name.eq_ignore_ascii_case(&old.name));
            let new = &next.services[s.0];
            let carried: Vec<(MemberSync, MemberHealth)> = new
                .members
                .iter()
                .map(|&n| self.carry_member(&next, old, n, new.policy.mirrored, rechecked))
                .collect();
            let svc = &mut next.services[s.0];
            (svc.sync, svc.health) = carried.into_iter().unzip();
            svc.state = old.state.clone();
            svc.passes_at = old.passes_at;
            svc.retry_failover_at = old.retry_failover_at;
            svc.committed_at = old.committed_at;
            // Counted for the preferred member it was counted for, if it still is.
            if svc.members.first().map(|&n| &next.nodes[n.0].name)
                == old.members.first().map(|&n| &self.nodes[n.0].name)
            {
                svc.preferred_ready_since = old.preferred_ready_since;
            }
        }
        Ok((next, vec![Effect::Publish, Effect::Persist]))
    }

    /// What member `n` of `next` (the new controller) carries over from `old` (the
    /// service as it was): all that was known of it (its check verdict only if the check
    /// is unchanged), or, if it is new to the service (`mirrored` now), a first pass that
    /// keeps what it overwrites.
    fn carry_member(
        &self,
        next: &Controller,
        old: &Service,
        n: NodeId,
        mirrored: bool,
        rechecked: bool,
    ) -> (MemberSync, MemberHealth) {
        let before = self
            .node_index(&next.nodes[n.0].name)
            .and_then(|o| old.slot(o));
        let Some(i) = before else {
            let sync = MemberSync {
                keep: mirrored,
                ..MemberSync::default()
            };
            return (sync, MemberHealth::default());
        };
        let mut sync = old.sync(i).clone();
        if let Some(pass) = &mut sync.pass {
            // `may_reconfigure` refused a configuration without the pass's source.
            if let Some(from) = next.node_index(&self.nodes[pass.from.0].name) {
                pass.from = from;
            }
        }
        let mut health = old.health[i.0].clone();
        if rechecked {
            health.check = Health::Unknown;
            health.serving = None;
        }
        (sync, health)
    }

    /// Refuses a new configuration under a change of primary or a restart, one that
    /// removes a primary from its service, or one that removes the source of a pass.
    fn may_reconfigure(&self, topology: &Topology) -> Result<(), ReconfigureRefusal> {
        let named = |name: &str| {
            topology
                .nodes
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
        };
        for svc in &self.services {
            let Some(spec) = topology
                .services
                .iter()
                .find(|spec| spec.name.eq_ignore_ascii_case(&svc.name))
            else {
                continue;
            };
            if svc.state.moving() || svc.state.recovery().is_some() {
                return Err(ReconfigureRefusal::Busy {
                    service: svc.name.clone(),
                    state: svc.state.to_string(),
                });
            }
            let primary = &self.nodes[svc.primary.0].name;
            if !named(primary).is_some_and(|p| spec.members.contains(&NodeId(p))) {
                return Err(ReconfigureRefusal::PrimaryRemoved {
                    service: svc.name.clone(),
                    primary: primary.clone(),
                });
            }
            for (&member, ms) in svc.members.iter().zip(&svc.sync) {
                let Some(pass) = &ms.pass else { continue };
                let source = &self.nodes[pass.from.0].name;
                if named(source).is_none() {
                    return Err(ReconfigureRefusal::SourceRemoved {
                        service: svc.name.clone(),
                        source_node: source.clone(),
                        member: self.nodes[member.0].name.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}
