//! `covenant audit promises`: every broken promise with its whole story, the silent breaks, and
//! promise keeping by team, agent and kind, replayed from a log directory, a backup, or a
//! running ledger (`covenant_audit`), printed as a table, JSON or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use covenant_audit::{AuditFilter, AuditReport, EventSource, LedgerSource, LogSource, Models, audit};
use covenant_domain::audit::{Break, GroupSummary, PromiseStory, Settlement, days};
use covenant_domain::events::{BreakDetection, CompensationKind};
use covenant_domain::ids::CustomerId;
use covenant_domain::loyalty::{Lifecycle, LoyaltyParams};
use covenant_domain::org_metrics::promise_kind_name;
use covenant_domain::trust::TrustParams;
use covenant_domain::{Span, Timestamp};
use serde::Serialize;
use serde_json::json;

/// `covenant audit …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Every broken promise (recorded, and silent: past due with no outcome) with its story, and
    /// promise keeping by team, agent and promise kind.
    Promises(PromisesArgs),
}

/// How to print the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

/// Where a replay of the history reads from (`audit`, `export`): a data directory (default
/// `data`), a backup, or a running ledger.
#[derive(Debug, clap::Args)]
pub(crate) struct SourceArgs {
    /// Read the log in this data directory (its `log/`), read-only: works beside a running ledger.
    #[arg(long, conflicts_with_all = ["backup", "ledger"])]
    data: Option<PathBuf>,
    /// Read a backup made by `covenant backup`.
    #[arg(long, conflicts_with = "ledger")]
    backup: Option<PathBuf>,
    /// Read from a running ledger over gRPC (personal data comes back empty).
    #[arg(long)]
    ledger: Option<String>,
}

impl SourceArgs {
    /// Opens the source the options name.
    pub(crate) async fn open(&self) -> anyhow::Result<Box<dyn EventSource + Send>> {
        Ok(match (&self.ledger, &self.backup, &self.data) {
            (Some(url), _, _) => {
                Box::new(LedgerSource::new(crate::client::channel(url, "the ledger").await?))
            }
            (None, Some(backup), _) => Box::new(open_log(backup.clone(), "--backup").await?),
            (None, None, data) => {
                let data = data.clone().unwrap_or_else(|| PathBuf::from("data"));
                Box::new(open_log(data.join("log"), "--data").await?)
            }
        })
    }
}

/// Options of `covenant audit promises`.
#[derive(Debug, clap::Args)]
pub(crate) struct PromisesArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Only promises due at or after this instant (RFC 3339, or a date: 2026-11-01).
    #[arg(long, value_parser = parse_instant)]
    from: Option<Timestamp>,
    /// Only promises due before this instant.
    #[arg(long, value_parser = parse_instant)]
    to: Option<Timestamp>,
    /// Only this customer's promises (their stream alone is read).
    #[arg(long)]
    customer: Option<String>,
    /// Only promises made by this team.
    #[arg(long)]
    team: Option<String>,
    /// Only promises made by this agent.
    #[arg(long)]
    agent: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Threads that audit a log read in place (`--data`, `--backup`), a partition each at a
    /// time; the report is the same whatever the count. Default: the machine's cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

/// An instant from the command line: RFC 3339 (`2026-11-01T09:30:00Z`) or a UTC date.
pub(crate) fn parse_instant(text: &str) -> Result<Timestamp, String> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let at = humantime::parse_rfc3339_weak(&full).map_err(|error| {
        format!("`{text}` is not an instant (2026-11-01 or 2026-11-01T09:30:00Z): {error}")
    })?;
    let millis = at.duration_since(UNIX_EPOCH).map_err(|_| format!("`{text}` is before 1970"))?.as_millis();
    let millis = i64::try_from(millis).map_err(|_| format!("`{text}` is too far in the future"))?;
    Timestamp::from_unix_millis("instant", millis).map_err(|error| error.to_string())
}

/// RFC 3339 to the second, UTC.
pub(crate) fn instant(at: Timestamp) -> String {
    rfc3339(at).to_string()
}

/// An instant shown as RFC 3339 to the second, UTC (what [`instant`] and the JSON report write).
fn rfc3339(at: Timestamp) -> humantime::Rfc3339Timestamp {
    let since = Duration::from_millis(u64::try_from(at.unix_millis()).unwrap_or(0));
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since)
}

/// A span in its largest sensible unit: `45min`, `6.0h`, `2.5d`.
fn human(span: Span) -> String {
    let minutes = span.millis() as f64 / 60_000.0;
    if minutes < 90.0 {
        format!("{minutes:.0}min")
    } else if minutes < 48.0 * 60.0 {
        format!("{:.1}h", minutes / 60.0)
    } else {
        format!("{:.1}d", days(span))
    }
}

fn detection_name(detection: BreakDetection) -> &'static str {
    match detection {
        BreakDetection::Deadline => "deadline",
        BreakDetection::CustomerReport => "customer_report",
        BreakDetection::Audit => "audit",
    }
}

fn how_broken(story: &PromiseStory) -> &'static str {
    match &story.broke {
        Break::Recorded { detection, .. } => detection_name(*detection),
        Break::Silent => "SILENT",
    }
}

fn compensation_kind(kind: CompensationKind) -> &'static str {
    match kind {
        CompensationKind::Refund => "refund",
        CompensationKind::Credit => "credit",
        CompensationKind::Gift => "gift",
        CompensationKind::Discount => "discount",
        CompensationKind::Replacement => "replacement",
        CompensationKind::Waiver => "waiver",
    }
}

fn lifecycle_name(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Prospect => "prospect",
        Lifecycle::Active => "active",
        Lifecycle::Lapsed => "lapsed",
        Lifecycle::Churned => "churned",
        Lifecycle::WonBack => "won_back",
    }
}

fn settlement_name(settlement: Option<Settlement>) -> &'static str {
    match settlement {
        None => "open",
        Some(Settlement::KeptOnTime) => "kept_on_time",
        Some(Settlement::KeptLate { .. }) => "kept_late",
        Some(Settlement::PartiallyKept) => "partially_kept",
        Some(Settlement::Broken { .. }) => "broken",
        Some(Settlement::Cancelled) => "cancelled",
        Some(Settlement::Silent { .. }) => "silently_broken",
    }
}

fn money(amount_minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", amount_minor / 100, (amount_minor % 100).abs())
}

fn optional<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "—".to_owned(), show)
}

fn percent(value: Option<f64>) -> String {
    optional(value, |value| format!("{value:.0}%"))
}

/// The CSV columns, in [`row`]'s order.
const HEADER: [&str; 25] = [
    "broke_at",
    "customer_id",
    "promise_id",
    "kind",
    "description",
    "made_by",
    "team",
    "made_at",
    "first_due_at",
    "due_at",
    "renegotiations",
    "renegotiations_consented",
    "broken_by",
    "days_late",
    "apology_after_hours",
    "compensation",
    "compensation_after_hours",
    "fix_promise",
    "fix_outcome",
    "trust_before",
    "trust_after",
    "trust_now",
    "churned_at",
    "lifecycle_now",
    "recovered",
];

/// One story as a CSV row (empty where there is nothing).
fn row(story: &PromiseStory) -> [String; 25] {
    let consented = story.renegotiations.iter().filter(|change| change.customer_consented).count();
    let or_empty = |value: Option<String>| value.unwrap_or_default();
    [
        instant(story.broke_at()),
        story.customer_id.to_string(),
        story.promise_id.to_string(),
        promise_kind_name(story.kind).to_owned(),
        story.description.as_str().to_owned(),
        story.made_by.to_string(),
        story.team.as_ref().map(ToString::to_string).unwrap_or_default(),
        instant(story.made_at),
        instant(story.first_due_at),
        instant(story.due_at),
        story.renegotiations.len().to_string(),
        consented.to_string(),
        how_broken(story).to_owned(),
        format!("{:.2}", days(story.late)),
        or_empty(story.apology.as_ref().map(|apology| hours(apology.after))),
        or_empty(story.compensation.as_ref().map(|paid| {
            format!(
                "{} {}",
                compensation_kind(paid.kind),
                money(paid.amount.amount_minor, &paid.amount.currency.to_string())
            )
        })),
        or_empty(story.compensation.as_ref().map(|paid| hours(paid.after))),
        or_empty(story.fix.as_ref().map(|fix| fix.promise_id.to_string())),
        or_empty(story.fix.as_ref().map(|fix| settlement_name(fix.outcome).to_owned())),
        or_empty(story.trust_before.map(|score| score.to_string())),
        or_empty(story.trust_after.map(|score| score.to_string())),
        story.trust_now.to_string(),
        or_empty(story.churned_at.map(instant)),
        lifecycle_name(story.lifecycle_now).to_owned(),
        story.recovered().to_string(),
    ]
}

fn hours(span: Span) -> String {
    format!("{:.2}", hours_after(span))
}

/// An instant as JSON: RFC 3339 to the second, written straight into the output.
#[derive(Debug, Clone, Copy)]
struct InstantJson(Timestamp);

impl Serialize for InstantJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&rfc3339(self.0))
    }
}

/// Anything shown as text (an event id, a currency), written straight into the output.
#[derive(Debug)]
struct TextJson<T>(T);

impl<T: std::fmt::Display> Serialize for TextJson<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A span in hours (fractional).
fn hours_after(span: Span) -> f64 {
    span.millis() as f64 / 3_600_000.0
}

/// A story of the JSON report. Its fields are in name order, as they always came out.
#[derive(Debug, Serialize)]
struct StoryJson<'a> {
    apology: Option<FollowUpJson>,
    broken: BrokenJson<'a>,
    churned_at: Option<InstantJson>,
    compensation: Option<CompensationJson<'a>>,
    customer_id: &'a str,
    days_late: f64,
    description: &'a str,
    due_at: InstantJson,
    first_due_at: InstantJson,
    fix: Option<FixJson<'a>>,
    grace_seconds: i64,
    kind: &'static str,
    lifecycle_now: &'static str,
    lost_afterwards: bool,
    made_at: InstantJson,
    made_by: &'a str,
    promise_id: &'a str,
    recovered: bool,
    renegotiations: Vec<RenegotiationJson>,
    team: Option<&'a str>,
    trust_after: Option<u8>,
    trust_before: Option<u8>,
    trust_now: u8,
}

#[derive(Debug, Serialize)]
struct FollowUpJson {
    at: InstantJson,
    hours_after: f64,
}

#[derive(Debug, Serialize)]
struct CompensationJson<'a> {
    amount_minor: i64,
    at: InstantJson,
    currency: TextJson<&'a covenant_domain::values::Currency>,
    hours_after: f64,
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct FixJson<'a> {
    due_at: InstantJson,
    made_at: InstantJson,
    outcome: &'static str,
    promise_id: &'a str,
}

#[derive(Debug, Serialize)]
struct RenegotiationJson {
    at: InstantJson,
    customer_consented: bool,
    new_due_at: InstantJson,
    previous_due_at: InstantJson,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum BrokenJson<'a> {
    Recorded {
        detected_at: InstantJson,
        event_id: TextJson<&'a covenant_domain::ids::EventId>,
        how: &'static str,
        offset: u64,
        partition: u16,
    },
    Silent {
        how: &'static str,
    },
}

fn story_json(story: &PromiseStory) -> StoryJson<'_> {
    StoryJson {
        apology: story.apology.as_ref().map(|apology| FollowUpJson {
            at: InstantJson(apology.at),
            hours_after: hours_after(apology.after),
        }),
        broken: match &story.broke {
            Break::Recorded { detection, detected_at, event_id, position } => BrokenJson::Recorded {
                detected_at: InstantJson(*detected_at),
                event_id: TextJson(event_id),
                how: detection_name(*detection),
                offset: position.offset,
                partition: position.partition,
            },
            Break::Silent => BrokenJson::Silent { how: "silent" },
        },
        churned_at: story.churned_at.map(InstantJson),
        compensation: story.compensation.as_ref().map(|paid| CompensationJson {
            amount_minor: paid.amount.amount_minor,
            at: InstantJson(paid.at),
            currency: TextJson(&paid.amount.currency),
            hours_after: hours_after(paid.after),
            kind: compensation_kind(paid.kind),
        }),
        customer_id: story.customer_id.as_str(),
        days_late: days(story.late),
        description: story.description.as_str(),
        due_at: InstantJson(story.due_at),
        first_due_at: InstantJson(story.first_due_at),
        fix: story.fix.as_ref().map(|fix| FixJson {
            due_at: InstantJson(fix.due_at),
            made_at: InstantJson(fix.made_at),
            outcome: settlement_name(fix.outcome),
            promise_id: fix.promise_id.as_str(),
        }),
        grace_seconds: story.grace.millis() / 1000,
        kind: promise_kind_name(story.kind),
        lifecycle_now: lifecycle_name(story.lifecycle_now),
        lost_afterwards: story.lost_afterwards(),
        made_at: InstantJson(story.made_at),
        made_by: story.made_by.as_str(),
        promise_id: story.promise_id.as_str(),
        recovered: story.recovered(),
        renegotiations: story
            .renegotiations
            .iter()
            .map(|change| RenegotiationJson {
                at: InstantJson(change.at),
                customer_consented: change.customer_consented,
                new_due_at: InstantJson(change.new_due_at),
                previous_due_at: InstantJson(change.previous_due_at),
            })
            .collect(),
        team: story.team.as_ref().map(|team| team.as_str()),
        trust_after: story.trust_after,
        trust_before: story.trust_before,
        trust_now: story.trust_now,
    }
}

fn group_json(group: &GroupSummary) -> serde_json::Value {
    json!({
        "group": group.group,
        "settled": group.settled,
        "kept_on_time": group.kept_on_time,
        "kept_late": group.kept_late,
        "partially_kept": group.partially_kept,
        "broken": group.broken,
        "silent": group.silent,
        "cancelled": group.cancelled,
        "keeping_rate_percent": group.keeping_rate_percent,
        "median_days_late": group.median_days_late,
        "recovery_rate_percent": group.recovery_rate_percent,
    })
}

/// The report as one JSON document, written a story at a time (a document of a million
/// events' stories is never built in memory): the header fields, `broken_promises` (one story
/// per line), `silent_breaks`, and `summary`.
/// Stories each thread of [`write_stories`] renders to JSON in a round.
const STORIES_PER_THREAD: usize = 4_096;

/// The stories of the `broken_promises` array, each on its own line: rendered on `threads`
/// threads `per_thread` stories each a round at a time (a contiguous share each, so memory stays
/// that of one round's text) and written in order.
fn write_stories(
    out: &mut impl Write,
    stories: &[PromiseStory],
    threads: usize,
    per_thread: usize,
) -> anyhow::Result<()> {
    let threads = threads.max(1);
    for (round, stories) in stories.chunks(per_thread.max(1) * threads).enumerate() {
        let share = stories.len().div_ceil(threads);
        let rendered = std::thread::scope(|scope| {
            let workers: Vec<_> = stories
                .chunks(share)
                .map(|chunk| {
                    scope.spawn(move || -> serde_json::Result<Vec<u8>> {
                        let mut text = Vec::new();
                        for story in chunk {
                            text.extend_from_slice(b",\n    ");
                            serde_json::to_writer(&mut text, &story_json(story))?;
                        }
                        Ok(text)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| match worker.join() {
                    Ok(text) => Ok(text?),
                    Err(_) => Err(anyhow::anyhow!("a thread rendering the report panicked")),
                })
                .collect::<anyhow::Result<Vec<Vec<u8>>>>()
        })?;
        for (index, text) in rendered.iter().enumerate() {
            // The array's first story has no comma before it.
            let first = round == 0 && index == 0;
            out.write_all(text.get(usize::from(first)..).unwrap_or_default())?;
        }
    }
    Ok(())
}

fn write_json(out: &mut impl Write, report: &AuditReport, threads: usize) -> anyhow::Result<()> {
    let field = |name: &str, value: serde_json::Value| format!("{}: {value}", serde_json::Value::from(name));
    writeln!(out, "{{")?;
    writeln!(out, "  {},", field("as_of", json!(instant(report.as_of))))?;
    writeln!(out, "  {},", field("records_read", json!(report.records_read)))?;
    writeln!(out, "  {},", field("promises_judged", json!(report.promises_judged)))?;
    writeln!(out, "  {},", field("promises_pending", json!(report.promises_pending)))?;
    write!(out, "  \"broken_promises\": [")?;
    write_stories(out, &report.stories, threads, STORIES_PER_THREAD)?;
    writeln!(out, "{}],", if report.stories.is_empty() { "" } else { "\n  " })?;
    writeln!(out, "  {},", field("silent_breaks", json!(report.silent().count())))?;
    let summary = json!({
        "overall": group_json(&report.overall),
        "by_team": report.by_team.iter().map(group_json).collect::<Vec<_>>(),
        "by_agent": report.by_agent.iter().map(group_json).collect::<Vec<_>>(),
        "by_kind": report.by_kind.iter().map(group_json).collect::<Vec<_>>(),
    });
    writeln!(out, "  {}", field("summary", summary))?;
    writeln!(out, "}}")?;
    Ok(())
}

fn summary_table(out: &mut impl Write, title: &str, groups: &[GroupSummary]) -> std::io::Result<()> {
    writeln!(out, "\n{title}")?;
    writeln!(
        out,
        "  {:<20} {:>7} {:>7} {:>5} {:>6} {:>6} {:>6} {:>9} {:>8} {:>11} {:>9}",
        "",
        "settled",
        "on time",
        "late",
        "broken",
        "silent",
        "cancel",
        "keeping",
        "med late",
        "recovered",
        ""
    )?;
    for group in groups {
        writeln!(
            out,
            "  {:<20} {:>7} {:>7} {:>5} {:>6} {:>6} {:>6} {:>9} {:>8} {:>11}",
            group.group,
            group.settled,
            group.kept_on_time,
            group.kept_late,
            group.broken,
            group.silent,
            group.cancelled,
            percent(group.keeping_rate_percent),
            optional(group.median_days_late, |days| format!("{days:.1}d")),
            percent(group.recovery_rate_percent),
        )?;
    }
    Ok(())
}

fn table(out: &mut impl Write, report: &AuditReport) -> std::io::Result<()> {
    writeln!(
        out,
        "audit as of {}: {} records read, {} promises judged ({} open, not yet due), {} broken ({} silent)\n",
        instant(report.as_of),
        report.records_read,
        report.promises_judged,
        report.promises_pending,
        report.stories.len(),
        report.silent().count()
    )?;
    writeln!(
        out,
        "{:<20} {:<16} {:<20} {:<10} {:<10} {:<12} {:<20} {:<16} {:>7} {:>5} {:>8} {:>18} {:>9} {:<10}",
        "broke",
        "customer",
        "promise",
        "kind",
        "agent",
        "team",
        "due",
        "how",
        "late",
        "reneg",
        "apology",
        "compensation",
        "trust",
        "now"
    )?;
    for story in &report.stories {
        let reneg = format!(
            "{}/{}",
            story.renegotiations.iter().filter(|change| change.customer_consented).count(),
            story.renegotiations.len()
        );
        let trust = match (story.trust_before, story.trust_after) {
            (Some(before), Some(after)) => format!("{before}→{after}"),
            _ => format!("{}", story.trust_now),
        };
        let now = if story.churned_at.is_some() { "churned" } else { lifecycle_name(story.lifecycle_now) };
        writeln!(
            out,
            "{:<20} {:<16} {:<20} {:<10} {:<10} {:<12} {:<20} {:<16} {:>7} {:>5} {:>8} {:>18} {:>9} {:<10}",
            instant(story.broke_at()),
            story.customer_id.as_str(),
            story.promise_id.as_str(),
            promise_kind_name(story.kind),
            story.made_by.as_str(),
            story.team.as_ref().map_or("—", |team| team.as_str()),
            instant(story.due_at),
            how_broken(story),
            human(story.late),
            reneg,
            optional(story.apology.as_ref(), |apology| format!("+{}", human(apology.after))),
            optional(story.compensation.as_ref(), |paid| format!(
                "+{} {}",
                human(paid.after),
                money(paid.amount.amount_minor, &paid.amount.currency.to_string())
            )),
            trust,
            now,
        )?;
    }
    if report.silent().count() > 0 {
        writeln!(
            out,
            "\nSILENT: {} promise(s) are past due (plus grace) with no outcome in the log: kept, broken or \
             cancelled, nobody recorded it (was the watchdog down?).",
            report.silent().count()
        )?;
    }
    summary_table(out, "overall", std::slice::from_ref(&report.overall))?;
    summary_table(out, "by team", &report.by_team)?;
    summary_table(out, "by agent", &report.by_agent)?;
    summary_table(out, "by promise kind", &report.by_kind)?;
    Ok(())
}

fn csv(out: impl Write, report: &AuditReport) -> anyhow::Result<()> {
    let mut writer = ::csv::Writer::from_writer(out);
    writer.write_record(HEADER)?;
    for story in &report.stories {
        writer.write_record(row(story))?;
    }
    writer.flush()?;
    Ok(())
}

/// Runs `covenant audit …`.
pub(crate) async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Promises(args) = command;
    let filter = AuditFilter {
        from: args.from,
        to: args.to,
        customer: args
            .customer
            .as_deref()
            .map(|customer| CustomerId::new(customer).map_err(|error| anyhow::anyhow!("--customer: {error}")))
            .transpose()?,
        team: args.team.clone(),
        agent: args.agent.clone(),
    };
    let mut source = args.source.open().await?;
    let as_of = Timestamp::now();
    let threads = args.threads.map_or_else(covenant_log::available_cores, usize::from);
    let format = args.format;
    // The audit and its report (rendered on the same threads) run off the async workers.
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let (trust, loyalty) = (TrustParams::default(), LoyaltyParams::default());
        let report =
            audit(source.as_mut(), &filter, as_of, Models { trust: &trust, loyalty: &loyalty }, threads)?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        match format {
            Format::Table => table(&mut out, &report)?,
            Format::Json => write_json(&mut out, &report, threads)?,
            Format::Csv => csv(&mut out, &report)?,
        }
        out.flush()?;
        Ok(())
    })
    .await
    .context("the audit task")??;
    Ok(ExitCode::SUCCESS)
}

/// Opens a log read-only, saying which option pointed at a place with no log.
pub(crate) async fn open_log(path: PathBuf, option: &'static str) -> anyhow::Result<LogSource> {
    if !path.exists() {
        anyhow::bail!("{option}: there is no log at {}", path.display());
    }
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || LogSource::open(&path))
        .await
        .context("open the log")?
        .with_context(|| format!("{option}: open the log at {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_as_dates_or_rfc3339_and_print_back() {
        let date = parse_instant("2026-11-01").unwrap();
        assert_eq!(instant(date), "2026-11-01T00:00:00Z");
        let full = parse_instant("2026-11-01T09:30:00Z").unwrap();
        assert_eq!(full.unix_millis() - date.unix_millis(), 9 * 3_600_000 + 30 * 60_000);
        let error = parse_instant("yesterday").unwrap_err();
        assert!(error.contains("`yesterday` is not an instant"), "{error}");
        assert!(parse_instant("1969-12-31").is_err());
    }

    fn story(number: usize) -> PromiseStory {
        let at =
            |hours: i64| Timestamp::from_unix_millis("at", 1_800_000_000_000 + hours * 3_600_000).unwrap();
        PromiseStory {
            customer_id: CustomerId::new(format!("customer-{number}")).unwrap(),
            promise_id: covenant_domain::ids::PromiseId::new(format!("p-{number}")).unwrap(),
            kind: covenant_domain::events::PromiseKind::Callback,
            description: covenant_domain::Text::new("description", "call back \"today\"", 500).unwrap(),
            made_by: covenant_domain::ids::ActorId::new("agent-a").unwrap(),
            team: None,
            made_at: at(0),
            first_due_at: at(24),
            due_at: at(24),
            grace: Span::from_secs(3600),
            renegotiations: Vec::new(),
            broke: Break::Silent,
            late: Span::from_secs(3600 * number as i64),
            apology: None,
            compensation: None,
            fix: None,
            trust_before: None,
            trust_after: None,
            trust_now: 50,
            churned_at: None,
            lifecycle_now: Lifecycle::Active,
        }
    }

    /// A story with every part (a recorded break, a renegotiation, an apology, compensation, a
    /// fix, a team, a churn) comes out with exactly these fields, in name order at every level
    /// (the order the `serde_json::Value` maps of earlier versions wrote, which re-serialising
    /// through a `Value` reproduces), with instants as RFC 3339 and hours as fractions.
    #[test]
    fn a_whole_story_comes_out_with_its_fields_in_name_order() {
        use covenant_domain::audit::{Compensation, Fix, FollowUp, Renegotiation};
        let at =
            |hours: i64| Timestamp::from_unix_millis("at", 1_800_000_000_000 + hours * 3_600_000).unwrap();
        let mut whole = story(3);
        whole.team = Some(covenant_domain::ids::TeamId::new("support").unwrap());
        whole.renegotiations = vec![Renegotiation {
            at: at(2),
            previous_due_at: at(24),
            new_due_at: at(48),
            customer_consented: false,
        }];
        whole.broke = Break::Recorded {
            detection: BreakDetection::Deadline,
            detected_at: at(49),
            event_id: covenant_domain::EventId::new_v7(),
            position: covenant_domain::Position { partition: 3, offset: 17 },
        };
        whole.apology = Some(FollowUp { at: at(50), after: Span::from_secs(5400) });
        whole.compensation = Some(Compensation {
            at: at(51),
            after: Span::from_secs(7200),
            kind: CompensationKind::Credit,
            amount: covenant_domain::Money {
                amount_minor: 500,
                currency: covenant_domain::values::Currency::new("currency", "EUR").unwrap(),
            },
        });
        whole.fix = Some(Fix {
            promise_id: covenant_domain::ids::PromiseId::new("p-fix").unwrap(),
            made_at: at(50),
            due_at: at(60),
            outcome: Some(Settlement::KeptOnTime),
        });
        whole.trust_before = Some(50);
        whole.trust_after = Some(7);
        whole.churned_at = Some(at(100));
        let text = serde_json::to_string(&story_json(&whole)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(text, value.to_string(), "fields out of name order somewhere");
        let fields: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "apology",
                "broken",
                "churned_at",
                "compensation",
                "customer_id",
                "days_late",
                "description",
                "due_at",
                "first_due_at",
                "fix",
                "grace_seconds",
                "kind",
                "lifecycle_now",
                "lost_afterwards",
                "made_at",
                "made_by",
                "promise_id",
                "recovered",
                "renegotiations",
                "team",
                "trust_after",
                "trust_before",
                "trust_now",
            ]
        );
        assert_eq!(value["apology"], serde_json::json!({ "at": instant(at(50)), "hours_after": 1.5 }));
        assert_eq!(value["broken"]["how"], "deadline");
        assert_eq!(
            (value["broken"]["partition"].as_u64(), value["broken"]["offset"].as_u64()),
            (Some(3), Some(17))
        );
        assert_eq!(value["compensation"]["currency"], "EUR");
        assert_eq!(value["compensation"]["hours_after"], 2.0);
        assert_eq!(value["fix"]["outcome"], "kept_on_time");
        assert_eq!(value["renegotiations"][0]["new_due_at"], instant(at(48)));
        assert_eq!(value["churned_at"], instant(at(100)));
        assert_eq!((value["trust_before"].as_u64(), value["trust_after"].as_u64()), (Some(50), Some(7)));
        // A silent break has only its `how`.
        assert_eq!(
            serde_json::to_value(story_json(&story(1))).unwrap()["broken"],
            serde_json::json!({ "how": "silent" })
        );
    }

    /// The stories rendered on several threads, in rounds, come out as on one: the same bytes,
    /// one JSON array of every story in order.
    #[test]
    fn stories_rendered_on_threads_are_the_stories_rendered_on_one() {
        for count in [0, 1, 2, 5, 13] {
            let stories: Vec<PromiseStory> = (0..count).map(story).collect();
            let render = |threads: usize, per_thread: usize| {
                let mut out = b"[".to_vec();
                write_stories(&mut out, &stories, threads, per_thread).unwrap();
                out.extend_from_slice(b"]");
                out
            };
            let one = render(1, 1_000);
            for (threads, per_thread) in [(2, 1), (3, 2), (4, 1_000), (1, 1)] {
                assert_eq!(
                    render(threads, per_thread),
                    one,
                    "{count} stories, {threads} threads × {per_thread}"
                );
            }
            let parsed: serde_json::Value = serde_json::from_slice(&one).unwrap();
            let customers: Vec<&str> = parsed
                .as_array()
                .unwrap()
                .iter()
                .map(|story| story["customer_id"].as_str().unwrap())
                .collect();
            let expected: Vec<String> = (0..count).map(|number| format!("customer-{number}")).collect();
            assert_eq!(customers, expected);
        }
    }

    #[test]
    fn spans_read_in_their_largest_unit_and_money_in_units() {
        assert_eq!(human(Span::from_secs(45 * 60)), "45min");
        assert_eq!(human(Span::from_secs(6 * 3600)), "6.0h");
        assert_eq!(human(Span::from_secs(60 * 3600)), "2.5d");
        assert_eq!(money(1505, "EUR"), "15.05 EUR");
    }
}
