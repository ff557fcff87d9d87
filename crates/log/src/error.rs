//! Errors of the event log. Each says what happened and, for corruption, where.

use covenant_domain::{DomainError, Position};
use thiserror::Error;

/// Result type of the log.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// What can go wrong appending to, reading or maintaining the log.
#[derive(Debug, Error)]
pub enum LogError {
    /// The domain refused the command (bad field, missing thing, illegal transition).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// `expected_version` did not match the stream.
    #[error(
        "version conflict on customer {customer_id}: expected version {expected}, current version is {current}"
    )]
    VersionConflict { customer_id: String, expected: u64, current: u64 },
    /// A `command_id` was reused for a different command.
    #[error("command_id {command_id} was already used for a different command on customer {customer_id}")]
    CommandIdReused { customer_id: String, command_id: String },
    /// The log was created with another partition count.
    #[error(
        "the log at {path} has {stored} partitions, but {requested} were asked for: the partition count is fixed when a log is created"
    )]
    PartitionCountMismatch { path: String, stored: u16, requested: u16 },
    /// A partition number outside `0..partition_count`.
    #[error(
        "partition {partition} does not exist: the log has {partition_count} partitions (0..{partition_count})"
    )]
    NoSuchPartition { partition: u16, partition_count: u16 },
    /// Bad configuration.
    #[error("invalid log configuration: {0}")]
    Config(String),
    /// A stored value does not decode or does not match its hash.
    #[error("corrupt record at partition {} offset {}: {reason}", position.partition, position.offset)]
    Corrupt { position: Position, reason: String },
    /// Stored metadata (stream heads, command outcomes, meta keys) does not decode.
    #[error("corrupt {what}: {reason}")]
    CorruptMetadata { what: String, reason: String },
    /// RocksDB failed (disk full, read-only, lock held by another process, …).
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// A filesystem operation outside RocksDB failed.
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    /// The disk under the log refuses writes (full, read-only, failing), or a storage failure
    /// left a command unconfirmed. Commands are refused until a probe of the disk succeeds and the
    /// database is reopened; nothing of a refused command is in the log unless a retry finds it
    /// (a retry with the same command id is answered exactly once).
    #[error(
        "the event log cannot write to its disk at {path}: {problem}. Commands are refused until the disk accepts writes again; retrying with the same command id is safe"
    )]
    Unwritable { path: String, problem: String },
    /// The log is shutting down or its writer stopped.
    #[error("the event log is closed")]
    Closed,
    /// Personal data could not be sealed or opened (a wrong master key, a tampered value).
    #[error("personal data: {0}")]
    Sealing(String),
    /// Replicated durability was asked for but no replication is attached.
    #[error("replicated durability needs the NATS relay, which is not attached")]
    ReplicationUnavailable,
    /// The replication layer failed to confirm the append.
    #[error("replication failed: {0}")]
    Replication(String),
}

impl LogError {
    /// True for errors of the infrastructure (disk, lock, closed), which a caller may retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            LogError::Storage(_)
                | LogError::Unwritable { .. }
                | LogError::Io { .. }
                | LogError::Closed
                | LogError::ReplicationUnavailable
                | LogError::Replication(_)
        )
    }
}
