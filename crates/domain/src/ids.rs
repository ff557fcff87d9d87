//! Identifiers: the caller's strings for customers, promises, complaints, orders and commands,
//! and UUIDv7 event ids; plus the fixed hash that puts a customer in a partition.
//!
//! Every caller-supplied identifier follows one rule: 1–128 bytes of `[A-Za-z0-9._:@-]`.
//! The rule keeps ids safe in RocksDB keys, NATS subjects, CSV and log lines alike.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, FieldError};

/// Longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// `ID_BYTES[b]` is true when `b` may appear in an identifier (one table lookup per byte: ids
/// are checked on every decode of a record, so this is on the read path).
const ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-');
        byte += 1;
    }
    table
};

fn is_id_byte(byte: u8) -> bool {
    ID_BYTES[usize::from(byte)]
}

/// Checks the identifier rule and names the field when it is broken.
pub fn validate_id(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.is_empty() {
        return Err(DomainError::invalid(field, FieldError::Empty));
    }
    if value.len() > MAX_ID_LEN {
        return Err(DomainError::invalid(
            field,
            FieldError::TooLong { max: MAX_ID_LEN, actual: value.len() },
        ));
    }
    if let Some(position) = value.bytes().position(|b| !is_id_byte(b)) {
        return Err(DomainError::invalid(field, FieldError::BadCharacter { position }));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        ///
        /// Stored inline (no allocation) up to 24 bytes. Deserializing validates the rule too.
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = CompactString::deserialize(deserializer)?;
                validate_id($field, &value).map_err(serde::de::Error::custom)?;
                Ok(Self(value))
            }
        }

        impl $name {
            /// The field name used in error messages.
            pub const FIELD: &'static str = $field;

            /// Validates `value` against the identifier rule.
            pub fn new(value: impl AsRef<str>) -> Result<Self, DomainError> {
                Self::parse_field($field, value)
            }

            /// Validates `value`, naming `field` (the caller's name for it) in the error.
            pub fn parse_field(field: &'static str, value: impl AsRef<str>) -> Result<Self, DomainError> {
                let value = value.as_ref();
                validate_id(field, value)?;
                Ok(Self(CompactString::from(value)))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Hashes and compares as its text, so maps keyed by the id can be searched with a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.into_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// A customer, as the calling system names them. The customer is the consistency boundary.
    CustomerId,
    "customer_id"
);
string_id!(
    /// The caller's id for a command; a retry with the same id returns the first result.
    CommandId,
    "command_id"
);
string_id!(
    /// A promise made to a customer, unique within that customer.
    PromiseId,
    "promise_id"
);
string_id!(
    /// A complaint, unique within its customer.
    ComplaintId,
    "complaint_id"
);
string_id!(
    /// An interaction (call, email, chat, …).
    InteractionId,
    "interaction_id"
);
string_id!(
    /// An order in the commerce system, unique within its customer.
    OrderId,
    "order_id"
);
string_id!(
    /// A survey invitation, answered at most once per customer.
    SurveyId,
    "survey_id"
);
string_id!(
    /// A person or system acting: an agent id, an integration name, a customer id.
    ActorId,
    "actor.id"
);
string_id!(
    /// A team (support tier, shop, call centre, …).
    TeamId,
    "team"
);
string_id!(
    /// A short machine label: segment, source, platform, consent purpose, correlation id.
    Label,
    "label"
);

impl CustomerId {
    /// The partition this customer's stream lives in, for a log of `partition_count`
    /// partitions: `xxh3_64(customer_id bytes) % partition_count`.
    ///
    /// The hash is fixed and documented (never a randomly keyed hasher) so that every process,
    /// language and future version agrees on where a customer lives.
    pub fn partition(&self, partition_count: u16) -> u16 {
        partition_of(self.as_str(), partition_count)
    }
}

/// `xxh3_64(customer_id) % partition_count`; `partition_count` must be at least 1.
pub fn partition_of(customer_id: &str, partition_count: u16) -> u16 {
    let count = u64::from(partition_count.max(1));
    // The remainder is below `partition_count`, which fits in u16.
    (xxhash_rust::xxh3::xxh3_64(customer_id.as_bytes()) % count) as u16
}

/// A recorded event's id: a UUIDv7, so ids sort roughly by creation time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub uuid::Uuid);

impl EventId {
    /// A fresh UUIDv7 from the system clock.
    pub fn new_v7() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(CustomerId::new("cust-42.eu:acme@shop_1").is_ok());
        assert!(CustomerId::new("a".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters_naming_the_field() {
        let empty = CustomerId::new("").unwrap_err().to_string();
        assert!(empty.contains("customer_id") && empty.contains("empty"), "{empty}");
        let long = PromiseId::new("a".repeat(MAX_ID_LEN + 1)).unwrap_err().to_string();
        assert!(long.contains("promise_id") && long.contains("129"), "{long}");
        let space = OrderId::new("a b").unwrap_err().to_string();
        assert!(space.contains("order_id") && space.contains("position 1"), "{space}");
        assert!(CustomerId::new("é").is_err());
        assert!(CustomerId::new("a/b").is_err());
    }

    #[test]
    fn partition_hash_is_the_documented_xxh3() {
        // Golden values: changing the hash would move every customer to another partition.
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b"alice"), 5_593_767_425_381_308_080);
        assert_eq!(partition_of("alice", 8), (5_593_767_425_381_308_080_u64 % 8) as u16);
        assert_eq!(partition_of("alice", 1), 0);
    }

    #[test]
    fn partition_is_always_in_range() {
        for count in [1u16, 2, 7, 8, 1024] {
            for i in 0..500 {
                assert!(partition_of(&format!("c{i}"), count) < count);
            }
        }
    }
}
