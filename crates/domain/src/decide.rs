//! The decision rules: [`decide`] turns a command into events, or refuses it with a typed
//! [`DomainError`] that says what was wrong. Every business rule lives here and only here.

use crate::commands::Command;
use crate::error::{DomainError, FieldError};
use crate::events::{BreakDetection, ContactPoint, Event, RelatedRef};
use crate::ids::PromiseId;
use crate::state::{CustomerState, CustomerStatus, PromiseState, PromiseStatus};
use crate::values::{Money, Span, Text, Timestamp};

/// Most contact points a customer profile may hold.
pub const MAX_CONTACT_POINTS: usize = 16;
/// Longest grace period a promise may carry.
pub const MAX_GRACE: Span = Span::from_days(30);
/// How far in the future a business time may lie (clock skew between systems).
pub const MAX_CLOCK_SKEW: Span = Span::from_secs(300);

/// What `decide` needs besides the state and the command: the two clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionContext {
    /// The recording clock (the writer's now): deadlines are judged against it.
    pub now: Timestamp,
    /// Business time of the command, from the caller.
    pub occurred_at: Timestamp,
}

/// Decides `command` against `state`: the events to record, or why not.
pub fn decide(
    state: &CustomerState,
    customer_id: &str,
    command: &Command,
    context: &DecisionContext,
) -> Result<Vec<Event>, DomainError> {
    if context.occurred_at > context.now.plus(MAX_CLOCK_SKEW) {
        return Err(DomainError::invalid_because(
            "occurred_at",
            format!(
                "is {} ms after the recording clock (at most {} ms of clock skew is accepted)",
                context.occurred_at.since(context.now).millis(),
                MAX_CLOCK_SKEW.millis()
            ),
        ));
    }
    match state.status {
        CustomerStatus::Erased => {
            return Err(DomainError::CustomerErased { customer_id: customer_id.to_owned() });
        }
        CustomerStatus::Unregistered if !matches!(command, Command::RegisterCustomer { .. }) => {
            return Err(DomainError::CustomerNotRegistered { customer_id: customer_id.to_owned() });
        }
        _ => {}
    }
    let event = match command {
        Command::RegisterCustomer { name, contact_points, locale, timezone, segment, source, tier } => {
            if state.status != CustomerStatus::Unregistered {
                return Err(DomainError::CustomerAlreadyRegistered { customer_id: customer_id.to_owned() });
            }
            non_empty_text("name", name)?;
            check_contact_points(contact_points)?;
            Event::CustomerRegistered {
                name: name.clone(),
                contact_points: contact_points.clone(),
                locale: locale.clone(),
                timezone: timezone.clone(),
                segment: segment.clone(),
                source: source.clone(),
                tier: *tier,
            }
        }
        Command::UpdateProfile { changes } => {
            if changes.is_empty() {
                return Err(DomainError::invalid_because("changes", "sets no field: give at least one"));
            }
            if let Some(name) = &changes.name {
                non_empty_text("changes.name", name)?;
            }
            if let Some(points) = &changes.contact_points {
                check_contact_points(points)?;
            }
            Event::CustomerProfileUpdated { changes: changes.clone() }
        }
        Command::ChangeConsent { purpose, granted } => {
            Event::ConsentChanged { purpose: purpose.clone(), granted: *granted }
        }
        Command::ChangeTier { tier } => {
            let from = state.tier.unwrap_or(*tier);
            if state.tier == Some(*tier) {
                return Err(DomainError::Rule(format!("customer {customer_id} is already in tier {tier:?}")));
            }
            Event::CustomerTierChanged { from, to: *tier }
        }
        Command::RecordChurn { reason } => {
            if state.status == CustomerStatus::Churned {
                return Err(customer_transition(customer_id, "churned", "record churn"));
            }
            Event::CustomerChurned { reason: *reason }
        }
        Command::ReactivateCustomer => {
            if state.status != CustomerStatus::Churned {
                return Err(customer_transition(customer_id, "active", "reactivate"));
            }
            Event::CustomerReactivated {}
        }
        Command::EraseCustomer => Event::CustomerErased {},
        Command::RecordInteraction {
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
            interaction_id: interaction_id.clone(),
            channel: *channel,
            direction: *direction,
            kind: *kind,
            agent_id: agent_id.clone(),
            wait_secs: *wait_secs,
            handle_secs: *handle_secs,
            sentiment: *sentiment,
            summary: summary.clone(),
        },
        Command::CaptureSocialMention { platform, sentiment, reach } => {
            Event::SocialMentionCaptured { platform: platform.clone(), sentiment: *sentiment, reach: *reach }
        }
        Command::OpenComplaint { complaint_id, category, severity, priority, channel, description } => {
            if state.complaints.contains_key(complaint_id) {
                return Err(DomainError::AlreadyExists { what: "complaint", id: complaint_id.to_string() });
            }
            Event::ComplaintOpened {
                complaint_id: complaint_id.clone(),
                category: *category,
                severity: *severity,
                priority: *priority,
                channel: *channel,
                description: description.clone(),
            }
        }
        Command::RespondToComplaint { complaint_id } => {
            let complaint = find_complaint(state, complaint_id)?;
            if complaint.resolved {
                return Err(complaint_transition(complaint_id, "resolved", "respond"));
            }
            Event::ComplaintResponded { complaint_id: complaint_id.clone(), first: !complaint.responded }
        }
        Command::EscalateComplaint { complaint_id, to_team, reason } => {
            if find_complaint(state, complaint_id)?.resolved {
                return Err(complaint_transition(complaint_id, "resolved", "escalate"));
            }
            Event::ComplaintEscalated {
                complaint_id: complaint_id.clone(),
                to_team: to_team.clone(),
                reason: reason.clone(),
            }
        }
        Command::ResolveComplaint { complaint_id, outcome } => {
            if find_complaint(state, complaint_id)?.resolved {
                return Err(complaint_transition(complaint_id, "resolved", "resolve"));
            }
            Event::ComplaintResolved { complaint_id: complaint_id.clone(), outcome: *outcome }
        }
        Command::ReopenComplaint { complaint_id, reason } => {
            if !find_complaint(state, complaint_id)?.resolved {
                return Err(complaint_transition(complaint_id, "open", "reopen"));
            }
            Event::ComplaintReopened { complaint_id: complaint_id.clone(), reason: reason.clone() }
        }
        Command::BreachSla { complaint_id, target, due_at } => {
            let complaint = find_complaint(state, complaint_id)?;
            if complaint.resolved {
                return Err(complaint_transition(complaint_id, "resolved", "breach an SLA"));
            }
            if complaint.breached.contains(target) {
                return Err(DomainError::Rule(format!(
                    "SLA target {target:?} of complaint {complaint_id} is already breached"
                )));
            }
            if *target == crate::events::SlaTarget::FirstReply && complaint.responded {
                return Err(DomainError::Rule(format!(
                    "complaint {complaint_id} already had its first reply: the first_reply SLA cannot be breached"
                )));
            }
            if context.now < *due_at {
                return Err(DomainError::NotYetDue {
                    what: format!("SLA target {target:?} of complaint {complaint_id}"),
                    due: due_at.to_string(),
                    now: context.now.to_string(),
                });
            }
            Event::SlaBreached {
                complaint_id: complaint_id.clone(),
                target: *target,
                due_at: *due_at,
                detected_at: context.now,
            }
        }
        Command::MakePromise { promise_id, kind, description, made_by, due_at, grace, related_ref } => {
            if state.promises.contains_key(promise_id) {
                return Err(DomainError::AlreadyExists { what: "promise", id: promise_id.to_string() });
            }
            non_empty_text("description", description)?;
            if *due_at < context.occurred_at {
                return Err(DomainError::invalid_because(
                    "due_at",
                    format!("{due_at} is before occurred_at {}", context.occurred_at),
                ));
            }
            if *grace < Span::ZERO || *grace > MAX_GRACE {
                return Err(DomainError::invalid(
                    "grace",
                    FieldError::OutOfRange {
                        value: format!("{} ms", grace.millis()),
                        min: "0".into(),
                        max: format!("{} ms (30 days)", MAX_GRACE.millis()),
                    },
                ));
            }
            check_reference(state, "related_ref", related_ref.as_ref())?;
            Event::PromiseMade {
                promise_id: promise_id.clone(),
                kind: *kind,
                description: description.clone(),
                made_by: made_by.clone(),
                due_at: *due_at,
                grace: *grace,
                related_ref: related_ref.clone(),
            }
        }
        Command::RenegotiatePromise { promise_id, new_due_at, customer_consented } => {
            let promise = open_promise(state, promise_id, "renegotiate")?;
            if *new_due_at == promise.due_at {
                return Err(DomainError::invalid_because("new_due_at", "equals the current due date"));
            }
            if *new_due_at < context.occurred_at {
                return Err(DomainError::invalid_because(
                    "new_due_at",
                    format!("{new_due_at} is before occurred_at {}", context.occurred_at),
                ));
            }
            Event::PromiseRenegotiated {
                promise_id: promise_id.clone(),
                previous_due_at: promise.due_at,
                new_due_at: *new_due_at,
                customer_consented: *customer_consented,
            }
        }
        Command::KeepPromise { promise_id, kept_at, evidence } => {
            let promise = open_promise(state, promise_id, "keep")?;
            let kept_at = kept_at.unwrap_or(context.occurred_at);
            if kept_at > context.now.plus(MAX_CLOCK_SKEW) {
                return Err(DomainError::invalid_because("kept_at", "is in the future"));
            }
            if kept_at < promise.made_at {
                return Err(DomainError::invalid_because(
                    "kept_at",
                    format!("{kept_at} is before the promise was made ({})", promise.made_at),
                ));
            }
            Event::PromiseKept { promise_id: promise_id.clone(), kept_at, evidence: evidence.clone() }
        }
        Command::PartiallyKeepPromise { promise_id, fraction_permille, evidence } => {
            open_promise(state, promise_id, "partially keep")?;
            if !(1..=999).contains(fraction_permille) {
                return Err(DomainError::invalid(
                    "fraction_permille",
                    FieldError::OutOfRange {
                        value: fraction_permille.to_string(),
                        min: "1".into(),
                        max: "999 (use KeepPromise for 1000 and ReportBrokenPromise for 0)".into(),
                    },
                ));
            }
            Event::PromisePartiallyKept {
                promise_id: promise_id.clone(),
                fraction_permille: *fraction_permille,
                evidence: evidence.clone(),
            }
        }
        Command::ReportBrokenPromise { promise_id, detection, reason } => {
            let promise = open_promise(state, promise_id, "report broken")?;
            if *detection == BreakDetection::Deadline {
                return Err(DomainError::invalid_because(
                    "detection",
                    "deadline breaks are recorded by the watchdog (ExpirePromise); report customer_report or audit",
                ));
            }
            Event::PromiseBroken {
                promise_id: promise_id.clone(),
                detection: *detection,
                due_at: promise.due_at,
                detected_at: context.occurred_at,
                reason: reason.clone(),
            }
        }
        Command::ExpirePromise { promise_id } => {
            let promise = open_promise(state, promise_id, "expire")?;
            if context.now <= promise.deadline() {
                return Err(DomainError::NotYetDue {
                    what: format!("promise {promise_id} (due_at + grace)"),
                    due: promise.deadline().to_string(),
                    now: context.now.to_string(),
                });
            }
            Event::PromiseBroken {
                promise_id: promise_id.clone(),
                detection: BreakDetection::Deadline,
                due_at: promise.due_at,
                detected_at: context.now,
                reason: Text::new("reason", "", 0)?,
            }
        }
        Command::CancelPromise { promise_id, by, customer_consented, reason } => {
            open_promise(state, promise_id, "cancel")?;
            Event::PromiseCancelled {
                promise_id: promise_id.clone(),
                by: *by,
                customer_consented: *customer_consented,
                reason: reason.clone(),
            }
        }
        Command::IssueApology { related_ref } => {
            check_reference(state, "related_ref", Some(related_ref))?;
            Event::ApologyIssued { related_ref: related_ref.clone() }
        }
        Command::GrantCompensation { related_ref, kind, amount } => {
            check_reference(state, "related_ref", Some(related_ref))?;
            check_amount(amount)?;
            Event::CompensationGranted { related_ref: related_ref.clone(), kind: *kind, amount: *amount }
        }
        Command::AnswerSurvey { survey_id, kind, score, comment, related_ref } => {
            let (min, max) = kind.scale();
            if !(min..=max).contains(score) {
                return Err(DomainError::invalid(
                    "score",
                    FieldError::OutOfRange {
                        value: score.to_string(),
                        min: min.to_string(),
                        max: max.to_string(),
                    },
                ));
            }
            if state.surveys.contains(survey_id) {
                return Err(DomainError::AlreadyExists { what: "survey answer", id: survey_id.to_string() });
            }
            check_reference(state, "related_ref", related_ref.as_ref())?;
            Event::SurveyAnswered {
                survey_id: survey_id.clone(),
                kind: *kind,
                score: *score,
                comment: comment.clone(),
                related_ref: related_ref.clone(),
            }
        }
        Command::RecordPurchase { order_id, amount } => {
            if state.orders.contains_key(order_id) {
                return Err(DomainError::AlreadyExists { what: "order", id: order_id.to_string() });
            }
            check_amount(amount)?;
            Event::PurchaseRecorded { order_id: order_id.clone(), amount: *amount }
        }
        Command::IssueRefund { order_id, amount, reason } => {
            let order = state
                .orders
                .get(order_id)
                .ok_or_else(|| DomainError::NotFound { what: "order", id: order_id.to_string() })?;
            check_amount(amount)?;
            if amount.currency != order.amount.currency {
                return Err(DomainError::invalid_because(
                    "amount.currency",
                    format!(
                        "is {} but order {order_id} was paid in {}",
                        amount.currency, order.amount.currency
                    ),
                ));
            }
            let refundable = order.amount.amount_minor - order.refunded_minor;
            if amount.amount_minor > refundable {
                return Err(DomainError::Rule(format!(
                    "refund of {} exceeds what is left to refund on order {order_id} ({refundable})",
                    amount.amount_minor
                )));
            }
            Event::RefundIssued { order_id: order_id.clone(), amount: *amount, reason: reason.clone() }
        }
    };
    Ok(vec![event])
}

fn non_empty_text(field: &'static str, text: &Text) -> Result<(), DomainError> {
    if text.as_str().trim().is_empty() {
        return Err(DomainError::invalid(field, FieldError::Empty));
    }
    Ok(())
}

fn check_contact_points(points: &[ContactPoint]) -> Result<(), DomainError> {
    if points.len() > MAX_CONTACT_POINTS {
        return Err(DomainError::invalid(
            "contact_points",
            FieldError::TooMany { max: MAX_CONTACT_POINTS, actual: points.len() },
        ));
    }
    for point in points {
        non_empty_text("contact_points.value", &point.value)?;
    }
    Ok(())
}

fn check_amount(amount: &Money) -> Result<(), DomainError> {
    Money::positive("amount_minor", amount.amount_minor, amount.currency).map(|_| ())
}

fn check_reference(
    state: &CustomerState,
    field: &'static str,
    reference: Option<&RelatedRef>,
) -> Result<(), DomainError> {
    match reference {
        Some(reference) if !state.knows(reference) => {
            Err(DomainError::UnknownReference { field, reference: reference.describe() })
        }
        _ => Ok(()),
    }
}

fn find_complaint<'s>(
    state: &'s CustomerState,
    complaint_id: &crate::ids::ComplaintId,
) -> Result<&'s crate::state::ComplaintState, DomainError> {
    state
        .complaints
        .get(complaint_id)
        .ok_or_else(|| DomainError::NotFound { what: "complaint", id: complaint_id.to_string() })
}

fn open_promise<'s>(
    state: &'s CustomerState,
    promise_id: &PromiseId,
    action: &'static str,
) -> Result<&'s PromiseState, DomainError> {
    let promise = state
        .promises
        .get(promise_id)
        .ok_or_else(|| DomainError::NotFound { what: "promise", id: promise_id.to_string() })?;
    if promise.status != PromiseStatus::Open {
        return Err(DomainError::IllegalTransition {
            what: "promise",
            id: promise_id.to_string(),
            state: promise.status.as_str().to_owned(),
            action,
        });
    }
    Ok(promise)
}

fn complaint_transition(
    complaint_id: &crate::ids::ComplaintId,
    state: &str,
    action: &'static str,
) -> DomainError {
    DomainError::IllegalTransition {
        what: "complaint",
        id: complaint_id.to_string(),
        state: state.to_owned(),
        action,
    }
}

fn customer_transition(customer_id: &str, state: &str, action: &'static str) -> DomainError {
    DomainError::IllegalTransition {
        what: "customer",
        id: customer_id.to_owned(),
        state: state.to_owned(),
        action,
    }
}
