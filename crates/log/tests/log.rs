//! The log's behaviour over a real RocksDB in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use covenant_domain::{Position, RejectionKind, Timestamp, sample};
use covenant_log::{Durability, EventLog, LogConfig, LogError};

fn ts(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis_clamped(millis)
}

#[tokio::test]
async fn appends_are_read_back_by_stream_and_by_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 4).await;
    register(&log, "alice").await;
    let made =
        log.append(request("alice", "c2", sample::promise("p1", ts(T0 + 3_600_000)).unwrap())).await.unwrap();
    let kept = log.append(request("alice", "c3", sample::keep("p1").unwrap())).await.unwrap();
    assert_eq!((made.stream_version, kept.stream_version), (2, 3));
    assert_eq!(kept.first_offset, made.first_offset + 1);
    assert!(!kept.deduplicated);

    let stream = log.read_stream(customer("alice"), 1, 100).await.unwrap();
    let types: Vec<_> = stream.iter().map(|event| event.event_type()).collect();
    assert_eq!(types, ["customer_registered", "promise_made", "promise_kept"]);
    assert_eq!(stream.iter().map(|event| event.stream_version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(stream[2].command_id.as_str(), "c3");
    assert_eq!(stream[2].recorded_at, ts(T0));
    assert_eq!(log.read_stream(customer("alice"), 3, 100).await.unwrap().len(), 1);

    let partition = customer("alice").partition(4);
    let records = log.read_partition(partition, 0, 100).await.unwrap();
    assert_eq!(records.len(), 3);
    for (offset, record) in records.iter().enumerate() {
        assert_eq!(record.position, Position { partition, offset: offset as u64 });
    }
    assert!(log.read_stream(customer("nobody"), 1, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_retried_command_id_returns_the_first_outcome_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    register(&log, "bob").await;
    let command = sample::promise("p1", ts(T0 + 60_000)).unwrap();
    let first = log.append(request("bob", "make-p1", command.clone())).await.unwrap();
    let retry = log.append(request("bob", "make-p1", command.clone())).await.unwrap();
    assert!(retry.deduplicated);
    assert_eq!(
        (retry.first_offset, retry.stream_version, retry.event_count),
        (first.first_offset, first.stream_version, 1)
    );
    assert_eq!(log.read_stream(customer("bob"), 1, 10).await.unwrap().len(), 2);

    // The same id with a different command is refused, not silently deduplicated.
    let other = sample::promise("p2", ts(T0 + 60_000)).unwrap();
    let error = log.append(request("bob", "make-p1", other)).await.unwrap_err();
    assert!(matches!(error, LogError::CommandIdReused { .. }), "{error}");

    // Outcomes are durable: a retry after a restart is still recognised.
    log.close().await.unwrap();
    let log = open(dir.path(), 2).await;
    let after_restart = log.append(request("bob", "make-p1", command)).await.unwrap();
    assert!(after_restart.deduplicated);
    assert_eq!(after_restart.first_offset, first.first_offset);
    assert_eq!(log.read_stream(customer("bob"), 1, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn retries_inside_one_group_commit_are_deduplicated_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    register(&log, "carol").await;
    let command = sample::interaction("i1", 50).unwrap();
    let attempts: Vec<_> = (0..32)
        .map(|_| {
            tokio::spawn({
                let log = log.clone();
                let command = command.clone();
                async move { log.append(request("carol", "same-id", command)).await.unwrap() }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|outcome| !outcome.deduplicated).count(), 1);
    assert!(outcomes.iter().all(|outcome| outcome.first_offset == outcomes[0].first_offset));
    assert_eq!(log.read_stream(customer("carol"), 1, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn expected_version_mismatch_names_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    let mut first = request("dave", "reg", sample::register("Dave").unwrap());
    first.expected_version = Some(0);
    log.append(first).await.unwrap();
    let mut stale = request("dave", "i1", sample::interaction("i1", 10).unwrap());
    stale.expected_version = Some(0);
    match log.append(stale).await.unwrap_err() {
        LogError::VersionConflict { expected: 0, current: 1, .. } => {}
        other => panic!("expected a version conflict, got {other}"),
    }
    let mut fresh = request("dave", "i2", sample::interaction("i2", 10).unwrap());
    fresh.expected_version = Some(1);
    assert_eq!(log.append(fresh).await.unwrap().stream_version, 2);
}

#[tokio::test]
async fn concurrent_writers_with_expected_version_get_one_winner_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    register(&log, "erin").await;
    const WRITERS: usize = 16;
    const TARGET: u64 = 200;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut believed = 1;
            let mut attempt = 0;
            while believed < TARGET {
                attempt += 1;
                let id = format!("w{writer}-a{attempt}");
                let mut request = request("erin", &id, sample::interaction(&id, 20).unwrap());
                request.expected_version = Some(believed);
                match log.append(request).await {
                    Ok(outcome) => {
                        wins.push((outcome.stream_version, id));
                        believed = outcome.stream_version;
                    }
                    Err(LogError::VersionConflict { current, .. }) => believed = current,
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
            wins
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(task.await.unwrap());
    }
    let versions: BTreeSet<u64> = winners.iter().map(|(version, _)| *version).collect();
    assert_eq!(versions.len(), winners.len(), "two writers won the same version");
    assert_eq!(versions, (2..=TARGET).collect(), "a version was skipped");
    let stream = log.read_stream(customer("erin"), 1, 1000).await.unwrap();
    assert_eq!(stream.len() as u64, TARGET);
    for (version, command_id) in &winners {
        assert_eq!(stream[(*version - 1) as usize].command_id.as_str(), command_id);
    }
}

#[tokio::test]
async fn rejected_commands_append_nothing_and_do_not_disturb_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    register(&log, "fay").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let command = if i % 2 == 0 {
                sample::keep("missing").unwrap()
            } else {
                sample::interaction("i", 10).unwrap()
            };
            log.append(request("fay", &format!("c{i}"), command)).await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(LogError::Rejected(rejection)) => assert_eq!(rejection.kind(), RejectionKind::NotFound),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(accepted, 25);
    let records = log.read_partition(0, 0, 1000).await.unwrap();
    assert_eq!(records.len(), 26);
    let report = log.verify().await.unwrap();
    assert!(report.iter().all(|partition| partition.problem.is_none()));
}

#[tokio::test]
async fn commands_before_registration_are_rejected_by_the_domain() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    let error = log.append(request("ghost", "c1", sample::keep("p").unwrap())).await.unwrap_err();
    assert!(
        matches!(&error, LogError::Rejected(rejection) if rejection.kind() == RejectionKind::NotFound),
        "{error}"
    );
    assert!(log.read_partition(0, 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_partition_count_is_fixed_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), 4).await.close().await.unwrap();
    let error = EventLog::open(config(dir.path(), 8)).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, LogError::PartitionCountMismatch { stored: 4, requested: 8, .. }), "{message}");
    assert!(message.contains("has 4 partitions, but 8 were asked for"), "{message}");
    // Opening without a count takes the stored one.
    let log = EventLog::open(LogConfig::new(dir.path().join("log"))).await.unwrap();
    assert_eq!(log.partition_count(), 4);
}

#[tokio::test]
async fn a_second_process_cannot_open_a_log_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path(), 2).await;
    let error = EventLog::open(config(dir.path(), 2)).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().to_lowercase().contains("lock"), "{error}");
}

#[tokio::test]
async fn hash_chains_continue_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    for i in 0..10 {
        register(&log, &format!("cust-{i}")).await;
    }
    log.close().await.unwrap();
    let log = open(dir.path(), 2).await;
    for i in 0..10 {
        log.append(request(&format!("cust-{i}"), "i", sample::interaction("i", 30).unwrap())).await.unwrap();
    }
    let report = log.verify().await.unwrap();
    assert_eq!(report.iter().map(|partition| partition.records).sum::<u64>(), 20);
    assert!(report.iter().all(|partition| partition.problem.is_none()), "{report:?}");
}

/// Copies a closed database directory (RocksDB keeps no subdirectories).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A customer's decision state is stored every `head_snapshot_every` events; after a reopen
/// (and whenever it is not cached) it is the last snapshot with the events after it folded in.
#[tokio::test]
async fn a_reopened_writer_decides_on_the_snapshot_and_the_events_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 1);
    config.head_snapshot_every = 4;
    let due = ts(T0 + 3_600_000);
    let log = EventLog::open_with_clock(config.clone(), ManualClock::starting_at(T0)).await.unwrap();
    register(&log, "alice").await;
    // Version 2: a promise before the snapshot at version 4 (and at 8).
    log.append(request("alice", "p-early", sample::promise("early", due).unwrap())).await.unwrap();
    for i in 3..=9 {
        log.append(request("alice", &format!("i{i}"), sample::interaction(&format!("i{i}"), 30).unwrap()))
            .await
            .unwrap();
    }
    // Version 10: a promise after the last snapshot, known only from the events.
    let late = log.append(request("alice", "p-late", sample::promise("late", due).unwrap())).await.unwrap();
    assert_eq!(late.stream_version, 10);
    log.close().await.unwrap();

    for snapshot_every in [4, 1, 1000] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&dir.path().join("log"), &copy.path().join("log"));
        std::fs::copy(dir.path().join("master.key"), copy.path().join("master.key")).unwrap();
        let mut config = config.clone();
        config.path = copy.path().join("log");
        config.head_snapshot_every = snapshot_every;
        let log = EventLog::open_with_clock(config, ManualClock::starting_at(T0)).await.unwrap();
        assert_eq!(log.reader().stream_version(&customer("alice")).unwrap(), 10, "every {snapshot_every}");
        // The stream goes on at version 11: the expected version is the whole stream's.
        let mut keep_late = request("alice", "k-late", sample::keep("late").unwrap());
        keep_late.expected_version = Some(10);
        let kept =
            log.append(keep_late).await.unwrap_or_else(|error| panic!("every {snapshot_every}: {error}"));
        assert_eq!(kept.stream_version, 11);
        // Both promises are open in the reloaded state: each can be kept once.
        log.append(request("alice", "k-early", sample::keep("early").unwrap())).await.unwrap();
        let again =
            log.append(request("alice", "k-late-2", sample::keep("late").unwrap())).await.unwrap_err();
        assert!(matches!(again, LogError::Rejected(_)), "{again}");
        let retried =
            log.append(request("alice", "p-late", sample::promise("late", due).unwrap())).await.unwrap();
        assert!(retried.deduplicated && retried.stream_version == 10);
        for partition in log.verify().await.unwrap() {
            assert!(partition.problem.is_none(), "{partition:?}");
        }
        let (problem, customers) = log.reader().verify_streams().unwrap();
        assert_eq!((problem, customers), (None, 1), "every {snapshot_every}");
        log.close().await.unwrap();
    }
}

#[tokio::test]
async fn the_tail_delivers_new_commits_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    register(&log, "gus").await;
    let mut tail = log.tail(0, 0).unwrap();
    let first = tail.next_batch().await.unwrap();
    assert_eq!(first.len(), 1);
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                log.append(request("gus", &format!("c{i}"), sample::interaction("i", 10).unwrap()))
                    .await
                    .unwrap();
            }
        })
    };
    let mut offsets = vec![0];
    while offsets.len() < 101 {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(10), tail.next_batch())
            .await
            .unwrap()
            .unwrap();
        offsets.extend(batch.iter().map(|event| event.position.offset));
    }
    writer.await.unwrap();
    assert_eq!(offsets, (0..101).collect::<Vec<u64>>());
    assert_eq!(tail.next_offset(), 101);
}

/// A tail that keeps up reads the newest records from memory (the writer keeps the last 2,048 of
/// each partition); one that is further behind reads the database. Both give the records the
/// database holds, each checked to be at its own position.
#[tokio::test]
async fn a_tail_reads_the_same_records_from_memory_and_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    for customer in ["ann", "bob", "cy"] {
        register(&log, customer).await;
    }
    let partition = customer("ann").partition(2);
    for i in 0..3_000 {
        let customer = ["ann", "bob", "cy"][i % 3];
        log.append(request(customer, &format!("c{i}"), sample::interaction(&format!("i{i}"), 10).unwrap()))
            .await
            .unwrap();
    }
    let stored = log.read_partition(partition, 0, 10_000).await.unwrap();
    // From the start (the first batch is older than what memory keeps), and from near the end.
    let end = stored.len() as u64;
    for from in [0, end - 1_500].into_iter().chain(end - 20..end) {
        let mut tail = log.tail(partition, from).unwrap();
        let mut read = Vec::new();
        while tail.next_offset() < stored.len() as u64 {
            read.extend(tail.next_batch().await.unwrap());
        }
        assert_eq!(read, stored[from as usize..], "tail from {from}");
    }
    // Records committed while the tail waits come from memory too.
    let mut tail = log.tail(partition, stored.len() as u64).unwrap();
    let more = log.append(request("ann", "last", sample::interaction("last", 10).unwrap())).await.unwrap();
    let batch = tail.next_batch().await.unwrap();
    assert_eq!(batch, log.read_partition(partition, more.first_offset, 1).await.unwrap());
    assert_eq!(batch[0].command_id.as_str(), "last");
}

#[tokio::test]
async fn an_online_backup_reopens_as_a_consistent_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    for i in 0..20 {
        register(&log, &format!("c{i}")).await;
    }
    // Back up while another task keeps appending.
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                log.append(request(
                    &format!("c{}", i % 20),
                    &format!("x{i}"),
                    sample::interaction("i", 40).unwrap(),
                ))
                .await
                .unwrap();
            }
        })
    };
    let backup_dir = dir.path().join("backup");
    log.backup(&backup_dir).await.unwrap();
    writer.await.unwrap();
    assert!(log.backup(&backup_dir).await.unwrap_err().to_string().contains("already exists"));

    let restored = EventLog::open(LogConfig::new(&backup_dir)).await.unwrap();
    assert_eq!(restored.partition_count(), 2);
    let report = restored.verify().await.unwrap();
    assert!(report.iter().all(|partition| partition.problem.is_none()), "{report:?}");
    let mut restored_total = 0;
    for partition in 0..2 {
        let original = log.read_partition(partition, 0, 10_000).await.unwrap();
        let copy = restored.read_partition(partition, 0, 10_000).await.unwrap();
        assert_eq!(copy[..], original[..copy.len()], "the backup is a prefix of the log");
        restored_total += copy.len();
    }
    assert!(restored_total >= 20);
    // The restored log accepts appends and chains onto its own head.
    restored.append(request("c0", "after-restore", sample::interaction("i", 10).unwrap())).await.unwrap();
    assert!(restored.verify().await.unwrap().iter().all(|partition| partition.problem.is_none()));
}

#[tokio::test]
async fn old_command_outcomes_can_be_purged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(T0);
    let log = EventLog::open_with_clock(config(dir.path(), 1), Arc::clone(&clock) as _).await.unwrap();
    register(&log, "hal").await;
    clock.advance(86_400_000);
    log.append(request("hal", "recent", sample::interaction("i", 10).unwrap())).await.unwrap();
    let purged = log.purge_command_outcomes(ts(T0 + 1)).await.unwrap();
    assert_eq!(purged, 1);
    // The recent outcome is kept: its retry is still deduplicated.
    let retry = log.append(request("hal", "recent", sample::interaction("i", 10).unwrap())).await.unwrap();
    assert!(retry.deduplicated);
}

#[tokio::test]
async fn appends_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    let other_handle = log.clone();
    log.close().await.unwrap();
    let error = other_handle.append(request("ivy", "c", sample::register("Ivy").unwrap())).await.unwrap_err();
    assert!(matches!(error, LogError::Closed));
}

#[tokio::test]
async fn a_read_only_reader_works_beside_the_writer_and_sees_the_log_as_opened() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    for i in 0..5 {
        register(&log, &format!("r{i}")).await;
    }
    let path = dir.path().join("log");
    let reader = tokio::task::spawn_blocking(move || covenant_log::LogReader::open_read_only(path))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.partition_count(), 2);
    register(&log, "after").await;
    let seen = tokio::task::spawn_blocking(move || {
        let total: usize = (0..2).map(|p| reader.read_partition(p, 0, 100).unwrap().len()).sum();
        let verified = reader.verify().unwrap();
        (total, verified)
    })
    .await
    .unwrap();
    assert_eq!(seen.0, 5, "the reader sees the log as it was when opened");
    assert!(seen.1.iter().all(|partition| partition.problem.is_none()));
    let missing = covenant_log::LogReader::open_read_only(dir.path().join("nothing-here")).unwrap_err();
    assert!(missing.to_string().contains("no event log at"), "{missing}");
}

#[tokio::test]
async fn cursors_are_kept_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(LogConfig::new(dir.path().join("log"))).await.unwrap();
    assert_eq!(log.cursor("relay/3").await.unwrap(), None);
    log.set_cursor("relay/3", 41).await.unwrap();
    log.set_cursor("relay/3", 42).await.unwrap();
    log.set_cursor("relay/4", 7).await.unwrap();
    log.close().await.unwrap();
    let log = EventLog::open(LogConfig::new(dir.path().join("log"))).await.unwrap();
    assert_eq!(log.cursor("relay/3").await.unwrap(), Some(42));
    assert_eq!(log.cursor("relay/4").await.unwrap(), Some(7));
    log.close().await.unwrap();
}

/// A cursor advanced by many tasks at once ends at the highest value any of them gave; an advance
/// to a lower value leaves it and says where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advanced_cursors_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(LogConfig::new(dir.path().join("log"))).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let log = log.clone();
        // Each task advances in its own order: some values arrive after higher ones.
        tasks.push(tokio::spawn(async move {
            for step in 0..20u64 {
                let value = (step * 7 + task * 13) % 320;
                let stored = log.advance_cursor("relay/0", value).await.unwrap();
                assert!(stored >= value, "advanced to {value}, stored {stored}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let highest = (0..16u64).flat_map(|task| (0..20u64).map(move |step| (step * 7 + task * 13) % 320)).max();
    assert_eq!(log.cursor("relay/0").await.unwrap(), highest);
    let highest = highest.unwrap();
    assert_eq!(log.advance_cursor("relay/0", 3).await.unwrap(), highest);
    assert_eq!(log.cursor("relay/0").await.unwrap(), Some(highest));
    assert_eq!(log.advance_cursor("relay/0", highest + 1).await.unwrap(), highest + 1);
    log.close().await.unwrap();
}

/// On a multi-thread runtime the callers are answered by the log's reply task (not directly from
/// the writer and sync threads): every caller gets its own answer, in both durabilities, and the
/// log closes cleanly after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_on_a_multi_thread_runtime_are_each_answered() {
    for durability in [Durability::Buffered, Durability::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(config(dir.path(), 4).with_durability(durability)).await.unwrap();
        let mut tasks = Vec::new();
        for producer in 0..16 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let customer_id = format!("customer-{producer}");
                register(&log, &customer_id).await;
                for n in 0..40u64 {
                    let command_id = format!("{customer_id}-i{n}");
                    let outcome = log
                        .append(request(
                            &customer_id,
                            &command_id,
                            sample::interaction(&command_id, 40).unwrap(),
                        ))
                        .await
                        .unwrap();
                    // Each caller's own answer: its stream's next version.
                    assert_eq!(outcome.stream_version, n + 2, "{command_id} ({durability:?})");
                    assert!(!outcome.deduplicated);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(log.write_stats().commands, 16 * 41, "{durability:?}");
        log.close().await.unwrap();
    }
}

/// Several customers' streams read together (one sorted read per partition) are each exactly the
/// stream read alone, in the order asked, with an empty one for a customer without events.
#[tokio::test]
async fn streams_read_together_equal_each_stream_read_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 3).await;
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    for name in &names {
        register(&log, name).await;
    }
    // Interleaved journeys, so each customer's events are spread over their partition.
    for round in 0..4 {
        for (i, name) in names.iter().enumerate() {
            if (i + round) % 3 != 0 {
                let promise = format!("p{round}");
                let command = sample::promise(&promise, ts(T0 + 3_600_000)).unwrap();
                log.append(request(name, &format!("{name}-{round}"), command)).await.unwrap();
            }
        }
    }
    log.close().await.unwrap();
    let path = dir.path().join("log");
    let reader = covenant_log::LogReader::open_read_only(path).unwrap();
    let mut asked: Vec<_> = names.iter().rev().map(|name| customer(name)).collect();
    asked.insert(3, customer("nobody"));
    let together = reader.read_streams(&asked).unwrap();
    assert_eq!(together.len(), asked.len());
    for (who, stream) in asked.iter().zip(&together) {
        assert_eq!(stream, &reader.read_stream(who, 1, usize::MAX).unwrap(), "{who}");
        assert!(stream.iter().all(|event| &event.customer_id == who));
    }
    assert!(together[3].is_empty());
    assert!(together.iter().map(Vec::len).sum::<usize>() > names.len() * 3);
}

/// Streams dense enough in their partition are read by walking an iterator (stepping over the
/// records between, seeking across long gaps) instead of point lookups: the same streams, and a
/// record missing under the index is an error naming the customer either way.
#[tokio::test]
async fn streams_read_by_walking_the_partition_equal_each_stream_read_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    let interaction = |i: usize| sample::interaction(&format!("i{i}"), 40).unwrap();
    // early's 40 events, then 300 of the crowd, then late's 40: a gap of 300 records between.
    for name in ["early", "late"] {
        register(&log, name).await;
    }
    for i in 0..40 {
        log.append(request("early", &format!("early-{i}"), interaction(i))).await.unwrap();
    }
    let crowd: Vec<String> = (0..30).map(|i| format!("crowd-{i}")).collect();
    for name in &crowd {
        register(&log, name).await;
    }
    for round in 0..9 {
        for name in &crowd {
            log.append(request(name, &format!("{name}-{round}"), interaction(round))).await.unwrap();
        }
    }
    for i in 0..40 {
        log.append(request("late", &format!("late-{i}"), interaction(i))).await.unwrap();
    }
    log.close().await.unwrap();
    let path = dir.path().join("log");
    {
        let reader = covenant_log::LogReader::open_read_only(&path).unwrap();
        let alone = |who: &covenant_domain::CustomerId| reader.read_stream(who, 1, usize::MAX).unwrap();
        // Everyone: every record of the partition (a walk step by step).
        let everyone: Vec<_> =
            ["late", "early"].into_iter().chain(crowd.iter().map(String::as_str)).map(customer).collect();
        let together = reader.read_streams(&everyone).unwrap();
        for (who, stream) in everyone.iter().zip(&together) {
            assert_eq!(stream, &alone(who), "{who}");
        }
        assert_eq!(together.iter().map(Vec::len).sum::<usize>(), 41 + 41 + 300);
        // early and late: 82 records over a range of 382, one seek across the crowd.
        let ends = [customer("early"), customer("late")];
        let together = reader.read_streams(&ends).unwrap();
        assert_eq!(together[0].len(), 41);
        assert_eq!((together[0].clone(), together[1].clone()), (alone(&ends[0]), alone(&ends[1])));
        // A few of the crowd: looked up, not walked (30 records over a range of ~270).
        let few: Vec<_> = crowd[..3].iter().map(|name| customer(name)).collect();
        for (who, stream) in few.iter().zip(reader.read_streams(&few).unwrap()) {
            assert_eq!(stream, alone(who), "{who}");
        }
    }

    // Delete one of late's records behind the log's back (offset 2 + 40 + 30 + 270 + 5).
    {
        let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, &names).unwrap();
        let events = db.cf_handle("events").unwrap();
        let mut key = 0u16.to_be_bytes().to_vec();
        key.extend_from_slice(&347u64.to_be_bytes());
        assert!(db.get_cf(events, &key).unwrap().is_some());
        db.delete_cf(events, &key).unwrap();
    }
    let reader = covenant_log::LogReader::open_read_only(&path).unwrap();
    for asked in [vec![customer("early"), customer("late")], vec![customer("late")]] {
        let error = reader.read_streams(&asked).unwrap_err();
        match error {
            LogError::Corrupt { position, reason } => {
                assert_eq!(position, Position { partition: 0, offset: 347 }, "{asked:?}");
                assert!(reason.contains("customer late"), "{reason}");
            }
            other => panic!("{asked:?}: expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn on_partitions_runs_each_partition_once_and_stops_at_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 7).await;
    let reader = log.reader();
    for threads in [1, 3, 16] {
        let seen = std::sync::Mutex::new(Vec::new());
        let total = reader
            .on_partitions(threads, &|partition| -> Result<u64, std::io::Error> {
                seen.lock().unwrap().push(partition);
                Ok(u64::from(partition) + 1)
            })
            .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<u16>>(), "{threads} threads");
        assert_eq!(total, (1..=7).sum::<u64>());
    }
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let failed = reader.on_partitions(1, &|partition| -> Result<u64, std::io::Error> {
        taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if partition == 2 { Err(std::io::Error::other("partition 2 failed")) } else { Ok(1) }
    });
    assert_eq!(failed.unwrap_err().to_string(), "partition 2 failed");
    assert_eq!(taken.into_inner(), 3, "no partition is taken after an error");
    log.close().await.unwrap();
}

#[tokio::test]
async fn write_stats_count_every_command_group_commit_and_fsync() {
    // With two writers both hand their batches to the one sync stage: every command of either is
    // still answered after an fsync.
    for writers in [1, 2] {
        fsynced_commands_are_counted(writers).await;
    }

    // Buffered appends are counted without fsyncs.
    let buffered_dir = tempfile::tempdir().unwrap();
    let buffered = open(buffered_dir.path(), 4).await;
    register(&buffered, "ann").await;
    let stats = buffered.write_stats();
    assert_eq!((stats.commands, stats.group_commits, stats.fsyncs), (1, 1, 0));
}

async fn fsynced_commands_are_counted(writers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 4).with_durability(covenant_log::Durability::Fsync);
    config.writers = Some(writers);
    let log = EventLog::open_with_clock(config, ManualClock::starting_at(T0)).await.unwrap();
    assert_eq!(log.write_stats(), covenant_log::WriteStats::default());
    let customers: [&'static str; 8] = ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal"];
    let appends: Vec<_> = customers
        .into_iter()
        .map(|id| {
            let log = log.clone();
            tokio::spawn(async move { register(&log, id).await })
        })
        .collect();
    for append in appends {
        append.await.unwrap();
    }
    // A retry and a refusal are commands too: each is decided in a group commit and answered
    // after an fsync.
    register(&log, "ann").await;
    let refused = log.append(request("nobody", "x1", sample::keep("p1").unwrap())).await;
    assert!(refused.is_err());

    let stats = log.write_stats();
    let commands = customers.len() as u64 + 2;
    assert_eq!(stats.commands, commands);
    assert_eq!(stats.synced_commands, commands, "every command answered after an fsync: {stats:?}");
    assert!((1..=commands).contains(&stats.group_commits), "{stats:?}");
    assert!((1..=stats.group_commits).contains(&stats.fsyncs), "{stats:?}");
    assert!(stats.fsync_time > std::time::Duration::ZERO && stats.writer_busy > std::time::Duration::ZERO);
    log.close().await.unwrap();
}
