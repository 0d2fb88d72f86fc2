//! `dnsd-bench`: runs one of the benchmarks of dnsd against its peers and prints JSON
//! lines on stdout and a human summary on stderr. The scripts in `bench/` call it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks of dnsd against the systems a user would pick instead.
#[derive(Debug, Parser)]
#[command(name = "dnsd-bench")]
struct Cli {
    /// Also append every JSON line to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// DNS throughput and CPU per query: dnsperf against dnsd, Knot, NSD and gdnsd.
    Dns(bench::dns::Args),
    /// Failover and failback time on lab hosts: dnsd (two settings) against gdnsd.
    Failover(bench::failover::Args),
    /// Mirroring cost (dnsd's pass against rsync by hand) and the data-loss window.
    Mirror(bench::mirror::Args),
    /// Writes lost at a primary crash: lsyncd (two delays) against dnsd (two intervals,
    /// two elections).
    Dataloss(bench::dataloss::Args),
    /// Failover through Knot and NSD as secondaries of dnsd: decision to answering.
    Secondaries(bench::secondaries::Args),
    /// The controller at scale: CPU, memory and down-detection delay for 10 to 1,000 members.
    Scale(bench::scale::Args),
    /// Three terminal servers on etcd against standalone dnsd: failover, leader takeover,
    /// etcd's writes in a steady pool and under churn.
    Cluster(bench::cluster::Args),
    /// Internal: the steady writer run inside the primary by `mirror` and `dataloss`.
    #[command(hide = true)]
    Writer(bench::mirror::WriterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bench::procs::install_stop_handler();
    let result =
        bench::report::Reporter::new(cli.out.as_deref()).and_then(|out| match &cli.command {
            Bench::Cluster(args) => bench::cluster::run(args, &out),
            Bench::Dns(args) => bench::dns::run(args, &out),
            Bench::Failover(args) => bench::failover::run(args, &out),
            Bench::Mirror(args) => bench::mirror::run(args, &out),
            Bench::Scale(args) => bench::scale::run(args, &out),
            Bench::Dataloss(args) => bench::dataloss::run(args, &out),
            Bench::Secondaries(args) => bench::secondaries::run(args, &out),
            Bench::Writer(args) => bench::mirror::writer(args),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dnsd-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
