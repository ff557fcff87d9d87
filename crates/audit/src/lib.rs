//! The broken-promise audit over a real history: reads the events from an [`EventSource`] (a log
//! directory or a backup opened read-only, or a running ledger over gRPC) and runs the two
//! passes of `covenant_domain::audit`:
//!
//! 1. every promise event of the log through a [`PromiseBook`] (only open promises are held),
//!    counting each settled or silently broken promise that passes the [`AuditFilter`] into a
//!    [`Summary`] and remembering which customers have broken ones;
//! 2. the whole stream of each such customer, one at a time, for the [`PromiseStory`]s.
//!
//! Memory is bounded by the open and the broken promises, never by the log.
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

pub use sources::{LedgerSource, LogSource};

/// What can stop an audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("reading the log: {0}")]
    Log(#[from] covenant_log::LogError),
    #[error("the ledger answered {code:?}: {message}")]
    Ledger { code: tonic::Code, message: String },
    #[error("could not start a thread to scan the log: {0}")]
    Thread(std::io::Error),
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
#[derive(Debug, Clone)]
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

/// Runs the audit of `source` at `as_of`.
pub fn audit(
    source: &mut dyn EventSource,
    filter: &AuditFilter,
    as_of: Timestamp,
    trust: &TrustParams,
    loyalty: &LoyaltyParams,
) -> Result<AuditReport> {
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
    let records_read = match &filter.customer {
        Some(customer) => {
            let history = source.stream(customer)?;
            let read = history.len() as u64;
            for event in history {
                if let Some(settled) = book.apply(&event) {
                    consider(settled, &mut summary);
                }
            }
            read
        }
        None => source.promise_events(&mut |event| {
            if let Some(settled) = book.apply(&event) {
                consider(settled, &mut summary);
            }
        })?,
    };
    let (silent, pending) = book.finish(as_of);
    for promise in silent {
        consider(promise, &mut summary);
    }
    tracing::info!(records_read, judged, customers = broken.len(), "first pass done");

    let mut told = Vec::new();
    let customers: Vec<CustomerId> = broken.keys().cloned().collect();
    source.streams(&customers, &mut |customer, history| {
        let Some(promises) = broken.get(customer) else { return };
        let wanted = |promise: &PromiseId| promises.contains(promise);
        for story in stories(&history, as_of, Some(&wanted), trust, loyalty) {
            summary.add_story(&story);
            told.push(story);
        }
    })?;
    told.sort_by(|a, b| {
        (a.broke_at(), &a.customer_id, &a.promise_id).cmp(&(b.broke_at(), &b.customer_id, &b.promise_id))
    });
    Ok(AuditReport {
        as_of,
        records_read,
        promises_judged: judged,
        promises_pending: pending,
        stories: told,
        overall: summary.overall(),
        by_team: summary.by(SummaryGroup::Team),
        by_agent: summary.by(SummaryGroup::Agent),
        by_kind: summary.by(SummaryGroup::PromiseKind),
    })
}
