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

use std::collections::{BTreeMap, HashMap};
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
use crate::event_json::{ENVELOPE_COLUMNS, EnvelopeScratch, envelope_cells, write_public_json};

/// JSON lines are handed to the output file in pieces of at least this many bytes.
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
}

/// What an export wrote.
#[derive(Debug, Default)]
struct Written {
    read: u64,
    exported: u64,
    by_type: BTreeMap<&'static str, u64>,
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
    path: String,
    cells: Vec<Option<Range<usize>>>,
    text: String,
    record: Vec<u8>,
    envelope: EnvelopeScratch,
}

/// Collects one row's payload cells, adding a column the type has not had yet.
struct RowCells<'a> {
    columns: &'a mut Vec<String>,
    index: &'a mut HashMap<String, usize>,
    cells: &'a mut Vec<Option<Range<usize>>>,
    text: &'a mut String,
}

impl CellSink for RowCells<'_> {
    fn cell(&mut self, column: &str, value: &str) {
        let at = match self.index.get(column) {
            Some(at) => *at,
            None => {
                self.columns.push(column.to_owned());
                self.index.insert(column.to_owned(), self.columns.len() - 1);
                self.columns.len() - 1
            }
        };
        if self.cells.len() <= at {
            self.cells.resize(at + 1, None);
        }
        let start = self.text.len();
        self.text.push_str(value);
        self.cells[at] = Some(start..self.text.len());
    }
}

/// Appends `field` to a CSV record, quoted when it holds a comma, a quote or a line break.
fn push_csv_field(record: &mut Vec<u8>, field: &[u8]) {
    if field.iter().any(|byte| matches!(byte, b',' | b'"' | b'\n' | b'\r')) {
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

impl CsvParts {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            parts: BTreeMap::new(),
            created: PartFiles::default(),
            path: String::new(),
            cells: Vec::new(),
            text: String::new(),
            record: Vec::new(),
            envelope: EnvelopeScratch::default(),
        }
    }

    fn part_path(dir: &Path, event_type: &str) -> PathBuf {
        dir.join(format!(".{event_type}.csv.part"))
    }

    /// Adds the event's row to its type's part: `[bytes: u32 LE][fields: u32 LE][the record]`,
    /// the record without its line break and without the columns that appeared after it.
    fn add(&mut self, event: &PublicEvent<'_>) -> anyhow::Result<()> {
        let event_type = event.event_type();
        if !self.parts.contains_key(event_type) {
            let path = Self::part_path(&self.dir, event_type);
            let file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
            self.created.0.push(path);
            let part = TypeCsv { part: BufWriter::new(file), columns: Vec::new(), index: HashMap::new() };
            self.parts.insert(event_type, part);
        }
        let Some(part) = self.parts.get_mut(event_type) else { return Ok(()) };
        self.cells.clear();
        self.text.clear();
        let mut row = RowCells {
            columns: &mut part.columns,
            index: &mut part.index,
            cells: &mut self.cells,
            text: &mut self.text,
        };
        match event {
            PublicEvent::Owned(event) => flatten_payload(&event.event, &mut self.path, &mut row)?,
            PublicEvent::Borrowed(view) => flatten_payload(&view.event, &mut self.path, &mut row)?,
        }
        self.record.clear();
        let mut fields = 0u32;
        envelope_cells(event, &mut self.envelope, &mut |cell| {
            if fields > 0 {
                self.record.push(b',');
            }
            push_csv_field(&mut self.record, cell.as_bytes());
            fields += 1;
        });
        for cell in &self.cells {
            self.record.push(b',');
            if let Some(range) = cell {
                push_csv_field(&mut self.record, &self.text.as_bytes()[range.clone()]);
            }
            fields += 1;
        }
        let bytes = u32::try_from(self.record.len()).context("a CSV row over 4 GiB")?;
        part.part.write_all(&bytes.to_le_bytes())?;
        part.part.write_all(&fields.to_le_bytes())?;
        part.part.write_all(&self.record)?;
        Ok(())
    }

    /// Writes every part as `<event_type>.csv`: the header (the envelope's columns, then the
    /// payload's), then the rows, each padded with empty cells for the columns that appeared
    /// after it; removes the parts.
    fn finish(self) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (event_type, part) in self.parts {
            let TypeCsv { part, columns, .. } = part;
            drop(part.into_inner().map_err(|error| error.into_error())?);
            let part_path = Self::part_path(&self.dir, event_type);
            let csv_path = self.dir.join(format!("{event_type}.csv"));
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
            written.push(csv_path);
        }
        Ok(written)
    }
}

/// Whether an event that happened `at` is in the `--from`/`--to` window.
fn wanted(args: &ExportArgs, at: Timestamp) -> bool {
    args.from.is_none_or(|from| at >= from) && args.to.is_none_or(|to| at < to)
}

fn run_export(
    args: &ExportArgs,
    source: &mut dyn EventSource,
    types: Option<&[&str]>,
) -> anyhow::Result<(Written, Vec<PathBuf>)> {
    let mut written = Written::default();
    let mut failure: Option<anyhow::Error> = None;
    match args.format {
        ExportFormat::Jsonl => {
            let out: Box<dyn Write> = if args.out.as_os_str() == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(
                    File::create(&args.out)
                        .with_context(|| format!("--out: create {}", args.out.display()))?,
                )
            };
            // Lines are written straight into one buffer, handed to `out` a mebibyte at a time.
            let mut out = out;
            let mut buffer = Vec::with_capacity(FLUSH_AT + (64 << 10));
            written.read = source.public_events(types, &mut |event| {
                if failure.is_some() || !wanted(args, event.occurred_at()) {
                    return;
                }
                let start = buffer.len();
                let step =
                    write_public_json(&mut buffer, &event).map_err(anyhow::Error::from).and_then(|()| {
                        buffer.push(b'\n');
                        if buffer.len() >= FLUSH_AT {
                            out.write_all(&buffer)?;
                            buffer.clear();
                        }
                        Ok(event.event_type())
                    });
                match step {
                    Ok(event_type) => {
                        written.exported += 1;
                        *written.by_type.entry(event_type).or_default() += 1;
                    }
                    Err(error) => {
                        buffer.truncate(start.min(buffer.len()));
                        failure = Some(error)
                    }
                }
            })?;
            out.write_all(&buffer)?;
            out.flush()?;
            if let Some(error) = failure {
                return Err(error);
            }
            Ok((written, vec![args.out.clone()]))
        }
        ExportFormat::Csv => {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("--out: create the directory {}", args.out.display()))?;
            let mut parts = CsvParts::new(args.out.clone());
            written.read = source.public_events(types, &mut |event| {
                if failure.is_some() || !wanted(args, event.occurred_at()) {
                    return;
                }
                match parts.add(&event) {
                    Ok(()) => {
                        written.exported += 1;
                        *written.by_type.entry(event.event_type()).or_default() += 1;
                    }
                    Err(error) => failure = Some(error),
                }
            })?;
            if let Some(error) = failure {
                return Err(error);
            }
            let files = parts.finish()?;
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
        let files = parts.finish().unwrap();
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
