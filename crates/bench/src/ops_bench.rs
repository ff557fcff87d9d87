//! `covenant-bench ops`: what ops and data teams run over the whole history, beside a raw
//! RocksDB scan of the same log in the same run.
//!
//! A ledger (in this process, `buffered`, with a real nats-server for its relay) records
//! `--events` events of the load generator's journeys (kept, renegotiated, broken-and-recovered
//! promises, complaints, surveys, purchases) through gRPC `AppendBatch`. Then, with the ledger
//! stopped and the log flushed to SST files:
//!
//! - raw RocksDB iterator over the log's `events` family (no decode): the baseline;
//! - `covenant audit promises --data … --format json` as a child process (the real command), with
//!   its peak resident memory (VmHWM, polled from `/proc`), on every core (the default) and with
//!   `--threads 1`;
//! - `covenant export --format jsonl` (to `/dev/null`) and `--format csv` (a file per type), each
//!   on every core (the default) and with `--threads 1`, so the per-core rate is in the same table;
//! - `covenant replay --projection standing` (issue 4's rebuild on this realistic mix of events;
//!   its target is 50% of the raw scan) and `covenant replay --projection all` (standing and
//!   the watchdog's deadlines, in one pass over the log);
//!
//! and, with the ledger started again on that log, `EventLog.Subscribe` catch-up from offset 0
//! of every partition over gRPC (every envelope received and counted).
//!
//! Rates are records of the log per second of wall time (the child's whole life, start-up
//! included); medians of `--runs` runs, runs interleaved.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use covenant_bus::{NatsServer, RelayConfig};
use covenant_ledger::LedgerConfig;
use covenant_log::Durability;
use covenant_proto::v1::{self, event_log_client::EventLogClient, ledger_client::LedgerClient};

use crate::disk;
use crate::raw::{self, ScanWork};
use crate::report::Table;
use crate::stats::{Measurement, Run, median, percent, thousands, verdict};

/// The ratio the issue asks audit and export to reach against the raw scan.
const TARGET: f64 = 0.3;
/// The ratio issue 4 asks a rebuild of the projections to reach against the raw scan.
const REBUILD_TARGET: f64 = 0.5;
/// Customers whose journeys fill the log (each `AppendBatch` carries one command of each of
/// `BATCH` of them).
const CUSTOMERS: usize = 20_000;
const BATCH: usize = 1000;

/// Options of `covenant-bench ops`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OpsArgs {
    /// Events in the audited log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Runs of each measurement; the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory for the benchmark's data (a temporary directory is made under it).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl Default for OpsArgs {
    fn default() -> Self {
        Self { events: 1_000_000, runs: 3, dir: None }
    }
}

/// A child's run: wall time and peak resident memory.
struct ChildRun {
    elapsed: Duration,
    peak_kib: u64,
    stdout: Vec<u8>,
}

/// The high-water mark of a process's resident memory, in KiB (`None`: it is gone).
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `covenant args…`, polling its peak memory until it exits.
fn run_child(covenant: &Path, args: &[&str], stdout_to: Option<&Path>) -> Result<ChildRun> {
    let stdout = match stdout_to {
        Some(path) => Stdio::from(std::fs::File::create(path)?),
        None => Stdio::null(),
    };
    let started = Instant::now();
    let mut child = Command::new(covenant)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", covenant.display()))?;
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
        }
        bail!("covenant {args:?} failed: {stderr}");
    }
    let stdout = stdout_to.map(std::fs::read).transpose()?.unwrap_or_default();
    Ok(ChildRun { elapsed, peak_kib: peak, stdout })
}

/// The `covenant` binary next to this one (`cargo build --release --bins` builds both).
fn covenant_binary() -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("covenant");
    ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release --workspace --bins`",
        path.display()
    );
    Ok(path)
}

/// Records journeys through the ledger until the log holds at least `events` events; returns
/// how many it holds.
async fn fill(ledger_url: &str, events: u64) -> Result<u64> {
    let mut client = LedgerClient::new(crate::auth::channel(ledger_url).await?);
    let mut journeys: Vec<covenant_load::Journey> = (0..CUSTOMERS)
        .map(|index| covenant_load::Journey::new("ops", format!("ops-{index}"), index as u64))
        .collect();
    let mut recorded = 0u64;
    let mut next = 0usize;
    while recorded < events {
        let commands: Vec<v1::BatchCommand> = (0..BATCH)
            .map(|offset| {
                let journey = &mut journeys[(next + offset) % CUSTOMERS];
                v1::BatchCommand { command: Some(journey.next_command()) }
            })
            .collect();
        next = (next + BATCH) % CUSTOMERS;
        let results = client.append_batch(v1::AppendBatchRequest { commands }).await?.into_inner().results;
        for (index, result) in results.into_iter().enumerate() {
            match result.result {
                Some(v1::batch_result::Result::Appended(appended)) => {
                    recorded += appended.positions.len() as u64
                }
                other => bail!("the ledger refused journey command {index}: {other:?}"),
            }
        }
    }
    Ok(recorded)
}

/// Receives every event of the log through `EventLog.Subscribe` from offset 0.
async fn subscribe_run(ledger_url: &str, events: u64) -> Result<Run> {
    let mut client =
        EventLogClient::new(crate::auth::channel(ledger_url).await?).max_decoding_message_size(16 << 20);
    let started = Instant::now();
    let mut stream = client
        .subscribe(v1::SubscribeRequest { from: vec![], event_types: vec![], from_end: false })
        .await?
        .into_inner();
    let mut received = 0u64;
    while received < events {
        match stream.message().await? {
            Some(_) => received += 1,
            None => bail!("the subscription ended after {received} of {events} events"),
        }
    }
    Ok(Run::new(received, started.elapsed()))
}

async fn start_ledger(log_dir: &Path, nats_url: &str) -> Result<covenant_ledger::RunningLedger> {
    covenant_ledger::start(LedgerConfig {
        data_dir: log_dir.to_path_buf(),
        partitions: None,
        durability: Durability::Buffered,
        grpc_addr: "127.0.0.1:0".parse()?,
        nats_url: nats_url.to_owned(),
        relay: RelayConfig::default(),
        metrics_addr: None,
        auth: crate::auth::mode()?,
        tls: None,
        nats_security: Default::default(),
        master_key: None,
    })
    .await
}

/// Runs the benchmark and prints its table.
pub(crate) fn run(args: &OpsArgs) -> Result<()> {
    let covenant = covenant_binary()?;
    let bench_dir = disk::choose(args.dir.as_deref())?;
    let root = tempfile::Builder::new()
        .prefix("covenant-bench-ops-")
        .tempdir_in(&bench_dir.path)
        .context("create a temporary directory")?;
    let data = root.path().join("data");
    let log_dir = data.join("log");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let nats_dir = root.path().join("nats");
    let mut nats = NatsServer::start(&nats_dir)?;
    let nats_url = nats.url();

    eprintln!("recording {} events of journeys through the ledger …", thousands(args.events as f64));
    let records = runtime.block_on(async {
        let ledger = start_ledger(&log_dir, &nats_url).await?;
        let recorded = fill(&format!("http://{}", ledger.grpc_addr), args.events).await?;
        ledger.stop().await?;
        anyhow::Ok(recorded)
    })?;
    raw::flush_all(&log_dir)?;

    let data_arg = data.to_str().ok_or_else(|| anyhow!("a non-UTF-8 temp path"))?;
    let csv_dir = root.path().join("csv");
    let csv_arg = csv_dir.to_str().ok_or_else(|| anyhow!("a non-UTF-8 temp path"))?;
    let report_path = root.path().join("audit.json");
    let mut raw_scan = Measurement::new("raw RocksDB iterator over the log, no decode");
    let mut audit = Measurement::new("covenant audit promises --data (JSON report)");
    let mut audit_one = Measurement::new("covenant audit promises --data --threads 1");
    let mut jsonl = Measurement::new("covenant export --format jsonl");
    let mut jsonl_one = Measurement::new("covenant export --format jsonl --threads 1");
    let mut csv = Measurement::new("covenant export --format csv (a file per type)");
    let mut csv_one = Measurement::new("covenant export --format csv --threads 1");
    let mut replay_standing = Measurement::new("covenant replay --projection standing");
    let mut replay_all = Measurement::new("covenant replay --projection all (standing + watchdog, one pass)");
    let mut audit_peaks = Vec::new();
    let mut audit_one_peaks = Vec::new();
    let mut export_peaks = Vec::new();
    let mut stories = 0;
    for run in 0..args.runs {
        eprintln!(
            "run {}/{}: raw scan, audit, export jsonl and csv (all cores, one thread), replay",
            run + 1,
            args.runs
        );
        let (scanned, runs) = raw::scan_runs(&log_dir, ScanWork::Touch, 1, Duration::from_millis(500))?;
        ensure!(scanned == records, "the raw scan saw {scanned} records, the ledger recorded {records}");
        raw_scan.runs.extend(runs);

        let child = run_child(
            &covenant,
            &["audit", "promises", "--data", data_arg, "--format", "json"],
            Some(&report_path),
        )?;
        let report: serde_json::Value = serde_json::from_slice(&child.stdout)?;
        ensure!(
            report["records_read"].as_u64() == Some(records),
            "the audit read {} records",
            report["records_read"]
        );
        stories = report["broken_promises"].as_array().map_or(0, Vec::len);
        audit.runs.push(Run::new(records, child.elapsed));
        audit_peaks.push(child.peak_kib as f64);
        let child = run_child(
            &covenant,
            &["audit", "promises", "--data", data_arg, "--format", "json", "--threads", "1"],
            Some(&report_path),
        )?;
        let one: serde_json::Value = serde_json::from_slice(&child.stdout)?;
        ensure!(
            one["broken_promises"].as_array().map_or(0, Vec::len) == stories,
            "the audit on one thread told {} stories, on every core {stories}",
            one["broken_promises"]
        );
        audit_one.runs.push(Run::new(records, child.elapsed));
        audit_one_peaks.push(child.peak_kib as f64);

        let child = run_child(
            &covenant,
            &["export", "--format", "jsonl", "--data", data_arg, "--out", "/dev/null"],
            None,
        )?;
        jsonl.runs.push(Run::new(records, child.elapsed));
        export_peaks.push(child.peak_kib as f64);
        let child = run_child(
            &covenant,
            &["export", "--format", "jsonl", "--data", data_arg, "--out", "/dev/null", "--threads", "1"],
            None,
        )?;
        jsonl_one.runs.push(Run::new(records, child.elapsed));
        let child =
            run_child(&covenant, &["export", "--format", "csv", "--data", data_arg, "--out", csv_arg], None)?;
        csv.runs.push(Run::new(records, child.elapsed));
        std::fs::remove_dir_all(&csv_dir).ok();
        let child = run_child(
            &covenant,
            &["export", "--format", "csv", "--data", data_arg, "--out", csv_arg, "--threads", "1"],
            None,
        )?;
        csv_one.runs.push(Run::new(records, child.elapsed));
        std::fs::remove_dir_all(&csv_dir).ok();
        let child = run_child(&covenant, &["replay", "--data", data_arg, "--projection", "standing"], None)?;
        replay_standing.runs.push(Run::new(records, child.elapsed));
        let child = run_child(&covenant, &["replay", "--data", data_arg, "--projection", "all"], None)?;
        replay_all.runs.push(Run::new(records, child.elapsed));
    }

    eprintln!("Subscribe catch-up over gRPC …");
    let mut subscribe = Measurement::new("EventLog.Subscribe catch-up from offset 0 (gRPC)");
    runtime.block_on(async {
        let ledger = start_ledger(&log_dir, &nats_url).await?;
        let url = format!("http://{}", ledger.grpc_addr);
        for run in 0..args.runs {
            eprintln!("run {}/{}: Subscribe", run + 1, args.runs);
            subscribe.runs.push(subscribe_run(&url, records).await?);
        }
        ledger.stop().await
    })?;
    drop(runtime);
    nats.stop();
    let log_bytes = directory_bytes(&log_dir);

    let baseline = raw_scan.rate();
    let mut table = Table::new(["measurement", "events/s (median)", "vs raw scan", "target", "peak memory"]);
    table.row([raw_scan.name.clone(), thousands(baseline), "100%".into(), "baseline".into(), "—".into()]);
    let rows = [
        (&audit, Some(median(audit_peaks)), Some(TARGET)),
        (&audit_one, Some(median(audit_one_peaks)), None),
        (&jsonl, Some(median(export_peaks)), Some(TARGET)),
        (&jsonl_one, None, None),
        (&csv, None, Some(TARGET)),
        (&csv_one, None, None),
        (&replay_standing, None, Some(REBUILD_TARGET)),
        (&replay_all, None, None),
        (&subscribe, None, None),
    ];
    for (measurement, peak, target) in rows {
        let rate = measurement.rate();
        table.row([
            measurement.name.clone(),
            thousands(rate),
            percent(rate, baseline),
            match target {
                Some(target) => format!("≥ {:.0}%: {}", target * 100.0, verdict(rate, baseline, target)),
                None => "—".into(),
            },
            peak.map_or_else(|| "—".into(), |kib| format!("{:.0} MiB", kib / 1024.0)),
        ]);
    }
    println!("\n## Ops and data teams over {} events (`covenant-bench ops`)\n", thousands(records as f64));
    println!(
        "Log: {} records, {:.0} MiB on disk, {stories} broken promises (stories) in the audit. Directory: {}.\n",
        thousands(records as f64),
        log_bytes as f64 / (1 << 20) as f64,
        bench_dir.describe()
    );
    print!("{}", table.render());
    let cores = covenant_log::available_cores();
    println!(
        "\nThe audit, the exports and the replays work on every core ({cores} here) unless `--threads 1`; \
         the raw scan is one thread. Ratios of each run to the raw scan of the same run:\n"
    );
    let mut headers = vec!["measurement".to_string()];
    headers.extend((1..=args.runs).map(|run| format!("run {run}")));
    let mut runs_table = Table::new(headers);
    for measurement in
        [&raw_scan, &audit, &audit_one, &jsonl, &jsonl_one, &csv, &csv_one, &replay_standing, &replay_all]
    {
        let mut cells = vec![measurement.name.clone()];
        for (rate, raw) in measurement.rates().into_iter().zip(raw_scan.rates()) {
            cells.push(format!("{} ({})", thousands(rate), percent(rate, raw)));
        }
        runs_table.row(cells);
    }
    print!("{}", runs_table.render());
    Ok(())
}

/// Bytes of the files under `dir`.
fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
