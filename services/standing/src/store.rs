//! Standing's RocksDB: the projections and the consumer's checkpoints, written together.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `timeline` | customer ‖ 0 ‖ first stream version (u64 BE) | a segment: the customer's consecutive events from that version on (without personal data) |
//! | `customers` | customer | [`CustomerRecord`] |
//! | `promises` | customer ‖ 0 ‖ promise id | [`PromiseRecord`] |
//! | `complaints` | customer ‖ 0 ‖ complaint id | [`ComplaintRecord`] |
//! | `resolutions` | customer ‖ 0 ‖ complaint id | when the complaint was last resolved ([`Timestamp`]); no entry while open |
//! | `surveys` | answered at (unix ms, u64 BE) ‖ customer ‖ 0 ‖ survey id | [`SurveyFact`] |
//! | `band_dirty` | customer ‖ 0 ‖ partition (u16 BE) ‖ offset (u64 BE) | [`Cause`]: the customer's last event of a batch, until the band tracker evaluates them |
//! | `bands` | customer | [`Snapshot`]: their bands at the tracker's last evaluation |
//! | `band_changes` | sequence (u64 BE, from 1) | [`BandChange`] |
//! | `meta` | `checkpoint/<partition>` | next offset to apply |
//!
//! Customer ids never contain a 0 byte, so `customer ‖ 0` is an exact prefix. [`StandingStore`]
//! is the consumer's [`EventSink`]: one `WriteBatch` per consumer batch holds every projection
//! change and the partition's new checkpoint.
//!
//! `band_dirty` is written in the projections' batch (one entry per customer per batch) and
//! consumed by the band tracker (`crate::tracker`), the only writer of `bands` and
//! `band_changes`: it deletes exactly the entries it read, so an entry written meanwhile waits
//! for the next round.
//!
//! A timeline **segment** holds a customer's events of one applied batch (format 2: `[2]`
//! followed by the postcard sequence of events), so a rebuild applying the log in large chunks
//! writes one row per customer per chunk instead of one per event. Values written before
//! segments hold one event each (format 1: `[1][postcard event]`); both are read, and a reader
//! takes each stream version once, from the first segment that holds it.
//!
//! `resolutions` is kept apart from `complaints` so that the stored [`ComplaintRecord`]s keep
//! their encoding; `surveys` is ordered by answer time so that a time window is one range scan.
//! Both families are created when a store from before them is opened; a store that applied
//! events before they existed lacks the resolutions and answers of those events (rebuild the
//! projections from the log to fill them).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use covenant_bus::{EventSink, SinkError};
use covenant_domain::deadlines::{SlaPolicy, deadline_changes};
use covenant_domain::ids::CustomerId;
use covenant_domain::org_metrics::{Fact, Window};
use covenant_domain::{Event, RecordedEvent, Timestamp};
use covenant_store::{Result, Store, StoreError};
use tokio::sync::Notify;

use crate::bands::{BandChange, Cause, Snapshot};
use crate::views::{
    ComplaintRecord, CustomerRecord, PromiseRecord, PromiseStatus, SurveyFact, apply_clock_change,
    complaint_facts, complaint_opened, promise_fact, promise_made, survey_answered, update_complaint,
    update_promise,
};

pub const TIMELINE: &str = "timeline";
pub const CUSTOMERS: &str = "customers";
pub const PROMISES: &str = "promises";
pub const COMPLAINTS: &str = "complaints";
pub const RESOLUTIONS: &str = "resolutions";
pub const SURVEYS: &str = "surveys";
pub const BAND_DIRTY: &str = "band_dirty";
pub const BANDS: &str = "bands";
pub const BAND_CHANGES: &str = "band_changes";
pub const FAMILIES: [&str; 9] =
    [TIMELINE, CUSTOMERS, PROMISES, COMPLAINTS, RESOLUTIONS, SURVEYS, BAND_DIRTY, BANDS, BAND_CHANGES];

/// Format byte of a timeline value holding one event (what `covenant_store::encode` writes; the
/// only timeline format before segments).
const EVENT_FORMAT: u8 = 1;
/// Format byte of a timeline segment: `[2][postcard sequence of RecordedEvent]`.
const SEGMENT_FORMAT: u8 = 2;

/// Events applied per write by a rebuild from the log (`covenant replay`, the projection check
/// of `covenant verify`): large, so that a customer's events of a chunk share one timeline
/// segment and one write of their records. The live consumer applies what a delivery holds.
pub const REBUILD_CHUNK: usize = 65_536;

/// Most index entries one list request examines before it answers with a page token.
const MAX_SCAN: usize = 100_000;

/// Which promises a list wants.
#[derive(Debug, Clone, Default)]
pub struct PromiseFilter {
    pub customer_id: Option<CustomerId>,
    pub statuses: Vec<PromiseStatus>,
    pub overdue_only: bool,
    pub made_by: Option<String>,
    pub team: Option<String>,
    pub due_from: Option<Timestamp>,
    pub due_to: Option<Timestamp>,
}

impl PromiseFilter {
    fn accepts(&self, promise: &PromiseRecord, now: Timestamp) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&promise.status))
            && (!self.overdue_only || promise.overdue(now))
            && self.made_by.as_deref().is_none_or(|made_by| promise.made_by.as_str() == made_by)
            && self
                .team
                .as_deref()
                .is_none_or(|team| promise.team.as_ref().is_some_and(|t| t.as_str() == team))
            && self.due_from.is_none_or(|from| promise.due_at >= from)
            && self.due_to.is_none_or(|to| promise.due_at < to)
    }
}

/// A page of a list, and where the next one starts (`None`: no more).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Vec<u8>>,
}

/// The projections of standing.
#[derive(Debug, Clone)]
pub struct StandingStore {
    store: Store,
    policy: SlaPolicy,
    /// Told after every applied batch: the band tracker has customers to evaluate.
    band_wake: Arc<Notify>,
    /// The `band_dirty` entries, mirrored in memory (loaded at open, then kept in step with
    /// every committed batch that adds or consumes some): the tracker reads them from here.
    /// Consumed entries are deleted, and a scan of the column family stepped over every deletion
    /// still in RocksDB (a tombstone until a compaction) on every evaluation round — a few
    /// percent of the whole system's CPU under load in a profile of `covenant up`.
    marks: Arc<Mutex<BTreeMap<Vec<u8>, Cause>>>,
    /// Whether applied batches add to `marks` (not in a store being rebuilt: no tracker runs on
    /// it, and the service that opens the directory afterwards loads the entries from disk).
    mirror_marks: bool,
}

/// Customers the band tracker has to evaluate: each with the `band_dirty` keys that named them
/// and the latest cause among those.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyCustomer {
    pub customer_id: CustomerId,
    pub keys: Vec<Vec<u8>>,
    pub cause: Cause,
}

/// A customer the band tracker evaluated: the snapshot to keep (`None`: unchanged, nothing to
/// write) and the changes to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub customer_id: CustomerId,
    pub snapshot: Option<Snapshot>,
    pub changes: Vec<BandChange>,
}

fn customer_prefix(customer: &CustomerId) -> Vec<u8> {
    let mut key = Vec::with_capacity(customer.as_str().len() + 9);
    key.extend_from_slice(customer.as_str().as_bytes());
    key.push(0);
    key
}

fn timeline_key(customer: &CustomerId, version: u64) -> Vec<u8> {
    let mut key = customer_prefix(customer);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// A timeline segment: `events` (consecutive versions of one customer) in format 2 (the
/// applier builds the same bytes from the events' encodings).
#[cfg(test)]
fn encode_segment(events: &[&RecordedEvent]) -> Result<Vec<u8>> {
    let mut bytes = vec![SEGMENT_FORMAT];
    postcard::to_io(events, &mut bytes).map_err(StoreError::Encode)?;
    Ok(bytes)
}

/// The events of a stored timeline value: a segment (format 2) or a single event (format 1).
pub fn decode_timeline(bytes: &[u8]) -> Result<Vec<RecordedEvent>> {
    match bytes.split_first() {
        Some((&SEGMENT_FORMAT, body)) => postcard::from_bytes(body)
            .map_err(|error| StoreError::Corrupt { family: TIMELINE.into(), reason: error.to_string() }),
        Some((&EVENT_FORMAT, _)) => covenant_store::decode(TIMELINE, bytes).map(|event| vec![event]),
        Some((format, _)) => Err(StoreError::Corrupt {
            family: TIMELINE.into(),
            reason: format!("unknown timeline value format {format}"),
        }),
        None => Err(StoreError::Corrupt { family: TIMELINE.into(), reason: "empty value".into() }),
    }
}

/// Where two stores' timelines first differ as histories (the segments may cut them
/// differently): the customer and stream version, and each side's event there (`None`: that
/// side has none).
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineDifference {
    pub customer_id: CustomerId,
    pub stream_version: u64,
    pub left: Option<RecordedEvent>,
    pub right: Option<RecordedEvent>,
}

/// A store's timeline as one sequence of events in (customer, version) order, each version
/// once.
struct TimelineEvents<I> {
    entries: I,
    pending: std::vec::IntoIter<RecordedEvent>,
    last: Option<(CustomerId, u64)>,
}

impl<I: Iterator<Item = Result<covenant_store::RawEntry>>> TimelineEvents<I> {
    fn new(entries: I) -> Self {
        Self { entries, pending: Vec::new().into_iter(), last: None }
    }

    fn next_event(&mut self) -> Result<Option<RecordedEvent>> {
        loop {
            for event in self.pending.by_ref() {
                let seen = self.last.as_ref().is_some_and(|(customer, version)| {
                    *customer == event.customer_id && event.stream_version <= *version
                });
                if !seen {
                    self.last = Some((event.customer_id.clone(), event.stream_version));
                    return Ok(Some(event));
                }
            }
            match self.entries.next().transpose()? {
                None => return Ok(None),
                Some((_, value)) => self.pending = decode_timeline(&value)?.into_iter(),
            }
        }
    }
}

/// Compares the timelines of two standing stores event by event (see [`TimelineDifference`]);
/// `None`: the same histories.
pub fn first_timeline_difference(left: &Store, right: &Store) -> Result<Option<TimelineDifference>> {
    let mut lefts = TimelineEvents::new(left.entries(TIMELINE)?);
    let mut rights = TimelineEvents::new(right.entries(TIMELINE)?);
    loop {
        let (left, right) = (lefts.next_event()?, rights.next_event()?);
        let place = |event: &RecordedEvent| (event.customer_id.clone(), event.stream_version);
        let (customer_id, stream_version) = match (&left, &right) {
            (None, None) => return Ok(None),
            (Some(left), Some(right)) if left == right => continue,
            // Both sides run in the same order: the earlier place is where one lacks an event.
            (Some(left), Some(right)) => {
                if (left.customer_id.as_str(), left.stream_version)
                    <= (right.customer_id.as_str(), right.stream_version)
                {
                    place(left)
                } else {
                    place(right)
                }
            }
            (Some(only), None) | (None, Some(only)) => place(only),
        };
        let at = |event: Option<RecordedEvent>| {
            event.filter(|event| event.customer_id == customer_id && event.stream_version == stream_version)
        };
        let (left, right) = (at(left), at(right));
        return Ok(Some(TimelineDifference { customer_id, stream_version, left, right }));
    }
}

fn child_key(customer: &CustomerId, id: &str) -> Vec<u8> {
    let mut key = customer_prefix(customer);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The 8 big-endian bytes that order `surveys` by time (instants are never before 1970).
fn time_bytes(at: Timestamp) -> [u8; 8] {
    u64::try_from(at.unix_millis()).unwrap_or(0).to_be_bytes()
}

fn survey_key(answered_at: Timestamp, customer: &CustomerId, survey_id: &str) -> Vec<u8> {
    let mut key = time_bytes(answered_at).to_vec();
    key.extend_from_slice(&child_key(customer, survey_id));
    key
}

fn dirty_key(customer: &CustomerId, position: covenant_domain::Position) -> Vec<u8> {
    let mut key = customer_prefix(customer);
    key.extend_from_slice(&position.partition.to_be_bytes());
    key.extend_from_slice(&position.offset.to_be_bytes());
    key
}

/// The customer a `band_dirty` key names.
fn dirty_customer(key: &[u8]) -> Result<CustomerId> {
    key.iter()
        .position(|byte| *byte == 0)
        .and_then(|end| std::str::from_utf8(&key[..end]).ok())
        .and_then(|id| CustomerId::new(id).ok())
        .ok_or_else(|| StoreError::Corrupt {
            family: BAND_DIRTY.into(),
            reason: "a key does not start with a customer id".into(),
        })
}

fn customer_key(key: &[u8], family: &str) -> Result<CustomerId> {
    std::str::from_utf8(key).ok().and_then(|key| CustomerId::new(key).ok()).ok_or_else(|| {
        StoreError::Corrupt { family: family.into(), reason: "a key is not a customer id".into() }
    })
}

/// The answer time at the start of a `surveys` key.
fn survey_time(key: &[u8]) -> Result<Timestamp> {
    key.get(..8)
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .and_then(|bytes| i64::try_from(u64::from_be_bytes(bytes)).ok())
        .and_then(|millis| Timestamp::from_unix_millis("answered_at", millis).ok())
        .ok_or_else(|| StoreError::Corrupt {
            family: SURVEYS.into(),
            reason: "a key does not start with an instant".into(),
        })
}

impl StandingStore {
    /// Opens (creating when missing) the projections in `dir` for `partitions` partitions.
    pub fn open(dir: &Path, partitions: u16, policy: SlaPolicy) -> Result<Self> {
        let store = Store::open(dir, &FAMILIES, partitions)?;
        let mut marks = BTreeMap::new();
        store.visit(BAND_DIRTY, b"", b"", |key, value| {
            marks.insert(key.to_vec(), covenant_store::decode(BAND_DIRTY, value)?);
            Ok(true)
        })?;
        Ok(Self {
            store,
            policy,
            band_wake: Arc::new(Notify::new()),
            marks: Arc::new(Mutex::new(marks)),
            mirror_marks: true,
        })
    }

    /// Opens a fresh directory to rebuild the projections into from the log: writes skip the
    /// WAL (`covenant_store::Store::open_for_rebuild`); call [`Self::finish_rebuild`] after the
    /// last chunk, before anything else opens the directory.
    pub fn open_for_rebuild(dir: &Path, partitions: u16, policy: SlaPolicy) -> Result<Self> {
        let store = Store::open_for_rebuild(dir, &FAMILIES, partitions)?;
        Ok(Self {
            store,
            policy,
            band_wake: Arc::new(Notify::new()),
            marks: Arc::new(Mutex::new(BTreeMap::new())),
            mirror_marks: false,
        })
    }

    /// Makes a rebuild's writes durable (see [`Self::open_for_rebuild`]).
    pub fn finish_rebuild(&self) -> Result<()> {
        self.store.finish_rebuild()
    }

    /// The in-memory `band_dirty` mirror (a panicked holder left it consistent: each critical
    /// section is one insert or removal loop after a committed batch).
    fn marks(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Cause>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notified after every applied batch (a permit is kept when nobody waits).
    pub fn band_wake(&self) -> Arc<Notify> {
        Arc::clone(&self.band_wake)
    }

    /// What the projections remember of `customer` (`None`: no event of theirs applied yet).
    pub fn customer(&self, customer: &CustomerId) -> Result<Option<CustomerRecord>> {
        self.store.get(CUSTOMERS, customer.as_str().as_bytes())
    }

    /// Every customer with at least one applied event, in id order.
    pub fn customer_ids(&self) -> Result<Vec<CustomerId>> {
        self.customer_ids_after(None, usize::MAX)
    }

    /// Up to `limit` customers with at least one applied event, in id order after `after`.
    pub fn customer_ids_after(&self, after: Option<&CustomerId>, limit: usize) -> Result<Vec<CustomerId>> {
        let start = after.map(|after| [after.as_str().as_bytes(), &[0]].concat()).unwrap_or_default();
        let mut ids = Vec::new();
        if limit == 0 {
            return Ok(ids);
        }
        self.store.visit(CUSTOMERS, b"", &start, |key, _| {
            ids.push(customer_key(key, CUSTOMERS)?);
            Ok(ids.len() < limit)
        })?;
        Ok(ids)
    }

    /// Customers waiting for the band tracker, from the first `limit` `band_dirty` entries.
    pub fn dirty_customers(&self, limit: usize) -> Result<Vec<DirtyCustomer>> {
        let mut dirty: Vec<DirtyCustomer> = Vec::new();
        let mut read = 0;
        if limit == 0 {
            return Ok(dirty);
        }
        for (key, cause) in self.marks().iter() {
            read += 1;
            let customer_id = dirty_customer(key)?;
            match dirty.last_mut() {
                Some(last) if last.customer_id == customer_id => {
                    last.keys.push(key.clone());
                    // Keys sort by position within a customer: the later one is the latest.
                    last.cause = cause.clone();
                }
                _ => dirty.push(DirtyCustomer { customer_id, keys: vec![key.clone()], cause: cause.clone() }),
            }
            if read >= limit {
                break;
            }
        }
        Ok(dirty)
    }

    /// `customer`'s bands at the tracker's last evaluation (`None`: never evaluated).
    pub fn snapshot(&self, customer: &CustomerId) -> Result<Option<Snapshot>> {
        self.store.get(BANDS, customer.as_str().as_bytes())
    }

    /// The sequence of the last recorded band change (0: none yet).
    pub fn last_band_sequence(&self) -> Result<u64> {
        match self.store.last_key(BAND_CHANGES)? {
            None => Ok(0),
            Some(key) => <[u8; 8]>::try_from(key.as_slice()).map(u64::from_be_bytes).map_err(|_| {
                StoreError::Corrupt { family: BAND_CHANGES.into(), reason: "a key is not a sequence".into() }
            }),
        }
    }

    /// Up to `limit` band changes after sequence `after`, in sequence order.
    pub fn band_changes_after(&self, after: u64, limit: usize) -> Result<Vec<BandChange>> {
        let start = after.saturating_add(1).to_be_bytes();
        Ok(self.store.scan(BAND_CHANGES, b"", &start, limit)?.into_iter().map(|(_, change)| change).collect())
    }

    /// Writes what the band tracker found, in one batch: the new snapshots, the changes, and the
    /// deletion of the `band_dirty` entries it consumed.
    pub fn record_evaluations(&self, evaluated: &[Evaluated], consumed: &[Vec<u8>]) -> Result<()> {
        let mut batch = self.store.batch();
        for customer in evaluated {
            if let Some(snapshot) = &customer.snapshot {
                batch.put(BANDS, customer.customer_id.as_str().as_bytes(), snapshot)?;
            }
            for change in &customer.changes {
                batch.put(BAND_CHANGES, &change.sequence.to_be_bytes(), change)?;
            }
        }
        for key in consumed {
            batch.delete(BAND_DIRTY, key)?;
        }
        batch.commit()?;
        let mut marks = self.marks();
        for key in consumed {
            marks.remove(key);
        }
        Ok(())
    }

    /// Up to `max` events of `customer` from stream version `from_version` on.
    pub fn timeline(
        &self,
        customer: &CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let prefix = customer_prefix(customer);
        let start = timeline_key(customer, from_version);
        let mut events = Vec::new();
        if max == 0 {
            return Ok(events);
        }
        // The segment holding `from_version` starts at or before it.
        let mut last: Option<u64> = None;
        self.store.visit_from_floor(TIMELINE, &prefix, &start, |_, value| {
            for event in decode_timeline(value)? {
                let version = event.stream_version;
                if version < from_version || last.is_some_and(|last| version <= last) {
                    continue;
                }
                last = Some(version);
                events.push(event);
                if events.len() >= max {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(events)
    }

    /// Every event of `customer` applied so far, in stream order.
    pub fn history(&self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        self.timeline(customer, 0, usize::MAX)
    }

    /// A page of promises matching `filter`, after the key `after`.
    pub fn promises(
        &self,
        filter: &PromiseFilter,
        after: Option<&[u8]>,
        page_size: usize,
        now: Timestamp,
    ) -> Result<Page<PromiseRecord>> {
        let prefix = filter.customer_id.as_ref().map(customer_prefix).unwrap_or_default();
        self.page(PROMISES, &prefix, after, page_size, |promise: &PromiseRecord| filter.accepts(promise, now))
    }

    /// A page of open complaints (of `customer`, or everyone's), after the key `after`.
    pub fn open_complaints(
        &self,
        customer: Option<&CustomerId>,
        after: Option<&[u8]>,
        page_size: usize,
    ) -> Result<Page<ComplaintRecord>> {
        let prefix = customer.map(customer_prefix).unwrap_or_default();
        self.page(COMPLAINTS, &prefix, after, page_size, |complaint: &ComplaintRecord| complaint.open)
    }

    /// Every fact organisation metrics need for `window`: the survey answers answered in it (a
    /// range scan of `surveys`), and the promises due in it, the complaints opened in it and the
    /// SLA clocks due in it, found by reading **every** promise and complaint (O(all promises
    /// and complaints) per call; there is no index by due date or opening time yet).
    pub fn org_facts(&self, window: Window) -> Result<Vec<Fact>> {
        let mut facts = Vec::new();
        self.store.visit(SURVEYS, b"", &time_bytes(window.from), |key, value| {
            let answered_at = survey_time(key)?;
            if answered_at >= window.to {
                return Ok(false);
            }
            let survey: SurveyFact = covenant_store::decode(SURVEYS, value)?;
            facts.push(Fact::Survey {
                kind: survey.kind,
                score: survey.score,
                answered_at,
                attribution: survey.attribution,
            });
            Ok(true)
        })?;
        self.store.visit(PROMISES, b"", b"", |_, value| {
            let promise: PromiseRecord = covenant_store::decode(PROMISES, value)?;
            if window.contains(promise.due_at) {
                facts.push(promise_fact(&promise));
            }
            Ok(true)
        })?;
        self.store.visit(COMPLAINTS, b"", b"", |key, value| {
            let complaint: ComplaintRecord = covenant_store::decode(COMPLAINTS, value)?;
            let opened_in_window = window.contains(complaint.opened_at);
            if !opened_in_window && !complaint.clocks.iter().any(|clock| window.contains(clock.due_at)) {
                return Ok(true);
            }
            let resolved_at =
                if opened_in_window { self.store.get::<Timestamp>(RESOLUTIONS, key)? } else { None };
            facts.extend(complaint_facts(&complaint, resolved_at).into_iter().filter(|fact| match fact {
                Fact::Complaint { opened_at, .. } => window.contains(*opened_at),
                Fact::SlaClock { due_at, .. } => window.contains(*due_at),
                Fact::Survey { .. } | Fact::Promise { .. } => true,
            }));
            Ok(true)
        })?;
        Ok(facts)
    }

    /// When the complaint under `customer`/`complaint_id` was last resolved (`None`: open, or
    /// unknown).
    pub fn resolved_at(&self, customer: &CustomerId, complaint_id: &str) -> Result<Option<Timestamp>> {
        self.store.get(RESOLUTIONS, &child_key(customer, complaint_id))
    }

    fn page<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        page_size: usize,
        accepts: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        let start = after.map(|after| [after, &[0]].concat()).unwrap_or_else(|| prefix.to_vec());
        let mut items = Vec::new();
        let mut next = None;
        let mut scanned = 0;
        self.store.visit(family, prefix, &start, |key, value| {
            scanned += 1;
            let item: T = covenant_store::decode(family, value)?;
            if accepts(&item) {
                items.push(item);
            }
            if items.len() >= page_size || scanned >= MAX_SCAN {
                next = Some(key.to_vec());
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(Page { items, next })
    }

    /// Applies consecutive events of `partition` and moves its checkpoint, in one write.
    pub fn apply_events(&self, partition: u16, events: &[RecordedEvent]) -> Result<()> {
        let mut applier = self.applier(partition);
        let mut encoded = Vec::new();
        for event in events {
            encoded.clear();
            postcard::to_io(event, &mut encoded).map_err(StoreError::Encode)?;
            applier.apply(AppliedEvent::of(event, &encoded))?;
        }
        applier.commit()
    }

    /// Starts a batch of consecutive events of `partition` to apply one by one
    /// ([`BatchApplier::apply`]) and write together with the partition's checkpoint
    /// ([`BatchApplier::commit`]).
    pub fn applier(&self, partition: u16) -> BatchApplier<'_> {
        BatchApplier {
            owner: self,
            partition,
            customers: Touched::default(),
            promises: Touched::default(),
            complaints: Touched::default(),
            batch: self.store.batch(),
            next_offset: None,
        }
    }
}

/// Whether applying an event of the catalogue's `event_index`-th type
/// ([`covenant_domain::events::EVENT_TYPES`]) reads its payload: registrations and tier changes
/// (the SLA clocks' tier), complaints, promises and survey answers. For the others the projections
/// need only the envelope, so a rebuild from the log need not decode them (a test applies one
/// event of every type both ways).
pub fn reads_payload(event_index: u32) -> bool {
    // What the SLA clocks' rules read, and complaint escalations (counted) and survey answers.
    covenant_domain::deadlines::reads_payload(event_index) || matches!(event_index, 11 | 23)
}

/// One event as the projections apply it: its envelope, its encoding as the public stream
/// carries it (postcard, no personal data: what the timeline keeps), and the decoded event,
/// which must be there when [`reads_payload`] says so.
#[derive(Debug, Clone, Copy)]
pub struct AppliedEvent<'a> {
    pub customer_id: &'a str,
    pub stream_version: u64,
    pub position: covenant_domain::Position,
    pub event_id: covenant_domain::EventId,
    pub event_index: u32,
    pub occurred_at: Timestamp,
    pub encoded: &'a [u8],
    pub event: Option<&'a RecordedEvent>,
}

impl<'a> AppliedEvent<'a> {
    /// A whole event and its encoding.
    pub fn of(event: &'a RecordedEvent, encoded: &'a [u8]) -> Self {
        Self {
            customer_id: event.customer_id.as_str(),
            stream_version: event.stream_version,
            position: event.position,
            event_id: event.event_id,
            event_index: u32::try_from(event.event.catalogue_index()).unwrap_or(u32::MAX),
            occurred_at: event.metadata.occurred_at,
            encoded,
            event: Some(event),
        }
    }
}

/// A hash map for the records a batch touches (a fast hash: the keys are ids from the log).
type Touched<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Room kept before a segment's encoded events for its header: the format byte and the event
/// count (a postcard varint of at most 10 bytes).
const SEGMENT_HEADER_ROOM: usize = 11;

/// The band tracker's cause, kept as plain values while a batch runs.
#[derive(Debug, Clone, Copy)]
struct LatestEvent {
    event_id: covenant_domain::EventId,
    event_index: u32,
    position: covenant_domain::Position,
    occurred_at: Timestamp,
}

impl LatestEvent {
    fn cause(&self) -> Cause {
        Cause {
            event_id: self.event_id,
            event_type: covenant_domain::events::EVENT_TYPES
                .get(self.event_index as usize)
                .copied()
                .unwrap_or("unknown")
                .to_owned(),
            position: self.position,
            occurred_at: self.occurred_at,
        }
    }
}

/// What a batch changed for one customer.
struct TouchedCustomer {
    record: CustomerRecord,
    /// Their events of this batch: the first's stream version, how many, and their encodings
    /// one after the other after [`SEGMENT_HEADER_ROOM`] bytes (the timeline segment).
    first_version: u64,
    events: u64,
    segment: Vec<u8>,
    /// Their latest event of the batch, for the band tracker.
    latest: LatestEvent,
}

/// A batch of one partition's consecutive events being applied (see
/// [`StandingStore::applier`]): the records they touch are loaded once and kept in memory until
/// [`BatchApplier::commit`] writes them, each customer's events of the batch as one timeline
/// segment, and the checkpoint, in one `WriteBatch`.
pub struct BatchApplier<'s> {
    owner: &'s StandingStore,
    partition: u16,
    customers: Touched<CustomerId, TouchedCustomer>,
    promises: Touched<Vec<u8>, PromiseRecord>,
    complaints: Touched<Vec<u8>, ComplaintRecord>,
    batch: covenant_store::Batch<'s>,
    next_offset: Option<u64>,
}

impl std::fmt::Debug for BatchApplier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchApplier")
            .field("partition", &self.partition)
            .field("customers", &self.customers.len())
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl BatchApplier<'_> {
    /// Applies the partition's next event.
    pub fn apply(&mut self, applied: AppliedEvent<'_>) -> Result<()> {
        let store = &self.owner.store;
        let latest = LatestEvent {
            event_id: applied.event_id,
            event_index: applied.event_index,
            position: applied.position,
            occurred_at: applied.occurred_at,
        };
        let touched = match self.customers.get_mut(applied.customer_id) {
            Some(touched) => touched,
            None => {
                let customer_id =
                    CustomerId::new(applied.customer_id).map_err(|error| StoreError::Corrupt {
                        family: TIMELINE.into(),
                        reason: format!("an event's customer id: {error}"),
                    })?;
                let record: CustomerRecord =
                    store.get(CUSTOMERS, customer_id.as_str().as_bytes())?.unwrap_or_default();
                let mut segment = Vec::with_capacity(SEGMENT_HEADER_ROOM + 4 * applied.encoded.len());
                segment.resize(SEGMENT_HEADER_ROOM, 0);
                let touched = TouchedCustomer {
                    record,
                    first_version: applied.stream_version,
                    events: 0,
                    segment,
                    latest,
                };
                self.customers.entry(customer_id).or_insert(touched)
            }
        };
        touched.record.stream_version = applied.stream_version;
        touched.record.events_applied += 1;
        touched.events += 1;
        touched.segment.extend_from_slice(applied.encoded);
        touched.latest = latest;
        self.next_offset = Some(applied.position.offset + 1);
        let Some(event) = applied.event else {
            if reads_payload(applied.event_index) {
                return Err(StoreError::Corrupt {
                    family: TIMELINE.into(),
                    reason: format!(
                        "the event at partition {} offset {} was applied without its payload",
                        applied.position.partition, applied.position.offset
                    ),
                });
            }
            return Ok(());
        };
        let customer_id = &event.customer_id;
        let occurred_at = event.metadata.occurred_at;
        let changes = deadline_changes(
            &mut touched.record.watch,
            customer_id,
            &event.event,
            occurred_at,
            &self.owner.policy,
        );

        if let Some((survey_id, answered_at, survey)) = survey_answered(event) {
            self.batch.put(SURVEYS, &survey_key(answered_at, customer_id, survey_id.as_str()), &survey)?;
        }

        if let Some(promise) = promise_made(event) {
            self.promises.insert(child_key(customer_id, promise.promise_id.as_str()), promise);
        } else if let Some(promise_id) = event.event.promise_id() {
            let key = child_key(customer_id, promise_id.as_str());
            match load(store, PROMISES, &mut self.promises, &key)? {
                Some(promise) => update_promise(promise, &event.event, occurred_at),
                None => {
                    tracing::warn!(customer = %customer_id, %promise_id, "event about an unknown promise")
                }
            }
        }

        if let Some(complaint) = complaint_opened(event) {
            self.complaints.insert(child_key(customer_id, complaint.complaint_id.as_str()), complaint);
        }
        if let Some(complaint_id) = event.event.complaint_id() {
            let key = child_key(customer_id, complaint_id.as_str());
            match load(store, COMPLAINTS, &mut self.complaints, &key)? {
                Some(complaint) => {
                    update_complaint(complaint, &event.event, occurred_at);
                    for change in &changes {
                        apply_clock_change(complaint, change, occurred_at);
                    }
                    // In event order within the batch: a later resolve or reopen wins.
                    match &event.event {
                        Event::ComplaintResolved { .. } => self.batch.put(RESOLUTIONS, &key, &occurred_at)?,
                        Event::ComplaintReopened { .. } => self.batch.delete(RESOLUTIONS, &key)?,
                        _ => {}
                    }
                }
                None => {
                    tracing::warn!(customer = %customer_id, %complaint_id, "event about an unknown complaint")
                }
            }
        }
        Ok(())
    }

    /// Writes what the batch changed and the partition's new checkpoint, together (nothing to
    /// write when no event was applied).
    pub fn commit(self) -> Result<()> {
        let Self { owner, partition, customers, promises, complaints, mut batch, next_offset } = self;
        let Some(next_offset) = next_offset else { return Ok(()) };
        // Each family's rows go into the batch in key order: RocksDB inserts a batch's keys into
        // the memtable's skip list one after the other, and a key just after the previous one
        // is found from where that one went instead of from the top (a rebuild's chunk writes
        // tens of thousands of rows).
        let mut customers: Vec<_> = customers.into_iter().collect();
        customers.sort_unstable_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
        let mut promises: Vec<_> = promises.into_iter().collect();
        promises.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let mut complaints: Vec<_> = complaints.into_iter().collect();
        complaints.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let mut marked = Vec::with_capacity(customers.len());
        let mut header = Vec::with_capacity(SEGMENT_HEADER_ROOM);
        for (customer_id, touched) in &mut customers {
            header.clear();
            header.push(SEGMENT_FORMAT);
            push_varint(&mut header, touched.events);
            let start = SEGMENT_HEADER_ROOM - header.len();
            touched.segment[start..SEGMENT_HEADER_ROOM].copy_from_slice(&header);
            batch.put_raw(
                TIMELINE,
                &timeline_key(customer_id, touched.first_version),
                &touched.segment[start..],
            )?;
            batch.put(CUSTOMERS, customer_id.as_str().as_bytes(), &touched.record)?;
            let key = dirty_key(customer_id, touched.latest.position);
            let cause = touched.latest.cause();
            batch.put(BAND_DIRTY, &key, &cause)?;
            if owner.mirror_marks {
                marked.push((key, cause));
            }
        }
        for (key, record) in &promises {
            batch.put(PROMISES, key, record)?;
        }
        for (key, record) in &complaints {
            batch.put(COMPLAINTS, key, record)?;
        }
        batch.set_checkpoint(partition, next_offset)?;
        batch.commit()?;
        owner.marks().extend(marked);
        owner.band_wake.notify_one();
        Ok(())
    }
}

/// Appends `value` as postcard encodes a sequence's length (LEB128).
fn push_varint(bytes: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
}

/// The record under `key`: from this batch's changes, else from the store (then cached).
fn load<'a, T: serde::de::DeserializeOwned>(
    store: &Store,
    family: &str,
    cache: &'a mut Touched<Vec<u8>, T>,
    key: &[u8],
) -> Result<Option<&'a mut T>> {
    if !cache.contains_key(key) {
        match store.get::<T>(family, key)? {
            Some(record) => {
                cache.insert(key.to_vec(), record);
            }
            None => return Ok(None),
        }
    }
    Ok(cache.get_mut(key))
}

impl EventSink for StandingStore {
    fn next_offset(&self, partition: u16) -> std::result::Result<u64, SinkError> {
        Ok(self.store.checkpoint(partition)?)
    }

    fn apply(&self, partition: u16, events: &[RecordedEvent]) -> std::result::Result<(), SinkError> {
        let started = std::time::Instant::now();
        self.apply_events(partition, events).map_err(|error: StoreError| -> SinkError { Box::new(error) })?;
        metrics::histogram!("covenant_projection_apply_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("covenant_projection_events_total").increment(events.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::testing::*;
    use covenant_domain::Span;
    use covenant_domain::events::{
        ActorKind, BreakDetection, Channel, ResolutionOutcome, SlaTarget, SurveyKind,
    };
    use covenant_domain::ids::{ComplaintId, PromiseId, SurveyId, TeamId};
    use covenant_domain::org_metrics::{DurationSummary, GroupBy, GroupMetrics, org_metrics};

    fn open(dir: &Path) -> StandingStore {
        StandingStore::open(dir, 1, SlaPolicy::default()).unwrap()
    }

    #[test]
    fn events_of_one_batch_see_each_other_and_the_checkpoint_moves_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let promise_id = PromiseId::new("p-1").unwrap();
        let events = vec![
            recorded("alice", 1, at(0), promise("p-1", at(3600))),
            recorded(
                "alice",
                2,
                at(60),
                Event::PromiseKept { promise_id: promise_id.clone(), kept_at: at(60), evidence: no_text() },
            ),
            recorded("alice", 3, at(70), complaint("c-1")),
        ];
        store.apply_events(0, &events).unwrap();
        assert_eq!(store.store.checkpoint(0).unwrap(), 3);
        let alice = CustomerId::new("alice").unwrap();
        let filter = PromiseFilter { customer_id: Some(alice.clone()), ..Default::default() };
        let page = store.promises(&filter, None, 10, at(100)).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].status, PromiseStatus::Kept);
        assert_eq!(page.next, None);
        let complaints = store.open_complaints(Some(&alice), None, 10).unwrap();
        assert_eq!(complaints.items.len(), 1);
        assert_eq!(complaints.items[0].clocks.len(), 2);
        assert!(complaints.items[0].clocks.iter().any(|clock| clock.target == SlaTarget::FirstReply));
        assert_eq!(store.history(&alice).unwrap(), events);
        assert_eq!(store.timeline(&alice, 2, 10).unwrap(), events[1..].to_vec());
        let record = store.customer(&alice).unwrap().unwrap();
        assert_eq!((record.stream_version, record.events_applied), (3, 3));

        // Reopened, a later batch builds on what the first one stored.
        drop(store);
        let store = open(dir.path());
        let broken = recorded("alice", 4, at(100), promise("p-2", at(50)));
        store.apply_events(0, std::slice::from_ref(&broken)).unwrap();
        assert_eq!(store.store.checkpoint(0).unwrap(), 4);
        let overdue = PromiseFilter { overdue_only: true, ..Default::default() };
        let page = store.promises(&overdue, None, 10, at(200)).unwrap();
        assert_eq!(page.items.iter().map(|promise| promise.promise_id.as_str()).collect::<Vec<_>>(), ["p-2"]);
    }

    #[test]
    fn pages_resume_after_the_last_key_and_prefixes_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut events = Vec::new();
        for (index, customer) in ["al", "alice", "bob"].iter().enumerate() {
            for promise in 0..3 {
                let version = promise + 1;
                let mut event = recorded(
                    customer,
                    version,
                    at(0),
                    super::super::views::testing::promise(&format!("p-{promise}"), at(10)),
                );
                event.position.offset = (index * 3) as u64 + promise;
                events.push(event);
            }
        }
        store.apply_events(0, &events).unwrap();
        let al = PromiseFilter { customer_id: Some(CustomerId::new("al").unwrap()), ..Default::default() };
        assert_eq!(
            store.promises(&al, None, 100, at(0)).unwrap().items.len(),
            3,
            "al's prefix excludes alice"
        );
        let all = PromiseFilter::default();
        let mut after: Option<Vec<u8>> = None;
        let mut seen = Vec::new();
        loop {
            let page = store.promises(&all, after.as_deref(), 2, at(0)).unwrap();
            seen.extend(
                page.items
                    .into_iter()
                    .map(|promise| format!("{}/{}", promise.customer_id, promise.promise_id)),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 9);
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 9, "no promise twice across pages");
    }

    /// Two customers' events interleaved in one partition (alice 1..=4, bob 1..=3), offsets in
    /// order.
    fn interleaved() -> Vec<RecordedEvent> {
        let plan =
            [("alice", 1), ("bob", 1), ("alice", 2), ("alice", 3), ("bob", 2), ("alice", 4), ("bob", 3)];
        plan.iter()
            .enumerate()
            .map(|(offset, (customer, version))| {
                let event = if *version == 1 {
                    promise(&format!("p-{customer}"), at(3600))
                } else {
                    kept(&format!("p-{customer}"), at(60))
                };
                at_offset(recorded(customer, *version, at(offset as i64), event), offset as u64)
            })
            .collect()
    }

    /// `events` applied in batches cut after the offsets whose bit is set in `cuts`.
    fn apply_cut(store: &StandingStore, events: &[RecordedEvent], cuts: u32) {
        let mut start = 0;
        for end in 1..=events.len() {
            if end == events.len() || cuts & (1 << (end - 1)) != 0 {
                store.apply_events(0, &events[start..end]).unwrap();
                start = end;
            }
        }
    }

    #[test]
    fn timelines_read_the_same_however_the_batches_cut_them_into_segments() {
        let events = interleaved();
        let alice = CustomerId::new("alice").unwrap();
        let bob = CustomerId::new("bob").unwrap();
        let of = |customer: &CustomerId| -> Vec<RecordedEvent> {
            events.iter().filter(|event| event.customer_id == *customer).cloned().collect()
        };
        let mut reference: Option<StandingStore> = None;
        let mut reference_dir = None;
        // Every way to cut 7 events into consecutive batches.
        for cuts in 0..(1u32 << (events.len() - 1)) {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            apply_cut(&store, &events, cuts);
            for customer in [&alice, &bob] {
                let history = of(customer);
                assert_eq!(store.history(customer).unwrap(), history, "cuts {cuts:b}");
                for from in 0..=history.len() as u64 + 1 {
                    for max in [1, 2, 10] {
                        let expected: Vec<_> = history
                            .iter()
                            .filter(|event| event.stream_version >= from)
                            .take(max)
                            .cloned()
                            .collect();
                        assert_eq!(
                            store.timeline(customer, from, max).unwrap(),
                            expected,
                            "cuts {cuts:b} from {from} max {max}"
                        );
                    }
                }
            }
            assert_eq!(store.timeline(&alice, 1, 0).unwrap(), Vec::new());
            match &reference {
                None => {
                    reference = Some(store);
                    reference_dir = Some(dir);
                }
                Some(reference) => assert_eq!(
                    first_timeline_difference(&reference.store, &store.store).unwrap(),
                    None,
                    "cuts {cuts:b}: the same histories in other segments"
                ),
            }
        }
        drop(reference_dir);
    }

    #[test]
    fn timelines_written_an_event_per_value_still_read_and_overlaps_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let events = interleaved();
        let alice = CustomerId::new("alice").unwrap();
        let alice_events: Vec<RecordedEvent> =
            events.iter().filter(|event| event.customer_id == alice).cloned().collect();
        // Versions 1 and 2 as an older binary wrote them (one format-1 value each), 2..=4 as a
        // segment overlapping version 2.
        let mut batch = store.store.batch();
        for event in &alice_events[..2] {
            batch.put(TIMELINE, &timeline_key(&alice, event.stream_version), event).unwrap();
        }
        let segment: Vec<&RecordedEvent> = alice_events[1..].iter().collect();
        batch.put_raw(TIMELINE, &timeline_key(&alice, 2), &encode_segment(&segment).unwrap()).unwrap();
        batch.commit().unwrap();
        // The 2-keyed value was overwritten by the segment; version 1 is a format-1 value.
        assert_eq!(store.history(&alice).unwrap(), alice_events);
        assert_eq!(store.timeline(&alice, 3, 10).unwrap(), alice_events[2..].to_vec());

        // A segment starting at 3 again (versions 3 and 4 applied twice) adds nothing.
        let again: Vec<&RecordedEvent> = alice_events[2..].iter().collect();
        let mut batch = store.store.batch();
        batch.put_raw(TIMELINE, &timeline_key(&alice, 3), &encode_segment(&again).unwrap()).unwrap();
        batch.commit().unwrap();
        assert_eq!(store.history(&alice).unwrap(), alice_events, "each version once");

        // Compared with a store that applied the same events: equal; then one differs.
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(other_dir.path());
        other.apply_events(0, &alice_events).unwrap();
        assert_eq!(first_timeline_difference(&store.store, &other.store).unwrap(), None);
        let mut changed = alice_events[2].clone();
        changed.metadata.occurred_at = at(999);
        other.apply_events(0, std::slice::from_ref(&changed)).unwrap();
        // The later segment of `other` (key 3) does not replace version 3 of its first one.
        assert_eq!(first_timeline_difference(&store.store, &other.store).unwrap(), None);
        let third_dir = tempfile::tempdir().unwrap();
        let third = open(third_dir.path());
        third.apply_events(0, &[alice_events[0].clone(), alice_events[1].clone(), changed.clone()]).unwrap();
        let difference = first_timeline_difference(&store.store, &third.store).unwrap().unwrap();
        assert_eq!((difference.customer_id.as_str(), difference.stream_version), ("alice", 3));
        assert_eq!((difference.left, difference.right), (Some(alice_events[2].clone()), Some(changed)));
        let difference = first_timeline_difference(&third.store, &store.store).unwrap().unwrap();
        assert_eq!(difference.stream_version, 3, "the same place from either side");
        let fourth_dir = tempfile::tempdir().unwrap();
        let fourth = open(fourth_dir.path());
        fourth.apply_events(0, &alice_events[..3]).unwrap();
        let difference = first_timeline_difference(&store.store, &fourth.store).unwrap().unwrap();
        assert_eq!(difference.stream_version, 4);
        assert_eq!(
            (difference.left, difference.right),
            (Some(alice_events[3].clone()), None),
            "a missing event"
        );

        // Values that are neither format are corrupt, not a panic.
        assert!(matches!(decode_timeline(&[9, 1, 2]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_timeline(&[]), Err(StoreError::Corrupt { .. })));
        assert!(matches!(decode_timeline(&[SEGMENT_FORMAT, 3, 1]), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn events_whose_payload_the_projections_do_not_read_apply_the_same_without_it() {
        use covenant_proto::convert::fixtures::every_event_on_one_stream;
        let events = every_event_on_one_stream();
        let whole_dir = tempfile::tempdir().unwrap();
        let whole = open(whole_dir.path());
        let envelope_dir = tempfile::tempdir().unwrap();
        let envelope_only = open(envelope_dir.path());
        // Compared after every event: a later event must not hide what an earlier one missed.
        for event in &events {
            whole.apply_events(0, std::slice::from_ref(event)).unwrap();
            let encoded = postcard::to_allocvec(event).unwrap();
            let mut applied = AppliedEvent::of(event, &encoded);
            if !reads_payload(applied.event_index) {
                applied.event = None;
            }
            let mut applier = envelope_only.applier(0);
            applier.apply(applied).unwrap();
            applier.commit().unwrap();
            let kind = event.event_type();
            for family in [CUSTOMERS, PROMISES, COMPLAINTS, RESOLUTIONS, SURVEYS, BAND_DIRTY] {
                assert_eq!(
                    whole.store.first_difference(&envelope_only.store, family).unwrap(),
                    None,
                    "{kind}: {family}"
                );
            }
            assert_eq!(
                first_timeline_difference(&whole.store, &envelope_only.store).unwrap(),
                None,
                "{kind}"
            );
        }
        assert_eq!(envelope_only.history(&events[0].customer_id).unwrap(), events);

        // An event whose payload is read, applied without it, is refused.
        let promise_made = events.iter().find(|event| event.event_type() == "promise_made").unwrap();
        let encoded = postcard::to_allocvec(promise_made).unwrap();
        let mut applier = envelope_only.applier(0);
        let mut applied = AppliedEvent::of(promise_made, &encoded);
        applied.event = None;
        assert!(matches!(applier.apply(applied), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_long_segment_counts_its_events_in_a_multi_byte_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let events: Vec<RecordedEvent> = (1..=300)
            .map(|version| {
                recorded(
                    "carol",
                    version,
                    at(version as i64),
                    survey(&format!("s-{version}"), SurveyKind::Csat, 4),
                )
            })
            .collect();
        store.apply_events(0, &events).unwrap();
        let carol = CustomerId::new("carol").unwrap();
        assert_eq!(store.history(&carol).unwrap(), events);
        assert_eq!(store.timeline(&carol, 200, 2).unwrap(), events[199..201].to_vec());
        let mut bytes = Vec::new();
        push_varint(&mut bytes, 300);
        assert_eq!(bytes, postcard::to_allocvec(&300usize).unwrap());
    }

    #[test]
    fn a_rebuilt_store_holds_what_it_applied_after_it_is_finished_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let events = interleaved();
        {
            let store = StandingStore::open_for_rebuild(dir.path(), 1, SlaPolicy::default()).unwrap();
            store.apply_events(0, &events).unwrap();
            // A read-only view sees the files only: nothing before the flush (no WAL), then all.
            assert_eq!(Store::open_read_only(dir.path()).unwrap().checkpoint(0).unwrap(), 0);
            store.finish_rebuild().unwrap();
            assert_eq!(
                Store::open_read_only(dir.path()).unwrap().checkpoint(0).unwrap(),
                events.len() as u64
            );
        }
        let store = open(dir.path());
        assert_eq!(store.store.checkpoint(0).unwrap(), events.len() as u64);
        let bob = CustomerId::new("bob").unwrap();
        assert_eq!(store.history(&bob).unwrap().len(), 3);
        assert_eq!(store.customer(&bob).unwrap().unwrap().stream_version, 3);
    }

    /// `event` as the `offset + 1`-th event of the partition.
    fn at_offset(mut event: RecordedEvent, offset: u64) -> RecordedEvent {
        event.position.offset = offset;
        event
    }

    fn survey(id: &str, kind: SurveyKind, score: u8) -> Event {
        Event::SurveyAnswered {
            survey_id: SurveyId::new(id).unwrap(),
            kind,
            score,
            comment: no_text(),
            related_ref: None,
        }
    }

    fn resolved(id: &str) -> Event {
        Event::ComplaintResolved {
            complaint_id: ComplaintId::new(id).unwrap(),
            outcome: ResolutionOutcome::Resolved,
        }
    }

    fn reopened(id: &str) -> Event {
        Event::ComplaintReopened { complaint_id: ComplaintId::new(id).unwrap(), reason: no_text() }
    }

    fn kept(id: &str, kept_at: Timestamp) -> Event {
        Event::PromiseKept { promise_id: PromiseId::new(id).unwrap(), kept_at, evidence: no_text() }
    }

    /// 30 days from 1000 s before the test epoch.
    fn window() -> Window {
        Window::new(at(-1000), at(30 * 86_400)).unwrap()
    }

    /// Long after every test promise and SLA clock was due.
    fn later() -> Timestamp {
        at(60 * 86_400)
    }

    fn metrics(store: &StandingStore, group_by: GroupBy) -> Vec<GroupMetrics> {
        org_metrics(store.org_facts(window()).unwrap(), window(), group_by, later())
    }

    fn group<'a>(groups: &'a [GroupMetrics], name: &str) -> &'a GroupMetrics {
        groups
            .iter()
            .find(|group| group.group == name)
            .unwrap_or_else(|| panic!("no group {name}: {groups:#?}"))
    }

    #[test]
    fn org_facts_come_from_surveys_promises_and_complaints_with_their_resolutions() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let alice = CustomerId::new("alice").unwrap();
        let mut bob_survey = at_offset(recorded("bob", 1, at(100), survey("s-1", SurveyKind::Csat, 2)), 10);
        bob_survey.metadata.team = Some(TeamId::new("sales").unwrap());
        bob_survey.metadata.actor.kind = ActorKind::Customer;
        bob_survey.metadata.channel = Some(Channel::Web);
        let events = vec![
            recorded("alice", 1, at(0), complaint("c-1")),
            recorded(
                "alice",
                2,
                at(60),
                Event::ComplaintResponded { complaint_id: ComplaintId::new("c-1").unwrap(), first: true },
            ),
            recorded("alice", 3, at(120), resolved("c-1")),
            // Agent agent-1 of team support, by phone (the sample metadata).
            recorded("alice", 4, at(100), survey("s-1", SurveyKind::Nps, 10)),
            recorded("alice", 5, at(0), promise("on-time", at(3600))),
            recorded("alice", 6, at(60), kept("on-time", at(60))),
            recorded("alice", 7, at(0), promise("late", at(50))),
            recorded("alice", 8, at(100), kept("late", at(100))),
            recorded("alice", 9, at(0), promise("broken", at(50))),
            recorded(
                "alice",
                10,
                at(80),
                Event::PromiseBroken {
                    promise_id: PromiseId::new("broken").unwrap(),
                    detection: BreakDetection::CustomerReport,
                    due_at: at(50),
                    detected_at: at(80),
                    reason: no_text(),
                },
            ),
            bob_survey,
        ];
        store.apply_events(0, &events).unwrap();
        assert_eq!(store.resolved_at(&alice, "c-1").unwrap(), Some(at(120)));

        let overall = metrics(&store, GroupBy::Overall);
        assert_eq!(overall.len(), 1);
        let all = &overall[0];
        assert_eq!((all.nps.answers, all.nps.score), (1, Some(100)));
        assert_eq!((all.csat.answers, all.csat.satisfied, all.csat.satisfied_percent), (1, 0, Some(0.0)));
        assert_eq!(
            (all.promises.due, all.promises.kept_on_time, all.promises.kept_late, all.promises.broken),
            (3, 1, 1, 1)
        );
        assert_eq!(all.promises.open_past_due, 0);
        assert_eq!((all.complaints.opened, all.complaints.replied, all.complaints.resolved), (1, 1, 1));
        assert_eq!(
            all.complaints.first_reply,
            Some(DurationSummary { samples: 1, p50_secs: 60.0, p90_secs: 60.0 })
        );
        assert_eq!(
            all.complaints.resolution,
            Some(DurationSummary { samples: 1, p50_secs: 120.0, p90_secs: 120.0 })
        );
        // Both clocks stopped early (replied after a minute, resolved after two).
        assert_eq!((all.sla.decided, all.sla.met), (2, 2));

        let by_team = metrics(&store, GroupBy::Team);
        assert_eq!(
            by_team.iter().map(|group| group.group.as_str()).collect::<Vec<_>>(),
            ["(none)", "sales", "support"]
        );
        assert_eq!(group(&by_team, "(none)").complaints.opened, 1, "complaints carry no team");
        assert_eq!(group(&by_team, "(none)").sla.decided, 2);
        assert_eq!(group(&by_team, "sales").csat.answers, 1);
        assert_eq!(group(&by_team, "sales").promises.due, 0);
        let support = group(&by_team, "support");
        assert_eq!((support.nps.answers, support.csat.answers, support.promises.due), (1, 0, 3));
        assert_eq!(support.promises.keeping_rate_percent, Some(100.0 / 3.0));

        let by_agent = metrics(&store, GroupBy::Agent);
        assert_eq!(
            by_agent.iter().map(|group| group.group.as_str()).collect::<Vec<_>>(),
            ["(none)", "agent-1"]
        );
        assert_eq!(group(&by_agent, "(none)").csat.answers, 1, "a customer's own answer has no agent");
        assert_eq!(group(&by_agent, "agent-1").nps.answers, 1);
        assert_eq!(group(&by_agent, "agent-1").promises.due, 3, "promises go to their maker");

        let by_channel = metrics(&store, GroupBy::Channel);
        assert_eq!(
            by_channel.iter().map(|group| group.group.as_str()).collect::<Vec<_>>(),
            ["(none)", "email", "phone", "web"]
        );
        assert_eq!(group(&by_channel, "(none)").promises.due, 3, "promises carry no channel");
        assert_eq!(group(&by_channel, "email").complaints.opened, 1);
        assert_eq!(group(&by_channel, "email").sla.decided, 2);
        assert_eq!(group(&by_channel, "phone").nps.answers, 1);
        assert_eq!(group(&by_channel, "web").csat.answers, 1);

        let by_kind = metrics(&store, GroupBy::PromiseKind);
        assert_eq!(by_kind.len(), 1);
        assert_eq!((by_kind[0].group.as_str(), by_kind[0].promises.due), ("callback", 3));

        // Reopened: no resolution any more.
        store.apply_events(0, &[at_offset(recorded("alice", 11, at(200), reopened("c-1")), 11)]).unwrap();
        assert_eq!(store.resolved_at(&alice, "c-1").unwrap(), None);
        let all = &metrics(&store, GroupBy::Overall)[0];
        assert_eq!((all.complaints.opened, all.complaints.resolved), (1, 0));
        assert_eq!(all.complaints.resolution, None);

        // Resolved, reopened and resolved again in one batch: the last one counts.
        let batch = vec![
            at_offset(recorded("alice", 12, at(300), resolved("c-1")), 12),
            at_offset(recorded("alice", 13, at(400), reopened("c-1")), 13),
            at_offset(recorded("alice", 14, at(500), resolved("c-1")), 14),
        ];
        store.apply_events(0, &batch).unwrap();
        assert_eq!(store.resolved_at(&alice, "c-1").unwrap(), Some(at(500)));
        let all = &metrics(&store, GroupBy::Overall)[0];
        assert_eq!(all.complaints.resolved, 1);
        assert_eq!(all.complaints.resolution.as_ref().map(|summary| summary.p50_secs), Some(500.0));
        // …and a reopen as the last event of a batch deletes it again.
        let batch = vec![
            at_offset(recorded("alice", 15, at(600), resolved("c-1")), 15),
            at_offset(recorded("alice", 16, at(700), reopened("c-1")), 16),
        ];
        store.apply_events(0, &batch).unwrap();
        assert_eq!(store.resolved_at(&alice, "c-1").unwrap(), None);
        assert_eq!(store.store.checkpoint(0).unwrap(), 17);
    }

    #[test]
    fn surveys_are_read_for_the_window_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let events: Vec<RecordedEvent> = [(1, 0), (2, 10), (3, 20), (4, 30)]
            .into_iter()
            .map(|(version, seconds)| {
                recorded("alice", version, at(seconds), survey(&format!("s-{version}"), SurveyKind::Nps, 9))
            })
            .collect();
        store.apply_events(0, &events).unwrap();
        let answered = |from: i64, to: i64| -> Vec<Timestamp> {
            let window = Window::new(at(from), at(to)).unwrap();
            store
                .org_facts(window)
                .unwrap()
                .into_iter()
                .map(|fact| match fact {
                    Fact::Survey { answered_at, .. } => answered_at,
                    other => panic!("not a survey: {other:?}"),
                })
                .collect()
        };
        assert_eq!(answered(10, 30), [at(10), at(20)], "from is in, to is out");
        assert_eq!(answered(-100, 100), [at(0), at(10), at(20), at(30)]);
        assert_eq!(answered(31, 100), Vec::<Timestamp>::new());
        let one = Window::new(at(20), at(20).plus(Span::from_millis(1))).unwrap();
        assert_eq!(store.org_facts(one).unwrap().len(), 1);
    }

    #[test]
    fn a_store_from_before_the_metrics_families_opens_and_fills_them() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), &[TIMELINE, CUSTOMERS, PROMISES, COMPLAINTS], 1).unwrap());
        let store = open(dir.path());
        let events = vec![
            recorded("alice", 1, at(0), complaint("c-1")),
            recorded("alice", 2, at(10), resolved("c-1")),
            recorded("alice", 3, at(20), survey("s-1", SurveyKind::Ces, 6)),
        ];
        store.apply_events(0, &events).unwrap();
        assert_eq!(store.resolved_at(&CustomerId::new("alice").unwrap(), "c-1").unwrap(), Some(at(10)));
        let all = &metrics(&store, GroupBy::Overall)[0];
        assert_eq!((all.ces.answers, all.ces.mean), (1, Some(6.0)));
        assert_eq!(all.complaints.resolved, 1);
    }
}
