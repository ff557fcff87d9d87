//! Value types: instants, durations, money and bounded free text.
//!
//! Instants are milliseconds since the Unix epoch (UTC) in business time; they encode as a
//! postcard varint and convert to and from protobuf `Timestamp` at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, FieldError};

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest instant accepted: 1970-01-01T00:00:00Z.
    pub const MIN: Timestamp = Timestamp(0);
    /// The latest instant accepted: 2200-01-01T00:00:00Z.
    pub const MAX: Timestamp = Timestamp(7_258_118_400_000);

    /// Validates that `unix_millis` lies between 1970 and 2200.
    pub fn from_unix_millis(field: &'static str, unix_millis: i64) -> Result<Self, DomainError> {
        if !(Self::MIN.0..=Self::MAX.0).contains(&unix_millis) {
            return Err(DomainError::invalid(
                field,
                FieldError::OutOfRange {
                    value: format!("{unix_millis} ms since the epoch"),
                    min: "1970-01-01".into(),
                    max: "2200-01-01".into(),
                },
            ));
        }
        Ok(Self(unix_millis))
    }

    /// An instant as stored: not range-checked, as its serde `Deserialize` (used by the log's
    /// view decoder, [`crate::view_decoder`]).
    pub(crate) const fn from_stored(unix_millis: i64) -> Self {
        Self(unix_millis)
    }

    /// An instant the caller vouches for (clocks, tests); clamped to the accepted range.
    pub const fn from_unix_millis_clamped(unix_millis: i64) -> Self {
        if unix_millis < Self::MIN.0 {
            Self::MIN
        } else if unix_millis > Self::MAX.0 {
            Self::MAX
        } else {
            Self(unix_millis)
        }
    }

    /// The system clock, now.
    pub fn now() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self::from_unix_millis_clamped(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// This instant moved by `span` (saturating at the accepted range).
    pub fn plus(self, span: Span) -> Self {
        Self::from_unix_millis_clamped(self.0.saturating_add(span.0))
    }

    /// The signed time from `earlier` to `self` (saturating: a forged record with an absurd
    /// date read back from disk cannot overflow it).
    pub fn since(self, earlier: Timestamp) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A signed length of time in milliseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Span(i64);

impl Span {
    /// No time at all.
    pub const ZERO: Span = Span(0);

    /// A span of `millis` milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// A span of `secs` seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// A span of `days` days.
    pub const fn from_days(days: i64) -> Self {
        Self(days.saturating_mul(86_400_000))
    }

    /// The span in milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Span({}ms)", self.0)
    }
}

/// An ISO 4217 currency code, three upper-case letters of an existing currency.
///
/// Encoded as its code (a string); decoding validates it without allocating.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl serde::de::Visitor<'_> for CodeVisitor {
            type Value = Currency;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an ISO 4217 currency code")
            }
            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Currency, E> {
                Currency::new("currency", code).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(CodeVisitor)
    }
}

impl Currency {
    /// Validates an ISO 4217 code such as `EUR`.
    pub fn new(field: &'static str, code: &str) -> Result<Self, DomainError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(DomainError::invalid_because(
                field,
                format!("{code:?} is not an ISO 4217 code (three upper-case letters such as EUR)"),
            ));
        }
        if iso_currency::Currency::from_code(code).is_none() {
            return Err(DomainError::invalid_because(field, format!("{code:?} is not an ISO 4217 currency")));
        }
        Ok(Self([bytes[0], bytes[1], bytes[2]]))
    }

    /// The three-letter code.
    pub fn as_str(&self) -> &str {
        // Only upper-case ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::new("currency", &code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> String {
        currency.as_str().to_owned()
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in the currency's minor unit (cents for EUR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

/// The largest amount accepted: 10^15 minor units (ten trillion euros).
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

impl Money {
    /// A strictly positive amount no larger than [`MAX_AMOUNT_MINOR`].
    pub fn positive(field: &'static str, amount_minor: i64, currency: Currency) -> Result<Self, DomainError> {
        if !(1..=MAX_AMOUNT_MINOR).contains(&amount_minor) {
            return Err(DomainError::invalid(
                field,
                FieldError::OutOfRange {
                    value: amount_minor.to_string(),
                    min: "1".into(),
                    max: MAX_AMOUNT_MINOR.to_string(),
                },
            ));
        }
        Ok(Self { amount_minor, currency })
    }
}

/// Free text with a byte limit (names, descriptions, comments). It may hold personal data.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Text(String);

/// Limit for short texts such as names and reasons.
pub const SHORT_TEXT_MAX: usize = 256;
/// Limit for long texts such as descriptions, summaries and comments.
pub const LONG_TEXT_MAX: usize = 4096;

impl Text {
    /// Text of at most `max` bytes; empty text is allowed.
    pub fn new(field: &'static str, value: impl Into<String>, max: usize) -> Result<Self, DomainError> {
        let value = value.into();
        if value.len() > max {
            return Err(DomainError::invalid(field, FieldError::TooLong { max, actual: value.len() }));
        }
        if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(DomainError::invalid_because(field, "contains control characters"));
        }
        Ok(Self(value))
    }

    /// Text read back from storage, already validated when it was recorded.
    pub(crate) fn from_stored(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// Non-empty text of at most `max` bytes.
    pub fn non_empty(field: &'static str, value: impl Into<String>, max: usize) -> Result<Self, DomainError> {
        let text = Self::new(field, value, max)?;
        if text.0.trim().is_empty() {
            return Err(DomainError::invalid(field, FieldError::Empty));
        }
        Ok(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Free text may be personal data: never print it in debug output.
        write!(f, "Text({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_between_absurd_instants_saturate_instead_of_overflowing() {
        // Such instants cannot be recorded, but a forged record could carry them.
        assert_eq!(Timestamp(i64::MAX).since(Timestamp(i64::MIN)), Span(i64::MAX));
        assert_eq!(Timestamp(i64::MIN).since(Timestamp(i64::MAX)), Span(i64::MIN));
    }

    #[test]
    fn timestamps_outside_1970_to_2200_are_refused_by_name() {
        assert!(
            Timestamp::from_unix_millis("occurred_at", -1).unwrap_err().to_string().contains("occurred_at")
        );
        assert!(Timestamp::from_unix_millis("due_at", Timestamp::MAX.unix_millis() + 1).is_err());
        assert!(Timestamp::from_unix_millis("due_at", 1_700_000_000_000).is_ok());
    }

    #[test]
    fn currency_must_be_a_real_iso_code() {
        assert_eq!(Currency::new("currency", "EUR").unwrap().as_str(), "EUR");
        assert!(Currency::new("currency", "eur").unwrap_err().to_string().contains("ISO 4217"));
        assert!(Currency::new("currency", "EURO").is_err());
        assert!(
            Currency::new("currency", "ZZZ").unwrap_err().to_string().contains("not an ISO 4217 currency")
        );
    }

    #[test]
    fn money_must_be_positive_and_bounded() {
        let eur = Currency::new("currency", "EUR").unwrap();
        assert!(Money::positive("amount_minor", 0, eur).is_err());
        assert!(Money::positive("amount_minor", -5, eur).is_err());
        assert!(Money::positive("amount_minor", MAX_AMOUNT_MINOR + 1, eur).is_err());
        assert_eq!(Money::positive("amount_minor", 1999, eur).unwrap().amount_minor, 1999);
    }

    #[test]
    fn text_limits_and_debug_hides_content() {
        assert!(Text::new("summary", "x".repeat(11), 10).is_err());
        assert!(Text::non_empty("name", "  ", 10).is_err());
        assert!(Text::new("summary", "a\u{0}b", 10).is_err());
        let secret = Text::new("name", "Ada Lovelace", 64).unwrap();
        assert_eq!(format!("{secret:?}"), "Text(12 bytes)");
    }
}
