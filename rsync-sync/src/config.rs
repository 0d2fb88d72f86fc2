//! The `[mirror]` section of the configuration file: how the terminal server reaches members
//! over SSH and how members mirror to each other, checked into [`MirrorSettings`].
//!
//! [`MirrorConfig`] is the serde view (unknown keys refused, durations kept as the strings
//! the operator wrote); [`MirrorConfig::validate`] turns it into typed settings or lists every
//! problem with its key path, so `check-config` can report them all at once.
//!
//! ```toml
//! [mirror]
//! interval = "10s"
//! identity = "/etc/dnsd/id_ed25519"
//! known_hosts = "/etc/dnsd/known_hosts"
//! rsync_options = ["--numeric-ids"]
//! bwlimit = "10MiB"
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::rsync::{PassSpec, RemoteShell, check_rsync_option};
use crate::ssh::{Identity, SshSettings};

/// The `[mirror]` section as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// How often a pass runs to each secondary, e.g. "10s".
    #[serde(default = "default_interval")]
    pub interval: String,
    /// User to log in as, from the terminal server to members and between members.
    #[serde(default = "default_user")]
    pub user: String,
    /// sshd port on every member.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private key file the terminal server logs in with, or "agent" for the ssh-agent at SSH_AUTH_SOCK.
    #[serde(default = "default_identity")]
    pub identity: String,
    /// known_hosts file the terminal server verifies every member's host key against.
    #[serde(default = "default_known_hosts")]
    pub known_hosts: PathBuf,
    /// Bound on connecting, the SSH handshake and authentication, e.g. "5s".
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    /// A session (and rsync's --timeout) fails after this long without data, e.g. "60s".
    #[serde(default = "default_io_timeout")]
    pub io_timeout: String,
    /// Interval of SSH keepalives (ours and the members' ssh ServerAliveInterval); "0s" = off, then a command silent for io_timeout fails.
    #[serde(default = "default_keepalive")]
    pub keepalive: String,
    /// Private key the primary uses to reach secondaries: a path ON THE MEMBERS.
    #[serde(default = "default_peer_identity")]
    pub peer_identity: PathBuf,
    /// known_hosts the primary verifies secondaries against: a path ON THE MEMBERS.
    #[serde(default = "default_known_hosts")]
    pub peer_known_hosts: PathBuf,
    /// Extra ssh arguments from primary to secondary, one word per item: ["-o", "Compression=no"].
    #[serde(default)]
    pub peer_ssh_options: Vec<String>,
    /// Extra rsync options, e.g. ["--numeric-ids"]; options only.
    #[serde(default)]
    pub rsync_options: Vec<String>,
    /// Bandwidth limit per pass in KiB/s ("0" = unlimited), or with a binary unit: "512KiB", "10MiB", "1GiB".
    #[serde(default = "default_bwlimit", deserialize_with = "number_or_string")]
    pub bwlimit: String,
    /// Most passes running at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_interval() -> String {
    "10s".to_owned()
}
fn default_user() -> String {
    "root".to_owned()
}
fn default_port() -> u16 {
    22
}
fn default_identity() -> String {
    "/etc/dnsd/id_ed25519".to_owned()
}
fn default_peer_identity() -> PathBuf {
    PathBuf::from("/etc/dnsd/id_ed25519")
}
fn default_known_hosts() -> PathBuf {
    PathBuf::from("/etc/dnsd/known_hosts")
}
fn default_connect_timeout() -> String {
    "5s".to_owned()
}
fn default_io_timeout() -> String {
    "60s".to_owned()
}
fn default_keepalive() -> String {
    "15s".to_owned()
}
fn default_bwlimit() -> String {
    "0".to_owned()
}
fn default_concurrency() -> usize {
    4
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            interval: default_interval(),
            user: default_user(),
            port: default_port(),
            identity: default_identity(),
            known_hosts: default_known_hosts(),
            connect_timeout: default_connect_timeout(),
            io_timeout: default_io_timeout(),
            keepalive: default_keepalive(),
            peer_identity: default_peer_identity(),
            peer_known_hosts: default_known_hosts(),
            peer_ssh_options: Vec::new(),
            rsync_options: Vec::new(),
            bwlimit: default_bwlimit(),
            concurrency: default_concurrency(),
        }
    }
}

/// Accepts `bwlimit = 512` as well as `bwlimit = "10MiB"`.
fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Number(n) => n.to_string(),
        Raw::Text(text) => text,
    })
}

/// One thing wrong with the configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `mirror.identity`.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The checked `[mirror]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// How often a pass runs to each secondary.
    pub interval: Duration,
    /// How the terminal server opens sessions to members.
    pub ssh: SshSettings,
    /// How the primary's rsync reaches secondaries.
    pub peer_shell: RemoteShell,
    /// Extra rsync options.
    pub rsync_options: Vec<String>,
    /// Bandwidth limit in KiB/s; `None` is unlimited.
    pub bwlimit_kib: Option<u64>,
    /// Most passes running at the same time.
    pub concurrency: usize,
}

impl MirrorSettings {
    /// A pass with these settings from `src_dir` on the source to `dest_dir` on
    /// `dest_host`, with `--delete`, no backup directory and no dry run.
    pub fn pass(&self, src_dir: PathBuf, dest_host: &str, dest_dir: PathBuf) -> PassSpec {
        PassSpec {
            src_dir,
            dest_host: dest_host.to_owned(),
            dest_user: self.ssh.user.clone(),
            dest_dir,
            delete: true,
            backup_dir: None,
            bwlimit_kib: self.bwlimit_kib,
            dry_run: false,
            io_timeout: Some(self.ssh.io_timeout),
            extra_args: self.rsync_options.clone(),
            remote_shell: self.peer_shell.clone(),
        }
    }
}

/// Parses a bandwidth limit into KiB/s: a plain number is KiB/s; `K`/`KiB`, `M`/`MiB` and
/// `G`/`GiB` (any case) are binary units per second. 0 means unlimited (`None`).
pub fn parse_bwlimit(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a number of KiB/s or a size such as \"10MiB\""))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "k" | "kib" => 1,
        "m" | "mib" => 1024,
        "g" | "gib" => 1024 * 1024,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use KiB, MiB or GiB (per second)"
            ));
        }
    };
    let kib = value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    Ok((kib > 0).then_some(kib))
}

/// Collects problems while checking fields, so that all of them are reported.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: format!("mirror.{key}"),
            message: message.into(),
        });
    }

    /// A duration; `allow_zero` for settings where 0 means "off".
    fn duration(&mut self, key: &str, text: &str, allow_zero: bool) -> Duration {
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(key, format!("must be longer than 0 (got {text:?})"));
                Duration::ZERO
            }
            Ok(d) if d > Duration::from_secs(u64::from(u32::MAX) / 1000) => {
                self.problem(key, format!("{text:?} is too long"));
                Duration::ZERO
            }
            Ok(d) => d,
            Err(error) => {
                self.problem(
                    key,
                    format!(
                        "{text:?} is not a duration such as \"500ms\", \"10s\" or \"2m\": {error}"
                    ),
                );
                Duration::ZERO
            }
        }
    }

    fn absolute(&mut self, key: &str, path: &Path) {
        if !path.is_absolute() {
            self.problem(
                key,
                format!("{:?} must be an absolute path", path.display().to_string()),
            );
        }
    }

    /// A path on the members that goes into rsync's `-e` string.
    fn peer_path(&mut self, key: &str, path: &Path) {
        self.absolute(key, path);
        let text = path.to_string_lossy();
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '\\'))
        {
            self.problem(key, format!("{text:?} must not contain whitespace, quotes or backslashes (rsync splits its -e option on them)"));
        }
    }
}

impl MirrorConfig {
    /// Checks every field and returns the typed settings, or every problem found.
    pub fn validate(&self) -> Result<MirrorSettings, Vec<Problem>> {
        // Destructured so that a new field cannot be forgotten here.
        let MirrorConfig {
            interval,
            user,
            port,
            identity,
            known_hosts,
            connect_timeout,
            io_timeout,
            keepalive,
            peer_identity,
            peer_known_hosts,
            peer_ssh_options,
            rsync_options,
            bwlimit,
            concurrency,
        } = self;
        let mut check = Checker {
            problems: Vec::new(),
        };

        let interval = check.duration("interval", interval, false);
        let connect_timeout = check.duration("connect_timeout", connect_timeout, false);
        let io_timeout = check.duration("io_timeout", io_timeout, false);
        let keepalive = check.duration("keepalive", keepalive, true);
        if !keepalive.is_zero() && keepalive < Duration::from_secs(1) {
            check.problem(
                "keepalive",
                "must be at least 1s, or \"0s\" to turn keepalives off",
            );
        }

        if user.is_empty()
            || user.starts_with('-')
            || user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "'\"\\@:/".contains(c))
        {
            check.problem("user", format!("{user:?} is not a valid user name"));
        }
        if *port == 0 {
            check.problem("port", "must be between 1 and 65535");
        }
        let identity = if identity == "agent" {
            Identity::Agent
        } else {
            let path = PathBuf::from(identity);
            check.absolute("identity", &path);
            Identity::File(path)
        };
        check.absolute("known_hosts", known_hosts);
        check.peer_path("peer_identity", peer_identity);
        check.peer_path("peer_known_hosts", peer_known_hosts);
        for (i, word) in peer_ssh_options.iter().enumerate() {
            if word.is_empty()
                || word
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '\\'))
            {
                check.problem(
                    &format!("peer_ssh_options[{i}]"),
                    format!("{word:?}: give one word per item, without whitespace, quotes or backslashes"),
                );
            }
        }
        for (i, option) in rsync_options.iter().enumerate() {
            if let Err(error) = check_rsync_option(option) {
                check.problem(&format!("rsync_options[{i}]"), error.to_string());
            }
        }
        let bwlimit_kib = parse_bwlimit(bwlimit).unwrap_or_else(|message| {
            check.problem("bwlimit", message);
            None
        });
        if *concurrency == 0 {
            check.problem("concurrency", "must be at least 1");
        }

        if !check.problems.is_empty() {
            return Err(check.problems);
        }
        let keepalive = (!keepalive.is_zero()).then_some(keepalive);
        Ok(MirrorSettings {
            interval,
            ssh: SshSettings {
                user: user.clone(),
                port: *port,
                identity,
                known_hosts: known_hosts.clone(),
                connect_timeout,
                io_timeout,
                keepalive,
            },
            peer_shell: RemoteShell {
                identity: peer_identity.clone(),
                known_hosts: peer_known_hosts.clone(),
                port: *port,
                connect_timeout,
                server_alive: keepalive,
                extra: peer_ssh_options.clone(),
            },
            rsync_options: rsync_options.clone(),
            bwlimit_kib,
            concurrency: *concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MirrorConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn empty_section_gives_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, MirrorConfig::default());
        let settings = config.validate().unwrap();
        assert_eq!(settings.interval, Duration::from_secs(10));
        assert_eq!(
            settings.ssh,
            SshSettings {
                user: "root".into(),
                port: 22,
                identity: Identity::File("/etc/dnsd/id_ed25519".into()),
                known_hosts: "/etc/dnsd/known_hosts".into(),
                connect_timeout: Duration::from_secs(5),
                io_timeout: Duration::from_secs(60),
                keepalive: Some(Duration::from_secs(15)),
            }
        );
        assert_eq!(
            settings.peer_shell.identity,
            PathBuf::from("/etc/dnsd/id_ed25519")
        );
        assert_eq!(settings.bwlimit_kib, None);
        assert_eq!(settings.concurrency, 4);
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(
            r#"
            interval = "1m"
            user = "mirror"
            port = 2222
            identity = "agent"
            known_hosts = "/k"
            connect_timeout = "2s"
            io_timeout = "30s"
            keepalive = "0s"
            peer_identity = "/p/id"
            peer_known_hosts = "/p/kh"
            peer_ssh_options = ["-o", "Compression=no"]
            rsync_options = ["--numeric-ids"]
            bwlimit = 512
            concurrency = 2
            "#,
        )
        .unwrap();
        let settings = config.validate().unwrap();
        assert_eq!(settings.interval, Duration::from_secs(60));
        assert_eq!(settings.ssh.identity, Identity::Agent);
        assert_eq!(settings.ssh.keepalive, None);
        assert_eq!(settings.peer_shell.server_alive, None);
        assert_eq!(settings.peer_shell.port, 2222);
        assert_eq!(settings.bwlimit_kib, Some(512));
        let pass = settings.pass("/a".into(), "10.0.0.3", "/b".into());
        assert_eq!(pass.dest_user, "mirror");
        assert_eq!(pass.extra_args, ["--numeric-ids"]);
        assert_eq!(pass.io_timeout, Some(Duration::from_secs(30)));
        assert!(pass.delete);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = parse("intervall = \"10s\"").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `intervall`"),
            "{error}"
        );
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let config = parse(
            r#"
            interval = "0s"
            user = "-x"
            port = 0
            identity = "id_ed25519"
            known_hosts = "known_hosts"
            connect_timeout = "soon"
            io_timeout = "0"
            keepalive = "100ms"
            peer_identity = "/etc/my key"
            peer_known_hosts = "kh"
            peer_ssh_options = ["-o Compression=no"]
            rsync_options = ["--numeric-ids", "--rsh=nc", "/etc"]
            bwlimit = "10MB"
            concurrency = 0
            "#,
        )
        .unwrap();
        let problems = config.validate().unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "mirror.interval",
                "mirror.connect_timeout",
                "mirror.io_timeout",
                "mirror.keepalive",
                "mirror.user",
                "mirror.port",
                "mirror.identity",
                "mirror.known_hosts",
                "mirror.peer_identity",
                "mirror.peer_known_hosts",
                "mirror.peer_ssh_options[0]",
                "mirror.rsync_options[1]",
                "mirror.rsync_options[2]",
                "mirror.bwlimit",
                "mirror.concurrency",
            ]
        );
        let text: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert!(
            text[1].contains("\"soon\" is not a duration"),
            "{}",
            text[1]
        );
        assert!(text[8].contains("whitespace"), "{}", text[8]);
        assert!(text[13].contains("unknown unit \"mb\""), "{}", text[13]);
    }

    #[test]
    fn dnsd_reads_the_section_through_the_config_crate() {
        // dnsd loads its file with the `config` crate (which also merges environment
        // overrides, arriving as strings); the section must read the same way there.
        let text = "[mirror]\nbwlimit = 512\nport = 2222\ninterval = \"1m\"\n";
        let loaded = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .set_override("mirror.concurrency", "2")
            .unwrap()
            .build()
            .unwrap();
        let mirror: MirrorConfig = loaded.get("mirror").unwrap();
        let settings = mirror.validate().unwrap();
        assert_eq!(settings.bwlimit_kib, Some(512));
        assert_eq!(settings.ssh.port, 2222);
        assert_eq!(settings.interval, Duration::from_secs(60));
        assert_eq!(settings.concurrency, 2);

        let typo = ::config::Config::builder()
            .add_source(::config::File::from_str(
                "[mirror]\nbwlimt = 1\n",
                ::config::FileFormat::Toml,
            ))
            .build()
            .unwrap();
        let error = typo.get::<MirrorConfig>("mirror").unwrap_err();
        assert!(error.to_string().contains("bwlimt"), "{error}");
    }

    #[test]
    fn bandwidth_limits() {
        assert_eq!(parse_bwlimit("0"), Ok(None));
        assert_eq!(parse_bwlimit("512"), Ok(Some(512)));
        assert_eq!(parse_bwlimit("64KiB"), Ok(Some(64)));
        assert_eq!(parse_bwlimit("10MiB"), Ok(Some(10 * 1024)));
        assert_eq!(parse_bwlimit("10m"), Ok(Some(10 * 1024)));
        assert_eq!(parse_bwlimit("1GiB"), Ok(Some(1024 * 1024)));
        assert!(parse_bwlimit("fast").is_err());
        assert!(parse_bwlimit("-1").is_err());
        assert!(parse_bwlimit("99999999999999999999GiB").is_err());
    }
}
