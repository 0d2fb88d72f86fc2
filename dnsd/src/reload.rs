//! What a reload compares: which settings of a new configuration a running dnsd cannot
//! take (they are bound at start: listeners, the zone's name, the state directory, the
//! cluster), what changed in words, and where each node and service of the old
//! configuration is in the new one.
//!
//! The reload itself is the driver's (`crate::driver::Driver::reload`); the controller
//! takes the new pool with [`crate::controller::Controller::reconfigure`].

use crate::config::{Config, ServiceConfig};
use crate::controller::{NodeId, ServiceId};

/// The keys whose new values take effect only when dnsd restarts, in file order.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.dns, &new.dns);
    [
        ("dns.listen", o.listen != n.listen),
        ("dns.zone", o.zone != n.zone),
        ("dns.threads", o.threads != n.threads),
        (
            "dns.tcp_max_connections",
            o.tcp_max_connections != n.tcp_max_connections,
        ),
        (
            "dns.tcp_idle_timeout",
            o.tcp_idle_timeout != n.tcp_idle_timeout,
        ),
        ("dns.allow_transfer", o.allow_transfer != n.allow_transfer),
        ("dns.tsig", o.tsig != n.tsig),
        ("dns.notify", o.notify != n.notify),
        ("dns.notify_retry", o.notify_retry != n.notify_retry),
        ("[control]", old.control != new.control),
        ("state.dir", old.state != new.state),
        ("[cluster]", old.cluster != new.cluster),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// What changed from `old` to `new`, one phrase each ("node app4 added", "service www:
/// members app1, app4, app3 (were app1, app2, app3)", "heartbeat: interval, fall").
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let (o, n) = (&old.dns, &new.dns);
    let dns = names_of_changed(&[
        ("ttl", o.ttl != n.ttl),
        ("negative_ttl", o.negative_ttl != n.negative_ttl),
        ("hostmaster", o.hostmaster != n.hostmaster),
        ("nameservers", o.nameservers != n.nameservers),
        ("soa", o.soa != n.soa),
    ]);
    if !dns.is_empty() {
        out.push(format!("dns: {dns}"));
    }
    let (o, n) = (&old.heartbeat, &new.heartbeat);
    let hb = names_of_changed(&[
        ("protocol", o.protocol != n.protocol),
        ("port", o.port != n.port),
        ("interval", o.interval != n.interval),
        ("timeout", o.timeout != n.timeout),
        ("rise", o.rise != n.rise),
        ("fall", o.fall != n.fall),
    ]);
    if !hb.is_empty() {
        out.push(format!("heartbeat: {hb}"));
    }
    if old.mirror != new.mirror {
        out.push("[mirror] changed".to_owned());
    }
    for node in &new.nodes {
        match old.nodes.iter().find(|o| same_name(&o.name, &node.name)) {
            None => out.push(format!("node {} added", node.name)),
            Some(o) if o.address != node.address => {
                out.push(format!("node {} moved to {}", node.name, node.address))
            }
            Some(o) if o.root != node.root => out.push(format!("node {}: root", node.name)),
            Some(_) => {}
        }
    }
    for node in &old.nodes {
        if !new.nodes.iter().any(|n| same_name(&n.name, &node.name)) {
            out.push(format!("node {} removed", node.name));
        }
    }
    for service in &new.services {
        match old
            .services
            .iter()
            .find(|o| same_name(&o.name, &service.name))
        {
            None => out.push(format!("service {} added", service.name)),
            Some(o) => out.extend(service_changes(old, o, new, service)),
        }
    }
    for service in &old.services {
        if !new
            .services
            .iter()
            .any(|n| same_name(&n.name, &service.name))
        {
            out.push(format!("service {} removed", service.name));
        }
    }
    out
}

fn service_changes(
    old: &Config,
    o: &ServiceConfig,
    new: &Config,
    n: &ServiceConfig,
) -> Vec<String> {
    let members = |config: &Config, s: &ServiceConfig| {
        s.nodes
            .iter()
            .map(|&m| config.node(m).name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    let (was, now) = (members(old, o), members(new, n));
    if !was.eq_ignore_ascii_case(&now) {
        out.push(format!("service {}: members {now} (were {was})", n.name));
    }
    let settings = names_of_changed(&[
        ("paths", o.paths != n.paths),
        ("max_lag", o.max_lag != n.max_lag),
        ("failback", o.failback_after != n.failback_after),
        ("on_no_candidate", o.on_no_candidate != n.on_no_candidate),
        ("election", o.election != n.election),
        (
            "fencing",
            o.fencing != n.fencing || o.unfenced_by_choice != n.unfenced_by_choice,
        ),
        ("hooks", o.hooks != n.hooks),
        ("hook_timeout", o.hook_timeout != n.hook_timeout),
        ("check", o.check != n.check),
        ("restart", o.restart != n.restart),
        ("flap", o.flap != n.flap),
    ]);
    if !settings.is_empty() {
        out.push(format!("service {}: {settings}", n.name));
    }
    out
}

fn names_of_changed(fields: &[(&str, bool)]) -> String {
    fields
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nodes whose address changed: what was known of their health no longer holds.
pub fn readdressed(old: &Config, new: &Config) -> Vec<String> {
    new.nodes
        .iter()
        .filter(|n| {
            old.nodes
                .iter()
                .any(|o| same_name(&o.name, &n.name) && o.address != n.address)
        })
        .map(|n| n.name.clone())
        .collect()
}

/// Services whose check changed: their verdicts start afresh.
pub fn rechecked(old: &Config, new: &Config) -> Vec<String> {
    new.services
        .iter()
        .filter(|n| {
            old.services
                .iter()
                .any(|o| same_name(&o.name, &n.name) && o.check != n.check)
        })
        .map(|n| n.name.clone())
        .collect()
}

/// Names are DNS labels: the same whatever their case.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Where each node and service of an old configuration is in a new one, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renames {
    nodes: Vec<Option<NodeId>>,
    services: Vec<Option<ServiceId>>,
}

impl Renames {
    pub fn new(old: &Config, new: &Config) -> Renames {
        Renames {
            nodes: old
                .nodes
                .iter()
                .map(|o| {
                    new.nodes
                        .iter()
                        .position(|n| same_name(&n.name, &o.name))
                        .map(NodeId)
                })
                .collect(),
            services: old
                .services
                .iter()
                .map(|o| {
                    new.services
                        .iter()
                        .position(|n| same_name(&n.name, &o.name))
                        .map(ServiceId)
                })
                .collect(),
        }
    }

    /// The new id of old node `n`, if it is still configured.
    pub fn node(&self, n: NodeId) -> Option<NodeId> {
        self.nodes.get(n.0).copied().flatten()
    }

    /// The new id of old service `s`, if it is still configured.
    pub fn service(&self, s: ServiceId) -> Option<ServiceId> {
        self.services.get(s.0).copied().flatten()
    }

    /// Old node `n` of old service `s`, both still configured (the member may have left
    /// the service: callers that care check membership).
    pub fn member(&self, s: ServiceId, n: NodeId) -> Option<(ServiceId, NodeId)> {
        Some((self.service(s)?, self.node(n)?))
    }

    /// `values`, indexed by old node, re-indexed by new node; new nodes get `fresh()`.
    pub fn nodes_of<T>(&self, values: Vec<T>, count: usize, fresh: impl Fn() -> T) -> Vec<T> {
        let mut out: Vec<Option<T>> = (0..count).map(|_| None).collect();
        for (old, value) in values.into_iter().enumerate() {
            if let Some(n) = self.node(NodeId(old)) {
                out[n.0] = Some(value);
            }
        }
        out.into_iter().map(|v| v.unwrap_or_else(&fresh)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[dns]
zone = "svc.test."
nameservers = [{ name = "ns1.svc.test.", address = "127.0.0.1" }]
[state]
dir = "/tmp/dnsd-reload-test"
[[node]]
name = "app1"
address = "127.0.0.11"
[[node]]
name = "app2"
address = "127.0.0.12"
[[node]]
name = "app3"
address = "127.0.0.13"
[[service]]
name = "www"
nodes = ["app1", "app2", "app3"]
"#;

    fn config(text: &str) -> Config {
        let raw = match crate::config::parse(text, std::iter::empty()) {
            Ok(raw) => raw,
            Err(e) => panic!("{e:?}"),
        };
        match raw.validate() {
            Ok(c) => c,
            Err(problems) => panic!("{problems:?}"),
        }
    }

    #[test]
    fn an_added_member_and_a_new_interval_are_changes_and_need_no_restart() {
        let old = config(BASE);
        let text = BASE
            .replace(
                "[state]",
                "[heartbeat]\ninterval = \"1s\"\ntimeout = \"500ms\"\n[state]",
            )
            .replace(
                "[[service]]",
                "[[node]]\nname = \"app4\"\naddress = \"127.0.0.14\"\n[[service]]",
            )
            .replace(r#"["app1", "app2", "app3"]"#, r#"["app1", "app4", "app3"]"#);
        let new = config(&text);
        assert!(needs_restart(&old, &new).is_empty());
        assert_eq!(
            changes(&old, &new),
            vec![
                "heartbeat: interval, timeout",
                "node app4 added",
                "service www: members app1, app4, app3 (were app1, app2, app3)",
            ]
        );
        let renames = Renames::new(&old, &new);
        assert_eq!(renames.node(NodeId(1)), Some(NodeId(1)));
        assert_eq!(renames.service(ServiceId(0)), Some(ServiceId(0)));
        assert_eq!(
            renames.nodes_of(vec!["a", "b", "c"], 4, || "new"),
            vec!["a", "b", "c", "new"]
        );
    }

    #[test]
    fn listeners_the_zone_and_the_state_directory_need_a_restart() {
        let old = config(BASE);
        let new = config(
            &BASE
                .replace("svc.test.", "other.test.")
                .replace("/tmp/dnsd-reload-test", "/tmp/elsewhere")
                .replace("[dns]", "[dns]\nlisten = [\"127.0.0.1:5454\"]"),
        );
        assert_eq!(
            needs_restart(&old, &new),
            vec!["dns.listen", "dns.zone", "state.dir"]
        );
    }

    #[test]
    fn a_removed_node_moves_the_ids_after_it() {
        let old = config(BASE);
        let new = config(
            &BASE
                .replace("[[node]]\nname = \"app2\"\naddress = \"127.0.0.12\"\n", "")
                .replace(r#""app1", "app2", "app3""#, r#""app1", "app3""#)
                .replace("127.0.0.13", "127.0.0.23"),
        );
        let renames = Renames::new(&old, &new);
        assert_eq!(renames.node(NodeId(1)), None);
        assert_eq!(renames.node(NodeId(2)), Some(NodeId(1)));
        assert_eq!(readdressed(&old, &new), vec!["app3"]);
        assert_eq!(
            changes(&old, &new),
            vec![
                "node app3 moved to 127.0.0.23",
                "node app2 removed",
                "service www: members app1, app3 (were app1, app2, app3)",
            ]
        );
    }
}
