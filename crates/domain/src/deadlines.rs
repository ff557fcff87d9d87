//! The deadlines the watchdog keeps, as pure rules: which events set, move or clear a promise's
//! due date (`due_at + grace`) or a complaint's SLA clocks (first reply, resolution; targets per
//! priority, tightened for premium and VIP customers), and the command a passed deadline becomes.
//!
//! A passed deadline's command carries a **deterministic `command_id`** (a hash of the deadline's
//! kind, subject and due instant): a watchdog restarted across the deadline, or a second watchdog,
//! sends the same id, and the ledger records the breach once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::commands::Command;
use crate::error::DomainError;
use crate::events::{Event, Priority, SlaTarget, Tier};
use crate::ids::{CommandId, ComplaintId, CustomerId, PromiseId};
use crate::values::{Span, Timestamp};

/// SLA targets per complaint priority, and how much tighter they are for better tiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaPolicy {
    /// First-reply targets for Low, Normal, High, Urgent.
    pub first_reply: [Span; 4],
    /// Resolution targets for Low, Normal, High, Urgent.
    pub resolution: [Span; 4],
    /// Share of the target that applies to premium customers (0.75: a quarter sooner).
    pub premium_factor: f64,
    /// Share of the target that applies to VIP customers.
    pub vip_factor: f64,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        Self {
            first_reply: [
                Span::from_secs(48 * 3600),
                Span::from_secs(24 * 3600),
                Span::from_secs(4 * 3600),
                Span::from_secs(3600),
            ],
            resolution: [Span::from_days(14), Span::from_days(7), Span::from_days(2), Span::from_days(1)],
            premium_factor: 0.75,
            vip_factor: 0.5,
        }
    }
}

impl SlaPolicy {
    /// The span of `target` for a complaint of `priority` from a customer of `tier`.
    pub fn target(&self, target: SlaTarget, priority: Priority, tier: Option<Tier>) -> Span {
        let index = match priority {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        };
        let base = match target {
            SlaTarget::FirstReply => self.first_reply[index],
            SlaTarget::Resolution => self.resolution[index],
        };
        let factor = match tier {
            Some(Tier::Vip) => self.vip_factor,
            Some(Tier::Premium) => self.premium_factor,
            _ => 1.0,
        };
        Span::from_millis((base.millis() as f64 * factor).round() as i64)
    }
}

/// What a deadline is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DeadlineSubject {
    /// An open promise: at `due_at + grace` it expires (broken, detected by deadline).
    Promise(PromiseId),
    /// A complaint's SLA clock.
    Complaint(ComplaintId, SlaTarget),
}

/// A deadline of one customer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Deadline {
    pub due_at: Timestamp,
    pub customer_id: CustomerId,
    pub subject: DeadlineSubject,
}

impl Deadline {
    /// The command to send once the deadline has passed.
    pub fn command(&self) -> Command {
        match &self.subject {
            DeadlineSubject::Promise(promise_id) => Command::ExpirePromise { promise_id: promise_id.clone() },
            DeadlineSubject::Complaint(complaint_id, target) => Command::BreachSla {
                complaint_id: complaint_id.clone(),
                target: *target,
                due_at: self.due_at,
            },
        }
    }

    /// The same for every watchdog and every restart: `watchdog:<xxh3-128 of the deadline>`.
    pub fn command_id(&self) -> Result<CommandId, DomainError> {
        let (kind, subject) = match &self.subject {
            DeadlineSubject::Promise(id) => ("promise", id.as_str()),
            DeadlineSubject::Complaint(id, SlaTarget::FirstReply) => ("first_reply", id.as_str()),
            DeadlineSubject::Complaint(id, SlaTarget::Resolution) => ("resolution", id.as_str()),
        };
        let key = format!("{kind}\u{0}{}\u{0}{subject}\u{0}{}", self.customer_id, self.due_at.unix_millis());
        let hash = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
        CommandId::new(format!("watchdog:{hash:032x}"))
    }
}

/// How one event changes the customer's deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineChange {
    /// Set (or move) the deadline of its subject.
    Set(Deadline),
    /// The subject needs no deadline any more.
    Clear(DeadlineSubject),
}

/// What the watchdog remembers of a customer to derive SLA clocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    pub tier: Option<Tier>,
    /// Open promises and their grace (a renegotiated due date keeps it).
    pub promises: BTreeMap<PromiseId, Span>,
    /// Complaints seen (open or resolved) and their priority (a reopened complaint keeps it).
    pub complaints: BTreeMap<ComplaintId, Priority>,
}

/// Whether [`deadline_changes`] reads the payload of an event of the catalogue's
/// `event_index`-th type ([`crate::events::EVENT_TYPES`]): registrations and tier changes (the
/// tier), complaints opened, first-responded, resolved, reopened or breached, and every promise
/// event. For the others it changes nothing, so a rebuild from the log need not decode them
/// (the watchdog's tests apply one event of every type with and without the others).
pub fn reads_payload(event_index: u32) -> bool {
    matches!(event_index, 0 | 3 | 9 | 10 | 12..=20)
}

/// Folds `event` (which happened at `occurred_at`) into `state` and returns the deadline changes.
pub fn deadline_changes(
    state: &mut WatchState,
    customer_id: &CustomerId,
    event: &Event,
    occurred_at: Timestamp,
    policy: &SlaPolicy,
) -> Vec<DeadlineChange> {
    let set =
        |subject, due_at| DeadlineChange::Set(Deadline { due_at, customer_id: customer_id.clone(), subject });
    match event {
        Event::CustomerRegistered { tier, .. } => {
            state.tier = Some(*tier);
            Vec::new()
        }
        Event::CustomerTierChanged { to, .. } => {
            state.tier = Some(*to);
            Vec::new()
        }
        Event::PromiseMade { promise_id, due_at, grace, .. } => {
            state.promises.insert(promise_id.clone(), *grace);
            vec![set(DeadlineSubject::Promise(promise_id.clone()), due_at.plus(*grace))]
        }
        Event::PromiseRenegotiated { promise_id, new_due_at, .. } => {
            let grace = state.promises.get(promise_id).copied().unwrap_or_default();
            vec![set(DeadlineSubject::Promise(promise_id.clone()), new_due_at.plus(grace))]
        }
        Event::PromiseKept { promise_id, .. }
        | Event::PromisePartiallyKept { promise_id, .. }
        | Event::PromiseBroken { promise_id, .. }
        | Event::PromiseCancelled { promise_id, .. } => {
            state.promises.remove(promise_id);
            vec![DeadlineChange::Clear(DeadlineSubject::Promise(promise_id.clone()))]
        }
        Event::ComplaintOpened { complaint_id, priority, .. } => {
            state.complaints.insert(complaint_id.clone(), *priority);
            sla_clocks(state, customer_id, complaint_id, *priority, occurred_at, policy)
        }
        Event::ComplaintReopened { complaint_id, .. } => {
            let priority = state.complaints.get(complaint_id).copied().unwrap_or(Priority::Normal);
            sla_clocks(state, customer_id, complaint_id, priority, occurred_at, policy)
        }
        Event::ComplaintResponded { complaint_id, first: true } => {
            vec![DeadlineChange::Clear(DeadlineSubject::Complaint(
                complaint_id.clone(),
                SlaTarget::FirstReply,
            ))]
        }
        Event::ComplaintResolved { complaint_id, .. } => {
            vec![
                DeadlineChange::Clear(DeadlineSubject::Complaint(
                    complaint_id.clone(),
                    SlaTarget::FirstReply,
                )),
                DeadlineChange::Clear(DeadlineSubject::Complaint(
                    complaint_id.clone(),
                    SlaTarget::Resolution,
                )),
            ]
        }
        Event::SlaBreached { complaint_id, target, .. } => {
            vec![DeadlineChange::Clear(DeadlineSubject::Complaint(complaint_id.clone(), *target))]
        }
        _ => Vec::new(),
    }
}

/// Both SLA clocks of a complaint (re)started at `started`.
fn sla_clocks(
    state: &WatchState,
    customer_id: &CustomerId,
    complaint_id: &ComplaintId,
    priority: Priority,
    started: Timestamp,
    policy: &SlaPolicy,
) -> Vec<DeadlineChange> {
    [SlaTarget::FirstReply, SlaTarget::Resolution]
        .into_iter()
        .map(|target| {
            DeadlineChange::Set(Deadline {
                due_at: started.plus(policy.target(target, priority, state.tier)),
                customer_id: customer_id.clone(),
                subject: DeadlineSubject::Complaint(complaint_id.clone(), target),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    const T0: i64 = 1_800_000_000_000;

    fn customer() -> CustomerId {
        CustomerId::new("alice").unwrap()
    }

    fn fold(state: &mut WatchState, command: Command, at: i64) -> Vec<DeadlineChange> {
        // Turn the sample command into its event the way the ledger would.
        let mut decision = crate::CustomerState::default();
        let now = Timestamp::from_unix_millis_clamped(at);
        let context = crate::DecisionContext { now, occurred_at: now };
        for event in crate::decide(&decision, "alice", &sample::register("Alice").unwrap(), &context).unwrap()
        {
            crate::apply(&mut decision, &event, now);
        }
        let events = crate::decide(&decision, "alice", &command, &context).unwrap();
        events
            .iter()
            .flat_map(|event| deadline_changes(state, &customer(), event, now, &SlaPolicy::default()))
            .collect()
    }

    #[test]
    fn a_promise_expires_at_due_plus_grace_and_clears_when_settled() {
        let mut state = WatchState::default();
        let due = Timestamp::from_unix_millis_clamped(T0 + 3_600_000);
        let changes = fold(&mut state, sample::promise("p1", due).unwrap(), T0);
        let [DeadlineChange::Set(deadline)] = changes.as_slice() else { panic!("{changes:?}") };
        assert_eq!(deadline.due_at, due.plus(Span::from_secs(600)));
        assert_eq!(deadline.command(), Command::ExpirePromise { promise_id: PromiseId::new("p1").unwrap() });
        let settled = deadline_changes(
            &mut state,
            &customer(),
            &Event::PromiseKept {
                promise_id: PromiseId::new("p1").unwrap(),
                kept_at: due,
                evidence: crate::Text::new("evidence", "", 10).unwrap(),
            },
            due,
            &SlaPolicy::default(),
        );
        assert_eq!(settled, [DeadlineChange::Clear(DeadlineSubject::Promise(PromiseId::new("p1").unwrap()))]);
    }

    #[test]
    fn sla_clocks_follow_priority_and_tier() {
        let policy = SlaPolicy::default();
        let normal = policy.target(SlaTarget::FirstReply, Priority::Normal, Some(Tier::Standard));
        assert_eq!(normal, Span::from_secs(24 * 3600));
        assert_eq!(
            policy.target(SlaTarget::FirstReply, Priority::Normal, Some(Tier::Vip)),
            Span::from_secs(12 * 3600)
        );
        let mut state = WatchState::default();
        let changes = fold(&mut state, sample::complaint("c1").unwrap(), T0);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|change| matches!(change, DeadlineChange::Set(deadline) if deadline.due_at > Timestamp::from_unix_millis_clamped(T0))));
    }

    #[test]
    fn command_ids_are_deterministic_and_differ_per_deadline() {
        let deadline = |due: i64| Deadline {
            due_at: Timestamp::from_unix_millis_clamped(due),
            customer_id: customer(),
            subject: DeadlineSubject::Promise(PromiseId::new("p1").unwrap()),
        };
        assert_eq!(deadline(T0).command_id().unwrap(), deadline(T0).command_id().unwrap());
        assert_ne!(deadline(T0).command_id().unwrap(), deadline(T0 + 1).command_id().unwrap());
        assert!(deadline(T0).command_id().unwrap().as_str().starts_with("watchdog:"));
    }
}
