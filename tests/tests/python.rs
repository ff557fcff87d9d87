#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Python examples (`examples/python`) against a live system: a real ledger and standing
//! over a real nats-server. The consumer (nats-py) reads `COVENANT_EVENTS` from the beginning and
//! its per-type counts must equal what the ledger's log holds (read back over `EventLog`); the
//! client (grpcio) records a customer through `Ledger` and reads their trust from `Standing`,
//! which must equal what standing tells this test.
//!
//! The interpreter is `$COVENANT_PYTHON` (`just test` sets it to the virtualenv `just setup`
//! makes, with `examples/python/requirements.txt`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::{answer_survey, keep_promise, make_promise, register};
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const PARTITIONS: u16 = 8;

fn python() -> PathBuf {
    let python = std::env::var_os("COVENANT_PYTHON").map(PathBuf::from).expect(
        "COVENANT_PYTHON is not set: run the tests with `just test`, which prepares the Python examples' \
         virtualenv (target/python-examples) and sets it",
    );
    assert!(python.exists(), "COVENANT_PYTHON={} does not exist: run `just setup`", python.display());
    python
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python")
}

/// Runs an example script; its stdout parsed as JSON.
fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(python()).arg(examples().join(script)).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{script} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{script} printed no JSON ({error}): {}", String::from_utf8_lossy(&output.stdout))
    })
}

async fn connect(process: &ServiceProcess) -> Channel {
    Channel::from_shared(process.endpoint()).unwrap().connect().await.unwrap()
}

/// Events per type in the ledger's log, read back over `EventLog.ReadAll`.
async fn log_counts(reader: &mut EventLogClient<Channel>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut from = Vec::new();
    loop {
        let page = reader
            .read_all(v1::ReadAllRequest { from: from.clone(), event_types: vec![], max_events: 1000 })
            .await
            .unwrap()
            .into_inner();
        for event in &page.events {
            *counts.entry(event.event_type.clone()).or_default() += 1;
        }
        if page.end_of_log {
            return counts;
        }
        from = page.next;
    }
}

/// Waits until `COVENANT_EVENTS` holds `messages` messages (the relay has published the log).
async fn wait_for_stream(nats_url: &str, messages: u64) {
    let client = async_nats::connect(nats_url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut stream = jetstream.get_stream("COVENANT_EVENTS").await.unwrap();
        let held = stream.info().await.unwrap().state.messages;
        if held >= messages {
            return;
        }
        assert!(Instant::now() < deadline, "the stream holds {held} of {messages} messages after 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn python_examples_read_the_stream_and_call_the_api_of_a_live_system() {
    let python_ready = python();
    let dir = test_dir().unwrap();
    let generated = dir.path().join("python-gen");
    let status = Command::new(&python_ready)
        .arg(examples().join("generate.py"))
        .arg("--out")
        .arg(&generated)
        .status()
        .unwrap();
    assert!(status.success(), "generate.py failed");

    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger =
        ServiceProcess::start(Path::new(LEDGER), &dir.path().join("log"), &nats.url(), "fsync", "off")
            .unwrap();
    let standing = ServiceProcess::start_consumer(
        Path::new(STANDING),
        "standing",
        &dir.path().join("standing"),
        &nats.url(),
        PARTITIONS,
    )
    .unwrap();
    let mut client = LedgerClient::new(connect(&ledger).await);

    // A known history: 12 customers, each with a promise; 8 kept; 5 surveys.
    for index in 0..12 {
        let customer = format!("customer-{index}");
        client.register_customer(register(&customer, &format!("{customer}-1"))).await.unwrap();
        client.make_promise(make_promise(&customer, &format!("{customer}-2"), "callback")).await.unwrap();
        if index < 8 {
            client.keep_promise(keep_promise(&customer, &format!("{customer}-3"), "callback")).await.unwrap();
        }
        if index % 3 == 0 {
            let survey = answer_survey(
                &customer,
                &format!("{customer}-4"),
                "nps-1",
                v1::SurveyKind::Nps,
                9,
                "support",
            );
            client.answer_survey(survey).await.unwrap();
        }
    }
    // A retried command appends nothing; the consumer must not see it twice either.
    client.register_customer(register("customer-0", "customer-0-1")).await.unwrap();

    let mut reader = EventLogClient::new(connect(&ledger).await);
    let written = log_counts(&mut reader).await;
    assert_eq!(written.get("customer_registered"), Some(&12));
    assert_eq!(written.get("promise_kept"), Some(&8));
    let total: u64 = written.values().sum();
    wait_for_stream(&nats.url(), total).await;

    let gen_dir = generated.to_str().unwrap();
    let counted = run_python("consumer.py", &["--nats", &nats.url(), "--gen", gen_dir]);
    let by_type: BTreeMap<String, u64> = counted["by_type"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, count)| (name.clone(), count.as_u64().unwrap()))
        .collect();
    assert_eq!(by_type, written, "the Python consumer counts what the log holds, per type");
    assert_eq!(counted["events"].as_u64(), Some(total));
    assert_eq!(counted["payload_mismatches"].as_u64(), Some(0));

    // The client: Ledger then Standing with read-your-writes.
    let trust = run_python(
        "client.py",
        &[
            "--ledger",
            &ledger.endpoint().replace("http://", ""),
            "--standing",
            &standing.endpoint().replace("http://", ""),
            "--customer",
            "py-1",
            "--gen",
            gen_dir,
        ],
    );
    assert_eq!(trust["customer_id"], "py-1");
    assert_eq!(trust["stream_version"].as_u64(), Some(3), "register, promise, kept");
    let mut standing_client = StandingClient::new(connect(&standing).await);
    let ours = standing_client
        .get_trust(v1::GetTrustRequest { customer_id: "py-1".into(), as_of: None, consistency: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trust["score"].as_u64(), Some(u64::from(ours.score)));
    assert_eq!(
        trust["band"].as_str(),
        v1::TrustBand::try_from(ours.band).ok().map(|band| band.as_str_name())
    );
    let stream = reader
        .read_stream(v1::ReadStreamRequest {
            customer_id: "py-1".into(),
            from_version: 1,
            max_events: 10,
            include_personal_data: false,
        })
        .await
        .unwrap()
        .into_inner();
    let types: Vec<&str> = stream.events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(types, ["customer_registered", "promise_made", "promise_kept"]);
    assert_eq!(stream.events[0].actor.as_ref().map(|actor| actor.id.as_str()), Some("agent-py"));
}
