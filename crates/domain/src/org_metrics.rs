//! Organisation metrics (DESIGN §5): survey scores, promise keeping, complaint reply and
//! resolution times and SLA compliance over a time window, grouped by team, channel, agent or
//! promise kind. Pure: the caller passes the facts, the window and `now`; the same inputs always
//! give the same answer.
//!
//! # Which facts count
//! The window is half-open, `[from, to)`: an instant equal to `from` is in, one equal to `to` is
//! out. Each fact is placed in the window by one instant:
//! - a survey answer by `answered_at`;
//! - a promise by `due_at`. Only promises already due (`due_at ≤ now`) are judged; one due later
//!   is counted as `not_yet_due` and nothing else, whatever its outcome;
//! - a complaint by `opened_at` (its reply and resolution may fall after the window);
//! - an SLA clock by `due_at`. Only decided clocks are judged: stopped (`stopped_at` set), or
//!   still running with `due_at ≤ now`. A running clock not yet due is counted as `undecided`.
//!
//! # The measures (per group)
//! - **NPS** (answers 0–10): promoters answer 9–10, passives 7–8, detractors 0–6.
//!   `NPS = 100 × (promoters − detractors) / answers`, rounded to the nearest whole number with
//!   halves away from zero (12.5 → 13, −12.5 → −13); from −100 to 100. None without answers.
//! - **CSAT** (answers 1–5): the percentage of answers scoring 4 or 5. None without answers.
//! - **CES** (answers 1–7, 7 = easiest): the mean answer and the percentage of answers scoring 5
//!   or more. None without answers.
//! - **Promise keeping**: `kept on time / due × 100`, where due = kept on time + kept late +
//!   partially kept + broken + still open past the due date. Cancelled promises are counted but
//!   left out of the denominator. None when no promise was due.
//! - **First-reply time** = `first_reply_at − opened_at` over the complaints that got a reply;
//!   **resolution time** = `resolved_at − opened_at` over the resolved ones. Each is reported as
//!   its median (p50) and p90 in seconds, by the nearest-rank method: the p-th percentile of n
//!   sorted values is the value at rank ⌈p/100 × n⌉ (1-based). So for 60, 120, 180, 240 and
//!   3,600 s the median is 180 s and the p90 3,600 s. None without values. A reply or
//!   resolution stamped before the opening (inconsistent input) counts as zero seconds.
//! - **Responsiveness tier**, from the median first-reply time: Immediate (≤ 1 h), Next business
//!   day (≤ 24 h), Slow (> 24 h); Never when complaints were opened but none got a reply yet;
//!   no tier when no complaint was opened in the window.
//! - **SLA compliance**: `met / decided × 100`, where a clock is met when it was stopped at or
//!   before its due time and was not flagged as breached; every other decided clock is missed.
//!   Given over both targets together and for first reply and resolution separately. None
//!   without decided clocks.
//!
//! Percentages are `f64` from 0 to 100, unrounded.
//!
//! # Groups
//! - [`GroupBy::Overall`]: a single group named `all`.
//! - [`GroupBy::Team`], [`GroupBy::Agent`], [`GroupBy::Channel`]: by the fact's [`Attribution`]:
//!   the team id, the agent's actor id, or the channel's name in lower case (`phone`, `email`,
//!   `chat`, `social`, `in_person`, `web`). A fact without that attribution goes to the group
//!   `(none)` (no identifier can be spelled that way).
//! - [`GroupBy::PromiseKind`]: promises only, by kind (`callback`, `delivery`, `refund`, `fix`,
//!   `info`, `visit`, `price`, `compensation`, `advertised_claim`, `other`). Surveys, complaints
//!   and SLA clocks have no promise kind and are left out of this grouping entirely.
//!
//! A group is listed when at least one of its facts falls in the window (even a fact that is only
//! counted, such as a promise not yet due or an out-of-range answer). The list is sorted by group
//! name (byte order, so `(none)` comes first). No facts in the window means an empty list, for
//! [`GroupBy::Overall`] too.
//!
//! A survey answer outside its scale (NPS above 10, CSAT or CES of 0, CSAT above 5, CES above
//! 7) is not used in any score; it is counted in `ignored_out_of_range` of its group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::events::{Channel, PromiseKind, SlaTarget, SurveyKind};
use crate::ids::{ActorId, TeamId};
use crate::values::Timestamp;

/// The group name of [`GroupBy::Overall`].
pub const OVERALL_GROUP: &str = "all";
/// The group of facts without the attribution grouped by.
pub const NONE_GROUP: &str = "(none)";

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A half-open time window `[from, to)`.
///
/// Build it with [`Window::new`]; a window built by hand with `to ≤ from` contains nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Window {
    /// The window `[from, to)`; `from` must be before `to`.
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, DomainError> {
        if from >= to {
            return Err(DomainError::invalid_because(
                "window",
                format!("starts at {from}, which is not before its end {to}"),
            ));
        }
        Ok(Self { from, to })
    }

    /// Whether `at` lies in the window (`from ≤ at < to`).
    pub fn contains(&self, at: Timestamp) -> bool {
        self.from <= at && at < self.to
    }
}

/// How facts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupBy {
    /// One group, `all`.
    Overall,
    /// By the team the fact is attributed to.
    Team,
    /// By the channel the fact came through.
    Channel,
    /// By the agent the fact is attributed to.
    Agent,
    /// Promises by kind; other facts are left out.
    PromiseKind,
}

/// Who and where a fact is attributed to; each part may be unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attribution {
    pub team: Option<TeamId>,
    pub agent: Option<ActorId>,
    pub channel: Option<Channel>,
}

/// Where a promise stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromiseOutcome {
    /// Neither kept, broken nor cancelled yet.
    Open,
    /// Kept at or before its due time.
    KeptOnTime,
    /// Kept after its due time.
    KeptLate,
    /// Kept in part.
    PartiallyKept,
    /// Broken.
    Broken,
    /// Cancelled (excluded from the keeping rate).
    Cancelled,
}

/// One fact the metrics are computed from, as the caller read it from the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Fact {
    /// A survey answer.
    Survey { kind: SurveyKind, score: u8, answered_at: Timestamp, attribution: Attribution },
    /// A promise and where it stands.
    Promise { kind: PromiseKind, due_at: Timestamp, outcome: PromiseOutcome, attribution: Attribution },
    /// A complaint, with its first reply and resolution when they happened.
    Complaint {
        opened_at: Timestamp,
        first_reply_at: Option<Timestamp>,
        resolved_at: Option<Timestamp>,
        attribution: Attribution,
    },
    /// An SLA clock of a complaint.
    SlaClock {
        target: SlaTarget,
        due_at: Timestamp,
        stopped_at: Option<Timestamp>,
        breached: bool,
        attribution: Attribution,
    },
}

/// How quickly complaints get a first reply, from the median first-reply time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponsivenessTier {
    /// Median first reply within 1 hour.
    Immediate,
    /// Median first reply within 24 hours.
    NextBusinessDay,
    /// Median first reply after more than 24 hours.
    Slow,
    /// Complaints were opened but none got a reply.
    Never,
}

/// Net Promoter Score answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NpsMetrics {
    pub answers: u64,
    /// Answers 9–10.
    pub promoters: u64,
    /// Answers 7–8.
    pub passives: u64,
    /// Answers 0–6.
    pub detractors: u64,
    /// `100 × (promoters − detractors) / answers`, rounded half away from zero; None without
    /// answers.
    pub score: Option<i32>,
}

/// Customer satisfaction answers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CsatMetrics {
    pub answers: u64,
    /// Answers 4–5.
    pub satisfied: u64,
    /// `satisfied / answers × 100`; None without answers.
    pub satisfied_percent: Option<f64>,
}

/// Customer effort answers (7 = easiest).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CesMetrics {
    pub answers: u64,
    /// The mean answer; None without answers.
    pub mean: Option<f64>,
    /// Answers 5–7.
    pub at_least_5: u64,
    /// `at_least_5 / answers × 100`; None without answers.
    pub at_least_5_percent: Option<f64>,
}

/// Promises due in the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PromiseMetrics {
    /// The denominator: kept on time + kept late + partially kept + broken + open past due.
    pub due: u64,
    pub kept_on_time: u64,
    pub kept_late: u64,
    pub partially_kept: u64,
    pub broken: u64,
    /// Still open although due (counted as not kept).
    pub open_past_due: u64,
    /// Cancelled, due in the window by `now`; not in `due`.
    pub cancelled: u64,
    /// Due in the window but after `now`; not judged.
    pub not_yet_due: u64,
    /// `kept_on_time / due × 100`; None when nothing was due.
    pub keeping_rate_percent: Option<f64>,
}

/// The median and p90 of a set of durations (nearest rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationSummary {
    /// How many durations.
    pub samples: u64,
    /// The median, in seconds.
    pub p50_secs: f64,
    /// The 90th percentile, in seconds.
    pub p90_secs: f64,
}

/// Complaints opened in the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ComplaintMetrics {
    pub opened: u64,
    /// Opened in the window and replied to.
    pub replied: u64,
    /// Opened in the window and not replied to yet.
    pub awaiting_reply: u64,
    /// Opened in the window and resolved.
    pub resolved: u64,
    /// First-reply times of the replied complaints; None without any.
    pub first_reply: Option<DurationSummary>,
    /// Resolution times of the resolved complaints; None without any.
    pub resolution: Option<DurationSummary>,
    /// From the median first-reply time; None when no complaint was opened.
    pub responsiveness: Option<ResponsivenessTier>,
}

/// SLA clocks due in the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SlaMetrics {
    /// Stopped, or running past their due time.
    pub decided: u64,
    /// Stopped at or before their due time and not flagged as breached.
    pub met: u64,
    /// Decided and not met.
    pub missed: u64,
    /// Running and not yet due; not judged.
    pub undecided: u64,
    /// `met / decided × 100`; None without decided clocks.
    pub compliance_percent: Option<f64>,
}

/// The metrics of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    /// `all`, a team id, an agent id, a channel or promise kind name, or `(none)`.
    pub group: String,
    pub nps: NpsMetrics,
    pub csat: CsatMetrics,
    pub ces: CesMetrics,
    pub promises: PromiseMetrics,
    pub complaints: ComplaintMetrics,
    /// Both SLA targets together.
    pub sla: SlaMetrics,
    /// First-reply clocks only.
    pub sla_first_reply: SlaMetrics,
    /// Resolution clocks only.
    pub sla_resolution: SlaMetrics,
    /// Survey answers in the window outside their scale, not used in any score.
    pub ignored_out_of_range: u64,
}

/// The metrics of `facts` in `window`, one entry per group, sorted by group name.
///
/// `now` decides which promises are due and which SLA clocks are decided. See the module
/// documentation for the rules.
pub fn org_metrics(
    facts: impl IntoIterator<Item = Fact>,
    window: Window,
    group_by: GroupBy,
    now: Timestamp,
) -> Vec<GroupMetrics> {
    let mut groups: BTreeMap<String, Accumulator> = BTreeMap::new();
    for fact in facts {
        if !window.contains(fact_instant(&fact)) {
            continue;
        }
        let Some(group) = group_name(&fact, group_by) else {
            continue;
        };
        groups.entry(group).or_default().add(&fact, now);
    }
    groups.into_iter().map(|(group, acc)| acc.finish(group)).collect()
}

/// The lower-case name of a channel, as used for group names.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Phone => "phone",
        Channel::Email => "email",
        Channel::Chat => "chat",
        Channel::Social => "social",
        Channel::InPerson => "in_person",
        Channel::Web => "web",
    }
}

/// The lower-case name of a promise kind, as used for group names.
pub fn promise_kind_name(kind: PromiseKind) -> &'static str {
    match kind {
        PromiseKind::Callback => "callback",
        PromiseKind::Delivery => "delivery",
        PromiseKind::Refund => "refund",
        PromiseKind::Fix => "fix",
        PromiseKind::Info => "info",
        PromiseKind::Visit => "visit",
        PromiseKind::Price => "price",
        PromiseKind::Compensation => "compensation",
        PromiseKind::AdvertisedClaim => "advertised_claim",
        PromiseKind::Other => "other",
    }
}

/// The p-th percentile (0 < p ≤ 100) of ascending `sorted` by nearest rank: the value at rank
/// ⌈p/100 × n⌉, 1-based (rank 1 at least). None when `sorted` is empty.
fn nearest_rank(sorted: &[i64], p: u64) -> Option<i64> {
    let n = sorted.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).ok()?;
    sorted.get(index).copied()
}

/// The instant that places `fact` in a window.
fn fact_instant(fact: &Fact) -> Timestamp {
    match fact {
        Fact::Survey { answered_at, .. } => *answered_at,
        Fact::Promise { due_at, .. } | Fact::SlaClock { due_at, .. } => *due_at,
        Fact::Complaint { opened_at, .. } => *opened_at,
    }
}

fn attribution(fact: &Fact) -> &Attribution {
    match fact {
        Fact::Survey { attribution, .. }
        | Fact::Promise { attribution, .. }
        | Fact::Complaint { attribution, .. }
        | Fact::SlaClock { attribution, .. } => attribution,
    }
}

/// The group `fact` belongs to; None when the grouping leaves it out.
fn group_name(fact: &Fact, group_by: GroupBy) -> Option<String> {
    let or_none = |name: Option<&str>| name.unwrap_or(NONE_GROUP).to_owned();
    let attribution = attribution(fact);
    match group_by {
        GroupBy::Overall => Some(OVERALL_GROUP.to_owned()),
        GroupBy::Team => Some(or_none(attribution.team.as_ref().map(TeamId::as_str))),
        GroupBy::Agent => Some(or_none(attribution.agent.as_ref().map(ActorId::as_str))),
        GroupBy::Channel => Some(or_none(attribution.channel.map(channel_name))),
        GroupBy::PromiseKind => match fact {
            Fact::Promise { kind, .. } => Some(promise_kind_name(*kind).to_owned()),
            _ => None,
        },
    }
}

/// Running counts of one group.
#[derive(Debug, Default)]
struct Accumulator {
    nps: NpsMetrics,
    csat: CsatMetrics,
    ces: CesMetrics,
    ces_sum: u64,
    promises: PromiseMetrics,
    complaints: ComplaintMetrics,
    first_reply_ms: Vec<i64>,
    resolution_ms: Vec<i64>,
    sla_first_reply: SlaMetrics,
    sla_resolution: SlaMetrics,
    ignored_out_of_range: u64,
}

impl Accumulator {
    fn add(&mut self, fact: &Fact, now: Timestamp) {
        match fact {
            Fact::Survey { kind, score, .. } => self.add_survey(*kind, *score),
            Fact::Promise { due_at, outcome, .. } => self.add_promise(*due_at, *outcome, now),
            Fact::Complaint { opened_at, first_reply_at, resolved_at, .. } => {
                self.complaints.opened += 1;
                match first_reply_at {
                    Some(at) => {
                        self.complaints.replied += 1;
                        self.first_reply_ms.push(elapsed_ms(*opened_at, *at));
                    }
                    None => self.complaints.awaiting_reply += 1,
                }
                if let Some(at) = resolved_at {
                    self.complaints.resolved += 1;
                    self.resolution_ms.push(elapsed_ms(*opened_at, *at));
                }
            }
            Fact::SlaClock { target, due_at, stopped_at, breached, .. } => {
                let sla = match target {
                    SlaTarget::FirstReply => &mut self.sla_first_reply,
                    SlaTarget::Resolution => &mut self.sla_resolution,
                };
                match stopped_at {
                    None if *due_at > now => sla.undecided += 1,
                    Some(stopped) if *stopped <= *due_at && !*breached => {
                        sla.decided += 1;
                        sla.met += 1;
                    }
                    _ => {
                        sla.decided += 1;
                        sla.missed += 1;
                    }
                }
            }
        }
    }

    fn add_survey(&mut self, kind: SurveyKind, score: u8) {
        let (min, max) = kind.scale();
        if !(min..=max).contains(&score) {
            self.ignored_out_of_range += 1;
            return;
        }
        match kind {
            SurveyKind::Nps => {
                self.nps.answers += 1;
                match score {
                    9.. => self.nps.promoters += 1,
                    7..=8 => self.nps.passives += 1,
                    _ => self.nps.detractors += 1,
                }
            }
            SurveyKind::Csat => {
                self.csat.answers += 1;
                if score >= 4 {
                    self.csat.satisfied += 1;
                }
            }
            SurveyKind::Ces => {
                self.ces.answers += 1;
                self.ces_sum += u64::from(score);
                if score >= 5 {
                    self.ces.at_least_5 += 1;
                }
            }
        }
    }

    fn add_promise(&mut self, due_at: Timestamp, outcome: PromiseOutcome, now: Timestamp) {
        let p = &mut self.promises;
        if due_at > now {
            p.not_yet_due += 1;
            return;
        }
        match outcome {
            PromiseOutcome::Open => p.open_past_due += 1,
            PromiseOutcome::KeptOnTime => p.kept_on_time += 1,
            PromiseOutcome::KeptLate => p.kept_late += 1,
            PromiseOutcome::PartiallyKept => p.partially_kept += 1,
            PromiseOutcome::Broken => p.broken += 1,
            PromiseOutcome::Cancelled => {
                p.cancelled += 1;
                return;
            }
        }
        p.due += 1;
    }

    fn finish(mut self, group: String) -> GroupMetrics {
        self.nps.score = nps_score(&self.nps);
        self.csat.satisfied_percent = percent(self.csat.satisfied, self.csat.answers);
        self.ces.at_least_5_percent = percent(self.ces.at_least_5, self.ces.answers);
        self.ces.mean = (self.ces.answers > 0).then(|| self.ces_sum as f64 / self.ces.answers as f64);
        self.promises.keeping_rate_percent = percent(self.promises.kept_on_time, self.promises.due);

        self.first_reply_ms.sort_unstable();
        self.resolution_ms.sort_unstable();
        self.complaints.first_reply = summarize(&self.first_reply_ms);
        self.complaints.resolution = summarize(&self.resolution_ms);
        self.complaints.responsiveness = if self.complaints.opened == 0 {
            None
        } else {
            Some(match nearest_rank(&self.first_reply_ms, 50) {
                None => ResponsivenessTier::Never,
                Some(ms) if ms <= HOUR_MS => ResponsivenessTier::Immediate,
                Some(ms) if ms <= DAY_MS => ResponsivenessTier::NextBusinessDay,
                Some(_) => ResponsivenessTier::Slow,
            })
        };

        finish_sla(&mut self.sla_first_reply);
        finish_sla(&mut self.sla_resolution);
        let mut sla = SlaMetrics {
            decided: self.sla_first_reply.decided + self.sla_resolution.decided,
            met: self.sla_first_reply.met + self.sla_resolution.met,
            missed: self.sla_first_reply.missed + self.sla_resolution.missed,
            undecided: self.sla_first_reply.undecided + self.sla_resolution.undecided,
            compliance_percent: None,
        };
        finish_sla(&mut sla);

        GroupMetrics {
            group,
            nps: self.nps,
            csat: self.csat,
            ces: self.ces,
            promises: self.promises,
            complaints: self.complaints,
            sla,
            sla_first_reply: self.sla_first_reply,
            sla_resolution: self.sla_resolution,
            ignored_out_of_range: self.ignored_out_of_range,
        }
    }
}

/// Milliseconds from `start` to `end`, zero when `end` is earlier.
fn elapsed_ms(start: Timestamp, end: Timestamp) -> i64 {
    end.since(start).millis().max(0)
}

/// `part / whole × 100`; None when `whole` is zero.
fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 100.0) / whole as f64)
}

/// `100 × (promoters − detractors) / answers`, rounded half away from zero.
fn nps_score(nps: &NpsMetrics) -> Option<i32> {
    if nps.answers == 0 {
        return None;
    }
    let numerator = 100 * (i128::from(nps.promoters) - i128::from(nps.detractors));
    let denominator = i128::from(nps.answers);
    let magnitude = (2 * numerator.abs() + denominator) / (2 * denominator);
    i32::try_from(numerator.signum() * magnitude).ok()
}

fn summarize(sorted_ms: &[i64]) -> Option<DurationSummary> {
    let p50 = nearest_rank(sorted_ms, 50)?;
    let p90 = nearest_rank(sorted_ms, 90)?;
    Some(DurationSummary {
        samples: sorted_ms.len() as u64,
        p50_secs: p50 as f64 / 1000.0,
        p90_secs: p90 as f64 / 1000.0,
    })
}

fn finish_sla(sla: &mut SlaMetrics) {
    sla.compliance_percent = percent(sla.met, sla.decided);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The window's start; the window runs 30 days, `now` is 40 days after its start.
    const FROM: i64 = 1_900_000_000_000;
    const TO: i64 = FROM + 30 * DAY_MS;
    const NOW: i64 = FROM + 40 * DAY_MS;
    const SEC: i64 = 1000;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_unix_millis_clamped(millis)
    }

    fn window() -> Window {
        Window::new(at(FROM), at(TO)).unwrap()
    }

    fn nobody() -> Attribution {
        Attribution::default()
    }

    fn team(name: &str) -> Attribution {
        Attribution { team: Some(TeamId::new(name).unwrap()), ..Attribution::default() }
    }

    fn survey(kind: SurveyKind, score: u8) -> Fact {
        survey_at(kind, score, FROM + DAY_MS, nobody())
    }

    fn survey_at(kind: SurveyKind, score: u8, millis: i64, attribution: Attribution) -> Fact {
        Fact::Survey { kind, score, answered_at: at(millis), attribution }
    }

    fn promise(kind: PromiseKind, due: i64, outcome: PromiseOutcome) -> Fact {
        Fact::Promise { kind, due_at: at(due), outcome, attribution: nobody() }
    }

    /// A complaint opened a day into the window, replied to after `reply_ms` (if any).
    fn complaint(reply_ms: Option<i64>, resolve_ms: Option<i64>) -> Fact {
        let opened = FROM + DAY_MS;
        Fact::Complaint {
            opened_at: at(opened),
            first_reply_at: reply_ms.map(|ms| at(opened + ms)),
            resolved_at: resolve_ms.map(|ms| at(opened + ms)),
            attribution: nobody(),
        }
    }

    fn clock(target: SlaTarget, due: i64, stopped: Option<i64>, breached: bool) -> Fact {
        Fact::SlaClock {
            target,
            due_at: at(due),
            stopped_at: stopped.map(at),
            breached,
            attribution: nobody(),
        }
    }

    fn overall(facts: Vec<Fact>) -> GroupMetrics {
        let mut groups = org_metrics(facts, window(), GroupBy::Overall, at(NOW));
        assert_eq!(groups.len(), 1);
        let group = groups.remove(0);
        assert_eq!(group.group, "all");
        group
    }

    fn names(groups: &[GroupMetrics]) -> Vec<&str> {
        groups.iter().map(|g| g.group.as_str()).collect()
    }

    #[test]
    fn nps_worked_example() {
        let facts = [10, 10, 9, 9, 9, 8, 7, 6, 3, 0].map(|s| survey(SurveyKind::Nps, s)).to_vec();
        let nps = overall(facts).nps;
        assert_eq!(
            nps,
            NpsMetrics { answers: 10, promoters: 5, passives: 2, detractors: 3, score: Some(20) }
        );
    }

    #[test]
    fn nps_rounds_half_away_from_zero() {
        // 1 promoter, 7 passives: 100 × 1 / 8 = 12.5 → 13.
        let mut facts = vec![survey(SurveyKind::Nps, 10)];
        facts.extend((0..7).map(|_| survey(SurveyKind::Nps, 8)));
        assert_eq!(overall(facts).nps.score, Some(13));
        // 1 detractor, 7 passives: −12.5 → −13.
        let mut facts = vec![survey(SurveyKind::Nps, 0)];
        facts.extend((0..7).map(|_| survey(SurveyKind::Nps, 7)));
        assert_eq!(overall(facts).nps.score, Some(-13));
        // All detractors: −100.
        assert_eq!(overall(vec![survey(SurveyKind::Nps, 6)]).nps.score, Some(-100));
    }

    #[test]
    fn csat_worked_example() {
        let facts = [5, 4, 4, 3, 1].map(|s| survey(SurveyKind::Csat, s)).to_vec();
        let group = overall(facts);
        assert_eq!(group.csat, CsatMetrics { answers: 5, satisfied: 3, satisfied_percent: Some(60.0) });
        assert_eq!(group.nps.score, None);
        assert_eq!(group.ces.mean, None);
    }

    #[test]
    fn ces_worked_example() {
        let facts = [7, 5, 4, 2].map(|s| survey(SurveyKind::Ces, s)).to_vec();
        assert_eq!(
            overall(facts).ces,
            CesMetrics { answers: 4, mean: Some(4.5), at_least_5: 2, at_least_5_percent: Some(50.0) }
        );
    }

    #[test]
    fn reply_and_resolution_percentiles_by_nearest_rank() {
        // First replies after 240, 60, 3600, 180, 120 s (unsorted); one complaint unanswered.
        let mut facts: Vec<Fact> =
            [240, 60, 3600, 180, 120].map(|secs| complaint(Some(secs * SEC), Some(secs * SEC * 10))).to_vec();
        facts.push(complaint(None, None));
        let complaints = overall(facts).complaints;
        assert_eq!(complaints.opened, 6);
        assert_eq!(complaints.replied, 5);
        assert_eq!(complaints.awaiting_reply, 1);
        assert_eq!(complaints.resolved, 5);
        assert_eq!(
            complaints.first_reply,
            Some(DurationSummary { samples: 5, p50_secs: 180.0, p90_secs: 3600.0 })
        );
        assert_eq!(
            complaints.resolution,
            Some(DurationSummary { samples: 5, p50_secs: 1800.0, p90_secs: 36_000.0 })
        );
        assert_eq!(complaints.responsiveness, Some(ResponsivenessTier::Immediate));
    }

    #[test]
    fn nearest_rank_edges() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 50), Some(7));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(5));
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        assert_eq!(nearest_rank(&ten, 100), Some(10));
        assert_eq!(nearest_rank(&[1, 2], 50), Some(1));
    }

    #[test]
    fn promise_due_after_now_is_not_counted() {
        let now = FROM + 10 * DAY_MS;
        let facts = vec![
            promise(PromiseKind::Refund, now, PromiseOutcome::KeptOnTime),
            promise(PromiseKind::Refund, now + 1, PromiseOutcome::KeptOnTime),
            promise(PromiseKind::Refund, now + DAY_MS, PromiseOutcome::Open),
        ];
        let groups = org_metrics(facts, window(), GroupBy::Overall, at(now));
        let p = &groups[0].promises;
        assert_eq!(p.due, 1);
        assert_eq!(p.kept_on_time, 1);
        assert_eq!(p.open_past_due, 0);
        assert_eq!(p.not_yet_due, 2);
        assert_eq!(p.keeping_rate_percent, Some(100.0));
    }

    #[test]
    fn cancelled_promises_are_left_out_of_the_keeping_rate() {
        let due = FROM + DAY_MS;
        let mut facts = Vec::new();
        for (outcome, n) in [
            (PromiseOutcome::KeptOnTime, 3),
            (PromiseOutcome::KeptLate, 1),
            (PromiseOutcome::PartiallyKept, 1),
            (PromiseOutcome::Broken, 1),
            (PromiseOutcome::Open, 2),
            (PromiseOutcome::Cancelled, 1),
        ] {
            facts.extend((0..n).map(|_| promise(PromiseKind::Fix, due, outcome)));
        }
        assert_eq!(
            overall(facts).promises,
            PromiseMetrics {
                due: 8,
                kept_on_time: 3,
                kept_late: 1,
                partially_kept: 1,
                broken: 1,
                open_past_due: 2,
                cancelled: 1,
                not_yet_due: 0,
                keeping_rate_percent: Some(37.5),
            }
        );
        // Only cancelled promises: nothing due, no rate.
        let only_cancelled = overall(vec![promise(PromiseKind::Fix, due, PromiseOutcome::Cancelled)]);
        assert_eq!(only_cancelled.promises.due, 0);
        assert_eq!(only_cancelled.promises.keeping_rate_percent, None);
    }

    #[test]
    fn window_is_half_open() {
        let facts = vec![
            survey_at(SurveyKind::Csat, 5, FROM - 1, nobody()),
            survey_at(SurveyKind::Csat, 5, FROM, nobody()),
            survey_at(SurveyKind::Csat, 1, TO - 1, nobody()),
            survey_at(SurveyKind::Csat, 1, TO, nobody()),
            promise(PromiseKind::Info, TO, PromiseOutcome::Broken),
            promise(PromiseKind::Info, FROM, PromiseOutcome::Broken),
            Fact::Complaint {
                opened_at: at(TO),
                first_reply_at: None,
                resolved_at: None,
                attribution: nobody(),
            },
            clock(SlaTarget::Resolution, TO, None, true),
        ];
        let group = overall(facts);
        assert_eq!(group.csat.answers, 2);
        assert_eq!(group.csat.satisfied, 1);
        assert_eq!(group.promises.broken, 1);
        assert_eq!(group.complaints.opened, 0);
        assert_eq!(group.complaints.responsiveness, None);
        assert_eq!(group.sla.decided, 0);
    }

    #[test]
    fn window_must_start_before_it_ends() {
        assert!(Window::new(at(FROM), at(FROM)).is_err());
        assert!(Window::new(at(FROM + 1), at(FROM)).is_err());
        let w = Window::new(at(FROM), at(FROM + 1)).unwrap();
        assert!(w.contains(at(FROM)));
        assert!(!w.contains(at(FROM + 1)));
    }

    #[test]
    fn sla_compliance() {
        let due = FROM + DAY_MS;
        let facts = vec![
            clock(SlaTarget::FirstReply, due, Some(due - HOUR_MS), false), // met
            clock(SlaTarget::FirstReply, due, Some(due), false),           // met, at the due time
            clock(SlaTarget::FirstReply, due, Some(due + 1), false),       // missed, stopped late
            clock(SlaTarget::Resolution, due, Some(due - 1), true),        // missed, flagged
            clock(SlaTarget::Resolution, due, None, false),                // missed, running past due
            clock(SlaTarget::Resolution, TO, Some(TO - 1), false),         // due outside the window
        ];
        let group = overall(facts);
        assert_eq!(
            group.sla,
            SlaMetrics { decided: 5, met: 2, missed: 3, undecided: 0, compliance_percent: Some(40.0) }
        );
    }

    #[test]
    fn sla_clock_not_yet_due_is_undecided() {
        let now = FROM + 10 * DAY_MS;
        let facts = vec![
            clock(SlaTarget::FirstReply, now - 1, Some(now - 2), false), // met
            clock(SlaTarget::FirstReply, now, None, false),              // missed: due, still running
            clock(SlaTarget::Resolution, now + 1, None, false),          // undecided
            clock(SlaTarget::Resolution, now + 1, Some(now - 5), false), // met: stopped early
        ];
        let groups = org_metrics(facts, window(), GroupBy::Overall, at(now));
        let g = &groups[0];
        assert_eq!(
            g.sla_first_reply,
            SlaMetrics { decided: 2, met: 1, missed: 1, undecided: 0, compliance_percent: Some(50.0) }
        );
        assert_eq!(
            g.sla_resolution,
            SlaMetrics { decided: 1, met: 1, missed: 0, undecided: 1, compliance_percent: Some(100.0) }
        );
        assert_eq!(
            g.sla,
            SlaMetrics { decided: 3, met: 2, missed: 1, undecided: 1, compliance_percent: Some(200.0 / 3.0) }
        );
    }

    #[test]
    fn group_by_team_with_a_none_group() {
        let day = FROM + DAY_MS;
        let facts = vec![
            survey_at(SurveyKind::Nps, 10, day, team("support-b")),
            survey_at(SurveyKind::Nps, 0, day, team("support-a")),
            survey_at(SurveyKind::Nps, 9, day, team("support-a")),
            survey_at(SurveyKind::Nps, 8, day, nobody()),
            Fact::Promise {
                kind: PromiseKind::Callback,
                due_at: at(day),
                outcome: PromiseOutcome::Broken,
                attribution: team("support-b"),
            },
        ];
        let groups = org_metrics(facts, window(), GroupBy::Team, at(NOW));
        assert_eq!(names(&groups), ["(none)", "support-a", "support-b"]);
        assert_eq!((groups[0].nps.answers, groups[0].nps.score), (1, Some(0)));
        assert_eq!((groups[1].nps.answers, groups[1].nps.score), (2, Some(0)));
        assert_eq!((groups[2].nps.answers, groups[2].nps.score), (1, Some(100)));
        assert_eq!(groups[2].promises.broken, 1);
        assert_eq!(groups[2].promises.keeping_rate_percent, Some(0.0));
        assert_eq!(groups[1].promises.due, 0);
    }

    #[test]
    fn group_by_channel_and_agent() {
        let day = FROM + DAY_MS;
        let by = |channel: Option<Channel>, agent: Option<&str>| Attribution {
            team: None,
            agent: agent.map(|a| ActorId::new(a).unwrap()),
            channel,
        };
        let facts = vec![
            survey_at(SurveyKind::Csat, 5, day, by(Some(Channel::InPerson), Some("ann"))),
            survey_at(SurveyKind::Csat, 2, day, by(Some(Channel::Email), Some("bob"))),
            survey_at(SurveyKind::Csat, 4, day, by(Some(Channel::Email), None)),
        ];
        let by_channel = org_metrics(facts.clone(), window(), GroupBy::Channel, at(NOW));
        assert_eq!(names(&by_channel), ["email", "in_person"]);
        assert_eq!(by_channel[0].csat.satisfied_percent, Some(50.0));
        assert_eq!(by_channel[1].csat.satisfied_percent, Some(100.0));
        let by_agent = org_metrics(facts, window(), GroupBy::Agent, at(NOW));
        assert_eq!(names(&by_agent), ["(none)", "ann", "bob"]);
        assert_eq!(by_agent[2].csat.satisfied_percent, Some(0.0));
    }

    #[test]
    fn group_by_promise_kind_ignores_other_facts() {
        let due = FROM + DAY_MS;
        let facts = vec![
            survey(SurveyKind::Nps, 10),
            survey(SurveyKind::Nps, 42),
            complaint(Some(SEC), None),
            clock(SlaTarget::FirstReply, due, None, true),
            promise(PromiseKind::Refund, due, PromiseOutcome::KeptOnTime),
            promise(PromiseKind::Refund, due, PromiseOutcome::Broken),
            promise(PromiseKind::AdvertisedClaim, due, PromiseOutcome::KeptLate),
        ];
        let groups = org_metrics(facts, window(), GroupBy::PromiseKind, at(NOW));
        assert_eq!(names(&groups), ["advertised_claim", "refund"]);
        for g in &groups {
            assert_eq!(g.nps.answers, 0);
            assert_eq!(g.complaints.opened, 0);
            assert_eq!(g.complaints.responsiveness, None);
            assert_eq!(g.sla.decided, 0);
            assert_eq!(g.ignored_out_of_range, 0);
        }
        assert_eq!(groups[0].promises.keeping_rate_percent, Some(0.0));
        assert_eq!(groups[1].promises.due, 2);
        assert_eq!(groups[1].promises.keeping_rate_percent, Some(50.0));
    }

    #[test]
    fn responsiveness_tiers() {
        let tier = |facts: Vec<Fact>| overall(facts).complaints.responsiveness;
        assert_eq!(tier(vec![complaint(Some(HOUR_MS), None)]), Some(ResponsivenessTier::Immediate));
        assert_eq!(tier(vec![complaint(Some(HOUR_MS + 1), None)]), Some(ResponsivenessTier::NextBusinessDay));
        assert_eq!(tier(vec![complaint(Some(DAY_MS), None)]), Some(ResponsivenessTier::NextBusinessDay));
        assert_eq!(tier(vec![complaint(Some(DAY_MS + 1), None)]), Some(ResponsivenessTier::Slow));
        assert_eq!(
            tier(vec![complaint(None, None), complaint(None, Some(HOUR_MS))]),
            Some(ResponsivenessTier::Never)
        );
        // The median decides: replies after 10 min, 2 h and 3 days → median 2 h.
        assert_eq!(
            tier(vec![
                complaint(Some(600 * SEC), None),
                complaint(Some(3 * DAY_MS), None),
                complaint(Some(2 * HOUR_MS), None),
            ]),
            Some(ResponsivenessTier::NextBusinessDay)
        );
        // No complaint in the window: no tier.
        assert_eq!(tier(vec![survey(SurveyKind::Nps, 9)]), None);
    }

    #[test]
    fn reply_before_opening_counts_as_zero() {
        let opened = FROM + DAY_MS;
        let facts = vec![Fact::Complaint {
            opened_at: at(opened),
            first_reply_at: Some(at(opened - 5 * SEC)),
            resolved_at: None,
            attribution: nobody(),
        }];
        let complaints = overall(facts).complaints;
        assert_eq!(
            complaints.first_reply,
            Some(DurationSummary { samples: 1, p50_secs: 0.0, p90_secs: 0.0 })
        );
    }

    #[test]
    fn out_of_range_scores_are_ignored_and_counted() {
        let facts = vec![
            survey(SurveyKind::Nps, 11),
            survey(SurveyKind::Nps, 255),
            survey(SurveyKind::Nps, 0),
            survey(SurveyKind::Csat, 0),
            survey(SurveyKind::Csat, 6),
            survey(SurveyKind::Csat, 5),
            survey(SurveyKind::Ces, 0),
            survey(SurveyKind::Ces, 8),
            survey(SurveyKind::Ces, 7),
            survey_at(SurveyKind::Ces, 9, TO, nobody()), // outside the window: not counted at all
        ];
        let group = overall(facts);
        assert_eq!(group.ignored_out_of_range, 6);
        assert_eq!(group.nps.answers, 1);
        assert_eq!(group.nps.score, Some(-100));
        assert_eq!(group.csat.answers, 1);
        assert_eq!(group.csat.satisfied_percent, Some(100.0));
        assert_eq!(group.ces.answers, 1);
        assert_eq!(group.ces.mean, Some(7.0));
    }

    #[test]
    fn only_out_of_range_answers_still_list_the_group() {
        let group = overall(vec![survey(SurveyKind::Csat, 9)]);
        assert_eq!(group.ignored_out_of_range, 1);
        assert_eq!(group.csat, CsatMetrics::default());
    }

    #[test]
    fn empty_input_gives_no_groups() {
        for group_by in
            [GroupBy::Overall, GroupBy::Team, GroupBy::Channel, GroupBy::Agent, GroupBy::PromiseKind]
        {
            assert_eq!(org_metrics(Vec::new(), window(), group_by, at(NOW)), Vec::new());
        }
        // Facts outside the window only: also nothing.
        let outside = vec![survey_at(SurveyKind::Nps, 9, TO, nobody())];
        assert_eq!(org_metrics(outside, window(), GroupBy::Overall, at(NOW)), Vec::new());
    }

    #[test]
    fn output_round_trips_through_postcard() {
        let facts = vec![
            survey(SurveyKind::Ces, 6),
            complaint(Some(90 * SEC), Some(DAY_MS)),
            promise(PromiseKind::Visit, FROM, PromiseOutcome::KeptOnTime),
        ];
        let groups = org_metrics(facts.clone(), window(), GroupBy::Overall, at(NOW));
        let bytes = postcard::to_allocvec(&groups).unwrap();
        let back: Vec<GroupMetrics> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, groups);
        let bytes = postcard::to_allocvec(&facts).unwrap();
        let back: Vec<Fact> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, facts);
    }
}
