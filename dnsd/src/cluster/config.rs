//! The `[cluster]` section: who this terminal server is among the others, where etcd is,
//! and the lease and quorum that govern them; with a validator that names every problem.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where etcd keeps dnsd's keys unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "/dnsd/";
/// The lease TTL unless configured otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

/// How several terminal servers share one etcd cluster. Without this section dnsd runs
/// standalone with its local state file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This terminal server's name among the others (a DNS label, unique in the cluster).
    pub name: String,
    /// etcd client URLs, e.g. `http://10.0.0.5:2379`; any members of one etcd cluster
    /// (the `etcd` key of the file).
    #[serde(rename = "etcd")]
    pub endpoints: Vec<String>,
    /// The etcd key prefix of dnsd's keys; starts and ends with `/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// TTL of this terminal server's lease, whole seconds ("3s"): a dead leader is replaced
    /// within about this long, and a live one stops acting a margin before it ends.
    #[serde(default = "default_lease", deserialize_with = "human_duration")]
    pub lease: Duration,
    /// How many live terminal servers must see a member down before it is down for all;
    /// by default a majority of the terminal servers alive at the time.
    #[serde(default)]
    pub quorum: Option<u32>,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_owned()
}

fn default_lease() -> Duration {
    DEFAULT_LEASE
}

fn human_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl ClusterConfig {
    /// Every problem of this section as `(key path, message)`, in key order; empty when
    /// the section is usable. `heartbeat_interval` is the pool's probe interval: a lease
    /// shorter than two of them would let a leader lapse between two looks at the pool.
    pub fn problems(&self, heartbeat_interval: Duration) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| problems.push((key, message));

        if let Err(why) = dns_label(&self.name) {
            problem(
                "cluster.name".into(),
                format!("{:?} must be a DNS label: {why}", self.name),
            );
        }
        if self.endpoints.is_empty() {
            problem(
                "cluster.etcd".into(),
                "at least one etcd client URL is needed, e.g. \"http://127.0.0.1:2379\"".into(),
            );
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if let Err(why) = endpoint_url(endpoint) {
                problem(format!("cluster.etcd[{i}]"), format!("{endpoint:?} {why}"));
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            problem(
                "cluster.prefix".into(),
                format!(
                    "{:?} must start and end with '/', e.g. \"/dnsd/\"",
                    self.prefix
                ),
            );
        }
        if self.lease < Duration::from_secs(1) || self.lease.subsec_nanos() != 0 {
            problem(
                "cluster.lease".into(),
                format!(
                    "{} is not a whole number of seconds of at least 1s (etcd leases count in seconds)",
                    humantime::format_duration(self.lease)
                ),
            );
        } else if self.lease < heartbeat_interval.saturating_mul(2) {
            // Saturating: a heartbeat interval may be any duration the operator wrote.
            problem(
                "cluster.lease".into(),
                format!(
                    "{} is shorter than two heartbeat intervals ({})",
                    humantime::format_duration(self.lease),
                    humantime::format_duration(heartbeat_interval.saturating_mul(2))
                ),
            );
        }
        if self.quorum == Some(0) {
            problem(
                "cluster.quorum".into(),
                "must be at least 1 (leave it out for a majority of the live terminal servers)"
                    .into(),
            );
        }
        problems
    }
}

/// Whether `name` is one DNS label: 1 to 63 letters, digits and inner hyphens.
fn dns_label(name: &str) -> Result<(), String> {
    let bad = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-');
    match (name.len(), bad) {
        (0, _) => Err("it is empty".into()),
        (64.., _) => Err(format!("{} characters, at most 63", name.len())),
        (_, Some(c)) => Err(format!("{c:?} is not a letter, digit or hyphen")),
        _ if name.starts_with('-') || name.ends_with('-') => {
            Err("a hyphen cannot start or end it".into())
        }
        _ => Ok(()),
    }
}

/// Whether `endpoint` is a client URL dnsd can use: `http://host:port`, nothing after.
fn endpoint_url(endpoint: &str) -> Result<(), &'static str> {
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| "is not a URL, e.g. \"http://127.0.0.1:2379\"")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "uses TLS, which needs CA and client certificates [cluster] cannot name yet; use http://",
            );
        }
        _ => return Err("must start with http://"),
    }
    let Some(authority) = uri.authority() else {
        return Err("has no host");
    };
    if authority.host().is_empty() {
        return Err("has no host");
    }
    if authority.port_u16().is_none() {
        return Err("has no port (etcd's client port is usually 2379)");
    }
    if authority.as_str().contains('@') {
        return Err("must not carry user information");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must not have a path or query");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_millis(500);

    fn config() -> ClusterConfig {
        ClusterConfig {
            name: "ts1".into(),
            endpoints: vec!["http://127.0.0.1:2379".into(), "http://[::1]:2379/".into()],
            prefix: DEFAULT_PREFIX.into(),
            lease: DEFAULT_LEASE,
            quorum: None,
        }
    }

    fn problems_of(change: impl FnOnce(&mut ClusterConfig)) -> Vec<(String, String)> {
        let mut c = config();
        change(&mut c);
        c.problems(HEARTBEAT)
    }

    fn keys(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_sound_section_has_no_problems() {
        assert_eq!(config().problems(HEARTBEAT), vec![]);
    }

    #[test]
    fn defaults_apply_and_durations_are_human() {
        let c: ClusterConfig =
            serde_json::from_str(r#"{"name":"ts1","etcd":["http://127.0.0.1:2379"]}"#).unwrap();
        assert_eq!(c.prefix, "/dnsd/");
        assert_eq!(c.lease, Duration::from_secs(3));
        assert_eq!(c.quorum, None);
        let c: ClusterConfig = serde_json::from_str(
            r#"{"name":"ts1","etcd":[],"lease":"10s","quorum":2,"prefix":"/x/"}"#,
        )
        .unwrap();
        assert_eq!((c.lease, c.quorum), (Duration::from_secs(10), Some(2)));
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        let unknown =
            serde_json::from_str::<ClusterConfig>(r#"{"name":"ts1","etcd":[],"leader":"x"}"#);
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `leader`")
        );
        let bad =
            serde_json::from_str::<ClusterConfig>(r#"{"name":"ts1","etcd":[],"lease":"three"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn the_name_must_be_a_dns_label() {
        for (name, why) in [
            ("", "empty"),
            ("ts_1", "'_' is not a letter"),
            ("-ts", "hyphen"),
            ("ts-", "hyphen"),
            ("ts.1", "'.' is not"),
        ] {
            let p = problems_of(|c| c.name = name.into());
            assert_eq!(keys(&p), ["cluster.name"], "{name:?}");
            assert!(p[0].1.contains(why), "{name:?}: {}", p[0].1);
        }
        let p = problems_of(|c| c.name = "a".repeat(64));
        assert!(p[0].1.contains("64 characters, at most 63"), "{}", p[0].1);
        assert_eq!(problems_of(|c| c.name = "a".repeat(63)), vec![]);
        assert_eq!(problems_of(|c| c.name = "TS-1".into()), vec![]);
    }

    #[test]
    fn endpoints_must_be_plain_http_urls_with_a_port() {
        assert_eq!(
            keys(&problems_of(|c| c.endpoints.clear())),
            ["cluster.etcd"]
        );
        for (endpoint, why) in [
            ("127.0.0.1:2379", "must start with http://"),
            ("http://127.0.0.1", "has no port"),
            ("https://127.0.0.1:2379", "uses TLS"),
            ("unix:///run/etcd.sock", "is not a URL"),
            ("ftp://127.0.0.1:2379", "must start with http://"),
            ("http://127.0.0.1:2379/v3", "must not have a path"),
            ("http://u:p@127.0.0.1:2379", "user information"),
            ("http:// bad", "is not a URL"),
        ] {
            let p = problems_of(|c| c.endpoints.push(endpoint.into()));
            assert_eq!(keys(&p), ["cluster.etcd[2]"], "{endpoint}");
            assert!(p[0].1.contains(why), "{endpoint}: {}", p[0].1);
        }
    }

    #[test]
    fn the_prefix_starts_and_ends_with_a_slash() {
        for prefix in ["dnsd/", "/dnsd", "", "dnsd"] {
            let p = problems_of(|c| c.prefix = prefix.into());
            assert_eq!(keys(&p), ["cluster.prefix"], "{prefix:?}");
        }
        assert_eq!(problems_of(|c| c.prefix = "/".into()), vec![]);
    }

    #[test]
    fn the_lease_is_whole_seconds_and_at_least_two_heartbeats() {
        for lease in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_millis(500),
        ] {
            let p = problems_of(|c| c.lease = lease);
            assert_eq!(keys(&p), ["cluster.lease"], "{lease:?}");
            assert!(p[0].1.contains("whole number of seconds"), "{}", p[0].1);
        }
        let mut c = config();
        c.lease = Duration::from_secs(1);
        assert_eq!(c.problems(Duration::from_millis(500)), vec![]);
        let p = c.problems(Duration::from_millis(501));
        assert_eq!(keys(&p), ["cluster.lease"]);
        assert!(
            p[0].1
                .contains("shorter than two heartbeat intervals (1s 2ms)"),
            "{}",
            p[0].1
        );
    }

    #[test]
    fn a_quorum_of_zero_is_refused() {
        assert_eq!(
            keys(&problems_of(|c| c.quorum = Some(0))),
            ["cluster.quorum"]
        );
        assert_eq!(problems_of(|c| c.quorum = Some(1)), vec![]);
        // Larger than the cluster is allowed: nothing can then be declared down, which
        // quorum evaluation reports; the number of terminal servers is not configured.
        assert_eq!(problems_of(|c| c.quorum = Some(7)), vec![]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = ClusterConfig {
            name: "".into(),
            endpoints: vec!["x".into()],
            prefix: "x".into(),
            lease: Duration::from_millis(10),
            quorum: Some(0),
        };
        assert_eq!(
            keys(&c.problems(HEARTBEAT)),
            [
                "cluster.name",
                "cluster.etcd[0]",
                "cluster.prefix",
                "cluster.lease",
                "cluster.quorum"
            ]
        );
    }
}
