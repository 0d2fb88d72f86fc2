//! `rsync-sync`: one mirror pass from the command line, for scripts and operators.
//! Parses the command line, sets up logging and calls [`rsync_sync::cli::run`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rsync_sync::cli::{self, ErrorReport, Request};
use rsync_sync::rsync::Progress;
use tracing_subscriber::EnvFilter;

/// Mirror a service's paths from one node to another with rsync over SSH, once.
///
/// Connects to the source node (verifying its host key against [mirror] known_hosts),
/// verifies the destination's host key, then runs rsync on the source, pushing each of the
/// service's paths to the destination with --delete. Logs go to stderr (RUST_LOG=debug).
#[derive(Debug, Parser)]
#[command(version, after_help = cli::EXIT_CODES_HELP)]
struct Args {
    /// dnsd configuration file ([mirror], [[node]] and [[service]] are read)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Service whose paths are mirrored
    #[arg(long, value_name = "S")]
    service: String,
    /// Node to mirror from (rsync runs there)
    #[arg(long, value_name = "A")]
    from: String,
    /// Node to mirror to
    #[arg(long, value_name = "B")]
    to: String,
    /// Show what would change, change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout instead of human lines
    #[arg(long)]
    json: bool,
    /// Show transfer progress on stderr
    #[arg(long)]
    progress: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("rsync-sync: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<u8> {
    let request = Request {
        config: args.config.clone(),
        service: args.service.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        dry_run: args.dry_run,
    };
    // Redraw only when the percentage moves: rsync reports far more often than that.
    let mut shown: Option<(PathBuf, u8)> = None;
    let show_progress = |path: &Path, p: &Progress| {
        let unchanged = shown
            .as_ref()
            .is_some_and(|(at, pct)| at == path && *pct == p.percent);
        if !args.progress || unchanged {
            return;
        }
        shown = Some((path.to_owned(), p.percent));
        eprint!(
            "\r{}: {:>3}% {} bytes, {} files ",
            path.display(),
            p.percent,
            p.bytes,
            p.transfers.unwrap_or(0)
        );
    };
    let mut stdout = std::io::stdout().lock();
    match cli::run(&request, show_progress) {
        Ok(report) => {
            if args.progress {
                eprintln!();
            }
            if args.json {
                serde_json::to_writer(&mut stdout, &report).context("writing the JSON report")?;
                writeln!(stdout).context("writing the JSON report")?;
            } else {
                for line in report.lines() {
                    writeln!(stdout, "{line}").context("writing the report")?;
                }
            }
            for failure in report.paths.iter().filter_map(|p| p.error.as_ref()) {
                eprintln!("rsync-sync: {}", failure.message);
            }
            Ok(report.exit_code)
        }
        Err(error) => {
            if args.json {
                serde_json::to_writer(&mut stdout, &ErrorReport::from(&error))
                    .context("writing the JSON report")?;
                writeln!(stdout).context("writing the JSON report")?;
            }
            eprintln!("rsync-sync: {error}");
            Ok(error.class().code())
        }
    }
}
