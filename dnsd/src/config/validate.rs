//! Validation: checks every key of a [`RawConfig`] and builds the typed [`Config`], or
//! returns every [`Problem`] with its key path, so one run of `check-config` shows all.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawConfig, RawControl, RawDns, RawHeartbeat, RawNode, RawService};
use heartbeat::MonitorConfig;

use super::model::{
    Config, ControlConfig, DnsConfig, HOOK_PLACEHOLDERS, Hooks, NameserverConfig, NodeConfig,
    ServiceConfig, StateConfig,
};
use super::problem::Problem;
use crate::controller::{Election, Fencing, NoCandidate, NodeId};

impl RawConfig {
    /// Checks every key and returns the typed configuration, or every problem found.
    pub fn validate(&self) -> Result<Config, Vec<Problem>> {
        let mut p = Vec::new();
        let dns = self.dns.validate(&mut p);
        let heartbeat = self.heartbeat.validate(&mut p);
        let control = self.control.validate(&mut p);
        let state = StateConfig {
            dir: absolute_path(&self.state.dir, "state.dir", &mut p),
        };
        let nodes = validate_nodes(&self.node, &mut p);
        let mirror = match &self.mirror {
            Some(m) => match m.validate() {
                Ok(settings) => Some(settings),
                Err(problems) => {
                    p.extend(
                        problems
                            .into_iter()
                            .map(|q| Problem::new(q.path, q.message)),
                    );
                    None
                }
            },
            None => None,
        };
        // Three passes' worth, plus the time a crash takes to be noticed: the lag a member
        // that kept up shows when the decision is made is up to an interval and a pass
        // older than the crash, and the crash is only seen `fall` probes later.
        let detection = heartbeat.interval.saturating_mul(heartbeat.fall);
        let default_lag = mirror.as_ref().map_or(Duration::from_secs(30), |m| {
            m.interval.saturating_mul(3).saturating_add(detection)
        });
        let services = validate_services(&self.service, &self.node, default_lag, &mut p);
        check_name_collisions(self, &dns.zone, &mut p);
        if self.mirror.is_none() {
            for (i, s) in self.service.iter().enumerate() {
                let needs = if !s.paths.is_empty() {
                    Some("paths")
                } else if s.promote.is_some() {
                    Some("promote")
                } else if s.demote.is_some() {
                    Some("demote")
                } else if s.epoch_guard.is_some() {
                    Some("epoch_guard")
                } else {
                    None
                };
                if let Some(key) = needs {
                    p.push(Problem::new(
                        format!("service[{i}].{key}"),
                        "needs a [mirror] section: how the terminal server reaches members over SSH",
                    ));
                }
            }
        }

        if p.is_empty() {
            Ok(Config {
                dns,
                heartbeat,
                control,
                state,
                nodes,
                services,
                mirror,
            })
        } else {
            p.sort();
            p.dedup();
            Err(p)
        }
    }
}

impl RawDns {
    fn validate(&self, p: &mut Vec<Problem>) -> DnsConfig {
        let mut listen = Vec::new();
        if self.listen.is_empty() {
            p.push(Problem::new("dns.listen", "at least one address is needed"));
        }
        let mut seen = HashSet::new();
        for (i, a) in self.listen.iter().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(sa) if !seen.insert(sa) => p.push(Problem::new(
                    format!("dns.listen[{i}]"),
                    format!("{sa} is listed twice"),
                )),
                Ok(sa) => listen.push(sa),
                Err(_) => p.push(Problem::new(
                    format!("dns.listen[{i}]"),
                    format!("{a:?} is not an address:port (e.g. \"127.0.0.1:53\" or \"[::1]:53\")"),
                )),
            }
        }

        let zone = self.zone.to_ascii_lowercase();
        if !zone.ends_with('.') {
            p.push(Problem::new(
                "dns.zone",
                format!(
                    "{:?} must be fully qualified, with a trailing dot (\"{}.\")",
                    self.zone, self.zone
                ),
            ));
        } else if let Err(why) = check_domain_name(&zone) {
            p.push(Problem::new(
                "dns.zone",
                format!("{:?} is not a valid domain name: {why}", self.zone),
            ));
        }

        let ttl = ttl_seconds(&self.ttl, "dns.ttl", p);
        let negative_ttl = match &self.negative_ttl {
            Some(s) => ttl_seconds(s, "dns.negative_ttl", p),
            None => ttl,
        };

        let hostmaster = match &self.hostmaster {
            Some(h) => {
                let h = h.to_ascii_lowercase();
                if !h.ends_with('.') {
                    p.push(Problem::new(
                        "dns.hostmaster",
                        format!("{h:?} must end with a dot"),
                    ));
                } else if let Err(why) = check_domain_name(&h) {
                    p.push(Problem::new(
                        "dns.hostmaster",
                        format!("{h:?} is not a valid domain name: {why}"),
                    ));
                }
                h
            }
            None => format!("hostmaster.{zone}"),
        };

        let mut nameservers = Vec::new();
        if self.nameservers.is_empty() {
            p.push(Problem::new(
                "dns.nameservers",
                "at least one name server is needed for the NS records",
            ));
        }
        let mut ns_seen = HashSet::new();
        for (i, ns) in self.nameservers.iter().enumerate() {
            let path = format!("dns.nameservers[{i}]");
            let name = ns.name.to_ascii_lowercase();
            if !name.ends_with('.') {
                p.push(Problem::new(
                    format!("{path}.name"),
                    format!("{:?} must be fully qualified, with a trailing dot", ns.name),
                ));
            } else if let Err(why) = check_domain_name(&name) {
                p.push(Problem::new(
                    format!("{path}.name"),
                    format!("{:?} is not a valid domain name: {why}", ns.name),
                ));
            } else if !ns_seen.insert(name.clone()) {
                p.push(Problem::new(
                    format!("{path}.name"),
                    format!("{name} is listed twice"),
                ));
            }
            match ns.address.parse::<IpAddr>() {
                Ok(address) => nameservers.push(NameserverConfig { name, address }),
                Err(_) => p.push(Problem::new(
                    format!("{path}.address"),
                    format!("{:?} is not an IPv4 or IPv6 address", ns.address),
                )),
            }
        }

        DnsConfig {
            listen,
            zone,
            ttl,
            negative_ttl,
            hostmaster,
            nameservers,
        }
    }
}

impl RawControl {
    fn validate(&self, p: &mut Vec<Problem>) -> ControlConfig {
        let socket = absolute_path(&self.socket, "control.socket", p);
        // sun_path holds 108 bytes including the terminating zero.
        if self.socket.len() > 107 {
            p.push(Problem::new(
                "control.socket",
                format!(
                    "{:?} is longer than a Unix socket path may be (107 bytes)",
                    self.socket
                ),
            ));
        }
        let tcp = match (&self.tcp, &self.token_file) {
            (None, None) => None,
            (None, Some(_)) => {
                p.push(Problem::new(
                    "control.token_file",
                    "is only used with control.tcp",
                ));
                None
            }
            (Some(_), None) => {
                p.push(Problem::new("control.tcp", "needs control.token_file: the control API is never open on TCP without a token"));
                None
            }
            (Some(addr), Some(token)) => {
                let token = absolute_path(token, "control.token_file", p);
                match addr.parse::<SocketAddr>() {
                    Ok(a) => Some((a, token)),
                    Err(_) => {
                        p.push(Problem::new(
                            "control.tcp",
                            format!("{addr:?} is not an address:port"),
                        ));
                        None
                    }
                }
            }
        };
        ControlConfig { socket, tcp }
    }
}

impl RawHeartbeat {
    /// The monitor's own rules ([`heartbeat::MonitorConfig::problems`]) decide what is
    /// wrong; this only parses the strings and names the keys.
    fn validate(&self, p: &mut Vec<Problem>) -> MonitorConfig {
        let protocol = match self.protocol.parse::<heartbeat::Protocol>() {
            Ok(proto) => proto,
            Err(_) => {
                p.push(Problem::new(
                    "heartbeat.protocol",
                    format!(
                        "{:?} is not a protocol: use \"tcp\" or \"udp\"",
                        self.protocol
                    ),
                ));
                heartbeat::Protocol::Tcp
            }
        };
        let mut duration = |text: &str, key: &str| match parse_duration(text) {
            Ok(d) => Some(d),
            Err(why) => {
                p.push(Problem::new(format!("heartbeat.{key}"), why));
                None
            }
        };
        let interval = duration(&self.interval, "interval");
        let timeout = duration(&self.timeout, "timeout");
        let monitor = MonitorConfig {
            protocol,
            port: self.port,
            // A value that did not parse is reported above; these stand-ins keep it from
            // also being compared with the other.
            interval: interval.unwrap_or(Duration::MAX),
            timeout: timeout.unwrap_or(Duration::from_millis(1)),
            rise: self.rise,
            fall: self.fall,
        };
        for problem in monitor.problems() {
            p.push(Problem::new(
                format!("heartbeat.{}", problem.field()),
                problem.message_in("heartbeat"),
            ));
        }
        monitor
    }
}

fn validate_nodes(raw: &[RawNode], p: &mut Vec<Problem>) -> Vec<NodeConfig> {
    if raw.is_empty() {
        p.push(Problem::new("node", "at least one [[node]] is needed"));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
    let mut nodes = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let path = format!("node[{i}]");
        let name = n.name.to_ascii_lowercase();
        if let Err(why) = check_label(&name) {
            p.push(Problem::new(
                format!("{path}.name"),
                format!("{:?} cannot be a DNS label: {why}", n.name),
            ));
        } else if let Some(first) = names.insert(name.clone(), i) {
            p.push(Problem::new(
                format!("{path}.name"),
                format!("duplicate node {name:?} (also node[{first}])"),
            ));
        }
        let address = match n.address.parse::<IpAddr>() {
            Ok(a) => {
                if let Some(first) = addresses.insert(a, i) {
                    p.push(Problem::new(
                        format!("{path}.address"),
                        format!("{a} is also the address of node[{first}]"),
                    ));
                }
                a
            }
            Err(_) => {
                p.push(Problem::new(
                    format!("{path}.address"),
                    format!("{:?} is not an IPv4 or IPv6 address", n.address),
                ));
                IpAddr::from([0, 0, 0, 0])
            }
        };
        let root = n
            .root
            .as_deref()
            .map(|r| absolute_path(r, &format!("{path}.root"), p));
        nodes.push(NodeConfig {
            name,
            address,
            root,
        });
    }
    nodes
}

fn validate_services(
    raw: &[RawService],
    nodes: &[RawNode],
    default_lag: Duration,
    p: &mut Vec<Problem>,
) -> Vec<ServiceConfig> {
    if raw.is_empty() {
        p.push(Problem::new(
            "service",
            "at least one [[service]] is needed",
        ));
    }
    let index: HashMap<String, NodeId> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.to_ascii_lowercase(), NodeId(i)))
        .collect();
    let mut names = HashMap::new();
    let mut services = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let path = format!("service[{i}]");
        let name = s.name.to_ascii_lowercase();
        if let Err(why) = check_label(&name) {
            p.push(Problem::new(
                format!("{path}.name"),
                format!("{:?} cannot be a DNS label: {why}", s.name),
            ));
        } else if let Some(first) = names.insert(name.clone(), i) {
            p.push(Problem::new(
                format!("{path}.name"),
                format!("duplicate service {name:?} (also service[{first}])"),
            ));
        }
        if s.nodes.is_empty() {
            p.push(Problem::new(
                format!("{path}.nodes"),
                "a service needs at least one node",
            ));
        }
        let mut members = Vec::new();
        for (j, m) in s.nodes.iter().enumerate() {
            let m_lower = m.to_ascii_lowercase();
            match index.get(&m_lower) {
                None => p.push(Problem::new(
                    format!("{path}.nodes[{j}]"),
                    format!("unknown node {m:?} (no [[node]] has this name)"),
                )),
                Some(&n) if members.contains(&n) => p.push(Problem::new(
                    format!("{path}.nodes[{j}]"),
                    format!("node {m:?} is listed twice"),
                )),
                Some(&n) => members.push(n),
            }
        }
        services.push(validate_service_policy(
            s,
            &path,
            name,
            members,
            default_lag,
            p,
        ));
    }
    services
}

fn validate_service_policy(
    s: &RawService,
    path: &str,
    name: String,
    members: Vec<NodeId>,
    default_lag: Duration,
    p: &mut Vec<Problem>,
) -> ServiceConfig {
    let mut paths: Vec<PathBuf> = Vec::new();
    for (j, raw) in s.paths.iter().enumerate() {
        let key = format!("{path}.paths[{j}]");
        let trimmed = raw.trim_end_matches('/');
        let dir = PathBuf::from(trimmed);
        if !raw.starts_with('/') {
            p.push(Problem::new(
                key,
                format!("{raw:?} must be an absolute path"),
            ));
        } else if trimmed.is_empty() {
            p.push(Problem::new(
                key,
                "\"/\" cannot be mirrored: name the data directories",
            ));
        } else if dir
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            p.push(Problem::new(
                key,
                format!("{raw:?} must not contain \"..\""),
            ));
        } else if paths.contains(&dir) {
            p.push(Problem::new(key, format!("{raw:?} is listed twice")));
        } else {
            paths.push(dir);
        }
    }
    let max_lag = match &s.max_lag {
        Some(text) => positive_duration(text, &format!("{path}.max_lag"), p).unwrap_or(default_lag),
        None => default_lag,
    };
    let after = parse_duration(&s.failback_after).unwrap_or_else(|why| {
        p.push(Problem::new(format!("{path}.failback_after"), why));
        Duration::ZERO
    });
    let failback_after = match s.failback.as_str() {
        "manual" => None,
        "auto" => Some(after),
        other => {
            p.push(Problem::new(
                format!("{path}.failback"),
                format!("{other:?} is not a failback mode: use \"manual\" or \"auto\""),
            ));
            None
        }
    };
    let on_no_candidate = match s.on_no_candidate.as_str() {
        "wait" => NoCandidate::Wait,
        "freshest" => NoCandidate::Freshest,
        other => {
            p.push(Problem::new(
                format!("{path}.on_no_candidate"),
                format!("{other:?} is not a policy: use \"wait\" or \"freshest\""),
            ));
            NoCandidate::Wait
        }
    };
    let mut hook = |key: &str, argv: &Option<Vec<String>>| -> Option<Vec<String>> {
        let argv = argv.as_ref()?;
        let key = format!("{path}.{key}");
        if argv.first().is_none_or(|a| a.trim().is_empty()) {
            p.push(Problem::new(
                key,
                "a hook is a command with its arguments, e.g. [\"/usr/local/bin/promote\", \"{service}\"]",
            ));
            return None;
        }
        for (k, arg) in argv.iter().enumerate() {
            if let Some(bad) = unknown_placeholder(arg) {
                p.push(Problem::new(
                    format!("{key}[{k}]"),
                    format!(
                        "unknown placeholder {bad}; use {}",
                        HOOK_PLACEHOLDERS.join(", ")
                    ),
                ));
            }
        }
        Some(argv.clone())
    };
    let hooks = Hooks {
        promote: hook("promote", &s.promote),
        demote: hook("demote", &s.demote),
        fence: hook("fence", &s.fence),
        epoch_guard: hook("epoch_guard", &s.epoch_guard),
    };
    if s.demote.is_some() && s.promote.is_none() {
        // A failed switchover re-promotes the old primary with `promote`: without it, a
        // demoted primary would stay demoted.
        p.push(Problem::new(
            format!("{path}.demote"),
            "needs a promote hook too: a failed switchover re-enables the demoted primary with it",
        ));
    }
    let fencing = match (s.fencing.as_str(), &s.fence) {
        ("best-effort", None) => Fencing::Off,
        ("best-effort", Some(_)) => Fencing::BestEffort,
        ("required", Some(_)) => Fencing::Required,
        ("none", None) => Fencing::Off,
        ("required", None) => {
            p.push(Problem::new(
                format!("{path}.fencing"),
                "\"required\" needs a fence command (service.fence)",
            ));
            Fencing::Off
        }
        ("none", Some(_)) => {
            p.push(Problem::new(
                format!("{path}.fencing"),
                "\"none\" says there is no fencing, but service.fence is set",
            ));
            Fencing::Off
        }
        (other, _) => {
            p.push(Problem::new(
                format!("{path}.fencing"),
                format!(
                    "{other:?} is not a fencing mode: use \"best-effort\", \"required\" or \"none\""
                ),
            ));
            Fencing::Off
        }
    };
    let election = match s.election.as_str() {
        "freshest" => Election::Freshest,
        "round-robin" => Election::RoundRobin,
        other => {
            p.push(Problem::new(
                format!("{path}.election"),
                format!("{other:?} is not an election rule: use \"freshest\" or \"round-robin\""),
            ));
            Election::Freshest
        }
    };
    let hook_timeout = positive_duration(&s.hook_timeout, &format!("{path}.hook_timeout"), p)
        .unwrap_or(Duration::from_secs(30));
    ServiceConfig {
        name,
        nodes: members,
        paths,
        max_lag,
        failback_after,
        on_no_candidate,
        election,
        fencing,
        unfenced_by_choice: s.fencing == "none",
        hooks,
        hook_timeout,
    }
}

/// The first `{word}` in `arg` that is not a known placeholder.
fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        let end = tail.find('}')?;
        let token = &tail[..=end];
        if !HOOK_PLACEHOLDERS.contains(&token) {
            return Some(token.to_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Nodes, services and in-zone name servers share the zone's names; each name may
/// answer for one thing only.
fn check_name_collisions(raw: &RawConfig, zone: &str, p: &mut Vec<Problem>) {
    let mut owners: HashMap<String, String> = HashMap::new();
    for (i, n) in raw.node.iter().enumerate() {
        owners
            .entry(n.name.to_ascii_lowercase())
            .or_insert(format!("node[{i}]"));
    }
    for (i, s) in raw.service.iter().enumerate() {
        let name = s.name.to_ascii_lowercase();
        if let Some(owner) = owners.get(&name)
            && owner.starts_with("node")
        {
            p.push(Problem::new(
                format!("service[{i}].name"),
                format!("{name:?} is also the name of {owner}; both would answer {name}.{zone}"),
            ));
        }
        owners.entry(name).or_insert(format!("service[{i}]"));
    }
    for (i, ns) in raw.dns.nameservers.iter().enumerate() {
        let name = ns.name.to_ascii_lowercase();
        if let Some(label) = name.strip_suffix(&format!(".{zone}"))
            && let Some(owner) = owners.get(label)
        {
            p.push(Problem::new(
                format!("dns.nameservers[{i}].name"),
                format!("{name} is also answered for {owner}; give the name server its own name"),
            ));
        }
    }
}

fn absolute_path(s: &str, path: &str, p: &mut Vec<Problem>) -> PathBuf {
    let pb = PathBuf::from(s);
    if !pb.is_absolute() {
        p.push(Problem::new(
            path,
            format!("{s:?} must be an absolute path"),
        ));
    }
    pb
}

fn positive_duration(s: &str, path: &str, p: &mut Vec<Problem>) -> Option<Duration> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => {
            p.push(Problem::new(path, "must be longer than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(why) => {
            p.push(Problem::new(path, why));
            None
        }
    }
}

fn ttl_seconds(s: &str, path: &str, p: &mut Vec<Problem>) -> u32 {
    match parse_duration(s) {
        Ok(d) if d.subsec_nanos() != 0 => {
            p.push(Problem::new(
                path,
                format!("{s:?}: a TTL is a whole number of seconds"),
            ));
            0
        }
        Ok(d) if d.as_secs() > i32::MAX as u64 => {
            p.push(Problem::new(
                path,
                format!("{s:?} is longer than a TTL can be (2^31-1 seconds)"),
            ));
            0
        }
        Ok(d) => d.as_secs() as u32,
        Err(why) => {
            p.push(Problem::new(path, why));
            0
        }
    }
}

/// Parses "500ms", "5s", "1m 30s".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write e.g. \"500ms\", \"5s\" or \"2m\"")
    })
}

/// A DNS label usable as `<label>.<zone>`: letters, digits and inner hyphens.
fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("it is empty".into());
    }
    if label.len() > 63 {
        return Err("longer than 63 characters".into());
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("starts or ends with a hyphen".into());
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(format!("{c:?} is not a letter, digit or hyphen"));
    }
    Ok(())
}

/// A fully qualified name (trailing dot already checked by the caller).
fn check_domain_name(name: &str) -> Result<(), String> {
    if name == "." {
        return Err("the root zone cannot be served".into());
    }
    if name.len() > 254 {
        return Err("longer than 253 characters".into());
    }
    for label in name.trim_end_matches('.').split('.') {
        check_label(label).map_err(|why| format!("label {label:?}: {why}"))?;
    }
    Ok(())
}
