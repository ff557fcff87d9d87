//! The value messages shared by commands and events: instants, durations, positions, money,
//! references, contact points and profile changes; and the text helpers.

use covenant_domain::events::{ContactPoint, ProfileChanges, RelatedRef};
use covenant_domain::ids::{ComplaintId, InteractionId, Label, OrderId, PromiseId};
use covenant_domain::values::{Currency, LONG_TEXT_MAX, SHORT_TEXT_MAX};
use covenant_domain::{Money, Position, Span, Text, Timestamp};

use super::enums::{contact_kind_from_wire, contact_kind_to_wire};
use super::{ConvertError, optional, required};
use crate::v1;

const NANOS_PER_MILLI: i32 = 1_000_000;
const NANOS_PER_SECOND: i32 = 1_000_000_000;

/// A domain instant on the wire (whole milliseconds).
pub fn timestamp_to_wire(timestamp: Timestamp) -> prost_types::Timestamp {
    let millis = timestamp.unix_millis();
    // rem_euclid(1000) is in 0..1000, so the nanos fit an i32.
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: millis.rem_euclid(1000) as i32 * NANOS_PER_MILLI,
    }
}

/// A wire instant, truncated to the millisecond, within the domain's range (1970–2200).
pub fn timestamp_from_wire(
    field: &str,
    timestamp: &prost_types::Timestamp,
) -> Result<Timestamp, ConvertError> {
    if !(0..NANOS_PER_SECOND).contains(&timestamp.nanos) {
        return Err(ConvertError::invalid(
            field,
            format!("nanos is {}, it must be in 0..1e9", timestamp.nanos),
        ));
    }
    let millis = timestamp
        .seconds
        .checked_mul(1000)
        .and_then(|millis| millis.checked_add(i64::from(timestamp.nanos / NANOS_PER_MILLI)))
        .ok_or_else(|| {
            ConvertError::invalid(field, format!("is {} s since the epoch, out of range", timestamp.seconds))
        })?;
    Timestamp::from_unix_millis("timestamp", millis).map_err(|error| ConvertError::at(field, error))
}

/// A required instant: absent is [`ConvertError::Missing`].
pub(crate) fn required_timestamp(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Timestamp, ConvertError> {
    timestamp_from_wire(field, required(field, value)?)
}

/// An optional instant: absent is `None`.
pub(crate) fn optional_timestamp(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<Timestamp>, ConvertError> {
    value.map(|value| timestamp_from_wire(field, value)).transpose()
}

/// A domain span on the wire. Spans are signed, like `Duration` (seconds and nanos share the sign).
pub fn span_to_wire(span: Span) -> prost_types::Duration {
    let millis = span.millis();
    // millis % 1000 is in -999..=999, so the nanos fit an i32.
    prost_types::Duration { seconds: millis / 1000, nanos: (millis % 1000) as i32 * NANOS_PER_MILLI }
}

/// A wire duration, truncated to the millisecond. Negative durations are accepted (the domain's
/// `Span` is signed); whether a span is allowed where it is used is for the domain to decide
/// (e.g. a promise's grace must lie in 0..=30 days).
pub fn span_from_wire(field: &str, duration: &prost_types::Duration) -> Result<Span, ConvertError> {
    let (seconds, nanos) = (duration.seconds, duration.nanos);
    if nanos <= -NANOS_PER_SECOND || nanos >= NANOS_PER_SECOND {
        return Err(ConvertError::invalid(field, format!("nanos is {nanos}, it must be in -1e9..1e9")));
    }
    if (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
        return Err(ConvertError::invalid(field, "seconds and nanos must have the same sign"));
    }
    seconds
        .checked_mul(1000)
        .and_then(|millis| millis.checked_add(i64::from(nanos / NANOS_PER_MILLI)))
        .map(Span::from_millis)
        .ok_or_else(|| ConvertError::invalid(field, format!("is {seconds} s, out of range")))
}

/// A domain position on the wire.
pub fn position_to_wire(position: Position) -> v1::Position {
    v1::Position { partition: u32::from(position.partition), offset: position.offset }
}

impl TryFrom<v1::Position> for Position {
    type Error = ConvertError;

    /// The partition must fit a `u16` (the log has at most 65536 partitions).
    fn try_from(position: v1::Position) -> Result<Self, ConvertError> {
        let partition = u16::try_from(position.partition).map_err(|_| {
            ConvertError::invalid(
                "position.partition",
                format!("is {}, it must be at most {}", position.partition, u16::MAX),
            )
        })?;
        Ok(Position { partition, offset: position.offset })
    }
}

/// Free text of at most [`SHORT_TEXT_MAX`] bytes (names, reasons, evidence); may be empty.
pub(crate) fn short_text(field: &'static str, value: &str) -> Result<Text, ConvertError> {
    Ok(Text::new(field, value, SHORT_TEXT_MAX)?)
}

/// Free text of at most [`LONG_TEXT_MAX`] bytes (summaries, descriptions, comments); may be empty.
pub(crate) fn long_text(field: &'static str, value: &str) -> Result<Text, ConvertError> {
    Ok(Text::new(field, value, LONG_TEXT_MAX)?)
}

pub(crate) fn money_to_wire(money: &Money) -> v1::Money {
    v1::Money { amount_minor: money.amount_minor, currency: money.currency.as_str().to_owned() }
}

/// The required `amount` of a command or event: an ISO 4217 currency and a positive amount, as
/// [`Money::positive`] (the constructor `decide` checks amounts with) accepts them.
pub(crate) fn amount_from_wire(money: Option<&v1::Money>) -> Result<Money, ConvertError> {
    let money = required("amount", money)?;
    let currency = Currency::new("amount.currency", &money.currency)?;
    Ok(Money::positive("amount.amount_minor", money.amount_minor, currency)?)
}

pub(crate) fn related_to_wire(related: &RelatedRef) -> v1::RelatedRef {
    use v1::related_ref::Target;
    let target = match related {
        RelatedRef::Promise(id) => Target::PromiseId(id.to_string()),
        RelatedRef::Complaint(id) => Target::ComplaintId(id.to_string()),
        RelatedRef::Order(id) => Target::OrderId(id.to_string()),
        RelatedRef::Interaction(id) => Target::InteractionId(id.to_string()),
    };
    v1::RelatedRef { target: Some(target) }
}

/// The `related_ref` of a command or event; a message without a target is `Missing`.
pub(crate) fn related_from_wire(related: &v1::RelatedRef) -> Result<RelatedRef, ConvertError> {
    use v1::related_ref::Target;
    Ok(match required("related_ref", related.target.as_ref())? {
        Target::PromiseId(id) => RelatedRef::Promise(PromiseId::parse_field("related_ref.promise_id", id)?),
        Target::ComplaintId(id) => {
            RelatedRef::Complaint(ComplaintId::parse_field("related_ref.complaint_id", id)?)
        }
        Target::OrderId(id) => RelatedRef::Order(OrderId::parse_field("related_ref.order_id", id)?),
        Target::InteractionId(id) => {
            RelatedRef::Interaction(InteractionId::parse_field("related_ref.interaction_id", id)?)
        }
    })
}

/// A required `related_ref` (apologies, compensations).
pub(crate) fn required_related(related: Option<&v1::RelatedRef>) -> Result<RelatedRef, ConvertError> {
    related_from_wire(required("related_ref", related)?)
}

/// An optional `related_ref` (promises, surveys): an absent message is `None`.
pub(crate) fn optional_related(related: Option<&v1::RelatedRef>) -> Result<Option<RelatedRef>, ConvertError> {
    related.map(related_from_wire).transpose()
}

pub(crate) fn contact_points_to_wire(points: &[ContactPoint]) -> Vec<v1::ContactPoint> {
    points
        .iter()
        .map(|point| v1::ContactPoint {
            kind: contact_kind_to_wire(point.kind),
            value: point.value.as_str().to_owned(),
        })
        .collect()
}

/// Contact points, each error naming its index: `contact_points[2].kind`.
pub(crate) fn contact_points_from_wire(
    field: &str,
    points: &[v1::ContactPoint],
) -> Result<Vec<ContactPoint>, ConvertError> {
    points
        .iter()
        .enumerate()
        .map(|(index, point)| {
            let value = Text::new("contact_points.value", point.value.as_str(), SHORT_TEXT_MAX)
                .map_err(|error| ConvertError::at(&format!("{field}[{index}].value"), error))?;
            Ok(ContactPoint {
                kind: contact_kind_from_wire(&format!("{field}[{index}].kind"), point.kind)?,
                value,
            })
        })
        .collect()
}

pub(crate) fn profile_changes_to_wire(changes: &ProfileChanges) -> v1::ProfileChanges {
    v1::ProfileChanges {
        name: changes.name.as_ref().map(|name| name.as_str().to_owned()),
        contact_points_changed: changes.contact_points.is_some(),
        contact_points: changes.contact_points.as_deref().map(contact_points_to_wire).unwrap_or_default(),
        locale: changes.locale.as_ref().map(ToString::to_string),
        timezone: changes.timezone.as_ref().map(|timezone| timezone.as_str().to_owned()),
        segment: changes.segment.as_ref().map(ToString::to_string),
    }
}

/// A profile update's `changes` (`field` is the message's own name, e.g. `changes`).
///
/// Shapes differ: the domain's `contact_points: Option<Vec<_>>` is the wire's
/// `contact_points_changed` flag plus the list (so "set to none" can be said); points without the
/// flag are refused rather than silently dropped. `locale` and `segment` are labels, which cannot
/// be empty, so an empty string means unchanged; `name` and `timezone` are free text, where an
/// empty string is a value (the domain decides whether it is allowed).
pub(crate) fn profile_changes_from_wire(
    changes: &v1::ProfileChanges,
) -> Result<ProfileChanges, ConvertError> {
    if !changes.contact_points_changed && !changes.contact_points.is_empty() {
        return Err(ConvertError::invalid(
            "changes.contact_points",
            "is set but contact_points_changed is false (set it to replace the contact points)",
        ));
    }
    Ok(ProfileChanges {
        name: changes.name.as_deref().map(|name| short_text("changes.name", name)).transpose()?,
        contact_points: if changes.contact_points_changed {
            Some(contact_points_from_wire("changes.contact_points", &changes.contact_points)?)
        } else {
            None
        },
        locale: optional(changes.locale.as_deref().unwrap_or_default(), |locale| {
            Label::parse_field("changes.locale", locale)
        })?,
        timezone: changes
            .timezone
            .as_deref()
            .map(|timezone| short_text("changes.timezone", timezone))
            .transpose()?,
        segment: optional(changes.segment.as_deref().unwrap_or_default(), |segment| {
            Label::parse_field("changes.segment", segment)
        })?,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn instants_round_trip_to_the_millisecond_and_refuse_bad_nanos() {
        let now = Timestamp::from_unix_millis_clamped(1_700_000_000_123);
        let wire = timestamp_to_wire(now);
        assert_eq!((wire.seconds, wire.nanos), (1_700_000_000, 123_000_000));
        assert_eq!(timestamp_from_wire("at", &wire).unwrap(), now);
        // Sub-millisecond precision is truncated.
        let fine = prost_types::Timestamp { seconds: 1, nanos: 999_999 };
        assert_eq!(timestamp_from_wire("at", &fine).unwrap().unix_millis(), 1000);

        let error =
            timestamp_from_wire("due_at", &prost_types::Timestamp { seconds: 1, nanos: -1 }).unwrap_err();
        assert!(matches!(&error, ConvertError::Invalid { field, .. } if field == "due_at"), "{error}");
        let before_1970 =
            timestamp_from_wire("header.occurred_at", &prost_types::Timestamp { seconds: -5, nanos: 0 });
        let error = before_1970.unwrap_err();
        assert!(error.to_string().starts_with("header.occurred_at: is -5000 ms"), "{error}");
        let overflow = timestamp_from_wire("due_at", &prost_types::Timestamp { seconds: i64::MAX, nanos: 0 });
        assert_eq!(overflow.unwrap_err().field(), Some("due_at"));
    }

    #[test]
    fn durations_are_signed_and_checked_for_shape() {
        for millis in [0, 1, 999, 1_500, 90_500, -1, -1_500] {
            let span = Span::from_millis(millis);
            assert_eq!(span_from_wire("grace", &span_to_wire(span)).unwrap(), span);
        }
        let wire = span_to_wire(Span::from_millis(-1_500));
        assert_eq!((wire.seconds, wire.nanos), (-1, -500_000_000));
        for (seconds, nanos) in [(1, -1), (-1, 1), (0, 1_000_000_000), (0, -1_000_000_000), (i64::MAX, 0)] {
            let error = span_from_wire("grace", &prost_types::Duration { seconds, nanos }).unwrap_err();
            assert_eq!(error.field(), Some("grace"), "{error}");
        }
    }

    #[test]
    fn positions_need_a_u16_partition() {
        let position = Position { partition: u16::MAX, offset: u64::MAX };
        assert_eq!(Position::try_from(position_to_wire(position)).unwrap(), position);
        let error = Position::try_from(v1::Position { partition: 65_536, offset: 0 }).unwrap_err();
        assert_eq!(error.field(), Some("position.partition"));
    }

    #[test]
    fn money_names_its_parts() {
        let money = |amount_minor, currency: &str| {
            amount_from_wire(Some(&v1::Money { amount_minor, currency: currency.into() }))
        };
        assert_eq!(money(150, "EUR").unwrap().amount_minor, 150);
        assert_eq!(money(150, "EURO").unwrap_err().field(), Some("amount.currency"));
        assert_eq!(money(150, "").unwrap_err().field(), Some("amount.currency"));
        assert_eq!(money(0, "EUR").unwrap_err().field(), Some("amount.amount_minor"));
        assert_eq!(money(-3, "EUR").unwrap_err().field(), Some("amount.amount_minor"));
        assert!(matches!(amount_from_wire(None), Err(ConvertError::Missing { field }) if field == "amount"));
    }

    #[test]
    fn references_name_their_target() {
        let empty = v1::RelatedRef { target: None };
        assert!(
            matches!(related_from_wire(&empty), Err(ConvertError::Missing { field }) if field == "related_ref")
        );
        assert_eq!(optional_related(None).unwrap(), None);
        let bad = v1::RelatedRef { target: Some(v1::related_ref::Target::OrderId("a b".into())) };
        assert_eq!(related_from_wire(&bad).unwrap_err().field(), Some("related_ref.order_id"));
    }

    #[test]
    fn contact_points_name_their_index() {
        let points = [
            v1::ContactPoint { kind: 1, value: "a@example.com".into() },
            v1::ContactPoint { kind: 0, value: "x".into() },
        ];
        let error = contact_points_from_wire("contact_points", &points).unwrap_err();
        assert!(
            matches!(&error, ConvertError::Missing { field } if field == "contact_points[1].kind"),
            "{error}"
        );
        let points = [v1::ContactPoint { kind: 1, value: "x".repeat(SHORT_TEXT_MAX + 1) }];
        let error = contact_points_from_wire("changes.contact_points", &points).unwrap_err();
        assert_eq!(error.field(), Some("changes.contact_points[0].value"));
    }

    #[test]
    fn profile_changes_keep_the_domain_shape() {
        let unchanged = v1::ProfileChanges { locale: Some(String::new()), ..Default::default() };
        assert_eq!(profile_changes_from_wire(&unchanged).unwrap(), ProfileChanges::default());
        let cleared = v1::ProfileChanges { contact_points_changed: true, ..Default::default() };
        assert_eq!(profile_changes_from_wire(&cleared).unwrap().contact_points, Some(Vec::new()));
        let unflagged = v1::ProfileChanges {
            contact_points: vec![v1::ContactPoint { kind: 1, value: "a@example.com".into() }],
            ..Default::default()
        };
        assert_eq!(
            profile_changes_from_wire(&unflagged).unwrap_err().field(),
            Some("changes.contact_points")
        );
        let bad_locale = v1::ProfileChanges { locale: Some("en GB".into()), ..Default::default() };
        assert_eq!(profile_changes_from_wire(&bad_locale).unwrap_err().field(), Some("changes.locale"));
    }

    proptest! {
        #[test]
        fn every_instant_in_range_round_trips(millis in 0..=Timestamp::MAX.unix_millis()) {
            let instant = Timestamp::from_unix_millis_clamped(millis);
            prop_assert_eq!(timestamp_from_wire("at", &timestamp_to_wire(instant)).unwrap(), instant);
        }

        #[test]
        fn every_span_round_trips(millis in any::<i64>()) {
            let span = Span::from_millis(millis);
            prop_assert_eq!(span_from_wire("grace", &span_to_wire(span)).unwrap(), span);
        }

        #[test]
        fn arbitrary_wire_instants_never_panic(seconds in any::<i64>(), nanos in any::<i32>()) {
            let _ = timestamp_from_wire("at", &prost_types::Timestamp { seconds, nanos });
            let _ = span_from_wire("grace", &prost_types::Duration { seconds, nanos });
        }
    }
}
