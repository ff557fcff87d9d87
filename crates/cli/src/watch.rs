//! `covenant watch`: a running standing's band changes (`Standing.WatchStanding`), one line each,
//! replayed from a sequence and then followed live until Ctrl-C.

use std::process::ExitCode;

use covenant_proto::v1::{self, standing_change::Change, standing_client::StandingClient};

/// Which model's changes to show.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Model {
    Trust,
    Loyalty,
}

/// Options of `covenant watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// Standing's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    standing: String,
    /// Start after this sequence (the last one seen); 0 replays every change recorded.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Only this customer's changes.
    #[arg(long)]
    customer: Option<String>,
    /// Only this model's changes (both when absent).
    #[arg(long, value_enum)]
    model: Option<Model>,
}

/// A band's short name: `TRUST_BAND_BROKEN` → `broken`.
fn band_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase().replace('_', " ")
}

fn trust_band(value: i32) -> String {
    match v1::TrustBand::try_from(value) {
        Ok(v1::TrustBand::Unspecified) => "—".into(),
        Ok(band) => band_name(band.as_str_name(), "TRUST_BAND_"),
        Err(_) => format!("band {value}"),
    }
}

fn loyalty_band(value: i32) -> String {
    match v1::LoyaltyBand::try_from(value) {
        Ok(v1::LoyaltyBand::Unspecified) => "—".into(),
        Ok(band) => band_name(band.as_str_name(), "LOYALTY_BAND_"),
        Err(_) => format!("band {value}"),
    }
}

fn lifecycle(value: i32) -> String {
    match v1::Lifecycle::try_from(value) {
        Ok(v1::Lifecycle::Unspecified) => "—".into(),
        Ok(stage) => band_name(stage.as_str_name(), "LIFECYCLE_"),
        Err(_) => format!("lifecycle {value}"),
    }
}

fn score(value: Option<u32>) -> String {
    value.map_or_else(|| "—".into(), |score| score.to_string())
}

/// One change as a line: sequence, when, customer, what moved, and why.
fn line(change: &v1::StandingChange) -> String {
    let moved = match &change.change {
        Some(Change::Trust(trust)) => format!(
            "trust    {} ({}) → {} ({})",
            trust_band(trust.from_band),
            score(trust.from_score),
            trust_band(trust.to_band),
            trust.to_score
        ),
        Some(Change::Loyalty(loyalty)) => format!(
            "loyalty  {} ({}, {}{}) → {} ({}, {}{})",
            loyalty_band(loyalty.from_band),
            score(loyalty.from_score),
            lifecycle(loyalty.from_lifecycle),
            if loyalty.from_at_risk { ", at risk" } else { "" },
            loyalty_band(loyalty.to_band),
            score(loyalty.to_score),
            lifecycle(loyalty.to_lifecycle),
            if loyalty.to_at_risk { ", at risk" } else { "" },
        ),
        None => "(a change of a kind this client does not know)".into(),
    };
    let why = match &change.cause {
        Some(cause) => {
            let position = cause
                .position
                .as_ref()
                .map(|at| format!(" at {}:{}", at.partition, at.offset))
                .unwrap_or_default();
            format!("after {}{position}", cause.event_type)
        }
        None => "time passed".into(),
    };
    let when = change.evaluated_at.as_ref().map(ToString::to_string).unwrap_or_default();
    format!("#{:<6} {when}  {:<20} {moved}  [{why}]", change.sequence, change.customer_id)
}

/// Streams the changes until the server ends the stream or Ctrl-C.
pub(crate) async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut standing = StandingClient::new(crate::client::channel(&args.standing, "standing").await?);
    let models = match args.model {
        None => vec![],
        Some(Model::Trust) => vec![v1::StandingModel::Trust as i32],
        Some(Model::Loyalty) => vec![v1::StandingModel::Loyalty as i32],
    };
    let mut changes = standing
        .watch_standing(v1::WatchStandingRequest {
            after_sequence: args.after,
            customer_id: args.customer.unwrap_or_default(),
            models,
        })
        .await
        .map_err(|status| anyhow::anyhow!("standing refused: {}", status.message()))?
        .into_inner();
    loop {
        let next = tokio::select! {
            next = changes.message() => next,
            () = covenant_runtime::shutdown_signal() => return Ok(ExitCode::SUCCESS),
        };
        match next {
            Ok(Some(change)) => println!("{}", line(&change)),
            Ok(None) => return Ok(ExitCode::SUCCESS),
            Err(status) => anyhow::bail!("the stream ended: {}", status.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trust_change_reads_as_from_to_and_why() {
        let change = v1::StandingChange {
            sequence: 12,
            customer_id: "wanda".into(),
            evaluated_at: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
            cause: Some(v1::StandingCause {
                event_id: "e".into(),
                event_type: "promise_broken".into(),
                position: Some(v1::Position { partition: 3, offset: 812 }),
                occurred_at: None,
            }),
            change: Some(Change::Trust(v1::TrustBandChange {
                model_version: "trust-v1".into(),
                from_band: v1::TrustBand::Stable as i32,
                to_band: v1::TrustBand::Broken as i32,
                from_score: Some(60),
                to_score: 7,
            })),
        };
        let text = line(&change);
        assert!(text.starts_with("#12"), "{text}");
        assert!(text.contains("trust    stable (60) → broken (7)"), "{text}");
        assert!(text.contains("[after promise_broken at 3:812]"), "{text}");
    }

    #[test]
    fn a_first_loyalty_change_and_a_timed_one_read_plainly() {
        let change = v1::StandingChange {
            sequence: 1,
            customer_id: "xavier".into(),
            evaluated_at: None,
            cause: None,
            change: Some(Change::Loyalty(v1::LoyaltyBandChange {
                model_version: "loyalty-v1".into(),
                to_band: v1::LoyaltyBand::InsufficientData as i32,
                to_lifecycle: v1::Lifecycle::Prospect as i32,
                to_at_risk: true,
                ..Default::default()
            })),
        };
        let text = line(&change);
        assert!(text.contains("loyalty  — (—, —) → insufficient data (—, prospect, at risk)"), "{text}");
        assert!(text.ends_with("[time passed]"), "{text}");
    }
}
