#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The audit over a real RocksDB log, written through the log's own append path and read back
//! read-only (as `covenant audit --data` does): the stories, the silent breaks, the summary, and
//! the filters.

use std::path::Path;

use covenant_audit::{AuditFilter, AuditReport, EventSource, LogSource, Models, audit};
use covenant_domain::audit::Break;
use covenant_domain::commands::Command;
use covenant_domain::events::{BreakDetection, CompensationKind, PromiseKind, RelatedRef};
use covenant_domain::ids::{ActorId, CommandId, CustomerId, PromiseId, TeamId};
use covenant_domain::loyalty::LoyaltyParams;
use covenant_domain::trust::TrustParams;
use covenant_domain::values::Currency;
use covenant_domain::{Money, Span, Text, Timestamp, sample};
use covenant_log::{AppendRequest, EventLog, LogConfig};

fn at(hours: i64) -> Timestamp {
    Timestamp::from_unix_millis("test", 1_700_000_000_000 + hours * 3_600_000).unwrap()
}

fn text(value: &str) -> Text {
    Text::new("text", value, 500).unwrap()
}

fn pid(id: &str) -> PromiseId {
    PromiseId::new(id).unwrap()
}

struct Writer {
    log: EventLog,
    commands: u64,
}

impl Writer {
    async fn send(&mut self, customer: &str, hours: i64, team: &str, command: Command) {
        self.commands += 1;
        let mut metadata = sample::metadata(at(hours)).unwrap();
        metadata.team = Some(TeamId::new(team).unwrap());
        self.log
            .append(AppendRequest {
                customer_id: CustomerId::new(customer).unwrap(),
                command_id: CommandId::new(format!("command-{}", self.commands)).unwrap(),
                expected_version: None,
                metadata,
                command,
            })
            .await
            .unwrap();
    }

    async fn promise(&mut self, customer: &str, hours: i64, team: &str, agent: &str, id: &str, due: i64) {
        let command = Command::MakePromise {
            promise_id: pid(id),
            kind: PromiseKind::Delivery,
            description: text(&format!("deliver order {id}")),
            made_by: ActorId::new(agent).unwrap(),
            due_at: at(due),
            grace: Span::from_secs(3600),
            related_ref: None,
        };
        self.send(customer, hours, team, command).await;
    }

    async fn broken(&mut self, customer: &str, hours: i64, id: &str) {
        let command = Command::ReportBrokenPromise {
            promise_id: pid(id),
            detection: BreakDetection::CustomerReport,
            reason: text("never arrived"),
        };
        self.send(customer, hours, "support", command).await;
    }

    async fn kept(&mut self, customer: &str, hours: i64, id: &str) {
        let command = Command::KeepPromise { promise_id: pid(id), kept_at: None, evidence: text("") };
        self.send(customer, hours, "support", command).await;
    }
}

/// Writes the history every test audits and returns the log's directory.
async fn write_history(dir: &Path) {
    let log = EventLog::open(LogConfig::new(dir)).await.unwrap();
    let mut writer = Writer { log, commands: 0 };
    for customer in ["ann", "bob", "cyd"] {
        writer.send(customer, 0, "support", sample::register(customer).unwrap()).await;
    }
    // ann: a delivery due at hour 24, reported broken at hour 30; an apology 2 hours later,
    // compensation a day later.
    writer.promise("ann", 1, "logistics", "agent-a", "order-1", 24).await;
    writer.broken("ann", 30, "order-1").await;
    writer
        .send(
            "ann",
            32,
            "support",
            Command::IssueApology { related_ref: RelatedRef::Promise(pid("order-1")) },
        )
        .await;
    let amount = Money::positive("amount", 1500, Currency::new("currency", "EUR").unwrap()).unwrap();
    let compensate = Command::GrantCompensation {
        related_ref: RelatedRef::Promise(pid("order-1")),
        kind: CompensationKind::Refund,
        amount,
    };
    writer.send("ann", 54, "support", compensate).await;
    // bob: kept on time, then one due at hour 10 that nobody ever settled (a silent break).
    writer.promise("bob", 1, "logistics", "agent-b", "order-2", 24).await;
    writer.kept("bob", 20, "order-2").await;
    writer.promise("bob", 2, "sales", "agent-b", "order-3", 10).await;
    // cyd: kept late by 6 hours; and one not due before the audit instant.
    writer.promise("cyd", 1, "sales", "agent-a", "order-4", 24).await;
    writer.kept("cyd", 30, "order-4").await;
    writer.promise("cyd", 2, "sales", "agent-a", "order-5", 10_000).await;
    writer.log.close().await.unwrap();
}

/// The history every test audits, and the log open again for a test's own customers.
async fn history_and_more(dir: &Path) -> Writer {
    write_history(dir).await;
    let log = EventLog::open(LogConfig::new(dir)).await.unwrap();
    Writer { log, commands: 1_000 }
}

fn models() -> Models<'static> {
    static TRUST: std::sync::LazyLock<TrustParams> = std::sync::LazyLock::new(TrustParams::default);
    static LOYALTY: std::sync::LazyLock<LoyaltyParams> = std::sync::LazyLock::new(LoyaltyParams::default);
    Models { trust: &TRUST, loyalty: &LOYALTY }
}

fn run(dir: &Path, filter: &AuditFilter) -> AuditReport {
    let mut source = LogSource::open(dir).unwrap();
    audit(&mut source, filter, at(100), models(), 2).unwrap()
}

/// A log read through the one-pass-at-a-time path every source has (as a running ledger is):
/// it hides that it is a log read in place, so the audit cannot go partition by partition.
struct Sequential(LogSource);

impl EventSource for Sequential {
    fn events(
        &mut self,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(covenant_domain::RecordedEvent),
    ) -> covenant_audit::Result<u64> {
        self.0.events(types, visit)
    }

    fn stream(
        &mut self,
        customer: &CustomerId,
    ) -> covenant_audit::Result<Vec<covenant_domain::RecordedEvent>> {
        self.0.stream(customer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_partition_by_partition_equals_the_sequential_audit_whatever_the_threads() {
    // The log in a directory of its own: its master key goes beside it, inside the temporary one.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    // Customers in every partition, with every outcome: broken (some recovered), silent, late.
    let mut writer = history_and_more(dir.as_path()).await;
    for number in 0..48 {
        let customer = format!("many-{number}");
        let agent = ["agent-a", "agent-b", "agent-c"][number % 3];
        let team = ["sales", "logistics"][number % 2];
        writer.send(&customer, 0, "support", sample::register(&customer).unwrap()).await;
        for promise in 0..3 {
            let id = format!("p-{number}-{promise}");
            writer.promise(&customer, 1 + promise as i64, team, agent, &id, 20 + (number % 7) as i64).await;
            match (number + promise) % 4 {
                0 => writer.broken(&customer, 30 + promise as i64, &id).await,
                1 => writer.kept(&customer, 10 + (number % 20) as i64, &id).await,
                2 if number % 2 == 0 => {
                    let apology = Command::IssueApology { related_ref: RelatedRef::Promise(pid(&id)) };
                    writer.broken(&customer, 40, &id).await;
                    writer.send(&customer, 41, "support", apology).await;
                }
                _ => {} // silent at the audit instant
            }
        }
    }
    // A crowd whose events interleave, one of them with a promise broken by a lone agent: that
    // customer's few events lie sparse in their partition, so the second pass reads them
    // through the stream index instead of walking the partition.
    let crowd: Vec<String> = (0..160).map(|number| format!("crowd-{number}")).collect();
    for customer in &crowd {
        writer.send(customer, 0, "support", sample::register(customer).unwrap()).await;
    }
    for customer in &crowd {
        let agent = if customer == "crowd-7" { "agent-lone" } else { "agent-crowd" };
        writer.promise(customer, 1, "crowd", agent, "c-1", 20).await;
    }
    for customer in &crowd {
        if customer == "crowd-7" {
            writer.broken(customer, 25, "c-1").await;
        } else {
            writer.kept(customer, 5, "c-1").await;
        }
    }
    writer.log.close().await.unwrap();

    let dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        let filters = [
            AuditFilter::default(),
            AuditFilter { team: Some("sales".into()), ..Default::default() },
            AuditFilter { from: Some(at(22)), to: Some(at(25)), ..Default::default() },
            AuditFilter { agent: Some("agent-lone".into()), ..Default::default() },
        ];
        for filter in &filters {
            let mut sequential = Sequential(LogSource::open(&dir).unwrap());
            let expected = audit(&mut sequential, filter, at(100), models(), 1).unwrap();
            if filter.agent.is_some() {
                assert_eq!(expected.stories.len(), 1, "{filter:?}");
                assert_eq!(expected.stories[0].customer_id.as_str(), "crowd-7");
            } else {
                assert!(expected.stories.len() > 10, "{filter:?}: {} stories", expected.stories.len());
                assert!(expected.silent().count() > 0);
            }
            // The first pass keeps each partition's records for the second (all of them by
            // default here), none, or only the first few, the rest read from the log again.
            for retained in [covenant_audit::sources::RETAINED_BYTES, 0, 2_048, 16_384] {
                for threads in [1, 2, 5] {
                    let mut source = LogSource::open(&dir).unwrap().with_retained_bytes(retained);
                    let report = audit(&mut source, filter, at(100), models(), threads).unwrap();
                    assert_eq!(report, expected, "{threads} threads, {retained} bytes kept, {filter:?}");
                }
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_audit_of_a_real_log_tells_each_broken_promise_and_sums_up_keeping() {
    // The log in a directory of its own: its master key goes beside it, inside the temporary one.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    write_history(dir.as_path()).await;
    let report = run(dir.as_path(), &AuditFilter::default());

    assert_eq!(report.stories.len(), 2, "{:#?}", report.stories);
    let (silent, recorded) = (&report.stories[0], &report.stories[1]);
    // Bob's order-3 broke silently at its due date (hour 10), before ann's was detected (30).
    assert_eq!((silent.customer_id.as_str(), silent.promise_id.as_str()), ("bob", "order-3"));
    assert_eq!(silent.broke, Break::Silent);
    assert_eq!(silent.late, Span::from_secs(90 * 3600), "from due (10) to the audit instant (100)");
    assert_eq!(report.silent().count(), 1);

    assert_eq!((recorded.customer_id.as_str(), recorded.promise_id.as_str()), ("ann", "order-1"));
    // The description is personal data, sealed at rest: the audit reads the public event.
    assert_eq!(recorded.description.as_str(), "", "sealed personal data stays out of the audit");
    assert_eq!(recorded.made_by.as_str(), "agent-a");
    assert_eq!(recorded.team.as_ref().map(TeamId::as_str), Some("logistics"));
    assert!(matches!(recorded.broke, Break::Recorded { detection: BreakDetection::CustomerReport, .. }));
    assert_eq!(recorded.late, Span::from_secs(6 * 3600));
    assert_eq!(recorded.apology.as_ref().map(|apology| apology.after), Some(Span::from_secs(2 * 3600)));
    assert_eq!(recorded.compensation.as_ref().map(|paid| paid.after), Some(Span::from_secs(24 * 3600)));
    assert_eq!((recorded.trust_before, recorded.trust_after), (Some(50), Some(7)));
    assert!(recorded.recovered());

    // 5 judged: order-1 broken, order-2 on time, order-3 silent, order-4 late; order-5 pending.
    assert_eq!((report.promises_judged, report.promises_pending), (4, 1));
    let overall = &report.overall;
    assert_eq!((overall.kept_on_time, overall.kept_late, overall.broken, overall.silent), (1, 1, 1, 1));
    assert_eq!(overall.keeping_rate_percent, Some(25.0));
    assert_eq!(overall.median_days_late, Some(0.25), "6 h, 6 h and 90 h late: the median is 6 h");
    assert_eq!(overall.recovery_rate_percent, Some(50.0), "ann's was recovered, bob's not");
    let teams: Vec<(&str, u64)> =
        report.by_team.iter().map(|group| (group.group.as_str(), group.settled)).collect();
    assert_eq!(teams, [("logistics", 2), ("sales", 2)]);
    let agents: Vec<(&str, Option<f64>)> =
        report.by_agent.iter().map(|group| (group.group.as_str(), group.keeping_rate_percent)).collect();
    assert_eq!(agents, [("agent-a", Some(0.0)), ("agent-b", Some(50.0))]);
    assert_eq!(report.by_kind.len(), 1);
    assert_eq!(report.by_kind[0].group, "delivery");
    assert_eq!(report.records_read, 13, "every record of the log: 3 registrations and 10 more");
}

#[tokio::test]
async fn filters_narrow_the_promises_and_a_customer_is_read_alone() {
    // The log in a directory of its own: its master key goes beside it, inside the temporary one.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    write_history(dir.as_path()).await;

    let sales = run(dir.as_path(), &AuditFilter { team: Some("sales".into()), ..Default::default() });
    assert_eq!(sales.stories.len(), 1);
    assert_eq!(sales.stories[0].promise_id.as_str(), "order-3");
    assert_eq!(sales.promises_judged, 2);

    let agent_a = run(dir.as_path(), &AuditFilter { agent: Some("agent-a".into()), ..Default::default() });
    assert_eq!(
        agent_a.stories.iter().map(|story| story.promise_id.as_str()).collect::<Vec<_>>(),
        ["order-1"]
    );

    // Due in [20, 30): order-1, order-2 and order-4 (all due at 24), not order-3 (10).
    let window = AuditFilter { from: Some(at(20)), to: Some(at(30)), ..Default::default() };
    let report = run(dir.as_path(), &window);
    assert_eq!(report.promises_judged, 3);
    assert_eq!(report.stories.len(), 1);

    let ann = run(
        dir.as_path(),
        &AuditFilter { customer: Some(CustomerId::new("ann").unwrap()), ..Default::default() },
    );
    assert_eq!(ann.stories.len(), 1);
    assert_eq!(ann.records_read, 5, "ann's stream alone");
    assert_eq!(ann.promises_judged, 1);
    assert_eq!(ann.overall.broken, 1);
    let nobody = run(
        dir.as_path(),
        &AuditFilter { customer: Some(CustomerId::new("zed").unwrap()), ..Default::default() },
    );
    assert!(nobody.stories.is_empty());
    assert_eq!(nobody.records_read, 0);
    assert_eq!(nobody.overall.settled, 0);
}

/// Where a public event sits in the log, and its type.
fn place(event: &covenant_audit::PublicEvent<'_>) -> (covenant_domain::Position, &'static str) {
    match event {
        covenant_audit::PublicEvent::Owned(event) => (event.position, event.event_type()),
        covenant_audit::PublicEvent::Borrowed(view) => (view.position, view.event_type()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_scan_merges_in_log_order_whatever_the_threads_and_chunks() {
    use covenant_audit::EventSource;
    use std::ops::ControlFlow;
    // The log in a directory of its own: its master key goes beside it, inside the temporary one.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    // More customers, so that every partition holds records.
    let mut writer = history_and_more(dir.as_path()).await;
    for customer in 0..40 {
        let customer = format!("extra-{customer}");
        writer.send(&customer, 0, "support", sample::register(&customer).unwrap()).await;
        writer.promise(&customer, 1, "sales", "agent-c", "order-x", 24).await;
    }
    writer.log.close().await.unwrap();

    let dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut source = LogSource::open(&dir).unwrap();
        for types in [None, Some(&["promise_made", "promise_kept"][..])] {
            let mut sequential = Vec::new();
            let read = source.public_events(types, &mut |event| sequential.push(place(&event))).unwrap();
            assert!(sequential.len() > 40);
            let log = source.as_log().unwrap();
            for threads in [1, 2, 5] {
                for chunk in [1, 3, 64, 100_000] {
                    let mut merged = Vec::new();
                    let parallel_read = log
                        .public_chunks(
                            types,
                            threads,
                            chunk,
                            &Vec::new,
                            &|events, event| events.push(place(&event)),
                            &mut |events| {
                                merged.extend(events);
                                ControlFlow::Continue(())
                            },
                        )
                        .unwrap();
                    assert_eq!(merged, sequential, "{threads} threads, chunks of {chunk}, types {types:?}");
                    if types.is_none() {
                        assert_eq!(parallel_read, read);
                    }
                }
            }
            // The merge can stop it: two chunks of 3 merged, then nothing more.
            let mut merges = 0;
            let stopped = log
                .public_chunks(
                    types,
                    2,
                    3,
                    &Vec::new,
                    &|events, event| events.push(place(&event)),
                    &mut |_| {
                        merges += 1;
                        if merges == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                    },
                )
                .unwrap();
            assert_eq!((merges, stopped), (2, 6));
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_visit_stops_the_parallel_scan_instead_of_hanging_it() {
    // The log in a directory of its own: its master key goes beside it, inside the temporary one.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("log");
    let log = EventLog::open(LogConfig::new(&dir)).await.unwrap();
    let mut writer = Writer { log, commands: 0 };
    for customer in 0..60 {
        let customer = format!("panic-{customer}");
        writer.send(&customer, 0, "support", sample::register(&customer).unwrap()).await;
    }
    writer.log.close().await.unwrap();

    let dir = dir.clone();
    let (finished, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let source = LogSource::open(&dir).unwrap();
        let visits = std::sync::atomic::AtomicUsize::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            source.public_chunks(
                None,
                2,
                1,
                &|| (),
                &|(), _event| {
                    // Past the first units, so that other workers wait on the merge window.
                    if visits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 5 {
                        panic!("a visitor fails");
                    }
                },
                &mut |()| std::ops::ControlFlow::Continue(()),
            )
        }));
        let _ = finished.send(result.is_err());
    });
    let panicked =
        outcome.recv_timeout(std::time::Duration::from_secs(60)).expect("the scan hung after a panic");
    assert!(panicked, "the visitor's panic reaches the caller");
}
