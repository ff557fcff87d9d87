//! The read models of standing, and how each event changes them. Pure: no I/O; the store
//! loads the records an event touches, calls these functions, and writes the results.
//!
//! - [`PromiseRecord`]: one promise, its status, due date, maker and team, renegotiations and
//!   outcome (the promise index).
//! - [`ComplaintRecord`]: one complaint, open or not, with its SLA clocks (first reply,
//!   resolution), derived with the same rules the watchdog uses (`domain::deadlines`).
//! - [`CustomerRecord`]: what the projections need to remember of a customer (tier, open
//!   promises' grace, complaint priorities) and how far their stream is applied.
//! - [`SurveyFact`]: one survey answer with who and where it is attributed to (organisation
//!   metrics); [`promise_fact`] and [`complaint_facts`] turn the records into the
//!   [`Fact`]s of `covenant_domain::org_metrics`.
//!
//! The customer timeline is the events themselves, stored by stream version.

use covenant_domain::deadlines::{DeadlineChange, DeadlineSubject, WatchState};
use covenant_domain::events::{
    ActorKind, BreakDetection, Channel, ComplaintCategory, Priority, PromiseKind, Severity, SlaTarget,
    SurveyKind,
};
use covenant_domain::ids::{ActorId, ComplaintId, CustomerId, PromiseId, SurveyId, TeamId};
use covenant_domain::org_metrics::{Attribution, Fact, PromiseOutcome};
use covenant_domain::{Event, RecordedEvent, Span, Timestamp};
use serde::{Deserialize, Serialize};

/// Where a promise stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromiseStatus {
    Open,
    Kept,
    PartiallyKept,
    Broken,
    Cancelled,
}

/// One promise, as the promise index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromiseRecord {
    pub customer_id: CustomerId,
    pub promise_id: PromiseId,
    pub kind: PromiseKind,
    pub status: PromiseStatus,
    pub made_by: ActorId,
    pub team: Option<TeamId>,
    pub made_at: Timestamp,
    pub due_at: Timestamp,
    pub grace: Span,
    pub renegotiations: u32,
    pub settled_at: Option<Timestamp>,
    pub detection: Option<BreakDetection>,
}

impl PromiseRecord {
    /// Open and past its due date at `now`.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.status == PromiseStatus::Open && self.due_at < now
    }
}

/// One SLA clock of a complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    pub target: SlaTarget,
    pub due_at: Timestamp,
    /// When the clock stopped (target met, or the breach recorded); `None` while it runs.
    pub stopped_at: Option<Timestamp>,
    pub breached: bool,
}

/// One complaint, as the complaint index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintRecord {
    pub customer_id: CustomerId,
    pub complaint_id: ComplaintId,
    pub category: ComplaintCategory,
    pub severity: Severity,
    pub priority: Priority,
    pub channel: Channel,
    pub opened_at: Timestamp,
    pub first_reply_at: Option<Timestamp>,
    pub escalations: u32,
    pub reopens: u32,
    pub open: bool,
    pub clocks: Vec<SlaClock>,
}

/// What the projections remember of a customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerRecord {
    /// Tier, open promises' grace, complaint priorities: the inputs of the SLA clocks.
    pub watch: WatchState,
    /// The stream version of the last event applied.
    pub stream_version: u64,
    /// Events applied (equals `stream_version` unless one was applied twice).
    pub events_applied: u64,
}

/// One survey answer, as the survey index keeps it (the answer time is in the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyFact {
    pub kind: SurveyKind,
    pub score: u8,
    /// The recording command's team, agent (when an agent recorded it) and channel.
    pub attribution: Attribution,
}

/// The answer an event records, if it is a `SurveyAnswered`: its survey id, when it was answered
/// (the event's business time) and the fact to keep.
pub fn survey_answered(event: &RecordedEvent) -> Option<(&SurveyId, Timestamp, SurveyFact)> {
    match &event.event {
        Event::SurveyAnswered { survey_id, kind, score, .. } => {
            let metadata = &event.metadata;
            let attribution = Attribution {
                team: metadata.team.clone(),
                agent: (metadata.actor.kind == ActorKind::Agent).then(|| metadata.actor.id.clone()),
                channel: metadata.channel,
            };
            Some((survey_id, metadata.occurred_at, SurveyFact { kind: *kind, score: *score, attribution }))
        }
        _ => None,
    }
}

/// The organisation-metrics fact of a promise: attributed to its team and maker, no channel.
/// A kept promise is on time when it was kept at or before its (last) due date.
pub fn promise_fact(record: &PromiseRecord) -> Fact {
    let outcome = match record.status {
        PromiseStatus::Open => PromiseOutcome::Open,
        PromiseStatus::Kept => match record.settled_at {
            Some(kept_at) if kept_at > record.due_at => PromiseOutcome::KeptLate,
            _ => PromiseOutcome::KeptOnTime,
        },
        PromiseStatus::PartiallyKept => PromiseOutcome::PartiallyKept,
        PromiseStatus::Broken => PromiseOutcome::Broken,
        PromiseStatus::Cancelled => PromiseOutcome::Cancelled,
    };
    Fact::Promise {
        kind: record.kind,
        due_at: record.due_at,
        outcome,
        attribution: Attribution {
            team: record.team.clone(),
            agent: Some(record.made_by.clone()),
            channel: None,
        },
    }
}

/// The organisation-metrics facts of a complaint: the complaint itself (`resolved_at`: when it
/// was last resolved, `None` while open), then one fact per SLA clock; all attributed to the
/// complaint's channel only.
pub fn complaint_facts(record: &ComplaintRecord, resolved_at: Option<Timestamp>) -> Vec<Fact> {
    let attribution = Attribution { team: None, agent: None, channel: Some(record.channel) };
    let mut facts = Vec::with_capacity(1 + record.clocks.len());
    facts.push(Fact::Complaint {
        opened_at: record.opened_at,
        first_reply_at: record.first_reply_at,
        resolved_at,
        attribution: attribution.clone(),
    });
    facts.extend(record.clocks.iter().map(|clock| Fact::SlaClock {
        target: clock.target,
        due_at: clock.due_at,
        stopped_at: clock.stopped_at,
        breached: clock.breached,
        attribution: attribution.clone(),
    }));
    facts
}

/// The promise an event creates, if it is a `PromiseMade`.
pub fn promise_made(event: &RecordedEvent) -> Option<PromiseRecord> {
    match &event.event {
        Event::PromiseMade { promise_id, kind, made_by, due_at, grace, .. } => Some(PromiseRecord {
            customer_id: event.customer_id.clone(),
            promise_id: promise_id.clone(),
            kind: *kind,
            status: PromiseStatus::Open,
            made_by: made_by.clone(),
            team: event.metadata.team.clone(),
            made_at: event.metadata.occurred_at,
            due_at: *due_at,
            grace: *grace,
            renegotiations: 0,
            settled_at: None,
            detection: None,
        }),
        _ => None,
    }
}

/// Folds a later event about the promise into its record.
pub fn update_promise(record: &mut PromiseRecord, event: &Event, occurred_at: Timestamp) {
    let mut settle = |status, at| {
        record.status = status;
        record.settled_at = Some(at);
    };
    match event {
        Event::PromiseRenegotiated { new_due_at, .. } => {
            record.due_at = *new_due_at;
            record.renegotiations += 1;
        }
        Event::PromiseKept { kept_at, .. } => settle(PromiseStatus::Kept, *kept_at),
        Event::PromisePartiallyKept { .. } => settle(PromiseStatus::PartiallyKept, occurred_at),
        Event::PromiseBroken { detection, detected_at, .. } => {
            settle(PromiseStatus::Broken, *detected_at);
            record.detection = Some(*detection);
        }
        Event::PromiseCancelled { .. } => settle(PromiseStatus::Cancelled, occurred_at),
        _ => {}
    }
}

/// The complaint an event opens, if it is a `ComplaintOpened`.
pub fn complaint_opened(event: &RecordedEvent) -> Option<ComplaintRecord> {
    match &event.event {
        Event::ComplaintOpened { complaint_id, category, severity, priority, channel, .. } => {
            Some(ComplaintRecord {
                customer_id: event.customer_id.clone(),
                complaint_id: complaint_id.clone(),
                category: *category,
                severity: *severity,
                priority: *priority,
                channel: *channel,
                opened_at: event.metadata.occurred_at,
                first_reply_at: None,
                escalations: 0,
                reopens: 0,
                open: true,
                clocks: Vec::new(),
            })
        }
        _ => None,
    }
}

/// Folds a later event about the complaint into its record (the SLA clocks move through
/// [`apply_clock_change`]).
pub fn update_complaint(record: &mut ComplaintRecord, event: &Event, occurred_at: Timestamp) {
    match event {
        Event::ComplaintResponded { first: true, .. } => {
            record.first_reply_at.get_or_insert(occurred_at);
        }
        Event::ComplaintEscalated { .. } => record.escalations += 1,
        Event::ComplaintResolved { .. } => record.open = false,
        Event::ComplaintReopened { .. } => {
            record.open = true;
            record.reopens += 1;
        }
        Event::SlaBreached { target, .. } => {
            if let Some(clock) = record.clocks.iter_mut().find(|clock| clock.target == *target) {
                clock.breached = true;
            }
        }
        _ => {}
    }
}

/// Starts or stops one of the complaint's SLA clocks (a change about another subject is ignored).
pub fn apply_clock_change(record: &mut ComplaintRecord, change: &DeadlineChange, occurred_at: Timestamp) {
    match change {
        DeadlineChange::Set(deadline) => {
            let DeadlineSubject::Complaint(id, target) = &deadline.subject else { return };
            if *id != record.complaint_id {
                return;
            }
            let clock =
                SlaClock { target: *target, due_at: deadline.due_at, stopped_at: None, breached: false };
            match record.clocks.iter_mut().find(|clock| clock.target == *target) {
                Some(existing) => *existing = clock,
                None => record.clocks.push(clock),
            }
        }
        DeadlineChange::Clear(DeadlineSubject::Complaint(id, target)) if *id == record.complaint_id => {
            if let Some(clock) = record.clocks.iter_mut().find(|clock| clock.target == *target) {
                clock.stopped_at.get_or_insert(occurred_at);
            }
        }
        DeadlineChange::Clear(_) => {}
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Recorded events for the tests of this crate.
    use covenant_domain::events::{Event, PromiseKind};
    use covenant_domain::ids::{ActorId, CommandId, ComplaintId, CustomerId, EventId, PromiseId};
    use covenant_domain::{Position, RecordedEvent, Span, Text, Timestamp, sample};

    use super::*;

    /// An empty text (as personal data arrives on the public stream).
    pub(crate) fn no_text() -> Text {
        Text::new("text", "", 10).unwrap()
    }

    pub(crate) fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis("test", 1_800_000_000_000 + seconds * 1000).unwrap()
    }

    /// `event` as the `version`-th event of `customer`, at partition 0 offset `version - 1`.
    pub(crate) fn recorded(
        customer: &str,
        version: u64,
        occurred_at: Timestamp,
        event: Event,
    ) -> RecordedEvent {
        RecordedEvent {
            event_id: EventId::new_v7(),
            customer_id: CustomerId::new(customer).unwrap(),
            stream_version: version,
            position: Position { partition: 0, offset: version - 1 },
            recorded_at: occurred_at,
            command_id: CommandId::new(format!("command-{version}")).unwrap(),
            metadata: sample::metadata(occurred_at).unwrap(),
            event,
        }
    }

    pub(crate) fn promise(id: &str, due_at: Timestamp) -> Event {
        Event::PromiseMade {
            promise_id: PromiseId::new(id).unwrap(),
            kind: PromiseKind::Callback,
            description: no_text(),
            made_by: ActorId::new("agent-1").unwrap(),
            due_at,
            grace: Span::from_millis(0),
            related_ref: None,
        }
    }

    pub(crate) fn complaint(id: &str) -> Event {
        Event::ComplaintOpened {
            complaint_id: ComplaintId::new(id).unwrap(),
            category: ComplaintCategory::Delay,
            severity: Severity::Major,
            priority: Priority::High,
            channel: Channel::Email,
            description: no_text(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use covenant_domain::deadlines::{SlaPolicy, deadline_changes};

    #[test]
    fn a_promise_moves_through_renegotiation_to_broken() {
        let made = recorded("alice", 1, at(0), promise("p-1", at(3600)));
        let mut record = promise_made(&made).unwrap();
        assert_eq!(record.status, PromiseStatus::Open);
        assert!(!record.overdue(record.due_at));
        assert!(record.overdue(record.due_at.plus(Span::from_millis(1))));
        let new_due = record.due_at.plus(Span::from_millis(86_400_000));
        let renegotiated = Event::PromiseRenegotiated {
            promise_id: record.promise_id.clone(),
            previous_due_at: record.due_at,
            new_due_at: new_due,
            customer_consented: true,
        };
        update_promise(&mut record, &renegotiated, at(1));
        assert_eq!((record.due_at, record.renegotiations), (new_due, 1));
        let broken = Event::PromiseBroken {
            promise_id: record.promise_id.clone(),
            detection: BreakDetection::Deadline,
            due_at: new_due,
            detected_at: at(5),
            reason: no_text(),
        };
        update_promise(&mut record, &broken, at(5));
        assert_eq!(record.status, PromiseStatus::Broken);
        assert_eq!(record.settled_at, Some(at(5)));
        assert_eq!(record.detection, Some(BreakDetection::Deadline));
        assert!(!record.overdue(at(1_000_000)));
    }

    #[test]
    fn sla_clocks_start_on_open_stop_on_reply_and_record_breaches() {
        let opened = recorded("alice", 1, at(0), complaint("c-1"));
        let mut record = complaint_opened(&opened).unwrap();
        let mut watch = WatchState::default();
        let policy = SlaPolicy::default();
        let changes = deadline_changes(&mut watch, &record.customer_id, &opened.event, at(0), &policy);
        for change in &changes {
            apply_clock_change(&mut record, change, at(0));
        }
        assert_eq!(record.clocks.len(), 2);
        assert!(record.clocks.iter().all(|clock| clock.stopped_at.is_none() && clock.due_at > at(0)));

        let reply = Event::ComplaintResponded { complaint_id: record.complaint_id.clone(), first: true };
        update_complaint(&mut record, &reply, at(60));
        for change in deadline_changes(&mut watch, &record.customer_id, &reply, at(60), &policy) {
            apply_clock_change(&mut record, &change, at(60));
        }
        let first_reply = record.clocks.iter().find(|clock| clock.target == SlaTarget::FirstReply).unwrap();
        assert_eq!(first_reply.stopped_at, Some(at(60)));
        assert_eq!(record.first_reply_at, Some(at(60)));

        let resolution =
            record.clocks.iter().find(|clock| clock.target == SlaTarget::Resolution).unwrap().due_at;
        let breach = Event::SlaBreached {
            complaint_id: record.complaint_id.clone(),
            target: SlaTarget::Resolution,
            due_at: resolution,
            detected_at: resolution,
        };
        update_complaint(&mut record, &breach, resolution);
        for change in deadline_changes(&mut watch, &record.customer_id, &breach, resolution, &policy) {
            apply_clock_change(&mut record, &change, resolution);
        }
        let clock = record.clocks.iter().find(|clock| clock.target == SlaTarget::Resolution).unwrap();
        assert!(clock.breached);
        assert_eq!(clock.stopped_at, Some(resolution));
        assert!(record.open, "a breach does not close the complaint");
    }
}
