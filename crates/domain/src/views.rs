//! Borrowed views of recorded events: the whole event decoded **without copying**.
//!
//! [`RecordedEventView`] mirrors [`RecordedEvent`] field for field (and [`EventView`] mirrors
//! [`Event`] variant for variant), with every identifier and text borrowed from the encoded bytes
//! (`&str`) instead of owned. Decoding one is a full decode — every field is read, every string
//! checked to be UTF-8 — but nothing is allocated or copied, which is what makes replaying the log
//! cheap (a scan, a rebuild, an audit keep only what they need). [`RecordedEventView::to_owned`]
//! turns a view into the owned event, validating identifiers as the owned decoder does.
//!
//! Postcard encodes structs and enum variants positionally, so the views must keep the exact
//! field and variant order of the owned types: the golden-bytes tests of `covenant-log` decode
//! every event type both ways and compare.
//!
//! The views also serialise exactly as the owned types do (same names, an identifier or a text
//! as its string), so a view can be written out (`covenant export`) without becoming owned; the
//! CLI's tests compare the JSON of both for every event type.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::events::{
    Actor, ActorKind, BreakDetection, CancelledBy, Channel, ChurnReason, CompensationKind, ComplaintCategory,
    ContactKind, ContactPoint, Direction, Event, EventMetadata, InteractionKind, Position, Priority,
    ProfileChanges, PromiseKind, RecordedEvent, RelatedRef, ResolutionOutcome, Sentiment, Severity,
    SlaTarget, SurveyKind, Tier,
};
use crate::ids::{
    ActorId, CommandId, ComplaintId, CustomerId, EventId, InteractionId, Label, OrderId, PromiseId, SurveyId,
    TeamId,
};
use crate::values::{Money, Span, Text, Timestamp};

/// [`RecordedEvent`], borrowed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RecordedEventView<'a> {
    pub event_id: EventId,
    pub customer_id: &'a str,
    pub stream_version: u64,
    pub position: Position,
    pub recorded_at: Timestamp,
    pub command_id: &'a str,
    #[serde(borrow)]
    pub metadata: MetadataView<'a>,
    #[serde(borrow)]
    pub event: EventView<'a>,
}

/// The envelope of a [`RecordedEventView`]: its fields up to the event's variant index, so scans
/// that route or filter (by type, customer, time) can skip decoding the event
/// ([`crate::view_decoder::ViewDecoder::envelope`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeView<'a> {
    pub event_id: EventId,
    pub customer_id: &'a str,
    pub stream_version: u64,
    pub position: Position,
    pub recorded_at: Timestamp,
    pub command_id: &'a str,
    pub metadata: MetadataView<'a>,
    /// Index of the event's variant in the catalogue ([`crate::events::EVENT_TYPES`]).
    pub event_index: u32,
}

impl<'a> EnvelopeView<'a> {
    /// The whole recorded event: this envelope with its event.
    #[inline(always)]
    pub fn with_event(self, event: EventView<'a>) -> RecordedEventView<'a> {
        RecordedEventView {
            event_id: self.event_id,
            customer_id: self.customer_id,
            stream_version: self.stream_version,
            position: self.position,
            recorded_at: self.recorded_at,
            command_id: self.command_id,
            metadata: self.metadata,
            event,
        }
    }
}

/// [`EventMetadata`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct MetadataView<'a> {
    pub occurred_at: Timestamp,
    #[serde(borrow)]
    pub actor: ActorView<'a>,
    pub team: Option<&'a str>,
    pub channel: Option<Channel>,
    pub correlation_id: Option<&'a str>,
    pub causation_id: Option<&'a str>,
}

/// [`Actor`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct ActorView<'a> {
    pub kind: ActorKind,
    pub id: &'a str,
}

/// [`ContactPoint`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct ContactPointView<'a> {
    pub kind: ContactKind,
    pub value: &'a str,
}

/// [`RelatedRef`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RelatedRefView<'a> {
    Promise(&'a str),
    Complaint(&'a str),
    Order(&'a str),
    Interaction(&'a str),
}

/// [`ProfileChanges`], borrowed (contact points are the one list a view collects).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ProfileChangesView<'a> {
    pub name: Option<&'a str>,
    #[serde(borrow)]
    pub contact_points: Option<Vec<ContactPointView<'a>>>,
    pub locale: Option<&'a str>,
    pub timezone: Option<&'a str>,
    pub segment: Option<&'a str>,
}

/// [`Event`], borrowed: same variants, same fields, same order.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub enum EventView<'a> {
    CustomerRegistered {
        name: &'a str,
        #[serde(borrow)]
        contact_points: Vec<ContactPointView<'a>>,
        locale: &'a str,
        timezone: &'a str,
        segment: &'a str,
        source: &'a str,
        tier: Tier,
    },
    CustomerProfileUpdated {
        #[serde(borrow)]
        changes: ProfileChangesView<'a>,
    },
    ConsentChanged {
        purpose: &'a str,
        granted: bool,
    },
    CustomerTierChanged {
        from: Tier,
        to: Tier,
    },
    CustomerChurned {
        reason: ChurnReason,
    },
    CustomerReactivated {},
    CustomerErased {},
    InteractionRecorded {
        interaction_id: &'a str,
        channel: Channel,
        direction: Direction,
        kind: InteractionKind,
        agent_id: Option<&'a str>,
        wait_secs: u32,
        handle_secs: u32,
        sentiment: Sentiment,
        summary: &'a str,
    },
    SocialMentionCaptured {
        platform: &'a str,
        sentiment: Sentiment,
        reach: u64,
    },
    ComplaintOpened {
        complaint_id: &'a str,
        category: ComplaintCategory,
        severity: Severity,
        priority: Priority,
        channel: Channel,
        description: &'a str,
    },
    ComplaintResponded {
        complaint_id: &'a str,
        first: bool,
    },
    ComplaintEscalated {
        complaint_id: &'a str,
        to_team: Option<&'a str>,
        reason: &'a str,
    },
    ComplaintResolved {
        complaint_id: &'a str,
        outcome: ResolutionOutcome,
    },
    ComplaintReopened {
        complaint_id: &'a str,
        reason: &'a str,
    },
    SlaBreached {
        complaint_id: &'a str,
        target: SlaTarget,
        due_at: Timestamp,
        detected_at: Timestamp,
    },
    PromiseMade {
        promise_id: &'a str,
        kind: PromiseKind,
        description: &'a str,
        made_by: &'a str,
        due_at: Timestamp,
        grace: Span,
        #[serde(borrow)]
        related_ref: Option<RelatedRefView<'a>>,
    },
    PromiseRenegotiated {
        promise_id: &'a str,
        previous_due_at: Timestamp,
        new_due_at: Timestamp,
        customer_consented: bool,
    },
    PromiseKept {
        promise_id: &'a str,
        kept_at: Timestamp,
        evidence: &'a str,
    },
    PromisePartiallyKept {
        promise_id: &'a str,
        fraction_permille: u16,
        evidence: &'a str,
    },
    PromiseBroken {
        promise_id: &'a str,
        detection: BreakDetection,
        due_at: Timestamp,
        detected_at: Timestamp,
        reason: &'a str,
    },
    PromiseCancelled {
        promise_id: &'a str,
        by: CancelledBy,
        customer_consented: bool,
        reason: &'a str,
    },
    ApologyIssued {
        #[serde(borrow)]
        related_ref: RelatedRefView<'a>,
    },
    CompensationGranted {
        #[serde(borrow)]
        related_ref: RelatedRefView<'a>,
        kind: CompensationKind,
        amount: Money,
    },
    SurveyAnswered {
        survey_id: &'a str,
        kind: SurveyKind,
        score: u8,
        comment: &'a str,
        #[serde(borrow)]
        related_ref: Option<RelatedRefView<'a>>,
    },
    PurchaseRecorded {
        order_id: &'a str,
        amount: Money,
    },
    RefundIssued {
        order_id: &'a str,
        amount: Money,
        reason: &'a str,
    },
}

fn opt<'s, T>(
    value: Option<&'s str>,
    make: impl FnOnce(&'s str) -> Result<T, DomainError>,
) -> Result<Option<T>, DomainError> {
    value.map(make).transpose()
}

impl RelatedRefView<'_> {
    /// The owned reference (ids validated).
    pub fn to_owned(&self) -> Result<RelatedRef, DomainError> {
        Ok(match *self {
            RelatedRefView::Promise(id) => RelatedRef::Promise(PromiseId::new(id)?),
            RelatedRefView::Complaint(id) => RelatedRef::Complaint(ComplaintId::new(id)?),
            RelatedRefView::Order(id) => RelatedRef::Order(OrderId::new(id)?),
            RelatedRefView::Interaction(id) => RelatedRef::Interaction(InteractionId::new(id)?),
        })
    }
}

fn contact_points(points: &[ContactPointView<'_>]) -> Vec<ContactPoint> {
    points
        .iter()
        .map(|point| ContactPoint { kind: point.kind, value: Text::from_stored(point.value) })
        .collect()
}

impl MetadataView<'_> {
    /// The owned metadata (ids validated).
    pub fn to_owned(&self) -> Result<EventMetadata, DomainError> {
        Ok(EventMetadata {
            occurred_at: self.occurred_at,
            actor: Actor { kind: self.actor.kind, id: ActorId::new(self.actor.id)? },
            team: opt(self.team, TeamId::new)?,
            channel: self.channel,
            correlation_id: opt(self.correlation_id, Label::new)?,
            causation_id: opt(self.causation_id, Label::new)?,
        })
    }
}

impl EventView<'_> {
    /// The event's type name (snake case), as [`Event::event_type`].
    pub fn event_type(&self) -> &'static str {
        crate::events::EVENT_TYPES[self.variant_index()]
    }

    /// True when a personal field (the ones `crate::personal` takes out: names, contact points,
    /// free text) holds something. Events read from the log hold none (the log seals them
    /// apart) unless written before that (record format 1).
    pub fn holds_personal_data(&self) -> bool {
        match self {
            EventView::CustomerRegistered { name, contact_points, .. } => {
                !name.is_empty() || !contact_points.is_empty()
            }
            EventView::CustomerProfileUpdated { changes } => {
                changes.name.is_some_and(|name| !name.is_empty())
                    || changes.contact_points.as_ref().is_some_and(|points| !points.is_empty())
            }
            EventView::InteractionRecorded { summary: text, .. }
            | EventView::ComplaintOpened { description: text, .. }
            | EventView::ComplaintEscalated { reason: text, .. }
            | EventView::ComplaintReopened { reason: text, .. }
            | EventView::PromiseMade { description: text, .. }
            | EventView::PromiseKept { evidence: text, .. }
            | EventView::PromisePartiallyKept { evidence: text, .. }
            | EventView::PromiseBroken { reason: text, .. }
            | EventView::PromiseCancelled { reason: text, .. }
            | EventView::SurveyAnswered { comment: text, .. }
            | EventView::RefundIssued { reason: text, .. } => !text.is_empty(),
            EventView::ConsentChanged { .. }
            | EventView::CustomerTierChanged { .. }
            | EventView::CustomerChurned { .. }
            | EventView::CustomerReactivated {}
            | EventView::CustomerErased {}
            | EventView::SocialMentionCaptured { .. }
            | EventView::ComplaintResponded { .. }
            | EventView::ComplaintResolved { .. }
            | EventView::SlaBreached { .. }
            | EventView::PromiseRenegotiated { .. }
            | EventView::ApologyIssued { .. }
            | EventView::CompensationGranted { .. }
            | EventView::PurchaseRecorded { .. } => false,
        }
    }

    /// The schema version of the event's shape, as [`Event::schema_version`].
    pub fn schema_version(&self) -> u16 {
        crate::events::SCHEMA_VERSION
    }

    /// Index of the variant in the catalogue ([`crate::events::EVENT_TYPES`]).
    pub fn variant_index(&self) -> usize {
        match self {
            EventView::CustomerRegistered { .. } => 0,
            EventView::CustomerProfileUpdated { .. } => 1,
            EventView::ConsentChanged { .. } => 2,
            EventView::CustomerTierChanged { .. } => 3,
            EventView::CustomerChurned { .. } => 4,
            EventView::CustomerReactivated {} => 5,
            EventView::CustomerErased {} => 6,
            EventView::InteractionRecorded { .. } => 7,
            EventView::SocialMentionCaptured { .. } => 8,
            EventView::ComplaintOpened { .. } => 9,
            EventView::ComplaintResponded { .. } => 10,
            EventView::ComplaintEscalated { .. } => 11,
            EventView::ComplaintResolved { .. } => 12,
            EventView::ComplaintReopened { .. } => 13,
            EventView::SlaBreached { .. } => 14,
            EventView::PromiseMade { .. } => 15,
            EventView::PromiseRenegotiated { .. } => 16,
            EventView::PromiseKept { .. } => 17,
            EventView::PromisePartiallyKept { .. } => 18,
            EventView::PromiseBroken { .. } => 19,
            EventView::PromiseCancelled { .. } => 20,
            EventView::ApologyIssued { .. } => 21,
            EventView::CompensationGranted { .. } => 22,
            EventView::SurveyAnswered { .. } => 23,
            EventView::PurchaseRecorded { .. } => 24,
            EventView::RefundIssued { .. } => 25,
        }
    }

    /// The owned event (ids validated, texts copied).
    pub fn to_owned(&self) -> Result<Event, DomainError> {
        let text = Text::from_stored;
        Ok(match self {
            EventView::CustomerRegistered {
                name,
                contact_points: points,
                locale,
                timezone,
                segment,
                source,
                tier,
            } => Event::CustomerRegistered {
                name: text(name),
                contact_points: contact_points(points),
                locale: Label::new(locale)?,
                timezone: text(timezone),
                segment: Label::new(segment)?,
                source: Label::new(source)?,
                tier: *tier,
            },
            EventView::CustomerProfileUpdated { changes } => Event::CustomerProfileUpdated {
                changes: ProfileChanges {
                    name: changes.name.map(text),
                    contact_points: changes.contact_points.as_deref().map(contact_points),
                    locale: opt(changes.locale, Label::new)?,
                    timezone: changes.timezone.map(text),
                    segment: opt(changes.segment, Label::new)?,
                },
            },
            EventView::ConsentChanged { purpose, granted } => {
                Event::ConsentChanged { purpose: Label::new(purpose)?, granted: *granted }
            }
            EventView::CustomerTierChanged { from, to } => {
                Event::CustomerTierChanged { from: *from, to: *to }
            }
            EventView::CustomerChurned { reason } => Event::CustomerChurned { reason: *reason },
            EventView::CustomerReactivated {} => Event::CustomerReactivated {},
            EventView::CustomerErased {} => Event::CustomerErased {},
            EventView::InteractionRecorded {
                interaction_id,
                channel,
                direction,
                kind,
                agent_id,
                wait_secs,
                handle_secs,
                sentiment,
                summary,
            } => Event::InteractionRecorded {
                interaction_id: InteractionId::new(interaction_id)?,
                channel: *channel,
                direction: *direction,
                kind: *kind,
                agent_id: opt(*agent_id, ActorId::new)?,
                wait_secs: *wait_secs,
                handle_secs: *handle_secs,
                sentiment: *sentiment,
                summary: text(summary),
            },
            EventView::SocialMentionCaptured { platform, sentiment, reach } => Event::SocialMentionCaptured {
                platform: Label::new(platform)?,
                sentiment: *sentiment,
                reach: *reach,
            },
            EventView::ComplaintOpened {
                complaint_id,
                category,
                severity,
                priority,
                channel,
                description,
            } => Event::ComplaintOpened {
                complaint_id: ComplaintId::new(complaint_id)?,
                category: *category,
                severity: *severity,
                priority: *priority,
                channel: *channel,
                description: text(description),
            },
            EventView::ComplaintResponded { complaint_id, first } => {
                Event::ComplaintResponded { complaint_id: ComplaintId::new(complaint_id)?, first: *first }
            }
            EventView::ComplaintEscalated { complaint_id, to_team, reason } => Event::ComplaintEscalated {
                complaint_id: ComplaintId::new(complaint_id)?,
                to_team: opt(*to_team, TeamId::new)?,
                reason: text(reason),
            },
            EventView::ComplaintResolved { complaint_id, outcome } => {
                Event::ComplaintResolved { complaint_id: ComplaintId::new(complaint_id)?, outcome: *outcome }
            }
            EventView::ComplaintReopened { complaint_id, reason } => Event::ComplaintReopened {
                complaint_id: ComplaintId::new(complaint_id)?,
                reason: text(reason),
            },
            EventView::SlaBreached { complaint_id, target, due_at, detected_at } => Event::SlaBreached {
                complaint_id: ComplaintId::new(complaint_id)?,
                target: *target,
                due_at: *due_at,
                detected_at: *detected_at,
            },
            EventView::PromiseMade { promise_id, kind, description, made_by, due_at, grace, related_ref } => {
                Event::PromiseMade {
                    promise_id: PromiseId::new(promise_id)?,
                    kind: *kind,
                    description: text(description),
                    made_by: ActorId::new(made_by)?,
                    due_at: *due_at,
                    grace: *grace,
                    related_ref: related_ref.as_ref().map(RelatedRefView::to_owned).transpose()?,
                }
            }
            EventView::PromiseRenegotiated {
                promise_id,
                previous_due_at,
                new_due_at,
                customer_consented,
            } => Event::PromiseRenegotiated {
                promise_id: PromiseId::new(promise_id)?,
                previous_due_at: *previous_due_at,
                new_due_at: *new_due_at,
                customer_consented: *customer_consented,
            },
            EventView::PromiseKept { promise_id, kept_at, evidence } => Event::PromiseKept {
                promise_id: PromiseId::new(promise_id)?,
                kept_at: *kept_at,
                evidence: text(evidence),
            },
            EventView::PromisePartiallyKept { promise_id, fraction_permille, evidence } => {
                Event::PromisePartiallyKept {
                    promise_id: PromiseId::new(promise_id)?,
                    fraction_permille: *fraction_permille,
                    evidence: text(evidence),
                }
            }
            EventView::PromiseBroken { promise_id, detection, due_at, detected_at, reason } => {
                Event::PromiseBroken {
                    promise_id: PromiseId::new(promise_id)?,
                    detection: *detection,
                    due_at: *due_at,
                    detected_at: *detected_at,
                    reason: text(reason),
                }
            }
            EventView::PromiseCancelled { promise_id, by, customer_consented, reason } => {
                Event::PromiseCancelled {
                    promise_id: PromiseId::new(promise_id)?,
                    by: *by,
                    customer_consented: *customer_consented,
                    reason: text(reason),
                }
            }
            EventView::ApologyIssued { related_ref } => {
                Event::ApologyIssued { related_ref: related_ref.to_owned()? }
            }
            EventView::CompensationGranted { related_ref, kind, amount } => Event::CompensationGranted {
                related_ref: related_ref.to_owned()?,
                kind: *kind,
                amount: *amount,
            },
            EventView::SurveyAnswered { survey_id, kind, score, comment, related_ref } => {
                Event::SurveyAnswered {
                    survey_id: SurveyId::new(survey_id)?,
                    kind: *kind,
                    score: *score,
                    comment: text(comment),
                    related_ref: related_ref.as_ref().map(RelatedRefView::to_owned).transpose()?,
                }
            }
            EventView::PurchaseRecorded { order_id, amount } => {
                Event::PurchaseRecorded { order_id: OrderId::new(order_id)?, amount: *amount }
            }
            EventView::RefundIssued { order_id, amount, reason } => Event::RefundIssued {
                order_id: OrderId::new(order_id)?,
                amount: *amount,
                reason: text(reason),
            },
        })
    }
}

impl RecordedEventView<'_> {
    /// The event's type name (snake case).
    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    /// The owned event: identifiers validated (as the owned decoder does), texts copied.
    pub fn to_owned(&self) -> Result<RecordedEvent, DomainError> {
        Ok(RecordedEvent {
            event_id: self.event_id,
            customer_id: CustomerId::new(self.customer_id)?,
            stream_version: self.stream_version,
            position: self.position,
            recorded_at: self.recorded_at,
            command_id: CommandId::new(self.command_id)?,
            metadata: self.metadata.to_owned()?,
            event: self.event.to_owned()?,
        })
    }
}
