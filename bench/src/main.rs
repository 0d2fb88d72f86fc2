//! `dnsd-bench`: runs one of the benchmarks of dnsd against its peers and prints JSON
//! lines on stdout and a human summary on stderr. The scripts in `bench/` call it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks of dnsd against the systems a user would pick instead.
#[derive(Debug, Parser)]
#[command(name = "dnsd-bench")]
struct Cli {
    /// Also write every JSON line to this file (replacing it, unless --append).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Append to --out rather than replace it (results kept across runs: the soak's).
    #[arg(long, global = true)]
    append: bool,
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
    /// Random faults under a real workload, then a checker of what was lost (see docs/soak.md).
    Soak(bench::soak::Args),
    /// Internal: the steady writer run inside the primary by `mirror` and `dataloss`.
    #[command(hide = true)]
    Writer(bench::mirror::WriterArgs),
    /// Internal: the record writer a soak client runs on a member over SSH.
    #[command(hide = true)]
    SoakMember(bench::soak::member::WriterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bench::procs::install_stop_handler();
    let reporter = match (&cli.out, cli.append) {
        (Some(path), true) => bench::report::Reporter::appending(path),
        (out, _) => bench::report::Reporter::new(out.as_deref()),
    };
    let result = reporter.and_then(|out| match &cli.command {
        Bench::Cluster(args) => bench::cluster::run(args, &out),
        Bench::Dns(args) => bench::dns::run(args, &out),
        Bench::Failover(args) => bench::failover::run(args, &out),
        Bench::Mirror(args) => bench::mirror::run(args, &out),
        Bench::Scale(args) => bench::scale::run(args, &out),
        Bench::Dataloss(args) => bench::dataloss::run(args, &out),
        Bench::Secondaries(args) => bench::secondaries::run(args, &out),
        Bench::Soak(args) => bench::soak::run_cli(args, &out),
        Bench::Writer(args) => bench::mirror::writer(args),
        Bench::SoakMember(args) => bench::soak::member::serve(args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dnsd-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
