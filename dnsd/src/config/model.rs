//! The validated configuration: what the daemon is built from. Names are lower case,
//! addresses parsed, durations typed; nodes and services are named by the controller's
//! ids.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::problem::Problem;
use crate::controller::{Election, Fencing, NoCandidate, NodeId, ServiceId};

/// A configuration that passed validation; the daemon only ever sees this.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub dns: DnsConfig,
    /// `[heartbeat]`: the heartbeat crate's own configuration, validated by its rules.
    pub heartbeat: heartbeat::MonitorConfig,
    pub control: ControlConfig,
    pub state: StateConfig,
    pub nodes: Vec<NodeConfig>,
    pub services: Vec<ServiceConfig>,
    /// Present when any service mirrors or has member hooks.
    pub mirror: Option<rsync_sync::config::MirrorSettings>,
    /// Present when this terminal server is one of several sharing an etcd cluster.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Config {
    /// What is valid but risky, for `check-config` and the log at start: each with the
    /// key path it concerns.
    pub fn warnings(&self) -> Vec<Problem> {
        self.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.split_brain_risk()
                    .map(|why| Problem::new(format!("service[{i}]"), format!("{}: {why}", s.name)))
            })
            .collect()
    }

    /// The node the controller calls `n`.
    pub fn node(&self, n: NodeId) -> &NodeConfig {
        &self.nodes[n.0]
    }

    /// The service the controller calls `s`.
    pub fn service(&self, s: ServiceId) -> &ServiceConfig {
        &self.services[s.0]
    }
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
    /// The SOA's refresh, retry and expire timers.
    pub soa: SoaTimers,
    /// UDP sockets per address (`SO_REUSEPORT`), each served by its own thread.
    pub threads: usize,
    /// Concurrent TCP connections at most (over all addresses).
    pub tcp_max_connections: usize,
    /// A TCP connection waiting this long for a query is closed.
    pub tcp_idle_timeout: Duration,
    /// Who may transfer the zone (AXFR/IXFR); nobody when empty.
    pub allow_transfer: Vec<AddrPrefix>,
    /// The key transfers must be signed with, and NOTIFY is signed with.
    pub tsig: Option<TsigConfig>,
    /// Secondaries told of every new serial (RFC 1996).
    pub notify: Vec<SocketAddr>,
    /// First NOTIFY retransmission delay; it doubles up to a minute.
    pub notify_retry: Duration,
}

/// The longest delay between two NOTIFY retransmissions (RFC 1996's suggested
/// interval); `dns.notify_retry` doubles up to it.
pub const NOTIFY_RETRY_MAX: Duration = Duration::from_secs(60);

/// SOA timers for secondaries, in seconds (RFC 1035 section 3.3.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaTimers {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
}

/// Why a `dns.allow_transfer` entry is not an address or a CIDR prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an address or address/prefix-length")]
    NotAnAddress(String),
    #[error("{text:?}: the prefix length must be 0 to {max}")]
    Length { text: String, max: u8 },
    #[error("{text:?} has bits set after the prefix length (write {network}/{len})")]
    HostBits {
        text: String,
        network: IpAddr,
        len: u8,
    },
}

/// An address or a CIDR prefix, as `dns.allow_transfer` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrPrefix {
    addr: IpAddr,
    len: u8,
}

impl AddrPrefix {
    /// Parses "192.0.2.1", "192.0.2.0/24", "2001:db8::/32"; the bits after the prefix
    /// must be zero, so that what is written is what matches.
    pub fn parse(text: &str) -> Result<AddrPrefix, PrefixError> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| PrefixError::NotAnAddress(text.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(PrefixError::Length {
                        text: text.to_owned(),
                        max,
                    });
                }
            },
        };
        let prefix = AddrPrefix { addr, len };
        if prefix.masked(addr) != addr {
            return Err(PrefixError::HostBits {
                text: text.to_owned(),
                network: prefix.masked(addr),
                len,
            });
        }
        Ok(prefix)
    }

    /// `ip` with the bits after the prefix length cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// Whether `ip` lies inside this prefix. An IPv4 client reaching an IPv6 socket
    /// (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl fmt::Display for AddrPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Validated `dns.tsig`. The secret stays in its file until the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigConfig {
    /// Key name, lower case, with a trailing dot (what secondaries call the key).
    pub name: String,
    pub algorithm: TsigAlgorithm,
    /// File holding the base64 secret; mode 0600, checked when the daemon starts.
    pub secret_file: PathBuf,
}

/// The TSIG algorithms dnsd signs and verifies with (RFC 8945's mandatory HMAC-SHA256
/// and its longer siblings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    /// Every algorithm, by the name configuration files use.
    pub const ALL: [(&'static str, TsigAlgorithm); 3] = [
        ("hmac-sha256", TsigAlgorithm::HmacSha256),
        ("hmac-sha384", TsigAlgorithm::HmacSha384),
        ("hmac-sha512", TsigAlgorithm::HmacSha512),
    ];

    /// The algorithm's name, as in BIND, Knot and NSD configuration.
    pub fn name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }
}

/// Validated name server entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NameserverConfig {
    pub name: String,
    pub address: IpAddr,
}

/// Validated `[control]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub socket: PathBuf,
    /// The TCP listener, when configured.
    pub tcp: Option<ControlTcp>,
    /// Longest a client may take to send a request head (and, on TCP, the TLS handshake).
    pub header_timeout: Duration,
    /// Most connections served at once on each listener; more wait for a free slot.
    pub max_connections: usize,
}

/// Validated TCP listener of the control API: never without a token.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlTcp {
    pub addr: SocketAddr,
    pub token_file: PathBuf,
    pub transport: ControlTransport,
}

/// How the TCP listener carries HTTP.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlTransport {
    /// TLS with this certificate chain and key (PEM files).
    Tls { cert: PathBuf, key: PathBuf },
    /// Plain HTTP: only ever on a loopback address, and only when the operator asked.
    PlainLoopback,
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
    pub nodes: Vec<NodeId>,
    /// Absolute directories, without trailing slash.
    pub paths: Vec<PathBuf>,
    pub max_lag: Duration,
    /// `Some(after)` for automatic failback.
    pub failback_after: Option<Duration>,
    pub on_no_candidate: NoCandidate,
    /// Which eligible member a failover promotes.
    pub election: Election,
    pub fencing: Fencing,
    /// `fencing = "none"`: the operator has chosen to run without fence or demote, and
    /// is not warned of the split-brain risk.
    pub unfenced_by_choice: bool,
    pub hooks: Hooks,
    pub hook_timeout: Duration,
    /// The service's own check of each member; `None`: its host's heartbeat is all.
    pub check: Option<ServiceCheck>,
    /// Restart, then migrate (with `hooks.restart`); `None`: a failing check on a live
    /// primary fails over at once.
    pub restart: Option<RestartConfig>,
    /// Flap damping; `None`: members are never quarantined.
    pub flap: Option<FlapConfig>,
}

/// A validated service check, with the rise/fall hysteresis of its verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCheck {
    pub probe: CheckProbe,
    /// Time between two checks of one member.
    pub interval: Duration,
    /// Longest one check may take (shorter than `interval`).
    pub timeout: Duration,
    /// Consecutive passes before a member's service is up.
    pub rise: u32,
    /// Consecutive failures before it is down.
    pub fall: u32,
}

/// What a service check looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckProbe {
    /// `GET path` on the member's address and port; passes on status `expect`.
    Http {
        port: u16,
        path: String,
        expect: u16,
    },
    /// A TCP connection to the member's address and port; passes when it opens.
    Tcp { port: u16 },
    /// A command run on the member over SSH; passes when it exits with status 0.
    /// `{service}`, `{node}` and `{address}` in an argument are replaced.
    Command { argv: Vec<String> },
}

impl std::fmt::Display for CheckProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckProbe::Http { port, path, expect } => {
                write!(f, "http :{port}{path} expects {expect}")
            }
            CheckProbe::Tcp { port } => write!(f, "tcp :{port}"),
            CheckProbe::Command { argv } => write!(f, "command {}", argv.join(" ")),
        }
    }
}

/// Restart, then migrate: how often and how long to try restarting a primary whose check
/// fails while its host answers. The command is [`Hooks::restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartConfig {
    /// At least 1.
    pub attempts: u32,
    /// The service fails over if the check has not passed this long after it failed.
    pub window: Duration,
}

/// Flap damping: more than `threshold` changes of a member's health within `window`
/// quarantine it for `hold_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapConfig {
    /// At least 1 (a configured 0 turns damping off: no `FlapConfig`).
    pub threshold: u32,
    pub window: Duration,
    pub hold_down: Duration,
}

impl ServiceConfig {
    /// A mirrored service that fails over automatically with neither `fence` nor
    /// `demote`: a partition between the terminal server and a live primary would
    /// leave two primaries taking writes. `None` when it is safe or chosen.
    pub fn split_brain_risk(&self) -> Option<&'static str> {
        let unfenced = self.hooks.fence.is_none() && self.hooks.demote.is_none();
        (!self.paths.is_empty() && unfenced && !self.unfenced_by_choice).then_some(
            "mirrored with automatic failover and neither fence nor demote: a partition \
             between the terminal server and a live primary would leave two primaries taking \
             writes; configure fence (or demote), or say fencing = \"none\" to accept it",
        )
    }
}

/// Hook commands of a service, as argv lists. `{service}`, `{node}`, `{address}` and
/// `{epoch}` in an argument are replaced before it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub promote: Option<Vec<String>>,
    pub demote: Option<Vec<String>>,
    pub fence: Option<Vec<String>>,
    /// Run on the source and the destination over SSH before every pass, with the
    /// pass's epoch: a member that knows a newer epoch refuses (e.g. `dnsd-epoch-guard`).
    pub epoch_guard: Option<Vec<String>>,
    /// Run on the primary over SSH when its host answers but its service check fails.
    pub restart: Option<Vec<String>>,
}

/// The placeholders a hook argument may contain.
pub const HOOK_PLACEHOLDERS: [&str; 4] = ["{service}", "{node}", "{address}", "{epoch}"];

/// The placeholders a `command` check's argument may contain: a check observes, it is
/// not an action of an epoch, so `{epoch}` is not one of them.
pub const CHECK_PLACEHOLDERS: [&str; 3] = ["{service}", "{node}", "{address}"];
