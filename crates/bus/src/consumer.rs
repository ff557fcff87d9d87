//! The consuming side of `COVENANT_EVENTS`: one durable JetStream consumer per partition that
//! hands an [`EventSink`] every event exactly once, in offset order, with no gap.
//!
//! JetStream delivers at least once and, after an outage or a purge, maybe not everything. The
//! sink keeps its own checkpoint (the next offset it needs, per partition) and writes it in the
//! same atomic batch as the effects of the events, so the consumer can decide per message:
//! - offset below the checkpoint: a duplicate (redelivery, relay re-publish): skipped;
//! - offset equal to it: applied;
//! - offset above it: a gap: the missing range is read from the ledger
//!   (`covenant.log.read.<partition>`, the log being the system of record) and applied first.
//!
//! Acks use `AckPolicy::All`: acking the last message of an applied batch acks everything before
//! it. An ack lost in a crash only means a redelivery, which the checkpoint skips. A message
//! that is not a valid envelope is counted and skipped, except that a bad message at the very
//! offset the sink needs is replaced by the ledger's copy of that offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use covenant_domain::RecordedEvent;
use covenant_proto::v1;
use futures_util::StreamExt;
use prost::Message as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::BusError;
use crate::stream::ensure_events_stream;
use crate::subjects::{
    HEADER_OFFSET, HEADER_PARTITION, LOG_READ_ERROR_HEADER, log_read_subject, partition_events,
};

/// Partitions of a log unless configured otherwise.
pub use covenant_log::DEFAULT_PARTITIONS;

/// An error of a sink, kept opaque to the consumer (it only logs it and retries).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where a consumer's events go: a read model or a scheduler with its own store.
///
/// Both methods may block (they run on tokio's blocking pool).
pub trait EventSink: Send + Sync + 'static {
    /// The next offset of `partition` the sink needs (0 when it has applied nothing).
    fn next_offset(&self, partition: u16) -> Result<u64, SinkError>;
    /// Applies `events` (consecutive offsets of `partition`, the first one being
    /// `next_offset(partition)`) and moves the checkpoint past the last one, atomically: after a
    /// crash either all of them are applied and the checkpoint moved, or nothing is.
    fn apply(&self, partition: u16, events: &[RecordedEvent]) -> Result<(), SinkError>;
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Durable consumer names are `<name>-p<partition>`; one name per service (every instance of
    /// a service shares the name, each service gets every event).
    pub name: String,
    pub partitions: u16,
    /// Most events applied in one sink batch.
    pub max_batch: usize,
    /// First pause after an error (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl ConsumerConfig {
    pub fn new(name: impl Into<String>, partitions: u16) -> Self {
        Self {
            name: name.into(),
            partitions,
            max_batch: 1000,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Counters of a consumer, for metrics and tests.
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// Events handed to the sink.
    pub applied: AtomicU64,
    /// Messages skipped because the sink already had their offset.
    pub duplicates: AtomicU64,
    /// Events read from the ledger to fill gaps.
    pub gap_filled: AtomicU64,
    /// Messages that were not valid event envelopes.
    pub malformed: AtomicU64,
}

/// The running consumer: a task per partition, and how far each partition is applied.
#[derive(Debug)]
pub struct Consumer {
    progress: Vec<watch::Receiver<u64>>,
    counters: Arc<ConsumerCounters>,
    tasks: Vec<JoinHandle<()>>,
}

/// Why a wait for a position ended without reaching it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("partition {partition} does not exist (there are {partitions})")]
    NoSuchPartition { partition: u32, partitions: u16 },
    #[error(
        "partition {partition} is applied up to offset {reached} (exclusive); offset {wanted} was not reached within {waited:?}"
    )]
    Lagging { partition: u16, wanted: u64, reached: u64, waited: Duration },
    #[error("the consumer of partition {0} has stopped")]
    Stopped(u16),
}

impl Consumer {
    /// Starts consuming every partition for `sink`.
    pub async fn start<S: EventSink>(
        client: async_nats::Client,
        sink: Arc<S>,
        config: ConsumerConfig,
    ) -> Result<Self, BusError> {
        let counters = Arc::new(ConsumerCounters::default());
        let mut progress = Vec::new();
        let mut tasks = Vec::new();
        for partition in 0..config.partitions {
            let next = {
                let sink = Arc::clone(&sink);
                blocking(move || sink.next_offset(partition)).await.map_err(|error| BusError::Sink {
                    action: "read the checkpoint",
                    reason: error.to_string(),
                })?
            };
            let (sender, receiver) = watch::channel(next);
            progress.push(receiver);
            let task = PartitionConsumer {
                client: client.clone(),
                sink: Arc::clone(&sink),
                partition,
                next,
                progress: sender,
                counters: Arc::clone(&counters),
                config: config.clone(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        Ok(Self { progress, counters, tasks })
    }

    /// The next offset to apply, per partition.
    pub fn progress(&self) -> Vec<u64> {
        self.progress.iter().map(|progress| *progress.borrow()).collect()
    }

    pub fn counters(&self) -> &ConsumerCounters {
        &self.counters
    }

    /// Waits until `offset` of `partition` is applied, at most `timeout`.
    pub async fn wait_applied(
        &self,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let partitions = self.progress.len() as u16;
        let index = u16::try_from(partition)
            .ok()
            .filter(|index| *index < partitions)
            .ok_or(WaitError::NoSuchPartition { partition, partitions })?;
        let mut progress = self.progress[usize::from(index)].clone();
        let waited =
            tokio::time::timeout(timeout, async { progress.wait_for(|next| *next > offset).await.is_ok() })
                .await;
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => Err(WaitError::Stopped(index)),
            Err(_) => Err(WaitError::Lagging {
                partition: index,
                wanted: offset,
                reached: *self.progress[usize::from(index)].borrow(),
                waited: timeout,
            }),
        }
    }

    /// Whether every partition task is still running (one ends only on a fatal error or a stop).
    pub fn running(&self) -> bool {
        self.tasks.iter().all(|task| !task.is_finished())
    }

    /// Stops every partition task (the checkpoints stay where the last applied batch put them).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SinkError> + Send + 'static,
) -> Result<T, SinkError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| -> SinkError { Box::new(error) })?
}

/// What one delivered message turned out to be.
enum Delivery {
    Event(u64, Box<RecordedEvent>),
    /// A bad message that claims an offset (it may stand for a real event).
    Undecodable(u64),
    Malformed,
}

struct PartitionConsumer<S> {
    client: async_nats::Client,
    sink: Arc<S>,
    partition: u16,
    /// The next offset the sink needs.
    next: u64,
    progress: watch::Sender<u64>,
    counters: Arc<ConsumerCounters>,
    config: ConsumerConfig,
}

impl<S: EventSink> PartitionConsumer<S> {
    async fn run(mut self) {
        let mut backoff = self.config.min_backoff;
        loop {
            match self.consume().await {
                Ok(()) => backoff = self.config.min_backoff,
                Err(error) => {
                    tracing::warn!(partition = self.partition, %error, ?backoff, "consumer interrupted; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Consumes until the message stream ends or fails.
    async fn consume(&mut self) -> Result<(), BusError> {
        let js = crate::stream::jetstream(self.client.clone(), 256);
        let stream = ensure_events_stream(&js).await?;
        let durable = format!("{}-p{}", self.config.name, self.partition);
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: partition_events(self.partition),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::All,
                    ack_wait: Duration::from_secs(10),
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| BusError::jetstream("create consumer", error))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.config.max_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|error| BusError::jetstream("pull messages", error))?;
        let mut chunks = messages.ready_chunks(self.config.max_batch);
        tracing::info!(partition = self.partition, next = self.next, consumer = %durable, "consuming");
        while let Some(chunk) = chunks.next().await {
            let mut last_message = None;
            let mut batch: Vec<RecordedEvent> = Vec::new();
            let mut failure = None;
            for message in chunk {
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        failure = Some(BusError::jetstream("receive", error));
                        break;
                    }
                };
                let delivery = self.decode(&message);
                if let Ok(info) = message.info() {
                    metrics::gauge!("covenant_consumer_lag_events", "consumer" => self.config.name.clone(), "partition" => self.partition.to_string())
                        .set(info.pending as f64);
                }
                let expected = self.next + batch.len() as u64;
                let step = match delivery {
                    Delivery::Malformed => Ok(()),
                    Delivery::Event(offset, _) | Delivery::Undecodable(offset) if offset < expected => {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Delivery::Event(offset, event) => {
                        let filled =
                            if offset > expected { self.fill_gap(&mut batch, offset).await } else { Ok(()) };
                        filled.map(|()| batch.push(*event))
                    }
                    Delivery::Undecodable(offset) => {
                        // The ledger's copy stands in for it, if the ledger has that offset.
                        if let Err(error) = self.fill_gap(&mut batch, offset + 1).await {
                            tracing::warn!(partition = self.partition, offset, %error, "no ledger copy of a malformed message");
                        }
                        Ok(())
                    }
                };
                if let Err(error) = step {
                    // Not acked: JetStream redelivers it (and what follows) after the ack wait.
                    failure = Some(error);
                    break;
                }
                last_message = Some(message);
            }
            // What was collected before a failure is dense from the checkpoint: keep it.
            if !batch.is_empty() {
                self.apply(batch).await;
            }
            if let Some(message) = last_message {
                // AckPolicy::All: this acks every earlier message of the partition too.
                if let Err(error) = message.ack().await {
                    tracing::debug!(partition = self.partition, %error, "ack failed (the redelivery will be skipped)");
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
        }
        Ok(())
    }

    fn decode(&self, message: &async_nats::jetstream::Message) -> Delivery {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .and_then(|value| value.as_str().parse().ok())
        };
        let (Some(partition), Some(offset)) = (header(HEADER_PARTITION), header(HEADER_OFFSET)) else {
            return self.malformed(&message.subject, "no Covenant-Partition/Covenant-Offset header");
        };
        if partition != u64::from(self.partition) {
            return self.malformed(&message.subject, "Covenant-Partition does not match the subject");
        }
        let event = v1::EventEnvelope::decode(message.payload.as_ref())
            .map_err(|error| error.to_string())
            .and_then(|envelope| RecordedEvent::try_from(envelope).map_err(|error| error.to_string()));
        match event {
            Ok(event) if event.position.partition == self.partition && event.position.offset == offset => {
                Delivery::Event(offset, Box::new(event))
            }
            Ok(_) => {
                self.malformed(&message.subject, "the envelope's position differs from its headers");
                Delivery::Undecodable(offset)
            }
            Err(reason) => {
                self.malformed(&message.subject, &reason);
                Delivery::Undecodable(offset)
            }
        }
    }

    fn malformed(&self, subject: &str, reason: &str) -> Delivery {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("covenant_nats_malformed_total", "subject" => "covenant.events").increment(1);
        tracing::warn!(partition = self.partition, subject, reason, "skipped a malformed event message");
        Delivery::Malformed
    }

    /// Reads from the ledger every event from the end of `batch` up to `until` (exclusive).
    async fn fill_gap(&self, batch: &mut Vec<RecordedEvent>, until: u64) -> Result<(), BusError> {
        let subject = log_read_subject(self.partition);
        loop {
            let from = self.next + batch.len() as u64;
            if from >= until {
                return Ok(());
            }
            tracing::info!(partition = self.partition, from, until, "filling a gap from the ledger");
            let request = v1::PartitionFrom { partition: u32::from(self.partition), offset: from };
            let reply = self
                .client
                .request(subject.clone(), request.encode_to_vec().into())
                .await
                .map_err(|error| BusError::jetstream("read a gap from the ledger", error))?;
            if let Some(reason) =
                reply.headers.as_ref().and_then(|headers| headers.get(LOG_READ_ERROR_HEADER))
            {
                return Err(BusError::jetstream("read a gap from the ledger", reason.as_str()));
            }
            let page = v1::ReadAllResponse::decode(reply.payload.as_ref())
                .map_err(|error| BusError::jetstream("decode a gap page", error))?;
            let before = batch.len();
            for envelope in page.events {
                let event = RecordedEvent::try_from(envelope)
                    .map_err(|error| BusError::jetstream("decode a gap event", error))?;
                let expected = self.next + batch.len() as u64;
                if event.position.offset >= until {
                    return Ok(());
                }
                if event.position.offset != expected {
                    return Err(BusError::jetstream(
                        "read a gap from the ledger",
                        format!("offset {} came where {expected} was expected", event.position.offset),
                    ));
                }
                batch.push(event);
            }
            self.counters.gap_filled.fetch_add((batch.len() - before) as u64, Ordering::Relaxed);
            if batch.len() == before {
                return Err(BusError::jetstream(
                    "read a gap from the ledger",
                    format!("the ledger has nothing at offset {from} of partition {}", self.partition),
                ));
            }
        }
    }

    /// Applies `batch`, retrying until the sink takes it (a sink error is a local disk problem:
    /// skipping would lose events, so the partition waits).
    async fn apply(&mut self, batch: Vec<RecordedEvent>) {
        let batch = Arc::new(batch);
        let mut backoff = self.config.min_backoff;
        loop {
            let (sink, events, partition) = (Arc::clone(&self.sink), Arc::clone(&batch), self.partition);
            match blocking(move || sink.apply(partition, &events)).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(partition, %error, ?backoff, "could not apply events; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        self.next += batch.len() as u64;
        self.counters.applied.fetch_add(batch.len() as u64, Ordering::Relaxed);
        metrics::gauge!("covenant_consumer_next_offset", "consumer" => self.config.name.clone(), "partition" => self.partition.to_string())
            .set(self.next as f64);
        self.progress.send_replace(self.next);
    }
}
