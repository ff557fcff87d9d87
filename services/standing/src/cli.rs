//! Standing's command line: arguments, logging, signals. `covenant-standing` (and the process the
//! black-box tests start) is just [`main`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use covenant_runtime::{MetricsAddr, parse_metrics_addr};

use crate::{StandingConfig, start};

/// Covenant standing: projections of the event stream and the `Standing` gRPC API.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory of the projections.
    #[arg(long, default_value = "data/standing")]
    data_dir: PathBuf,
    /// Partitions of the log (must match the ledger's).
    #[arg(long, default_value_t = covenant_bus::consumer::DEFAULT_PARTITIONS)]
    partitions: u16,
    /// gRPC listen address (port 0: a free port, printed on start).
    #[arg(long, default_value = "127.0.0.1:50052")]
    grpc_addr: SocketAddr,
    /// Where to serve Prometheus metrics (`/metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9465", value_parser = parse_metrics_addr)]
    metrics_addr: MetricsAddr,
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// How often every customer's bands are evaluated again for `WatchStanding` (seconds), to
    /// find what time alone changes (decayed evidence, lapsed customers).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    band_sweep_secs: u64,
    #[command(flatten)]
    auth: covenant_auth::AuthArgs,
    #[command(flatten)]
    tls: covenant_auth::TlsArgs,
    #[command(flatten)]
    nats: covenant_bus::NatsArgs,
}

/// Parses the arguments and runs standing until SIGINT or SIGTERM.
pub fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> Result<()> {
    covenant_runtime::init_tracing();
    let args = Args::parse();
    let mut config = StandingConfig::new(args.data_dir, args.nats_url);
    config.partitions = args.partitions;
    config.grpc_addr = args.grpc_addr;
    config.metrics_addr = args.metrics_addr.0;
    config.auth = args.auth.mode()?;
    config.tls = args.tls.server()?;
    config.nats_security = args.nats.security();
    config.bands.sweep_every = std::time::Duration::from_secs(args.band_sweep_secs);
    let mut standing = start(config).await?;
    // One machine-readable line for scripts and tests.
    println!("standing listening on {}", standing.grpc_addr);
    let ended = tokio::select! {
        result = standing.wait() => Some(result),
        () = covenant_runtime::shutdown_signal() => None,
    };
    match ended {
        Some(result) => result,
        None => standing.stop().await,
    }
}
