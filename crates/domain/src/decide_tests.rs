//! One test per decision rule: each accepted path and each typed rejection.

use crate::commands::Command;
use crate::error::{DomainError, RejectionKind};
use crate::events::*;
use crate::ids::*;
use crate::state::{CustomerState, CustomerStatus, PromiseStatus, apply};
use crate::values::{Currency, Money, Span, Text, Timestamp};
use crate::{DecisionContext, decide};

const T0: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn at(millis: i64) -> DecisionContext {
    let now = Timestamp::from_unix_millis_clamped(millis);
    DecisionContext { now, occurred_at: now }
}

fn ts(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis_clamped(millis)
}

fn text(value: &str) -> Text {
    Text::new("text", value, 4096).unwrap()
}

fn eur(amount_minor: i64) -> Money {
    Money { amount_minor, currency: Currency::new("currency", "EUR").unwrap() }
}

fn register() -> Command {
    Command::RegisterCustomer {
        name: text("Ada Lovelace"),
        contact_points: vec![ContactPoint { kind: ContactKind::Email, value: text("ada@example.com") }],
        locale: Label::new("en-GB").unwrap(),
        timezone: text("Europe/London"),
        segment: Label::new("smb").unwrap(),
        source: Label::new("web").unwrap(),
        tier: Tier::Standard,
    }
}

fn promise(id: &str, due_in_hours: i64) -> Command {
    Command::MakePromise {
        promise_id: PromiseId::new(id).unwrap(),
        kind: PromiseKind::Callback,
        description: text("call back about the invoice"),
        made_by: ActorId::new("agent-7").unwrap(),
        due_at: ts(T0 + due_in_hours * HOUR),
        grace: Span::from_secs(600),
        related_ref: None,
    }
}

fn complaint(id: &str) -> Command {
    Command::OpenComplaint {
        complaint_id: ComplaintId::new(id).unwrap(),
        category: ComplaintCategory::Delay,
        severity: Severity::Major,
        priority: Priority::High,
        channel: Channel::Email,
        description: text("parcel late"),
    }
}

/// A customer built by running `commands` through decide + apply; panics if any is refused.
struct Customer {
    state: CustomerState,
}

impl Customer {
    fn new(commands: &[Command]) -> Self {
        let mut customer = Customer { state: CustomerState::default() };
        customer.run(&register(), at(T0)).unwrap();
        for command in commands {
            customer.run(command, at(T0)).unwrap();
        }
        customer
    }

    fn run(&mut self, command: &Command, context: DecisionContext) -> Result<Vec<Event>, DomainError> {
        let events = decide(&self.state, "c-1", command, &context)?;
        for event in &events {
            apply(&mut self.state, event, context.occurred_at);
        }
        Ok(events)
    }

    fn refuse(&mut self, command: &Command, context: DecisionContext) -> DomainError {
        let before = self.state.clone();
        let error = self.run(command, context).expect_err("command should be refused");
        assert_eq!(self.state, before, "a refused command must not change the state");
        error
    }
}

fn pid(id: &str) -> PromiseId {
    PromiseId::new(id).unwrap()
}

fn cid(id: &str) -> ComplaintId {
    ComplaintId::new(id).unwrap()
}

#[test]
fn commands_before_registration_are_not_found() {
    let error = decide(&CustomerState::default(), "c-1", &promise("p1", 24), &at(T0)).unwrap_err();
    assert_eq!(error.kind(), RejectionKind::NotFound);
    assert!(error.to_string().contains("c-1 is not registered"), "{error}");
}

#[test]
fn registering_twice_already_exists() {
    let mut customer = Customer::new(&[]);
    assert_eq!(customer.state.status, CustomerStatus::Active);
    let error = customer.refuse(&register(), at(T0));
    assert_eq!(error.kind(), RejectionKind::AlreadyExists);
}

#[test]
fn registration_needs_a_name_and_few_contact_points() {
    let Command::RegisterCustomer { contact_points, locale, timezone, segment, source, tier, .. } =
        register()
    else {
        unreachable!()
    };
    let nameless = Command::RegisterCustomer {
        name: text(" "),
        contact_points: contact_points.clone(),
        locale: locale.clone(),
        timezone: timezone.clone(),
        segment: segment.clone(),
        source: source.clone(),
        tier,
    };
    let error = decide(&CustomerState::default(), "c-1", &nameless, &at(T0)).unwrap_err();
    assert!(error.to_string().starts_with("name must not be empty"), "{error}");
    let crowded = Command::RegisterCustomer {
        name: text("Ada"),
        contact_points: vec![contact_points[0].clone(); 17],
        locale,
        timezone,
        segment,
        source,
        tier,
    };
    let error = decide(&CustomerState::default(), "c-1", &crowded, &at(T0)).unwrap_err();
    assert_eq!(error.kind(), RejectionKind::InvalidArgument);
    assert!(error.to_string().contains("contact_points has 17 items"), "{error}");
}

#[test]
fn occurred_at_beyond_clock_skew_is_invalid() {
    let mut customer = Customer::new(&[]);
    let context = DecisionContext { now: ts(T0), occurred_at: ts(T0 + HOUR) };
    let error = customer.refuse(&promise("p1", 2), context);
    assert!(error.to_string().starts_with("occurred_at is 3600000 ms after"), "{error}");
    // A call logged late (occurred_at in the past) is fine.
    let late = DecisionContext { now: ts(T0), occurred_at: ts(T0 - 48 * HOUR) };
    customer.run(&promise("p2", -47), late).unwrap();
}

#[test]
fn erased_customers_accept_nothing() {
    let mut customer = Customer::new(&[Command::EraseCustomer]);
    let error = customer.refuse(&promise("p1", 1), at(T0));
    assert_eq!(error.kind(), RejectionKind::FailedPrecondition);
    assert!(error.to_string().contains("erased"));
    customer.refuse(&register(), at(T0));
}

#[test]
fn profile_update_must_change_something() {
    let mut customer = Customer::new(&[]);
    let error = customer.refuse(&Command::UpdateProfile { changes: ProfileChanges::default() }, at(T0));
    assert!(error.to_string().starts_with("changes sets no field"), "{error}");
    let changes = ProfileChanges { segment: Some(Label::new("enterprise").unwrap()), ..Default::default() };
    customer.run(&Command::UpdateProfile { changes }, at(T0)).unwrap();
}

#[test]
fn tier_change_to_the_same_tier_is_refused_and_records_from() {
    let mut customer = Customer::new(&[]);
    assert_eq!(
        customer.refuse(&Command::ChangeTier { tier: Tier::Standard }, at(T0)).kind(),
        RejectionKind::FailedPrecondition
    );
    let events = customer.run(&Command::ChangeTier { tier: Tier::Vip }, at(T0)).unwrap();
    assert_eq!(events, vec![Event::CustomerTierChanged { from: Tier::Standard, to: Tier::Vip }]);
}

#[test]
fn churn_and_reactivation_alternate() {
    let mut customer = Customer::new(&[]);
    customer.refuse(&Command::ReactivateCustomer, at(T0));
    customer.run(&Command::RecordChurn { reason: ChurnReason::Service }, at(T0)).unwrap();
    let error = customer.refuse(&Command::RecordChurn { reason: ChurnReason::Price }, at(T0));
    assert!(error.to_string().contains("is churned: cannot record churn"), "{error}");
    customer.run(&Command::ReactivateCustomer, at(T0)).unwrap();
    assert_eq!(customer.state.status, CustomerStatus::Active);
}

#[test]
fn promise_ids_are_unique() {
    let mut customer = Customer::new(&[promise("p1", 24)]);
    let error = customer.refuse(&promise("p1", 48), at(T0));
    assert_eq!(error.kind(), RejectionKind::AlreadyExists);
    assert!(error.to_string().contains("promise p1 already exists"));
}

#[test]
fn promise_due_before_it_was_made_is_invalid() {
    let mut customer = Customer::new(&[]);
    let error = customer.refuse(&promise("p1", -1), at(T0));
    assert!(error.to_string().starts_with("due_at "), "{error}");
}

#[test]
fn promise_grace_is_bounded() {
    let mut customer = Customer::new(&[]);
    let Command::MakePromise { promise_id, kind, description, made_by, due_at, .. } = promise("p1", 2) else {
        unreachable!()
    };
    for grace in [Span::from_millis(-1), Span::from_days(31)] {
        let command = Command::MakePromise {
            promise_id: promise_id.clone(),
            kind,
            description: description.clone(),
            made_by: made_by.clone(),
            due_at,
            grace,
            related_ref: None,
        };
        let error = customer.refuse(&command, at(T0));
        assert!(error.to_string().starts_with("grace is"), "{error}");
    }
}

#[test]
fn recovery_promise_must_reference_a_known_failure() {
    let mut customer = Customer::new(&[promise("p1", 1)]);
    let Command::MakePromise { kind, description, made_by, due_at, grace, .. } = promise("x", 2) else {
        unreachable!()
    };
    let recovery = |reference: RelatedRef| Command::MakePromise {
        promise_id: pid("fix-1"),
        kind,
        description: description.clone(),
        made_by: made_by.clone(),
        due_at,
        grace,
        related_ref: Some(reference),
    };
    let error = customer.refuse(&recovery(RelatedRef::Promise(pid("nope"))), at(T0));
    assert_eq!(error.kind(), RejectionKind::NotFound);
    assert_eq!(error.to_string(), "related_ref names promise:nope, which does not exist for this customer");
    customer.run(&recovery(RelatedRef::Promise(pid("p1"))), at(T0)).unwrap();
}

#[test]
fn only_open_promises_change_state() {
    let closers: Vec<Command> = vec![
        Command::KeepPromise { promise_id: pid("p1"), kept_at: None, evidence: text("") },
        Command::PartiallyKeepPromise { promise_id: pid("p1"), fraction_permille: 500, evidence: text("") },
        Command::ReportBrokenPromise {
            promise_id: pid("p1"),
            detection: BreakDetection::CustomerReport,
            reason: text(""),
        },
        Command::CancelPromise {
            promise_id: pid("p1"),
            by: CancelledBy::Company,
            customer_consented: false,
            reason: text(""),
        },
    ];
    for closer in &closers {
        let mut customer = Customer::new(&[promise("p1", 24)]);
        customer.run(closer, at(T0)).unwrap();
        let status = customer.state.promises[&pid("p1")].status;
        assert_ne!(status, PromiseStatus::Open);
        for next in closers.iter().chain([&Command::RenegotiatePromise {
            promise_id: pid("p1"),
            new_due_at: ts(T0 + 72 * HOUR),
            customer_consented: true,
        }]) {
            let error = customer.refuse(next, at(T0));
            assert_eq!(error.kind(), RejectionKind::FailedPrecondition, "{error}");
            assert!(
                error.to_string().starts_with(&format!("promise p1 is {}: cannot", status.as_str())),
                "{error}"
            );
        }
        customer.refuse(&Command::ExpirePromise { promise_id: pid("p1") }, at(T0 + 100 * HOUR));
    }
}

#[test]
fn unknown_promise_is_not_found() {
    let mut customer = Customer::new(&[]);
    let error = customer.refuse(
        &Command::KeepPromise { promise_id: pid("ghost"), kept_at: None, evidence: text("") },
        at(T0),
    );
    assert_eq!(error.kind(), RejectionKind::NotFound);
    assert_eq!(error.to_string(), "promise ghost not found for this customer");
}

#[test]
fn renegotiation_moves_the_due_date_and_may_repeat() {
    let mut customer = Customer::new(&[promise("p1", 24)]);
    let renegotiate = |hours: i64| Command::RenegotiatePromise {
        promise_id: pid("p1"),
        new_due_at: ts(T0 + hours * HOUR),
        customer_consented: false,
    };
    let events = customer.run(&renegotiate(48), at(T0)).unwrap();
    assert!(
        matches!(events[0], Event::PromiseRenegotiated { previous_due_at, .. } if previous_due_at == ts(T0 + 24 * HOUR))
    );
    customer.run(&renegotiate(72), at(T0)).unwrap();
    assert_eq!(customer.state.promises[&pid("p1")].renegotiations, 2);
    assert!(customer.refuse(&renegotiate(72), at(T0)).to_string().contains("equals the current due date"));
    assert!(customer.refuse(&renegotiate(-5), at(T0)).to_string().starts_with("new_due_at"));
}

#[test]
fn kept_at_cannot_precede_the_promise_or_lie_in_the_future() {
    let mut customer = Customer::new(&[promise("p1", 24)]);
    let keep = |millis: i64| Command::KeepPromise {
        promise_id: pid("p1"),
        kept_at: Some(ts(millis)),
        evidence: text(""),
    };
    assert!(customer.refuse(&keep(T0 - HOUR), at(T0)).to_string().contains("before the promise was made"));
    assert!(customer.refuse(&keep(T0 + 10 * HOUR), at(T0)).to_string().contains("in the future"));
    let events = customer.run(&keep(T0 + HOUR), at(T0 + 2 * HOUR)).unwrap();
    assert!(matches!(&events[0], Event::PromiseKept { kept_at, .. } if *kept_at == ts(T0 + HOUR)));
}

#[test]
fn partial_keeping_needs_a_fraction_strictly_between_0_and_1() {
    let mut customer = Customer::new(&[promise("p1", 24)]);
    for fraction_permille in [0, 1000, 5000] {
        let error = customer.refuse(
            &Command::PartiallyKeepPromise { promise_id: pid("p1"), fraction_permille, evidence: text("") },
            at(T0),
        );
        assert!(
            error.to_string().starts_with(&format!("fraction_permille is {fraction_permille}")),
            "{error}"
        );
    }
}

#[test]
fn deadline_breaks_come_only_from_expiry_after_due_plus_grace() {
    let mut customer = Customer::new(&[promise("p1", 1)]);
    let report = Command::ReportBrokenPromise {
        promise_id: pid("p1"),
        detection: BreakDetection::Deadline,
        reason: text(""),
    };
    assert!(customer.refuse(&report, at(T0)).to_string().starts_with("detection"));
    let expire = Command::ExpirePromise { promise_id: pid("p1") };
    // Due at T0+1h with 10 minutes of grace: not yet at T0+1h+5min.
    let error = customer.refuse(&expire, at(T0 + HOUR + 300_000));
    assert!(error.to_string().contains("not yet passed"), "{error}");
    assert_eq!(error.kind(), crate::RejectionKind::TooEarly);
    let now = T0 + 2 * HOUR;
    let events = customer.run(&expire, at(now)).unwrap();
    assert_eq!(
        events,
        vec![Event::PromiseBroken {
            promise_id: pid("p1"),
            detection: BreakDetection::Deadline,
            due_at: ts(T0 + HOUR),
            detected_at: ts(now),
            reason: text(""),
        }]
    );
    // Expiring twice (a second watchdog) is refused: the promise is no longer open.
    assert_eq!(customer.refuse(&expire, at(now + HOUR)).kind(), RejectionKind::FailedPrecondition);
}

#[test]
fn renegotiated_promise_is_not_expired_at_the_old_deadline() {
    let mut customer = Customer::new(&[promise("p1", 1)]);
    customer
        .run(
            &Command::RenegotiatePromise {
                promise_id: pid("p1"),
                new_due_at: ts(T0 + 10 * HOUR),
                customer_consented: true,
            },
            at(T0),
        )
        .unwrap();
    customer.refuse(&Command::ExpirePromise { promise_id: pid("p1") }, at(T0 + 2 * HOUR));
}

#[test]
fn complaint_lifecycle_and_first_response() {
    let mut customer = Customer::new(&[complaint("k1")]);
    assert_eq!(customer.refuse(&complaint("k1"), at(T0)).kind(), RejectionKind::AlreadyExists);
    let respond = Command::RespondToComplaint { complaint_id: cid("k1") };
    assert_eq!(
        customer.run(&respond, at(T0)).unwrap(),
        vec![Event::ComplaintResponded { complaint_id: cid("k1"), first: true }]
    );
    assert_eq!(
        customer.run(&respond, at(T0)).unwrap(),
        vec![Event::ComplaintResponded { complaint_id: cid("k1"), first: false }]
    );
    let reopen = Command::ReopenComplaint { complaint_id: cid("k1"), reason: text("still late") };
    assert!(customer.refuse(&reopen, at(T0)).to_string().contains("is open: cannot reopen"));
    let resolve = Command::ResolveComplaint { complaint_id: cid("k1"), outcome: ResolutionOutcome::Resolved };
    customer.run(&resolve, at(T0)).unwrap();
    for refused in [
        respond.clone(),
        resolve.clone(),
        Command::EscalateComplaint { complaint_id: cid("k1"), to_team: None, reason: text("") },
    ] {
        assert!(
            customer.refuse(&refused, at(T0)).to_string().starts_with("complaint k1 is resolved: cannot")
        );
    }
    customer.run(&reopen, at(T0)).unwrap();
    // After a reopen the next response is a first response again.
    assert_eq!(
        customer.run(&respond, at(T0)).unwrap(),
        vec![Event::ComplaintResponded { complaint_id: cid("k1"), first: true }]
    );
    let unknown = customer.refuse(&Command::RespondToComplaint { complaint_id: cid("k9") }, at(T0));
    assert_eq!(unknown.kind(), RejectionKind::NotFound);
}

#[test]
fn sla_breach_rules() {
    let mut customer = Customer::new(&[complaint("k1")]);
    let breach =
        |target: SlaTarget, due: i64| Command::BreachSla { complaint_id: cid("k1"), target, due_at: ts(due) };
    let error = customer.refuse(&breach(SlaTarget::FirstReply, T0 + HOUR), at(T0));
    assert!(error.to_string().contains("not yet passed"), "{error}");
    assert_eq!(error.kind(), crate::RejectionKind::TooEarly);
    let events = customer.run(&breach(SlaTarget::FirstReply, T0 + HOUR), at(T0 + 2 * HOUR)).unwrap();
    assert!(
        matches!(&events[0], Event::SlaBreached { detected_at, due_at, .. } if *detected_at == ts(T0 + 2 * HOUR) && *due_at == ts(T0 + HOUR))
    );
    let again = customer.refuse(&breach(SlaTarget::FirstReply, T0 + HOUR), at(T0 + 3 * HOUR));
    assert!(again.to_string().contains("already breached"), "{again}");
    customer.run(&Command::RespondToComplaint { complaint_id: cid("k1") }, at(T0)).unwrap();
    let mut answered = Customer::new(&[complaint("k2")]);
    answered.run(&Command::RespondToComplaint { complaint_id: cid("k2") }, at(T0)).unwrap();
    let error = answered.refuse(
        &Command::BreachSla { complaint_id: cid("k2"), target: SlaTarget::FirstReply, due_at: ts(T0) },
        at(T0 + HOUR),
    );
    assert!(error.to_string().contains("already had its first reply"), "{error}");
    answered
        .run(
            &Command::BreachSla { complaint_id: cid("k2"), target: SlaTarget::Resolution, due_at: ts(T0) },
            at(T0 + HOUR),
        )
        .unwrap();
}

#[test]
fn apology_and_compensation_need_known_references_and_valid_money() {
    let mut customer = Customer::new(&[promise("p1", 1)]);
    let error =
        customer.refuse(&Command::IssueApology { related_ref: RelatedRef::Complaint(cid("k1")) }, at(T0));
    assert_eq!(error.to_string(), "related_ref names complaint:k1, which does not exist for this customer");
    customer.run(&Command::IssueApology { related_ref: RelatedRef::Promise(pid("p1")) }, at(T0)).unwrap();
    let grant = |amount: Money| Command::GrantCompensation {
        related_ref: RelatedRef::Promise(pid("p1")),
        kind: CompensationKind::Credit,
        amount,
    };
    assert!(customer.refuse(&grant(eur(0)), at(T0)).to_string().starts_with("amount_minor is 0"));
    assert!(customer.refuse(&grant(eur(-10)), at(T0)).to_string().starts_with("amount_minor is -10"));
    customer.run(&grant(eur(500)), at(T0)).unwrap();
}

#[test]
fn survey_scores_must_fit_their_scale_and_answer_once() {
    let mut customer = Customer::new(&[]);
    let answer = |id: &str, kind: SurveyKind, score: u8| Command::AnswerSurvey {
        survey_id: SurveyId::new(id).unwrap(),
        kind,
        score,
        comment: text(""),
        related_ref: None,
    };
    for (kind, bad) in [
        (SurveyKind::Nps, 11),
        (SurveyKind::Csat, 0),
        (SurveyKind::Csat, 6),
        (SurveyKind::Ces, 0),
        (SurveyKind::Ces, 8),
    ] {
        let error = customer.refuse(&answer("s1", kind, bad), at(T0));
        assert_eq!(error.kind(), RejectionKind::InvalidArgument);
        assert!(error.to_string().starts_with(&format!("score is {bad}, it must be between")), "{error}");
    }
    customer.run(&answer("s1", SurveyKind::Nps, 0), at(T0)).unwrap();
    assert_eq!(
        customer.refuse(&answer("s1", SurveyKind::Nps, 9), at(T0)).kind(),
        RejectionKind::AlreadyExists
    );
}

#[test]
fn refunds_need_the_order_its_currency_and_remaining_balance() {
    let order = OrderId::new("o1").unwrap();
    let mut customer =
        Customer::new(&[Command::RecordPurchase { order_id: order.clone(), amount: eur(10_000) }]);
    assert_eq!(
        customer.refuse(&Command::RecordPurchase { order_id: order.clone(), amount: eur(1) }, at(T0)).kind(),
        RejectionKind::AlreadyExists
    );
    let refund = |order_id: &OrderId, amount: Money| Command::IssueRefund {
        order_id: order_id.clone(),
        amount,
        reason: text(""),
    };
    assert_eq!(
        customer.refuse(&refund(&OrderId::new("o9").unwrap(), eur(1)), at(T0)).kind(),
        RejectionKind::NotFound
    );
    let usd = Money { amount_minor: 100, currency: Currency::new("currency", "USD").unwrap() };
    assert!(customer.refuse(&refund(&order, usd), at(T0)).to_string().starts_with("amount.currency is USD"));
    customer.run(&refund(&order, eur(6_000)), at(T0)).unwrap();
    let error = customer.refuse(&refund(&order, eur(4_001)), at(T0));
    assert!(error.to_string().contains("exceeds what is left to refund"), "{error}");
    customer.run(&refund(&order, eur(4_000)), at(T0)).unwrap();
}

#[test]
fn apply_counts_every_event_as_a_version() {
    let customer = Customer::new(&[promise("p1", 1), complaint("k1")]);
    assert_eq!(customer.state.version, 3);
}
