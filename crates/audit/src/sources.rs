//! The two places an audit reads history from.
//!
//! - [`LogSource`]: a log directory or a backup (RocksDB checkpoint), opened read-only, so it
//!   works beside a running ledger and on a copy taken elsewhere. A scan checks every record's
//!   checksum and envelope but decodes only the event types asked for.
//! - [`LedgerSource`]: a running ledger over gRPC `EventLog` (`ReadAll` filtered by type,
//!   `ReadStream` per customer).
//!
//! Neither gives personal data: it is sealed at rest (`covenant_log::sealing`), so promise
//! descriptions come back empty from both.
//!
//! Both are blocking: call them off the async runtime's workers (`LedgerSource` drives its gRPC
//! calls with the runtime handle it was made on).

use std::path::Path;

use covenant_auth::AuthChannel;
use covenant_domain::ids::CustomerId;
use covenant_domain::views::RecordedEventView;
use covenant_domain::{DomainError, Position, RecordedEvent};
use covenant_log::LogReader;
use covenant_log::codec::{self, RecordView};
use covenant_proto::v1::{self, event_log_client::EventLogClient};
use tokio::runtime::Handle;

use crate::{AuditError, EventSource, PublicEvent, Result};

/// Customer-keyed maps of the audit's passes (looked up once per record scanned).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Records one read of the log covers.
const CHUNK: usize = 10_000;

/// Events of the streams read together by [`LogSource`]'s `streams` (what bounds the audit's
/// memory in its second pass, with the longest single stream).
const STREAMS_BATCH_EVENTS: u64 = 131_072;

/// Bytes of a partition's records the audit's first pass keeps for its second, per partition in
/// hand (see [`PartitionPasses`]): 64 MiB, about 260,000 records of 240 bytes.
pub const RETAINED_BYTES: usize = 64 << 20;

/// A log directory or a backup, read-only.
#[derive(Debug)]
pub struct LogSource {
    reader: LogReader,
    /// What [`PartitionPasses`] may keep of a partition between its passes.
    retained_bytes: usize,
}

impl LogSource {
    /// Opens the log at `path` (the directory holding its RocksDB files). Blocking.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self { reader: LogReader::open_read_only(path)?, retained_bytes: RETAINED_BYTES })
    }

    /// The same source, whose audit keeps at most `bytes` of a partition's records between its
    /// two passes (default [`RETAINED_BYTES`]; 0 reads everything twice).
    pub fn with_retained_bytes(mut self, bytes: usize) -> Self {
        self.retained_bytes = bytes;
        self
    }
}

impl LogSource {
    /// Reads every partition in chunks of [`CHUNK`] records: `chunk(partition, from)` reads one
    /// and says how many records it read. Returns the records read.
    fn chunks(&mut self, chunk: &mut dyn FnMut(&LogReader, u16, u64) -> Result<usize>) -> Result<u64> {
        let mut read = 0u64;
        for partition in 0..self.reader.partition_count() {
            read += self.partition_chunks(partition, chunk)?;
        }
        Ok(read)
    }

    /// [`Self::chunks`] of one partition.
    fn partition_chunks(
        &self,
        partition: u16,
        chunk: &mut dyn FnMut(&LogReader, u16, u64) -> Result<usize>,
    ) -> Result<u64> {
        let mut from = 0u64;
        loop {
            let visited = chunk(&self.reader, partition, from)?;
            from += visited as u64;
            if visited < CHUNK {
                return Ok(from);
            }
        }
    }

    /// Visits every record whose type is in `types` (all when `None`), partition by partition in
    /// offset order; the first error (of the scan or of `visit`) stops it. Returns the records
    /// read.
    fn scan(
        &mut self,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(&RecordView<'_>) -> covenant_log::Result<()>,
    ) -> Result<u64> {
        let mut read = 0;
        for partition in 0..self.reader.partition_count() {
            read += self.scan_partition(partition, types, visit)?;
        }
        Ok(read)
    }

    /// [`Self::scan`] of one partition.
    fn scan_partition(
        &self,
        partition: u16,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(&RecordView<'_>) -> covenant_log::Result<()>,
    ) -> Result<u64> {
        self.partition_chunks(partition, &mut |reader, partition, from| {
            let mut failed = None;
            let visited = reader.scan_views(partition, from, CHUNK, |record| {
                if failed.is_none() && types.is_none_or(|types| types.contains(&record.event_type())) {
                    failed = visit(&record).err();
                }
            })?;
            match failed {
                Some(error) => Err(error.into()),
                None => Ok(visited),
            }
        })
    }

    /// The partitions of the log (each holds whole customer streams).
    pub fn partition_count(&self) -> u16 {
        self.reader.partition_count()
    }

    /// Runs `work` for every partition on up to `threads` threads (each takes the next
    /// partition; the first error stops the taking) and returns the sum of what the jobs return
    /// (`LogReader::on_partitions`).
    pub fn on_partitions(&self, threads: usize, work: &(dyn Fn(u16) -> Result<u64> + Sync)) -> Result<u64> {
        self.reader.on_partitions(threads, work)
    }

    /// One partition, read as the audit's two passes read it ([`PartitionPasses`]).
    pub fn partition_passes(&self, partition: u16) -> PartitionPasses<'_> {
        PartitionPasses {
            log: self,
            partition,
            spans: HashMap::default(),
            retained: Retained::new(self.retained_bytes),
        }
    }

    /// The whole streams of `customers`, as [`EventSource::streams`], through a shared
    /// reference (several threads can read at once).
    pub fn read_streams(
        &self,
        customers: &[CustomerId],
        visit: &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>),
    ) -> Result<()> {
        let mut start = 0;
        while start < customers.len() {
            let mut end = start;
            let mut events = 0u64;
            while end < customers.len() && (end == start || events < STREAMS_BATCH_EVENTS) {
                events += self.reader.stream_version(&customers[end])?;
                end += 1;
            }
            let batch = &customers[start..end];
            for (customer, stream) in batch.iter().zip(self.reader.read_streams(batch)?) {
                visit(customer, stream);
            }
            start = end;
        }
        Ok(())
    }

    /// The public event of a record's view: the view itself unless it holds personal data (only
    /// records written before personal data was sealed apart, format 1).
    fn public(view: RecordedEventView<'_>) -> std::result::Result<PublicEvent<'_>, DomainError> {
        if view.event.holds_personal_data() {
            let mut event = view.to_owned()?;
            let _ = covenant_domain::personal::take_personal_data(&mut event.event);
            Ok(PublicEvent::Owned(event))
        } else {
            Ok(PublicEvent::Borrowed(view))
        }
    }
}

/// Records one unit of [`LogSource::public_chunks`] covers: big enough that a seek and a
/// hand-off are nothing beside it, small enough that the units in flight stay a few MiB of output.
pub const PARALLEL_CHUNK: u64 = 8_192;

/// One range of a partition that [`LogSource::public_chunks`] gives one thread.
#[derive(Debug, Clone, Copy)]
struct Unit {
    partition: u16,
    from: u64,
    records: u64,
}

/// Runs its function when dropped while the thread panics.
struct StopOnPanic<'a>(&'a dyn Fn());

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

/// The hand-off between [`LogSource::public_chunks`]'s workers and its merging caller.
struct Progress {
    /// Units merged so far; a worker waits before starting a unit this far or more ahead of it.
    merged: usize,
    /// Set when the merge or a unit failed: the workers stop taking units.
    stop: bool,
}

impl LogSource {
    /// Visits every public event (of `types`, or all) on `threads` threads and merges in log
    /// order. The log is cut into units of up to `chunk` records of one partition; each worker
    /// takes the next unit, starts a state with `new_state`, passes it every event of the unit
    /// with `visit`, and hands it back; `merge` receives the states on the calling thread in
    /// log order (partition by partition, offsets ascending: the order of
    /// [`EventSource::public_events`]), so output written by `merge` is the same whatever the
    /// thread count. At most `2 × threads` units are worked or waiting at a time (memory stays
    /// bounded by the states of those). The first error of a unit stops it with that error;
    /// `merge` stops it by answering `Break`. Returns the records read (merged).
    pub fn public_chunks<S: Send>(
        &self,
        types: Option<&[&str]>,
        threads: usize,
        chunk: u64,
        new_state: &(dyn Fn() -> S + Sync),
        visit: &(dyn Fn(&mut S, PublicEvent<'_>) + Sync),
        merge: &mut dyn FnMut(S) -> std::ops::ControlFlow<()>,
    ) -> Result<u64> {
        let chunk = chunk.max(1);
        let mut units = Vec::new();
        for partition in 0..self.reader.partition_count() {
            let end = self.reader.partition_end(partition)?;
            let mut from = 0;
            while from < end {
                let records = chunk.min(end - from);
                units.push(Unit { partition, from, records });
                from += records;
            }
        }
        let threads = threads.clamp(1, units.len().max(1));
        let window = 2 * threads;
        let next_unit = std::sync::atomic::AtomicUsize::new(0);
        let progress = std::sync::Mutex::new(Progress { merged: 0, stop: false });
        let advanced = std::sync::Condvar::new();
        let lock = || progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stop = || {
            lock().stop = true;
            advanced.notify_all();
        };
        std::thread::scope(|scope| {
            let (done, finished) = std::sync::mpsc::channel::<(usize, Result<(S, u64)>)>();
            let mut spawned = Ok(());
            for worker in 0..threads {
                let done = done.clone();
                let (units, next_unit, advanced, reader) = (&units, &next_unit, &advanced, &self.reader);
                let lock = &lock;
                let started = std::thread::Builder::new().name(format!("log-scan-{worker}")).spawn_scoped(
                    scope,
                    move || {
                        // A worker that panics (in `visit`, say) never sends its unit: stop the
                        // others, so that none waits for a merge that cannot come and the merge
                        // sees every sender gone; the scope then passes the panic on.
                        let _stop_on_panic = StopOnPanic(&|| {
                            lock().stop = true;
                            advanced.notify_all();
                        });
                        loop {
                            let index = next_unit.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(unit) = units.get(index) else { return };
                            {
                                let mut progress = lock();
                                while !progress.stop && index >= progress.merged + window {
                                    progress = advanced
                                        .wait(progress)
                                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                                }
                                if progress.stop {
                                    return;
                                }
                            }
                            let outcome = Self::public_unit(reader, types, *unit, new_state, visit);
                            let failed = outcome.is_err();
                            if done.send((index, outcome)).is_err() || failed {
                                return;
                            }
                        }
                    },
                );
                if let Err(error) = started {
                    spawned = Err(AuditError::Thread(error));
                    break;
                }
            }
            if let Err(error) = spawned {
                // The workers already started must not wait for merges that never come.
                stop();
                return Err(error);
            }
            drop(done);
            let mut waiting = std::collections::BTreeMap::new();
            let mut read = 0u64;
            let mut next = 0usize;
            let merged = (|| -> Result<u64> {
                while next < units.len() {
                    let Ok((index, outcome)) = finished.recv() else {
                        // Every worker ended with units left: one stopped on an error it sent.
                        break;
                    };
                    waiting.insert(index, outcome?);
                    while let Some((state, records)) = waiting.remove(&next) {
                        read += records;
                        if merge(state).is_break() {
                            return Ok(read);
                        }
                        next += 1;
                        lock().merged = next;
                        advanced.notify_all();
                    }
                }
                Ok(read)
            })();
            stop();
            merged
        })
    }

    /// One unit of [`Self::public_chunks`]: its state and the records read.
    fn public_unit<S>(
        reader: &LogReader,
        types: Option<&[&str]>,
        unit: Unit,
        new_state: &(dyn Fn() -> S + Sync),
        visit: &(dyn Fn(&mut S, PublicEvent<'_>) + Sync),
    ) -> Result<(S, u64)> {
        let mut state = new_state();
        let mut failed = None;
        let max = usize::try_from(unit.records).unwrap_or(usize::MAX);
        let read = match types {
            None => reader.scan_events(unit.partition, unit.from, max, |view| {
                if failed.is_none() {
                    let position = view.position;
                    match Self::public(view) {
                        Ok(event) => visit(&mut state, event),
                        Err(error) => failed = Some(invalid(position, error)),
                    }
                }
            })?,
            Some(types) => reader.scan_views(unit.partition, unit.from, max, |record| {
                if failed.is_none() && types.contains(&record.event_type()) {
                    let position = record.envelope.position;
                    match record.view() {
                        Ok(view) => match Self::public(view) {
                            Ok(event) => visit(&mut state, event),
                            Err(error) => failed = Some(invalid(position, error)),
                        },
                        Err(error) => failed = Some(error),
                    }
                }
            })?,
        };
        if let Some(error) = failed {
            return Err(error.into());
        }
        if (read as u64) < unit.records {
            return Err(covenant_log::LogError::Corrupt {
                position: Position { partition: unit.partition, offset: unit.from + read as u64 },
                reason: format!(
                    "the partition ends at offset {} but its chain head says {}",
                    unit.from + read as u64,
                    unit.from + unit.records
                ),
            }
            .into());
        }
        Ok((state, read as u64))
    }
}

impl EventSource for LogSource {
    fn as_log(&self) -> Option<&LogSource> {
        Some(self)
    }

    fn events(&mut self, types: Option<&[&str]>, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        self.scan(types, &mut |record| {
            visit(record.decode()?);
            Ok(())
        })
    }

    fn public_events(
        &mut self,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(PublicEvent<'_>),
    ) -> Result<u64> {
        let Some(types) = types else {
            // Every record: decoded whole at once (no envelope decoded first to filter on).
            return self.chunks(&mut |reader, partition, from| {
                let mut failed = None;
                let visited = reader.scan_events(partition, from, CHUNK, |view| {
                    if failed.is_none() {
                        let position = view.position;
                        match Self::public(view) {
                            Ok(event) => visit(event),
                            Err(error) => failed = Some(invalid(position, error)),
                        }
                    }
                })?;
                match failed {
                    Some(error) => Err(error.into()),
                    None => Ok(visited),
                }
            });
        };
        self.scan(Some(types), &mut |record| {
            let position = record.envelope.position;
            visit(Self::public(record.view()?).map_err(|error| invalid(position, error))?);
            Ok(())
        })
    }

    fn stream(&mut self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        Ok(self.reader.read_stream(customer, 1, usize::MAX)?)
    }

    /// In batches of customers holding together about [`STREAMS_BATCH_EVENTS`] events (their
    /// stream heads say how many), each read in one sorted pass (`LogReader::read_streams`).
    fn streams(
        &mut self,
        customers: &[CustomerId],
        visit: &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>),
    ) -> Result<()> {
        self.read_streams(customers, visit)
    }
}

/// Where one customer's events lie in a partition, as a scan saw them.
#[derive(Debug, Clone, Copy)]
struct StreamSpan {
    first: u64,
    last: u64,
    /// The stream version of the last event: the stream's length.
    events: u64,
}

/// One partition of a log read in place, read by the audit's two passes: the first visits every
/// promise event, notes where each customer's events lie (one small entry per customer of the
/// partition) and keeps the records it read, up to a budget ([`LogSource::with_retained_bytes`]);
/// the second reads the streams of the customers it is given from the kept records when all of
/// a stream's are kept, and from the log otherwise: a batch at a time, by walking the part of
/// the partition their events lie in when they are at least one record in [`WALK_SPREAD`] of it,
/// and through the stream index otherwise. Keeping spares the second read of the log; walking
/// spares a stream-index read per customer and a lookup per event.
#[derive(Debug)]
pub struct PartitionPasses<'a> {
    log: &'a LogSource,
    partition: u16,
    spans: HashMap<CustomerId, StreamSpan>,
    retained: Retained,
}

/// The records of a partition from its first offset on, as the first pass read them, until they
/// would pass a budget (the kept ones are a prefix of the partition), each linked to the same
/// customer's next kept record.
#[derive(Debug)]
struct Retained {
    /// What `bytes` and the two indexes may hold together.
    budget: usize,
    /// False once a record did not fit: no later one is kept.
    open: bool,
    /// The kept records, one after the other; record `i` is the one at offset `i`.
    bytes: Vec<u8>,
    /// Where each kept record starts in `bytes`.
    starts: Vec<usize>,
    /// For each kept record, the offset of the same customer's next kept record ([`NO_NEXT`]:
    /// none).
    next: Vec<u32>,
}

/// Bytes of kept records [`Retained::reserve`] makes room for per record of the partition (a
/// record of a 200-byte event takes ~240).
const RESERVED_PER_RECORD: usize = 512;

/// [`Retained::next`] of a customer's last kept record.
const NO_NEXT: u32 = u32::MAX;

impl Retained {
    fn new(budget: usize) -> Self {
        Self { budget, open: budget > 0, bytes: Vec::new(), starts: Vec::new(), next: Vec::new() }
    }

    /// Makes room for a partition of `records` records (as much as the budget allows), so
    /// keeping never moves what was kept (room not written to costs no memory).
    fn reserve(&mut self, records: u64) {
        if !self.open {
            return;
        }
        let records = usize::try_from(records).unwrap_or(usize::MAX);
        let per_record = std::mem::size_of::<usize>() + std::mem::size_of::<u32>();
        let indexed = records.min(self.budget / per_record);
        self.starts.reserve(indexed);
        self.next.reserve(indexed);
        self.bytes.reserve(records.saturating_mul(RESERVED_PER_RECORD).min(self.budget));
    }

    /// Records kept: those at offsets below this.
    fn kept(&self) -> u64 {
        self.starts.len() as u64
    }

    /// Keeps the record at offset [`Retained::kept`] if it fits; says whether it did.
    fn keep(&mut self, value: &[u8]) -> bool {
        let index_bytes =
            (self.starts.len() + 1) * (std::mem::size_of::<usize>() + std::mem::size_of::<u32>());
        if !self.open
            || self.starts.len() >= NO_NEXT as usize
            || self.bytes.len() + value.len() + index_bytes > self.budget
        {
            // The second pass reads the streams that go on past here from the log.
            self.open = false;
            return false;
        }
        self.starts.push(self.bytes.len());
        self.bytes.extend_from_slice(value);
        self.next.push(NO_NEXT);
        true
    }

    /// Notes that the same customer's kept record after the one kept at `offset` is at `next`.
    fn link(&mut self, offset: u64, next: u64) {
        let slot = usize::try_from(offset).ok().and_then(|index| self.next.get_mut(index));
        if let (Some(slot), Ok(next)) = (slot, u32::try_from(next)) {
            *slot = next;
        }
    }

    /// The offset of the same customer's kept record after the one at `offset` (`None`: none).
    fn next_of(&self, offset: u64) -> Option<u64> {
        let next = *usize::try_from(offset).ok().and_then(|index| self.next.get(index))?;
        (next != NO_NEXT).then_some(u64::from(next))
    }

    /// The kept record at `offset`.
    fn record(&self, offset: u64) -> Option<&[u8]> {
        let index = usize::try_from(offset).ok()?;
        let start = *self.starts.get(index)?;
        let end = self.starts.get(index + 1).copied().unwrap_or(self.bytes.len());
        self.bytes.get(start..end)
    }
}

/// The second pass walks a batch's range when it holds at least one of the batch's records in
/// this many.
const WALK_SPREAD: u64 = 6;

impl PartitionPasses<'_> {
    /// Visits every promise event (`covenant_domain::audit::PROMISE_EVENT_TYPES`) of the
    /// partition in offset order (so each customer's in stream order). Returns the records read.
    pub fn promise_events(&mut self, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        let (spans, retained) = (&mut self.spans, &mut self.retained);
        // By catalogue index: a record's type is an index into EVENT_TYPES.
        let is_promise_event: Vec<bool> = covenant_domain::events::EVENT_TYPES
            .iter()
            .map(|name| covenant_domain::audit::PROMISE_EVENT_TYPES.contains(name))
            .collect();
        retained.reserve(self.log.reader.partition_end(self.partition)?);
        // One iterator over the whole partition.
        let read = self.log.reader.scan_raw(self.partition, 0, usize::MAX, |position, value| {
            let record = RecordView::parse(position, value)?;
            let envelope = &record.envelope;
            let (offset, version) = (envelope.position.offset, envelope.stream_version);
            let kept = retained.kept() == offset && retained.keep(value);
            match spans.get_mut(envelope.customer_id) {
                Some(span) => {
                    if kept {
                        retained.link(span.last, offset);
                    }
                    span.last = offset;
                    span.events = version;
                }
                None => {
                    let customer =
                        CustomerId::new(envelope.customer_id).map_err(|error| invalid(position, error))?;
                    spans.insert(customer, StreamSpan { first: offset, last: offset, events: version });
                }
            }
            // `parse` checked the index against the catalogue.
            if is_promise_event.get(envelope.event_index as usize).copied().unwrap_or(false) {
                visit(record.decode()?);
            }
            Ok::<_, AuditError>(())
        })?;
        Ok(read as u64)
    }

    /// Visits the whole stream of each of `customers` (of this partition) once: first the
    /// streams the first pass kept whole, one at a time, then the others in batches of about
    /// [`STREAMS_BATCH_EVENTS`] events, in the order their first events were recorded.
    /// Call it after [`Self::promise_events`] (a customer it did not see has no events).
    pub fn streams(
        &mut self,
        customers: &[CustomerId],
        visit: &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>),
    ) -> Result<()> {
        let mut order: Vec<(StreamSpan, &CustomerId)> = Vec::with_capacity(customers.len());
        for customer in customers {
            match self.spans.get(customer.as_str()) {
                Some(span) if span.last < self.retained.kept() => {
                    visit(customer, self.kept_stream(customer, span)?);
                }
                Some(span) => order.push((*span, customer)),
                None => visit(customer, Vec::new()),
            }
        }
        order.sort_by_key(|(span, _)| span.first);
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut events = 0u64;
            while end < order.len() && (end == start || events < STREAMS_BATCH_EVENTS) {
                events += order[end].0.events;
                end += 1;
            }
            self.batch(&order[start..end], events, visit)?;
            start = end;
        }
        Ok(())
    }

    /// A customer's stream from the records the first pass kept (all of it: `span.last` is
    /// kept), following each record's link to the next. (Decoding one stream at a time keeps
    /// its events in memory the stories just read; collecting a batch's streams in one sweep
    /// of the kept records was slower: each decoded event went to a cold place.)
    fn kept_stream(&self, customer: &CustomerId, span: &StreamSpan) -> Result<Vec<RecordedEvent>> {
        let mut stream = Vec::with_capacity(usize::try_from(span.events).unwrap_or(0));
        let mut next = Some(span.first);
        while let Some(offset) = next {
            let position = Position { partition: self.partition, offset };
            let Some(value) = self.retained.record(offset) else {
                return Err(covenant_log::LogError::Corrupt {
                    position,
                    reason: format!("customer {customer}'s record here was not kept by the first pass"),
                }
                .into());
            };
            let record = RecordView::parse(position, value)?;
            check_next_version(&record, stream.len(), position)?;
            stream.push(record.decode()?);
            next = self.retained.next_of(offset).filter(|_| (stream.len() as u64) < span.events);
        }
        if stream.len() as u64 != span.events {
            return Err(covenant_log::LogError::Corrupt {
                position: Position { partition: self.partition, offset: span.last },
                reason: format!(
                    "customer {customer}'s stream had {} events in the first pass, {} kept",
                    span.events,
                    stream.len()
                ),
            }
            .into());
        }
        Ok(stream)
    }

    /// One batch of [`Self::streams`] (sorted by first offset), holding `events` events, read
    /// from the log.
    fn batch(
        &self,
        batch: &[(StreamSpan, &CustomerId)],
        events: u64,
        visit: &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>),
    ) -> Result<()> {
        let from = batch.first().map_or(0, |(span, _)| span.first);
        let last = batch.iter().map(|(span, _)| span.last).max().unwrap_or(from);
        let records = last - from + 1;
        if records / WALK_SPREAD > events {
            let customers: Vec<CustomerId> = batch.iter().map(|(_, customer)| (*customer).clone()).collect();
            return self.log.read_streams(&customers, visit);
        }
        let wanted: HashMap<&str, usize> =
            batch.iter().enumerate().map(|(index, (_, customer))| (customer.as_str(), index)).collect();
        let mut streams: Vec<Vec<RecordedEvent>> = batch
            .iter()
            .map(|(span, _)| Vec::with_capacity(usize::try_from(span.events).unwrap_or(0)))
            .collect();
        // Only the batch's records are checked and decoded; a record whose customer reads wrong
        // is left out, and its stream then comes out short, which is an error below.
        let max = usize::try_from(records).unwrap_or(usize::MAX);
        let read = self.log.reader.scan_raw(self.partition, from, max, |position, value| {
            let Some(&index) = codec::peek_customer(value).and_then(|customer| wanted.get(customer)) else {
                return Ok(());
            };
            let record = RecordView::parse(position, value)?;
            let stream = &mut streams[index];
            check_next_version(&record, stream.len(), position)?;
            stream.push(record.decode()?);
            Ok::<_, covenant_log::LogError>(())
        })? as u64;
        for ((span, customer), stream) in batch.iter().zip(streams) {
            if read < records || stream.len() as u64 != span.events {
                return Err(covenant_log::LogError::Corrupt {
                    position: Position { partition: self.partition, offset: from + read },
                    reason: format!(
                        "customer {customer}'s stream had {} events in the first pass, {} in the second",
                        span.events,
                        stream.len()
                    ),
                }
                .into());
            }
            visit(customer, stream);
        }
        Ok(())
    }
}

/// A record read for a stream already `read` events long must be its next event.
fn check_next_version(record: &RecordView<'_>, read: usize, position: Position) -> covenant_log::Result<()> {
    if record.envelope.stream_version == read as u64 + 1 {
        return Ok(());
    }
    Err(covenant_log::LogError::Corrupt {
        position,
        reason: format!(
            "event of stream version {} where {} was expected in customer {}'s stream",
            record.envelope.stream_version,
            read + 1,
            record.envelope.customer_id
        ),
    })
}

/// A stored record whose identifiers do not pass validation: corrupt.
fn invalid(position: Position, error: DomainError) -> covenant_log::LogError {
    covenant_log::LogError::Corrupt { position, reason: format!("an invalid identifier: {error}") }
}

/// A running ledger, over gRPC.
#[derive(Debug)]
pub struct LedgerSource {
    client: EventLogClient<AuthChannel>,
    runtime: Handle,
}

impl LedgerSource {
    /// Reads through `channel`: a connection to the ledger's gRPC address that sends a token
    /// with `log:read` (and, when the ledger serves TLS, trusts its CA — how the `covenant`
    /// commands connect, see `covenant_cli`'s client module). Call it on the async runtime
    /// whose handle drives the reads.
    pub fn new(channel: AuthChannel) -> Self {
        let client = EventLogClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        Self { client, runtime: Handle::current() }
    }
}

impl EventSource for LedgerSource {
    fn events(&mut self, types: Option<&[&str]>, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        let mut read = 0u64;
        let mut from = Vec::new();
        loop {
            let request = v1::ReadAllRequest {
                from: from.clone(),
                event_types: types.unwrap_or_default().iter().map(|name| (*name).to_owned()).collect(),
                max_events: CHUNK as u32,
            };
            let mut client = self.client.clone();
            let page = self.runtime.block_on(client.read_all(request))?.into_inner();
            read += page.events.len() as u64;
            for envelope in page.events {
                visit(RecordedEvent::try_from(envelope)?);
            }
            if page.end_of_log {
                return Ok(read);
            }
            from = page.next;
        }
    }

    fn stream(&mut self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        loop {
            let request = v1::ReadStreamRequest {
                customer_id: customer.to_string(),
                from_version: events.len() as u64 + 1,
                max_events: CHUNK as u32,
                include_personal_data: false,
            };
            let mut client = self.client.clone();
            let page = self.runtime.block_on(client.read_stream(request))?.into_inner();
            let received = page.events.len();
            for envelope in page.events {
                events.push(RecordedEvent::try_from(envelope)?);
            }
            if received == 0 || events.len() as u64 >= page.stream_version {
                return Ok(events);
            }
        }
    }
}
