//! Key layouts of the watchdog's store. Keys are big-endian so RocksDB order is the order the
//! scheduler needs: the `deadlines` family sorts by due instant first.
//!
//! | family | key | value |
//! |---|---|---|
//! | `watch` | `customer_id` | [`WatchState`](covenant_domain::deadlines::WatchState) |
//! | `deadlines` | `due_at ‖ customer_id ‖ 0 ‖ subject` | [`Deadline`] |
//! | `subjects` | `customer_id ‖ 0 ‖ subject` | the subject's current `deadlines` key (raw) |
//!
//! `due_at` is the Unix-millisecond instant as an `i64` with its sign bit flipped, big-endian, so
//! that instants before the epoch would still sort first. Identifiers never contain a 0 byte (the
//! identifier rule allows `[A-Za-z0-9._:@-]` only), so 0 separates the customer from the subject
//! unambiguously. The subject is a tag byte (`p` promise, `f` first reply, `r` resolution) and the
//! promise or complaint id.

use covenant_domain::deadlines::{Deadline, DeadlineSubject};
use covenant_domain::events::SlaTarget;
use covenant_domain::{CustomerId, Timestamp};

/// Column family of each customer's [`WatchState`](covenant_domain::deadlines::WatchState).
pub const WATCH: &str = "watch";
/// Column family of pending deadlines, in due order.
pub const DEADLINES: &str = "deadlines";
/// Column family mapping a subject to its current deadline key.
pub const SUBJECTS: &str = "subjects";
/// Every column family of the store (besides the store's own `meta`).
pub const FAMILIES: &[&str] = &[WATCH, DEADLINES, SUBJECTS];

/// The 8 sortable bytes of an instant.
pub fn instant_bytes(at: Timestamp) -> [u8; 8] {
    ((at.unix_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The instant whose [`instant_bytes`] start `key`, when `key` is long enough.
pub fn instant_of(key: &[u8]) -> Option<i64> {
    let bytes = <[u8; 8]>::try_from(key.get(..8)?).ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// `customer_id ‖ 0 ‖ subject`: the `watch`-independent identity of a deadline.
pub fn subject_key(customer_id: &CustomerId, subject: &DeadlineSubject) -> Vec<u8> {
    let (tag, id) = match subject {
        DeadlineSubject::Promise(id) => (b'p', id.as_str()),
        DeadlineSubject::Complaint(id, SlaTarget::FirstReply) => (b'f', id.as_str()),
        DeadlineSubject::Complaint(id, SlaTarget::Resolution) => (b'r', id.as_str()),
    };
    let mut key = Vec::with_capacity(customer_id.as_str().len() + 2 + id.len());
    key.extend_from_slice(customer_id.as_str().as_bytes());
    key.push(0);
    key.push(tag);
    key.extend_from_slice(id.as_bytes());
    key
}

/// `due_at ‖ customer_id ‖ 0 ‖ subject`.
pub fn deadline_key(deadline: &Deadline) -> Vec<u8> {
    let subject = subject_key(&deadline.customer_id, &deadline.subject);
    let mut key = Vec::with_capacity(8 + subject.len());
    key.extend_from_slice(&instant_bytes(deadline.due_at));
    key.extend_from_slice(&subject);
    key
}

#[cfg(test)]
mod tests {
    use covenant_domain::ids::{ComplaintId, PromiseId};

    use super::*;

    fn deadline(due: i64, customer: &str, subject: DeadlineSubject) -> Deadline {
        Deadline {
            due_at: Timestamp::from_unix_millis_clamped(due),
            customer_id: CustomerId::new(customer).unwrap(),
            subject,
        }
    }

    fn promise(id: &str) -> DeadlineSubject {
        DeadlineSubject::Promise(PromiseId::new(id).unwrap())
    }

    #[test]
    fn instants_sort_as_numbers_including_negative_ones() {
        let values = [i64::MIN, -86_400_000, -1, 0, 1, 1_000, 1_800_000_000_000, i64::MAX];
        let mut encoded: Vec<[u8; 8]> =
            values.iter().map(|&millis| ((millis as u64) ^ (1 << 63)).to_be_bytes()).collect();
        let sorted = encoded.clone();
        encoded.sort();
        assert_eq!(encoded, sorted);
        for (bytes, value) in encoded.iter().zip(values) {
            assert_eq!(instant_of(bytes), Some(value));
        }
        assert_eq!(instant_of(&[1, 2]), None);
    }

    #[test]
    fn deadline_keys_sort_by_due_instant_first() {
        let early = deadline_key(&deadline(1_000, "zed", promise("z")));
        let late = deadline_key(&deadline(2_000, "alice", promise("a")));
        let later = deadline_key(&deadline(1_000_000_000_000, "alice", promise("a")));
        assert!(early < late && late < later);
        assert_eq!(instant_of(&later), Some(1_000_000_000_000));
    }

    #[test]
    fn subjects_of_one_customer_never_collide() {
        let customer = CustomerId::new("c1").unwrap();
        let complaint = ComplaintId::new("x").unwrap();
        let keys = [
            subject_key(&customer, &promise("x")),
            subject_key(&customer, &DeadlineSubject::Complaint(complaint.clone(), SlaTarget::FirstReply)),
            subject_key(&customer, &DeadlineSubject::Complaint(complaint, SlaTarget::Resolution)),
            // A customer whose id extends another's cannot be confused with it: 0 ends the id.
            subject_key(&CustomerId::new("c1p").unwrap(), &promise("x")),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(deadline_key(&deadline(5, "c1", promise("x"))).ends_with(&keys[0]));
    }
}
