//! The `rsync-sync` command line: one mirror run between two hosts named on the command
//! line, with the paths given there, and how to reach the hosts taken from an optional file
//! holding only a `[mirror]` table (this crate's own format) and a few flags.
//!
//! ```text
//! rsync-sync --from HOST[:ROOT] --to HOST[:ROOT] --path DIR [--path DIR]...
//!            [--mirror-config FILE] [--user U] [--port N] [--identity FILE|agent]
//!            [--known-hosts FILE] [--dry-run] [--json] [--progress]
//! ```
//!
//! It knows nothing of dnsd's configuration file: a run planned from a dnsd service is
//! `dnsd sync`. Both are run, reported and classified by [`crate::oneshot`].

use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::config::{MirrorConfig, MirrorSettings, Problem};
use crate::oneshot::{EXIT_CODES_HELP, Endpoint, ErrorReport, Plan, PlanError, RunFlags};

/// Mirror directories from one host to another with rsync over SSH, once.
///
/// Connects to the source host (verifying its host key against the known_hosts file),
/// verifies the destination's host key, then runs rsync on the source, pushing each --path
/// to the destination with --delete. How hosts are reached comes from --mirror-config (a
/// file with a `[mirror]` table only) and the flags below, else the `[mirror]` defaults. Logs go
/// to stderr (RUST_LOG=debug). To mirror a service of a dnsd configuration, use `dnsd sync`.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "rsync-sync", version, after_help = EXIT_CODES_HELP)]
pub struct Args {
    /// Host to mirror from (rsync runs there); an absolute ROOT is put in front of every
    /// --path on it. IPv6 with a root: `[ADDR]:/ROOT`
    #[arg(long, value_name = "HOST[:ROOT]", value_parser = parse_host)]
    pub from: Endpoint,
    /// Host to mirror to, with an optional absolute ROOT as for --from
    #[arg(long, value_name = "HOST[:ROOT]", value_parser = parse_host)]
    pub to: Endpoint,
    /// Absolute directory to mirror; repeat for several (they run in order)
    #[arg(long = "path", value_name = "DIR", required = true)]
    pub paths: Vec<PathBuf>,
    /// TOML file with a `[mirror]` table only (keys as in rsync-sync/README.md)
    #[arg(long, value_name = "FILE")]
    pub mirror_config: Option<PathBuf>,
    /// SSH user, terminal server to hosts and host to host [mirror.user; default root]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// sshd port on both hosts [mirror.port; default 22]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Key this command logs in with, or "agent" [mirror.identity; default
    /// /etc/dnsd/id_ed25519]
    #[arg(long, value_name = "FILE|agent")]
    pub identity: Option<String>,
    /// known_hosts file both hosts' keys are verified against here [mirror.known_hosts;
    /// default /etc/dnsd/known_hosts]
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// --dry-run, --json, --progress
    #[command(flatten)]
    pub run: RunFlags,
}

/// Why the command line or the `[mirror]` file cannot be used (exit 2).
#[derive(Debug, Error)]
pub enum CliError {
    /// The `--mirror-config` file cannot be read.
    #[error("cannot read mirror configuration {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The read error.
        error: io::Error,
    },
    /// The file is not TOML, or its `[mirror]` table has unknown keys or wrong types.
    #[error("cannot use mirror configuration {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, on one line.
        message: String,
    },
    /// The file has tables other than `[mirror]`: probably a dnsd configuration.
    #[error(
        "mirror configuration {} has {keys} besides [mirror]: rsync-sync reads only a [mirror] \
         table; to mirror a service of a dnsd configuration, run `dnsd sync --config FILE`",
        path.display()
    )]
    NotMirrorOnly {
        /// The file.
        path: PathBuf,
        /// The other top-level keys, e.g. `dns, node`.
        keys: String,
    },
    /// The mirror settings (file and flags) have problems; all are listed.
    #[error("the mirror settings{} have {} problem(s): {}", origin(file.as_deref()), problems.len(), join(problems))]
    Problems {
        /// The `--mirror-config` file, if any.
        file: Option<PathBuf>,
        /// Every problem, named by its key (`mirror.bwlimit`) or flag (`--port`).
        problems: Vec<Problem>,
    },
    /// The hosts and paths make no plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

fn origin(file: Option<&Path>) -> String {
    file.map(|f| format!(" (from {})", f.display()))
        .unwrap_or_default()
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `--mirror-config` file: a `[mirror]` table and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorFile {
    #[serde(default)]
    mirror: MirrorConfig,
}

/// Reads a `--mirror-config` file.
pub fn read_mirror_file(path: &Path) -> Result<MirrorConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| CliError::Read {
        path: path.to_owned(),
        error,
    })?;
    let parse_error = |error: toml::de::Error| CliError::Parse {
        path: path.to_owned(),
        message: error
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    let table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
    let others: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "mirror")
        .collect();
    if !others.is_empty() {
        return Err(CliError::NotMirrorOnly {
            path: path.to_owned(),
            keys: others.join(", "),
        });
    }
    let file: MirrorFile = toml::from_str(&text).map_err(parse_error)?;
    Ok(file.mirror)
}

impl Args {
    /// The mirror settings: the file's `[mirror]` (or the defaults), the flags over it,
    /// validated; a problem with a flag's value is named by the flag.
    pub fn settings(&self) -> Result<MirrorSettings, CliError> {
        let mut mirror = match &self.mirror_config {
            Some(path) => read_mirror_file(path)?,
            None => MirrorConfig::default(),
        };
        let mut flags: Vec<(&str, &str)> = Vec::new();
        if let Some(user) = &self.user {
            mirror.user.clone_from(user);
            flags.push(("mirror.user", "--user"));
        }
        if let Some(port) = self.port {
            mirror.port = port;
            flags.push(("mirror.port", "--port"));
        }
        if let Some(identity) = &self.identity {
            mirror.identity.clone_from(identity);
            flags.push(("mirror.identity", "--identity"));
        }
        if let Some(known_hosts) = &self.known_hosts {
            mirror.known_hosts.clone_from(known_hosts);
            flags.push(("mirror.known_hosts", "--known-hosts"));
        }
        mirror.validate().map_err(|mut problems| {
            for problem in &mut problems {
                if let Some((_, flag)) = flags.iter().find(|(key, _)| *key == problem.path) {
                    problem.path = (*flag).to_owned();
                }
            }
            CliError::Problems {
                file: self.mirror_config.clone(),
                problems,
            }
        })
    }

    /// The run these arguments ask for, with its settings.
    pub fn plan(&self) -> Result<(Plan, MirrorSettings), CliError> {
        let plan = Plan::new(None, self.from.clone(), self.to.clone(), &self.paths)?;
        Ok((plan, self.settings()?))
    }
}

/// Parses `HOST`, `HOST:/ROOT`, `[IPV6]` or `[IPV6]:/ROOT` (a bare IPv6 address is a host
/// too). The host is what both the terminal server and the source connect to; the user
/// comes from `--user`, never from `USER@HOST`.
pub fn parse_host(text: &str) -> Result<Endpoint, String> {
    let (host, root) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} has no closing ']'"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{host:?} in brackets is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(root) => (host, Some(root)),
                None => return Err(format!("expected :/ROOT after ']' in {text:?}")),
            },
        }
    } else if text.parse::<Ipv6Addr>().is_ok() {
        (text, None)
    } else {
        match text.split_once(':') {
            Some((host, root)) => (host, Some(root)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {text:?}"));
    }
    if host.starts_with('-') {
        return Err(format!("host {host:?} must not start with '-'"));
    }
    if host.contains('@') {
        return Err(format!(
            "{host:?}: give the user with --user, not as USER@HOST"
        ));
    }
    if let Some(bad) = host
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "/'\"\\[]".contains(*c))
    {
        return Err(format!("host {host:?} contains {bad:?}"));
    }
    let root = match root {
        Some(root) if !root.starts_with('/') => {
            return Err(format!(
                "root {root:?} in {text:?} must be an absolute path (HOST:/ROOT)"
            ));
        }
        Some(root) => Some(PathBuf::from(root)),
        None => None,
    };
    Ok(Endpoint {
        name: text.to_owned(),
        address: host.to_owned(),
        root,
    })
}

/// Runs the command: plan, run, print; returns the exit code.
pub fn run(args: &Args) -> u8 {
    let planned = args.plan().map_err(|error| ErrorReport::config(&error));
    args.run.execute("rsync-sync", planned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::Identity;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("rsync-sync").chain(args.iter().copied()))
    }

    fn minimal<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--from",
            "10.0.0.1",
            "--to",
            "10.0.0.2",
            "--path",
            "/srv/data",
        ];
        args.extend_from_slice(extra);
        args
    }

    /// A usage error: exit 2 and a message naming what is wrong.
    fn refused(args: &[&str], needle: &str) {
        let error = parse(args).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{args:?}");
        let text = error.to_string();
        assert!(text.contains(needle), "{needle:?} missing in: {text}");
    }

    #[test]
    fn hosts_roots_and_paths_are_read() {
        let args = parse(&[
            "--from",
            "db1.example:/demo/a",
            "--to",
            "[fd00::2]:/demo/b",
            "--path",
            "/srv/www",
            "--path",
            "/var/lib/app",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            args.from,
            Endpoint {
                name: "db1.example:/demo/a".into(),
                address: "db1.example".into(),
                root: Some("/demo/a".into()),
            }
        );
        assert_eq!(args.to.address, "fd00::2");
        assert_eq!(args.to.root, Some("/demo/b".into()));
        assert!(args.run.json && !args.run.dry_run);
        let (plan, settings) = args.plan().unwrap();
        assert_eq!(plan.service, None);
        assert_eq!(
            plan.paths[1].destination_dir,
            PathBuf::from("/demo/b/var/lib/app")
        );
        assert_eq!(
            plan.paths[1].source_dir,
            PathBuf::from("/demo/a/var/lib/app")
        );
        // No file and no flags: the [mirror] defaults.
        assert_eq!(settings, MirrorConfig::default().validate().unwrap());

        for (text, address) in [("fd00::1", "fd00::1"), ("[fd00::1]", "fd00::1"), ("h", "h")] {
            let end = parse_host(text).unwrap();
            assert_eq!((end.address.as_str(), end.root), (address, None));
        }
    }

    #[test]
    fn bad_command_lines_exit_2_with_a_clear_error() {
        let from_to = ["--from", "10.0.0.1", "--to", "10.0.0.2"];
        refused(&from_to, "--path <DIR>");
        refused(&["--to", "b", "--path", "/srv"], "--from <HOST[:ROOT]>");
        refused(
            &["--from", "10.0.0.1:srv", "--to", "b", "--path", "/srv"],
            "root \"srv\" in \"10.0.0.1:srv\" must be an absolute path",
        );
        refused(
            &["--from", "root@a", "--to", "b", "--path", "/srv"],
            "give the user with --user",
        );
        refused(
            &["--from", "[a]:/x", "--to", "b", "--path", "/srv"],
            "\"a\" in brackets is not an IPv6 address",
        );
        refused(
            &["--from", ":/x", "--to", "b", "--path", "/srv"],
            "no host in \":/x\"",
        );
        refused(
            &["--from=-oProxyCommand=x", "--to", "b", "--path", "/srv"],
            "must not start with '-'",
        );
        refused(
            &minimal(&["--config", "/etc/dnsd/dnsd.toml"]),
            "unexpected argument '--config'",
        );
        refused(
            &minimal(&["--port", "http"]),
            "invalid value 'http' for '--port <PORT>'",
        );
    }

    #[test]
    fn plans_no_pass_could_carry_out_are_config_errors() {
        for (args, expected) in [
            (
                vec!["--from", "a", "--to", "a", "--path", "/srv"],
                "--from and --to are both \"a\"",
            ),
            (
                vec!["--from", "a", "--to", "b", "--path", "srv"],
                "path \"srv\" must be absolute",
            ),
        ] {
            let error = parse(&args).unwrap().plan().unwrap_err();
            assert_eq!(ErrorReport::config(&error).exit_code, 2);
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn flags_override_the_mirror_file_and_problems_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mirror.toml");
        std::fs::write(
            &file,
            "[mirror]\nuser = \"mirror\"\nport = 2222\nbwlimit = \"10MiB\"\nidentity = \"/k/id\"\n",
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();
        let args = parse(&minimal(&[
            "--mirror-config",
            file_arg,
            "--port",
            "2200",
            "--identity",
            "agent",
        ]))
        .unwrap();
        let settings = args.settings().unwrap();
        assert_eq!(settings.ssh.user, "mirror");
        assert_eq!(settings.ssh.port, 2200);
        assert_eq!(settings.peer_shell.port, 2200);
        assert_eq!(settings.ssh.identity, Identity::Agent);
        assert_eq!(settings.bwlimit_kib, Some(10 * 1024));

        let args = parse(&minimal(&[
            "--mirror-config",
            file_arg,
            "--user=-x",
            "--known-hosts",
            "kh",
        ]))
        .unwrap();
        let error = args.settings().unwrap_err();
        assert_eq!(ErrorReport::config(&error).exit_code, 2);
        let text = error.to_string();
        assert!(
            text.contains(&format!("(from {file_arg}) have 2 problem(s)"))
                && text.contains("--user: \"-x\" is not a valid user name")
                && text.contains("--known-hosts: \"kh\" must be an absolute path"),
            "{text}"
        );
    }

    #[test]
    fn the_mirror_file_holds_a_mirror_table_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mirror.toml");
        let settings_of = |text: &str| {
            std::fs::write(&file, text).unwrap();
            let args = parse(&minimal(&["--mirror-config", file.to_str().unwrap()])).unwrap();
            args.settings()
        };

        let text = settings_of("[dns]\nzone = \"x.\"\n[mirror]\n[[node]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("has dns, node besides [mirror]") && text.contains("dnsd sync"),
            "{text}"
        );
        let text = settings_of("[mirror]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("unknown field `bogus`") && !text.contains('\n'),
            "{text}"
        );
        let text = settings_of("[mirror]\nidentity = \"rel\"\nconcurrency = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("2 problem(s)")
                && text.contains("mirror.identity")
                && text.contains("mirror.concurrency"),
            "{text}"
        );
        assert_eq!(
            settings_of("").unwrap(),
            MirrorConfig::default().validate().unwrap()
        );

        let missing = dir.path().join("missing.toml");
        let text = read_mirror_file(&missing).unwrap_err().to_string();
        assert!(text.contains("missing.toml"), "{text}");
    }

    #[test]
    fn readme_example_is_a_valid_mirror_file() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mirror.toml");
        std::fs::write(&file, &readme[start..end]).unwrap();
        let mirror = read_mirror_file(&file).unwrap();
        mirror.validate().unwrap();
    }
}
