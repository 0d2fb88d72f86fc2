//! `dnsd`: the terminal server's command line. All logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    version,
    about = "High-availability terminal server: echo heartbeat, failover and authoritative DNS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file; print every problem with its key path.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Run the terminal server.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    // `dnsd sync`: its help is SyncArgs' documentation.
    Sync(dnsd::oneshot::SyncArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match dnsd::config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} nodes, {} services, zone {})",
                    file.display(),
                    cfg.nodes.len(),
                    cfg.services.len(),
                    cfg.dns.zone
                );
                // Valid but risky: said out loud, the exit status unchanged.
                for warning in cfg.warnings() {
                    eprintln!("warning: {warning}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, log_format } => {
            init_tracing(log_format);
            match run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("dnsd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sync(args) => dnsd::oneshot::main(&args),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour only for a person at a terminal: not into files, pipes or journald, and never
/// when `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = dnsd::config::load(path)?;
    dnsd::daemon::run_until_signalled(config, path.to_owned(), |ready| {
        // The machine-readable ready line: one JSON object on stdout.
        println!("{}", ready.to_line());
    })
}
