//! [`RecordedEvent`] ↔ the public `EventEnvelope` (protobuf, so any language can read the stream).
//!
//! With [`Pii::Redact`] every field marked "personal data" in `events.proto` is left empty:
//! names, contact points and free text (summaries, descriptions, reasons, evidence, comments).
//! Consumers keep ids, types, numbers, instants and categories. The reverse conversion accepts
//! such empty fields (the domain's event types allow empty text), so a consumer can rebuild domain
//! events from the public stream, without the personal data; it is exact for [`Pii::Include`].
//!
//! Field paths in errors follow the envelope: `customer_id`, `actor.kind`, and inside the payload
//! the oneof field first: `promise_made.due_at`, `compensation_granted.amount.currency`.

use covenant_domain::events::{Actor, Event, EventMetadata};
use covenant_domain::ids::{
    ActorId, CommandId, ComplaintId, CustomerId, InteractionId, Label, OrderId, PromiseId, SurveyId, TeamId,
};
use covenant_domain::{EventId, Position, RecordedEvent, Text};

use super::enums::*;
use super::values::{
    amount_from_wire, contact_points_from_wire, contact_points_to_wire, long_text, money_to_wire,
    optional_related, position_to_wire, profile_changes_from_wire, profile_changes_to_wire, related_to_wire,
    required_related, required_timestamp, short_text, span_from_wire, span_to_wire, timestamp_to_wire,
};
use super::{ConvertError, optional, or_empty, required};
use crate::v1;
use crate::v1::event_envelope::Payload;

/// Whether an envelope carries personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    /// Everything (for callers allowed to read personal data).
    Include,
    /// Names, contact points and free text left empty (the public stream).
    Redact,
}

/// The public envelope of a recorded event. With [`Pii::Redact`] every field marked "personal
/// data" in `events.proto` is left empty (names, contact points, free text).
pub fn envelope(event: &RecordedEvent, pii: Pii) -> v1::EventEnvelope {
    let metadata = &event.metadata;
    v1::EventEnvelope {
        event_id: event.event_id.to_string(),
        customer_id: event.customer_id.to_string(),
        stream_version: event.stream_version,
        position: Some(position_to_wire(event.position)),
        event_type: event.event_type().to_owned(),
        schema_version: u32::from(event.schema_version()),
        occurred_at: Some(timestamp_to_wire(metadata.occurred_at)),
        recorded_at: Some(timestamp_to_wire(event.recorded_at)),
        actor: Some(v1::Actor {
            kind: actor_kind_to_wire(metadata.actor.kind),
            id: metadata.actor.id.to_string(),
        }),
        team: or_empty(metadata.team.as_ref()),
        channel: optional_channel_to_wire(metadata.channel),
        correlation_id: or_empty(metadata.correlation_id.as_ref()),
        causation_id: or_empty(metadata.causation_id.as_ref()),
        command_id: event.command_id.to_string(),
        payload: Some(payload(&event.event, pii)),
    }
}

fn payload(event: &Event, pii: Pii) -> Payload {
    // Every field marked "personal data" in events.proto goes through `personal` (or, for
    // contact points, is dropped by the same test), and nothing else does.
    let include = pii == Pii::Include;
    let personal = |text: &Text| if include { text.as_str().to_owned() } else { String::new() };
    match event {
        Event::CustomerRegistered { name, contact_points, locale, timezone, segment, source, tier } => {
            Payload::CustomerRegistered(v1::CustomerRegistered {
                name: personal(name),
                contact_points: if include { contact_points_to_wire(contact_points) } else { Vec::new() },
                locale: locale.to_string(),
                timezone: timezone.as_str().to_owned(),
                segment: segment.to_string(),
                source: source.to_string(),
                tier: tier_to_wire(*tier),
            })
        }
        Event::CustomerProfileUpdated { changes } => {
            let mut changes = profile_changes_to_wire(changes);
            if !include {
                // Still says *that* the name or the contact points changed, not to what.
                changes.name = changes.name.map(|_| String::new());
                changes.contact_points.clear();
            }
            Payload::CustomerProfileUpdated(v1::CustomerProfileUpdated { changes: Some(changes) })
        }
        Event::ConsentChanged { purpose, granted } => {
            Payload::ConsentChanged(v1::ConsentChanged { purpose: purpose.to_string(), granted: *granted })
        }
        Event::CustomerTierChanged { from, to } => Payload::CustomerTierChanged(v1::CustomerTierChanged {
            from: tier_to_wire(*from),
            to: tier_to_wire(*to),
        }),
        Event::CustomerChurned { reason } => {
            Payload::CustomerChurned(v1::CustomerChurned { reason: churn_reason_to_wire(*reason) })
        }
        Event::CustomerReactivated {} => Payload::CustomerReactivated(v1::CustomerReactivated {}),
        Event::CustomerErased {} => Payload::CustomerErased(v1::CustomerErased {}),
        Event::InteractionRecorded {
            interaction_id,
            channel,
            direction,
            kind,
            agent_id,
            wait_secs,
            handle_secs,
            sentiment,
            summary,
        } => Payload::InteractionRecorded(v1::InteractionRecorded {
            interaction_id: interaction_id.to_string(),
            channel: channel_to_wire(*channel),
            direction: direction_to_wire(*direction),
            kind: interaction_kind_to_wire(*kind),
            agent_id: or_empty(agent_id.as_ref()),
            wait_secs: *wait_secs,
            handle_secs: *handle_secs,
            sentiment: sentiment_to_wire(*sentiment),
            summary: personal(summary),
        }),
        Event::SocialMentionCaptured { platform, sentiment, reach } => {
            Payload::SocialMentionCaptured(v1::SocialMentionCaptured {
                platform: platform.to_string(),
                sentiment: sentiment_to_wire(*sentiment),
                reach: *reach,
            })
        }
        Event::ComplaintOpened { complaint_id, category, severity, priority, channel, description } => {
            Payload::ComplaintOpened(v1::ComplaintOpened {
                complaint_id: complaint_id.to_string(),
                category: complaint_category_to_wire(*category),
                severity: severity_to_wire(*severity),
                priority: priority_to_wire(*priority),
                channel: channel_to_wire(*channel),
                description: personal(description),
            })
        }
        Event::ComplaintResponded { complaint_id, first } => {
            Payload::ComplaintResponded(v1::ComplaintResponded {
                complaint_id: complaint_id.to_string(),
                first: *first,
            })
        }
        Event::ComplaintEscalated { complaint_id, to_team, reason } => {
            Payload::ComplaintEscalated(v1::ComplaintEscalated {
                complaint_id: complaint_id.to_string(),
                to_team: or_empty(to_team.as_ref()),
                reason: personal(reason),
            })
        }
        Event::ComplaintResolved { complaint_id, outcome } => {
            Payload::ComplaintResolved(v1::ComplaintResolved {
                complaint_id: complaint_id.to_string(),
                outcome: resolution_outcome_to_wire(*outcome),
            })
        }
        Event::ComplaintReopened { complaint_id, reason } => {
            Payload::ComplaintReopened(v1::ComplaintReopened {
                complaint_id: complaint_id.to_string(),
                reason: personal(reason),
            })
        }
        Event::SlaBreached { complaint_id, target, due_at, detected_at } => {
            Payload::SlaBreached(v1::SlaBreached {
                complaint_id: complaint_id.to_string(),
                target: sla_target_to_wire(*target),
                due_at: Some(timestamp_to_wire(*due_at)),
                detected_at: Some(timestamp_to_wire(*detected_at)),
            })
        }
        Event::PromiseMade { promise_id, kind, description, made_by, due_at, grace, related_ref } => {
            Payload::PromiseMade(v1::PromiseMade {
                promise_id: promise_id.to_string(),
                kind: promise_kind_to_wire(*kind),
                description: personal(description),
                made_by: made_by.to_string(),
                due_at: Some(timestamp_to_wire(*due_at)),
                grace: Some(span_to_wire(*grace)),
                related_ref: related_ref.as_ref().map(related_to_wire),
            })
        }
        Event::PromiseRenegotiated { promise_id, previous_due_at, new_due_at, customer_consented } => {
            Payload::PromiseRenegotiated(v1::PromiseRenegotiated {
                promise_id: promise_id.to_string(),
                previous_due_at: Some(timestamp_to_wire(*previous_due_at)),
                new_due_at: Some(timestamp_to_wire(*new_due_at)),
                customer_consented: *customer_consented,
            })
        }
        Event::PromiseKept { promise_id, kept_at, evidence } => Payload::PromiseKept(v1::PromiseKept {
            promise_id: promise_id.to_string(),
            kept_at: Some(timestamp_to_wire(*kept_at)),
            evidence: personal(evidence),
        }),
        Event::PromisePartiallyKept { promise_id, fraction_permille, evidence } => {
            Payload::PromisePartiallyKept(v1::PromisePartiallyKept {
                promise_id: promise_id.to_string(),
                fraction_permille: u32::from(*fraction_permille),
                evidence: personal(evidence),
            })
        }
        Event::PromiseBroken { promise_id, detection, due_at, detected_at, reason } => {
            Payload::PromiseBroken(v1::PromiseBroken {
                promise_id: promise_id.to_string(),
                detection: break_detection_to_wire(*detection),
                due_at: Some(timestamp_to_wire(*due_at)),
                detected_at: Some(timestamp_to_wire(*detected_at)),
                reason: personal(reason),
            })
        }
        Event::PromiseCancelled { promise_id, by, customer_consented, reason } => {
            Payload::PromiseCancelled(v1::PromiseCancelled {
                promise_id: promise_id.to_string(),
                by: cancelled_by_to_wire(*by),
                customer_consented: *customer_consented,
                reason: personal(reason),
            })
        }
        Event::ApologyIssued { related_ref } => {
            Payload::ApologyIssued(v1::ApologyIssued { related_ref: Some(related_to_wire(related_ref)) })
        }
        Event::CompensationGranted { related_ref, kind, amount } => {
            Payload::CompensationGranted(v1::CompensationGranted {
                related_ref: Some(related_to_wire(related_ref)),
                kind: compensation_kind_to_wire(*kind),
                amount: Some(money_to_wire(amount)),
            })
        }
        Event::SurveyAnswered { survey_id, kind, score, comment, related_ref } => {
            Payload::SurveyAnswered(v1::SurveyAnswered {
                survey_id: survey_id.to_string(),
                kind: survey_kind_to_wire(*kind),
                score: u32::from(*score),
                comment: personal(comment),
                related_ref: related_ref.as_ref().map(related_to_wire),
            })
        }
        Event::PurchaseRecorded { order_id, amount } => Payload::PurchaseRecorded(v1::PurchaseRecorded {
            order_id: order_id.to_string(),
            amount: Some(money_to_wire(amount)),
        }),
        Event::RefundIssued { order_id, amount, reason } => Payload::RefundIssued(v1::RefundIssued {
            order_id: order_id.to_string(),
            amount: Some(money_to_wire(amount)),
            reason: personal(reason),
        }),
    }
}

/// The payload's oneof field name, which is also the event type of the domain event it holds.
fn payload_name(payload: &Payload) -> &'static str {
    match payload {
        Payload::CustomerRegistered(_) => "customer_registered",
        Payload::CustomerProfileUpdated(_) => "customer_profile_updated",
        Payload::ConsentChanged(_) => "consent_changed",
        Payload::CustomerTierChanged(_) => "customer_tier_changed",
        Payload::CustomerChurned(_) => "customer_churned",
        Payload::CustomerReactivated(_) => "customer_reactivated",
        Payload::CustomerErased(_) => "customer_erased",
        Payload::InteractionRecorded(_) => "interaction_recorded",
        Payload::SocialMentionCaptured(_) => "social_mention_captured",
        Payload::ComplaintOpened(_) => "complaint_opened",
        Payload::ComplaintResponded(_) => "complaint_responded",
        Payload::ComplaintEscalated(_) => "complaint_escalated",
        Payload::ComplaintResolved(_) => "complaint_resolved",
        Payload::ComplaintReopened(_) => "complaint_reopened",
        Payload::SlaBreached(_) => "sla_breached",
        Payload::PromiseMade(_) => "promise_made",
        Payload::PromiseRenegotiated(_) => "promise_renegotiated",
        Payload::PromiseKept(_) => "promise_kept",
        Payload::PromisePartiallyKept(_) => "promise_partially_kept",
        Payload::PromiseBroken(_) => "promise_broken",
        Payload::PromiseCancelled(_) => "promise_cancelled",
        Payload::ApologyIssued(_) => "apology_issued",
        Payload::CompensationGranted(_) => "compensation_granted",
        Payload::SurveyAnswered(_) => "survey_answered",
        Payload::PurchaseRecorded(_) => "purchase_recorded",
        Payload::RefundIssued(_) => "refund_issued",
    }
}

/// The domain event of a payload; field paths relative to the payload message.
fn event_from_wire(payload: Payload) -> Result<Event, ConvertError> {
    Ok(match payload {
        Payload::CustomerRegistered(p) => Event::CustomerRegistered {
            name: short_text("name", &p.name)?,
            contact_points: contact_points_from_wire("contact_points", &p.contact_points)?,
            locale: Label::parse_field("locale", &p.locale)?,
            timezone: short_text("timezone", &p.timezone)?,
            segment: Label::parse_field("segment", &p.segment)?,
            source: Label::parse_field("source", &p.source)?,
            tier: tier_from_wire("tier", p.tier)?,
        },
        Payload::CustomerProfileUpdated(p) => Event::CustomerProfileUpdated {
            changes: profile_changes_from_wire(required("changes", p.changes.as_ref())?)?,
        },
        Payload::ConsentChanged(p) => {
            Event::ConsentChanged { purpose: Label::parse_field("purpose", &p.purpose)?, granted: p.granted }
        }
        Payload::CustomerTierChanged(p) => Event::CustomerTierChanged {
            from: tier_from_wire("from", p.from)?,
            to: tier_from_wire("to", p.to)?,
        },
        Payload::CustomerChurned(p) => {
            Event::CustomerChurned { reason: churn_reason_from_wire("reason", p.reason)? }
        }
        Payload::CustomerReactivated(_) => Event::CustomerReactivated {},
        Payload::CustomerErased(_) => Event::CustomerErased {},
        Payload::InteractionRecorded(p) => Event::InteractionRecorded {
            interaction_id: InteractionId::parse_field("interaction_id", &p.interaction_id)?,
            channel: channel_from_wire("channel", p.channel)?,
            direction: direction_from_wire("direction", p.direction)?,
            kind: interaction_kind_from_wire("kind", p.kind)?,
            agent_id: optional(&p.agent_id, |id| ActorId::parse_field("agent_id", id))?,
            wait_secs: p.wait_secs,
            handle_secs: p.handle_secs,
            sentiment: sentiment_from_wire("sentiment", p.sentiment)?,
            summary: long_text("summary", &p.summary)?,
        },
        Payload::SocialMentionCaptured(p) => Event::SocialMentionCaptured {
            platform: Label::parse_field("platform", &p.platform)?,
            sentiment: sentiment_from_wire("sentiment", p.sentiment)?,
            reach: p.reach,
        },
        Payload::ComplaintOpened(p) => Event::ComplaintOpened {
            complaint_id: ComplaintId::parse_field("complaint_id", &p.complaint_id)?,
            category: complaint_category_from_wire("category", p.category)?,
            severity: severity_from_wire("severity", p.severity)?,
            priority: priority_from_wire("priority", p.priority)?,
            channel: channel_from_wire("channel", p.channel)?,
            description: long_text("description", &p.description)?,
        },
        Payload::ComplaintResponded(p) => Event::ComplaintResponded {
            complaint_id: ComplaintId::parse_field("complaint_id", &p.complaint_id)?,
            first: p.first,
        },
        Payload::ComplaintEscalated(p) => Event::ComplaintEscalated {
            complaint_id: ComplaintId::parse_field("complaint_id", &p.complaint_id)?,
            to_team: optional(&p.to_team, |team| TeamId::parse_field("to_team", team))?,
            reason: short_text("reason", &p.reason)?,
        },
        Payload::ComplaintResolved(p) => Event::ComplaintResolved {
            complaint_id: ComplaintId::parse_field("complaint_id", &p.complaint_id)?,
            outcome: resolution_outcome_from_wire("outcome", p.outcome)?,
        },
        Payload::ComplaintReopened(p) => Event::ComplaintReopened {
            complaint_id: ComplaintId::parse_field("complaint_id", &p.complaint_id)?,
            reason: short_text("reason", &p.reason)?,
        },
        Payload::SlaBreached(p) => Event::SlaBreached {
            complaint_id: ComplaintId::parse_field("complaint_id", &p.complaint_id)?,
            target: sla_target_from_wire("target", p.target)?,
            due_at: required_timestamp("due_at", p.due_at.as_ref())?,
            detected_at: required_timestamp("detected_at", p.detected_at.as_ref())?,
        },
        Payload::PromiseMade(p) => Event::PromiseMade {
            promise_id: PromiseId::parse_field("promise_id", &p.promise_id)?,
            kind: promise_kind_from_wire("kind", p.kind)?,
            description: long_text("description", &p.description)?,
            made_by: ActorId::parse_field("made_by", &p.made_by)?,
            due_at: required_timestamp("due_at", p.due_at.as_ref())?,
            // The envelope always carries the grace (unlike a request, where absent means zero).
            grace: span_from_wire("grace", required("grace", p.grace.as_ref())?)?,
            related_ref: optional_related(p.related_ref.as_ref())?,
        },
        Payload::PromiseRenegotiated(p) => Event::PromiseRenegotiated {
            promise_id: PromiseId::parse_field("promise_id", &p.promise_id)?,
            previous_due_at: required_timestamp("previous_due_at", p.previous_due_at.as_ref())?,
            new_due_at: required_timestamp("new_due_at", p.new_due_at.as_ref())?,
            customer_consented: p.customer_consented,
        },
        Payload::PromiseKept(p) => Event::PromiseKept {
            promise_id: PromiseId::parse_field("promise_id", &p.promise_id)?,
            kept_at: required_timestamp("kept_at", p.kept_at.as_ref())?,
            evidence: short_text("evidence", &p.evidence)?,
        },
        Payload::PromisePartiallyKept(p) => Event::PromisePartiallyKept {
            promise_id: PromiseId::parse_field("promise_id", &p.promise_id)?,
            fraction_permille: u16::try_from(p.fraction_permille).map_err(|_| {
                ConvertError::invalid(
                    "fraction_permille",
                    format!("is {}, it must be between 1 and 999", p.fraction_permille),
                )
            })?,
            evidence: short_text("evidence", &p.evidence)?,
        },
        Payload::PromiseBroken(p) => Event::PromiseBroken {
            promise_id: PromiseId::parse_field("promise_id", &p.promise_id)?,
            detection: break_detection_from_wire("detection", p.detection)?,
            due_at: required_timestamp("due_at", p.due_at.as_ref())?,
            detected_at: required_timestamp("detected_at", p.detected_at.as_ref())?,
            reason: short_text("reason", &p.reason)?,
        },
        Payload::PromiseCancelled(p) => Event::PromiseCancelled {
            promise_id: PromiseId::parse_field("promise_id", &p.promise_id)?,
            by: cancelled_by_from_wire("by", p.by)?,
            customer_consented: p.customer_consented,
            reason: short_text("reason", &p.reason)?,
        },
        Payload::ApologyIssued(p) => {
            Event::ApologyIssued { related_ref: required_related(p.related_ref.as_ref())? }
        }
        Payload::CompensationGranted(p) => Event::CompensationGranted {
            related_ref: required_related(p.related_ref.as_ref())?,
            kind: compensation_kind_from_wire("kind", p.kind)?,
            amount: amount_from_wire(p.amount.as_ref())?,
        },
        Payload::SurveyAnswered(p) => Event::SurveyAnswered {
            survey_id: SurveyId::parse_field("survey_id", &p.survey_id)?,
            kind: survey_kind_from_wire("kind", p.kind)?,
            score: u8::try_from(p.score).map_err(|_| {
                ConvertError::invalid("score", format!("is {}, outside every survey scale", p.score))
            })?,
            comment: long_text("comment", &p.comment)?,
            related_ref: optional_related(p.related_ref.as_ref())?,
        },
        Payload::PurchaseRecorded(p) => Event::PurchaseRecorded {
            order_id: OrderId::parse_field("order_id", &p.order_id)?,
            amount: amount_from_wire(p.amount.as_ref())?,
        },
        Payload::RefundIssued(p) => Event::RefundIssued {
            order_id: OrderId::parse_field("order_id", &p.order_id)?,
            amount: amount_from_wire(p.amount.as_ref())?,
            reason: short_text("reason", &p.reason)?,
        },
    })
}

impl TryFrom<v1::EventEnvelope> for RecordedEvent {
    type Error = ConvertError;

    /// The reverse of [`envelope`]: exact for [`Pii::Include`]; a redacted envelope gives the
    /// event with its personal data empty. `event_type` and `schema_version` must agree with the
    /// payload (a consumer that trusts one and not the other would misread the event).
    fn try_from(envelope: v1::EventEnvelope) -> Result<Self, ConvertError> {
        if envelope.event_id.is_empty() {
            return Err(ConvertError::missing("event_id"));
        }
        let event_id = uuid::Uuid::parse_str(&envelope.event_id)
            .map(EventId)
            .map_err(|error| ConvertError::invalid("event_id", format!("is not a UUID: {error}")))?;
        let customer_id = CustomerId::parse_field("customer_id", &envelope.customer_id)?;
        let position = Position::try_from(required("position", envelope.position)?)?;
        let occurred_at = required_timestamp("occurred_at", envelope.occurred_at.as_ref())?;
        let recorded_at = required_timestamp("recorded_at", envelope.recorded_at.as_ref())?;
        let actor = required("actor", envelope.actor.as_ref())?;
        let metadata = EventMetadata {
            occurred_at,
            actor: Actor {
                kind: actor_kind_from_wire("actor.kind", actor.kind)?,
                id: ActorId::parse_field("actor.id", &actor.id)?,
            },
            team: optional(&envelope.team, |team| TeamId::parse_field("team", team))?,
            channel: optional_channel("channel", envelope.channel)?,
            correlation_id: optional(&envelope.correlation_id, |id| {
                Label::parse_field("correlation_id", id)
            })?,
            causation_id: optional(&envelope.causation_id, |id| Label::parse_field("causation_id", id))?,
        };
        let command_id = CommandId::parse_field("command_id", &envelope.command_id)?;
        let payload = required("payload", envelope.payload)?;
        let name = payload_name(&payload);
        let event = event_from_wire(payload).map_err(|error| error.within(name))?;
        if envelope.event_type != event.event_type() {
            return Err(ConvertError::invalid(
                "event_type",
                format!("is {:?} but the payload is {name}", envelope.event_type),
            ));
        }
        if envelope.schema_version != u32::from(event.schema_version()) {
            return Err(ConvertError::invalid(
                "schema_version",
                format!(
                    "is {}, this build reads version {} of {name}",
                    envelope.schema_version,
                    event.schema_version()
                ),
            ));
        }
        Ok(RecordedEvent {
            event_id,
            customer_id,
            stream_version: envelope.stream_version,
            position,
            recorded_at,
            command_id,
            metadata,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use covenant_domain::events::EVENT_TYPES;
    use prost::Message;

    use super::*;
    use crate::convert::fixtures::{every_event, record};

    /// Every personal-data field of a payload (as marked in events.proto): the free-text and
    /// name fields, and the contact point lists. Exhaustive: a new payload must say what in it
    /// is personal.
    fn personal_fields(payload: &mut Payload) -> (Vec<&mut String>, Vec<&mut Vec<v1::ContactPoint>>) {
        match payload {
            Payload::CustomerRegistered(p) => (vec![&mut p.name], vec![&mut p.contact_points]),
            Payload::CustomerProfileUpdated(p) => {
                let changes = p.changes.as_mut().expect("changes are always sent");
                (changes.name.as_mut().into_iter().collect(), vec![&mut changes.contact_points])
            }
            Payload::InteractionRecorded(p) => (vec![&mut p.summary], vec![]),
            Payload::ComplaintOpened(p) => (vec![&mut p.description], vec![]),
            Payload::ComplaintEscalated(p) => (vec![&mut p.reason], vec![]),
            Payload::ComplaintReopened(p) => (vec![&mut p.reason], vec![]),
            Payload::PromiseMade(p) => (vec![&mut p.description], vec![]),
            Payload::PromiseKept(p) => (vec![&mut p.evidence], vec![]),
            Payload::PromisePartiallyKept(p) => (vec![&mut p.evidence], vec![]),
            Payload::PromiseBroken(p) => (vec![&mut p.reason], vec![]),
            Payload::PromiseCancelled(p) => (vec![&mut p.reason], vec![]),
            Payload::SurveyAnswered(p) => (vec![&mut p.comment], vec![]),
            Payload::RefundIssued(p) => (vec![&mut p.reason], vec![]),
            Payload::ConsentChanged(_)
            | Payload::CustomerTierChanged(_)
            | Payload::CustomerChurned(_)
            | Payload::CustomerReactivated(_)
            | Payload::CustomerErased(_)
            | Payload::SocialMentionCaptured(_)
            | Payload::ComplaintResponded(_)
            | Payload::ComplaintResolved(_)
            | Payload::SlaBreached(_)
            | Payload::PromiseRenegotiated(_)
            | Payload::ApologyIssued(_)
            | Payload::CompensationGranted(_)
            | Payload::PurchaseRecorded(_) => (vec![], vec![]),
        }
    }

    /// The personal strings of a payload, contact point values included.
    fn personal_strings(payload: &Payload) -> Vec<String> {
        let mut payload = payload.clone();
        let (texts, lists) = personal_fields(&mut payload);
        let points = lists.into_iter().flat_map(|list| list.iter().map(|point| point.value.clone()));
        texts.into_iter().map(|text| text.clone()).chain(points).collect()
    }

    #[test]
    fn every_event_round_trips_through_the_envelope() {
        let events = every_event();
        let types: Vec<_> = events.iter().map(Event::event_type).collect();
        assert_eq!(types, EVENT_TYPES, "one fixture per event type, in catalogue order");
        for (index, event) in events.into_iter().enumerate() {
            let recorded = record(index as u64, event);
            let wire = envelope(&recorded, Pii::Include);
            assert_eq!(wire.event_type, recorded.event_type());
            assert_eq!(payload_name(wire.payload.as_ref().unwrap()), recorded.event_type());
            let decoded = v1::EventEnvelope::decode(wire.encode_to_vec().as_slice()).unwrap();
            assert_eq!(RecordedEvent::try_from(decoded).unwrap(), recorded, "{}", recorded.event_type());
        }
    }

    #[test]
    fn redaction_empties_every_personal_field_and_nothing_else() {
        for (index, event) in every_event().into_iter().enumerate() {
            let recorded = record(index as u64, event);
            let kind = recorded.event_type();
            let full = envelope(&recorded, Pii::Include);
            let public = envelope(&recorded, Pii::Redact);

            let secrets = personal_strings(full.payload.as_ref().unwrap());
            // The fixtures fill every personal field, so the checks below are not vacuous.
            assert!(
                secrets.iter().all(|secret| !secret.is_empty()),
                "{kind}: a fixture's personal field is empty"
            );

            // Every personal field is empty, every contact point list too.
            let mut redacted = public.payload.clone().unwrap();
            let (texts, lists) = personal_fields(&mut redacted);
            assert!(texts.iter().all(|text| text.is_empty()), "{kind}: personal text left: {texts:?}");
            assert!(lists.iter().all(|list| list.is_empty()), "{kind}: contact points left: {lists:?}");

            // ... and nothing else differs: blanking the full envelope's personal fields gives
            // exactly the public envelope.
            let mut blanked = full.clone();
            let (texts, lists) = personal_fields(blanked.payload.as_mut().unwrap());
            texts.into_iter().for_each(String::clear);
            lists.into_iter().for_each(Vec::clear);
            assert_eq!(blanked, public, "{kind}");

            // Nothing personal appears anywhere in the published bytes.
            let bytes = public.encode_to_vec();
            for secret in &secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|window| window == secret.as_bytes()),
                    "{kind}: {secret:?} is in the public envelope"
                );
            }

            // The public envelope still converts back, with the personal data empty.
            let back = RecordedEvent::try_from(public).unwrap();
            assert_eq!(back.event.event_type(), kind);
            let mut without_event = back.clone();
            without_event.event = recorded.event.clone();
            assert_eq!(without_event, recorded, "{kind}: only the payload may differ");
            if secrets.is_empty() {
                assert_eq!(back, recorded, "{kind} has no personal data, so redaction changes nothing");
            }
        }
    }

    #[test]
    fn sealing_takes_exactly_what_redaction_empties() {
        use covenant_domain::personal::{restore_personal_data, take_personal_data};
        for (index, event) in every_event().into_iter().enumerate() {
            let recorded = record(index as u64, event);
            let kind = recorded.event_type();
            let public = RecordedEvent::try_from(envelope(&recorded, Pii::Redact)).unwrap();
            let mut stripped = recorded.clone();
            let taken = take_personal_data(&mut stripped.event);
            assert_eq!(stripped, public, "{kind}: what the log stores in clear is the public event");
            assert_eq!(
                taken.is_some(),
                public != recorded,
                "{kind}: sealed exactly when there is personal data"
            );
            if let Some(data) = taken {
                restore_personal_data(&mut stripped.event, data).unwrap();
                assert_eq!(stripped, recorded, "{kind}: restoring gives the event back");
            }
        }
    }

    fn promise_made() -> v1::EventEnvelope {
        let events = every_event();
        let index = events.iter().position(|event| event.event_type() == "promise_made").unwrap();
        envelope(&record(index as u64, events[index].clone()), Pii::Include)
    }

    fn failure(envelope: v1::EventEnvelope) -> ConvertError {
        RecordedEvent::try_from(envelope).expect_err("the envelope should be refused")
    }

    #[test]
    fn envelope_errors_name_the_field() {
        let error = failure(v1::EventEnvelope { payload: None, ..promise_made() });
        assert!(matches!(&error, ConvertError::Missing { field } if field == "payload"), "{error}");
        assert_eq!(
            failure(v1::EventEnvelope { event_id: String::new(), ..promise_made() }).field(),
            Some("event_id")
        );
        assert_eq!(
            failure(v1::EventEnvelope { event_id: "nope".into(), ..promise_made() }).field(),
            Some("event_id")
        );
        assert_eq!(
            failure(v1::EventEnvelope { customer_id: String::new(), ..promise_made() }).field(),
            Some("customer_id")
        );
        assert_eq!(failure(v1::EventEnvelope { position: None, ..promise_made() }).field(), Some("position"));
        let far = Some(v1::Position { partition: 1 << 20, offset: 0 });
        assert_eq!(
            failure(v1::EventEnvelope { position: far, ..promise_made() }).field(),
            Some("position.partition")
        );
        assert_eq!(
            failure(v1::EventEnvelope { recorded_at: None, ..promise_made() }).field(),
            Some("recorded_at")
        );
        assert_eq!(failure(v1::EventEnvelope { channel: 77, ..promise_made() }).field(), Some("channel"));
        assert_eq!(
            failure(v1::EventEnvelope { command_id: String::new(), ..promise_made() }).field(),
            Some("command_id")
        );
        let nobody = Some(v1::Actor { kind: 0, id: "x".into() });
        assert_eq!(
            failure(v1::EventEnvelope { actor: nobody, ..promise_made() }).field(),
            Some("actor.kind")
        );

        let error = failure(v1::EventEnvelope { event_type: "promise_kept".into(), ..promise_made() });
        assert_eq!(error.field(), Some("event_type"), "{error}");
        let error = failure(v1::EventEnvelope { schema_version: 2, ..promise_made() });
        assert_eq!(error.field(), Some("schema_version"), "{error}");

        // Payload fields are named under the payload's oneof field.
        let mut bad = promise_made();
        let Some(Payload::PromiseMade(promise)) = bad.payload.as_mut() else { panic!("not a promise") };
        promise.due_at = None;
        let error = failure(bad);
        assert!(
            matches!(&error, ConvertError::Missing { field } if field == "promise_made.due_at"),
            "{error}"
        );
        let mut bad = promise_made();
        let Some(Payload::PromiseMade(promise)) = bad.payload.as_mut() else { panic!("not a promise") };
        promise.kind = 99;
        let error = failure(bad);
        assert_eq!(error.to_string(), "promise_made.kind: unknown enum value 99");
        let mut bad = promise_made();
        let Some(Payload::PromiseMade(promise)) = bad.payload.as_mut() else { panic!("not a promise") };
        promise.promise_id.clear();
        assert_eq!(failure(bad).to_string(), "promise_made.promise_id: must not be empty");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use proptest::prelude::*;
        proptest!(|(bytes in prop::collection::vec(any::<u8>(), 0..512))| {
            if let Ok(envelope) = v1::EventEnvelope::decode(bytes.as_slice()) {
                let _ = RecordedEvent::try_from(envelope);
            }
        });
    }
}
