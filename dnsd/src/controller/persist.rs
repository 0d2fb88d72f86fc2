//! What the controller persists across restarts, and how a restarted controller takes
//! it back: primaries, epochs, flags, watermarks, members owing a resync, quarantines,
//! and a switchover that was under way (rolled back at start).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{NodeId, ServiceId};
use super::orders::Watermark;
use super::spec::Millis;
use super::state::{Controller, ServiceState, SwitchoverStep};

/// What is persisted across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The zone's SOA serial when the state was written.
    pub serial: u32,
    pub services: Vec<PersistedService>,
    /// Names of members in maintenance.
    pub maintenance: Vec<String>,
}

/// A service's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedService {
    pub name: String,
    pub primary: String,
    pub epoch: u64,
    pub paused: bool,
    /// Last complete pass per member.
    #[serde(default)]
    pub watermarks: BTreeMap<String, Watermark>,
    /// Members whose resync has not completed.
    #[serde(default)]
    pub resyncing: Vec<String>,
    /// The number of the last passes ordered ([`super::SyncOrder::number`]): numbers keep
    /// growing across restarts, so a kept folder named for one is never reused.
    #[serde(default)]
    pub passes: u64,
    /// Target of a switchover that was under way (the old primary may have been demoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_to: Option<String>,
    /// Members quarantined for flapping, and until when: a restart of dnsd does not free
    /// a member that keeps flapping.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantined: BTreeMap<String, Millis>,
}

impl Controller {
    /// What to persist.
    pub fn persisted(&self) -> Persisted {
        let name = |n: NodeId| self.nodes[n.0].name.clone();
        Persisted {
            serial: self.serial,
            services: self
                .services
                .iter()
                .map(|s| PersistedService {
                    name: s.name.clone(),
                    primary: name(s.primary),
                    epoch: s.epoch,
                    paused: s.paused,
                    passes: s.passes,
                    watermarks: s
                        .members
                        .iter()
                        .zip(&s.sync)
                        .filter_map(|(&n, ms)| ms.watermark.clone().map(|w| (name(n), w)))
                        .collect(),
                    resyncing: s
                        .members
                        .iter()
                        .zip(&s.sync)
                        .filter(|(_, ms)| ms.resyncing)
                        .map(|(&n, _)| name(n))
                        .collect(),
                    quarantined: s
                        .members
                        .iter()
                        .zip(&s.health)
                        .filter_map(|(&n, h)| h.quarantined_until.map(|until| (name(n), until)))
                        .collect(),
                    switchover_to: match &s.state {
                        ServiceState::SwitchingOver(m)
                            if !matches!(m.step, SwitchoverStep::RollingBack { .. }) =>
                        {
                            Some(name(m.target))
                        }
                        _ => None,
                    },
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

    /// Takes back one service's persisted state. What no longer fits the configuration
    /// is noted in `notes`; a switchover that was under way is added to `interrupted`.
    pub(super) fn restore_service(
        &mut self,
        s: ServiceId,
        ps: &PersistedService,
        notes: &mut Vec<String>,
        interrupted: &mut Vec<(ServiceId, NodeId)>,
    ) {
        let index = |name: &str| self.nodes.iter().position(|n| n.name == name).map(NodeId);
        let primary = index(&ps.primary);
        let watermarks: Vec<(NodeId, Watermark)> = ps
            .watermarks
            .iter()
            .filter_map(|(name, w)| index(name).map(|n| (n, w.clone())))
            .collect();
        let resyncing: Vec<NodeId> = ps.resyncing.iter().filter_map(|n| index(n)).collect();
        let quarantined: Vec<(NodeId, Millis)> = ps
            .quarantined
            .iter()
            .filter_map(|(name, &until)| index(name).map(|n| (n, until)))
            .collect();
        let target = ps.switchover_to.as_deref().and_then(index);

        let svc = &mut self.services[s.0];
        svc.paused = ps.paused;
        svc.passes = ps.passes;
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
        for (n, w) in watermarks {
            if let Some(i) = svc.slot(n) {
                svc.sync_mut(i).watermark = Some(w);
            }
        }
        for n in resyncing {
            if let Some(i) = svc.slot(n) {
                let ms = svc.sync_mut(i);
                ms.resyncing = true;
                ms.keep = true;
            }
        }
        for (n, until) in quarantined {
            if let Some(h) = svc.health_mut(n) {
                h.quarantined_until = Some(until);
            }
        }
        if let Some(target) = target {
            interrupted.push((s, target));
        }
    }
}
