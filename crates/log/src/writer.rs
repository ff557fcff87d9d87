//! The writer: an OS thread that owns a set of partitions — their chain heads and the decision
//! states of their customers — and turns queued commands into group commits.
//!
//! A loop turn takes every queued command (up to `max_batch`), decides each against its
//! customer's state, puts all resulting records, stream-index entries, command outcomes and
//! stream heads into **one** RocksDB `WriteBatch`, writes it (fsynced in `fsync` mode), and only
//! then answers the callers. A failed write answers every appending caller with the error and
//! leaves the chain heads and the cached states as they were before the batch.
//!
//! A failed write, sync or flush also puts the log in *disk trouble* (`crate::shared`): the
//! writers refuse every command without deciding it until a probe finds the disk writable and
//! the database is reopened; a writer then reloads its chain heads from the reopened database and
//! forgets its cached stream heads and data keys before deciding anything again.
//!
//! Each partition belongs to exactly one writer, so its offsets and hash chain advance in one
//! place; one batch may carry records of several partitions (see docs/ARCHITECTURE.md for why
//! fewer writers than partitions is faster on few cores).

use std::collections::HashMap;

/// Hash maps keyed by caller-chosen ids: foldhash is fast and seeded per process (no HashDoS).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::Instant;

use covenant_domain::personal::take_personal_data;
use covenant_domain::{
    CustomerId, DecisionContext, Event, EventId, Position, RecordedEvent, Timestamp, apply, decide,
};
use rocksdb::{WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot, watch};

use crate::codec::{self, StoredOutcome, StreamHead};
use crate::config::Durability;
use crate::error::{LogError, Result};
use crate::keys::{self, CF_COMMANDS, CF_EVENTS, CF_KEYS, CF_STREAM_INDEX, CF_STREAMS};
use crate::recent::RecentRecords;
use crate::sealing::DataKey;
use crate::shared::SharedStore;
use crate::stats::WriteCounters;
use crate::store::CurrentHead;
use crate::store::{ChainHead, Store};
use crate::{AppendOutcome, AppendRequest, Clock};

/// One queued command with its precomputed fingerprint and the caller's reply channel.
#[derive(Debug)]
pub(crate) struct AppendJob {
    pub(crate) partition: u16,
    pub(crate) request: AppendRequest,
    pub(crate) fingerprint: u128,
    pub(crate) reply: oneshot::Sender<Result<AppendOutcome>>,
}

/// A command being decided: the caller's request, its fingerprint and its key in `commands`.
struct Command<'a> {
    request: &'a AppendRequest,
    fingerprint: u128,
    key: Vec<u8>,
}

/// What a command in a batch comes to.
enum Verdict {
    /// Answer now, whatever the write does (rejections, retries of durable commands).
    Settled(Result<AppendOutcome>),
    /// Answer once the batch is durable.
    Appended(AppendOutcome),
}

/// A partition owned by a writer: where its chain ends and who waits for its commits.
pub(crate) struct OwnedPartition {
    pub(crate) partition: u16,
    pub(crate) chain: ChainHead,
    pub(crate) committed: Arc<watch::Sender<u64>>,
    /// The partition's newest records, for tails (filled once RocksDB has taken a batch).
    pub(crate) recent: Arc<RecentRecords>,
}

/// The same error again, for each caller of a failed batch.
fn copy_error(error: &LogError) -> LogError {
    match error {
        LogError::Storage(storage) => LogError::Storage(storage.clone()),
        LogError::Unwritable { path, problem } => {
            LogError::Unwritable { path: path.clone(), problem: problem.clone() }
        }
        LogError::Closed => LogError::Closed,
        other => LogError::CorruptMetadata { what: "group commit".into(), reason: other.to_string() },
    }
}

/// Moves a partition's committed offset forward to `next_offset` (never back).
fn publish_committed(committed: &watch::Sender<u64>, next_offset: u64) {
    committed.send_if_modified(|current| {
        let moved = *current < next_offset;
        if moved {
            *current = next_offset;
        }
        moved
    });
}

/// One caller's answer, ready to send.
pub(crate) type Reply = (oneshot::Sender<Result<AppendOutcome>>, Result<AppendOutcome>);

/// How the writers and the sync stage answer appending callers.
///
/// Each answer wakes a caller's task. Woken from a plain thread, a task goes through the
/// runtime's shared queue and may unpark a worker, and on a busy machine the woken worker can
/// take the core of the thread that woke it: the writer in the middle of its next batch, or the
/// sync stage before its next fsync. So when the log is opened on a multi-thread tokio runtime,
/// a task on that runtime sends the answers: a thread hands it a whole batch's answers at once
/// (at most one wake-up), and the callers it wakes go to its worker's own run queue. Without such
/// a runtime, or once it has shut down, the threads answer directly (docs/PERFORMANCE.md,
/// session 18, has the measurements).
#[derive(Clone)]
pub(crate) struct Replies {
    task: Option<tokio::sync::mpsc::UnboundedSender<Vec<Reply>>>,
}

impl Replies {
    /// Starts the reply task on the current runtime when it is a multi-thread one. (A
    /// current-thread runtime runs its tasks only while someone drives it, which callers on
    /// another runtime or thread cannot count on.)
    pub(crate) fn start() -> Self {
        let task = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .map(|runtime| {
                let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Vec<Reply>>();
                runtime.spawn(async move {
                    let mut queued = QueuedReplies(receiver);
                    while let Some(replies) = queued.0.recv().await {
                        send_all(replies);
                    }
                });
                sender
            });
        Self { task }
    }

    /// Whether answers go through a reply task.
    #[cfg(test)]
    fn has_task(&self) -> bool {
        self.task.is_some()
    }

    /// Sends every answer, in order (directly when the reply task is gone).
    pub(crate) fn send(&self, replies: Vec<Reply>) {
        if replies.is_empty() {
            return;
        }
        match &self.task {
            Some(task) => {
                if let Err(unsent) = task.send(replies) {
                    send_all(unsent.0);
                }
            }
            None => send_all(replies),
        }
    }
}

/// The reply task's end of its channel. Dropped with the task (its runtime shutting down), it
/// closes the channel, so later answers go directly, and sends the answers still queued on the
/// spot instead of dropping them (their callers would hear `Closed` for commands that may be
/// durable).
struct QueuedReplies(tokio::sync::mpsc::UnboundedReceiver<Vec<Reply>>);

impl Drop for QueuedReplies {
    fn drop(&mut self) {
        self.0.close();
        while let Ok(replies) = self.0.try_recv() {
            send_all(replies);
        }
    }
}

/// Sends each answer; a caller that stopped waiting is no error.
fn send_all(replies: Vec<Reply>) {
    for (reply, answer) in replies {
        let _ = reply.send(answer);
    }
}

/// A written (not yet fsynced) group commit waiting for the sync stage.
pub(crate) struct PendingSync {
    /// The database generation the batch was written to: a batch of an older generation than
    /// the one synced is never confirmed.
    generation: u64,
    /// Every answer of the batch, in order; appended ones are only sent once synced.
    verdicts: Vec<(oneshot::Sender<Result<AppendOutcome>>, Verdict)>,
    /// Partitions whose committed offset moves once synced.
    advanced: Vec<(Arc<watch::Sender<u64>>, u64)>,
}

/// The sync stage of `fsync` durability: fsyncs the WAL once for every written batch queued
/// since its last sync, then answers those batches' callers and publishes their offsets. The
/// writer meanwhile decides and writes the next batch, so deciding overlaps the fsync.
pub(crate) fn run_syncer(
    shared: Arc<SharedStore>,
    pending: std::sync::mpsc::Receiver<PendingSync>,
    counters: &WriteCounters,
    replies: &Replies,
) {
    let _span = tracing::info_span!("log_syncer").entered();
    while let Ok(first) = pending.recv() {
        let mut batches = vec![first];
        batches.extend(pending.try_iter());
        // The generation synced; the store is let go before anyone is answered.
        let synced_generation = shared.current().and_then(|store| {
            let started = Instant::now();
            store
                .db()
                .flush_wal(true)
                .map_err(|error| shared.failed("WAL fsync", &LogError::Storage(error)))?;
            counters.fsync(batches.iter().map(|batch| batch.verdicts.len()).sum(), started.elapsed());
            Ok(store.generation())
        });
        if let Err(error) = &synced_generation {
            tracing::error!(%error, batches = batches.len(), "WAL fsync failed: appends answered with the error");
        }
        let mut answers = Vec::with_capacity(batches.iter().map(|batch| batch.verdicts.len()).sum());
        for batch in batches {
            let synced = match &synced_generation {
                Ok(generation) if *generation == batch.generation => Ok(()),
                Ok(_) => Err(shared.reopened_before_sync()),
                Err(error) => Err(copy_error(error)),
            };
            if synced.is_ok() {
                for (committed, next_offset) in &batch.advanced {
                    publish_committed(committed, *next_offset);
                }
            }
            for (reply, verdict) in batch.verdicts {
                let answer = match (verdict, &synced) {
                    // A retry's stored outcome may rest on a batch this sync was to make
                    // durable: when the sync failed it cannot be confirmed either.
                    (Verdict::Settled(Ok(_)) | Verdict::Appended(_), Err(error)) => Err(copy_error(error)),
                    (Verdict::Settled(answer), _) => answer,
                    (Verdict::Appended(outcome), Ok(())) => Ok(outcome),
                };
                answers.push((reply, answer));
            }
        }
        replies.send(answers);
    }
    tracing::debug!("syncer stopped");
}

pub(crate) struct Writer {
    pub(crate) name: String,
    pub(crate) shared: Arc<SharedStore>,
    /// The database generation the chain heads and caches were loaded from.
    pub(crate) generation: u64,
    pub(crate) partitions: Vec<OwnedPartition>,
    /// `slots[partition]` is the index of the partition in `partitions`, if this writer owns it.
    pub(crate) slots: Vec<Option<usize>>,
    pub(crate) states: Map<CustomerId, CurrentHead>,
    pub(crate) state_cache_capacity: usize,
    /// A stream's head is stored once it is this many events past its stored snapshot.
    pub(crate) head_snapshot_every: u64,
    pub(crate) durability: Durability,
    pub(crate) max_batch: usize,
    pub(crate) clock: Arc<dyn Clock>,
    /// The sync stage (`fsync` and `replicated` durability); `None` in `buffered` mode, where
    /// a batch is answered as soon as it is written.
    pub(crate) syncer: Option<std::sync::mpsc::Sender<PendingSync>>,
    /// Opened data keys of recently written customers (bounded like `states`).
    pub(crate) data_keys: Map<CustomerId, DataKey>,
    /// An erasure's flush and compaction failed (disk trouble): redone after the next write.
    pub(crate) shred_pending: bool,
    /// Where group commits are counted.
    pub(crate) counters: Arc<WriteCounters>,
    /// How callers are answered.
    pub(crate) replies: Replies,
}

/// The working set of one group commit.
struct Batch {
    write: WriteBatch,
    /// Chain heads of the owned partitions as this batch moves them (same order as `partitions`).
    chains: Vec<ChainHead>,
    /// Streams touched by this batch, taken out of the cache; returned on success.
    touched: Map<CustomerId, CurrentHead>,
    /// Streams this batch appended to (their heads are stored when due for a snapshot).
    dirty: Set<CustomerId>,
    /// Records of this batch as `(key, value)`, put into `write` in key order when written.
    records: Vec<([u8; 10], Vec<u8>)>,
    /// Outcomes of commands appended in this batch by command key (`keys::command_key`), for
    /// retries within the same batch.
    outcomes: Map<Vec<u8>, StoredOutcome>,
    /// Data keys created by this batch (their wrapped form is in `write`).
    new_keys: Map<CustomerId, DataKey>,
    /// Customers erased by this batch (their keys are deleted in `write`).
    erased: Vec<CustomerId>,
    now: Timestamp,
}

impl Writer {
    /// Runs until every sender is dropped.
    pub(crate) fn run(mut self, mut queue: mpsc::Receiver<AppendJob>) {
        let _span = tracing::info_span!("log_writer", writer = %self.name).entered();
        tracing::debug!(partitions = self.partitions.len(), "writer started");
        let mut jobs = Vec::with_capacity(self.max_batch);
        while let Some(first) = queue.blocking_recv() {
            jobs.push(first);
            while jobs.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.commit(&mut jobs, Instant::now());
        }
        tracing::debug!("writer stopped");
    }

    /// The database to decide and write this batch with; after a reopen, the chain heads and
    /// caches are reloaded from it first.
    fn store(&mut self) -> Result<Arc<Store>> {
        let store = self.shared.writable()?;
        if store.generation() != self.generation {
            self.reload(&store)?;
        }
        Ok(store)
    }

    /// Takes the chain heads from the records of a reopened database and forgets the cached
    /// stream heads and data keys: a batch written before the failure may or may not have
    /// survived, and only the database knows.
    fn reload(&mut self, store: &Store) -> Result<()> {
        for owned in &mut self.partitions {
            let chain = store.chain_head(owned.partition)?;
            let committed = *owned.committed.borrow();
            if chain.next_offset < committed {
                // Records confirmed durable are gone: never write over their offsets.
                return Err(LogError::Corrupt {
                    position: Position { partition: owned.partition, offset: chain.next_offset },
                    reason: format!(
                        "the reopened database ends here but offsets up to {} were confirmed durable",
                        committed - 1
                    ),
                });
            }
            if chain != owned.chain {
                tracing::warn!(
                    partition = owned.partition,
                    in_memory = owned.chain.next_offset,
                    on_disk = chain.next_offset,
                    "chain head reloaded from the reopened database"
                );
            }
            owned.chain = chain;
            // Records written before the failure may be gone: tails read the database again.
            owned.recent.clear();
            // Everything the reopened database holds was flushed: it is durable.
            publish_committed(&owned.committed, chain.next_offset);
        }
        self.states.clear();
        self.data_keys.clear();
        self.generation = store.generation();
        tracing::info!(generation = self.generation, "writer reloaded after the database was reopened");
        Ok(())
    }

    /// Answers every command of a group commit with `error`, deciding none of them.
    fn refuse_all(&self, jobs: &mut Vec<AppendJob>, error: &LogError, started: Instant) {
        self.counters.group_commit(jobs.len(), started.elapsed());
        self.replies.send(jobs.drain(..).map(|job| (job.reply, Err(copy_error(error)))).collect());
    }

    /// Decides, writes and answers (or hands to the sync stage) one group commit of `jobs`,
    /// taken off the queue at `started`. The group commit is counted before anyone is answered,
    /// so whoever holds an answer sees it in [`crate::EventLog::write_stats`].
    fn commit(&mut self, jobs: &mut Vec<AppendJob>, started: Instant) {
        let commands = jobs.len();
        let store = match self.store() {
            Ok(store) => store,
            // Disk trouble: nothing is decided, every caller hears why.
            Err(error) => return self.refuse_all(jobs, &error, started),
        };
        let store = &*store;
        let mut batch = Batch {
            write: WriteBatch::default(),
            chains: self.partitions.iter().map(|owned| owned.chain).collect(),
            touched: Map::default(),
            dirty: Set::default(),
            records: Vec::new(),
            outcomes: Map::default(),
            new_keys: Map::default(),
            erased: Vec::new(),
            now: self.clock.now(),
        };
        // Whether each command was appended by an earlier batch (a retry), looked up together.
        let command_keys: Vec<Vec<u8>> = jobs
            .iter()
            .map(|job| keys::command_key(job.request.customer_id.as_str(), job.request.command_id.as_str()))
            .collect();
        let stored_outcomes = match store.command_outcomes(&command_keys) {
            Ok(found) => found,
            Err(error) => return self.refuse_all(jobs, &error, started),
        };
        let mut verdicts = Vec::with_capacity(jobs.len());
        for ((job, command_key), stored) in jobs.drain(..).zip(command_keys).zip(stored_outcomes) {
            let verdict = match self.slots.get(usize::from(job.partition)).copied().flatten() {
                Some(slot) => {
                    let command =
                        Command { request: &job.request, fingerprint: job.fingerprint, key: command_key };
                    self.decide_one(store, &mut batch, slot, command, stored)
                }
                None => Verdict::Settled(Err(LogError::NoSuchPartition {
                    partition: job.partition,
                    partition_count: store.partition_count(),
                })),
            };
            verdicts.push((job.reply, verdict));
        }
        let appended = verdicts.iter().filter(|(_, verdict)| matches!(verdict, Verdict::Appended(_))).count();
        let write_result = if appended > 0 { self.write(store, &mut batch) } else { Ok(()) };
        let mut advanced = Vec::new();
        let verdicts = match write_result {
            Ok(()) => {
                for (owned, chain) in self.partitions.iter_mut().zip(&batch.chains) {
                    if owned.chain != *chain {
                        owned.chain = *chain;
                        advanced.push((Arc::clone(&owned.committed), chain.next_offset));
                    }
                }
                self.states.extend(batch.touched);
                self.data_keys.extend(batch.new_keys);
                for customer_id in &batch.erased {
                    self.data_keys.remove(customer_id);
                }
                if !batch.erased.is_empty() || (self.shred_pending && appended > 0) {
                    // The keys are deleted; make sure no live file keeps them.
                    match store.shred_erased_keys() {
                        Ok(()) => self.shred_pending = false,
                        Err(error) => {
                            tracing::error!(%error, "flushing and compacting after an erasure failed; done again after the next write");
                            self.shred_pending = true;
                            // A failed flush stops RocksDB's writes: recover before the next batch.
                            self.shared.failed("flush after an erasure", &error);
                        }
                    }
                }
                if self.data_keys.len() > self.state_cache_capacity.saturating_mul(self.partitions.len()) {
                    self.data_keys.clear();
                }
                if self.states.len() > self.state_cache_capacity.saturating_mul(self.partitions.len()) {
                    // Simple bound: start over; states reload from their stored heads.
                    self.states.clear();
                }
                verdicts
            }
            Err(error) => {
                // Nothing of the batch was written; the touched states are dropped from the
                // cache and reload from their stored heads.
                tracing::error!(%error, commands = appended, "group commit failed: nothing of it was written");
                verdicts
                    .into_iter()
                    .map(|(reply, verdict)| match verdict {
                        Verdict::Appended(_) => (reply, Verdict::Settled(Err(copy_error(&error)))),
                        settled => (reply, settled),
                    })
                    .collect()
            }
        };
        self.counters.group_commit(commands, started.elapsed());
        // With a sync stage every answer, even a rejection or a retry of an earlier command,
        // waits for the next sync: it may rest on a batch written but not yet synced.
        let verdicts = match &self.syncer {
            None => verdicts,
            Some(syncer) => {
                let pending = PendingSync {
                    generation: store.generation(),
                    verdicts,
                    advanced: std::mem::take(&mut advanced),
                };
                match syncer.send(pending) {
                    Ok(()) => return,
                    Err(unsent) => {
                        // The sync stage is gone: nothing can be confirmed durable any more.
                        tracing::error!("the sync stage stopped: appends are answered as unavailable");
                        advanced.clear();
                        unsent
                            .0
                            .verdicts
                            .into_iter()
                            .map(|(reply, verdict)| match verdict {
                                Verdict::Appended(_) => (reply, Verdict::Settled(Err(LogError::Closed))),
                                settled => (reply, settled),
                            })
                            .collect()
                    }
                }
            }
        };
        for (committed, next_offset) in advanced {
            publish_committed(&committed, next_offset);
        }
        self.replies.send(
            verdicts
                .into_iter()
                .map(|(reply, verdict)| match verdict {
                    Verdict::Settled(answer) => (reply, answer),
                    Verdict::Appended(outcome) => (reply, Ok(outcome)),
                })
                .collect(),
        );
    }

    fn write(&self, store: &Store, batch: &mut Batch) -> Result<()> {
        // Records go in key order: RocksDB's skip list inserts ascending keys in constant time
        // (it keeps the last insert's position), while the batch decided them interleaved
        // across partitions.
        batch.records.sort_unstable_by_key(|(key, _)| *key);
        let events_cf = store.cf(CF_EVENTS)?;
        for (key, value) in &batch.records {
            batch.write.put_cf(events_cf, key, value);
        }
        // A head is stored every `head_snapshot_every` events, not with every command: it holds
        // the customer's whole decision state, which grows with their history, and a head not in
        // memory is folded from the last snapshot and the events after it (`Store::stream_head`).
        let streams = store.cf(CF_STREAMS)?;
        for customer_id in &batch.dirty {
            if let Some(current) = batch.touched.get_mut(customer_id)
                && current.head.state.version >= current.stored_version + self.head_snapshot_every
            {
                batch.write.put_cf(streams, customer_id.as_str(), codec::encode_head(&current.head)?);
                current.stored_version = current.head.state.version;
            }
        }
        let mut options = WriteOptions::default();
        // With a sync stage the fsync happens there (`flush_wal(true)`), after this write.
        options.set_sync(self.durability != Durability::Buffered && self.syncer.is_none());
        store
            .db()
            .write_opt(std::mem::take(&mut batch.write), &options)
            .map_err(|error| self.shared.failed("write", &LogError::Storage(error)))?;
        // Taken by RocksDB: tails may read them once they are committed. The records are in key
        // order, so each partition's are one run, kept under one lock.
        let mut run = Vec::new();
        let mut run_partition = None;
        for (key, value) in batch.records.drain(..) {
            let Some((partition, offset)) = keys::parse_event_key(&key) else { continue };
            if run_partition != Some(partition) {
                self.keep_recent(run_partition, &mut run);
                run_partition = Some(partition);
            }
            run.push((offset, value));
        }
        self.keep_recent(run_partition, &mut run);
        Ok(())
    }

    /// Hands `partition`'s run of just written records to its tails' recent records.
    fn keep_recent(&self, partition: Option<u16>, run: &mut Vec<(u64, Vec<u8>)>) {
        if let Some(slot) =
            partition.and_then(|partition| self.slots.get(usize::from(partition)).copied().flatten())
        {
            self.partitions[slot].recent.put_all(run.drain(..));
        }
        run.clear();
    }

    /// Takes a customer's stream head out of the batch, the cache or the store (a new stream
    /// when none exists). The caller puts it back into `batch.touched`.
    fn take_stream(
        &mut self,
        store: &Store,
        batch: &mut Batch,
        customer_id: &CustomerId,
    ) -> Result<CurrentHead> {
        if let Some(current) = batch.touched.remove(customer_id) {
            return Ok(current);
        }
        if let Some(current) = self.states.remove(customer_id) {
            return Ok(current);
        }
        Ok(store
            .stream_head(customer_id)?
            .unwrap_or(CurrentHead { head: StreamHead::default(), stored_version: 0 }))
    }

    fn decide_one(
        &mut self,
        store: &Store,
        batch: &mut Batch,
        slot: usize,
        command: Command<'_>,
        stored: Result<Option<StoredOutcome>>,
    ) -> Verdict {
        match self.try_decide(store, batch, slot, command, stored) {
            Ok(verdict) => verdict,
            Err(error) => Verdict::Settled(Err(error)),
        }
    }

    /// Decides one command: a retry gets its first outcome (`stored` when an earlier batch
    /// appended it), a new command is decided against its customer's stream.
    fn try_decide(
        &mut self,
        store: &Store,
        batch: &mut Batch,
        slot: usize,
        command: Command<'_>,
        stored: Result<Option<StoredOutcome>>,
    ) -> Result<Verdict> {
        let request = command.request;
        if let Some(outcome) = batch.outcomes.get(&command.key) {
            return Ok(match self.replay_outcome(request, outcome, command.fingerprint) {
                Ok(outcome) => Verdict::Appended(outcome),
                Err(error) => Verdict::Settled(Err(error)),
            });
        }
        if let Some(outcome) = stored? {
            return Ok(Verdict::Settled(self.replay_outcome(request, &outcome, command.fingerprint)));
        }
        let customer_id = &request.customer_id;
        let mut current = self.take_stream(store, batch, customer_id)?;
        let verdict = self.append(store, batch, slot, command, &mut current.head);
        batch.touched.insert(customer_id.clone(), current);
        verdict
    }

    /// The data key of `customer_id`: this batch's new one, the cached one, the stored one, or a
    /// new one whose wrapped form joins the batch.
    fn data_key(&self, store: &Store, batch: &mut Batch, customer_id: &CustomerId) -> Result<DataKey> {
        if let Some(key) = batch.new_keys.get(customer_id).or_else(|| self.data_keys.get(customer_id)) {
            return Ok(key.clone());
        }
        if let Some(key) = store.data_key(customer_id.as_str())? {
            batch.new_keys.insert(customer_id.clone(), key.clone());
            return Ok(key);
        }
        let (key, wrapped) = store.master_key()?.new_data_key(customer_id.as_str())?;
        batch.write.put_cf(store.cf(CF_KEYS)?, customer_id.as_str(), wrapped);
        batch.new_keys.insert(customer_id.clone(), key.clone());
        Ok(key)
    }

    /// Decides `request` against `head` and, when accepted, adds its records to the batch.
    fn append(
        &self,
        store: &Store,
        batch: &mut Batch,
        slot: usize,
        command: Command<'_>,
        head: &mut StreamHead,
    ) -> Result<Verdict> {
        let request = command.request;
        let customer_id = &request.customer_id;
        let partition = self.partitions[slot].partition;
        let now = batch.now;
        let mut chain = batch.chains[slot];
        let current = head.state.version;
        if let Some(expected) = request.expected_version
            && expected != current
        {
            return Err(LogError::VersionConflict {
                customer_id: customer_id.to_string(),
                expected,
                current,
            });
        }
        let context = DecisionContext { now, occurred_at: request.metadata.occurred_at };
        let events = decide(&head.state, customer_id.as_str(), &request.command, &context)?;
        // Everything that can fail comes first; the batch and the stream head change only once
        // the command's records and outcome are all encoded (the data key a sealing may add to
        // the batch is the customer's either way).
        let first_offset = chain.next_offset;
        let mut encoded = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let mut record = RecordedEvent {
                event_id: EventId::new_v7(),
                customer_id: customer_id.clone(),
                stream_version: current + 1 + index as u64,
                position: Position { partition, offset: chain.next_offset },
                recorded_at: now,
                command_id: request.command_id.clone(),
                metadata: request.metadata.clone(),
                event: event.clone(),
            };
            // Personal data never reaches the disk in clear: it is sealed with the customer's key.
            let sealed = match take_personal_data(&mut record.event) {
                Some(data) => self.data_key(store, batch, customer_id)?.seal(
                    customer_id.as_str(),
                    &record.event_id,
                    &data,
                )?,
                None => Vec::new(),
            };
            let (value, hash) = codec::encode_sealed_record(&chain.last_hash, &record, &sealed)?;
            encoded.push((record.position.offset, record.stream_version, value));
            chain.next_offset += 1;
            chain.last_hash = hash;
        }
        let outcome = StoredOutcome {
            fingerprint: command.fingerprint,
            partition,
            first_offset,
            event_count: events.len() as u32,
            // `apply` below folds each event into the state, one version each.
            stream_version: current + events.len() as u64,
            recorded_at: now,
        };
        let encoded_outcome = codec::encode_outcome(&outcome)?;
        let (index_cf, commands_cf, keys_cf) =
            (store.cf(CF_STREAM_INDEX)?, store.cf(CF_COMMANDS)?, store.cf(CF_KEYS)?);

        if events.iter().any(|event| matches!(event, Event::CustomerErased {})) {
            batch.write.delete_cf(keys_cf, customer_id.as_str());
            batch.new_keys.remove(customer_id);
            batch.erased.push(customer_id.clone());
        }
        for (offset, version, value) in encoded {
            batch.records.push((keys::event_key(partition, offset), value));
            batch.write.put_cf(
                index_cf,
                keys::stream_index_key(customer_id.as_str(), version),
                offset.to_be_bytes(),
            );
            head.last_offset = offset;
        }
        for event in &events {
            apply(&mut head.state, event, request.metadata.occurred_at);
        }
        debug_assert_eq!(head.state.version, outcome.stream_version);
        batch.write.put_cf(commands_cf, &command.key, encoded_outcome);
        batch.chains[slot] = chain;
        if !batch.dirty.contains(customer_id) {
            batch.dirty.insert(customer_id.clone());
        }
        batch.outcomes.insert(command.key, outcome);
        Ok(Verdict::Appended(AppendOutcome::from_stored(&outcome, false)))
    }

    fn replay_outcome(
        &self,
        request: &AppendRequest,
        outcome: &StoredOutcome,
        fingerprint: u128,
    ) -> Result<AppendOutcome> {
        if outcome.fingerprint != fingerprint {
            return Err(LogError::CommandIdReused {
                customer_id: request.customer_id.to_string(),
                command_id: request.command_id.to_string(),
            });
        }
        tracing::debug!(command_id = %request.command_id, "retried command: returning its first result");
        Ok(AppendOutcome::from_stored(outcome, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn outcome(first_offset: u64) -> AppendOutcome {
        AppendOutcome::from_stored(
            &StoredOutcome {
                fingerprint: 7,
                partition: 0,
                first_offset,
                event_count: 1,
                stream_version: first_offset + 1,
                recorded_at: Timestamp::from_unix_millis_clamped(0),
            },
            false,
        )
    }

    /// `count` answers to send, and the receivers that wait for them.
    fn answers_for(count: u64) -> (Vec<Reply>, Vec<oneshot::Receiver<Result<AppendOutcome>>>) {
        (0..count)
            .map(|offset| {
                let (sender, receiver) = oneshot::channel();
                ((sender, Ok(outcome(offset))), receiver)
            })
            .unzip()
    }

    fn first_offsets(answers: Vec<Result<AppendOutcome>>) -> Vec<u64> {
        answers
            .into_iter()
            .map(|answer| answer.map(|outcome| outcome.first_offset))
            .collect::<Result<_>>()
            .unwrap_or_default()
    }

    /// Sends `count` answers through `replies` and takes them at once: they must have been sent
    /// before `send` returned (directly, not through a task).
    fn sent_at_once(
        replies: &Replies,
        count: u64,
    ) -> std::result::Result<Vec<u64>, Box<dyn std::error::Error>> {
        let (to_send, receivers) = answers_for(count);
        replies.send(to_send);
        let answers = receivers
            .into_iter()
            .map(|mut receiver| receiver.try_recv())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(first_offsets(answers))
    }

    #[test]
    fn answers_still_queued_when_the_reply_task_is_dropped_are_sent_not_lost() -> TestResult {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let queued = QueuedReplies(receiver);
        let (first, first_receivers) = answers_for(2);
        let (second, second_receivers) = answers_for(3);
        sender.send(first)?;
        sender.send(second)?;
        drop(queued);
        let answers = first_receivers
            .into_iter()
            .chain(second_receivers)
            .map(|mut receiver| receiver.try_recv())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        assert_eq!(first_offsets(answers), vec![0, 1, 0, 1, 2]);
        // Closed: a later batch is handed back to be answered directly.
        let (later, _receivers) = answers_for(1);
        assert!(sender.send(later).is_err());
        Ok(())
    }

    #[test]
    fn a_multi_thread_runtime_gets_a_reply_task_that_answers_every_caller() -> TestResult {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
        let replies = runtime.block_on(async { Replies::start() });
        assert!(replies.has_task());
        let (to_send, receivers) = answers_for(50);
        // Sent from a plain thread, as the writer and the sync stage do.
        let sender = replies.clone();
        std::thread::spawn(move || sender.send(to_send)).join().map_err(|_| "the sending thread panicked")?;
        let answers = runtime.block_on(async {
            let mut answers = Vec::new();
            for receiver in receivers {
                answers.push(receiver.await?);
            }
            Ok::<_, oneshot::error::RecvError>(answers)
        })?;
        assert_eq!(first_offsets(answers), (0..50).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn without_a_multi_thread_runtime_callers_are_answered_directly() -> TestResult {
        assert!(!Replies::start().has_task(), "no runtime at all");
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let replies = runtime.block_on(async { Replies::start() });
        assert!(!replies.has_task(), "a current-thread runtime runs tasks only while driven");
        assert_eq!(sent_at_once(&replies, 3)?, vec![0, 1, 2]);
        Ok(())
    }

    #[test]
    fn once_the_runtime_has_shut_down_callers_are_answered_directly() -> TestResult {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?;
        let replies = runtime.block_on(async { Replies::start() });
        assert!(replies.has_task());
        drop(runtime);
        assert_eq!(sent_at_once(&replies, 4)?, vec![0, 1, 2, 3]);
        Ok(())
    }
}
