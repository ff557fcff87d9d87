//! The RocksDB database under the log: opening it, its metadata, and blocking reads.
//!
//! Everything here blocks. It runs on the partition writer threads or, for the async API, under
//! `tokio::task::spawn_blocking` — never on the async runtime's worker threads.

use std::path::{Path, PathBuf};

use covenant_domain::{CustomerId, Position, RecordedEvent};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction, IteratorMode,
    MemtableFactory, Options, ReadOptions, SliceTransform, WriteBatch, WriteOptions,
};

use crate::codec::{self, ChainHash, GENESIS_HASH, StoredOutcome, StreamHead};

use crate::config::{DEFAULT_PARTITIONS, LogConfig};
use crate::error::{LogError, Result};
use crate::keys::{
    self, CF_COMMANDS, CF_EVENTS, CF_KEYS, CF_META, CF_STREAM_INDEX, CF_STREAMS, COLUMN_FAMILIES,
};
use crate::sealing::{DataKey, MasterKey};

/// What `streams` holds for a customer.
pub(crate) enum StoredHead {
    /// Nothing: a new customer, or one with fewer events than the snapshot interval.
    Missing,
    /// A head in an unknown format, or one that does not decode.
    Unreadable,
    /// A snapshot of their decision state after some event.
    Snapshot(StreamHead),
}

/// A customer's latest stream head, as the writer keeps it, and the version of the snapshot
/// stored for it (0: none).
#[derive(Debug, Clone)]
pub(crate) struct CurrentHead {
    pub(crate) head: StreamHead,
    pub(crate) stored_version: u64,
}

/// Most memory the log's memtables take together.
pub(crate) const LOG_MEMTABLE_BUDGET: usize = 128 << 20;

/// Format of the log as a whole; bumped only for changes old code cannot read.
const LOG_FORMAT: u8 = 1;

/// Sorted offsets that cover at least one record in this many of their range are read by
/// walking an iterator, not by point lookups (`Store::read_offsets`): a step to the next record
/// costs ~0.2 µs, a lookup in a multi-get several times that.
const WALK_SPREAD: u64 = 6;
/// Fewer offsets than this are always looked up (a walk's seek and read-ahead cost more).
const WALK_MIN_RECORDS: usize = 32;
/// A walk seeks instead of stepping over more records than this.
const WALK_MAX_STEP: u64 = 64;

/// The open database and its fixed partition count.
#[derive(Debug)]
pub(crate) struct Store {
    db: DB,
    path: PathBuf,
    partition_count: u16,
    /// Wraps the customers' data keys; `None` only for a read-only store opened without it.
    master_key: Option<MasterKey>,
    /// How many times the log's database was reopened before this one (see `crate::shared`):
    /// writers reload their chain heads and caches when it changes.
    generation: u64,
    /// False for a read-only database (a tool's reader, or the stand-in while a reopen failed).
    writable: bool,
}

/// What became of an event's personal data on a read that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonalDataState {
    /// The event has none.
    None,
    /// It was opened and is in the event.
    Revealed,
    /// The customer was erased (or the key is not available): the fields stay empty.
    Erased,
}

/// Where a partition's chain ends: the next offset to write and the hash to chain onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub(crate) next_offset: u64,
    pub(crate) last_hash: ChainHash,
}

/// The result of walking one partition's hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionVerification {
    pub partition: u16,
    /// Records checked before the walk ended (all of them when `problem` is `None`).
    pub records: u64,
    /// Hash of the last good record (zeros for an empty partition).
    pub head_hash: ChainHash,
    /// The first bad position and what is wrong with it.
    pub problem: Option<(Position, String)>,
}

/// The first inconsistency between the events and the stream index or heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamProblem {
    /// The customer whose stream is wrong (empty when the index as a whole is).
    pub customer: String,
    /// The event where it shows, when one does.
    pub position: Option<Position>,
    pub reason: String,
}

/// The customer part (`[len][customer_id]`) of a `stream_index` or `commands` key.
fn customer_part(key: &[u8]) -> &[u8] {
    let end = key.first().map_or(0, |len| 1 + usize::from(*len)).min(key.len());
    &key[..end]
}

/// Options of the customer-keyed column families written for every event (`stream_index`,
/// `commands`, `streams`): their keys land all over the key space, and inserting them into one big skip
/// list was most of the writer's time (cache misses on every level). A hash of skip lists,
/// bucketed by customer, keeps each insert to one small list; lookups and reads of one
/// customer (the only reads on the hot path) stay in their bucket.
///
/// `streams` (keyed by the bare customer id, rewritten on every group commit that touches the
/// customer) gets the same memtable with the whole key as the bucket; it is only ever read by
/// key (no iterator), so the hashing costs no read.
fn customer_keyed_options(options: &mut Options, whole_key: bool) {
    let prefix = if whole_key {
        SliceTransform::create_noop()
    } else {
        SliceTransform::create("covenant.customer_part", customer_part, None)
    };
    options.set_prefix_extractor(prefix);
    options.set_memtable_factory(MemtableFactory::HashSkipList {
        bucket_count: 1 << 18,
        height: 4,
        branching_factor: 4,
    });
}

fn cf_options(name: &str) -> Options {
    let point_lookups = matches!(name, CF_STREAMS | CF_COMMANDS | keys::CF_KEYS);
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::Lz4);
    if matches!(name, CF_STREAM_INDEX | CF_COMMANDS | CF_STREAMS) {
        customer_keyed_options(&mut options, name == CF_STREAMS);
    }
    if point_lookups {
        // Most lookups here miss (a new command id, a new customer): a memtable bloom filter
        // answers those without searching the skip list.
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(0.1);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        options.set_block_based_table_factory(&table);
    }
    options
}

impl Drop for Store {
    fn drop(&mut self) {
        // Let running flushes and compactions finish before the database object goes away.
        self.db.cancel_all_background_work(true);
    }
}

impl Store {
    /// Opens or creates the database and checks its partition count.
    pub(crate) fn open(config: &LogConfig) -> Result<Self> {
        if config.partitions == Some(0) {
            return Err(LogError::Config("partitions must be at least 1".into()));
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        // Memtables of all column families together stay under this (flushing earlier), so the
        // ledger's memory is bounded whatever the write mix (the soak checks it).
        options.set_db_write_buffer_size(LOG_MEMTABLE_BUDGET);
        // Hash-bucketed memtables (see `customer_keyed_options`) need inserts from one thread
        // at a time; each writer thread writes its group commits whole anyway.
        options.set_allow_concurrent_memtable_write(false);
        let descriptors =
            COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
        let db = DB::open_cf_descriptors(&options, &config.path, descriptors)?;
        let mut store = Store {
            db,
            path: config.path.clone(),
            partition_count: 0,
            master_key: None,
            generation: 0,
            writable: true,
        };
        store.partition_count = store.check_meta(config.partitions)?;
        let key_path = config.master_key_path();
        store.master_key = Some(match MasterKey::load(&key_path)? {
            Some(key) => key,
            None if store.holds_data_keys()? => {
                return Err(LogError::Config(format!(
                    "the log at {} holds customers' data keys but its master key {} is missing: restore the master key file (backups do not carry it)",
                    config.path.display(),
                    key_path.display()
                )));
            }
            None => {
                tracing::info!(path = %key_path.display(), "created the master key of the log's personal data");
                MasterKey::create(&key_path)?
            }
        });
        Ok(store)
    }

    /// Opens an existing log read-only: no writer, no lock taken, so it works beside a running
    /// writer process. It sees the log as it was when opened (RocksDB read-only semantics).
    pub(crate) fn open_read_only(path: &Path) -> Result<Self> {
        Self::open_read_only_with_key(path, &crate::sealing::default_master_key_path(path))
    }

    /// [`Self::open_read_only`] with the master key at `key_path`.
    pub(crate) fn open_read_only_with_key(path: &Path, key_path: &Path) -> Result<Self> {
        if !path.join("CURRENT").exists() {
            return Err(LogError::Config(format!("no event log at {}", path.display())));
        }
        let descriptors =
            COLUMN_FAMILIES.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
        let mut options = Options::default();
        options.set_allow_concurrent_memtable_write(false);
        let db = DB::open_cf_descriptors_read_only(&options, path, descriptors, false)?;
        let master_key = MasterKey::load(key_path)?;
        let mut store = Store {
            db,
            path: path.to_path_buf(),
            partition_count: 0,
            master_key,
            generation: 0,
            writable: false,
        };
        let meta = store.cf(CF_META)?;
        let stored = store.db.get_cf(meta, keys::META_PARTITION_COUNT)?.ok_or_else(|| {
            LogError::CorruptMetadata { what: "meta partition_count".into(), reason: "missing".into() }
        })?;
        store.partition_count =
            <[u8; 2]>::try_from(stored.as_slice()).map(u16::from_be_bytes).map_err(|_| {
                LogError::CorruptMetadata { what: "meta partition_count".into(), reason: "not a u16".into() }
            })?;
        Ok(store)
    }

    fn check_meta(&self, requested: Option<u16>) -> Result<u16> {
        let meta = self.cf(CF_META)?;
        let stored = self.db.get_cf(meta, keys::META_PARTITION_COUNT)?;
        match stored {
            Some(bytes) => {
                let stored = <[u8; 2]>::try_from(bytes.as_slice()).map(u16::from_be_bytes).map_err(|_| {
                    LogError::CorruptMetadata {
                        what: "meta partition_count".into(),
                        reason: "not a u16".into(),
                    }
                })?;
                if let Some(format) = self.db.get_cf(meta, keys::META_FORMAT)?
                    && format.as_slice() != [LOG_FORMAT]
                {
                    return Err(LogError::Config(format!(
                        "the log at {} has format {:?}; this build reads format {LOG_FORMAT}",
                        self.path.display(),
                        format
                    )));
                }
                match requested {
                    Some(requested) if requested != stored => Err(LogError::PartitionCountMismatch {
                        path: self.path.display().to_string(),
                        stored,
                        requested,
                    }),
                    _ => Ok(stored),
                }
            }
            None => {
                let count = requested.unwrap_or(DEFAULT_PARTITIONS);
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, keys::META_PARTITION_COUNT, count.to_be_bytes());
                batch.put_cf(meta, keys::META_FORMAT, [LOG_FORMAT]);
                let mut sync = WriteOptions::default();
                sync.set_sync(true);
                self.db.write_opt(batch, &sync)?;
                Ok(count)
            }
        }
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| LogError::CorruptMetadata {
            what: format!("column family {name}"),
            reason: "missing".into(),
        })
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// See the field.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// False for a read-only database.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Flushes every column family's memtable to table files and fsyncs the WAL: afterwards
    /// everything this database holds is on disk, whatever the WAL it was recovered from.
    pub(crate) fn flush_all(&self) -> Result<()> {
        let families: Vec<&ColumnFamily> =
            COLUMN_FAMILIES.iter().map(|name| self.cf(name)).collect::<Result<_>>()?;
        let mut flush = rocksdb::FlushOptions::default();
        flush.set_wait(true);
        self.db.flush_cfs_opt(&families, &flush)?;
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// The master key (always there for a writable store).
    pub(crate) fn master_key(&self) -> Result<&MasterKey> {
        self.master_key
            .as_ref()
            .ok_or_else(|| LogError::Sealing("the log was opened without its master key".into()))
    }

    fn holds_data_keys(&self) -> Result<bool> {
        Ok(self.db.iterator_cf(self.cf(CF_KEYS)?, IteratorMode::Start).next().transpose()?.is_some())
    }

    /// The stored data key of `customer_id`, opened; `None` when there is none (never had
    /// personal data, or erased).
    pub(crate) fn data_key(&self, customer_id: &str) -> Result<Option<DataKey>> {
        match self.db.get_pinned_cf(self.cf(CF_KEYS)?, customer_id.as_bytes())? {
            Some(wrapped) => Ok(Some(self.master_key()?.unwrap(customer_id, &wrapped)?)),
            None => Ok(None),
        }
    }

    /// After an erasure: flushes every column family (so no live write-ahead log still holds the
    /// deleted key) and compacts `keys` to the last level (so no live table file does).
    pub(crate) fn shred_erased_keys(&self) -> Result<()> {
        let families: Vec<&ColumnFamily> =
            COLUMN_FAMILIES.iter().map(|name| self.cf(name)).collect::<Result<_>>()?;
        let mut flush = rocksdb::FlushOptions::default();
        flush.set_wait(true);
        self.db.flush_cfs_opt(&families, &flush)?;
        let mut compact = rocksdb::CompactOptions::default();
        compact.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db.compact_range_cf_opt(self.cf(CF_KEYS)?, None::<&[u8]>, None::<&[u8]>, &compact);
        Ok(())
    }

    /// Up to `max` events of a customer's stream from `from_version` on, with their personal data
    /// opened where the customer's key allows (see [`PersonalDataState`]).
    pub(crate) fn read_stream_revealed(
        &self,
        customer_id: &CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<(RecordedEvent, PersonalDataState)>> {
        let key = match &self.master_key {
            Some(_) => self.data_key(customer_id.as_str())?,
            None => None,
        };
        self.read_stream_with(customer_id, from_version, max, |position, value| {
            let (mut event, sealed) = codec::decode_sealed_record(position, value)?;
            if sealed.is_empty() {
                // Format-1 records hold their personal data in clear; format 2 had none.
                let state =
                    if covenant_domain::personal::take_personal_data(&mut event.event.clone()).is_some() {
                        PersonalDataState::Revealed
                    } else {
                        PersonalDataState::None
                    };
                return Ok((event, state));
            }
            let Some(key) = &key else { return Ok((event, PersonalDataState::Erased)) };
            let data = key.open(customer_id.as_str(), &event.event_id, sealed)?;
            covenant_domain::personal::restore_personal_data(&mut event.event, data)
                .map_err(|error| LogError::Corrupt { position, reason: error.to_string() })?;
            Ok((event, PersonalDataState::Revealed))
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn partition_count(&self) -> u16 {
        self.partition_count
    }

    /// A named cursor stored in `meta` (`None` when never stored).
    pub(crate) fn cursor(&self, name: &str) -> Result<Option<u64>> {
        let Some(value) = self.db.get_cf(self.cf(CF_META)?, keys::cursor_key(name))? else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value.as_slice().try_into().map_err(|_| LogError::CorruptMetadata {
            what: format!("cursor {name}"),
            reason: format!("{} bytes where 8 were expected", value.len()),
        })?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    /// Stores a named cursor in `meta` (written through the WAL, not fsynced: a cursor that
    /// falls back after a crash only repeats work that consumers deduplicate).
    pub(crate) fn set_cursor(&self, name: &str, value: u64) -> Result<()> {
        self.db.put_cf(self.cf(CF_META)?, keys::cursor_key(name), value.to_be_bytes())?;
        Ok(())
    }

    pub(crate) fn check_partition(&self, partition: u16) -> Result<()> {
        if partition >= self.partition_count {
            return Err(LogError::NoSuchPartition { partition, partition_count: self.partition_count });
        }
        Ok(())
    }

    /// The end of a partition's chain, from its last record.
    pub(crate) fn chain_head(&self, partition: u16) -> Result<ChainHead> {
        let mut iterator = self.db.raw_iterator_cf(self.cf(CF_EVENTS)?);
        iterator.seek_for_prev(keys::event_key(partition, u64::MAX));
        if let (Some(key), Some(value)) = (iterator.key(), iterator.value())
            && let Some((key_partition, offset)) = keys::parse_event_key(key)
            && key_partition == partition
        {
            codec::split_record(Position { partition, offset }, value)?;
            return Ok(ChainHead { next_offset: offset + 1, last_hash: codec::chain_hash(value) });
        }
        iterator.status()?;
        Ok(ChainHead { next_offset: 0, last_hash: GENESIS_HASH })
    }

    /// A customer's latest stream head: the stored snapshot with the events after it folded in
    /// (all their events when the snapshot is missing or unreadable). `None`: no events yet.
    pub(crate) fn stream_head(&self, customer_id: &CustomerId) -> Result<Option<CurrentHead>> {
        let snapshot = match self.stream_snapshot(customer_id)? {
            StoredHead::Snapshot(head) => head,
            StoredHead::Missing => StreamHead::default(),
            StoredHead::Unreadable => {
                tracing::warn!(customer_id = %customer_id, "stream head in an unknown format: rebuilding it from the events");
                StreamHead::default()
            }
        };
        let stored_version = snapshot.state.version;
        let head = self.fold_stream(customer_id, snapshot)?;
        Ok((head.state.version > 0).then_some(CurrentHead { head, stored_version }))
    }

    /// The number of events in a customer's stream: the stored snapshot's version and the
    /// stream-index entries after it (no record is read).
    pub(crate) fn stream_version(&self, customer_id: &CustomerId) -> Result<u64> {
        let from = match self.stream_snapshot(customer_id)? {
            StoredHead::Snapshot(head) => head.state.version,
            StoredHead::Missing | StoredHead::Unreadable => 0,
        };
        let after = self.stream_offsets(customer_id, from + 1, usize::MAX)?;
        Ok(from + after.len() as u64)
    }

    /// The stream head stored in `streams` for a customer, as it is.
    pub(crate) fn stream_snapshot(&self, customer_id: &CustomerId) -> Result<StoredHead> {
        Ok(match self.db.get_pinned_cf(self.cf(CF_STREAMS)?, customer_id.as_str())? {
            None => StoredHead::Missing,
            Some(value) => codec::decode_head(&value).map_or(StoredHead::Unreadable, StoredHead::Snapshot),
        })
    }

    /// Folds the customer's events after `head` (from version `head.state.version + 1` to the
    /// end of their stream) into it.
    pub(crate) fn fold_stream(&self, customer_id: &CustomerId, mut head: StreamHead) -> Result<StreamHead> {
        loop {
            let events = self.read_stream(customer_id, head.state.version + 1, 1024)?;
            if events.is_empty() {
                return Ok(head);
            }
            for event in &events {
                if event.stream_version != head.state.version + 1 {
                    return Err(LogError::Corrupt {
                        position: event.position,
                        reason: format!(
                            "customer {customer_id}: stream version {} follows version {}",
                            event.stream_version, head.state.version
                        ),
                    });
                }
                covenant_domain::apply(&mut head.state, &event.event, event.metadata.occurred_at);
                head.last_offset = event.position.offset;
            }
        }
    }

    /// The stored outcomes of many commands (`keys` from `keys::command_key`), in one batched
    /// lookup: RocksDB probes the memtables' and table files' filters for all of them together,
    /// which costs less than a lookup each (most of them miss: new command ids).
    pub(crate) fn command_outcomes(&self, keys: &[Vec<u8>]) -> Result<Vec<Result<Option<StoredOutcome>>>> {
        let found = self.db.batched_multi_get_cf(self.cf(CF_COMMANDS)?, keys, false);
        if found.len() != keys.len() {
            // RocksDB answers each key once; anything else would pair answers with the wrong
            // commands.
            return Err(LogError::CorruptMetadata {
                what: "command lookup".into(),
                reason: format!("{} answers for {} command ids", found.len(), keys.len()),
            });
        }
        Ok(found
            .into_iter()
            .map(|value| match value? {
                Some(value) => codec::decode_outcome(&value).map(Some),
                None => Ok(None),
            })
            .collect())
    }

    /// Up to `max` records of `partition` from `from_offset` on, in offset order.
    pub(crate) fn read_partition(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::with_capacity(max.min(4096));
        self.scan_partition(partition, from_offset, max, |position, value| {
            events.push(codec::decode_record(position, value)?);
            Ok(())
        })?;
        Ok(events)
    }

    /// Calls `visit` with up to `max` raw records of `partition` from `from_offset` on, checking
    /// that offsets are dense. Returns the number visited.
    pub(crate) fn scan_partition(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
        visit: impl FnMut(Position, &[u8]) -> Result<()>,
    ) -> Result<usize> {
        self.scan_partition_with(partition, from_offset, max, visit)
    }

    /// [`Self::scan_partition`] with a visitor whose errors are its own.
    pub(crate) fn scan_partition_with<E: From<LogError>>(
        &self,
        partition: u16,
        from_offset: u64,
        max: usize,
        mut visit: impl FnMut(Position, &[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.check_partition(partition)?;
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(keys::event_key(partition, u64::MAX).to_vec());
        read_options.set_readahead_size(1 << 20);
        let mut iterator = self.db.raw_iterator_cf_opt(self.cf(CF_EVENTS)?, read_options);
        iterator.seek(keys::event_key(partition, from_offset));
        let mut expected = from_offset;
        let mut visited = 0;
        while visited < max {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else { break };
            let position = Position { partition, offset: expected };
            match keys::parse_event_key(key) {
                Some((key_partition, offset)) if key_partition == partition && offset == expected => {}
                Some((_, offset)) => {
                    return Err(LogError::Corrupt {
                        position,
                        reason: format!("missing: the next stored offset is {offset}"),
                    }
                    .into());
                }
                None => return Err(LogError::Corrupt { position, reason: "malformed key".into() }.into()),
            }
            visit(position, value)?;
            visited += 1;
            expected += 1;
            iterator.next();
        }
        iterator.status().map_err(LogError::from)?;
        Ok(visited)
    }

    /// Up to `max` events of a customer's stream from `from_version` (1-based) on.
    pub(crate) fn read_stream(
        &self,
        customer_id: &CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_stream_with(customer_id, from_version, max, codec::decode_record)
    }

    /// The offsets of up to `max` events of a customer's stream from `from_version` (1-based) on,
    /// from the stream index.
    fn stream_offsets(&self, customer_id: &CustomerId, from_version: u64, max: usize) -> Result<Vec<u64>> {
        let prefix = keys::stream_index_prefix(customer_id.as_str());
        let mut offsets = Vec::new();
        let start = keys::stream_index_key(customer_id.as_str(), from_version.max(1));
        // One customer's entries: a prefix seek (the memtable's bucket of that customer).
        let mut read_options = ReadOptions::default();
        read_options.set_prefix_same_as_start(true);
        let iterator = self.db.iterator_cf_opt(
            self.cf(CF_STREAM_INDEX)?,
            read_options,
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iterator {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || offsets.len() >= max {
                break;
            }
            let offset = <[u8; 8]>::try_from(&*value).map(u64::from_be_bytes).map_err(|_| {
                LogError::CorruptMetadata {
                    what: format!("stream index of customer {customer_id}"),
                    reason: "offset is not a u64".into(),
                }
            })?;
            offsets.push(offset);
        }
        Ok(offsets)
    }

    /// The records at `offsets` of `partition`, in that order. Sorted offsets that cover at
    /// least one record in [`WALK_SPREAD`] of their range are read by walking an iterator over
    /// the range (stepping over the records between them, seeking across long gaps): a step
    /// costs a fraction of a point lookup. Other offsets are read with one multi-get (sorted
    /// offsets let RocksDB decode each block once for all the records it holds; they are sorted
    /// when they come from one stream index or from `read_streams`). `whose` names the stream
    /// the offsets came from, for the error when one is missing.
    fn read_offsets<T>(
        &self,
        partition: u16,
        offsets: &[u64],
        whose: &dyn Fn(usize) -> String,
        mut decode: impl FnMut(usize, Position, &[u8]) -> Result<T>,
    ) -> Result<()> {
        let missing = |at: usize, position: Position| LogError::Corrupt {
            position,
            reason: format!("the stream index of customer {} points here but no record is stored", whose(at)),
        };
        if let (Some(first), Some(last)) = (offsets.first(), offsets.last())
            && offsets.len() >= WALK_MIN_RECORDS
            && offsets.is_sorted()
            && (last - first) / WALK_SPREAD < offsets.len() as u64
        {
            return self.walk_offsets(partition, offsets, &missing, decode);
        }
        let events_cf = self.cf(CF_EVENTS)?;
        let keys: Vec<[u8; 10]> = offsets.iter().map(|offset| keys::event_key(partition, *offset)).collect();
        let values = self.db.batched_multi_get_cf(events_cf, &keys, offsets.is_sorted());
        for (at, (offset, value)) in offsets.iter().zip(values).enumerate() {
            let position = Position { partition, offset: *offset };
            let value = value?.ok_or_else(|| missing(at, position))?;
            decode(at, position, &value)?;
        }
        Ok(())
    }

    /// [`Self::read_offsets`] of sorted offsets by walking one iterator over their range.
    fn walk_offsets<T>(
        &self,
        partition: u16,
        offsets: &[u64],
        missing: &dyn Fn(usize, Position) -> LogError,
        mut decode: impl FnMut(usize, Position, &[u8]) -> Result<T>,
    ) -> Result<()> {
        let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else { return Ok(()) };
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(keys::event_key(partition, last.saturating_add(1)).to_vec());
        read_options.set_readahead_size(1 << 20);
        let mut iterator = self.db.raw_iterator_cf_opt(self.cf(CF_EVENTS)?, read_options);
        iterator.seek(keys::event_key(partition, *first));
        for (at, offset) in offsets.iter().enumerate() {
            let position = Position { partition, offset: *offset };
            let found = loop {
                let Some(key) = iterator.key() else { break None };
                match keys::parse_event_key(key) {
                    Some((key_partition, stored)) if key_partition == partition && stored < *offset => {
                        if offset - stored > WALK_MAX_STEP {
                            iterator.seek(keys::event_key(partition, *offset));
                        } else {
                            iterator.next();
                        }
                    }
                    Some((key_partition, stored)) if key_partition == partition && stored == *offset => {
                        break iterator.value();
                    }
                    Some(_) => break None,
                    None => return Err(LogError::Corrupt { position, reason: "malformed key".into() }),
                }
            };
            match found {
                Some(value) => decode(at, position, value)?,
                None => {
                    iterator.status()?;
                    return Err(missing(at, position));
                }
            };
        }
        iterator.status()?;
        Ok(())
    }

    fn read_stream_with<T>(
        &self,
        customer_id: &CustomerId,
        from_version: u64,
        max: usize,
        mut decode: impl FnMut(Position, &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let partition = customer_id.partition(self.partition_count);
        let offsets = self.stream_offsets(customer_id, from_version, max)?;
        let mut events = Vec::with_capacity(offsets.len());
        self.read_offsets(partition, &offsets, &|_| customer_id.to_string(), |_, position, value| {
            events.push(decode(position, value)?);
            Ok(())
        })?;
        Ok(events)
    }

    /// The whole streams of `customers`, read together: their offsets from the stream index, then
    /// their events partition by partition in offset order (one sorted multi-get per partition,
    /// so a block holding records of several of them is decoded once, not once per record).
    /// Returns each customer's stream, in the order of `customers`.
    pub(crate) fn read_streams(&self, customers: &[CustomerId]) -> Result<Vec<Vec<RecordedEvent>>> {
        let mut wanted: Vec<(u16, u64, usize)> = Vec::new();
        let mut streams: Vec<Vec<RecordedEvent>> = Vec::with_capacity(customers.len());
        for (index, customer) in customers.iter().enumerate() {
            let partition = customer.partition(self.partition_count);
            let offsets = self.stream_offsets(customer, 1, usize::MAX)?;
            streams.push(Vec::with_capacity(offsets.len()));
            wanted.extend(offsets.into_iter().map(|offset| (partition, offset, index)));
        }
        wanted.sort_unstable();
        for group in wanted.chunk_by(|a, b| a.0 == b.0) {
            let partition = group[0].0;
            let offsets: Vec<u64> = group.iter().map(|(_, offset, _)| *offset).collect();
            let whose = |at: usize| customers[group[at].2].to_string();
            self.read_offsets(partition, &offsets, &whose, |at, position, value| {
                streams[group[at].2].push(codec::decode_record(position, value)?);
                Ok(())
            })?;
        }
        Ok(streams)
    }

    /// Walks a partition's hash chain from offset 0 and reports the first bad record.
    pub(crate) fn verify_partition(&self, partition: u16) -> Result<PartitionVerification> {
        let mut report =
            PartitionVerification { partition, records: 0, head_hash: GENESIS_HASH, problem: None };
        let mut expected_prev = GENESIS_HASH;
        let result = self.scan_partition(partition, 0, usize::MAX, |position, value| {
            let raw = codec::split_record(position, value)?;
            if raw.prev_hash != expected_prev {
                return Err(LogError::Corrupt {
                    position,
                    reason: "prev_hash does not match the hash of the record before it (chain broken)".into(),
                });
            }
            codec::decode_body(position, raw.body)?;
            expected_prev = codec::chain_hash(value);
            report.records += 1;
            report.head_hash = expected_prev;
            Ok(())
        });
        match result {
            Ok(_) => Ok(report),
            Err(LogError::Corrupt { position, reason }) => {
                report.problem = Some((position, reason));
                Ok(report)
            }
            Err(other) => Err(other),
        }
    }

    /// Checks the stream index against the events of every partition: each event's
    /// `(customer, version)` entry points at it, each customer's versions run 1, 2, 3, … in offset
    /// order, each stored stream head is a snapshot at one of the customer's versions and names
    /// that event's offset, and the index holds no entry without an event. Returns the first
    /// inconsistency (`None`: consistent) and the number of customers checked. Memory: one entry
    /// per customer.
    pub(crate) fn verify_streams(&self) -> Result<(Option<StreamProblem>, u64)> {
        let index = self.cf(CF_STREAM_INDEX)?;
        let mut events = 0u64;
        let mut customers = 0u64;
        for partition in 0..self.partition_count {
            let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
            let mut problem: Option<StreamProblem> = None;
            self.scan_partition(partition, 0, usize::MAX, |position, value| {
                if problem.is_some() {
                    return Ok(());
                }
                let record = codec::RecordView::parse(position, value)?;
                let envelope = &record.envelope;
                let customer = envelope.customer_id;
                let expected = last.get(customer).map_or(1, |version| version + 1);
                let fail = |reason: String| StreamProblem {
                    customer: customer.to_owned(),
                    position: Some(position),
                    reason,
                };
                if envelope.stream_version != expected {
                    problem = Some(fail(format!(
                        "event has stream version {} where {expected} was expected",
                        envelope.stream_version
                    )));
                    return Ok(());
                }
                let key = keys::stream_index_key(customer, envelope.stream_version);
                let indexed = self
                    .db
                    .get_pinned_cf(index, &key)?
                    .map(|value| <[u8; 8]>::try_from(&*value).map(u64::from_be_bytes));
                match indexed {
                    Some(Ok(offset)) if offset == position.offset => {}
                    Some(Ok(offset)) => {
                        problem = Some(fail(format!(
                            "the stream index puts version {} at offset {offset}",
                            envelope.stream_version
                        )));
                        return Ok(());
                    }
                    Some(Err(_)) => {
                        problem = Some(fail(format!(
                            "the stream index entry of version {} is not an offset",
                            envelope.stream_version
                        )));
                        return Ok(());
                    }
                    None => {
                        problem = Some(fail(format!(
                            "the stream index has no entry for version {}",
                            envelope.stream_version
                        )));
                        return Ok(());
                    }
                }
                last.insert(customer.to_owned(), envelope.stream_version);
                events += 1;
                Ok(())
            })?;
            if problem.is_some() {
                return Ok((problem, customers));
            }
            let mut ordered: Vec<(String, u64)> = last.into_iter().collect();
            ordered.sort();
            for (customer, version) in ordered {
                customers += 1;
                let id = CustomerId::new(customer.as_str()).map_err(|error| LogError::CorruptMetadata {
                    what: "a stored customer id".into(),
                    reason: error.to_string(),
                })?;
                let fail = |reason: String| {
                    Ok((
                        Some(StreamProblem { customer: customer.clone(), position: None, reason }),
                        customers,
                    ))
                };
                // A stream shorter than the snapshot interval has no stored head: nothing to check.
                match self.stream_snapshot(&id)? {
                    StoredHead::Missing => {}
                    StoredHead::Unreadable => return fail("the stored stream head does not decode".into()),
                    StoredHead::Snapshot(head) if head.state.version > version => {
                        return fail(format!(
                            "the stream head is a snapshot at version {}, the events end at version {version}",
                            head.state.version
                        ));
                    }
                    StoredHead::Snapshot(head) if head.state.version > 0 => {
                        // The index was checked against every event above: it knows where the
                        // snapshot's event is.
                        let at = self.stream_offsets(&id, head.state.version, 1)?.first().copied();
                        if at != Some(head.last_offset) {
                            return fail(format!(
                                "the stream head is a snapshot at version {} offset {}, that event is at offset {}",
                                head.state.version,
                                head.last_offset,
                                at.map_or_else(|| "none".to_owned(), |offset| offset.to_string())
                            ));
                        }
                    }
                    StoredHead::Snapshot(_) => {}
                }
            }
        }
        // Across customers: the memtable is hashed by customer, so ask for total order.
        let mut read_options = ReadOptions::default();
        read_options.set_total_order_seek(true);
        let mut entries = 0u64;
        for entry in self.db.iterator_cf_opt(index, read_options, IteratorMode::Start) {
            entry?;
            entries += 1;
        }
        if entries != events {
            return Ok((
                Some(StreamProblem {
                    customer: String::new(),
                    position: None,
                    reason: format!("the stream index holds {entries} entries for {events} events"),
                }),
                customers,
            ));
        }
        Ok((None, customers))
    }

    /// Writes a consistent point-in-time copy of the database to `destination` (must not exist).
    pub(crate) fn checkpoint(&self, destination: &Path) -> Result<()> {
        if destination.exists() {
            return Err(LogError::Config(format!(
                "backup destination {} already exists: choose a new directory",
                destination.display()
            )));
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        checkpoint.create_checkpoint(destination)?;
        Ok(())
    }

    /// Deletes command outcomes recorded before `cutoff`; returns how many.
    pub(crate) fn purge_command_outcomes(&self, cutoff: covenant_domain::Timestamp) -> Result<u64> {
        let commands = self.cf(CF_COMMANDS)?;
        let mut purged = 0;
        let mut batch = WriteBatch::default();
        // Every customer's outcomes, in key order across the hash-bucketed memtable.
        let mut read_options = ReadOptions::default();
        read_options.set_total_order_seek(true);
        for item in self.db.iterator_cf_opt(commands, read_options, IteratorMode::Start) {
            let (key, value) = item?;
            let outcome = codec::decode_outcome(&value)?;
            if outcome.recorded_at < cutoff {
                batch.delete_cf(commands, key);
                purged += 1;
            }
            if batch.len() >= 4096 {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        self.db.write(batch)?;
        Ok(purged)
    }
}
