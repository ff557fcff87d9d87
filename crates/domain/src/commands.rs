//! Commands: what callers ask Covenant to record, in the imperative.
//!
//! A command is checked by [`crate::decide`] against the customer's decision state and becomes
//! zero or more [`crate::Event`]s. Field shapes (ids, text lengths, currencies) are checked when
//! the values are built; ranges and relations to earlier facts are checked in `decide`.

use serde::{Deserialize, Serialize};

use crate::events::{
    BreakDetection, CancelledBy, Channel, ChurnReason, CompensationKind, ComplaintCategory, ContactPoint,
    Direction, InteractionKind, Priority, ProfileChanges, PromiseKind, RelatedRef, ResolutionOutcome,
    Sentiment, Severity, SlaTarget, SurveyKind, Tier,
};
use crate::ids::{ActorId, ComplaintId, InteractionId, Label, OrderId, PromiseId, SurveyId, TeamId};
use crate::values::{Money, Span, Text, Timestamp};

/// Everything a caller can ask the ledger to record about one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterCustomer {
        name: Text,
        contact_points: Vec<ContactPoint>,
        locale: Label,
        timezone: Text,
        segment: Label,
        source: Label,
        tier: Tier,
    },
    UpdateProfile {
        changes: ProfileChanges,
    },
    ChangeConsent {
        purpose: Label,
        granted: bool,
    },
    ChangeTier {
        tier: Tier,
    },
    RecordChurn {
        reason: ChurnReason,
    },
    ReactivateCustomer,
    EraseCustomer,
    RecordInteraction {
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
    CaptureSocialMention {
        platform: Label,
        sentiment: Sentiment,
        reach: u64,
    },
    OpenComplaint {
        complaint_id: ComplaintId,
        category: ComplaintCategory,
        severity: Severity,
        priority: Priority,
        channel: Channel,
        description: Text,
    },
    RespondToComplaint {
        complaint_id: ComplaintId,
    },
    EscalateComplaint {
        complaint_id: ComplaintId,
        to_team: Option<TeamId>,
        reason: Text,
    },
    ResolveComplaint {
        complaint_id: ComplaintId,
        outcome: ResolutionOutcome,
    },
    ReopenComplaint {
        complaint_id: ComplaintId,
        reason: Text,
    },
    /// Sent by the watchdog when an SLA clock ran out.
    BreachSla {
        complaint_id: ComplaintId,
        target: SlaTarget,
        due_at: Timestamp,
    },
    MakePromise {
        promise_id: PromiseId,
        kind: PromiseKind,
        description: Text,
        made_by: ActorId,
        due_at: Timestamp,
        grace: Span,
        related_ref: Option<RelatedRef>,
    },
    RenegotiatePromise {
        promise_id: PromiseId,
        new_due_at: Timestamp,
        customer_consented: bool,
    },
    KeepPromise {
        promise_id: PromiseId,
        /// When it was kept; the command's `occurred_at` when absent.
        kept_at: Option<Timestamp>,
        evidence: Text,
    },
    PartiallyKeepPromise {
        promise_id: PromiseId,
        /// Share delivered, in thousandths: 1..=999.
        fraction_permille: u16,
        evidence: Text,
    },
    /// A customer report or an audit says the promise was broken.
    ReportBrokenPromise {
        promise_id: PromiseId,
        detection: BreakDetection,
        reason: Text,
    },
    /// Sent by the watchdog when `due_at + grace` passed with the promise still open.
    ExpirePromise {
        promise_id: PromiseId,
    },
    CancelPromise {
        promise_id: PromiseId,
        by: CancelledBy,
        customer_consented: bool,
        reason: Text,
    },
    IssueApology {
        related_ref: RelatedRef,
    },
    GrantCompensation {
        related_ref: RelatedRef,
        kind: CompensationKind,
        amount: Money,
    },
    AnswerSurvey {
        survey_id: SurveyId,
        kind: SurveyKind,
        score: u8,
        comment: Text,
        related_ref: Option<RelatedRef>,
    },
    RecordPurchase {
        order_id: OrderId,
        amount: Money,
    },
    IssueRefund {
        order_id: OrderId,
        amount: Money,
        reason: Text,
    },
}

impl Command {
    /// The command's name, as in the gRPC API.
    pub fn name(&self) -> &'static str {
        match self {
            Command::RegisterCustomer { .. } => "RegisterCustomer",
            Command::UpdateProfile { .. } => "UpdateProfile",
            Command::ChangeConsent { .. } => "ChangeConsent",
            Command::ChangeTier { .. } => "ChangeTier",
            Command::RecordChurn { .. } => "RecordChurn",
            Command::ReactivateCustomer => "ReactivateCustomer",
            Command::EraseCustomer => "EraseCustomer",
            Command::RecordInteraction { .. } => "RecordInteraction",
            Command::CaptureSocialMention { .. } => "CaptureSocialMention",
            Command::OpenComplaint { .. } => "OpenComplaint",
            Command::RespondToComplaint { .. } => "RespondToComplaint",
            Command::EscalateComplaint { .. } => "EscalateComplaint",
            Command::ResolveComplaint { .. } => "ResolveComplaint",
            Command::ReopenComplaint { .. } => "ReopenComplaint",
            Command::BreachSla { .. } => "BreachSla",
            Command::MakePromise { .. } => "MakePromise",
            Command::RenegotiatePromise { .. } => "RenegotiatePromise",
            Command::KeepPromise { .. } => "KeepPromise",
            Command::PartiallyKeepPromise { .. } => "PartiallyKeepPromise",
            Command::ReportBrokenPromise { .. } => "ReportBrokenPromise",
            Command::ExpirePromise { .. } => "ExpirePromise",
            Command::CancelPromise { .. } => "CancelPromise",
            Command::IssueApology { .. } => "IssueApology",
            Command::GrantCompensation { .. } => "GrantCompensation",
            Command::AnswerSurvey { .. } => "AnswerSurvey",
            Command::RecordPurchase { .. } => "RecordPurchase",
            Command::IssueRefund { .. } => "IssueRefund",
        }
    }
}
