#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Properties of the standing models over random histories (DESIGN §5): answers stay in range,
//! depend only on business time (not on the order events were recorded in, so a late-logged call
//! and a replay give the live answer), recovery never gives back more than a failure took, and
//! decay moves trust toward the prior.

use covenant_domain::events::{BreakDetection, CompensationKind, Event, PromiseKind, RelatedRef, SurveyKind};
use covenant_domain::ids::{ActorId, EventId, OrderId, PromiseId, SurveyId};
use covenant_domain::loyalty::{LoyaltyParams, loyalty};
use covenant_domain::trust::{HistoryEvent, SortedHistory, TrustParams, trust};
use covenant_domain::values::{Currency, Money, Span, Text, Timestamp};
use proptest::prelude::*;

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis_clamped(millis)
}

fn text() -> Text {
    Text::new("text", "", 10).unwrap()
}

fn pid(n: u8) -> PromiseId {
    PromiseId::new(format!("p{n}")).unwrap()
}

/// One step of a random history; promise numbers are small so steps refer to each other.
#[derive(Debug, Clone)]
enum Step {
    Make { promise: u8, due_in_days: i64, recovers: Option<u8> },
    Keep { promise: u8, late_days: i64 },
    Partial { promise: u8, permille: u16 },
    Break { promise: u8 },
    Renegotiate { promise: u8, consented: bool },
    Apologize { promise: u8 },
    Compensate { promise: u8 },
    Purchase { amount: i64 },
    Survey { kind: u8, score: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6, 0i64..30, proptest::option::of(0u8..6))
            .prop_map(|(promise, due_in_days, recovers)| Step::Make { promise, due_in_days, recovers }),
        (0u8..6, -5i64..5).prop_map(|(promise, late_days)| Step::Keep { promise, late_days }),
        (0u8..6, 1u16..1000).prop_map(|(promise, permille)| Step::Partial { promise, permille }),
        (0u8..6).prop_map(|promise| Step::Break { promise }),
        (0u8..6, any::<bool>()).prop_map(|(promise, consented)| Step::Renegotiate { promise, consented }),
        (0u8..6).prop_map(|promise| Step::Apologize { promise }),
        (0u8..6).prop_map(|promise| Step::Compensate { promise }),
        (1i64..100_000).prop_map(|amount| Step::Purchase { amount }),
        (0u8..3, 0u8..11).prop_map(|(kind, score)| Step::Survey { kind, score }),
    ]
}

/// Events at business times: each step `(days after T0, step)`.
fn history() -> impl Strategy<Value = Vec<(i64, Step)>> {
    proptest::collection::vec((0i64..400, step()), 0..40)
}

fn event(day: i64, step: &Step) -> Event {
    let when = T0 + day * DAY;
    match step {
        Step::Make { promise, due_in_days, recovers } => Event::PromiseMade {
            promise_id: pid(*promise),
            kind: if recovers.is_some() { PromiseKind::Fix } else { PromiseKind::Callback },
            description: text(),
            made_by: ActorId::new("agent").unwrap(),
            due_at: at(when + due_in_days * DAY),
            grace: Span::from_secs(3600),
            related_ref: recovers.map(|failed| RelatedRef::Promise(pid(failed))),
        },
        Step::Keep { promise, late_days } => Event::PromiseKept {
            promise_id: pid(*promise),
            kept_at: at(when + late_days * DAY),
            evidence: text(),
        },
        Step::Partial { promise, permille } => Event::PromisePartiallyKept {
            promise_id: pid(*promise),
            fraction_permille: *permille,
            evidence: text(),
        },
        Step::Break { promise } => Event::PromiseBroken {
            promise_id: pid(*promise),
            detection: BreakDetection::CustomerReport,
            due_at: at(when),
            detected_at: at(when),
            reason: text(),
        },
        Step::Renegotiate { promise, consented } => Event::PromiseRenegotiated {
            promise_id: pid(*promise),
            previous_due_at: at(when),
            new_due_at: at(when + 7 * DAY),
            customer_consented: *consented,
        },
        Step::Apologize { promise } => {
            Event::ApologyIssued { related_ref: RelatedRef::Promise(pid(*promise)) }
        }
        Step::Compensate { promise } => Event::CompensationGranted {
            related_ref: RelatedRef::Promise(pid(*promise)),
            kind: CompensationKind::Credit,
            amount: Money::positive("amount", 500, Currency::new("currency", "EUR").unwrap()).unwrap(),
        },
        Step::Purchase { amount } => Event::PurchaseRecorded {
            order_id: OrderId::new(format!("o{day}")).unwrap(),
            amount: Money::positive("amount", *amount, Currency::new("currency", "EUR").unwrap()).unwrap(),
        },
        Step::Survey { kind, score } => {
            let kind = [SurveyKind::Nps, SurveyKind::Csat, SurveyKind::Ces][usize::from(*kind)];
            let (low, high) = kind.scale();
            Event::SurveyAnswered {
                survey_id: SurveyId::new(format!("s{day}")).unwrap(),
                kind,
                score: (*score).clamp(low, high),
                comment: text(),
                related_ref: None,
            }
        }
    }
}

struct Recorded {
    ids: Vec<EventId>,
    times: Vec<Timestamp>,
    events: Vec<Event>,
}

impl Recorded {
    fn new(steps: &[(i64, Step)]) -> Self {
        Self {
            ids: steps.iter().map(|_| EventId::new_v7()).collect(),
            times: steps.iter().map(|(day, _)| at(T0 + day * DAY)).collect(),
            events: steps.iter().map(|(day, step)| event(*day, step)).collect(),
        }
    }

    /// The history in the order given by `order` (indices), as the models read it.
    fn in_order<'a>(&'a self, order: &'a [usize]) -> impl Iterator<Item = HistoryEvent<'a>> + 'a {
        order.iter().map(|&index| HistoryEvent {
            event_id: self.ids[index],
            occurred_at: self.times[index],
            event: &self.events[index],
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A live history recorded in any order (late-logged calls) and a replay of it sorted by
    /// business time give the same trust and loyalty at every instant; later events never count.
    #[test]
    fn answers_depend_on_business_time_only(steps in history(), seed in any::<u64>(), as_of_day in 0i64..500) {
        let recorded = Recorded::new(&steps);
        let count = steps.len();
        // The recording (stream) order: any permutation — calls logged late arrive after events
        // that happened later.
        let mut live: Vec<usize> = (0..count).collect();
        live.sort_by_key(|&index| (index as u64).wrapping_mul(seed | 1).rotate_left(17));
        // A replay reads the same stream sorted by business time (same-instant events keep their
        // stream order).
        let mut replay = live.clone();
        replay.sort_by_key(|&index| recorded.times[index]);
        let as_of = at(T0 + as_of_day * DAY);
        let params = TrustParams::default();
        let replayed = trust(recorded.in_order(&replay), as_of, &params);
        let lived = trust(recorded.in_order(&live), as_of, &params);
        prop_assert_eq!(&replayed, &lived);
        let prefix: Vec<usize> = replay.iter().copied().filter(|&index| recorded.times[index] <= as_of).collect();
        prop_assert_eq!(&trust(recorded.in_order(&prefix), as_of, &params), &replayed);
        let loyal = LoyaltyParams::default();
        prop_assert_eq!(
            loyalty(recorded.in_order(&replay), as_of, &replayed, &loyal),
            loyalty(recorded.in_order(&live), as_of, &lived, &loyal)
        );
    }

    /// A history sorted once and asked at several instants (the audit's trust before and after
    /// each break) answers what the model answers of the history at each instant.
    #[test]
    fn a_sorted_history_answers_as_the_model_at_every_instant(
        steps in history(), seed in any::<u64>(), days in proptest::collection::vec(-5i64..500, 1..6),
    ) {
        let recorded = Recorded::new(&steps);
        let mut live: Vec<usize> = (0..steps.len()).collect();
        live.sort_by_key(|&index| (index as u64).wrapping_mul(seed | 1).rotate_left(17));
        let sorted = SortedHistory::new(recorded.in_order(&live));
        let params = TrustParams::default();
        let mut instants = Vec::new();
        let mut expected_scores = Vec::new();
        for day in days {
            // Whole days and a millisecond before one: an event's own instant counts.
            for as_of in [at(T0 + day * DAY), at(T0 + day * DAY - 1)] {
                let expected = trust(recorded.in_order(&live), as_of, &params);
                prop_assert_eq!(sorted.score(as_of, &params), expected.score);
                prop_assert_eq!(&sorted.trust(as_of, &params), &expected);
                instants.push(as_of);
                expected_scores.push(expected.score);
            }
        }
        // Every instant at once, from one walk, in the order asked (not sorted).
        prop_assert_eq!(sorted.scores(&instants, &params), expected_scores);
    }

    /// Scores stay in 0–100, uncertainty in (0, 1], loyalty within its bounds and its cap.
    #[test]
    fn answers_stay_in_range(steps in history(), as_of_day in 0i64..800, k in 3.0f64..=12.0) {
        let recorded = Recorded::new(&steps);
        let order: Vec<usize> = (0..steps.len()).collect();
        let params = TrustParams { negativity: k, ..TrustParams::default() };
        let as_of = at(T0 + as_of_day * DAY);
        let standing = trust(recorded.in_order(&order), as_of, &params);
        prop_assert!(standing.score <= 100);
        prop_assert!(standing.uncertainty > 0.0 && standing.uncertainty <= 1.0);
        prop_assert!(standing.positive >= 0.0 && standing.negative >= 0.0);
        prop_assert!(standing.contributors.len() <= 5);
        let loyal = loyalty(recorded.in_order(&order), as_of, &standing, &LoyaltyParams::default());
        if let Some(score) = loyal.score {
            prop_assert!(score <= 100);
            if loyal.at_risk {
                prop_assert!(score <= 49);
            }
        }
        for measure in &loyal.measures {
            if let Some(value) = measure.value {
                prop_assert!((0.0..=100.0).contains(&value), "{} = {}", measure.name, value);
            }
        }
    }

    /// Recovery never gives back more than the failure took: the positive evidence a broken
    /// promise's apology, compensation and kept fix add is at most 0.7 of the negative evidence
    /// the break added (and a recovery promise adds nothing as an ordinary kept promise).
    #[test]
    fn recovery_never_exceeds_the_failure(steps in history(), apologize in any::<bool>(), compensate in any::<bool>(), fix in any::<bool>()) {
        let mut without: Vec<(i64, Step)> = steps.into_iter().filter(|(_, step)| !matches!(step,
            Step::Make { promise: 9, .. } | Step::Keep { promise: 9, .. } | Step::Break { promise: 9 })).collect();
        without.sort_by_key(|(day, _)| *day);
        let mut with = without.clone();
        with.push((401, Step::Make { promise: 9, due_in_days: 0, recovers: None }));
        with.push((402, Step::Break { promise: 9 }));
        if apologize {
            with.push((403, Step::Apologize { promise: 9 }));
        }
        if compensate {
            with.push((404, Step::Compensate { promise: 9 }));
        }
        if fix {
            with.push((405, Step::Make { promise: 10, due_in_days: 5, recovers: Some(9) }));
            with.push((406, Step::Keep { promise: 10, late_days: 0 }));
        }
        let as_of = at(T0 + 410 * DAY);
        let standing = |steps: &[(i64, Step)]| {
            let recorded = Recorded::new(steps);
            let order: Vec<usize> = (0..steps.len()).collect();
            trust(recorded.in_order(&order), as_of, &TrustParams::default())
        };
        let (with, without) = (standing(&with), standing(&without));
        let taken = with.negative - without.negative;
        let given_back = with.positive - without.positive;
        prop_assert!(taken > 0.0, "the break adds negative evidence");
        prop_assert!(given_back >= -1e-9 && given_back <= 0.7 * taken + 1e-9, "gave back {given_back} for {taken}");
        if !(apologize || compensate || fix) {
            prop_assert!(with.score <= without.score);
        }
    }

    /// With nothing new happening, evidence fades: uncertainty grows, and a history of only kept
    /// (only broken) promises drifts down (up) toward the prior 50.
    #[test]
    fn decay_moves_toward_the_prior(kept in 0usize..15, broken in 0usize..3, later in 1i64..2000) {
        let good = kept > 0 && broken == 0;
        let bad = kept == 0 && broken > 0;
        let mut steps = Vec::new();
        for n in 0..kept {
            steps.push((0, Step::Make { promise: n as u8, due_in_days: 10, recovers: None }));
            steps.push((1, Step::Keep { promise: n as u8, late_days: 0 }));
        }
        for n in 0..broken {
            steps.push((0, Step::Make { promise: 100 + n as u8, due_in_days: 0, recovers: None }));
            steps.push((1, Step::Break { promise: 100 + n as u8 }));
        }
        let recorded = Recorded::new(&steps);
        let order: Vec<usize> = (0..steps.len()).collect();
        let now = trust(recorded.in_order(&order), at(T0 + 2 * DAY), &TrustParams::default());
        let then = trust(recorded.in_order(&order), at(T0 + (2 + later) * DAY), &TrustParams::default());
        prop_assert!(then.uncertainty >= now.uncertainty);
        if good {
            prop_assert!(then.score <= now.score && then.score >= 50);
        }
        if bad {
            prop_assert!(then.score >= now.score && then.score <= 50);
        }
    }
}
