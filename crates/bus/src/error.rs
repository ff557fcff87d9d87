//! Errors of the NATS layer, each saying what was being done.

use thiserror::Error;

/// What can go wrong talking to NATS or running a nats-server.
#[derive(Debug, Error)]
pub enum BusError {
    /// No usable `nats-server` binary.
    #[error("nats-server: {0}")]
    ServerBinary(String),
    /// The managed nats-server did not start.
    #[error("nats-server did not start: {0}")]
    ServerStart(String),
    /// Connecting to NATS failed.
    #[error("connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A JetStream request (stream creation, publish, ack) failed.
    #[error("JetStream {action}: {reason}")]
    JetStream { action: &'static str, reason: String },
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] covenant_log::LogError),
    /// A consumer's sink (a service's own store) failed.
    #[error("{action}: {reason}")]
    Sink { action: &'static str, reason: String },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
}

impl BusError {
    pub(crate) fn jetstream(action: &'static str, error: impl std::fmt::Display) -> Self {
        BusError::JetStream { action, reason: error.to_string() }
    }
}
