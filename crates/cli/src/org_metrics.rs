//! `covenant org-metrics`: the organisation's service metrics over the last days, from a running
//! standing service (`Standing.GetOrgMetrics`), printed as a table per group.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use covenant_proto::v1::{self, standing_client::StandingClient};

/// How the metrics are grouped.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Grouping {
    Overall,
    Team,
    Channel,
    Agent,
    PromiseKind,
}

impl Grouping {
    fn to_wire(self) -> v1::OrgGroupBy {
        match self {
            Grouping::Overall => v1::OrgGroupBy::Overall,
            Grouping::Team => v1::OrgGroupBy::Team,
            Grouping::Channel => v1::OrgGroupBy::Channel,
            Grouping::Agent => v1::OrgGroupBy::Agent,
            Grouping::PromiseKind => v1::OrgGroupBy::PromiseKind,
        }
    }
}

/// Options of `covenant org-metrics`.
#[derive(Debug, clap::Args)]
pub(crate) struct OrgMetricsArgs {
    /// Standing's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    standing: String,
    /// The window: the last this many days, up to now (at most 400).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// How to group the metrics.
    #[arg(long, value_enum, default_value = "overall")]
    group_by: Grouping,
}

fn timestamp(at: SystemTime) -> anyhow::Result<prost_types::Timestamp> {
    let since = at.duration_since(UNIX_EPOCH).context("the clock is before 1970")?;
    Ok(prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).context("the clock is past year 292 billion")?,
        nanos: 0,
    })
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |value| format!("{value:.0}%"))
}

fn duration(summary: Option<&v1::OrgDurationSummary>) -> String {
    match summary {
        Some(summary) if summary.samples > 0 => {
            format!("{} / {}", human(summary.p50_seconds), human(summary.p90_seconds))
        }
        _ => "—".to_string(),
    }
}

/// Seconds as the largest whole unit (s, min, h, d).
fn human(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0}s"),
        s if s < 3600.0 => format!("{:.0}min", s / 60.0),
        s if s < 86_400.0 => format!("{:.1}h", s / 3600.0),
        s => format!("{:.1}d", s / 86_400.0),
    }
}

fn tier(value: i32) -> &'static str {
    match v1::ResponsivenessTier::try_from(value) {
        Ok(v1::ResponsivenessTier::Immediate) => "immediate",
        Ok(v1::ResponsivenessTier::NextBusinessDay) => "next day",
        Ok(v1::ResponsivenessTier::Slow) => "slow",
        Ok(v1::ResponsivenessTier::Never) => "never",
        _ => "—",
    }
}

/// One table row of a group.
fn row(group: &v1::OrgGroupMetrics) -> String {
    let nps = group.nps.as_ref();
    let csat = group.csat.as_ref();
    let ces = group.ces.as_ref();
    let promises = group.promises.as_ref();
    let complaints = group.complaints.as_ref();
    let sla = group.sla.as_ref();
    format!(
        "{:<20} {:>5} {:>4} {:>6} {:>4} {:>5} {:>5} {:>9} {:>5} {:>8} {:>15} {:>15} {:>10} {:>6}",
        group.group,
        nps.and_then(|nps| nps.score).map_or_else(|| "—".to_string(), |score| score.to_string()),
        nps.map_or(0, |nps| nps.answers),
        percent(csat.and_then(|csat| csat.satisfied_percent)),
        csat.map_or(0, |csat| csat.answers),
        ces.and_then(|ces| ces.mean).map_or_else(|| "—".to_string(), |mean| format!("{mean:.1}")),
        promises.map_or(0, |promises| promises.due),
        percent(promises.and_then(|promises| promises.keeping_rate_percent)),
        complaints.map_or(0, |complaints| complaints.opened),
        tier(complaints.map_or(0, |complaints| complaints.responsiveness)),
        duration(complaints.and_then(|complaints| complaints.first_reply.as_ref())),
        duration(complaints.and_then(|complaints| complaints.resolution.as_ref())),
        percent(sla.and_then(|sla| sla.compliance_percent)),
        sla.map_or(0, |sla| sla.decided),
    )
}

/// Asks standing for the metrics of the last `--days` days and prints them.
pub(crate) async fn org_metrics(args: OrgMetricsArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let from = now
        .checked_sub(Duration::from_secs(u64::from(args.days) * 86_400))
        .context("--days reaches before 1970")?;
    let mut standing = StandingClient::new(crate::client::channel(&args.standing, "standing").await?);
    let metrics = standing
        .get_org_metrics(v1::GetOrgMetricsRequest {
            from: Some(timestamp(from)?),
            // The window is half-open: one second ahead takes in what happened just now.
            to: Some(timestamp(now + Duration::from_secs(1))?),
            group_by: args.group_by.to_wire() as i32,
            consistency: None,
        })
        .await
        .map_err(|status| anyhow::anyhow!("standing refused: {}: {}", status.code(), status.message()))?
        .into_inner();

    println!("Organisation metrics, last {} days, grouped {:?}:\n", args.days, args.group_by);
    if metrics.groups.is_empty() {
        println!("  nothing recorded in the window (record some journeys: `covenant demo`)");
    } else {
        println!(
            "{:<20} {:>5} {:>4} {:>6} {:>4} {:>5} {:>5} {:>9} {:>5} {:>8} {:>15} {:>15} {:>10} {:>6}",
            "group",
            "NPS",
            "n",
            "CSAT",
            "n",
            "CES",
            "due",
            "kept",
            "compl",
            "replies",
            "1st reply p50/90",
            "resolve p50/90",
            "SLA met",
            "n"
        );
        for group in &metrics.groups {
            println!("{}", row(group));
        }
    }
    if let Some(trust) = metrics.trust_bands {
        println!(
            "\ncustomers by trust band:   unproven {}, broken {}, strained {}, stable {}, trusted {}",
            trust.unproven, trust.broken, trust.strained, trust.stable, trust.trusted
        );
    }
    if let Some(loyalty) = metrics.loyalty_bands {
        println!(
            "customers by loyalty band: insufficient data {}, detached {}, at risk {}, neutral {}, loyal {}, champion {}",
            loyalty.insufficient_data,
            loyalty.detached,
            loyalty.at_risk,
            loyalty.neutral,
            loyalty.loyal,
            loyalty.champion
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_largest_unit() {
        assert_eq!(human(42.0), "42s");
        assert_eq!(human(600.0), "10min");
        assert_eq!(human(5400.0), "1.5h");
        assert_eq!(human(172_800.0), "2.0d");
        assert_eq!(duration(None), "—");
        let summary = v1::OrgDurationSummary { samples: 3, p50_seconds: 60.0, p90_seconds: 7200.0 };
        assert_eq!(duration(Some(&summary)), "1min / 2.0h");
    }

    #[test]
    fn a_group_row_shows_missing_scores_as_dashes() {
        let group = v1::OrgGroupMetrics { group: "support".into(), ..Default::default() };
        let line = row(&group);
        assert!(line.starts_with("support"), "{line}");
        assert!(line.contains('—'), "{line}");
        assert_eq!(tier(v1::ResponsivenessTier::Never as i32), "never");
    }
}
