#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `covenant export` and `covenant tail` as black boxes, against a real ledger process: the
//! export holds exactly the events of the log (per type, read back over `EventLog`), with no
//! personal data, as JSON lines and as one CSV file per type, from the data directory and over
//! gRPC; `tail` shows only events recorded after it started (or every one with `--from-start`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::{keep_promise, make_promise, register};
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");
/// What `register` and `make_promise` put in personal fields.
const PERSONAL: [&str; 2] = ["Ada Lovelace", "call back about the invoice"];

fn covenant(args: &[&str]) -> Output {
    let output = Command::new(COVENANT).args(args).output().unwrap();
    assert!(output.status.success(), "covenant {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

async fn log_counts(reader: &mut EventLogClient<Channel>) -> BTreeMap<String, usize> {
    let page = reader
        .read_all(v1::ReadAllRequest { from: vec![], event_types: vec![], max_events: 10_000 })
        .await
        .unwrap()
        .into_inner();
    assert!(page.end_of_log);
    let mut counts = BTreeMap::new();
    for event in page.events {
        *counts.entry(event.event_type).or_default() += 1;
    }
    counts
}

fn jsonl_counts(text: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(event["event_id"].is_string() && event["payload"].is_object(), "{line}");
        *counts.entry(event["event_type"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn export_writes_every_event_without_personal_data_and_tail_follows_new_ones() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger =
        ServiceProcess::start(Path::new(LEDGER), &dir.path().join("log"), &nats.url(), "fsync", "off")
            .unwrap();
    let mut client =
        LedgerClient::new(Channel::from_shared(ledger.endpoint()).unwrap().connect().await.unwrap());
    for index in 0..6 {
        let customer = format!("before-{index}");
        client.register_customer(register(&customer, &format!("{customer}-1"))).await.unwrap();
        client.make_promise(make_promise(&customer, &format!("{customer}-2"), "p")).await.unwrap();
        if index % 2 == 0 {
            client.keep_promise(keep_promise(&customer, &format!("{customer}-3"), "p")).await.unwrap();
        }
    }
    let mut reader =
        EventLogClient::new(Channel::from_shared(ledger.endpoint()).unwrap().connect().await.unwrap());
    let written = log_counts(&mut reader).await;
    assert_eq!(written.values().sum::<usize>(), 15);

    // JSON lines, from the data directory (beside the running ledger) and over gRPC.
    let data = dir.path().to_str().unwrap();
    let out = dir.path().join("events.jsonl");
    let out = out.to_str().unwrap();
    covenant(&["export", "--format", "jsonl", "--data", data, "--out", out]);
    let offline = std::fs::read_to_string(out).unwrap();
    assert_eq!(jsonl_counts(&offline), written);
    let online = covenant(&["export", "--format", "jsonl", "--ledger", &ledger.endpoint(), "--out", "-"]);
    let online = String::from_utf8(online.stdout).unwrap();
    assert_eq!(jsonl_counts(&online), written);
    // Read in place on several threads or over gRPC in order: the same lines in the same order.
    let threaded = covenant(&["export", "--format", "jsonl", "--data", data, "--out", "-", "--threads", "3"]);
    assert_eq!(String::from_utf8(threaded.stdout).unwrap(), offline);
    let one_thread =
        covenant(&["export", "--format", "jsonl", "--data", data, "--out", "-", "--threads", "1"]);
    assert_eq!(String::from_utf8(one_thread.stdout).unwrap(), offline);
    assert_eq!(online, offline);
    for text in [&offline, &online] {
        for personal in PERSONAL {
            assert!(!text.contains(personal), "`{personal}` leaked into the export");
        }
    }

    // CSV: one file per type, the envelope's columns first, one row per event.
    let csv_dir = dir.path().join("csv");
    covenant(&["export", "--format", "csv", "--data", data, "--out", csv_dir.to_str().unwrap()]);
    for (event_type, count) in &written {
        let text = std::fs::read_to_string(csv_dir.join(format!("{event_type}.csv"))).unwrap();
        let mut rows = ::csv::Reader::from_reader(text.as_bytes());
        let header = rows.headers().unwrap().clone();
        assert_eq!(&header[0], "event_id");
        assert_eq!(&header[5], "event_type");
        assert!(
            header.iter().any(|name| name.starts_with("payload.")) || event_type == "customer_reactivated"
        );
        let records: Vec<_> = rows.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), *count, "{event_type}");
        assert!(records.iter().all(|record| &record[5] == event_type.as_str()));
        for personal in PERSONAL {
            assert!(!text.contains(personal), "`{personal}` leaked into {event_type}.csv");
        }
    }
    // One thread, or over gRPC (in order, one thread): the same files, byte for byte.
    let files_in = |dir: &Path| -> BTreeMap<String, String> {
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
    };
    let one_thread_dir = dir.path().join("csv-one-thread");
    let one_thread_out = one_thread_dir.to_str().unwrap();
    covenant(&["export", "--format", "csv", "--data", data, "--out", one_thread_out, "--threads", "1"]);
    let online_dir = dir.path().join("csv-online");
    let online_out = online_dir.to_str().unwrap();
    covenant(&["export", "--format", "csv", "--ledger", &ledger.endpoint(), "--out", online_out]);
    assert_eq!(files_in(&one_thread_dir), files_in(&csv_dir));
    assert_eq!(files_in(&online_dir), files_in(&csv_dir));
    let leftovers: Vec<_> = std::fs::read_dir(&csv_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".csv"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Filters: one type; a window with nothing in it.
    let kept =
        covenant(&["export", "--format", "jsonl", "--data", data, "--out", "-", "--type", "promise_kept"]);
    assert_eq!(
        jsonl_counts(&String::from_utf8(kept.stdout).unwrap()),
        BTreeMap::from([("promise_kept".to_owned(), 3)])
    );
    let none =
        covenant(&["export", "--format", "jsonl", "--data", data, "--out", "-", "--from", "2099-01-01"]);
    assert!(none.stdout.is_empty());
    let bad = Command::new(COVENANT)
        .args(["export", "--format", "jsonl", "--out", "-", "--type", "promise_forgotten"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`promise_forgotten` is not an event type"));

    // tail: from the end, so none of the events above; new ones as they come.
    let (mut tail, received) = spawn_lines(&["tail", "--ledger", &ledger.endpoint(), "--json"]);
    // Record until tail shows something (it subscribes a moment after it starts).
    let mut first = None;
    for index in 0..100 {
        let customer = format!("after-{index}");
        client.register_customer(register(&customer, &format!("{customer}-1"))).await.unwrap();
        if let Ok(line) = received.recv_timeout(Duration::from_millis(200)) {
            first = Some(line);
            break;
        }
    }
    let first: serde_json::Value = serde_json::from_str(&first.expect("tail showed a new event")).unwrap();
    assert!(first["customer_id"].as_str().unwrap().starts_with("after-"), "only new events: {first}");
    assert_eq!(first["event_type"], "customer_registered");
    assert_eq!(first["payload"]["name"], "", "no personal data");
    tail.kill().unwrap();
    tail.wait().unwrap();

    let (mut tail, received) =
        spawn_lines(&["tail", "--ledger", &ledger.endpoint(), "--from-start", "--type", "promise_made"]);
    for _ in 0..6 {
        let line = received.recv_timeout(Duration::from_secs(10)).expect("a promise_made line within 10 s");
        assert!(line.contains(" before-") && line.contains("promise_made"), "{line}");
    }
    assert!(received.recv_timeout(Duration::from_millis(300)).is_err(), "only the 6 promises made");
    tail.kill().unwrap();
    tail.wait().unwrap();
}

/// Starts `covenant args…` with its stdout lines arriving on a channel.
fn spawn_lines(args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(COVENANT).args(args).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (child, received)
}
