//! `rsync-sync`: one mirror run between two hosts named on the command line, for scripts and
//! operators. Parses the command line, sets up logging and calls [`rsync_sync::cli::run`].

use std::process::ExitCode;

use clap::Parser;
use rsync_sync::cli::{self, Args};
use rsync_sync::oneshot;

fn main() -> ExitCode {
    let args = Args::parse();
    oneshot::init_logging();
    ExitCode::from(cli::run(&args))
}
