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
    let mut options = async_nats::ConnectOptions::new()
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
