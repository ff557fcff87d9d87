//! `covenant export`: the history (or a slice of it) as files a data team can load anywhere,
//! without personal data: JSON lines (one object per event, `event_json`), or CSV with one file
//! per event type (the envelope's columns, then the payload's flattened).
//!
//! Both are written from borrowed views of the records (`covenant_audit::PublicEvent`), with no
//! JSON value in between: JSON lines by `event_json::write_public_json`, CSV cells by
//! `csv_cells::flatten_payload`.
//!
//! Memory stays flat whatever the log's size: JSON lines are written as they are read. A type's
//! events need not all have the same nested fields (`payload.related_ref.Promise` only when the
//! reference is to a promise), so a CSV file's payload columns are known only at the end: rows
//! go first to a temporary file per event type, each with the columns seen so far (in the order
//! they first appeared), then the file is written with the header and every row padded with
//! empty cells for the columns that appeared after it (a copy, no parsing).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use covenant_audit::{EventSource, PublicEvent};
use covenant_domain::Timestamp;

use crate::audit::{SourceArgs, parse_instant};
use crate::csv_cells::{CellSink, flatten_payload};
use crate::event_json::{
    ENVELOPE_COLUMNS, EnvelopeScratch, envelope_cells, word_has_byte, write_public_json,
};

/// Column indexes by name: foldhash (column names are ours, not an attacker's) instead of SipHash,
/// which was ~5% of a CSV export.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// JSON lines of an export from a running ledger are handed to the output file in pieces of at
/// least this many bytes.
const FLUSH_AT: usize = 1 << 20;

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Jsonl,
    Csv,
}

/// Options of `covenant export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Where to write: a file for jsonl (`-` for stdout), a directory for csv (one file per type).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    source: SourceArgs,
    /// Only events that happened (business time) at or after this instant (RFC 3339 or a date).
    #[arg(long, value_parser = parse_instant)]
    from: Option<Timestamp>,
    /// Only events that happened before this instant.
    #[arg(long, value_parser = parse_instant)]
    to: Option<Timestamp>,
    /// Only these event types (snake_case; repeat the option for several).
    #[arg(long = "type")]
    types: Vec<String>,
    /// Threads that read and format a log read in place (`--data`, `--backup`); the files come
    /// out the same whatever the count. Default: the machine's cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

/// What an export formats its events into, a chunk at a time: [`JsonChunk`], [`CsvChunk`].
trait ExportChunk: Default + Send {
    /// Adds `event` when it is in the window (a failure is kept for the merge).
    fn add(&mut self, args: &ExportArgs, event: &PublicEvent<'_>);
    /// Whether a chunk formatted on the calling thread should be merged now.
    fn full(&self) -> bool;
}

/// JSON lines of one range of the log, formatted on a scanning thread.
#[derive(Default)]
struct JsonChunk {
    lines: Vec<u8>,
    exported: u64,
    by_type: BTreeMap<&'static str, u64>,
    failure: Option<anyhow::Error>,
}

impl ExportChunk for JsonChunk {
    /// Adds `event` as a line, when it is in the window.
    fn add(&mut self, args: &ExportArgs, event: &PublicEvent<'_>) {
        if self.failure.is_some() || !wanted(args, event.occurred_at()) {
            return;
        }
        let start = self.lines.len();
        match write_public_json(&mut self.lines, event) {
            Ok(()) => {
                self.lines.push(b'\n');
                self.exported += 1;
                *self.by_type.entry(event.event_type()).or_default() += 1;
            }
            Err(error) => {
                self.lines.truncate(start);
                self.failure = Some(error.into());
            }
        }
    }

    fn full(&self) -> bool {
        self.lines.len() >= FLUSH_AT || self.failure.is_some()
    }
}

/// What an export wrote.
#[derive(Debug, Default)]
struct Written {
    read: u64,
    exported: u64,
    by_type: BTreeMap<&'static str, u64>,
}

impl Written {
    /// Adds a chunk's exported events.
    fn count(&mut self, exported: u64, by_type: BTreeMap<&'static str, u64>) {
        self.exported += exported;
        for (event_type, count) in by_type {
            *self.by_type.entry(event_type).or_default() += count;
        }
    }
}

/// Rows a CSV export from a running ledger (read in order, on one thread) gathers before they
/// go to their files (JSON lines: [`FLUSH_AT`] bytes).
const SEQUENTIAL_CSV_ROWS: usize = 4_096;

/// The threads of an export of a log read in place: `--threads`, else the machine's cores.
fn export_threads(args: &ExportArgs) -> usize {
    args.threads.map_or_else(covenant_log::available_cores, usize::from)
}

/// One event type's CSV under way: its rows so far in a temporary file, and its payload columns
/// in the order they first appeared.
struct TypeCsv {
    part: BufWriter<File>,
    columns: Vec<String>,
    index: HashMap<String, usize>,
}

/// Part files that exist while an export runs; dropping this removes them, so an export that
/// fails half-way leaves no `.<type>.csv.part` behind (a finished part is already gone, which is
/// no error).
#[derive(Debug, Default)]
struct PartFiles(Vec<PathBuf>);

impl Drop for PartFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::debug!(path = %path.display(), "removed an unfinished CSV part"),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(%error, path = %path.display(), "could not remove a CSV part"),
            }
        }
    }
}

/// The CSV side: a [`TypeCsv`] per event type, and the buffers every row reuses.
struct CsvParts {
    dir: PathBuf,
    parts: BTreeMap<&'static str, TypeCsv>,
    /// Every part created, removed when the export ends however it ends.
    created: PartFiles,
    record: Vec<u8>,
    /// One row's cells as `(column in the file, the quoted cell in its chunk)`.
    order: Vec<(usize, Range<usize>)>,
}

/// Collects one row's payload cells, quoted, adding a column the type has not had yet.
struct RowCells<'a> {
    columns: &'a mut Vec<String>,
    index: &'a mut HashMap<String, usize>,
    /// The columns of the type's previous row, in order, rewritten with this row's as it goes:
    /// rows of a type mostly have the same columns, so a cell's column is first looked for at
    /// its place in the previous row (one compare instead of hashing the name).
    previous: &'a mut Vec<usize>,
    /// Cells of this row so far.
    count: usize,
    /// `(column, the quoted cell in bytes)`.
    cells: &'a mut Vec<(usize, Range<usize>)>,
    bytes: &'a mut Vec<u8>,
}

impl CellSink for RowCells<'_> {
    fn cell(&mut self, column: &str, value: &str) {
        let guess = self.previous.get(self.count).copied();
        let at = match guess.filter(|at| self.columns.get(*at).is_some_and(|name| name == column)) {
            Some(at) => at,
            None => match self.index.get(column) {
                Some(at) => *at,
                None => {
                    self.columns.push(column.to_owned());
                    self.index.insert(column.to_owned(), self.columns.len() - 1);
                    self.columns.len() - 1
                }
            },
        };
        match self.previous.get_mut(self.count) {
            Some(slot) => *slot = at,
            None => self.previous.push(at),
        }
        self.count += 1;
        let start = self.bytes.len();
        push_csv_field(self.bytes, value.as_bytes());
        self.cells.push((at, start..self.bytes.len()));
    }
}

/// True when a CSV field must be quoted: it holds a comma, a quote or a line break. Eight bytes
/// at a time, with the word test of `event_json`'s escaping check.
fn needs_quotes(field: &[u8]) -> bool {
    let mut words = field.chunks_exact(8);
    for chunk in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(chunk).map(u64::from_le_bytes) else { return true };
        let special = word_has_byte(word, b',')
            | word_has_byte(word, b'"')
            | word_has_byte(word, b'\n')
            | word_has_byte(word, b'\r');
        if special != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|byte| matches!(byte, b',' | b'"' | b'\n' | b'\r'))
}

/// Appends `field` to a CSV record, quoted when it holds a comma, a quote or a line break.
fn push_csv_field(record: &mut Vec<u8>, field: &[u8]) {
    if needs_quotes(field) {
        record.push(b'"');
        for byte in field {
            if *byte == b'"' {
                record.push(b'"');
            }
            record.push(*byte);
        }
        record.push(b'"');
    } else {
        record.extend_from_slice(field);
    }
}

/// The payload columns one event type had in a [`CsvChunk`], in the order they first appeared
/// there.
#[derive(Default)]
struct ChunkColumns {
    event_type: &'static str,
    columns: Vec<String>,
    index: HashMap<String, usize>,
    /// The columns of the type's last row, in order (see [`RowCells`]).
    previous: Vec<usize>,
}

/// One row of a [`CsvChunk`].
struct ChunkRow {
    /// Its type, in the chunk's `types`.
    type_slot: usize,
    /// Its envelope cells, quoted and joined by commas, in the chunk's `bytes`.
    envelope: Range<usize>,
    /// Its payload cells, in the chunk's `cells`.
    cells: Range<usize>,
}

/// CSV rows of a range of the log, flattened and quoted (on a scanning thread when the log is
/// read in place); [`CsvParts::merge`] puts them in their types' files in log order. The payload
/// columns are the chunk's own (numbered as they first appeared in it); the merge maps them to
/// the file's, so the files come out the same however the log was cut.
#[derive(Default)]
struct CsvChunk {
    types: Vec<ChunkColumns>,
    rows: Vec<ChunkRow>,
    /// Every row's payload cells: `(the type's column in this chunk, the quoted cell in bytes)`.
    cells: Vec<(usize, Range<usize>)>,
    /// The quoted cells and envelopes, end to end.
    bytes: Vec<u8>,
    exported: u64,
    by_type: BTreeMap<&'static str, u64>,
    failure: Option<anyhow::Error>,
    path: String,
    envelope: EnvelopeScratch,
}

impl CsvChunk {
    /// Adds `event`'s row.
    fn push(&mut self, event: &PublicEvent<'_>) -> anyhow::Result<()> {
        let event_type = event.event_type();
        let type_slot = match self.types.iter().position(|known| known.event_type == event_type) {
            Some(slot) => slot,
            None => {
                self.types.push(ChunkColumns { event_type, ..ChunkColumns::default() });
                self.types.len() - 1
            }
        };
        let ChunkColumns { columns, index, previous, .. } = &mut self.types[type_slot];
        let (bytes_before, first_cell) = (self.bytes.len(), self.cells.len());
        let mut row =
            RowCells { columns, index, previous, count: 0, cells: &mut self.cells, bytes: &mut self.bytes };
        let flattened = match event {
            PublicEvent::Owned(event) => flatten_payload(&event.event, &mut self.path, &mut row),
            PublicEvent::Borrowed(view) => flatten_payload(&view.event, &mut self.path, &mut row),
        };
        let count = row.count;
        previous.truncate(count);
        if let Err(error) = flattened {
            self.bytes.truncate(bytes_before);
            self.cells.truncate(first_cell);
            return Err(error.into());
        }
        let cells = first_cell..self.cells.len();
        let bytes = &mut self.bytes;
        let start = bytes.len();
        let mut first = true;
        envelope_cells(event, &mut self.envelope, &mut |cell| {
            if !first {
                bytes.push(b',');
            }
            first = false;
            push_csv_field(bytes, cell.as_bytes());
        });
        self.rows.push(ChunkRow { type_slot, envelope: start..bytes.len(), cells });
        Ok(())
    }
}

impl ExportChunk for CsvChunk {
    /// Adds `event`'s row when it is in the window (a failure is kept for the merge).
    fn add(&mut self, args: &ExportArgs, event: &PublicEvent<'_>) {
        if self.failure.is_some() || !wanted(args, event.occurred_at()) {
            return;
        }
        match self.push(event) {
            Ok(()) => {
                self.exported += 1;
                *self.by_type.entry(event.event_type()).or_default() += 1;
            }
            Err(error) => self.failure = Some(error),
        }
    }

    fn full(&self) -> bool {
        self.rows.len() >= SEQUENTIAL_CSV_ROWS || self.failure.is_some()
    }
}

impl CsvParts {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            parts: BTreeMap::new(),
            created: PartFiles::default(),
            record: Vec::new(),
            order: Vec::new(),
        }
    }

    fn part_path(dir: &Path, event_type: &str) -> PathBuf {
        dir.join(format!(".{event_type}.csv.part"))
    }

    /// Adds one event's row (what the export does through [`CsvChunk`]s).
    #[cfg(test)]
    fn add(&mut self, event: &PublicEvent<'_>) -> anyhow::Result<()> {
        let mut chunk = CsvChunk::default();
        chunk.push(event)?;
        self.merge(chunk).map(|_| ())
    }

    /// The part of `event_type`, created on its first row.
    fn part(
        dir: &Path,
        parts: &mut BTreeMap<&'static str, TypeCsv>,
        created: &mut PartFiles,
        event_type: &'static str,
    ) -> anyhow::Result<()> {
        if !parts.contains_key(event_type) {
            let path = Self::part_path(dir, event_type);
            let file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
            created.0.push(path);
            let part = TypeCsv {
                part: BufWriter::with_capacity(256 << 10, file),
                columns: Vec::new(),
                index: HashMap::default(),
            };
            parts.insert(event_type, part);
        }
        Ok(())
    }

    /// Appends a chunk's rows to their types' parts, each as `[bytes: u32 LE][fields: u32 LE]
    /// [the record]`: the record without its line break and without the columns that appeared
    /// after it. The chunk's columns new to a type join its columns in the order they first
    /// appeared in the chunk — their order in the log, since the chunks come in log order.
    /// Returns the events the chunk exported, and by type; a chunk's failure is returned.
    fn merge(&mut self, chunk: CsvChunk) -> anyhow::Result<(u64, BTreeMap<&'static str, u64>)> {
        if let Some(error) = chunk.failure {
            return Err(error);
        }
        let mut columns_in_file = Vec::with_capacity(chunk.types.len());
        for local in &chunk.types {
            Self::part(&self.dir, &mut self.parts, &mut self.created, local.event_type)?;
            let Some(part) = self.parts.get_mut(local.event_type) else { continue };
            let map: Vec<usize> = local
                .columns
                .iter()
                .map(|column| match part.index.get(column) {
                    Some(at) => *at,
                    None => {
                        part.columns.push(column.clone());
                        part.index.insert(column.clone(), part.columns.len() - 1);
                        part.columns.len() - 1
                    }
                })
                .collect();
            columns_in_file.push(map);
        }
        for row in &chunk.rows {
            let (Some(local), Some(map)) =
                (chunk.types.get(row.type_slot), columns_in_file.get(row.type_slot))
            else {
                continue;
            };
            let Some(part) = self.parts.get_mut(local.event_type) else { continue };
            self.record.clear();
            self.record.extend_from_slice(&chunk.bytes[row.envelope.clone()]);
            let mut fields = ENVELOPE_COLUMNS.len() as u32;
            self.order.clear();
            self.order.extend(
                chunk.cells[row.cells.clone()].iter().map(|(column, cell)| (map[*column], cell.clone())),
            );
            // In the file's column order; a column given twice keeps its last cell.
            self.order.sort_by_key(|(at, _)| *at);
            let mut next = 0;
            for (position, (at, cell)) in self.order.iter().enumerate() {
                if self.order.get(position + 1).is_some_and(|(following, _)| following == at) {
                    continue;
                }
                while next < *at {
                    self.record.push(b',');
                    next += 1;
                    fields += 1;
                }
                self.record.push(b',');
                self.record.extend_from_slice(&chunk.bytes[cell.clone()]);
                next = at + 1;
                fields += 1;
            }
            let bytes = u32::try_from(self.record.len()).context("a CSV row over 4 GiB")?;
            part.part.write_all(&bytes.to_le_bytes())?;
            part.part.write_all(&fields.to_le_bytes())?;
            part.part.write_all(&self.record)?;
        }
        Ok((chunk.exported, chunk.by_type))
    }

    /// Writes every part as `<event_type>.csv`: the header (the envelope's columns, then the
    /// payload's), then the rows, each padded with empty cells for the columns that appeared
    /// after it; removes the parts.
    fn finish(self, threads: usize) -> anyhow::Result<Vec<PathBuf>> {
        let mut types = Vec::with_capacity(self.parts.len());
        for (event_type, part) in self.parts {
            let TypeCsv { part, columns, .. } = part;
            drop(part.into_inner().map_err(|error| error.into_error())?);
            types.push((event_type, columns));
        }
        // Each type's file is written on its own, so the types are shared out among threads.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let finished: Vec<anyhow::Result<Vec<PathBuf>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads.clamp(1, types.len().max(1)))
                .map(|_| {
                    scope.spawn(|| {
                        let mut written = Vec::new();
                        loop {
                            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((event_type, columns)) = types.get(index) else { return Ok(written) };
                            written.push(Self::write_csv(&self.dir, event_type, columns)?);
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a CSV writing thread panicked")))
                })
                .collect()
        });
        let mut written = Vec::with_capacity(types.len());
        for files in finished {
            written.extend(files?);
        }
        written.sort();
        Ok(written)
    }

    /// Writes the part of `event_type` as `<event_type>.csv` (see [`Self::finish`]) and removes
    /// the part.
    fn write_csv(dir: &Path, event_type: &str, columns: &[String]) -> anyhow::Result<PathBuf> {
        let part_path = Self::part_path(dir, event_type);
        let csv_path = dir.join(format!("{event_type}.csv"));
        let file = File::create(&csv_path).with_context(|| format!("create {}", csv_path.display()))?;
        let mut csv = BufWriter::with_capacity(1 << 20, file);
        let mut header = Vec::new();
        for (at, name) in
            ENVELOPE_COLUMNS.iter().copied().chain(columns.iter().map(String::as_str)).enumerate()
        {
            if at > 0 {
                header.push(b',');
            }
            push_csv_field(&mut header, name.as_bytes());
        }
        header.push(b'\n');
        csv.write_all(&header)?;
        let total = (ENVELOPE_COLUMNS.len() + columns.len()) as u32;
        let mut rows = BufReader::with_capacity(1 << 20, File::open(&part_path)?);
        let mut record = Vec::new();
        let mut prefix = [0u8; 8];
        loop {
            match rows.read_exact(&mut prefix) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(error) => return Err(error.into()),
            }
            let [b0, b1, b2, b3, f0, f1, f2, f3] = prefix;
            let bytes = u32::from_le_bytes([b0, b1, b2, b3]) as usize;
            let fields = u32::from_le_bytes([f0, f1, f2, f3]);
            record.resize(bytes, 0);
            rows.read_exact(&mut record)?;
            record.extend(std::iter::repeat_n(b',', total.saturating_sub(fields) as usize));
            record.push(b'\n');
            csv.write_all(&record)?;
        }
        csv.flush()?;
        std::fs::remove_file(&part_path)?;
        Ok(csv_path)
    }
}

/// Whether an event that happened `at` is in the `--from`/`--to` window.
fn wanted(args: &ExportArgs, at: Timestamp) -> bool {
    args.from.is_none_or(|from| at >= from) && args.to.is_none_or(|to| at < to)
}

/// Formats the source's public events (of `types`) into chunks and hands each to `merge` in log
/// order: a log read in place on the export's threads (`LogSource::public_chunks`), another
/// source (a running ledger) on this thread, a chunk merged whenever it is full. The first error
/// of `merge` stops the export and is returned. Returns the records read.
fn export_chunks<C: ExportChunk>(
    args: &ExportArgs,
    source: &mut dyn EventSource,
    types: Option<&[&str]>,
    merge: &mut dyn FnMut(C) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut failure = None;
    let mut merge = |chunk: C| match merge(chunk) {
        Ok(()) => std::ops::ControlFlow::Continue(()),
        Err(error) => {
            failure = Some(error);
            std::ops::ControlFlow::Break(())
        }
    };
    let read = match source.as_log() {
        Some(log) => log.public_chunks(
            types,
            export_threads(args),
            covenant_audit::sources::PARALLEL_CHUNK,
            &C::default,
            &|chunk, event| chunk.add(args, &event),
            &mut merge,
        )?,
        None => {
            let mut chunk = C::default();
            let mut stopped = false;
            let read = source.public_events(types, &mut |event| {
                if stopped {
                    return;
                }
                chunk.add(args, &event);
                if chunk.full() {
                    stopped = merge(std::mem::take(&mut chunk)).is_break();
                }
            })?;
            if !stopped {
                let _ = merge(chunk);
            }
            read
        }
    };
    match failure {
        Some(error) => Err(error),
        None => Ok(read),
    }
}

fn run_export(
    args: &ExportArgs,
    source: &mut dyn EventSource,
    types: Option<&[&str]>,
) -> anyhow::Result<(Written, Vec<PathBuf>)> {
    let mut written = Written::default();
    match args.format {
        ExportFormat::Jsonl => {
            let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(
                    File::create(&args.out)
                        .with_context(|| format!("--out: create {}", args.out.display()))?,
                )
            };
            written.read = export_chunks(args, source, types, &mut |chunk: JsonChunk| {
                if let Some(error) = chunk.failure {
                    return Err(error);
                }
                out.write_all(&chunk.lines)?;
                written.count(chunk.exported, chunk.by_type);
                Ok(())
            })?;
            out.flush()?;
            Ok((written, vec![args.out.clone()]))
        }
        ExportFormat::Csv => {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("--out: create the directory {}", args.out.display()))?;
            let mut parts = CsvParts::new(args.out.clone());
            written.read = export_chunks(args, source, types, &mut |chunk: CsvChunk| {
                let (exported, by_type) = parts.merge(chunk)?;
                written.count(exported, by_type);
                Ok(())
            })?;
            let files = parts.finish(export_threads(args))?;
            Ok((written, files))
        }
    }
}

/// Runs `covenant export`.
pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    crate::event_json::check_event_types("--type", &args.types)?;
    let mut source = args.source.open().await?;
    let started = Instant::now();
    let (written, files) = tokio::task::spawn_blocking(move || {
        let types: Vec<&str> = args.types.iter().map(String::as_str).collect();
        let filter = (!types.is_empty()).then_some(types.as_slice());
        run_export(&args, source.as_mut(), filter)
    })
    .await
    .context("the export task")??;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {} of {} events read in {seconds:.1} s ({:.0} events/s) to {}",
        written.exported,
        written.read,
        written.read as f64 / seconds.max(1e-9),
        files.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    for (event_type, count) in &written.by_type {
        eprintln!("  {event_type:<26} {count}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_domain::events::{Event, PromiseKind, RelatedRef};
    use covenant_domain::ids::{ActorId, CommandId, CustomerId, EventId, PromiseId};
    use covenant_domain::{Position, RecordedEvent, Span, Text, sample};

    fn promise_made(offset: u64, related_ref: Option<RelatedRef>, description: &str) -> RecordedEvent {
        let at = Timestamp::from_unix_millis("at", 1_800_000_000_000 + offset as i64).unwrap();
        RecordedEvent {
            event_id: EventId::new_v7(),
            customer_id: CustomerId::new("ann").unwrap(),
            stream_version: offset + 1,
            position: Position { partition: 0, offset },
            recorded_at: at,
            command_id: CommandId::new(format!("c-{offset}")).unwrap(),
            metadata: sample::metadata(at).unwrap(),
            event: Event::PromiseMade {
                promise_id: PromiseId::new(format!("p-{offset}")).unwrap(),
                kind: PromiseKind::Delivery,
                description: Text::new("description", description, 500).unwrap(),
                made_by: ActorId::new("agent-1").unwrap(),
                due_at: at,
                grace: Span::from_secs(60),
                related_ref,
            },
        }
    }

    /// The files of every CSV under `dir`, by name.
    fn csv_files(dir: &Path) -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(entry.path()).unwrap(),
                )
            })
            .collect()
    }

    /// However the log is cut into chunks (one per scanning thread's range), the files are the
    /// same: a chunk's columns are mapped to the file's, new ones in the order they appeared.
    #[test]
    fn csv_files_do_not_depend_on_how_the_rows_were_chunked() {
        use covenant_domain::ids::{ComplaintId, OrderId};
        let promise = |id: &str| Some(RelatedRef::Promise(PromiseId::new(id).unwrap()));
        let events: Vec<RecordedEvent> = vec![
            promise_made(0, None, "plain"),
            promise_made(1, Some(RelatedRef::Order(OrderId::new("o-1").unwrap())), "order, \"one\""),
            promise_made(2, None, ""),
            promise_made(3, promise("p-0"), "line\nbreak"),
            promise_made(4, Some(RelatedRef::Complaint(ComplaintId::new("c-1").unwrap())), "x"),
            promise_made(5, promise("p-1"), "y"),
            promise_made(6, Some(RelatedRef::Order(OrderId::new("o-2").unwrap())), "z"),
        ];
        let export = |rows_per_chunk: usize| {
            let dir = tempfile::tempdir().unwrap();
            let mut parts = CsvParts::new(dir.path().to_path_buf());
            for chunk_events in events.chunks(rows_per_chunk) {
                let mut chunk = CsvChunk::default();
                for event in chunk_events {
                    chunk.push(&PublicEvent::Owned(event.clone())).unwrap();
                }
                parts.merge(chunk).unwrap();
            }
            parts.finish(3).unwrap();
            csv_files(dir.path())
        };
        let whole = export(events.len());
        assert!(whole["promise_made.csv"].contains("payload.related_ref.Complaint"), "{whole:?}");
        for rows_per_chunk in [1, 2, 3, 4] {
            assert_eq!(export(rows_per_chunk), whole, "chunks of {rows_per_chunk} rows");
        }
    }

    proptest::proptest! {
        /// The word-at-a-time check says what the byte-by-byte one says, for any bytes and
        /// lengths (the special bytes made frequent).
        #[test]
        fn the_quoting_check_agrees_with_the_byte_by_byte_one(
            field in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![b',', b'"', b'\n', b'\r', b'a', 0x2c ^ 0x80, 0x0b]),
                    proptest::num::u8::ANY,
                ],
                0..40,
            )
        ) {
            let expected = field.iter().any(|byte| matches!(byte, b',' | b'"' | b'\n' | b'\r'));
            proptest::prop_assert_eq!(needs_quotes(&field), expected);
        }
    }

    /// An export that stops before `finish` (a failed read, a full disk) leaves no part file.
    #[test]
    fn an_unfinished_export_leaves_no_part_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = CsvParts::new(dir.path().to_path_buf());
        parts.add(&PublicEvent::Owned(promise_made(0, None, "plain"))).unwrap();
        parts.add(&PublicEvent::Owned(promise_made(1, None, "plain"))).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a part while it runs");
        drop(parts);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no part after it stopped");
    }

    /// Columns that first appear after some rows were written: the header has them and the
    /// earlier rows get empty cells for them; a cell with a comma, a quote or a line break is
    /// quoted; a strict CSV reader reads every row.
    #[test]
    fn rows_written_before_a_column_appeared_are_padded() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = CsvParts::new(dir.path().to_path_buf());
        let events = [
            promise_made(0, None, "plain"),
            promise_made(1, Some(RelatedRef::Promise(PromiseId::new("p-0").unwrap())), "a, \"quoted\"\nline"),
            promise_made(2, None, ""),
        ];
        for event in &events {
            parts.add(&PublicEvent::Owned(event.clone())).unwrap();
        }
        let files = parts.finish(2).unwrap();
        assert_eq!(files, vec![dir.path().join("promise_made.csv")]);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "the temporary part is removed");

        let mut reader = ::csv::Reader::from_path(&files[0]).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(&header[..ENVELOPE_COLUMNS.len()], ENVELOPE_COLUMNS.as_slice());
        let column = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("{name}"));
        let (promise, description, related, related_promise) = (
            column("payload.promise_id"),
            column("payload.description"),
            column("payload.related_ref"),
            column("payload.related_ref.Promise"),
        );
        assert!(related_promise > related, "columns in the order they first appeared");
        let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|row| row.len() == header.len()));
        assert_eq!((&rows[0][promise], &rows[0][related_promise]), ("p-0", ""));
        assert_eq!((&rows[1][related], &rows[1][related_promise]), ("", "p-0"));
        assert_eq!(&rows[1][description], "a, \"quoted\"\nline");
        assert_eq!(&rows[2][description], "");
        assert_eq!(&rows[2][0], events[2].event_id.to_string());
    }
}
