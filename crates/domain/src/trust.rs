//! Trust standing (DESIGN §5): a beta-reputation score over a customer's promise and complaint
//! history, with negativity asymmetry, forgetting and recovery credit. Pure: the same history
//! and `as_of` always give the same answer, whether computed live or by a replay.
//!
//! Evidence `r` (positive) and `s` (negative) is collected event by event in business time
//! (`occurred_at`, so a late-logged call lands where it happened), then decayed to `as_of`:
//! `r` halves every 180 days, `s` every 365. `k` (default 12) is how much heavier a failure
//! weighs than a success. Score = round(100·(r+1)/(r+s+2)), uncertainty = 2/(r+s+2).
//!
//! | event | r += | s += |
//! |---|---|---|
//! | promise kept on time (kept_at ≤ due_at) | 1 | |
//! | kept late, within grace | 0.5 | 0.25k |
//! | kept after due_at + grace (the deadline had passed: a failure) | | k |
//! | partially kept, fraction f | f | (1−f)k |
//! | broken, or cancelled by the company without consent | | k |
//! | renegotiated without consent or after the due date | | 0.5k |
//! | complaint SLA target met (first reply, resolution) | 0.25 | |
//! | SLA breached | | 0.25k |
//! | first reply missed for an angry customer (last interaction angry) | | 0.5k |
//!
//! Recovery: a failure F of weight w (a broken or late-kept promise, a partial keep, a breach)
//! earns back r += ρ·w, where ρ sums 0.3 for an apology about F, 0.2 for a promise made to fix F
//! (`related_ref: F`) kept on time, and 0.2 for compensation for F (granted, or a kept promise of
//! kind `compensation` for F); ρ ≤ 0.7, halved when another failure happened in the 90 days
//! before F. A recovery promise earns trust only through ρ; broken, it is a new failure.

use crate::error::{DomainError, FieldError};
use crate::events::{CancelledBy, Event, PromiseKind, RelatedRef, Sentiment, SlaTarget};
use crate::ids::EventId;
use crate::values::{Span, Timestamp};

/// Version of the model's rules, carried by every answer.
pub const TRUST_MODEL_VERSION: &str = "trust-v1";

/// The model's parameters (DESIGN §5 defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustParams {
    /// Negativity multiplier k: one failure weighs as much as k successes (3–12).
    pub negativity: f64,
    /// Half-life of positive evidence.
    pub positive_half_life: Span,
    /// Half-life of negative evidence.
    pub negative_half_life: Span,
    /// Credit for an apology about a failure.
    pub apology_credit: f64,
    /// Credit for a promise to fix a failure, kept on time.
    pub fix_credit: f64,
    /// Credit for compensation for a failure.
    pub compensation_credit: f64,
    /// Most a failure can earn back, as a share of its weight.
    pub recovery_cap: f64,
    /// A failure within this span after another gets half the recovery credit.
    pub double_deviation_window: Span,
}

impl Default for TrustParams {
    fn default() -> Self {
        Self {
            negativity: 12.0,
            positive_half_life: Span::from_days(180),
            negative_half_life: Span::from_days(365),
            apology_credit: 0.3,
            fix_credit: 0.2,
            compensation_credit: 0.2,
            recovery_cap: 0.7,
            double_deviation_window: Span::from_days(90),
        }
    }
}

impl TrustParams {
    /// Checks the ranges: k in 3–12, positive half-lives, credits in 0–1.
    pub fn validate(&self) -> Result<(), DomainError> {
        if !(3.0..=12.0).contains(&self.negativity) {
            return Err(DomainError::invalid_because("trust.negativity", "must be between 3 and 12"));
        }
        if self.positive_half_life.millis() <= 0 || self.negative_half_life.millis() <= 0 {
            return Err(DomainError::invalid("trust.half_life", FieldError::Empty));
        }
        let credits = [self.apology_credit, self.fix_credit, self.compensation_credit, self.recovery_cap];
        if credits.iter().any(|credit| !(0.0..=1.0).contains(credit)) {
            return Err(DomainError::invalid_because(
                "trust.recovery",
                "credits and the cap must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// Where a customer's trust stands (stored by standing's band tracker: append variants only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum TrustBand {
    /// Too little evidence to say (uncertainty above 0.5).
    Unproven,
    /// Score below 25.
    Broken,
    /// Score 25–49.
    Strained,
    /// Score 50–74.
    Stable,
    /// Score 75 and above.
    Trusted,
}

impl TrustBand {
    /// The band's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            TrustBand::Unproven => "unproven",
            TrustBand::Broken => "broken",
            TrustBand::Strained => "strained",
            TrustBand::Stable => "stable",
            TrustBand::Trusted => "trusted",
        }
    }
}

/// What one event added, decayed to `as_of` (positive and negative evidence).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustContribution {
    pub event_id: EventId,
    pub event_type: &'static str,
    pub occurred_at: Timestamp,
    pub positive: f64,
    pub negative: f64,
}

/// A customer's trust at an instant, with the events that moved it most.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustStanding {
    pub model_version: &'static str,
    pub as_of: Timestamp,
    /// 0–100.
    pub score: u8,
    /// 2/(r+s+2): 1 with no evidence, toward 0 with much.
    pub uncertainty: f64,
    pub band: TrustBand,
    /// Decayed positive evidence r.
    pub positive: f64,
    /// Decayed negative evidence s.
    pub negative: f64,
    /// The contributions with the largest decayed weight (at most [`MAX_CONTRIBUTORS`]), largest first.
    pub contributors: Vec<TrustContribution>,
}

/// Contributors an answer lists.
pub const MAX_CONTRIBUTORS: usize = 5;

/// One event of a customer's history, as the model reads it.
#[derive(Debug, Clone, Copy)]
pub struct HistoryEvent<'a> {
    pub event_id: EventId,
    pub occurred_at: Timestamp,
    pub event: &'a Event,
}

/// A recorded history (one customer's stream) as the models read it.
pub fn history_of(events: &[crate::RecordedEvent]) -> impl Iterator<Item = HistoryEvent<'_>> {
    events.iter().map(|event| HistoryEvent {
        event_id: event.event_id,
        occurred_at: event.metadata.occurred_at,
        event: &event.event,
    })
}

/// An open or settled promise, as far as trust cares.
#[derive(Debug, Clone, Copy)]
struct PromiseFacts<'e> {
    due_at: Timestamp,
    grace: Span,
    kind: PromiseKind,
    /// The failure this promise was made to recover.
    recovers: Option<FailureKey<'e>>,
}

/// What can fail and be recovered: a promise or a complaint, by id (borrowed from the history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FailureKey<'e> {
    Promise(&'e str),
    Complaint(&'e str),
}

/// The walk's maps (keyed by ids; nothing iterates them, so their order never shows).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// A failure that recovery can earn back.
#[derive(Debug, Clone, Default)]
struct Failure {
    weight: f64,
    at: Option<Timestamp>,
    /// Another failure happened in the window before this one: credit is halved.
    double_deviation: bool,
    apology: bool,
    fix: bool,
    compensation: bool,
}

impl Failure {
    fn earned(&self, params: &TrustParams) -> f64 {
        let mut rho = 0.0;
        if self.apology {
            rho += params.apology_credit;
        }
        if self.fix {
            rho += params.fix_credit;
        }
        if self.compensation {
            rho += params.compensation_credit;
        }
        let rho = rho.min(params.recovery_cap);
        let rho = if self.double_deviation { rho / 2.0 } else { rho };
        rho * self.weight
    }
}

#[derive(Debug, Clone, Copy)]
enum Credit {
    Apology,
    Fix,
    Compensation,
}

/// The walk over a history: evidence so far and what later events refer to.
struct Walk<'p, 'e> {
    params: &'p TrustParams,
    evidence: Vec<(HistoryEventKey, f64, f64)>,
    promises: HashMap<&'e str, PromiseFacts<'e>>,
    failures: HashMap<FailureKey<'e>, Failure>,
    failure_times: Vec<Timestamp>,
    /// Complaints: was the customer angry when it was opened; which SLA targets were breached.
    complaints: HashMap<&'e str, (bool, bool, bool)>,
    last_interaction_angry: bool,
}

#[derive(Debug, Clone, Copy)]
struct HistoryEventKey {
    event_id: EventId,
    event_type: &'static str,
    occurred_at: Timestamp,
}

impl<'e> Walk<'_, 'e> {
    fn add(&mut self, key: HistoryEventKey, positive: f64, negative: f64) {
        self.evidence.push((key, positive, negative));
    }

    fn fail(&mut self, key: HistoryEventKey, failure: FailureKey<'e>, weight: f64) {
        let window_start = Timestamp::from_unix_millis_clamped(
            key.occurred_at.unix_millis().saturating_sub(self.params.double_deviation_window.millis()),
        );
        let recent = self.failure_times.iter().any(|at| *at >= window_start && *at < key.occurred_at);
        let entry = self.failures.entry(failure).or_default();
        if entry.at.is_none() {
            entry.at = Some(key.occurred_at);
            entry.double_deviation = recent;
        }
        entry.weight += weight;
        self.failure_times.push(key.occurred_at);
        self.add(key, 0.0, weight);
    }

    fn credit(&mut self, key: HistoryEventKey, failure: FailureKey<'e>, credit: Credit) {
        let params = self.params;
        let Some(entry) = self.failures.get_mut(&failure) else {
            return;
        };
        let before = entry.earned(params);
        match credit {
            Credit::Apology => entry.apology = true,
            Credit::Fix => entry.fix = true,
            Credit::Compensation => entry.compensation = true,
        }
        let gained = entry.earned(params) - before;
        if gained > 0.0 {
            self.add(key, gained, 0.0);
        }
    }

    fn apply(&mut self, key: HistoryEventKey, event: &'e Event) {
        let k = self.params.negativity;
        match event {
            Event::PromiseMade { promise_id, kind, due_at, grace, related_ref, .. } => {
                let recovers = related_ref.as_ref().and_then(failure_key);
                self.promises.insert(
                    promise_id.as_str(),
                    PromiseFacts { due_at: *due_at, grace: *grace, kind: *kind, recovers },
                );
            }
            Event::PromiseRenegotiated { promise_id, previous_due_at, new_due_at, customer_consented } => {
                if !customer_consented || key.occurred_at > *previous_due_at {
                    self.add(key, 0.0, 0.5 * k);
                }
                if let Some(promise) = self.promises.get_mut(promise_id.as_str()) {
                    promise.due_at = *new_due_at;
                }
            }
            Event::PromiseKept { promise_id, kept_at, .. } => {
                let id = FailureKey::Promise(promise_id.as_str());
                let Some(promise) = self.promises.get(promise_id.as_str()).copied() else {
                    return;
                };
                let on_time = *kept_at <= promise.due_at;
                match promise.recovers {
                    Some(failure) => {
                        if on_time {
                            let credit = if promise.kind == PromiseKind::Compensation {
                                Credit::Compensation
                            } else {
                                Credit::Fix
                            };
                            self.credit(key, failure, credit);
                        }
                    }
                    None if on_time => self.add(key, 1.0, 0.0),
                    None if *kept_at <= promise.due_at.plus(promise.grace) => self.add(key, 0.5, 0.25 * k),
                    None => self.fail(key, id, k),
                }
            }
            Event::PromisePartiallyKept { promise_id, fraction_permille, .. } => {
                let fraction = f64::from(*fraction_permille) / 1000.0;
                self.add(key, fraction, 0.0);
                self.fail(key, FailureKey::Promise(promise_id.as_str()), (1.0 - fraction) * k);
            }
            Event::PromiseBroken { promise_id, .. } => {
                self.fail(key, FailureKey::Promise(promise_id.as_str()), k)
            }
            Event::PromiseCancelled {
                promise_id,
                by: CancelledBy::Company,
                customer_consented: false,
                ..
            } => {
                self.fail(key, FailureKey::Promise(promise_id.as_str()), k);
            }
            Event::InteractionRecorded { sentiment, .. } => {
                self.last_interaction_angry = *sentiment == Sentiment::Angry;
            }
            Event::ComplaintOpened { complaint_id, .. } => {
                self.complaints.insert(complaint_id.as_str(), (self.last_interaction_angry, false, false));
            }
            Event::ComplaintReopened { complaint_id, .. } => {
                if let Some(complaint) = self.complaints.get_mut(complaint_id.as_str()) {
                    complaint.1 = false;
                    complaint.2 = false;
                }
            }
            Event::ComplaintResponded { complaint_id, first } => {
                let breached = self.complaints.get(complaint_id.as_str()).is_some_and(|c| c.1);
                if *first && !breached {
                    self.add(key, 0.25, 0.0);
                }
            }
            Event::ComplaintResolved { complaint_id, .. } => {
                let breached = self.complaints.get(complaint_id.as_str()).is_some_and(|c| c.2);
                if !breached {
                    self.add(key, 0.25, 0.0);
                }
            }
            Event::SlaBreached { complaint_id, target, .. } => {
                let complaint = self.complaints.entry(complaint_id.as_str()).or_insert((false, false, false));
                let weight = match target {
                    SlaTarget::FirstReply => {
                        complaint.1 = true;
                        if complaint.0 { 0.5 * k } else { 0.25 * k }
                    }
                    SlaTarget::Resolution => {
                        complaint.2 = true;
                        0.25 * k
                    }
                };
                self.fail(key, FailureKey::Complaint(complaint_id.as_str()), weight);
            }
            Event::ApologyIssued { related_ref } => {
                if let Some(failure) = failure_key(related_ref) {
                    self.credit(key, failure, Credit::Apology);
                }
            }
            Event::CompensationGranted { related_ref, .. } => {
                if let Some(failure) = failure_key(related_ref) {
                    self.credit(key, failure, Credit::Compensation);
                }
            }
            _ => {}
        }
    }
}

/// The failure an event about `related_ref` is about, if it can be one.
fn failure_key(related_ref: &RelatedRef) -> Option<FailureKey<'_>> {
    match related_ref {
        RelatedRef::Promise(id) => Some(FailureKey::Promise(id.as_str())),
        RelatedRef::Complaint(id) => Some(FailureKey::Complaint(id.as_str())),
        RelatedRef::Order(_) | RelatedRef::Interaction(_) => None,
    }
}

/// `0.5^(age / half_life)`; 1 for evidence at or after `as_of`.
fn decay(at: Timestamp, as_of: Timestamp, half_life: Span) -> f64 {
    let age = as_of.unix_millis().saturating_sub(at.unix_millis()).max(0) as f64;
    0.5f64.powf(age / half_life.millis() as f64)
}

/// The trust of a customer at `as_of`, from their history (in stream order; events with
/// `occurred_at` after `as_of` are ignored, the rest are read in business-time order).
pub fn trust<'a>(
    history: impl IntoIterator<Item = HistoryEvent<'a>>,
    as_of: Timestamp,
    params: &TrustParams,
) -> TrustStanding {
    // Only the events up to `as_of`, all of them walked: the reference `SortedHistory`'s cut of
    // one sorted history is tested against.
    let sorted = SortedHistory::new(history.into_iter().filter(|event| event.occurred_at <= as_of));
    standing(walk(&sorted.events, params), as_of, params)
}

/// A customer's history put in business-time order once, to ask its trust at several instants
/// (the audit's trust just before and just after each break): each answer equals [`trust`] of
/// the history at that instant.
#[derive(Debug, Clone)]
pub struct SortedHistory<'a> {
    events: Vec<HistoryEvent<'a>>,
}

impl<'a> SortedHistory<'a> {
    /// `history` in stream order.
    pub fn new(history: impl IntoIterator<Item = HistoryEvent<'a>>) -> Self {
        let mut events: Vec<HistoryEvent<'a>> = history.into_iter().collect();
        // Stable: events of the same instant keep their stream order.
        events.sort_by_key(|event| event.occurred_at);
        Self { events }
    }

    /// The events up to `as_of`, in business-time order.
    fn until(&self, as_of: Timestamp) -> &[HistoryEvent<'a>] {
        &self.events[..self.events.partition_point(|event| event.occurred_at <= as_of)]
    }

    /// The trust score alone at `as_of` (what [`SortedHistory::trust`] answers, without the
    /// contributors).
    pub fn score(&self, as_of: Timestamp, params: &TrustParams) -> u8 {
        score_at(&walk(self.until(as_of), params).evidence, as_of, params)
    }

    /// The trust scores at each of `instants` (in any order), each what [`SortedHistory::score`]
    /// answers, from one walk: the walk of the events up to an instant is the same whatever
    /// follows them, so each score is read off the evidence when the walk reaches its instant.
    pub fn scores(&self, instants: &[Timestamp], params: &TrustParams) -> Vec<u8> {
        let mut order: Vec<usize> = (0..instants.len()).collect();
        order.sort_by_key(|&index| instants[index]);
        let mut scores = vec![0; instants.len()];
        let mut walk = Walk::new(params);
        let mut events = self.events.iter().peekable();
        for index in order {
            let as_of = instants[index];
            while let Some(event) = events.next_if(|event| event.occurred_at <= as_of) {
                walk.step(event);
            }
            scores[index] = score_at(&walk.evidence, as_of, params);
        }
        scores
    }

    /// The whole trust standing at `as_of`.
    pub fn trust(&self, as_of: Timestamp, params: &TrustParams) -> TrustStanding {
        standing(walk(self.until(as_of), params), as_of, params)
    }
}

impl<'p, 'e> Walk<'p, 'e> {
    fn new(params: &'p TrustParams) -> Self {
        Walk {
            params,
            evidence: Vec::new(),
            promises: HashMap::default(),
            failures: HashMap::default(),
            failure_times: Vec::new(),
            complaints: HashMap::default(),
            last_interaction_angry: false,
        }
    }

    /// Walks one more event (the next in business-time order).
    fn step(&mut self, event: &HistoryEvent<'e>) {
        let key = HistoryEventKey {
            event_id: event.event_id,
            event_type: event.event.event_type(),
            occurred_at: event.occurred_at,
        };
        self.apply(key, event.event);
    }
}

/// The evidence of `events` (in business-time order).
fn walk<'p, 'e>(events: &[HistoryEvent<'e>], params: &'p TrustParams) -> Walk<'p, 'e> {
    let mut walk = Walk::new(params);
    for event in events {
        walk.step(event);
    }
    walk
}

/// The score at `as_of` of evidence gathered up to it.
fn score_at(evidence: &[(HistoryEventKey, f64, f64)], as_of: Timestamp, params: &TrustParams) -> u8 {
    let (mut positive, mut negative) = (0.0, 0.0);
    for (key, r, s) in evidence {
        positive += r * decay(key.occurred_at, as_of, params.positive_half_life);
        negative += s * decay(key.occurred_at, as_of, params.negative_half_life);
    }
    score_of(positive, negative)
}

/// The trust standing at `as_of` of a walk's evidence.
fn standing(walk: Walk<'_, '_>, as_of: Timestamp, params: &TrustParams) -> TrustStanding {
    let mut positive = 0.0;
    let mut negative = 0.0;
    let mut contributors: Vec<TrustContribution> = walk
        .evidence
        .iter()
        .map(|(key, r, s)| {
            let r = r * decay(key.occurred_at, as_of, params.positive_half_life);
            let s = s * decay(key.occurred_at, as_of, params.negative_half_life);
            positive += r;
            negative += s;
            TrustContribution {
                event_id: key.event_id,
                event_type: key.event_type,
                occurred_at: key.occurred_at,
                positive: r,
                negative: s,
            }
        })
        .collect();
    contributors.sort_by(|a, b| (b.positive + b.negative).total_cmp(&(a.positive + a.negative)));
    contributors.truncate(MAX_CONTRIBUTORS);
    let total = positive + negative + 2.0;
    let score = score_of(positive, negative);
    let uncertainty = 2.0 / total;
    let band = if uncertainty > 0.5 {
        TrustBand::Unproven
    } else {
        match score {
            75.. => TrustBand::Trusted,
            50..=74 => TrustBand::Stable,
            25..=49 => TrustBand::Strained,
            _ => TrustBand::Broken,
        }
    };
    TrustStanding {
        model_version: TRUST_MODEL_VERSION,
        as_of,
        score,
        uncertainty,
        band,
        positive,
        negative,
        contributors,
    }
}

/// The score of decayed positive and negative evidence: the beta reputation's expected value
/// (uniform prior), in percent.
fn score_of(positive: f64, negative: f64) -> u8 {
    (100.0 * (positive + 1.0) / (positive + negative + 2.0)).round().clamp(0.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::events::{BreakDetection, CompensationKind};
    use crate::ids::{ActorId, PromiseId};
    use crate::values::{Currency, Money, Text};

    const T0: i64 = 1_800_000_000_000;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis_clamped(millis)
    }

    fn made(id: &str, due: i64, related: Option<RelatedRef>, kind: PromiseKind) -> Event {
        Event::PromiseMade {
            promise_id: PromiseId::new(id).unwrap(),
            kind,
            description: Text::new("description", "d", 10).unwrap(),
            made_by: ActorId::new("agent").unwrap(),
            due_at: at(due),
            grace: Span::from_secs(600),
            related_ref: related,
        }
    }

    fn kept(id: &str, when: i64) -> Event {
        Event::PromiseKept {
            promise_id: PromiseId::new(id).unwrap(),
            kept_at: at(when),
            evidence: Text::new("evidence", "", 10).unwrap(),
        }
    }

    fn broken(id: &str) -> Event {
        Event::PromiseBroken {
            promise_id: PromiseId::new(id).unwrap(),
            detection: BreakDetection::Deadline,
            due_at: at(T0),
            detected_at: at(T0),
            reason: Text::new("reason", "", 10).unwrap(),
        }
    }

    fn promise_ref(id: &str) -> RelatedRef {
        RelatedRef::Promise(PromiseId::new(id).unwrap())
    }

    /// Trust of `events`, all at T0 (no decay), as of T0.
    fn score_at_once(events: &[Event]) -> TrustStanding {
        let history = events.iter().map(|event| HistoryEvent {
            event_id: EventId::new_v7(),
            occurred_at: at(T0),
            event,
        });
        trust(history, at(T0), &TrustParams::default())
    }

    fn kept_promises(count: usize) -> Vec<Event> {
        (0..count)
            .flat_map(|n| {
                [made(&format!("p{n}"), T0 + 1000, None, PromiseKind::Callback), kept(&format!("p{n}"), T0)]
            })
            .collect()
    }

    #[test]
    fn golden_examples_of_the_design() {
        let new = score_at_once(&[]);
        assert_eq!((new.score, new.band), (50, TrustBand::Unproven));
        assert_eq!(score_at_once(&kept_promises(12)).score, 93);
        let mut twelve_and_one_broken = kept_promises(12);
        twelve_and_one_broken.extend([made("b", T0, None, PromiseKind::Delivery), broken("b")]);
        assert_eq!(score_at_once(&twelve_and_one_broken).score, 50);
        let one_broken = score_at_once(&[made("b", T0, None, PromiseKind::Delivery), broken("b")]);
        assert_eq!((one_broken.score, one_broken.band), (7, TrustBand::Broken));
        // Full recovery: apology (0.3) + fix kept on time (0.2) + compensation (0.2) = 0.7 of 12.
        let recovered = score_at_once(&[
            made("b", T0, None, PromiseKind::Delivery),
            broken("b"),
            Event::ApologyIssued { related_ref: promise_ref("b") },
            made("fix", T0 + 1000, Some(promise_ref("b")), PromiseKind::Fix),
            kept("fix", T0),
            Event::CompensationGranted {
                related_ref: promise_ref("b"),
                kind: CompensationKind::Credit,
                amount: Money::positive("amount", 1000, Currency::new("currency", "EUR").unwrap()).unwrap(),
            },
        ]);
        assert_eq!(recovered.score, 42);
        assert!((recovered.positive - 8.4).abs() < 1e-9, "{}", recovered.positive);
    }

    #[test]
    fn late_keeps_and_double_deviations_follow_the_table() {
        // Kept within grace: r 0.5, s 3.
        let late = score_at_once(&[made("p", T0 - 1000, None, PromiseKind::Callback), kept("p", T0)]);
        assert_eq!((late.positive, late.negative), (0.5, 3.0));
        // Two failures within 90 days: the second one's recovery is halved.
        let day = Span::from_days(1).millis();
        let events = [
            (T0, made("a", T0, None, PromiseKind::Callback)),
            (T0, broken("a")),
            (T0 + 10 * day, made("b", T0, None, PromiseKind::Callback)),
            (T0 + 10 * day, broken("b")),
            (T0 + 11 * day, Event::ApologyIssued { related_ref: promise_ref("b") }),
        ];
        let history = events.iter().map(|(when, event)| HistoryEvent {
            event_id: EventId::new_v7(),
            occurred_at: at(*when),
            event,
        });
        let params = TrustParams {
            positive_half_life: Span::from_days(1_000_000),
            negative_half_life: Span::from_days(1_000_000),
            ..TrustParams::default()
        };
        let standing = trust(history, at(T0 + 11 * day), &params);
        assert!((standing.positive - 0.15 * 12.0).abs() < 1e-6, "{}", standing.positive);
    }

    #[test]
    fn evidence_decays_toward_the_prior_and_later_events_are_ignored() {
        let events = [made("b", T0, None, PromiseKind::Delivery), broken("b")];
        let history = || {
            events.iter().map(|event| HistoryEvent {
                event_id: EventId::new_v7(),
                occurred_at: at(T0),
                event,
            })
        };
        let params = TrustParams::default();
        let now = trust(history(), at(T0), &params).score;
        let year_later = trust(history(), at(T0 + Span::from_days(365).millis()), &params);
        assert!((year_later.negative - 6.0).abs() < 1e-9, "s halves in a year: {}", year_later.negative);
        assert!(year_later.score > now);
        assert_eq!(trust(history(), at(T0 - 1), &params).score, 50, "events after as_of do not count");
    }

    #[test]
    fn negativity_must_be_between_3_and_12() {
        assert!(TrustParams { negativity: 2.0, ..TrustParams::default() }.validate().is_err());
        assert!(TrustParams { negativity: 3.0, ..TrustParams::default() }.validate().is_ok());
        assert!(TrustParams::default().validate().is_ok());
    }

    proptest! {
        #[test]
        fn a_kept_promise_never_lowers_trust_and_a_broken_one_never_raises_it(
            kept_before in 0usize..20, broken_before in 0usize..4, k in 3.0f64..=12.0,
        ) {
            let params = TrustParams { negativity: k, ..TrustParams::default() };
            let mut events = kept_promises(kept_before);
            for n in 0..broken_before {
                events.extend([made(&format!("x{n}"), T0, None, PromiseKind::Callback), broken(&format!("x{n}"))]);
            }
            let score = |events: &[Event]| {
                let history = events.iter().map(|event| HistoryEvent { event_id: EventId::new_v7(), occurred_at: at(T0), event });
                trust(history, at(T0), &params)
            };
            let base = score(&events);
            let mut with_kept = events.clone();
            with_kept.extend([made("new", T0 + 1, None, PromiseKind::Callback), kept("new", T0)]);
            let mut with_broken = events.clone();
            with_broken.extend([made("new", T0, None, PromiseKind::Callback), broken("new")]);
            prop_assert!(score(&with_kept).score >= base.score);
            prop_assert!(score(&with_broken).score <= base.score);
            prop_assert!(base.score <= 100);
        }
    }
}
