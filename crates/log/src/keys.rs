//! Key layouts. Every integer is big-endian so RocksDB's byte order is log order.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `events` | `[partition u16][offset u64]` | record (see `codec`) |
//! | `streams` | `customer_id` bytes | stream head (version, last offset, decision state) |
//! | `stream_index` | `[len u8][customer_id][version u64]` | offset u64 |
//! | `commands` | `[len u8][customer_id][command_id]` | command outcome |
//! | `keys` | `customer_id` | per-customer data key (written by the PII layer) |
//! | `meta` | ASCII name | small values: `partition_count` (u16), `format` (u8), cursors |
//!
//! Customer ids are length-prefixed in composite keys so that `ab` and `abc` never interleave.

use covenant_domain::ids::MAX_ID_LEN;

pub(crate) const CF_EVENTS: &str = "events";
pub(crate) const CF_STREAMS: &str = "streams";
pub(crate) const CF_STREAM_INDEX: &str = "stream_index";
pub(crate) const CF_COMMANDS: &str = "commands";
pub(crate) const CF_KEYS: &str = "keys";
pub(crate) const CF_META: &str = "meta";

/// Every column family the log uses.
pub(crate) const COLUMN_FAMILIES: [&str; 6] =
    [CF_EVENTS, CF_STREAMS, CF_STREAM_INDEX, CF_COMMANDS, CF_KEYS, CF_META];

pub(crate) const META_PARTITION_COUNT: &[u8] = b"partition_count";
pub(crate) const META_FORMAT: &[u8] = b"format";

/// Key of a named consumer cursor in `meta` (e.g. the relay's position in a partition).
pub(crate) fn cursor_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(7 + name.len());
    key.extend_from_slice(b"cursor/");
    key.extend_from_slice(name.as_bytes());
    key
}

/// Key of the record at `(partition, offset)`.
pub(crate) fn event_key(partition: u16, offset: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(&partition.to_be_bytes());
    key[2..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// Splits an `events` key into `(partition, offset)`.
pub(crate) fn parse_event_key(key: &[u8]) -> Option<(u16, u64)> {
    let partition = u16::from_be_bytes(key.get(..2)?.try_into().ok()?);
    let offset = u64::from_be_bytes(key.get(2..10)?.try_into().ok()?);
    (key.len() == 10).then_some((partition, offset))
}

fn customer_prefix(customer_id: &str, capacity: usize) -> Vec<u8> {
    debug_assert!(customer_id.len() <= MAX_ID_LEN);
    let mut key = Vec::with_capacity(1 + customer_id.len() + capacity);
    // Validated ids are at most 128 bytes, so the length fits in one byte.
    key.push(customer_id.len() as u8);
    key.extend_from_slice(customer_id.as_bytes());
    key
}

/// Prefix shared by every `stream_index` key of a customer.
pub(crate) fn stream_index_prefix(customer_id: &str) -> Vec<u8> {
    customer_prefix(customer_id, 8)
}

/// Key of a customer's event number `version` in `stream_index`.
pub(crate) fn stream_index_key(customer_id: &str, version: u64) -> Vec<u8> {
    let mut key = customer_prefix(customer_id, 8);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Key of a command outcome in `commands`.
pub(crate) fn command_key(customer_id: &str, command_id: &str) -> Vec<u8> {
    let mut key = customer_prefix(customer_id, command_id.len());
    key.extend_from_slice(command_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_partition_then_offset() {
        let keys =
            [event_key(0, 0), event_key(0, 1), event_key(0, 256), event_key(1, 0), event_key(1, u64::MAX)];
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(parse_event_key(&event_key(7, 123_456)), Some((7, 123_456)));
        assert_eq!(parse_event_key(b"short"), None);
    }

    #[test]
    fn stream_index_keys_of_one_customer_are_contiguous_and_ordered() {
        let a1 = stream_index_key("ab", 1);
        let a2 = stream_index_key("ab", 2);
        let b1 = stream_index_key("abc", 1);
        assert!(a1 < a2 && a2 < b1);
        assert!(a2.starts_with(&stream_index_prefix("ab")));
        assert!(!b1.starts_with(&stream_index_prefix("ab")));
    }
}
