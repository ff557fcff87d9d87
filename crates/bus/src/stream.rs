//! Connecting to NATS and declaring the `COVENANT_EVENTS` stream.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::BusError;
use crate::subjects::{EVENTS_STREAM, EVENTS_WILDCARD};

/// How long JetStream remembers a `Nats-Msg-Id` to drop a re-published duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Connects to NATS as `name`. The client keeps reconnecting in the background when the server
/// goes away (and, with `wait_for_server = false`, when it is not up yet), so a service can start
/// and keep accepting work while NATS is down.
pub async fn connect(url: &str, name: &str, wait_for_server: bool) -> Result<async_nats::Client, BusError> {
    connect_with(url, name, wait_for_server, &NatsSecurity::default()).await
}

/// How a service proves itself to NATS and protects the connection (DESIGN §7): user and
/// password or a credentials file, and TLS trusting a given CA. The password never appears in
/// `Debug` output, logs or errors.
#[derive(Clone, Default)]
pub struct NatsSecurity {
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT and NKey seed), for NATS's decentralised authentication.
    pub credentials: Option<std::path::PathBuf>,
    /// Connect with TLS, trusting this CA certificate (PEM).
    pub ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for NatsSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSecurity")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("credentials", &self.credentials)
            .field("ca", &self.ca)
            .finish()
    }
}

/// The NATS options every service takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// NATS user (with --nats-password).
    #[arg(long, env = "NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// NATS password (prefer the NATS_PASSWORD environment variable: arguments are visible to
    /// other users of the machine).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, requires = "nats_user")]
    pub nats_password: Option<String>,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "NATS_CREDS", value_name = "FILE", conflicts_with = "nats_user")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// Connect to NATS with TLS, trusting this CA certificate (PEM).
    #[arg(long, env = "NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<std::path::PathBuf>,
}

impl NatsArgs {
    /// The connection security these options ask for.
    pub fn security(&self) -> NatsSecurity {
        NatsSecurity {
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            credentials: self.nats_creds.clone(),
            ca: self.nats_ca.clone(),
        }
    }
}

/// [`connect`] with credentials and TLS.
pub async fn connect_with(
    url: &str,
    name: &str,
    wait_for_server: bool,
    security: &NatsSecurity,
) -> Result<async_nats::Client, BusError> {
    let refuse = |reason: String| BusError::Connect { url: url.to_owned(), reason };
    let mut options = match &security.credentials {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|error| refuse(format!("credentials file {}: {error}", path.display())))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let (Some(user), Some(password)) = (&security.user, &security.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &security.ca {
        if !ca.is_file() {
            return Err(refuse(format!("the NATS CA file {} does not exist", ca.display())));
        }
        options = options.require_tls(true).add_root_certificates(ca.clone());
    }
    let mut options = options
        .name(name)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(5)))
        .max_reconnects(None);
    if !wait_for_server {
        options = options.retry_on_initial_connect();
    }
    options
        .connect(url)
        .await
        .map_err(|error| BusError::Connect { url: url.to_owned(), reason: error.to_string() })
}

/// A JetStream context whose publishes allow `max_in_flight` unacknowledged messages.
pub fn jetstream(client: async_nats::Client, max_in_flight: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(max_in_flight.max(1))
        .backpressure_on_inflight(true)
        .build(client)
}

/// The stream's configuration: every event subject, file storage, kept until deleted by an
/// operator (the log is the system of record; the stream is its public copy).
pub fn events_stream_config() -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.to_owned(),
        subjects: vec![EVENTS_WILDCARD.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Creates `COVENANT_EVENTS` if it does not exist yet.
pub async fn ensure_events_stream(js: &jetstream::Context) -> Result<stream::Stream, BusError> {
    js.get_or_create_stream(events_stream_config())
        .await
        .map_err(|error| BusError::jetstream("create stream COVENANT_EVENTS", error))
}
