//! The newest records of one partition, kept in memory as the writer wrote them, so that a
//! [`crate::Tail`] that keeps up (the relay under load) reads what was just committed without a
//! RocksDB read on the blocking pool — a hand-off to another thread and back for every few
//! records.
//!
//! The writer puts a group commit's records here once RocksDB has taken the batch, before the
//! batch is synced and its offsets are published as committed; a tail reads only offsets below
//! the committed one, which are durable and never written again. A batch whose sync fails may
//! leave records here for offsets that a reopened database does not hold: those are above the
//! committed offset, so no tail reads them, and the writer clears its partitions' records when it
//! reloads from a reopened database (and a record put at an offset drops the ones at and after it).

use std::collections::VecDeque;
use std::sync::Mutex;

/// Records kept per partition: about 2,048 × 250 bytes, half a megabyte.
pub(crate) const RECENT_RECORDS: usize = 2048;

/// The newest records of one partition: `records[i]` is the stored value at `first + i`.
#[derive(Debug)]
pub(crate) struct RecentRecords {
    kept: Mutex<Kept>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Kept {
    first: u64,
    records: VecDeque<Vec<u8>>,
}

impl Kept {
    /// Appends the record at `offset`, dropping what it replaces and the oldest records beyond
    /// `capacity`.
    fn put(&mut self, offset: u64, value: Vec<u8>, capacity: usize) {
        let end = self.first + self.records.len() as u64;
        if self.records.is_empty() || offset < self.first || offset > end {
            self.records.clear();
            self.first = offset;
        } else if offset < end {
            let keep = usize::try_from(offset - self.first).unwrap_or(usize::MAX);
            self.records.truncate(keep);
        }
        self.records.push_back(value);
        while self.records.len() > capacity {
            self.records.pop_front();
            self.first += 1;
        }
    }
}

impl RecentRecords {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { kept: Mutex::new(Kept::default()), capacity: capacity.max(1) }
    }

    /// Keeps the record written at `offset`. Records are put in offset order; a record at an
    /// offset already kept (written again after a reopen) drops that one and every later one,
    /// and one after a gap starts over.
    #[cfg(test)]
    pub(crate) fn put(&self, offset: u64, value: Vec<u8>) {
        self.put_all([(offset, value)]);
    }

    /// Keeps each `(offset, record)` as `put` does, under one lock: a group commit's records of
    /// this partition, in offset order.
    pub(crate) fn put_all(&self, records: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        let mut kept = self.lock();
        for (offset, value) in records {
            kept.put(offset, value, self.capacity);
        }
    }

    /// Copies of the records at offsets `from..to`, when every one of them is kept.
    pub(crate) fn read(&self, from: u64, to: u64) -> Option<Vec<Vec<u8>>> {
        let kept = self.lock();
        let end = kept.first + kept.records.len() as u64;
        if from < kept.first || to > end || from >= to {
            return None;
        }
        let skip = usize::try_from(from - kept.first).ok()?;
        let take = usize::try_from(to - from).ok()?;
        Some(kept.records.iter().skip(skip).take(take).cloned().collect())
    }

    /// Forgets every record (the database was reopened).
    pub(crate) fn clear(&self) {
        let mut kept = self.lock();
        kept.records.clear();
        kept.first = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // The data stays consistent even if a holder panicked (each method leaves it whole).
        self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64) -> Vec<u8> {
        offset.to_be_bytes().to_vec()
    }

    #[test]
    fn keeps_the_newest_records_and_reads_only_whole_ranges() {
        let recent = RecentRecords::new(4);
        assert_eq!(recent.read(0, 1), None);
        for offset in 10..16 {
            recent.put(offset, record(offset));
        }
        // 12..16 kept.
        assert_eq!(recent.read(12, 16), Some((12..16).map(record).collect()));
        assert_eq!(recent.read(13, 15), Some(vec![record(13), record(14)]));
        assert_eq!(recent.read(11, 14), None, "11 was dropped");
        assert_eq!(recent.read(14, 17), None, "16 is not written yet");
        assert_eq!(recent.read(14, 14), None);
    }

    #[test]
    fn a_run_put_at_once_is_kept_as_the_same_puts_one_by_one() {
        let runs: [&[u64]; 4] = [&[0, 1, 2], &[3, 4, 5, 6, 7], &[6, 7], &[20, 21]];
        let (at_once, one_by_one) = (RecentRecords::new(4), RecentRecords::new(4));
        for run in runs {
            at_once.put_all(run.iter().map(|&offset| (offset, record(offset))));
            for &offset in run {
                one_by_one.put(offset, record(offset));
            }
            for from in 0..22 {
                for to in from..23 {
                    assert_eq!(
                        at_once.read(from, to),
                        one_by_one.read(from, to),
                        "{from}..{to} after {run:?}"
                    );
                }
            }
        }
        assert_eq!(at_once.read(20, 22), Some(vec![record(20), record(21)]));
        assert_eq!(at_once.read(4, 8), None, "a gap started over");
    }

    #[test]
    fn a_record_written_again_drops_it_and_the_later_ones() {
        let recent = RecentRecords::new(8);
        for offset in 0..6 {
            recent.put(offset, record(offset));
        }
        recent.put(3, vec![0xAA]);
        assert_eq!(recent.read(0, 4), Some(vec![record(0), record(1), record(2), vec![0xAA]]));
        assert_eq!(recent.read(0, 5), None, "4 and 5 were written before the rewrite of 3");
        // A gap or an offset before the first starts over.
        recent.put(9, record(9));
        assert_eq!((recent.read(0, 1), recent.read(9, 10)), (None, Some(vec![record(9)])));
        recent.put(2, record(2));
        assert_eq!((recent.read(9, 10), recent.read(2, 3)), (None, Some(vec![record(2)])));
        recent.clear();
        assert_eq!(recent.read(2, 3), None);
    }
}
