//! gRPC `Standing`: queries over the projections, with read-your-writes (`min_position`).
//!
//! Store reads run on the blocking pool. Trust and loyalty are computed by the pure models of
//! `covenant_domain::{trust, loyalty}` from the customer's stored history at the asked instant,
//! so the live answer and a replay of the log always agree. Organisation metrics are computed by
//! the pure `covenant_domain::org_metrics` from the facts the projections hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use covenant_bus::Consumer;
use covenant_bus::consumer::WaitError;
use covenant_domain::ids::CustomerId;
use covenant_domain::loyalty::{Lifecycle, LoyaltyBand, LoyaltyParams, LoyaltyStanding, RiskReason};
use covenant_domain::org_metrics::{
    CesMetrics, ComplaintMetrics, CsatMetrics, DurationSummary, GroupBy, GroupMetrics, NpsMetrics,
    PromiseMetrics, ResponsivenessTier, SlaMetrics, Window, org_metrics,
};
use covenant_domain::trust::{TrustBand, TrustParams, history_of, trust};
use covenant_domain::{RecordedEvent, Span, Timestamp};
use covenant_proto::convert::enums::{
    break_detection_to_wire, channel_to_wire, complaint_category_to_wire, priority_to_wire,
    promise_kind_to_wire, severity_to_wire, sla_target_to_wire,
};
use covenant_proto::convert::{Pii, envelope, span_to_wire, timestamp_from_wire, timestamp_to_wire};
use covenant_proto::v1::{self, standing_server};
use covenant_store::StoreError;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::bands::{BandChange, ChangeKind, standing_at};
use crate::store::{Page, PromiseFilter, StandingStore};
use crate::views::{ComplaintRecord, PromiseRecord, PromiseStatus};

/// How long a query waits for `min_position` when the request does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// The longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Page sizes of the lists.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;
/// The longest window `GetOrgMetrics` accepts.
pub const MAX_METRICS_WINDOW_DAYS: i64 = 400;

/// The `Standing` service.
#[derive(Debug, Clone)]
pub struct StandingApi {
    store: StandingStore,
    consumer: Arc<Consumer>,
    trust_params: TrustParams,
    loyalty_params: LoyaltyParams,
    /// The last band change the tracker recorded.
    band_changes: watch::Receiver<u64>,
}

/// Band changes one store read hands to a `WatchStanding` stream.
const WATCH_CHUNK: usize = 256;

impl StandingApi {
    pub fn new(
        store: StandingStore,
        consumer: Arc<Consumer>,
        trust_params: TrustParams,
        loyalty_params: LoyaltyParams,
        band_changes: watch::Receiver<u64>,
    ) -> Self {
        Self { store, consumer, trust_params, loyalty_params, band_changes }
    }

    /// Waits until every position of `consistency` is applied.
    async fn consistent(&self, consistency: Option<&v1::ReadConsistency>) -> Result<(), Status> {
        let Some(consistency) = consistency else { return Ok(()) };
        let wait = match consistency.wait_ms {
            0 => DEFAULT_WAIT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        if wait > MAX_WAIT {
            return Err(Status::invalid_argument(format!(
                "consistency.wait_ms: {} ms is more than the longest wait, {} ms",
                wait.as_millis(),
                MAX_WAIT.as_millis()
            )));
        }
        let deadline = Instant::now() + wait;
        for position in &consistency.min_position {
            let left = deadline.saturating_duration_since(Instant::now());
            self.consumer.wait_applied(position.partition, position.offset, left).await.map_err(|error| match error {
                WaitError::NoSuchPartition { .. } => Status::invalid_argument(format!("consistency.min_position: {error}")),
                WaitError::Lagging { partition, wanted, reached, .. } => Status::unavailable(format!(
                    "standing has not yet applied partition {partition} offset {wanted}: it is at offset {reached} ({} events behind) after waiting {} ms; retry later",
                    wanted + 1 - reached,
                    wait.as_millis()
                )),
                WaitError::Stopped(_) => Status::unavailable(error.to_string()),
            })?;
        }
        Ok(())
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(StandingStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || read(store))
            .await
            .map_err(|error| Status::internal(format!("the store read task failed: {error}")))?
            .map_err(|error| store_status(&error))
    }
}

/// The gRPC status of a store error.
pub fn store_status(error: &StoreError) -> Status {
    let code = match error {
        StoreError::Corrupt { .. } => Code::DataLoss,
        StoreError::PartitionMismatch { .. } => Code::FailedPrecondition,
        _ => Code::Unavailable,
    };
    tracing::error!(%error, "store error answering a request");
    Status::new(code, error.to_string())
}

fn customer_id(field: &str, value: &str) -> Result<CustomerId, Status> {
    CustomerId::new(value).map_err(|error| Status::invalid_argument(format!("{field}: {error}")))
}

fn optional_customer(value: &str) -> Result<Option<CustomerId>, Status> {
    if value.is_empty() { Ok(None) } else { customer_id("customer_id", value).map(Some) }
}

fn page_size(field: &str, requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(DEFAULT_PAGE as usize),
        size if size <= MAX_PAGE => Ok(size as usize),
        size => Err(Status::invalid_argument(format!(
            "{field}: {size} is more than the largest page, {MAX_PAGE}"
        ))),
    }
}

fn page_token(token: &str) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument("page_token: not a token this service gave out");
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    (0..token.len())
        .step_by(2)
        .map(|index| {
            token.get(index..index + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()).ok_or_else(invalid)
        })
        .collect::<Result<Vec<u8>, Status>>()
        .map(Some)
}

fn next_token(next: Option<Vec<u8>>) -> String {
    next.map(|key| key.iter().map(|byte| format!("{byte:02x}")).collect()).unwrap_or_default()
}

fn optional_timestamp(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<Timestamp>, Status> {
    value
        .map(|value| timestamp_from_wire(field, value))
        .transpose()
        .map_err(|error| Status::invalid_argument(error.to_string()))
}

fn band_to_wire(band: TrustBand) -> i32 {
    (match band {
        TrustBand::Unproven => v1::TrustBand::Unproven,
        TrustBand::Broken => v1::TrustBand::Broken,
        TrustBand::Strained => v1::TrustBand::Strained,
        TrustBand::Stable => v1::TrustBand::Stable,
        TrustBand::Trusted => v1::TrustBand::Trusted,
    }) as i32
}

/// Where a customer sorts in the at-risk list: at risk first, then lowest loyalty (no score
/// last), then lowest trust, then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AtRiskKey {
    not_at_risk: u8,
    loyalty: u16,
    trust: u16,
    customer: String,
}

impl AtRiskKey {
    fn token(&self) -> String {
        format!("{}.{}.{}.{}", self.not_at_risk, self.loyalty, self.trust, self.customer)
    }
}

fn at_risk_token(token: &str) -> Result<Option<AtRiskKey>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument("page_token: not a token this service gave out");
    let mut parts = token.splitn(4, '.');
    let mut number = || parts.next().and_then(|part| part.parse::<u16>().ok()).ok_or_else(invalid);
    let (not_at_risk, loyalty, trust) = (number()?, number()?, number()?);
    let customer = parts.next().filter(|customer| !customer.is_empty()).ok_or_else(invalid)?;
    Ok(Some(AtRiskKey {
        not_at_risk: u8::try_from(not_at_risk).map_err(|_| invalid())?,
        loyalty,
        trust,
        customer: customer.to_owned(),
    }))
}

/// The customer's segment: the last one registered or set by a profile update.
fn segment_of(history: &[RecordedEvent]) -> String {
    history
        .iter()
        .rev()
        .find_map(|event| match &event.event {
            covenant_domain::Event::CustomerRegistered { segment, .. } => Some(segment.to_string()),
            covenant_domain::Event::CustomerProfileUpdated { changes } => {
                changes.segment.as_ref().map(ToString::to_string)
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn loyalty_to_wire(
    customer: &CustomerId,
    standing: &LoyaltyStanding,
    trust_score: u8,
    stream_version: u64,
) -> v1::LoyaltyStanding {
    v1::LoyaltyStanding {
        customer_id: customer.to_string(),
        model_version: standing.model_version.to_owned(),
        as_of: Some(timestamp_to_wire(standing.as_of)),
        score: standing.score.map(u32::from),
        band: loyalty_band_to_wire(standing.band),
        lifecycle: lifecycle_to_wire(standing.lifecycle),
        at_risk: standing.at_risk,
        risk_reasons: standing.risk_reasons.iter().map(describe_risk).collect(),
        vip: standing.vip,
        measures: standing
            .measures
            .iter()
            .map(|measure| v1::LoyaltyMeasure {
                name: measure.name.to_owned(),
                value: measure.value,
                weight: measure.weight,
            })
            .collect(),
        available_weight: standing.available_weight,
        trust_score: u32::from(trust_score),
        stream_version,
    }
}

fn loyalty_band_to_wire(band: LoyaltyBand) -> i32 {
    (match band {
        LoyaltyBand::InsufficientData => v1::LoyaltyBand::InsufficientData,
        LoyaltyBand::Detached => v1::LoyaltyBand::Detached,
        LoyaltyBand::AtRisk => v1::LoyaltyBand::AtRisk,
        LoyaltyBand::Neutral => v1::LoyaltyBand::Neutral,
        LoyaltyBand::Loyal => v1::LoyaltyBand::Loyal,
        LoyaltyBand::Champion => v1::LoyaltyBand::Champion,
    }) as i32
}

fn lifecycle_to_wire(lifecycle: Lifecycle) -> i32 {
    (match lifecycle {
        Lifecycle::Prospect => v1::Lifecycle::Prospect,
        Lifecycle::Active => v1::Lifecycle::Active,
        Lifecycle::Lapsed => v1::Lifecycle::Lapsed,
        Lifecycle::Churned => v1::Lifecycle::Churned,
        Lifecycle::WonBack => v1::Lifecycle::WonBack,
    }) as i32
}

fn describe_risk(reason: &RiskReason) -> String {
    match reason {
        RiskReason::UnrecoveredBrokenPromise(promise) => {
            format!("promise {promise} was broken with no apology, compensation or kept fix")
        }
        RiskReason::RecentDetractor(at) => {
            format!("NPS detractor answer (0-6) at {at}, less than 90 days ago")
        }
        RiskReason::ComplaintPastSla(complaint) => {
            format!("complaint {complaint} is open with a breached SLA")
        }
    }
}

fn status_to_wire(status: PromiseStatus) -> i32 {
    (match status {
        PromiseStatus::Open => v1::PromiseStatus::Open,
        PromiseStatus::Kept => v1::PromiseStatus::Kept,
        PromiseStatus::PartiallyKept => v1::PromiseStatus::PartiallyKept,
        PromiseStatus::Broken => v1::PromiseStatus::Broken,
        PromiseStatus::Cancelled => v1::PromiseStatus::Cancelled,
    }) as i32
}

fn status_from_wire(value: i32) -> Result<PromiseStatus, Status> {
    match v1::PromiseStatus::try_from(value) {
        Ok(v1::PromiseStatus::Open) => Ok(PromiseStatus::Open),
        Ok(v1::PromiseStatus::Kept) => Ok(PromiseStatus::Kept),
        Ok(v1::PromiseStatus::PartiallyKept) => Ok(PromiseStatus::PartiallyKept),
        Ok(v1::PromiseStatus::Broken) => Ok(PromiseStatus::Broken),
        Ok(v1::PromiseStatus::Cancelled) => Ok(PromiseStatus::Cancelled),
        _ => Err(Status::invalid_argument(format!("statuses: {value} is not a promise status"))),
    }
}

fn promise_to_wire(promise: &PromiseRecord, now: Timestamp) -> v1::PromiseView {
    v1::PromiseView {
        customer_id: promise.customer_id.to_string(),
        promise_id: promise.promise_id.to_string(),
        kind: promise_kind_to_wire(promise.kind),
        status: status_to_wire(promise.status),
        made_by: promise.made_by.to_string(),
        team: promise.team.as_ref().map(ToString::to_string).unwrap_or_default(),
        made_at: Some(timestamp_to_wire(promise.made_at)),
        due_at: Some(timestamp_to_wire(promise.due_at)),
        grace: Some(span_to_wire(promise.grace)),
        overdue: promise.overdue(now),
        renegotiations: promise.renegotiations,
        settled_at: promise.settled_at.map(timestamp_to_wire),
        detection: promise.detection.map(break_detection_to_wire).unwrap_or_default(),
    }
}

fn complaint_to_wire(complaint: &ComplaintRecord) -> v1::ComplaintView {
    v1::ComplaintView {
        customer_id: complaint.customer_id.to_string(),
        complaint_id: complaint.complaint_id.to_string(),
        category: complaint_category_to_wire(complaint.category),
        severity: severity_to_wire(complaint.severity),
        priority: priority_to_wire(complaint.priority),
        channel: channel_to_wire(complaint.channel),
        opened_at: Some(timestamp_to_wire(complaint.opened_at)),
        first_reply_at: complaint.first_reply_at.map(timestamp_to_wire),
        escalations: complaint.escalations,
        reopens: complaint.reopens,
        sla: complaint
            .clocks
            .iter()
            .map(|clock| v1::SlaClock {
                target: sla_target_to_wire(clock.target),
                due_at: Some(timestamp_to_wire(clock.due_at)),
                stopped_at: clock.stopped_at.map(timestamp_to_wire),
                breached: clock.breached,
            })
            .collect(),
    }
}

/// The window of a `GetOrgMetrics` request: both ends required, `from` before `to`, at most
/// [`MAX_METRICS_WINDOW_DAYS`] long.
fn metrics_window(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Result<Window, Status> {
    let from =
        optional_timestamp("from", from)?.ok_or_else(|| Status::invalid_argument("from: is required"))?;
    let to = optional_timestamp("to", to)?.ok_or_else(|| Status::invalid_argument("to: is required"))?;
    if to <= from {
        return Err(Status::invalid_argument("to: must be after from"));
    }
    if to.since(from) > Span::from_days(MAX_METRICS_WINDOW_DAYS) {
        return Err(Status::invalid_argument(format!(
            "to: the window is longer than {MAX_METRICS_WINDOW_DAYS} days"
        )));
    }
    Window::new(from, to).map_err(|error| Status::invalid_argument(format!("to: {error}")))
}

fn group_by_from_wire(value: i32) -> Result<GroupBy, Status> {
    match v1::OrgGroupBy::try_from(value) {
        Ok(v1::OrgGroupBy::Unspecified | v1::OrgGroupBy::Overall) => Ok(GroupBy::Overall),
        Ok(v1::OrgGroupBy::Team) => Ok(GroupBy::Team),
        Ok(v1::OrgGroupBy::Channel) => Ok(GroupBy::Channel),
        Ok(v1::OrgGroupBy::Agent) => Ok(GroupBy::Agent),
        Ok(v1::OrgGroupBy::PromiseKind) => Ok(GroupBy::PromiseKind),
        Err(_) => Err(Status::invalid_argument(format!("group_by: {value} is not a grouping"))),
    }
}

fn count_trust_band(counts: &mut v1::TrustBandCounts, band: TrustBand) {
    let count = match band {
        TrustBand::Unproven => &mut counts.unproven,
        TrustBand::Broken => &mut counts.broken,
        TrustBand::Strained => &mut counts.strained,
        TrustBand::Stable => &mut counts.stable,
        TrustBand::Trusted => &mut counts.trusted,
    };
    *count += 1;
}

fn count_loyalty_band(counts: &mut v1::LoyaltyBandCounts, band: LoyaltyBand) {
    let count = match band {
        LoyaltyBand::InsufficientData => &mut counts.insufficient_data,
        LoyaltyBand::Detached => &mut counts.detached,
        LoyaltyBand::AtRisk => &mut counts.at_risk,
        LoyaltyBand::Neutral => &mut counts.neutral,
        LoyaltyBand::Loyal => &mut counts.loyal,
        LoyaltyBand::Champion => &mut counts.champion,
    };
    *count += 1;
}

fn duration_to_wire(summary: &DurationSummary) -> v1::OrgDurationSummary {
    v1::OrgDurationSummary {
        samples: summary.samples,
        p50_seconds: summary.p50_secs,
        p90_seconds: summary.p90_secs,
    }
}

fn responsiveness_to_wire(tier: Option<ResponsivenessTier>) -> i32 {
    (match tier {
        None => v1::ResponsivenessTier::Unspecified,
        Some(ResponsivenessTier::Immediate) => v1::ResponsivenessTier::Immediate,
        Some(ResponsivenessTier::NextBusinessDay) => v1::ResponsivenessTier::NextBusinessDay,
        Some(ResponsivenessTier::Slow) => v1::ResponsivenessTier::Slow,
        Some(ResponsivenessTier::Never) => v1::ResponsivenessTier::Never,
    }) as i32
}

fn sla_to_wire(sla: &SlaMetrics) -> v1::OrgSlaMetrics {
    v1::OrgSlaMetrics {
        decided: sla.decided,
        met: sla.met,
        missed: sla.missed,
        undecided: sla.undecided,
        compliance_percent: sla.compliance_percent,
    }
}

fn group_to_wire(group: GroupMetrics) -> v1::OrgGroupMetrics {
    let GroupMetrics {
        group,
        nps: NpsMetrics { answers, promoters, passives, detractors, score },
        csat: CsatMetrics { answers: csat_answers, satisfied, satisfied_percent },
        ces: CesMetrics { answers: ces_answers, mean, at_least_5, at_least_5_percent },
        promises:
            PromiseMetrics {
                due,
                kept_on_time,
                kept_late,
                partially_kept,
                broken,
                open_past_due,
                cancelled,
                not_yet_due,
                keeping_rate_percent,
            },
        complaints:
            ComplaintMetrics {
                opened,
                replied,
                awaiting_reply,
                resolved,
                first_reply,
                resolution,
                responsiveness,
            },
        sla,
        sla_first_reply,
        sla_resolution,
        ignored_out_of_range,
    } = group;
    v1::OrgGroupMetrics {
        group,
        nps: Some(v1::OrgNpsMetrics { answers, promoters, passives, detractors, score }),
        csat: Some(v1::OrgCsatMetrics { answers: csat_answers, satisfied, satisfied_percent }),
        ces: Some(v1::OrgCesMetrics { answers: ces_answers, mean, at_least_5, at_least_5_percent }),
        promises: Some(v1::OrgPromiseMetrics {
            due,
            kept_on_time,
            kept_late,
            partially_kept,
            broken,
            open_past_due,
            cancelled,
            not_yet_due,
            keeping_rate_percent,
        }),
        complaints: Some(v1::OrgComplaintMetrics {
            opened,
            replied,
            awaiting_reply,
            resolved,
            first_reply: first_reply.as_ref().map(duration_to_wire),
            resolution: resolution.as_ref().map(duration_to_wire),
            responsiveness: responsiveness_to_wire(responsiveness),
        }),
        sla: Some(sla_to_wire(&sla)),
        sla_first_reply: Some(sla_to_wire(&sla_first_reply)),
        sla_resolution: Some(sla_to_wire(&sla_resolution)),
        ignored_out_of_range,
    }
}

fn models_from_wire(values: &[i32]) -> Result<(bool, bool), Status> {
    if values.is_empty() {
        return Ok((true, true));
    }
    let (mut trust, mut loyalty) = (false, false);
    for value in values {
        match v1::StandingModel::try_from(*value) {
            Ok(v1::StandingModel::Trust) => trust = true,
            Ok(v1::StandingModel::Loyalty) => loyalty = true,
            _ => return Err(Status::invalid_argument(format!("models: {value} is not a standing model"))),
        }
    }
    Ok((trust, loyalty))
}

fn band_change_to_wire(change: &BandChange) -> v1::StandingChange {
    let model_version = change.kind.model_version().to_owned();
    let kind = match change.kind {
        ChangeKind::Trust { from, to } => v1::standing_change::Change::Trust(v1::TrustBandChange {
            model_version,
            from_band: from.map_or(v1::TrustBand::Unspecified as i32, |(band, _)| band_to_wire(band)),
            to_band: band_to_wire(to.0),
            from_score: from.map(|(_, score)| u32::from(score)),
            to_score: u32::from(to.1),
        }),
        ChangeKind::Loyalty { from, to } => v1::standing_change::Change::Loyalty(v1::LoyaltyBandChange {
            model_version,
            from_band: from
                .map_or(v1::LoyaltyBand::Unspecified as i32, |state| loyalty_band_to_wire(state.band)),
            to_band: loyalty_band_to_wire(to.band),
            from_score: from.and_then(|state| state.score).map(u32::from),
            to_score: to.score.map(u32::from),
            from_at_risk: from.is_some_and(|state| state.at_risk),
            to_at_risk: to.at_risk,
            from_lifecycle: from
                .map_or(v1::Lifecycle::Unspecified as i32, |state| lifecycle_to_wire(state.lifecycle)),
            to_lifecycle: lifecycle_to_wire(to.lifecycle),
        }),
    };
    v1::StandingChange {
        sequence: change.sequence,
        customer_id: change.customer_id.to_string(),
        evaluated_at: Some(timestamp_to_wire(change.evaluated_at)),
        cause: change.cause.as_ref().map(|cause| v1::StandingCause {
            event_id: cause.event_id.to_string(),
            event_type: cause.event_type.clone(),
            position: Some(v1::Position {
                partition: u32::from(cause.position.partition),
                offset: cause.position.offset,
            }),
            occurred_at: Some(timestamp_to_wire(cause.occurred_at)),
        }),
        change: Some(kind),
    }
}

fn observe<T>(method: &'static str, result: Result<T, Status>) -> Result<T, Status> {
    covenant_runtime::count_request("standing", method, &result);
    result
}

impl StandingApi {
    async fn get_trust(&self, request: v1::GetTrustRequest) -> Result<v1::TrustStanding, Status> {
        let customer = customer_id("customer_id", &request.customer_id)?;
        let as_of = optional_timestamp("as_of", request.as_of.as_ref())?.unwrap_or_else(Timestamp::now);
        self.consistent(request.consistency.as_ref()).await?;
        let params = self.trust_params;
        let wanted = customer.clone();
        let (history, standing) = self
            .read(move |store| {
                let history = store.history(&wanted)?;
                let standing = trust(history_of(&history), as_of, &params);
                Ok((history, standing))
            })
            .await?;
        let Some(last) = history.last() else {
            return Err(Status::not_found(format!("customer {customer} has no events (yet)")));
        };
        Ok(v1::TrustStanding {
            customer_id: customer.to_string(),
            model_version: standing.model_version.to_owned(),
            as_of: Some(timestamp_to_wire(standing.as_of)),
            score: u32::from(standing.score),
            uncertainty: standing.uncertainty,
            band: band_to_wire(standing.band),
            positive_evidence: standing.positive,
            negative_evidence: standing.negative,
            contributors: standing
                .contributors
                .iter()
                .map(|contribution| v1::TrustContributor {
                    event_id: contribution.event_id.to_string(),
                    event_type: contribution.event_type.to_owned(),
                    occurred_at: Some(timestamp_to_wire(contribution.occurred_at)),
                    positive: contribution.positive,
                    negative: contribution.negative,
                })
                .collect(),
            stream_version: last.stream_version,
        })
    }

    async fn get_loyalty(&self, request: v1::GetLoyaltyRequest) -> Result<v1::LoyaltyStanding, Status> {
        let customer = customer_id("customer_id", &request.customer_id)?;
        let as_of = optional_timestamp("as_of", request.as_of.as_ref())?.unwrap_or_else(Timestamp::now);
        self.consistent(request.consistency.as_ref()).await?;
        let (trust_params, loyalty_params) = (self.trust_params, self.loyalty_params);
        let wanted = customer.clone();
        let (stream_version, trust_score, standing) = self
            .read(move |store| {
                let history = store.history(&wanted)?;
                let (trust, standing) = standing_at(&history, as_of, &trust_params, &loyalty_params);
                Ok((history.last().map(|event| event.stream_version), trust.score, standing))
            })
            .await?;
        let Some(stream_version) = stream_version else {
            return Err(Status::not_found(format!("customer {customer} has no events (yet)")));
        };
        Ok(loyalty_to_wire(&customer, &standing, trust_score, stream_version))
    }

    async fn list_at_risk(&self, request: v1::ListAtRiskRequest) -> Result<v1::ListAtRiskResponse, Status> {
        let bands = request
            .bands
            .iter()
            .map(|band| match v1::LoyaltyBand::try_from(*band) {
                Ok(band) if band != v1::LoyaltyBand::Unspecified => Ok(band as i32),
                _ => Err(Status::invalid_argument(format!("bands: {band} is not a loyalty band"))),
            })
            .collect::<Result<Vec<i32>, Status>>()?;
        let size = page_size("page_size", request.page_size)?;
        let after = at_risk_token(&request.page_token)?;
        self.consistent(request.consistency.as_ref()).await?;
        let (trust_params, loyalty_params) = (self.trust_params, self.loyalty_params);
        let (segment, at_risk_only) = (request.segment, request.at_risk_only);
        let now = Timestamp::now();
        let mut entries = self
            .read(move |store| {
                let mut entries = Vec::new();
                for customer in store.customer_ids()? {
                    let history = store.history(&customer)?;
                    let Some(last) = history.last() else { continue };
                    let customer_segment = segment_of(&history);
                    if !segment.is_empty() && customer_segment != segment {
                        continue;
                    }
                    let (trust, standing) = standing_at(&history, now, &trust_params, &loyalty_params);
                    let wire = loyalty_to_wire(&customer, &standing, trust.score, last.stream_version);
                    if (at_risk_only && !standing.at_risk)
                        || (!bands.is_empty() && !bands.contains(&wire.band))
                    {
                        continue;
                    }
                    let key = AtRiskKey {
                        not_at_risk: u8::from(!standing.at_risk),
                        loyalty: standing.score.map_or(101, u16::from),
                        trust: u16::from(trust.score),
                        customer: customer.to_string(),
                    };
                    entries.push((
                        key,
                        v1::AtRiskCustomer {
                            customer_id: customer.to_string(),
                            segment: customer_segment,
                            loyalty: Some(wire),
                            trust_score: u32::from(trust.score),
                            trust_band: band_to_wire(trust.band),
                        },
                    ));
                }
                Ok(entries)
            })
            .await?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let start = after.map_or(0, |after| entries.partition_point(|(key, _)| *key <= after));
        let page: Vec<_> = entries.drain(start..).take(size + 1).collect();
        let next_page_token = if page.len() > size { page[size - 1].0.token() } else { String::new() };
        Ok(v1::ListAtRiskResponse {
            customers: page.into_iter().take(size).map(|(_, customer)| customer).collect(),
            next_page_token,
        })
    }

    /// Organisation metrics over `[from, to)` (`covenant_domain::org_metrics`), and the customers
    /// per trust and loyalty band at `min(to, now)`.
    ///
    /// Cost: the survey answers of the window are one range scan of `surveys`, but every promise
    /// and complaint is read (O(all promises and complaints)), and the band counts compute every
    /// customer's trust and loyalty from their whole history (O(all events), as `ListAtRisk`),
    /// all per request: fine for thousands of customers, not for 100k.
    async fn get_org_metrics(
        &self,
        request: v1::GetOrgMetricsRequest,
    ) -> Result<v1::GetOrgMetricsResponse, Status> {
        let window = metrics_window(request.from.as_ref(), request.to.as_ref())?;
        let group_by = group_by_from_wire(request.group_by)?;
        self.consistent(request.consistency.as_ref()).await?;
        let (trust_params, loyalty_params) = (self.trust_params, self.loyalty_params);
        let now = Timestamp::now();
        let as_of = window.to.min(now);
        let (groups, trust_bands, loyalty_bands) = self
            .read(move |store| {
                let groups = org_metrics(store.org_facts(window)?, window, group_by, now);
                let mut trust_bands = v1::TrustBandCounts::default();
                let mut loyalty_bands = v1::LoyaltyBandCounts::default();
                for customer in store.customer_ids()? {
                    let history = store.history(&customer)?;
                    // Not a customer yet at `as_of`.
                    if !history.iter().any(|event| event.metadata.occurred_at <= as_of) {
                        continue;
                    }
                    let (trust, standing) = standing_at(&history, as_of, &trust_params, &loyalty_params);
                    count_trust_band(&mut trust_bands, trust.band);
                    count_loyalty_band(&mut loyalty_bands, standing.band);
                }
                Ok((groups, trust_bands, loyalty_bands))
            })
            .await?;
        Ok(v1::GetOrgMetricsResponse {
            groups: groups.into_iter().map(group_to_wire).collect(),
            trust_bands: Some(trust_bands),
            loyalty_bands: Some(loyalty_bands),
            bands_as_of: Some(timestamp_to_wire(as_of)),
        })
    }

    async fn get_timeline(&self, request: v1::GetTimelineRequest) -> Result<v1::GetTimelineResponse, Status> {
        let customer = customer_id("customer_id", &request.customer_id)?;
        let max = page_size("max_events", request.max_events)?;
        self.consistent(request.consistency.as_ref()).await?;
        let from = request.from_version.max(1);
        let (events, record) = self
            .read(move |store| Ok((store.timeline(&customer, from, max + 1)?, store.customer(&customer)?)))
            .await?;
        let next_version = if events.len() > max { events[max].stream_version } else { 0 };
        let record = record.unwrap_or_default();
        Ok(v1::GetTimelineResponse {
            events: events.iter().take(max).map(|event| envelope(event, Pii::Redact)).collect(),
            next_version,
            stream_version: record.stream_version,
            events_applied: record.events_applied,
        })
    }

    async fn list_promises(
        &self,
        request: v1::ListPromisesRequest,
    ) -> Result<v1::ListPromisesResponse, Status> {
        let filter = PromiseFilter {
            customer_id: optional_customer(&request.customer_id)?,
            statuses: request
                .statuses
                .iter()
                .map(|status| status_from_wire(*status))
                .collect::<Result<_, _>>()?,
            overdue_only: request.overdue_only,
            made_by: Some(request.made_by).filter(|made_by| !made_by.is_empty()),
            team: Some(request.team).filter(|team| !team.is_empty()),
            due_from: optional_timestamp("due_from", request.due_from.as_ref())?,
            due_to: optional_timestamp("due_to", request.due_to.as_ref())?,
        };
        let size = page_size("page_size", request.page_size)?;
        let after = page_token(&request.page_token)?;
        self.consistent(request.consistency.as_ref()).await?;
        let now = Timestamp::now();
        let page: Page<PromiseRecord> =
            self.read(move |store| store.promises(&filter, after.as_deref(), size, now)).await?;
        Ok(v1::ListPromisesResponse {
            promises: page.items.iter().map(|promise| promise_to_wire(promise, now)).collect(),
            next_page_token: next_token(page.next),
        })
    }

    async fn list_open_complaints(
        &self,
        request: v1::ListOpenComplaintsRequest,
    ) -> Result<v1::ListOpenComplaintsResponse, Status> {
        let customer = optional_customer(&request.customer_id)?;
        let size = page_size("page_size", request.page_size)?;
        let after = page_token(&request.page_token)?;
        self.consistent(request.consistency.as_ref()).await?;
        let page =
            self.read(move |store| store.open_complaints(customer.as_ref(), after.as_deref(), size)).await?;
        Ok(v1::ListOpenComplaintsResponse {
            complaints: page.items.iter().map(complaint_to_wire).collect(),
            next_page_token: next_token(page.next),
        })
    }
}

/// What a `WatchStanding` stream wants.
#[derive(Debug, Clone)]
struct WatchFilter {
    customer: Option<CustomerId>,
    trust: bool,
    loyalty: bool,
}

impl WatchFilter {
    fn accepts(&self, change: &BandChange) -> bool {
        self.customer.as_ref().is_none_or(|customer| *customer == change.customer_id)
            && match change.kind {
                ChangeKind::Trust { .. } => self.trust,
                ChangeKind::Loyalty { .. } => self.loyalty,
            }
    }
}

impl StandingApi {
    /// Replays the recorded band changes after `after`, then follows new ones, into `sender`
    /// until the client goes away (or a store read fails: the stream ends with that status).
    async fn feed_changes(
        &self,
        mut after: u64,
        filter: WatchFilter,
        sender: mpsc::Sender<Result<v1::StandingChange, Status>>,
    ) {
        let mut recorded = self.band_changes.clone();
        loop {
            // Marked seen before reading: a change recorded during the read wakes the wait.
            let last = *recorded.borrow_and_update();
            while after < last {
                let from = after;
                let chunk = match self.read(move |store| store.band_changes_after(from, WATCH_CHUNK)).await {
                    Ok(chunk) => chunk,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                };
                let Some(end) = chunk.last().map(|change| change.sequence) else { break };
                for change in chunk.iter().filter(|change| filter.accepts(change)) {
                    if sender.send(Ok(band_change_to_wire(change))).await.is_err() {
                        return;
                    }
                }
                after = end;
            }
            tokio::select! {
                changed = recorded.changed() => if changed.is_err() {
                    let _ = sender.send(Err(Status::unavailable("standing is stopping"))).await;
                    return;
                },
                () = sender.closed() => return,
            }
        }
    }
}

#[tonic::async_trait]
impl standing_server::Standing for StandingApi {
    type WatchStandingStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::StandingChange, Status>> + Send>>;

    async fn watch_standing(
        &self,
        request: Request<v1::WatchStandingRequest>,
    ) -> Result<Response<Self::WatchStandingStream>, Status> {
        let request = request.into_inner();
        let started = (|| {
            let customer = optional_customer(&request.customer_id)?;
            let (trust, loyalty) = models_from_wire(&request.models)?;
            let last = *self.band_changes.borrow();
            if request.after_sequence > last {
                return Err(Status::failed_precondition(format!(
                    "after_sequence: {} is beyond the last band change recorded, {last} (were the projections rebuilt?); start again from 0",
                    request.after_sequence
                )));
            }
            Ok(WatchFilter { customer, trust, loyalty })
        })();
        let filter = observe("WatchStanding", started)?;
        let (sender, receiver) = mpsc::channel(WATCH_CHUNK);
        let api = self.clone();
        tokio::spawn(async move { api.feed_changes(request.after_sequence, filter, sender).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn get_trust(
        &self,
        request: Request<v1::GetTrustRequest>,
    ) -> Result<Response<v1::TrustStanding>, Status> {
        observe("GetTrust", self.get_trust(request.into_inner()).await).map(Response::new)
    }

    async fn get_loyalty(
        &self,
        request: Request<v1::GetLoyaltyRequest>,
    ) -> Result<Response<v1::LoyaltyStanding>, Status> {
        observe("GetLoyalty", self.get_loyalty(request.into_inner()).await).map(Response::new)
    }

    async fn list_at_risk(
        &self,
        request: Request<v1::ListAtRiskRequest>,
    ) -> Result<Response<v1::ListAtRiskResponse>, Status> {
        observe("ListAtRisk", self.list_at_risk(request.into_inner()).await).map(Response::new)
    }

    async fn get_timeline(
        &self,
        request: Request<v1::GetTimelineRequest>,
    ) -> Result<Response<v1::GetTimelineResponse>, Status> {
        observe("GetTimeline", self.get_timeline(request.into_inner()).await).map(Response::new)
    }

    async fn list_promises(
        &self,
        request: Request<v1::ListPromisesRequest>,
    ) -> Result<Response<v1::ListPromisesResponse>, Status> {
        observe("ListPromises", self.list_promises(request.into_inner()).await).map(Response::new)
    }

    async fn list_open_complaints(
        &self,
        request: Request<v1::ListOpenComplaintsRequest>,
    ) -> Result<Response<v1::ListOpenComplaintsResponse>, Status> {
        observe("ListOpenComplaints", self.list_open_complaints(request.into_inner()).await)
            .map(Response::new)
    }

    async fn get_org_metrics(
        &self,
        request: Request<v1::GetOrgMetricsRequest>,
    ) -> Result<Response<v1::GetOrgMetricsResponse>, Status> {
        observe("GetOrgMetrics", self.get_org_metrics(request.into_inner()).await).map(Response::new)
    }

    async fn get_progress(
        &self,
        _request: Request<v1::GetProgressRequest>,
    ) -> Result<Response<v1::GetProgressResponse>, Status> {
        let next = self
            .consumer
            .progress()
            .into_iter()
            .enumerate()
            .map(|(partition, offset)| v1::Position { partition: partition as u32, offset })
            .collect();
        observe("GetProgress", Ok(v1::GetProgressResponse { next })).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_junk_is_refused() {
        let key = vec![0u8, 1, 0xab, 0xff];
        let token = next_token(Some(key.clone()));
        assert_eq!(page_token(&token).unwrap(), Some(key));
        assert_eq!(page_token("").unwrap(), None);
        for junk in ["abc", "zz", "é1"] {
            let status = page_token(junk).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().starts_with("page_token:"));
        }
    }

    #[test]
    fn at_risk_tokens_round_trip_and_sort_at_risk_first() {
        let key = AtRiskKey { not_at_risk: 0, loyalty: 42, trust: 7, customer: "a.b:c".into() };
        assert_eq!(at_risk_token(&key.token()).unwrap(), Some(key.clone()));
        let later = AtRiskKey { not_at_risk: 1, loyalty: 10, trust: 0, customer: "a".into() };
        assert!(key < later, "at-risk customers come before the others whatever their score");
        for junk in ["x", "0.1", "0.1.2.", "300.1.2.a", "a.b.c.d"] {
            assert_eq!(at_risk_token(junk).unwrap_err().code(), Code::InvalidArgument, "{junk}");
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size("page_size", 0).unwrap(), 100);
        assert_eq!(page_size("page_size", 1000).unwrap(), 1000);
        let status = page_size("page_size", 1001).unwrap_err();
        assert!(status.message().starts_with("page_size: 1001"));
    }

    fn wire(seconds: i64) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds: 1_800_000_000 + seconds, nanos: 0 }
    }

    #[test]
    fn metrics_windows_are_checked_naming_the_field() {
        let message = |from: Option<prost_types::Timestamp>, to: Option<prost_types::Timestamp>| {
            let status = metrics_window(from.as_ref(), to.as_ref()).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            status.message().to_owned()
        };
        assert_eq!(message(None, Some(wire(1))), "from: is required");
        assert_eq!(message(Some(wire(0)), None), "to: is required");
        assert_eq!(message(Some(wire(5)), Some(wire(5))), "to: must be after from");
        assert_eq!(message(Some(wire(5)), Some(wire(4))), "to: must be after from");
        let day = 86_400;
        assert_eq!(
            message(Some(wire(0)), Some(wire(400 * day + 1))),
            "to: the window is longer than 400 days"
        );
        assert!(
            message(Some(prost_types::Timestamp { seconds: -5, nanos: 0 }), Some(wire(0)))
                .starts_with("from:")
        );
        assert!(
            message(Some(wire(0)), Some(prost_types::Timestamp { seconds: 1, nanos: -1 })).starts_with("to:")
        );

        let window = metrics_window(Some(&wire(0)), Some(&wire(400 * day))).unwrap();
        assert_eq!(window.to.since(window.from), Span::from_days(400));
        assert_eq!(window.from, timestamp_from_wire("from", &wire(0)).unwrap());
    }

    #[test]
    fn groupings_default_to_overall_and_unknown_ones_are_refused() {
        assert_eq!(group_by_from_wire(0).unwrap(), GroupBy::Overall);
        assert_eq!(group_by_from_wire(v1::OrgGroupBy::Overall as i32).unwrap(), GroupBy::Overall);
        assert_eq!(group_by_from_wire(v1::OrgGroupBy::Team as i32).unwrap(), GroupBy::Team);
        assert_eq!(group_by_from_wire(v1::OrgGroupBy::Channel as i32).unwrap(), GroupBy::Channel);
        assert_eq!(group_by_from_wire(v1::OrgGroupBy::Agent as i32).unwrap(), GroupBy::Agent);
        assert_eq!(group_by_from_wire(v1::OrgGroupBy::PromiseKind as i32).unwrap(), GroupBy::PromiseKind);
        let status = group_by_from_wire(42).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("group_by:"), "{}", status.message());
    }

    #[test]
    fn group_metrics_map_to_the_wire_field_by_field() {
        let group = GroupMetrics {
            group: "support".into(),
            nps: NpsMetrics { answers: 3, promoters: 2, passives: 0, detractors: 1, score: Some(33) },
            csat: CsatMetrics { answers: 0, satisfied: 0, satisfied_percent: None },
            ces: CesMetrics { answers: 2, mean: Some(5.5), at_least_5: 1, at_least_5_percent: Some(50.0) },
            promises: PromiseMetrics {
                due: 6,
                kept_on_time: 1,
                kept_late: 2,
                partially_kept: 1,
                broken: 1,
                open_past_due: 1,
                cancelled: 4,
                not_yet_due: 5,
                keeping_rate_percent: Some(100.0 / 6.0),
            },
            complaints: ComplaintMetrics {
                opened: 3,
                replied: 2,
                awaiting_reply: 1,
                resolved: 1,
                first_reply: Some(DurationSummary { samples: 2, p50_secs: 60.0, p90_secs: 7200.0 }),
                resolution: None,
                responsiveness: Some(ResponsivenessTier::Immediate),
            },
            sla: SlaMetrics {
                decided: 3,
                met: 2,
                missed: 1,
                undecided: 1,
                compliance_percent: Some(200.0 / 3.0),
            },
            sla_first_reply: SlaMetrics {
                decided: 1,
                met: 1,
                missed: 0,
                undecided: 0,
                compliance_percent: Some(100.0),
            },
            sla_resolution: SlaMetrics {
                decided: 2,
                met: 1,
                missed: 1,
                undecided: 1,
                compliance_percent: Some(50.0),
            },
            ignored_out_of_range: 7,
        };
        let wire = group_to_wire(group);
        assert_eq!(wire.group, "support");
        assert_eq!(
            wire.nps,
            Some(v1::OrgNpsMetrics { answers: 3, promoters: 2, passives: 0, detractors: 1, score: Some(33) })
        );
        assert_eq!(wire.csat, Some(v1::OrgCsatMetrics { answers: 0, satisfied: 0, satisfied_percent: None }));
        assert_eq!(
            wire.ces,
            Some(v1::OrgCesMetrics {
                answers: 2,
                mean: Some(5.5),
                at_least_5: 1,
                at_least_5_percent: Some(50.0)
            })
        );
        let promises = wire.promises.unwrap();
        assert_eq!(
            (
                promises.due,
                promises.kept_on_time,
                promises.kept_late,
                promises.partially_kept,
                promises.broken
            ),
            (6, 1, 2, 1, 1)
        );
        assert_eq!((promises.open_past_due, promises.cancelled, promises.not_yet_due), (1, 4, 5));
        assert_eq!(promises.keeping_rate_percent, Some(100.0 / 6.0));
        let complaints = wire.complaints.unwrap();
        assert_eq!(
            (complaints.opened, complaints.replied, complaints.awaiting_reply, complaints.resolved),
            (3, 2, 1, 1)
        );
        assert_eq!(
            complaints.first_reply,
            Some(v1::OrgDurationSummary { samples: 2, p50_seconds: 60.0, p90_seconds: 7200.0 })
        );
        assert_eq!(complaints.resolution, None);
        assert_eq!(complaints.responsiveness, v1::ResponsivenessTier::Immediate as i32);
        assert_eq!(
            wire.sla,
            Some(v1::OrgSlaMetrics {
                decided: 3,
                met: 2,
                missed: 1,
                undecided: 1,
                compliance_percent: Some(200.0 / 3.0)
            })
        );
        assert_eq!(wire.sla_first_reply.unwrap().decided, 1);
        assert_eq!(wire.sla_resolution.unwrap().compliance_percent, Some(50.0));
        assert_eq!(wire.ignored_out_of_range, 7);
        assert_eq!(responsiveness_to_wire(None), v1::ResponsivenessTier::Unspecified as i32);
        assert_eq!(
            responsiveness_to_wire(Some(ResponsivenessTier::Never)),
            v1::ResponsivenessTier::Never as i32
        );
    }

    #[test]
    fn band_counts_add_up_per_band() {
        let mut trust = v1::TrustBandCounts::default();
        for band in [TrustBand::Unproven, TrustBand::Unproven, TrustBand::Broken, TrustBand::Trusted] {
            count_trust_band(&mut trust, band);
        }
        assert_eq!(trust, v1::TrustBandCounts { unproven: 2, broken: 1, strained: 0, stable: 0, trusted: 1 });
        let mut loyalty = v1::LoyaltyBandCounts::default();
        for band in [LoyaltyBand::Champion, LoyaltyBand::AtRisk, LoyaltyBand::AtRisk] {
            count_loyalty_band(&mut loyalty, band);
        }
        assert_eq!(loyalty, v1::LoyaltyBandCounts { at_risk: 2, champion: 1, ..Default::default() });
    }
}
