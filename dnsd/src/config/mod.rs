//! The terminal server's configuration: one TOML file, `DNSD_` environment overrides,
//! and a validation pass that names the key path of every problem it finds.
//!
//! Parsing happens in two layers. The `Raw*` structs mirror the file: durations,
//! addresses and names are kept as the strings the operator wrote, so that a bad value
//! does not stop the deserializer at the first mistake. [`RawConfig::validate`] then
//! checks everything and either returns the typed [`Config`] or the full list of
//! [`Problem`]s. Unknown keys are collected while deserializing (every one of them,
//! with its path) and refused like any other problem.
//!
//! Layout: [`raw`] holds the file as written and its parsing (unknown keys collected);
//! [`validate`] turns it into this module's typed [`Config`] or the list of problems.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::controller::{Fencing, NoCandidate};

mod raw;
#[cfg(test)]
mod tests;
mod validate;

pub use raw::{
    ParseFailure, RawConfig, RawControl, RawDns, RawHeartbeat, RawNameserver, RawNode, RawService,
    RawState, RawTsig, parse,
};
pub use validate::parse_duration;

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

/// An address or a CIDR prefix, as `dns.allow_transfer` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrPrefix {
    addr: IpAddr,
    len: u8,
}

impl AddrPrefix {
    /// Parses "192.0.2.1", "192.0.2.0/24", "2001:db8::/32"; the bits after the prefix
    /// must be zero, so that what is written is what matches.
    pub fn parse(text: &str) -> Result<AddrPrefix, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or address/prefix-length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        let prefix = AddrPrefix { addr, len };
        if prefix.masked(addr) != addr {
            return Err(format!(
                "{text:?} has bits set after the prefix length (write {}/{len})",
                prefix.masked(addr)
            ));
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
