//! What the configuration means to the controller and to DNS: the pool's topology and
//! the zone snapshot for the controller's current primaries.

use crate::config::Config;
use std::time::Duration;

use crate::controller::{
    Controller, Failback, FlapPolicy, Millis, Policy, RestartPolicy, ServiceSpec, Topology,
};
use crate::dns::{self, Zone, ZoneSpec};

/// The pool as the controller sees it.
pub fn topology(config: &Config) -> Topology {
    Topology {
        nodes: config.nodes.iter().map(|n| n.name.clone()).collect(),
        services: config
            .services
            .iter()
            .map(|s| ServiceSpec {
                name: s.name.clone(),
                members: s.nodes.clone(),
                policy: Policy {
                    mirrored: !s.paths.is_empty(),
                    sync_interval: config
                        .mirror
                        .as_ref()
                        .map_or(Policy::plain().sync_interval, |m| {
                            m.interval.as_millis() as Millis
                        }),
                    max_lag: s.max_lag.as_millis() as Millis,
                    failback: match s.failback_after {
                        Some(after) => Failback::Auto {
                            after: after.as_millis() as Millis,
                        },
                        None => Failback::Manual,
                    },
                    on_no_candidate: s.on_no_candidate,
                    fencing: s.fencing,
                    election: s.election,
                    promote_hook: s.hooks.promote.is_some(),
                    demote_hook: s.hooks.demote.is_some(),
                    checked: s.check.is_some(),
                    restart: s
                        .check
                        .as_ref()
                        .zip(s.restart)
                        .map(|(check, r)| RestartPolicy {
                            attempts: r.attempts,
                            window: ms(r.window),
                            // Room for a restarted service to be seen passing (rise checks),
                            // doubled for each further attempt.
                            backoff: ms(check.interval.saturating_mul(check.rise)).max(1000),
                        }),
                    flap: s.flap.map(|f| FlapPolicy {
                        threshold: f.threshold,
                        window: ms(f.window),
                        hold_down: ms(f.hold_down),
                    }),
                },
            })
            .collect(),
    }
}

fn ms(d: Duration) -> Millis {
    d.as_millis().try_into().unwrap_or(Millis::MAX)
}

/// Builds the DNS snapshot for the controller's current primaries.
pub fn build_zone(config: &Config, c: &Controller) -> Result<Zone, dns::ZoneError> {
    let dns = &config.dns;
    let mut hosts: Vec<(&str, std::net::IpAddr)> = config
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.address))
        .collect();
    for s in c.service_ids() {
        hosts.push((
            config.service(s).name.as_str(),
            config.node(c.primary(s)).address,
        ));
    }
    Zone::build(&ZoneSpec {
        origin: &dns.zone,
        serial: c.serial(),
        ttl: dns.ttl,
        negative_ttl: dns.negative_ttl,
        soa: dns.soa,
        hostmaster: &dns.hostmaster,
        nameservers: dns
            .nameservers
            .iter()
            .map(|n| (n.name.as_str(), n.address))
            .collect(),
        hosts,
    })
}
