//! The status view: what `GET /v1/status` reports, built from the controller, the
//! configuration and what the driver observed (probe results, passes under way).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use dnsd_api::{
    CheckSettings, CheckStatus, FlapSettings, HeartbeatSettings, HookSettings, MemberStatus,
    NodeStatus, PassReport, RecoveryStatus, RunningPass, ServiceStatus, Status, SyncStatus,
};
use heartbeat::Health;

use crate::config::Config;
use crate::controller::{
    Controller, Election, Failback, Fencing, Millis, NodeId, PassId, ServiceId,
};
use crate::mirror::PassProgress;

/// Probe results kept per member for sparklines.
pub const PROBE_HISTORY: usize = 60;

/// Per-member probe results, for status views and metrics.
#[derive(Debug, Clone, Default)]
pub struct ProbeHistory {
    /// Most recent probe results, newest last: RTT in microseconds, or None for a miss.
    pub recent: VecDeque<Option<u64>>,
    /// Why the last probe failed, if it did.
    pub last_error: Option<String>,
    /// When the last probe ended.
    pub last_at_ms: Millis,
}

/// The last check of one member of one service, for status views.
#[derive(Debug, Clone, Default)]
pub struct CheckHistory {
    /// How long the last passing check took, microseconds (`None` after a failure).
    pub rtt_us: Option<u64>,
    /// Why the last check failed, if it did.
    pub last_error: Option<String>,
    /// When the last check started.
    pub last_at_ms: Millis,
}

/// Everything a status view is built from, borrowed from the driver for one request.
pub struct View<'a> {
    pub config: &'a Config,
    pub controller: &'a Controller,
    /// Indexed like the configuration's nodes.
    pub probes: &'a [ProbeHistory],
    /// Passes under way: service, member, and the latest progress.
    pub running: &'a HashMap<PassId, (ServiceId, NodeId, Option<PassProgress>)>,
    /// The last check of each member of each service with a check.
    pub checks: &'a HashMap<(ServiceId, NodeId), CheckHistory>,
    pub started_ms: Millis,
    pub now: Millis,
    /// The cluster, when there is one.
    pub cluster: Option<dnsd_api::ClusterStatus>,
    /// In a cluster: how the observers see each node, indexed like the nodes.
    pub observers: &'a [Option<dnsd_api::Observers>],
}

impl View<'_> {
    /// The status as the control API reports it.
    pub fn status(&self) -> Status {
        let c = self.controller;
        let cfg = self.config;
        let nodes = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let (n, probes) = (NodeId(i), &self.probes[i]);
                NodeStatus {
                    name: node.name.clone(),
                    address: node.address.to_string(),
                    health: api_health(c.health(n)),
                    maintenance: c.maintenance(n),
                    rtt_us: probes.recent.iter().rev().find_map(|p| *p),
                    probes: probes.recent.iter().copied().collect(),
                    last_error: probes.last_error.clone(),
                    observers: self.observers.get(i).copied().flatten(),
                }
            })
            .collect();
        let services = c
            .service_ids()
            .map(|s| {
                let name = c.service_name(s);
                let choice = c.choice(s);
                ServiceStatus {
                    name: name.to_owned(),
                    fqdn: format!("{name}.{}", cfg.dns.zone),
                    primary: c.node_name(c.primary(s)).to_owned(),
                    preferred: c.node_name(c.members(s)[0]).to_owned(),
                    epoch: c.epoch(s),
                    paused: c.paused(s),
                    stranded: c.stranded(s),
                    next: choice.as_ref().map(|(n, _)| c.node_name(*n).to_owned()),
                    next_reason: choice.map(|(_, why)| why),
                    election: match c.policy(s).election {
                        Election::Freshest => "freshest".to_owned(),
                        Election::RoundRobin => "round-robin".to_owned(),
                    },
                    split_brain_risk: cfg.service(s).split_brain_risk().map(str::to_owned),
                    transition: c.transition(s),
                    paths: cfg
                        .service(s)
                        .paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                    max_lag_ms: c.policy(s).max_lag,
                    failback: match c.policy(s).failback {
                        Failback::Manual => "manual".to_owned(),
                        Failback::Auto { after } => format!(
                            "auto after {}",
                            humantime::format_duration(Duration::from_millis(after))
                        ),
                    },
                    hooks: {
                        let h = &cfg.service(s).hooks;
                        HookSettings {
                            promote: h.promote.is_some(),
                            demote: h.demote.is_some(),
                            fence: h.fence.is_some(),
                            fencing_required: cfg.service(s).fencing == Fencing::Required,
                            restart: h.restart.is_some(),
                        }
                    },
                    check: cfg.service(s).check.as_ref().map(|check| {
                        let restart = cfg.service(s).restart;
                        CheckSettings {
                            probe: check.probe.to_string(),
                            interval_ms: millis(check.interval),
                            timeout_ms: millis(check.timeout),
                            rise: check.rise,
                            fall: check.fall,
                            restart_attempts: restart.map_or(0, |r| r.attempts),
                            restart_window_ms: restart.map_or(0, |r| millis(r.window)),
                        }
                    }),
                    flap: cfg.service(s).flap.map(|f| FlapSettings {
                        threshold: f.threshold,
                        window_ms: millis(f.window),
                        hold_down_ms: millis(f.hold_down),
                    }),
                    recovery: c.recovery(s).map(|r| RecoveryStatus {
                        node: c.node_name(r.node).to_owned(),
                        attempt: r.attempt,
                        attempts: r.attempts,
                        since_ms: r.since,
                        deadline_ms: r.deadline,
                        restarting: r.restarting,
                        next_attempt_ms: r.next_attempt,
                    }),
                    members: c
                        .members(s)
                        .iter()
                        .zip(c.verdicts(s))
                        .map(|(&n, verdict)| MemberStatus {
                            node: c.node_name(n).to_owned(),
                            role: c.role(s, n),
                            eligible: verdict.is_ok(),
                            skip_reason: verdict.err().map(|skip| skip.to_string()),
                            sync: self.sync_status(s, n),
                            check: c.check(s, n).map(|health| {
                                let last = self.checks.get(&(s, n));
                                CheckStatus {
                                    health: api_health(health),
                                    rtt_us: last.and_then(|l| l.rtt_us),
                                    last_at_ms: last.map(|l| l.last_at_ms),
                                    last_error: last.and_then(|l| l.last_error.clone()),
                                }
                            }),
                            quarantined_until_ms: c.quarantined_until(s, n),
                            health_changes: u32::try_from(c.health_changes(s, n))
                                .unwrap_or(u32::MAX),
                        })
                        .collect(),
                }
            })
            .collect();
        Status {
            now_ms: self.now,
            started_ms: self.started_ms,
            zone: cfg.dns.zone.clone(),
            serial: c.serial(),
            ttl: cfg.dns.ttl,
            heartbeat: HeartbeatSettings {
                protocol: cfg.heartbeat.protocol.to_string(),
                port: cfg.heartbeat.port,
                interval_ms: cfg.heartbeat.interval.as_millis() as u64,
                timeout_ms: cfg.heartbeat.timeout.as_millis() as u64,
                rise: cfg.heartbeat.rise,
                fall: cfg.heartbeat.fall,
            },
            nodes,
            services,
            cluster: self.cluster.clone(),
        }
    }

    /// Mirroring state of member `n` in service `s`, for services with paths.
    fn sync_status(&self, s: ServiceId, n: NodeId) -> Option<SyncStatus> {
        let c = self.controller;
        if !c.policy(s).mirrored || c.primary(s) == n {
            return None;
        }
        let v = c.sync_view(s, n)?;
        let now = self.now;
        let progress = self
            .running
            .values()
            .find(|(rs, rn, _)| *rs == s && *rn == n)
            .and_then(|(_, _, p)| *p);
        Some(SyncStatus {
            last_sync_ms: v.watermark.as_ref().map(|w| w.at),
            lag_ms: v.watermark.as_ref().map(|w| now.saturating_sub(w.at)),
            resyncing: v.resyncing,
            running: v.running.map(|(kind, started)| RunningPass {
                kind: kind.to_string(),
                started_ms: started,
                bytes: progress.map_or(0, |p| p.bytes),
                percent: progress.map_or(0, |p| p.percent),
                rate_bytes_per_sec: progress.map_or(0, |p| p.rate_bytes_per_sec as u64),
                eta_secs: progress.and_then(|p| p.eta_secs),
            }),
            failures: v.failures,
            last_error: v.last_error,
            next_due_ms: v.next_due,
            last_pass: v.last.map(|l| PassReport {
                files_transferred: l.files_transferred,
                literal_bytes: l.literal_bytes,
                matched_bytes: l.matched_bytes,
                bytes_sent: l.bytes_sent,
                bytes_received: l.bytes_received,
                duration_ms: l.duration_ms,
                kept_files: l.kept.as_ref().map(|k| k.files),
                kept_bytes: l.kept.as_ref().map(|k| k.bytes),
                replaced_files: l.kept.as_ref().map(|k| k.replaced),
                kept_dir: l.kept.map(|k| k.dir).filter(|d| !d.is_empty()),
                pass: v.watermark.as_ref().map_or(0, |w| w.pass),
            }),
        })
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

fn api_health(h: Health) -> dnsd_api::Health {
    match h {
        Health::Unknown => dnsd_api::Health::Unknown,
        Health::Up => dnsd_api::Health::Up,
        Health::Down => dnsd_api::Health::Down,
    }
}
