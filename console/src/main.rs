//! `console`: dnsd's operator console. Parses the command line; everything else is in
//! the library (`console::cli::run`).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    console::cli::run(console::cli::Cli::parse())
}
