//! Standing's RocksDB: the projections and the consumer's checkpoints, written together.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `timeline` | customer ‖ 0 ‖ stream version (u64 BE) | the recorded event (without personal data) |
//! | `customers` | customer | [`CustomerRecord`] |
//! | `promises` | customer ‖ 0 ‖ promise id | [`PromiseRecord`] |
//! | `complaints` | customer ‖ 0 ‖ complaint id | [`ComplaintRecord`] |
//! | `meta` | `checkpoint/<partition>` | next offset to apply |
//!
//! Customer ids never contain a 0 byte, so `customer ‖ 0` is an exact prefix. [`StandingStore`]
//! is the consumer's [`EventSink`]: one `WriteBatch` per consumer batch holds every projection
//! change and the partition's new checkpoint.

use std::collections::HashMap;
use std::path::Path;

use covenant_bus::{EventSink, SinkError};
use covenant_domain::deadlines::{SlaPolicy, deadline_changes};
use covenant_domain::ids::CustomerId;
use covenant_domain::{RecordedEvent, Timestamp};
use covenant_store::{Result, Store, StoreError};

use crate::views::{
    ComplaintRecord, CustomerRecord, PromiseRecord, PromiseStatus, apply_clock_change, complaint_opened,
    promise_made, update_complaint, update_promise,
};

pub const TIMELINE: &str = "timeline";
pub const CUSTOMERS: &str = "customers";
pub const PROMISES: &str = "promises";
pub const COMPLAINTS: &str = "complaints";
const FAMILIES: [&str; 4] = [TIMELINE, CUSTOMERS, PROMISES, COMPLAINTS];

/// Most index entries one list request examines before it answers with a page token.
const MAX_SCAN: usize = 100_000;

/// Which promises a list wants.
#[derive(Debug, Clone, Default)]
pub struct PromiseFilter {
    pub customer_id: Option<CustomerId>,
    pub statuses: Vec<PromiseStatus>,
    pub overdue_only: bool,
    pub made_by: Option<String>,
    pub team: Option<String>,
    pub due_from: Option<Timestamp>,
    pub due_to: Option<Timestamp>,
}

impl PromiseFilter {
    fn accepts(&self, promise: &PromiseRecord, now: Timestamp) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&promise.status))
            && (!self.overdue_only || promise.overdue(now))
            && self.made_by.as_deref().is_none_or(|made_by| promise.made_by.as_str() == made_by)
            && self
                .team
                .as_deref()
                .is_none_or(|team| promise.team.as_ref().is_some_and(|t| t.as_str() == team))
            && self.due_from.is_none_or(|from| promise.due_at >= from)
            && self.due_to.is_none_or(|to| promise.due_at < to)
    }
}

/// A page of a list, and where the next one starts (`None`: no more).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Vec<u8>>,
}

/// The projections of standing.
#[derive(Debug, Clone)]
pub struct StandingStore {
    store: Store,
    policy: SlaPolicy,
}

fn customer_prefix(customer: &CustomerId) -> Vec<u8> {
    let mut key = Vec::with_capacity(customer.as_str().len() + 9);
    key.extend_from_slice(customer.as_str().as_bytes());
    key.push(0);
    key
}

fn timeline_key(customer: &CustomerId, version: u64) -> Vec<u8> {
    let mut key = customer_prefix(customer);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn child_key(customer: &CustomerId, id: &str) -> Vec<u8> {
    let mut key = customer_prefix(customer);
    key.extend_from_slice(id.as_bytes());
    key
}

impl StandingStore {
    /// Opens (creating when missing) the projections in `dir` for `partitions` partitions.
    pub fn open(dir: &Path, partitions: u16, policy: SlaPolicy) -> Result<Self> {
        Ok(Self { store: Store::open(dir, &FAMILIES, partitions)?, policy })
    }

    /// What the projections remember of `customer` (`None`: no event of theirs applied yet).
    pub fn customer(&self, customer: &CustomerId) -> Result<Option<CustomerRecord>> {
        self.store.get(CUSTOMERS, customer.as_str().as_bytes())
    }

    /// Every customer with at least one applied event, in id order.
    pub fn customer_ids(&self) -> Result<Vec<CustomerId>> {
        let mut ids = Vec::new();
        self.store.visit(CUSTOMERS, b"", b"", |key, _| {
            let id =
                std::str::from_utf8(key).ok().and_then(|key| CustomerId::new(key).ok()).ok_or_else(|| {
                    StoreError::Corrupt {
                        family: CUSTOMERS.into(),
                        reason: "a key is not a customer id".into(),
                    }
                })?;
            ids.push(id);
            Ok(true)
        })?;
        Ok(ids)
    }

    /// Up to `max` events of `customer` from stream version `from_version` on.
    pub fn timeline(
        &self,
        customer: &CustomerId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let prefix = customer_prefix(customer);
        let start = timeline_key(customer, from_version);
        Ok(self.store.scan(TIMELINE, &prefix, &start, max)?.into_iter().map(|(_, event)| event).collect())
    }

    /// Every event of `customer` applied so far, in stream order.
    pub fn history(&self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        self.timeline(customer, 0, usize::MAX)
    }

    /// A page of promises matching `filter`, after the key `after`.
    pub fn promises(
        &self,
        filter: &PromiseFilter,
        after: Option<&[u8]>,
        page_size: usize,
        now: Timestamp,
    ) -> Result<Page<PromiseRecord>> {
        let prefix = filter.customer_id.as_ref().map(customer_prefix).unwrap_or_default();
        self.page(PROMISES, &prefix, after, page_size, |promise: &PromiseRecord| filter.accepts(promise, now))
    }

    /// A page of open complaints (of `customer`, or everyone's), after the key `after`.
    pub fn open_complaints(
        &self,
        customer: Option<&CustomerId>,
        after: Option<&[u8]>,
        page_size: usize,
    ) -> Result<Page<ComplaintRecord>> {
        let prefix = customer.map(customer_prefix).unwrap_or_default();
        self.page(COMPLAINTS, &prefix, after, page_size, |complaint: &ComplaintRecord| complaint.open)
    }

    fn page<T: serde::de::DeserializeOwned>(
        &self,
        family: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        page_size: usize,
        accepts: impl Fn(&T) -> bool,
    ) -> Result<Page<T>> {
        let start = after.map(|after| [after, &[0]].concat()).unwrap_or_else(|| prefix.to_vec());
        let mut items = Vec::new();
        let mut next = None;
        let mut scanned = 0;
        self.store.visit(family, prefix, &start, |key, value| {
            scanned += 1;
            let item: T = covenant_store::decode(family, value)?;
            if accepts(&item) {
                items.push(item);
            }
            if items.len() >= page_size || scanned >= MAX_SCAN {
                next = Some(key.to_vec());
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(Page { items, next })
    }

    /// Applies consecutive events of `partition` and moves its checkpoint, in one write.
    pub fn apply_events(&self, partition: u16, events: &[RecordedEvent]) -> Result<()> {
        let Some(last) = events.last() else { return Ok(()) };
        let mut customers: HashMap<CustomerId, CustomerRecord> = HashMap::new();
        let mut promises: HashMap<Vec<u8>, PromiseRecord> = HashMap::new();
        let mut complaints: HashMap<Vec<u8>, ComplaintRecord> = HashMap::new();
        let mut batch = self.store.batch();
        for event in events {
            let customer_id = &event.customer_id;
            let occurred_at = event.metadata.occurred_at;
            batch.put(TIMELINE, &timeline_key(customer_id, event.stream_version), event)?;
            if !customers.contains_key(customer_id) {
                let record = self.customer(customer_id)?.unwrap_or_default();
                customers.insert(customer_id.clone(), record);
            }
            let Some(customer) = customers.get_mut(customer_id) else { continue };
            customer.stream_version = event.stream_version;
            customer.events_applied += 1;
            let changes =
                deadline_changes(&mut customer.watch, customer_id, &event.event, occurred_at, &self.policy);

            if let Some(promise) = promise_made(event) {
                promises.insert(child_key(customer_id, promise.promise_id.as_str()), promise);
            } else if let Some(promise_id) = event.event.promise_id() {
                let key = child_key(customer_id, promise_id.as_str());
                match load(&self.store, PROMISES, &mut promises, &key)? {
                    Some(promise) => update_promise(promise, &event.event, occurred_at),
                    None => {
                        tracing::warn!(customer = %customer_id, %promise_id, "event about an unknown promise")
                    }
                }
            }

            if let Some(complaint) = complaint_opened(event) {
                complaints.insert(child_key(customer_id, complaint.complaint_id.as_str()), complaint);
            }
            if let Some(complaint_id) = event.event.complaint_id() {
                let key = child_key(customer_id, complaint_id.as_str());
                match load(&self.store, COMPLAINTS, &mut complaints, &key)? {
                    Some(complaint) => {
                        update_complaint(complaint, &event.event, occurred_at);
                        for change in &changes {
                            apply_clock_change(complaint, change, occurred_at);
                        }
                    }
                    None => {
                        tracing::warn!(customer = %customer_id, %complaint_id, "event about an unknown complaint")
                    }
                }
            }
        }
        for (customer_id, record) in &customers {
            batch.put(CUSTOMERS, customer_id.as_str().as_bytes(), record)?;
        }
        for (key, record) in &promises {
            batch.put(PROMISES, key, record)?;
        }
        for (key, record) in &complaints {
            batch.put(COMPLAINTS, key, record)?;
        }
        batch.set_checkpoint(partition, last.position.offset + 1)?;
        batch.commit()
    }
}

/// The record under `key`: from this batch's changes, else from the store (then cached).
fn load<'a, T: serde::de::DeserializeOwned>(
    store: &Store,
    family: &str,
    cache: &'a mut HashMap<Vec<u8>, T>,
    key: &[u8],
) -> Result<Option<&'a mut T>> {
    if !cache.contains_key(key) {
        match store.get::<T>(family, key)? {
            Some(record) => {
                cache.insert(key.to_vec(), record);
            }
            None => return Ok(None),
        }
    }
    Ok(cache.get_mut(key))
}

impl EventSink for StandingStore {
    fn next_offset(&self, partition: u16) -> std::result::Result<u64, SinkError> {
        Ok(self.store.checkpoint(partition)?)
    }

    fn apply(&self, partition: u16, events: &[RecordedEvent]) -> std::result::Result<(), SinkError> {
        let started = std::time::Instant::now();
        self.apply_events(partition, events).map_err(|error: StoreError| -> SinkError { Box::new(error) })?;
        metrics::histogram!("covenant_projection_apply_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("covenant_projection_events_total").increment(events.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::testing::*;
    use covenant_domain::Event;
    use covenant_domain::events::SlaTarget;
    use covenant_domain::ids::PromiseId;

    fn open(dir: &Path) -> StandingStore {
        StandingStore::open(dir, 1, SlaPolicy::default()).unwrap()
    }

    #[test]
    fn events_of_one_batch_see_each_other_and_the_checkpoint_moves_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let promise_id = PromiseId::new("p-1").unwrap();
        let events = vec![
            recorded("alice", 1, at(0), promise("p-1", at(3600))),
            recorded(
                "alice",
                2,
                at(60),
                Event::PromiseKept { promise_id: promise_id.clone(), kept_at: at(60), evidence: no_text() },
            ),
            recorded("alice", 3, at(70), complaint("c-1")),
        ];
        store.apply_events(0, &events).unwrap();
        assert_eq!(store.store.checkpoint(0).unwrap(), 3);
        let alice = CustomerId::new("alice").unwrap();
        let filter = PromiseFilter { customer_id: Some(alice.clone()), ..Default::default() };
        let page = store.promises(&filter, None, 10, at(100)).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].status, PromiseStatus::Kept);
        assert_eq!(page.next, None);
        let complaints = store.open_complaints(Some(&alice), None, 10).unwrap();
        assert_eq!(complaints.items.len(), 1);
        assert_eq!(complaints.items[0].clocks.len(), 2);
        assert!(complaints.items[0].clocks.iter().any(|clock| clock.target == SlaTarget::FirstReply));
        assert_eq!(store.history(&alice).unwrap(), events);
        assert_eq!(store.timeline(&alice, 2, 10).unwrap(), events[1..].to_vec());
        let record = store.customer(&alice).unwrap().unwrap();
        assert_eq!((record.stream_version, record.events_applied), (3, 3));

        // Reopened, a later batch builds on what the first one stored.
        drop(store);
        let store = open(dir.path());
        let broken = recorded("alice", 4, at(100), promise("p-2", at(50)));
        store.apply_events(0, std::slice::from_ref(&broken)).unwrap();
        assert_eq!(store.store.checkpoint(0).unwrap(), 4);
        let overdue = PromiseFilter { overdue_only: true, ..Default::default() };
        let page = store.promises(&overdue, None, 10, at(200)).unwrap();
        assert_eq!(page.items.iter().map(|promise| promise.promise_id.as_str()).collect::<Vec<_>>(), ["p-2"]);
    }

    #[test]
    fn pages_resume_after_the_last_key_and_prefixes_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut events = Vec::new();
        for (index, customer) in ["al", "alice", "bob"].iter().enumerate() {
            for promise in 0..3 {
                let version = promise + 1;
                let mut event = recorded(
                    customer,
                    version,
                    at(0),
                    super::super::views::testing::promise(&format!("p-{promise}"), at(10)),
                );
                event.position.offset = (index * 3) as u64 + promise;
                events.push(event);
            }
        }
        store.apply_events(0, &events).unwrap();
        let al = PromiseFilter { customer_id: Some(CustomerId::new("al").unwrap()), ..Default::default() };
        assert_eq!(
            store.promises(&al, None, 100, at(0)).unwrap().items.len(),
            3,
            "al's prefix excludes alice"
        );
        let all = PromiseFilter::default();
        let mut after: Option<Vec<u8>> = None;
        let mut seen = Vec::new();
        loop {
            let page = store.promises(&all, after.as_deref(), 2, at(0)).unwrap();
            seen.extend(
                page.items
                    .into_iter()
                    .map(|promise| format!("{}/{}", promise.customer_id, promise.promise_id)),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 9);
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 9, "no promise twice across pages");
    }
}
