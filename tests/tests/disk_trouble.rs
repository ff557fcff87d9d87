#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Disk trouble, as a black box: a real `ledger-process` over real gRPC, with its data
//! directory — the log and, beside it, `master.key` — on a small tmpfs mounted for the test.
//!
//! - **Full disk**: a filler file takes every free byte. Commands keep being acknowledged while
//!   the WAL's last page has room; from the first refusal on, every command (single RPCs and an
//!   `AppendBatch`) must fail with `UNAVAILABLE` and a message saying the disk is full. Reads go
//!   on, and each customer's stream must hold exactly the acknowledged commands (nothing of a
//!   refused one, versions dense). The filler is deleted and, without a restart, retries of the
//!   refused commands with the same command ids must each be recorded once (not "deduplicated":
//!   nothing of them was in the log), within a bounded wait.
//! - **Read-only disk**: `mount -o remount,ro` of the tmpfs is refused with EBUSY while RocksDB
//!   holds its WAL open for writing (measured: no file system goes read-only under a writer), so
//!   the test stacks a read-only bind mount of the tmpfs over itself: every path under the data
//!   directory is then on a read-only mount (creating, renaming, opening for writing fail with
//!   EROFS), while the WAL the ledger already holds stays writable, as the kernel would not take
//!   it away. The ledger notices at its next new file; the test asks for one with an erasure,
//!   which flushes every column family (a new WAL, new table files). From then on every command
//!   must fail with `UNAVAILABLE` saying the file system is read-only, until `remount,rw`.
//! - **Concurrent clients through a full disk**: eight clients, each retrying its refused
//!   command with the same id, while the disk fills and is freed. A command refused after its
//!   group commit was written (the WAL sync failed) may answer `deduplicated` on its retry; every
//!   command must still be in the log once, and the relay must have published exactly the log's
//!   events to JetStream (no offset skipped or repeated across the reopen).
//!
//! Both end with the ledger stopped and the log opened read-only: every hash chain verifies, the
//! stream index and heads agree with the events, and the events are exactly the acknowledged
//! commands, each once, at the acknowledged positions — also after every acknowledged command
//! was sent again (each answered `deduplicated` with its first position).
//!
//! Needs root (or CAP_SYS_ADMIN) for `mount`: without it the tests fail, saying so.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use covenant_bus::NatsServer;
use covenant_domain::CustomerId;
use covenant_proto::v1;
use covenant_proto::v1::batch_command::Command as Cmd;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_tests::processes::{LedgerProcess, test_dir};
use covenant_tests::requests::{header, interaction, register};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");

/// How long the ledger may take to accept commands again once the disk recovers.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

fn run(program: &str, args: &[&str]) -> (bool, String) {
    match Command::new(program).args(args).output() {
        Ok(output) => (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        ),
        Err(error) => (false, format!("could not run {program}: {error}")),
    }
}

/// A tmpfs mounted for one test, unmounted (lazily, so even with the ledger's files open) when
/// dropped, also when the test panics.
struct Disk {
    dir: PathBuf,
    /// Mounts stacked on `dir` (the tmpfs, then the read-only bind mount if any).
    mounts: usize,
    filler: Option<std::fs::File>,
}

impl Disk {
    fn mount(dir: &Path, megabytes: u32) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let target = dir.to_str().unwrap();
        let (mounted, output) =
            run("mount", &["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0700"), "tmpfs", target]);
        assert!(
            mounted,
            "this test needs root (or CAP_SYS_ADMIN) to mount a {megabytes} MiB tmpfs at {target} for the ledger's \
             data directory; `mount -t tmpfs` failed: {output}"
        );
        Self { dir: dir.to_owned(), mounts: 1, filler: None }
    }

    fn target(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    /// Takes every free byte with a filler file (1 MiB writes, then smaller, down to one byte).
    fn fill(&mut self) {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("filler")).unwrap();
        let chunk = vec![0x5a_u8; 1 << 20];
        for size in [1 << 20, 1 << 16, 4096, 512, 64, 1] {
            while file.write_all(&chunk[..size]).is_ok() {}
        }
        self.filler = Some(file);
        self.top_up();
        assert_eq!(self.free_bytes(), 0, "the filler should leave no free byte");
    }

    /// Takes whatever was freed since (the ledger may delete a file of its own).
    fn top_up(&mut self) {
        if let Some(file) = self.filler.as_mut() {
            for size in [4096, 64, 1] {
                while file.write_all(&vec![0x5a_u8; size]).is_ok() {}
            }
        }
    }

    fn remove_filler(&mut self) {
        self.filler = None;
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }

    fn free_bytes(&self) -> u64 {
        let (ok, output) = run("df", &["-B1", "--output=avail", self.target()]);
        assert!(ok, "df: {output}");
        output.lines().nth(1).and_then(|line| line.trim().parse().ok()).unwrap()
    }

    /// Every path under `dir` becomes read-only (see the module docs).
    fn make_read_only(&mut self) {
        let target = self.target().to_owned();
        let (bound, output) = run("mount", &["--bind", &target, &target]);
        assert!(bound, "mount --bind {target}: {output}");
        self.mounts += 1;
        let (remounted, output) = run("mount", &["-o", "remount,bind,ro", &target]);
        assert!(remounted, "mount -o remount,bind,ro {target}: {output}");
        let probe = std::fs::File::create(self.dir.join("probe"));
        assert!(probe.is_err(), "{target} should be read-only now");
    }

    fn make_writable(&mut self) {
        let target = self.target().to_owned();
        let (remounted, output) = run("mount", &["-o", "remount,bind,rw", &target]);
        assert!(remounted, "mount -o remount,bind,rw {target}: {output}");
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.filler = None;
        for _ in 0..self.mounts {
            let (unmounted, output) = run("umount", &["-l", self.target()]);
            if !unmounted {
                eprintln!("umount -l {}: {output}", self.dir.display());
            }
        }
    }
}

/// Where an acknowledged command's event is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    customer: String,
    partition: u32,
    offset: u64,
    version: u64,
}

type Answer = Result<v1::AppendResponse, (Code, String)>;

/// Everything sent and what came of it.
#[derive(Default)]
struct Book {
    /// Command id (unique across customers here) → the command as sent.
    sent: BTreeMap<String, v1::BatchCommand>,
    /// Command id → where its event is.
    acked: BTreeMap<String, Ack>,
    customers: BTreeSet<String>,
    refused: usize,
}

fn ids(command: &v1::BatchCommand) -> (String, String) {
    let header = match command.command.as_ref() {
        Some(Cmd::RecordInteraction(request)) => request.header.as_ref(),
        Some(Cmd::RegisterCustomer(request)) => request.header.as_ref(),
        Some(Cmd::EraseCustomer(request)) => request.header.as_ref(),
        other => panic!("the test sends no {other:?}"),
    };
    let header = header.unwrap();
    (header.customer_id.clone(), header.command_id.clone())
}

fn erase(customer: &str, command: &str) -> v1::BatchCommand {
    v1::BatchCommand {
        command: Some(Cmd::EraseCustomer(v1::EraseCustomerRequest {
            header: header(customer, command, None),
        })),
    }
}

fn registration(customer: &str, command: &str) -> v1::BatchCommand {
    v1::BatchCommand { command: Some(Cmd::RegisterCustomer(register(customer, command))) }
}

async fn send_one(client: &mut LedgerClient<Channel>, command: &v1::BatchCommand) -> Answer {
    let answer = match command.command.clone() {
        Some(Cmd::RecordInteraction(request)) => client.record_interaction(request).await,
        Some(Cmd::RegisterCustomer(request)) => client.register_customer(request).await,
        Some(Cmd::EraseCustomer(request)) => client.erase_customer(request).await,
        other => panic!("the test sends no {other:?}"),
    };
    answer.map(tonic::Response::into_inner).map_err(|status| (status.code(), status.message().to_owned()))
}

async fn send_batch(client: &mut LedgerClient<Channel>, commands: &[v1::BatchCommand]) -> Vec<Answer> {
    let response = client
        .append_batch(v1::AppendBatchRequest { commands: commands.to_vec() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), commands.len());
    response
        .results
        .into_iter()
        .map(|result| match result.result {
            Some(v1::batch_result::Result::Appended(appended)) => Ok(appended),
            Some(v1::batch_result::Result::Error(error)) => Err((Code::from(error.code), error.message)),
            None => panic!("a batch item without a result"),
        })
        .collect()
}

impl Book {
    /// Records an accepted command; a command is acknowledged with a new position only once.
    fn ack(&mut self, command: &v1::BatchCommand, response: &v1::AppendResponse, what: &str) {
        let (_, command_id) = ids(command);
        assert!(
            !response.deduplicated,
            "{what} ({command_id}) was answered `deduplicated` on its first success"
        );
        self.ack_first_result(command, response, what);
    }

    /// [`Self::ack`] for a command whose earlier refusal may have come after it was written (a
    /// failed sync): its first success may be a deduplicated one.
    fn ack_first_result(&mut self, command: &v1::BatchCommand, response: &v1::AppendResponse, what: &str) {
        let (customer, command_id) = ids(command);
        assert_eq!(response.positions.len(), 1, "{what}: every command here records one event");
        let position = response.positions[0];
        let ack = Ack {
            customer: customer.clone(),
            partition: position.partition,
            offset: position.offset,
            version: response.stream_version,
        };
        assert!(
            self.acked.insert(command_id.clone(), ack).is_none(),
            "{command_id} acknowledged twice as new"
        );
        self.sent.insert(command_id, command.clone());
        self.customers.insert(customer);
    }

    /// Checks a refusal: UNAVAILABLE, saying `needle`.
    fn refused(&mut self, command: &v1::BatchCommand, answer: &Answer, needle: &str, what: &str) {
        let (customer, command_id) = ids(command);
        match answer {
            Ok(response) => {
                panic!("{what}: {command_id} of {customer} was accepted ({response:?}) while {needle}")
            }
            Err((code, message)) => {
                assert_eq!(*code, Code::Unavailable, "{what}: {command_id}: {message}");
                assert!(
                    message.contains(needle) && message.contains("cannot write to its disk"),
                    "{what}: the refusal of {command_id} should say {needle:?}: {message}"
                );
            }
        }
        self.sent.insert(command_id, command.clone());
        self.customers.insert(customer);
        self.refused += 1;
    }

    /// Per customer, the acknowledged commands in version order: (version, command id,
    /// partition, offset).
    fn expected_streams(&self) -> BTreeMap<String, Vec<(u64, String, u32, u64)>> {
        let mut streams: BTreeMap<String, Vec<(u64, String, u32, u64)>> =
            self.customers.iter().map(|customer| (customer.clone(), Vec::new())).collect();
        for (command_id, ack) in &self.acked {
            streams.get_mut(&ack.customer).unwrap().push((
                ack.version,
                command_id.clone(),
                ack.partition,
                ack.offset,
            ));
        }
        for stream in streams.values_mut() {
            stream.sort();
        }
        streams
    }
}

/// Over gRPC `EventLog.ReadStream` (while the disk is in trouble): each customer's stream is
/// exactly the acknowledged commands, versions 1, 2, 3, … — nothing of a refused command.
async fn assert_streams_over_grpc(reader: &mut EventLogClient<Channel>, book: &Book, when: &str) {
    for (customer, expected) in book.expected_streams() {
        let response = reader
            .read_stream(v1::ReadStreamRequest {
                customer_id: customer.clone(),
                from_version: 0,
                max_events: 0,
                include_personal_data: false,
            })
            .await
            .unwrap_or_else(|status| panic!("{when}: reading {customer}'s stream failed: {status:?}"))
            .into_inner();
        let found: Vec<(u64, String, u32, u64)> = response
            .events
            .iter()
            .map(|event| {
                let position = event.position.unwrap();
                (event.stream_version, event.command_id.clone(), position.partition, position.offset)
            })
            .collect();
        assert_eq!(found, expected, "{when}: {customer}'s stream against the acknowledged commands");
        let versions: Vec<u64> = found.iter().map(|(version, ..)| *version).collect();
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "{when}: {customer}: versions dense"
        );
        assert_eq!(response.stream_version, versions.len() as u64, "{when}: {customer}: stream version");
    }
}

/// With the ledger stopped: the log, opened read-only, verifies and holds exactly the
/// acknowledged commands, each once, at their positions.
async fn assert_log_on_disk(log_dir: PathBuf, book: &Book) {
    let expected = book.expected_streams();
    let total = book.acked.len() as u64;
    tokio::task::spawn_blocking(move || {
        let reader = covenant_log::LogReader::open_read_only(&log_dir).unwrap();
        for partition in reader.verify().unwrap() {
            assert_eq!(partition.problem, None, "hash chain of partition {}", partition.partition);
        }
        let (problem, customers) = reader.verify_streams().unwrap();
        assert_eq!(problem, None, "stream index and heads against the events");
        assert_eq!(customers, expected.len() as u64, "customers with events");
        let mut seen = BTreeSet::new();
        for (customer, expected) in &expected {
            let events =
                reader.read_stream(&CustomerId::new(customer.as_str()).unwrap(), 1, 100_000).unwrap();
            let found: Vec<(u64, String, u32, u64)> = events
                .iter()
                .map(|event| {
                    (
                        event.stream_version,
                        event.command_id.to_string(),
                        u32::from(event.position.partition),
                        event.position.offset,
                    )
                })
                .collect();
            assert_eq!(&found, expected, "{customer}'s stream on disk against the acknowledged commands");
            for (_, command_id, ..) in found {
                assert!(seen.insert(command_id.clone()), "{command_id} is in the log twice");
            }
        }
        let stored: u64 =
            (0..reader.partition_count()).map(|partition| reader.partition_end(partition).unwrap()).sum();
        assert_eq!(stored, total, "events in the log against acknowledged commands");
    })
    .await
    .unwrap();
}

/// Sends the refused commands again, with their command ids, until each is recorded (at most
/// [`RECOVERY_BOUND`]); every answer before that must still be `UNAVAILABLE`. Returns the time
/// to the first and to the last success from `since`, and the refusals on the way.
async fn retry_until_recorded(
    client: &mut LedgerClient<Channel>,
    book: &mut Book,
    mut pending: Vec<v1::BatchCommand>,
    may_be_recorded: &BTreeSet<String>,
    since: Instant,
) -> (Duration, Duration, usize) {
    let mut first = None;
    let mut refusals = 0;
    while !pending.is_empty() {
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "the ledger did not accept {} retried commands within {RECOVERY_BOUND:?} of the disk recovering",
            pending.len()
        );
        let mut still = Vec::new();
        for command in pending {
            match send_one(client, &command).await {
                Ok(response) => {
                    first.get_or_insert_with(|| since.elapsed());
                    if may_be_recorded.contains(&ids(&command).1) {
                        book.ack_first_result(&command, &response, "a retried command");
                    } else {
                        book.ack(&command, &response, "a retried command");
                    }
                }
                Err((Code::Unavailable, _)) => {
                    refusals += 1;
                    still.push(command);
                }
                Err((code, message)) => {
                    panic!("a retry of {:?} failed with {code:?}: {message}", ids(&command))
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (first.unwrap_or_default(), since.elapsed(), refusals)
}

/// After recovery: a fresh batch is recorded whole, and every acknowledged command sent again
/// is answered from its first result.
async fn assert_recovered(client: &mut LedgerClient<Channel>, book: &mut Book, round: &str) {
    let fresh: Vec<v1::BatchCommand> = (0..12)
        .map(|n| interaction(&format!("{round}-customer-{}", n % 5), &format!("{round}-after-{n}")))
        .collect();
    for (command, answer) in fresh.iter().zip(send_batch(client, &fresh).await) {
        let response = answer.unwrap_or_else(|error| panic!("{round}: a batch after recovery: {error:?}"));
        book.ack(command, &response, "a batch item after recovery");
    }
    let again: Vec<(String, v1::BatchCommand)> =
        book.acked.keys().map(|command_id| (command_id.clone(), book.sent[command_id].clone())).collect();
    for chunk in again.chunks(500) {
        let commands: Vec<v1::BatchCommand> = chunk.iter().map(|(_, command)| command.clone()).collect();
        for ((command_id, _), answer) in chunk.iter().zip(send_batch(client, &commands).await) {
            let response =
                answer.unwrap_or_else(|error| panic!("{round}: resending {command_id}: {error:?}"));
            let ack = &book.acked[command_id];
            assert!(response.deduplicated, "{round}: {command_id} sent again was recorded again");
            assert_eq!(
                (response.positions[0].partition, response.positions[0].offset, response.stream_version),
                (ack.partition, ack.offset, ack.version),
                "{round}: {command_id} sent again should answer its first result"
            );
        }
    }
}

/// Waits (at most 15 s) until the ledger's health for `covenant.v1.Ledger` is `status`.
async fn wait_for_ledger_health(ledger: &LedgerProcess, status: ServingStatus, when: &str) {
    let channel = Channel::from_shared(ledger.endpoint()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let request = tonic_health::pb::HealthCheckRequest { service: "covenant.v1.Ledger".into() };
        let now = health.check(request).await.unwrap().into_inner().status;
        if now == status as i32 {
            return;
        }
        assert!(Instant::now() < deadline, "the ledger's health is {now}, not {status:?}, {when}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn clients(ledger: &LedgerProcess) -> (LedgerClient<Channel>, EventLogClient<Channel>) {
    (
        LedgerClient::connect(ledger.endpoint()).await.unwrap(),
        EventLogClient::connect(ledger.endpoint()).await.unwrap(),
    )
}

/// Registers six customers and records a few interactions for each (all must be accepted).
async fn record_history(client: &mut LedgerClient<Channel>, book: &mut Book, round: &str) {
    let mut commands: Vec<v1::BatchCommand> = (0..6)
        .map(|n| registration(&format!("{round}-customer-{n}"), &format!("{round}-register-{n}")))
        .collect();
    commands.extend(
        (0..24).map(|n| interaction(&format!("{round}-customer-{}", n % 6), &format!("{round}-before-{n}"))),
    );
    // Registrations first: the interactions need the customers.
    for chunk in [&commands[..6], &commands[6..]] {
        for (command, answer) in chunk.iter().zip(send_batch(client, chunk).await) {
            book.ack(command, &answer.unwrap(), "history");
        }
    }
}

#[tokio::test]
async fn a_full_disk_refuses_commands_with_unavailable_and_recovers_without_a_restart() {
    let dir = test_dir().unwrap();
    let mut disk = Disk::mount(&dir.path().join("disk"), 24);
    let log_dir = disk.dir.join("log");
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = LedgerProcess::start(Path::new(LEDGER), &log_dir, &nats.url(), "fsync", "off").unwrap();
    assert!(disk.dir.join("master.key").exists(), "the master key should be on the test's disk too");
    let (mut client, mut reader) = clients(&ledger).await;
    let mut book = Book::default();
    record_history(&mut client, &mut book, "full").await;

    disk.fill();
    // Commands go on while the WAL's last page has room; from the first refusal on, every
    // command must be refused, saying why.
    let needle = "the disk is full";
    let mut refused_singles = Vec::new();
    let mut acked_while_full = 0;
    for n in 0..400 {
        disk.top_up();
        let command = interaction(&format!("full-customer-{}", n % 6), &format!("full-while-{n}"));
        let answer = send_one(&mut client, &command).await;
        if let (true, Ok(response)) = (refused_singles.is_empty(), &answer) {
            book.ack(&command, response, "a command while the last page had room");
            acked_while_full += 1;
            continue;
        }
        book.refused(&command, &answer, needle, "a single command on the full disk");
        refused_singles.push(command);
        if refused_singles.len() == 20 {
            break;
        }
    }
    assert_eq!(refused_singles.len(), 20, "the ledger accepted 400 commands on a full disk");
    // A new customer, and a batch across the customers: every item refused.
    disk.top_up();
    let newcomer = registration("full-newcomer", "full-newcomer-register");
    let answer = send_one(&mut client, &newcomer).await;
    book.refused(&newcomer, &answer, needle, "a registration on the full disk");
    let batch: Vec<v1::BatchCommand> = (0..12)
        .map(|n| interaction(&format!("full-customer-{}", n % 6), &format!("full-batch-{n}")))
        .collect();
    for (command, answer) in batch.iter().zip(send_batch(&mut client, &batch).await) {
        book.refused(command, &answer, needle, "a batch item on the full disk");
    }
    // Reads go on, and show nothing of the refused commands.
    assert_streams_over_grpc(&mut reader, &book, "disk full").await;
    // The Ledger service says it cannot take commands (EventLog still serves).
    wait_for_ledger_health(&ledger, ServingStatus::NotServing, "while the disk is full").await;

    disk.remove_filler();
    let freed = Instant::now();
    // The ledger recovers by itself, without a command arriving to try.
    wait_for_ledger_health(&ledger, ServingStatus::Serving, "after the disk was freed, with no command sent")
        .await;
    let healthy_after = freed.elapsed();
    let mut pending = refused_singles;
    pending.push(newcomer);
    pending.extend(batch);
    let retried = pending.len();
    let (first, all, refusals) =
        retry_until_recorded(&mut client, &mut book, pending, &BTreeSet::new(), freed).await;
    assert_recovered(&mut client, &mut book, "full").await;
    assert_streams_over_grpc(&mut reader, &book, "after recovery").await;
    eprintln!(
        "disk full: {acked_while_full} commands acknowledged after the disk filled (the WAL's last page), \
         {} refused with UNAVAILABLE; SERVING again {healthy_after:?} after the filler was deleted (no command sent); \
         the first command was accepted in {first:?} \
         ({refusals} refusals meanwhile) and all {retried} retried commands in {all:?}, each recorded once",
        book.refused
    );

    assert!(ledger.terminate(Duration::from_secs(20)).unwrap(), "the ledger should stop cleanly");
    assert_log_on_disk(log_dir, &book).await;
}

#[tokio::test]
async fn a_read_only_disk_refuses_commands_with_unavailable_and_recovers_when_writable_again() {
    let dir = test_dir().unwrap();
    let mut disk = Disk::mount(&dir.path().join("disk"), 64);
    let log_dir = disk.dir.join("log");
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = LedgerProcess::start(Path::new(LEDGER), &log_dir, &nats.url(), "fsync", "off").unwrap();
    let (mut client, mut reader) = clients(&ledger).await;
    let mut book = Book::default();
    record_history(&mut client, &mut book, "ro").await;

    disk.make_read_only();
    // The WAL the ledger holds still takes writes: these are durable and may be acknowledged.
    for n in 0..3 {
        let command = interaction(&format!("ro-customer-{n}"), &format!("ro-open-wal-{n}"));
        let response = send_one(&mut client, &command).await.unwrap();
        book.ack(&command, &response, "a command into the WAL still open");
    }
    // An erasure flushes every column family: RocksDB needs a new WAL and new table files.
    let erasure = erase("ro-customer-5", "ro-erase-5");
    let mut pending = Vec::new();
    let may_be_recorded = BTreeSet::from(["ro-erase-5".to_owned()]);
    match send_one(&mut client, &erasure).await {
        // Written to the open WAL and synced before the flush failed: recorded.
        Ok(response) => book.ack(&erasure, &response, "the erasure"),
        Err(error) => {
            book.refused(&erasure, &Err(error), "read-only", "the erasure");
            pending.push(erasure);
        }
    }
    let needle = "the file system is read-only";
    for n in 0..20 {
        let command = interaction(&format!("ro-customer-{}", n % 5), &format!("ro-while-{n}"));
        let answer = send_one(&mut client, &command).await;
        book.refused(&command, &answer, needle, "a single command on the read-only disk");
        pending.push(command);
    }
    let batch: Vec<v1::BatchCommand> =
        (0..12).map(|n| interaction(&format!("ro-customer-{}", n % 5), &format!("ro-batch-{n}"))).collect();
    for (command, answer) in batch.iter().zip(send_batch(&mut client, &batch).await) {
        book.refused(command, &answer, needle, "a batch item on the read-only disk");
    }
    pending.extend(batch);
    assert_streams_over_grpc(&mut reader, &book, "read-only disk").await;

    disk.make_writable();
    let writable = Instant::now();
    let retried = pending.len();
    let (first, all, refusals) =
        retry_until_recorded(&mut client, &mut book, pending, &may_be_recorded, writable).await;
    assert_recovered(&mut client, &mut book, "ro").await;
    assert_streams_over_grpc(&mut reader, &book, "after recovery").await;
    eprintln!(
        "read-only disk: {} commands refused with UNAVAILABLE; after `remount,rw` the first command was accepted \
         in {first:?} ({refusals} refusals meanwhile) and all {retried} retried commands in {all:?}, each recorded once",
        book.refused
    );

    assert!(ledger.terminate(Duration::from_secs(20)).unwrap(), "the ledger should stop cleanly");
    assert_log_on_disk(log_dir, &book).await;
}

/// What one concurrent client got: command id → (where its event is, answered `deduplicated`
/// on its first success, refusals before that).
type ClientLog = Vec<(String, Ack, bool, usize)>;

/// Sends interactions for `customer` one after the other, each until it is accepted (a refusal
/// must be `UNAVAILABLE` from the disk trouble), until `stop` is set.
async fn client_loop(
    endpoint: String,
    customer: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refusals: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> ClientLog {
    use std::sync::atomic::Ordering;
    let mut client = LedgerClient::connect(endpoint).await.unwrap();
    let mut log = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let command = interaction(&customer, &format!("{customer}-{n}"));
        let mut refused = 0;
        let sent = Instant::now();
        let response = loop {
            match send_one(&mut client, &command).await {
                Ok(response) => break response,
                Err((Code::Unavailable, message)) => {
                    assert!(message.contains("cannot write to its disk"), "{customer}-{n}: {message}");
                    // The disk is full for a second or two: far less than this.
                    assert!(
                        sent.elapsed() < RECOVERY_BOUND,
                        "{customer}-{n} was still refused after {RECOVERY_BOUND:?}: {message}"
                    );
                    refused += 1;
                    refusals.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((code, message)) => panic!("{customer}-{n}: {code:?}: {message}"),
            }
        };
        assert!(
            !response.deduplicated || refused > 0,
            "{customer}-{n} was answered `deduplicated` although it was never sent before"
        );
        let position = response.positions[0];
        let ack = Ack {
            customer: customer.clone(),
            partition: position.partition,
            offset: position.offset,
            version: response.stream_version,
        };
        log.push((format!("{customer}-{n}"), ack, response.deduplicated, refused));
    }
    log
}

/// Every event of `COVENANT_EVENTS` by (partition, offset), once it holds `expected` messages
/// (at most 30 s), checked again after a pause for late duplicates.
async fn relayed_positions(nats_url: &str, expected: u64) -> Vec<(u32, u64)> {
    use covenant_bus::subjects::{EVENTS_STREAM, HEADER_OFFSET, HEADER_PARTITION};
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match js.get_stream(EVENTS_STREAM).await {
            Ok(stream) => break stream,
            Err(error) => {
                assert!(Instant::now() < deadline, "no stream {EVENTS_STREAM}: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    loop {
        let count = stream.info().await.unwrap().state.messages;
        if count >= expected || Instant::now() >= deadline {
            assert_eq!(count, expected, "messages the relay published to {EVENTS_STREAM}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = stream.info().await.unwrap().state.clone();
    assert_eq!(state.messages, expected, "messages in {EVENTS_STREAM} after a pause");
    let mut positions = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| -> u64 {
            message.headers.get(name).map(|value| value.as_str().parse().unwrap()).unwrap()
        };
        positions.push((header(HEADER_PARTITION) as u32, header(HEADER_OFFSET)));
    }
    positions.sort();
    positions
}

#[tokio::test]
async fn concurrent_clients_through_a_full_disk_get_every_command_recorded_once_and_relayed_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = test_dir().unwrap();
    let mut disk = Disk::mount(&dir.path().join("disk"), 24);
    let log_dir = disk.dir.join("log");
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut ledger = LedgerProcess::start(Path::new(LEDGER), &log_dir, &nats.url(), "fsync", "off").unwrap();
    // Standing consumes the stream meanwhile (its own store is not on the troubled disk).
    let standing_dir = dir.path().join("standing");
    let mut standing =
        LedgerProcess::start_consumer(Path::new(STANDING), "standing", &standing_dir, &nats.url(), 8)
            .unwrap();
    let (mut client, mut reader) = clients(&ledger).await;
    let mut book = Book::default();
    let customers: Vec<String> = (0..8).map(|n| format!("conc-customer-{n}")).collect();
    let registrations: Vec<v1::BatchCommand> =
        customers.iter().map(|customer| registration(customer, &format!("{customer}-register"))).collect();
    for (command, answer) in registrations.iter().zip(send_batch(&mut client, &registrations).await) {
        book.ack(command, &answer.unwrap(), "a registration");
    }

    // Eight clients, one customer each: their commands meet in the writer's group commits.
    let stop = Arc::new(AtomicBool::new(false));
    let refusals = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = customers
        .iter()
        .map(|customer| {
            tokio::spawn(client_loop(
                ledger.endpoint(),
                customer.clone(),
                Arc::clone(&stop),
                Arc::clone(&refusals),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut disk = tokio::task::spawn_blocking(move || {
        disk.fill();
        disk
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while refusals.load(Ordering::SeqCst) < 100 {
        assert!(Instant::now() < deadline, "the clients saw no refusals on the full disk");
        disk.top_up();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_while_full = refusals.load(Ordering::SeqCst);
    disk.remove_filler();
    let freed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let ran_after = freed.elapsed();
    let mut written_unconfirmed = 0;
    let mut retried = 0;
    for task in tasks {
        for (command_id, ack, deduplicated, refused) in task.await.unwrap() {
            let command = interaction(&ack.customer, &command_id);
            let response = v1::AppendResponse {
                positions: vec![v1::Position { partition: ack.partition, offset: ack.offset }],
                stream_version: ack.version,
                recorded_at: None,
                deduplicated,
            };
            // A command refused after its batch was written (the sync failed) is in the log:
            // its retry is answered from the stored outcome, once.
            book.ack_first_result(&command, &response, "a concurrent client's command");
            written_unconfirmed += usize::from(deduplicated);
            retried += usize::from(refused > 0);
        }
    }
    assert!(retried > 0, "no command was refused and retried");
    assert_streams_over_grpc(&mut reader, &book, "after the concurrent clients").await;
    let mut expected: Vec<(u32, u64)> = book.acked.values().map(|ack| (ack.partition, ack.offset)).collect();
    expected.sort();
    let relayed = relayed_positions(&nats.url(), expected.len() as u64).await;
    assert_eq!(relayed, expected, "every recorded event relayed once, none that is not recorded");
    eprintln!(
        "concurrent clients: {} commands acknowledged, {refused_while_full} refusals while the disk was full, \
         {retried} commands retried, {written_unconfirmed} of them had been written before the failed sync \
         (answered from their first result); clients ran {ran_after:?} past the filler's deletion; {} events relayed once",
        book.acked.len(),
        relayed.len()
    );

    // Standing applied every event once: it reaches the log's ends, and after a clean stop
    // `covenant verify` finds its projections equal to a replay of the log.
    let mut ends = vec![0u64; 8];
    for (partition, offset) in &relayed {
        ends[*partition as usize] = ends[*partition as usize].max(offset + 1);
    }
    covenant_tests::standing::wait_until_applied(&standing.endpoint(), &ends, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(standing.terminate(Duration::from_secs(20)).unwrap(), "standing should stop cleanly");
    assert!(ledger.terminate(Duration::from_secs(20)).unwrap(), "the ledger should stop cleanly");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(&log_dir, data.join("log")).unwrap();
    std::os::unix::fs::symlink(&standing_dir, data.join("standing")).unwrap();
    let verified =
        Command::new(COVENANT).args(["verify", "--data", data.to_str().unwrap()]).output().unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{report}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(report.contains("projections: standing equals a replay"), "{report}");
    assert_log_on_disk(log_dir, &book).await;
}
