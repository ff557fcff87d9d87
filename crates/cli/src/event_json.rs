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

#[cfg(test)]
use std::collections::BTreeMap;

use covenant_audit::PublicEvent;
use covenant_domain::events::{ActorKind, Channel};
use covenant_domain::ids::EventId;
use covenant_domain::views::RecordedEventView;
use covenant_domain::{Position, RecordedEvent, Timestamp};
use serde_json::{Value, json};

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
#[cfg(test)]
pub(crate) fn redacted(
    event: &RecordedEvent,
) -> Result<RecordedEvent, covenant_proto::convert::ConvertError> {
    use covenant_proto::convert::{Pii, envelope};
    RecordedEvent::try_from(envelope(event, Pii::Redact))
}

/// Empties the event's personal fields, in place: the same fields the public stream leaves
/// empty (`covenant-proto` checks that sealing and redaction agree), without the protobuf round
/// trip of [`redacted`]. Records written since personal data is sealed hold none in clear; older
/// ones (record format 1) do.
pub(crate) fn redact(event: &mut RecordedEvent) {
    let _ = covenant_domain::personal::take_personal_data(&mut event.event);
}

/// The envelope's fields as the JSON writer takes them, from an owned event or a view.
struct JsonEnvelope<'a> {
    event_id: EventId,
    customer_id: &'a str,
    stream_version: u64,
    position: Position,
    event_type: &'static str,
    schema_version: u16,
    occurred_at: Timestamp,
    recorded_at: Timestamp,
    actor_kind: ActorKind,
    actor_id: &'a str,
    team: Option<&'a str>,
    channel: Option<Channel>,
    correlation_id: Option<&'a str>,
    causation_id: Option<&'a str>,
    command_id: &'a str,
}

impl<'a> JsonEnvelope<'a> {
    fn of_event(event: &'a RecordedEvent) -> Self {
        let metadata = &event.metadata;
        Self {
            event_id: event.event_id,
            customer_id: event.customer_id.as_str(),
            stream_version: event.stream_version,
            position: event.position,
            event_type: event.event_type(),
            schema_version: event.event.schema_version(),
            occurred_at: metadata.occurred_at,
            recorded_at: event.recorded_at,
            actor_kind: metadata.actor.kind,
            actor_id: metadata.actor.id.as_str(),
            team: metadata.team.as_ref().map(|team| team.as_str()),
            channel: metadata.channel,
            correlation_id: metadata.correlation_id.as_ref().map(|id| id.as_str()),
            causation_id: metadata.causation_id.as_ref().map(|id| id.as_str()),
            command_id: event.command_id.as_str(),
        }
    }

    fn of_view(view: &RecordedEventView<'a>) -> Self {
        let metadata = &view.metadata;
        Self {
            event_id: view.event_id,
            customer_id: view.customer_id,
            stream_version: view.stream_version,
            position: view.position,
            event_type: view.event_type(),
            schema_version: view.event.schema_version(),
            occurred_at: metadata.occurred_at,
            recorded_at: view.recorded_at,
            actor_kind: metadata.actor.kind,
            actor_id: metadata.actor.id,
            team: metadata.team,
            channel: metadata.channel,
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            command_id: view.command_id,
        }
    }
}

/// Appends `text` as a JSON string: as it is between quotes when nothing in it needs escaping
/// (identifiers never do), through serde_json otherwise.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if needs_no_escaping(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, text)
    }
}

/// `0x01` in every byte of a word.
const WORD_ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word.
const WORD_HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Nonzero when one of the eight bytes of `word` is `byte` (the "has zero byte" trick on the word
/// xor the byte repeated; exact as a yes/no answer). Shared by the JSON escaping check and the
/// CSV quoting check (`export::needs_quotes`).
pub(crate) fn word_has_byte(word: u64, byte: u8) -> u64 {
    let matched = word ^ (WORD_ONES * u64::from(byte));
    matched.wrapping_sub(WORD_ONES) & !matched & WORD_HIGH_BITS
}

/// True when JSON needs none of `bytes` escaped: no control character (below 0x20), no quote, no
/// backslash (what serde_json escapes). Eight bytes at a time: each test below sets a byte's high
/// bit when the byte matches (the "has less than" and "has zero byte" word tricks, exact as
/// yes/no answers); bytes of 0x80 and above (UTF-8 beyond ASCII) never match.
fn needs_no_escaping(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(chunk).map(u64::from_le_bytes) else { return false };
        let control = word.wrapping_sub(WORD_ONES * 0x20) & !word & WORD_HIGH_BITS;
        if control | word_has_byte(word, b'"') | word_has_byte(word, b'\\') != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
}

fn write_json_opt_str(out: &mut Vec<u8>, text: Option<&str>) -> serde_json::Result<()> {
    match text {
        Some(text) => write_json_str(out, text),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn write_json_number(out: &mut Vec<u8>, name: &[u8], value: impl itoa::Integer) {
    out.extend_from_slice(name);
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends the object [`event_json`] builds to `out`, as one line of JSON without its newline
/// (no `Value` in between): the envelope's fields in the order of [`ENVELOPE_COLUMNS`],
/// then `payload` (the content of the event's variant, `crate::json_payload`).
fn write_json(
    out: &mut Vec<u8>,
    envelope: &JsonEnvelope<'_>,
    payload: &impl serde::Serialize,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"event_id\":\"");
    out.extend_from_slice(envelope.event_id.0.hyphenated().encode_lower(&mut [0u8; 45]).as_bytes());
    out.extend_from_slice(b"\",\"customer_id\":");
    write_json_str(out, envelope.customer_id)?;
    write_json_number(out, b",\"stream_version\":", envelope.stream_version);
    write_json_number(out, b",\"partition\":", envelope.position.partition);
    write_json_number(out, b",\"offset\":", envelope.position.offset);
    out.extend_from_slice(b",\"event_type\":");
    write_json_str(out, envelope.event_type)?;
    write_json_number(out, b",\"schema_version\":", envelope.schema_version);
    write_json_number(out, b",\"occurred_at\":", envelope.occurred_at.unix_millis());
    write_json_number(out, b",\"recorded_at\":", envelope.recorded_at.unix_millis());
    out.extend_from_slice(b",\"actor_kind\":");
    serde_json::to_writer(&mut *out, &envelope.actor_kind)?;
    out.extend_from_slice(b",\"actor_id\":");
    write_json_str(out, envelope.actor_id)?;
    out.extend_from_slice(b",\"team\":");
    write_json_opt_str(out, envelope.team)?;
    out.extend_from_slice(b",\"channel\":");
    serde_json::to_writer(&mut *out, &envelope.channel)?;
    out.extend_from_slice(b",\"correlation_id\":");
    write_json_opt_str(out, envelope.correlation_id)?;
    out.extend_from_slice(b",\"causation_id\":");
    write_json_opt_str(out, envelope.causation_id)?;
    out.extend_from_slice(b",\"command_id\":");
    write_json_str(out, envelope.command_id)?;
    out.extend_from_slice(b",\"payload\":");
    crate::json_payload::write_payload(out, payload)?;
    out.push(b'}');
    Ok(())
}

/// Appends `event` (already redacted) as [`event_json`] would write it (see [`write_json`]).
pub(crate) fn write_event_json(out: &mut Vec<u8>, event: &RecordedEvent) -> serde_json::Result<()> {
    write_json(out, &JsonEnvelope::of_event(event), &event.event)
}

/// Appends an event without its personal data, owned or borrowed, as [`event_json`] would write
/// it (see [`write_json`]).
pub(crate) fn write_public_json(out: &mut Vec<u8>, event: &PublicEvent<'_>) -> serde_json::Result<()> {
    match event {
        PublicEvent::Owned(event) => write_event_json(out, event),
        PublicEvent::Borrowed(view) => write_json(out, &JsonEnvelope::of_view(view), &view.event),
    }
}

/// The envelope's cells of a CSV row, in the order of [`ENVELOPE_COLUMNS`], as [`flatten`]
/// gives them from [`event_json`] (a missing value an empty cell, an enum its variant's name).
/// `scratch` is reused.
pub(crate) fn envelope_cells(
    event: &PublicEvent<'_>,
    scratch: &mut EnvelopeScratch,
    push: &mut dyn FnMut(&str),
) {
    let envelope = match event {
        PublicEvent::Owned(event) => JsonEnvelope::of_event(event),
        PublicEvent::Borrowed(view) => JsonEnvelope::of_view(view),
    };
    push(envelope.event_id.0.hyphenated().encode_lower(&mut [0u8; 45]));
    push(envelope.customer_id);
    let mut digits = itoa::Buffer::new();
    push(digits.format(envelope.stream_version));
    push(digits.format(envelope.position.partition));
    push(digits.format(envelope.position.offset));
    push(envelope.event_type);
    push(digits.format(envelope.schema_version));
    push(digits.format(envelope.occurred_at.unix_millis()));
    push(digits.format(envelope.recorded_at.unix_millis()));
    push(scratch.cell(&envelope.actor_kind));
    push(envelope.actor_id);
    push(envelope.team.unwrap_or(""));
    push(scratch.cell(&envelope.channel));
    push(envelope.correlation_id.unwrap_or(""));
    push(envelope.causation_id.unwrap_or(""));
    push(envelope.command_id);
}

/// Buffers [`envelope_cells`] reuses.
#[derive(Debug, Default)]
pub(crate) struct EnvelopeScratch {
    path: String,
    text: String,
}

impl EnvelopeScratch {
    /// `value` (a scalar) as one cell.
    fn cell(&mut self, value: &impl serde::Serialize) -> &str {
        struct Last<'t>(&'t mut String);
        impl crate::csv_cells::CellSink for Last<'_> {
            fn cell(&mut self, _column: &str, value: &str) {
                self.0.clear();
                self.0.push_str(value);
            }
        }
        self.text.clear();
        // A scalar always flattens (a unit variant to its name, `None` to an empty cell).
        let _ = crate::csv_cells::flatten_value(value, &mut self.path, &mut Last(&mut self.text));
        &self.text
    }
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

#[cfg(test)]
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Array(_) | Value::Object(_) => value.to_string(),
    }
}

#[cfg(test)]
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

/// An event's JSON as flat columns: the envelope's, then `payload.…` ones. The reference the
/// tests hold the CSV writer (`envelope_cells`, `crate::csv_cells`) to.
#[cfg(test)]
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
        golden_records()
            .iter()
            .map(|(position, bytes)| covenant_log::codec::decode_record(*position, bytes).unwrap())
            .collect()
    }

    /// The golden records' stored bytes and positions, format 1 then format 2.
    fn golden_records() -> Vec<(Position, Vec<u8>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../log/tests/golden");
        let mut records = Vec::new();
        for version in ["v1", "v2"] {
            for (index, event_type) in covenant_domain::events::EVENT_TYPES.iter().enumerate() {
                let text =
                    std::fs::read_to_string(root.join(version).join(format!("{event_type}.hex"))).unwrap();
                let text = text.trim();
                let bytes: Vec<u8> = (0..text.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                    .collect();
                records.push((Position { partition: 3, offset: 1000 + index as u64 }, bytes));
            }
        }
        records
    }

    #[test]
    fn a_borrowed_view_writes_what_event_json_builds_for_every_event_type() {
        let mut borrowed = 0;
        for (position, bytes) in golden_records() {
            let record = covenant_log::codec::RecordView::parse(position, &bytes).unwrap();
            let owned = record.decode().unwrap();
            let kind = owned.event_type();
            let expected = event_json(&redacted(&owned).unwrap());
            // The view says it holds personal data exactly when the domain finds some.
            let view = record.view().unwrap();
            let mut emptied = owned.clone();
            let taken = covenant_domain::personal::take_personal_data(&mut emptied.event);
            assert_eq!(view.event.holds_personal_data(), taken.is_some(), "{kind}");
            // As `covenant export` reads a log (`LogSource::public_events`): the view unless it
            // holds personal data; and the view of the same event stored without it (as the log
            // writes it since personal data is sealed apart).
            let public = if view.event.holds_personal_data() {
                PublicEvent::Owned(emptied.clone())
            } else {
                PublicEvent::Borrowed(view)
            };
            let (stored, _) = covenant_log::codec::encode_record(&[0; 32], &emptied).unwrap();
            let stored = covenant_log::codec::RecordView::parse(position, &stored).unwrap();
            let stored_view = stored.view().unwrap();
            assert!(!stored_view.event.holds_personal_data(), "{kind}");
            for public in [public, PublicEvent::Borrowed(stored_view)] {
                borrowed += usize::from(matches!(public, PublicEvent::Borrowed(_)));
                assert_eq!(public.event_type(), kind);
                assert_eq!(public.occurred_at(), expected_occurred_at(&expected), "{kind}");
                let mut line = Vec::new();
                write_public_json(&mut line, &public).unwrap();
                let written: Value = serde_json::from_slice(&line).unwrap_or_else(|error| {
                    panic!("{kind}: not JSON ({error}): {}", String::from_utf8_lossy(&line))
                });
                assert_eq!(written, expected, "{kind}");
            }
        }
        let types = covenant_domain::events::EVENT_TYPES.len();
        assert!(borrowed >= 2 * types, "views written: {borrowed}");
    }

    /// What `covenant export --format csv` writes for each golden record: the envelope's cells
    /// and the payload's, as `flatten` gives them from the event's JSON.
    #[test]
    fn csv_cells_are_the_flattened_json_for_every_event_type() {
        let (mut path, mut envelope_scratch) = (String::new(), EnvelopeScratch::default());
        struct Cells(Vec<(String, String)>);
        impl crate::csv_cells::CellSink for Cells {
            fn cell(&mut self, column: &str, value: &str) {
                self.0.push((column.to_owned(), value.to_owned()));
            }
        }
        let mut nested = 0;
        for (position, bytes) in golden_records() {
            let record = covenant_log::codec::RecordView::parse(position, &bytes).unwrap();
            let owned = record.decode().unwrap();
            let kind = owned.event_type();
            let expected = flatten(&event_json(&redacted(&owned).unwrap()));
            let mut redacted_owned = owned.clone();
            redact(&mut redacted_owned);
            let (stored, _) = covenant_log::codec::encode_record(&[0; 32], &redacted_owned).unwrap();
            let stored = covenant_log::codec::RecordView::parse(position, &stored).unwrap();
            for public in [PublicEvent::Owned(redacted_owned), PublicEvent::Borrowed(stored.view().unwrap())]
            {
                let mut envelope = Vec::new();
                envelope_cells(&public, &mut envelope_scratch, &mut |cell| envelope.push(cell.to_owned()));
                let want: Vec<String> = ENVELOPE_COLUMNS.iter().map(|name| expected[*name].clone()).collect();
                assert_eq!(envelope, want, "{kind}: envelope");
                let mut cells = Cells(Vec::new());
                match &public {
                    PublicEvent::Owned(event) => {
                        crate::csv_cells::flatten_payload(&event.event, &mut path, &mut cells).unwrap()
                    }
                    PublicEvent::Borrowed(view) => {
                        crate::csv_cells::flatten_payload(&view.event, &mut path, &mut cells).unwrap()
                    }
                }
                let columns = cells.0.len();
                let cells: BTreeMap<String, String> = cells.0.into_iter().collect();
                assert_eq!(cells.len(), columns, "{kind}: a column twice");
                let want: BTreeMap<String, String> = expected
                    .iter()
                    .filter(|(name, _)| name.starts_with("payload."))
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect();
                assert_eq!(cells, want, "{kind}: payload");
                nested += cells.keys().filter(|name| name.matches('.').count() > 1).count();
            }
        }
        assert!(nested > 0, "the fixtures have nested payload fields");
    }

    fn expected_occurred_at(json: &Value) -> Timestamp {
        Timestamp::from_unix_millis("occurred_at", json["occurred_at"].as_i64().unwrap()).unwrap()
    }

    proptest::proptest! {
        /// The word-at-a-time check answers as the byte-by-byte one, whatever the bytes (and
        /// wherever a byte to escape sits in a word), and strings come out as serde_json's.
        #[test]
        fn the_escaping_check_agrees_with_the_byte_by_byte_one(
            text in "[\\x00-\\x7f\"\\\\é€a-z]{0,40}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let by_byte = |bytes: &[u8]| bytes.iter().all(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\');
            proptest::prop_assert_eq!(needs_no_escaping(text.as_bytes()), by_byte(text.as_bytes()));
            proptest::prop_assert_eq!(needs_no_escaping(&bytes), by_byte(&bytes));
            let mut out = Vec::new();
            write_json_str(&mut out, &text).unwrap();
            proptest::prop_assert_eq!(out, serde_json::to_vec(&text).unwrap());
        }
    }

    #[test]
    fn strings_that_need_escaping_are_escaped() {
        for text in
            ["plain-id_1.2:3@x", "quote \" here", "back\\slash", "line\nbreak", "tab\t", "é ünïcode", ""]
        {
            let mut out = Vec::new();
            write_json_str(&mut out, text).unwrap();
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn the_direct_writer_writes_what_event_json_builds_for_every_event_type() {
        let mut personal_data_seen = 0;
        for event in golden_events().into_iter().chain([promise_made()]) {
            let kind = event.event_type();
            let expected = event_json(&redacted(&event).unwrap());
            let mut fast = event.clone();
            redact(&mut fast);
            personal_data_seen += usize::from(fast != event);
            let mut line = Vec::new();
            write_event_json(&mut line, &fast).unwrap();
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
        assert_eq!(columns["payload.kind"], "Delivery");
    }
}
