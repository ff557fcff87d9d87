//! Value encodings: `[format u8][…postcard…]`, so old values stay readable after a change.
//!
//! A record in `events` is
//! `[format = 2][prev_hash: 32 bytes][postcard(RecordedEvent)][sealed][checksum: xxh3-64, 8 bytes LE]`,
//! where `checksum = xxh3_64(format ‖ … ‖ sealed)`. The event is stored without its personal
//! data; `sealed` is that data sealed with the customer's key (`crate::sealing`), empty when
//! the event has none. Format 1 (written before personal data was sealed) is the same without
//! `sealed`, its event in clear; it is still read. Each partition's records form
//! a hash chain: a record's `prev_hash` is the **chain hash** of the record before it,
//! `blake3(whole stored value)` (zeros for offset 0).
//!
//! Reading a record checks its checksum (cheap), so a flipped byte is an error, never a wrong
//! answer; `verify` also checks every link of the chain (collision-resistant), so an edit whose
//! forger recomputed the checksum is still found, at the next record.
//!
//! To change a shape: add a new format number, keep the old decoder, and upcast old values to
//! the current type on read. The golden-bytes tests fail on any silent change.

use covenant_domain::view_decoder::ViewDecoder;
use covenant_domain::views::RecordedEventView;
use covenant_domain::{CustomerState, Position, RecordedEvent, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};

/// Format byte of v1 records (personal data in clear; read, no longer written).
pub const RECORD_FORMAT_V1: u8 = 1;
/// Format byte of v2 records (personal data sealed after the event).
pub const RECORD_FORMAT_V2: u8 = 2;
/// Format byte of v1 stream heads: the decision state after the stream's *latest* event,
/// rewritten by every command (read, no longer written).
pub(crate) const HEAD_FORMAT_V1: u8 = 1;
/// Format byte of v2 stream heads: a *snapshot* of the decision state after some event of the
/// stream, written every `LogConfig::head_snapshot_every` events; the events after it are
/// folded on load. A new format byte, so that a binary that knows only v1 (and would take a
/// snapshot for the latest state) rebuilds the state from the events instead.
pub(crate) const HEAD_FORMAT_V2: u8 = 2;
/// Format byte of v1 command outcomes.
pub(crate) const OUTCOME_FORMAT_V1: u8 = 1;
/// Length of a blake3 chain hash.
pub const HASH_LEN: usize = 32;
/// Length of a record's checksum trailer.
pub const CHECKSUM_LEN: usize = 8;
/// `prev_hash` of the first record of every partition.
pub const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// A chain hash.
pub type ChainHash = [u8; HASH_LEN];

/// Encodes `event` (no personal data to seal) as a record following `prev_hash`; returns the
/// bytes and their chain hash.
pub fn encode_record(prev_hash: &ChainHash, event: &RecordedEvent) -> Result<(Vec<u8>, ChainHash)> {
    encode_sealed_record(prev_hash, event, &[])
}

/// Encodes `event` (already without its personal data) followed by `sealed`, its personal data
/// sealed with the customer's key.
pub fn encode_sealed_record(
    prev_hash: &ChainHash,
    event: &RecordedEvent,
    sealed: &[u8],
) -> Result<(Vec<u8>, ChainHash)> {
    let mut value = Vec::with_capacity(1 + HASH_LEN + CHECKSUM_LEN + 192 + sealed.len());
    value.push(RECORD_FORMAT_V2);
    value.extend_from_slice(prev_hash);
    let mut value = postcard::to_extend(event, value).map_err(|error| LogError::CorruptMetadata {
        what: "event to encode".into(),
        reason: error.to_string(),
    })?;
    value.extend_from_slice(sealed);
    let checksum = xxhash_rust::xxh3::xxh3_64(&value);
    value.extend_from_slice(&checksum.to_le_bytes());
    let hash = chain_hash(&value);
    Ok((value, hash))
}

/// The chain hash of a stored record: `blake3` of all its bytes.
pub fn chain_hash(value: &[u8]) -> ChainHash {
    blake3::hash(value).into()
}

/// The parts of a stored record, checked against its checksum but not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub format: u8,
    pub prev_hash: &'a [u8],
    pub body: &'a [u8],
}

fn corrupt(position: Position, reason: impl Into<String>) -> LogError {
    LogError::Corrupt { position, reason: reason.into() }
}

/// Splits a stored record and checks its checksum.
pub fn split_record(position: Position, value: &[u8]) -> Result<RawRecord<'_>> {
    if value.len() < 1 + HASH_LEN + CHECKSUM_LEN {
        return Err(corrupt(position, format!("value is {} bytes, shorter than any record", value.len())));
    }
    let format = value[0];
    if format != RECORD_FORMAT_V1 && format != RECORD_FORMAT_V2 {
        return Err(corrupt(position, format!("unknown record format {format}")));
    }
    let (checked, trailer) = value.split_at(value.len() - CHECKSUM_LEN);
    let mut stored = [0u8; CHECKSUM_LEN];
    stored.copy_from_slice(trailer);
    if xxhash_rust::xxh3::xxh3_64(checked) != u64::from_le_bytes(stored) {
        return Err(corrupt(position, "checksum mismatch: the stored bytes were altered"));
    }
    Ok(RawRecord { format, prev_hash: &checked[1..1 + HASH_LEN], body: &checked[1 + HASH_LEN..] })
}

/// A record must sit where it says it does (a record copied to another key is corrupt).
fn check_position(position: Position, recorded: Position) -> Result<()> {
    if recorded != position {
        return Err(corrupt(
            position,
            format!("record says it is at partition {} offset {}", recorded.partition, recorded.offset),
        ));
    }
    Ok(())
}

/// Decodes a stored record, checking its hash and that it sits where it says it does.
pub fn decode_record(position: Position, value: &[u8]) -> Result<RecordedEvent> {
    let raw = split_record(position, value)?;
    decode_body(position, raw.body)
}

/// Decodes a stored record and returns it with its sealed personal data (empty when there is
/// none, and for format-1 records, whose personal data is in the event).
pub fn decode_sealed_record(position: Position, value: &[u8]) -> Result<(RecordedEvent, &[u8])> {
    let raw = split_record(position, value)?;
    let (event, rest): (RecordedEvent, &[u8]) = postcard::take_from_bytes(raw.body)
        .map_err(|error| corrupt(position, format!("does not decode: {error}")))?;
    check_position(position, event.position)?;
    match raw.format {
        RECORD_FORMAT_V1 if !rest.is_empty() => {
            Err(corrupt(position, "trailing bytes after a format-1 record"))
        }
        _ => Ok((event, rest)),
    }
}

/// Decodes a record body already checked by [`split_record`]: into a borrowed view by the
/// hand-written [`ViewDecoder`], then owned (about two thirds of the time of postcard's serde
/// decoding, which reads the same bytes into the same event: `covenant-domain`'s view tests).
pub fn decode_body(position: Position, body: &[u8]) -> Result<RecordedEvent> {
    let view = decode_body_view(position, body)?;
    check_position(position, view.position)?;
    owned(position, &view)
}

/// The owned event of a decoded view (its identifiers validated).
fn owned(position: Position, view: &RecordedEventView<'_>) -> Result<RecordedEvent> {
    view.to_owned().map_err(|error| corrupt(position, format!("does not decode: {error}")))
}

/// Checks a stored record's checksum and decodes the **whole** event without copying: every
/// field is read, ids and texts borrow the record's bytes (see [`covenant_domain::views`]).
/// [`RecordedEventView::to_owned`] gives the owned event when a caller keeps it.
pub fn decode_view(position: Position, value: &[u8]) -> Result<RecordedEventView<'_>> {
    let raw = split_record(position, value)?;
    let view = decode_body_view(position, raw.body)?;
    check_position(position, view.position)?;
    Ok(view)
}

/// Decodes a record body already checked by [`split_record`] without copying, with the
/// hand-written [`ViewDecoder`] (the same bytes as postcard's serde decoding, about half the
/// time).
fn decode_body_view(position: Position, body: &[u8]) -> Result<RecordedEventView<'_>> {
    ViewDecoder::new(body)
        .recorded_event()
        .map_err(|error| corrupt(position, format!("does not decode: {error}")))
}

/// The envelope of a stored record, decoded without copying (ids and labels borrow the record's
/// bytes).
pub use covenant_domain::views::EnvelopeView;

/// A stored record, checked against its checksum, with its envelope decoded without copying;
/// [`RecordView::decode`] decodes the whole event when it is needed.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub envelope: EnvelopeView<'a>,
    /// The record's format byte ([`RECORD_FORMAT_V1`] or [`RECORD_FORMAT_V2`]).
    format: u8,
    /// The whole record body (the owned decode reads it from the start).
    body: &'a [u8],
    /// The body after the envelope: the event's fields, then any sealed personal data.
    payload: &'a [u8],
}

/// The customer id of a stored record, read without checking it (no checksum, no validation):
/// a cheap filter before [`RecordView::parse`] of the records wanted. `None` when the bytes
/// cannot be a record.
pub fn peek_customer(value: &[u8]) -> Option<&str> {
    let body = value.get(1 + HASH_LEN..value.len().checked_sub(CHECKSUM_LEN)?)?;
    let mut decoder = ViewDecoder::new(body);
    decoder.event_id().ok()?;
    decoder.str().ok()
}

impl<'a> RecordView<'a> {
    /// Checks the record's checksum and decodes its envelope.
    pub fn parse(position: Position, value: &'a [u8]) -> Result<Self> {
        let raw = split_record(position, value)?;
        let mut decoder = ViewDecoder::new(raw.body);
        let envelope = decoder
            .envelope()
            .map_err(|error| corrupt(position, format!("envelope does not decode: {error}")))?;
        check_position(position, envelope.position)?;
        if envelope.event_index as usize >= covenant_domain::events::EVENT_TYPES.len() {
            return Err(corrupt(position, format!("unknown event variant {}", envelope.event_index)));
        }
        Ok(Self { envelope, format: raw.format, body: raw.body, payload: decoder.rest() })
    }

    /// The event's postcard bytes as the public stream carries it (without personal data),
    /// copied from the record without decoding it into owned values: what a projection keeps of
    /// the event. `None` for a format-1 record, whose personal data is in clear (decode and
    /// redact it).
    pub fn public_event(&self) -> Result<Option<&'a [u8]>> {
        if self.format != RECORD_FORMAT_V2 {
            return Ok(None);
        }
        let mut decoder = ViewDecoder::new(self.payload);
        decoder
            .event(self.envelope.event_index)
            .map_err(|error| corrupt(self.envelope.position, format!("does not decode: {error}")))?;
        // What follows the event is its sealed personal data.
        let sealed = decoder.rest().len();
        Ok(Some(&self.body[..self.body.len() - sealed]))
    }

    /// The event's type name (snake case).
    pub fn event_type(&self) -> &'static str {
        // `parse` checked the index.
        covenant_domain::events::EVENT_TYPES[self.envelope.event_index as usize]
    }

    /// Decodes the whole record (the envelope is not read again).
    pub fn decode(&self) -> Result<RecordedEvent> {
        owned(self.envelope.position, &self.view()?)
    }

    /// Decodes the whole record without copying (see [`decode_view`]): only the payload is
    /// read, the envelope was decoded by [`RecordView::parse`] (which checked its position).
    pub fn view(&self) -> Result<RecordedEventView<'a>> {
        let envelope = self.envelope;
        let event = ViewDecoder::new(self.payload)
            .event(envelope.event_index)
            .map_err(|error| corrupt(envelope.position, format!("does not decode: {error}")))?;
        Ok(envelope.with_event(event))
    }
}

/// A customer's decision state after `state.version` events of their stream, and where the
/// last of those events is. `streams` keeps one per customer as a snapshot (not necessarily
/// of the latest event); the writer keeps the latest in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamHead {
    /// Offset in their partition of the customer's event at `state.version` (0 before any).
    pub(crate) last_offset: u64,
    /// Decision state after `state.version` events.
    pub(crate) state: CustomerState,
}

/// `[format][postcard(value)]`.
fn encode_versioned<T: Serialize>(format: u8, value: &T, what: &str) -> Result<Vec<u8>> {
    postcard::to_extend(value, vec![format]).map_err(|error| LogError::CorruptMetadata {
        what: format!("{what} to encode"),
        reason: error.to_string(),
    })
}

/// Encodes a snapshot of a stream head (format v2).
pub(crate) fn encode_head(head: &StreamHead) -> Result<Vec<u8>> {
    encode_versioned(HEAD_FORMAT_V2, head, "stream head")
}

/// Decodes a stored stream head as a snapshot (a v1 head, always the latest, is a valid one);
/// `None` when its format is unknown or it does not decode (the caller rebuilds it).
pub(crate) fn decode_head(value: &[u8]) -> Option<StreamHead> {
    match value.split_first() {
        Some((&(HEAD_FORMAT_V1 | HEAD_FORMAT_V2), body)) => postcard::from_bytes(body).ok(),
        _ => None,
    }
}

/// The stored result of a command: a retry with the same `command_id` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredOutcome {
    /// xxh3-128 of the encoded command: a reused id with another command is refused.
    pub(crate) fingerprint: u128,
    pub(crate) partition: u16,
    pub(crate) first_offset: u64,
    pub(crate) event_count: u32,
    pub(crate) stream_version: u64,
    pub(crate) recorded_at: Timestamp,
}

pub(crate) fn encode_outcome(outcome: &StoredOutcome) -> Result<Vec<u8>> {
    encode_versioned(OUTCOME_FORMAT_V1, outcome, "command outcome")
}

pub(crate) fn decode_outcome(value: &[u8]) -> Result<StoredOutcome> {
    match value.split_first() {
        Some((&OUTCOME_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|error| {
            LogError::CorruptMetadata { what: "command outcome".into(), reason: error.to_string() }
        }),
        _ => {
            Err(LogError::CorruptMetadata { what: "command outcome".into(), reason: "unknown format".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use covenant_domain::events::{Actor, ActorKind};
    use covenant_domain::ids::ActorId;
    use covenant_domain::{CommandId, CustomerId, EventId, EventMetadata, sample};
    use proptest::prelude::*;

    use super::*;

    fn record(customer: &str, summary_len: usize, partition: u16, offset: u64, millis: i64) -> RecordedEvent {
        // The event the domain records for a sample interaction of a registered customer.
        let now = Timestamp::from_unix_millis_clamped(millis);
        let context = covenant_domain::DecisionContext { now, occurred_at: now };
        let mut state = covenant_domain::CustomerState::default();
        for event in
            covenant_domain::decide(&state, customer, &sample::register("Pat").unwrap(), &context).unwrap()
        {
            covenant_domain::apply(&mut state, &event, now);
        }
        let interaction = sample::interaction("i-1", summary_len).unwrap();
        let event = covenant_domain::decide(&state, customer, &interaction, &context).unwrap().remove(0);
        RecordedEvent {
            event_id: EventId(uuid::Uuid::from_u128(u128::from(offset) << 64 | 0x7000)),
            customer_id: CustomerId::new(customer).unwrap(),
            stream_version: offset + 1,
            position: Position { partition, offset },
            recorded_at: Timestamp::from_unix_millis_clamped(millis),
            command_id: CommandId::new(format!("cmd-{offset}")).unwrap(),
            metadata: EventMetadata {
                occurred_at: Timestamp::from_unix_millis_clamped(millis - 5),
                actor: Actor { kind: ActorKind::Integration, id: ActorId::new("shop").unwrap() },
                team: None,
                channel: None,
                correlation_id: None,
                causation_id: None,
            },
            event,
        }
    }

    #[test]
    fn the_public_event_of_a_record_is_its_event_as_stored_without_the_sealed_data() {
        let mut event = record("pat", 40, 2, 7, 1_800_000_000_000);
        let personal = covenant_domain::personal::take_personal_data(&mut event.event);
        assert!(personal.is_some(), "an interaction's summary is personal data");
        let (stored, _) = encode_sealed_record(&GENESIS_HASH, &event, b"sealed personal data").unwrap();
        let view = RecordView::parse(event.position, &stored).unwrap();
        let public = view.public_event().unwrap().unwrap();
        assert_eq!(public, postcard::to_allocvec(&event).unwrap().as_slice());
        assert_eq!(postcard::from_bytes::<RecordedEvent>(public).unwrap(), event);

        // A format-1 record keeps its personal data in clear: no public bytes to copy.
        let clear = record("pat", 40, 2, 7, 1_800_000_000_000);
        let mut v1 = vec![RECORD_FORMAT_V1];
        v1.extend_from_slice(&GENESIS_HASH);
        v1.extend_from_slice(&postcard::to_allocvec(&clear).unwrap());
        let checksum = xxhash_rust::xxh3::xxh3_64(&v1);
        v1.extend_from_slice(&checksum.to_le_bytes());
        let view = RecordView::parse(clear.position, &v1).unwrap();
        assert_eq!(view.public_event().unwrap(), None);
        assert_eq!(view.decode().unwrap(), clear);
    }

    proptest! {
        #[test]
        fn records_round_trip_and_chain(
            customer in "[A-Za-z0-9._:@-]{1,128}",
            summary_len in 0usize..2048,
            partition in any::<u16>(),
            offset in 0u64..u64::MAX / 2,
            millis in 0i64..Timestamp::MAX.unix_millis(),
            prev in any::<[u8; 32]>(),
        ) {
            let event = record(&customer, summary_len, partition, offset, millis);
            let (bytes, hash) = encode_record(&prev, &event).unwrap();
            let raw = split_record(event.position, &bytes).unwrap();
            prop_assert_eq!(raw.prev_hash, &prev[..]);
            prop_assert_eq!(hash, chain_hash(&bytes));
            prop_assert_eq!(&decode_record(event.position, &bytes).unwrap(), &event);
            let view = RecordView::parse(event.position, &bytes).unwrap();
            prop_assert_eq!(view.envelope.customer_id, event.customer_id.as_str());
            prop_assert_eq!(peek_customer(&bytes), Some(event.customer_id.as_str()));
            prop_assert_eq!(peek_customer(&bytes[..40]), None);
            prop_assert_eq!(view.envelope.stream_version, event.stream_version);
            prop_assert_eq!(view.event_type(), event.event_type());
            prop_assert_eq!(&view.decode().unwrap(), &event);
            let full = decode_view(event.position, &bytes).unwrap();
            // The payload decoded after the parsed envelope is the same whole view.
            prop_assert_eq!(&view.view().unwrap(), &full);
            prop_assert_eq!(full.to_owned().unwrap(), event);
        }

        #[test]
        fn any_altered_byte_is_an_error(
            summary_len in 0usize..600,
            flip_at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let event = record("cust-1", summary_len, 2, 40, 1_700_000_000_000);
            let (mut bytes, _) = encode_record(&GENESIS_HASH, &event).unwrap();
            let index = flip_at.index(bytes.len());
            bytes[index] ^= flip;
            let corrupt = matches!(decode_record(event.position, &bytes), Err(LogError::Corrupt { .. }))
                && matches!(RecordView::parse(event.position, &bytes), Err(LogError::Corrupt { .. }))
                && matches!(decode_view(event.position, &bytes), Err(LogError::Corrupt { .. }));
            prop_assert!(corrupt, "byte {} altered but the record still decoded", index);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let position = Position { partition: 0, offset: 0 };
            let _ = decode_record(position, &bytes);
            let _ = decode_view(position, &bytes);
            let _ = decode_head(&bytes);
            let _ = decode_outcome(&bytes);
        }
    }

    #[test]
    fn a_record_read_at_another_position_is_refused() {
        let event = record("cust-1", 10, 1, 5, 1_700_000_000_000);
        let (bytes, _) = encode_record(&GENESIS_HASH, &event).unwrap();
        let error = decode_record(Position { partition: 1, offset: 6 }, &bytes).unwrap_err();
        assert!(error.to_string().contains("record says it is at partition 1 offset 5"), "{error}");
        let error = RecordView::parse(Position { partition: 1, offset: 6 }, &bytes).unwrap_err();
        assert!(error.to_string().contains("record says it is at partition 1 offset 5"), "{error}");
        let error = decode_view(Position { partition: 1, offset: 6 }, &bytes).unwrap_err();
        assert!(error.to_string().contains("record says it is at partition 1 offset 5"), "{error}");
    }

    #[test]
    fn heads_are_written_as_v2_snapshots_and_v1_heads_still_read() {
        let mut head = StreamHead { last_offset: 41, state: CustomerState::default() };
        head.state.version = 7;
        let written = encode_head(&head).unwrap();
        assert_eq!(written[0], HEAD_FORMAT_V2, "a binary that knows only v1 rebuilds from the events");
        assert_eq!(decode_head(&written), Some(head.clone()));
        // A head written before snapshots (always the latest state) is a snapshot too.
        let v1 = encode_versioned(HEAD_FORMAT_V1, &head, "stream head").unwrap();
        assert_eq!(&v1[1..], &written[1..]);
        assert_eq!(decode_head(&v1), Some(head));
        assert_eq!(decode_head(&[3, 0, 0]), None, "an unknown format is rebuilt, not guessed");
    }
}
