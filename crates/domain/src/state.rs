//! The customer's decision state: the least a writer must know of a customer's history to
//! decide the next command, and [`apply`], the fold that builds it.
//!
//! `apply` never refuses an event: events are facts already recorded. The state is kept small
//! (open and closed promises, complaints, orders, answered surveys) because the log stores a
//! snapshot of it beside every stream head.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::events::{Event, Priority, PromiseKind, RelatedRef, SlaTarget, Tier};
use crate::ids::{ComplaintId, OrderId, PromiseId, SurveyId};
use crate::values::{Money, Span, Timestamp};

/// Where a customer is in their life with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CustomerStatus {
    /// Nothing recorded yet.
    #[default]
    Unregistered,
    Active,
    Churned,
    /// Crypto-shredded: nothing more may be recorded.
    Erased,
}

/// Where a promise is on made → (renegotiated)* → kept | partially kept | broken | cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromiseStatus {
    Open,
    Kept,
    PartiallyKept,
    Broken,
    Cancelled,
}

impl PromiseStatus {
    /// Lower-case name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PromiseStatus::Open => "open",
            PromiseStatus::Kept => "kept",
            PromiseStatus::PartiallyKept => "partially kept",
            PromiseStatus::Broken => "broken",
            PromiseStatus::Cancelled => "cancelled",
        }
    }
}

/// What the writer knows of one promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromiseState {
    pub kind: PromiseKind,
    pub made_at: Timestamp,
    /// The current due date (after any renegotiation).
    pub due_at: Timestamp,
    pub grace: Span,
    pub status: PromiseStatus,
    pub renegotiations: u32,
    pub related_ref: Option<RelatedRef>,
}

impl PromiseState {
    /// The instant after which an open promise counts as broken by deadline.
    pub fn deadline(&self) -> Timestamp {
        self.due_at.plus(self.grace)
    }
}

/// What the writer knows of one complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplaintState {
    pub priority: Priority,
    pub opened_at: Timestamp,
    pub resolved: bool,
    /// A response was given since the complaint was opened or last reopened.
    pub responded: bool,
    /// SLA targets breached since the complaint was opened or last reopened.
    pub breached: BTreeSet<SlaTarget>,
    pub escalations: u32,
    pub reopenings: u32,
}

impl ComplaintState {
    /// Lower-case status for messages.
    pub fn status(&self) -> &'static str {
        if self.resolved { "resolved" } else { "open" }
    }
}

/// What the writer knows of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    pub amount: Money,
    pub refunded_minor: i64,
}

/// A customer's decision state after `version` events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CustomerState {
    /// Number of events in the customer's stream folded so far.
    pub version: u64,
    pub status: CustomerStatus,
    pub tier: Option<Tier>,
    pub promises: BTreeMap<PromiseId, PromiseState>,
    pub complaints: BTreeMap<ComplaintId, ComplaintState>,
    pub orders: BTreeMap<OrderId, OrderState>,
    pub surveys: BTreeSet<SurveyId>,
}

impl CustomerState {
    /// True when `reference` names a promise, complaint or order of this customer. Interactions
    /// are not tracked in the decision state, so interaction references are accepted as given.
    pub fn knows(&self, reference: &RelatedRef) -> bool {
        match reference {
            RelatedRef::Promise(id) => self.promises.contains_key(id),
            RelatedRef::Complaint(id) => self.complaints.contains_key(id),
            RelatedRef::Order(id) => self.orders.contains_key(id),
            RelatedRef::Interaction(_) => true,
        }
    }
}

/// Folds one recorded event (with its business time) into the state. Never fails.
pub fn apply(state: &mut CustomerState, event: &Event, occurred_at: Timestamp) {
    state.version += 1;
    match event {
        Event::CustomerRegistered { tier, .. } => {
            state.status = CustomerStatus::Active;
            state.tier = Some(*tier);
        }
        Event::CustomerTierChanged { to, .. } => state.tier = Some(*to),
        Event::CustomerChurned { .. } => state.status = CustomerStatus::Churned,
        Event::CustomerReactivated {} => state.status = CustomerStatus::Active,
        Event::CustomerErased {} => state.status = CustomerStatus::Erased,
        Event::CustomerProfileUpdated { .. }
        | Event::ConsentChanged { .. }
        | Event::InteractionRecorded { .. }
        | Event::SocialMentionCaptured { .. }
        | Event::ApologyIssued { .. }
        | Event::CompensationGranted { .. } => {}
        Event::ComplaintOpened { complaint_id, priority, .. } => {
            state.complaints.insert(
                complaint_id.clone(),
                ComplaintState {
                    priority: *priority,
                    opened_at: occurred_at,
                    resolved: false,
                    responded: false,
                    breached: BTreeSet::new(),
                    escalations: 0,
                    reopenings: 0,
                },
            );
        }
        Event::ComplaintResponded { complaint_id, .. } => {
            if let Some(complaint) = state.complaints.get_mut(complaint_id) {
                complaint.responded = true;
            }
        }
        Event::ComplaintEscalated { complaint_id, .. } => {
            if let Some(complaint) = state.complaints.get_mut(complaint_id) {
                complaint.escalations += 1;
            }
        }
        Event::ComplaintResolved { complaint_id, .. } => {
            if let Some(complaint) = state.complaints.get_mut(complaint_id) {
                complaint.resolved = true;
            }
        }
        Event::ComplaintReopened { complaint_id, .. } => {
            if let Some(complaint) = state.complaints.get_mut(complaint_id) {
                complaint.resolved = false;
                complaint.responded = false;
                complaint.breached.clear();
                complaint.reopenings += 1;
            }
        }
        Event::SlaBreached { complaint_id, target, .. } => {
            if let Some(complaint) = state.complaints.get_mut(complaint_id) {
                complaint.breached.insert(*target);
            }
        }
        Event::PromiseMade { promise_id, kind, due_at, grace, related_ref, .. } => {
            state.promises.insert(
                promise_id.clone(),
                PromiseState {
                    kind: *kind,
                    made_at: occurred_at,
                    due_at: *due_at,
                    grace: *grace,
                    status: PromiseStatus::Open,
                    renegotiations: 0,
                    related_ref: related_ref.clone(),
                },
            );
        }
        Event::PromiseRenegotiated { promise_id, new_due_at, .. } => {
            if let Some(promise) = state.promises.get_mut(promise_id) {
                promise.due_at = *new_due_at;
                promise.renegotiations += 1;
            }
        }
        Event::PromiseKept { promise_id, .. } => set_promise_status(state, promise_id, PromiseStatus::Kept),
        Event::PromisePartiallyKept { promise_id, .. } => {
            set_promise_status(state, promise_id, PromiseStatus::PartiallyKept)
        }
        Event::PromiseBroken { promise_id, .. } => {
            set_promise_status(state, promise_id, PromiseStatus::Broken)
        }
        Event::PromiseCancelled { promise_id, .. } => {
            set_promise_status(state, promise_id, PromiseStatus::Cancelled)
        }
        Event::SurveyAnswered { survey_id, .. } => {
            state.surveys.insert(survey_id.clone());
        }
        Event::PurchaseRecorded { order_id, amount } => {
            state.orders.insert(order_id.clone(), OrderState { amount: *amount, refunded_minor: 0 });
        }
        Event::RefundIssued { order_id, amount, .. } => {
            if let Some(order) = state.orders.get_mut(order_id) {
                order.refunded_minor = order.refunded_minor.saturating_add(amount.amount_minor);
            }
        }
    }
}

fn set_promise_status(state: &mut CustomerState, promise_id: &PromiseId, status: PromiseStatus) {
    if let Some(promise) = state.promises.get_mut(promise_id) {
        promise.status = status;
    }
}
