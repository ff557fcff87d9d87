//! The broken-promise audit over a real history: reads the events from an [`EventSource`] (a log
//! directory or a backup opened read-only, or a running ledger over gRPC) and runs the two
//! passes of `covenant_domain::audit`:
//!
//! 1. every promise event through a [`PromiseBook`] (only open promises are held), counting each
//!    settled or silently broken promise that passes the [`AuditFilter`] into a [`Summary`] and
//!    remembering which customers have broken ones;
//! 2. the whole streams of those customers, a batch at a time, for the [`PromiseStory`]s.
//!
//! A log read in place ([`LogSource`]) is audited a partition at a time, on several threads:
//! a partition holds whole customer streams, so each one's two passes need nothing from the
//! others, and the partitions' summaries and stories merge into the same report as one pass over
//! everything (a test compares them). Memory is bounded by the open and the broken promises of
//! the partitions in hand and the stories told, never by the log.
//!
//! The [`EventSource`]s ([`sources`]) also serve `covenant export`.

pub mod sources;

use std::collections::{BTreeMap, BTreeSet};

use covenant_domain::audit::{
    GroupSummary, PromiseBook, PromiseStory, SettledPromise, Summary, SummaryGroup, stories,
};
use covenant_domain::ids::{CustomerId, PromiseId};
use covenant_domain::loyalty::LoyaltyParams;
use covenant_domain::trust::TrustParams;
use covenant_domain::views::RecordedEventView;
use covenant_domain::{RecordedEvent, Timestamp};

pub use sources::{LedgerSource, LogSource, PartitionPasses};

/// What can stop an audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading the log: {0}")]
    Log(#[from] covenant_log::LogError),
    #[error("the ledger answered {code:?}: {message}")]
    Ledger { code: tonic::Code, message: String },
    #[error("could not start a thread to scan the log: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the ledger sent an event this audit cannot read: {0}")]
    Convert(#[from] covenant_proto::convert::ConvertError),
}

impl From<tonic::Status> for AuditError {
    fn from(status: tonic::Status) -> Self {
        AuditError::Ledger { code: status.code(), message: status.message().to_owned() }
    }
}

pub type Result<T> = std::result::Result<T, AuditError>;

/// Where the history comes from (the audit's, and `covenant export`'s).
pub trait EventSource {
    /// Visits every event of the log whose type is in `types` (every event when `None`), each
    /// partition's in offset order, so each customer's in stream order. Returns how many records
    /// it read (a source that filters before reading counts only those it read).
    fn events(&mut self, types: Option<&[&str]>, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64>;

    /// As [`EventSource::events`], each event without its personal data ([`PublicEvent`]): what
    /// an export writes. A source that can hands out borrowed views of its records, which spares
    /// the copy of every identifier and text.
    fn public_events(
        &mut self,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(PublicEvent<'_>),
    ) -> Result<u64> {
        self.events(types, &mut |mut event| {
            let _ = covenant_domain::personal::take_personal_data(&mut event.event);
            visit(PublicEvent::Owned(event))
        })
    }

    /// This source as a log read in place, which can be scanned on several threads
    /// ([`LogSource::public_chunks`]); `None` for a source that cannot.
    fn as_log(&self) -> Option<&LogSource> {
        None
    }

    /// Visits every promise event (`covenant_domain::audit::PROMISE_EVENT_TYPES`).
    fn promise_events(&mut self, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        self.events(Some(&covenant_domain::audit::PROMISE_EVENT_TYPES), visit)
    }

    /// A customer's whole stream, in order.
    fn stream(&mut self, customer: &CustomerId) -> Result<Vec<RecordedEvent>>;

    /// The whole streams of `customers`, each visited once with its customer, in the order of
    /// `customers`. A source that can reads several together (a log reads a batch in one sorted
    /// pass instead of one random read per event).
    fn streams(
        &mut self,
        customers: &[CustomerId],
        visit: &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>),
    ) -> Result<()> {
        for customer in customers {
            let stream = self.stream(customer)?;
            visit(customer, stream);
        }
        Ok(())
    }
}

/// An event without its personal data, owned or borrowed from the record it was read from (the
/// view of a record whose personal data is sealed apart, so the view holds none).
#[derive(Debug, Clone)]
pub enum PublicEvent<'a> {
    Owned(RecordedEvent),
    Borrowed(RecordedEventView<'a>),
}

impl PublicEvent<'_> {
    /// When the event happened (business time).
    pub fn occurred_at(&self) -> Timestamp {
        match self {
            PublicEvent::Owned(event) => event.metadata.occurred_at,
            PublicEvent::Borrowed(view) => view.metadata.occurred_at,
        }
    }

    /// The event's type name (snake case).
    pub fn event_type(&self) -> &'static str {
        match self {
            PublicEvent::Owned(event) => event.event_type(),
            PublicEvent::Borrowed(view) => view.event_type(),
        }
    }
}

/// Which promises the audit is about. Every condition must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The promise's last due date is at or after this instant.
    pub from: Option<Timestamp>,
    /// The promise's last due date is before this instant.
    pub to: Option<Timestamp>,
    /// Only this customer's promises (their stream alone is read).
    pub customer: Option<CustomerId>,
    /// The team that made the promise.
    pub team: Option<String>,
    /// The agent who made it.
    pub agent: Option<String>,
}

impl AuditFilter {
    fn accepts(&self, promise: &SettledPromise) -> bool {
        self.from.is_none_or(|from| promise.due_at >= from)
            && self.to.is_none_or(|to| promise.due_at < to)
            && self.customer.as_ref().is_none_or(|customer| *customer == promise.customer_id)
            && self
                .team
                .as_deref()
                .is_none_or(|team| promise.team.as_ref().is_some_and(|t| t.as_str() == team))
            && self.agent.as_deref().is_none_or(|agent| promise.made_by.as_str() == agent)
    }
}

/// What an audit found.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    /// The instant silent breaks, lateness and lifecycles are judged at.
    pub as_of: Timestamp,
    /// Records read by the first pass.
    pub records_read: u64,
    /// Promises (passing the filter) settled or silently broken.
    pub promises_judged: u64,
    /// Promises still open and not yet past due plus grace (of the customer when the filter
    /// names one; otherwise of everyone, the other conditions aside).
    pub promises_pending: u64,
    /// Every broken promise's story, recorded and silent, in the order they broke.
    pub stories: Vec<PromiseStory>,
    pub overall: GroupSummary,
    pub by_team: Vec<GroupSummary>,
    pub by_agent: Vec<GroupSummary>,
    pub by_kind: Vec<GroupSummary>,
}

impl AuditReport {
    /// The silent breaks among the stories.
    pub fn silent(&self) -> impl Iterator<Item = &PromiseStory> {
        self.stories.iter().filter(|story| story.broke == covenant_domain::audit::Break::Silent)
    }
}

/// The models the stories are told with.
#[derive(Debug, Clone, Copy)]
pub struct Models<'a> {
    pub trust: &'a TrustParams,
    pub loyalty: &'a LoyaltyParams,
}

/// Runs the audit of `source` at `as_of`. A log read in place is audited a partition at a time
/// (each holds whole customer streams) on up to `threads` threads; the report is the same
/// whatever the count. Memory: the open promises and the stories of the partitions in hand.
pub fn audit(
    source: &mut dyn EventSource,
    filter: &AuditFilter,
    as_of: Timestamp,
    models: Models<'_>,
    threads: usize,
) -> Result<AuditReport> {
    let share = if let (None, Some(log)) = (&filter.customer, source.as_log()) {
        audit_partitions(log, filter, as_of, models, threads)?
    } else if let Some(customer) = &filter.customer {
        audit_share(
            source,
            filter,
            as_of,
            models,
            |source, visit| {
                let history = source.stream(customer)?;
                let read = history.len() as u64;
                history.into_iter().for_each(visit);
                Ok(read)
            },
            |source, customers, visit| source.streams(customers, visit),
        )?
    } else {
        audit_share(
            source,
            filter,
            as_of,
            models,
            |source, visit| source.promise_events(visit),
            |source, customers, visit| source.streams(customers, visit),
        )?
    };
    Ok(share.into_report(as_of))
}

/// Every partition of `log` through [`audit_share`], on up to `threads` threads, merged.
fn audit_partitions(
    log: &LogSource,
    filter: &AuditFilter,
    as_of: Timestamp,
    models: Models<'_>,
    threads: usize,
) -> Result<Share> {
    let shares = std::sync::Mutex::new(BTreeMap::new());
    log.on_partitions(threads, &|partition| {
        let share = audit_share(
            log.partition_passes(partition),
            filter,
            as_of,
            models,
            |passes, visit| passes.promise_events(visit),
            |passes, customers, visit| passes.streams(customers, visit),
        )?;
        tracing::debug!(
            partition,
            records = share.records_read,
            stories = share.stories.len(),
            "partition audited"
        );
        shares.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(partition, share);
        Ok(0)
    })?;
    let mut whole = Share::default();
    for (_, share) in shares.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        whole.merge(share);
    }
    Ok(whole)
}

/// What the audit of some customers (a partition, a whole source, one customer) found.
#[derive(Debug, Default)]
struct Share {
    records_read: u64,
    judged: u64,
    pending: u64,
    summary: Summary,
    stories: Vec<PromiseStory>,
}

impl Share {
    fn merge(&mut self, other: Share) {
        self.records_read += other.records_read;
        self.judged += other.judged;
        self.pending += other.pending;
        self.summary.merge(other.summary);
        self.stories.extend(other.stories);
    }

    fn into_report(mut self, as_of: Timestamp) -> AuditReport {
        self.stories.sort_by(|a, b| {
            (a.broke_at(), &a.customer_id, &a.promise_id).cmp(&(b.broke_at(), &b.customer_id, &b.promise_id))
        });
        AuditReport {
            as_of,
            records_read: self.records_read,
            promises_judged: self.judged,
            promises_pending: self.pending,
            stories: self.stories,
            overall: self.summary.overall(),
            by_team: self.summary.by(SummaryGroup::Team),
            by_agent: self.summary.by(SummaryGroup::Agent),
            by_kind: self.summary.by(SummaryGroup::PromiseKind),
        }
    }
}

/// The two passes over some customers' history: `first_pass` visits their promise events (each
/// customer's in stream order) and returns the records it read; `second_pass` visits the whole
/// streams of the customers it is given.
fn audit_share<S>(
    mut source: S,
    filter: &AuditFilter,
    as_of: Timestamp,
    models: Models<'_>,
    first_pass: impl FnOnce(&mut S, &mut dyn FnMut(RecordedEvent)) -> Result<u64>,
    second_pass: impl FnOnce(&mut S, &[CustomerId], &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>)) -> Result<()>,
) -> Result<Share> {
    let mut book = PromiseBook::new();
    let mut summary = Summary::new();
    let mut broken: BTreeMap<CustomerId, BTreeSet<PromiseId>> = BTreeMap::new();
    let mut judged = 0u64;
    let mut consider = |promise: SettledPromise, summary: &mut Summary| {
        if !filter.accepts(&promise) {
            return;
        }
        judged += 1;
        summary.add(&promise);
        if promise.settlement.is_broken() {
            broken.entry(promise.customer_id).or_default().insert(promise.promise_id);
        }
    };
    let records_read = first_pass(&mut source, &mut |event| {
        if let Some(settled) = book.apply(&event) {
            consider(settled, &mut summary);
        }
    })?;
    let (silent, pending) = book.finish(as_of);
    for promise in silent {
        consider(promise, &mut summary);
    }
    tracing::debug!(records_read, judged, customers = broken.len(), "first pass done");

    let mut told = Vec::new();
    let customers: Vec<CustomerId> = broken.keys().cloned().collect();
    second_pass(&mut source, &customers, &mut |customer, history| {
        let Some(promises) = broken.get(customer) else { return };
        let wanted = |promise: &PromiseId| promises.contains(promise);
        for story in stories(&history, as_of, Some(&wanted), models.trust, models.loyalty) {
            summary.add_story(&story);
            told.push(story);
        }
    })?;
    Ok(Share { records_read, judged, pending, summary, stories: told })
}
