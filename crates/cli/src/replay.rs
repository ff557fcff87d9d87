//! `covenant replay`: rebuilds the projections (standing's read models, the watchdog's
//! deadlines) from the log, and the projection check of `covenant verify`.
//!
//! A replay builds the new store beside the old one (`<name>.replay`), applying every partition
//! through the same code as the live consumer (each chunk with its checkpoint in one write, each
//! event without its personal data, as the public stream carries it; the partitions on every
//! core at once, as the live consumers run side by side) but in chunks of
//! [`REBUILD_CHUNK`](covenant_standing::store::REBUILD_CHUNK) events and without RocksDB's WAL
//! (a replay that stops half way is thrown away), then flushes it and swaps it in: the old store
//! is never half-rebuilt. `--projection all` rebuilds standing and the watchdog in one pass over
//! the log (each record read, checked and decoded once for both). The service must be
//! stopped (its store's lock says when it is not). Progress: a bar with events/s and ETA on a
//! terminal (indicatif), a plain line every two seconds otherwise.
//!
//! The check opens standing's store read-only (beside a running standing), reads how far it has
//! applied each partition, replays the log up to exactly there into a temporary store, and
//! compares the read models family by family; the first difference is named. Timelines are
//! compared as histories, event by event: the live consumer's segments hold a delivery's events,
//! the replay's a chunk's.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use covenant_bus::EventSink;
use covenant_domain::RecordedEvent;
use covenant_domain::deadlines;
use covenant_domain::deadlines::SlaPolicy;
use covenant_log::LogReader;
use covenant_log::codec::RecordView;
use covenant_standing::StandingStore;
use covenant_standing::store::{
    AppliedEvent, BatchApplier, COMPLAINTS, CUSTOMERS, PROMISES, RESOLUTIONS, SURVEYS, TIMELINE,
    first_timeline_difference, reads_payload,
};
use covenant_store::Store;
use covenant_watchdog::store::DeadlineStore;
use indicatif::{ProgressBar, ProgressStyle};

use crate::event_json::redact;

/// Events applied per write.
const CHUNK: usize = covenant_standing::store::REBUILD_CHUNK;
/// The read models a replay must reproduce exactly (the band families depend on when the band
/// tracker looked, not only on the log).
pub(crate) const COMPARED: [&str; 6] = [TIMELINE, CUSTOMERS, PROMISES, COMPLAINTS, RESOLUTIONS, SURVEYS];

/// Which projections to rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Projection {
    Standing,
    Watchdog,
    All,
}

/// Options of `covenant replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The data directory `covenant up` uses (the log in `log/`, the projections beside it).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "all")]
    projection: Projection,
}

/// Reports progress: a bar on a terminal, a line every two seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    name: &'static str,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(name: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:10} [{bar:40}] {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(name);
            bar
        });
        let now = Instant::now();
        Self { bar, name, total, started: now, last_line: now }
    }

    fn set(&mut self, applied: u64) {
        match &self.bar {
            Some(bar) => bar.set_position(applied),
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                self.last_line = Instant::now();
                eprintln!(
                    "replay {}: {applied}/{} events ({:.0} events/s)",
                    self.name,
                    self.total,
                    applied as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
                );
            }
            None => {}
        }
    }

    fn finish(self, applied: u64) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!(
            "replay {}: {applied} events applied in {seconds:.1} s ({:.0} events/s)",
            self.name,
            applied as f64 / seconds.max(1e-9)
        );
    }
}

/// Drives a replay: for every partition, from `next_offset(partition)` up to `until[partition]`
/// (exclusive), calls `apply_chunk(partition, from, max)`, which applies up to `max` events from
/// offset `from` in one write and returns how many; the partitions on `threads` threads at once
/// (a customer's events are all in one partition, and the live consumers apply partitions
/// concurrently too). Returns how many events were applied; `progress` hears the running total.
fn replay_chunks(
    reader: &LogReader,
    until: &[u64],
    threads: usize,
    next_offset: &(dyn Fn(u16) -> anyhow::Result<u64> + Sync),
    apply_chunk: &(dyn Fn(u16, u64, usize) -> anyhow::Result<u64> + Sync),
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    let applied = std::sync::atomic::AtomicU64::new(0);
    let progress = std::sync::Mutex::new(progress);
    reader.on_partitions(threads, &|partition| -> anyhow::Result<u64> {
        let end = until.get(usize::from(partition)).copied().unwrap_or(0);
        let mut next = next_offset(partition)?;
        let mut replayed = 0u64;
        while next < end {
            let wanted = usize::try_from(end - next).unwrap_or(CHUNK).min(CHUNK);
            let visited = apply_chunk(partition, next, wanted)?;
            if visited == 0 {
                bail!("partition {partition} ends at offset {next}, before offset {end}");
            }
            next += visited;
            replayed += visited;
            let total = applied.fetch_add(visited, std::sync::atomic::Ordering::Relaxed) + visited;
            // Whoever holds the reporter reports; the others need not wait for it.
            if let Ok(mut report) = progress.try_lock() {
                report(total);
            }
        }
        Ok(replayed)
    })
}

/// Applies the log's events to the watchdog's deadlines (see [`replay_chunks`]) from the
/// store's own next offsets, on every core, straight from the stored records: each record's
/// checksum and envelope are checked, and only the events whose payload the deadline rules read
/// ([`deadlines::reads_payload`]) are decoded (without their personal data, as the public
/// stream carries them) and applied, each chunk with its checkpoint
/// ([`DeadlineStore::apply_range`]).
fn replay_watchdog(
    reader: &LogReader,
    store: &DeadlineStore,
    until: &[u64],
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    let next_offset = |partition| Ok(store.checkpoint(partition)?);
    let apply_chunk = |partition, from, max| -> anyhow::Result<u64> {
        let mut events = Vec::new();
        let visited = reader.scan_raw(partition, from, max, |position, value| -> anyhow::Result<()> {
            let record = RecordView::parse(position, value)?;
            if deadlines::reads_payload(record.envelope.event_index) {
                let mut event = record.decode()?;
                redact(&mut event);
                events.push(event);
            }
            Ok(())
        })?;
        if visited > 0 {
            store
                .apply_range(partition, from, from + visited as u64, &events)
                .with_context(|| format!("apply partition {partition}"))?;
        }
        Ok(visited as u64)
    };
    replay_chunks(reader, until, covenant_log::available_cores(), &next_offset, &apply_chunk, progress)
}

/// Checks one stored record ([`RecordView::parse`]: its checksum and envelope) and applies its
/// event to standing through `applier`: the event is copied into the timeline as stored (a
/// record keeps the event without its personal data, as the public stream carries it), and it
/// is decoded only when the projections read its payload ([`reads_payload`]: registrations,
/// tier changes, promises, complaints, surveys). A record written before personal data was
/// sealed (format 1) is decoded and redacted. Returns the event when it was decoded.
fn apply_record(
    applier: &mut BatchApplier<'_>,
    position: covenant_domain::Position,
    value: &[u8],
) -> anyhow::Result<Option<RecordedEvent>> {
    let record = RecordView::parse(position, value)?;
    let envelope = &record.envelope;
    let redacted_bytes;
    let (encoded, event) = match record.public_event()? {
        Some(encoded) => {
            (encoded, if reads_payload(envelope.event_index) { Some(record.decode()?) } else { None })
        }
        None => {
            let mut event = record.decode()?;
            redact(&mut event);
            redacted_bytes = postcard::to_allocvec(&event)?;
            (&redacted_bytes[..], Some(event))
        }
    };
    applier.apply(AppliedEvent {
        customer_id: envelope.customer_id,
        stream_version: envelope.stream_version,
        position,
        event_id: envelope.event_id,
        event_index: envelope.event_index,
        occurred_at: envelope.metadata.occurred_at,
        encoded,
        event: event.as_ref(),
    })?;
    Ok(event)
}

/// Applies the log's events to standing's projections (see [`replay_chunks`]) from the store's
/// own next offsets, on `threads` threads, straight from the stored records ([`apply_record`]).
/// Each chunk is one [`BatchApplier`] write with its checkpoint. Returns how many events it
/// applied.
pub fn replay_standing(
    reader: &LogReader,
    store: &StandingStore,
    until: &[u64],
    threads: usize,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    replay_projections(reader, store, None, until, threads, progress)
}

/// [`replay_standing`], and with `watchdog` the watchdog's deadlines too, in the same pass: each
/// record is read, checked and (when either reads its payload) decoded once. The deadline rules
/// read a subset of what standing decodes ([`deadlines::reads_payload`] implies
/// [`reads_payload`]), so the chunk's decoded events that the deadlines read go to
/// [`DeadlineStore::apply_range`] after standing's write. Both stores must have applied each
/// partition equally far (two fresh stores have). Returns how many events were applied (each
/// to every store given).
fn replay_projections(
    reader: &LogReader,
    standing: &StandingStore,
    watchdog: Option<&DeadlineStore>,
    until: &[u64],
    threads: usize,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    let next_offset = |partition| -> anyhow::Result<u64> {
        let standing_next = standing.next_offset(partition).map_err(|error| anyhow::anyhow!("{error}"))?;
        if let Some(watchdog) = watchdog {
            let watchdog_next = watchdog.checkpoint(partition)?;
            if standing_next != watchdog_next {
                bail!(
                    "partition {partition}: standing has applied up to offset {standing_next}, the watchdog \
                     up to {watchdog_next}; replay them one at a time"
                );
            }
        }
        Ok(standing_next)
    };
    let apply_chunk = |partition, from, max| -> anyhow::Result<u64> {
        let mut applier = standing.applier(partition);
        let mut deadline_events = Vec::new();
        let visited = reader.scan_raw(partition, from, max, |position, value| -> anyhow::Result<()> {
            if let Some(mut event) = apply_record(&mut applier, position, value)?
                && watchdog.is_some()
                && deadlines::reads_payload(u32::try_from(event.event.catalogue_index()).unwrap_or(u32::MAX))
            {
                // As `replay_watchdog` gives it (a sealed record's event has nothing to redact).
                redact(&mut event);
                deadline_events.push(event);
            }
            Ok(())
        })?;
        applier.commit().with_context(|| format!("apply partition {partition} to standing"))?;
        if let Some(watchdog) = watchdog
            && visited > 0
        {
            watchdog
                .apply_range(partition, from, from + visited as u64, &deadline_events)
                .with_context(|| format!("apply partition {partition} to the watchdog"))?;
        }
        Ok(visited as u64)
    };
    replay_chunks(reader, until, threads, &next_offset, &apply_chunk, progress)
}

/// Opens the log of a data directory read-only, naming the place when there is none.
fn open_reader(data: &Path) -> anyhow::Result<LogReader> {
    let path = data.join("log");
    if !path.exists() {
        bail!("no log at {}: pass --data with the directory `covenant up` used", path.display());
    }
    LogReader::open_read_only(&path).with_context(|| format!("open the log at {}", path.display()))
}

fn ends(reader: &LogReader) -> anyhow::Result<Vec<u64>> {
    (0..reader.partition_count())
        .map(|partition| reader.partition_end(partition).map_err(anyhow::Error::from))
        .collect()
}

/// Fails when the service that owns `dir` is running (it holds the store's lock).
fn ensure_stopped(
    dir: &Path,
    service: &str,
    open: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    open().map_err(|error| {
        let text = format!("{error:#}");
        if text.contains("lock") {
            anyhow::anyhow!(
                "{service} is running (it holds the lock on {}): stop it (or `covenant up`) before a replay",
                dir.display()
            )
        } else {
            error.context(format!("open {}", dir.display()))
        }
    })
}

/// A projection being rebuilt into `<dir>.replay` beside the one in use in `dir`.
struct Rebuilt {
    name: &'static str,
    dir: PathBuf,
    fresh: PathBuf,
}

impl Rebuilt {
    /// Checks that the service owning `data/<name>` is stopped and clears what an earlier
    /// replay of it left half-built.
    fn prepare(data: &Path, name: &'static str, partitions: u16) -> anyhow::Result<Self> {
        let dir = data.join(name);
        let fresh = data.join(format!("{name}.replay"));
        let policy = SlaPolicy::default();
        match name {
            "standing" => ensure_stopped(&dir, name, || {
                StandingStore::open(&dir, partitions, policy).map(drop).map_err(anyhow::Error::from)
            })?,
            _ => ensure_stopped(&dir, name, || {
                DeadlineStore::open(&dir, partitions, policy).map(drop).map_err(anyhow::Error::from)
            })?,
        }
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).with_context(|| format!("remove an old {}", fresh.display()))?;
        }
        Ok(Self { name, dir, fresh })
    }

    /// Puts the finished rebuild in place of the old store (which is removed).
    fn swap_in(self) -> anyhow::Result<()> {
        let Self { name, dir, fresh } = self;
        let before = dir.with_file_name(format!("{name}.before-replay"));
        if dir.exists() {
            if before.exists() {
                std::fs::remove_dir_all(&before)?;
            }
            std::fs::rename(&dir, &before).with_context(|| format!("move {} aside", dir.display()))?;
        }
        std::fs::rename(&fresh, &dir).with_context(|| format!("move the rebuilt {name} into place"))?;
        if before.exists() {
            std::fs::remove_dir_all(&before)?;
        }
        Ok(())
    }
}

/// Rebuilds `projection` from the log up to `until`, each store into `<dir>.replay`, then swaps
/// the rebuilt stores in. `all` rebuilds standing and the watchdog in one pass over the log.
fn rebuild(reader: &LogReader, data: &Path, projection: Projection, until: &[u64]) -> anyhow::Result<()> {
    let partitions = reader.partition_count();
    let policy = SlaPolicy::default();
    let threads = covenant_log::available_cores();
    let total: u64 = until.iter().sum();
    match projection {
        Projection::Standing => {
            let rebuilt = Rebuilt::prepare(data, "standing", partitions)?;
            let mut progress = Progress::new("standing", total);
            let store = StandingStore::open_for_rebuild(&rebuilt.fresh, partitions, policy)?;
            let applied =
                replay_standing(reader, &store, until, threads, &mut |applied| progress.set(applied))?;
            store.finish_rebuild()?;
            drop(store);
            progress.finish(applied);
            rebuilt.swap_in()
        }
        Projection::Watchdog => {
            let rebuilt = Rebuilt::prepare(data, "watchdog", partitions)?;
            let mut progress = Progress::new("watchdog", total);
            let store = DeadlineStore::open_for_rebuild(&rebuilt.fresh, partitions, policy)?;
            let applied = replay_watchdog(reader, &store, until, &mut |applied| progress.set(applied))?;
            store.finish_rebuild()?;
            drop(store);
            progress.finish(applied);
            rebuilt.swap_in()
        }
        Projection::All => {
            let standing = Rebuilt::prepare(data, "standing", partitions)?;
            let watchdog = Rebuilt::prepare(data, "watchdog", partitions)?;
            let mut progress = Progress::new("standing and watchdog", total);
            let standing_store =
                StandingStore::open_for_rebuild(&standing.fresh, partitions, policy.clone())?;
            let watchdog_store = DeadlineStore::open_for_rebuild(&watchdog.fresh, partitions, policy)?;
            let applied = replay_projections(
                reader,
                &standing_store,
                Some(&watchdog_store),
                until,
                threads,
                &mut |applied| progress.set(applied),
            )?;
            standing_store.finish_rebuild()?;
            watchdog_store.finish_rebuild()?;
            drop((standing_store, watchdog_store));
            progress.finish(applied);
            // Standing first, as the replays one at a time did: a failure between the two swaps
            // leaves a rebuilt standing beside the old watchdog, each store whole.
            standing.swap_in()?;
            watchdog.swap_in()
        }
    }
}

/// Runs `covenant replay`.
pub(crate) async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || {
        let reader = open_reader(&args.data)?;
        let until = ends(&reader)?;
        rebuild(&reader, &args.data, args.projection, &until)?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
    .await
    .context("the replay task")?
}

/// What the projection check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProjectionCheck {
    /// No standing store in the data directory.
    Absent,
    /// Standing's read models equal a replay of the log up to its checkpoints.
    Equal { events: u64 },
    /// The first difference: the family, the key, and the value on each side.
    Differs { family: &'static str, key: String, live: String, replayed: String },
}

/// A stored value of one of the compared families, decoded for a person to read.
fn describe(family: &str, bytes: &[u8]) -> String {
    use covenant_standing::views::{ComplaintRecord, CustomerRecord, PromiseRecord, SurveyFact};
    let decoded = match family {
        CUSTOMERS => {
            covenant_store::decode::<CustomerRecord>(family, bytes).map(|value| format!("{value:?}"))
        }
        PROMISES => covenant_store::decode::<PromiseRecord>(family, bytes).map(|value| format!("{value:?}")),
        COMPLAINTS => {
            covenant_store::decode::<ComplaintRecord>(family, bytes).map(|value| format!("{value:?}"))
        }
        RESOLUTIONS => covenant_store::decode::<covenant_domain::Timestamp>(family, bytes)
            .map(|value| format!("{value:?}")),
        SURVEYS => covenant_store::decode::<SurveyFact>(family, bytes).map(|value| format!("{value:?}")),
        _ => Ok(format!("{} bytes", bytes.len())),
    };
    decoded.unwrap_or_else(|error| format!("{} bytes that do not decode: {error}", bytes.len()))
}

/// Compares standing's read models in `data` with a replay of the log up to standing's own
/// checkpoints (see the module docs).
pub(crate) fn check_standing(data: &Path, scratch: &Path) -> anyhow::Result<ProjectionCheck> {
    let dir = data.join("standing");
    if !dir.exists() {
        return Ok(ProjectionCheck::Absent);
    }
    let reader = open_reader(data)?;
    let live = Store::open_read_only(&dir).with_context(|| format!("open {} read-only", dir.display()))?;
    let until: Vec<u64> = (0..reader.partition_count())
        .map(|partition| live.checkpoint(partition).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    let replayed_dir = scratch.join("standing-check");
    let events = {
        let replayed =
            StandingStore::open_for_rebuild(&replayed_dir, reader.partition_count(), SlaPolicy::default())?;
        let events =
            replay_standing(&reader, &replayed, &until, covenant_log::available_cores(), &mut |_| {})?;
        replayed.finish_rebuild()?;
        events
    };
    let replayed = Store::open_read_only(&replayed_dir)?;
    for family in COMPARED {
        if !live.has_family(family) {
            continue;
        }
        if family == TIMELINE {
            if let Some(difference) = first_timeline_difference(&live, &replayed)? {
                let show = |event: Option<covenant_domain::RecordedEvent>| {
                    event.map_or_else(|| "(absent)".to_owned(), |event| format!("{event:?}"))
                };
                return Ok(ProjectionCheck::Differs {
                    family,
                    key: format!("{}/{}", difference.customer_id, difference.stream_version),
                    live: show(difference.left),
                    replayed: show(difference.right),
                });
            }
            continue;
        }
        if let Some(key) = live.first_difference(&replayed, family)? {
            let show = |store: &Store| -> anyhow::Result<String> {
                Ok(match store.get_raw(family, &key)? {
                    None => "(absent)".to_owned(),
                    Some(bytes) => describe(family, &bytes),
                })
            };
            return Ok(ProjectionCheck::Differs {
                family,
                key: String::from_utf8_lossy(&key).replace('\0', "/"),
                live: show(&live)?,
                replayed: show(&replayed)?,
            });
        }
    }
    Ok(ProjectionCheck::Equal { events })
}
