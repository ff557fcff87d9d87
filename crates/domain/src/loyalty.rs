//! Loyalty standing (DESIGN §5): a weighted composite of the measures a customer's history makes
//! available, re-normalised over those measures, capped while the customer is at risk. Pure: the
//! same history, trust and `as_of` always give the same answer.
//!
//! | measure | weight | 0–100 from |
//! |---|---|---|
//! | recency | 20 | `100·2^(−d/g)`: d = days since the last purchase, g = the customer's median gap between purchases (30 days with fewer than two) |
//! | frequency | 15 | purchases in the last 365 days against `frequency_reference` (default 12), capped at 100 |
//! | monetary | 10 | net spend (purchases − refunds) in the last 365 days against twice the segment's median annual spend (the median spender scores 50) |
//! | tenure | 5 | years since the first event against 5 years |
//! | NPS | 15 | decayed mean answer × 10 (answers halve in weight every 180 days) |
//! | CSAT | 10 | decayed mean, 1–5 mapped to 0–100 |
//! | CES | 5 | decayed mean, 1–7 mapped to 0–100 (7 = easiest) |
//! | trust | 20 | the trust score, skipped while trust is Unproven |
//!
//! `loyalty = Σ wᵢ·mᵢ / Σ wᵢ` over the available measures; below 50 available weight the answer is
//! "insufficient data". The score is capped at 49 and `at_risk` is set while a broken promise has
//! no recovery (no apology, compensation or kept fix for it), an NPS detractor answer (0–6) is
//! less than 90 days old, or an open complaint has a breached SLA.
//!
//! Lifecycle: `Prospect` before the first purchase; `Lapsed` when d > 3g, `Churned` when d > 6g
//! or after `CustomerChurned` (until a reactivation or a purchase); `WonBack` from the first
//! purchase after a lapse until the customer lapses again; otherwise `Active`.

use std::collections::{HashMap, HashSet};

use crate::events::{Event, RelatedRef, SurveyKind};
use crate::trust::{HistoryEvent, TrustBand, TrustStanding};
use crate::values::{Span, Timestamp};

/// Version of the model's rules, carried by every answer.
pub const LOYALTY_MODEL_VERSION: &str = "loyalty-v1";

const DAY_MS: f64 = 86_400_000.0;

/// The model's parameters (DESIGN §5 defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoyaltyParams {
    pub recency_weight: f64,
    pub frequency_weight: f64,
    pub monetary_weight: f64,
    pub tenure_weight: f64,
    pub nps_weight: f64,
    pub csat_weight: f64,
    pub ces_weight: f64,
    pub trust_weight: f64,
    /// Survey answers lose half their weight every this long.
    pub survey_half_life: Span,
    /// Below this much available weight the answer is "insufficient data".
    pub minimum_weight: f64,
    /// A detractor NPS answer younger than this puts the customer at risk.
    pub detractor_window: Span,
    /// The purchase gap assumed with fewer than two purchases.
    pub default_purchase_gap: Span,
    /// Purchases a year that score 100 on frequency.
    pub frequency_reference: f64,
    /// The segment's median annual net spend, in minor units (scores 50 on monetary).
    pub segment_median_spend_minor: i64,
    /// Annual spend from which a Champion is a VIP (the segment's top 20%); `None`: unknown.
    pub vip_spend_minor: Option<i64>,
    /// Years of tenure that score 100.
    pub tenure_reference_years: f64,
}

impl Default for LoyaltyParams {
    fn default() -> Self {
        Self {
            recency_weight: 20.0,
            frequency_weight: 15.0,
            monetary_weight: 10.0,
            tenure_weight: 5.0,
            nps_weight: 15.0,
            csat_weight: 10.0,
            ces_weight: 5.0,
            trust_weight: 20.0,
            survey_half_life: Span::from_days(180),
            minimum_weight: 50.0,
            detractor_window: Span::from_days(90),
            default_purchase_gap: Span::from_days(30),
            frequency_reference: 12.0,
            segment_median_spend_minor: 50_000,
            vip_spend_minor: None,
            tenure_reference_years: 5.0,
        }
    }
}

/// Where a customer's loyalty stands (stored by standing's band tracker: append variants only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LoyaltyBand {
    /// Less than `minimum_weight` of the measures available.
    InsufficientData,
    /// Below 20.
    Detached,
    /// 20–39.
    AtRisk,
    /// 40–59.
    Neutral,
    /// 60–79.
    Loyal,
    /// 80 and above.
    Champion,
}

impl LoyaltyBand {
    fn of(score: u8) -> Self {
        match score {
            80.. => LoyaltyBand::Champion,
            60..=79 => LoyaltyBand::Loyal,
            40..=59 => LoyaltyBand::Neutral,
            20..=39 => LoyaltyBand::AtRisk,
            _ => LoyaltyBand::Detached,
        }
    }
}

/// Where the customer is in their relationship (stored by standing's band tracker: append
/// variants only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Lifecycle {
    Prospect,
    Active,
    Lapsed,
    Churned,
    WonBack,
}

/// Why a customer is at risk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RiskReason {
    /// A broken promise with no apology, compensation or kept fix.
    UnrecoveredBrokenPromise(String),
    /// An NPS answer of 0–6 younger than the detractor window.
    RecentDetractor(Timestamp),
    /// An open complaint whose SLA was breached.
    ComplaintPastSla(String),
}

/// One measure of the composite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub name: &'static str,
    /// 0–100; `None` when the history does not support it.
    pub value: Option<f64>,
    pub weight: f64,
}

/// A customer's loyalty at an instant, with the measures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoyaltyStanding {
    pub model_version: &'static str,
    pub as_of: Timestamp,
    /// 0–100; `None` with insufficient data.
    pub score: Option<u8>,
    pub band: LoyaltyBand,
    pub lifecycle: Lifecycle,
    pub at_risk: bool,
    pub risk_reasons: Vec<RiskReason>,
    /// A Champion whose annual spend reaches `vip_spend_minor`.
    pub vip: bool,
    /// Every measure, available or not, in the order of the table above.
    pub measures: Vec<Measure>,
    /// Σ weights of the available measures.
    pub available_weight: f64,
}

fn days(span_ms: i64) -> f64 {
    span_ms as f64 / DAY_MS
}

fn decay(at: Timestamp, as_of: Timestamp, half_life: Span) -> f64 {
    let age = as_of.unix_millis().saturating_sub(at.unix_millis()).max(0) as f64;
    0.5f64.powf(age / half_life.millis().max(1) as f64)
}

/// Decayed mean of `(at, score)` answers.
fn decayed_mean(answers: &[(Timestamp, f64)], as_of: Timestamp, half_life: Span) -> Option<f64> {
    let (sum, weight) = answers.iter().fold((0.0, 0.0), |(sum, weight), (at, score)| {
        let w = decay(*at, as_of, half_life);
        (sum + w * score, weight + w)
    });
    (weight > 0.0).then(|| sum / weight)
}

fn median_gap_ms(purchases: &[Timestamp]) -> Option<f64> {
    let mut gaps: Vec<f64> =
        purchases.windows(2).map(|pair| (pair[1].unix_millis() - pair[0].unix_millis()) as f64).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    let middle = gaps.len() / 2;
    Some(if gaps.len() % 2 == 1 { gaps[middle] } else { (gaps[middle - 1] + gaps[middle]) / 2.0 })
}

/// The loyalty of a customer at `as_of`, from their history (events with `occurred_at` after
/// `as_of` are ignored; the rest are read in business-time order) and their trust at `as_of`.
pub fn loyalty<'a>(
    history: impl IntoIterator<Item = HistoryEvent<'a>>,
    as_of: Timestamp,
    trust: &TrustStanding,
    params: &LoyaltyParams,
) -> LoyaltyStanding {
    let mut events: Vec<HistoryEvent<'a>> =
        history.into_iter().filter(|event| event.occurred_at <= as_of).collect();
    events.sort_by_key(|event| event.occurred_at);

    let year_ago = as_of.unix_millis() - 365 * 86_400_000;
    let mut first_event: Option<Timestamp> = None;
    let mut purchases: Vec<Timestamp> = Vec::new();
    let mut spend_last_year: i64 = 0;
    let mut nps: Vec<(Timestamp, f64)> = Vec::new();
    let mut csat: Vec<(Timestamp, f64)> = Vec::new();
    let mut ces: Vec<(Timestamp, f64)> = Vec::new();
    let mut churned_at: Option<Timestamp> = None;
    let mut reactivated_at: Option<Timestamp> = None;
    let mut broken: Vec<String> = Vec::new();
    let mut recovered: HashSet<String> = HashSet::new();
    let mut recovery_promises: HashMap<String, String> = HashMap::new();
    let mut breached_open: HashSet<String> = HashSet::new();
    let mut detractor: Option<Timestamp> = None;
    let mut won_back = false;

    for event in &events {
        let at = event.occurred_at;
        first_event.get_or_insert(at);
        match event.event {
            Event::PurchaseRecorded { amount, .. } => {
                // A purchase after a lapse wins the customer back (until they lapse again).
                if let Some(last) = purchases.last().copied() {
                    let gap =
                        median_gap_ms(&purchases).unwrap_or(params.default_purchase_gap.millis() as f64);
                    if (at.unix_millis() - last.unix_millis()) as f64 > 3.0 * gap {
                        won_back = true;
                    }
                }
                purchases.push(at);
                if at.unix_millis() > year_ago {
                    spend_last_year = spend_last_year.saturating_add(amount.amount_minor);
                }
            }
            Event::RefundIssued { amount, .. } if at.unix_millis() > year_ago => {
                spend_last_year = spend_last_year.saturating_sub(amount.amount_minor);
            }
            Event::SurveyAnswered { kind, score, .. } => {
                let score = f64::from(*score);
                match kind {
                    SurveyKind::Nps => {
                        nps.push((at, score));
                        if score <= 6.0 {
                            detractor = Some(at);
                        }
                    }
                    SurveyKind::Csat => csat.push((at, score)),
                    SurveyKind::Ces => ces.push((at, score)),
                }
            }
            Event::CustomerChurned { .. } => churned_at = Some(at),
            Event::CustomerReactivated {} => reactivated_at = Some(at),
            Event::PromiseMade { promise_id, related_ref: Some(RelatedRef::Promise(failed)), .. } => {
                recovery_promises.insert(promise_id.to_string(), failed.to_string());
            }
            Event::PromiseKept { promise_id, .. } => {
                if let Some(failed) = recovery_promises.get(promise_id.as_str()) {
                    recovered.insert(failed.clone());
                }
            }
            Event::PromiseBroken { promise_id, .. } => broken.push(promise_id.to_string()),
            Event::ApologyIssued { related_ref: RelatedRef::Promise(promise_id) }
            | Event::CompensationGranted { related_ref: RelatedRef::Promise(promise_id), .. } => {
                recovered.insert(promise_id.to_string());
            }
            Event::SlaBreached { complaint_id, .. } => {
                breached_open.insert(complaint_id.to_string());
            }
            Event::ComplaintResolved { complaint_id, .. } => {
                breached_open.remove(complaint_id.as_str());
            }
            _ => {}
        }
    }

    let gap = median_gap_ms(&purchases).unwrap_or(params.default_purchase_gap.millis() as f64);
    let since_last = purchases.last().map(|last| (as_of.unix_millis() - last.unix_millis()) as f64);
    let purchases_last_year = purchases.iter().filter(|at| at.unix_millis() > year_ago).count() as f64;

    let recency = since_last.map(|d| 100.0 * 2f64.powf(-d / gap));
    let frequency = (!purchases.is_empty())
        .then(|| (100.0 * purchases_last_year / params.frequency_reference).min(100.0));
    let monetary = (!purchases.is_empty()).then(|| {
        let reference = 2.0 * params.segment_median_spend_minor.max(1) as f64;
        (100.0 * spend_last_year.max(0) as f64 / reference).min(100.0)
    });
    let tenure = first_event.map(|first| {
        (100.0 * days(as_of.unix_millis() - first.unix_millis()) / 365.0 / params.tenure_reference_years)
            .min(100.0)
    });
    let half_life = params.survey_half_life;
    let nps_measure = decayed_mean(&nps, as_of, half_life).map(|mean| mean * 10.0);
    let csat_measure = decayed_mean(&csat, as_of, half_life).map(|mean| (mean - 1.0) / 4.0 * 100.0);
    let ces_measure = decayed_mean(&ces, as_of, half_life).map(|mean| (mean - 1.0) / 6.0 * 100.0);
    let trust_measure = (trust.band != TrustBand::Unproven).then_some(f64::from(trust.score));

    // Float sums can land a hair outside 0–100.
    let bounded = |value: Option<f64>| value.map(|value| value.clamp(0.0, 100.0));
    let (recency, frequency, monetary, tenure) =
        (bounded(recency), bounded(frequency), bounded(monetary), bounded(tenure));
    let (nps_measure, csat_measure, ces_measure) =
        (bounded(nps_measure), bounded(csat_measure), bounded(ces_measure));
    let measures = vec![
        Measure { name: "recency", value: recency, weight: params.recency_weight },
        Measure { name: "frequency", value: frequency, weight: params.frequency_weight },
        Measure { name: "monetary", value: monetary, weight: params.monetary_weight },
        Measure { name: "tenure", value: tenure, weight: params.tenure_weight },
        Measure { name: "nps", value: nps_measure, weight: params.nps_weight },
        Measure { name: "csat", value: csat_measure, weight: params.csat_weight },
        Measure { name: "ces", value: ces_measure, weight: params.ces_weight },
        Measure { name: "trust", value: trust_measure, weight: params.trust_weight },
    ];
    let available_weight: f64 =
        measures.iter().filter(|measure| measure.value.is_some()).map(|m| m.weight).sum();
    let weighted: f64 =
        measures.iter().filter_map(|measure| measure.value.map(|value| value * measure.weight)).sum();

    let mut risk_reasons: Vec<RiskReason> = broken
        .iter()
        .filter(|promise| !recovered.contains(promise.as_str()))
        .map(|promise| RiskReason::UnrecoveredBrokenPromise(promise.clone()))
        .collect();
    if let Some(at) =
        detractor.filter(|at| as_of.unix_millis() - at.unix_millis() < params.detractor_window.millis())
    {
        risk_reasons.push(RiskReason::RecentDetractor(at));
    }
    let mut breached: Vec<&String> = breached_open.iter().collect();
    breached.sort();
    risk_reasons
        .extend(breached.into_iter().map(|complaint| RiskReason::ComplaintPastSla(complaint.clone())));
    let at_risk = !risk_reasons.is_empty();

    let score = (available_weight >= params.minimum_weight && available_weight > 0.0).then(|| {
        let raw = (weighted / available_weight).round().clamp(0.0, 100.0) as u8;
        if at_risk { raw.min(49) } else { raw }
    });
    let band = score.map_or(LoyaltyBand::InsufficientData, LoyaltyBand::of);
    let vip = band == LoyaltyBand::Champion
        && params.vip_spend_minor.is_some_and(|threshold| spend_last_year >= threshold);

    let churned_by_event = churned_at.is_some_and(|churned| {
        reactivated_at.is_none_or(|reactivated| reactivated < churned)
            && purchases.last().is_none_or(|last| *last < churned)
    });
    let lifecycle = match since_last {
        None if churned_by_event => Lifecycle::Churned,
        None => Lifecycle::Prospect,
        Some(_) if churned_by_event => Lifecycle::Churned,
        Some(d) if d > 6.0 * gap => Lifecycle::Churned,
        Some(d) if d > 3.0 * gap => Lifecycle::Lapsed,
        Some(_) if won_back => Lifecycle::WonBack,
        Some(_) => Lifecycle::Active,
    };

    LoyaltyStanding {
        model_version: LOYALTY_MODEL_VERSION,
        as_of,
        score,
        band,
        lifecycle,
        at_risk,
        risk_reasons,
        vip,
        measures,
        available_weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BreakDetection, ChurnReason};
    use crate::ids::{EventId, OrderId, PromiseId, SurveyId};
    use crate::trust::{TRUST_MODEL_VERSION, TrustParams, trust};
    use crate::values::{Currency, Money, Text};

    const NOW: i64 = 1_900_000_000_000;

    fn day(offset_days: i64) -> Timestamp {
        Timestamp::from_unix_millis_clamped(NOW + offset_days * 86_400_000)
    }

    fn purchase(order: &str, amount_minor: i64) -> Event {
        let currency = Currency::new("currency", "EUR").unwrap();
        Event::PurchaseRecorded {
            order_id: OrderId::new(order).unwrap(),
            amount: Money::positive("amount", amount_minor, currency).unwrap(),
        }
    }

    fn survey(kind: SurveyKind, score: u8) -> Event {
        Event::SurveyAnswered {
            survey_id: SurveyId::new(format!("s-{score}")).unwrap(),
            kind,
            score,
            comment: Text::new("comment", "", 10).unwrap(),
            related_ref: None,
        }
    }

    fn broken(promise: &str) -> Event {
        Event::PromiseBroken {
            promise_id: PromiseId::new(promise).unwrap(),
            detection: BreakDetection::CustomerReport,
            due_at: day(-20),
            detected_at: day(-20),
            reason: Text::new("reason", "", 10).unwrap(),
        }
    }

    fn trust_of(score: u8, band: TrustBand) -> TrustStanding {
        TrustStanding {
            model_version: TRUST_MODEL_VERSION,
            as_of: day(0),
            score,
            uncertainty: 0.2,
            band,
            positive: 0.0,
            negative: 0.0,
            contributors: Vec::new(),
        }
    }

    fn run(events: &[(Timestamp, Event)], trust: &TrustStanding, as_of: Timestamp) -> LoyaltyStanding {
        let ids: Vec<EventId> = events.iter().map(|_| EventId::new_v7()).collect();
        let history = events.iter().zip(&ids).map(|((at, event), id)| HistoryEvent {
            event_id: *id,
            occurred_at: *at,
            event,
        });
        loyalty(history, as_of, trust, &LoyaltyParams::default())
    }

    fn registered(at: Timestamp) -> (Timestamp, Event) {
        let command = crate::sample::register("Ada").unwrap();
        let crate::Command::RegisterCustomer {
            name,
            contact_points,
            locale,
            timezone,
            segment,
            source,
            tier,
        } = command
        else {
            unreachable!()
        };
        (at, Event::CustomerRegistered { name, contact_points, locale, timezone, segment, source, tier })
    }

    /// Registered a year ago, bought 60 and 30 days ago (50,000 each), NPS 9 today, trust Stable 60.
    fn steady_customer() -> Vec<(Timestamp, Event)> {
        vec![
            registered(day(-365)),
            (day(-60), purchase("o1", 50_000)),
            (day(-30), purchase("o2", 50_000)),
            (day(0), survey(SurveyKind::Nps, 9)),
        ]
    }

    #[test]
    fn a_new_customer_has_insufficient_data() {
        let standing = run(&[registered(day(0))], &trust_of(50, TrustBand::Unproven), day(0));
        assert_eq!(standing.score, None);
        assert_eq!(standing.band, LoyaltyBand::InsufficientData);
        assert_eq!(standing.lifecycle, Lifecycle::Prospect);
        assert_eq!(standing.available_weight, 5.0, "only tenure; trust is Unproven");
        assert_eq!(standing.model_version, LOYALTY_MODEL_VERSION);
    }

    #[test]
    fn the_worked_example_scores_58_neutral() {
        // recency 100·2^(−30/30) = 50 (w 20); frequency 2/12 → 16.67 (w 15); monetary
        // 100,000 / (2 × 50,000) → 100 (w 10); tenure 1/5 year → 20 (w 5); NPS 9 → 90 (w 15);
        // trust 60 (w 20); CSAT and CES unavailable. (1000 + 250 + 1000 + 100 + 1350 + 1200) / 85
        // = 57.6 → 58.
        let standing = run(&steady_customer(), &trust_of(60, TrustBand::Stable), day(0));
        assert_eq!(standing.available_weight, 85.0);
        assert_eq!(standing.score, Some(58));
        assert_eq!(standing.band, LoyaltyBand::Neutral);
        assert_eq!(standing.lifecycle, Lifecycle::Active);
        assert!(!standing.at_risk);
        let value = |name: &str| standing.measures.iter().find(|m| m.name == name).and_then(|m| m.value);
        assert_eq!(value("recency").map(f64::round), Some(50.0));
        assert_eq!(value("monetary"), Some(100.0));
        assert_eq!(value("csat"), None);
    }

    #[test]
    fn an_unrecovered_broken_promise_caps_at_49_until_an_apology() {
        let mut events = steady_customer();
        events.push((day(-20), broken("p1")));
        let trust = trust_of(60, TrustBand::Stable);
        let capped = run(&events, &trust, day(0));
        assert_eq!(capped.score, Some(49));
        assert!(capped.at_risk);
        assert_eq!(capped.risk_reasons, vec![RiskReason::UnrecoveredBrokenPromise("p1".into())]);
        events.push((
            day(-19),
            Event::ApologyIssued { related_ref: RelatedRef::Promise(PromiseId::new("p1").unwrap()) },
        ));
        let recovered = run(&events, &trust, day(0));
        assert_eq!(recovered.score, Some(58));
        assert!(!recovered.at_risk);
    }

    #[test]
    fn a_detractor_answer_puts_the_customer_at_risk_for_90_days() {
        let mut events = steady_customer();
        events.push((day(-10), survey(SurveyKind::Nps, 5)));
        let trust = trust_of(60, TrustBand::Stable);
        assert!(run(&events, &trust, day(0)).at_risk);
        assert!(
            !run(&events, &trust, day(81))
                .risk_reasons
                .iter()
                .any(|r| matches!(r, RiskReason::RecentDetractor(_)))
        );
    }

    #[test]
    fn lifecycle_lapses_churns_and_wins_back() {
        let events = steady_customer();
        let trust = trust_of(60, TrustBand::Stable);
        // The gap is 30 days: lapsed after 90 days without a purchase, churned after 180.
        assert_eq!(run(&events, &trust, day(50)).lifecycle, Lifecycle::Active);
        assert_eq!(run(&events, &trust, day(70)).lifecycle, Lifecycle::Lapsed);
        assert_eq!(run(&events, &trust, day(160)).lifecycle, Lifecycle::Churned);
        let mut back = events.clone();
        back.push((day(100), purchase("o3", 10_000)));
        assert_eq!(run(&back, &trust, day(101)).lifecycle, Lifecycle::WonBack);
        let mut churned = events;
        churned.push((day(1), Event::CustomerChurned { reason: ChurnReason::Price }));
        assert_eq!(run(&churned, &trust, day(2)).lifecycle, Lifecycle::Churned);
    }

    #[test]
    fn events_after_as_of_do_not_count_and_live_equals_replay() {
        let events = steady_customer();
        let fixed = trust_of(60, TrustBand::Stable);
        let before = run(&events[..3], &fixed, day(-1));
        assert_eq!(run(&events, &fixed, day(-1)), before);
        let ids: Vec<EventId> = events.iter().map(|_| EventId::new_v7()).collect();
        let history = || {
            events.iter().zip(&ids).map(|((at, event), id)| HistoryEvent {
                event_id: *id,
                occurred_at: *at,
                event,
            })
        };
        let real_trust = trust(history(), day(0), &TrustParams::default());
        assert_eq!(
            loyalty(history(), day(0), &real_trust, &LoyaltyParams::default()),
            loyalty(history().rev(), day(0), &real_trust, &LoyaltyParams::default()),
            "the order of the history does not matter, only business time"
        );
    }
}
