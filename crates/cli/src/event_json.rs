//! Events as JSON and as flat CSV columns, for `covenant export` and `covenant tail --json`,
//! always without personal data.
//!
//! One object per event: the envelope's fields at the top (`event_id`, `customer_id`,
//! `stream_version`, `partition`, `offset`, `event_type`, `schema_version`, `occurred_at`,
//! `recorded_at`, `actor_kind`, `actor_id`, `team`, `channel`, `correlation_id`, `causation_id`,
//! `command_id`) and the event's own fields under `payload`, as the domain types serialise them.
//! Every instant is Unix milliseconds (UTC), every span milliseconds, money `amount_minor` plus
//! `currency`, enums by their variant name. For CSV the payload is flattened into
//! `payload.<field>` columns (nested fields joined with dots).

use std::collections::BTreeMap;

use covenant_domain::RecordedEvent;
use covenant_proto::convert::{ConvertError, Pii, envelope};
use serde_json::{Map, Value, json};

/// The columns every CSV file starts with, in order.
pub(crate) const ENVELOPE_COLUMNS: [&str; 16] = [
    "event_id",
    "customer_id",
    "stream_version",
    "partition",
    "offset",
    "event_type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "actor_kind",
    "actor_id",
    "team",
    "channel",
    "correlation_id",
    "causation_id",
    "command_id",
];

/// Refuses an event type name the catalogue does not have, naming the option and the choices.
pub(crate) fn check_event_types(option: &str, types: &[String]) -> anyhow::Result<()> {
    use covenant_domain::events::EVENT_TYPES;
    match types.iter().find(|name| !EVENT_TYPES.contains(&name.as_str())) {
        Some(name) => {
            anyhow::bail!("{option}: `{name}` is not an event type (one of: {})", EVENT_TYPES.join(", "))
        }
        None => Ok(()),
    }
}

/// The event with its personal data left out, exactly as the public stream carries it (the same
/// conversion the relay publishes with).
pub(crate) fn redacted(event: &RecordedEvent) -> Result<RecordedEvent, ConvertError> {
    RecordedEvent::try_from(envelope(event, Pii::Redact))
}

/// Empties the event's personal fields, in place: the same fields the public stream leaves
/// empty (`covenant-proto` checks that sealing and redaction agree), without the protobuf round
/// trip of [`redacted`]. Records written since personal data is sealed hold none in clear; older
/// ones (record format 1) do.
pub(crate) fn redact(event: &mut RecordedEvent) {
    let _ = covenant_domain::personal::take_personal_data(&mut event.event);
}

/// Appends the object [`event_json`] builds to `out`, as one line of JSON without its newline
/// (no `Value` in between): the envelope's fields in the order of [`ENVELOPE_COLUMNS`],
/// then `payload`. `scratch` is reused between calls. The event should already be redacted.
pub(crate) fn write_event_json(
    out: &mut Vec<u8>,
    event: &RecordedEvent,
    scratch: &mut Vec<u8>,
) -> serde_json::Result<()> {
    fn number(out: &mut Vec<u8>, name: &[u8], value: impl serde::Serialize) -> serde_json::Result<()> {
        out.extend_from_slice(name);
        serde_json::to_writer(&mut *out, &value)
    }
    let metadata = &event.metadata;
    out.extend_from_slice(b"{\"event_id\":\"");
    out.extend_from_slice(event.event_id.0.hyphenated().encode_lower(&mut [0u8; 45]).as_bytes());
    out.extend_from_slice(b"\",\"customer_id\":");
    serde_json::to_writer(&mut *out, event.customer_id.as_str())?;
    number(out, b",\"stream_version\":", event.stream_version)?;
    number(out, b",\"partition\":", event.position.partition)?;
    number(out, b",\"offset\":", event.position.offset)?;
    out.extend_from_slice(b",\"event_type\":");
    serde_json::to_writer(&mut *out, event.event_type())?;
    number(out, b",\"schema_version\":", event.event.schema_version())?;
    number(out, b",\"occurred_at\":", metadata.occurred_at.unix_millis())?;
    number(out, b",\"recorded_at\":", event.recorded_at.unix_millis())?;
    out.extend_from_slice(b",\"actor_kind\":");
    serde_json::to_writer(&mut *out, &metadata.actor.kind)?;
    out.extend_from_slice(b",\"actor_id\":");
    serde_json::to_writer(&mut *out, metadata.actor.id.as_str())?;
    out.extend_from_slice(b",\"team\":");
    serde_json::to_writer(&mut *out, &metadata.team.as_ref().map(|team| team.as_str()))?;
    out.extend_from_slice(b",\"channel\":");
    serde_json::to_writer(&mut *out, &metadata.channel)?;
    out.extend_from_slice(b",\"correlation_id\":");
    serde_json::to_writer(&mut *out, &metadata.correlation_id.as_ref().map(|id| id.as_str()))?;
    out.extend_from_slice(b",\"causation_id\":");
    serde_json::to_writer(&mut *out, &metadata.causation_id.as_ref().map(|id| id.as_str()))?;
    out.extend_from_slice(b",\"command_id\":");
    serde_json::to_writer(&mut *out, event.command_id.as_str())?;
    out.extend_from_slice(b",\"payload\":");
    // The event serialises externally tagged, `{"Variant":{...}}` (a variant without fields as
    // `"Variant"`): the payload is what is inside the tag.
    scratch.clear();
    serde_json::to_writer(&mut *scratch, &event.event)?;
    let content = match (scratch.first(), scratch.iter().position(|byte| *byte == b':')) {
        (Some(b'{'), Some(colon)) if scratch.len() > colon + 1 => &scratch[colon + 1..scratch.len() - 1],
        _ => b"{}".as_slice(),
    };
    out.extend_from_slice(content);
    out.push(b'}');
    Ok(())
}

/// The event's own fields: the content of the serialised variant (`{"PromiseMade": {...}}` →
/// `{...}`); a variant without fields gives an empty object.
fn payload(event: &RecordedEvent) -> Value {
    match serde_json::to_value(&event.event) {
        Ok(Value::Object(tagged)) => tagged.into_iter().next().map_or(json!({}), |(_, fields)| fields),
        Ok(Value::String(_)) | Ok(Value::Null) => json!({}),
        Ok(other) => other,
        Err(error) => json!({ "unserialisable": error.to_string() }),
    }
}

/// One event as a JSON object (see the module docs). The event should already be redacted.
pub(crate) fn event_json(event: &RecordedEvent) -> Value {
    let metadata = &event.metadata;
    json!({
        "event_id": event.event_id.to_string(),
        "customer_id": event.customer_id.as_str(),
        "stream_version": event.stream_version,
        "partition": event.position.partition,
        "offset": event.position.offset,
        "event_type": event.event_type(),
        "schema_version": event.event.schema_version(),
        "occurred_at": metadata.occurred_at.unix_millis(),
        "recorded_at": event.recorded_at.unix_millis(),
        "actor_kind": serde_json::to_value(metadata.actor.kind).unwrap_or(Value::Null),
        "actor_id": metadata.actor.id.as_str(),
        "team": metadata.team.as_ref().map(|team| team.as_str()),
        "channel": metadata.channel.map(|channel| serde_json::to_value(channel).unwrap_or(Value::Null)),
        "correlation_id": metadata.correlation_id.as_ref().map(ToString::to_string),
        "causation_id": metadata.causation_id.as_ref().map(ToString::to_string),
        "command_id": event.command_id.as_str(),
        "payload": payload(event),
    })
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

fn flatten_into(prefix: &str, value: &Value, columns: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                flatten_into(&format!("{prefix}.{name}"), field, columns);
            }
        }
        Value::Object(_) => {}
        other => {
            columns.insert(prefix.to_owned(), cell(other));
        }
    }
}

/// An event's JSON as flat columns: the envelope's, then `payload.…` ones.
pub(crate) fn flatten(event: &Value) -> BTreeMap<String, String> {
    let mut columns = BTreeMap::new();
    if let Value::Object(fields) = event {
        for (name, value) in fields {
            if name == "payload" {
                flatten_into("payload", value, &mut columns);
            } else {
                columns.insert(name.clone(), cell(value));
            }
        }
    }
    columns
}

/// The payload columns among `columns`, for a CSV header after [`ENVELOPE_COLUMNS`].
pub(crate) fn payload_columns<'a>(columns: impl Iterator<Item = &'a String>) -> Vec<String> {
    columns.filter(|name| name.starts_with("payload.")).cloned().collect()
}

/// A JSON object from flat columns (the reverse of nothing: used to keep rows on disk).
pub(crate) fn columns_object(columns: &BTreeMap<String, String>) -> Value {
    Value::Object(
        columns
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect::<Map<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_domain::events::{Event, PromiseKind, RelatedRef};
    use covenant_domain::ids::{ActorId, CommandId, CustomerId, EventId, PromiseId};
    use covenant_domain::{Position, Span, Text, Timestamp, sample};

    fn promise_made() -> RecordedEvent {
        let at = Timestamp::from_unix_millis("at", 1_800_000_000_000).unwrap();
        RecordedEvent {
            event_id: EventId::new_v7(),
            customer_id: CustomerId::new("ann").unwrap(),
            stream_version: 2,
            position: Position { partition: 3, offset: 41 },
            recorded_at: at,
            command_id: CommandId::new("c-2").unwrap(),
            metadata: sample::metadata(at).unwrap(),
            event: Event::PromiseMade {
                promise_id: PromiseId::new("order-1").unwrap(),
                kind: PromiseKind::Delivery,
                description: Text::new("description", "deliver the sofa to Ann Smith", 500).unwrap(),
                made_by: ActorId::new("agent-1").unwrap(),
                due_at: at,
                grace: Span::from_secs(600),
                related_ref: Some(RelatedRef::Promise(PromiseId::new("order-0").unwrap())),
            },
        }
    }

    #[test]
    fn an_event_is_one_object_without_personal_data() {
        let event = redacted(&promise_made()).unwrap();
        let value = event_json(&event);
        assert_eq!(value["event_type"], "promise_made");
        assert_eq!((value["partition"].as_u64(), value["offset"].as_u64()), (Some(3), Some(41)));
        assert_eq!(value["occurred_at"].as_i64(), Some(1_800_000_000_000));
        assert_eq!(value["team"], "support");
        assert_eq!(value["payload"]["promise_id"], "order-1");
        assert_eq!(value["payload"]["description"], "", "personal data is left out");
        assert_eq!(value["payload"]["grace"].as_i64(), Some(600_000));
        assert!(!value.to_string().contains("Ann Smith"));
    }

    /// Every event type, from the log's golden records: format 1 (personal data in clear) and
    /// format 2 (sealed apart, so the decoded event holds none).
    fn golden_events() -> Vec<RecordedEvent> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../log/tests/golden");
        let mut events = Vec::new();
        for version in ["v1", "v2"] {
            for (index, event_type) in covenant_domain::events::EVENT_TYPES.iter().enumerate() {
                let text =
                    std::fs::read_to_string(root.join(version).join(format!("{event_type}.hex"))).unwrap();
                let text = text.trim();
                let bytes: Vec<u8> = (0..text.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                    .collect();
                let position = Position { partition: 3, offset: 1000 + index as u64 };
                events.push(covenant_log::codec::decode_record(position, &bytes).unwrap());
            }
        }
        events
    }

    #[test]
    fn the_direct_writer_writes_what_event_json_builds_for_every_event_type() {
        let mut scratch = Vec::new();
        let mut personal_data_seen = 0;
        for event in golden_events().into_iter().chain([promise_made()]) {
            let kind = event.event_type();
            let expected = event_json(&redacted(&event).unwrap());
            let mut fast = event.clone();
            redact(&mut fast);
            personal_data_seen += usize::from(fast != event);
            let mut line = Vec::new();
            write_event_json(&mut line, &fast, &mut scratch).unwrap();
            let written: Value = serde_json::from_slice(&line).unwrap_or_else(|error| {
                panic!("{kind}: not JSON ({error}): {}", String::from_utf8_lossy(&line))
            });
            assert_eq!(written, expected, "{kind}");
            assert!(!line.contains(&b'\n'), "{kind}: one line");
        }
        assert!(personal_data_seen >= 5, "the fixtures hold personal data to redact ({personal_data_seen})");
    }

    #[test]
    fn csv_columns_flatten_the_payload_with_dots() {
        let value = event_json(&redacted(&promise_made()).unwrap());
        let columns = flatten(&value);
        for name in ENVELOPE_COLUMNS {
            assert!(columns.contains_key(name), "{name} missing: {columns:?}");
        }
        assert_eq!(columns["payload.promise_id"], "order-1");
        assert_eq!(columns["payload.related_ref.Promise"], "order-0");
        assert_eq!(columns["channel"], "Phone");
        assert_eq!(columns["correlation_id"], "");
        let payload = payload_columns(columns.keys());
        assert!(payload.iter().all(|name| name.starts_with("payload.")));
        assert!(payload.contains(&"payload.kind".to_owned()));
        assert_eq!(columns_object(&columns)["payload.kind"], "Delivery");
    }
}
