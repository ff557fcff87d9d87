//! The raw RocksDB baselines: what the disk and RocksDB do with no log on top.
//!
//! Writes go to an `events` column family with the log's options (LZ4, two background jobs),
//! under the log's key layout `[partition u16][offset u64]` (big-endian, offsets dense per
//! partition, events spread round-robin over the partitions), with values the size of a real
//! record. Reads iterate an existing log's `events` column family without decoding the events.
//!
//! Everything here blocks: call it from a plain thread, never from an async worker.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use covenant_domain::Position;
use covenant_log::codec;
use rocksdb::{
    ColumnFamilyDescriptor, DB, DBCompressionType, Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::stats::Run;

/// The log's column family of records.
pub(crate) const EVENTS_CF: &str = "events";
/// Readahead of the log's partition scans, used for the raw scan too.
const READAHEAD_BYTES: usize = 1 << 20;

/// One write baseline: puts per `WriteBatch`, and whether each write is fsynced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteShape {
    pub(crate) batch: usize,
    pub(crate) sync: bool,
}

impl WriteShape {
    pub(crate) fn label(&self) -> String {
        let sync = if self.sync { "fsync" } else { "no fsync" };
        format!("raw WriteBatch ×{}, {sync}", self.batch)
    }
}

/// Options of the log's column families (as `covenant-log` sets them).
fn cf_options() -> Options {
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::Lz4);
    options
}

/// Database options as the log sets them.
fn db_options(create: bool) -> Options {
    let mut options = Options::default();
    options.create_if_missing(create);
    options.create_missing_column_families(create);
    options.increase_parallelism(2);
    options.set_max_background_jobs(2);
    options.set_keep_log_file_num(4);
    options
}

/// The key of `(partition, offset)`, as the log lays it out.
fn event_key(partition: u16, offset: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(&partition.to_be_bytes());
    key[2..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// Writes up to `events` copies of `value` into a fresh database at `path`, `shape.batch` per
/// `WriteBatch`; stops early once `max_time` has passed. Opening and closing are not timed.
pub(crate) fn write_run(
    path: &Path,
    partitions: u16,
    value: &[u8],
    events: u64,
    shape: WriteShape,
    max_time: Duration,
) -> Result<Run> {
    let db = DB::open_cf_descriptors(
        &db_options(true),
        path,
        [ColumnFamilyDescriptor::new(EVENTS_CF, cf_options())],
    )
    .with_context(|| format!("open raw database {}", path.display()))?;
    let cf = db.cf_handle(EVENTS_CF).context("raw database has no events column family")?;
    let mut options = WriteOptions::default();
    options.set_sync(shape.sync);
    let partitions = u64::from(partitions.max(1));
    let batch_size = shape.batch.max(1) as u64;
    let start = Instant::now();
    let mut written = 0u64;
    while written < events && start.elapsed() < max_time {
        let mut batch = WriteBatch::default();
        let end = (written + batch_size).min(events);
        for sequence in written..end {
            let partition = u16::try_from(sequence % partitions).unwrap_or(0);
            batch.put_cf(cf, event_key(partition, sequence / partitions), value);
        }
        db.write_opt(batch, &options).context("raw batch write")?;
        written = end;
    }
    let elapsed = start.elapsed();
    drop(db);
    Ok(Run::new(written, elapsed))
}

/// Opens an existing database (a closed log's directory) with every column family it has.
fn open_existing(path: &Path) -> Result<DB> {
    let names = DB::list_cf(&Options::default(), path)
        .with_context(|| format!("list the column families of {}", path.display()))?;
    let descriptors = names.into_iter().map(|name| ColumnFamilyDescriptor::new(name, cf_options()));
    DB::open_cf_descriptors(&db_options(false), path, descriptors)
        .with_context(|| format!("open {} with raw RocksDB", path.display()))
}

/// Flushes every memtable of a closed log to SST files, so that the scans after it all read
/// the same files (not a memtable rebuilt from the WAL on one side only).
pub(crate) fn flush_all(path: &Path) -> Result<()> {
    let db = open_existing(path)?;
    let names = DB::list_cf(&Options::default(), path)?;
    for name in names {
        if let Some(cf) = db.cf_handle(&name) {
            db.flush_cf(cf).with_context(|| format!("flush column family {name}"))?;
            // Compact fully (synchronously) so that no background compaction runs during the
            // scans and every scan reads the same files.
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
    }
    Ok(())
}

/// How much of a record the raw scan looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanWork {
    /// Touches each key and value, decodes nothing.
    Touch,
    /// Also checks each record's checksum (`codec::split_record`), without decoding the
    /// event: shows how much of the log's scan cost is the hash check.
    HashCheck,
}

/// A raw scan of a closed log: opens it and iterates its `events` column family. One pass
/// warms the caches and is not counted; then each of `runs` runs repeats full passes for at
/// least `min_run_time`.
/// Returns the records of one pass and the runs.
pub(crate) fn scan_runs(
    path: &Path,
    work: ScanWork,
    runs: usize,
    min_run_time: Duration,
) -> Result<(u64, Vec<Run>)> {
    let db = open_existing(path)?;
    let cf = db.cf_handle(EVENTS_CF).context("the log has no events column family")?;
    let pass = || -> Result<u64> {
        let mut read_options = ReadOptions::default();
        read_options.set_readahead_size(READAHEAD_BYTES);
        let mut iterator = db.raw_iterator_cf_opt(cf, read_options);
        iterator.seek_to_first();
        let mut count = 0u64;
        let mut bytes = 0usize;
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            match work {
                ScanWork::Touch => bytes += black_box(key).len() + black_box(value).len(),
                ScanWork::HashCheck => {
                    let position = parse_key(key).context("malformed events key")?;
                    let record = codec::split_record(position, value)?;
                    bytes += black_box(record.body).len();
                }
            }
            count += 1;
            iterator.next();
        }
        iterator.status().context("raw scan")?;
        black_box(bytes);
        Ok(count)
    };
    crate::stats::timed_passes(pass, runs, min_run_time)
}

/// `(partition, offset)` of an `events` key.
fn parse_key(key: &[u8]) -> Option<Position> {
    let partition = u16::from_be_bytes(key.get(..2)?.try_into().ok()?);
    let offset = u64::from_be_bytes(key.get(2..10)?.try_into().ok()?);
    (key.len() == 10).then_some(Position { partition, offset })
}
