//! `covenant load`: the load generator (`covenant-load`) against a running system — realistic
//! journeys from many concurrent gRPC clients at a set rate, reporting the achieved rate, command
//! latency and event-to-standing visibility percentiles.

use std::process::ExitCode;

/// Options of `covenant load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// The ledger's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    ledger: String,
    /// Standing's gRPC endpoint, for visibility latency; `off` to skip.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    standing: String,
    /// Commands per second over all clients (0: as fast as possible).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Customers each client walks through their journeys.
    #[arg(long, default_value_t = 8)]
    customers_per_client: usize,
    /// Measure visibility for one command in this many (0: never).
    #[arg(long, default_value_t = 10)]
    visibility_every: u64,
    /// HTTP/2 connections to the ledger the clients share (each client keeps to one).
    #[arg(long, default_value_t = covenant_load::DEFAULT_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,
}

pub(crate) async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        anyhow::bail!("--duration must be a positive number of seconds, not {}", args.duration);
    }
    let mut config = covenant_load::LoadConfig::new(args.ledger);
    config.token = crate::client::token()?;
    config.standing = (args.standing != "off").then_some(args.standing);
    config.rate = args.rate;
    config.duration = std::time::Duration::from_secs_f64(args.duration);
    config.clients = args.clients;
    config.customers_per_client = args.customers_per_client;
    config.visibility_every = args.visibility_every;
    config.connections = usize::try_from(args.connections)?;
    let target =
        if config.rate == 0 { "as fast as possible".to_owned() } else { format!("{}/s", config.rate) };
    println!("load: {} clients, {target}, for {:.0} s …", config.clients, args.duration);
    let report = covenant_load::run(&config).await?;
    println!("{}", report.summary());
    Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
