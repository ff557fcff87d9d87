//! Covenant's domain: pure types and rules, no I/O.
//!
//! # Layout
//! - [`ids`]: caller identifiers (customer, promise, complaint, …), event ids, the partition hash.
//! - [`values`]: timestamps, spans, money, bounded text.
//! - [`events`]: the v1 event catalogue and the recorded-event envelope.
//! - [`commands`]: what callers ask to record.
//! - [`state`]: a customer's decision state and [`apply`], the fold that builds it.
//! - [`decide`](mod@decide): the business rules, [`decide()`] command → events or [`DomainError`].
//! - [`error`]: typed rejections, each with one status class.
//! - [`deadlines`]: the watchdog's rules: due dates, SLA clocks, deterministic breach commands.
//! - [`trust`]: the trust standing model (DESIGN §5), a pure function of a customer's history.
//! - [`org_metrics`]: organisation metrics (NPS, CSAT, CES, promise keeping, reply and resolution times, SLA compliance) over a window, grouped.
//! - [`views`]: recorded events decoded without copying (borrowed), for scans and replays.
//! - [`sample`]: valid sample commands for tests, benchmarks and demos.
//!
//! The log (`covenant-log`) calls [`decide()`] inside its partition writers and persists the
//! events; everything here is deterministic given its inputs (clocks are passed in).

pub mod audit;
pub mod commands;
pub mod deadlines;
pub mod decide;
pub mod error;
pub mod events;
pub mod ids;
pub mod loyalty;
pub mod org_metrics;
pub mod personal;
pub mod sample;
pub mod state;
pub mod trust;
pub mod values;
pub mod view_decoder;
pub mod views;

#[cfg(test)]
mod decide_tests;

pub use commands::Command;
pub use decide::{DecisionContext, decide};
pub use error::{DomainError, FieldError, RejectionKind};
pub use events::{Event, EventMetadata, Position, RecordedEvent};
pub use ids::{CommandId, CustomerId, EventId};
pub use state::{CustomerState, apply};
pub use values::{Money, Span, Text, Timestamp};
