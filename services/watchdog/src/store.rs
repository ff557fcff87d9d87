//! The watchdog's own RocksDB: each customer's [`WatchState`], the pending deadlines in due
//! order, and which deadline each subject (a promise, a complaint's SLA target) currently has.
//! See [`crate::keys`] for the layouts.
//!
//! [`DeadlineStore`] is the consumer's [`EventSink`]: a batch of events is folded through the
//! domain's [`deadline_changes`] in an in-memory overlay (so several events of one customer or
//! subject in the batch see each other's effects), then written in **one** store batch together
//! with the partition's checkpoint. The scheduler removes settled deadlines through
//! [`DeadlineStore::remove`]; both writers hold one lock, so a removal never undoes a deadline
//! that an event moved meanwhile.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use covenant_bus::{EventSink, SinkError};
use covenant_domain::deadlines::{Deadline, DeadlineChange, SlaPolicy, WatchState, deadline_changes};
use covenant_domain::{CustomerId, RecordedEvent, Timestamp};
use covenant_store::{Store, StoreError};
use tokio::sync::Notify;

use crate::keys::{DEADLINES, FAMILIES, SUBJECTS, WATCH, deadline_key, instant_of, subject_key};

/// What can go wrong in the watchdog's store.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "partition {partition}: the events start at offset {first}, but the store needs offset {next} next"
    )]
    Gap { partition: u16, first: u64, next: u64 },
    #[error("the deadline store's write lock is poisoned (a writer panicked)")]
    Poisoned,
}

/// What one applied batch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events folded (events already applied are skipped and not counted).
    pub events: usize,
    /// Deadlines set or moved.
    pub set: usize,
    /// Deadlines removed because their subject needs none any more.
    pub cleared: usize,
}

/// Deadlines due now, from [`DeadlineStore::due`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueScan {
    /// Due deadlines (up to the asked limit) with their keys, earliest first.
    pub due: Vec<(Vec<u8>, Deadline)>,
    /// The due instant of the first deadline not yet due, when the scan got that far.
    pub next_due: Option<Timestamp>,
}

/// Where [`DeadlineStore::due`] starts scanning: no deadline is stored below it.
///
/// Settled and moved deadlines are deleted, and RocksDB keeps each deletion as a tombstone until
/// a flush and compaction; a scan from the first key stepped over every tombstone below the first
/// live deadline on every tick (under load, one per promise kept or expired since the last
/// flush: a few percent of the whole system's CPU in a profile of `covenant up`). A scan starts at
/// the first live deadline the previous scan found instead; a deadline stored below that lowers
/// the floor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum ScanFloor {
    /// Not known yet: scan from the first key.
    #[default]
    Start,
    /// The smallest key that may hold a deadline.
    At(Vec<u8>),
    /// No deadline is stored.
    Empty,
}

impl ScanFloor {
    /// A deadline was stored under `key`.
    fn lower_to(&mut self, key: &[u8]) {
        match self {
            ScanFloor::Start => {}
            ScanFloor::At(floor) if floor.as_slice() <= key => {}
            _ => *self = ScanFloor::At(key.to_vec()),
        }
    }
}

/// The watchdog's store (see the module docs).
#[derive(Debug)]
pub struct DeadlineStore {
    store: Store,
    policy: SlaPolicy,
    /// Serialises the read-modify-write cycles of [`Self::apply_events`] and [`Self::remove`]
    /// and the scans of [`Self::due`]; holds where those scans start.
    write: Mutex<ScanFloor>,
    /// Pending deadlines (one per subject entry).
    pending: AtomicI64,
    /// Woken whenever a batch set a deadline (it may be earlier than what the scheduler waits for).
    changed: Notify,
}

impl DeadlineStore {
    /// Opens (creating when missing) the store at `path` for a log of `partitions` partitions.
    pub fn open(path: &Path, partitions: u16, policy: SlaPolicy) -> Result<Self, WatchdogError> {
        Self::with_store(Store::open(path, FAMILIES, partitions)?, path, policy)
    }

    /// Opens a fresh directory to rebuild the deadlines into from the log: writes skip the WAL
    /// (`covenant_store::Store::open_for_rebuild`); call [`Self::finish_rebuild`] after the last
    /// chunk, before anything else opens the directory.
    pub fn open_for_rebuild(path: &Path, partitions: u16, policy: SlaPolicy) -> Result<Self, WatchdogError> {
        Self::with_store(Store::open_for_rebuild(path, FAMILIES, partitions)?, path, policy)
    }

    /// Makes a rebuild's writes durable (see [`Self::open_for_rebuild`]).
    pub fn finish_rebuild(&self) -> Result<(), WatchdogError> {
        Ok(self.store.finish_rebuild()?)
    }

    fn with_store(store: Store, path: &Path, policy: SlaPolicy) -> Result<Self, WatchdogError> {
        let mut pending = 0i64;
        store.visit(SUBJECTS, b"", b"", |_, _| {
            pending += 1;
            Ok(true)
        })?;
        tracing::info!(path = %path.display(), pending, "deadline store open");
        metrics::gauge!("covenant_watchdog_deadlines").set(pending as f64);
        Ok(Self {
            store,
            policy,
            write: Mutex::new(ScanFloor::Start),
            pending: AtomicI64::new(pending),
            changed: Notify::new(),
        })
    }

    /// Pending deadlines.
    pub fn pending(&self) -> i64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Notified whenever an applied batch set or moved a deadline.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// The next offset of `partition` to apply.
    pub fn checkpoint(&self, partition: u16) -> Result<u64, WatchdogError> {
        Ok(self.store.checkpoint(partition)?)
    }

    /// The current deadline of the subject `subject_key` (see [`crate::keys::subject_key`]).
    pub fn deadline_of(&self, subject_key: &[u8]) -> Result<Option<Deadline>, WatchdogError> {
        match self.store.get_raw(SUBJECTS, subject_key)? {
            Some(key) => Ok(self.store.get(DEADLINES, &key)?),
            None => Ok(None),
        }
    }

    /// Up to `limit` deadlines due before `now` (strictly: a promise expires only once
    /// `due_at + grace` has passed), earliest first, leaving out the keys in `skip`.
    pub fn due(
        &self,
        now: Timestamp,
        limit: usize,
        skip: &HashSet<Vec<u8>>,
    ) -> Result<DueScan, WatchdogError> {
        let mut scan = DueScan::default();
        if limit == 0 {
            return Ok(scan);
        }
        // Under the write lock: no deadline is stored below the floor while it is moved up.
        let mut floor = self.write.lock().map_err(|_| WatchdogError::Poisoned)?;
        let start = match &*floor {
            ScanFloor::Empty => return Ok(scan),
            ScanFloor::Start => Vec::new(),
            ScanFloor::At(key) => key.clone(),
        };
        let mut first_live = None;
        self.store.visit(DEADLINES, b"", &start, |key, value| {
            if first_live.is_none() {
                first_live = Some(key.to_vec());
            }
            let due_at = instant_of(key).ok_or_else(|| StoreError::Corrupt {
                family: DEADLINES.into(),
                reason: format!("key of {} bytes has no due instant", key.len()),
            })?;
            if due_at >= now.unix_millis() {
                scan.next_due = Some(Timestamp::from_unix_millis_clamped(due_at));
                return Ok(false);
            }
            if !skip.contains(key) {
                scan.due.push((key.to_vec(), covenant_store::decode(DEADLINES, value)?));
            }
            Ok(scan.due.len() < limit)
        })?;
        *floor = first_live.map_or(ScanFloor::Empty, ScanFloor::At);
        Ok(scan)
    }

    /// Removes the deadline stored under `key` (the ledger settled it). Returns whether it was
    /// still there: an event may have moved or cleared it meanwhile, and then nothing changes.
    pub fn remove(&self, key: &[u8], deadline: &Deadline) -> Result<bool, WatchdogError> {
        let _guard = self.write.lock().map_err(|_| WatchdogError::Poisoned)?;
        if self.store.get_raw(DEADLINES, key)?.is_none() {
            return Ok(false);
        }
        let subject = subject_key(&deadline.customer_id, &deadline.subject);
        let mut batch = self.store.batch();
        batch.delete(DEADLINES, key)?;
        if self.store.get_raw(SUBJECTS, &subject)?.as_deref() == Some(key) {
            batch.delete(SUBJECTS, &subject)?;
        }
        batch.commit()?;
        self.add_pending(-1);
        Ok(true)
    }

    /// Folds `events` (consecutive offsets of `partition`) into the deadlines and moves the
    /// partition's checkpoint past the last one, in one batch. Events below the checkpoint (a
    /// batch applied before a crash, delivered again) are skipped.
    pub fn apply_events(&self, partition: u16, events: &[RecordedEvent]) -> Result<Applied, WatchdogError> {
        let floor = self.write.lock().map_err(|_| WatchdogError::Poisoned)?;
        let next = self.store.checkpoint(partition)?;
        let fresh: Vec<&RecordedEvent> =
            events.iter().filter(|event| event.position.offset >= next).collect();
        let Some(first) = fresh.first() else { return Ok(Applied::default()) };
        if first.position.offset != next {
            return Err(WatchdogError::Gap { partition, first: first.position.offset, next });
        }
        let mut last = next;
        for event in &fresh {
            if event.position.offset != last {
                return Err(WatchdogError::Gap { partition, first: event.position.offset, next: last });
            }
            last += 1;
        }
        self.fold_and_commit(floor, partition, &fresh, last)
    }

    /// Applies offsets `from..next` of `partition`, of which only the events whose payload
    /// [`deadlines::reads_payload`](covenant_domain::deadlines::reads_payload) says the deadlines
    /// read are given (in offset order; the others change nothing), and moves the checkpoint to
    /// `next`, in one batch: a rebuild's way, which then decodes only those. `from` must be the
    /// partition's checkpoint.
    pub fn apply_range(
        &self,
        partition: u16,
        from: u64,
        next: u64,
        events: &[RecordedEvent],
    ) -> Result<Applied, WatchdogError> {
        let floor = self.write.lock().map_err(|_| WatchdogError::Poisoned)?;
        let checkpoint = self.store.checkpoint(partition)?;
        if from != checkpoint {
            return Err(WatchdogError::Gap { partition, first: from, next: checkpoint });
        }
        let mut expected_at_least = from;
        for event in events {
            let offset = event.position.offset;
            if offset < expected_at_least || offset >= next || event.position.partition != partition {
                return Err(WatchdogError::Gap { partition, first: offset, next: expected_at_least });
            }
            expected_at_least = offset + 1;
        }
        let fresh: Vec<&RecordedEvent> = events.iter().collect();
        let mut applied = self.fold_and_commit(floor, partition, &fresh, next)?;
        applied.events = usize::try_from(next.saturating_sub(from)).unwrap_or(usize::MAX);
        Ok(applied)
    }

    /// Folds `events` into the deadlines and moves `partition`'s checkpoint to `next`, in one
    /// batch.
    fn fold_and_commit(
        &self,
        mut floor: std::sync::MutexGuard<'_, ScanFloor>,
        partition: u16,
        events: &[&RecordedEvent],
        next: u64,
    ) -> Result<Applied, WatchdogError> {
        let mut overlay = Overlay::new(&self.store);
        let mut applied = Applied { events: events.len(), ..Applied::default() };
        let last = next;
        for event in events.iter().copied() {
            let changes = overlay.fold(event, &self.policy)?;
            for change in changes {
                match change {
                    DeadlineChange::Set(deadline) => {
                        applied.set += 1;
                        overlay.set(deadline)?;
                    }
                    DeadlineChange::Clear(subject) => {
                        if overlay.clear(&subject_key(&event.customer_id, &subject))? {
                            applied.cleared += 1;
                        }
                    }
                }
            }
        }
        let delta = overlay.pending_delta;
        let mut batch = self.store.batch();
        let lowest_set = overlay.write(&mut batch)?;
        batch.set_checkpoint(partition, last)?;
        batch.commit()?;
        if let Some(key) = lowest_set {
            floor.lower_to(&key);
        }
        self.add_pending(delta);
        if applied.set > 0 {
            self.changed.notify_one();
        }
        tracing::debug!(partition, next = last, ?applied, "events applied");
        Ok(applied)
    }

    fn add_pending(&self, delta: i64) {
        let pending = self.pending.fetch_add(delta, Ordering::Relaxed) + delta;
        metrics::gauge!("covenant_watchdog_deadlines").set(pending as f64);
    }
}

impl EventSink for DeadlineStore {
    fn next_offset(&self, partition: u16) -> Result<u64, SinkError> {
        Ok(self.checkpoint(partition)?)
    }

    fn apply(&self, partition: u16, events: &[RecordedEvent]) -> Result<(), SinkError> {
        self.apply_events(partition, events)?;
        Ok(())
    }
}

/// A subject's deadline key (as read from the store, then as the batch changed it), the key the
/// store holds, and whether the batch changed it.
#[derive(Debug)]
struct SubjectEntry {
    key: Option<Vec<u8>>,
    stored: Option<Vec<u8>>,
    dirty: bool,
}

/// The overlay's maps: a fast hash (the keys are ids from the log).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A batch's view of the store: what it read, with its own writes on top.
struct Overlay<'a> {
    store: &'a Store,
    /// Watch state per customer, and whether the batch changed it.
    watch: FastMap<CustomerId, (WatchState, bool)>,
    subjects: FastMap<Vec<u8>, SubjectEntry>,
    /// Deadline writes: `Some` put, `None` delete.
    deadlines: FastMap<Vec<u8>, Option<Deadline>>,
    pending_delta: i64,
}

impl<'a> Overlay<'a> {
    fn new(store: &'a Store) -> Self {
        Self {
            store,
            watch: FastMap::default(),
            subjects: FastMap::default(),
            deadlines: FastMap::default(),
            pending_delta: 0,
        }
    }

    /// Folds one event into its customer's watch state; returns the deadline changes.
    fn fold(
        &mut self,
        event: &RecordedEvent,
        policy: &SlaPolicy,
    ) -> Result<Vec<DeadlineChange>, WatchdogError> {
        let entry = match self.watch.entry(event.customer_id.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let state: WatchState =
                    self.store.get(WATCH, event.customer_id.as_str().as_bytes())?.unwrap_or_default();
                entry.insert((state, false))
            }
        };
        let before = entry.0.clone();
        let changes = deadline_changes(
            &mut entry.0,
            &event.customer_id,
            &event.event,
            event.metadata.occurred_at,
            policy,
        );
        if entry.0 != before {
            entry.1 = true;
        }
        Ok(changes)
    }

    /// The subject's entry, read from the store on first use.
    fn subject(&mut self, subject_key: &[u8]) -> Result<&mut SubjectEntry, WatchdogError> {
        let store = self.store;
        Ok(match self.subjects.entry(subject_key.to_vec()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let key = store.get_raw(SUBJECTS, entry.key())?;
                entry.insert(SubjectEntry { stored: key.clone(), key, dirty: false })
            }
        })
    }

    /// Sets (or moves) the deadline of its subject.
    fn set(&mut self, deadline: Deadline) -> Result<(), WatchdogError> {
        let new_key = deadline_key(&deadline);
        let subject = self.subject(&subject_key(&deadline.customer_id, &deadline.subject))?;
        let old = subject.key.replace(new_key.clone());
        subject.dirty = true;
        let stored = subject.stored.as_deref() == old.as_deref();
        match old {
            None => self.pending_delta += 1,
            Some(old) if old != new_key => self.forget(old, stored),
            Some(_) => {}
        }
        self.deadlines.insert(new_key, Some(deadline));
        Ok(())
    }

    /// Drops the deadline under `key`: a delete when the store holds it (`stored`), else the
    /// batch's own put of it is taken back (no tombstone for a key the store never had: a
    /// rebuild's chunk sets and clears most of its deadlines itself, and tombstones would slow
    /// the scans for due deadlines until a compaction).
    fn forget(&mut self, key: Vec<u8>, stored: bool) {
        if stored {
            self.deadlines.insert(key, None);
        } else {
            self.deadlines.remove(&key);
        }
    }

    /// Removes the subject's deadline; returns whether it had one.
    fn clear(&mut self, subject_key: &[u8]) -> Result<bool, WatchdogError> {
        let subject = self.subject(subject_key)?;
        let Some(old) = subject.key.take() else { return Ok(false) };
        subject.dirty = true;
        let stored = subject.stored.as_ref() == Some(&old);
        self.pending_delta -= 1;
        self.forget(old, stored);
        Ok(true)
    }

    /// Puts the changes into `batch`; returns the smallest key a deadline is stored under.
    /// Puts the batch's changes into `batch`, each family's in key order (RocksDB inserts a
    /// batch's keys into the memtable's skip list one after the other, and a key just after the
    /// previous one is found from where that one went: a rebuild's chunk writes thousands).
    fn write(self, batch: &mut covenant_store::Batch<'_>) -> Result<Option<Vec<u8>>, WatchdogError> {
        let mut watch: Vec<_> = self.watch.iter().filter(|(_, (_, dirty))| *dirty).collect();
        watch.sort_unstable_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
        for (customer_id, (state, _)) in watch {
            batch.put(WATCH, customer_id.as_str().as_bytes(), state)?;
        }
        // A subject the store does not hold and the batch set and cleared again is left out.
        let mut subjects: Vec<_> =
            self.subjects.iter().filter(|(_, entry)| entry.dirty && entry.key != entry.stored).collect();
        subjects.sort_unstable_by_key(|(key, _)| *key);
        for (subject_key, entry) in subjects {
            match &entry.key {
                Some(key) => batch.put_raw(SUBJECTS, subject_key, key)?,
                None => batch.delete(SUBJECTS, subject_key)?,
            }
        }
        let mut deadlines: Vec<_> = self.deadlines.iter().collect();
        deadlines.sort_unstable_by_key(|(key, _)| *key);
        let mut lowest_set: Option<&Vec<u8>> = None;
        for (key, deadline) in deadlines {
            match deadline {
                Some(deadline) => {
                    batch.put(DEADLINES, key, deadline)?;
                    lowest_set = Some(lowest_set.map_or(key, |lowest| lowest.min(key)));
                }
                None => batch.delete(DEADLINES, key)?,
            }
        }
        Ok(lowest_set.cloned())
    }
}

#[cfg(test)]
mod tests {
    use covenant_domain::deadlines::DeadlineSubject;
    use covenant_domain::events::{Actor, ActorKind, EventMetadata, Position, SlaTarget};
    use covenant_domain::ids::{ActorId, CommandId, ComplaintId, EventId, PromiseId};
    use covenant_domain::{Command, DecisionContext, Span, apply, decide, sample};

    use super::*;

    const T0: i64 = 1_800_000_000_000;

    /// Decides commands for one customer the way the ledger would, numbering offsets from
    /// `offset` in partition 0.
    struct History {
        customer: CustomerId,
        state: covenant_domain::CustomerState,
        version: u64,
    }

    impl History {
        fn new(customer: &str) -> Self {
            Self {
                customer: CustomerId::new(customer).unwrap(),
                state: covenant_domain::CustomerState::default(),
                version: 0,
            }
        }

        fn events(&mut self, command: Command, at: i64, offset: &mut u64) -> Vec<RecordedEvent> {
            let now = Timestamp::from_unix_millis_clamped(at);
            let context = DecisionContext { now, occurred_at: now };
            let events = decide(&self.state, self.customer.as_str(), &command, &context).unwrap();
            events
                .into_iter()
                .map(|event| {
                    apply(&mut self.state, &event, now);
                    self.version += 1;
                    *offset += 1;
                    RecordedEvent {
                        event_id: EventId::new_v7(),
                        customer_id: self.customer.clone(),
                        stream_version: self.version,
                        position: Position { partition: 0, offset: *offset - 1 },
                        recorded_at: now,
                        command_id: CommandId::new(format!("c{offset}")).unwrap(),
                        metadata: EventMetadata {
                            occurred_at: now,
                            actor: Actor { kind: ActorKind::Agent, id: ActorId::new("agent").unwrap() },
                            team: None,
                            channel: None,
                            correlation_id: None,
                            causation_id: None,
                        },
                        event,
                    }
                })
                .collect()
        }
    }

    /// Both stores hold the same rows in every family (checkpoints included) and the same
    /// number of pending deadlines; `context` says where in a sequence they were compared.
    fn assert_same_stores(left: &DeadlineStore, right: &DeadlineStore, context: &str) {
        for family in FAMILIES.iter().chain([&covenant_store::META]) {
            assert_eq!(
                left.store.first_difference(&right.store, family).unwrap(),
                None,
                "{context}: {family}"
            );
        }
        assert_eq!(left.pending(), right.pending(), "{context}");
    }

    #[test]
    fn events_whose_payload_the_deadlines_do_not_read_can_be_left_out_of_a_range() {
        use covenant_proto::convert::fixtures::every_event_on_one_stream;
        let events = every_event_on_one_stream();
        let (every_dir, some_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (every, some) = (open(every_dir.path()), open(some_dir.path()));
        // Compared after every event: a later event must not hide what an earlier one missed.
        for event in &events {
            let offset = event.position.offset;
            every.apply_events(0, std::slice::from_ref(event)).unwrap();
            let index = u32::try_from(event.event.catalogue_index()).unwrap();
            let given = if covenant_domain::deadlines::reads_payload(index) {
                std::slice::from_ref(event)
            } else {
                &[]
            };
            let applied = some.apply_range(0, offset, offset + 1, given).unwrap();
            assert_eq!(applied.events, 1);
            assert_same_stores(&every, &some, event.event_type());
        }
        assert!(every.pending() > 0, "the sequence leaves deadlines to compare");

        // A range must start at the checkpoint and hold only its own offsets, in order.
        let end = events.len() as u64;
        let later = |offset: u64| {
            let mut event = events[15].clone();
            event.position.offset = offset;
            event
        };
        assert!(matches!(some.apply_range(0, end + 1, end + 2, &[]), Err(WatchdogError::Gap { .. })));
        assert!(matches!(
            some.apply_range(0, end, end + 2, &[later(end + 2)]),
            Err(WatchdogError::Gap { .. })
        ));
        assert!(matches!(
            some.apply_range(0, end, end + 3, &[later(end + 1), later(end)]),
            Err(WatchdogError::Gap { .. })
        ));
        assert_eq!(some.checkpoint(0).unwrap(), end, "a refused range moves nothing");
        some.apply_range(0, end, end + 3, &[later(end + 1)]).unwrap();
        assert_eq!(some.checkpoint(0).unwrap(), end + 3);
    }

    #[test]
    fn a_batch_that_sets_and_clears_a_deadline_itself_writes_no_tombstone_and_the_same_store() {
        use covenant_proto::convert::fixtures::every_event_on_one_stream;
        let events = every_event_on_one_stream();
        let (apart_dir, together_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (apart, together) = (open(apart_dir.path()), open(together_dir.path()));
        for event in &events {
            apart.apply_events(0, std::slice::from_ref(event)).unwrap();
        }
        together.apply_events(0, &events).unwrap();
        assert_same_stores(&apart, &together, "after every event");
        assert!(apart.pending() > 0, "the sequence leaves deadlines to compare");
        // One event at a time, each clear deletes what an earlier batch stored (and the stores
        // still end equal); in one batch, the deadlines set and cleared again never reach the
        // store, not even as tombstones.
        for family in [DEADLINES, SUBJECTS] {
            assert!(
                apart.store.deletes_in_memtable(family).unwrap() > 0,
                "{family}: the sequence clears some"
            );
            assert_eq!(together.store.deletes_in_memtable(family).unwrap(), 0, "{family}");
        }
    }

    #[test]
    fn a_rebuilt_deadline_store_holds_its_deadlines_once_finished_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let mut history = History::new("cust-1");
        let mut offset = 0;
        let mut events = history.events(sample::register("Ada").unwrap(), T0, &mut offset);
        let due = Timestamp::from_unix_millis("due", T0 + 3_600_000).unwrap();
        events.extend(history.events(sample::promise("p-1", due).unwrap(), T0, &mut offset));
        {
            let store = DeadlineStore::open_for_rebuild(dir.path(), 4, SlaPolicy::default()).unwrap();
            store.apply_events(0, &events).unwrap();
            // A read-only view sees the files only: nothing before the flush (no WAL), then all.
            assert_eq!(Store::open_read_only(dir.path()).unwrap().checkpoint(0).unwrap(), 0);
            store.finish_rebuild().unwrap();
            let flushed = Store::open_read_only(dir.path()).unwrap();
            assert_eq!(flushed.checkpoint(0).unwrap(), events.len() as u64);
        }
        let store = open(dir.path());
        assert_eq!(store.checkpoint(0).unwrap(), events.len() as u64);
        assert_eq!(store.pending(), 1);
    }

    fn open(dir: &Path) -> DeadlineStore {
        DeadlineStore::open(dir, 4, SlaPolicy::default()).unwrap()
    }

    fn all_due(store: &DeadlineStore) -> Vec<Deadline> {
        let far = Timestamp::from_unix_millis_clamped(Timestamp::MAX.unix_millis());
        store.due(far, usize::MAX, &HashSet::new()).unwrap().due.into_iter().map(|(_, d)| d).collect()
    }

    fn promise_subject(id: &str) -> DeadlineSubject {
        DeadlineSubject::Promise(PromiseId::new(id).unwrap())
    }

    #[test]
    fn scans_start_at_the_first_live_deadline_and_still_find_one_stored_below_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut alice = History::new("alice");
        let mut offset = 0;
        let hour = 3_600_000;
        let at = |hours: i64| Timestamp::from_unix_millis_clamped(T0 + hours * hour);
        let mut events = alice.events(sample::register("Alice").unwrap(), T0, &mut offset);
        for number in 1..=5 {
            events.extend(alice.events(
                sample::promise(&format!("p{number}"), at(number * 2)).unwrap(),
                T0,
                &mut offset,
            ));
        }
        store.apply_events(0, &events).unwrap();
        let due_ids = |now: Timestamp| -> Vec<String> {
            let scan = store.due(now, usize::MAX, &HashSet::new()).unwrap();
            scan.due.iter().map(|(_, deadline)| format!("{:?}", deadline.subject)).collect()
        };
        assert!(due_ids(at(0)).is_empty());
        assert_eq!(*store.write.lock().unwrap(), ScanFloor::At(store_key_of(&store, &alice, "p1")));
        // Two promises kept: their deadlines are deleted; the next scan starts past them.
        let mut kept = alice.events(sample::keep("p1").unwrap(), T0 + 1, &mut offset);
        kept.extend(alice.events(sample::keep("p2").unwrap(), T0 + 2, &mut offset));
        store.apply_events(0, &kept).unwrap();
        assert!(due_ids(at(1)).is_empty());
        assert_eq!(*store.write.lock().unwrap(), ScanFloor::At(store_key_of(&store, &alice, "p3")));
        // A deadline stored below the floor (due before p3's) is found.
        let earlier = alice.events(sample::promise("p0", at(1)).unwrap(), T0 + 3, &mut offset);
        store.apply_events(0, &earlier).unwrap();
        assert_eq!(due_ids(at(3)), vec![format!("{:?}", promise_subject("p0"))]);
        // Everything settled: nothing is scanned until a deadline is stored again.
        let mut settled = Vec::new();
        for id in ["p0", "p3", "p4", "p5"] {
            settled.extend(alice.events(sample::keep(id).unwrap(), T0 + 4, &mut offset));
        }
        store.apply_events(0, &settled).unwrap();
        assert!(due_ids(at(100)).is_empty());
        assert_eq!(*store.write.lock().unwrap(), ScanFloor::Empty);
        let again = alice.events(sample::promise("p6", at(50)).unwrap(), T0 + 5, &mut offset);
        store.apply_events(0, &again).unwrap();
        assert_eq!(due_ids(at(100)), vec![format!("{:?}", promise_subject("p6"))]);
    }

    /// The key `alice`'s promise `id` has its deadline stored under.
    fn store_key_of(store: &DeadlineStore, alice: &History, id: &str) -> Vec<u8> {
        store.store.get_raw(SUBJECTS, &subject_key(&alice.customer, &promise_subject(id))).unwrap().unwrap()
    }

    #[test]
    fn a_set_then_clear_in_one_batch_leaves_nothing_and_moves_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut alice = History::new("alice");
        let mut offset = 0;
        let due = Timestamp::from_unix_millis_clamped(T0 + 3_600_000);
        let mut events = alice.events(sample::register("Alice").unwrap(), T0, &mut offset);
        events.extend(alice.events(sample::promise("p1", due).unwrap(), T0, &mut offset));
        events.extend(alice.events(sample::keep("p1").unwrap(), T0 + 1000, &mut offset));
        let applied = store.apply_events(0, &events).unwrap();
        assert_eq!(applied, Applied { events: 3, set: 1, cleared: 1 });
        assert!(all_due(&store).is_empty());
        assert_eq!(store.pending(), 0);
        assert_eq!(store.checkpoint(0).unwrap(), 3);
        assert_eq!(store.checkpoint(1).unwrap(), 0);
        let subject = subject_key(&alice.customer, &promise_subject("p1"));
        assert_eq!(store.deadline_of(&subject).unwrap(), None);
    }

    #[test]
    fn a_moved_deadline_replaces_the_old_key_across_batches_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut alice = History::new("alice");
        let mut offset = 0;
        let due = Timestamp::from_unix_millis_clamped(T0 + 3_600_000);
        let new_due = Timestamp::from_unix_millis_clamped(T0 + 7_200_000);
        {
            let store = open(dir.path());
            let mut first = alice.events(sample::register("Alice").unwrap(), T0, &mut offset);
            first.extend(alice.events(sample::promise("p1", due).unwrap(), T0, &mut offset));
            store.apply_events(0, &first).unwrap();
            assert_eq!(all_due(&store).len(), 1);
            let renegotiate = Command::RenegotiatePromise {
                promise_id: PromiseId::new("p1").unwrap(),
                new_due_at: new_due,
                customer_consented: true,
            };
            let second = alice.events(renegotiate, T0 + 1000, &mut offset);
            let applied = store.apply_events(0, &second).unwrap();
            assert_eq!(applied.set, 1);
            // Delivered again (a redelivery after a crash): skipped.
            assert_eq!(store.apply_events(0, &second).unwrap(), Applied::default());
        }
        let store = open(dir.path());
        assert_eq!(store.pending(), 1);
        assert_eq!(store.checkpoint(0).unwrap(), offset);
        let grace = Span::from_secs(600);
        let expected = Deadline {
            due_at: new_due.plus(grace),
            customer_id: alice.customer.clone(),
            subject: promise_subject("p1"),
        };
        assert_eq!(all_due(&store), vec![expected.clone()]);
        let subject = subject_key(&alice.customer, &promise_subject("p1"));
        assert_eq!(store.deadline_of(&subject).unwrap(), Some(expected));
    }

    #[test]
    fn complaint_clocks_are_due_in_order_and_removal_checks_the_subject() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut bob = History::new("bob");
        let mut offset = 0;
        let mut events = bob.events(sample::register("Bob").unwrap(), T0, &mut offset);
        events.extend(bob.events(sample::complaint("c1").unwrap(), T0, &mut offset));
        store.apply_events(0, &events).unwrap();
        assert_eq!(store.pending(), 2);
        let deadlines = all_due(&store);
        let targets: Vec<_> = deadlines
            .iter()
            .map(|deadline| match &deadline.subject {
                DeadlineSubject::Complaint(_, target) => *target,
                DeadlineSubject::Promise(_) => panic!("{deadline:?}"),
            })
            .collect();
        assert_eq!(targets, [SlaTarget::FirstReply, SlaTarget::Resolution]);

        // Nothing is due before the first-reply target; the scan says when the next one is.
        let scan = store.due(Timestamp::from_unix_millis_clamped(T0 + 1), 10, &HashSet::new()).unwrap();
        assert!(scan.due.is_empty());
        assert_eq!(scan.next_due, Some(deadlines[0].due_at));
        // Due exactly at the instant is not yet due; one millisecond later it is.
        let at_due = store.due(deadlines[0].due_at, 10, &HashSet::new()).unwrap();
        assert!(at_due.due.is_empty());
        let after = store.due(deadlines[0].due_at.plus(Span::from_millis(1)), 10, &HashSet::new()).unwrap();
        assert_eq!(after.due.len(), 1);
        assert_eq!(after.next_due, Some(deadlines[1].due_at));
        let skipped = store
            .due(deadlines[0].due_at.plus(Span::from_millis(1)), 10, &HashSet::from([after.due[0].0.clone()]))
            .unwrap();
        assert!(skipped.due.is_empty());

        let (key, deadline) = after.due[0].clone();
        assert!(store.remove(&key, &deadline).unwrap());
        assert!(!store.remove(&key, &deadline).unwrap());
        assert_eq!(store.pending(), 1);
        let first_reply = subject_key(
            &bob.customer,
            &DeadlineSubject::Complaint(ComplaintId::new("c1").unwrap(), SlaTarget::FirstReply),
        );
        assert_eq!(store.deadline_of(&first_reply).unwrap(), None);
    }

    #[test]
    fn a_removal_of_a_stale_key_keeps_the_moved_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut alice = History::new("alice");
        let mut offset = 0;
        let due = Timestamp::from_unix_millis_clamped(T0 + 1000);
        let mut events = alice.events(sample::register("Alice").unwrap(), T0, &mut offset);
        events.extend(alice.events(sample::promise("p1", due).unwrap(), T0, &mut offset));
        store.apply_events(0, &events).unwrap();
        let [(old_key, old)] = store
            .due(Timestamp::from_unix_millis_clamped(T0 + 3_600_000), 10, &HashSet::new())
            .unwrap()
            .due
            .try_into()
            .unwrap();
        let renegotiate = Command::RenegotiatePromise {
            promise_id: PromiseId::new("p1").unwrap(),
            new_due_at: Timestamp::from_unix_millis_clamped(T0 + 86_400_000),
            customer_consented: true,
        };
        store.apply_events(0, &alice.events(renegotiate, T0 + 500, &mut offset)).unwrap();
        // The scheduler settles the old deadline late: the moved one must survive.
        assert!(!store.remove(&old_key, &old).unwrap());
        assert_eq!(all_due(&store).len(), 1);
        assert_eq!(store.pending(), 1);
    }

    #[test]
    fn a_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut alice = History::new("alice");
        let mut offset = 5;
        let events = alice.events(sample::register("Alice").unwrap(), T0, &mut offset);
        assert!(matches!(store.apply_events(0, &events), Err(WatchdogError::Gap { first: 5, next: 0, .. })));
        assert_eq!(store.checkpoint(0).unwrap(), 0);
    }
}
