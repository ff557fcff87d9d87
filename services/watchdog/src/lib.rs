//! The watchdog service: keeps every open promise's due date (`due_at + grace`) and every open
//! complaint's SLA clocks (first reply, resolution; targets per priority and customer tier from
//! the [`SlaPolicy`]) in its own RocksDB, and when one passes asks the ledger over NATS to record
//! it (`ExpirePromise` / `BreachSla`). The ledger decides: only an open promise can expire, only
//! an unanswered complaint can miss its first reply.
//!
//! - [`store`]: the deadlines, fed by a durable consumer of `COVENANT_EVENTS` (every event once,
//!   in order, the checkpoint in the same batch as the deadline changes);
//! - [`scheduler`]: sends the command of every passed deadline with its deterministic
//!   `command_id`, so a restart or a second watchdog never records a breach twice;
//! - [`keys`]: the store's key layouts;
//! - [`cli`]: the `covenant-watchdog` command line.
//!
//! Restart-safe: the consumer resumes at the stored checkpoint and the scheduler scans the stored
//! deadlines from the earliest, so every deadline that passed while the watchdog was down is
//! found. Like every service it serves gRPC health and reflection, and Prometheus metrics:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `covenant_watchdog_deadlines` | | pending deadlines |
//! | `covenant_watchdog_commands_total` | `command`, `outcome` | commands sent, by outcome (`recorded`, `already_recorded`, `refused`, `not_yet_due`, `unavailable`) |
//! | `covenant_consumer_lag_events`, `covenant_consumer_next_offset` | `consumer`, `partition` | the event consumer's progress |

pub mod cli;
pub mod keys;
pub mod scheduler;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use covenant_auth::{AuthMode, ServerTls};
use covenant_bus::{Consumer, ConsumerConfig};
use covenant_bus::{NatsSecurity, connect_with};
pub use covenant_domain::deadlines::SlaPolicy;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

pub use scheduler::{Outcome, SchedulerConfig};
pub use store::{DeadlineStore, WatchdogError};

/// The durable consumer name (`watchdog-p<partition>`), shared by every watchdog instance.
pub const CONSUMER_NAME: &str = "watchdog";
/// How long a stop waits for the store to be released by tasks still finishing a write.
const STORE_RELEASE: Duration = Duration::from_secs(10);

/// How a watchdog runs.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    /// Directory of the watchdog's own store (RocksDB).
    pub data_dir: PathBuf,
    /// Partitions of the event log (must equal the log's; the store remembers it).
    pub partitions: u16,
    pub nats_url: String,
    /// gRPC listen address (health and reflection; port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// Where to serve Prometheus metrics (`/metrics`); `None`: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// Who may call (DESIGN §7): set it; [`Self::new`] leaves authentication off.
    pub auth: AuthMode,
    /// Serve gRPC over TLS with this identity; `None`: plaintext.
    pub tls: Option<ServerTls>,
    /// Credentials and TLS for NATS.
    pub nats_security: NatsSecurity,
    /// SLA targets of complaint clocks.
    pub policy: SlaPolicy,
    pub scheduler: SchedulerConfig,
}

impl WatchdogConfig {
    /// A configuration with the defaults: 8 partitions, the design's SLA policy, the default
    /// scheduler pacing, gRPC on a free loopback port, no metrics.
    pub fn new(data_dir: impl Into<PathBuf>, nats_url: impl Into<String>) -> Self {
        Self {
            data_dir: data_dir.into(),
            partitions: 8,
            nats_url: nats_url.into(),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            auth: AuthMode::Off,
            tls: None,
            nats_security: NatsSecurity::default(),
            policy: SlaPolicy::default(),
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// A started watchdog: where it listens, and how to stop it.
#[derive(Debug)]
pub struct RunningWatchdog {
    pub grpc_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningWatchdog {
    /// Stops serving, consuming and sending, and closes the store (a new watchdog may open it
    /// once this returns).
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("the watchdog task")?
    }

    /// Waits until the watchdog stops by itself (a fatal error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("the watchdog task")?
    }
}

/// Opens the store, connects to NATS (without waiting for it), starts the event consumer and the
/// scheduler, and serves gRPC health and reflection until [`RunningWatchdog::stop`].
pub async fn start(config: WatchdogConfig) -> anyhow::Result<RunningWatchdog> {
    // Before the store opens: it publishes the pending count it finds.
    if let Some(addr) = config.metrics_addr {
        covenant_runtime::install_exporter(addr)?;
    }
    let store = {
        let (dir, partitions, policy) = (config.data_dir.clone(), config.partitions, config.policy.clone());
        tokio::task::spawn_blocking(move || DeadlineStore::open(&dir, partitions, policy))
            .await
            .context("open the deadline store")?
            .with_context(|| format!("open the deadline store in {}", config.data_dir.display()))?
    };
    let store = Arc::new(store);
    let client = connect_with(&config.nats_url, "covenant-watchdog", false, &config.nats_security).await?;
    let consumer = Consumer::start(
        client.clone(),
        Arc::clone(&store),
        ConsumerConfig::new(CONSUMER_NAME, config.partitions),
    )
    .await
    .context("start the event consumer")?;

    let (shutdown, stop) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler::run(
        Arc::clone(&store),
        client.clone(),
        config.scheduler.clone(),
        stop.clone(),
    ));

    // Serving while connected to NATS: breaches go to the ledger over NATS, so without it the
    // watchdog can only wait.
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let nats = client.clone();
    covenant_runtime::spawn_health_monitor(health_reporter, "", move || {
        nats.connection_state() == async_nats::connection::State::Connected
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(covenant_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build gRPC reflection")?;
    let (listener, grpc_addr) = covenant_runtime::bind(config.grpc_addr).await?;
    let router = covenant_auth::grpc_server(config.tls.as_ref())
        .context("configure gRPC TLS")?
        .add_service(health)
        .add_service(InterceptedService::new(reflection, config.auth.any_token()));
    let grpc = covenant_runtime::spawn_grpc(router, listener, stop.clone());
    tracing::info!(%grpc_addr, nats = %config.nats_url, partitions = config.partitions, pending = store.pending(), "watchdog listening");
    config.auth.log("watchdog");

    let released = Arc::downgrade(&store);
    drop(store);
    let task = tokio::spawn(supervise(grpc, scheduler, consumer, client, released, stop));
    Ok(RunningWatchdog { grpc_addr, shutdown, task })
}

/// Waits for a stop (or for gRPC to fail), then stops the scheduler and the consumer, drains
/// NATS, and waits until the store is closed.
async fn supervise(
    mut grpc: JoinHandle<anyhow::Result<()>>,
    scheduler: JoinHandle<()>,
    consumer: Consumer,
    client: async_nats::Client,
    store: Weak<DeadlineStore>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let served = tokio::select! {
        served = &mut grpc => served,
        () = async { let _ = stop.wait_for(|stop| *stop).await; } => grpc.await,
    };
    let served = served
        .map_err(|error| anyhow::anyhow!("the gRPC server task failed: {error}"))
        .and_then(|served| served);
    tracing::debug!("gRPC stopped; stopping the consumer and the scheduler");
    consumer.stop();
    drop(consumer);
    scheduler.abort();
    let _ = scheduler.await;
    if tokio::time::timeout(Duration::from_secs(2), client.drain()).await.is_err() {
        tracing::warn!("NATS did not drain within 2 s");
    }
    // Aborted tasks may still be finishing a store write on the blocking pool.
    let deadline = tokio::time::Instant::now() + STORE_RELEASE;
    while store.strong_count() > 0 {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the deadline store is still in use {STORE_RELEASE:?} after the stop");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!("watchdog stopped");
    served
}
