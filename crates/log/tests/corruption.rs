//! Bytes altered behind the log's back: `verify` names the first bad position and reads of it
//! are errors, never panics or wrong answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use common::*;
use covenant_domain::{Position, sample};
use covenant_log::{EventLog, LogError};

/// Opens the log's RocksDB directly and rewrites the record at `(partition, offset)`.
fn tamper(path: &std::path::Path, partition: u16, offset: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, &names).unwrap();
    let events = db.cf_handle("events").unwrap();
    let mut key = partition.to_be_bytes().to_vec();
    key.extend_from_slice(&offset.to_be_bytes());
    let mut value = db.get_cf(events, &key).unwrap().expect("record to tamper with exists");
    change(&mut value);
    db.put_cf(events, &key, value).unwrap();
}

async fn log_with_records(dir: &std::path::Path) -> (u16, Vec<covenant_domain::CustomerId>) {
    let log = open(dir, 1).await;
    let mut customers = Vec::new();
    for i in 0..10 {
        let id = format!("cust-{i}");
        register(&log, &id).await;
        log.append(request(&id, "i1", sample::interaction("i1", 40).unwrap())).await.unwrap();
        customers.push(customer(&id));
    }
    log.close().await.unwrap();
    (0, customers)
}

#[tokio::test]
async fn a_flipped_byte_is_named_by_verify_and_refused_by_reads() {
    for (byte_index, what) in [(40usize, "body"), (5, "prev_hash"), (0, "format")] {
        let dir = tempfile::tempdir().unwrap();
        let (partition, customers) = log_with_records(dir.path()).await;
        tamper(&dir.path().join("log"), partition, 7, |value| value[byte_index] ^= 0x01);
        let log = open(dir.path(), 1).await;

        let report = log.verify().await.unwrap();
        let (position, reason) =
            report[0].problem.clone().unwrap_or_else(|| panic!("{what}: corruption not found"));
        assert_eq!(position, Position { partition, offset: 7 }, "{what}: {reason}");
        assert_eq!(report[0].records, 7, "{what}: the records before it are good");

        match log.read_partition(partition, 0, 100).await {
            Err(LogError::Corrupt { position, .. }) => assert_eq!(position.offset, 7, "{what}"),
            other => panic!("{what}: expected a corruption error, got {other:?}"),
        }
        // Records before the bad one still read.
        assert_eq!(log.read_partition(partition, 0, 7).await.unwrap().len(), 7);
        // The owner of offset 7 cannot read their stream; nobody gets a wrong answer.
        let mut failed = 0;
        for customer_id in &customers {
            match log.read_stream(customer_id.clone(), 1, 10).await {
                Ok(events) => assert!(events.iter().all(|event| event.position.offset != 7)),
                Err(LogError::Corrupt { position, .. }) => {
                    assert_eq!(position.offset, 7);
                    failed += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(failed, 1, "{what}");
    }
}

#[tokio::test]
async fn a_consistently_rehashed_forgery_breaks_the_chain_at_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = log_with_records(dir.path()).await;
    // A forger who edits a record and recomputes its checksum still breaks the chain.
    tamper(&dir.path().join("log"), partition, 4, |value| {
        let body_end = value.len() - 8;
        value[body_end - 1] ^= 0x01;
        let checksum = xxhash_rust::xxh3::xxh3_64(&value[..body_end]);
        value[body_end..].copy_from_slice(&checksum.to_le_bytes());
    });
    let log = open(dir.path(), 1).await;
    let report = log.verify().await.unwrap();
    let (position, reason) = report[0].problem.clone().expect("forgery detected");
    // Record 4 either no longer decodes, or decodes and record 5's prev_hash exposes it.
    assert!(position.offset == 4 || position.offset == 5, "{position:?}: {reason}");
}

#[tokio::test]
async fn a_truncated_value_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = log_with_records(dir.path()).await;
    tamper(&dir.path().join("log"), partition, 3, |value| value.truncate(10));
    let log = open(dir.path(), 1).await;
    let report = log.verify().await.unwrap();
    assert_eq!(report[0].problem.as_ref().map(|(position, _)| position.offset), Some(3));
    assert!(log.read_partition(partition, 3, 1).await.unwrap_err().to_string().contains("offset 3"));
}

#[tokio::test]
async fn a_corrupt_last_record_stops_the_log_from_opening_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = log_with_records(dir.path()).await;
    tamper(&dir.path().join("log"), partition, 19, |value| value[30] ^= 0xff);
    let error = EventLog::open(config(dir.path(), 1)).await.unwrap_err();
    assert!(matches!(error, LogError::Corrupt { position: Position { offset: 19, .. }, .. }), "{error}");
}

/// Opens the log's RocksDB directly and changes its stream index.
fn tamper_index(path: &std::path::Path, change: impl FnOnce(&rocksdb::DB, &rocksdb::ColumnFamily)) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, &names).unwrap();
    change(&db, db.cf_handle("stream_index").unwrap());
}

/// A `stream_index` key: `[len][customer][version u64 BE]`.
fn index_key(customer: &str, version: u64) -> Vec<u8> {
    let mut key = vec![customer.len() as u8];
    key.extend_from_slice(customer.as_bytes());
    key.extend_from_slice(&version.to_be_bytes());
    key
}

#[tokio::test]
async fn the_stream_index_is_checked_against_the_events() {
    let check = |dir: &std::path::Path| {
        covenant_log::LogReader::open_read_only(dir.join("log")).unwrap().verify_streams().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path()).await;
    assert_eq!(check(dir.path()), (None, 10), "a log written by the log is consistent");

    // An entry gone.
    tamper_index(&dir.path().join("log"), |db, index| db.delete_cf(index, index_key("cust-3", 2)).unwrap());
    let (problem, _) = check(dir.path());
    let problem = problem.expect("the missing entry is found");
    assert_eq!(problem.customer, "cust-3");
    assert!(problem.reason.contains("no entry for version 2"), "{problem:?}");
    assert!(problem.position.is_some());

    // An entry pointing at another customer's event.
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path()).await;
    tamper_index(&dir.path().join("log"), |db, index| {
        db.put_cf(index, index_key("cust-5", 1), 0u64.to_be_bytes()).unwrap();
    });
    let problem = check(dir.path()).0.expect("the wrong entry is found");
    assert_eq!(problem.customer, "cust-5");
    assert!(problem.reason.contains("puts version 1 at offset 0"), "{problem:?}");

    // An entry with no event behind it.
    let dir = tempfile::tempdir().unwrap();
    log_with_records(dir.path()).await;
    tamper_index(&dir.path().join("log"), |db, index| {
        db.put_cf(index, index_key("cust-5", 3), 99u64.to_be_bytes()).unwrap();
    });
    let problem = check(dir.path()).0.expect("the extra entry is found");
    assert!(problem.reason.contains("holds 21 entries for 20 events"), "{problem:?}");
}

/// Opens the log's RocksDB directly and changes its stored stream heads.
fn tamper_heads(path: &std::path::Path, change: impl FnOnce(&rocksdb::DB, &rocksdb::ColumnFamily)) {
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, &names).unwrap();
    change(&db, db.cf_handle("streams").unwrap());
}

/// A log whose heads are stored after every event: cust-0 has three events, cust-1 and cust-2
/// two, at offsets 0-1 and 6, 2-3, 4-5.
async fn log_with_a_head_per_event(dir: &std::path::Path) {
    let mut config = config(dir, 1);
    config.head_snapshot_every = 1;
    let log = EventLog::open_with_clock(config, ManualClock::starting_at(T0)).await.unwrap();
    for i in 0..3 {
        let id = format!("cust-{i}");
        register(&log, &id).await;
        log.append(request(&id, "i1", sample::interaction("i1", 40).unwrap())).await.unwrap();
    }
    log.append(request("cust-0", "i2", sample::interaction("i2", 40).unwrap())).await.unwrap();
    log.close().await.unwrap();
}

#[tokio::test]
async fn stored_stream_heads_are_checked_against_the_events() {
    let check = |dir: &std::path::Path| {
        covenant_log::LogReader::open_read_only(dir.join("log")).unwrap().verify_streams().unwrap()
    };
    let copy_head = |from: &'static str, to: &'static str| {
        move |db: &rocksdb::DB, heads: &rocksdb::ColumnFamily| {
            let head = db.get_cf(heads, from).unwrap().unwrap();
            db.put_cf(heads, to, head).unwrap();
        }
    };
    let dir = tempfile::tempdir().unwrap();
    log_with_a_head_per_event(dir.path()).await;
    assert_eq!(check(dir.path()), (None, 3), "heads written by the log are consistent");

    // A snapshot beyond the customer's events (cust-0's, at version 3, for cust-1 at 2).
    tamper_heads(&dir.path().join("log"), copy_head("cust-0", "cust-1"));
    let problem = check(dir.path()).0.expect("the head ahead of the events is found");
    assert_eq!(problem.customer, "cust-1");
    assert!(problem.reason.contains("snapshot at version 3, the events end at version 2"), "{problem:?}");

    // A snapshot at a version the customer has, naming another event (cust-2's).
    let dir = tempfile::tempdir().unwrap();
    log_with_a_head_per_event(dir.path()).await;
    tamper_heads(&dir.path().join("log"), copy_head("cust-2", "cust-1"));
    let problem = check(dir.path()).0.expect("the head at the wrong offset is found");
    assert_eq!(problem.customer, "cust-1");
    assert!(
        problem.reason.contains("snapshot at version 2 offset 5, that event is at offset 3"),
        "{problem:?}"
    );

    // A head that does not decode; a missing head is fine (short streams have none).
    let dir = tempfile::tempdir().unwrap();
    log_with_a_head_per_event(dir.path()).await;
    tamper_heads(&dir.path().join("log"), |db, heads| {
        db.put_cf(heads, "cust-2", [2u8, 0xff, 0xff]).unwrap();
        db.delete_cf(heads, "cust-1").unwrap();
    });
    let problem = check(dir.path()).0.expect("the unreadable head is found");
    assert_eq!(problem.customer, "cust-2");
    assert!(problem.reason.contains("does not decode"), "{problem:?}");
    // The log still opens and decides from the events alone.
    let log = open(dir.path(), 1).await;
    let appended = log.append(request("cust-2", "i9", sample::interaction("i9", 40).unwrap())).await.unwrap();
    assert_eq!(appended.stream_version, 3);
    let appended = log.append(request("cust-1", "i9", sample::interaction("i9", 40).unwrap())).await.unwrap();
    assert_eq!(appended.stream_version, 3);
}
