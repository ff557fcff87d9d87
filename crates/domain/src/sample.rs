//! Ready-made, valid commands and metadata for tests, benchmarks and demos.
//!
//! Every function here builds values through the same validating constructors as the API
//! does; they return `Result` so callers decide how to treat the (impossible) failure.

use crate::commands::Command;
use crate::error::DomainError;
use crate::events::{
    Actor, ActorKind, Channel, ComplaintCategory, ContactKind, ContactPoint, Direction, EventMetadata,
    InteractionKind, Priority, PromiseKind, Sentiment, Severity, Tier,
};
use crate::ids::{ActorId, ComplaintId, InteractionId, Label, PromiseId, TeamId};
use crate::values::{LONG_TEXT_MAX, SHORT_TEXT_MAX, Span, Text, Timestamp};

/// Metadata of a command recorded by agent `agent-1` of team `support`, by phone.
pub fn metadata(occurred_at: Timestamp) -> Result<EventMetadata, DomainError> {
    Ok(EventMetadata {
        occurred_at,
        actor: Actor { kind: ActorKind::Agent, id: ActorId::new("agent-1")? },
        team: Some(TeamId::new("support")?),
        channel: Some(Channel::Phone),
        correlation_id: None,
        causation_id: None,
    })
}

/// Registration of a standard-tier customer called `name`.
pub fn register(name: &str) -> Result<Command, DomainError> {
    Ok(Command::RegisterCustomer {
        name: Text::non_empty("name", name, SHORT_TEXT_MAX)?,
        contact_points: vec![ContactPoint {
            kind: ContactKind::Email,
            value: Text::new(
                "contact_points.value",
                format!("{}@example.com", name.replace(' ', ".")),
                SHORT_TEXT_MAX,
            )?,
        }],
        locale: Label::new("en-GB")?,
        timezone: Text::new("timezone", "Europe/London", SHORT_TEXT_MAX)?,
        segment: Label::new("smb")?,
        source: Label::new("web")?,
        tier: Tier::Standard,
    })
}

/// An inbound phone inquiry whose summary is `summary_len` bytes long.
pub fn interaction(interaction_id: &str, summary_len: usize) -> Result<Command, DomainError> {
    Ok(Command::RecordInteraction {
        interaction_id: InteractionId::new(interaction_id)?,
        channel: Channel::Phone,
        direction: Direction::Inbound,
        kind: InteractionKind::Inquiry,
        agent_id: Some(ActorId::new("agent-1")?),
        wait_secs: 42,
        handle_secs: 300,
        sentiment: Sentiment::Neutral,
        summary: Text::new("summary", "x".repeat(summary_len.min(LONG_TEXT_MAX)), LONG_TEXT_MAX)?,
    })
}

/// A callback promise due at `due_at` with ten minutes of grace.
pub fn promise(promise_id: &str, due_at: Timestamp) -> Result<Command, DomainError> {
    Ok(Command::MakePromise {
        promise_id: PromiseId::new(promise_id)?,
        kind: PromiseKind::Callback,
        description: Text::non_empty("description", "call back about the invoice", LONG_TEXT_MAX)?,
        made_by: ActorId::new("agent-1")?,
        due_at,
        grace: Span::from_secs(600),
        related_ref: None,
    })
}

/// Keeping promise `promise_id` at the command's business time.
pub fn keep(promise_id: &str) -> Result<Command, DomainError> {
    Ok(Command::KeepPromise {
        promise_id: PromiseId::new(promise_id)?,
        kept_at: None,
        evidence: Text::new("evidence", "called back", SHORT_TEXT_MAX)?,
    })
}

/// A delivery complaint of normal priority.
pub fn complaint(complaint_id: &str) -> Result<Command, DomainError> {
    Ok(Command::OpenComplaint {
        complaint_id: ComplaintId::new(complaint_id)?,
        category: ComplaintCategory::Delay,
        severity: Severity::Moderate,
        priority: Priority::Normal,
        channel: Channel::Email,
        description: Text::new("description", "the parcel is late", LONG_TEXT_MAX)?,
    })
}
