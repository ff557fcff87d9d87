//! Conversions between the wire (`covenant.v1` protobuf) and the domain.
//!
//! From the wire: `TryFrom`, field by field, naming the field path as the caller wrote it
//! (`header.customer_id`, `amount.currency`, `promise_made.due_at`, …) when a value is missing,
//! unknown or invalid. The domain's own constructors do the validation; the rules that need the
//! customer's history (non-empty names, score scales, grace limits, …) stay in `decide`.
//! To the wire: plain functions and `From` impls that cannot fail.
//!
//! - [`enums`]: every enum both ways (`*_UNSPECIFIED` is "absent");
//! - `values`: timestamps, durations, positions, money, references, contact points;
//! - `commands`: the 27 command requests (and `BatchCommand`) ↔ [`CommandRequest`];
//! - `events`: [`RecordedEvent`](covenant_domain::RecordedEvent) ↔ the public `EventEnvelope`,
//!   with personal data left out on request ([`Pii::Redact`]).

mod commands;
pub mod enums;
mod events;
mod values;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;

pub use commands::{CommandRequest, header};
pub use events::{Pii, envelope};
pub use values::{position_to_wire, span_from_wire, span_to_wire, timestamp_from_wire, timestamp_to_wire};

use covenant_domain::DomainError;
use thiserror::Error;

/// A bad or missing field on the wire. The message starts with the field path:
/// `header.customer_id: must not be empty`, `tier: is required`, `channel: unknown enum value 42`.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// A required field is absent (or a required enum is left UNSPECIFIED).
    #[error("{field}: is required")]
    Missing { field: String },
    /// An enum number the API does not define.
    #[error("{field}: unknown enum value {value}")]
    UnknownEnum { field: String, value: i32 },
    /// A value out of range or malformed.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The domain refused a value (a field error names the field it was given).
    #[error("{}", domain_message(.0))]
    Domain(#[from] DomainError),
}

/// `field: problem` for a field error, like the other variants; the domain's words otherwise.
fn domain_message(error: &DomainError) -> String {
    match error {
        DomainError::InvalidField { field, problem } => format!("{field}: {problem}"),
        other => other.to_string(),
    }
}

impl ConvertError {
    /// The field path the error is about, when it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConvertError::Missing { field }
            | ConvertError::UnknownEnum { field, .. }
            | ConvertError::Invalid { field, .. } => Some(field),
            ConvertError::Domain(DomainError::InvalidField { field, .. }) => Some(field),
            ConvertError::Domain(_) => None,
        }
    }

    pub(crate) fn missing(field: impl Into<String>) -> Self {
        ConvertError::Missing { field: field.into() }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConvertError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// A domain refusal of the value found at `field` (a path built at run time, which the
    /// domain's `&'static str` field names cannot hold).
    pub(crate) fn at(field: &str, error: DomainError) -> Self {
        match error {
            DomainError::InvalidField { problem, .. } => ConvertError::invalid(field, problem.to_string()),
            other => ConvertError::Domain(other),
        }
    }

    /// The same error with its field path inside the message field `prefix`.
    pub(crate) fn within(self, prefix: &str) -> Self {
        let path = |field: &str| format!("{prefix}.{field}");
        match self {
            ConvertError::Missing { field } => ConvertError::Missing { field: path(&field) },
            ConvertError::UnknownEnum { field, value } => {
                ConvertError::UnknownEnum { field: path(&field), value }
            }
            ConvertError::Invalid { field, reason } => ConvertError::Invalid { field: path(&field), reason },
            ConvertError::Domain(DomainError::InvalidField { field, problem }) => {
                ConvertError::invalid(path(field), problem.to_string())
            }
            ConvertError::Domain(other) => ConvertError::Domain(other),
        }
    }
}

/// `Some(value)` or a [`ConvertError::Missing`] naming `field`.
pub(crate) fn required<T>(field: &str, value: Option<T>) -> Result<T, ConvertError> {
    value.ok_or_else(|| ConvertError::missing(field))
}

/// An optional string on the wire: `""` is `None`, anything else must parse.
pub(crate) fn optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, DomainError>,
) -> Result<Option<T>, ConvertError> {
    if value.is_empty() { Ok(None) } else { Ok(Some(parse(value)?)) }
}

/// The wire form of an optional value: its text, or `""` for `None`.
pub(crate) fn or_empty<T: ToString>(value: Option<&T>) -> String {
    value.map(ToString::to_string).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use covenant_domain::ids::CustomerId;

    use super::*;

    #[test]
    fn every_message_starts_with_the_field_path() {
        let domain = ConvertError::from(CustomerId::parse_field("header.customer_id", "").unwrap_err());
        assert_eq!(domain.to_string(), "header.customer_id: must not be empty");
        assert_eq!(domain.field(), Some("header.customer_id"));
        assert_eq!(ConvertError::missing("tier").to_string(), "tier: is required");
        let unknown = ConvertError::UnknownEnum { field: "channel".into(), value: 42 };
        assert_eq!(unknown.to_string(), "channel: unknown enum value 42");
        let other = ConvertError::Domain(DomainError::Rule("no".into()));
        assert_eq!((other.to_string().as_str(), other.field()), ("no", None));
    }

    #[test]
    fn within_and_at_rename_every_kind_of_field_error() {
        let nested =
            ConvertError::from(CustomerId::parse_field("due_at", "").unwrap_err()).within("promise_made");
        assert_eq!(nested.field(), Some("promise_made.due_at"));
        assert_eq!(nested.to_string(), "promise_made.due_at: must not be empty");
        assert_eq!(ConvertError::missing("kind").within("actor").field(), Some("actor.kind"));
        let at = ConvertError::at("contact_points[2].value", CustomerId::new("").unwrap_err());
        assert_eq!(at.to_string(), "contact_points[2].value: must not be empty");
    }
}
