//! How a log is opened: where, how many partitions, how durable, how big a group commit.

use std::path::PathBuf;

use covenant_domain::Span;
use serde::{Deserialize, Serialize};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After the write reached RocksDB's WAL in the OS page cache (no fsync): survives a process
    /// crash, not a power loss.
    Buffered,
    /// After the group commit's WAL write was fsynced (the default).
    #[default]
    Fsync,
    /// As `Fsync`, and after the events were acknowledged by JetStream (needs the relay).
    Replicated,
}

/// Partition count of a new log when none is given.
pub const DEFAULT_PARTITIONS: u16 = 8;

/// Events between two stored decision states of a stream when none is given: a state not in
/// memory is then folded from at most 31 events, and a command rewrites its customer's state
/// once in 32 instead of every time (the state grows with the customer's history).
pub const DEFAULT_HEAD_SNAPSHOT_EVERY: u64 = 32;

fn default_snapshot_every() -> u64 {
    DEFAULT_HEAD_SNAPSHOT_EVERY
}

/// Options for [`crate::EventLog::open`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Directory of the RocksDB database.
    pub path: PathBuf,
    /// Partition count. `None` opens an existing log with its stored count, or creates one
    /// with [`DEFAULT_PARTITIONS`]; `Some(p)` must match the stored count.
    pub partitions: Option<u16>,
    pub durability: Durability,
    /// Most commands one group commit takes.
    pub max_batch: usize,
    /// Writer threads; partition `p` belongs to writer `p % writers`. `None`: one per two
    /// available cores (at least one), never more than the partition count.
    pub writers: Option<usize>,
    /// Most customer decision states each writer keeps in memory, per partition it owns.
    pub state_cache_per_partition: usize,
    /// A customer's decision state is stored (`streams`) every this many events of their
    /// stream; a state not in memory is loaded from the last one and the events after it.
    #[serde(default = "default_snapshot_every")]
    pub head_snapshot_every: u64,
    /// How long command outcomes are kept for idempotent retries; `None` keeps them forever.
    pub command_retention: Option<Span>,
    /// The master key that wraps the customers' data keys (`crate::sealing`); `None`:
    /// `master.key` beside the database directory. Created with a new log.
    pub master_key: Option<PathBuf>,
}

impl LogConfig {
    /// Defaults for a log at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            partitions: None,
            durability: Durability::Fsync,
            max_batch: 1024,
            writers: None,
            state_cache_per_partition: 100_000,
            head_snapshot_every: DEFAULT_HEAD_SNAPSHOT_EVERY,
            command_retention: None,
            master_key: None,
        }
    }

    /// The number of writer threads to start (before capping at the partition count).
    pub fn writer_count(&self) -> usize {
        match self.writers {
            Some(writers) => writers.max(1),
            None => (crate::available_cores() / 2).max(1),
        }
    }

    /// The same config with `partitions` set.
    pub fn with_partitions(mut self, partitions: u16) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Where the master key is (or will be created).
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key.clone().unwrap_or_else(|| crate::sealing::default_master_key_path(&self.path))
    }

    /// The same config with `durability` set.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}
