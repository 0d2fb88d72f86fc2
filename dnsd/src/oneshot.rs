//! `dnsd sync`: one mirror run between two members of a service, planned from dnsd's own
//! configuration file, then run, reported and classified by [`rsync_sync::oneshot`] as
//! `rsync-sync` runs explicit hosts (same report, same exit code per failure class).
//!
//! The file goes through [`crate::config::load`], so it gets the whole validation of
//! `dnsd check-config` and the `DNSD_*` environment overrides. This module only turns the
//! service and its two members into a [`Plan`]: the service's paths, each under the
//! member's `root`, from the member's address to the other's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rsync_sync::config::MirrorSettings;
use rsync_sync::oneshot::{
    self, EXIT_CODES_HELP, Endpoint, ErrorReport, Plan, PlanError, RunFlags,
};

use crate::config::{self, Config, ConfigError};

/// Mirror a service's paths from one member to another, once, as a pass of the daemon does.
///
/// Reads the configuration as `dnsd check-config` does (DNSD_* overrides apply), connects
/// to member A (verifying its host key against `[mirror] known_hosts`), verifies B's host key,
/// then runs rsync on A, pushing each of the service's paths to B with --delete. Logs go to
/// stderr (RUST_LOG=debug). For hosts that are not in a dnsd configuration, use rsync-sync.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct SyncArgs {
    /// dnsd configuration file
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Service whose paths are mirrored
    #[arg(long, value_name = "S")]
    pub service: String,
    /// Member to mirror from (rsync runs there)
    #[arg(long, value_name = "A")]
    pub from: String,
    /// Member to mirror to
    #[arg(long, value_name = "B")]
    pub to: String,
    #[command(flatten)]
    pub run: RunFlags,
}

/// Why no run could be planned (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The configuration cannot be loaded; its problems are listed on one line.
    #[error("{}", one_line(&.0.to_string()))]
    Config(ConfigError),
    /// No such service.
    #[error("no [[service]] named {service:?} in {}", file.display())]
    UnknownService {
        /// The service asked for.
        service: String,
        /// The configuration file.
        file: PathBuf,
    },
    /// `--from` or `--to` is not a member of the service.
    #[error("node {node:?} is not a member of service {service:?} (members: {members})")]
    NotAMember {
        /// The node asked for.
        node: String,
        /// The service.
        service: String,
        /// Its members, comma-separated.
        members: String,
    },
    /// The service's paths and members make no plan (no paths, same member twice...).
    #[error("service {service:?}: {error}")]
    Plan {
        /// The service.
        service: String,
        /// Why.
        error: PlanError,
    },
    /// The file has no `[mirror]` section (dnsd's validation requires one for `paths`).
    #[error("{} has no [mirror] section: how the terminal server reaches members over SSH", file.display())]
    NoMirror {
        /// The configuration file.
        file: PathBuf,
    },
}

/// Puts a multi-line message on one line: a line ending in `:` runs on into the next,
/// other lines are separated by `; `. Scripts read one line per failure on stderr.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// The run `dnsd sync --service S --from A --to B` asks for in `config` (read from `file`).
pub fn plan(
    config: &Config,
    file: &Path,
    service: &str,
    from: &str,
    to: &str,
) -> Result<(Plan, MirrorSettings), SyncError> {
    let entry = config
        .services
        .iter()
        .find(|s| s.name == service)
        .ok_or_else(|| SyncError::UnknownService {
            service: service.to_owned(),
            file: file.to_owned(),
        })?;
    let members: Vec<_> = entry
        .nodes
        .iter()
        .filter_map(|&i| config.nodes.get(i.0))
        .collect();
    let member = |name: &str| {
        let node =
            members
                .iter()
                .find(|n| n.name == name)
                .ok_or_else(|| SyncError::NotAMember {
                    node: name.to_owned(),
                    service: entry.name.clone(),
                    members: members
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        Ok(Endpoint {
            name: node.name.clone(),
            address: node.address.to_string(),
            root: node.root.clone(),
        })
    };
    let plan = Plan::new(
        Some(entry.name.clone()),
        member(from)?,
        member(to)?,
        &entry.paths,
    )
    .map_err(|error| SyncError::Plan {
        service: entry.name.clone(),
        error,
    })?;
    let settings = config.mirror.clone().ok_or_else(|| SyncError::NoMirror {
        file: file.to_owned(),
    })?;
    Ok((plan, settings))
}

/// Runs `dnsd sync`: load, plan, run, print; returns the exit code.
pub fn run(args: &SyncArgs) -> u8 {
    let planned = config::load(&args.config)
        .map_err(SyncError::Config)
        .and_then(|config| plan(&config, &args.config, &args.service, &args.from, &args.to))
        .map_err(|error| ErrorReport::config(&error));
    args.run.execute("dnsd sync", planned)
}

/// The `dnsd sync` subcommand: logs on stderr (`warn` unless `RUST_LOG` says otherwise,
/// so that stdout carries only the report), then [`run`].
pub fn main(args: &SyncArgs) -> ExitCode {
    oneshot::init_logging();
    ExitCode::from(run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [dns]
        zone = "example.test."
        nameservers = [{ name = "ns1.example.test.", address = "192.0.2.53" }]

        [mirror]
        identity = "/etc/dnsd/id_ed25519"

        [[node]]
        name = "a"
        address = "10.0.0.1"

        [[node]]
        name = "b"
        address = "10.0.0.2"
        root = "/demo/b"

        [[node]]
        name = "c"
        address = "10.0.0.3"

        [[service]]
        name = "web"
        nodes = ["a", "b"]
        paths = ["/srv/www", "/var/lib/app"]

        [[service]]
        name = "dns-only"
        nodes = ["a", "c"]
    "#;

    /// Writes `text` as a configuration file and loads it as `dnsd sync` does.
    fn load(text: &str) -> (tempfile::TempDir, PathBuf, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsd.toml");
        std::fs::write(&path, text).unwrap();
        let config = config::load_with_env(&path, []);
        (dir, path, config)
    }

    #[test]
    fn a_service_plans_its_paths_under_each_member_root() {
        let (_dir, path, config) = load(FILE);
        let (plan, settings) = plan(&config.unwrap(), &path, "web", "a", "b").unwrap();
        assert_eq!(plan.service.as_deref(), Some("web"));
        assert_eq!(
            (plan.from.name.as_str(), plan.from.address.as_str()),
            ("a", "10.0.0.1")
        );
        assert_eq!(plan.to.address, "10.0.0.2");
        // Each member's root from the file reaches the plan (b has one, a none).
        let last = &plan.paths[1];
        assert_eq!(last.source_dir, Path::new("/var/lib/app"));
        assert_eq!(last.destination_dir, Path::new("/demo/b/var/lib/app"));
        assert_eq!(
            settings.ssh.identity.to_string(),
            "key file /etc/dnsd/id_ed25519"
        );
    }

    #[test]
    fn requests_that_do_not_match_the_file_are_refused() {
        let (_dir, path, config) = load(FILE);
        let config = config.unwrap();
        for (service, from, to, expected) in [
            ("mail", "a", "b", "no [[service]] named \"mail\""),
            (
                "web",
                "a",
                "c",
                "node \"c\" is not a member of service \"web\" (members: a, b)",
            ),
            ("web", "a", "a", "--from and --to are both \"a\""),
            (
                "dns-only",
                "a",
                "c",
                "service \"dns-only\": no paths to mirror",
            ),
        ] {
            let error = plan(&config, &path, service, from, to).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(ErrorReport::config(&error).exit_code, 2);
        }
    }

    #[test]
    fn configuration_problems_are_reported_on_one_line() {
        // dnsd's own validation, not a lenient reading: a zone without its dot is refused
        // along with the [mirror] problem.
        let text = FILE
            .replace("\"example.test.\"", "\"example.test\"")
            .replace(
                "identity = \"/etc/dnsd/id_ed25519\"",
                "connect_timeout = \"soon\"",
            );
        let (_dir, _path, config) = load(&text);
        let error = SyncError::Config(config.unwrap_err());
        let line = error.to_string();
        assert!(
            !line.contains('\n')
                && line.contains("2 problem(s) in configuration")
                && line.contains("dns.zone")
                && line.contains("; mirror.connect_timeout"),
            "{line}"
        );

        let (_dir, _path, config) = load("[dns\n");
        let line = SyncError::Config(config.unwrap_err()).to_string();
        assert!(
            line.starts_with("cannot read configuration") && !line.contains('\n'),
            "{line}"
        );
    }

    #[test]
    fn environment_overrides_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dnsd.toml");
        std::fs::write(&path, FILE).unwrap();
        let env = [("DNSD_MIRROR__PORT".to_owned(), "2222".to_owned())];
        let config = config::load_with_env(&path, env).unwrap();
        let (_, settings) = plan(&config, &path, "web", "b", "a").unwrap();
        assert_eq!(settings.ssh.port, 2222);
    }

    #[test]
    fn the_mirrored_example_plans_a_sync() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../etc/dnsd-mirrored.toml"
        ));
        let config = config::load_with_env(path, []).unwrap();
        let (plan, _) = plan(&config, path, "pg", "db1", "db2").unwrap();
        assert_eq!(plan.paths.len(), 2);
    }

    #[test]
    fn bad_command_lines_exit_2() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Sub,
        }
        #[derive(Debug, clap::Subcommand)]
        enum Sub {
            Sync(SyncArgs),
        }
        let parse = |args: &[&str]| Cli::try_parse_from(["dnsd", "sync"].iter().chain(args));
        let full = ["-c", "f.toml", "--service", "s", "--from", "a", "--to", "b"];
        let with = |extra: &[&'static str]| [&full[..], extra].concat();
        let Sub::Sync(args) = parse(&with(&["--json"])).unwrap().command;
        assert_eq!(args.config, Path::new("f.toml"));
        assert!(args.run.json && !args.run.dry_run);
        for (args, needle) in [
            (full[2..].to_vec(), "--config <FILE>"),
            ([&full[..2], &full[4..]].concat(), "--service <S>"),
            (with(&["--path", "/x"]), "unexpected argument '--path'"),
        ] {
            let error = parse(&args).unwrap_err();
            assert_eq!(error.exit_code(), 2);
            assert!(error.to_string().contains(needle), "{error}");
        }
    }
}
