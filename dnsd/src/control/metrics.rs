//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use dnsd_api::{Health, Role};

use crate::handle::Metrics;

/// Renders every metric. Label values come from validated configuration (names are
/// DNS labels), but are escaped anyway.
pub(super) fn render(m: &Metrics, dns: &crate::dns::DnsSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    let s = &m.status;

    family(
        &mut out,
        "dnsd_node_up",
        "gauge",
        "1 if the member answers its heartbeat, 0 if down, -1 while unknown.",
    );
    for n in &s.nodes {
        sample(&mut out, "dnsd_node_up", &[("node", &n.name)], up(n.health));
    }

    family(
        &mut out,
        "dnsd_node_rtt_seconds",
        "gauge",
        "Round-trip time of the member's last answered probe.",
    );
    for n in &s.nodes {
        if let Some(us) = n.rtt_us {
            sample_f(
                &mut out,
                "dnsd_node_rtt_seconds",
                &[("node", &n.name)],
                us as f64 / 1e6,
            );
        }
    }

    family(
        &mut out,
        "dnsd_node_maintenance",
        "gauge",
        "1 if an operator put the member in maintenance.",
    );
    for n in &s.nodes {
        sample(
            &mut out,
            "dnsd_node_maintenance",
            &[("node", &n.name)],
            i64::from(n.maintenance),
        );
    }

    family(
        &mut out,
        "dnsd_role",
        "gauge",
        "1 for the member's current role in the service.",
    );
    for svc in &s.services {
        for mbr in &svc.members {
            for role in [Role::Primary, Role::Secondary, Role::Down, Role::Resyncing] {
                let name = role.to_string();
                let v = i64::from(mbr.role == role);
                sample(
                    &mut out,
                    "dnsd_role",
                    &[("service", &svc.name), ("node", &mbr.node), ("role", &name)],
                    v,
                );
            }
        }
    }

    family(
        &mut out,
        "dnsd_service_epoch",
        "gauge",
        "The service's epoch; grows on every change of primary.",
    );
    for svc in &s.services {
        sample(
            &mut out,
            "dnsd_service_epoch",
            &[("service", &svc.name)],
            svc.epoch as i64,
        );
    }

    family(
        &mut out,
        "dnsd_service_stranded",
        "gauge",
        "1 if the primary is down and nobody can be promoted.",
    );
    for svc in &s.services {
        sample(
            &mut out,
            "dnsd_service_stranded",
            &[("service", &svc.name)],
            i64::from(svc.stranded),
        );
    }

    family(
        &mut out,
        "dnsd_service_paused",
        "gauge",
        "1 if automatic decisions are paused.",
    );
    for svc in &s.services {
        sample(
            &mut out,
            "dnsd_service_paused",
            &[("service", &svc.name)],
            i64::from(svc.paused),
        );
    }

    family(
        &mut out,
        "dnsd_check_up",
        "gauge",
        "For a service with a check: 1 if the member's check passes, 0 if it fails, -1 while unknown.",
    );
    for svc in &s.services {
        for mbr in &svc.members {
            if let Some(check) = &mbr.check {
                let labels = [("service", svc.name.as_str()), ("node", mbr.node.as_str())];
                sample(&mut out, "dnsd_check_up", &labels, up(check.health));
            }
        }
    }

    family(
        &mut out,
        "dnsd_member_quarantined",
        "gauge",
        "1 while the member is quarantined for flapping in the service (never promoted, never failed back to).",
    );
    for svc in &s.services {
        for mbr in &svc.members {
            let labels = [("service", svc.name.as_str()), ("node", mbr.node.as_str())];
            let v = i64::from(mbr.quarantined_until_ms.is_some());
            sample(&mut out, "dnsd_member_quarantined", &labels, v);
        }
    }

    family(
        &mut out,
        "dnsd_service_recovering",
        "gauge",
        "Restarts of the primary ordered so far while its check fails and its host answers (restart, then migrate); 0 when none is under way.",
    );
    for svc in &s.services {
        let attempt = svc.recovery.as_ref().map_or(0, |r| i64::from(r.attempt));
        sample(
            &mut out,
            "dnsd_service_recovering",
            &[("service", &svc.name)],
            attempt,
        );
    }

    family(
        &mut out,
        "dnsd_failovers_total",
        "counter",
        "Automatic failovers since the daemon started.",
    );
    for svc in &s.services {
        let n = m.failovers.get(&svc.name).copied().unwrap_or(0);
        sample(
            &mut out,
            "dnsd_failovers_total",
            &[("service", &svc.name)],
            n as i64,
        );
    }

    family(
        &mut out,
        "dnsd_sync_lag_seconds",
        "gauge",
        "Age of the member's last complete mirroring pass.",
    );
    for svc in &s.services {
        for mbr in &svc.members {
            if let Some(lag) = mbr.sync.as_ref().and_then(|y| y.lag_ms) {
                let labels = [("service", svc.name.as_str()), ("node", mbr.node.as_str())];
                sample_f(&mut out, "dnsd_sync_lag_seconds", &labels, lag as f64 / 1e3);
            }
        }
    }

    family(
        &mut out,
        "dnsd_sync_failures",
        "gauge",
        "Consecutive failed mirroring passes to the member.",
    );
    for svc in &s.services {
        for mbr in &svc.members {
            if let Some(y) = &mbr.sync {
                let labels = [("service", svc.name.as_str()), ("node", mbr.node.as_str())];
                sample(
                    &mut out,
                    "dnsd_sync_failures",
                    &labels,
                    i64::from(y.failures),
                );
            }
        }
    }

    family(
        &mut out,
        "dnsd_mirrored_bytes_total",
        "counter",
        "Bytes mirrored to the member since start: literal (sent as new data) or matched (already there).",
    );
    for (service, node, literal, matched) in &m.mirrored {
        for (kind, v) in [("literal", literal), ("matched", matched)] {
            let labels = [
                ("service", service.as_str()),
                ("node", node.as_str()),
                ("kind", kind),
            ];
            sample(&mut out, "dnsd_mirrored_bytes_total", &labels, *v as i64);
        }
    }

    family(
        &mut out,
        "dnsd_state_write_failures_total",
        "counter",
        "State file writes that failed since start (a change of primary that could not be written is withdrawn).",
    );
    sample(
        &mut out,
        "dnsd_state_write_failures_total",
        &[],
        m.persist_failures as i64,
    );

    family(
        &mut out,
        "dnsd_config_reloads_total",
        "counter",
        "Reloads of the configuration file since start: applied, or refused (problems in the file, a change that needs a restart, or one the pool cannot take now).",
    );
    for (result, n) in [
        ("applied", m.reloads.applied),
        ("refused", m.reloads.refused),
    ] {
        sample(
            &mut out,
            "dnsd_config_reloads_total",
            &[("result", result)],
            n as i64,
        );
    }

    family(
        &mut out,
        "dnsd_split_brain_risk",
        "gauge",
        "1 for a mirrored service that fails over with neither fence nor demote (and fencing = \"none\" not set).",
    );
    for svc in &s.services {
        sample(
            &mut out,
            "dnsd_split_brain_risk",
            &[("service", &svc.name)],
            i64::from(svc.split_brain_risk.is_some()),
        );
    }

    if let Some(c) = &s.cluster {
        cluster(&mut out, c, &s.nodes);
    }

    family(
        &mut out,
        "dnsd_zone_serial",
        "gauge",
        "The zone's SOA serial.",
    );
    sample(&mut out, "dnsd_zone_serial", &[], i64::from(s.serial));

    family(
        &mut out,
        "dnsd_dns_responses_total",
        "counter",
        "DNS responses sent, by response code.",
    );
    for (rcode, n) in &dns.responses {
        sample(
            &mut out,
            "dnsd_dns_responses_total",
            &[("rcode", rcode)],
            *n as i64,
        );
    }

    // --- Zone transfers and NOTIFY (counted by the dns module) ---
    family(
        &mut out,
        "dnsd_dns_transfers_total",
        "counter",
        "Zone transfer requests: full (AXFR, or IXFR answered with the zone), incremental, refused.",
    );
    for (kind, n) in &dns.transfers {
        sample(
            &mut out,
            "dnsd_dns_transfers_total",
            &[("kind", kind)],
            *n as i64,
        );
    }
    family(
        &mut out,
        "dnsd_dns_notify_total",
        "counter",
        "NOTIFY per secondary: sent (every try), retried, acknowledged, superseded (a newer serial came first), rejected (answered with an error).",
    );
    for t in &dns.notify {
        let target = t.target.to_string();
        for (outcome, n) in [
            ("sent", t.sent),
            ("retried", t.retried),
            ("acknowledged", t.acknowledged),
            ("superseded", t.superseded),
            ("rejected", t.rejected),
        ] {
            sample(
                &mut out,
                "dnsd_dns_notify_total",
                &[("target", &target), ("outcome", outcome)],
                n as i64,
            );
        }
    }
    // --- end of zone transfers and NOTIFY ---

    out
}

/// The cluster's gauges: leadership, lease, etcd, live terminal servers, and how the
/// observers see each member.
fn cluster(out: &mut String, c: &dnsd_api::ClusterStatus, nodes: &[dnsd_api::NodeStatus]) {
    let gauges: [(&str, &str, f64); 5] = [
        (
            "dnsd_cluster_leader",
            "1 while this terminal server leads (decides).",
            f64::from(u8::from(c.leading)),
        ),
        (
            "dnsd_cluster_lease_seconds",
            "While leading: how long its lease surely holds; 0 otherwise.",
            c.lease_left_ms.unwrap_or(0) as f64 / 1e3,
        ),
        (
            "dnsd_cluster_etcd_up",
            "1 while this terminal server has a live etcd session.",
            f64::from(u8::from(c.etcd_reachable)),
        ),
        (
            "dnsd_cluster_terminal_servers",
            "Live terminal servers (registered in etcd).",
            c.servers.len() as f64,
        ),
        (
            "dnsd_cluster_stale_seconds",
            "While etcd is away: how long the answers have been the last known state.",
            c.stale_for_ms.unwrap_or(0) as f64 / 1e3,
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        sample_f(out, name, &[], value);
    }
    family(
        out,
        "dnsd_cluster_observers",
        "gauge",
        "Live terminal servers seeing the member up, down or unknown.",
    );
    for n in nodes {
        if let Some(o) = n.observers {
            for (view, count) in [("up", o.up), ("down", o.down), ("unknown", o.unknown)] {
                let labels = [("node", n.name.as_str()), ("view", view)];
                sample(out, "dnsd_cluster_observers", &labels, i64::from(count));
            }
        }
    }
}

/// A health as a gauge: 1 up, 0 down, -1 unknown.
fn up(health: Health) -> i64 {
    match health {
        Health::Up => 1,
        Health::Down => 0,
        Health::Unknown => -1,
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

fn sample(out: &mut String, name: &str, l: &[(&str, &str)], v: i64) {
    out.push_str(name);
    labels(out, l);
    let _ = writeln!(out, " {v}");
}

fn sample_f(out: &mut String, name: &str, l: &[(&str, &str)], v: f64) {
    out.push_str(name);
    labels(out, l);
    let _ = writeln!(out, " {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z\nw")], 3);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 3\n");
    }
}
