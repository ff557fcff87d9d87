//! The relay (outbox): publishes every committed log record to JetStream `COVENANT_EVENTS`, in
//! offset order per partition, as a protobuf `EventEnvelope` without personal data.
//!
//! One task per partition follows the log's in-process tail. Publishes are pipelined (up to
//! `max_in_flight` unacknowledged); acks are awaited in order, and only then does the partition's
//! cursor (`relay/<partition>` in the log's `meta`, the next offset to publish) move; it is
//! stored at most every [`CURSOR_EVERY`], and at a clean stop ([`Relay::shut_down`]); it never
//! moves back. After a crash or a NATS outage the relay starts again
//! from the stored cursor: records published since (acknowledged or not) are published again
//! with the same `Nats-Msg-Id` (the event id), which JetStream drops as duplicates within its
//! duplicate window; consumers also deduplicate by partition and offset, so an outage longer
//! than the window cannot make them apply twice.
//!
//! The relay also serves `replicated` durability: [`Relay`] implements
//! [`covenant_log::ReplicationWaiter`], which waits until a partition's acknowledged offset
//! passes the appended one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use covenant_domain::RecordedEvent;
use covenant_log::{EventLog, LogError, ReplicationWaiter};
use covenant_proto::convert::{self, Pii};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::BusError;
use crate::stream::ensure_events_stream;
use crate::subjects::{HEADER_OFFSET, HEADER_PARTITION, event_subject};

/// How long an acknowledged offset waits at most before it is stored as the partition's cursor
/// (a cursor write per acknowledged batch cost a blocking-pool hand-off and a RocksDB write
/// beside the log's writer each time).
pub const CURSOR_EVERY: Duration = Duration::from_millis(100);

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Unacknowledged publishes allowed per partition.
    pub max_in_flight: usize,
    /// Longest wait of a `replicated` append for its JetStream ack.
    pub replication_timeout: Duration,
    /// First pause before retrying after a NATS error (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            replication_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// The running relay: one task per partition, and each partition's acknowledged offset.
#[derive(Debug)]
pub struct Relay {
    /// `acked[p]`: every record of partition `p` below this offset is acknowledged by JetStream.
    acked: Vec<watch::Receiver<u64>>,
    /// Emptied by [`Relay::shut_down`].
    tasks: Mutex<Vec<JoinHandle<()>>>,
    replication_timeout: Duration,
}

/// The name of a partition's relay cursor in the log's `meta`.
pub fn cursor_name(partition: u16) -> String {
    format!("relay/{partition}")
}

impl Relay {
    /// Starts relaying every partition of `log` from its stored cursor.
    ///
    /// The relay makes its own JetStream context: its in-flight limit must cover every
    /// partition's `max_in_flight` at once. With a shared, smaller limit, partition tasks that
    /// each hold unawaited acks would wait on one another's permits for ever (an ack's permit is
    /// only returned once its future is awaited or dropped).
    pub async fn start(
        log: EventLog,
        client: async_nats::Client,
        config: RelayConfig,
    ) -> Result<Self, BusError> {
        let js = crate::stream::jetstream(
            client,
            config.max_in_flight.max(1) * usize::from(log.partition_count().max(1)),
        );
        let mut acked = Vec::new();
        let mut tasks = Vec::new();
        for partition in 0..log.partition_count() {
            let from = log.cursor(&cursor_name(partition)).await?.unwrap_or(0);
            let (sender, receiver) = watch::channel(from);
            acked.push(receiver);
            let relay = PartitionRelay {
                log: log.clone(),
                js: js.clone(),
                partition,
                acked: sender,
                config: config.clone(),
            };
            tasks.push(tokio::spawn(relay.run()));
        }
        Ok(Self { acked, tasks: Mutex::new(tasks), replication_timeout: config.replication_timeout })
    }

    /// Every record of `partition` below the returned offset is acknowledged by JetStream.
    pub fn acknowledged(&self, partition: u16) -> Option<u64> {
        self.acked.get(usize::from(partition)).map(|acked| *acked.borrow())
    }

    /// Stops the relay tasks at once. The cursors stay where the tasks last stored them (at most
    /// [`CURSOR_EVERY`] behind the acknowledged offsets): a restart publishes those records
    /// again, with the same message ids. [`Relay::shut_down`] stores them first.
    pub fn stop(&self) {
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            task.abort();
        }
    }

    /// Stops the relay tasks, then stores each partition's acknowledged offset as its cursor, so
    /// that a restart publishes nothing JetStream has already acknowledged. The cursors only
    /// move forward ([`EventLog::advance_cursor`]): a store a stopped task left running cannot
    /// move one back.
    pub async fn shut_down(&self, log: &EventLog) -> Result<(), BusError> {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Aborted (or already ended): either way it publishes nothing more.
            let _ = task.await;
        }
        for (partition, acked) in (0u16..).zip(&self.acked) {
            let next = *acked.borrow();
            let stored = log.advance_cursor(&cursor_name(partition), next).await?;
            tracing::debug!(partition, next, stored, "relay cursor stored at shutdown");
        }
        Ok(())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ReplicationWaiter for Relay {
    fn wait_replicated(
        &self,
        partition: u16,
        last_offset: u64,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let acked = self.acked.get(usize::from(partition)).cloned();
        let timeout = self.replication_timeout;
        Box::pin(async move {
            let mut acked = acked.ok_or_else(|| format!("partition {partition} is not relayed"))?;
            match tokio::time::timeout(timeout, acked.wait_for(|acked| *acked > last_offset)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err("the relay stopped".to_owned()),
                Err(_) => Err(format!(
                    "JetStream did not acknowledge partition {partition} offset {last_offset} within {timeout:?} (is NATS up?)"
                )),
            }
        })
    }
}

/// One partition's relay loop.
struct PartitionRelay {
    log: EventLog,
    js: async_nats::jetstream::Context,
    partition: u16,
    acked: watch::Sender<u64>,
    config: RelayConfig,
}

impl PartitionRelay {
    async fn run(self) {
        let mut backoff = self.config.min_backoff;
        loop {
            // (Re)declare the stream first: NATS may have been down or restarted empty.
            if let Err(error) = ensure_events_stream(&self.js).await {
                tracing::warn!(partition = self.partition, %error, "relay waiting for NATS");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
                continue;
            }
            let from = *self.acked.borrow();
            match self.relay_from(from).await {
                Ok(()) | Err(BusError::Log(LogError::Closed)) => return,
                Err(error) => {
                    tracing::warn!(partition = self.partition, %error, ?backoff, "relay interrupted; resuming from the last acknowledged offset");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Publishes from `from` on until the log closes or NATS fails. A batch's acks are all
    /// awaited before the next batch is read: meanwhile more records commit, so under load the
    /// next batch is larger (reading a few records at a time costs more per record). The cursor
    /// is stored at most every [`CURSOR_EVERY`] while batches come, and [`CURSOR_EVERY`] after
    /// the last one when they stop.
    async fn relay_from(&self, from: u64) -> Result<(), BusError> {
        let mut tail = self.log.tail(self.partition, from)?;
        let mut in_flight: VecDeque<(u64, PublishAckFuture)> =
            VecDeque::with_capacity(self.config.max_in_flight);
        let mut stored = from;
        let mut stored_at = Instant::now();
        loop {
            let batch = if *self.acked.borrow() > stored {
                match tokio::time::timeout_at(stored_at + CURSOR_EVERY, tail.next_batch()).await {
                    Ok(batch) => batch?,
                    Err(_due) => {
                        stored = self.store_cursor().await?;
                        stored_at = Instant::now();
                        continue;
                    }
                }
            } else {
                tail.next_batch().await?
            };
            for event in &batch {
                if in_flight.len() >= self.config.max_in_flight
                    && let Some((offset, ack)) = in_flight.pop_front()
                {
                    ack.await.map_err(|error| BusError::jetstream("publish ack", error))?;
                    self.acked.send_replace(offset + 1);
                }
                in_flight.push_back((event.position.offset, self.publish(event).await?));
            }
            while let Some((offset, ack)) = in_flight.pop_front() {
                ack.await.map_err(|error| BusError::jetstream("publish ack", error))?;
                self.acked.send_replace(offset + 1);
            }
            if stored_at.elapsed() >= CURSOR_EVERY {
                stored = self.store_cursor().await?;
                stored_at = Instant::now();
            }
        }
    }

    /// Stores the acknowledged offset as the partition's cursor; returns it.
    async fn store_cursor(&self) -> Result<u64, BusError> {
        let next = *self.acked.borrow();
        self.log.advance_cursor(&cursor_name(self.partition), next).await?;
        tracing::trace!(partition = self.partition, next, "relay cursor stored");
        Ok(next)
    }

    async fn publish(&self, event: &RecordedEvent) -> Result<PublishAckFuture, BusError> {
        let envelope = convert::envelope(event, Pii::Redact);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_PARTITION, event.position.partition.to_string().as_str());
        headers.insert(HEADER_OFFSET, event.position.offset.to_string().as_str());
        let message = PublishMessage::build()
            .payload(envelope.encode_to_vec().into())
            .headers(headers)
            .message_id(event.event_id.to_string());
        self.js
            .send_publish(event_subject(event.position.partition, event.event_type()), message)
            .await
            .map_err(|error| BusError::jetstream("publish", error))
    }
}

/// Shared so services can hand the same relay to the log as its replication waiter.
pub type SharedRelay = Arc<Relay>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NatsServer;
    use covenant_domain::{CommandId, CustomerId, Timestamp, sample};
    use covenant_log::{AppendRequest, LogConfig};

    fn request(
        customer_id: &CustomerId,
        command_id: &str,
        command: covenant_domain::Command,
    ) -> AppendRequest {
        AppendRequest {
            customer_id: customer_id.clone(),
            command_id: CommandId::new(command_id).unwrap(),
            expected_version: None,
            metadata: sample::metadata(Timestamp::now()).unwrap(),
            command,
        }
    }

    /// Right after JetStream acknowledged a partition's records (well within `CURSOR_EVERY`,
    /// before a task stored anything), `shut_down` leaves every partition's cursor at its
    /// acknowledged offset; a later, older store cannot move it back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shut_down_stores_every_acknowledged_offset_as_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
        let client = async_nats::connect(nats.url()).await.unwrap();
        let log = EventLog::open(LogConfig::new(dir.path().join("log")).with_partitions(2)).await.unwrap();
        let relay = Relay::start(log.clone(), client, RelayConfig::default()).await.unwrap();
        let ada = CustomerId::new("ada").unwrap();
        let partition = ada.partition(2);
        log.append(request(&ada, "reg", sample::register("Ada").unwrap())).await.unwrap();
        for n in 0..9 {
            let id = format!("i{n}");
            log.append(request(&ada, &id, sample::interaction(&id, 32).unwrap())).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while relay.acknowledged(partition) != Some(10) {
            assert!(std::time::Instant::now() < deadline, "JetStream did not acknowledge the 10 records");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        relay.shut_down(&log).await.unwrap();
        assert_eq!(log.cursor(&cursor_name(partition)).await.unwrap(), Some(10));
        assert_eq!(
            log.cursor(&cursor_name(1 - partition)).await.unwrap(),
            Some(0),
            "nothing to publish there"
        );
        // A store of an older offset (as a stopped task's could land late) leaves the cursor.
        assert_eq!(log.advance_cursor(&cursor_name(partition), 4).await.unwrap(), 10);
        // Stopped: nothing more is published.
        log.append(request(&ada, "late", sample::interaction("late", 32).unwrap())).await.unwrap();
        tokio::time::sleep(CURSOR_EVERY * 2).await;
        assert_eq!(relay.acknowledged(partition), Some(10));
        log.close().await.unwrap();
    }
}
