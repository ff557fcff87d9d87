#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Faults under load: the load generator's journeys from 16 concurrent clients, while the ledger
//! (`fsync`), nats-server and standing are each SIGKILLed mid-load and restarted. Clients retry
//! every failed command with the **same** command id (reconnecting to wherever the ledger came
//! back) until it is acknowledged. Afterwards:
//!
//! - every acknowledged command is in the log exactly once: the events carrying its command id are
//!   exactly the positions of its acknowledgement (a retry answered "deduplicated" points at the
//!   first append; a second append would show as a second group);
//! - `covenant verify` passes on the live data directory: hash chains, the stream index against
//!   the events, and standing's read models equal to a replay of the log up to its checkpoints;
//! - standing has applied the whole log.
//!
//! And the watchdog: 160 promises made by 8 clients with deadlines 1–4 s away, while the watchdog
//! is SIGKILLed twice and stays down across some of them; every promise expires exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use covenant_bus::NatsServer;
use covenant_load::Journey;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use tokio::sync::watch;
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");
const PARTITIONS: u16 = 8;
const CLIENTS: usize = 16;
const CUSTOMERS_PER_CLIENT: usize = 4;

/// An acknowledged command: its customer and the positions the ledger answered with.
#[derive(Debug, Clone)]
struct Acked {
    customer: String,
    positions: Vec<(u32, u64)>,
}

async fn connect(endpoint: &str) -> Option<Channel> {
    Channel::from_shared(endpoint.to_owned()).ok()?.connect().await.ok()
}

/// One client: walks its journeys, retrying each command (same command id) until acknowledged.
async fn client(
    index: usize,
    mut endpoint: watch::Receiver<String>,
    stop: Arc<AtomicBool>,
    retries: Arc<AtomicU64>,
) -> Vec<Acked> {
    let mut journeys: Vec<Journey> = (0..CUSTOMERS_PER_CLIENT)
        .map(|n| Journey::new("faults", format!("f-{index}-{n}"), (index * CUSTOMERS_PER_CLIENT + n) as u64))
        .collect();
    let mut acked = Vec::new();
    let mut ledger: Option<LedgerClient<Channel>> = None;
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let journey = &mut journeys[turn % CUSTOMERS_PER_CLIENT];
        turn += 1;
        let customer = journey.customer().to_owned();
        let command = journey.next_command();
        let started = Instant::now();
        loop {
            if ledger.is_none() {
                let current = endpoint.borrow_and_update().clone();
                ledger = connect(&current).await.map(LedgerClient::new);
            }
            if let Some(client) = ledger.as_mut() {
                match covenant_load::send(client, command.clone()).await {
                    Ok(appended) => {
                        let positions = appended
                            .positions
                            .iter()
                            .map(|position| (position.partition, position.offset))
                            .collect();
                        acked.push(Acked { customer: customer.clone(), positions });
                        break;
                    }
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                        ) =>
                    {
                        ledger = None;
                    }
                    Err(status) => panic!("client {index}: {customer}'s command refused: {status:?}"),
                }
            }
            retries.fetch_add(1, Ordering::Relaxed);
            assert!(started.elapsed() < Duration::from_secs(60), "client {index} retried for a minute");
            // Wait for a new address or a moment, then try the same command again.
            let _ = tokio::time::timeout(Duration::from_millis(100), endpoint.changed()).await;
        }
    }
    acked
}

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

/// Every event of the log, by customer, in stream order.
async fn log_by_customer(endpoint: &str) -> (BTreeMap<String, Vec<v1::EventEnvelope>>, Vec<u64>) {
    let mut reader = EventLogClient::new(connect(endpoint).await.unwrap());
    let mut streams: BTreeMap<String, Vec<v1::EventEnvelope>> = BTreeMap::new();
    let mut from = Vec::new();
    loop {
        let page = reader
            .read_all(v1::ReadAllRequest { from: from.clone(), event_types: vec![], max_events: 10_000 })
            .await
            .unwrap()
            .into_inner();
        for event in page.events {
            streams.entry(event.customer_id.clone()).or_default().push(event);
        }
        from = page.next;
        if page.end_of_log {
            let mut ends = vec![0; usize::from(PARTITIONS)];
            for next in &from {
                ends[next.partition as usize] = next.offset;
            }
            return (streams, ends);
        }
    }
}

#[tokio::test]
async fn acknowledged_commands_survive_kills_of_ledger_nats_and_standing_exactly_once() {
    let dir = test_dir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = start_ledger(dir.path(), &nats);
    let mut standing = start_standing(dir.path(), &nats);
    let (address, endpoint) = watch::channel(ledger.endpoint());
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| tokio::spawn(client(index, endpoint.clone(), Arc::clone(&stop), Arc::clone(&retries))))
        .collect();

    // Let the load run, then kill each process in turn mid-load.
    tokio::time::sleep(Duration::from_millis(700)).await;
    ledger.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ledger = start_ledger(dir.path(), &nats);
    address.send_replace(ledger.endpoint());
    tokio::time::sleep(Duration::from_millis(700)).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    standing.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    standing = start_standing(dir.path(), &nats);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for client in clients {
        acked.extend(client.await.unwrap());
    }
    eprintln!(
        "{} commands acknowledged by {CLIENTS} clients, {} retries across the kills",
        acked.len(),
        retries.load(Ordering::Relaxed)
    );
    assert!(acked.len() > 500, "the load ran: {} commands acknowledged", acked.len());
    assert!(retries.load(Ordering::Relaxed) > 0, "the ledger's kill made clients retry");

    // Exactly once: the events of each acknowledged command are exactly its acknowledged positions.
    let (streams, ends) = log_by_customer(&ledger.endpoint()).await;
    let mut events_by_position: BTreeMap<(u32, u64), &v1::EventEnvelope> = BTreeMap::new();
    for events in streams.values() {
        for (index, event) in events.iter().enumerate() {
            assert_eq!(event.stream_version, index as u64 + 1, "{}: a dense stream", event.customer_id);
            let position = event.position.as_ref().unwrap();
            events_by_position.insert((position.partition, position.offset), event);
        }
    }
    for command in &acked {
        let Some(first) = command.positions.first() else { continue };
        let event = events_by_position
            .get(first)
            .unwrap_or_else(|| panic!("acknowledged {first:?} is not in the log"));
        assert_eq!(event.customer_id, command.customer);
        let carrying: Vec<(u32, u64)> = streams[&command.customer]
            .iter()
            .filter(|other| other.command_id == event.command_id)
            .map(|other| {
                let position = other.position.as_ref().unwrap();
                (position.partition, position.offset)
            })
            .collect();
        assert_eq!(carrying, command.positions, "command {} appended exactly once", event.command_id);
    }

    // Standing catches up with the whole log …
    covenant_tests::standing::wait_until_applied(&standing.endpoint(), &ends, Duration::from_secs(60))
        .await
        .unwrap();
    // … and the data directory verifies: chains, stream index, standing = replay of the log.
    let verified =
        Command::new(COVENANT).args(["verify", "--data", dir.path().to_str().unwrap()]).output().unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{report}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(report.contains("projections: standing equals a replay"), "{report}");
    let events: usize = streams.values().map(Vec::len).sum();
    assert!(report.contains(&format!("({events} events)")), "standing applied every event: {report}");
}

const WATCHDOG: &str = env!("CARGO_BIN_EXE_watchdog-process");

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

/// Every `promise_broken` event of the log: (customer, promise id, detection).
async fn breaks(endpoint: &str) -> Vec<(String, String, i32)> {
    let mut reader = EventLogClient::new(connect(endpoint).await.unwrap());
    let mut found = Vec::new();
    let mut from = Vec::new();
    loop {
        let page = reader
            .read_all(v1::ReadAllRequest {
                from: from.clone(),
                event_types: vec!["promise_broken".into()],
                max_events: 10_000,
            })
            .await
            .unwrap()
            .into_inner();
        for event in page.events {
            if let Some(v1::event_envelope::Payload::PromiseBroken(broken)) = event.payload {
                found.push((event.customer_id, broken.promise_id, broken.detection));
            }
        }
        from = page.next;
        if page.end_of_log {
            return found;
        }
    }
}

#[tokio::test]
async fn deadlines_passing_across_watchdog_kills_under_load_are_each_recorded_once() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats);
    let mut watchdog = start_watchdog(dir.path(), &nats);
    let endpoint = ledger.endpoint();

    // 8 clients each make 20 promises due 1 to 4 s later (no grace), with interactions between.
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let mut ledger = LedgerClient::new(connect(&endpoint).await.unwrap());
                let customer = format!("w-{client}");
                ledger
                    .register_customer(covenant_tests::requests::register(
                        &customer,
                        &format!("{customer}-r"),
                    ))
                    .await
                    .unwrap();
                for index in 0..20i64 {
                    let command = format!("{customer}-p{index}");
                    let promise = format!("p{index}");
                    let due = covenant_tests::requests::in_seconds(1 + index % 4);
                    ledger
                        .make_promise(covenant_tests::requests::promise_due(
                            &customer, &command, &promise, due, 0,
                        ))
                        .await
                        .unwrap();
                    let interaction =
                        covenant_tests::requests::interaction(&customer, &format!("{customer}-i{index}"));
                    ledger
                        .append_batch(v1::AppendBatchRequest { commands: vec![interaction] })
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect();
    // The watchdog dies twice while deadlines pass, and stays down across some of them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    watchdog.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    watchdog = start_watchdog(dir.path(), &nats);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    watchdog.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _watchdog = start_watchdog(dir.path(), &nats);
    for client in clients {
        client.await.unwrap();
    }

    // Every promise expires, once, detected by deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let found = breaks(&endpoint).await;
        if found.len() >= 160 {
            break found;
        }
        assert!(Instant::now() < deadline, "{} of 160 promises expired within a minute", found.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found_later = breaks(&endpoint).await;
    assert_eq!(found_later.len(), 160, "no promise recorded broken twice");
    let mut unique: Vec<(String, String)> =
        found.iter().map(|(customer, promise, _)| (customer.clone(), promise.clone())).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 160, "each of the 160 promises expired");
    assert!(found.iter().all(|(_, _, detection)| *detection == v1::BreakDetection::Deadline as i32));
}
