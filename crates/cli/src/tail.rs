//! `covenant tail`: events as they are recorded, from a running ledger (`EventLog.Subscribe`
//! from the end of every partition, or from the start), one human-readable line each or one JSON
//! object per line (`event_json`), without personal data, until Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;
use covenant_domain::RecordedEvent;
use covenant_domain::events::Event;
use covenant_proto::v1::{self, event_log_client::EventLogClient};

use crate::audit::instant;
use crate::event_json::event_json;

/// Options of `covenant tail`.
#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    /// The ledger's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    ledger: String,
    /// Only these event types (snake_case; repeat the option for several).
    #[arg(long = "type")]
    types: Vec<String>,
    /// Start from the first event of the log instead of the events recorded from now on.
    #[arg(long)]
    from_start: bool,
    /// One JSON object per line instead of a readable line.
    #[arg(long)]
    json: bool,
}

/// What an event is about, in a few words.
fn detail(event: &Event) -> String {
    match event {
        Event::PromiseMade { promise_id, made_by, due_at, .. } => {
            format!("{promise_id} by {made_by}, due {}", instant(*due_at))
        }
        Event::PromiseRenegotiated { promise_id, new_due_at, customer_consented, .. } => format!(
            "{promise_id} now due {}{}",
            instant(*new_due_at),
            if *customer_consented { "" } else { " (customer did not consent)" }
        ),
        Event::PromiseBroken { promise_id, detection, .. } => format!("{promise_id} ({detection:?})"),
        Event::SurveyAnswered { kind, score, .. } => format!("{kind:?} {score}"),
        Event::PurchaseRecorded { order_id, amount } | Event::RefundIssued { order_id, amount, .. } => {
            format!("{order_id} {} {}", amount.amount_minor, amount.currency)
        }
        Event::ApologyIssued { related_ref } => related_ref.describe(),
        Event::CompensationGranted { related_ref, amount, .. } => {
            format!("{} {} {}", related_ref.describe(), amount.amount_minor, amount.currency)
        }
        Event::CustomerChurned { reason } => format!("{reason:?}"),
        Event::CustomerTierChanged { from, to } => format!("{from:?} → {to:?}"),
        other => other
            .promise_id()
            .map(ToString::to_string)
            .or_else(|| other.complaint_id().map(ToString::to_string))
            .unwrap_or_default(),
    }
}

/// One event as a readable line.
fn line(event: &RecordedEvent) -> String {
    format!(
        "{}:{:<8} {}  {:<20} v{:<4} {:<24} {}",
        event.position.partition,
        event.position.offset,
        instant(event.metadata.occurred_at),
        event.customer_id.as_str(),
        event.stream_version,
        event.event_type(),
        detail(&event.event)
    )
}

/// Runs `covenant tail`.
pub(crate) async fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    crate::event_json::check_event_types("--type", &args.types)?;
    let mut client = EventLogClient::new(crate::client::channel(&args.ledger, "the ledger").await?);
    let mut events = client
        .subscribe(v1::SubscribeRequest {
            from: vec![],
            event_types: args.types.clone(),
            from_end: !args.from_start,
        })
        .await
        .map_err(|status| anyhow::anyhow!("the ledger refused: {}", status.message()))?
        .into_inner();
    loop {
        let next = tokio::select! {
            next = events.message() => next,
            () = covenant_runtime::shutdown_signal() => return Ok(ExitCode::SUCCESS),
        };
        let envelope = match next {
            Ok(Some(envelope)) => envelope,
            Ok(None) => return Ok(ExitCode::SUCCESS),
            Err(status) => anyhow::bail!("the stream ended: {}", status.message()),
        };
        let event =
            RecordedEvent::try_from(envelope).context("the ledger sent an event this version cannot read")?;
        if args.json {
            println!("{}", event_json(&event));
        } else {
            println!("{}", line(&event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_domain::ids::{ActorId, CommandId, CustomerId, EventId, PromiseId};
    use covenant_domain::{Position, Span, Text, Timestamp, sample};

    #[test]
    fn a_line_shows_position_time_customer_type_and_what_it_is_about() {
        let at = Timestamp::from_unix_millis("at", 1_800_000_000_000).unwrap();
        let event = RecordedEvent {
            event_id: EventId::new_v7(),
            customer_id: CustomerId::new("ann").unwrap(),
            stream_version: 2,
            position: Position { partition: 3, offset: 41 },
            recorded_at: at,
            command_id: CommandId::new("c-2").unwrap(),
            metadata: sample::metadata(at).unwrap(),
            event: Event::PromiseMade {
                promise_id: PromiseId::new("order-1").unwrap(),
                kind: covenant_domain::events::PromiseKind::Delivery,
                description: Text::new("description", "", 500).unwrap(),
                made_by: ActorId::new("agent-1").unwrap(),
                due_at: at,
                grace: Span::from_secs(600),
                related_ref: None,
            },
        };
        let text = line(&event);
        assert!(text.starts_with("3:41 "), "{text}");
        assert!(text.contains("ann"), "{text}");
        assert!(text.contains("promise_made"), "{text}");
        assert!(text.contains("order-1 by agent-1, due 2027-01-15T08:00:00Z"), "{text}");
    }
}
