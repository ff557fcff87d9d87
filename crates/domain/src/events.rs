//! The v1 event catalogue (DESIGN §4): every fact Covenant records, in the past tense.
//!
//! Events are facts: [`crate::apply`] folds them and never refuses one. Their encoding is part of
//! the on-disk format: variants and fields are only ever *added at the end*; a change to an
//! existing shape needs a new schema version and an upcast on read (see the golden-bytes tests in
//! `covenant-log`).

use serde::{Deserialize, Serialize};

use crate::ids::{ActorId, ComplaintId, InteractionId, Label, OrderId, PromiseId, SurveyId, TeamId};
use crate::values::{Money, Span, Text, Timestamp};

/// How a customer can be reached. Personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPoint {
    pub kind: ContactKind,
    pub value: Text,
}

/// The kind of a contact point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContactKind {
    Email,
    Phone,
    Postal,
    Social,
}

/// Service tier of a customer; VIP tiers get tighter SLA targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    Basic,
    Standard,
    Premium,
    Vip,
}

/// Why a customer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChurnReason {
    Service,
    Product,
    Price,
    Competitor,
    NoNeed,
    Other,
}

/// Where an interaction happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    Phone,
    Email,
    Chat,
    Social,
    InPerson,
    Web,
}

/// Who started an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// What an interaction was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InteractionKind {
    Inquiry,
    Complaint,
    Compliment,
    Feedback,
    Sales,
    FollowUp,
}

/// The customer's mood as judged by the agent or a classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Sentiment {
    Angry,
    Negative,
    Neutral,
    Positive,
}

/// What a complaint is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ComplaintCategory {
    BrokenPromise,
    ExpectationGap,
    Delay,
    Billing,
    Staff,
    Product,
    Other,
}

/// How bad the complained-about problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Minor,
    Moderate,
    Major,
    Critical,
}

/// How fast a complaint must be handled; SLA targets are set per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

/// How a complaint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResolutionOutcome {
    /// Resolved to the customer's satisfaction.
    Resolved,
    /// Partly resolved.
    PartiallyResolved,
    /// Closed without a remedy (rejected or not possible).
    Unresolved,
    /// The customer withdrew it.
    Withdrawn,
}

/// Which SLA clock of a complaint ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SlaTarget {
    FirstReply,
    Resolution,
}

/// What was promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PromiseKind {
    Callback,
    Delivery,
    Refund,
    Fix,
    Info,
    Visit,
    Price,
    Compensation,
    AdvertisedClaim,
    Other,
}

/// How a broken promise was found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BreakDetection {
    /// The watchdog saw `due_at + grace` pass with the promise still open.
    Deadline,
    /// The customer told us.
    CustomerReport,
    /// An audit found it.
    Audit,
}

/// Who cancelled a promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelledBy {
    Company,
    Customer,
}

/// The form a compensation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompensationKind {
    Refund,
    Credit,
    Gift,
    Discount,
    Replacement,
    Waiver,
}

/// The survey scale: NPS 0–10, CSAT 1–5, CES 1–7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SurveyKind {
    Nps,
    Csat,
    Ces,
}

impl SurveyKind {
    /// The inclusive range of valid scores.
    pub const fn scale(self) -> (u8, u8) {
        match self {
            SurveyKind::Nps => (0, 10),
            SurveyKind::Csat => (1, 5),
            SurveyKind::Ces => (1, 7),
        }
    }
}

/// A reference from one fact to an earlier one of the same customer: what an apology,
/// compensation, recovery promise or survey is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RelatedRef {
    Promise(PromiseId),
    Complaint(ComplaintId),
    Order(OrderId),
    Interaction(InteractionId),
}

impl RelatedRef {
    /// `promise:<id>`, `complaint:<id>`, …
    pub fn describe(&self) -> String {
        match self {
            RelatedRef::Promise(id) => format!("promise:{id}"),
            RelatedRef::Complaint(id) => format!("complaint:{id}"),
            RelatedRef::Order(id) => format!("order:{id}"),
            RelatedRef::Interaction(id) => format!("interaction:{id}"),
        }
    }
}

/// Fields a profile update may change; `None` leaves a field as it was.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProfileChanges {
    pub name: Option<Text>,
    pub contact_points: Option<Vec<ContactPoint>>,
    pub locale: Option<Label>,
    pub timezone: Option<Text>,
    pub segment: Option<Label>,
}

impl ProfileChanges {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.contact_points.is_none()
            && self.locale.is_none()
            && self.timezone.is_none()
            && self.segment.is_none()
    }
}

/// Every fact Covenant records about a customer (the v1 catalogue).
///
/// The order of variants is part of the storage format: add new ones at the end only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    // --- customer ---
    CustomerRegistered {
        name: Text,
        contact_points: Vec<ContactPoint>,
        locale: Label,
        timezone: Text,
        segment: Label,
        source: Label,
        tier: Tier,
    },
    CustomerProfileUpdated {
        changes: ProfileChanges,
    },
    ConsentChanged {
        purpose: Label,
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
    // --- interactions ---
    InteractionRecorded {
        interaction_id: InteractionId,
        channel: Channel,
        direction: Direction,
        kind: InteractionKind,
        agent_id: Option<ActorId>,
        wait_secs: u32,
        handle_secs: u32,
        sentiment: Sentiment,
        summary: Text,
    },
    SocialMentionCaptured {
        platform: Label,
        sentiment: Sentiment,
        reach: u64,
    },
    // --- complaints ---
    ComplaintOpened {
        complaint_id: ComplaintId,
        category: ComplaintCategory,
        severity: Severity,
        priority: Priority,
        channel: Channel,
        description: Text,
    },
    ComplaintResponded {
        complaint_id: ComplaintId,
        /// The first response since the complaint was opened (or reopened).
        first: bool,
    },
    ComplaintEscalated {
        complaint_id: ComplaintId,
        to_team: Option<TeamId>,
        reason: Text,
    },
    ComplaintResolved {
        complaint_id: ComplaintId,
        outcome: ResolutionOutcome,
    },
    ComplaintReopened {
        complaint_id: ComplaintId,
        reason: Text,
    },
    SlaBreached {
        complaint_id: ComplaintId,
        target: SlaTarget,
        due_at: Timestamp,
        detected_at: Timestamp,
    },
    // --- promises ---
    PromiseMade {
        promise_id: PromiseId,
        kind: PromiseKind,
        description: Text,
        made_by: ActorId,
        due_at: Timestamp,
        grace: Span,
        related_ref: Option<RelatedRef>,
    },
    PromiseRenegotiated {
        promise_id: PromiseId,
        previous_due_at: Timestamp,
        new_due_at: Timestamp,
        customer_consented: bool,
    },
    PromiseKept {
        promise_id: PromiseId,
        kept_at: Timestamp,
        evidence: Text,
    },
    PromisePartiallyKept {
        promise_id: PromiseId,
        /// Share delivered, in thousandths (1..=999).
        fraction_permille: u16,
        evidence: Text,
    },
    PromiseBroken {
        promise_id: PromiseId,
        detection: BreakDetection,
        due_at: Timestamp,
        detected_at: Timestamp,
        reason: Text,
    },
    PromiseCancelled {
        promise_id: PromiseId,
        by: CancelledBy,
        customer_consented: bool,
        reason: Text,
    },
    // --- recovery ---
    ApologyIssued {
        related_ref: RelatedRef,
    },
    CompensationGranted {
        related_ref: RelatedRef,
        kind: CompensationKind,
        amount: Money,
    },
    // --- feedback ---
    SurveyAnswered {
        survey_id: SurveyId,
        kind: SurveyKind,
        score: u8,
        comment: Text,
        related_ref: Option<RelatedRef>,
    },
    // --- commerce ---
    PurchaseRecorded {
        order_id: OrderId,
        amount: Money,
    },
    RefundIssued {
        order_id: OrderId,
        amount: Money,
        reason: Text,
    },
}

/// The schema version of every event type's shape in this catalogue (v1).
pub const SCHEMA_VERSION: u16 = 1;

/// Every event type name, in catalogue order.
pub const EVENT_TYPES: [&str; 26] = [
    "customer_registered",
    "customer_profile_updated",
    "consent_changed",
    "customer_tier_changed",
    "customer_churned",
    "customer_reactivated",
    "customer_erased",
    "interaction_recorded",
    "social_mention_captured",
    "complaint_opened",
    "complaint_responded",
    "complaint_escalated",
    "complaint_resolved",
    "complaint_reopened",
    "sla_breached",
    "promise_made",
    "promise_renegotiated",
    "promise_kept",
    "promise_partially_kept",
    "promise_broken",
    "promise_cancelled",
    "apology_issued",
    "compensation_granted",
    "survey_answered",
    "purchase_recorded",
    "refund_issued",
];

impl Event {
    /// The event's type name (snake case), as used in NATS subjects and exports.
    pub fn event_type(&self) -> &'static str {
        EVENT_TYPES[self.catalogue_index()]
    }

    /// The schema version of this event's shape. Every v1 event is version 1.
    pub fn schema_version(&self) -> u16 {
        SCHEMA_VERSION
    }

    /// The complaint this event is about, if any.
    pub fn complaint_id(&self) -> Option<&ComplaintId> {
        match self {
            Event::ComplaintOpened { complaint_id, .. }
            | Event::ComplaintResponded { complaint_id, .. }
            | Event::ComplaintEscalated { complaint_id, .. }
            | Event::ComplaintResolved { complaint_id, .. }
            | Event::ComplaintReopened { complaint_id, .. }
            | Event::SlaBreached { complaint_id, .. } => Some(complaint_id),
            _ => None,
        }
    }

    /// The promise this event is about, if any.
    pub fn promise_id(&self) -> Option<&PromiseId> {
        match self {
            Event::PromiseMade { promise_id, .. }
            | Event::PromiseRenegotiated { promise_id, .. }
            | Event::PromiseKept { promise_id, .. }
            | Event::PromisePartiallyKept { promise_id, .. }
            | Event::PromiseBroken { promise_id, .. }
            | Event::PromiseCancelled { promise_id, .. } => Some(promise_id),
            _ => None,
        }
    }

    /// The event's index in the catalogue ([`EVENT_TYPES`]; postcard's variant index).
    pub fn catalogue_index(&self) -> usize {
        match self {
            Event::CustomerRegistered { .. } => 0,
            Event::CustomerProfileUpdated { .. } => 1,
            Event::ConsentChanged { .. } => 2,
            Event::CustomerTierChanged { .. } => 3,
            Event::CustomerChurned { .. } => 4,
            Event::CustomerReactivated { .. } => 5,
            Event::CustomerErased { .. } => 6,
            Event::InteractionRecorded { .. } => 7,
            Event::SocialMentionCaptured { .. } => 8,
            Event::ComplaintOpened { .. } => 9,
            Event::ComplaintResponded { .. } => 10,
            Event::ComplaintEscalated { .. } => 11,
            Event::ComplaintResolved { .. } => 12,
            Event::ComplaintReopened { .. } => 13,
            Event::SlaBreached { .. } => 14,
            Event::PromiseMade { .. } => 15,
            Event::PromiseRenegotiated { .. } => 16,
            Event::PromiseKept { .. } => 17,
            Event::PromisePartiallyKept { .. } => 18,
            Event::PromiseBroken { .. } => 19,
            Event::PromiseCancelled { .. } => 20,
            Event::ApologyIssued { .. } => 21,
            Event::CompensationGranted { .. } => 22,
            Event::SurveyAnswered { .. } => 23,
            Event::PurchaseRecorded { .. } => 24,
            Event::RefundIssued { .. } => 25,
        }
    }
}

/// Who did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActorKind {
    Customer,
    Agent,
    System,
    Integration,
}

/// The actor behind a command: a kind and an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: ActorId,
}

/// Context the caller supplies with every command; copied onto every event it produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Business time: when it happened (may be earlier than when it is recorded).
    pub occurred_at: Timestamp,
    pub actor: Actor,
    pub team: Option<TeamId>,
    pub channel: Option<Channel>,
    pub correlation_id: Option<Label>,
    pub causation_id: Option<Label>,
}

/// A position in the log: a partition and a dense offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub partition: u16,
    pub offset: u64,
}

/// An event as recorded: the full envelope of DESIGN §4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: crate::ids::EventId,
    pub customer_id: crate::ids::CustomerId,
    /// 1 for the customer's first event, then +1 per event.
    pub stream_version: u64,
    pub position: Position,
    pub recorded_at: Timestamp,
    pub command_id: crate::ids::CommandId,
    pub metadata: EventMetadata,
    pub event: Event,
}

impl RecordedEvent {
    /// The event's type name.
    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    /// The event's schema version.
    pub fn schema_version(&self) -> u16 {
        self.event.schema_version()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_are_unique_snake_case() {
        let mut names = EVENT_TYPES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EVENT_TYPES.len());
        for name in EVENT_TYPES {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        }
    }

    #[test]
    fn survey_scales_match_the_design() {
        assert_eq!(SurveyKind::Nps.scale(), (0, 10));
        assert_eq!(SurveyKind::Csat.scale(), (1, 5));
        assert_eq!(SurveyKind::Ces.scale(), (1, 7));
    }
}
