//! What every Covenant service process shares: logging set-up, stop signals, the Prometheus
//! exporter, `--metrics-addr` parsing, serving a gRPC router with a bounded, graceful stop, and
//! keeping the gRPC health status true to what the service can do.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long in-flight gRPC calls may take to finish once a stop is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Histogram buckets of the log's group-commit and fsync durations (seconds).
const LOG_SECONDS: &[f64] = &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0];
/// Histogram buckets of commands per group commit or per fsync.
const LOG_COMMANDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs the process-wide Prometheus recorder and its HTTP listener (`/metrics`). A process
/// has at most one; later calls (several services in one process) are no-ops.
pub fn install_exporter(addr: SocketAddr) -> anyhow::Result<()> {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().map_err(|_| anyhow::anyhow!("metrics exporter lock poisoned"))?;
    if *installed {
        return Ok(());
    }
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0])?
        // The log's group commits and fsyncs take tens of microseconds to milliseconds.
        .set_buckets_for_metric(Matcher::Full("covenant_log_group_commit_seconds".into()), LOG_SECONDS)?
        .set_buckets_for_metric(Matcher::Full("covenant_log_fsync_seconds".into()), LOG_SECONDS)?
        // Commands per group commit or per fsync.
        .set_buckets_for_metric(Matcher::Full("covenant_log_group_commit_commands".into()), LOG_COMMANDS)?
        .set_buckets_for_metric(Matcher::Full("covenant_log_fsync_commands".into()), LOG_COMMANDS)?
        .install()
        .with_context(|| format!("serve metrics on {addr}"))?;
    *installed = true;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    Ok(())
}

/// Counts one gRPC request of `service` (`covenant_requests_total`) and, when it failed, its code
/// (`covenant_request_errors_total`).
pub fn count_request<T>(service: &'static str, method: &'static str, result: &Result<T, tonic::Status>) {
    metrics::counter!("covenant_requests_total", "service" => service, "method" => method).increment(1);
    if let Err(status) = result {
        let code = format!("{:?}", status.code());
        metrics::counter!("covenant_request_errors_total", "service" => service, "method" => method, "code" => code)
            .increment(1);
    }
}

/// `--metrics-addr`: an address, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

/// Parses `--metrics-addr` (for clap's `value_parser`).
pub fn parse_metrics_addr(value: &str) -> Result<MetricsAddr, String> {
    match value {
        "off" => Ok(MetricsAddr(None)),
        addr => addr
            .parse()
            .map(|addr| MetricsAddr(Some(addr)))
            .map_err(|error| format!("{addr:?} is not an address like 127.0.0.1:9464 (or off): {error}")),
    }
}

/// Binds `addr` (port 0: a free port) for a gRPC server.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("listen on {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves `router` on `listener` until `stop` turns true; in-flight calls then get
/// [`SHUTDOWN_GRACE`], after which idle client connections are closed so they cannot hold the stop.
pub fn spawn_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) -> JoinHandle<anyhow::Result<()>> {
    let mut stop_signal = stop.clone();
    tokio::spawn(async move {
        let mut stopped = stop;
        // TCP_NODELAY on every accepted connection: with Nagle, a small HTTP/2 reply waits for
        // the client's delayed ACK (40 ms on Linux), which was the p99 of GetTrust and of the
        // command and visibility latencies in the services benchmark.
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut serve = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        let served = tokio::select! {
            served = &mut serve => served,
            () = async { let _ = stop_signal.wait_for(|stop| *stop).await; } => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::info!(grace = ?SHUTDOWN_GRACE, "closing the remaining gRPC connections");
                        serve.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        served
            .map_err(|error| anyhow::anyhow!("the gRPC server task failed: {error}"))
            .and_then(|served| served.context("serve gRPC"))
    })
}

/// How often [`spawn_health_monitor`] looks.
pub const HEALTH_CHECK_PERIOD: Duration = Duration::from_millis(500);

/// Keeps the gRPC health status of the whole server (`""`) and of `service` true to `healthy()`,
/// checked every [`HEALTH_CHECK_PERIOD`]: `SERVING` while it holds, `NOT_SERVING` while it does
/// not (a load balancer or `grpc_health_probe` then routes around the process). Changes are
/// logged. The task ends when the health service is dropped.
pub fn spawn_health_monitor(
    reporter: tonic_health::server::HealthReporter,
    service: &'static str,
    healthy: impl Fn() -> bool + Send + 'static,
) -> JoinHandle<()> {
    use tonic_health::ServingStatus;
    tokio::spawn(async move {
        let mut last = None;
        let mut ticks = tokio::time::interval(HEALTH_CHECK_PERIOD);
        loop {
            ticks.tick().await;
            let now = healthy();
            if last == Some(now) {
                continue;
            }
            let status = if now { ServingStatus::Serving } else { ServingStatus::NotServing };
            if now {
                tracing::info!(service, "healthy: serving");
            } else {
                tracing::warn!(service, "unhealthy: not serving");
            }
            reporter.set_service_status("", status).await;
            if !service.is_empty() {
                reporter.set_service_status(service, status).await;
            }
            last = Some(now);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_addr_is_an_address_or_off() {
        assert_eq!(parse_metrics_addr("off"), Ok(MetricsAddr(None)));
        assert_eq!(
            parse_metrics_addr("127.0.0.1:9464"),
            Ok(MetricsAddr(Some(SocketAddr::from(([127, 0, 0, 1], 9464)))))
        );
        assert!(parse_metrics_addr("nine").is_err_and(|error| error.contains("\"nine\"")));
    }
}
