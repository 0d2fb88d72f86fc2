//! The terminal server's configuration: one TOML file, `DNSD_` environment overrides,
//! and a validation pass that names the key path of every problem it finds.
//!
//! Parsing happens in two layers. The `Raw*` structs mirror the file: durations,
//! addresses and names are kept as the strings the operator wrote, so that a bad value
//! does not stop the deserializer at the first mistake. [`RawConfig::validate`] then
//! checks everything and either returns the typed [`Config`] or the full list of
//! [`Problem`]s. Unknown keys are collected while deserializing (every one of them,
//! with its path) and refused like any other problem.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::controller::{Fencing, NoCandidate};

/// Prefix of the environment variables that override file keys
/// (`DNSD_HEARTBEAT__INTERVAL=1s` overrides `heartbeat.interval`).
pub const ENV_PREFIX: &str = "DNSD";

/// One thing wrong with a configuration, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Where, e.g. `node[2].address` or `heartbeat.timeout`.
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    #[error("cannot read configuration {path}: {message}")]
    Read { path: PathBuf, message: String },
    /// The file was read but its content is wrong; every problem is listed.
    #[error("{} problem(s) in configuration {}:\n{}", problems.len(), path.display(), ProblemList(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The file as written.

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    /// Authoritative DNS.
    pub dns: RawDns,
    /// Echo-port heartbeat of the pool.
    #[serde(default)]
    pub heartbeat: RawHeartbeat,
    /// Where operators reach the daemon.
    #[serde(default)]
    pub control: RawControl,
    /// Where roles and epochs are persisted.
    #[serde(default)]
    pub state: RawState,
    /// The pool members.
    #[serde(default)]
    pub node: Vec<RawNode>,
    /// The services, each answered at `<name>.<zone>`.
    #[serde(default)]
    pub service: Vec<RawService>,
    /// How members are reached over SSH and mirrored with rsync.
    #[serde(default)]
    pub mirror: Option<rsync_sync::config::MirrorConfig>,
}

/// `[dns]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawDns {
    /// Addresses to serve on, UDP and TCP on each.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// The zone this server is authoritative for, with a trailing dot.
    pub zone: String,
    /// TTL of every answer, whole seconds ("5s").
    #[serde(default = "default_ttl")]
    pub ttl: String,
    /// TTL of negative answers (the SOA minimum); defaults to `ttl`.
    #[serde(default)]
    pub negative_ttl: Option<String>,
    /// Mailbox in the SOA, as a domain name; defaults to `hostmaster.<zone>`.
    #[serde(default)]
    pub hostmaster: Option<String>,
    /// The zone's name servers (NS records; glue when inside the zone).
    #[serde(default)]
    pub nameservers: Vec<RawNameserver>,
}

/// One `[[dns.nameservers]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct RawNameserver {
    /// Fully qualified name of the name server.
    pub name: String,
    /// Its address, served as glue when the name is inside the zone.
    pub address: String,
}

/// `[heartbeat]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawHeartbeat {
    /// `tcp` or `udp` (RFC 862 echo).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Echo port on every member.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Time between two probes of one member.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How long one probe may take; must be shorter than `interval`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Consecutive misses before a member is down.
    #[serde(default = "default_threshold")]
    pub fall: u32,
    /// Consecutive answers before a member is up again.
    #[serde(default = "default_threshold")]
    pub rise: u32,
}

impl Default for RawHeartbeat {
    fn default() -> Self {
        Self {
            protocol: default_protocol(),
            port: default_port(),
            interval: default_interval(),
            timeout: default_timeout(),
            fall: default_threshold(),
            rise: default_threshold(),
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawControl {
    /// Unix socket of the control API (mode 0600).
    #[serde(default = "default_socket")]
    pub socket: String,
    /// Optional TCP address of the control API; requires `token_file`.
    #[serde(default)]
    pub tcp: Option<String>,
    /// File holding the bearer token TCP clients must present.
    #[serde(default)]
    pub token_file: Option<String>,
}

impl Default for RawControl {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            tcp: None,
            token_file: None,
        }
    }
}

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawState {
    /// Directory of the state file.
    #[serde(default = "default_state_dir")]
    pub dir: String,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
        }
    }
}

/// One `[[node]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawNode {
    /// Name, also answered as `<name>.<zone>`.
    pub name: String,
    /// IPv4 or IPv6 address.
    pub address: String,
    /// Prefix of every service path on this node (members sharing one filesystem).
    #[serde(default)]
    pub root: Option<String>,
}

/// One `[[service]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawService {
    /// Name, answered as `<name>.<zone>`.
    pub name: String,
    /// Members in round-robin order; the first is the preferred primary.
    pub nodes: Vec<String>,
    /// Directories mirrored from the primary to every secondary.
    #[serde(default)]
    pub paths: Vec<String>,
    /// A member whose last complete pass is older than this is not promoted.
    #[serde(default)]
    pub max_lag: Option<String>,
    /// "manual" (operator's `failback`) or "auto" (after `failback_after`).
    #[serde(default = "default_failback")]
    pub failback: String,
    /// How long the preferred member must be up and in sync before an automatic failback.
    #[serde(default = "default_failback_after")]
    pub failback_after: String,
    /// When no member is eligible: "wait" or "freshest".
    #[serde(default = "default_on_no_candidate")]
    pub on_no_candidate: String,
    /// Command (argv) run on a member over SSH before it becomes primary.
    #[serde(default)]
    pub promote: Option<Vec<String>>,
    /// Command (argv) run on the primary over SSH to stop writes before a switchover.
    #[serde(default)]
    pub demote: Option<Vec<String>>,
    /// Command (argv) run on the terminal server against a failed primary.
    #[serde(default)]
    pub fence: Option<Vec<String>>,
    /// "best-effort" (promote even if `fence` fails) or "required".
    #[serde(default = "default_fencing")]
    pub fencing: String,
    /// Longest a hook may run.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout: String,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:5353".to_owned()]
}
fn default_ttl() -> String {
    "5s".to_owned()
}
fn default_protocol() -> String {
    "tcp".to_owned()
}
fn default_port() -> u16 {
    7
}
fn default_interval() -> String {
    "500ms".to_owned()
}
fn default_timeout() -> String {
    "400ms".to_owned()
}
fn default_threshold() -> u32 {
    3
}
fn default_socket() -> String {
    "/run/dnsd/control.sock".to_owned()
}
fn default_state_dir() -> String {
    "/var/lib/dnsd".to_owned()
}
fn default_failback() -> String {
    "manual".to_owned()
}
fn default_failback_after() -> String {
    "30s".to_owned()
}
fn default_on_no_candidate() -> String {
    "wait".to_owned()
}
fn default_fencing() -> String {
    "best-effort".to_owned()
}
fn default_hook_timeout() -> String {
    "30s".to_owned()
}

// ---------------------------------------------------------------------------
// The validated configuration.

/// A configuration that passed validation; the daemon only ever sees this.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dns: DnsConfig,
    pub heartbeat: HeartbeatConfig,
    pub control: ControlConfig,
    pub state: StateConfig,
    pub nodes: Vec<NodeConfig>,
    pub services: Vec<ServiceConfig>,
    /// Present when any service mirrors or has member hooks.
    pub mirror: Option<rsync_sync::config::MirrorSettings>,
}

/// Validated `[dns]`. Names are lower case and end with a dot.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub listen: Vec<SocketAddr>,
    pub zone: String,
    pub ttl: u32,
    pub negative_ttl: u32,
    pub hostmaster: String,
    pub nameservers: Vec<NameserverConfig>,
}

/// Validated name server entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NameserverConfig {
    pub name: String,
    pub address: IpAddr,
}

/// Validated `[heartbeat]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    pub protocol: heartbeat::Protocol,
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

/// Validated `[control]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// TCP listener and the token file that guards it; both or neither.
    pub tcp: Option<(SocketAddr, PathBuf)>,
}

/// Validated `[state]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub dir: PathBuf,
}

/// Validated node. Its index in [`Config::nodes`] is its identity inside the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    pub address: IpAddr,
    /// Prefix of every service path on this node.
    pub root: Option<PathBuf>,
}

/// Validated service; `nodes` are indices into [`Config::nodes`], in round-robin order.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub nodes: Vec<usize>,
    /// Absolute directories, without trailing slash.
    pub paths: Vec<PathBuf>,
    pub max_lag: Duration,
    /// `Some(after)` for automatic failback.
    pub failback_after: Option<Duration>,
    pub on_no_candidate: NoCandidate,
    pub fencing: Fencing,
    pub hooks: Hooks,
    pub hook_timeout: Duration,
}

/// Hook commands of a service, as argv lists. `{service}`, `{node}`, `{address}` and
/// `{epoch}` in an argument are replaced before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub promote: Option<Vec<String>>,
    pub demote: Option<Vec<String>>,
    pub fence: Option<Vec<String>>,
}

/// The placeholders a hook argument may contain.
pub const HOOK_PLACEHOLDERS: [&str; 4] = ["{service}", "{node}", "{address}", "{epoch}"];

// ---------------------------------------------------------------------------
// Loading.

/// Reads `path` and applies `DNSD_*` overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (tests use this).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let raw = parse(&text, env).map_err(|e| match e {
        ParseFailure::Syntax(message) => ConfigError::Read {
            path: path.to_owned(),
            message,
        },
        ParseFailure::Problems(problems) => ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        },
    })?;
    raw.validate().map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

/// Why [`parse`] failed.
#[derive(Debug)]
pub enum ParseFailure {
    /// Not TOML at all.
    Syntax(String),
    /// TOML, but with unknown keys or values of the wrong type.
    Problems(Vec<Problem>),
}

/// Parses TOML text plus `DNSD_*` overrides into the raw structs, refusing unknown keys.
pub fn parse(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ParseFailure> {
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
        .collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("dns.listen")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .map_err(|e| ParseFailure::Syntax(e.to_string()))?;

    let mut unknown = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| {
        unknown.push(Problem::new(render_ignored_path(&path), "unknown key"));
    };
    let de = serde_ignored::Deserializer::new(built, &mut note_unknown);
    let parsed: Result<RawConfig, _> = serde_path_to_error::deserialize(de);
    match parsed {
        Ok(raw) if unknown.is_empty() => Ok(raw),
        Ok(raw) => {
            // Unknown keys are refused, and everything else is checked too, so that one
            // run of check-config shows every problem.
            let mut problems = unknown;
            if let Err(more) = raw.validate() {
                problems.extend(more);
            }
            problems.sort();
            Err(ParseFailure::Problems(problems))
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let mut problems = unknown;
            problems.push(Problem::new(
                if path == "." { "(top level)" } else { &path },
                inner,
            ));
            problems.sort();
            Err(ParseFailure::Problems(problems))
        }
    }
}

/// Renders a serde_ignored path as `section.key` / `node[1].key`.
fn render_ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", render_ignored_path(parent)),
        P::Map { parent, key } => {
            let parent = render_ignored_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            render_ignored_path(parent)
        }
    }
}

// ---------------------------------------------------------------------------
// Validation.

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
    fn validate(&self, p: &mut Vec<Problem>) -> HeartbeatConfig {
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
        if self.port == 0 {
            p.push(Problem::new("heartbeat.port", "port 0 cannot be probed"));
        }
        let interval = positive_duration(&self.interval, "heartbeat.interval", p);
        let timeout = positive_duration(&self.timeout, "heartbeat.timeout", p);
        if let (Some(i), Some(t)) = (interval, timeout)
            && t >= i
        {
            p.push(Problem::new(
                "heartbeat.timeout",
                format!(
                    "timeout ({}) must be shorter than heartbeat.interval ({})",
                    self.timeout, self.interval
                ),
            ));
        }
        if self.fall == 0 {
            p.push(Problem::new("heartbeat.fall", "must be at least 1"));
        }
        if self.rise == 0 {
            p.push(Problem::new("heartbeat.rise", "must be at least 1"));
        }
        HeartbeatConfig {
            protocol,
            port: self.port,
            interval: interval.unwrap_or(Duration::from_millis(500)),
            timeout: timeout.unwrap_or(Duration::from_millis(400)),
            fall: self.fall,
            rise: self.rise,
        }
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
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.to_ascii_lowercase(), i))
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
    members: Vec<usize>,
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
    };
    let fencing = match (s.fencing.as_str(), &s.fence) {
        ("best-effort", None) => Fencing::Off,
        ("best-effort", Some(_)) => Fencing::BestEffort,
        ("required", Some(_)) => Fencing::Required,
        ("required", None) => {
            p.push(Problem::new(
                format!("{path}.fencing"),
                "\"required\" needs a fence command (service.fence)",
            ));
            Fencing::Off
        }
        (other, _) => {
            p.push(Problem::new(
                format!("{path}.fencing"),
                format!("{other:?} is not a fencing mode: use \"best-effort\" or \"required\""),
            ));
            Fencing::Off
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
        fencing,
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [dns]
        listen = ["127.0.0.1:5353"]
        zone = "svc.test."
        ttl = "5s"
        nameservers = [{ name = "ns1.svc.test.", address = "127.0.0.1" }]
        [heartbeat]
        protocol = "tcp"
        port = 7
        interval = "500ms"
        timeout = "400ms"
        fall = 3
        rise = 3
        [control]
        socket = "/run/dnsd/control.sock"
        [state]
        dir = "/var/lib/dnsd"
        [[node]]
        name = "app1"
        address = "10.0.0.11"
        [[node]]
        name = "app2"
        address = "fd00::12"
        [[service]]
        name = "www"
        nodes = ["app1", "app2"]
    "#;

    fn problems(text: &str) -> Vec<String> {
        problems_env(text, [])
    }

    fn problems_env<const N: usize>(text: &str, env: [(&str, &str); N]) -> Vec<String> {
        let env = env.map(|(k, v)| (k.to_owned(), v.to_owned()));
        match parse(text, env) {
            Err(ParseFailure::Problems(p)) => p.iter().map(ToString::to_string).collect(),
            Err(ParseFailure::Syntax(s)) => vec![format!("syntax: {s}")],
            Ok(raw) => match raw.validate() {
                Ok(_) => vec![],
                Err(p) => p.iter().map(ToString::to_string).collect(),
            },
        }
    }

    fn assert_problem(text: &str, expected: &str) {
        let got = problems(text);
        assert!(
            got.iter().any(|p| p == expected),
            "expected problem {expected:?}, got {got:#?}"
        );
    }

    #[test]
    fn good_config_validates() {
        let cfg = parse(GOOD, []).unwrap().validate().unwrap();
        assert_eq!(cfg.dns.zone, "svc.test.");
        assert_eq!(cfg.dns.ttl, 5);
        assert_eq!(cfg.dns.negative_ttl, 5);
        assert_eq!(cfg.dns.hostmaster, "hostmaster.svc.test.");
        assert_eq!(cfg.heartbeat.interval, Duration::from_millis(500));
        assert_eq!(cfg.heartbeat.protocol, heartbeat::Protocol::Tcp);
        assert_eq!(cfg.nodes[1].address, "fd00::12".parse::<IpAddr>().unwrap());
        assert_eq!(cfg.services[0].nodes, vec![0, 1]);
    }

    #[test]
    fn unknown_keys_are_all_reported_with_paths() {
        let text = GOOD
            .replace("fall = 3", "fall = 3\nfalls = 4")
            .replace("[state]", "[state]\nmode = 1")
            .replace("name = \"app2\"", "name = \"app2\"\nadress = \"x\"");
        let got = problems(&text);
        assert_eq!(
            got,
            vec![
                "heartbeat.falls: unknown key",
                "node[1].adress: unknown key",
                "state.mode: unknown key",
            ]
        );
        // Other problems come with them.
        let text = text.replace("fall = 3\n", "fall = 0\n");
        let got = problems(&text);
        assert!(
            got.contains(&"heartbeat.fall: must be at least 1".to_owned()),
            "{got:?}"
        );
        assert!(
            got.contains(&"state.mode: unknown key".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn unknown_section_is_reported() {
        assert_problem(&format!("{GOOD}\n[dsn]\nzone = \"x.\""), "dsn: unknown key");
    }

    #[test]
    fn duplicate_node() {
        let text = GOOD.replace("name = \"app2\"", "name = \"APP1\"");
        assert_problem(
            &text,
            "node[1].name: duplicate node \"app1\" (also node[0])",
        );
    }

    #[test]
    fn service_naming_unknown_node() {
        let text = GOOD.replace(
            "nodes = [\"app1\", \"app2\"]",
            "nodes = [\"app1\", \"app9\"]",
        );
        assert_problem(
            &text,
            "service[0].nodes[1]: unknown node \"app9\" (no [[node]] has this name)",
        );
    }

    #[test]
    fn service_listing_a_node_twice() {
        let text = GOOD.replace(
            "nodes = [\"app1\", \"app2\"]",
            "nodes = [\"app1\", \"app1\"]",
        );
        assert_problem(&text, "service[0].nodes[1]: node \"app1\" is listed twice");
    }

    #[test]
    fn bad_address() {
        let text = GOOD.replace("10.0.0.11", "10.0.0.256");
        assert_problem(
            &text,
            "node[0].address: \"10.0.0.256\" is not an IPv4 or IPv6 address",
        );
    }

    #[test]
    fn duplicate_address() {
        let text = GOOD.replace("fd00::12", "10.0.0.11");
        assert_problem(
            &text,
            "node[1].address: 10.0.0.11 is also the address of node[0]",
        );
    }

    #[test]
    fn zone_without_trailing_dot() {
        let text = GOOD.replace("zone = \"svc.test.\"", "zone = \"svc.test\"");
        assert_problem(
            &text,
            "dns.zone: \"svc.test\" must be fully qualified, with a trailing dot (\"svc.test.\")",
        );
    }

    #[test]
    fn timeout_not_shorter_than_interval() {
        let text = GOOD.replace("timeout = \"400ms\"", "timeout = \"500ms\"");
        assert_problem(
            &text,
            "heartbeat.timeout: timeout (500ms) must be shorter than heartbeat.interval (500ms)",
        );
    }

    #[test]
    fn fall_and_rise_of_zero() {
        let text = GOOD
            .replace("fall = 3", "fall = 0")
            .replace("rise = 3", "rise = 0");
        let got = problems(&text);
        assert!(
            got.contains(&"heartbeat.fall: must be at least 1".to_owned()),
            "{got:?}"
        );
        assert!(
            got.contains(&"heartbeat.rise: must be at least 1".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn bad_protocol_duration_and_ttl() {
        let text = GOOD
            .replace("protocol = \"tcp\"", "protocol = \"icmp\"")
            .replace("interval = \"500ms\"", "interval = \"soon\"")
            .replace("ttl = \"5s\"", "ttl = \"1500ms\"");
        let got = problems(&text);
        assert!(
            got.contains(
                &"heartbeat.protocol: \"icmp\" is not a protocol: use \"tcp\" or \"udp\""
                    .to_owned()
            ),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("heartbeat.interval: \"soon\" is not a duration")),
            "{got:?}"
        );
        assert!(
            got.contains(&"dns.ttl: \"1500ms\": a TTL is a whole number of seconds".to_owned()),
            "{got:?}"
        );
    }

    #[test]
    fn wrong_type_names_its_path() {
        let text = GOOD.replace("port = 7", "port = \"seven\"");
        let got = problems(&text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("heartbeat.port: "), "{got:?}");
    }

    #[test]
    fn missing_required_key() {
        let text = GOOD.replace("zone = \"svc.test.\"", "");
        let got = problems(&text);
        assert!(got.iter().any(|p| p.contains("zone")), "{got:?}");
    }

    #[test]
    fn node_and_service_names_must_differ() {
        let text = GOOD.replace("name = \"www\"", "name = \"app2\"");
        assert_problem(
            &text,
            "service[0].name: \"app2\" is also the name of node[1]; both would answer app2.svc.test.",
        );
    }

    #[test]
    fn node_name_must_be_a_label() {
        let text = GOOD.replace("name = \"app1\"", "name = \"app_1\"");
        let got = problems(&text);
        assert!(got.contains(&"node[0].name: \"app_1\" cannot be a DNS label: '_' is not a letter, digit or hyphen".to_owned()), "{got:?}");
    }

    #[test]
    fn control_tcp_needs_a_token_file() {
        let text = GOOD.replace(
            "socket = \"/run/dnsd/control.sock\"",
            "socket = \"/run/dnsd/control.sock\"\ntcp = \"127.0.0.1:8053\"",
        );
        assert_problem(
            &text,
            "control.tcp: needs control.token_file: the control API is never open on TCP without a token",
        );
        let text = GOOD.replace("socket = \"/run/dnsd/control.sock\"", "socket = \"/run/dnsd/control.sock\"\ntcp = \"127.0.0.1:8053\"\ntoken_file = \"/etc/dnsd/token\"");
        let cfg = parse(&text, []).unwrap().validate().unwrap();
        assert_eq!(
            cfg.control.tcp,
            Some((
                "127.0.0.1:8053".parse().unwrap(),
                PathBuf::from("/etc/dnsd/token")
            ))
        );
    }

    const MIRROR: &str = "\n[mirror]\ninterval = \"2s\"\nidentity = \"/etc/dnsd/id\"\nknown_hosts = \"/etc/dnsd/known_hosts\"\n";

    fn with_service_keys(keys: &str) -> String {
        GOOD.replace(
            "nodes = [\"app1\", \"app2\"]",
            &format!("nodes = [\"app1\", \"app2\"]\n{keys}"),
        )
    }

    #[test]
    fn mirrored_service_with_hooks_validates() {
        let text = with_service_keys(
            "paths = [\"/srv/data/\", \"/etc/app\"]\nfailback = \"auto\"\nfailback_after = \"1m\"\non_no_candidate = \"freshest\"\npromote = [\"/usr/local/bin/promote\", \"{service}\", \"--epoch={epoch}\"]\nfence = [\"/usr/local/bin/fence\", \"{address}\"]\nfencing = \"required\"",
        ) + MIRROR;
        let cfg = parse(&text, []).unwrap().validate().unwrap();
        let s = &cfg.services[0];
        assert_eq!(
            s.paths,
            vec![PathBuf::from("/srv/data"), PathBuf::from("/etc/app")]
        );
        assert_eq!(
            s.max_lag,
            Duration::from_millis(6_000 + 1_500),
            "3 x mirror.interval + heartbeat.fall x heartbeat.interval by default"
        );
        assert_eq!(s.failback_after, Some(Duration::from_secs(60)));
        assert_eq!(s.on_no_candidate, NoCandidate::Freshest);
        assert_eq!(s.fencing, Fencing::Required);
        assert_eq!(s.hooks.promote.as_ref().unwrap()[1], "{service}");
        assert_eq!(cfg.mirror.unwrap().interval, Duration::from_secs(2));
    }

    #[test]
    fn mirroring_problems_are_reported_with_their_paths() {
        let text = with_service_keys(
            "paths = [\"data\", \"/\"]\nfailback = \"sometimes\"\non_no_candidate = \"any\"\npromote = []\ndemote = [\"/bin/demote\", \"{servce}\"]\nfencing = \"required\"\nmax_lag = \"0s\"",
        ) + MIRROR;
        let got = problems(&text);
        for expected in [
            "service[0].paths[0]: \"data\" must be an absolute path",
            "service[0].paths[1]: \"/\" cannot be mirrored: name the data directories",
            "service[0].failback: \"sometimes\" is not a failback mode: use \"manual\" or \"auto\"",
            "service[0].on_no_candidate: \"any\" is not a policy: use \"wait\" or \"freshest\"",
            "service[0].demote[1]: unknown placeholder {servce}; use {service}, {node}, {address}, {epoch}",
            "service[0].fencing: \"required\" needs a fence command (service.fence)",
            "service[0].max_lag: must be longer than zero",
        ] {
            assert!(
                got.contains(&expected.to_owned()),
                "missing {expected:?} in {got:#?}"
            );
        }
        assert!(
            got.iter()
                .any(|p| p.starts_with("service[0].promote: a hook is a command")),
            "{got:#?}"
        );
    }

    #[test]
    fn paths_without_a_mirror_section_are_refused() {
        let text = with_service_keys("paths = [\"/srv/data\"]");
        assert_problem(
            &text,
            "service[0].paths: needs a [mirror] section: how the terminal server reaches members over SSH",
        );
    }

    #[test]
    fn mirror_section_problems_come_through() {
        let text = format!("{GOOD}\n[mirror]\ninterval = \"never\"\nconcurrency = 0\n");
        let got = problems(&text);
        assert!(
            got.iter().any(|p| p.starts_with("mirror.interval")),
            "{got:#?}"
        );
        assert!(
            got.iter().any(|p| p.starts_with("mirror.concurrency")),
            "{got:#?}"
        );
    }

    #[test]
    fn relative_paths_are_refused() {
        let text = GOOD.replace("/var/lib/dnsd", "state");
        assert_problem(&text, "state.dir: \"state\" must be an absolute path");
    }

    #[test]
    fn several_problems_are_all_reported() {
        let text = GOOD
            .replace("10.0.0.11", "nope")
            .replace("zone = \"svc.test.\"", "zone = \"svc.test\"")
            .replace("fall = 3", "fall = 0");
        assert_eq!(problems(&text).len(), 3, "{:?}", problems(&text));
    }

    #[test]
    fn environment_overrides_keys() {
        let env = [
            ("DNSD_HEARTBEAT__INTERVAL".to_owned(), "1s".to_owned()),
            ("DNSD_HEARTBEAT__FALL".to_owned(), "5".to_owned()),
            (
                "DNSD_DNS__LISTEN".to_owned(),
                "127.0.0.1:53,[::1]:53".to_owned(),
            ),
            ("OTHER_VAR".to_owned(), "ignored".to_owned()),
        ];
        let cfg = parse(GOOD, env).unwrap().validate().unwrap();
        assert_eq!(cfg.heartbeat.interval, Duration::from_secs(1));
        assert_eq!(cfg.heartbeat.fall, 5);
        assert_eq!(cfg.dns.listen.len(), 2);
    }

    #[test]
    fn environment_overrides_are_validated_too() {
        let got = problems_env(GOOD, [("DNSD_HEARTBEAT__TIMEOUT", "2s")]);
        assert_eq!(
            got,
            vec!["heartbeat.timeout: timeout (2s) must be shorter than heartbeat.interval (500ms)"]
        );
        let got = problems_env(GOOD, [("DNSD_HEARTBEAT__BOGUS", "1")]);
        assert_eq!(got, vec!["heartbeat.bogus: unknown key"]);
    }

    #[test]
    fn every_example_under_etc_parses() {
        let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc");
        let mut seen = 0;
        for entry in std::fs::read_dir(&etc).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                if let Err(e) = load_with_env(&path, []) {
                    panic!("{e}");
                }
                seen += 1;
            }
        }
        assert!(seen >= 1, "no .toml under {}", etc.display());
    }
}
