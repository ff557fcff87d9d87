//! The watchdog's command line: arguments, logging, signals. `covenant-watchdog` (and the
//! process the black-box tests start) is just [`main`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use covenant_domain::Span;
use covenant_runtime::{MetricsAddr, parse_metrics_addr};

use crate::{SchedulerConfig, SlaPolicy, WatchdogConfig, start};

/// The Covenant watchdog: keeps promise due dates and complaint SLA clocks and asks the ledger to
/// record a breach when one passes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory of the watchdog's store.
    #[arg(long, default_value = "data/watchdog")]
    data_dir: PathBuf,
    /// Partitions of the event log (must equal the log's).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    partitions: u16,
    /// gRPC listen address (health and reflection; port 0: a free port, printed on start).
    #[arg(long, default_value = "127.0.0.1:50053")]
    grpc_addr: SocketAddr,
    /// Where to serve Prometheus metrics (`/metrics`), or `off`.
    #[arg(long, default_value = "127.0.0.1:9466", value_parser = parse_metrics_addr)]
    metrics_addr: MetricsAddr,
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// First-reply SLA targets in seconds for low, normal, high and urgent complaints.
    #[arg(long, value_parser = parse_targets, value_name = "LOW,NORMAL,HIGH,URGENT")]
    sla_first_reply_secs: Option<Targets>,
    /// Resolution SLA targets in seconds for low, normal, high and urgent complaints.
    #[arg(long, value_parser = parse_targets, value_name = "LOW,NORMAL,HIGH,URGENT")]
    sla_resolution_secs: Option<Targets>,
    /// Share of a target that applies to premium customers (default 0.75).
    #[arg(long, value_parser = parse_factor)]
    sla_premium_factor: Option<f64>,
    /// Share of a target that applies to VIP customers (default 0.5).
    #[arg(long, value_parser = parse_factor)]
    sla_vip_factor: Option<f64>,
    #[command(flatten)]
    auth: covenant_auth::AuthArgs,
    #[command(flatten)]
    tls: covenant_auth::TlsArgs,
    #[command(flatten)]
    nats: covenant_bus::NatsArgs,
}

/// Four SLA targets, by priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Targets([Span; 4]);

fn parse_targets(value: &str) -> Result<Targets, String> {
    let secs = value
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<u32>()
                .ok()
                .filter(|secs| *secs > 0)
                .map(|secs| Span::from_secs(i64::from(secs)))
                .ok_or_else(|| format!("{part:?} is not a positive number of seconds"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    <[Span; 4]>::try_from(secs)
        .map(Targets)
        .map_err(|secs| format!("give 4 targets (low,normal,high,urgent), not {}", secs.len()))
}

fn parse_factor(value: &str) -> Result<f64, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|factor| *factor > 0.0 && *factor <= 1.0)
        .ok_or_else(|| format!("{value:?} is not a share between 0 (exclusive) and 1"))
}

impl Args {
    fn policy(&self) -> SlaPolicy {
        let mut policy = SlaPolicy::default();
        if let Some(Targets(targets)) = self.sla_first_reply_secs {
            policy.first_reply = targets;
        }
        if let Some(Targets(targets)) = self.sla_resolution_secs {
            policy.resolution = targets;
        }
        if let Some(factor) = self.sla_premium_factor {
            policy.premium_factor = factor;
        }
        if let Some(factor) = self.sla_vip_factor {
            policy.vip_factor = factor;
        }
        policy
    }
}

/// Parses the arguments and runs the watchdog until SIGINT or SIGTERM.
pub fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> Result<()> {
    covenant_runtime::init_tracing();
    let args = Args::parse();
    let policy = args.policy();
    let mut watchdog = start(WatchdogConfig {
        data_dir: args.data_dir,
        partitions: args.partitions,
        nats_url: args.nats_url,
        grpc_addr: args.grpc_addr,
        metrics_addr: args.metrics_addr.0,
        policy,
        scheduler: SchedulerConfig::default(),
        auth: args.auth.mode()?,
        tls: args.tls.server()?,
        nats_security: args.nats.security(),
    })
    .await?;
    // One machine-readable line for scripts and tests.
    println!("watchdog listening on {}", watchdog.grpc_addr);
    let ended = tokio::select! {
        result = watchdog.wait() => Some(result),
        () = covenant_runtime::shutdown_signal() => None,
    };
    match ended {
        Some(result) => result,
        None => watchdog.stop().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sla_flags_override_the_default_policy() {
        let args = Args::try_parse_from([
            "covenant-watchdog",
            "--sla-first-reply-secs",
            "40,30,20,10",
            "--sla-vip-factor",
            "0.25",
            "--metrics-addr",
            "off",
            "--insecure-no-auth",
        ])
        .unwrap();
        let policy = args.policy();
        assert_eq!(policy.first_reply, [40, 30, 20, 10].map(Span::from_secs));
        assert_eq!(policy.resolution, SlaPolicy::default().resolution);
        assert_eq!(policy.vip_factor, 0.25);
        assert_eq!(args.metrics_addr, MetricsAddr(None));
        assert_eq!(args.partitions, 8);
        // Authentication is never off by omission: one of the two options is required.
        let missing = Args::try_parse_from(["covenant-watchdog"]).unwrap_err();
        assert!(missing.to_string().contains("--auth-tokens"), "{missing}");
        let both = ["covenant-watchdog", "--insecure-no-auth", "--auth-tokens", "tokens.json"];
        assert!(Args::try_parse_from(both).is_err());
        assert!(
            Args::try_parse_from([
                "covenant-watchdog",
                "--insecure-no-auth",
                "--sla-resolution-secs",
                "1,2,3"
            ])
            .is_err()
        );
        assert!(
            Args::try_parse_from([
                "covenant-watchdog",
                "--insecure-no-auth",
                "--sla-resolution-secs",
                "1,2,0,4"
            ])
            .is_err()
        );
        assert!(
            Args::try_parse_from(["covenant-watchdog", "--insecure-no-auth", "--sla-premium-factor", "1.5"])
                .is_err()
        );
        assert!(
            Args::try_parse_from(["covenant-watchdog", "--insecure-no-auth", "--partitions", "0"]).is_err()
        );
    }
}
