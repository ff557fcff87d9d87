//! Test fixtures (this crate's tests, and others' with the `fixtures` feature): one valid value
//! of every command and every event, with every optional field exercised somewhere and every
//! personal-data field filled (so redaction tests are not vacuous).
//!
//! Built outside this crate's tests only for other crates' tests (the `fixtures` feature, a
//! dev-dependency): every value is a constant that validates, so unwrapping cannot fail.
#![allow(clippy::unwrap_used)]

#[cfg(test)]
use covenant_domain::commands::Command;
use covenant_domain::events::*;
use covenant_domain::ids::*;
#[cfg(test)]
use covenant_domain::sample;
use covenant_domain::values::{Currency, LONG_TEXT_MAX, Money, Span, Text, Timestamp};
use covenant_domain::{EventMetadata, Position, RecordedEvent};

#[cfg(test)]
use super::CommandRequest;

pub fn ts(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis("fixture", millis).unwrap()
}

fn text(value: &str) -> Text {
    Text::new("text", value, LONG_TEXT_MAX).unwrap()
}

fn label(value: &str) -> Label {
    Label::new(value).unwrap()
}

fn money(amount_minor: i64, currency: &str) -> Money {
    Money::positive("amount", amount_minor, Currency::new("currency", currency).unwrap()).unwrap()
}

fn email(value: &str) -> ContactPoint {
    ContactPoint { kind: ContactKind::Email, value: text(value) }
}

/// One command of every kind (27), and a second `KeepPromise` without `kept_at`.
#[cfg(test)]
pub(crate) fn every_command() -> Vec<Command> {
    let promise = PromiseId::new("p-1").unwrap();
    let complaint = ComplaintId::new("k-1").unwrap();
    let order = OrderId::new("o-1").unwrap();
    vec![
        sample::register("Ada Lovelace").unwrap(),
        Command::UpdateProfile {
            changes: ProfileChanges {
                name: Some(text("Ada King")),
                contact_points: Some(vec![]),
                locale: Some(label("fr-FR")),
                timezone: Some(text("")),
                segment: Some(label("enterprise")),
            },
        },
        Command::ChangeConsent { purpose: label("marketing"), granted: false },
        Command::ChangeTier { tier: Tier::Vip },
        Command::RecordChurn { reason: ChurnReason::NoNeed },
        Command::ReactivateCustomer,
        Command::EraseCustomer,
        sample::interaction("i-1", 100).unwrap(),
        Command::CaptureSocialMention {
            platform: label("mastodon"),
            sentiment: Sentiment::Angry,
            reach: u64::MAX,
        },
        sample::complaint("k-1").unwrap(),
        Command::RespondToComplaint { complaint_id: complaint.clone() },
        Command::EscalateComplaint { complaint_id: complaint.clone(), to_team: None, reason: text("stuck") },
        Command::ResolveComplaint {
            complaint_id: complaint.clone(),
            outcome: ResolutionOutcome::PartiallyResolved,
        },
        Command::ReopenComplaint { complaint_id: complaint.clone(), reason: text("again") },
        Command::BreachSla {
            complaint_id: complaint.clone(),
            target: SlaTarget::FirstReply,
            due_at: ts(1_700_000_500_000),
        },
        Command::MakePromise {
            promise_id: promise.clone(),
            kind: PromiseKind::AdvertisedClaim,
            description: text("ships in 2 days"),
            made_by: ActorId::new("web-shop").unwrap(),
            due_at: ts(1_700_100_000_000),
            grace: Span::from_millis(1_500),
            related_ref: Some(RelatedRef::Interaction(InteractionId::new("i-1").unwrap())),
        },
        Command::RenegotiatePromise {
            promise_id: promise.clone(),
            new_due_at: ts(1_700_200_000_000),
            customer_consented: true,
        },
        Command::KeepPromise {
            promise_id: promise.clone(),
            kept_at: Some(ts(1_700_050_000_000)),
            evidence: text(""),
        },
        sample::keep("p-1").unwrap(),
        Command::PartiallyKeepPromise {
            promise_id: promise.clone(),
            fraction_permille: 999,
            evidence: text("most of it"),
        },
        Command::ReportBrokenPromise {
            promise_id: promise.clone(),
            detection: BreakDetection::CustomerReport,
            reason: text("no call"),
        },
        Command::ExpirePromise { promise_id: promise.clone() },
        Command::CancelPromise {
            promise_id: promise.clone(),
            by: CancelledBy::Customer,
            customer_consented: true,
            reason: text("changed mind"),
        },
        Command::IssueApology { related_ref: RelatedRef::Complaint(complaint) },
        Command::GrantCompensation {
            related_ref: RelatedRef::Order(order.clone()),
            kind: CompensationKind::Waiver,
            amount: money(1, "JPY"),
        },
        Command::AnswerSurvey {
            survey_id: SurveyId::new("s-1").unwrap(),
            kind: SurveyKind::Ces,
            score: 7,
            comment: text(""),
            related_ref: Some(RelatedRef::Promise(promise)),
        },
        Command::RecordPurchase {
            order_id: order.clone(),
            amount: money(covenant_domain::values::MAX_AMOUNT_MINOR, "EUR"),
        },
        Command::IssueRefund { order_id: order, amount: money(5, "USD"), reason: text("late") },
    ]
}

/// `command` from integration `crm`; `with_options` sets every optional header field.
#[cfg(test)]
pub(crate) fn request(command: Command, with_options: bool) -> CommandRequest {
    CommandRequest {
        customer_id: CustomerId::new("cust-42").unwrap(),
        command_id: CommandId::new("cmd-1").unwrap(),
        expected_version: with_options.then_some(7),
        occurred_at: with_options.then(|| ts(1_700_000_000_000)),
        actor: Actor { kind: ActorKind::Integration, id: ActorId::new("crm").unwrap() },
        team: with_options.then(|| TeamId::new("support").unwrap()),
        channel: with_options.then_some(Channel::Web),
        correlation_id: with_options.then(|| label("corr-9")),
        causation_id: with_options.then(|| label("cause-9")),
        command,
    }
}

/// One event of every type (26), in catalogue order, every personal-data field non-empty.
pub fn every_event() -> Vec<Event> {
    let promise = PromiseId::new("p-1").unwrap();
    let complaint = ComplaintId::new("k-1").unwrap();
    let order = OrderId::new("o-1").unwrap();
    vec![
        Event::CustomerRegistered {
            name: text("Ada Lovelace"),
            contact_points: vec![
                email("ada@example.com"),
                ContactPoint { kind: ContactKind::Phone, value: text("+44 20 7946 0000") },
            ],
            locale: label("en-GB"),
            timezone: text("Europe/London"),
            segment: label("smb"),
            source: label("web"),
            tier: Tier::Standard,
        },
        Event::CustomerProfileUpdated {
            changes: ProfileChanges {
                name: Some(text("Ada King")),
                contact_points: Some(vec![email("ada.king@example.org")]),
                locale: None,
                timezone: Some(text("UTC")),
                segment: Some(label("enterprise")),
            },
        },
        Event::ConsentChanged { purpose: label("marketing"), granted: true },
        Event::CustomerTierChanged { from: Tier::Standard, to: Tier::Vip },
        Event::CustomerChurned { reason: ChurnReason::Competitor },
        Event::CustomerReactivated {},
        Event::CustomerErased {},
        Event::InteractionRecorded {
            interaction_id: InteractionId::new("i-1").unwrap(),
            channel: Channel::Phone,
            direction: Direction::Outbound,
            kind: InteractionKind::Complaint,
            agent_id: Some(ActorId::new("agent-7").unwrap()),
            wait_secs: 95,
            handle_secs: 410,
            sentiment: Sentiment::Negative,
            summary: text("parcel late again"),
        },
        Event::SocialMentionCaptured {
            platform: label("mastodon"),
            sentiment: Sentiment::Positive,
            reach: 12_000,
        },
        Event::ComplaintOpened {
            complaint_id: complaint.clone(),
            category: ComplaintCategory::BrokenPromise,
            severity: Severity::Critical,
            priority: Priority::Urgent,
            channel: Channel::InPerson,
            description: text("promised callback never came"),
        },
        Event::ComplaintResponded { complaint_id: complaint.clone(), first: true },
        Event::ComplaintEscalated {
            complaint_id: complaint.clone(),
            to_team: Some(TeamId::new("tier-2").unwrap()),
            reason: text("needs a refund decision"),
        },
        Event::ComplaintResolved { complaint_id: complaint.clone(), outcome: ResolutionOutcome::Withdrawn },
        Event::ComplaintReopened { complaint_id: complaint.clone(), reason: text("refund missing") },
        Event::SlaBreached {
            complaint_id: complaint.clone(),
            target: SlaTarget::Resolution,
            due_at: ts(1_700_086_400_000),
            detected_at: ts(1_700_086_460_000),
        },
        Event::PromiseMade {
            promise_id: promise.clone(),
            kind: PromiseKind::Callback,
            description: text("call back tomorrow"),
            made_by: ActorId::new("agent-7").unwrap(),
            due_at: ts(1_700_086_400_000),
            grace: Span::from_secs(900),
            related_ref: Some(RelatedRef::Complaint(complaint.clone())),
        },
        Event::PromiseRenegotiated {
            promise_id: promise.clone(),
            previous_due_at: ts(1_700_086_400_000),
            new_due_at: ts(1_700_172_800_000),
            customer_consented: false,
        },
        Event::PromiseKept {
            promise_id: promise.clone(),
            kept_at: ts(1_700_090_000_000),
            evidence: text("call log 881"),
        },
        Event::PromisePartiallyKept {
            promise_id: promise.clone(),
            fraction_permille: 600,
            evidence: text("3 of 5 items"),
        },
        Event::PromiseBroken {
            promise_id: promise.clone(),
            detection: BreakDetection::Audit,
            due_at: ts(1_700_086_400_000),
            detected_at: ts(1_700_087_400_000),
            reason: text("nobody called Ada"),
        },
        Event::PromiseCancelled {
            promise_id: promise.clone(),
            by: CancelledBy::Company,
            customer_consented: false,
            reason: text("stock gone"),
        },
        Event::ApologyIssued { related_ref: RelatedRef::Promise(promise.clone()) },
        Event::CompensationGranted {
            related_ref: RelatedRef::Promise(promise),
            kind: CompensationKind::Credit,
            amount: money(1_500, "EUR"),
        },
        Event::SurveyAnswered {
            survey_id: SurveyId::new("s-1").unwrap(),
            kind: SurveyKind::Nps,
            score: 3,
            comment: text("slow and rude"),
            related_ref: Some(RelatedRef::Order(order.clone())),
        },
        Event::PurchaseRecorded { order_id: order.clone(), amount: money(12_999, "EUR") },
        Event::RefundIssued {
            order_id: order,
            amount: money(2_000, "GBP"),
            reason: text("damaged in transit"),
        },
    ]
}

/// One event of every type on one customer's stream (`cust-42`, partition 0, offsets from 0)
/// in catalogue order, so that each promise and complaint event finds the promise or complaint
/// it is about; then each complaint and promise event again right after a fresh opening or
/// promise, so that none of them finds its work already done by an earlier one (a projection
/// test that skips an event type's effect cannot pass because a later event has the same one).
pub fn every_event_on_one_stream() -> Vec<RecordedEvent> {
    let every = every_event();
    let (opened, made) = (9, 15);
    let mut kinds: Vec<usize> = (0..every.len()).collect();
    for index in (10..=14).chain(16..=20) {
        kinds.extend([if index < made { opened } else { made }, index]);
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(offset, index)| {
            let mut event = record(offset as u64, every[index].clone());
            event.position = Position { partition: 0, offset: offset as u64 };
            event
        })
        .collect()
}

/// `event` recorded as the `index`-th event of customer `cust-42` in partition 3.
pub fn record(index: u64, event: Event) -> RecordedEvent {
    let full = index.is_multiple_of(2);
    RecordedEvent {
        event_id: covenant_domain::EventId(uuid::Uuid::from_u128(
            0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(index),
        )),
        customer_id: CustomerId::new("cust-42").unwrap(),
        stream_version: index + 1,
        position: Position { partition: 3, offset: 1000 + index },
        recorded_at: ts(1_700_000_000_123),
        command_id: CommandId::new(format!("cmd-{index}")).unwrap(),
        metadata: EventMetadata {
            occurred_at: ts(1_700_000_000_000),
            actor: Actor { kind: ActorKind::Agent, id: ActorId::new("agent-7").unwrap() },
            // Alternate between every optional metadata field set and none.
            team: full.then(|| TeamId::new("support").unwrap()),
            channel: full.then_some(Channel::Chat),
            correlation_id: full.then(|| label("corr-1")),
            causation_id: full.then(|| label("cause-1")),
        },
        event,
    }
}
