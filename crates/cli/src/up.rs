//! `covenant up`: the whole system in one process for a laptop or a demo: ledger, standing and
//! watchdog. The services still talk over NATS: a managed `nats-server` (own port, store in
//! `<data>/nats`) is started when `NATS_URL` is not set, and stopped on exit.
//!
//! Every gRPC API needs a token: the first start writes `<data>/auth/tokens.json` (hashes only)
//! with one `admin` token, whose secret goes to `<data>/auth/admin.token` (owner-only), and says
//! where it is. The other `covenant` commands find it there (or in `COVENANT_TOKEN[_FILE]`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use covenant_auth::{AuthMode, Authenticator, ClientToken, Scope, TokenFile};
use covenant_bus::{NatsServer, RelayConfig};
use covenant_ledger::LedgerConfig;
use covenant_log::Durability;
use covenant_standing::StandingConfig;
use covenant_watchdog::WatchdogConfig;

/// Options of `covenant up`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UpArgs {
    /// Data directory: <data>/log, <data>/standing, <data>/watchdog, and the managed NATS store
    /// in <data>/nats.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// gRPC address of the ledger (Ledger, EventLog).
    #[arg(long, default_value = "127.0.0.1:50051")]
    ledger_addr: SocketAddr,
    /// gRPC address of standing (Standing).
    #[arg(long, default_value = "127.0.0.1:50052")]
    standing_addr: SocketAddr,
    /// gRPC address of the watchdog (health and reflection).
    #[arg(long, default_value = "127.0.0.1:50053")]
    watchdog_addr: SocketAddr,
    /// Prometheus metrics address (one exporter for the three services).
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
}

/// Stops what was started so far, newest first, when a later start fails.
struct Started {
    nats: Option<NatsServer>,
    ledger: Option<covenant_ledger::RunningLedger>,
    standing: Option<covenant_standing::RunningStanding>,
    watchdog: Option<covenant_watchdog::RunningWatchdog>,
}

impl Started {
    async fn stop(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        if let Some(watchdog) = self.watchdog.take() {
            result = result.and(watchdog.stop().await.context("stop the watchdog"));
        }
        if let Some(standing) = self.standing.take() {
            result = result.and(standing.stop().await.context("stop standing"));
        }
        if let Some(ledger) = self.ledger.take() {
            result = result.and(ledger.stop().await.context("stop the ledger"));
        }
        if let Some(mut server) = self.nats.take() {
            tokio::task::spawn_blocking(move || server.stop()).await.ok();
        }
        result
    }
}

pub(crate) async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("create data directory {}", args.data.display()))?;
    let auth = local_auth(&args.data)?;
    let mut started = Started { nats: None, ledger: None, standing: None, watchdog: None };
    let nats_url = match std::env::var("NATS_URL") {
        Ok(url) => url,
        Err(_) => {
            let store = args.data.join("nats");
            let server = tokio::task::spawn_blocking(move || NatsServer::start(&store))
                .await
                .context("start nats-server")??;
            let url = server.url();
            started.nats = Some(server);
            url
        }
    };
    if let Err(error) = start_services(&args, &nats_url, &auth.mode, &mut started).await {
        started.stop().await.ok();
        return Err(error);
    }
    let nats_kind = if started.nats.is_some() { "managed nats-server" } else { "NATS_URL" };
    println!("Covenant is up (Ctrl-C stops it)");
    println!("  nats      {nats_url} ({nats_kind})");
    if let Some(ledger) = &started.ledger {
        println!("  ledger    gRPC http://{} (Ledger, EventLog, health, reflection)", ledger.grpc_addr);
    }
    if let Some(standing) = &started.standing {
        println!("  standing  gRPC http://{} (Standing, health, reflection)", standing.grpc_addr);
    }
    if let Some(watchdog) = &started.watchdog {
        println!("  watchdog  gRPC http://{} (health, reflection)", watchdog.grpc_addr);
    }
    println!("  metrics   http://{}/metrics", args.metrics_addr);
    println!("  data      {}", args.data.display());
    println!("  token     {} (admin; every gRPC call needs a token)", auth.admin_token.display());
    if auth.admin_token != std::path::Path::new(crate::client::DEFAULT_TOKEN_FILE) {
        println!(
            "            export COVENANT_TOKEN_FILE={} for the other commands",
            auth.admin_token.display()
        );
    }
    println!("Next: `covenant demo` in another terminal records customer journeys and shows their standing.");

    let failed = tokio::select! {
        result = wait_any(&mut started) => Some(result),
        () = covenant_runtime::shutdown_signal() => None,
    };
    if failed.is_none() {
        println!("stopping …");
    }
    let stopped = started.stop().await;
    if let Some(error) = failed {
        return Err(error);
    }
    stopped?;
    println!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// The tokens of a local system.
struct LocalAuth {
    mode: AuthMode,
    /// Where the admin token's secret is.
    admin_token: PathBuf,
}

/// Loads `<data>/auth/tokens.json`, first creating it with a new admin token.
fn local_auth(data: &std::path::Path) -> anyhow::Result<LocalAuth> {
    let dir = data.join("auth");
    let tokens = dir.join("tokens.json");
    let admin_token = dir.join("admin.token");
    if !tokens.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let admin = covenant_auth::generate_token("admin", &[Scope::Admin])?;
        ClientToken::write(&admin_token, &admin.secret)?;
        TokenFile { tokens: vec![admin.record] }.save(&tokens)?;
        tracing::info!(tokens = %tokens.display(), secret = %admin_token.display(), "created a local admin token");
    }
    let authenticator = Authenticator::load(&tokens)?;
    Ok(LocalAuth { mode: AuthMode::Tokens(std::sync::Arc::new(authenticator)), admin_token })
}

async fn start_services(
    args: &UpArgs,
    nats_url: &str,
    auth: &AuthMode,
    started: &mut Started,
) -> anyhow::Result<()> {
    let ledger = covenant_ledger::start(LedgerConfig {
        data_dir: args.data.join("log"),
        partitions: None,
        durability: Durability::Fsync,
        grpc_addr: args.ledger_addr,
        nats_url: nats_url.to_owned(),
        relay: RelayConfig::default(),
        metrics_addr: Some(args.metrics_addr),
        auth: auth.clone(),
        tls: None,
        nats_security: Default::default(),
        master_key: None,
    })
    .await?;
    let partitions = ledger.partitions;
    started.ledger = Some(ledger);

    let mut standing = StandingConfig::new(args.data.join("standing"), nats_url);
    standing.partitions = partitions;
    standing.grpc_addr = args.standing_addr;
    standing.auth = auth.clone();
    started.standing = Some(covenant_standing::start(standing).await?);

    let mut watchdog = WatchdogConfig::new(args.data.join("watchdog"), nats_url);
    watchdog.partitions = partitions;
    watchdog.grpc_addr = args.watchdog_addr;
    watchdog.auth = auth.clone();
    started.watchdog = Some(covenant_watchdog::start(watchdog).await?);
    Ok(())
}

/// Resolves with an error when any service stops by itself (and forgets that service, whose
/// task has ended).
async fn wait_any(started: &mut Started) -> anyhow::Error {
    let (Some(ledger), Some(standing), Some(watchdog)) =
        (started.ledger.as_mut(), started.standing.as_mut(), started.watchdog.as_mut())
    else {
        return anyhow::anyhow!("a service is missing");
    };
    let (name, result) = tokio::select! {
        result = ledger.wait() => ("ledger", result),
        result = standing.wait() => ("standing", result),
        result = watchdog.wait() => ("watchdog", result),
    };
    match name {
        "ledger" => started.ledger = None,
        "standing" => started.standing = None,
        _ => started.watchdog = None,
    }
    match result {
        Ok(()) => anyhow::anyhow!("the {name} stopped unexpectedly"),
        Err(error) => error.context(format!("the {name} stopped")),
    }
}
