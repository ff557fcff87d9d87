//! Band changes (pure): what `WatchStanding` streams.
//!
//! A customer's [`Snapshot`] is the part of their standing people act on: the trust band, and
//! the loyalty band, at-risk flag and lifecycle. The band tracker (`crate::tracker`) keeps each
//! customer's last snapshot; when a new evaluation differs, [`changes`] says what moved, and
//! each [`ChangeKind`] becomes one numbered [`BandChange`] in the store. A customer's first
//! evaluation is a change from nothing, so folding the whole sequence of changes gives every
//! customer's current snapshot.
//!
//! Scores move with every event; a change is recorded only when a band, the at-risk flag or the
//! lifecycle moves.

use covenant_domain::ids::{CustomerId, EventId};
use covenant_domain::loyalty::{
    LOYALTY_MODEL_VERSION, Lifecycle, LoyaltyBand, LoyaltyParams, LoyaltyStanding, loyalty,
};
use covenant_domain::trust::{TRUST_MODEL_VERSION, TrustBand, TrustParams, TrustStanding, history_of, trust};
use covenant_domain::{Position, RecordedEvent, Timestamp};
use serde::{Deserialize, Serialize};

/// A customer's trust and loyalty at `as_of`, from their stored history (events that happened
/// after `as_of` do not count).
pub fn standing_at(
    history: &[RecordedEvent],
    as_of: Timestamp,
    trust_params: &TrustParams,
    loyalty_params: &LoyaltyParams,
) -> (TrustStanding, LoyaltyStanding) {
    let trust = trust(history_of(history), as_of, trust_params);
    let standing = loyalty(history_of(history), as_of, &trust, loyalty_params);
    (trust, standing)
}

/// What the tracker remembers of a customer's standing at their last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub trust_band: TrustBand,
    pub trust_score: u8,
    pub loyalty_band: LoyaltyBand,
    pub loyalty_score: Option<u8>,
    pub at_risk: bool,
    pub lifecycle: Lifecycle,
}

impl Snapshot {
    pub fn of(trust: &TrustStanding, loyalty: &LoyaltyStanding) -> Self {
        Self {
            trust_band: trust.band,
            trust_score: trust.score,
            loyalty_band: loyalty.band,
            loyalty_score: loyalty.score,
            at_risk: loyalty.at_risk,
            lifecycle: loyalty.lifecycle,
        }
    }
}

/// One side of a loyalty change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyState {
    pub band: LoyaltyBand,
    pub score: Option<u8>,
    pub at_risk: bool,
    pub lifecycle: Lifecycle,
}

/// What moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The trust band moved (`from: None`: the customer's first evaluation).
    Trust { from: Option<(TrustBand, u8)>, to: (TrustBand, u8) },
    /// The loyalty band, the at-risk flag or the lifecycle moved (`from: None`: first evaluation).
    Loyalty { from: Option<LoyaltyState>, to: LoyaltyState },
}

impl ChangeKind {
    /// The version of the model whose answer moved.
    pub fn model_version(&self) -> &'static str {
        match self {
            ChangeKind::Trust { .. } => TRUST_MODEL_VERSION,
            ChangeKind::Loyalty { .. } => LOYALTY_MODEL_VERSION,
        }
    }
}

fn loyalty_state(snapshot: &Snapshot) -> LoyaltyState {
    LoyaltyState {
        band: snapshot.loyalty_band,
        score: snapshot.loyalty_score,
        at_risk: snapshot.at_risk,
        lifecycle: snapshot.lifecycle,
    }
}

/// What moved between the last snapshot (`None`: never evaluated) and the current one: a trust
/// change first, then a loyalty change; nothing when only scores moved.
pub fn changes(previous: Option<&Snapshot>, current: &Snapshot) -> Vec<ChangeKind> {
    let mut moved = Vec::new();
    let trust_now = (current.trust_band, current.trust_score);
    match previous {
        None => moved.push(ChangeKind::Trust { from: None, to: trust_now }),
        Some(before) if before.trust_band != current.trust_band => {
            moved.push(ChangeKind::Trust {
                from: Some((before.trust_band, before.trust_score)),
                to: trust_now,
            });
        }
        Some(_) => {}
    }
    let loyalty_now = loyalty_state(current);
    match previous.map(loyalty_state) {
        None => moved.push(ChangeKind::Loyalty { from: None, to: loyalty_now }),
        Some(before)
            if (before.band, before.at_risk, before.lifecycle)
                != (loyalty_now.band, loyalty_now.at_risk, loyalty_now.lifecycle) =>
        {
            moved.push(ChangeKind::Loyalty { from: Some(before), to: loyalty_now });
        }
        Some(_) => {}
    }
    moved
}

/// The event that made the tracker look at a customer again: their latest applied event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub event_id: EventId,
    pub event_type: String,
    pub position: Position,
    pub occurred_at: Timestamp,
}

impl Cause {
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            event_id: event.event_id,
            event_type: event.event_type().to_owned(),
            position: event.position,
            occurred_at: event.metadata.occurred_at,
        }
    }
}

/// One recorded change, numbered in the order the tracker saw it (from 1, no gaps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandChange {
    pub sequence: u64,
    pub customer_id: CustomerId,
    /// The instant the customer was evaluated at (their standing as of then).
    pub evaluated_at: Timestamp,
    /// `None`: time alone moved it (evidence decayed, a customer lapsed), found by a sweep.
    pub cause: Option<Cause>,
    pub kind: ChangeKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(trust_band: TrustBand, trust_score: u8, loyalty_band: LoyaltyBand) -> Snapshot {
        Snapshot {
            trust_band,
            trust_score,
            loyalty_band,
            loyalty_score: Some(50),
            at_risk: false,
            lifecycle: Lifecycle::Active,
        }
    }

    #[test]
    fn a_first_evaluation_records_both_models_from_nothing() {
        let now = snapshot(TrustBand::Unproven, 50, LoyaltyBand::InsufficientData);
        let moved = changes(None, &now);
        assert_eq!(
            moved,
            [
                ChangeKind::Trust { from: None, to: (TrustBand::Unproven, 50) },
                ChangeKind::Loyalty { from: None, to: loyalty_state(&now) },
            ]
        );
        assert_eq!(moved[0].model_version(), TRUST_MODEL_VERSION);
        assert_eq!(moved[1].model_version(), LOYALTY_MODEL_VERSION);
    }

    #[test]
    fn scores_alone_record_nothing() {
        let before = snapshot(TrustBand::Stable, 60, LoyaltyBand::Neutral);
        let mut now = snapshot(TrustBand::Stable, 70, LoyaltyBand::Neutral);
        now.loyalty_score = Some(58);
        assert_eq!(changes(Some(&before), &now), []);
        assert_eq!(changes(Some(&before), &before), []);
    }

    #[test]
    fn each_model_records_its_own_move() {
        let before = snapshot(TrustBand::Stable, 60, LoyaltyBand::Neutral);
        let trust_moved = snapshot(TrustBand::Broken, 7, LoyaltyBand::Neutral);
        assert_eq!(
            changes(Some(&before), &trust_moved),
            [ChangeKind::Trust { from: Some((TrustBand::Stable, 60)), to: (TrustBand::Broken, 7) }]
        );
        let loyalty_moved = snapshot(TrustBand::Stable, 61, LoyaltyBand::Loyal);
        assert_eq!(
            changes(Some(&before), &loyalty_moved),
            [ChangeKind::Loyalty { from: Some(loyalty_state(&before)), to: loyalty_state(&loyalty_moved) }]
        );
        let both = snapshot(TrustBand::Trusted, 80, LoyaltyBand::Champion);
        assert_eq!(changes(Some(&before), &both).len(), 2);
    }

    #[test]
    fn the_at_risk_flag_and_the_lifecycle_are_loyalty_changes() {
        let before = snapshot(TrustBand::Stable, 60, LoyaltyBand::Neutral);
        let mut at_risk = before;
        at_risk.at_risk = true;
        let mut lapsed = before;
        lapsed.lifecycle = Lifecycle::Lapsed;
        for now in [at_risk, lapsed] {
            assert_eq!(
                changes(Some(&before), &now),
                [ChangeKind::Loyalty { from: Some(loyalty_state(&before)), to: loyalty_state(&now) }]
            );
        }
    }
}
