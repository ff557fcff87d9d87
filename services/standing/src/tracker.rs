//! The band tracker: turns applied events and the passing of time into numbered band changes,
//! the durable feed behind `Standing.WatchStanding`.
//!
//! It runs beside the projections, not inside them, so applying events stays as cheap as it was:
//! the projections' batch only marks the customers it touched (`band_dirty`, one entry per
//! customer per batch). The tracker then, on its own thread of the blocking pool:
//!
//! 1. reads up to [`CHUNK`] marks, evaluates each marked customer's trust and loyalty at now from
//!    their stored history, compares with their last [`Snapshot`] (`bands`) and records what
//!    moved ([`crate::bands::changes`]) as [`BandChange`]s numbered from the last one, together
//!    with the new snapshots and the deletion of exactly the marks it read, in one batch;
//! 2. every `sweep_every` (and once at start), evaluates every customer the same way, with no
//!    cause: evidence decays and customers lapse without any event.
//!
//! It is the only writer of `bands` and `band_changes`, so the sequence has no gaps and no
//! duplicates; a crash between evaluation and write loses nothing (the marks are still there)
//! and records nothing twice (the batch is atomic). After each write it publishes the last
//! sequence on a `watch` channel that `WatchStanding` streams follow.

use std::sync::Arc;
use std::time::Duration;

use covenant_domain::Timestamp;
use covenant_domain::ids::CustomerId;
use covenant_domain::loyalty::LoyaltyParams;
use covenant_domain::trust::TrustParams;
use covenant_store::Result;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::bands::{BandChange, Cause, Snapshot, changes, standing_at};
use crate::store::{Evaluated, StandingStore};

/// Customers (or marks) one write covers.
pub const CHUNK: usize = 500;

/// How the tracker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    /// How often every customer is evaluated again (changes that time alone makes).
    pub sweep_every: Duration,
    /// How long to wait after being woken before evaluating, so that a burst of batches about
    /// the same customers is one evaluation.
    pub settle: Duration,
    /// The most of one core the tracker uses (it rests after each chunk accordingly).
    pub max_share: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { sweep_every: Duration::from_secs(15 * 60), settle: Duration::from_secs(1), max_share: 0.25 }
    }
}

/// The evaluating half: store, models, and the next sequence to give out.
#[derive(Debug)]
pub struct BandTracker {
    store: StandingStore,
    trust: TrustParams,
    loyalty: LoyaltyParams,
    next_sequence: u64,
    published: watch::Sender<u64>,
}

impl BandTracker {
    /// A tracker continuing the store's sequence of band changes.
    pub fn new(store: StandingStore, trust: TrustParams, loyalty: LoyaltyParams) -> Result<Self> {
        let last = store.last_band_sequence()?;
        let (published, _) = watch::channel(last);
        Ok(Self { store, trust, loyalty, next_sequence: last + 1, published })
    }

    /// Follows the last recorded sequence (0: none yet).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Evaluates the customers of up to [`CHUNK`] marks at `now`; returns how many marks it
    /// consumed (fewer than [`CHUNK`]: there were no more).
    pub fn evaluate_marked(&mut self, now: Timestamp) -> Result<usize> {
        let dirty = self.store.dirty_customers(CHUNK)?;
        let consumed: Vec<Vec<u8>> =
            dirty.iter().flat_map(|customer| customer.keys.iter().cloned()).collect();
        let customers = dirty.into_iter().map(|customer| (customer.customer_id, Some(customer.cause)));
        self.evaluate(customers, &consumed, now)?;
        Ok(consumed.len())
    }

    /// Evaluates up to [`CHUNK`] customers after `after` at `now`, with no cause; returns the last
    /// one evaluated (`None`: the sweep is over).
    pub fn sweep_step(&mut self, after: Option<&CustomerId>, now: Timestamp) -> Result<Option<CustomerId>> {
        let customers = self.store.customer_ids_after(after, CHUNK)?;
        let last = customers.last().cloned();
        self.evaluate(customers.into_iter().map(|customer| (customer, None)), &[], now)?;
        Ok(last)
    }

    /// Evaluates every customer at `now` (a whole sweep).
    pub fn sweep(&mut self, now: Timestamp) -> Result<()> {
        let mut after = None;
        while let Some(last) = self.sweep_step(after.as_ref(), now)? {
            after = Some(last);
        }
        Ok(())
    }

    fn evaluate(
        &mut self,
        customers: impl Iterator<Item = (CustomerId, Option<Cause>)>,
        consumed: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<()> {
        let mut evaluated = Vec::new();
        let mut sequence = self.next_sequence;
        for (customer_id, cause) in customers {
            let history = self.store.history(&customer_id)?;
            if history.is_empty() {
                continue;
            }
            let (trust, loyalty) = standing_at(&history, now, &self.trust, &self.loyalty);
            let current = Snapshot::of(&trust, &loyalty);
            let previous = self.store.snapshot(&customer_id)?;
            if previous.as_ref() == Some(&current) {
                continue;
            }
            let moved = changes(previous.as_ref(), &current)
                .into_iter()
                .map(|kind| {
                    let change = BandChange {
                        sequence,
                        customer_id: customer_id.clone(),
                        evaluated_at: now,
                        cause: cause.clone(),
                        kind,
                    };
                    sequence += 1;
                    change
                })
                .collect();
            evaluated.push(Evaluated { customer_id, snapshot: Some(current), changes: moved });
        }
        if evaluated.is_empty() && consumed.is_empty() {
            return Ok(());
        }
        self.store.record_evaluations(&evaluated, consumed)?;
        let recorded = sequence - self.next_sequence;
        self.next_sequence = sequence;
        if recorded > 0 {
            metrics::counter!("covenant_band_changes_total").increment(recorded);
            self.published.send_replace(sequence - 1);
        }
        Ok(())
    }
}

/// What became of a pending sweep in one round.
enum Swept {
    /// Not run this round (marks came first): still pending as it was.
    NotRun(Option<Option<CustomerId>>),
    /// Run from after `.0`: the last customer swept (`None`: the sweep is over), or an error.
    Ran(Option<CustomerId>, Result<Option<CustomerId>>),
}

/// Runs `tracker` until `stopped` turns true: marked customers whenever the projections apply a
/// batch (`wake`, then `settle`), every customer every `sweep_every`, a chunk at a time, marks
/// first. After each round it rests so that it uses at most `max_share` of one core (a backlog of
/// marks or a sweep of many customers then delays band changes instead of slowing the
/// projections and the queries down). A store error is logged and retried a second later (the
/// marks stay until a write succeeds).
pub fn spawn(
    tracker: BandTracker,
    wake: Arc<Notify>,
    config: TrackerConfig,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tracker = Some(tracker);
        // Once at start: time passed while the service was down, and a store from before the
        // tracker has customers with no marks.
        let mut next_sweep = Instant::now();
        let mut sweep: Option<Option<CustomerId>> = None;
        let rest_factor = (1.0 / config.max_share.clamp(0.01, 1.0)) - 1.0;
        loop {
            if *stopped.borrow() {
                return;
            }
            if sweep.is_none() && Instant::now() >= next_sweep {
                sweep = Some(None);
            }
            let Some(mut owned) = tracker.take() else { return };
            let pending = sweep.take();
            let started = Instant::now();
            let outcome = tokio::task::spawn_blocking(move || {
                let now = Timestamp::now();
                let marked = owned.evaluate_marked(now);
                let swept = match (&marked, pending) {
                    (Ok(consumed), Some(after)) if *consumed < CHUNK => {
                        let result = owned.sweep_step(after.as_ref(), now);
                        Swept::Ran(after, result)
                    }
                    (_, pending) => Swept::NotRun(pending),
                };
                (owned, marked, swept)
            })
            .await;
            let (owned, marked, swept) = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(%error, "the band tracker's task failed; band changes stop");
                    return;
                }
            };
            tracker = Some(owned);
            let mut failure = None;
            match swept {
                Swept::NotRun(pending) => sweep = pending,
                Swept::Ran(_, Ok(Some(last))) => sweep = Some(Some(last)),
                Swept::Ran(_, Ok(None)) => next_sweep = Instant::now() + config.sweep_every,
                Swept::Ran(after, Err(error)) => {
                    sweep = Some(after);
                    failure = Some(error);
                }
            }
            let more_marks = match marked {
                Ok(consumed) => consumed >= CHUNK,
                Err(error) => {
                    failure = Some(error);
                    false
                }
            };
            if let Some(error) = failure {
                metrics::counter!("covenant_band_tracker_errors_total").increment(1);
                tracing::error!(%error, "the band tracker could not evaluate; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopped.changed() => return,
                }
            }
            let rest = started.elapsed().mul_f64(rest_factor);
            if !rest.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(rest) => {}
                    _ = stopped.changed() => return,
                }
            }
            if more_marks || sweep.is_some() {
                continue;
            }
            tokio::select! {
                () = wake.notified() => {
                    tokio::select! {
                        () = tokio::time::sleep(config.settle) => {}
                        _ = stopped.changed() => return,
                    }
                }
                () = tokio::time::sleep_until(next_sweep) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bands::{ChangeKind, LoyaltyState};
    use crate::views::testing::*;
    use covenant_domain::deadlines::SlaPolicy;
    use covenant_domain::events::BreakDetection;
    use covenant_domain::ids::PromiseId;
    use covenant_domain::loyalty::{Lifecycle, LoyaltyBand};
    use covenant_domain::trust::TrustBand;
    use covenant_domain::{Event, RecordedEvent, Span};
    use std::collections::HashMap;

    fn open(dir: &std::path::Path) -> (StandingStore, BandTracker) {
        let store = StandingStore::open(dir, 1, SlaPolicy::default()).unwrap();
        let tracker =
            BandTracker::new(store.clone(), TrustParams::default(), LoyaltyParams::default()).unwrap();
        (store, tracker)
    }

    fn broken(id: &str, at_seconds: i64) -> Event {
        Event::PromiseBroken {
            promise_id: PromiseId::new(id).unwrap(),
            detection: BreakDetection::Deadline,
            due_at: at(at_seconds),
            detected_at: at(at_seconds),
            reason: no_text(),
        }
    }

    fn offset(mut event: RecordedEvent, offset: u64) -> RecordedEvent {
        event.position.offset = offset;
        event
    }

    /// Every customer's bands from folding the changes in sequence order.
    fn fold(changes: &[BandChange]) -> HashMap<CustomerId, (Option<TrustBand>, Option<LoyaltyState>)> {
        let mut bands: HashMap<CustomerId, (Option<TrustBand>, Option<LoyaltyState>)> = HashMap::new();
        for change in changes {
            let entry = bands.entry(change.customer_id.clone()).or_default();
            match change.kind {
                ChangeKind::Trust { from, to } => {
                    assert_eq!(entry.0, from.map(|(band, _)| band), "a change starts where the last ended");
                    entry.0 = Some(to.0);
                }
                ChangeKind::Loyalty { from, to } => {
                    assert_eq!(entry.1.map(|state| state.band), from.map(|state| state.band));
                    entry.1 = Some(to);
                }
            }
        }
        bands
    }

    #[test]
    fn marks_survive_a_restart_and_are_consumed_in_the_database_too() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, mut tracker) = open(dir.path());
            let made = recorded("alice", 1, at(0), promise("p-1", at(3600)));
            let bob = offset(recorded("bob", 1, at(0), promise("p-9", at(3600))), 1);
            store.apply_events(0, &[made, bob]).unwrap();
            let carol = offset(recorded("carol", 1, at(0), promise("p-5", at(3600))), 2);
            store.apply_events(0, &[carol]).unwrap();
            // Only the first two are consumed before the "crash".
            let read = store.dirty_customers(2).unwrap();
            let consumed: Vec<Vec<u8>> = read.iter().flat_map(|customer| customer.keys.clone()).collect();
            tracker
                .evaluate(read.into_iter().map(|customer| (customer.customer_id, None)), &consumed, at(60))
                .unwrap();
        }
        let (store, _) = open(dir.path());
        let left: Vec<String> = store
            .dirty_customers(100)
            .unwrap()
            .into_iter()
            .map(|customer| customer.customer_id.to_string())
            .collect();
        assert_eq!(left, ["carol"], "the mark not consumed is reloaded; the consumed ones are gone on disk");
    }

    #[test]
    fn marked_customers_get_numbered_changes_with_their_cause_and_the_marks_go() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut tracker) = open(dir.path());
        let alice = CustomerId::new("alice").unwrap();
        let made = recorded("alice", 1, at(0), promise("p-1", at(3600)));
        let bob = offset(recorded("bob", 1, at(0), promise("p-9", at(3600))), 1);
        store.apply_events(0, &[made.clone(), bob]).unwrap();
        assert_eq!(store.dirty_customers(100).unwrap().len(), 2);

        let now = at(60);
        assert_eq!(tracker.evaluate_marked(now).unwrap(), 2);
        assert!(store.dirty_customers(100).unwrap().is_empty(), "the marks are consumed");
        let first = store.band_changes_after(0, 100).unwrap();
        assert_eq!(first.iter().map(|change| change.sequence).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(first[0].customer_id, alice);
        assert_eq!(first[0].kind, ChangeKind::Trust { from: None, to: (TrustBand::Unproven, 50) });
        assert_eq!(first[0].cause.as_ref().map(|cause| cause.event_id), Some(made.event_id));
        assert_eq!(first[0].evaluated_at, now);
        assert!(matches!(first[1].kind, ChangeKind::Loyalty { from: None, .. }));
        assert_eq!(*tracker.subscribe().borrow(), 4);

        // Nothing new: nothing recorded.
        assert_eq!(tracker.evaluate_marked(now).unwrap(), 0);
        assert_eq!(store.last_band_sequence().unwrap(), 4);

        // Alice's promise breaks: her trust falls to Broken (one broken promise: 7).
        let broke = offset(recorded("alice", 2, at(3700), broken("p-1", 3600)), 2);
        store.apply_events(0, std::slice::from_ref(&broke)).unwrap();
        assert_eq!(tracker.evaluate_marked(at(3800)).unwrap(), 1);
        let second = store.band_changes_after(4, 100).unwrap();
        let trust: Vec<_> =
            second.iter().filter(|change| matches!(change.kind, ChangeKind::Trust { .. })).collect();
        assert_eq!(trust.len(), 1, "{second:#?}");
        assert_eq!(trust[0].sequence, 5);
        assert_eq!(
            trust[0].kind,
            ChangeKind::Trust { from: Some((TrustBand::Unproven, 50)), to: (TrustBand::Broken, 7) }
        );
        assert_eq!(trust[0].cause.as_ref().map(|cause| cause.event_id), Some(broke.event_id));
        assert_eq!(trust[0].cause.as_ref().map(|cause| cause.position), Some(broke.position));
        assert_eq!(store.band_changes_after(0, 2).unwrap().len(), 2, "the limit holds");

        let all = store.band_changes_after(0, 100).unwrap();
        let folded = fold(&all);
        for customer in store.customer_ids().unwrap() {
            let snapshot = store.snapshot(&customer).unwrap().unwrap();
            assert_eq!(folded[&customer].0, Some(snapshot.trust_band));
            assert_eq!(folded[&customer].1.map(|state| state.band), Some(snapshot.loyalty_band));
        }

        // A new tracker on the reopened store continues the sequence.
        drop((tracker, store));
        let (store, mut tracker) = open(dir.path());
        let kept = offset(
            recorded(
                "bob",
                2,
                at(100),
                Event::PromiseBroken {
                    promise_id: PromiseId::new("p-9").unwrap(),
                    detection: BreakDetection::CustomerReport,
                    due_at: at(3600),
                    detected_at: at(100),
                    reason: no_text(),
                },
            ),
            3,
        );
        store.apply_events(0, &[kept]).unwrap();
        tracker.evaluate_marked(at(200)).unwrap();
        let third = store.band_changes_after(all.len() as u64, 100).unwrap();
        assert!(!third.is_empty());
        assert_eq!(third[0].sequence, all.len() as u64 + 1, "no gap, no reuse across restarts");
    }

    #[test]
    fn a_sweep_finds_what_time_alone_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut tracker) = open(dir.path());
        let events = vec![
            recorded("carol", 1, at(0), promise("p-1", at(60))),
            offset(recorded("carol", 2, at(100), broken("p-1", 60)), 1),
        ];
        store.apply_events(0, &events).unwrap();
        tracker.evaluate_marked(at(200)).unwrap();
        let before = store.last_band_sequence().unwrap();
        let snapshot = store.snapshot(&CustomerId::new("carol").unwrap()).unwrap().unwrap();
        assert_eq!(snapshot.trust_band, TrustBand::Broken);

        // Years later the broken promise has decayed away: back to Unproven, found by a sweep.
        let much_later = at(200).plus(Span::from_days(5 * 365));
        tracker.sweep(much_later).unwrap();
        let moved = store.band_changes_after(before, 100).unwrap();
        let trust: Vec<_> =
            moved.iter().filter(|change| matches!(change.kind, ChangeKind::Trust { .. })).collect();
        assert_eq!(trust.len(), 1, "{moved:#?}");
        assert!(matches!(
            trust[0].kind,
            ChangeKind::Trust { from: Some((TrustBand::Broken, _)), to: (TrustBand::Unproven, _) }
        ));
        assert_eq!(trust[0].cause, None, "time alone moved it");
        // A second sweep at the same instant records nothing.
        let after = store.last_band_sequence().unwrap();
        tracker.sweep(much_later).unwrap();
        assert_eq!(store.last_band_sequence().unwrap(), after);
    }

    #[test]
    fn a_sweep_covers_customers_with_no_marks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut tracker) = open(dir.path());
        let mut events = Vec::new();
        for (index, name) in ["a", "b", "c"].iter().enumerate() {
            events.push(offset(recorded(name, 1, at(0), promise("p", at(60))), index as u64));
        }
        store.apply_events(0, &events).unwrap();
        // As a store from before the tracker: marks gone, no snapshots.
        let marks: Vec<Vec<u8>> =
            store.dirty_customers(100).unwrap().into_iter().flat_map(|c| c.keys).collect();
        store.record_evaluations(&[], &marks).unwrap();
        tracker.sweep(at(10)).unwrap();
        let changes = store.band_changes_after(0, 100).unwrap();
        assert_eq!(changes.len(), 6, "trust and loyalty of each of three customers");
        assert!(changes.iter().all(|change| change.cause.is_none()));
        for name in ["a", "b", "c"] {
            let snapshot = store.snapshot(&CustomerId::new(name).unwrap()).unwrap().unwrap();
            assert_eq!(snapshot.lifecycle, Lifecycle::Prospect);
            assert_eq!(snapshot.loyalty_band, LoyaltyBand::InsufficientData);
        }
    }

    #[test]
    fn marks_written_after_a_read_survive_its_write() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _tracker) = open(dir.path());
        store.apply_events(0, &[recorded("dave", 1, at(0), promise("p-1", at(60)))]).unwrap();
        let read = store.dirty_customers(100).unwrap();
        // The projections apply another batch before the tracker writes.
        store.apply_events(0, &[offset(recorded("dave", 2, at(10), broken("p-1", 60)), 1)]).unwrap();
        let consumed: Vec<Vec<u8>> = read.into_iter().flat_map(|customer| customer.keys).collect();
        store.record_evaluations(&[], &consumed).unwrap();
        let left = store.dirty_customers(100).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].cause.position.offset, 1, "the later mark waits for the next round");
    }

    #[test]
    fn marks_of_one_customer_collapse_to_the_latest_cause() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _tracker) = open(dir.path());
        store.apply_events(0, &[recorded("erin", 1, at(0), promise("p-1", at(60)))]).unwrap();
        store.apply_events(0, &[offset(recorded("erin", 2, at(10), broken("p-1", 60)), 1)]).unwrap();
        let dirty = store.dirty_customers(100).unwrap();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].keys.len(), 2);
        assert_eq!(dirty[0].cause.position.offset, 1);
        assert_eq!(dirty[0].cause.event_type, "promise_broken");
    }
}
