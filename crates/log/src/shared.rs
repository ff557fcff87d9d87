//! The database behind an open log, and how the log gets it back after disk trouble.
//!
//! RocksDB stops taking writes after a failed WAL write, WAL sync or flush, and on its own it
//! does not come back in the cases that matter (measured with RocksDB 11.8 on a small tmpfs):
//! a full disk fails the WAL append with `No space left on device`, every later write then fails
//! with `Writer has previous error`, and RocksDB's own no-space recovery waits until the free
//! space reaches its reserved buffer (the write buffer size, 64 MiB), so on a smaller disk it
//! never resumes; a read-only file system fails the next new file (WAL or table at a flush) and
//! stops the database for good (no automatic recovery). The rust crate exposes no `DB::Resume`.
//!
//! So the log recovers by itself, in a controlled way:
//!
//! 1. a failed write, sync or flush records the *trouble*, in words ("the disk is full (…)");
//! 2. from then on writers refuse their commands with [`LogError::Unwritable`] without deciding
//!    them, and at most every [`PROBE_INTERVAL`] one of them probes the disk: create a file in
//!    the database directory, write [`PROBE_BYTES`], fsync, delete it;
//! 3. once a probe succeeds the database is reopened: the slot is emptied (new reads wait), the
//!    operations still using the old database finish, it is closed and opened again (RocksDB
//!    replays its WAL: what was written before the failure stays, a torn last record is dropped)
//!    and flushed, so everything it holds is in fsynced table files; the generation goes up;
//! 4. a writer that sees a new generation reloads its chain heads from the records and forgets
//!    its cached stream heads and data keys before it decides anything, and the sync stage never
//!    confirms a batch written to an older generation (its callers retry with the same command
//!    id: the stored outcome answers if the batch survived, the command appends if it did not).
//!
//! Nothing here runs on an async worker: writers and the sync stage are plain threads, reads
//! run under `spawn_blocking`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::store::Store;

/// Most one probe of a troubled disk per this interval; commands in between are refused with
/// the last known problem.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// After a failed reopen, the next one waits this long.
const REOPEN_RETRY: Duration = Duration::from_secs(1);
/// How long a reopen waits for the operations still using the old database.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// How long a read waits for a reopen under way.
const READ_WAIT: Duration = Duration::from_secs(30);
/// What a probe writes: a little headroom for the reopen (a new WAL, MANIFEST and OPTIONS file).
pub(crate) const PROBE_BYTES: usize = 1 << 20;
/// The probe's file, in the database directory (RocksDB ignores names it does not own).
const PROBE_FILE: &str = "covenant-disk-probe.tmp";

/// A lock whose holder panicked still guards consistent data here (each critical section is a
/// few assignments), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Slot {
    /// `None` while a reopen is under way, or after one failed to open anything.
    store: Option<Arc<Store>>,
    reopening: bool,
    generation: u64,
}

/// The log's database, replaceable by a reopen; everyone takes the current one per operation
/// and never keeps it across operations.
pub(crate) struct SharedStore {
    path: PathBuf,
    partition_count: u16,
    /// How to open it again (`None`: a read-only handle, never reopened).
    config: Option<LogConfig>,
    slot: Mutex<Slot>,
    changed: Condvar,
    /// Set by a failed write, sync or flush, in words; cleared by a successful reopen.
    trouble: Mutex<Option<String>>,
    /// Serialises recoveries; when the next probe or reopen may run.
    next_attempt: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field("path", &self.path)
            .field("partition_count", &self.partition_count)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// Shares `store`; `config` (for a writable log) is how to reopen it.
    pub(crate) fn new(store: Store, config: Option<LogConfig>) -> Self {
        Self {
            path: store.path().to_owned(),
            partition_count: store.partition_count(),
            config,
            slot: Mutex::new(Slot { store: Some(Arc::new(store)), reopening: false, generation: 0 }),
            changed: Condvar::new(),
            trouble: Mutex::new(None),
            next_attempt: Mutex::new(None),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The partition count (fixed at creation, the same in every generation).
    pub(crate) fn partition_count(&self) -> u16 {
        self.partition_count
    }

    pub(crate) fn check_partition(&self, partition: u16) -> Result<()> {
        if partition >= self.partition_count {
            return Err(LogError::NoSuchPartition { partition, partition_count: self.partition_count });
        }
        Ok(())
    }

    /// The database for a read (or for anything that decides no command). Waits while a reopen
    /// is under way (at most [`READ_WAIT`]). Blocking.
    pub(crate) fn current(&self) -> Result<Arc<Store>> {
        let deadline = Instant::now() + READ_WAIT;
        let mut slot = lock(&self.slot);
        loop {
            if let Some(store) = &slot.store {
                return Ok(Arc::clone(store));
            }
            let now = Instant::now();
            if !slot.reopening || now >= deadline {
                let problem = lock(&self.trouble).clone().unwrap_or_else(|| "a storage failure".into());
                return Err(self.unwritable(format!(
                    "its database is closed after {problem} and could not be opened again yet"
                )));
            }
            slot = self.changed.wait_timeout(slot, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The database for a writer about to decide commands: refused with
    /// [`LogError::Unwritable`] while the disk is in trouble, when it also runs the recovery
    /// once it is due (probe, then reopen). Blocking.
    pub(crate) fn writable(&self) -> Result<Arc<Store>> {
        if lock(&self.trouble).is_some() {
            self.recover()?;
        }
        let store = self.current()?;
        if !store.writable() {
            return Err(self.unwritable("its database is open read-only after a failed reopen".into()));
        }
        Ok(store)
    }

    /// What is wrong with the disk, while the log is in disk trouble.
    pub(crate) fn trouble(&self) -> Option<String> {
        lock(&self.trouble).clone()
    }

    /// Records a failed write, sync or flush (`action`): writers refuse commands from now on
    /// until the recovery succeeds. Returns the error to answer the affected callers with.
    pub(crate) fn failed(&self, action: &str, error: &LogError) -> LogError {
        // The first cause is kept: what follows is often RocksDB's "Writer has previous error".
        if let Some(problem) = lock(&self.trouble).clone() {
            return self.unwritable(problem);
        }
        let detail = storage_detail(error);
        // RocksDB's words may be about an earlier failure (of another writer, of a flush): the
        // disk itself says what is wrong now.
        let found = match probe(&self.path) {
            Err(disk) => describe(&format!("{disk}; the database said: {detail}")),
            Ok(()) => describe(&detail),
        };
        let mut trouble = lock(&self.trouble);
        let problem = match &*trouble {
            Some(problem) => problem.clone(),
            None => {
                let problem = found;
                tracing::error!(
                    path = %self.path.display(),
                    action,
                    %problem,
                    "the event log's disk failed: commands are refused until it accepts writes again"
                );
                *trouble = Some(problem.clone());
                problem
            }
        };
        self.unwritable(problem)
    }

    /// The answer for a batch written to an older generation than the one that synced.
    pub(crate) fn reopened_before_sync(&self) -> LogError {
        self.unwritable(
            "a storage failure interrupted the command's write and the database was reopened before the write was confirmed durable"
                .into(),
        )
    }

    fn unwritable(&self, problem: String) -> LogError {
        LogError::Unwritable { path: self.path.display().to_string(), problem }
    }

    /// Probes the disk and, when it takes writes again, reopens the database. One at a time;
    /// at most one attempt per [`PROBE_INTERVAL`] (per [`REOPEN_RETRY`] after a failed reopen).
    fn recover(&self) -> Result<()> {
        let mut next_attempt = lock(&self.next_attempt);
        let Some(problem) = lock(&self.trouble).clone() else {
            return Ok(()); // another writer recovered while this one waited
        };
        let now = Instant::now();
        if next_attempt.is_some_and(|next| now < next) {
            return Err(self.unwritable(problem));
        }
        *next_attempt = Some(now + PROBE_INTERVAL);
        if let Err(error) = probe(&self.path) {
            let found = describe(&error.to_string());
            let mut trouble = lock(&self.trouble);
            if trouble.as_deref() != Some(found.as_str()) {
                tracing::warn!(path = %self.path.display(), problem = %found, "the event log's disk still refuses writes");
                *trouble = Some(found.clone());
            }
            return Err(self.unwritable(found));
        }
        let Some(config) = &self.config else {
            return Err(self.unwritable(problem));
        };
        tracing::warn!(path = %self.path.display(), %problem, "the disk takes writes again: reopening the event log's database");
        let started = Instant::now();
        match self.reopen(config) {
            Ok(generation) => {
                *lock(&self.trouble) = None;
                *next_attempt = None;
                tracing::warn!(
                    generation,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "the event log recovered from disk trouble: commands are accepted again"
                );
                Ok(())
            }
            Err(error) => {
                *next_attempt = Some(Instant::now() + REOPEN_RETRY);
                tracing::error!(%error, "reopening the event log's database failed; trying again later");
                let found = describe(&storage_detail(&error));
                *lock(&self.trouble) = Some(found.clone());
                Err(self.unwritable(found))
            }
        }
    }

    /// Closes the database once nobody uses it, opens it again and flushes it; returns the new
    /// generation. When the writable open fails, a read-only one keeps reads going.
    fn reopen(&self, config: &LogConfig) -> Result<u64> {
        let (old, generation) = {
            let mut slot = lock(&self.slot);
            slot.reopening = true;
            (slot.store.take(), slot.generation + 1)
        };
        if let Some(old) = old {
            let deadline = Instant::now() + DRAIN_WAIT;
            while Arc::strong_count(&old) > 1 {
                if Instant::now() >= deadline {
                    let mut slot = lock(&self.slot);
                    slot.store = Some(old);
                    slot.reopening = false;
                    self.changed.notify_all();
                    return Err(self.unwritable(format!(
                        "operations on the database did not finish within {} s, so it could not be reopened",
                        DRAIN_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // The last reference: RocksDB closes here (after its background work).
            drop(old);
        }
        let opened = Store::open(config).and_then(|store| {
            store.flush_all()?;
            Ok(store)
        });
        let (store, result) = match opened {
            Ok(mut store) => {
                store.set_generation(generation);
                (Some(store), Ok(generation))
            }
            Err(error) => {
                let fallback = Store::open_read_only_with_key(&config.path, &config.master_key_path());
                if let Err(fallback_error) = &fallback {
                    tracing::error!(error = %fallback_error, "opening the event log read-only failed too: reads fail until the next reopen");
                }
                (
                    fallback.ok().map(|mut store| {
                        store.set_generation(generation);
                        store
                    }),
                    Err(error),
                )
            }
        };
        let mut slot = lock(&self.slot);
        slot.store = store.map(Arc::new);
        slot.generation = generation;
        slot.reopening = false;
        self.changed.notify_all();
        result
    }
}

/// RocksDB's own words for a storage error, the log's for any other.
fn storage_detail(error: &LogError) -> String {
    match error {
        LogError::Storage(storage) => storage.as_ref().to_owned(),
        other => other.to_string(),
    }
}

/// A storage error in words a person understands first, the detail after.
fn describe(detail: &str) -> String {
    let lower = detail.to_ascii_lowercase();
    let what = if lower.contains("no space left") {
        "the disk is full"
    } else if lower.contains("read-only file system") {
        "the file system is read-only"
    } else if lower.contains("quota exceeded") {
        "the disk quota is exceeded"
    } else if lower.contains("permission denied") {
        "permission to write is denied"
    } else {
        "a storage error"
    };
    format!("{what} ({detail})")
}

/// Creates a file in `dir`, writes [`PROBE_BYTES`] to it, fsyncs and deletes it.
fn probe(dir: &Path) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut file| {
        for _ in 0..PROBE_BYTES / ZEROS.len() {
            file.write_all(&ZEROS)?;
        }
        file.sync_all()
    });
    let removed = match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    };
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn storage_errors_are_described_in_words_first() {
        assert!(
            describe("IO error: No space left on device: While appending to file: x/000004.log")
                .starts_with("the disk is full (IO error: No space left")
        );
        assert!(
            describe("Read-only file system (os error 30)").starts_with("the file system is read-only (")
        );
        assert!(describe("IO error: Writer has previous error.").starts_with("a storage error ("));
    }
}
