//! Prometheus metrics of the ledger, served over HTTP at `/metrics`:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `covenant_requests_total` | `service`, `method` | requests received (gRPC and NATS) |
//! | `covenant_request_errors_total` | `service`, `method`, `code` | requests answered with an error, by gRPC code |
//! | `covenant_append_seconds` | `service` | time from a command's arrival to its durable answer |
//! | `covenant_relay_lag_events` | `partition` | records committed but not yet acknowledged by JetStream |
//! | `covenant_nats_malformed_total` | `service`, `subject` | NATS messages that did not decode (skipped) |
//! | `covenant_log_group_commit_commands`, `covenant_log_group_commit_seconds` | — | commands per group commit of the log's writer, and the writer's time for it (recorded by `covenant-log`) |
//! | `covenant_log_fsync_seconds`, `covenant_log_fsync_commands` | — | each WAL fsync of the log's sync stage, and the commands it answered |

use std::sync::Arc;
use std::time::{Duration, Instant};

use covenant_bus::Relay;
use covenant_log::EventLog;
use tonic::Status;

/// Counts one request and, when it failed, its code.
pub fn observe<T>(method: &'static str, started: Instant, result: &Result<T, Status>) {
    covenant_runtime::count_request("ledger", method, result);
    metrics::histogram!("covenant_append_seconds", "service" => "ledger")
        .record(started.elapsed().as_secs_f64());
}

/// Counts a NATS message that did not decode.
///
/// Labelled by the subject's family (`covenant.cmd` or `covenant.log.read`), never by the whole
/// subject: anyone on NATS can invent subjects under `covenant.cmd.>`, and one label value per
/// invented subject would grow the exporter's memory without bound.
pub fn malformed(subject: &str) {
    let family = if subject.starts_with("covenant.log.read.") { "covenant.log.read" } else { "covenant.cmd" };
    metrics::counter!("covenant_nats_malformed_total", "service" => "ledger", "subject" => family)
        .increment(1);
}

/// Publishes the relay lag of every partition once a second until the returned task is aborted.
pub fn spawn_relay_lag(log: EventLog, relay: Arc<Relay>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            for partition in 0..log.partition_count() {
                let Ok(committed) = log.committed(partition) else { continue };
                let committed = *committed.borrow();
                let acked = relay.acknowledged(partition).unwrap_or(0);
                metrics::gauge!("covenant_relay_lag_events", "partition" => partition.to_string())
                    .set(committed.saturating_sub(acked) as f64);
            }
        }
    })
}
