#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The watchdog in-process against a real nats-server and an in-process ledger:
//! - a promise due in a second with no grace expires (`PromiseBroken{detection: deadline}`), a
//!   complaint's first-reply clock (2 s in the test policy) is breached, a kept promise is not;
//! - a promise that falls due while the watchdog is stopped expires after its restart;
//! - nothing is recorded twice, across the restart and a re-send of an already settled deadline.
//!
//! Needs nats-server 2.10+ (`NATS_SERVER_BIN=$(scripts/nats-server-path.sh)`).

use std::path::Path;
use std::time::{Duration, Instant};

use covenant_bus::{NatsServer, RelayConfig};
use covenant_domain::deadlines::{Deadline, DeadlineSubject, SlaPolicy};
use covenant_domain::events::{Actor, ActorKind, BreakDetection, SlaTarget};
use covenant_domain::ids::{ActorId, CommandId, CustomerId, PromiseId};
use covenant_domain::{Command, Event, RecordedEvent, Span, Timestamp, sample};
use covenant_ledger::{LedgerConfig, RunningLedger};
use covenant_log::Durability;
use covenant_proto::convert::CommandRequest;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_watchdog::scheduler::{Outcome, classify_reply, command_message};
use covenant_watchdog::{RunningWatchdog, WatchdogConfig};
use tonic::transport::Channel;

const PARTITIONS: u16 = 4;

async fn start_ledger(dir: &Path, nats: &NatsServer) -> RunningLedger {
    covenant_ledger::start(LedgerConfig {
        data_dir: dir.join("log"),
        partitions: Some(PARTITIONS),
        durability: Durability::Fsync,
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        nats_url: nats.url(),
        relay: RelayConfig::default(),
        metrics_addr: None,
        auth: covenant_auth::AuthMode::Off,
        tls: None,
        nats_security: Default::default(),
        master_key: None,
    })
    .await
    .unwrap()
}

async fn start_watchdog(dir: &Path, nats: &NatsServer) -> RunningWatchdog {
    let mut config = WatchdogConfig::new(dir.join("watchdog"), nats.url());
    config.partitions = PARTITIONS;
    config.policy = SlaPolicy {
        first_reply: [Span::from_secs(2); 4],
        resolution: [Span::from_secs(3600); 4],
        ..SlaPolicy::default()
    };
    covenant_watchdog::start(config).await.unwrap()
}

/// Records `command` for `customer` (business time now) and panics on a refusal.
async fn record(ledger: &mut LedgerClient<Channel>, customer: &str, id: &str, command: Command) {
    let request = CommandRequest {
        customer_id: CustomerId::new(customer).unwrap(),
        command_id: CommandId::new(id).unwrap(),
        expected_version: None,
        occurred_at: Some(Timestamp::now()),
        actor: Actor { kind: ActorKind::Agent, id: ActorId::new("agent-1").unwrap() },
        team: None,
        channel: None,
        correlation_id: None,
        causation_id: None,
        command,
    };
    let results = ledger
        .append_batch(v1::AppendBatchRequest { commands: vec![v1::BatchCommand::from(&request)] })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        matches!(
            results.as_slice(),
            [v1::BatchResult { result: Some(v1::batch_result::Result::Appended(_)) }]
        ),
        "{id}: {results:?}"
    );
}

/// A promise due `in_millis` from now, with no grace.
fn promise(id: &str, in_millis: i64) -> Command {
    let due = Timestamp::from_unix_millis_clamped(Timestamp::now().unix_millis() + in_millis);
    match sample::promise(id, due).unwrap() {
        Command::MakePromise { promise_id, kind, description, made_by, due_at, related_ref, .. } => {
            Command::MakePromise {
                promise_id,
                kind,
                description,
                made_by,
                due_at,
                grace: Span::ZERO,
                related_ref,
            }
        }
        other => other,
    }
}

async fn read_stream(reader: &mut EventLogClient<Channel>, customer: &str) -> Vec<RecordedEvent> {
    let response = reader
        .read_stream(v1::ReadStreamRequest {
            customer_id: customer.into(),
            from_version: 1,
            max_events: 1000,
            include_personal_data: false,
        })
        .await
        .unwrap()
        .into_inner();
    response.events.into_iter().map(|envelope| RecordedEvent::try_from(envelope).unwrap()).collect()
}

fn broken(events: &[RecordedEvent], promise: &str) -> Vec<RecordedEvent> {
    events
        .iter()
        .filter(|event| matches!(&event.event, Event::PromiseBroken { promise_id, .. } if promise_id.as_str() == promise))
        .cloned()
        .collect()
}

fn breaches(events: &[RecordedEvent]) -> usize {
    events.iter().filter(|event| matches!(event.event, Event::SlaBreached { .. })).count()
}

/// The customer's stream once `done` holds for it (waits up to `timeout`).
async fn wait_until(
    reader: &mut EventLogClient<Channel>,
    customer: &str,
    timeout: Duration,
    done: impl Fn(&[RecordedEvent]) -> bool,
) -> Vec<RecordedEvent> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = read_stream(reader, customer).await;
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "not reached within {timeout:?}: {events:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_deadlines_are_recorded_once_also_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats).await;
    let watchdog = start_watchdog(dir.path(), &nats).await;
    let endpoint = format!("http://{}", ledger.grpc_addr);
    let mut client = LedgerClient::connect(endpoint.clone()).await.unwrap();
    let mut reader = EventLogClient::connect(endpoint).await.unwrap();

    record(&mut client, "alice", "r1", sample::register("Alice").unwrap()).await;
    record(&mut client, "alice", "p1", promise("p1", 1000)).await;
    record(&mut client, "alice", "p-kept", promise("kept", 1000)).await;
    record(&mut client, "alice", "k1", sample::keep("kept").unwrap()).await;
    record(&mut client, "alice", "c1", sample::complaint("c1").unwrap()).await;

    let events = wait_until(&mut reader, "alice", Duration::from_secs(20), |events| {
        !broken(events, "p1").is_empty() && breaches(events) > 0
    })
    .await;
    let [expired] = broken(&events, "p1").try_into().unwrap();
    let Event::PromiseBroken { detection, due_at, detected_at, .. } = &expired.event else { unreachable!() };
    assert_eq!(*detection, BreakDetection::Deadline);
    assert!(detected_at > due_at, "{detected_at} after {due_at}");
    assert!(expired.command_id.as_str().starts_with("watchdog:"));
    assert_eq!(expired.metadata.actor.kind, ActorKind::System);
    let breach = events.iter().find(|event| matches!(event.event, Event::SlaBreached { .. })).unwrap();
    assert!(matches!(breach.event, Event::SlaBreached { target: SlaTarget::FirstReply, .. }), "{breach:?}");

    // Down while another promise falls due: found after the restart.
    watchdog.stop().await.unwrap();
    record(&mut client, "alice", "p2", promise("p2", 500)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(broken(&read_stream(&mut reader, "alice").await, "p2").is_empty());
    let watchdog = start_watchdog(dir.path(), &nats).await;
    let events =
        wait_until(&mut reader, "alice", Duration::from_secs(20), |events| !broken(events, "p2").is_empty())
            .await;

    // A re-send of the settled deadline (a second watchdog, a restart before the removal) is
    // answered with the first result: nothing new is recorded.
    let Event::PromiseBroken { due_at, .. } = &broken(&events, "p1")[0].event else { unreachable!() };
    let deadline = Deadline {
        due_at: *due_at,
        customer_id: CustomerId::new("alice").unwrap(),
        subject: DeadlineSubject::Promise(PromiseId::new("p1").unwrap()),
    };
    let (subject, body) = command_message(&deadline, Timestamp::now()).unwrap();
    let nats_client = async_nats::connect(nats.url()).await.unwrap();
    let reply = nats_client.request(subject, body).await.unwrap();
    assert_eq!(classify_reply(&reply.payload), Outcome::AlreadyRecorded);

    // Let the watchdog settle, then count: one break per promise, one breach, none for `kept`.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = read_stream(&mut reader, "alice").await;
    assert_eq!(broken(&events, "p1").len(), 1);
    assert_eq!(broken(&events, "p2").len(), 1);
    assert!(broken(&events, "kept").is_empty());
    assert_eq!(breaches(&events), 1, "only the first-reply clock has passed");

    watchdog.stop().await.unwrap();
    ledger.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_while_the_ledger_is_down_is_recorded_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats).await;
    let watchdog = start_watchdog(dir.path(), &nats).await;
    let mut client = LedgerClient::connect(format!("http://{}", ledger.grpc_addr)).await.unwrap();
    record(&mut client, "bob", "r1", sample::register("Bob").unwrap()).await;
    record(&mut client, "bob", "p1", promise("p1", 1200)).await;
    // Give the relay and the watchdog's consumer a moment, then take the ledger away past the due
    // instant: the watchdog's commands find no responder and are retried with backoff.
    tokio::time::sleep(Duration::from_millis(700)).await;
    ledger.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ledger = start_ledger(dir.path(), &nats).await;
    let mut reader = EventLogClient::connect(format!("http://{}", ledger.grpc_addr)).await.unwrap();
    let events =
        wait_until(&mut reader, "bob", Duration::from_secs(20), |events| !broken(events, "p1").is_empty())
            .await;
    assert_eq!(broken(&events, "p1").len(), 1);
    watchdog.stop().await.unwrap();
    ledger.stop().await.unwrap();
}
