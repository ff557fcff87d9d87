//! `covenant-bench log`: the event log beside raw RocksDB, on the same disk, in the same run.
//!
//! Measurements (each repeated `--runs` times, runs interleaved, medians reported):
//! - raw RocksDB `WriteBatch` puts of record-sized values under the log's key layout, in
//!   batches of 1000, 64 and 1, with and without fsync;
//! - log appends of `sample::interaction` commands by 1 and by `--producers` concurrent tokio
//!   tasks (each for its own customers, registered before timing), `buffered` and `fsync`,
//!   with throughput and p50/p99 append latency;
//! - a scan of every partition through `LogReader::scan_events` (checksum and a full decode
//!   into borrowed views) beside a raw iterator over the same `events` column family; and, to
//!   show where the time goes, the same scan decoding into owned events (`scan_partition`), one
//!   decoding only the envelope (`scan_views`), and a raw iterator that only checks checksums;
//! - rebuilding standing's projections from that log with `covenant replay`'s code
//!   (`covenant_cli::replay_standing`: chunks of `REBUILD_CHUNK` records into a store without a
//!   WAL, flushed at the end; the partitions on every core, and on one thread) beside the same
//!   raw iterator.
//!
//! Every database is created fresh in a temporary directory under `--dir` and removed after
//! its run; every run is capped at `--max-run-secs`, so the one-fsync-per-event rows append
//! fewer events than `--events`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use covenant_log::{DEFAULT_PARTITIONS, Durability, EventLog, LogConfig, LogReader, SystemClock, WriteStats};
use tokio::runtime::Runtime;
use tokio::sync::Barrier;

use crate::disk;
use crate::raw::{self, ScanWork, WriteShape};
use crate::report::Table;
use crate::stats::{self, Measurement, Run, percent, thousands, verdict};
use crate::workload::Workload;

/// The ratio the issue asks each compared figure to reach.
const TARGET: f64 = 0.5;
/// Shortest scan run: a run repeats full passes over the log until it has lasted this long.
const MIN_SCAN_TIME: Duration = Duration::from_millis(500);

/// Options of `covenant-bench log`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LogArgs {
    /// Events per timed run (the producers share them); also the size of the scanned log.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Directory for the benchmark's databases (a temporary directory is made under it and
    /// removed afterwards). Default: the system temp directory unless it is a memory
    /// filesystem, else `target/bench-data`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Runs of each measurement; the report shows medians.
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
    /// Concurrent producers (tokio tasks) of the many-producer rows.
    #[arg(long, default_value_t = 64)]
    producers: usize,
    /// Customers each producer appends for, round-robin.
    #[arg(long, default_value_t = 8)]
    customers_per_producer: usize,
    /// Target size in bytes of one encoded event (the interaction summary is sized to fit).
    #[arg(long, default_value_t = 200)]
    pub(crate) event_bytes: usize,
    /// Longest time one timed run may take; slower runs stop early and count what they did.
    #[arg(long, default_value_t = 5.0)]
    max_run_secs: f64,
    /// Run only the append and raw-write measurements whose label contains this text, and the
    /// scans only if it is `scan` (for profiling one figure); the others report 0.
    #[arg(long)]
    only: Option<String>,
    /// Writer threads of the log (`LogConfig::writers`); default: the log's own (one per two
    /// cores).
    #[arg(long)]
    writers: Option<usize>,
}

/// One log append configuration.
#[derive(Debug, Clone, Copy)]
struct AppendShape {
    producers: usize,
    durability: Durability,
}

impl AppendShape {
    fn label(&self) -> String {
        let producers = if self.producers == 1 {
            "1 producer".to_string()
        } else {
            format!("{} producers", self.producers)
        };
        format!("log append, {producers}, {}", durability_name(self.durability))
    }
}

fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Buffered => "buffered",
        Durability::Fsync => "fsync",
        Durability::Replicated => "replicated",
    }
}

/// Everything the append runs share.
#[derive(Debug)]
struct AppendSetup {
    workload: Arc<Workload>,
    customers_per_producer: usize,
    events: u64,
    max_time: Option<Duration>,
    writers: Option<usize>,
}

/// Runs the log benchmark and prints its report to stdout.
pub(crate) fn run(args: &LogArgs) -> Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.producers >= 1, "--producers must be at least 1");
    ensure!(args.customers_per_producer >= 1, "--customers-per-producer must be at least 1");
    ensure!(args.events >= args.producers as u64, "--events must be at least --producers");
    ensure!(args.max_run_secs > 0.0 && args.max_run_secs.is_finite(), "--max-run-secs must be positive");
    let started = Instant::now();

    let bench_dir = disk::choose(args.dir.as_deref())?;
    eprintln!("benchmark directory: {}", bench_dir.describe());
    let root = tempfile::Builder::new()
        .prefix("covenant-bench-")
        .tempdir_in(&bench_dir.path)
        .with_context(|| format!("create a temporary directory under {}", bench_dir.path.display()))?;
    let workload = Arc::new(Workload::sized(args.event_bytes)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start tokio")?;
    // The raw baselines write what the log really stores for one such event: its record with
    // the personal fields sealed apart, which is larger than the event encoded in clear.
    let stored_record = stored_record(&runtime, &root.path().join("sample"), &workload)?;
    let partitions = DEFAULT_PARTITIONS;
    let max_time = Duration::from_secs_f64(args.max_run_secs);
    let setup = AppendSetup {
        workload: Arc::clone(&workload),
        customers_per_producer: args.customers_per_producer,
        events: args.events,
        max_time: Some(max_time),
        writers: args.writers,
    };

    let write_shapes = [
        WriteShape { batch: 1000, sync: false },
        WriteShape { batch: 64, sync: false },
        WriteShape { batch: 1, sync: false },
        WriteShape { batch: 1000, sync: true },
        WriteShape { batch: 64, sync: true },
        WriteShape { batch: 1, sync: true },
    ];
    let append_shapes = [
        AppendShape { producers: 1, durability: Durability::Buffered },
        AppendShape { producers: args.producers, durability: Durability::Buffered },
        AppendShape { producers: 1, durability: Durability::Fsync },
        AppendShape { producers: args.producers, durability: Durability::Fsync },
    ];
    let mut raw_writes: Vec<Measurement> =
        write_shapes.iter().map(|shape| Measurement::new(shape.label())).collect();
    let mut appends: Vec<Measurement> =
        append_shapes.iter().map(|shape| Measurement::new(shape.label())).collect();
    // The log's own counters over each append measurement's timed runs, summed.
    let mut append_stats = vec![WriteStats::default(); append_shapes.len()];

    // Runs are interleaved (all measurements of run 1, then of run 2, …) so that a slow patch
    // of the disk or machine spreads over every measurement instead of skewing one.
    for run in 0..args.runs {
        for (index, (shape, measurement)) in write_shapes.iter().zip(&mut raw_writes).enumerate() {
            if !selected(args, &measurement.name) {
                continue;
            }
            let path = root.path().join(format!("raw-{run}-{index}"));
            let result = raw::write_run(&path, partitions, &stored_record, args.events, *shape, max_time)?;
            remove_dir(&path)?;
            progress(run, args.runs, &measurement.name, &result);
            measurement.runs.push(result);
        }
        for (index, (shape, measurement)) in append_shapes.iter().zip(&mut appends).enumerate() {
            if !selected(args, &measurement.name) {
                continue;
            }
            let path = root.path().join(format!("log-{run}-{index}"));
            let (result, write_stats) = runtime.block_on(append_run(&path, *shape, &setup))?;
            remove_dir(&path)?;
            progress(run, args.runs, &measurement.name, &result);
            measurement.runs.push(result);
            append_stats[index] = append_stats[index].plus(&write_stats);
        }
    }

    let reads = if selected(args, "scan") {
        read_phase(&runtime, root.path(), args, &read_setup_of(&setup))?
    } else {
        Reads::skipped()
    };
    drop(runtime);
    drop(root);

    let context = ReportContext {
        args,
        bench_dir: &bench_dir,
        workload: &workload,
        stored_record_len: stored_record.len(),
        partitions,
        elapsed: started.elapsed(),
    };
    print!("{}", render(&context, &raw_writes, &appends, &append_stats, &reads));
    Ok(())
}

/// Whether `--only` selects the measurement called `name`.
fn selected(args: &LogArgs, name: &str) -> bool {
    args.only.as_deref().is_none_or(|only| name.contains(only))
}

/// The scans' log is filled without a time cap.
fn read_setup_of(setup: &AppendSetup) -> AppendSetup {
    AppendSetup { workload: Arc::clone(&setup.workload), max_time: None, ..*setup }
}

/// Fills one log of `events` events, flushes it to SST files, and scans it through the log and raw.
fn read_phase(runtime: &Runtime, root: &Path, args: &LogArgs, read_setup: &AppendSetup) -> Result<Reads> {
    // Reads: one log of `events` events, flushed to SST files, scanned through the log and raw.
    let read_path = root.join("read");
    let fill = AppendShape { producers: args.producers, durability: Durability::Buffered };
    eprintln!(
        "filling the log to scan: {} events by {} producers",
        thousands(args.events as f64),
        args.producers
    );
    runtime.block_on(append_run(&read_path, fill, read_setup))?;
    raw::flush_all(&read_path)?;
    let mut log_scan = Measurement::new("log scan + full decode (borrowed)");
    let mut owned_scan = Measurement::new("log scan + full decode (owned)");
    let mut view_scan = Measurement::new("log scan, envelope view");
    let mut raw_scan = Measurement::new("raw iterator, no decode");
    let mut hash_scan = Measurement::new("raw iterator + hash check, no decode");
    let mut rebuild = Measurement::new("rebuild standing's projections");
    let mut rebuild_one = Measurement::new("rebuild standing's projections, one thread");
    // The measurements take turns, one run each per round, so that a slow spell of this shared
    // machine falls on all of them rather than on one (the ratios compare them).
    let (mut log_records, mut owned_records, mut view_records) = (0, 0, 0);
    let (mut raw_records, mut hash_records, mut rebuilt_records, mut rebuilt_one) = (0, 0, 0, 0);
    let cores = covenant_log::available_cores();
    for _ in 0..args.runs {
        add_run(
            &mut log_scan,
            &mut log_records,
            scan_log(runtime, &read_path, LogScan::Full, 1, MIN_SCAN_TIME)?,
        );
        add_run(
            &mut owned_scan,
            &mut owned_records,
            scan_log(runtime, &read_path, LogScan::Owned, 1, MIN_SCAN_TIME)?,
        );
        add_run(
            &mut view_scan,
            &mut view_records,
            scan_log(runtime, &read_path, LogScan::Envelope, 1, MIN_SCAN_TIME)?,
        );
        add_run(
            &mut raw_scan,
            &mut raw_records,
            raw::scan_runs(&read_path, ScanWork::Touch, 1, MIN_SCAN_TIME)?,
        );
        add_run(
            &mut hash_scan,
            &mut hash_records,
            raw::scan_runs(&read_path, ScanWork::HashCheck, 1, MIN_SCAN_TIME)?,
        );
        add_run(&mut rebuild, &mut rebuilt_records, rebuild_runs(runtime, &read_path, root, 1, cores)?);
        add_run(&mut rebuild_one, &mut rebuilt_one, rebuild_runs(runtime, &read_path, root, 1, 1)?);
    }
    let reads = Reads {
        records: log_records,
        log_scan,
        owned_scan,
        view_scan,
        raw_scan,
        hash_scan,
        rebuild,
        rebuild_one,
    };
    for measurement in reads.measurements() {
        for (run, result) in measurement.runs.iter().enumerate() {
            progress(run, args.runs, &measurement.name, result);
        }
    }
    if log_records != raw_records
        || raw_records != hash_records
        || view_records != log_records
        || owned_records != log_records
        || rebuilt_records != log_records
        || rebuilt_one != log_records
    {
        bail!(
            "the scans disagree: the log saw {log_records} records (owned {owned_records}, views \
             {view_records}), the raw iterator {raw_records}, the hash-checking iterator \
             {hash_records}, the rebuilds {rebuilt_records} and {rebuilt_one} (one thread)"
        );
    }
    Ok(reads)
}

/// Adds a round's runs to `measurement` and notes the records of one pass.
fn add_run(measurement: &mut Measurement, records: &mut u64, (pass_records, runs): (u64, Vec<Run>)) {
    *records = pass_records;
    measurement.runs.extend(runs);
}

fn progress(run: usize, runs: usize, name: &str, result: &Run) {
    let latency =
        result.latency_us.map(|(p50, p99)| format!(", p50 {p50} µs, p99 {p99} µs")).unwrap_or_default();
    eprintln!(
        "[run {}/{runs}] {name}: {} events in {:.2} s = {} events/s{latency}",
        run + 1,
        thousands(result.events as f64),
        result.elapsed.as_secs_f64(),
        thousands(result.rate())
    );
}

fn remove_dir(path: &Path) -> Result<()> {
    std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))
}

/// The stored bytes of one workload interaction, as the log writes them: a customer is
/// registered and one interaction appended to a fresh log at `path` (on `runtime`), and once the
/// log is closed its record is read back on this thread (reads block; never on an async worker).
fn stored_record(runtime: &Runtime, path: &Path, workload: &Workload) -> Result<Vec<u8>> {
    let position = runtime.block_on(async {
        let log = EventLog::open(LogConfig::new(path).with_durability(Durability::Buffered))
            .await
            .with_context(|| format!("open the sample log at {}", path.display()))?;
        log.append(workload.register(0, 0)?).await.context("register the sample customer")?;
        let outcome =
            log.append(workload.interaction(0, 1, 0)?).await.context("append the sample interaction")?;
        log.close().await.context("close the sample log")?;
        anyhow::Ok((outcome.partition, outcome.first_offset))
    })?;
    let reader = LogReader::open_read_only(path).context("open the sample log to read")?;
    let mut record = None;
    reader.scan_raw::<covenant_log::LogError>(position.0, position.1, 1, |_, bytes| {
        record = Some(bytes.to_vec());
        Ok(())
    })?;
    drop(reader);
    remove_dir(path)?;
    record.context("the sample interaction's record should be readable")
}

/// Where the append time went, by the log's own counters over all runs of each append row: how
/// busy the writer was and how much of the wall time the sync stage spent in fsyncs.
fn render_write_stats(appends: &[Measurement], append_stats: &[WriteStats]) -> String {
    let mut table = Table::new([
        "Log figure",
        "Commands per group commit",
        "Writer µs per command",
        "Writer busy",
        "Fsyncs/s",
        "Commands per fsync",
        "Mean fsync µs",
        "Sync stage in fsync",
    ]);
    let mut rows = 0;
    for (measurement, stats) in appends.iter().zip(append_stats) {
        let wall: Duration = measurement.runs.iter().map(|run| run.elapsed).sum();
        if stats.group_commits == 0 || wall.is_zero() {
            continue;
        }
        let share = |busy: Duration| format!("{:.0}%", 100.0 * busy.as_secs_f64() / wall.as_secs_f64());
        let (fsyncs_per_second, per_fsync, mean_fsync, in_fsync) = if stats.fsyncs == 0 {
            ("—".to_string(), "—".to_string(), "—".to_string(), "—".to_string())
        } else {
            (
                thousands(stats.fsyncs as f64 / wall.as_secs_f64()),
                format!("{:.1}", stats.commands_per_fsync()),
                thousands(stats.mean_fsync().as_secs_f64() * 1e6),
                share(stats.fsync_time),
            )
        };
        table.row([
            measurement.name.clone(),
            format!("{:.1}", stats.commands as f64 / stats.group_commits as f64),
            format!("{:.1}", stats.writer_time_per_command().as_secs_f64() * 1e6),
            share(stats.writer_busy),
            fsyncs_per_second,
            per_fsync,
            mean_fsync,
            in_fsync,
        ]);
        rows += 1;
    }
    if rows == 0 {
        return String::new();
    }
    format!(
        "Where the append time went (the log's counters, `EventLog::write_stats`, over every run of the row; \
         \"busy\" is a share of the runs' wall time, the writer's being one thread's):\n\n{}\n",
        table.render()
    )
}

/// One timed append run on a fresh log at `path`: registers every producer's customers, then
/// lets `shape.producers` tasks append their share of `setup.events` interactions at once.
/// Returns the run and the log's write counters over its timed part.
async fn append_run(path: &Path, shape: AppendShape, setup: &AppendSetup) -> Result<(Run, WriteStats)> {
    let mut config = LogConfig::new(path).with_durability(shape.durability);
    config.writers = setup.writers;
    let log = EventLog::open(config).await.with_context(|| format!("open the log at {}", path.display()))?;
    let customers = setup.customers_per_producer;

    let mut registrations = Vec::with_capacity(shape.producers);
    for producer in 0..shape.producers {
        let log = log.clone();
        let workload = Arc::clone(&setup.workload);
        registrations.push(tokio::spawn(async move {
            for customer in 0..customers {
                log.append(workload.register(producer, customer)?).await.context("register a customer")?;
            }
            anyhow::Ok(())
        }));
    }
    for registration in registrations {
        registration.await.context("registration task")??;
    }

    let producers = shape.producers as u64;
    let barrier = Arc::new(Barrier::new(shape.producers + 1));
    let mut tasks = Vec::with_capacity(shape.producers);
    for producer in 0..shape.producers {
        let quota = setup.events / producers + u64::from((producer as u64) < setup.events % producers);
        let log = log.clone();
        let workload = Arc::clone(&setup.workload);
        let barrier = Arc::clone(&barrier);
        let max_time = setup.max_time;
        let mut histogram = stats::latency_histogram()?;
        tasks.push(tokio::spawn(async move {
            // Requests are built before timing: the run measures the log, not the generator.
            let requests = (0..quota)
                .map(|sequence| workload.interaction(producer, customers, sequence))
                .collect::<Result<Vec<_>>>();
            barrier.wait().await;
            let start = Instant::now();
            let mut appended = 0u64;
            for request in requests? {
                if max_time.is_some_and(|max| start.elapsed() >= max) {
                    break;
                }
                let sent = Instant::now();
                let outcome = log.append(request).await.context("append an interaction")?;
                stats::record_latency(&mut histogram, sent.elapsed());
                if outcome.deduplicated {
                    bail!("a fresh command id was answered as a retry");
                }
                appended += u64::from(outcome.event_count);
            }
            anyhow::Ok((appended, histogram))
        }));
    }
    let before = log.write_stats();
    barrier.wait().await;
    let start = Instant::now();
    let mut events = 0;
    let mut histogram = stats::latency_histogram()?;
    for task in tasks {
        let (appended, latencies) = task.await.context("producer task")??;
        events += appended;
        histogram.add(&latencies).map_err(|error| anyhow!("merge latencies: {error}"))?;
    }
    let elapsed = start.elapsed();
    let write_stats = log.write_stats().since(&before);
    log.close().await.context("close the log")?;
    Ok((Run::with_latencies(events, elapsed, &histogram), write_stats))
}

/// How much of each record a log scan decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogScan {
    /// `scan_events`: the whole event, decoded into a borrowed `RecordedEventView`.
    Full,
    /// `scan_partition`: the whole event, decoded into an owned `RecordedEvent`.
    Owned,
    /// `scan_views`: the envelope, borrowed; the payload is not decoded.
    Envelope,
}

/// Scans every partition of the (closed) log at `path` as `mode` says: one uncounted warm-up
/// pass, then `runs` runs of full passes lasting at least `min_run_time` each. Returns the
/// records of one pass and the runs.
fn scan_log(
    runtime: &Runtime,
    path: &Path,
    mode: LogScan,
    runs: usize,
    min_run_time: Duration,
) -> Result<(u64, Vec<Run>)> {
    let log = EventLog::open_blocking(
        LogConfig::new(path).with_durability(Durability::Buffered),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("open the log at {}", path.display()))?;
    let reader = log.reader();
    // Stop the writer threads: only the reader (and the database under it) stays open.
    runtime.block_on(log.close()).context("close the log's writers")?;
    let pass = || -> Result<u64> {
        let mut count = 0u64;
        for partition in 0..reader.partition_count() {
            let visited = match mode {
                LogScan::Full => reader.scan_events(partition, 0, usize::MAX, |event| {
                    black_box(event.event_type());
                    black_box(event);
                }),
                LogScan::Owned => reader.scan_partition(partition, 0, usize::MAX, |event| {
                    black_box(event);
                }),
                LogScan::Envelope => reader.scan_views(partition, 0, usize::MAX, |view| {
                    black_box(view.event_type());
                    black_box(view);
                }),
            }
            .with_context(|| format!("scan partition {partition}"))?;
            count += visited as u64;
        }
        Ok(count)
    };
    crate::stats::timed_passes(pass, runs, min_run_time)
}

/// Rebuilds standing's projections from the (closed) log at `path` into a fresh store, `runs`
/// times, the partitions on `threads` threads; returns the records of one rebuild and the runs.
/// With `covenant replay`'s own code (`covenant_cli::replay_standing`: chunks of
/// `REBUILD_CHUNK` records, each with its partition's checkpoint), into a store opened for a
/// rebuild (no WAL) and flushed at the end (timed).
fn rebuild_runs(
    runtime: &Runtime,
    path: &Path,
    root: &Path,
    runs: usize,
    threads: usize,
) -> Result<(u64, Vec<Run>)> {
    let log = EventLog::open_blocking(
        LogConfig::new(path).with_durability(Durability::Buffered),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("open the log at {}", path.display()))?;
    let reader = log.reader();
    runtime.block_on(log.close()).context("close the log's writers")?;
    let mut records = 0;
    let mut results = Vec::with_capacity(runs);
    for run in 0..runs {
        let dir = root.join(format!("rebuild-{run}"));
        let store = covenant_standing::StandingStore::open_for_rebuild(
            &dir,
            reader.partition_count(),
            covenant_domain::deadlines::SlaPolicy::default(),
        )
        .with_context(|| format!("open a standing store at {}", dir.display()))?;
        let until = (0..reader.partition_count())
            .map(|partition| reader.partition_end(partition))
            .collect::<Result<Vec<u64>, _>>()?;
        let start = Instant::now();
        let applied = covenant_cli::replay_standing(&reader, &store, &until, threads, &mut |_| {})?;
        store.finish_rebuild().context("flush the rebuilt store")?;
        results.push(Run::new(applied, start.elapsed()));
        records = applied;
        drop(store);
        remove_dir(&dir)?;
    }
    Ok((records, results))
}

/// The read measurements.
#[derive(Debug)]
struct Reads {
    /// Records in the scanned log (one pass).
    records: u64,
    log_scan: Measurement,
    owned_scan: Measurement,
    view_scan: Measurement,
    raw_scan: Measurement,
    hash_scan: Measurement,
    /// Standing's projections rebuilt from the log.
    rebuild: Measurement,
    rebuild_one: Measurement,
}

impl Reads {
    /// Every read measurement, in the report's order.
    fn measurements(&self) -> [&Measurement; 7] {
        [
            &self.log_scan,
            &self.owned_scan,
            &self.view_scan,
            &self.raw_scan,
            &self.hash_scan,
            &self.rebuild,
            &self.rebuild_one,
        ]
    }

    /// The scans were not selected: every figure is empty.
    fn skipped() -> Self {
        Self {
            records: 0,
            log_scan: Measurement::new("log scan + full decode (borrowed)"),
            owned_scan: Measurement::new("log scan + full decode (owned)"),
            view_scan: Measurement::new("log scan, envelope view"),
            raw_scan: Measurement::new("raw iterator, no decode"),
            hash_scan: Measurement::new("raw iterator + hash check, no decode"),
            rebuild: Measurement::new("rebuild standing's projections"),
            rebuild_one: Measurement::new("rebuild standing's projections, one thread"),
        }
    }
}

struct ReportContext<'a> {
    args: &'a LogArgs,
    bench_dir: &'a disk::BenchDir,
    workload: &'a Workload,
    /// Bytes of the record the log stores for one workload event (personal fields sealed).
    stored_record_len: usize,
    partitions: u16,
    elapsed: Duration,
}

fn latency_cells(measurement: &Measurement) -> [String; 2] {
    match measurement.latency_us() {
        Some((p50, p99)) => [thousands(p50), thousands(p99)],
        None => ["—".to_string(), "—".to_string()],
    }
}

/// The markdown report.
fn render(
    context: &ReportContext<'_>,
    raw_writes: &[Measurement],
    appends: &[Measurement],
    append_stats: &[WriteStats],
    reads: &Reads,
) -> String {
    let Reads { records, log_scan, owned_scan, view_scan, raw_scan, hash_scan, rebuild, rebuild_one } = reads;
    let args = context.args;
    let find_raw = |batch: usize, sync: bool| {
        let label = WriteShape { batch, sync }.label();
        raw_writes.iter().find(|measurement| measurement.name == label)
    };
    let find_log = |producers: usize, durability: Durability| {
        let label = AppendShape { producers, durability }.label();
        appends.iter().find(|measurement| measurement.name == label)
    };

    let mut out = String::new();
    out.push_str("## Event log — `covenant-bench log`\n\n");
    out.push_str(&format!("- Disk: {}\n", context.bench_dir.describe()));
    out.push_str(&format!(
        "- Workload: `sample::interaction` events of {} bytes encoded (summary of {} bytes); the log stores each as \
         a record of {} bytes (the summary sealed with the customer's key; {} bytes in clear). \
         Raw baselines put {}-byte values (a record read back from a real log) under the log's keys \
         `[u16 partition][u64 offset]` (big-endian) into an `events` column family with the log's options.\n",
        context.workload.event_bytes,
        context.workload.summary_len,
        context.stored_record_len,
        context.workload.record.len(),
        context.stored_record_len,
    ));
    out.push_str(&format!(
        "- {} partitions; {} producers × {} customers each (registered before timing); up to {} events per run, \
         each run capped at {} s; {} runs per figure, interleaved; **medians** shown.\n",
        context.partitions,
        args.producers,
        args.customers_per_producer,
        thousands(args.events as f64),
        args.max_run_secs,
        args.runs,
    ));
    out.push_str(&format!("- Total time: {:.0} s.\n\n", context.elapsed.as_secs_f64()));

    out.push_str("### Appends\n\n");
    let mut table = Table::new([
        "Log figure",
        "Log events/s",
        "p50 µs",
        "p99 µs",
        "Raw baseline (same run, same disk)",
        "Raw events/s",
        "Log / raw",
        "Target",
    ]);
    let rows: [(usize, Durability, usize, bool, bool); 6] = [
        (1, Durability::Buffered, 1, false, false),
        (args.producers, Durability::Buffered, 64, false, false),
        (args.producers, Durability::Buffered, 1000, false, false),
        (1, Durability::Fsync, 1, true, false),
        (args.producers, Durability::Fsync, 64, true, true),
        (args.producers, Durability::Fsync, 1000, true, true),
    ];
    for (producers, durability, batch, sync, targeted) in rows {
        let (Some(log), Some(raw)) = (find_log(producers, durability), find_raw(batch, sync)) else {
            continue;
        };
        let [p50, p99] = latency_cells(log);
        let target = if targeted {
            format!("≥ 50%: **{}**", verdict(log.rate(), raw.rate(), TARGET))
        } else {
            "—".to_string()
        };
        table.row([
            log.name.clone(),
            thousands(log.rate()),
            p50,
            p99,
            raw.name.clone(),
            thousands(raw.rate()),
            percent(log.rate(), raw.rate()),
            target,
        ]);
    }
    out.push_str(&table.render());
    out.push_str(
        "\nPer event, the log writes the record, a stream-index entry and a command outcome (plus the customer's \
         stream head every few events), after deciding the command, sealing its personal fields and hash-chaining \
         the record; the raw baseline writes the record bytes only. Batch 64 is the group-commit size comparable \
         to 64 producers.\n\n",
    );
    out.push_str(&render_write_stats(appends, append_stats));

    out.push_str("### Reads\n\n");
    let mut table = Table::new([
        "Log figure",
        "Log events/s",
        "Raw baseline (same data)",
        "Raw events/s",
        "Log / raw",
        "Target",
    ]);
    // Every read figure is compared with the same raw iterator.
    let mut row = |figure: String, measurement: &Measurement, targeted: bool| {
        let target = if targeted {
            format!("≥ 50%: **{}**", verdict(measurement.rate(), raw_scan.rate(), TARGET))
        } else {
            "—".to_string()
        };
        table.row([
            figure,
            thousands(measurement.rate()),
            "raw iterator over `events`, keys + values, no decode".to_string(),
            thousands(raw_scan.rate()),
            percent(measurement.rate(), raw_scan.rate()),
            target,
        ]);
    };
    let partitions = context.partitions;
    row(
        format!(
            "`LogReader::scan_events` over all {partitions} partitions (checksum + whole event decoded into borrowed views)"
        ),
        log_scan,
        true,
    );
    row(
        format!(
            "`LogReader::scan_partition` over all {partitions} partitions (checksum + whole event decoded into owned types)"
        ),
        owned_scan,
        false,
    );
    row(
        format!(
            "`LogReader::scan_views` over all {partitions} partitions (checksum + envelope decoded in place; payload not decoded)"
        ),
        view_scan,
        false,
    );
    row(
        "rebuilding standing's projections from the log with `covenant replay`'s code \
         (`covenant_cli::replay_standing`): each partition in chunks of 65,536 records, each record \
         checked and its event copied into the customer's timeline segment as stored, only the \
         events whose payload the projections read decoded; one RocksDB WriteBatch per chunk \
         (timeline segments, customers, promises, complaints, surveys, checkpoint) into a fresh \
         store without a WAL, flushed at the end; the partitions on every core"
            .to_string(),
        rebuild,
        true,
    );
    row("the same rebuild on one thread".to_string(), rebuild_one, false);
    row(
        "(where the time goes) raw iterator + checksum check (`codec::split_record`), no decode".to_string(),
        hash_scan,
        false,
    );
    out.push_str(&table.render());
    out.push_str(&format!(
        "\nAll scan the same {} records, flushed to SST files beforehand; after one unmeasured warm-up pass, each \
         run repeats full passes for at least {} ms.\n\n",
        thousands(*records as f64),
        MIN_SCAN_TIME.as_millis(),
    ));

    out.push_str("### Every run (events/s)\n\n");
    let mut headers = vec!["Measurement".to_string(), "Events per run".to_string()];
    headers.extend((1..=args.runs).map(|run| format!("Run {run}")));
    headers.push("Median".to_string());
    let mut table = Table::new(headers);
    for measurement in raw_writes.iter().chain(appends).chain(reads.measurements()) {
        let mut cells = vec![measurement.name.clone(), thousands(measurement.events())];
        cells.extend(measurement.rates().into_iter().map(thousands));
        cells.push(thousands(measurement.rate()));
        table.row(cells);
    }
    out.push_str(&table.render());
    out
}
