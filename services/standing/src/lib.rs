//! The standing service: consumes `COVENANT_EVENTS` (one durable JetStream consumer per
//! partition, exactly once and in order, gaps filled from the ledger), keeps its projections in
//! its own RocksDB with each partition's checkpoint in the same write, and answers gRPC
//! `Standing` with read-your-writes.
//!
//! - [`views`]: the read models and how events change them (pure).
//! - [`store`]: the projections in RocksDB; the consumer's sink.
//! - [`bands`]: band changes, and trust and loyalty from a stored history (pure).
//! - [`tracker`]: the band tracker, which records band changes for `WatchStanding`.
//! - [`api`]: gRPC `Standing`.

pub mod api;
pub mod bands;
pub mod cli;
pub mod store;
pub mod tracker;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use covenant_auth::{AuthMode, Scope, ServerTls};
use covenant_bus::{Consumer, ConsumerConfig};
use covenant_bus::{NatsSecurity, connect_with};
use covenant_domain::deadlines::SlaPolicy;
use covenant_domain::loyalty::LoyaltyParams;
use covenant_domain::trust::TrustParams;
use covenant_proto::v1::standing_server::StandingServer;
use tonic::service::interceptor::InterceptedService;

pub use api::StandingApi;
pub use store::StandingStore;
pub use tracker::TrackerConfig;

/// Durable consumer names of standing: `standing-p<partition>`.
pub const CONSUMER_NAME: &str = "standing";

/// How a standing service runs.
#[derive(Debug, Clone)]
pub struct StandingConfig {
    /// Directory of the projections (RocksDB).
    pub data_dir: PathBuf,
    /// Partitions of the log (must match the ledger's).
    pub partitions: u16,
    pub grpc_addr: SocketAddr,
    pub nats_url: String,
    /// Where to serve Prometheus metrics (`/metrics`); `None`: not served.
    pub metrics_addr: Option<SocketAddr>,
    /// Who may call (DESIGN §7): set it; [`Self::new`] leaves authentication off.
    pub auth: AuthMode,
    /// Serve gRPC over TLS with this identity; `None`: plaintext.
    pub tls: Option<ServerTls>,
    /// Credentials and TLS for NATS.
    pub nats_security: NatsSecurity,
    pub trust: TrustParams,
    pub loyalty: LoyaltyParams,
    pub sla: SlaPolicy,
    /// How the band tracker behind `WatchStanding` paces itself.
    pub bands: TrackerConfig,
}

impl StandingConfig {
    pub fn new(data_dir: impl Into<PathBuf>, nats_url: impl Into<String>) -> Self {
        Self {
            data_dir: data_dir.into(),
            partitions: covenant_bus::consumer::DEFAULT_PARTITIONS,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            nats_url: nats_url.into(),
            metrics_addr: None,
            auth: AuthMode::Off,
            tls: None,
            nats_security: NatsSecurity::default(),
            trust: TrustParams::default(),
            loyalty: LoyaltyParams::default(),
            sla: SlaPolicy::default(),
            bands: TrackerConfig::default(),
        }
    }
}

/// A started standing service.
#[derive(Debug)]
pub struct RunningStanding {
    pub grpc_addr: SocketAddr,
    consumer: Arc<Consumer>,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningStanding {
    /// The next offset to apply, per partition.
    pub fn progress(&self) -> Vec<u64> {
        self.consumer.progress()
    }

    /// Stops serving and consuming.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.server.await.context("the standing task")?
    }

    /// Waits until the service stops by itself (a fatal error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.server).await.context("the standing task")?
    }
}

/// Opens the projections, starts consuming (without waiting for NATS), and serves gRPC until
/// [`RunningStanding::stop`].
pub async fn start(config: StandingConfig) -> anyhow::Result<RunningStanding> {
    config.trust.validate().context("trust parameters")?;
    let store = {
        let (dir, partitions, sla) = (config.data_dir.clone(), config.partitions, config.sla);
        tokio::task::spawn_blocking(move || StandingStore::open(&dir, partitions, sla))
            .await?
            .with_context(|| format!("open the projections in {}", config.data_dir.display()))?
    };
    if let Some(addr) = config.metrics_addr {
        covenant_runtime::install_exporter(addr)?;
    }
    let client = connect_with(&config.nats_url, "covenant-standing", false, &config.nats_security).await?;
    let consumer = Arc::new(
        Consumer::start(
            client.clone(),
            Arc::new(store.clone()),
            ConsumerConfig::new(CONSUMER_NAME, config.partitions),
        )
        .await?,
    );
    let tracker = {
        let (store, trust, loyalty) = (store.clone(), config.trust, config.loyalty);
        tokio::task::spawn_blocking(move || tracker::BandTracker::new(store, trust, loyalty))
            .await?
            .context("read the band changes recorded so far")?
    };
    let band_changes = tracker.subscribe();
    let (shutdown, stopped) = tokio::sync::watch::channel(false);
    let band_tracker = tracker::spawn(tracker, store.band_wake(), config.bands, stopped.clone());
    let api = StandingApi::new(store, Arc::clone(&consumer), config.trust, config.loyalty, band_changes);

    // Serving while connected to NATS with every partition's consumer running: queries still
    // answer without NATS, but from projections that no longer move.
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let (nats, consuming) = (client.clone(), Arc::clone(&consumer));
    covenant_runtime::spawn_health_monitor(
        health_reporter,
        <StandingServer<StandingApi> as tonic::server::NamedService>::NAME,
        move || nats.connection_state() == async_nats::connection::State::Connected && consuming.running(),
    );
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(covenant_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build gRPC reflection")?;
    let (listener, grpc_addr) = covenant_runtime::bind(config.grpc_addr).await?;
    tracing::info!(%grpc_addr, nats = %config.nats_url, partitions = config.partitions, "standing listening");
    config.auth.log("standing");

    let router = covenant_auth::grpc_server(config.tls.as_ref())
        .context("configure gRPC TLS")?
        .add_service(health)
        .add_service(InterceptedService::new(reflection, config.auth.any_token()))
        .add_service(StandingServer::with_interceptor(api, config.auth.authorize(Scope::StandingRead)));
    let grpc = covenant_runtime::spawn_grpc(router, listener, stopped);
    let stopping = Arc::clone(&consumer);
    let server = tokio::spawn(async move {
        let served = grpc
            .await
            .map_err(|error| anyhow::anyhow!("the gRPC server task failed: {error}"))
            .and_then(|served| served);
        stopping.stop();
        if let Err(error) = band_tracker.await {
            tracing::warn!(%error, "the band tracker task failed");
        }
        if tokio::time::timeout(Duration::from_secs(2), client.drain()).await.is_err() {
            tracing::warn!("NATS did not drain within 2 s");
        }
        tracing::info!("standing stopped");
        served
    });
    Ok(RunningStanding { grpc_addr, consumer, shutdown, server })
}
