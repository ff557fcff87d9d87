//! Covenant's event log: the system of record, in RocksDB (DESIGN §3).
//!
//! Each customer's events form a **stream**; streams are spread over a fixed number of
//! **partitions** (`xxh3(customer_id) % P`, P stored at creation). Each partition has a dense
//! offset sequence and its own blake3 **hash chain**, and belongs to exactly one **writer
//! thread**, which turns queued commands into group commits. Appends are idempotent by `command_id` (outcomes kept durably in
//! the same batch as the events) and may carry an `expected_version`.
//!
//! # Layout
//! - [`config`]: [`LogConfig`], [`Durability`].
//! - `keys` / [`codec`]: key layouts and the versioned, hash-chained value encoding.
//! - `store`: the RocksDB database and blocking reads.
//! - `shared`: the database as the log shares it, reopened after disk trouble (a full or
//!   read-only disk: commands refused with [`LogError::Unwritable`] until the disk recovers).
//! - `writer`: the writer threads, each owning a set of partitions (decide → one `WriteBatch`
//!   → sync → reply).
//! - this file: [`EventLog`], the async handle; [`LogReader`], the blocking read handle;
//!   [`Tail`], the in-process feed of newly committed records.
//!
//! No RocksDB call runs on an async runtime worker: writes run on the writer threads, and the
//! async reads go through `tokio::task::spawn_blocking`.

pub mod codec;
pub mod config;
mod error;
mod keys;
mod recent;
pub mod sealing;
mod shared;
mod stats;
mod store;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;

use covenant_domain::{Command, CommandId, CustomerId, EventMetadata, Position, RecordedEvent, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{DEFAULT_PARTITIONS, Durability, LogConfig};

/// The cores this process may run on (1 when the machine cannot tell): the default thread
/// count of the work that reads the log on every core (replay, verify, export, audit).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
pub use error::{LogError, Result};
pub use stats::WriteStats;
pub use store::{PartitionVerification, PersonalDataState, StreamProblem};

use crate::codec::StoredOutcome;
use crate::recent::RecentRecords;
use crate::shared::SharedStore;
use crate::store::Store;
use crate::writer::{AppendJob, OwnedPartition, Writer};

/// Commands one writer's queue holds before `append` waits for room.
const QUEUE_DEPTH: usize = 8192;

/// A command for one customer's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub customer_id: CustomerId,
    /// The caller's id for this command: a retry with the same id returns the first outcome.
    pub command_id: CommandId,
    /// When set, the stream must be at exactly this version (0 for a new stream).
    pub expected_version: Option<u64>,
    pub metadata: EventMetadata,
    pub command: Command,
}

/// Where an accepted command's events went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub partition: u16,
    /// Offset of the first event; the events are at consecutive offsets.
    pub first_offset: u64,
    pub event_count: u32,
    /// The stream's version after the command.
    pub stream_version: u64,
    pub recorded_at: Timestamp,
    /// True when this is a retry answered from the stored outcome (nothing was appended).
    pub deduplicated: bool,
}

impl AppendOutcome {
    fn from_stored(outcome: &StoredOutcome, deduplicated: bool) -> Self {
        Self {
            partition: outcome.partition,
            first_offset: outcome.first_offset,
            event_count: outcome.event_count,
            stream_version: outcome.stream_version,
            recorded_at: outcome.recorded_at,
            deduplicated,
        }
    }

    /// Positions of the appended events.
    pub fn positions(&self) -> impl Iterator<Item = Position> + use<> {
        let partition = self.partition;
        (self.first_offset..self.first_offset + u64::from(self.event_count))
            .map(move |offset| Position { partition, offset })
    }

    /// Position of the last appended event, if any.
    pub fn last_position(&self) -> Option<Position> {
        self.positions().last()
    }
}

/// The recording clock: `recorded_at` and deadline checks use it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The hook for `replicated` durability: confirms that a partition's records up to an offset
/// were acknowledged by the replication layer (the NATS relay).
pub trait ReplicationWaiter: Send + Sync + fmt::Debug + 'static {
    fn wait_replicated(
        &self,
        partition: u16,
        last_offset: u64,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send + '_>>;
}

struct Inner {
    shared: Arc<SharedStore>,
    /// Emptied by `close`, which ends the writers once their queues drain.
    queues: RwLock<Vec<mpsc::Sender<AppendJob>>>,
    committed: Vec<watch::Receiver<u64>>,
    /// Each partition's newest records, as its writer wrote them (for tails that keep up).
    recent: Vec<Arc<RecentRecords>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    durability: Durability,
    replication: OnceLock<Arc<dyn ReplicationWaiter>>,
    /// Dropped by `close` (or with the log) to stop the retention thread.
    retention_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    /// What the writers and sync stages did.
    write_counters: Arc<stats::WriteCounters>,
    /// Held while a cursor is written (an advance reads, compares and writes under it), so no
    /// write can fall between an advance's read and its write.
    cursor_writes: Arc<Mutex<()>>,
}

/// The async handle to an open event log. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for EventLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLog")
            .field("path", &self.inner.shared.path())
            .field("partitions", &self.inner.shared.partition_count())
            .field("durability", &self.inner.durability)
            .finish()
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|_| LogError::Closed)?
}

impl EventLog {
    /// Opens (or creates) the log and starts the writer (and sync) threads. Blocking: call it
    /// before starting a runtime or through [`EventLog::open`].
    pub fn open_blocking(config: LogConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        if config.max_batch == 0 {
            return Err(LogError::Config("max_batch must be at least 1".into()));
        }
        let store = Store::open(&config)?;
        let partitions = store.partition_count();
        let writer_count = config.writer_count().min(usize::from(partitions));
        let mut owned: Vec<Vec<OwnedPartition>> = (0..writer_count).map(|_| Vec::new()).collect();
        let mut committed = Vec::with_capacity(usize::from(partitions));
        let mut recent = Vec::with_capacity(usize::from(partitions));
        for partition in 0..partitions {
            let chain = store.chain_head(partition)?;
            let (committed_sender, committed_receiver) = watch::channel(chain.next_offset);
            let records = Arc::new(RecentRecords::new(recent::RECENT_RECORDS));
            owned[usize::from(partition) % writer_count].push(OwnedPartition {
                partition,
                chain,
                committed: Arc::new(committed_sender),
                recent: Arc::clone(&records),
            });
            committed.push(committed_receiver);
            recent.push(records);
        }
        let store = Arc::new(SharedStore::new(store, Some(config.clone())));
        let write_counters = Arc::new(stats::WriteCounters::default());
        let mut queues = Vec::with_capacity(writer_count);
        let mut writers = Vec::with_capacity(writer_count + 2);
        // One sync stage for all writers: a WAL fsync covers every batch written before it,
        // whichever writer wrote it, so more stages would only fsync more often.
        // Started here, on the runtime that opens the log (when there is one).
        let replies = writer::Replies::start();
        let mut syncer_thread = None;
        let syncer = if config.durability == Durability::Buffered {
            None
        } else {
            let (syncer, pending) = std::sync::mpsc::channel();
            let store = Arc::clone(&store);
            let counters = Arc::clone(&write_counters);
            let replies = replies.clone();
            syncer_thread = Some(
                std::thread::Builder::new()
                    .name("log-syncer".into())
                    .spawn(move || writer::run_syncer(store, pending, &counters, &replies))
                    .map_err(|source| LogError::Io {
                        action: "start syncer thread for",
                        path: config.path.display().to_string(),
                        source,
                    })?,
            );
            Some(syncer)
        };
        for (index, partitions_of_writer) in owned.into_iter().enumerate() {
            let mut slots = vec![None; usize::from(partitions)];
            for (slot, owned) in partitions_of_writer.iter().enumerate() {
                slots[usize::from(owned.partition)] = Some(slot);
            }
            let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
            let writer = Writer {
                name: format!("log-writer-{index}"),
                shared: Arc::clone(&store),
                generation: 0,
                partitions: partitions_of_writer,
                slots,
                states: Default::default(),
                state_cache_capacity: config.state_cache_per_partition,
                head_snapshot_every: config.head_snapshot_every.max(1),
                durability: config.durability,
                max_batch: config.max_batch,
                clock: Arc::clone(&clock),
                syncer: syncer.clone(),
                data_keys: Default::default(),
                shred_pending: false,
                counters: Arc::clone(&write_counters),
                replies: replies.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(writer.name.clone())
                .spawn(move || writer.run(receiver))
                .map_err(|source| LogError::Io {
                    action: "start writer thread for",
                    path: config.path.display().to_string(),
                    source,
                })?;
            queues.push(queue);
            writers.push(handle);
        }
        // Joined in order: the writers end first (dropping their senders), then the sync stage
        // drains and ends.
        drop(syncer);
        writers.extend(syncer_thread);
        let mut retention_stop = None;
        if let Some(retention) = config.command_retention {
            if retention <= covenant_domain::Span::ZERO {
                return Err(LogError::Config("command_retention must be positive".into()));
            }
            let (stop, stopped) = std::sync::mpsc::channel();
            writers.push(spawn_retention(
                Arc::clone(&store),
                retention,
                Arc::clone(&clock),
                stopped,
                &config.path,
            )?);
            retention_stop = Some(stop);
        }
        tracing::info!(
            path = %config.path.display(),
            partitions,
            writers = writer_count,
            durability = ?config.durability,
            "event log open"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                shared: store,
                queues: RwLock::new(queues),
                committed,
                recent,
                writers: Mutex::new(writers),
                durability: config.durability,
                replication: OnceLock::new(),
                retention_stop: Mutex::new(retention_stop),
                write_counters,
                cursor_writes: Arc::default(),
            }),
        })
    }

    /// Opens (or creates) the log on a blocking thread, with the system clock.
    pub async fn open(config: LogConfig) -> Result<Self> {
        Self::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Opens (or creates) the log on a blocking thread, with `clock` as the recording clock.
    pub async fn open_with_clock(config: LogConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        blocking(move || Self::open_blocking(config, clock)).await
    }

    /// The partition count, fixed at creation.
    pub fn partition_count(&self) -> u16 {
        self.inner.shared.partition_count()
    }

    /// What is wrong with the disk while the log refuses commands because of it (a full or
    /// read-only disk); `None` when it takes them.
    pub fn disk_trouble(&self) -> Option<String> {
        self.inner.shared.trouble()
    }

    /// While in disk trouble: probes the disk and reopens the database once it takes writes
    /// again (rate-limited; the writers do the same when commands arrive). Without commands, this
    /// is what brings the log back. `Ok` when the log takes commands.
    pub async fn recover_disk(&self) -> Result<()> {
        let shared = Arc::clone(&self.inner.shared);
        blocking(move || shared.writable().map(|_| ())).await
    }

    /// Totals of the write path so far: group commits, fsyncs and the time they took (see
    /// `stats` for what they tell).
    pub fn write_stats(&self) -> WriteStats {
        self.inner.write_counters.snapshot()
    }

    /// The durability mode appends are acknowledged with.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.inner.shared.path()
    }

    /// Attaches the replication layer that `replicated` durability waits for. Only the first
    /// attachment counts.
    pub fn attach_replication(&self, replication: Arc<dyn ReplicationWaiter>) {
        let _ = self.inner.replication.set(replication);
    }

    /// Decides and appends one command; answers once it is durable per the durability mode.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendOutcome> {
        let partition = request.customer_id.partition(self.partition_count());
        let fingerprint = command_fingerprint(&request.command)?;
        let (reply, answer) = oneshot::channel();
        let queue = self
            .inner
            .queues
            .read()
            .ok()
            .and_then(|queues| match queues.len() {
                0 => None,
                writers => queues.get(usize::from(partition) % writers).cloned(),
            })
            .ok_or(LogError::Closed)?;
        queue
            .send(AppendJob { partition, request, fingerprint, reply })
            .await
            .map_err(|_| LogError::Closed)?;
        let outcome = answer.await.map_err(|_| LogError::Closed)??;
        if self.inner.durability == Durability::Replicated && !outcome.deduplicated {
            let replication = self.inner.replication.get().ok_or(LogError::ReplicationUnavailable)?;
            if let Some(last) = outcome.last_position() {
                replication
                    .wait_replicated(last.partition, last.offset)
                    .await
                    .map_err(LogError::Replication)?;
            }
        }
        Ok(outcome)
    }

    /// A blocking read handle sharing this log's database.
    pub fn reader(&self) -> LogReader {
        LogReader { shared: Arc::clone(&self.inner.shared) }
    }

    /// The next offset to be committed in `partition`, as a watch that changes on each commit.
    pub fn committed(&self, partition: u16) -> Result<watch::Receiver<u64>> {
        self.inner.shared.check_partition(partition)?;
        Ok(self.inner.committed[usize::from(partition)].clone())
    }

    /// Up to `max` events of a customer's stream from `from_version` (1-based) on.
    pub async fn read_stream(
        &self,
        customer_id: CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let reader = self.reader();
        blocking(move || reader.read_stream(&customer_id, from_version, max)).await
    }

    /// [`Self::read_stream`] with each event's personal data opened with the customer's key
    /// (for callers allowed to see it); after an erasure the fields stay empty
    /// ([`PersonalDataState::Erased`]).
    pub async fn read_stream_revealed(
        &self,
        customer_id: CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<(RecordedEvent, PersonalDataState)>> {
        let reader = self.reader();
        blocking(move || reader.read_stream_revealed(&customer_id, from_version, max)).await
    }

    /// Up to `max` records of `partition` from `from_offset` on.
    pub async fn read_partition(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let reader = self.reader();
        blocking(move || reader.read_partition(partition, from_offset, max)).await
    }

    /// A feed of `partition`'s records from `from_offset` on: past ones first, then each new
    /// commit as it happens.
    pub fn tail(&self, partition: u16, from_offset: u64) -> Result<Tail> {
        Ok(Tail {
            log: self.clone(),
            partition,
            next_offset: from_offset,
            committed: self.committed(partition)?,
            recent: Arc::clone(&self.inner.recent[usize::from(partition)]),
            max_batch: 1024,
        })
    }

    /// A named cursor kept in the log's `meta` column family (e.g. `relay/3`, the next offset of
    /// partition 3 the relay has to publish); `None` when it was never stored.
    pub async fn cursor(&self, name: &str) -> Result<Option<u64>> {
        let reader = self.reader();
        let name = name.to_owned();
        blocking(move || reader.shared.current()?.cursor(&name)).await
    }

    /// Stores a named cursor (see [`EventLog::cursor`]), also backwards (to replay from
    /// earlier); cursors that only move forward use [`EventLog::advance_cursor`].
    pub async fn set_cursor(&self, name: &str, value: u64) -> Result<()> {
        let reader = self.reader();
        let name = name.to_owned();
        let cursor_writes = Arc::clone(&self.inner.cursor_writes);
        blocking(move || {
            let _writing = cursor_writes.lock().unwrap_or_else(PoisonError::into_inner);
            reader.shared.current()?.set_cursor(&name, value)
        })
        .await
    }

    /// Moves a named cursor forward to `value`; a cursor already at or past it stays (see
    /// [`EventLog::cursor`]). Returns the cursor as stored afterwards. For cursors that only ever
    /// move forward, such as the relay's: a late write of an older value cannot move them back.
    pub async fn advance_cursor(&self, name: &str, value: u64) -> Result<u64> {
        let reader = self.reader();
        let name = name.to_owned();
        let cursor_writes = Arc::clone(&self.inner.cursor_writes);
        blocking(move || {
            let _writing = cursor_writes.lock().unwrap_or_else(PoisonError::into_inner);
            let store = reader.shared.current()?;
            match store.cursor(&name)? {
                Some(stored) if stored >= value => Ok(stored),
                _ => {
                    store.set_cursor(&name, value)?;
                    Ok(value)
                }
            }
        })
        .await
    }

    /// Walks every partition's hash chain.
    pub async fn verify(&self) -> Result<Vec<PartitionVerification>> {
        let reader = self.reader();
        blocking(move || reader.verify()).await
    }

    /// Writes a consistent online backup (a RocksDB checkpoint) to `destination`, a new directory
    /// on the same filesystem (files are hard-linked where possible).
    pub async fn backup(&self, destination: impl Into<PathBuf>) -> Result<()> {
        let reader = self.reader();
        let destination = destination.into();
        blocking(move || reader.backup(&destination)).await
    }

    /// Deletes command outcomes recorded before `cutoff`: retries of those commands will append
    /// again. Returns how many were deleted.
    pub async fn purge_command_outcomes(&self, cutoff: Timestamp) -> Result<u64> {
        let reader = self.reader();
        blocking(move || reader.shared.current()?.purge_command_outcomes(cutoff)).await
    }

    /// Stops the writers after the commands already queued, and waits for them. Appends through
    /// any clone of this handle fail with [`LogError::Closed`] afterwards. The database itself
    /// closes when the last handle, reader and tail are dropped.
    pub async fn close(self) -> Result<()> {
        let inner = self.inner;
        blocking(move || {
            inner.stop_writers()?;
            // When this was the last handle, RocksDB closes here, off the async workers.
            drop(inner);
            Ok(())
        })
        .await
    }
}

impl Inner {
    /// Ends the writers once the commands already queued are done, and waits for them.
    /// Idempotent. Blocks: call it from a blocking context.
    fn stop_writers(&self) -> Result<()> {
        // Dropping the queue senders ends each writer when its queue is empty.
        self.queues.write().map_err(|_| LogError::Closed)?.clear();
        self.retention_stop.lock().map_err(|_| LogError::Closed)?.take();
        let writers = std::mem::take(&mut *self.writers.lock().map_err(|_| LogError::Closed)?);
        for writer in writers {
            writer.join().map_err(|_| LogError::Closed)?;
        }
        Ok(())
    }
}

impl Drop for Inner {
    /// The last handle gone without `close`: stop the writers here so that RocksDB is closed
    /// deterministically (a database still open while the process exits can abort it).
    fn drop(&mut self) {
        if let Err(error) = self.stop_writers() {
            tracing::error!(%error, "event log writers did not stop cleanly");
        }
    }
}

/// Starts the thread that deletes command outcomes older than `retention`, every tenth of the
/// retention (between a minute and an hour). It stops as soon as `stop`'s sender is dropped.
fn spawn_retention(
    store: Arc<SharedStore>,
    retention: covenant_domain::Span,
    clock: Arc<dyn Clock>,
    stop: std::sync::mpsc::Receiver<()>,
    path: &Path,
) -> Result<JoinHandle<()>> {
    let period = std::time::Duration::from_millis((retention.millis() / 10).clamp(60_000, 3_600_000) as u64);
    std::thread::Builder::new()
        .name("log-retention".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(period) {
                let cutoff =
                    Timestamp::from_unix_millis_clamped(clock.now().unix_millis() - retention.millis());
                match store.current().and_then(|store| store.purge_command_outcomes(cutoff)) {
                    Ok(purged) => tracing::debug!(purged, "expired command outcomes deleted"),
                    Err(error) => tracing::warn!(%error, "could not delete expired command outcomes"),
                }
            }
        })
        .map_err(|source| LogError::Io {
            action: "start retention thread for",
            path: path.display().to_string(),
            source,
        })
}

/// xxh3-128 of the postcard encoding of a command: identifies "the same command" for retries.
fn command_fingerprint(command: &Command) -> Result<u128> {
    let bytes = postcard::to_stdvec(command).map_err(|error| LogError::CorruptMetadata {
        what: "command to fingerprint".into(),
        reason: error.to_string(),
    })?;
    Ok(xxhash_rust::xxh3::xxh3_128(&bytes))
}

/// A blocking read handle: for threads that may block (CLI tools, `spawn_blocking`, tests).
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<SharedStore>,
}

impl LogReader {
    /// Opens an existing log for reading only: no writer threads and no lock, so tools (verify,
    /// audit, export, benchmarks) can read beside a running ledger. The reader sees the log as
    /// it was when opened. Blocking.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self { shared: Arc::new(SharedStore::new(Store::open_read_only(path.as_ref())?, None)) })
    }

    /// The partition count.
    pub fn partition_count(&self) -> u16 {
        self.shared.partition_count()
    }

    /// Up to `max` events of a customer's stream from `from_version` (1-based) on.
    pub fn read_stream(
        &self,
        customer_id: &CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.shared.current()?.read_stream(customer_id, from_version, max)
    }

    /// The whole streams of several customers read together (see `Store::read_streams`: one
    /// sorted read per partition instead of one per customer), in the order of `customers`.
    pub fn read_streams(&self, customers: &[CustomerId]) -> Result<Vec<Vec<RecordedEvent>>> {
        self.shared.current()?.read_streams(customers)
    }

    /// [`Self::read_stream`] with personal data opened where the customer's key and the log's
    /// master key (`master.key` beside the database) allow.
    pub fn read_stream_revealed(
        &self,
        customer_id: &CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<(RecordedEvent, PersonalDataState)>> {
        self.shared.current()?.read_stream_revealed(customer_id, from_version, max)
    }

    /// The customer's stream version now (0 when they have no events).
    pub fn stream_version(&self, customer_id: &CustomerId) -> Result<u64> {
        self.shared.current()?.stream_version(customer_id)
    }

    /// A named cursor kept in the log's `meta` (see [`EventLog::cursor`]) as this reader sees it.
    pub fn cursor(&self, name: &str) -> Result<Option<u64>> {
        self.shared.current()?.cursor(name)
    }

    /// Up to `max` records of `partition` from `from_offset` on.
    pub fn read_partition(&self, partition: u16, from_offset: u64, max: usize) -> Result<Vec<RecordedEvent>> {
        self.shared.current()?.read_partition(partition, from_offset, max)
    }

    /// Visits up to `max` decoded records of `partition` from `from_offset` on without
    /// collecting them; returns how many were visited.
    pub fn scan_partition(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
        mut visit: impl FnMut(RecordedEvent),
    ) -> Result<usize> {
        self.shared.current()?.scan_partition(partition, from_offset, max, |position, value| {
            visit(codec::decode_record(position, value)?);
            Ok(())
        })
    }

    /// Visits up to `max` records of `partition` from `from_offset` on, each checked and decoded
    /// whole but without copying ([`covenant_domain::views::RecordedEventView`]): the fast way
    /// to replay the log when the visitor keeps only some of each event. Returns how many were
    /// visited.
    pub fn scan_events(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
        mut visit: impl FnMut(covenant_domain::views::RecordedEventView<'_>),
    ) -> Result<usize> {
        self.shared.current()?.scan_partition(partition, from_offset, max, |position, value| {
            visit(codec::decode_view(position, value)?);
            Ok(())
        })
    }

    /// Visits up to `max` records of `partition` from `from_offset` on as [`codec::RecordView`]s:
    /// checksum checked and envelope decoded without copying; the payload is decoded only if the
    /// visitor calls [`codec::RecordView::decode`]. Returns how many were visited.
    pub fn scan_views(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
        mut visit: impl FnMut(codec::RecordView<'_>),
    ) -> Result<usize> {
        self.shared.current()?.scan_partition(partition, from_offset, max, |position, value| {
            visit(codec::RecordView::parse(position, value)?);
            Ok(())
        })
    }

    /// Visits up to `max` stored records of `partition` from `from_offset` on, undecoded, for a
    /// reader that decodes only some of them ([`codec::peek_customer`] to choose,
    /// [`codec::RecordView::parse`] to read); the first error of `visit` (any error type a
    /// [`LogError`] converts into) stops it and is returned. Returns how many were visited.
    pub fn scan_raw<E: From<LogError>>(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
        visit: impl FnMut(Position, &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<usize, E> {
        self.shared.current()?.scan_partition_with(partition, from_offset, max, visit)
    }

    /// The next offset to be written in `partition` (its record count).
    pub fn partition_end(&self, partition: u16) -> Result<u64> {
        self.shared.check_partition(partition)?;
        Ok(self.shared.current()?.chain_head(partition)?.next_offset)
    }

    /// Runs `work` once for every partition, on up to `threads` threads (each takes the next
    /// partition when it is done with one, in partition order), and returns the sum of what the
    /// calls returned. After an error no thread takes another partition; the first error is
    /// returned once the calls under way have ended. For whole-log jobs whose partitions are
    /// independent (a customer's events are all in one partition), such as rebuilding a
    /// projection. Blocking.
    pub fn on_partitions<E: From<std::io::Error> + Send>(
        &self,
        threads: usize,
        work: &(dyn Fn(u16) -> std::result::Result<u64, E> + Sync),
    ) -> std::result::Result<u64, E> {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let partitions = u32::from(self.partition_count());
        let next = AtomicU32::new(0);
        let failed = AtomicBool::new(false);
        let worker = || -> std::result::Result<u64, E> {
            let mut total = 0u64;
            while !failed.load(Ordering::Relaxed) {
                let partition = next.fetch_add(1, Ordering::Relaxed);
                let Ok(partition) = u16::try_from(partition) else { break };
                if u32::from(partition) >= partitions {
                    break;
                }
                match work(partition) {
                    Ok(done) => total += done,
                    Err(error) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(error);
                    }
                }
            }
            Ok(total)
        };
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            let mut first_error = None;
            let wanted = threads.clamp(1, usize::try_from(partitions).unwrap_or(1).max(1));
            for index in 0..wanted {
                match std::thread::Builder::new()
                    .name(format!("log-partitions-{index}"))
                    .spawn_scoped(scope, worker)
                {
                    Ok(handle) => handles.push(handle),
                    Err(error) => {
                        failed.store(true, Ordering::Relaxed);
                        first_error = Some(E::from(error));
                        break;
                    }
                }
            }
            let mut total = 0u64;
            for handle in handles {
                match handle.join() {
                    Ok(Ok(done)) => total += done,
                    Ok(Err(error)) => {
                        first_error.get_or_insert(error);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            first_error.map_or(Ok(total), Err)
        })
    }

    /// Walks every partition's hash chain and reports the first bad record of each.
    pub fn verify(&self) -> Result<Vec<PartitionVerification>> {
        let store = self.shared.current()?;
        (0..store.partition_count()).map(|partition| store.verify_partition(partition)).collect()
    }

    /// Checks the stream index and the stream heads against the events (see
    /// `Store::verify_streams`): the first inconsistency, and how many customers were checked.
    pub fn verify_streams(&self) -> Result<(Option<StreamProblem>, u64)> {
        self.shared.current()?.verify_streams()
    }

    /// Writes a consistent online backup to `destination` (a new directory).
    pub fn backup(&self, destination: &Path) -> Result<()> {
        self.shared.current()?.checkpoint(destination)
    }
}

/// An in-process feed of one partition's committed records, for the relay.
#[derive(Debug)]
pub struct Tail {
    log: EventLog,
    partition: u16,
    next_offset: u64,
    committed: watch::Receiver<u64>,
    recent: Arc<RecentRecords>,
    max_batch: usize,
}

impl Tail {
    /// The offset the next record returned will have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next records (at least one), waiting for a commit when the feed is caught up.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>> {
        loop {
            let committed = *self.committed.borrow_and_update();
            if committed > self.next_offset {
                let wanted =
                    usize::try_from(committed - self.next_offset).unwrap_or(usize::MAX).min(self.max_batch);
                let events = match self.recent.read(self.next_offset, self.next_offset + wanted as u64) {
                    // Just written and still in memory: decoded here, no RocksDB read.
                    Some(records) => (self.next_offset..)
                        .zip(&records)
                        .map(|(offset, value)| {
                            codec::decode_record(Position { partition: self.partition, offset }, value)
                        })
                        .collect::<Result<Vec<_>>>()?,
                    None => self.log.read_partition(self.partition, self.next_offset, wanted).await?,
                };
                if let Some(last) = events.last() {
                    self.next_offset = last.position.offset + 1;
                    return Ok(events);
                }
            }
            self.committed.changed().await.map_err(|_| LogError::Closed)?;
        }
    }
}
