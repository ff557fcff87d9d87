//! The bounded soak (`just soak`): the real services under steady load at half their measured
//! capacity for `COVENANT_SOAK_SECS` (default 60; `just soak` runs 600), in windows. It checks
//! that nothing fails, that every window holds the rate, that no service's memory grows beyond a
//! stated bound after warm-up, that the latency p99 stays stable, and finally that the data
//! directory verifies (chains, stream index, standing equals a replay of the log).
//!
//! `just test` runs it alone after the rest of the suite, so that it measures the services and
//! not the other tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use covenant_bus::NatsServer;
use covenant_load::{LoadConfig, LoadReport};
use covenant_tests::processes::{ServiceProcess, test_dir};

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const WATCHDOG: &str = env!("CARGO_BIN_EXE_watchdog-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");
const PARTITIONS: u16 = 8;
/// Most a service's resident memory may grow from the end of the first window to the end: what
/// its RocksDB memtables may take together (the ledger's log 128 MiB, a service store 64 MiB:
/// `LOG_MEMTABLE_BUDGET`, `covenant_store::MEMTABLE_BUDGET`), plus 64 MiB for everything else
/// (caches, allocator slack). Steady load at a steady rate must not need more.
const SLACK: u64 = 64 << 20;
const LEDGER_GROWTH_BOUND: u64 = (128 << 20) + SLACK;
const SERVICE_GROWTH_BOUND: u64 = (covenant_store::MEMTABLE_BUDGET as u64) + SLACK;

fn soak_duration() -> Duration {
    let secs =
        std::env::var("COVENANT_SOAK_SECS").ok().and_then(|secs| secs.parse::<u64>().ok()).unwrap_or(60);
    Duration::from_secs(secs.max(30))
}

fn load(
    ledger: &ServiceProcess,
    standing: &ServiceProcess,
    run: &str,
    rate: u64,
    duration: Duration,
) -> LoadConfig {
    let mut config = LoadConfig::new(ledger.endpoint());
    config.standing = Some(standing.endpoint());
    config.rate = rate;
    config.duration = duration;
    config.clients = 32;
    config.customers_per_client = 4;
    config.connections = 4;
    config.visibility_every = 20;
    config.run_id = run.to_owned();
    config
}

fn p99_ms(report: &LoadReport) -> f64 {
    report.latency.value_at_quantile(0.99) as f64 / 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_at_half_capacity_holds_rate_memory_and_latency() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger =
        ServiceProcess::start(Path::new(LEDGER), &dir.path().join("log"), &nats.url(), "fsync", "off")
            .unwrap();
    let start = |binary: &str, name: &str| {
        ServiceProcess::start_consumer(
            Path::new(binary),
            name,
            &dir.path().join(name),
            &nats.url(),
            PARTITIONS,
        )
        .unwrap()
    };
    let mut standing = start(STANDING, "standing");
    let mut watchdog = start(WATCHDOG, "watchdog");

    // Capacity: as fast as 32 clients can go, for 5 s.
    let capacity =
        covenant_load::run(&load(&ledger, &standing, "capacity", 0, Duration::from_secs(5))).await.unwrap();
    assert!(capacity.errors.is_empty(), "errors while measuring capacity: {:?}", capacity.errors);
    let target = ((capacity.rate() / 2.0) as u64).max(50);
    let total = soak_duration();
    let windows = 6u32;
    let window = total / windows;
    eprintln!(
        "soak: capacity {:.0} commands/s (p99 {:.1} ms); {} s at {target}/s in {windows} windows",
        capacity.rate(),
        p99_ms(&capacity),
        total.as_secs()
    );

    let mut p99s = Vec::new();
    let mut memory: Vec<(u64, u64, u64)> = Vec::new();
    let mut commands = 0;
    for index in 0..windows {
        let report = covenant_load::run(&load(&ledger, &standing, &format!("soak{index}"), target, window))
            .await
            .unwrap();
        let rss = (
            ledger.resident_bytes().unwrap(),
            standing.resident_bytes().unwrap(),
            watchdog.resident_bytes().unwrap(),
        );
        eprintln!(
            "soak window {index}: {:.0}/s, p99 {:.1} ms, visibility p99 {:.1} ms, rss ledger {} MiB standing {} MiB watchdog {} MiB",
            report.rate(),
            p99_ms(&report),
            report.visibility.value_at_quantile(0.99) as f64 / 1000.0,
            rss.0 >> 20,
            rss.1 >> 20,
            rss.2 >> 20
        );
        assert!(report.errors.is_empty(), "window {index}: errors {:?}", report.errors);
        assert!(
            report.rate() >= target as f64 * 0.8,
            "window {index}: {:.0}/s, below 80% of the target {target}/s",
            report.rate()
        );
        commands += report.ok;
        p99s.push(p99_ms(&report));
        memory.push(rss);
    }

    // Memory: after the first window (caches and memtables warm), growth stays under the bound.
    let (first, last) = (memory[0], memory[memory.len() - 1]);
    for (name, before, after, bound) in [
        ("ledger", first.0, last.0, LEDGER_GROWTH_BOUND),
        ("standing", first.1, last.1, SERVICE_GROWTH_BOUND),
        ("watchdog", first.2, last.2, SERVICE_GROWTH_BOUND),
    ] {
        assert!(
            after <= before + bound,
            "{name} grew from {} MiB to {} MiB (bound: +{} MiB)",
            before >> 20,
            after >> 20,
            bound >> 20
        );
    }
    // Latency: the later windows' p99 stays within 3x (+25 ms) of the earlier windows'.
    let half = p99s.len() / 2;
    let (early, late) = (median(p99s[..half].to_vec()), median(p99s[half..].to_vec()));
    assert!(late <= early * 3.0 + 25.0, "p99 drifted from {early:.1} ms to {late:.1} ms: {p99s:?}");
    eprintln!("soak: {commands} commands acknowledged, p99 by window {p99s:?} ms");

    // Nothing lost or doubled: stop cleanly and verify the data directory.
    for process in [&mut watchdog, &mut standing] {
        assert!(process.terminate(Duration::from_secs(20)).unwrap(), "a clean stop");
    }
    let mut ledger = ledger;
    assert!(ledger.terminate(Duration::from_secs(20)).unwrap(), "a clean stop");
    let verified =
        Command::new(COVENANT).args(["verify", "--data", dir.path().to_str().unwrap()]).output().unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{report}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(report.contains("projections: standing equals a replay"), "{report}");
}
