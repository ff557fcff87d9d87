//! The 27 command requests of `Ledger` (and `BatchCommand`, their union) ↔ [`CommandRequest`].
//!
//! Field paths in errors are relative to the request message (`header.customer_id`, `tier`,
//! `amount.currency`), also for a `BatchCommand` item: the batch answers each item on its own.

use covenant_domain::Command;
use covenant_domain::Timestamp;
use covenant_domain::events::{Actor, Channel, EventMetadata};
use covenant_domain::ids::{
    ActorId, CommandId, ComplaintId, CustomerId, InteractionId, Label, OrderId, PromiseId, SurveyId, TeamId,
};

use super::enums::*;
use super::values::{
    amount_from_wire, contact_points_from_wire, contact_points_to_wire, long_text, money_to_wire,
    optional_related, optional_timestamp, profile_changes_from_wire, profile_changes_to_wire,
    related_to_wire, required_related, required_timestamp, short_text, span_from_wire, span_to_wire,
    timestamp_to_wire,
};
use super::{ConvertError, optional, or_empty, required};
use crate::v1;
use crate::v1::batch_command::Command as Wire;

/// A command as it arrives, decoded and validated field by field (not yet decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    pub customer_id: CustomerId,
    pub command_id: CommandId,
    /// When set, the customer's stream must be at exactly this version.
    pub expected_version: Option<u64>,
    /// Business time; `None`: the ledger uses the time of recording.
    pub occurred_at: Option<Timestamp>,
    pub actor: Actor,
    pub team: Option<TeamId>,
    pub channel: Option<Channel>,
    pub correlation_id: Option<Label>,
    pub causation_id: Option<Label>,
    pub command: Command,
}

impl CommandRequest {
    /// The metadata recorded on the command's events; `now` (the recording clock) stands in for
    /// a missing `occurred_at`.
    pub fn metadata(&self, now: Timestamp) -> EventMetadata {
        EventMetadata {
            occurred_at: self.occurred_at.unwrap_or(now),
            actor: self.actor.clone(),
            team: self.team.clone(),
            channel: self.channel,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
        }
    }
}

/// The wire header of a request.
pub fn header(request: &CommandRequest) -> v1::CommandHeader {
    v1::CommandHeader {
        customer_id: request.customer_id.to_string(),
        command_id: request.command_id.to_string(),
        expected_version: request.expected_version,
        occurred_at: request.occurred_at.map(timestamp_to_wire),
        actor: Some(v1::Actor {
            kind: actor_kind_to_wire(request.actor.kind),
            id: request.actor.id.to_string(),
        }),
        team: or_empty(request.team.as_ref()),
        channel: optional_channel_to_wire(request.channel),
        correlation_id: or_empty(request.correlation_id.as_ref()),
        causation_id: or_empty(request.causation_id.as_ref()),
    }
}

/// Decodes the header, then the command: errors come in the order the fields are on the wire.
fn with_header(
    header: Option<v1::CommandHeader>,
    command: impl FnOnce() -> Result<Command, ConvertError>,
) -> Result<CommandRequest, ConvertError> {
    let header = required("header", header)?;
    let customer_id = CustomerId::parse_field("header.customer_id", &header.customer_id)?;
    let command_id = CommandId::parse_field("header.command_id", &header.command_id)?;
    let occurred_at = optional_timestamp("header.occurred_at", header.occurred_at.as_ref())?;
    let actor = required("header.actor", header.actor)?;
    let actor = Actor {
        kind: actor_kind_from_wire("header.actor.kind", actor.kind)?,
        id: ActorId::parse_field("header.actor.id", &actor.id)?,
    };
    Ok(CommandRequest {
        customer_id,
        command_id,
        expected_version: header.expected_version,
        occurred_at,
        actor,
        team: optional(&header.team, |team| TeamId::parse_field("header.team", team))?,
        channel: optional_channel("header.channel", header.channel)?,
        correlation_id: optional(&header.correlation_id, |id| {
            Label::parse_field("header.correlation_id", id)
        })?,
        causation_id: optional(&header.causation_id, |id| Label::parse_field("header.causation_id", id))?,
        command: command()?,
    })
}

/// `TryFrom<v1::XRequest> for CommandRequest` for every request, and `TryFrom<v1::BatchCommand>`
/// dispatching to them. Each arm is `Request => BatchVariant |r| command built from r`.
macro_rules! request_conversions {
    ($($request:ident => $variant:ident |$r:ident| $body:expr;)+) => {
        $(
            impl TryFrom<v1::$request> for CommandRequest {
                type Error = ConvertError;
                fn try_from(mut $r: v1::$request) -> Result<Self, ConvertError> {
                    with_header($r.header.take(), || $body)
                }
            }
        )+

        impl TryFrom<v1::BatchCommand> for CommandRequest {
            type Error = ConvertError;
            /// A batch item without a command is `Missing { field: "command" }`.
            fn try_from(batch: v1::BatchCommand) -> Result<Self, ConvertError> {
                match required("command", batch.command)? {
                    $(Wire::$variant(request) => CommandRequest::try_from(request),)+
                }
            }
        }
    };
}

request_conversions! {
    RegisterCustomerRequest => RegisterCustomer |r| Ok(Command::RegisterCustomer {
        name: short_text("name", &r.name)?,
        contact_points: contact_points_from_wire("contact_points", &r.contact_points)?,
        locale: Label::parse_field("locale", &r.locale)?,
        timezone: short_text("timezone", &r.timezone)?,
        segment: Label::parse_field("segment", &r.segment)?,
        source: Label::parse_field("source", &r.source)?,
        tier: tier_from_wire("tier", r.tier)?,
    });
    UpdateProfileRequest => UpdateProfile |r| Ok(Command::UpdateProfile {
        changes: profile_changes_from_wire(required("changes", r.changes.as_ref())?)?,
    });
    ChangeConsentRequest => ChangeConsent |r| Ok(Command::ChangeConsent {
        purpose: Label::parse_field("purpose", &r.purpose)?,
        granted: r.granted,
    });
    ChangeTierRequest => ChangeTier |r| Ok(Command::ChangeTier { tier: tier_from_wire("tier", r.tier)? });
    RecordChurnRequest => RecordChurn |r| Ok(Command::RecordChurn {
        reason: churn_reason_from_wire("reason", r.reason)?,
    });
    ReactivateCustomerRequest => ReactivateCustomer |r| {
        let _ = &r;
        Ok(Command::ReactivateCustomer)
    };
    EraseCustomerRequest => EraseCustomer |r| {
        let _ = &r;
        Ok(Command::EraseCustomer)
    };
    RecordInteractionRequest => RecordInteraction |r| Ok(Command::RecordInteraction {
        interaction_id: InteractionId::parse_field("interaction_id", &r.interaction_id)?,
        channel: channel_from_wire("channel", r.channel)?,
        direction: direction_from_wire("direction", r.direction)?,
        kind: interaction_kind_from_wire("kind", r.kind)?,
        agent_id: optional(&r.agent_id, |id| ActorId::parse_field("agent_id", id))?,
        wait_secs: r.wait_secs,
        handle_secs: r.handle_secs,
        sentiment: sentiment_from_wire("sentiment", r.sentiment)?,
        summary: long_text("summary", &r.summary)?,
    });
    CaptureSocialMentionRequest => CaptureSocialMention |r| Ok(Command::CaptureSocialMention {
        platform: Label::parse_field("platform", &r.platform)?,
        sentiment: sentiment_from_wire("sentiment", r.sentiment)?,
        reach: r.reach,
    });
    OpenComplaintRequest => OpenComplaint |r| Ok(Command::OpenComplaint {
        complaint_id: ComplaintId::parse_field("complaint_id", &r.complaint_id)?,
        category: complaint_category_from_wire("category", r.category)?,
        severity: severity_from_wire("severity", r.severity)?,
        priority: priority_from_wire("priority", r.priority)?,
        channel: channel_from_wire("channel", r.channel)?,
        description: long_text("description", &r.description)?,
    });
    RespondToComplaintRequest => RespondToComplaint |r| Ok(Command::RespondToComplaint {
        complaint_id: ComplaintId::parse_field("complaint_id", &r.complaint_id)?,
    });
    EscalateComplaintRequest => EscalateComplaint |r| Ok(Command::EscalateComplaint {
        complaint_id: ComplaintId::parse_field("complaint_id", &r.complaint_id)?,
        to_team: optional(&r.to_team, |team| TeamId::parse_field("to_team", team))?,
        reason: short_text("reason", &r.reason)?,
    });
    ResolveComplaintRequest => ResolveComplaint |r| Ok(Command::ResolveComplaint {
        complaint_id: ComplaintId::parse_field("complaint_id", &r.complaint_id)?,
        outcome: resolution_outcome_from_wire("outcome", r.outcome)?,
    });
    ReopenComplaintRequest => ReopenComplaint |r| Ok(Command::ReopenComplaint {
        complaint_id: ComplaintId::parse_field("complaint_id", &r.complaint_id)?,
        reason: short_text("reason", &r.reason)?,
    });
    BreachSlaRequest => BreachSla |r| Ok(Command::BreachSla {
        complaint_id: ComplaintId::parse_field("complaint_id", &r.complaint_id)?,
        target: sla_target_from_wire("target", r.target)?,
        due_at: required_timestamp("due_at", r.due_at.as_ref())?,
    });
    MakePromiseRequest => MakePromise |r| Ok(Command::MakePromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
        kind: promise_kind_from_wire("kind", r.kind)?,
        description: long_text("description", &r.description)?,
        made_by: ActorId::parse_field("made_by", &r.made_by)?,
        due_at: required_timestamp("due_at", r.due_at.as_ref())?,
        // An absent grace is no grace: the domain's `grace` is a plain Span (zero allowed), and
        // callers would otherwise have to send an empty Duration to say so.
        grace: r.grace.as_ref().map(|grace| span_from_wire("grace", grace)).transpose()?.unwrap_or_default(),
        related_ref: optional_related(r.related_ref.as_ref())?,
    });
    RenegotiatePromiseRequest => RenegotiatePromise |r| Ok(Command::RenegotiatePromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
        new_due_at: required_timestamp("new_due_at", r.new_due_at.as_ref())?,
        customer_consented: r.customer_consented,
    });
    KeepPromiseRequest => KeepPromise |r| Ok(Command::KeepPromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
        kept_at: optional_timestamp("kept_at", r.kept_at.as_ref())?,
        evidence: short_text("evidence", &r.evidence)?,
    });
    PartiallyKeepPromiseRequest => PartiallyKeepPromise |r| Ok(Command::PartiallyKeepPromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
        // The range 1..=999 is decide's rule; here only what a u16 cannot hold is refused.
        fraction_permille: u16::try_from(r.fraction_permille).map_err(|_| {
            ConvertError::invalid("fraction_permille", format!("is {}, it must be between 1 and 999", r.fraction_permille))
        })?,
        evidence: short_text("evidence", &r.evidence)?,
    });
    ReportBrokenPromiseRequest => ReportBrokenPromise |r| Ok(Command::ReportBrokenPromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
        detection: break_detection_from_wire("detection", r.detection)?,
        reason: short_text("reason", &r.reason)?,
    });
    ExpirePromiseRequest => ExpirePromise |r| Ok(Command::ExpirePromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
    });
    CancelPromiseRequest => CancelPromise |r| Ok(Command::CancelPromise {
        promise_id: PromiseId::parse_field("promise_id", &r.promise_id)?,
        by: cancelled_by_from_wire("by", r.by)?,
        customer_consented: r.customer_consented,
        reason: short_text("reason", &r.reason)?,
    });
    IssueApologyRequest => IssueApology |r| Ok(Command::IssueApology {
        related_ref: required_related(r.related_ref.as_ref())?,
    });
    GrantCompensationRequest => GrantCompensation |r| Ok(Command::GrantCompensation {
        related_ref: required_related(r.related_ref.as_ref())?,
        kind: compensation_kind_from_wire("kind", r.kind)?,
        amount: amount_from_wire(r.amount.as_ref())?,
    });
    AnswerSurveyRequest => AnswerSurvey |r| Ok(Command::AnswerSurvey {
        survey_id: SurveyId::parse_field("survey_id", &r.survey_id)?,
        kind: survey_kind_from_wire("kind", r.kind)?,
        // The scale of each kind is decide's rule; here only what a u8 cannot hold is refused.
        score: u8::try_from(r.score).map_err(|_| {
            ConvertError::invalid("score", format!("is {}, outside every survey scale (at most 10)", r.score))
        })?,
        comment: long_text("comment", &r.comment)?,
        related_ref: optional_related(r.related_ref.as_ref())?,
    });
    RecordPurchaseRequest => RecordPurchase |r| Ok(Command::RecordPurchase {
        order_id: OrderId::parse_field("order_id", &r.order_id)?,
        amount: amount_from_wire(r.amount.as_ref())?,
    });
    IssueRefundRequest => IssueRefund |r| Ok(Command::IssueRefund {
        order_id: OrderId::parse_field("order_id", &r.order_id)?,
        amount: amount_from_wire(r.amount.as_ref())?,
        reason: short_text("reason", &r.reason)?,
    });
}

impl From<&CommandRequest> for v1::BatchCommand {
    fn from(request: &CommandRequest) -> Self {
        let header = Some(header(request));
        let command = match &request.command {
            Command::RegisterCustomer { name, contact_points, locale, timezone, segment, source, tier } => {
                Wire::RegisterCustomer(v1::RegisterCustomerRequest {
                    header,
                    name: name.as_str().to_owned(),
                    contact_points: contact_points_to_wire(contact_points),
                    locale: locale.to_string(),
                    timezone: timezone.as_str().to_owned(),
                    segment: segment.to_string(),
                    source: source.to_string(),
                    tier: tier_to_wire(*tier),
                })
            }
            Command::UpdateProfile { changes } => Wire::UpdateProfile(v1::UpdateProfileRequest {
                header,
                changes: Some(profile_changes_to_wire(changes)),
            }),
            Command::ChangeConsent { purpose, granted } => Wire::ChangeConsent(v1::ChangeConsentRequest {
                header,
                purpose: purpose.to_string(),
                granted: *granted,
            }),
            Command::ChangeTier { tier } => {
                Wire::ChangeTier(v1::ChangeTierRequest { header, tier: tier_to_wire(*tier) })
            }
            Command::RecordChurn { reason } => {
                Wire::RecordChurn(v1::RecordChurnRequest { header, reason: churn_reason_to_wire(*reason) })
            }
            Command::ReactivateCustomer => Wire::ReactivateCustomer(v1::ReactivateCustomerRequest { header }),
            Command::EraseCustomer => Wire::EraseCustomer(v1::EraseCustomerRequest { header }),
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
            } => Wire::RecordInteraction(v1::RecordInteractionRequest {
                header,
                interaction_id: interaction_id.to_string(),
                channel: channel_to_wire(*channel),
                direction: direction_to_wire(*direction),
                kind: interaction_kind_to_wire(*kind),
                agent_id: or_empty(agent_id.as_ref()),
                wait_secs: *wait_secs,
                handle_secs: *handle_secs,
                sentiment: sentiment_to_wire(*sentiment),
                summary: summary.as_str().to_owned(),
            }),
            Command::CaptureSocialMention { platform, sentiment, reach } => {
                Wire::CaptureSocialMention(v1::CaptureSocialMentionRequest {
                    header,
                    platform: platform.to_string(),
                    sentiment: sentiment_to_wire(*sentiment),
                    reach: *reach,
                })
            }
            Command::OpenComplaint { complaint_id, category, severity, priority, channel, description } => {
                Wire::OpenComplaint(v1::OpenComplaintRequest {
                    header,
                    complaint_id: complaint_id.to_string(),
                    category: complaint_category_to_wire(*category),
                    severity: severity_to_wire(*severity),
                    priority: priority_to_wire(*priority),
                    channel: channel_to_wire(*channel),
                    description: description.as_str().to_owned(),
                })
            }
            Command::RespondToComplaint { complaint_id } => {
                Wire::RespondToComplaint(v1::RespondToComplaintRequest {
                    header,
                    complaint_id: complaint_id.to_string(),
                })
            }
            Command::EscalateComplaint { complaint_id, to_team, reason } => {
                Wire::EscalateComplaint(v1::EscalateComplaintRequest {
                    header,
                    complaint_id: complaint_id.to_string(),
                    to_team: or_empty(to_team.as_ref()),
                    reason: reason.as_str().to_owned(),
                })
            }
            Command::ResolveComplaint { complaint_id, outcome } => {
                Wire::ResolveComplaint(v1::ResolveComplaintRequest {
                    header,
                    complaint_id: complaint_id.to_string(),
                    outcome: resolution_outcome_to_wire(*outcome),
                })
            }
            Command::ReopenComplaint { complaint_id, reason } => {
                Wire::ReopenComplaint(v1::ReopenComplaintRequest {
                    header,
                    complaint_id: complaint_id.to_string(),
                    reason: reason.as_str().to_owned(),
                })
            }
            Command::BreachSla { complaint_id, target, due_at } => Wire::BreachSla(v1::BreachSlaRequest {
                header,
                complaint_id: complaint_id.to_string(),
                target: sla_target_to_wire(*target),
                due_at: Some(timestamp_to_wire(*due_at)),
            }),
            Command::MakePromise { promise_id, kind, description, made_by, due_at, grace, related_ref } => {
                Wire::MakePromise(v1::MakePromiseRequest {
                    header,
                    promise_id: promise_id.to_string(),
                    kind: promise_kind_to_wire(*kind),
                    description: description.as_str().to_owned(),
                    made_by: made_by.to_string(),
                    due_at: Some(timestamp_to_wire(*due_at)),
                    grace: Some(span_to_wire(*grace)),
                    related_ref: related_ref.as_ref().map(related_to_wire),
                })
            }
            Command::RenegotiatePromise { promise_id, new_due_at, customer_consented } => {
                Wire::RenegotiatePromise(v1::RenegotiatePromiseRequest {
                    header,
                    promise_id: promise_id.to_string(),
                    new_due_at: Some(timestamp_to_wire(*new_due_at)),
                    customer_consented: *customer_consented,
                })
            }
            Command::KeepPromise { promise_id, kept_at, evidence } => {
                Wire::KeepPromise(v1::KeepPromiseRequest {
                    header,
                    promise_id: promise_id.to_string(),
                    kept_at: kept_at.map(timestamp_to_wire),
                    evidence: evidence.as_str().to_owned(),
                })
            }
            Command::PartiallyKeepPromise { promise_id, fraction_permille, evidence } => {
                Wire::PartiallyKeepPromise(v1::PartiallyKeepPromiseRequest {
                    header,
                    promise_id: promise_id.to_string(),
                    fraction_permille: u32::from(*fraction_permille),
                    evidence: evidence.as_str().to_owned(),
                })
            }
            Command::ReportBrokenPromise { promise_id, detection, reason } => {
                Wire::ReportBrokenPromise(v1::ReportBrokenPromiseRequest {
                    header,
                    promise_id: promise_id.to_string(),
                    detection: break_detection_to_wire(*detection),
                    reason: reason.as_str().to_owned(),
                })
            }
            Command::ExpirePromise { promise_id } => {
                Wire::ExpirePromise(v1::ExpirePromiseRequest { header, promise_id: promise_id.to_string() })
            }
            Command::CancelPromise { promise_id, by, customer_consented, reason } => {
                Wire::CancelPromise(v1::CancelPromiseRequest {
                    header,
                    promise_id: promise_id.to_string(),
                    by: cancelled_by_to_wire(*by),
                    customer_consented: *customer_consented,
                    reason: reason.as_str().to_owned(),
                })
            }
            Command::IssueApology { related_ref } => Wire::IssueApology(v1::IssueApologyRequest {
                header,
                related_ref: Some(related_to_wire(related_ref)),
            }),
            Command::GrantCompensation { related_ref, kind, amount } => {
                Wire::GrantCompensation(v1::GrantCompensationRequest {
                    header,
                    related_ref: Some(related_to_wire(related_ref)),
                    kind: compensation_kind_to_wire(*kind),
                    amount: Some(money_to_wire(amount)),
                })
            }
            Command::AnswerSurvey { survey_id, kind, score, comment, related_ref } => {
                Wire::AnswerSurvey(v1::AnswerSurveyRequest {
                    header,
                    survey_id: survey_id.to_string(),
                    kind: survey_kind_to_wire(*kind),
                    score: u32::from(*score),
                    comment: comment.as_str().to_owned(),
                    related_ref: related_ref.as_ref().map(related_to_wire),
                })
            }
            Command::RecordPurchase { order_id, amount } => Wire::RecordPurchase(v1::RecordPurchaseRequest {
                header,
                order_id: order_id.to_string(),
                amount: Some(money_to_wire(amount)),
            }),
            Command::IssueRefund { order_id, amount, reason } => Wire::IssueRefund(v1::IssueRefundRequest {
                header,
                order_id: order_id.to_string(),
                amount: Some(money_to_wire(amount)),
                reason: reason.as_str().to_owned(),
            }),
        };
        v1::BatchCommand { command: Some(command) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use covenant_domain::events::{ActorKind, ProfileChanges};
    use covenant_domain::values::{Currency, Money};
    use covenant_domain::{Span, Text};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::convert::fixtures::{every_command, request, ts};

    /// The request inside a batch item, for tests that break one field.
    fn register() -> v1::RegisterCustomerRequest {
        let request = request(covenant_domain::sample::register("Ada Lovelace").unwrap(), true);
        match v1::BatchCommand::from(&request).command {
            Some(Wire::RegisterCustomer(register)) => register,
            other => panic!("not a registration: {other:?}"),
        }
    }

    fn purchase(amount: Option<v1::Money>) -> v1::RecordPurchaseRequest {
        v1::RecordPurchaseRequest { header: register().header, order_id: "o-1".into(), amount }
    }

    fn error(result: Result<CommandRequest, ConvertError>) -> ConvertError {
        result.expect_err("the request should be refused")
    }

    #[test]
    fn every_command_round_trips_through_the_wire() {
        let commands = every_command();
        let names: BTreeSet<_> = commands.iter().map(Command::name).collect();
        assert_eq!(names.len(), 27, "every command kind is covered: {names:?}");
        for (index, command) in commands.into_iter().enumerate() {
            // Alternate between a bare header and one with every optional field set.
            let request = request(command, index.is_multiple_of(2));
            let wire = v1::BatchCommand::from(&request);
            // Through the encoded bytes too, as a NATS or gRPC peer would see it.
            let decoded = v1::BatchCommand::decode(wire.encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded, wire);
            let back = CommandRequest::try_from(decoded).unwrap();
            assert_eq!(back, request, "{}", request.command.name());
            assert_eq!(header(&back), header(&request));
        }
    }

    #[test]
    fn metadata_takes_now_only_when_occurred_at_is_absent() {
        let now = ts(1_800_000_000_000);
        let with = request(Command::EraseCustomer, true);
        let metadata = with.metadata(now);
        assert_eq!(metadata.occurred_at, with.occurred_at.unwrap());
        assert_eq!(
            (&metadata.actor, &metadata.team, metadata.channel),
            (&with.actor, &with.team, with.channel)
        );
        assert_eq!(
            (&metadata.correlation_id, &metadata.causation_id),
            (&with.correlation_id, &with.causation_id)
        );
        assert_eq!(request(Command::EraseCustomer, false).metadata(now).occurred_at, now);
    }

    #[test]
    fn empty_optional_header_fields_are_none() {
        let mut wire = register();
        let header = wire.header.as_mut().unwrap();
        header.team.clear();
        header.correlation_id.clear();
        header.causation_id.clear();
        header.channel = 0;
        header.occurred_at = None;
        header.expected_version = None;
        let request = CommandRequest::try_from(wire).unwrap();
        assert_eq!(request.team, None);
        assert_eq!((request.correlation_id, request.causation_id), (None, None));
        assert_eq!((request.channel, request.occurred_at, request.expected_version), (None, None, None));
        // Some(0) is a real expectation (a new customer), not "absent".
        let mut wire = register();
        wire.header.as_mut().unwrap().expected_version = Some(0);
        assert_eq!(CommandRequest::try_from(wire).unwrap().expected_version, Some(0));
    }

    #[test]
    fn header_errors_name_the_header_field() {
        let mut bad = register();
        bad.header.as_mut().unwrap().customer_id.clear();
        let failure = error(CommandRequest::try_from(bad));
        assert_eq!(failure.to_string(), "header.customer_id: must not be empty");
        assert_eq!(failure.field(), Some("header.customer_id"));

        let failure =
            error(CommandRequest::try_from(v1::RegisterCustomerRequest { header: None, ..register() }));
        assert!(matches!(&failure, ConvertError::Missing { field } if field == "header"), "{failure}");
        assert_eq!(failure.to_string(), "header: is required");

        type Breaker = fn(&mut v1::CommandHeader);
        let cases: [(Breaker, &str); 8] = [
            (|h| h.command_id = "a b".into(), "header.command_id"),
            (|h| h.actor = None, "header.actor"),
            (|h| h.actor.as_mut().unwrap().kind = 0, "header.actor.kind"),
            (|h| h.actor.as_mut().unwrap().id.clear(), "header.actor.id"),
            (|h| h.team = "tier 2".into(), "header.team"),
            (|h| h.channel = 42, "header.channel"),
            (|h| h.correlation_id = "x/y".into(), "header.correlation_id"),
            (
                |h| h.occurred_at = Some(prost_types::Timestamp { seconds: -1, nanos: 0 }),
                "header.occurred_at",
            ),
        ];
        for (breaker, field) in cases {
            let mut bad = register();
            breaker(bad.header.as_mut().unwrap());
            let failure = error(CommandRequest::try_from(bad));
            assert_eq!(failure.field(), Some(field), "{failure}");
            assert!(failure.to_string().starts_with(&format!("{field}: ")), "{failure}");
        }
        let mut bad = register();
        bad.header.as_mut().unwrap().actor = None;
        let failure = error(CommandRequest::try_from(bad));
        assert!(matches!(&failure, ConvertError::Missing { field } if field == "header.actor"), "{failure}");
        let mut bad = register();
        bad.header.as_mut().unwrap().channel = 42;
        let failure = error(CommandRequest::try_from(bad));
        assert_eq!(failure.to_string(), "header.channel: unknown enum value 42");
    }

    #[test]
    fn enum_errors_say_missing_or_unknown() {
        let failure = error(CommandRequest::try_from(v1::RegisterCustomerRequest { tier: 99, ..register() }));
        assert!(
            matches!(&failure, ConvertError::UnknownEnum { field, value: 99 } if field == "tier"),
            "{failure}"
        );
        assert_eq!(failure.field(), Some("tier"));
        let failure = error(CommandRequest::try_from(v1::RegisterCustomerRequest { tier: 0, ..register() }));
        assert!(matches!(&failure, ConvertError::Missing { field } if field == "tier"), "{failure}");
        assert_eq!(failure.to_string(), "tier: is required");

        let interaction = v1::RecordInteractionRequest {
            header: register().header,
            interaction_id: "i-1".into(),
            channel: 1,
            direction: 1,
            kind: 1,
            sentiment: 0,
            ..Default::default()
        };
        let failure = error(CommandRequest::try_from(interaction));
        assert!(matches!(&failure, ConvertError::Missing { field } if field == "sentiment"), "{failure}");
    }

    #[test]
    fn money_errors_name_amount_and_its_parts() {
        let eur = |amount_minor, currency: &str| Some(v1::Money { amount_minor, currency: currency.into() });
        let failure = error(CommandRequest::try_from(purchase(eur(100, "EURO"))));
        assert_eq!(failure.field(), Some("amount.currency"));
        assert!(failure.to_string().contains("currency"), "{failure}");
        let failure = error(CommandRequest::try_from(purchase(eur(-1, "EUR"))));
        assert_eq!(failure.field(), Some("amount.amount_minor"));
        let failure = error(CommandRequest::try_from(purchase(None)));
        assert!(matches!(&failure, ConvertError::Missing { field } if field == "amount"), "{failure}");
        assert!(CommandRequest::try_from(purchase(eur(100, "EUR"))).is_ok());
    }

    #[test]
    fn body_errors_name_the_request_field() {
        let mut bad = register();
        bad.name = "x".repeat(300);
        assert_eq!(error(CommandRequest::try_from(bad)).field(), Some("name"));
        let mut bad = register();
        bad.contact_points[0].kind = 7;
        assert_eq!(error(CommandRequest::try_from(bad)).field(), Some("contact_points[0].kind"));

        let missing_changes = v1::UpdateProfileRequest { header: register().header, changes: None };
        assert_eq!(error(CommandRequest::try_from(missing_changes)).field(), Some("changes"));
        let apology = v1::IssueApologyRequest { header: register().header, related_ref: None };
        assert_eq!(error(CommandRequest::try_from(apology)).field(), Some("related_ref"));
        let breach = v1::BreachSlaRequest {
            header: register().header,
            complaint_id: "k-1".into(),
            target: 1,
            due_at: None,
        };
        assert_eq!(error(CommandRequest::try_from(breach)).field(), Some("due_at"));
        let survey = v1::AnswerSurveyRequest {
            header: register().header,
            survey_id: "s-1".into(),
            kind: 1,
            score: 256,
            ..Default::default()
        };
        assert_eq!(error(CommandRequest::try_from(survey)).field(), Some("score"));
        let partial = v1::PartiallyKeepPromiseRequest {
            header: register().header,
            promise_id: "p-1".into(),
            fraction_permille: 70_000,
            evidence: String::new(),
        };
        assert_eq!(error(CommandRequest::try_from(partial)).field(), Some("fraction_permille"));
    }

    #[test]
    fn the_header_is_checked_before_the_body() {
        let bad = v1::RegisterCustomerRequest { tier: 99, ..register() };
        let mut bad = bad;
        bad.header.as_mut().unwrap().customer_id.clear();
        assert_eq!(error(CommandRequest::try_from(bad)).field(), Some("header.customer_id"));
    }

    #[test]
    fn a_batch_item_without_a_command_is_missing_command() {
        let failure = error(CommandRequest::try_from(v1::BatchCommand { command: None }));
        assert!(matches!(&failure, ConvertError::Missing { field } if field == "command"), "{failure}");
    }

    #[test]
    fn an_absent_grace_is_no_grace() {
        let request = request(covenant_domain::sample::promise("p-1", ts(1_700_100_000_000)).unwrap(), false);
        let Some(Wire::MakePromise(mut wire)) = v1::BatchCommand::from(&request).command else {
            panic!("not a promise");
        };
        wire.grace = None;
        let back = CommandRequest::try_from(wire).unwrap();
        assert!(matches!(back.command, Command::MakePromise { grace, .. } if grace == Span::ZERO));
    }

    // --- generated requests ---

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:@-]{1,40}"
    }

    fn text() -> impl Strategy<Value = Text> {
        "\\PC{0,40}"
            .prop_map(|value| Text::new("text", value, covenant_domain::values::LONG_TEXT_MAX).unwrap())
    }

    fn instant() -> impl Strategy<Value = Timestamp> {
        (0..=Timestamp::MAX.unix_millis()).prop_map(Timestamp::from_unix_millis_clamped)
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (text(), id(), text(), 0..4usize).prop_map(|(name, locale, timezone, tier)| {
                Command::RegisterCustomer {
                    name,
                    contact_points: Vec::new(),
                    locale: Label::new(&locale).unwrap(),
                    timezone,
                    segment: Label::new("smb").unwrap(),
                    source: Label::new(locale).unwrap(),
                    tier: [
                        covenant_domain::events::Tier::Basic,
                        covenant_domain::events::Tier::Standard,
                        covenant_domain::events::Tier::Premium,
                        covenant_domain::events::Tier::Vip,
                    ][tier],
                }
            }),
            (proptest::option::of(text()), proptest::option::of(id()), any::<bool>()).prop_map(
                |(name, segment, clear)| Command::UpdateProfile {
                    changes: ProfileChanges {
                        name,
                        segment: segment.map(|segment| Label::new(segment).unwrap()),
                        contact_points: clear.then(Vec::new),
                        ..Default::default()
                    },
                }
            ),
            (id(), proptest::option::of(id()), any::<u32>(), any::<u32>(), text()).prop_map(
                |(interaction, agent, wait_secs, handle_secs, summary)| Command::RecordInteraction {
                    interaction_id: InteractionId::new(interaction).unwrap(),
                    channel: Channel::Social,
                    direction: covenant_domain::events::Direction::Inbound,
                    kind: covenant_domain::events::InteractionKind::Feedback,
                    agent_id: agent.map(|agent| ActorId::new(agent).unwrap()),
                    wait_secs,
                    handle_secs,
                    sentiment: covenant_domain::events::Sentiment::Neutral,
                    summary,
                }
            ),
            (id(), text(), instant(), any::<i64>(), proptest::option::of(id())).prop_map(
                |(promise, description, due_at, grace, order)| Command::MakePromise {
                    promise_id: PromiseId::new(&promise).unwrap(),
                    kind: covenant_domain::events::PromiseKind::Delivery,
                    description,
                    made_by: ActorId::new(promise).unwrap(),
                    due_at,
                    grace: Span::from_millis(grace),
                    related_ref: order.map(|order| {
                        covenant_domain::events::RelatedRef::Order(OrderId::new(order).unwrap())
                    }),
                }
            ),
            (id(), proptest::option::of(instant()), text()).prop_map(|(promise, kept_at, evidence)| {
                Command::KeepPromise { promise_id: PromiseId::new(promise).unwrap(), kept_at, evidence }
            }),
            (
                id(),
                1..=covenant_domain::values::MAX_AMOUNT_MINOR,
                prop::sample::select(vec!["EUR", "JPY", "USD"])
            )
                .prop_map(|(order, amount_minor, currency)| Command::RecordPurchase {
                    order_id: OrderId::new(order).unwrap(),
                    amount: Money { amount_minor, currency: Currency::new("currency", currency).unwrap() },
                }),
            (id(), any::<u8>(), text()).prop_map(|(survey, score, comment)| Command::AnswerSurvey {
                survey_id: SurveyId::new(survey).unwrap(),
                kind: covenant_domain::events::SurveyKind::Nps,
                score,
                comment,
                related_ref: None,
            }),
        ]
    }

    prop_compose! {
        fn generated_request()(
            customer in id(),
            command_id in id(),
            expected_version in proptest::option::of(any::<u64>()),
            occurred_at in proptest::option::of(instant()),
            actor in id(),
            team in proptest::option::of(id()),
            correlation in proptest::option::of(id()),
            command in command(),
        ) -> CommandRequest {
            CommandRequest {
                customer_id: CustomerId::new(customer).unwrap(),
                command_id: CommandId::new(command_id).unwrap(),
                expected_version,
                occurred_at,
                actor: Actor { kind: ActorKind::System, id: ActorId::new(actor).unwrap() },
                team: team.map(|team| TeamId::new(team).unwrap()),
                channel: None,
                correlation_id: correlation.map(|id| Label::new(id).unwrap()),
                causation_id: None,
                command,
            }
        }
    }

    proptest! {
        #[test]
        fn generated_requests_round_trip(request in generated_request()) {
            let bytes = v1::BatchCommand::from(&request).encode_to_vec();
            let back = CommandRequest::try_from(v1::BatchCommand::decode(bytes.as_slice()).unwrap()).unwrap();
            prop_assert_eq!(back, request);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(batch) = v1::BatchCommand::decode(bytes.as_slice()) {
                let _ = CommandRequest::try_from(batch);
            }
        }
    }
}
