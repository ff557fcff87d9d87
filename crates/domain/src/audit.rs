//! The broken-promise audit (pure): what ops replay the history for.
//!
//! Two passes keep memory bounded by the promises, never by the log:
//!
//! 1. [`PromiseBook`] folds every promise event of the log (any customers, each customer's events
//!    in stream order) and keeps only the promises still open. Each promise that settles comes
//!    out as a [`SettledPromise`] (kept on time or late, partly kept, broken, cancelled); at the
//!    end, [`PromiseBook::finish`] turns the open ones past due (plus grace) into **silent
//!    breaks**: promises nobody recorded an outcome for, for instance because the watchdog was
//!    down. [`Summary`] adds them up per team, agent and promise kind.
//! 2. For each customer with a broken or silently broken promise, [`stories`] reads their whole
//!    history and tells each such promise's story: what was promised, by whom, when, the
//!    renegotiations, how it broke and how late, whether an apology, compensation or a fix
//!    followed and how fast, trust just before and just after, and whether the customer churned
//!    or lapsed afterwards.
//!
//! Times are business times (`occurred_at`, and the instants the events carry). "Late" is
//! measured from the promise's last due date; grace only decides when an open promise counts as
//! silently broken.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::events::{BreakDetection, CompensationKind, Event, PromiseKind, RelatedRef};
use crate::ids::{ActorId, CustomerId, EventId, PromiseId, TeamId};
use crate::loyalty::{Lifecycle, LoyaltyParams, loyalty};
use crate::org_metrics::promise_kind_name;
use crate::trust::{SortedHistory, TrustParams, history_of};
use crate::values::{Money, Span, Text, Timestamp};
use crate::{Position, RecordedEvent};

/// The event types the first pass needs (every other event can be skipped unread).
pub const PROMISE_EVENT_TYPES: [&str; 6] = [
    "promise_made",
    "promise_renegotiated",
    "promise_kept",
    "promise_partially_kept",
    "promise_broken",
    "promise_cancelled",
];

const DAY_MILLIS: f64 = 86_400_000.0;

/// A span in days (fractional).
pub fn days(span: Span) -> f64 {
    span.millis() as f64 / DAY_MILLIS
}

/// How a promise ended (or has not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Settlement {
    /// Kept at or before its last due date.
    KeptOnTime,
    /// Kept after its last due date, by `late`.
    KeptLate {
        late: Span,
    },
    PartiallyKept,
    /// Recorded broken; `late`: from the due date to its detection (0 when detected early).
    Broken {
        detection: BreakDetection,
        late: Span,
    },
    Cancelled,
    /// Past due plus grace at the audit instant with no outcome recorded; `late`: since due.
    Silent {
        late: Span,
    },
}

impl Settlement {
    /// Broken, recorded or silent.
    pub fn is_broken(&self) -> bool {
        matches!(self, Settlement::Broken { .. } | Settlement::Silent { .. })
    }

    /// How late, for the outcomes that were late.
    pub fn lateness(&self) -> Option<Span> {
        match self {
            Settlement::KeptLate { late } | Settlement::Broken { late, .. } | Settlement::Silent { late } => {
                Some(*late)
            }
            _ => None,
        }
    }
}

/// A promise whose outcome the first pass saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettledPromise {
    pub customer_id: CustomerId,
    pub promise_id: PromiseId,
    pub kind: PromiseKind,
    pub made_by: ActorId,
    pub team: Option<TeamId>,
    /// The last due date.
    pub due_at: Timestamp,
    pub settlement: Settlement,
}

#[derive(Debug, Clone)]
struct OpenPromise {
    kind: PromiseKind,
    made_by: ActorId,
    team: Option<TeamId>,
    due_at: Timestamp,
    grace: Span,
}

/// The first pass: the promises still open, keyed by customer and promise.
#[derive(Debug, Default)]
pub struct PromiseBook {
    open: HashMap<(CustomerId, PromiseId), OpenPromise>,
}

impl PromiseBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Promises open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Folds one event; returns the promise it settled, if any. Events about a promise the
    /// book never saw made (a log read from the middle) are ignored.
    pub fn apply(&mut self, event: &RecordedEvent) -> Option<SettledPromise> {
        let customer = &event.customer_id;
        let settle =
            |book: &mut Self, promise_id: &PromiseId, outcome: &dyn Fn(&OpenPromise) -> Settlement| {
                let open = book.open.remove(&(customer.clone(), promise_id.clone()))?;
                Some(SettledPromise {
                    customer_id: customer.clone(),
                    promise_id: promise_id.clone(),
                    kind: open.kind,
                    settlement: outcome(&open),
                    made_by: open.made_by,
                    team: open.team,
                    due_at: open.due_at,
                })
            };
        match &event.event {
            Event::PromiseMade { promise_id, kind, made_by, due_at, grace, .. } => {
                self.open.insert(
                    (customer.clone(), promise_id.clone()),
                    OpenPromise {
                        kind: *kind,
                        made_by: made_by.clone(),
                        team: event.metadata.team.clone(),
                        due_at: *due_at,
                        grace: *grace,
                    },
                );
                None
            }
            Event::PromiseRenegotiated { promise_id, new_due_at, .. } => {
                if let Some(open) = self.open.get_mut(&(customer.clone(), promise_id.clone())) {
                    open.due_at = *new_due_at;
                }
                None
            }
            Event::PromiseKept { promise_id, kept_at, .. } => settle(self, promise_id, &|open| {
                if *kept_at > open.due_at {
                    Settlement::KeptLate { late: kept_at.since(open.due_at) }
                } else {
                    Settlement::KeptOnTime
                }
            }),
            Event::PromisePartiallyKept { promise_id, .. } => {
                settle(self, promise_id, &|_| Settlement::PartiallyKept)
            }
            Event::PromiseBroken { promise_id, detection, detected_at, .. } => {
                settle(self, promise_id, &|open| Settlement::Broken {
                    detection: *detection,
                    late: late_by(*detected_at, open.due_at),
                })
            }
            Event::PromiseCancelled { promise_id, .. } => {
                settle(self, promise_id, &|_| Settlement::Cancelled)
            }
            _ => None,
        }
    }

    /// The silent breaks at `as_of` (open promises past due plus grace), in customer and promise
    /// order, and how many promises are still open and not yet past due.
    pub fn finish(self, as_of: Timestamp) -> (Vec<SettledPromise>, u64) {
        let mut silent = Vec::new();
        let mut pending = 0;
        for ((customer_id, promise_id), open) in self.open {
            if open.due_at.plus(open.grace) < as_of {
                silent.push(SettledPromise {
                    customer_id,
                    promise_id,
                    kind: open.kind,
                    made_by: open.made_by,
                    team: open.team,
                    due_at: open.due_at,
                    settlement: Settlement::Silent { late: as_of.since(open.due_at) },
                });
            } else {
                pending += 1;
            }
        }
        silent.sort_by(|a, b| (&a.customer_id, &a.promise_id).cmp(&(&b.customer_id, &b.promise_id)));
        (silent, pending)
    }
}

fn late_by(at: Timestamp, due_at: Timestamp) -> Span {
    if at > due_at { at.since(due_at) } else { Span::from_millis(0) }
}

/// One renegotiation of a promise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Renegotiation {
    pub at: Timestamp,
    pub previous_due_at: Timestamp,
    pub new_due_at: Timestamp,
    pub customer_consented: bool,
}

/// A recovery step after a failure: when, and how long after the break.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUp {
    pub at: Timestamp,
    /// From the break (detection, or the due date for a silent one) to this step; 0 when it
    /// came first.
    pub after: Span,
}

/// Compensation granted for the failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    pub at: Timestamp,
    pub after: Span,
    pub kind: CompensationKind,
    pub amount: Money,
}

/// A promise made to fix the failure (`related_ref` naming it), and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub promise_id: PromiseId,
    pub made_at: Timestamp,
    pub due_at: Timestamp,
    /// `None`: still open at the audit instant.
    pub outcome: Option<Settlement>,
}

/// How a story's promise broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Break {
    /// Recorded: `PromiseBroken`.
    Recorded { detection: BreakDetection, detected_at: Timestamp, event_id: EventId, position: Position },
    /// No outcome recorded, past due plus grace at the audit instant.
    Silent,
}

/// The whole story of one broken promise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromiseStory {
    pub customer_id: CustomerId,
    pub promise_id: PromiseId,
    pub kind: PromiseKind,
    /// What was promised (empty when read from a source that leaves personal data out).
    pub description: Text,
    pub made_by: ActorId,
    pub team: Option<TeamId>,
    pub made_at: Timestamp,
    /// The due date it was first given, and its last one.
    pub first_due_at: Timestamp,
    pub due_at: Timestamp,
    pub grace: Span,
    pub renegotiations: Vec<Renegotiation>,
    pub broke: Break,
    /// From the last due date to the detection (a silent break: to the audit instant).
    pub late: Span,
    pub apology: Option<FollowUp>,
    pub compensation: Option<Compensation>,
    pub fix: Option<Fix>,
    /// Trust score just before the break was recorded and just after (`None` for a silent
    /// break: the models never heard of it), and at the audit instant.
    pub trust_before: Option<u8>,
    pub trust_after: Option<u8>,
    pub trust_now: u8,
    /// When the customer churned after the break, if they did.
    pub churned_at: Option<Timestamp>,
    /// The customer's lifecycle at the audit instant.
    pub lifecycle_now: Lifecycle,
}

impl PromiseStory {
    /// An apology, compensation or a fix kept on time followed.
    pub fn recovered(&self) -> bool {
        self.apology.is_some()
            || self.compensation.is_some()
            || self.fix.as_ref().is_some_and(|fix| fix.outcome == Some(Settlement::KeptOnTime))
    }

    /// The customer churned after the break, or has lapsed or churned by the audit instant.
    pub fn lost_afterwards(&self) -> bool {
        self.churned_at.is_some() || matches!(self.lifecycle_now, Lifecycle::Lapsed | Lifecycle::Churned)
    }

    /// When it broke: the detection, or the last due date for a silent break.
    pub fn broke_at(&self) -> Timestamp {
        match &self.broke {
            Break::Recorded { detected_at, .. } => *detected_at,
            Break::Silent => self.due_at,
        }
    }
}

/// Everything known of one promise while walking a customer's history.
struct Tracked {
    kind: PromiseKind,
    description: Text,
    made_by: ActorId,
    team: Option<TeamId>,
    made_at: Timestamp,
    first_due_at: Timestamp,
    due_at: Timestamp,
    grace: Span,
    renegotiations: Vec<Renegotiation>,
    related_ref: Option<RelatedRef>,
    outcome: Option<Settlement>,
    broke: Option<(Break, Timestamp)>,
}

/// The stories of every broken promise (recorded, or silent at `as_of`) in one customer's
/// `history` (their whole stream, in stream order), in the order they broke. `wanted` narrows
/// them to some promises (`None`: all).
pub fn stories(
    history: &[RecordedEvent],
    as_of: Timestamp,
    wanted: Option<&dyn Fn(&PromiseId) -> bool>,
    trust_params: &TrustParams,
    loyalty_params: &LoyaltyParams,
) -> Vec<PromiseStory> {
    let Some(first) = history.first() else { return Vec::new() };
    let customer_id = first.customer_id.clone();
    let mut promises: BTreeMap<PromiseId, Tracked> = BTreeMap::new();
    let mut apologies: Vec<(PromiseId, Timestamp)> = Vec::new();
    let mut compensations: Vec<(PromiseId, Timestamp, CompensationKind, Money)> = Vec::new();
    let mut churns: Vec<Timestamp> = Vec::new();
    for event in history {
        let occurred_at = event.metadata.occurred_at;
        match &event.event {
            Event::PromiseMade { promise_id, kind, description, made_by, due_at, grace, related_ref } => {
                promises.insert(
                    promise_id.clone(),
                    Tracked {
                        kind: *kind,
                        description: description.clone(),
                        made_by: made_by.clone(),
                        team: event.metadata.team.clone(),
                        made_at: occurred_at,
                        first_due_at: *due_at,
                        due_at: *due_at,
                        grace: *grace,
                        renegotiations: Vec::new(),
                        related_ref: related_ref.clone(),
                        outcome: None,
                        broke: None,
                    },
                );
            }
            Event::PromiseRenegotiated { promise_id, previous_due_at, new_due_at, customer_consented } => {
                if let Some(promise) = promises.get_mut(promise_id) {
                    promise.due_at = *new_due_at;
                    promise.renegotiations.push(Renegotiation {
                        at: occurred_at,
                        previous_due_at: *previous_due_at,
                        new_due_at: *new_due_at,
                        customer_consented: *customer_consented,
                    });
                }
            }
            Event::PromiseKept { promise_id, kept_at, .. } => {
                if let Some(promise) = promises.get_mut(promise_id) {
                    promise.outcome = Some(if *kept_at > promise.due_at {
                        Settlement::KeptLate { late: kept_at.since(promise.due_at) }
                    } else {
                        Settlement::KeptOnTime
                    });
                }
            }
            Event::PromisePartiallyKept { promise_id, .. } => {
                if let Some(promise) = promises.get_mut(promise_id) {
                    promise.outcome = Some(Settlement::PartiallyKept);
                }
            }
            Event::PromiseBroken { promise_id, detection, detected_at, .. } => {
                if let Some(promise) = promises.get_mut(promise_id) {
                    let late = late_by(*detected_at, promise.due_at);
                    promise.outcome = Some(Settlement::Broken { detection: *detection, late });
                    promise.broke = Some((
                        Break::Recorded {
                            detection: *detection,
                            detected_at: *detected_at,
                            event_id: event.event_id,
                            position: event.position,
                        },
                        occurred_at,
                    ));
                }
            }
            Event::PromiseCancelled { promise_id, .. } => {
                if let Some(promise) = promises.get_mut(promise_id) {
                    promise.outcome = Some(Settlement::Cancelled);
                }
            }
            Event::ApologyIssued { related_ref: RelatedRef::Promise(promise_id) } => {
                apologies.push((promise_id.clone(), occurred_at));
            }
            Event::CompensationGranted { related_ref: RelatedRef::Promise(promise_id), kind, amount } => {
                compensations.push((promise_id.clone(), occurred_at, *kind, *amount));
            }
            Event::CustomerChurned { .. } => churns.push(occurred_at),
            _ => {}
        }
    }

    let sorted = SortedHistory::new(history_of(history));
    let trust_now = sorted.trust(as_of, trust_params);
    let lifecycle_now = loyalty(history_of(history), as_of, &trust_now, loyalty_params).lifecycle;
    let fixes: Vec<(PromiseId, &PromiseId, &Tracked)> = promises
        .iter()
        .filter_map(|(id, promise)| match &promise.related_ref {
            Some(RelatedRef::Promise(fixed)) => Some((fixed.clone(), id, promise)),
            _ => None,
        })
        .collect();

    // The broken promises the stories are about, and the trust just before and just after each
    // recorded break, from one walk of the history.
    let broken: Vec<(&PromiseId, &Tracked, Break, Option<Timestamp>)> = promises
        .iter()
        .filter(|(promise_id, _)| wanted.is_none_or(|wanted| wanted(promise_id)))
        .filter_map(|(promise_id, promise)| match (&promise.broke, promise.outcome) {
            (Some((broke, recorded_at)), _) => Some((promise_id, promise, broke.clone(), Some(*recorded_at))),
            (None, None) if promise.due_at.plus(promise.grace) < as_of => {
                Some((promise_id, promise, Break::Silent, None))
            }
            _ => None,
        })
        .collect();
    let instants: Vec<Timestamp> = broken
        .iter()
        .filter_map(|(.., recorded_at)| *recorded_at)
        .flat_map(|at| [at.plus(Span::from_millis(-1)), at])
        .collect();
    let mut scores = sorted.scores(&instants, trust_params).into_iter();

    let mut told = Vec::new();
    for (promise_id, promise, broke, recorded_at) in broken {
        let broke_at = match &broke {
            Break::Recorded { detected_at, .. } => *detected_at,
            Break::Silent => promise.due_at,
        };
        let late = match &broke {
            Break::Recorded { detected_at, .. } => late_by(*detected_at, promise.due_at),
            Break::Silent => late_by(as_of, promise.due_at),
        };
        let follow_up = |at: Timestamp| FollowUp { at, after: late_by(at, broke_at) };
        let apology =
            apologies.iter().filter(|(id, _)| id == promise_id).map(|(_, at)| *at).min().map(follow_up);
        let compensation =
            compensations.iter().filter(|(id, ..)| id == promise_id).min_by_key(|(_, at, ..)| *at).map(
                |(_, at, kind, amount)| Compensation {
                    at: *at,
                    after: late_by(*at, broke_at),
                    kind: *kind,
                    amount: *amount,
                },
            );
        let fix =
            fixes.iter().filter(|(fixed, ..)| fixed == promise_id).min_by_key(|(_, _, fix)| fix.made_at).map(
                |(_, id, fix)| Fix {
                    promise_id: (*id).clone(),
                    made_at: fix.made_at,
                    due_at: fix.due_at,
                    outcome: fix.outcome.or_else(|| {
                        (fix.due_at.plus(fix.grace) < as_of)
                            .then(|| Settlement::Silent { late: late_by(as_of, fix.due_at) })
                    }),
                },
            );
        let (trust_before, trust_after) = match recorded_at {
            Some(_) => (scores.next(), scores.next()),
            None => (None, None),
        };
        told.push(PromiseStory {
            customer_id: customer_id.clone(),
            promise_id: promise_id.clone(),
            kind: promise.kind,
            description: promise.description.clone(),
            made_by: promise.made_by.clone(),
            team: promise.team.clone(),
            made_at: promise.made_at,
            first_due_at: promise.first_due_at,
            due_at: promise.due_at,
            grace: promise.grace,
            renegotiations: promise.renegotiations.clone(),
            broke,
            late,
            apology,
            compensation,
            fix,
            trust_before,
            trust_after,
            trust_now: trust_now.score,
            churned_at: churns.iter().copied().filter(|at| *at >= broke_at).min(),
            lifecycle_now,
        });
    }
    told.sort_by(|a, b| (a.broke_at(), &a.promise_id).cmp(&(b.broke_at(), &b.promise_id)));
    told
}

/// What to group a summary by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SummaryGroup {
    Team,
    Agent,
    PromiseKind,
}

/// One group's promise keeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    /// Promises with an outcome, or silently broken (cancelled ones included).
    pub settled: u64,
    pub kept_on_time: u64,
    pub kept_late: u64,
    pub partially_kept: u64,
    pub broken: u64,
    pub silent: u64,
    pub cancelled: u64,
    /// Kept on time / (settled − cancelled), in percent.
    pub keeping_rate_percent: Option<f64>,
    /// Median lateness in days of the late ones (kept late, broken late, silent).
    pub median_days_late: Option<f64>,
    /// Broken promises (recorded or silent) whose story shows an apology, compensation or a fix
    /// kept on time, in percent of the broken ones with a story.
    pub recovery_rate_percent: Option<f64>,
    #[serde(skip)]
    late_days: Vec<f64>,
    #[serde(skip)]
    stories: u64,
    #[serde(skip)]
    recovered: u64,
}

/// Promise keeping per team, agent and promise kind, and overall.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    overall: GroupSummary,
    groups: HashMap<(SummaryGroup, String), GroupSummary>,
}

fn group_names(team: Option<&TeamId>, made_by: &ActorId, kind: PromiseKind) -> [(SummaryGroup, String); 3] {
    [
        (SummaryGroup::Team, team.map_or_else(|| "(none)".to_owned(), ToString::to_string)),
        (SummaryGroup::Agent, made_by.to_string()),
        (SummaryGroup::PromiseKind, promise_kind_name(kind).to_owned()),
    ]
}

impl Summary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one settled (or silently broken) promise.
    pub fn add(&mut self, promise: &SettledPromise) {
        let count = |group: &mut GroupSummary| {
            group.settled += 1;
            match promise.settlement {
                Settlement::KeptOnTime => group.kept_on_time += 1,
                Settlement::KeptLate { .. } => group.kept_late += 1,
                Settlement::PartiallyKept => group.partially_kept += 1,
                Settlement::Broken { .. } => group.broken += 1,
                Settlement::Cancelled => group.cancelled += 1,
                Settlement::Silent { .. } => group.silent += 1,
            }
            if let Some(late) = promise.settlement.lateness().filter(|late| late.millis() > 0) {
                group.late_days.push(days(late));
            }
        };
        count(&mut self.overall);
        for key in group_names(promise.team.as_ref(), &promise.made_by, promise.kind) {
            let name = key.1.clone();
            count(
                self.groups.entry(key).or_insert_with(|| GroupSummary { group: name, ..Default::default() }),
            );
        }
    }

    /// Counts one broken promise's story toward the recovery rate.
    pub fn add_story(&mut self, story: &PromiseStory) {
        let recovered = story.recovered();
        let count = |group: &mut GroupSummary| {
            group.stories += 1;
            group.recovered += u64::from(recovered);
        };
        count(&mut self.overall);
        for key in group_names(story.team.as_ref(), &story.made_by, story.kind) {
            let name = key.1.clone();
            count(
                self.groups.entry(key).or_insert_with(|| GroupSummary { group: name, ..Default::default() }),
            );
        }
    }

    /// Adds `other` (the summary of other promises, e.g. another partition's) to this one: the
    /// result is the summary of both sets, whatever order they were counted in.
    pub fn merge(&mut self, other: Summary) {
        self.overall.absorb(other.overall);
        for (key, group) in other.groups {
            match self.groups.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut mine) => mine.get_mut().absorb(group),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(group);
                }
            }
        }
    }

    /// Every promise together.
    pub fn overall(&self) -> GroupSummary {
        finished(self.overall.clone())
    }

    /// The groups of one grouping, by name.
    pub fn by(&self, grouping: SummaryGroup) -> Vec<GroupSummary> {
        let mut groups: Vec<GroupSummary> = self
            .groups
            .iter()
            .filter(|((by, _), _)| *by == grouping)
            .map(|(_, group)| finished(group.clone()))
            .collect();
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups
    }
}

impl GroupSummary {
    /// Adds the counts of `other` (same group, other promises); the rates are computed later.
    fn absorb(&mut self, other: GroupSummary) {
        self.settled += other.settled;
        self.kept_on_time += other.kept_on_time;
        self.kept_late += other.kept_late;
        self.partially_kept += other.partially_kept;
        self.broken += other.broken;
        self.silent += other.silent;
        self.cancelled += other.cancelled;
        self.late_days.extend(other.late_days);
        self.stories += other.stories;
        self.recovered += other.recovered;
    }
}

fn finished(mut group: GroupSummary) -> GroupSummary {
    let judged = group.settled - group.cancelled;
    group.keeping_rate_percent = (judged > 0).then(|| 100.0 * group.kept_on_time as f64 / judged as f64);
    group.late_days.sort_by(f64::total_cmp);
    group.median_days_late = median(&group.late_days);
    group.recovery_rate_percent =
        (group.stories > 0).then(|| 100.0 * group.recovered as f64 / group.stories as f64);
    group
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> Option<f64> {
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => sorted.get(middle).copied(),
        _ => Some((sorted.get(middle - 1)? + sorted.get(middle)?) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CancelledBy;
    use crate::ids::{CommandId, EventId};
    use crate::sample;
    use crate::values::Currency;

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_unix_millis("test", 1_800_000_000_000 + hours * 3_600_000).unwrap()
    }

    fn text(value: &str) -> Text {
        Text::new("text", value, 500).unwrap()
    }

    fn pid(id: &str) -> PromiseId {
        PromiseId::new(id).unwrap()
    }

    /// A customer's history built event by event (versions and offsets follow).
    struct History {
        customer: CustomerId,
        events: Vec<RecordedEvent>,
    }

    impl History {
        fn of(customer: &str) -> Self {
            Self { customer: CustomerId::new(customer).unwrap(), events: Vec::new() }
        }

        fn add(&mut self, hours: i64, event: Event) -> &mut Self {
            let version = self.events.len() as u64 + 1;
            let mut metadata = sample::metadata(at(hours)).unwrap();
            metadata.team = Some(TeamId::new("support").unwrap());
            self.events.push(RecordedEvent {
                event_id: EventId::new_v7(),
                customer_id: self.customer.clone(),
                stream_version: version,
                position: Position { partition: 0, offset: version - 1 },
                recorded_at: at(hours),
                command_id: CommandId::new(format!("c-{version}")).unwrap(),
                metadata,
                event,
            });
            self
        }

        fn promise(&mut self, hours: i64, id: &str, due_hours: i64, related: Option<&str>) -> &mut Self {
            self.add(
                hours,
                Event::PromiseMade {
                    promise_id: pid(id),
                    kind: PromiseKind::Callback,
                    description: text("call back about the invoice"),
                    made_by: ActorId::new("agent-1").unwrap(),
                    due_at: at(due_hours),
                    grace: Span::from_secs(3600),
                    related_ref: related.map(|id| RelatedRef::Promise(pid(id))),
                },
            )
        }

        fn kept(&mut self, hours: i64, id: &str) -> &mut Self {
            self.add(
                hours,
                Event::PromiseKept { promise_id: pid(id), kept_at: at(hours), evidence: text("") },
            )
        }

        fn broken(&mut self, hours: i64, id: &str, due_hours: i64) -> &mut Self {
            self.add(
                hours,
                Event::PromiseBroken {
                    promise_id: pid(id),
                    detection: BreakDetection::Deadline,
                    due_at: at(due_hours),
                    detected_at: at(hours),
                    reason: text(""),
                },
            )
        }
    }

    fn stories_of(history: &[RecordedEvent], as_of: Timestamp) -> Vec<PromiseStory> {
        stories(history, as_of, None, &TrustParams::default(), &LoyaltyParams::default())
    }

    #[test]
    fn the_book_settles_each_promise_once_and_finds_silent_breaks() {
        let mut history = History::of("alice");
        history
            .promise(0, "on-time", 10, None)
            .kept(5, "on-time")
            .promise(0, "late", 10, None)
            .kept(34, "late")
            .promise(0, "broken", 10, None)
            .broken(12, "broken", 10)
            .promise(0, "silent", 10, None)
            .promise(0, "pending", 100, None)
            .promise(0, "cancelled", 10, None)
            .add(
                1,
                Event::PromiseCancelled {
                    promise_id: pid("cancelled"),
                    by: CancelledBy::Company,
                    customer_consented: true,
                    reason: text(""),
                },
            )
            .promise(0, "moved", 10, None)
            .add(
                2,
                Event::PromiseRenegotiated {
                    promise_id: pid("moved"),
                    previous_due_at: at(10),
                    new_due_at: at(20),
                    customer_consented: false,
                },
            )
            .kept(15, "moved");
        let mut book = PromiseBook::new();
        let settled: Vec<SettledPromise> =
            history.events.iter().filter_map(|event| book.apply(event)).collect();
        let outcome =
            |id: &str| settled.iter().find(|promise| promise.promise_id.as_str() == id).unwrap().settlement;
        assert_eq!(outcome("on-time"), Settlement::KeptOnTime);
        assert_eq!(outcome("late"), Settlement::KeptLate { late: Span::from_secs(24 * 3600) });
        assert_eq!(
            outcome("broken"),
            Settlement::Broken { detection: BreakDetection::Deadline, late: Span::from_secs(2 * 3600) }
        );
        assert_eq!(outcome("cancelled"), Settlement::Cancelled);
        assert_eq!(outcome("moved"), Settlement::KeptOnTime, "judged by the renegotiated due date");
        assert_eq!(book.open_count(), 2);

        // At hour 10.5 "silent" is past due but within its hour of grace.
        let (silent, pending) =
            PromiseBook { open: book.open.clone() }.finish(at(10).plus(Span::from_secs(1800)));
        assert_eq!((silent.len(), pending), (0, 2));
        let (silent, pending) = book.finish(at(58));
        assert_eq!(pending, 1);
        assert_eq!(silent.len(), 1);
        assert_eq!(silent[0].promise_id.as_str(), "silent");
        assert_eq!(silent[0].settlement, Settlement::Silent { late: Span::from_secs(48 * 3600) });
    }

    #[test]
    fn a_broken_promise_tells_its_whole_story() {
        let mut history = History::of("bob");
        history
            .promise(0, "p1", 24, None)
            .add(
                2,
                Event::PromiseRenegotiated {
                    promise_id: pid("p1"),
                    previous_due_at: at(24),
                    new_due_at: at(48),
                    customer_consented: true,
                },
            )
            .broken(72, "p1", 48)
            .add(74, Event::ApologyIssued { related_ref: RelatedRef::Promise(pid("p1")) })
            .add(
                96,
                Event::CompensationGranted {
                    related_ref: RelatedRef::Promise(pid("p1")),
                    kind: CompensationKind::Credit,
                    amount: Money::positive("amount", 500, Currency::new("amount", "EUR").unwrap()).unwrap(),
                },
            )
            .promise(80, "fix", 90, Some("p1"))
            .kept(85, "fix")
            .add(200, Event::CustomerChurned { reason: crate::events::ChurnReason::Service });
        let told = stories_of(&history.events, at(300));
        assert_eq!(told.len(), 1, "the fix was kept: only p1 is a broken promise");
        let story = &told[0];
        assert_eq!(story.promise_id.as_str(), "p1");
        assert_eq!(story.description.as_str(), "call back about the invoice");
        assert_eq!(story.made_by.as_str(), "agent-1");
        assert_eq!(story.team.as_ref().map(TeamId::as_str), Some("support"));
        assert_eq!((story.made_at, story.first_due_at, story.due_at), (at(0), at(24), at(48)));
        assert_eq!(story.renegotiations.len(), 1);
        assert!(story.renegotiations[0].customer_consented);
        assert!(matches!(
            story.broke,
            Break::Recorded { detection: BreakDetection::Deadline, detected_at, .. } if detected_at == at(72)
        ));
        assert_eq!(story.late, Span::from_secs(24 * 3600));
        assert_eq!(story.apology, Some(FollowUp { at: at(74), after: Span::from_secs(2 * 3600) }));
        let compensation = story.compensation.as_ref().unwrap();
        assert_eq!((compensation.at, compensation.after), (at(96), Span::from_secs(24 * 3600)));
        assert_eq!(compensation.amount.amount_minor, 500);
        let fix = story.fix.as_ref().unwrap();
        assert_eq!((fix.promise_id.as_str(), fix.outcome), ("fix", Some(Settlement::KeptOnTime)));
        // Trust: Unproven 50 before (a consented renegotiation before the due date is no
        // evidence), 7 right after one broken promise.
        assert_eq!((story.trust_before, story.trust_after), (Some(50), Some(7)));
        assert_eq!(story.churned_at, Some(at(200)));
        assert_eq!(story.lifecycle_now, Lifecycle::Churned);
        assert!(story.recovered());
        assert!(story.lost_afterwards());
    }

    #[test]
    fn a_silent_break_has_no_trust_before_and_after_and_counts_from_the_due_date() {
        let mut history = History::of("carol");
        history.promise(0, "p1", 10, None).kept(1, "other-unknown");
        let told = stories_of(&history.events, at(58));
        assert_eq!(told.len(), 1);
        let story = &told[0];
        assert_eq!(story.broke, Break::Silent);
        assert_eq!(story.late, Span::from_secs(48 * 3600));
        assert_eq!((story.trust_before, story.trust_after), (None, None));
        assert_eq!(story.trust_now, 50, "the models never heard of the break");
        assert!(!story.recovered());
        // Within grace: not broken yet.
        assert!(stories_of(&history.events, at(10).plus(Span::from_secs(60))).is_empty());
        // Narrowed to other promises: nothing.
        let none: &dyn Fn(&PromiseId) -> bool = &|id| id.as_str() == "p2";
        assert!(
            stories(&history.events, at(58), Some(none), &TrustParams::default(), &LoyaltyParams::default())
                .is_empty()
        );
    }

    #[test]
    fn the_summary_counts_keeping_lateness_and_recovery_per_group() {
        let mut summary = Summary::new();
        let promise = |id: &str, agent: &str, settlement| SettledPromise {
            customer_id: CustomerId::new("c").unwrap(),
            promise_id: pid(id),
            kind: PromiseKind::Delivery,
            made_by: ActorId::new(agent).unwrap(),
            team: None,
            due_at: at(0),
            settlement,
        };
        let day = Span::from_secs(86_400);
        let settled = [
            promise("a", "ann", Settlement::KeptOnTime),
            promise("b", "ann", Settlement::KeptLate { late: day }),
            promise(
                "c",
                "ann",
                Settlement::Broken { detection: BreakDetection::Audit, late: Span::from_secs(3 * 86_400) },
            ),
            promise("d", "ann", Settlement::Cancelled),
            promise("e", "ben", Settlement::Silent { late: Span::from_secs(2 * 86_400) }),
        ];
        for promise in &settled {
            summary.add(promise);
        }
        let overall = summary.overall();
        assert_eq!((overall.settled, overall.kept_on_time, overall.cancelled, overall.silent), (5, 1, 1, 1));
        assert_eq!(overall.keeping_rate_percent, Some(25.0), "1 of 4 judged");
        assert_eq!(overall.median_days_late, Some(2.0), "median of 1, 3 and 2 days");
        assert_eq!(overall.recovery_rate_percent, None, "no stories yet");
        let agents = summary.by(SummaryGroup::Agent);
        assert_eq!(agents.iter().map(|group| group.group.as_str()).collect::<Vec<_>>(), ["ann", "ben"]);
        assert_eq!(agents[0].keeping_rate_percent, Some(100.0 / 3.0));
        assert_eq!(agents[0].median_days_late, Some(2.0), "mean of the middle two: 1 and 3");
        assert_eq!(agents[1].keeping_rate_percent, Some(0.0));
        assert_eq!(summary.by(SummaryGroup::Team)[0].group, "(none)");
        assert_eq!(summary.by(SummaryGroup::PromiseKind)[0].group, "delivery");

        let mut history = History::of("c");
        history.promise(0, "x", 1, None).broken(2, "x", 1);
        let mut story = stories_of(&history.events, at(10)).remove(0);
        summary.add_story(&story);
        story.apology = Some(FollowUp { at: at(3), after: Span::from_secs(3600) });
        summary.add_story(&story);
        assert_eq!(summary.overall().recovery_rate_percent, Some(50.0));
    }

    #[test]
    fn merged_summaries_equal_one_summary_of_every_promise() {
        let day = Span::from_secs(86_400);
        let promise = |id: usize| SettledPromise {
            customer_id: CustomerId::new(format!("c{}", id % 3)).unwrap(),
            promise_id: pid(&format!("p{id}")),
            kind: if id.is_multiple_of(2) { PromiseKind::Delivery } else { PromiseKind::Callback },
            made_by: ActorId::new(["ann", "ben", "cat"][id % 3]).unwrap(),
            team: id.is_multiple_of(4).then(|| TeamId::new("billing").unwrap()),
            due_at: at(0),
            settlement: match id % 5 {
                0 => Settlement::KeptOnTime,
                1 => Settlement::KeptLate { late: Span::from_millis(day.millis() * id as i64) },
                2 => Settlement::Broken {
                    detection: BreakDetection::Deadline,
                    late: Span::from_millis(day.millis() * (id % 7) as i64),
                },
                3 => Settlement::Cancelled,
                _ => Settlement::Silent { late: Span::from_millis(day.millis() * (id % 11) as i64) },
            },
        };
        let settled: Vec<SettledPromise> = (0..40).map(promise).collect();
        let mut history = History::of("c");
        history.promise(0, "x", 1, None).broken(2, "x", 1);
        let story = stories_of(&history.events, at(10)).remove(0);

        let mut whole = Summary::new();
        settled.iter().for_each(|promise| whole.add(promise));
        whole.add_story(&story);
        let (mut first, mut second) = (Summary::new(), Summary::new());
        for (index, promise) in settled.iter().enumerate().rev() {
            let part = if index % 3 == 0 { &mut first } else { &mut second };
            part.add(promise);
        }
        second.add_story(&story);
        first.merge(second);
        assert_eq!(first.overall(), whole.overall());
        for grouping in [SummaryGroup::Team, SummaryGroup::Agent, SummaryGroup::PromiseKind] {
            assert_eq!(first.by(grouping), whole.by(grouping), "{grouping:?}");
        }
        assert!(whole.overall().median_days_late.is_some());
    }
}
