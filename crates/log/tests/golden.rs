//! Golden bytes: the stored encoding of a record of every v1 event type, frozen in
//! `tests/golden/v1/<event_type>.hex`. A change that alters any of them fails here, so old logs
//! cannot silently become unreadable. After an *intended* format change (new format number with
//! an upcast for the old one), add new golden files; regenerate with `COVENANT_BLESS=1` only for
//! files that do not exist yet.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

use covenant_domain::events::*;
use covenant_domain::ids::*;
use covenant_domain::values::{Currency, Money, Span, Text, Timestamp};
use covenant_domain::{CommandId, CustomerId, EventId, EventMetadata, Position, RecordedEvent};
use covenant_log::codec::{self, GENESIS_HASH};

fn text(value: &str) -> Text {
    Text::new("text", value, 4096).unwrap()
}
fn ts(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis_clamped(millis)
}
fn label(value: &str) -> Label {
    Label::new(value).unwrap()
}
fn eur(amount_minor: i64) -> Money {
    Money { amount_minor, currency: Currency::new("currency", "EUR").unwrap() }
}

fn every_event() -> Vec<Event> {
    let promise = PromiseId::new("p-1").unwrap();
    let complaint = ComplaintId::new("k-1").unwrap();
    let order = OrderId::new("o-1").unwrap();
    vec![
        Event::CustomerRegistered {
            name: text("Ada Lovelace"),
            contact_points: vec![ContactPoint { kind: ContactKind::Email, value: text("ada@example.com") }],
            locale: label("en-GB"),
            timezone: text("Europe/London"),
            segment: label("smb"),
            source: label("web"),
            tier: Tier::Standard,
        },
        Event::CustomerProfileUpdated {
            changes: ProfileChanges {
                name: Some(text("Ada King")),
                segment: Some(label("enterprise")),
                ..Default::default()
            },
        },
        Event::ConsentChanged { purpose: label("marketing"), granted: true },
        Event::CustomerTierChanged { from: Tier::Standard, to: Tier::Vip },
        Event::CustomerChurned { reason: ChurnReason::Service },
        Event::CustomerReactivated {},
        Event::CustomerErased {},
        Event::InteractionRecorded {
            interaction_id: InteractionId::new("i-1").unwrap(),
            channel: Channel::Phone,
            direction: Direction::Inbound,
            kind: InteractionKind::Complaint,
            agent_id: Some(ActorId::new("agent-7").unwrap()),
            wait_secs: 95,
            handle_secs: 410,
            sentiment: Sentiment::Angry,
            summary: text("parcel late again"),
        },
        Event::SocialMentionCaptured {
            platform: label("mastodon"),
            sentiment: Sentiment::Negative,
            reach: 12_000,
        },
        Event::ComplaintOpened {
            complaint_id: complaint.clone(),
            category: ComplaintCategory::BrokenPromise,
            severity: Severity::Major,
            priority: Priority::High,
            channel: Channel::Email,
            description: text("promised callback never came"),
        },
        Event::ComplaintResponded { complaint_id: complaint.clone(), first: true },
        Event::ComplaintEscalated {
            complaint_id: complaint.clone(),
            to_team: Some(TeamId::new("tier-2").unwrap()),
            reason: text("needs a refund decision"),
        },
        Event::ComplaintResolved {
            complaint_id: complaint.clone(),
            outcome: ResolutionOutcome::PartiallyResolved,
        },
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
            detection: BreakDetection::Deadline,
            due_at: ts(1_700_086_400_000),
            detected_at: ts(1_700_087_400_000),
            reason: text(""),
        },
        Event::PromiseCancelled {
            promise_id: promise.clone(),
            by: CancelledBy::Company,
            customer_consented: false,
            reason: text("stock gone"),
        },
        Event::ApologyIssued { related_ref: RelatedRef::Promise(promise.clone()) },
        Event::CompensationGranted {
            related_ref: RelatedRef::Promise(promise.clone()),
            kind: CompensationKind::Credit,
            amount: eur(1_500),
        },
        Event::SurveyAnswered {
            survey_id: SurveyId::new("s-1").unwrap(),
            kind: SurveyKind::Nps,
            score: 3,
            comment: text("slow"),
            related_ref: Some(RelatedRef::Order(order.clone())),
        },
        Event::PurchaseRecorded { order_id: order.clone(), amount: eur(12_999) },
        Event::RefundIssued { order_id: order, amount: eur(2_000), reason: text("damaged") },
    ]
}

fn record(index: u64, event: Event) -> RecordedEvent {
    RecordedEvent {
        event_id: EventId(uuid::Uuid::from_u128(
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
            team: Some(TeamId::new("support").unwrap()),
            channel: Some(Channel::Phone),
            correlation_id: Some(label("corr-1")),
            causation_id: None,
        },
        event,
    }
}

fn view_matches(view: &codec::RecordView<'_>, record: &RecordedEvent) -> bool {
    let envelope = &view.envelope;
    let metadata = &record.metadata;
    envelope.event_id == record.event_id
        && envelope.customer_id == record.customer_id.as_str()
        && envelope.stream_version == record.stream_version
        && envelope.position == record.position
        && envelope.recorded_at == record.recorded_at
        && envelope.command_id == record.command_id.as_str()
        && envelope.metadata.occurred_at == metadata.occurred_at
        && envelope.metadata.actor.kind == metadata.actor.kind
        && envelope.metadata.actor.id == metadata.actor.id.as_str()
        && envelope.metadata.team == metadata.team.as_ref().map(|team| team.as_str())
        && envelope.metadata.channel == metadata.channel
        && envelope.metadata.correlation_id == metadata.correlation_id.as_ref().map(|id| id.as_str())
        && envelope.metadata.causation_id == metadata.causation_id.as_ref().map(|id| id.as_str())
        && view.event_type() == record.event_type()
        && view.decode().ok().as_ref() == Some(record)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn every_event_type_has_a_golden_record() {
    // v1 (personal data in clear, no longer written) must still decode; v2 is what today's
    // encoder writes.
    check_goldens("v1", false);
    check_goldens("v2", true);
}

fn check_goldens(version: &str, written_today: bool) {
    let events = every_event();
    assert_eq!(events.len(), EVENT_TYPES.len(), "add the new event type to every_event()");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(version);
    let bless = written_today && std::env::var_os("COVENANT_BLESS").is_some();
    let mut failures = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        let event_type = event.event_type();
        assert_eq!(event_type, EVENT_TYPES[index]);
        let expected_record = record(index as u64, event);
        let (bytes, _) = codec::encode_record(&GENESIS_HASH, &expected_record).unwrap();
        let path = dir.join(format!("{event_type}.hex"));
        let golden = match std::fs::read_to_string(&path) {
            Ok(golden) => golden,
            Err(_) if bless => {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, hex(&bytes) + "\n").unwrap();
                continue;
            }
            Err(_) => panic!("{} is missing: run with COVENANT_BLESS=1 once to create it", path.display()),
        };
        let golden = unhex(&golden);
        // Old bytes must still decode to the same value...
        let decoded = codec::decode_record(expected_record.position, &golden)
            .unwrap_or_else(|error| panic!("{event_type}: golden bytes no longer decode: {error}"));
        if decoded != expected_record {
            failures.push(format!("{event_type}: golden bytes decode to a different value"));
        }
        // The borrowed envelope view reads the same bytes to the same envelope.
        let view = codec::RecordView::parse(expected_record.position, &golden)
            .unwrap_or_else(|error| panic!("{event_type}: the envelope view does not parse: {error}"));
        if !view_matches(&view, &expected_record) {
            failures.push(format!("{event_type}: the envelope view disagrees with the record: {view:?}"));
        }
        // Its payload, decoded after the envelope, gives the whole event.
        match view.view().map(|view| view.to_owned()) {
            Ok(Ok(owned)) if owned == expected_record => {}
            other => failures.push(format!(
                "{event_type}: the envelope view's payload disagrees with the record: {other:?}"
            )),
        }
        // The borrowed full view reads the same bytes to the same event.
        match codec::decode_view(expected_record.position, &golden).map(|view| view.to_owned()) {
            Ok(Ok(owned)) if owned == expected_record => {}
            other => {
                failures.push(format!("{event_type}: the full view disagrees with the record: {other:?}"))
            }
        }
        // Nothing sealed follows an event written without personal data to seal.
        match codec::decode_sealed_record(expected_record.position, &golden) {
            Ok((decoded, sealed)) if decoded == expected_record && sealed.is_empty() => {}
            other => failures.push(format!("{event_type}: the sealed decoding disagrees: {other:?}")),
        }
        // ...and today's encoder must still write them.
        if written_today && golden != bytes {
            failures.push(format!("{event_type}: the encoding changed"));
        }
    }
    assert!(failures.is_empty(), "{version}: {failures:#?}");
}
