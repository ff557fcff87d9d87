//! `covenant`: run the system and look after its event log.
//!
//! Until the services land, `covenant up` runs a demonstration of the event log: it records
//! realistic customer journeys into `./data/log`, then prints each customer's stream summary
//! and the result of a hash-chain verification. `verify` and `backup` work on any log.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use covenant_domain::{CommandId, CustomerId, Span, Timestamp, sample};
use covenant_log::{AppendRequest, EventLog, LogConfig};

#[derive(Debug, Parser)]
#[command(name = "covenant", version, about = "Covenant: promises kept, trust earned")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Record demo customer journeys into the log and show what was stored.
    Up {
        /// Data directory (the log lives in <data>/log).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Customers to create.
        #[arg(long, default_value_t = 5)]
        customers: u32,
    },
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

async fn up(data: PathBuf, customers: u32) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&data).with_context(|| format!("create data directory {}", data.display()))?;
    let log = EventLog::open(log_config(&data))
        .await
        .with_context(|| format!("open the log in {}", data.display()))?;
    let now = Timestamp::now();
    let run = now.unix_millis();
    println!("Recording {customers} customer journeys into {} …", log.path().display());
    for index in 0..customers {
        let customer_id = CustomerId::new(format!("demo-{index}"))?;
        let promise_id = format!("callback-{run}");
        let mut commands = Vec::new();
        if log.read_stream(customer_id.clone(), 1, 1).await?.is_empty() {
            commands.push(sample::register(&format!("Customer {index}"))?);
        }
        commands.push(sample::interaction(&format!("call-{run}"), 80)?);
        commands.push(sample::promise(&promise_id, now.plus(Span::from_days(1)))?);
        if index % 2 == 0 {
            commands.push(sample::keep(&promise_id)?);
        } else {
            commands.push(sample::complaint(&format!("late-{run}"))?);
        }
        for (step, command) in commands.into_iter().enumerate() {
            let request = AppendRequest {
                customer_id: customer_id.clone(),
                command_id: CommandId::new(format!("demo-{run}-{index}-{step}"))?,
                expected_version: None,
                metadata: sample::metadata(now)?,
                command,
            };
            log.append(request).await?;
        }
    }
    println!("\n{:<10} {:>7} {:>9} {:>7}  last event", "customer", "events", "partition", "offset");
    for index in 0..customers {
        let customer_id = CustomerId::new(format!("demo-{index}"))?;
        let stream = log.read_stream(customer_id.clone(), 1, usize::MAX).await?;
        if let Some(last) = stream.last() {
            println!(
                "{:<10} {:>7} {:>9} {:>7}  {}",
                customer_id.as_str(),
                stream.len(),
                last.position.partition,
                last.position.offset,
                last.event_type()
            );
        }
    }
    let exit = print_verification(&log).await?;
    log.close().await?;
    Ok(exit)
}

async fn print_verification(log: &EventLog) -> anyhow::Result<ExitCode> {
    print_report(log.verify().await?)
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
        Commands::Up { data, customers } => up(data, customers).await,
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

fn main() -> ExitCode {
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
