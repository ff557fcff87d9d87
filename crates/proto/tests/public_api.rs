#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The public API of `covenant_proto::convert`, as other crates see it: every signature the
//! services rely on is pinned here (a change fails to compile), and one command and one event
//! go through it end to end. The detailed tests live beside the code.

use covenant_domain::{EventMetadata, Position, RecordedEvent, Span, Timestamp, sample};
use covenant_proto::convert::{
    self, CommandRequest, ConvertError, Pii, envelope, header, position_to_wire, span_from_wire,
    span_to_wire, timestamp_from_wire, timestamp_to_wire,
};
use covenant_proto::v1;

/// Compiles only if `CommandRequest: TryFrom<R, Error = ConvertError>`.
fn converts<R>()
where
    CommandRequest: TryFrom<R, Error = ConvertError>,
{
}

#[test]
fn signatures_are_as_promised() {
    let _: fn(&CommandRequest) -> v1::CommandHeader = header;
    let _: fn(&CommandRequest, Timestamp) -> EventMetadata = CommandRequest::metadata;
    let _: fn(&RecordedEvent, Pii) -> v1::EventEnvelope = envelope;
    let _: fn(Position) -> v1::Position = position_to_wire;
    let _: fn(Timestamp) -> prost_types::Timestamp = timestamp_to_wire;
    let _: for<'a, 'b> fn(&'a str, &'b prost_types::Timestamp) -> Result<Timestamp, ConvertError> =
        timestamp_from_wire;
    let _: fn(Span) -> prost_types::Duration = span_to_wire;
    let _: for<'a, 'b> fn(&'a str, &'b prost_types::Duration) -> Result<Span, ConvertError> = span_from_wire;
    let _: fn(&ConvertError) -> Option<&str> = ConvertError::field;
    let _ = |position: v1::Position| -> Result<Position, ConvertError> { Position::try_from(position) };
    let _ =
        |wire: v1::EventEnvelope| -> Result<RecordedEvent, ConvertError> { RecordedEvent::try_from(wire) };
    let _ = |request: &CommandRequest| -> v1::BatchCommand { v1::BatchCommand::from(request) };
    let _ = |error: covenant_domain::DomainError| -> ConvertError { error.into() };
    let _ = [Pii::Include, Pii::Redact];
    let _ = |error: ConvertError| match error {
        ConvertError::Missing { field } => field,
        ConvertError::UnknownEnum { field, value } => format!("{field}{value}"),
        ConvertError::Invalid { field, reason } => field + &reason,
        ConvertError::Domain(error) => error.to_string(),
    };

    converts::<v1::BatchCommand>();
    converts::<v1::RegisterCustomerRequest>();
    converts::<v1::UpdateProfileRequest>();
    converts::<v1::ChangeConsentRequest>();
    converts::<v1::ChangeTierRequest>();
    converts::<v1::RecordChurnRequest>();
    converts::<v1::ReactivateCustomerRequest>();
    converts::<v1::EraseCustomerRequest>();
    converts::<v1::RecordInteractionRequest>();
    converts::<v1::CaptureSocialMentionRequest>();
    converts::<v1::OpenComplaintRequest>();
    converts::<v1::RespondToComplaintRequest>();
    converts::<v1::EscalateComplaintRequest>();
    converts::<v1::ResolveComplaintRequest>();
    converts::<v1::ReopenComplaintRequest>();
    converts::<v1::BreachSlaRequest>();
    converts::<v1::MakePromiseRequest>();
    converts::<v1::RenegotiatePromiseRequest>();
    converts::<v1::KeepPromiseRequest>();
    converts::<v1::PartiallyKeepPromiseRequest>();
    converts::<v1::ReportBrokenPromiseRequest>();
    converts::<v1::ExpirePromiseRequest>();
    converts::<v1::CancelPromiseRequest>();
    converts::<v1::IssueApologyRequest>();
    converts::<v1::GrantCompensationRequest>();
    converts::<v1::AnswerSurveyRequest>();
    converts::<v1::RecordPurchaseRequest>();
    converts::<v1::IssueRefundRequest>();
}

#[test]
fn a_command_and_its_event_cross_the_wire() {
    let now = Timestamp::from_unix_millis("now", 1_700_000_000_000).unwrap();
    let request = v1::RegisterCustomerRequest {
        header: Some(v1::CommandHeader {
            customer_id: "cust-1".into(),
            command_id: "cmd-1".into(),
            actor: Some(v1::Actor { kind: v1::ActorKind::Agent.into(), id: "agent-1".into() }),
            channel: v1::Channel::Phone.into(),
            ..Default::default()
        }),
        name: "Ada Lovelace".into(),
        contact_points: vec![v1::ContactPoint {
            kind: v1::ContactKind::Email.into(),
            value: "Ada.Lovelace@example.com".into(),
        }],
        locale: "en-GB".into(),
        timezone: "Europe/London".into(),
        segment: "smb".into(),
        source: "web".into(),
        tier: v1::Tier::Standard.into(),
    };
    let request = CommandRequest::try_from(request).unwrap();
    assert_eq!(request.command, sample::register("Ada Lovelace").unwrap());
    assert_eq!(request.occurred_at, None);
    let metadata = request.metadata(now);
    assert_eq!(metadata.occurred_at, now);

    let [event]: [covenant_domain::Event; 1] = covenant_domain::decide(
        &covenant_domain::CustomerState::default(),
        request.customer_id.as_str(),
        &request.command,
        &covenant_domain::DecisionContext { now, occurred_at: metadata.occurred_at },
    )
    .unwrap()
    .try_into()
    .unwrap();
    let recorded = RecordedEvent {
        event_id: covenant_domain::EventId::new_v7(),
        customer_id: request.customer_id.clone(),
        stream_version: 1,
        position: Position { partition: 0, offset: 0 },
        recorded_at: now,
        command_id: request.command_id.clone(),
        metadata,
        event,
    };
    assert_eq!(RecordedEvent::try_from(envelope(&recorded, Pii::Include)).unwrap(), recorded);
    let public = envelope(&recorded, Pii::Redact);
    let Some(v1::event_envelope::Payload::CustomerRegistered(registered)) = &public.payload else {
        panic!("not a registration: {public:?}");
    };
    assert_eq!((registered.name.as_str(), registered.contact_points.len()), ("", 0));
    assert_eq!(
        convert::enums::tier_from_wire("tier", registered.tier).unwrap(),
        covenant_domain::events::Tier::Standard
    );
}
