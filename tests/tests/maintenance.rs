#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Looking after a data directory with the real `covenant` command, beside real ledger and
//! standing processes: `verify` (hash chains, stream index, standing against a replay) passes on
//! a live system and names the family a tampered projection differs in; `replay` rebuilds
//! standing (refused while standing runs) and the check passes again; `backup` is refused while
//! the ledger holds the log, and a backup restored into a new data directory holds the same
//! events (exported byte for byte) and verifies. A replay killed half way leaves the store it was
//! replacing as it was, and the next replay starts afresh. `replay --projection all` (standing and
//! the watchdog in one pass over the log) builds the very stores the two replays one at a time
//! build.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::{header, keep_promise, make_promise, register};
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");
const PARTITIONS: u16 = 8;

fn covenant(args: &[&str]) -> Output {
    Command::new(COVENANT).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
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

async fn connect(process: &ServiceProcess) -> Channel {
    Channel::from_shared(process.endpoint()).unwrap().connect().await.unwrap()
}

async fn trust_of(standing: &ServiceProcess, customer: &str, positions: &[v1::Position]) -> u32 {
    let mut client = StandingClient::new(connect(standing).await);
    client
        .get_trust(v1::GetTrustRequest {
            customer_id: customer.into(),
            as_of: None,
            consistency: Some(v1::ReadConsistency { min_position: positions.to_vec(), wait_ms: 10_000 }),
        })
        .await
        .unwrap()
        .into_inner()
        .score
}

#[tokio::test]
async fn verify_replay_backup_and_restore_look_after_a_live_data_directory() {
    let dir = test_dir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger =
        ServiceProcess::start(Path::new(LEDGER), &dir.path().join("log"), &nats.url(), "fsync", "off")
            .unwrap();
    let mut standing = start_standing(dir.path(), &nats);
    let mut client = LedgerClient::new(connect(&ledger).await);
    let mut positions = Vec::new();
    for index in 0..20 {
        let customer = format!("c-{index}");
        client.register_customer(register(&customer, &format!("{customer}-1"))).await.unwrap();
        let made = client.make_promise(make_promise(&customer, &format!("{customer}-2"), "p")).await.unwrap();
        positions.extend(made.into_inner().positions);
        if index % 4 != 0 {
            let kept =
                client.keep_promise(keep_promise(&customer, &format!("{customer}-3"), "p")).await.unwrap();
            positions.extend(kept.into_inner().positions);
        } else {
            let broken = client
                .report_broken_promise(v1::ReportBrokenPromiseRequest {
                    header: header(&customer, &format!("{customer}-3"), None),
                    promise_id: "p".into(),
                    detection: v1::BreakDetection::CustomerReport as i32,
                    reason: "no call".into(),
                })
                .await
                .unwrap();
            positions.extend(broken.into_inner().positions);
        }
    }
    let trust_before = trust_of(&standing, "c-0", &positions).await;

    // verify beside the running ledger and standing.
    let verified = covenant(&["verify", "--data", &data]);
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));
    let text = stdout(&verified);
    assert!(text.contains("stream index: 20 customers' streams agree with the events"), "{text}");
    assert!(
        text.contains("projections: standing equals a replay of the log up to its checkpoints (60 events)"),
        "{text}"
    );

    // A running ledger holds the log: backup says so.
    let refused = covenant(&["backup", "--data", &data, dir.path().join("refused").to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("in use by a running ledger"), "{}", stderr(&refused));

    // A running standing holds its store: replay says so.
    let refused = covenant(&["replay", "--data", &data, "--projection", "standing"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("standing is running"), "{}", stderr(&refused));

    // Standing stopped, one promise record removed behind its back: verify names the family.
    assert!(standing.terminate(Duration::from_secs(10)).unwrap(), "standing stops cleanly");
    {
        let store = covenant_store::Store::open(
            &dir.path().join("standing"),
            &covenant_standing::store::FAMILIES,
            PARTITIONS,
        )
        .unwrap();
        let mut first = None;
        store
            .visit(covenant_standing::store::PROMISES, b"", b"", |key, _| {
                first = Some(key.to_vec());
                Ok(false)
            })
            .unwrap();
        let mut batch = store.batch();
        batch.delete(covenant_standing::store::PROMISES, &first.unwrap()).unwrap();
        batch.commit().unwrap();
    }
    let tampered = covenant(&["verify", "--data", &data]);
    assert!(!tampered.status.success(), "a tampered projection fails verify");
    assert!(
        stdout(&tampered).contains("projections: BAD: standing's `promises` differs"),
        "{}",
        stdout(&tampered)
    );

    // replay rebuilds it; verify passes; standing restarts on it and answers as before.
    let replayed = covenant(&["replay", "--data", &data, "--projection", "standing"]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert!(stderr(&replayed).contains("replay standing: 60 events applied"), "{}", stderr(&replayed));
    assert!(
        !dir.path().join("standing.replay").exists() && !dir.path().join("standing.before-replay").exists()
    );
    let verified = covenant(&["verify", "--data", &data]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    let standing = start_standing(dir.path(), &nats);
    assert_eq!(trust_of(&standing, "c-0", &positions).await, trust_before);
    drop(standing);

    // Backup (ledger stopped), restore into a new data directory, same events.
    assert!(ledger.terminate(Duration::from_secs(10)).unwrap(), "the ledger stops cleanly");
    let backup = dir.path().join("backup");
    let backed_up = covenant(&["backup", "--data", &data, backup.to_str().unwrap()]);
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    let restored_data = dir.path().join("restored");
    let restored_arg = restored_data.to_str().unwrap();
    let restored = covenant(&["restore", "--backup", backup.to_str().unwrap(), "--data", restored_arg]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert!(stdout(&restored).contains("restored 60 records"), "{}", stdout(&restored));
    let again = covenant(&["restore", "--backup", backup.to_str().unwrap(), "--data", restored_arg]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already holds a log"), "{}", stderr(&again));
    let not_a_backup =
        covenant(&["restore", "--backup", dir.path().join("nats").to_str().unwrap(), "--data", restored_arg]);
    assert!(
        stderr(&not_a_backup).contains("is not a backup made by `covenant backup`"),
        "{}",
        stderr(&not_a_backup)
    );
    let verified = covenant(&["verify", "--data", restored_arg]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    assert!(stdout(&verified).contains("projections: no standing store"), "{}", stdout(&verified));
    let original = covenant(&["export", "--format", "jsonl", "--data", &data, "--out", "-"]);
    let copy = covenant(&["export", "--format", "jsonl", "--data", restored_arg, "--out", "-"]);
    assert!(original.status.success() && copy.status.success());
    assert_eq!(original.stdout.iter().filter(|byte| **byte == b'\n').count(), 60);
    assert_eq!(original.stdout, copy.stdout, "the restored log holds the same events");
}

/// Appends `customers` customers' journeys (registration, promise, kept, interaction; with
/// `open_items` also a second promise and a complaint left open) to the log in `dir`, from 32
/// tasks at once, without fsync.
async fn fill_log(dir: &Path, customers: usize, from: usize, open_items: bool) {
    use covenant_domain::{CommandId, CustomerId, Timestamp, sample};
    use covenant_log::{AppendRequest, Durability, EventLog, LogConfig};
    let config = LogConfig::new(dir).with_partitions(PARTITIONS).with_durability(Durability::Buffered);
    let log = std::sync::Arc::new(EventLog::open(config).await.unwrap());
    let millis = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap();
    let now = Timestamp::from_unix_millis("now", millis - 3_600_000).unwrap();
    let due = Timestamp::from_unix_millis("due", millis + 30 * 86_400_000).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                for index in (from + task..from + customers).step_by(32) {
                    let customer = CustomerId::new(format!("cust-{index}")).unwrap();
                    let mut commands = vec![
                        sample::register("Pat").unwrap(),
                        sample::promise("p-1", due).unwrap(),
                        sample::keep("p-1").unwrap(),
                        sample::interaction("i-1", 120).unwrap(),
                    ];
                    if open_items {
                        commands.push(sample::promise("p-2", due).unwrap());
                        commands.push(sample::complaint("c-1").unwrap());
                    }
                    for (step, command) in commands.into_iter().enumerate() {
                        log.append(AppendRequest {
                            customer_id: customer.clone(),
                            command_id: CommandId::new(format!("{customer}-{step}")).unwrap(),
                            expected_version: None,
                            metadata: sample::metadata(now).unwrap(),
                            command,
                        })
                        .await
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    std::sync::Arc::into_inner(log).expect("every task is done").close().await.unwrap();
}

#[tokio::test]
async fn a_replay_killed_half_way_leaves_the_old_store_and_the_next_replay_starts_afresh() {
    let dir = test_dir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    fill_log(&dir.path().join("log"), 2_000, 0, false).await;
    let first = covenant(&["replay", "--data", &data, "--projection", "all"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("replay standing and watchdog: 8000 events applied"),
        "{}",
        stderr(&first)
    );

    // More history, then a replay killed while it builds its new stores.
    fill_log(&dir.path().join("log"), 10_000, 2_000, false).await;
    let fresh = dir.path().join("standing.replay");
    let mut replay = Command::new(COVENANT)
        .args(["replay", "--data", &data, "--projection", "standing"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !fresh.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    replay.kill().unwrap();
    replay.wait().unwrap();
    assert!(fresh.exists(), "the kill came while the replay was still building (else: a larger log)");

    // The old store is whole: it equals a replay of the log up to its own checkpoints (the
    // first 8,000 events' worth of partitions' offsets).
    let verified = covenant(&["verify", "--data", &data]);
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));
    assert!(
        stdout(&verified)
            .contains("projections: standing equals a replay of the log up to its checkpoints (8000 events)"),
        "{}",
        stdout(&verified)
    );

    // The next replay throws the half-built store away and builds all 48,000 events.
    let again = covenant(&["replay", "--data", &data, "--projection", "standing"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("replay standing: 48000 events applied"), "{}", stderr(&again));
    assert!(!fresh.exists());
    let verified = covenant(&["verify", "--data", &data]);
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));
    assert!(stdout(&verified).contains("(48000 events)"), "{}", stdout(&verified));
}

/// Copies the directory tree at `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_replay_of_all_in_one_pass_builds_what_the_replays_one_at_a_time_build() {
    use covenant_store::{META, Store};
    let one_pass = test_dir().unwrap();
    fill_log(&one_pass.path().join("log"), 1_500, 0, true).await;
    let apart = test_dir().unwrap();
    copy_tree(one_pass.path(), apart.path());
    let (one_pass_data, apart_data) =
        (one_pass.path().to_str().unwrap().to_owned(), apart.path().to_str().unwrap().to_owned());

    let all = covenant(&["replay", "--data", &one_pass_data, "--projection", "all"]);
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(stderr(&all).contains("replay standing and watchdog: 9000 events applied"), "{}", stderr(&all));
    for projection in ["standing", "watchdog"] {
        let replayed = covenant(&["replay", "--data", &apart_data, "--projection", projection]);
        assert!(replayed.status.success(), "{}", stderr(&replayed));
        let said = stderr(&replayed);
        assert!(said.contains(&format!("replay {projection}: 9000 events applied")), "{said}");
    }
    assert!(
        !one_pass.path().join("standing.replay").exists()
            && !one_pass.path().join("watchdog.replay").exists()
    );

    let stores = [
        ("standing", covenant_standing::store::FAMILIES.as_slice(), covenant_standing::store::PROMISES),
        ("watchdog", covenant_watchdog::keys::FAMILIES, covenant_watchdog::keys::DEADLINES),
    ];
    for (name, families, filled) in stores {
        let left = Store::open_read_only(&one_pass.path().join(name)).unwrap();
        let right = Store::open_read_only(&apart.path().join(name)).unwrap();
        // Each customer's second promise is open: the family cannot be empty on either side.
        assert!(left.entries(filled).unwrap().count() >= 1_500, "{name}: {filled} is filled");
        for family in families.iter().copied().chain([META]) {
            assert_eq!(
                left.first_difference(&right, family).unwrap(),
                None,
                "{name}: `{family}` differs between the one-pass replay and the replay of {name} alone"
            );
        }
    }
}
