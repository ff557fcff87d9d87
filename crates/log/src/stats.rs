//! What the write path did: group commits, the commands in them, WAL fsyncs and the time the
//! writer and the sync stage spent. They answer the first question about append throughput:
//! do appends wait for the disk (fsyncs back to back) or for the writer (the writer busy all the
//! time, the sync stage idle)?
//!
//! Kept as counters ([`EventLog::write_stats`](crate::EventLog::write_stats), for benchmarks and
//! tests) and recorded through the `metrics` facade for a service that installs an exporter:
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `covenant_log_group_commit_commands` | histogram | commands decided in one group commit |
//! | `covenant_log_group_commit_seconds` | histogram | the writer's time for one group commit (decide, encode, RocksDB write) |
//! | `covenant_log_fsync_seconds` | histogram | one WAL fsync of the sync stage (`fsync` and `replicated` durability) |
//! | `covenant_log_fsync_commands` | histogram | commands answered after one fsync |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The counters, shared by the writers and sync stages of one log.
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    group_commits: AtomicU64,
    commands: AtomicU64,
    writer_busy_nanos: AtomicU64,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    synced_commands: AtomicU64,
}

impl WriteCounters {
    /// One group commit of `commands` commands that took the writer `busy`.
    pub(crate) fn group_commit(&self, commands: usize, busy: Duration) {
        self.group_commits.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
        self.writer_busy_nanos.fetch_add(nanos(busy), Ordering::Relaxed);
        metrics::histogram!("covenant_log_group_commit_commands").record(commands as f64);
        metrics::histogram!("covenant_log_group_commit_seconds").record(busy.as_secs_f64());
    }

    /// One WAL fsync that took `took` and answered `commands` commands.
    pub(crate) fn fsync(&self, commands: usize, took: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos.fetch_add(nanos(took), Ordering::Relaxed);
        self.synced_commands.fetch_add(commands as u64, Ordering::Relaxed);
        metrics::histogram!("covenant_log_fsync_seconds").record(took.as_secs_f64());
        metrics::histogram!("covenant_log_fsync_commands").record(commands as f64);
    }

    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            group_commits: self.group_commits.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            writer_busy: Duration::from_nanos(self.writer_busy_nanos.load(Ordering::Relaxed)),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            fsync_time: Duration::from_nanos(self.fsync_nanos.load(Ordering::Relaxed)),
            synced_commands: self.synced_commands.load(Ordering::Relaxed),
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Totals of the write path since the log was opened (all writers together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Group commits (loop turns of the writers that had commands).
    pub group_commits: u64,
    /// Commands decided in them (appended, retried or refused).
    pub commands: u64,
    /// The writers' time in group commits.
    pub writer_busy: Duration,
    /// WAL fsyncs of the sync stages (none in `buffered` mode).
    pub fsyncs: u64,
    /// Time in those fsyncs.
    pub fsync_time: Duration,
    /// Commands answered after them.
    pub synced_commands: u64,
}

impl WriteStats {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &WriteStats) -> WriteStats {
        WriteStats {
            group_commits: self.group_commits.saturating_sub(earlier.group_commits),
            commands: self.commands.saturating_sub(earlier.commands),
            writer_busy: self.writer_busy.saturating_sub(earlier.writer_busy),
            fsyncs: self.fsyncs.saturating_sub(earlier.fsyncs),
            fsync_time: self.fsync_time.saturating_sub(earlier.fsync_time),
            synced_commands: self.synced_commands.saturating_sub(earlier.synced_commands),
        }
    }

    /// Both totals together (e.g. of several runs).
    pub fn plus(&self, other: &WriteStats) -> WriteStats {
        WriteStats {
            group_commits: self.group_commits.saturating_add(other.group_commits),
            commands: self.commands.saturating_add(other.commands),
            writer_busy: self.writer_busy.saturating_add(other.writer_busy),
            fsyncs: self.fsyncs.saturating_add(other.fsyncs),
            fsync_time: self.fsync_time.saturating_add(other.fsync_time),
            synced_commands: self.synced_commands.saturating_add(other.synced_commands),
        }
    }

    /// Mean commands per fsync (0 without fsyncs).
    pub fn commands_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 { 0.0 } else { self.synced_commands as f64 / self.fsyncs as f64 }
    }

    /// Mean duration of one fsync (zero without fsyncs).
    pub fn mean_fsync(&self) -> Duration {
        mean(self.fsync_time, self.fsyncs)
    }

    /// The writers' mean time per command (zero without commands).
    pub fn writer_time_per_command(&self) -> Duration {
        mean(self.writer_busy, self.commands)
    }
}

/// `total / count`, zero when `count` is.
fn mean(total: Duration, count: u64) -> Duration {
    match total.as_nanos().checked_div(u128::from(count)) {
        Some(nanos) => Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_differences_are_per_interval() {
        let counters = WriteCounters::default();
        counters.group_commit(3, Duration::from_micros(30));
        let earlier = counters.snapshot();
        counters.group_commit(5, Duration::from_micros(50));
        counters.fsync(8, Duration::from_micros(400));
        counters.fsync(2, Duration::from_micros(200));
        let now = counters.snapshot();
        assert_eq!(now.group_commits, 2);
        assert_eq!(now.commands, 8);
        let interval = now.since(&earlier);
        assert_eq!(interval.group_commits, 1);
        assert_eq!(interval.commands, 5);
        assert_eq!(interval.writer_busy, Duration::from_micros(50));
        assert_eq!(interval.writer_time_per_command(), Duration::from_micros(10));
        assert_eq!(interval.fsyncs, 2);
        assert_eq!(interval.commands_per_fsync(), 5.0);
        assert_eq!(interval.mean_fsync(), Duration::from_micros(300));
        assert_eq!(interval.plus(&earlier).commands, 8);
        assert_eq!(WriteStats::default().mean_fsync(), Duration::ZERO);
        assert_eq!(WriteStats::default().commands_per_fsync(), 0.0);
    }
}
