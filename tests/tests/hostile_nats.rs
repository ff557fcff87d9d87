#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad bytes on every NATS subject the services listen to, sent to real ledger and standing
//! processes over a real nats-server: each is answered with a precise error (where a reply is
//! expected) or skipped, counted in `covenant_nats_malformed_total`, and never stops the service:
//! afterwards the ledger still records commands (over gRPC and over NATS) and standing still
//! applies them.
//!
//! - `covenant.cmd.<anything>`: not a protobuf `BatchCommand`, and a `BatchCommand` with no
//!   command, get an `INVALID_ARGUMENT` `BatchResult`; 40 invented subjects add one metric series,
//!   not 40 (the label is the subject's family).
//! - `covenant.log.read.<p>`: not a `PartitionFrom`, or a partition that does not exist, get a
//!   `Covenant-Error` header naming the problem.
//! - `COVENANT_EVENTS`: garbage bodies, missing headers and headers that contradict the subject,
//!   published into the stream itself, are skipped by standing's consumer, which goes on.

use std::path::Path;
use std::time::Duration;

use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_tests::processes::{ServiceProcess, free_port, http_get, test_dir};
use covenant_tests::requests::{interaction, make_promise, register};
use prost::Message;
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const PARTITIONS: u16 = 8;

async fn connect(process: &ServiceProcess) -> Channel {
    Channel::from_shared(process.endpoint()).unwrap().connect().await.unwrap()
}

async fn metrics(port: u16) -> String {
    tokio::task::spawn_blocking(move || http_get(port, "/metrics")).await.unwrap().unwrap()
}

/// The sum of the series of `name` whose labels contain `label`.
fn counter(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(" ").next()?.parse::<f64>().ok())
        .sum()
}

async fn request(client: &async_nats::Client, subject: String, body: Vec<u8>) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), client.request(subject, body.into()))
        .await
        .expect("an answer within 10 s")
        .expect("a reply")
}

#[tokio::test]
async fn malformed_nats_messages_are_refused_counted_and_skipped_and_the_services_go_on() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger_metrics = free_port().unwrap();
    let ledger = ServiceProcess::start(
        Path::new(LEDGER),
        &dir.path().join("log"),
        &nats.url(),
        "fsync",
        &format!("127.0.0.1:{ledger_metrics}"),
    )
    .unwrap();
    let standing_metrics = free_port().unwrap();
    let standing_dir = dir.path().join("standing");
    let standing = ServiceProcess::start_service(
        Path::new(STANDING),
        "standing",
        &[
            "--data-dir",
            standing_dir.to_str().unwrap(),
            "--nats-url",
            &nats.url(),
            "--partitions",
            &PARTITIONS.to_string(),
            "--metrics-addr",
            &format!("127.0.0.1:{standing_metrics}"),
        ],
    )
    .unwrap();
    let mut ledger_client = LedgerClient::new(connect(&ledger).await);
    ledger_client.register_customer(register("before", "before-1")).await.unwrap();
    let nats_client = async_nats::connect(nats.url()).await.unwrap();

    // Commands: garbage, an empty BatchCommand, and garbage on invented subjects.
    let answer =
        request(&nats_client, "covenant.cmd.register_customer".into(), vec![0xff, 0x00, 0x13, 0x37]).await;
    let result = v1::BatchResult::decode(answer.payload.as_ref()).unwrap();
    let Some(v1::batch_result::Result::Error(error)) = result.result else { panic!("{result:?}") };
    assert_eq!(error.code, tonic::Code::InvalidArgument as i32);
    assert!(error.message.contains("not a protobuf BatchCommand"), "{}", error.message);
    let empty = v1::BatchCommand { command: None }.encode_to_vec();
    let answer = request(&nats_client, "covenant.cmd.anything".into(), empty).await;
    let result = v1::BatchResult::decode(answer.payload.as_ref()).unwrap();
    let Some(v1::batch_result::Result::Error(error)) = result.result else { panic!("{result:?}") };
    assert_eq!(error.code, tonic::Code::InvalidArgument as i32, "{}", error.message);
    for index in 0..40 {
        request(&nats_client, format!("covenant.cmd.invented-{index}"), vec![0xff; index + 1]).await;
    }

    // Log reads: garbage, and a partition that does not exist.
    let answer =
        request(&nats_client, "covenant.log.read.0".into(), b"not protobuf at all \xff".to_vec()).await;
    let reason =
        answer.headers.as_ref().and_then(|headers| headers.get("Covenant-Error")).unwrap().to_string();
    assert!(reason.contains("not a protobuf PartitionFrom"), "{reason}");
    let nowhere = v1::PartitionFrom { partition: 999, offset: 0 }.encode_to_vec();
    let answer = request(&nats_client, "covenant.log.read.999".into(), nowhere).await;
    let reason =
        answer.headers.as_ref().and_then(|headers| headers.get("Covenant-Error")).unwrap().to_string();
    assert!(reason.contains("999"), "{reason}");

    // The event stream itself: garbage bodies, no headers, contradicting headers.
    let jetstream = async_nats::jetstream::new(nats_client.clone());
    jetstream
        .publish("covenant.events.0.promise_made", vec![0xde, 0xad, 0xbe, 0xef].into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Covenant-Partition", "5");
    headers.insert("Covenant-Offset", "0");
    jetstream
        .publish_with_headers("covenant.events.1.promise_made", headers, b"garbage".to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Covenant-Partition", "2");
    headers.insert("Covenant-Offset", "0");
    jetstream
        .publish_with_headers("covenant.events.2.promise_made", headers, vec![0x0a, 0xff, 0xff].into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The services go on: a command over gRPC and one over NATS are recorded and applied.
    let made =
        ledger_client.make_promise(make_promise("before", "before-2", "p")).await.unwrap().into_inner();
    let over_nats = interaction("after", "after-1");
    ledger_client.register_customer(register("after", "after-0")).await.unwrap();
    let answer =
        request(&nats_client, "covenant.cmd.record_interaction".into(), over_nats.encode_to_vec()).await;
    let result = v1::BatchResult::decode(answer.payload.as_ref()).unwrap();
    let Some(v1::batch_result::Result::Appended(appended)) = result.result else { panic!("{result:?}") };
    let mut positions = made.positions;
    positions.extend(appended.positions);
    let mut standing_client = StandingClient::new(connect(&standing).await);
    let timeline = standing_client
        .get_timeline(v1::GetTimelineRequest {
            customer_id: "after".into(),
            from_version: 1,
            max_events: 10,
            consistency: Some(v1::ReadConsistency { min_position: positions, wait_ms: 15_000 }),
        })
        .await
        .expect("standing applied the commands recorded after the bad messages")
        .into_inner();
    assert_eq!(timeline.events.len(), 2);

    // Counted, with one series per subject family.
    let ledger_text = metrics(ledger_metrics).await;
    assert!(
        counter(&ledger_text, "covenant_nats_malformed_total", "subject=\"covenant.cmd\"") >= 41.0,
        "{ledger_text}"
    );
    assert!(counter(&ledger_text, "covenant_nats_malformed_total", "subject=\"covenant.log.read\"") >= 1.0);
    let series = ledger_text.lines().filter(|line| line.starts_with("covenant_nats_malformed_total")).count();
    assert!(series <= 2, "one series per subject family, not per invented subject: {series}");
    let standing_text = metrics(standing_metrics).await;
    assert!(
        counter(&standing_text, "covenant_nats_malformed_total", "subject=\"covenant.events\"") >= 3.0,
        "{standing_text}"
    );
}
