#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ledger, standing and watchdog as a black box: real child processes over real gRPC sockets,
//! a real nats-server with JetStream, each service with its own RocksDB.
//!
//! - A kept promise shows in standing (read-your-writes with `min_position`); a promise due in a
//!   second expires through the watchdog (`PromiseBroken{detection: deadline}`) and trust drops.
//! - A complaint's SLA breach that passes while the watchdog is down is recorded after its
//!   restart, exactly once, also across a second restart.
//! - Organisation metrics over gRPC: survey scores and promise keeping per team, and customers
//!   per trust and loyalty band, exact to the count.
//! - `WatchStanding` streams numbered band changes live (a broken promise moves trust to Broken,
//!   naming the event), replays them from any sequence, and keeps them across a SIGKILL.
//! - Across a SIGKILL of standing, of the ledger (its relay) and of nats-server mid-load, every
//!   event reaches standing exactly once: its timelines equal the ledger's streams.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::{
    answer_survey, batch, header, header_at, in_seconds, interaction, keep_promise, make_promise,
    promise_due, register, team_header,
};
use tonic::Code;
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const WATCHDOG: &str = env!("CARGO_BIN_EXE_watchdog-process");
/// A new log's partition count (the services are told the same).
const PARTITIONS: u16 = 8;

fn start_ledger(dir: &Path, nats: &NatsServer) -> ServiceProcess {
    ServiceProcess::start(Path::new(LEDGER), &dir.join("log"), &nats.url(), "fsync", "off").unwrap()
}

fn start_standing(dir: &Path, nats: &NatsServer) -> ServiceProcess {
    ServiceProcess::start_consumer(
        Path::new(STANDING),
        "standing",
        &dir.join("standing"),
        &nats.url(),
        PARTITIONS,
    )
    .unwrap()
}

fn start_watchdog(dir: &Path, nats: &NatsServer) -> ServiceProcess {
    ServiceProcess::start_consumer(
        Path::new(WATCHDOG),
        "watchdog",
        &dir.join("watchdog"),
        &nats.url(),
        PARTITIONS,
    )
    .unwrap()
}

async fn connect(process: &ServiceProcess) -> Channel {
    Channel::from_shared(process.endpoint()).unwrap().connect().await.unwrap()
}

/// Read-your-writes on `positions`.
fn after(positions: &[v1::Position]) -> Option<v1::ReadConsistency> {
    Some(v1::ReadConsistency { min_position: positions.to_vec(), wait_ms: 10_000 })
}

async fn trust(
    standing: &mut StandingClient<Channel>,
    customer: &str,
    positions: &[v1::Position],
) -> v1::TrustStanding {
    standing
        .get_trust(v1::GetTrustRequest {
            customer_id: customer.into(),
            as_of: None,
            consistency: after(positions),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The customer's stream once it holds an event of `event_type` (waits up to `timeout`).
async fn wait_for_event(
    reader: &mut EventLogClient<Channel>,
    customer: &str,
    event_type: &str,
    timeout: Duration,
) -> Vec<v1::EventEnvelope> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = read_stream(reader, customer).await;
        if events.iter().any(|event| event.event_type == event_type) {
            return events;
        }
        assert!(Instant::now() < deadline, "no {event_type} for {customer} within {timeout:?}: {events:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_stream(reader: &mut EventLogClient<Channel>, customer: &str) -> Vec<v1::EventEnvelope> {
    reader
        .read_stream(v1::ReadStreamRequest {
            customer_id: customer.into(),
            from_version: 1,
            max_events: 10_000,
            include_personal_data: false,
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

fn payload_of<'a>(events: &'a [v1::EventEnvelope], event_type: &str) -> Vec<&'a v1::event_envelope::Payload> {
    events
        .iter()
        .filter(|event| event.event_type == event_type)
        .filter_map(|event| event.payload.as_ref())
        .collect()
}

#[tokio::test]
async fn kept_promises_show_in_standing_and_an_expired_one_breaks_trust() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats);
    let standing = start_standing(dir.path(), &nats);
    let _watchdog = start_watchdog(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    let mut reader = EventLogClient::new(connect(&ledger).await);
    let mut standing = StandingClient::new(connect(&standing).await);

    client.register_customer(register("carol", "c1")).await.unwrap();
    let unknown = standing
        .get_trust(v1::GetTrustRequest { customer_id: "nobody".into(), as_of: None, consistency: None })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    client.make_promise(make_promise("carol", "c2", "callback-1")).await.unwrap();
    let kept = client.keep_promise(keep_promise("carol", "c3", "callback-1")).await.unwrap().into_inner();
    let after_keep = trust(&mut standing, "carol", &kept.positions).await;
    assert_eq!(after_keep.stream_version, 3, "read-your-writes: standing has applied the keep");
    assert_eq!(after_keep.score, 67, "one kept promise: (1+1)/(1+0+2)");
    assert_eq!(after_keep.contributors[0].event_type, "promise_kept");
    let promises = standing
        .list_promises(v1::ListPromisesRequest {
            customer_id: "carol".into(),
            consistency: after(&kept.positions),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .promises;
    assert_eq!(promises.len(), 1);
    assert_eq!(promises[0].status, v1::PromiseStatus::Kept as i32);
    assert_eq!(promises[0].made_by, "agent-7");
    assert_eq!(promises[0].team, "support");

    // Due in a second, no grace: the watchdog expires it and the ledger records the break.
    client.make_promise(promise_due("carol", "c4", "callback-2", in_seconds(1), 0)).await.unwrap();
    let events = wait_for_event(&mut reader, "carol", "promise_broken", Duration::from_secs(30)).await;
    let broken = events.iter().find(|event| event.event_type == "promise_broken").unwrap();
    let Some(v1::event_envelope::Payload::PromiseBroken(payload)) = &broken.payload else {
        panic!("{broken:?}")
    };
    assert_eq!(payload.promise_id, "callback-2");
    assert_eq!(payload.detection, v1::BreakDetection::Deadline as i32);
    assert!(broken.command_id.starts_with("watchdog:"), "{}", broken.command_id);
    let after_break = trust(&mut standing, "carol", &[broken.position.unwrap()]).await;
    assert!(
        after_break.score < after_keep.score,
        "trust drops after a broken promise: {} → {}",
        after_keep.score,
        after_break.score
    );
    assert_eq!(after_break.contributors[0].event_type, "promise_broken");
    // Loyalty: too little history for a score, but the unrecovered broken promise is a risk.
    let loyalty = standing
        .get_loyalty(v1::GetLoyaltyRequest {
            customer_id: "carol".into(),
            as_of: None,
            consistency: after(&[broken.position.unwrap()]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loyalty.band, v1::LoyaltyBand::InsufficientData as i32, "{loyalty:?}");
    assert_eq!(loyalty.lifecycle, v1::Lifecycle::Prospect as i32);
    assert!(loyalty.at_risk);
    assert!(
        loyalty.risk_reasons.iter().any(|reason| reason.contains("callback-2")),
        "{:?}",
        loyalty.risk_reasons
    );
    assert_eq!(loyalty.trust_score, after_break.score);
    // …and lists her among the customers at risk (nobody else is).
    client.register_customer(register("zoe", "z1")).await.unwrap();
    let zoe = client.make_promise(make_promise("zoe", "z2", "later")).await.unwrap().into_inner();
    let at_risk = standing
        .list_at_risk(v1::ListAtRiskRequest { consistency: after(&zoe.positions), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .customers;
    let order: Vec<&str> = at_risk.iter().map(|customer| customer.customer_id.as_str()).collect();
    assert_eq!(order, ["carol", "zoe"], "at-risk customers first");
    assert_eq!(at_risk[0].segment, "smb");
    let only = standing
        .list_at_risk(v1::ListAtRiskRequest { at_risk_only: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only.customers.len(), 1);
    assert!(only.next_page_token.is_empty());
    // Pages of one: carol, then zoe, then nothing more.
    let first = standing
        .list_at_risk(v1::ListAtRiskRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.customers[0].customer_id, "carol");
    let second = standing
        .list_at_risk(v1::ListAtRiskRequest {
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.customers[0].customer_id, "zoe");
    assert!(second.next_page_token.is_empty(), "{second:?}");
    let overdue_broken = standing
        .list_promises(v1::ListPromisesRequest {
            statuses: vec![v1::PromiseStatus::Broken as i32],
            consistency: after(&[broken.position.unwrap()]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .promises;
    assert_eq!(overdue_broken.len(), 1);
    assert_eq!(overdue_broken[0].detection, v1::BreakDetection::Deadline as i32);

    // Bad input to standing gets its exact status, naming the field.
    let bad = standing
        .get_trust(v1::GetTrustRequest { customer_id: "no spaces".into(), as_of: None, consistency: None })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("customer_id:"), "{}", bad.message());
    let lagging = standing
        .get_trust(v1::GetTrustRequest {
            customer_id: "carol".into(),
            as_of: None,
            consistency: Some(v1::ReadConsistency {
                min_position: vec![v1::Position { partition: 0, offset: 1_000_000 }],
                wait_ms: 200,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(lagging.code(), Code::Unavailable);
    assert!(lagging.message().contains("offset 1000000"), "{}", lagging.message());
    let no_partition = standing
        .get_trust(v1::GetTrustRequest {
            customer_id: "carol".into(),
            as_of: None,
            consistency: Some(v1::ReadConsistency {
                min_position: vec![v1::Position { partition: 99, offset: 0 }],
                wait_ms: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(no_partition.code(), Code::InvalidArgument);
    assert!(no_partition.message().starts_with("consistency.min_position:"), "{}", no_partition.message());
}

#[tokio::test]
async fn an_sla_breach_during_watchdog_downtime_is_recorded_once_after_restart() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats);
    let standing = start_standing(dir.path(), &nats);
    let mut watchdog = start_watchdog(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    let mut reader = EventLogClient::new(connect(&ledger).await);
    let mut standing = StandingClient::new(connect(&standing).await);
    client.register_customer(register("dave", "d1")).await.unwrap();
    // The watchdog goes down; meanwhile a complaint opened 25 hours ago is logged late: its
    // first-reply clock (normal priority: 24 h) ran out an hour ago, its resolution clock (7 days)
    // still runs.
    watchdog.kill();
    let opened = client
        .open_complaint(v1::OpenComplaintRequest {
            header: header_at("dave", "d2", None, Some(in_seconds(-25 * 3600))),
            complaint_id: "late-parcel".into(),
            category: v1::ComplaintCategory::Delay as i32,
            severity: v1::Severity::Moderate as i32,
            priority: v1::Priority::Normal as i32,
            channel: v1::Channel::Email as i32,
            description: "the parcel is a week late".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let complaints = standing
        .list_open_complaints(v1::ListOpenComplaintsRequest {
            customer_id: "dave".into(),
            consistency: after(&opened.positions),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .complaints;
    assert_eq!(complaints.len(), 1);
    assert_eq!(complaints[0].sla.len(), 2, "first-reply and resolution clocks");
    assert!(complaints[0].sla.iter().all(|clock| !clock.breached));

    let mut watchdog = start_watchdog(dir.path(), &nats);
    let events = wait_for_event(&mut reader, "dave", "sla_breached", Duration::from_secs(30)).await;
    let breaches = payload_of(&events, "sla_breached");
    assert_eq!(breaches.len(), 1, "{breaches:#?}");
    let v1::event_envelope::Payload::SlaBreached(breach) = breaches[0] else { panic!() };
    assert_eq!(breach.target, v1::SlaTarget::FirstReply as i32);
    let breach_position =
        events.iter().find(|event| event.event_type == "sla_breached").unwrap().position.unwrap();

    // Restart again (SIGKILL) and give it time to (wrongly) breach again.
    watchdog.kill();
    let _watchdog = start_watchdog(dir.path(), &nats);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = read_stream(&mut reader, "dave").await;
    assert_eq!(payload_of(&events, "sla_breached").len(), 1, "the breach is recorded exactly once");

    let complaints = standing
        .list_open_complaints(v1::ListOpenComplaintsRequest {
            customer_id: "dave".into(),
            consistency: after(&[breach_position]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .complaints;
    let first_reply =
        complaints[0].sla.iter().find(|clock| clock.target == v1::SlaTarget::FirstReply as i32).unwrap();
    assert!(first_reply.breached);
    let resolution =
        complaints[0].sla.iter().find(|clock| clock.target == v1::SlaTarget::Resolution as i32).unwrap();
    assert!(!resolution.breached && resolution.stopped_at.is_none());
}

#[tokio::test]
async fn org_metrics_over_grpc_group_by_team() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats);
    let standing = start_standing(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    let mut standing = StandingClient::new(connect(&standing).await);
    // Every position written: the customers hash to different partitions, and read-your-writes
    // needs each of them.
    let mut positions = Vec::new();

    // NPS 10, 9 and 3 for support: 2 promoters, 1 detractor of 3 → round(100 × 1/3) = 33.
    // CSAT 5 for sales: 1 of 1 satisfied → 100 %.
    let surveys = [
        ("nps-a", v1::SurveyKind::Nps, 10, "support"),
        ("nps-b", v1::SurveyKind::Nps, 9, "support"),
        ("nps-c", v1::SurveyKind::Nps, 3, "support"),
        ("csat-a", v1::SurveyKind::Csat, 5, "sales"),
    ];
    for (customer, kind, score, team) in surveys {
        client.register_customer(register(customer, &format!("{customer}-1"))).await.unwrap();
        let answered = client
            .answer_survey(answer_survey(customer, &format!("{customer}-2"), "survey-1", kind, score, team))
            .await
            .unwrap()
            .into_inner();
        positions.extend(answered.positions);
    }
    // Two promises by support, made two hours ago and due an hour ago: one kept 90 minutes ago
    // (on time), one reported broken.
    client.register_customer(register("promisee", "pr-1")).await.unwrap();
    for (command, promise) in [("pr-2", "kept"), ("pr-3", "broken")] {
        client
            .make_promise(v1::MakePromiseRequest {
                header: team_header("promisee", command, "support", Some(in_seconds(-2 * 3600))),
                ..promise_due("promisee", command, promise, in_seconds(-3600), 0)
            })
            .await
            .unwrap();
    }
    client
        .keep_promise(v1::KeepPromiseRequest {
            kept_at: Some(in_seconds(-90 * 60)),
            ..keep_promise("promisee", "pr-4", "kept")
        })
        .await
        .unwrap();
    let broken = client
        .report_broken_promise(v1::ReportBrokenPromiseRequest {
            header: header("promisee", "pr-5", None),
            promise_id: "broken".into(),
            detection: v1::BreakDetection::CustomerReport as i32,
            reason: "nobody called".into(),
        })
        .await
        .unwrap()
        .into_inner();
    positions.extend(broken.positions);

    let request = |from: i64, to: i64, group_by: v1::OrgGroupBy| v1::GetOrgMetricsRequest {
        from: Some(in_seconds(from)),
        to: Some(in_seconds(to)),
        group_by: group_by as i32,
        consistency: after(&positions),
    };
    let day = 24 * 3600;
    let metrics =
        standing.get_org_metrics(request(-day, 3600, v1::OrgGroupBy::Team)).await.unwrap().into_inner();
    let names: Vec<&str> = metrics.groups.iter().map(|group| group.group.as_str()).collect();
    assert_eq!(names, ["sales", "support"], "{metrics:#?}");
    let (sales, support) = (&metrics.groups[0], &metrics.groups[1]);

    let nps = support.nps.as_ref().unwrap();
    assert_eq!((nps.answers, nps.promoters, nps.passives, nps.detractors), (3, 2, 0, 1));
    assert_eq!(nps.score, Some(33));
    assert_eq!(support.csat.as_ref().unwrap().answers, 0);
    assert_eq!(support.csat.as_ref().unwrap().satisfied_percent, None);
    let promises = support.promises.as_ref().unwrap();
    assert_eq!((promises.due, promises.kept_on_time, promises.kept_late, promises.broken), (2, 1, 0, 1));
    assert_eq!((promises.open_past_due, promises.not_yet_due), (0, 0));
    assert_eq!(promises.keeping_rate_percent, Some(50.0));

    let csat = sales.csat.as_ref().unwrap();
    assert_eq!((csat.answers, csat.satisfied, csat.satisfied_percent), (1, 1, Some(100.0)));
    assert_eq!(sales.nps.as_ref().unwrap().answers, 0);
    assert_eq!(sales.nps.as_ref().unwrap().score, None);
    assert_eq!(sales.promises.as_ref().unwrap().due, 0);
    assert_eq!(sales.promises.as_ref().unwrap().keeping_rate_percent, None);
    for group in &metrics.groups {
        let complaints = group.complaints.as_ref().unwrap();
        assert_eq!(complaints.opened, 0);
        assert_eq!(complaints.responsiveness, v1::ResponsivenessTier::Unspecified as i32);
        assert_eq!(group.sla.as_ref().unwrap().compliance_percent, None);
    }

    // Bands, as of now (before `to`): the four who only answered a survey have no trust
    // evidence (unproven); the promisee kept one and broke one: (1+1)/(1+12+2) → 13, broken.
    assert_eq!(
        metrics.trust_bands,
        Some(v1::TrustBandCounts { unproven: 4, broken: 1, strained: 0, stable: 0, trusted: 0 })
    );
    // Loyalty: the same bands GetLoyalty gives each customer.
    let mut expected = v1::LoyaltyBandCounts::default();
    for customer in ["nps-a", "nps-b", "nps-c", "csat-a", "promisee"] {
        let loyalty = standing
            .get_loyalty(v1::GetLoyaltyRequest {
                customer_id: customer.into(),
                as_of: None,
                consistency: None,
            })
            .await
            .unwrap()
            .into_inner();
        let count = match v1::LoyaltyBand::try_from(loyalty.band).unwrap() {
            v1::LoyaltyBand::InsufficientData => &mut expected.insufficient_data,
            v1::LoyaltyBand::Detached => &mut expected.detached,
            v1::LoyaltyBand::AtRisk => &mut expected.at_risk,
            v1::LoyaltyBand::Neutral => &mut expected.neutral,
            v1::LoyaltyBand::Loyal => &mut expected.loyal,
            v1::LoyaltyBand::Champion => &mut expected.champion,
            v1::LoyaltyBand::Unspecified => panic!("{loyalty:?}"),
        };
        *count += 1;
    }
    let loyalty_bands = metrics.loyalty_bands.unwrap();
    assert_eq!(loyalty_bands, expected);
    let counted = loyalty_bands.insufficient_data
        + loyalty_bands.detached
        + loyalty_bands.at_risk
        + loyalty_bands.neutral
        + loyalty_bands.loyal
        + loyalty_bands.champion;
    assert_eq!(counted, 5);

    // Overall (the default): one group with every answer and promise.
    let overall = standing
        .get_org_metrics(request(-day, 3600, v1::OrgGroupBy::Unspecified))
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(overall.len(), 1);
    assert_eq!(overall[0].group, "all");
    assert_eq!((overall[0].nps.as_ref().unwrap().answers, overall[0].csat.as_ref().unwrap().answers), (3, 1));
    assert_eq!(overall[0].promises.as_ref().unwrap().due, 2);

    // A window before everything: no groups, and nobody was a customer yet at its end.
    let past = request(-3 * day, -2 * day, v1::OrgGroupBy::Team);
    let past_end = past.to;
    let before = standing.get_org_metrics(past).await.unwrap().into_inner();
    assert!(before.groups.is_empty(), "{before:#?}");
    assert_eq!(before.trust_bands, Some(v1::TrustBandCounts::default()));
    assert_eq!(before.loyalty_bands, Some(v1::LoyaltyBandCounts::default()));
    assert_eq!(before.bands_as_of, past_end, "bands as of the window's end, which is before now");

    // Bad requests name the field.
    let mut missing = request(-day, 3600, v1::OrgGroupBy::Team);
    missing.from = None;
    let status = standing.get_org_metrics(missing).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "from: is required");
    let status = standing.get_org_metrics(request(3600, -day, v1::OrgGroupBy::Team)).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "to: must be after from"));
    let status = standing.get_org_metrics(request(-401 * day, 0, v1::OrgGroupBy::Team)).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "to: the window is longer than 400 days")
    );
    let mut unknown = request(-day, 3600, v1::OrgGroupBy::Team);
    unknown.group_by = 42;
    let status = standing.get_org_metrics(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("group_by:"), "{}", status.message());
}

/// Appends `count` interactions (and a promise per customer) for 16 customers of `round`.
async fn load(client: &mut LedgerClient<Channel>, round: &str, count: usize) {
    let mut commands: Vec<_> = (0..16)
        .flat_map(|customer| {
            let customer_id = format!("{round}-customer-{customer}");
            [
                batch(v1::batch_command::Command::RegisterCustomer(register(
                    &customer_id,
                    &format!("{round}-register-{customer}"),
                ))),
                batch(v1::batch_command::Command::MakePromise(make_promise(
                    &customer_id,
                    &format!("{round}-promise-{customer}"),
                    "p1",
                ))),
            ]
        })
        .collect();
    commands.extend(
        (0..count).map(|n| interaction(&format!("{round}-customer-{}", n % 16), &format!("{round}-i{n}"))),
    );
    covenant_load::append_all(client, commands, 200).await.unwrap();
}

/// Waits until `COVENANT_EVENTS` has received `messages` messages (30 s at most).
async fn wait_for_stream(nats_url: &str, messages: u64) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = js.get_stream(covenant_bus::subjects::EVENTS_STREAM).await
            && stream.info().await.unwrap().state.last_sequence >= messages
        {
            return;
        }
        assert!(Instant::now() < deadline, "the stream did not receive {messages} messages");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until standing has applied every partition of the log to its end (60 s at most).
async fn wait_until_applied(ledger: &ServiceProcess, standing: &ServiceProcess) {
    let mut reader = EventLogClient::new(connect(ledger).await);
    let ends = log_ends(&mut reader).await;
    covenant_tests::standing::wait_until_applied(&standing.endpoint(), &ends, Duration::from_secs(60))
        .await
        .unwrap();
}

/// Deletes the durable consumers `<service>-p<partition>` of `COVENANT_EVENTS`.
async fn delete_consumers(nats_url: &str, service: &str) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(covenant_bus::subjects::EVENTS_STREAM).await.unwrap();
    for partition in 0..PARTITIONS {
        stream.delete_consumer(&format!("{service}-p{partition}")).await.unwrap();
    }
}

/// Deletes every message of `COVENANT_EVENTS` (the stream and its consumers stay).
async fn purge_events(nats_url: &str) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(covenant_bus::subjects::EVENTS_STREAM).await.unwrap();
    let purged = stream.purge().await.unwrap();
    assert!(purged.purged > 0);
}

/// The next offset of every partition of the ledger's log.
async fn log_ends(reader: &mut EventLogClient<Channel>) -> Vec<u64> {
    let mut from: Vec<v1::PartitionFrom> = Vec::new();
    loop {
        let page = reader
            .read_all(v1::ReadAllRequest { from: from.clone(), event_types: vec![], max_events: 10_000 })
            .await
            .unwrap()
            .into_inner();
        from = page.next;
        if page.end_of_log {
            let mut ends = vec![0; usize::from(PARTITIONS)];
            for next in from {
                ends[next.partition as usize] = next.offset;
            }
            return ends;
        }
    }
}

#[tokio::test]
async fn every_event_reaches_standing_exactly_once_across_kills_of_standing_ledger_and_nats() {
    let dir = test_dir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = start_ledger(dir.path(), &nats);
    let mut standing = start_standing(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    load(&mut client, "a", 400).await;
    wait_until_applied(&ledger, &standing).await;

    // Duplicates: standing dies and its durable consumers are lost (NATS state wiped), so
    // JetStream delivers every message again from the start; what was applied must be skipped.
    standing.kill();
    delete_consumers(&nats.url(), "standing").await;
    load(&mut client, "b", 200).await;
    let mut standing = start_standing(dir.path(), &nats);
    wait_until_applied(&ledger, &standing).await;

    // Gaps: standing dies mid-load; the stream then loses what it held (an operator purge, a
    // retention limit); the ledger (and its relay) and NATS are killed too, and the ledger keeps
    // accepting commands without NATS. Standing must read what it missed from the ledger.
    let mut client = LedgerClient::new(connect(&ledger).await);
    let loading = tokio::spawn(async move {
        load(&mut client, "c", 400).await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    standing.kill();
    loading.await.unwrap();
    wait_for_stream(&nats.url(), 3 * (16 * 2) + 1000).await;
    purge_events(&nats.url()).await;
    ledger.kill();
    nats.kill();
    let ledger = start_ledger(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    load(&mut client, "d", 200).await;
    nats.restart().unwrap();
    let standing = start_standing(dir.path(), &nats);
    load(&mut client, "e", 200).await;
    wait_until_applied(&ledger, &standing).await;

    let mut reader = EventLogClient::new(connect(&ledger).await);
    let ends = log_ends(&mut reader).await;
    let mut standing_client = StandingClient::new(connect(&standing).await);
    // Every customer's timeline in standing equals their stream in the log: nothing applied twice,
    // nothing skipped.
    let mut checked = BTreeMap::new();
    for round in ["a", "b", "c", "d", "e"] {
        for customer in 0..16 {
            let customer_id = format!("{round}-customer-{customer}");
            let stream = read_stream(&mut reader, &customer_id).await;
            let timeline = standing_client
                .get_timeline(v1::GetTimelineRequest {
                    customer_id: customer_id.clone(),
                    from_version: 1,
                    max_events: 1000,
                    consistency: None,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(timeline.next_version, 0);
            assert_eq!(timeline.events, stream, "{customer_id}");
            assert_eq!(
                (timeline.stream_version, timeline.events_applied),
                (stream.len() as u64, stream.len() as u64),
                "{customer_id}: every event applied exactly once"
            );
            let promises = standing_client
                .list_promises(v1::ListPromisesRequest {
                    customer_id: customer_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .promises;
            assert_eq!(promises.len(), 1, "{customer_id}");
            checked.insert(customer_id, stream.len());
        }
    }
    let total: usize = checked.values().sum();
    assert_eq!(total as u64, ends.iter().sum::<u64>(), "every event of the log was compared");
}

/// Waits (at most `within`) until the health of `service` on `process` is `wanted`.
async fn wait_for_health(
    process: &ServiceProcess,
    service: &str,
    wanted: tonic_health::pb::health_check_response::ServingStatus,
    within: Duration,
) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(connect(process).await);
    let deadline = tokio::time::Instant::now() + within;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
        if let Ok(response) = health.check(request).await {
            let status = response.into_inner().status();
            if status == wanted {
                return;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{service:?} did not become {wanted:?} within {within:?}; last seen {last:?}");
}

#[tokio::test]
async fn standing_and_watchdog_report_not_serving_while_nats_is_down() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = test_dir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let standing = start_standing(dir.path(), &nats);
    let watchdog = start_watchdog(dir.path(), &nats);
    let limit = Duration::from_secs(20);
    for service in ["", "covenant.v1.Standing"] {
        wait_for_health(&standing, service, ServingStatus::Serving, limit).await;
    }
    wait_for_health(&watchdog, "", ServingStatus::Serving, limit).await;

    nats.kill();
    for service in ["", "covenant.v1.Standing"] {
        wait_for_health(&standing, service, ServingStatus::NotServing, limit).await;
    }
    wait_for_health(&watchdog, "", ServingStatus::NotServing, limit).await;

    nats.restart().unwrap();
    let reconnect = Duration::from_secs(40);
    wait_for_health(&standing, "covenant.v1.Standing", ServingStatus::Serving, reconnect).await;
    wait_for_health(&watchdog, "", ServingStatus::Serving, reconnect).await;
}

/// The next change on a `WatchStanding` stream (at most 15 s away).
async fn next_change(stream: &mut tonic::Streaming<v1::StandingChange>) -> v1::StandingChange {
    tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .expect("a band change within 15 s")
        .expect("the stream stays healthy")
        .expect("the stream stays open")
}

/// `(sequence, customer, model, to band)` of a change.
fn change_summary(change: &v1::StandingChange) -> (u64, String, &'static str, i32) {
    match change.change.as_ref().unwrap() {
        v1::standing_change::Change::Trust(trust) => {
            (change.sequence, change.customer_id.clone(), "trust", trust.to_band)
        }
        v1::standing_change::Change::Loyalty(loyalty) => {
            (change.sequence, change.customer_id.clone(), "loyalty", loyalty.to_band)
        }
    }
}

async fn watch(
    standing: &mut StandingClient<Channel>,
    after_sequence: u64,
    customer_id: &str,
    models: Vec<v1::StandingModel>,
) -> Result<tonic::Streaming<v1::StandingChange>, tonic::Status> {
    standing
        .watch_standing(v1::WatchStandingRequest {
            after_sequence,
            customer_id: customer_id.into(),
            models: models.into_iter().map(|model| model as i32).collect(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn watch_standing_streams_band_changes_live_and_resumes_after_a_kill() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats);
    let mut standing_process = start_standing(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    let mut standing = StandingClient::new(connect(&standing_process).await);

    // Watching before anything happened: the stream waits for the first change.
    let mut live = watch(&mut standing, 0, "", vec![]).await.unwrap();

    // Wanda's promise, made two hours ago and due an hour ago, is reported broken: her trust
    // ends Broken (one broken promise: 7), whatever the tracker saw on the way.
    client.register_customer(register("wanda", "w-1")).await.unwrap();
    client
        .make_promise(v1::MakePromiseRequest {
            header: header_at("wanda", "w-2", None, Some(in_seconds(-2 * 3600))),
            ..promise_due("wanda", "w-2", "callback", in_seconds(-3600), 0)
        })
        .await
        .unwrap();
    let broken = client
        .report_broken_promise(v1::ReportBrokenPromiseRequest {
            header: header("wanda", "w-3", None),
            promise_id: "callback".into(),
            detection: v1::BreakDetection::CustomerReport as i32,
            reason: "nobody called".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let broken_change = loop {
        let change = next_change(&mut live).await;
        assert_eq!(change.sequence, seen.len() as u64 + 1, "numbered from 1 with no gap");
        assert_eq!(change.customer_id, "wanda");
        seen.push(change.clone());
        if let Some(v1::standing_change::Change::Trust(trust)) = &change.change
            && trust.to_band == v1::TrustBand::Broken as i32
        {
            break change;
        }
    };
    let Some(v1::standing_change::Change::Trust(trust)) = &broken_change.change else { unreachable!() };
    assert_eq!(trust.to_score, 7);
    assert_eq!(trust.model_version, "trust-v1");
    let cause = broken_change.cause.as_ref().expect("an event moved it");
    assert_eq!(cause.event_type, "promise_broken");
    assert_eq!(cause.position.as_ref(), broken.positions.first());
    let first = seen.first().unwrap();
    match first.change.as_ref().unwrap() {
        v1::standing_change::Change::Trust(trust) => {
            assert_eq!(trust.from_band, v1::TrustBand::Unspecified as i32, "the first evaluation");
            assert_eq!(trust.from_score, None);
        }
        other => panic!("a customer's first change is trust, then loyalty: {other:?}"),
    }
    drop(live);
    // Let the tracker finish with wanda (her loyalty change may follow the trust one).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut replay = watch(&mut standing, 0, "", vec![]).await.unwrap();
    let mut before_kill = Vec::new();
    while let Ok(Some(Ok(change))) = tokio::time::timeout(Duration::from_secs(1), replay.message())
        .await
        .map(|message| message.transpose())
    {
        before_kill.push(change_summary(&change));
    }
    assert!(before_kill.len() >= seen.len());
    assert_eq!(
        before_kill[..seen.len()],
        seen.iter().map(change_summary).collect::<Vec<_>>()[..],
        "a replay gives the same changes"
    );
    drop(replay);

    // SIGKILL standing; the recorded changes survive with their numbers, and the sequence
    // continues after them.
    standing_process.kill();
    let standing_process = start_standing(dir.path(), &nats);
    let mut standing = StandingClient::new(connect(&standing_process).await);
    let last = before_kill.last().unwrap().0;
    let mut resumed = watch(&mut standing, last, "", vec![]).await.unwrap();
    client.register_customer(register("xavier", "x-1")).await.unwrap();
    let next = next_change(&mut resumed).await;
    assert_eq!(change_summary(&next).0, last + 1, "resumed right after the last one received");
    assert_eq!(next.customer_id, "xavier");
    assert!(matches!(next.change, Some(v1::standing_change::Change::Trust(_))));

    let mut replay = watch(&mut standing, 0, "", vec![]).await.unwrap();
    let mut after_kill = Vec::new();
    for _ in 0..before_kill.len() {
        after_kill.push(change_summary(&next_change(&mut replay).await));
    }
    assert_eq!(after_kill, before_kill, "the recorded changes survived the kill as they were");

    // Filters: one customer, one model.
    let mut wanda_trust = watch(&mut standing, 0, "wanda", vec![v1::StandingModel::Trust]).await.unwrap();
    let wanted: Vec<_> =
        before_kill.iter().filter(|change| change.1 == "wanda" && change.2 == "trust").cloned().collect();
    for expected in &wanted {
        assert_eq!(&change_summary(&next_change(&mut wanda_trust).await), expected);
    }
    let more = tokio::time::timeout(Duration::from_millis(500), wanda_trust.message()).await;
    assert!(more.is_err(), "nothing else for wanda's trust: {more:?}");

    // Bad requests, each with its field named.
    let beyond = watch(&mut standing, 1_000_000, "", vec![]).await.unwrap_err();
    assert_eq!(beyond.code(), Code::FailedPrecondition, "{beyond:?}");
    assert!(beyond.message().contains("after_sequence"), "{beyond:?}");
    let bad_customer = watch(&mut standing, 0, "not a customer!", vec![]).await.unwrap_err();
    assert_eq!(bad_customer.code(), Code::InvalidArgument);
    assert!(bad_customer.message().contains("customer_id"), "{bad_customer:?}");
    let bad_model = standing
        .watch_standing(v1::WatchStandingRequest { models: vec![7], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad_model.code(), Code::InvalidArgument);
    assert!(bad_model.message().contains("models"), "{bad_model:?}");
}
