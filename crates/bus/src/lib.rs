//! Covenant on NATS: the subject names every service agrees on, the `COVENANT_EVENTS`
//! JetStream stream, the relay that publishes committed log records to it, the durable consumer
//! that hands services each event exactly once and in order, and a managed
//! `nats-server` child process for `covenant up` and the tests.

pub mod consumer;
pub mod error;
pub mod relay;
pub mod server;
pub mod stream;
pub mod subjects;

pub use consumer::{Consumer, ConsumerConfig, EventSink, SinkError};
pub use error::BusError;
pub use relay::{Relay, RelayConfig};
pub use server::NatsServer;
pub use stream::{NatsArgs, NatsSecurity, connect_with};
