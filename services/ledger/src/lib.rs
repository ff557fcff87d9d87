//! The ledger service: the only writer of the event log. It serves gRPC `Ledger` (commands) and
//! `EventLog` (reads), answers commands and log reads from other services over NATS, and relays
//! every committed record to JetStream `COVENANT_EVENTS`.
//!
//! The log is the system of record: while NATS is down the ledger keeps accepting commands
//! (`fsync` and `buffered` durability) and the relay catches up when NATS returns; in
//! `replicated` durability a command is answered only after JetStream acknowledged its events.

pub mod cli;
pub mod eventlog_api;
pub mod ledger_api;
pub mod nats_api;
pub mod status;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use covenant_auth::{AuthMode, Scope, ServerTls};
use covenant_bus::{NatsSecurity, connect_with};
use covenant_bus::{Relay, RelayConfig};
use covenant_log::{Durability, EventLog, LogConfig};
use covenant_proto::v1::event_log_server::EventLogServer;
use covenant_proto::v1::ledger_server::LedgerServer;
use tonic::service::interceptor::InterceptedService;

pub use eventlog_api::EventLogApi;
pub use ledger_api::LedgerApi;

/// How a ledger runs.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Directory of the event log (RocksDB).
    pub data_dir: PathBuf,
    /// Partitions of a new log (an existing log keeps its own count; a different one is an error).
    pub partitions: Option<u16>,
    pub durability: Durability,
    /// gRPC listen address (port 0 picks a free port; the bound address is logged).
    pub grpc_addr: SocketAddr,
    pub nats_url: String,
    pub relay: RelayConfig,
    /// Where to serve Prometheus metrics (`/metrics`); `None`: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// Who may call: `Ledger` needs `events:write` (erasure also `admin`), `EventLog` needs
    /// `log:read` (personal data also `pii:read`), reflection any token; health is open.
    pub auth: AuthMode,
    /// Serve gRPC over TLS with this identity; `None`: plaintext.
    pub tls: Option<ServerTls>,
    /// Credentials and TLS for NATS.
    pub nats_security: NatsSecurity,
    /// The master key of the customers' personal data; `None`: `master.key` beside `data_dir`.
    pub master_key: Option<PathBuf>,
}

/// A started ledger: where it listens, and how to stop it.
#[derive(Debug)]
pub struct RunningLedger {
    pub grpc_addr: SocketAddr,
    /// Partitions of the log.
    pub partitions: u16,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningLedger {
    /// Stops serving, stops the relay, and closes the log.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await.context("the ledger task")?
    }

    /// Waits until the ledger stops by itself (a fatal error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.server).await.context("the ledger task")?
    }
}

/// Opens the log, connects to NATS (without waiting for it), starts the relay and the NATS
/// responders, and serves gRPC until [`RunningLedger::stop`].
pub async fn start(config: LedgerConfig) -> anyhow::Result<RunningLedger> {
    let mut log_config = LogConfig::new(&config.data_dir).with_durability(config.durability);
    log_config.master_key = config.master_key.clone();
    if let Some(partitions) = config.partitions {
        log_config = log_config.with_partitions(partitions);
    }
    let log = EventLog::open(log_config)
        .await
        .with_context(|| format!("open the event log in {}", config.data_dir.display()))?;
    let partitions = log.partition_count();
    let client = connect_with(&config.nats_url, "covenant-ledger", false, &config.nats_security).await?;
    let relay = Arc::new(Relay::start(log.clone(), client.clone(), config.relay.clone()).await?);
    log.attach_replication(Arc::clone(&relay) as Arc<dyn covenant_log::ReplicationWaiter>);

    if let Some(addr) = config.metrics_addr {
        covenant_runtime::install_exporter(addr)?;
    }
    let lag_task = telemetry::spawn_relay_lag(log.clone(), Arc::clone(&relay));
    let ledger = LedgerApi::new(log.clone());
    let counters = Arc::new(nats_api::NatsCounters::default());
    let nats_tasks = nats_api::serve(client.clone(), ledger.clone(), log.clone(), counters).await?;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Ledger is NOT_SERVING while the log's disk refuses writes (a full or read-only disk);
    // reads (EventLog) go on. The recovery task brings the log back when the disk does, even
    // when no command arrives to try.
    let disk_health = log.clone();
    let health_task = covenant_runtime::spawn_health_monitor(
        health_reporter.clone(),
        <LedgerServer<LedgerApi> as tonic::server::NamedService>::NAME,
        move || disk_health.disk_trouble().is_none(),
    );
    let recovery_task = spawn_disk_recovery(log.clone());
    health_reporter.set_serving::<EventLogServer<EventLogApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(covenant_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build gRPC reflection")?;

    let (listener, grpc_addr) = covenant_runtime::bind(config.grpc_addr).await?;
    tracing::info!(%grpc_addr, nats = %config.nats_url, durability = ?config.durability, "ledger listening");
    config.auth.log("ledger");

    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let router = covenant_auth::grpc_server(config.tls.as_ref())
        .context("configure gRPC TLS")?
        .add_service(health)
        .add_service(InterceptedService::new(reflection, config.auth.any_token()))
        .add_service(LedgerServer::with_interceptor(ledger, config.auth.authorize(Scope::EventsWrite)))
        .add_service(EventLogServer::with_interceptor(
            EventLogApi::new(log.clone()),
            config.auth.authorize(Scope::LogRead),
        ));
    let grpc = covenant_runtime::spawn_grpc(router, listener, stopped);
    let server = tokio::spawn(async move {
        let served = grpc
            .await
            .map_err(|error| anyhow::anyhow!("the gRPC server task failed: {error}"))
            .and_then(|served| served);
        tracing::debug!("gRPC stopped; stopping the NATS responders and the relay");
        // These tasks hold the log: they must be gone before it closes, or its database stays
        // open (and locked) after the stop.
        for task in nats_tasks.into_iter().chain([lag_task, recovery_task, health_task]) {
            task.abort();
            let _ = task.await;
        }
        // Its last acknowledged offsets become its cursors: a restart publishes nothing twice.
        if let Err(error) = relay.shut_down(&log).await {
            tracing::warn!(%error, "the relay's cursors were not stored at shutdown: a restart publishes its last records again (same message ids)");
        }
        drop(relay);
        if tokio::time::timeout(Duration::from_secs(2), client.drain()).await.is_err() {
            tracing::warn!("NATS did not drain within 2 s");
        }
        tracing::debug!("closing the event log");
        log.close().await.context("close the event log")?;
        tracing::info!("ledger stopped");
        served
    });
    Ok(RunningLedger { grpc_addr, partitions, shutdown, server })
}

/// Every [`DISK_RECOVERY_PERIOD`] while the log is in disk trouble: probe and, when the disk
/// takes writes again, reopen (what an incoming command would also do).
fn spawn_disk_recovery(log: EventLog) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(DISK_RECOVERY_PERIOD);
        loop {
            ticks.tick().await;
            if log.disk_trouble().is_some() {
                match log.recover_disk().await {
                    Ok(()) => tracing::info!("the event log takes commands again"),
                    Err(error) => tracing::debug!(%error, "the event log's disk still refuses writes"),
                }
            }
        }
    })
}

/// How often the ledger retries a troubled disk by itself.
const DISK_RECOVERY_PERIOD: Duration = Duration::from_millis(500);
