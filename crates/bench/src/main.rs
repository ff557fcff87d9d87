//! `covenant-bench`: Covenant's benchmarks. Every figure is printed beside a raw baseline
//! measured in the same process, in the same run, on the same disk, so a reader can judge the
//! figure without knowing the machine.
//!
//! - `covenant-bench log`: the event log against raw RocksDB (writes, group commits, scans).
//! - `covenant-bench codec`: the record codec alone (ns per record) beside plain postcard.
//! - `covenant-bench services`: relay, gRPC ingest and event-to-standing visibility beside raw
//!   JetStream publishing, against a real nats-server.
//! - `covenant-bench ops`: audit, export and `Subscribe` catch-up over a million events beside a
//!   raw scan of the same log.
//! - `covenant-bench all`: every benchmark.
//!
//! Progress goes to stderr; the report (markdown) goes to stdout.

mod auth;
mod codec_bench;
mod disk;
mod log_bench;
mod ops_bench;
mod raw;
mod raw_grpc;
mod report;
mod services_bench;
mod stats;
mod workload;

use clap::{Parser, Subcommand};

/// The allocator the services run with (see `covenant-ledger`'s `main`), so that the benchmark
/// measures the log as the ledger runs it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Covenant's benchmarks: each figure beside a raw baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "covenant-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The event log: appends (1 and many producers, buffered and fsync) and partition scans,
    /// each beside raw RocksDB doing the same I/O.
    Log(log_bench::LogArgs),
    /// The record codec alone: encode, checksum, decode, chain hash (ns per record).
    Codec {
        /// Target size in bytes of one encoded event.
        #[arg(long, default_value_t = 200)]
        event_bytes: usize,
        /// Runs of each measurement; the report shows medians.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// The services: relay vs raw JetStream, gRPC ingest, visibility in standing.
    Services(services_bench::ServicesArgs),
    /// Ops and data teams over a million events: audit, export, Subscribe catch-up, beside a raw
    /// scan of the same log.
    Ops(ops_bench::OpsArgs),
    /// Every benchmark, one after the other (the services and ops with their defaults).
    All(log_bench::LogArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        BenchCommand::Log(args) => log_bench::run(&args),
        BenchCommand::Codec { event_bytes, runs } => codec_bench::run(event_bytes, runs),
        BenchCommand::Services(args) => services_bench::run(&args),
        BenchCommand::Ops(args) => ops_bench::run(&args),
        BenchCommand::All(args) => {
            codec_bench::run(args.event_bytes, args.runs)?;
            log_bench::run(&args)?;
            services_bench::run(&services_bench::ServicesArgs::default())?;
            ops_bench::run(&ops_bench::OpsArgs::default())
        }
    }
}
