//! The ledger's command line: arguments, logging, signals. `covenant-ledger` (and the process
//! the black-box tests start) is just [`main`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{LedgerConfig, start};
use anyhow::Result;
use clap::Parser;
use covenant_auth::AuthArgs;
use covenant_bus::RelayConfig;
use covenant_log::Durability;
use covenant_runtime::{MetricsAddr, parse_metrics_addr};

/// The Covenant ledger: records commands as events and relays them to NATS.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory of the event log.
    #[arg(long, default_value = "data/log")]
    data_dir: PathBuf,
    /// Partitions of a new log (default 8; an existing log keeps its own).
    #[arg(long)]
    partitions: Option<u16>,
    /// When a command is acknowledged: buffered, fsync or replicated.
    #[arg(long, default_value = "fsync", value_parser = parse_durability)]
    durability: Durability,
    /// gRPC listen address (port 0: a free port, printed on start).
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// Where to serve Prometheus metrics (`/metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_addr)]
    metrics_addr: MetricsAddr,
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The master key that seals customers' personal data (32 bytes; created with a new log).
    /// Default: `master.key` beside --data-dir. Keep it out of backups.
    #[arg(long, env = "COVENANT_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    tls: covenant_auth::TlsArgs,
    #[command(flatten)]
    nats: covenant_bus::NatsArgs,
}

fn parse_durability(value: &str) -> Result<Durability, String> {
    match value {
        "buffered" => Ok(Durability::Buffered),
        "fsync" => Ok(Durability::Fsync),
        "replicated" => Ok(Durability::Replicated),
        other => Err(format!("unknown durability {other:?}: use buffered, fsync or replicated")),
    }
}

/// Parses the arguments and runs the ledger until SIGINT or SIGTERM.
pub fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> Result<()> {
    covenant_runtime::init_tracing();
    let args = Args::parse();
    let auth = args.auth.mode()?;
    let mut ledger = start(LedgerConfig {
        data_dir: args.data_dir,
        partitions: args.partitions,
        durability: args.durability,
        grpc_addr: args.grpc_addr,
        nats_url: args.nats_url,
        relay: RelayConfig::default(),
        metrics_addr: args.metrics_addr.0,
        auth,
        tls: args.tls.server()?,
        nats_security: args.nats.security(),
        master_key: args.master_key_file,
    })
    .await?;
    // One machine-readable line for scripts and tests.
    println!("ledger listening on {}", ledger.grpc_addr);
    let ended = tokio::select! {
        result = ledger.wait() => Some(result),
        () = covenant_runtime::shutdown_signal() => None,
    };
    match ended {
        Some(result) => result,
        None => ledger.stop().await,
    }
}
