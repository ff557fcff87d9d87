#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `covenant audit promises` as a black box: a real ledger process with its RocksDB log, fed
//! over gRPC, audited by the real `covenant` command (a child process) once over gRPC
//! (`--ledger`) and once from the data directory while the ledger still runs (`--data`,
//! read-only). Both find the recorded break and the silent one (a promise past due that nobody
//! settled: no watchdog runs here), with the same stories; the formats and the errors are checked
//! too.

use std::path::Path;
use std::process::{Command, Output};

use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::{header, header_at, in_seconds, keep_promise, promise_due, register};
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");

fn covenant(args: &[&str]) -> Output {
    Command::new(COVENANT).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn json_of(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `(customer, promise, how it broke)` of each broken promise in a JSON report.
fn broken(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["broken_promises"]
        .as_array()
        .unwrap()
        .iter()
        .map(|story| {
            (
                story["customer_id"].as_str().unwrap().to_owned(),
                story["promise_id"].as_str().unwrap().to_owned(),
                story["broken"]["how"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn record_history(client: &mut LedgerClient<Channel>) {
    for customer in ["ann", "bob", "cyd"] {
        client.register_customer(register(customer, &format!("{customer}-register"))).await.unwrap();
    }
    // Three promises made three hours ago, due two hours ago, no grace.
    for (customer, promise) in [("ann", "order-1"), ("bob", "order-2"), ("cyd", "order-3")] {
        let command = format!("{customer}-promise");
        client
            .make_promise(v1::MakePromiseRequest {
                header: header_at(customer, &command, None, Some(in_seconds(-3 * 3600))),
                ..promise_due(customer, &command, promise, in_seconds(-2 * 3600), 0)
            })
            .await
            .unwrap();
    }
    // ann's is reported broken and apologised for; cyd's was kept on time; bob's is left open:
    // with no watchdog running, nobody records its break.
    client
        .report_broken_promise(v1::ReportBrokenPromiseRequest {
            header: header("ann", "ann-broken", None),
            promise_id: "order-1".into(),
            detection: v1::BreakDetection::CustomerReport as i32,
            reason: "it never came".into(),
        })
        .await
        .unwrap();
    client
        .issue_apology(v1::IssueApologyRequest {
            header: header("ann", "ann-sorry", None),
            related_ref: Some(v1::RelatedRef {
                target: Some(v1::related_ref::Target::PromiseId("order-1".into())),
            }),
        })
        .await
        .unwrap();
    client
        .keep_promise(v1::KeepPromiseRequest {
            kept_at: Some(in_seconds(-150 * 60)),
            ..keep_promise("cyd", "cyd-kept", "order-3")
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_audit_finds_recorded_and_silent_breaks_over_grpc_and_from_the_data_directory() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger =
        ServiceProcess::start(Path::new(LEDGER), &dir.path().join("log"), &nats.url(), "fsync", "off")
            .unwrap();
    let mut client =
        LedgerClient::new(Channel::from_shared(ledger.endpoint()).unwrap().connect().await.unwrap());
    record_history(&mut client).await;

    let endpoint = ledger.endpoint();
    let online = json_of(&covenant(&["audit", "promises", "--ledger", &endpoint, "--format", "json"]));
    let expected = vec![
        ("bob".to_owned(), "order-2".to_owned(), "silent".to_owned()),
        ("ann".to_owned(), "order-1".to_owned(), "customer_report".to_owned()),
    ];
    assert_eq!(broken(&online), expected, "the silent one broke at its due date, before ann's report");
    assert_eq!(online["silent_breaks"], 1);
    assert_eq!(online["promises_judged"], 3);
    let ann = &online["broken_promises"][1];
    assert_eq!(ann["made_by"], "agent-7");
    assert_eq!(ann["team"], "support");
    assert!(ann["apology"]["hours_after"].as_f64().unwrap() >= 0.0);
    assert_eq!(ann["recovered"], true);
    assert_eq!((ann["trust_before"].as_u64(), ann["trust_after"].as_u64()), (Some(50), Some(7)));
    assert_eq!(ann["description"], "", "the ledger leaves personal data out");
    let days_late = ann["days_late"].as_f64().unwrap();
    assert!((0.08..0.1).contains(&days_late), "reported about 2 h after the due date: {days_late}");
    let bob = &online["broken_promises"][0];
    assert_eq!(bob["trust_before"], serde_json::Value::Null, "the models never heard of a silent break");
    assert_eq!(online["summary"]["overall"]["keeping_rate_percent"].as_f64(), Some(100.0 / 3.0));
    assert_eq!(online["summary"]["overall"]["recovery_rate_percent"].as_f64(), Some(50.0));

    // From the data directory, beside the running ledger: the same stories (the descriptions are
    // personal data, sealed at rest, so they are empty here too).
    let data = dir.path().to_str().unwrap();
    let offline = json_of(&covenant(&["audit", "promises", "--data", data, "--format", "json"]));
    assert_eq!(broken(&offline), expected);
    assert_eq!(offline["broken_promises"][1]["description"], "");
    // The same counts (the lateness of a silent break grows with the audit instant).
    for field in
        ["settled", "kept_on_time", "broken", "silent", "keeping_rate_percent", "recovery_rate_percent"]
    {
        assert_eq!(
            offline["summary"]["by_team"][0][field], online["summary"]["by_team"][0][field],
            "{field}"
        );
    }

    // Filters: bob alone; agents nobody has.
    let bob_only =
        json_of(&covenant(&["audit", "promises", "--data", data, "--customer", "bob", "--format", "json"]));
    assert_eq!(broken(&bob_only), expected[..1]);
    let nobody = json_of(&covenant(&[
        "audit", "promises", "--ledger", &endpoint, "--agent", "agent-0", "--format", "json",
    ]));
    assert_eq!(broken(&nobody), []);

    // CSV: a header and one row per broken promise; the table names the silent break.
    let csv = covenant(&["audit", "promises", "--data", data, "--format", "csv"]);
    assert!(csv.status.success());
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("broke_at,customer_id,promise_id,kind,description"), "{csv}");
    assert!(lines[1].contains(",bob,order-2,callback,") && lines[1].contains(",SILENT,"), "{csv}");
    let table = covenant(&["audit", "promises", "--ledger", &endpoint]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("SILENT: 1 promise(s) are past due"), "{table}");
    assert!(table.contains("by agent"), "{table}");

    // Readable errors.
    let missing = covenant(&["audit", "promises", "--data", "/no/such/place"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("--data: there is no log at /no/such/place/log"), "{stderr}");
    let unreachable = covenant(&["audit", "promises", "--ledger", "http://127.0.0.1:1"]);
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("connect to the ledger at http://127.0.0.1:1"), "{stderr}");
    let bad_date = covenant(&["audit", "promises", "--from", "last tuesday"]);
    assert!(!bad_date.status.success());
    assert!(String::from_utf8_lossy(&bad_date.stderr).contains("is not an instant"));
}
