//! Personal data at rest, on a real RocksDB: never on disk in clear, readable with the
//! customer's key, and gone for good once the customer is erased — from the live log, from its
//! files, from a backup taken afterwards and after a reopen — while the events remain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{customer, open, request};
use covenant_domain::{Command, Event, Timestamp, sample};
use covenant_log::{LogReader, PersonalDataState};

const NAME: &str = "Ada Lovelace";
const EMAIL: &[u8] = b"Ada.Lovelace@example.com";
const PROMISE: &[u8] = b"call back about the invoice";

/// Every file under `dir` (table files, write-ahead logs, manifests, …) that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|window| window == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// The wrapped data key of `customer_id` as stored (read with RocksDB directly).
fn stored_wrapped_key(log_dir: &Path, customer_id: &str) -> Option<Vec<u8>> {
    let families = ["events", "streams", "stream_index", "commands", "keys", "meta"];
    let db =
        rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), log_dir, families, false).unwrap();
    db.get_cf(db.cf_handle("keys").unwrap(), customer_id).unwrap()
}

#[tokio::test]
async fn personal_data_is_sealed_on_disk_and_erasure_shreds_it_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    log.append(request("ada", "reg", sample::register(NAME).unwrap())).await.unwrap();
    let due = Timestamp::from_unix_millis_clamped(common::T0 + 86_400_000);
    log.append(request("ada", "promise", sample::promise("p-1", due).unwrap())).await.unwrap();
    log.append(request("bob", "reg", sample::register("Bob Builder").unwrap())).await.unwrap();

    // What everyone reads: the events, without personal data.
    let public = log.read_stream(customer("ada"), 1, 100).await.unwrap();
    assert_eq!(public.len(), 2);
    let Event::CustomerRegistered { name, contact_points, timezone, .. } = &public[0].event else { panic!() };
    assert!(name.as_str().is_empty() && contact_points.is_empty(), "sealed fields are empty in clear");
    assert_eq!(timezone.as_str(), "Europe/London", "what is not personal stays");

    // With the key: everything, exactly as recorded.
    let revealed = log.read_stream_revealed(customer("ada"), 1, 100).await.unwrap();
    assert_eq!(
        revealed.iter().map(|(_, state)| *state).collect::<Vec<_>>(),
        [PersonalDataState::Revealed; 2]
    );
    let Event::CustomerRegistered { name, contact_points, .. } = &revealed[0].0.event else { panic!() };
    assert_eq!(name.as_str(), NAME);
    assert_eq!(contact_points[0].value.as_str().as_bytes(), EMAIL);
    let Event::PromiseMade { description, .. } = &revealed[1].0.event else { panic!() };
    assert_eq!(description.as_str().as_bytes(), PROMISE);

    // On disk (write-ahead log and, after the checkpoint's flush, table files): never in clear.
    let before = dir.path().join("backup-before");
    log.backup(&before).await.unwrap();
    for secret in [NAME.as_bytes(), EMAIL, PROMISE] {
        assert_eq!(files_containing(&dir.path().join("log"), secret), Vec::<String>::new());
        assert_eq!(files_containing(&before, secret), Vec::<String>::new());
    }
    // The backup holds the wrapped key (so the search below can find one when it is there).
    let wrapped = stored_wrapped_key(&before, "ada").expect("ada has a data key");
    assert!(!files_containing(&before, &wrapped).is_empty(), "the scan finds a key that is there");
    assert!(files_containing(&before, b"master").is_empty() && !before.join("master.key").exists());

    // Erasure: the key goes in the same batch as the event, then out of every live file.
    log.append(request("ada", "erase", Command::EraseCustomer)).await.unwrap();
    let after = log.read_stream_revealed(customer("ada"), 1, 100).await.unwrap();
    assert_eq!(after.len(), 3, "the history stays");
    assert_eq!(after[0].1, PersonalDataState::Erased);
    assert_eq!(after[1].1, PersonalDataState::Erased);
    assert_eq!(after[2].1, PersonalDataState::None, "customer_erased itself holds nothing personal");
    let Event::CustomerRegistered { name, .. } = &after[0].0.event else { panic!() };
    assert!(name.as_str().is_empty());
    // Another customer is untouched.
    let bob = log.read_stream_revealed(customer("bob"), 1, 100).await.unwrap();
    assert_eq!(bob[0].1, PersonalDataState::Revealed);
    // Erased customers take no more commands.
    assert!(log.append(request("ada", "again", sample::register(NAME).unwrap())).await.is_err());

    let backup_after = dir.path().join("backup-after");
    log.backup(&backup_after).await.unwrap();
    assert_eq!(files_containing(&dir.path().join("log"), &wrapped), Vec::<String>::new(), "live files");
    assert_eq!(files_containing(&backup_after, &wrapped), Vec::<String>::new(), "a later backup");
    assert!(log.verify().await.unwrap().iter().all(|partition| partition.problem.is_none()));
    log.close().await.unwrap();

    // A backup taken afterwards, read with the master key: the person is gone there too.
    let reader = LogReader::open_read_only(&backup_after).unwrap();
    let from_backup = reader.read_stream_revealed(&customer("ada"), 1, 100).unwrap();
    assert_eq!(from_backup.len(), 3);
    assert!(from_backup[..2].iter().all(|(_, state)| *state == PersonalDataState::Erased));
    drop(reader);

    // Reopened: still erased. Without the master key a log with keys refuses to open.
    let log = open(dir.path(), 2).await;
    let reopened = log.read_stream_revealed(customer("ada"), 1, 100).await.unwrap();
    assert_eq!(reopened[0].1, PersonalDataState::Erased);
    assert_eq!(
        log.read_stream_revealed(customer("bob"), 1, 1).await.unwrap()[0].1,
        PersonalDataState::Revealed
    );
    log.close().await.unwrap();
    std::fs::rename(dir.path().join("master.key"), dir.path().join("elsewhere.key")).unwrap();
    let refused = covenant_log::EventLog::open(common::config(dir.path(), 2)).await.unwrap_err();
    assert!(refused.to_string().contains("master key"), "{refused}");
}
