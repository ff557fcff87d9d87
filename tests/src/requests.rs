//! Requests the black-box tests send, built the way a calling service would.

use std::time::{SystemTime, UNIX_EPOCH};

use covenant_proto::v1;

/// A command header by agent `agent-7` of team `support`, by phone, recorded now.
pub fn header(customer: &str, command: &str, expected_version: Option<u64>) -> Option<v1::CommandHeader> {
    header_at(customer, command, expected_version, None)
}

/// The same, for something that happened at `occurred_at`.
pub fn header_at(
    customer: &str,
    command: &str,
    expected_version: Option<u64>,
    occurred_at: Option<prost_types::Timestamp>,
) -> Option<v1::CommandHeader> {
    Some(v1::CommandHeader {
        customer_id: customer.into(),
        command_id: command.into(),
        expected_version,
        occurred_at,
        actor: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "agent-7".into() }),
        team: "support".into(),
        channel: v1::Channel::Phone as i32,
        correlation_id: String::new(),
        causation_id: String::new(),
    })
}

/// A command header by agent `agent-7` of `team`, by phone, for something that happened at
/// `occurred_at` (`None`: when it is recorded).
pub fn team_header(
    customer: &str,
    command: &str,
    team: &str,
    occurred_at: Option<prost_types::Timestamp>,
) -> Option<v1::CommandHeader> {
    let mut header = header_at(customer, command, None, occurred_at);
    if let Some(header) = header.as_mut() {
        header.team = team.into();
    }
    header
}

/// An answer `score` to survey `survey` of `kind`, recorded now by agent `agent-7` of `team`.
pub fn answer_survey(
    customer: &str,
    command: &str,
    survey: &str,
    kind: v1::SurveyKind,
    score: u32,
    team: &str,
) -> v1::AnswerSurveyRequest {
    v1::AnswerSurveyRequest {
        header: team_header(customer, command, team, None),
        survey_id: survey.into(),
        kind: kind as i32,
        score,
        comment: String::new(),
        related_ref: None,
    }
}

pub fn register(customer: &str, command: &str) -> v1::RegisterCustomerRequest {
    v1::RegisterCustomerRequest {
        header: header(customer, command, None),
        name: "Ada Lovelace".into(),
        contact_points: vec![],
        locale: "en-GB".into(),
        timezone: "Europe/London".into(),
        segment: "smb".into(),
        source: "web".into(),
        tier: v1::Tier::Standard as i32,
    }
}

/// Now plus `seconds` (negative: in the past).
pub fn in_seconds(seconds: i64) -> prost_types::Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let millis = now.as_millis() as i64 + seconds * 1000;
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn in_an_hour() -> prost_types::Timestamp {
    in_seconds(3600)
}

/// A callback promise due at `due_at` with `grace_seconds` of grace.
pub fn promise_due(
    customer: &str,
    command: &str,
    promise: &str,
    due_at: prost_types::Timestamp,
    grace_seconds: i64,
) -> v1::MakePromiseRequest {
    v1::MakePromiseRequest {
        header: header(customer, command, None),
        promise_id: promise.into(),
        kind: v1::PromiseKind::Callback as i32,
        description: "call back about the invoice".into(),
        made_by: "agent-7".into(),
        due_at: Some(due_at),
        grace: Some(prost_types::Duration { seconds: grace_seconds, nanos: 0 }),
        related_ref: None,
    }
}

/// A callback promise due in an hour (10 minutes' grace).
pub fn make_promise(customer: &str, command: &str, promise: &str) -> v1::MakePromiseRequest {
    promise_due(customer, command, promise, in_an_hour(), 600)
}

pub fn keep_promise(customer: &str, command: &str, promise: &str) -> v1::KeepPromiseRequest {
    v1::KeepPromiseRequest {
        header: header(customer, command, None),
        promise_id: promise.into(),
        kept_at: None,
        evidence: "called back".into(),
    }
}

pub fn interaction(customer: &str, command: &str) -> v1::BatchCommand {
    v1::BatchCommand {
        command: Some(v1::batch_command::Command::RecordInteraction(v1::RecordInteractionRequest {
            header: header(customer, command, None),
            interaction_id: command.into(),
            channel: v1::Channel::Phone as i32,
            direction: v1::Direction::Inbound as i32,
            kind: v1::InteractionKind::Inquiry as i32,
            agent_id: "agent-7".into(),
            wait_secs: 30,
            handle_secs: 240,
            sentiment: v1::Sentiment::Neutral as i32,
            summary: "asked about the delivery date".into(),
        })),
    }
}

/// `request` as an `AppendBatch` item.
pub fn batch(command: v1::batch_command::Command) -> v1::BatchCommand {
    v1::BatchCommand { command: Some(command) }
}
