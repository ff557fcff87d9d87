#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ledger as a black box: a real `ledger-process` child over real gRPC sockets, with its own
//! nats-server (JetStream) and RocksDB directory. Commands are recorded, answered with positions,
//! deduplicated on retry, refused with exact status codes, and relayed to `COVENANT_EVENTS`
//! exactly once, also across a SIGKILL of the ledger and of nats-server.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use covenant_bus::NatsServer;
use covenant_bus::subjects::{EVENTS_STREAM, HEADER_OFFSET, HEADER_PARTITION};
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_tests::processes::{LedgerProcess, free_port, http_get, test_dir};
use covenant_tests::requests::{header, interaction, make_promise, register};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");

fn start_ledger(dir: &Path, nats: &NatsServer, durability: &str) -> LedgerProcess {
    LedgerProcess::start(Path::new(LEDGER), &dir.join("log"), &nats.url(), durability, "off").unwrap()
}

async fn ledger_client(ledger: &LedgerProcess) -> LedgerClient<Channel> {
    LedgerClient::connect(ledger.endpoint()).await.unwrap()
}

/// Every message of `COVENANT_EVENTS` once it holds `expected` messages (waits up to 30 s).
async fn stream_messages(
    nats_url: &str,
    expected: u64,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match js.get_stream(EVENTS_STREAM).await {
            Ok(stream) => break stream,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no stream {EVENTS_STREAM}: {error}"),
        }
    };
    loop {
        let count = stream.info().await.unwrap().state.messages;
        if count >= expected || Instant::now() >= deadline {
            assert_eq!(count, expected, "messages in {EVENTS_STREAM}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a late duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = stream.info().await.unwrap().state.clone();
    assert_eq!(info.messages, expected, "messages in {EVENTS_STREAM} after settling");
    let mut messages = Vec::new();
    for sequence in info.first_sequence..=info.last_sequence {
        messages.push(stream.get_raw_message(sequence).await.unwrap());
    }
    messages
}

fn header_value(message: &async_nats::jetstream::message::StreamMessage, name: &str) -> String {
    message.headers.get(name).map(|value| value.as_str().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn commands_are_recorded_deduplicated_read_back_and_relayed() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats, "fsync");
    let mut client = ledger_client(&ledger).await;

    let registered = client.register_customer(register("alice", "c1")).await.unwrap().into_inner();
    assert_eq!(
        (registered.stream_version, registered.positions.len(), registered.deduplicated),
        (1, 1, false)
    );
    // A retry is the very same request (same due date), as a client resending it would send.
    let promise = make_promise("alice", "c2", "p1");
    let made = client.make_promise(promise.clone()).await.unwrap().into_inner();
    assert_eq!(made.stream_version, 2);
    let retried = client.make_promise(promise).await.unwrap().into_inner();
    assert!(retried.deduplicated);
    assert_eq!((retried.positions.clone(), retried.stream_version), (made.positions.clone(), 2));

    let keep = |command: &str| v1::KeepPromiseRequest {
        header: header("alice", command, Some(2)),
        promise_id: "p1".into(),
        kept_at: None,
        evidence: "called back".into(),
    };
    let kept = client.keep_promise(keep("c3")).await.unwrap().into_inner();
    assert_eq!(kept.stream_version, 3);
    let conflict = client.keep_promise(keep("c4")).await.unwrap_err();
    assert_eq!(conflict.code(), Code::Aborted, "{conflict:?}");
    assert!(conflict.message().contains("current version is 3"), "{}", conflict.message());

    let mut reader = EventLogClient::connect(ledger.endpoint()).await.unwrap();
    let stream = reader
        .read_stream(v1::ReadStreamRequest {
            customer_id: "alice".into(),
            from_version: 0,
            max_events: 0,
            include_personal_data: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.stream_version, 3);
    let types: Vec<_> = stream.events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types, ["customer_registered", "promise_made", "promise_kept"]);
    match &stream.events[0].payload {
        Some(v1::event_envelope::Payload::CustomerRegistered(registered)) => {
            assert_eq!(registered.name, "", "the name is personal data and must not be served");
            assert_eq!(registered.segment, "smb");
        }
        other => panic!("unexpected payload {other:?}"),
    }

    let messages = stream_messages(&nats.url(), 3).await;
    for (message, expected) in messages.iter().zip(&stream.events) {
        let envelope = v1::EventEnvelope::decode(message.payload.clone()).unwrap();
        assert_eq!(&envelope, expected);
        let position = expected.position.unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("covenant.events.{}.{}", position.partition, expected.event_type)
        );
        assert_eq!(header_value(message, "Nats-Msg-Id"), expected.event_id);
        assert_eq!(header_value(message, HEADER_PARTITION), position.partition.to_string());
        assert_eq!(header_value(message, HEADER_OFFSET), position.offset.to_string());
    }
}

#[tokio::test]
async fn bad_input_gets_its_exact_status_naming_the_field() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let metrics_port = free_port().unwrap();
    let ledger = LedgerProcess::start(
        Path::new(LEDGER),
        &dir.path().join("log"),
        &nats.url(),
        "fsync",
        &format!("127.0.0.1:{metrics_port}"),
    )
    .unwrap();
    let mut client = ledger_client(&ledger).await;
    client.register_customer(register("bob", "r1")).await.unwrap();

    let expect =
        |result: Result<tonic::Response<v1::AppendResponse>, tonic::Status>, code: Code, needle: &str| {
            let status = result.unwrap_err();
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(needle), "{:?} should name {needle:?}", status.message());
        };
    expect(client.register_customer(register("", "r2")).await, Code::InvalidArgument, "customer_id");
    expect(client.register_customer(register("bad id!", "r2")).await, Code::InvalidArgument, "customer_id");
    expect(
        client.register_customer(v1::RegisterCustomerRequest { header: None, ..register("bob", "r2") }).await,
        Code::InvalidArgument,
        "header",
    );
    expect(
        client.register_customer(v1::RegisterCustomerRequest { tier: 99, ..register("carol", "r2") }).await,
        Code::InvalidArgument,
        "tier",
    );
    expect(client.register_customer(register("bob", "r3")).await, Code::AlreadyExists, "bob");
    expect(
        client
            .keep_promise(v1::KeepPromiseRequest {
                header: header("bob", "k1", None),
                promise_id: "no-such-promise".into(),
                kept_at: None,
                evidence: String::new(),
            })
            .await,
        Code::NotFound,
        "no-such-promise",
    );
    // The same command id for another command of the same customer.
    expect(client.make_promise(make_promise("bob", "r1", "p9")).await, Code::AlreadyExists, "r1");

    let too_many: Vec<_> = (0..1001).map(|n| interaction("bob", &format!("i{n}"))).collect();
    let status = client.append_batch(v1::AppendBatchRequest { commands: too_many }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("commands"), "{}", status.message());

    // A batch answers item by item.
    let batch = client
        .append_batch(v1::AppendBatchRequest {
            commands: vec![interaction("bob", "b1"), interaction("", "b2"), interaction("bob", "b3")],
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<_> = batch
        .results
        .iter()
        .map(|result| match &result.result {
            Some(v1::batch_result::Result::Appended(_)) => 0,
            Some(v1::batch_result::Result::Error(error)) => error.code,
            None => -1,
        })
        .collect();
    assert_eq!(codes, [0, Code::InvalidArgument as i32, 0]);

    let mut reader = EventLogClient::connect(ledger.endpoint()).await.unwrap();
    let status = reader
        .read_all(v1::ReadAllRequest { from: vec![], event_types: vec!["PromiseKept".into()], max_events: 0 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("event_types"), "{}", status.message());
    let status = reader
        .read_all(v1::ReadAllRequest {
            from: vec![v1::PartitionFrom { partition: 99, offset: 0 }],
            event_types: vec![],
            max_events: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // Every refusal above is counted by method and code.
    let metrics =
        tokio::task::spawn_blocking(move || http_get(metrics_port, "/metrics")).await.unwrap().unwrap();
    let line = metrics
        .lines()
        .find(|line| {
            line.starts_with("covenant_request_errors_total")
                && line.contains("method=\"register_customer\"")
                && line.contains("code=\"InvalidArgument\"")
        })
        .unwrap_or_else(|| panic!("no register_customer InvalidArgument counter in:\n{metrics}"));
    assert!(line.ends_with(" 4"), "four bad registrations were sent: {line}");

    // The log's write path is measured too: bob's registration went through a group commit and
    // a WAL fsync (the ledger runs in `fsync` mode).
    for histogram in [
        "covenant_log_group_commit_commands",
        "covenant_log_group_commit_seconds",
        "covenant_log_fsync_seconds",
        "covenant_log_fsync_commands",
    ] {
        let count = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{histogram}_count ")))
            .unwrap_or_else(|| panic!("no {histogram}_count in:\n{metrics}"));
        assert!(count.trim().parse::<f64>().unwrap() >= 1.0, "{histogram}_count {count}");
    }
}

/// Appends `count` interactions for 16 customers (registering them first) through `AppendBatch`;
/// every item must be accepted.
async fn append_load(client: &mut LedgerClient<Channel>, round: &str, count: usize) -> usize {
    let mut commands: Vec<_> = (0..16)
        .map(|customer| v1::BatchCommand {
            command: Some(v1::batch_command::Command::RegisterCustomer(register(
                &format!("{round}-customer-{customer}"),
                &format!("{round}-register-{customer}"),
            ))),
        })
        .collect();
    commands.extend(
        (0..count).map(|n| interaction(&format!("{round}-customer-{}", n % 16), &format!("{round}-i{n}"))),
    );
    let total = commands.len();
    covenant_load::append_all(client, commands, 1000).await.unwrap();
    total
}

#[tokio::test]
async fn every_event_reaches_the_stream_exactly_once_across_ledger_and_nats_kills() {
    let dir = test_dir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = start_ledger(dir.path(), &nats, "fsync");
    let mut client = ledger_client(&ledger).await;
    let mut total = append_load(&mut client, "a", 300).await;
    // SIGKILL the ledger right after its acknowledgements: the relay may be mid-batch.
    ledger.kill();
    // And NATS too; the ledger restarts without it and keeps accepting commands.
    nats.kill();
    let mut ledger = start_ledger(dir.path(), &nats, "fsync");
    let mut client = ledger_client(&ledger).await;
    // A backlog of several hundred events per partition (more than the relay's 256 in flight
    // per partition, on every partition at once) waits for NATS.
    total += append_load(&mut client, "b", 4000).await;
    nats.restart().unwrap();
    total += append_load(&mut client, "c", 100).await;

    let messages = stream_messages(&nats.url(), total as u64).await;
    let mut seen = BTreeMap::new();
    for message in &messages {
        let envelope = v1::EventEnvelope::decode(message.payload.clone()).unwrap();
        let position = envelope.position.unwrap();
        assert_eq!(header_value(message, "Nats-Msg-Id"), envelope.event_id);
        let previous = seen.insert((position.partition, position.offset), envelope.event_id.clone());
        assert!(
            previous.is_none(),
            "partition {} offset {} was published twice",
            position.partition,
            position.offset
        );
    }
    // Dense per partition: every offset from 0, none skipped.
    let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (partition, offset) in seen.keys() {
        per_partition.entry(*partition).or_default().push(*offset);
    }
    for (partition, offsets) in per_partition {
        assert!(
            offsets.iter().enumerate().all(|(index, offset)| index as u64 == *offset),
            "partition {partition} has a gap"
        );
    }
    drop(client);
    assert!(ledger.terminate(Duration::from_secs(10)).unwrap(), "the ledger should stop cleanly on SIGTERM");
}

/// The relay stores its cursors at most every `CURSOR_EVERY` while events flow; once they stop,
/// each partition's cursor reaches its end, so a restart publishes nothing again.
#[tokio::test]
async fn relay_cursors_reach_the_end_of_the_log_once_the_flow_stops() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = start_ledger(dir.path(), &nats, "fsync");
    let mut client = ledger_client(&ledger).await;
    let mut total = 0;
    for round in ["a", "b", "c"] {
        total += append_load(&mut client, round, 200).await;
    }
    assert_eq!(stream_messages(&nats.url(), total as u64).await.len(), total);
    // Each look opens the log read-only beside the running ledger (it sees the log as opened).
    let behind = || {
        let reader = covenant_log::LogReader::open_read_only(dir.path().join("log")).unwrap();
        let mut behind = Vec::new();
        let mut ends = 0;
        for partition in 0..reader.partition_count() {
            let end = reader.read_partition(partition, 0, 100_000).unwrap().len() as u64;
            let cursor = reader.cursor(&covenant_bus::relay::cursor_name(partition)).unwrap().unwrap_or(0);
            if cursor != end {
                behind.push((partition, cursor, end));
            }
            ends += end;
        }
        assert_eq!(ends, total as u64);
        behind
    };
    // Well within the wait: the cursors are stored CURSOR_EVERY after the last ack.
    let deadline = Instant::now() + covenant_bus::relay::CURSOR_EVERY * 50;
    let mut last = behind();
    while !last.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(covenant_bus::relay::CURSOR_EVERY).await;
        last = behind();
    }
    assert!(last.is_empty(), "relay cursors (partition, cursor, end) still behind the stream: {last:?}");
    ledger.kill();
}

/// The number of messages `COVENANT_EVENTS` holds now (0 before the stream exists).
async fn stream_count(nats_url: &str) -> u64 {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    match js.get_stream(EVENTS_STREAM).await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

#[tokio::test]
async fn replicated_commands_are_answered_only_once_jetstream_has_them() {
    let dir = test_dir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger = start_ledger(dir.path(), &nats, "replicated");
    let mut client = ledger_client(&ledger).await;
    for (index, command) in ["r1", "r2", "r3"].into_iter().enumerate() {
        let reply = if index == 0 {
            client.register_customer(register("erin", command)).await
        } else {
            client.make_promise(make_promise("erin", command, command)).await
        };
        assert!(reply.is_ok(), "{reply:?}");
        // Answered means acknowledged by JetStream: the message is there already.
        assert_eq!(stream_count(&nats.url()).await, index as u64 + 1);
    }

    // Without NATS the command is recorded in the log but cannot be confirmed: UNAVAILABLE.
    nats.kill();
    let promise = make_promise("erin", "r4", "r4");
    let status = client.make_promise(promise.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("JetStream"), "{}", status.message());
    // NATS back: the retry (same command_id) returns the first result, now replicated, once.
    nats.restart().unwrap();
    // (A client retries UNAVAILABLE; the ledger's NATS client may take a few seconds to reconnect.)
    let mut attempts = 0;
    let retried = loop {
        attempts += 1;
        match client.make_promise(promise.clone()).await {
            Ok(reply) => break reply.into_inner(),
            Err(status) if status.code() == Code::Unavailable && attempts < 6 => {}
            Err(status) => panic!("retry {attempts}: {status:?}"),
        }
    };
    assert!(retried.deduplicated);
    assert_eq!(retried.stream_version, 4);
    assert_eq!(stream_messages(&nats.url(), 4).await.len(), 4);
}
