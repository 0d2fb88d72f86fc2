//! The configuration file as written: serde structs whose values are the strings the
//! operator typed, and the parser that reads TOML plus `DNSD_*` overrides into them,
//! collecting every unknown key with its path.

use serde::Deserialize;

use super::problem::Problem;

/// Prefix of the environment variables that override file keys
/// (`DNSD_HEARTBEAT__INTERVAL=1s` overrides `heartbeat.interval`).
pub const ENV_PREFIX: &str = "DNSD";

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
    /// Several terminal servers sharing one etcd; without it dnsd runs standalone.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
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
    /// SOA refresh: how often secondaries check the serial without a NOTIFY.
    #[serde(default = "default_soa_refresh")]
    pub soa_refresh: String,
    /// SOA retry: how soon secondaries try again after a failed refresh.
    #[serde(default = "default_soa_retry")]
    pub soa_retry: String,
    /// SOA expire: how long secondaries answer without reaching this server.
    #[serde(default = "default_soa_expire")]
    pub soa_expire: String,
    /// UDP sockets (and threads) per address; defaults to the number of CPUs.
    #[serde(default)]
    pub threads: Option<u32>,
    /// Concurrent TCP connections at most; beyond it the longest idle one is closed.
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: u32,
    /// A TCP connection waiting this long for its next query is closed.
    #[serde(default = "default_tcp_idle_timeout")]
    pub tcp_idle_timeout: String,
    /// Addresses or CIDR prefixes allowed to transfer the zone (AXFR, IXFR).
    #[serde(default)]
    pub allow_transfer: Vec<String>,
    /// TSIG key required on transfers and used to sign NOTIFY.
    #[serde(default)]
    pub tsig: Option<RawTsig>,
    /// Secondaries sent a NOTIFY on every new serial, as "address:port".
    #[serde(default)]
    pub notify: Vec<String>,
    /// First NOTIFY retransmission delay (doubling, at most a minute).
    #[serde(default = "default_notify_retry")]
    pub notify_retry: String,
}

/// `dns.tsig`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTsig {
    /// Key name, as the secondaries know it.
    pub name: String,
    /// "hmac-sha256" (default), "hmac-sha384" or "hmac-sha512".
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// File holding the base64 secret (mode 0600).
    pub secret_file: String,
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
    /// Optional TCP address of the control API; requires `token_file`, and `tls_cert`
    /// with `tls_key` (or, on a loopback address only, `allow_plain_tcp_on_loopback`).
    #[serde(default)]
    pub tcp: Option<String>,
    /// File holding the bearer token TCP clients must present.
    #[serde(default)]
    pub token_file: Option<String>,
    /// PEM certificate chain the TCP listener presents (the server's certificate first).
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// PEM private key of `tls_cert`; readable by its owner only.
    #[serde(default)]
    pub tls_key: Option<String>,
    /// Serve plain HTTP on `tcp` without TLS; refused unless `tcp` is a loopback address.
    #[serde(default)]
    pub allow_plain_tcp_on_loopback: bool,
    /// Longest a client may take to send a request head (and, on TCP, the TLS handshake).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
    /// Most connections served at once on each listener; more wait for a free slot.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for RawControl {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            tcp: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            allow_plain_tcp_on_loopback: false,
            header_timeout: default_header_timeout(),
            max_connections: default_max_connections(),
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
    /// Which eligible member a failover promotes: "freshest" or "round-robin".
    #[serde(default = "default_election")]
    pub election: String,
    /// Run on both ends before every pass, with `{epoch}` (e.g. dnsd-epoch-guard).
    #[serde(default)]
    pub epoch_guard: Option<Vec<String>>,
    /// "best-effort" (promote even if `fence` fails), "required", or "none" (no fence
    /// or demote, chosen: no split-brain warning).
    #[serde(default = "default_fencing")]
    pub fencing: String,
    /// Longest a hook may run.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout: String,
    /// The service's own check of each member, besides its host's heartbeat:
    /// `{ kind = "http", port, path, expect }`, `{ kind = "tcp", port }` or
    /// `{ kind = "command", argv = [...] }` (run on the member over SSH).
    #[serde(default)]
    pub check: Option<RawCheck>,
    /// Time between two checks of one member (default "2s").
    #[serde(default)]
    pub check_interval: Option<String>,
    /// How long one check may take; shorter than `check_interval` (default "1s").
    #[serde(default)]
    pub check_timeout: Option<String>,
    /// Consecutive failed checks before a member's service is down (default 3).
    #[serde(default)]
    pub check_fall: Option<u32>,
    /// Consecutive passed checks before it is up again (default 2).
    #[serde(default)]
    pub check_rise: Option<u32>,
    /// Command (argv) run on the primary over SSH when its host answers but its check
    /// fails, before the service fails over.
    #[serde(default)]
    pub restart: Option<Vec<String>>,
    /// Restarts tried before the service fails over (default 2).
    #[serde(default)]
    pub restart_attempts: Option<u32>,
    /// How long the check may fail, restarts included, before the service fails over
    /// (default "30s").
    #[serde(default)]
    pub restart_window: Option<String>,
    /// Changes of a member's health allowed within `flap_window`; one more quarantines
    /// it for `hold_down`. 0: never quarantine.
    #[serde(default = "default_flap_threshold")]
    pub flap_threshold: u32,
    /// See `flap_threshold`.
    #[serde(default = "default_flap_window")]
    pub flap_window: String,
    /// How long a flapping member is quarantined (never promoted, never failed back to).
    #[serde(default = "default_hold_down")]
    pub hold_down: String,
}

/// A `[[service]]`'s `check = { ... }`: every field optional here, so that validation can
/// name each one that is missing or does not belong to the kind.
#[derive(Debug, Clone, Deserialize)]
pub struct RawCheck {
    /// "http", "tcp" or "command".
    pub kind: String,
    /// The port checked on each member's address (http, tcp).
    #[serde(default)]
    pub port: Option<u16>,
    /// The path requested (http; default "/").
    #[serde(default)]
    pub path: Option<String>,
    /// The HTTP status that passes (http; default 200).
    #[serde(default)]
    pub expect: Option<u16>,
    /// The command run on the member over SSH; exit status 0 passes (command).
    #[serde(default)]
    pub argv: Option<Vec<String>>,
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:5353".to_owned()]
}
fn default_ttl() -> String {
    "5s".to_owned()
}
// SOA timers: within RFC 1912's ranges (refresh 20 min to 12 h, expire 2 to 4 weeks)
// and what zone checkers ask for (Zonemaster: refresh at least 4 h, retry at least 1 h,
// expire at least a week). NOTIFY, not refresh, is what moves secondaries on failover.
fn default_soa_refresh() -> String {
    "4h".to_owned()
}
fn default_soa_retry() -> String {
    "1h".to_owned()
}
fn default_soa_expire() -> String {
    "14d".to_owned()
}
fn default_tcp_max_connections() -> u32 {
    128
}
fn default_tcp_idle_timeout() -> String {
    "10s".to_owned()
}
fn default_notify_retry() -> String {
    "2s".to_owned()
}
fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_owned()
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
fn default_header_timeout() -> String {
    "10s".to_owned()
}
fn default_max_connections() -> u32 {
    64
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
fn default_election() -> String {
    "freshest".to_owned()
}
fn default_fencing() -> String {
    "best-effort".to_owned()
}
fn default_hook_timeout() -> String {
    "30s".to_owned()
}
fn default_flap_threshold() -> u32 {
    4
}
fn default_flap_window() -> String {
    "10m".to_owned()
}
fn default_hold_down() -> String {
    "10m".to_owned()
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
                .with_list_parse_key("dns.allow_transfer")
                .with_list_parse_key("dns.notify")
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
            // An empty key (`"" = 1`, or `DNSD_=1`) is written as TOML quotes it, so that
            // the problem still names a path.
            let key = if key.is_empty() { "\"\"" } else { key };
            if parent.is_empty() {
                key.to_owned()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            render_ignored_path(parent)
        }
    }
}
