//! `covenant`: run the system and look after its event log.
//!
//! `covenant up` runs the services (ledger, standing, watchdog, with a managed nats-server when
//! `NATS_URL` is unset); `covenant demo` records customer journeys through the gRPC API and shows
//! their standing; `org-metrics` shows the organisation's service metrics from standing; `watch`
//! follows customers' band changes; `audit promises` replays the history for every broken
//! promise's story; `export` and `tail` give the events to data teams;
//! `verify` and `backup` work on any log.

mod audit;
mod demo;
mod event_json;
mod export;
mod load;
mod org_metrics;
mod tail;
mod up;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use covenant_log::{EventLog, LogConfig};

#[derive(Debug, Parser)]
#[command(name = "covenant", version, about = "Covenant: promises kept, trust earned")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the system (ledger, standing, watchdog; a managed nats-server when NATS_URL is unset)
    /// until Ctrl-C.
    Up(up::UpArgs),
    /// Record realistic customer journeys through the ledger's gRPC API and show their standing.
    Demo(demo::DemoArgs),
    /// Send realistic customer journeys at a set rate from many concurrent clients and report the
    /// achieved rate, latency percentiles and event-to-standing visibility.
    Load(load::LoadArgs),
    /// Show the organisation's service metrics over the last days (NPS, CSAT, CES, promise
    /// keeping, complaint reply and resolution times, SLA compliance, customers per band), from a
    /// running standing service.
    OrgMetrics(org_metrics::OrgMetricsArgs),
    /// Follow customers' band changes (trust band; loyalty band, at-risk flag, lifecycle) from a
    /// running standing service: the recorded ones after --after, then live until Ctrl-C.
    Watch(watch::WatchArgs),
    /// Replay the history to audit it: `covenant audit promises` tells every broken promise's
    /// story (from --data, --backup or a running --ledger).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write the history (or a slice: --from, --to, --type) without personal data as JSON lines,
    /// or as CSV with one file per event type, from --data, --backup or a running --ledger.
    Export(export::ExportArgs),
    /// Show events as they are recorded (or from the start), from a running ledger, until Ctrl-C.
    Tail(tail::TailArgs),
    /// Walk every partition's hash chain (read-only, beside a running writer); exit 1 naming the
    /// first bad record.
    Verify {
        /// Data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Write an online backup (RocksDB checkpoint) of the log to a new directory.
    Backup {
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Destination directory; must not exist.
        destination: PathBuf,
    },
}

fn log_config(data: &std::path::Path) -> LogConfig {
    LogConfig::new(data.join("log"))
}

fn print_report(report: Vec<covenant_log::PartitionVerification>) -> anyhow::Result<ExitCode> {
    let mut exit = ExitCode::SUCCESS;
    println!("\nhash chains:");
    for partition in report {
        match partition.problem {
            None => println!("  partition {:>3}: {:>9} records ok", partition.partition, partition.records),
            Some((position, reason)) => {
                println!(
                    "  partition {:>3}: BAD at offset {}: {reason}",
                    partition.partition, position.offset
                );
                exit = ExitCode::FAILURE;
            }
        }
    }
    Ok(exit)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Up(args) => up::up(args).await,
        Commands::Demo(args) => demo::demo(args).await,
        Commands::Load(args) => load::load(args).await,
        Commands::OrgMetrics(args) => org_metrics::org_metrics(args).await,
        Commands::Watch(args) => watch::watch(args).await,
        Commands::Audit(command) => audit::run(command).await,
        Commands::Export(args) => export::export(args).await,
        Commands::Tail(args) => tail::tail(args).await,
        Commands::Verify { data } => {
            if !data.join("log").exists() {
                anyhow::bail!(
                    "no log at {}: pass --data with the directory `covenant up` used",
                    data.join("log").display()
                );
            }
            // Read-only: works beside a running writer, takes no lock.
            let path = data.join("log");
            let report = tokio::task::spawn_blocking(move || {
                covenant_log::LogReader::open_read_only(&path).and_then(|reader| reader.verify())
            })
            .await
            .context("verify task")?
            .context("verify the log")?;
            print_report(report)
        }
        Commands::Backup { data, destination } => {
            let log = EventLog::open(log_config(&data)).await.context("open the log")?;
            log.backup(&destination).await?;
            println!("backup written to {}", destination.display());
            log.close().await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Parses the arguments and runs the command: `covenant` (and the process the black-box tests
/// start) is just this.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
