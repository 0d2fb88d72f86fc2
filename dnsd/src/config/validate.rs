//! Validation: checks every key of a [`RawConfig`] and builds the typed [`Config`], or
//! returns every [`Problem`] with its key path, so one run of `check-config` shows all.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawCheck, RawConfig, RawControl, RawDns, RawHeartbeat, RawNode, RawService};
use heartbeat::MonitorConfig;

use super::model::{
    AddrPrefix, CHECK_PLACEHOLDERS, CheckProbe, Config, ControlConfig, ControlTcp,
    ControlTransport, DnsConfig, FlapConfig, HOOK_PLACEHOLDERS, Hooks, NOTIFY_RETRY_MAX,
    NameserverConfig, NodeConfig, RestartConfig, ServiceCheck, ServiceConfig, SoaTimers,
    StateConfig, TsigAlgorithm, TsigConfig,
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
                } else if s.restart.is_some() {
                    Some("restart")
                } else {
                    None
                };
                if let Some(key) = needs {
                    p.push(Problem::new(
                        format!("service[{i}].{key}"),
                        "needs a [mirror] section: how the terminal server reaches members over SSH",
                    ));
                }
                if s.check.as_ref().is_some_and(|c| c.kind == "command") {
                    p.push(Problem::new(
                        format!("service[{i}].check"),
                        "a command check runs on the member over SSH: it needs a [mirror] section",
                    ));
                }
            }
        }

        if let Some(cluster) = &self.cluster {
            p.extend(
                cluster
                    .problems(heartbeat.interval)
                    .into_iter()
                    .map(|(path, message)| Problem::new(path, message)),
            );
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
                cluster: self.cluster.clone(),
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

        let soa = SoaTimers {
            refresh: soa_seconds(&self.soa_refresh, "dns.soa_refresh", p),
            retry: soa_seconds(&self.soa_retry, "dns.soa_retry", p),
            expire: soa_seconds(&self.soa_expire, "dns.soa_expire", p),
        };
        if soa.refresh > 0 && soa.retry >= soa.refresh {
            p.push(Problem::new(
                "dns.soa_retry",
                format!(
                    "{:?} must be shorter than dns.soa_refresh ({:?}): secondaries retry a failed refresh sooner than they refresh",
                    self.soa_retry, self.soa_refresh
                ),
            ));
        }
        if soa.refresh > 0
            && soa.retry > 0
            && u64::from(soa.expire) <= u64::from(soa.refresh) + u64::from(soa.retry)
        {
            p.push(Problem::new(
                "dns.soa_expire",
                format!(
                    "{:?} must be longer than dns.soa_refresh + dns.soa_retry: secondaries would drop the zone before their first retry",
                    self.soa_expire
                ),
            ));
        }

        let threads = match self.threads {
            Some(0) => {
                p.push(Problem::new("dns.threads", "must be at least 1"));
                1
            }
            Some(n) if n > MAX_DNS_THREADS => {
                p.push(Problem::new(
                    "dns.threads",
                    format!("{n} is more than {MAX_DNS_THREADS} sockets per address"),
                ));
                1
            }
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if self.tcp_max_connections == 0 {
            p.push(Problem::new(
                "dns.tcp_max_connections",
                "must be at least 1 (DNS needs TCP for answers that do not fit in UDP)",
            ));
        }
        let tcp_idle_timeout = positive_duration(&self.tcp_idle_timeout, "dns.tcp_idle_timeout", p)
            .unwrap_or(Duration::from_secs(10));

        let mut allow_transfer = Vec::new();
        for (i, a) in self.allow_transfer.iter().enumerate() {
            match AddrPrefix::parse(a) {
                Ok(prefix) => allow_transfer.push(prefix),
                Err(why) => p.push(Problem::new(
                    format!("dns.allow_transfer[{i}]"),
                    why.to_string(),
                )),
            }
        }

        let tsig = self.tsig.as_ref().and_then(|t| {
            let name = t.name.to_ascii_lowercase();
            let fqdn = if name.ends_with('.') {
                name
            } else {
                format!("{name}.")
            };
            let mut ok = true;
            if let Err(why) = check_key_name(&fqdn) {
                p.push(Problem::new(
                    "dns.tsig.name",
                    format!("{:?} is not a valid key name: {why}", t.name),
                ));
                ok = false;
            }
            let algorithm = TsigAlgorithm::ALL
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&t.algorithm))
                .map(|(_, a)| *a);
            if algorithm.is_none() {
                p.push(Problem::new(
                    "dns.tsig.algorithm",
                    format!(
                        "{:?} is not supported: use \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\"",
                        t.algorithm
                    ),
                ));
            }
            let secret_file = absolute_path(&t.secret_file, "dns.tsig.secret_file", p);
            Some(TsigConfig {
                name: fqdn,
                algorithm: algorithm?,
                secret_file,
            })
            .filter(|_| ok)
        });

        let mut notify = Vec::new();
        let mut notify_seen = HashSet::new();
        for (i, n) in self.notify.iter().enumerate() {
            match n.parse::<SocketAddr>() {
                Ok(sa) if !notify_seen.insert(sa) => p.push(Problem::new(
                    format!("dns.notify[{i}]"),
                    format!("{sa} is listed twice"),
                )),
                Ok(sa) if sa.port() == 0 || sa.ip().is_unspecified() => p.push(Problem::new(
                    format!("dns.notify[{i}]"),
                    format!("{sa} cannot be sent to: name the secondary's address and port"),
                )),
                Ok(sa) => notify.push(sa),
                Err(_) => p.push(Problem::new(
                    format!("dns.notify[{i}]"),
                    format!(
                        "{n:?} is not an address:port (e.g. \"192.0.2.53:53\" or \"[2001:db8::53]:53\")"
                    ),
                )),
            }
        }
        let notify_retry = positive_duration(&self.notify_retry, "dns.notify_retry", p)
            .unwrap_or(Duration::from_secs(2));
        if notify_retry > NOTIFY_RETRY_MAX {
            p.push(Problem::new(
                "dns.notify_retry",
                format!(
                    "{:?} is longer than the longest NOTIFY retransmission delay (60s, RFC 1996)",
                    self.notify_retry
                ),
            ));
        }

        DnsConfig {
            listen,
            zone,
            ttl,
            negative_ttl,
            hostmaster,
            nameservers,
            soa,
            threads,
            tcp_max_connections: self.tcp_max_connections as usize,
            tcp_idle_timeout,
            allow_transfer,
            tsig,
            notify,
            notify_retry,
        }
    }
}

/// Most UDP sockets (each with its thread) per DNS address.
const MAX_DNS_THREADS: u32 = 256;

/// A SOA timer: whole seconds, above zero, at most 2^31-1 (RFC 1982 serial arithmetic
/// leaves the top bit to the sign).
fn soa_seconds(s: &str, path: &str, p: &mut Vec<Problem>) -> u32 {
    let before = p.len();
    let secs = ttl_seconds(s, path, p);
    if p.len() == before && secs == 0 {
        p.push(Problem::new(path, "must be longer than zero"));
    }
    secs
}

/// A TSIG key name: a domain name whose labels may hold any of letters, digits, hyphens
/// and underscores (BIND and Knot key names often do).
fn check_key_name(name: &str) -> Result<(), String> {
    if name == "." || name.len() > 254 {
        return Err("it must be 1 to 253 characters".into());
    }
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} must be 1 to 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{c:?} is not a letter, digit, hyphen or underscore"
            ));
        }
    }
    Ok(())
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
        let header_timeout = positive_duration(&self.header_timeout, "control.header_timeout", p)
            .unwrap_or_default();
        if self.max_connections == 0 {
            p.push(Problem::new(
                "control.max_connections",
                "must be at least 1: no connection would ever be served",
            ));
        }
        let tcp = match &self.tcp {
            None => {
                self.unused_without_tcp(p);
                None
            }
            Some(addr) => self.validate_tcp(addr, p),
        };
        ControlConfig {
            socket,
            tcp,
            header_timeout,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// The TCP keys only mean something with `control.tcp`.
    fn unused_without_tcp(&self, p: &mut Vec<Problem>) {
        let set = [
            ("control.token_file", self.token_file.is_some()),
            ("control.tls_cert", self.tls_cert.is_some()),
            ("control.tls_key", self.tls_key.is_some()),
            (
                "control.allow_plain_tcp_on_loopback",
                self.allow_plain_tcp_on_loopback,
            ),
        ];
        for (key, _) in set.into_iter().filter(|(_, set)| *set) {
            p.push(Problem::new(key, "is only used with control.tcp"));
        }
    }

    fn validate_tcp(&self, addr: &str, p: &mut Vec<Problem>) -> Option<ControlTcp> {
        let addr = match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.push(Problem::new(
                    "control.tcp",
                    format!("{addr:?} is not an address:port"),
                ));
                None
            }
        };
        let token_file = match &self.token_file {
            Some(token) => Some(absolute_path(token, "control.token_file", p)),
            None => {
                p.push(Problem::new("control.tcp", "needs control.token_file: the control API is never open on TCP without a token"));
                None
            }
        };
        let transport = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(ControlTransport::Tls {
                cert: absolute_path(cert, "control.tls_cert", p),
                key: absolute_path(key, "control.tls_key", p),
            }),
            (Some(_), None) => {
                p.push(Problem::new(
                    "control.tls_cert",
                    "needs control.tls_key: the private key of the certificate",
                ));
                None
            }
            (None, Some(_)) => {
                p.push(Problem::new(
                    "control.tls_key",
                    "needs control.tls_cert: the certificate of the key",
                ));
                None
            }
            (None, None) if !self.allow_plain_tcp_on_loopback => {
                p.push(Problem::new(
                    "control.tcp",
                    "needs control.tls_cert and control.tls_key: the control API is served on \
                     TCP only over TLS (plain HTTP only on a loopback address, with \
                     control.allow_plain_tcp_on_loopback = true)",
                ));
                None
            }
            (None, None) => match addr {
                Some(a) if !a.ip().is_loopback() => {
                    p.push(Problem::new(
                        "control.allow_plain_tcp_on_loopback",
                        format!(
                            "control.tcp {a} is not a loopback address: plain HTTP would carry \
                             the token in clear across the network; configure \
                             control.tls_cert and control.tls_key"
                        ),
                    ));
                    None
                }
                _ => Some(ControlTransport::PlainLoopback),
            },
        };
        Some(ControlTcp {
            addr: addr?,
            token_file: token_file?,
            transport: transport?,
        })
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
        command_argv(argv, &key, HOOK_ARGV, &HOOK_PLACEHOLDERS, p).then(|| argv.clone())
    };
    let hooks = Hooks {
        promote: hook("promote", &s.promote),
        demote: hook("demote", &s.demote),
        fence: hook("fence", &s.fence),
        epoch_guard: hook("epoch_guard", &s.epoch_guard),
        restart: hook("restart", &s.restart),
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
    let check = validate_check(s, path, p);
    let restart = validate_restart(s, path, check.as_ref(), p);
    let flap = validate_flap(s, path, p);
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
        check,
        restart,
        flap,
    }
}

const HOOK_ARGV: &str =
    "a hook is a command with its arguments, e.g. [\"/usr/local/bin/promote\", \"{service}\"]";
const CHECK_ARGV: &str =
    "a check is a command with its arguments, e.g. [\"/usr/local/bin/check-app\", \"{service}\"]";

/// A command (hook or check) as an argv: a program, then arguments whose placeholders are
/// all in `placeholders`. Reports what is wrong under `key` (`empty` when there is no
/// program); true when it is usable.
fn command_argv(
    argv: &[String],
    key: &str,
    empty: &str,
    placeholders: &[&str],
    p: &mut Vec<Problem>,
) -> bool {
    if argv.first().is_none_or(|a| a.trim().is_empty()) {
        p.push(Problem::new(key, empty));
        return false;
    }
    let mut ok = true;
    for (k, arg) in argv.iter().enumerate() {
        if let Some(bad) = unknown_placeholder(arg, placeholders) {
            ok = false;
            p.push(Problem::new(
                format!("{key}[{k}]"),
                format!("unknown placeholder {bad}; use {}", placeholders.join(", ")),
            ));
        }
    }
    ok
}

/// Defaults of the check's timing, as the README documents them.
const CHECK_INTERVAL: &str = "2s";
const CHECK_TIMEOUT: &str = "1s";
const CHECK_FALL: u32 = 3;
const CHECK_RISE: u32 = 2;
const RESTART_ATTEMPTS: u32 = 2;
const RESTART_WINDOW: &str = "30s";

/// `check` and its `check_*` keys.
fn validate_check(s: &RawService, path: &str, p: &mut Vec<Problem>) -> Option<ServiceCheck> {
    let Some(raw) = &s.check else {
        let set = [
            ("check_interval", s.check_interval.is_some()),
            ("check_timeout", s.check_timeout.is_some()),
            ("check_fall", s.check_fall.is_some()),
            ("check_rise", s.check_rise.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, set)| *set) {
            p.push(Problem::new(
                format!("{path}.{key}"),
                "is only used with check (the service has none)",
            ));
        }
        return None;
    };
    let probe = validate_probe(raw, &format!("{path}.check"), p);
    let interval = positive_duration(
        s.check_interval.as_deref().unwrap_or(CHECK_INTERVAL),
        &format!("{path}.check_interval"),
        p,
    );
    let timeout = positive_duration(
        s.check_timeout.as_deref().unwrap_or(CHECK_TIMEOUT),
        &format!("{path}.check_timeout"),
        p,
    );
    if let (Some(interval), Some(timeout)) = (interval, timeout)
        && timeout >= interval
    {
        p.push(Problem::new(
            format!("{path}.check_timeout"),
            format!(
                "{} must be shorter than check_interval ({})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        ));
    }
    let mut threshold = |key: &str, value: Option<u32>, default: u32| {
        let value = value.unwrap_or(default);
        if value == 0 {
            p.push(Problem::new(format!("{path}.{key}"), "must be at least 1"));
        }
        value.max(1)
    };
    let fall = threshold("check_fall", s.check_fall, CHECK_FALL);
    let rise = threshold("check_rise", s.check_rise, CHECK_RISE);
    Some(ServiceCheck {
        probe: probe?,
        interval: interval?,
        timeout: timeout?,
        rise,
        fall,
    })
}

/// The `check = { kind = ... }` table itself, under `key`.
fn validate_probe(raw: &RawCheck, key: &str, p: &mut Vec<Problem>) -> Option<CheckProbe> {
    let kind = raw.kind.as_str();
    let allowed: &[&str] = match kind {
        "http" => &["port", "path", "expect"],
        "tcp" => &["port"],
        "command" => &["argv"],
        other => {
            p.push(Problem::new(
                format!("{key}.kind"),
                format!("{other:?} is not a check kind: use \"http\", \"tcp\" or \"command\""),
            ));
            return None;
        }
    };
    let present = [
        ("port", raw.port.is_some()),
        ("path", raw.path.is_some()),
        ("expect", raw.expect.is_some()),
        ("argv", raw.argv.is_some()),
    ];
    let mut ok = true;
    for (field, _) in present
        .iter()
        .filter(|(f, set)| *set && !allowed.contains(f))
    {
        ok = false;
        p.push(Problem::new(
            format!("{key}.{field}"),
            format!("is not used by a {kind:?} check"),
        ));
    }
    let mut port = || match raw.port {
        None => {
            p.push(Problem::new(
                format!("{key}.port"),
                format!("a {kind:?} check needs the port to check on each member"),
            ));
            None
        }
        Some(0) => {
            p.push(Problem::new(
                format!("{key}.port"),
                "port 0 cannot be checked",
            ));
            None
        }
        Some(port) => Some(port),
    };
    let probe = match kind {
        "http" => {
            let port = port();
            let path = raw.path.clone().unwrap_or_else(|| "/".to_owned());
            let path_ok =
                path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control());
            if !path_ok {
                p.push(Problem::new(
                    format!("{key}.path"),
                    format!(
                        "{path:?} must start with \"/\" and hold no spaces or control characters"
                    ),
                ));
            }
            let expect = raw.expect.unwrap_or(200);
            if !(100..=599).contains(&expect) {
                p.push(Problem::new(
                    format!("{key}.expect"),
                    format!("{expect} is not an HTTP status (100 to 599)"),
                ));
            }
            (path_ok && (100..=599).contains(&expect))
                .then_some(())
                .and(port)
                .map(|port| CheckProbe::Http { port, path, expect })
        }
        "tcp" => port().map(|port| CheckProbe::Tcp { port }),
        _ => match &raw.argv {
            None => {
                p.push(Problem::new(
                    format!("{key}.argv"),
                    "a \"command\" check needs argv: the command run on each member, e.g. [\"/usr/local/bin/check-app\", \"{service}\"]",
                ));
                None
            }
            Some(argv) => {
                let key = format!("{key}.argv");
                command_argv(argv, &key, CHECK_ARGV, &CHECK_PLACEHOLDERS, p)
                    .then(|| CheckProbe::Command { argv: argv.clone() })
            }
        },
    };
    probe.filter(|_| ok)
}

/// `restart`, `restart_attempts` and `restart_window`.
fn validate_restart(
    s: &RawService,
    path: &str,
    check: Option<&ServiceCheck>,
    p: &mut Vec<Problem>,
) -> Option<RestartConfig> {
    if s.restart.is_none() {
        for (key, set) in [
            ("restart_attempts", s.restart_attempts.is_some()),
            ("restart_window", s.restart_window.is_some()),
        ] {
            if set {
                p.push(Problem::new(
                    format!("{path}.{key}"),
                    "is only used with restart (the service has none)",
                ));
            }
        }
        return None;
    }
    if s.check.is_none() {
        p.push(Problem::new(
            format!("{path}.restart"),
            "needs a check: a restart is tried when the check fails on a primary whose host answers",
        ));
    }
    let attempts = s.restart_attempts.unwrap_or(RESTART_ATTEMPTS);
    if attempts == 0 {
        p.push(Problem::new(
            format!("{path}.restart_attempts"),
            "must be at least 1 (leave restart out to fail over at once)",
        ));
    }
    let window = positive_duration(
        s.restart_window.as_deref().unwrap_or(RESTART_WINDOW),
        &format!("{path}.restart_window"),
        p,
    )?;
    if let Some(check) = check {
        // The least time a restarted service takes to be seen passing.
        let seen = check.interval.saturating_mul(check.rise);
        if window <= seen {
            p.push(Problem::new(
                format!("{path}.restart_window"),
                format!(
                    "{} is not longer than check_rise × check_interval ({}): a restarted service could not be seen passing in time",
                    humantime::format_duration(window),
                    humantime::format_duration(seen)
                ),
            ));
        }
    }
    (attempts > 0).then_some(RestartConfig { attempts, window })
}

/// `flap_threshold`, `flap_window` and `hold_down`; a threshold of 0 turns damping off.
fn validate_flap(s: &RawService, path: &str, p: &mut Vec<Problem>) -> Option<FlapConfig> {
    let window = positive_duration(&s.flap_window, &format!("{path}.flap_window"), p);
    let hold_down = positive_duration(&s.hold_down, &format!("{path}.hold_down"), p);
    if s.flap_threshold == 0 {
        return None;
    }
    Some(FlapConfig {
        threshold: s.flap_threshold,
        window: window?,
        hold_down: hold_down?,
    })
}

/// The first `{word}` in `arg` that is not one of `placeholders`.
fn unknown_placeholder(arg: &str, placeholders: &[&str]) -> Option<String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        let end = tail.find('}')?;
        let token = &tail[..=end];
        if !placeholders.contains(&token) {
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
