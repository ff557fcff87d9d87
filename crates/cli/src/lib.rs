//! `covenant`: run the system and look after its event log.
//!
//! `covenant up` runs the services (ledger, standing, watchdog, with a managed nats-server when
//! `NATS_URL` is unset); `covenant demo` records customer journeys through the gRPC API and shows
//! their standing; `org-metrics` shows the organisation's service metrics from standing; `watch`
//! follows customers' band changes; `audit promises` replays the history for every broken
//! promise's story; `export` and `tail` give the events to data teams;
//! `verify`, `replay`, `backup` and `restore` look after the data directory.

mod audit;
mod client;
mod csv_cells;
mod demo;
mod event_json;
mod export;
mod json_payload;
mod load;
mod org_metrics;
mod replay;

pub use replay::replay_standing;
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
    /// Check the data directory (read-only, beside running services): every partition's hash
    /// chain, the stream index against the events, and standing's read models against a replay
    /// of the log; exit 1 naming the first problem.
    Verify {
        /// Data directory.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Copy a backup in as the log of a new data directory, and verify its hash chains.
    Restore {
        /// The backup (a directory `covenant backup` wrote).
        #[arg(long)]
        backup: PathBuf,
        /// The data directory to restore into; must not hold a log yet.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Rebuild the projections (standing's read models, the watchdog's deadlines) from the log,
    /// with progress; the services must be stopped.
    Replay(replay::ReplayArgs),
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
        Commands::Verify { data } => verify(data).await,
        Commands::Backup { data, destination } => {
            let log = match EventLog::open(log_config(&data)).await {
                Ok(log) => log,
                Err(error) if error.to_string().contains("lock") => anyhow::bail!(
                    "the log at {} is in use by a running ledger (it holds the lock): stop it (or `covenant up`) first",
                    data.join("log").display()
                ),
                Err(error) => return Err(anyhow::Error::from(error).context("open the log")),
            };
            log.backup(&destination).await?;
            println!("backup written to {}", destination.display());
            log.close().await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Restore { backup, data } => restore(backup, data).await,
        Commands::Replay(args) => replay::replay(args).await,
    }
}

/// `covenant verify`: hash chains, the stream index, and standing against a replay.
async fn verify(data: PathBuf) -> anyhow::Result<ExitCode> {
    if !data.join("log").exists() {
        anyhow::bail!(
            "no log at {}: pass --data with the directory `covenant up` used",
            data.join("log").display()
        );
    }
    tokio::task::spawn_blocking(move || {
        // Read-only: works beside a running ledger and standing, takes no lock.
        let path = data.join("log");
        let reader = covenant_log::LogReader::open_read_only(&path).context("open the log")?;
        let mut exit = print_report(reader.verify().context("verify the hash chains")?)?;
        match reader.verify_streams().context("check the stream index")? {
            (None, customers) => println!("\nstream index: {customers} customers' streams agree with the events"),
            (Some(problem), _) => {
                let at = problem.position.map(|at| format!(" at {}:{}", at.partition, at.offset)).unwrap_or_default();
                println!("\nstream index: BAD for customer {}{at}: {}", problem.customer, problem.reason);
                exit = ExitCode::FAILURE;
            }
        }
        let scratch = tempfile::tempdir().context("a scratch directory")?;
        match replay::check_standing(&data, scratch.path())? {
            replay::ProjectionCheck::Absent => println!("\nprojections: no standing store in {}", data.display()),
            replay::ProjectionCheck::Equal { events } => println!(
                "\nprojections: standing equals a replay of the log up to its checkpoints ({events} events)"
            ),
            replay::ProjectionCheck::Differs { family, key, live, replayed } => {
                println!(
                    "\nprojections: BAD: standing's `{family}` differs from a replay of the log at key `{key}`\n  standing: {live}\n  replay:   {replayed}"
                );
                exit = ExitCode::FAILURE;
            }
        }
        anyhow::Ok(exit)
    })
    .await
    .context("verify task")?
}

/// `covenant restore`: copies a backup in as the data directory's log, then verifies it.
async fn restore(backup: PathBuf, data: PathBuf) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || {
        if !backup.join("CURRENT").exists() {
            anyhow::bail!(
                "--backup: {} is not a backup made by `covenant backup` (no RocksDB CURRENT file)",
                backup.display()
            );
        }
        let target = data.join("log");
        if target.exists() {
            anyhow::bail!(
                "{} already holds a log: restore into a new --data directory (or move it away first)",
                target.display()
            );
        }
        std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        copy_dir(&backup, &target)
            .with_context(|| format!("copy {} to {}", backup.display(), target.display()))?;
        let reader = covenant_log::LogReader::open_read_only(&target).context("open the restored log")?;
        let report = reader.verify().context("verify the restored log")?;
        let records: u64 = report.iter().map(|partition| partition.records).sum();
        let exit = print_report(report)?;
        println!("\nrestored {records} records into {}", target.display());
        anyhow::Ok(exit)
    })
    .await
    .context("restore task")?
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
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
