//! A service's own RocksDB (standing's projections, the watchdog's deadlines): named column
//! families, values encoded as `[format u8][postcard]`, and the per-partition checkpoint of the
//! service's event consumer, which goes in the **same** `WriteBatch` as the effects of the events
//! it covers. After a crash the store therefore holds either a batch's effects and its checkpoint
//! or neither, and the consumer resumes exactly where the effects end.
//!
//! Writes go to RocksDB's WAL without fsync: a killed process loses nothing the WAL holds, and a
//! machine crash can only take the store back to an earlier consistent point, which the consumer
//! re-applies from the stream (the event log stays the system of record).
//!
//! A store being rebuilt from the log into a fresh directory ([`Store::open_for_rebuild`]) skips
//! the WAL: a rebuild that stops half way is thrown away and started again, never used, so its
//! writes need no log; [`Store::finish_rebuild`] flushes them to SST files before the directory
//! is put to use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    ColumnFamilyDescriptor, DB, DBCompressionType, Direction, FlushOptions, IteratorMode, Options,
    WriteBatch, WriteOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most memory a store's memtables take together.
pub const MEMTABLE_BUDGET: usize = 64 << 20;

/// The column family every store has: checkpoints and settings.
pub const META: &str = "meta";
/// The first byte of every stored value.
const FORMAT: u8 = 1;
/// The meta key holding the partition count the store was created for.
const PARTITIONS_KEY: &[u8] = b"partitions";

/// What can go wrong with a service store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB at {path}: {source}")]
    Open { path: PathBuf, source: rocksdb::Error },
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("the store has no column family `{0}`")]
    NoColumnFamily(String),
    #[error("stored value in `{family}` is corrupt: {reason}")]
    Corrupt { family: String, reason: String },
    #[error("the store at {path} was created for {stored} partitions, not {asked}")]
    PartitionMismatch { path: PathBuf, stored: u16, asked: u16 },
    #[error("encode a value: {0}")]
    Encode(postcard::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stored entry, raw: its key and value.
pub type RawEntry = (Box<[u8]>, Box<[u8]>);

/// An open store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    /// Whether writes go to the WAL (`false` only while a fresh store is being rebuilt).
    logged: bool,
    /// The column families it was opened with ([`META`] first).
    families: Arc<[String]>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) the store at `path` with `families` besides [`META`], for a
    /// stream of `partitions` partitions (a store created for another count is refused).
    pub fn open(path: &Path, families: &[&str], partitions: u16) -> Result<Self> {
        Self::open_logged(path, families, partitions, true)
    }

    /// Opens a store to rebuild from the log: like [`Self::open`], but its writes skip the WAL
    /// (a crash loses them all; the rebuild must then start again in a fresh directory). Call
    /// [`Self::finish_rebuild`] when the last write is done.
    pub fn open_for_rebuild(path: &Path, families: &[&str], partitions: u16) -> Result<Self> {
        Self::open_logged(path, families, partitions, false)
    }

    fn open_logged(path: &Path, families: &[&str], partitions: u16, logged: bool) -> Result<Self> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(DBCompressionType::Lz4);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        // All memtables together stay under this, so a service's memory is bounded (the soak
        // checks it).
        options.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let names: Arc<[String]> =
            std::iter::once(META).chain(families.iter().copied()).map(str::to_owned).collect();
        let descriptors = names
            .iter()
            .map(|name| {
                let mut family = Options::default();
                family.set_compression_type(DBCompressionType::Lz4);
                ColumnFamilyDescriptor::new(name, family)
            })
            .collect::<Vec<_>>();
        let db = DB::open_cf_descriptors(&options, path, descriptors)
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        let store = Self { db: Arc::new(db), path: path.to_owned(), logged, families: names };
        match store.get_raw(META, PARTITIONS_KEY)? {
            Some(bytes) => {
                let stored = <[u8; 2]>::try_from(bytes.as_slice()).map(u16::from_be_bytes).map_err(|_| {
                    StoreError::Corrupt {
                        family: META.into(),
                        reason: "partition count is not 2 bytes".into(),
                    }
                })?;
                if stored != partitions {
                    return Err(StoreError::PartitionMismatch {
                        path: path.to_owned(),
                        stored,
                        asked: partitions,
                    });
                }
            }
            None => {
                let mut batch = store.batch();
                batch.put_raw(META, PARTITIONS_KEY, &partitions.to_be_bytes())?;
                batch.commit()?;
            }
        }
        tracing::debug!(path = %path.display(), logged, "store open");
        Ok(store)
    }

    /// Opens an existing store for reading only (no lock: works beside the service that owns
    /// it, seeing the store as it was when opened). Every family that exists is opened.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let options = Options::default();
        let families = DB::list_cf(&options, path)
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        let db = DB::open_cf_for_read_only(&options, path, &families, false)
            .map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
        let families = families.into();
        Ok(Self { db: Arc::new(db), path: path.to_owned(), logged: true, families })
    }

    /// Ends a rebuild (see [`Self::open_for_rebuild`]): flushes every family's memtable to SST
    /// files and waits for it, so the store holds everything written without a WAL.
    pub fn finish_rebuild(&self) -> Result<()> {
        let mut options = FlushOptions::default();
        options.set_wait(true);
        let handles = self.families.iter().map(|name| self.family(name)).collect::<Result<Vec<_>>>()?;
        self.db.flush_cfs_opt(&handles, &options)?;
        tracing::debug!(path = %self.path.display(), "rebuilt store flushed");
        Ok(())
    }

    /// Whether the store has a family called `name`.
    pub fn has_family(&self, name: &str) -> bool {
        self.db.cf_handle(name).is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many deletes (tombstones) `family`'s active memtable holds: what a batch wrote of
    /// them before a flush (RocksDB's `num-deletes-active-mem-table`).
    pub fn deletes_in_memtable(&self, family: &str) -> Result<u64> {
        Ok(self
            .db
            .property_int_value_cf(self.family(family)?, "rocksdb.num-deletes-active-mem-table")?
            .unwrap_or(0))
    }

    fn family(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::NoColumnFamily(name.to_owned()))
    }

    /// The next offset of `partition` the consumer needs (0 when nothing was applied).
    pub fn checkpoint(&self, partition: u16) -> Result<u64> {
        match self.get_raw(META, &checkpoint_key(partition))? {
            None => Ok(0),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice()).map(u64::from_be_bytes).map_err(|_| {
                StoreError::Corrupt {
                    family: META.into(),
                    reason: format!("checkpoint of partition {partition}"),
                }
            }),
        }
    }

    /// The raw bytes under `key`.
    pub fn get_raw(&self, family: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let handle = self.family(family)?;
        Ok(self.db.get_cf(handle, key)?)
    }

    /// The value under `key`, decoded.
    pub fn get<T: DeserializeOwned>(&self, family: &str, key: &[u8]) -> Result<Option<T>> {
        self.get_raw(family, key)?.map(|bytes| decode(family, &bytes)).transpose()
    }

    /// Up to `limit` entries of `family` whose key starts with `prefix`, from `start` (inclusive;
    /// must itself start with `prefix`) on, decoded.
    pub fn scan<T: DeserializeOwned>(
        &self,
        family: &str,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>> {
        let mut entries = Vec::new();
        self.visit(family, prefix, start, |key, value| {
            entries.push((key.to_vec(), decode(family, value)?));
            Ok(entries.len() < limit)
        })?;
        Ok(entries)
    }

    /// Calls `visit(key, raw value)` for each entry of `family` with key prefix `prefix`, from
    /// `start` on, while it returns `Ok(true)`.
    pub fn visit(
        &self,
        family: &str,
        prefix: &[u8],
        start: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let handle = self.family(family)?;
        let from = if start < prefix { prefix } else { start };
        for entry in self.db.iterator_cf(handle, IteratorMode::From(from, Direction::Forward)) {
            let (key, value) = entry?;
            if !key.starts_with(prefix) || !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }

    /// Like [`Self::visit`], but starting at the entry **at or before** `start` when one has the
    /// prefix (else at the first entry with the prefix): for keys that name the first of a range
    /// of items, so that the range holding `start` is visited too.
    pub fn visit_from_floor(
        &self,
        family: &str,
        prefix: &[u8],
        start: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let handle = self.family(family)?;
        let mut entries = self.db.raw_iterator_cf(handle);
        entries.seek_for_prev(start);
        if !entries.key().is_some_and(|key| key.starts_with(prefix)) {
            entries.seek(prefix);
        }
        while let (Some(key), Some(value)) = (entries.key(), entries.value()) {
            if !key.starts_with(prefix) || !visit(key, value)? {
                return Ok(());
            }
            entries.next();
        }
        entries.status()?;
        Ok(())
    }

    /// Every entry of `family` in key order, raw, as an iterator (for comparing two stores
    /// side by side).
    pub fn entries(&self, family: &str) -> Result<impl Iterator<Item = Result<RawEntry>> + '_> {
        let handle = self.family(family)?;
        Ok(self.db.iterator_cf(handle, IteratorMode::Start).map(|entry| entry.map_err(StoreError::from)))
    }

    /// The last key of `family` (`None`: the family is empty).
    pub fn last_key(&self, family: &str) -> Result<Option<Vec<u8>>> {
        let handle = self.family(family)?;
        match self.db.iterator_cf(handle, IteratorMode::End).next() {
            Some(entry) => Ok(Some(entry?.0.to_vec())),
            None => Ok(None),
        }
    }

    /// The first key at which `family` differs between this store and `other` (a key only one
    /// side has, or a key whose values differ), in key order; `None`: identical.
    pub fn first_difference(&self, other: &Store, family: &str) -> Result<Option<Vec<u8>>> {
        let mine = self.db.iterator_cf(self.family(family)?, IteratorMode::Start);
        let theirs = other.db.iterator_cf(other.family(family)?, IteratorMode::Start);
        let mut mine = mine.peekable();
        let mut theirs = theirs.peekable();
        loop {
            match (mine.next().transpose()?, theirs.next().transpose()?) {
                (None, None) => return Ok(None),
                (Some((key, _)), None) | (None, Some((key, _))) => return Ok(Some(key.to_vec())),
                (Some((key_a, value_a)), Some((key_b, value_b))) => {
                    if key_a != key_b {
                        return Ok(Some(key_a.min(key_b).to_vec()));
                    }
                    if value_a != value_b {
                        return Ok(Some(key_a.to_vec()));
                    }
                }
            }
        }
    }

    /// A new batch of writes.
    pub fn batch(&self) -> Batch<'_> {
        Batch { store: self, batch: WriteBatch::default() }
    }
}

/// Writes that land together or not at all.
pub struct Batch<'a> {
    store: &'a Store,
    batch: WriteBatch,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("writes", &self.batch.len()).finish()
    }
}

impl Batch<'_> {
    pub fn put<T: Serialize>(&mut self, family: &str, key: &[u8], value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.put_raw(family, key, &bytes)
    }

    pub fn put_raw(&mut self, family: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let handle = self.store.family(family)?;
        self.batch.put_cf(handle, key, value);
        Ok(())
    }

    pub fn delete(&mut self, family: &str, key: &[u8]) -> Result<()> {
        let handle = self.store.family(family)?;
        self.batch.delete_cf(handle, key);
        Ok(())
    }

    /// Moves `partition`'s checkpoint to `next_offset` with the rest of the batch.
    pub fn set_checkpoint(&mut self, partition: u16, next_offset: u64) -> Result<()> {
        self.put_raw(META, &checkpoint_key(partition), &next_offset.to_be_bytes())
    }

    /// Writes the batch atomically (to the WAL, without fsync; not to the WAL in a store being
    /// rebuilt).
    pub fn commit(self) -> Result<()> {
        if self.store.logged {
            self.store.db.write(self.batch)?;
        } else {
            let mut options = WriteOptions::default();
            options.disable_wal(true);
            self.store.db.write_opt(self.batch, &options)?;
        }
        Ok(())
    }
}

fn checkpoint_key(partition: u16) -> Vec<u8> {
    let mut key = b"checkpoint/".to_vec();
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// `[format][postcard]`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = vec![FORMAT];
    postcard::to_io(value, &mut bytes).map_err(StoreError::Encode)?;
    Ok(bytes)
}

/// The inverse of [`encode`]; `family` names where the bytes came from in the error.
pub fn decode<T: DeserializeOwned>(family: &str, bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&FORMAT, body)) => postcard::from_bytes(body)
            .map_err(|error| StoreError::Corrupt { family: family.to_owned(), reason: error.to_string() }),
        Some((format, _)) => Err(StoreError::Corrupt {
            family: family.to_owned(),
            reason: format!("unknown value format {format}"),
        }),
        None => Err(StoreError::Corrupt { family: family.to_owned(), reason: "empty value".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_lands_with_its_checkpoint_and_survives_reopen() -> Result<()> {
        let dir = tempfile::tempdir()
            .map_err(|error| StoreError::Corrupt { family: "test".into(), reason: error.to_string() })?;
        {
            let store = Store::open(dir.path(), &["things"], 4)?;
            assert_eq!(store.last_key("things")?, None);
            assert_eq!(store.checkpoint(2)?, 0);
            let mut batch = store.batch();
            batch.put("things", b"a/1", &("one".to_owned(), 1u32))?;
            batch.put("things", b"a/2", &("two".to_owned(), 2u32))?;
            batch.put("things", b"b/1", &("other".to_owned(), 3u32))?;
            batch.set_checkpoint(2, 17)?;
            batch.commit()?;
        }
        let store = Store::open(dir.path(), &["things"], 4)?;
        assert_eq!(store.checkpoint(2)?, 17);
        assert_eq!(store.checkpoint(1)?, 0);
        let a: Vec<(Vec<u8>, (String, u32))> = store.scan("things", b"a/", b"", 10)?;
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].1, ("two".to_owned(), 2));
        let from_second: Vec<(Vec<u8>, (String, u32))> = store.scan("things", b"a/", b"a/2", 10)?;
        assert_eq!(from_second.len(), 1);
        assert_eq!(store.last_key("things")?, Some(b"b/1".to_vec()));
        // Compared with a read-only copy of itself: identical; then one value changed.
        let copy = Store::open_read_only(dir.path())?;
        assert!(copy.has_family("things") && !copy.has_family("nothing"));
        assert_eq!(store.first_difference(&copy, "things")?, None);
        let mut batch = store.batch();
        batch.put("things", b"a/2", &("TWO".to_owned(), 2u32))?;
        batch.commit()?;
        assert_eq!(
            store.first_difference(&copy, "things")?,
            Some(b"a/2".to_vec()),
            "the copy saw the store as opened"
        );
        let mut batch = store.batch();
        batch.put("things", b"a/2", &("two".to_owned(), 2u32))?;
        batch.put("things", b"a/3", &("three".to_owned(), 3u32))?;
        batch.commit()?;
        assert_eq!(
            store.first_difference(&copy, "things")?,
            Some(b"a/3".to_vec()),
            "a key only one side has"
        );
        drop(copy);
        assert_eq!(store.last_key(META)?, Some(b"partitions".to_vec()), "checkpoint/… sorts first");
        drop(store);
        assert!(matches!(
            Store::open(dir.path(), &["things"], 8),
            Err(StoreError::PartitionMismatch { stored: 4, .. })
        ));
        Ok(())
    }

    #[test]
    fn a_rebuilt_store_holds_its_writes_once_finished_and_floors_find_the_range_holding_a_key() -> Result<()>
    {
        let dir = tempfile::tempdir()
            .map_err(|error| StoreError::Corrupt { family: "test".into(), reason: error.to_string() })?;
        {
            let store = Store::open_for_rebuild(dir.path(), &["ranges"], 2)?;
            let mut batch = store.batch();
            for (key, first) in [(&b"a/10"[..], 10u32), (b"a/20", 20), (b"b/05", 5)] {
                batch.put("ranges", key, &first)?;
            }
            batch.set_checkpoint(1, 9)?;
            batch.commit()?;
            // A read-only view sees the files only: nothing yet (no WAL to replay), then all.
            assert_eq!(Store::open_read_only(dir.path())?.checkpoint(1)?, 0, "written without a WAL");
            store.finish_rebuild()?;
            assert_eq!(Store::open_read_only(dir.path())?.checkpoint(1)?, 9, "flushed by finish_rebuild");
        }
        let store = Store::open(dir.path(), &["ranges"], 2)?;
        assert_eq!(store.checkpoint(1)?, 9);
        let from = |prefix: &[u8], start: &[u8]| -> Result<Vec<Vec<u8>>> {
            let mut keys = Vec::new();
            store.visit_from_floor("ranges", prefix, start, |key, _| {
                keys.push(key.to_vec());
                Ok(true)
            })?;
            Ok(keys)
        };
        assert_eq!(from(b"a/", b"a/15")?, [b"a/10".to_vec(), b"a/20".to_vec()], "the range holding 15");
        assert_eq!(from(b"a/", b"a/20")?, [b"a/20".to_vec()]);
        assert_eq!(from(b"a/", b"a/99")?, [b"a/20".to_vec()]);
        assert_eq!(from(b"a/", b"a/01")?, [b"a/10".to_vec(), b"a/20".to_vec()], "before the first");
        assert_eq!(from(b"b/", b"b/01")?, [b"b/05".to_vec()], "another prefix's floor is not taken");
        assert_eq!(from(b"c/", b"c/01")?, Vec::<Vec<u8>>::new());
        let keys = store
            .entries("ranges")?
            .map(|entry| entry.map(|(key, _)| key.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        assert_eq!(keys.len(), 3);
        Ok(())
    }

    #[test]
    fn corrupt_values_are_errors() {
        assert!(matches!(decode::<u32>("x", &[]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode::<u32>("x", &[9, 1]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode::<String>("x", &[1, 200]), Err(StoreError::Corrupt { .. })));
    }
}
