//! `covenant export`: the history (or a slice of it) as files a data team can load anywhere,
//! without personal data: JSON lines (one object per event, `event_json`), or CSV with one file
//! per event type (the envelope's columns, then the payload's flattened).
//!
//! Memory stays flat whatever the log's size: JSON lines are written as they are read; CSV rows
//! go first to one temporary JSON-lines file per event type while the type's columns are
//! collected (a type's events need not all have the same nested fields), then each file is
//! rewritten as CSV with the union of its columns.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use covenant_audit::EventSource;
use covenant_domain::{RecordedEvent, Timestamp};

use crate::audit::{SourceArgs, parse_instant};
use crate::event_json::{
    ENVELOPE_COLUMNS, columns_object, event_json, flatten, payload_columns, redact, write_event_json,
};

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

/// The CSV side: one temporary JSON-lines file per event type, and its columns so far.
struct CsvParts {
    dir: PathBuf,
    parts: BTreeMap<&'static str, (BufWriter<File>, BTreeSet<String>)>,
}

impl CsvParts {
    fn part_path(dir: &Path, event_type: &str) -> PathBuf {
        dir.join(format!(".{event_type}.jsonl.part"))
    }

    fn add(&mut self, event_type: &'static str, row: &BTreeMap<String, String>) -> anyhow::Result<()> {
        if !self.parts.contains_key(event_type) {
            let path = Self::part_path(&self.dir, event_type);
            let file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
            self.parts.insert(event_type, (BufWriter::new(file), BTreeSet::new()));
        }
        let Some((part, columns)) = self.parts.get_mut(event_type) else { return Ok(()) };
        columns.extend(payload_columns(row.keys()));
        serde_json::to_writer(&mut *part, &columns_object(row))?;
        part.write_all(b"\n")?;
        Ok(())
    }

    /// Rewrites every part as `<event_type>.csv` with its columns, and removes the parts.
    fn finish(self) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (event_type, (mut part, payload)) in self.parts {
            part.flush()?;
            drop(part);
            let part_path = Self::part_path(&self.dir, event_type);
            let csv_path = self.dir.join(format!("{event_type}.csv"));
            let mut csv = ::csv::Writer::from_path(&csv_path)
                .with_context(|| format!("create {}", csv_path.display()))?;
            let header: Vec<&str> =
                ENVELOPE_COLUMNS.iter().copied().chain(payload.iter().map(String::as_str)).collect();
            csv.write_record(&header)?;
            let reader = BufReader::new(File::open(&part_path)?);
            for line in reader.lines() {
                let row: BTreeMap<String, String> = serde_json::from_str(&line?)?;
                csv.write_record(header.iter().map(|name| row.get(*name).map_or("", String::as_str)))?;
            }
            csv.flush()?;
            std::fs::remove_file(&part_path)?;
            written.push(csv_path);
        }
        Ok(written)
    }
}

fn wanted(args: &ExportArgs, event: &RecordedEvent) -> bool {
    let at = event.metadata.occurred_at;
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
            let mut out = BufWriter::with_capacity(1 << 20, out);
            let (mut line, mut scratch) = (Vec::new(), Vec::new());
            written.read = source.events(types, &mut |mut event| {
                if failure.is_some() || !wanted(args, &event) {
                    return;
                }
                redact(&mut event);
                line.clear();
                let step = write_event_json(&mut line, &event, &mut scratch)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| {
                        line.push(b'\n');
                        out.write_all(&line)?;
                        Ok(event.event_type())
                    });
                match step {
                    Ok(event_type) => {
                        written.exported += 1;
                        *written.by_type.entry(event_type).or_default() += 1;
                    }
                    Err(error) => failure = Some(error),
                }
            })?;
            out.flush()?;
            if let Some(error) = failure {
                return Err(error);
            }
            Ok((written, vec![args.out.clone()]))
        }
        ExportFormat::Csv => {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("--out: create the directory {}", args.out.display()))?;
            let mut parts = CsvParts { dir: args.out.clone(), parts: BTreeMap::new() };
            written.read = source.events(types, &mut |mut event| {
                if failure.is_some() || !wanted(args, &event) {
                    return;
                }
                redact(&mut event);
                let event_type = event.event_type();
                let step = parts.add(event_type, &flatten(&event_json(&event))).map(|()| event_type);
                match step {
                    Ok(event_type) => {
                        written.exported += 1;
                        *written.by_type.entry(event_type).or_default() += 1;
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
