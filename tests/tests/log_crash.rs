//! Crash test of the event log: a real child process (`crash-writer`) appends with `fsync`
//! durability and is killed with SIGKILL mid-load, several times on the same data directory;
//! after each kill the test reopens the log and checks that
//! - every acknowledged command is in its customer's stream, where the acknowledgement said;
//! - each command's events are in the log exactly once, contiguous, and the partitions (dense
//!   offsets, intact hash chains) agree record for record with the customers' streams (so no
//!   batch was half written);
//! - every command in the log — acknowledged or not — is answered from its stored outcome when
//!   retried (`deduplicated`, same position), and the retries append nothing;
//! - the recovered log still takes new appends at the right versions and offsets.
//!
//! The child's command ids follow the scheme of `tests/src/crash.rs`
//! (`c-<customer>-reg`, `c-<customer>-r<run>-<n>-{i,p,k}`): the command is rebuilt from the
//! customer and command id, so the test can retry exactly the command the child sent. The test's
//! own appends use run numbers from 1000 on, the child's the round number.
//!
//! The kill points: after 30, 300 and 1500 acknowledgements, then at five random moments (two
//! of them in the first 80 ms, most likely while the child is still opening the log), and once
//! more after 100 acknowledgements. `LOG_CRASH_SEED=<u64>` replays given random kill moments (the
//! seed is printed on stderr).
//!
//! What a SIGKILL can and cannot show: it loses whatever the process had not handed to the
//! kernel, so it catches acknowledging before the write, half-written batches, lost outcomes
//! and bad recovery; data the kernel holds survives a process kill, so an acknowledgement sent
//! before the fsync completed would only show on a power loss, not here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use covenant_domain::{CustomerId, RecordedEvent};
use covenant_log::{AppendOutcome, Durability, EventLog, LogConfig};
use covenant_tests::crash::{self, Ack, Kind};

const PARTITIONS: u16 = 4;
const PRODUCERS: usize = 16;
const CUSTOMERS: usize = 40;
/// Longest a child may take to reach its kill point.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// First run number of the test's own appends (the child's runs are the round numbers).
const TEST_RUN_BASE: u64 = 1000;

/// When to kill the child.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// Once this many `ACK` lines were read.
    Acks(usize),
    /// This long after the child was started, whatever it is doing.
    After(Duration),
}

/// Where a command's events are, as the log's streams show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    partition: u16,
    first_offset: u64,
    event_count: u32,
    stream_version: u64,
}

impl Placement {
    fn of_ack(ack: &Ack) -> Self {
        Self {
            partition: ack.partition,
            first_offset: ack.first_offset,
            event_count: ack.event_count,
            stream_version: ack.stream_version,
        }
    }

    fn of_outcome(outcome: &AppendOutcome) -> Self {
        Self {
            partition: outcome.partition,
            first_offset: outcome.first_offset,
            event_count: outcome.event_count,
            stream_version: outcome.stream_version,
        }
    }
}

type CommandKey = (String, String);

fn config(dir: &Path) -> LogConfig {
    LogConfig::new(dir).with_partitions(PARTITIONS).with_durability(Durability::Fsync)
}

fn random_seed() -> u64 {
    if let Some(seed) = std::env::var("LOG_CRASH_SEED").ok().and_then(|seed| seed.parse().ok()) {
        return seed;
    }
    SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_nanos() as u64).unwrap_or(7)
}

/// Runs the child on `dir` as run `run`, kills it with SIGKILL at `kill`, and returns the
/// acknowledgements of every complete line it wrote.
fn run_child(dir: &Path, run: u64, kill: KillAt) -> anyhow::Result<Vec<Ack>> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(dir)
        .arg(PARTITIONS.to_string())
        .arg(PRODUCERS.to_string())
        .arg(CUSTOMERS.to_string())
        .arg(run.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start crash-writer")?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let (lines_sender, lines) = mpsc::channel::<Vec<u8>>();
    // Only lines ending in '\n' count: a line cut by the kill is no acknowledgement.
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            if stdout.read_until(b'\n', &mut line)? == 0 || !line.ends_with(b"\n") {
                return Ok(());
            }
            if lines_sender.send(line).is_err() {
                return Ok(());
            }
        }
    });

    let started = Instant::now();
    let deadline = started
        + match kill {
            KillAt::Acks(_) => ROUND_TIMEOUT,
            KillAt::After(delay) => delay,
        };
    let mut received = Vec::new();
    let mut acks = 0;
    let on_time = loop {
        if matches!(kill, KillAt::Acks(target) if acks >= target) {
            break true;
        }
        let now = Instant::now();
        if now >= deadline {
            break matches!(kill, KillAt::After(_));
        }
        match lines.recv_timeout(deadline - now) {
            Ok(line) => {
                acks += usize::from(line.starts_with(b"ACK "));
                received.push(line);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The child closed its stdout: it is ending on its own.
            Err(RecvTimeoutError::Disconnected) => break false,
        }
    };
    child.kill().context("SIGKILL the child")?;
    let status = child.wait().context("wait for the child")?;
    match reader.join() {
        Ok(result) => result.context("read the child's stdout")?,
        Err(_) => bail!("the stdout reader panicked"),
    }
    received.extend(lines.try_iter());
    ensure!(
        on_time,
        "run {run}: the child ended or stalled before its kill point {kill:?} after {:?} and {acks} \
         acknowledgements (status {status})",
        started.elapsed()
    );
    ensure!(status.signal() == Some(9), "run {run}: the child was not ended by SIGKILL: {status}");

    let mut parsed = Vec::with_capacity(received.len());
    for (index, line) in received.iter().enumerate() {
        let line = std::str::from_utf8(line).context("child output is not UTF-8")?.trim_end_matches('\n');
        if line == crash::READY {
            ensure!(index == 0, "run {run}: READY is line {index}, not the first");
            continue;
        }
        ensure!(index > 0 && received[0] == b"READY\n", "run {run}: ACK before READY: {line:?}");
        parsed.push(Ack::parse(line)?);
    }
    eprintln!(
        "run {run}: killed at {kill:?} after {:?}; {} acknowledgements read",
        started.elapsed(),
        parsed.len()
    );
    Ok(parsed)
}

/// Every record of `partition`, checking that offsets are dense from 0.
async fn read_partition(log: &EventLog, partition: u16) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut records = Vec::new();
    loop {
        let next = records.len() as u64;
        let batch = log.read_partition(partition, next, 4096).await?;
        if batch.is_empty() {
            return Ok(records);
        }
        for (index, record) in batch.iter().enumerate() {
            ensure!(
                record.position.partition == partition && record.position.offset == next + index as u64,
                "partition {partition}: record at {:?} where offset {} was expected",
                record.position,
                next + index as u64
            );
        }
        records.extend(batch);
    }
}

/// Retries every command in `commands` concurrently; returns what the log answered.
async fn retry_all(
    log: &EventLog,
    commands: impl Iterator<Item = CommandKey>,
) -> anyhow::Result<Vec<(CommandKey, AppendOutcome)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (customer, command_id) in commands {
        let log = log.clone();
        tasks.spawn(async move {
            let request = crash::request(&customer, &command_id)?;
            let outcome =
                log.append(request).await.with_context(|| format!("retry {command_id} on {customer}"))?;
            anyhow::Ok(((customer, command_id), outcome))
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer??);
    }
    Ok(answers)
}

/// What the checks of the rounds so far have covered.
#[derive(Debug, Default)]
struct Checked {
    /// Every acknowledgement of every round so far; this round's start at `new_acks`.
    acks: Vec<Ack>,
    new_acks: usize,
    /// Commands whose retry was already checked.
    retried: BTreeSet<CommandKey>,
}

/// Reopens the log at `dir` after round `round` and checks it against `checked.acks`. Every
/// acknowledgement is compared with the streams; this round's are also read back one by one;
/// the commands not retried by an earlier round (all of them when `retry_everything`) are
/// retried. Closes the log before returning `Ok`.
async fn check_log(
    dir: &Path,
    round: u64,
    checked: &mut Checked,
    retry_everything: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = EventLog::open(config(dir)).await.context("reopen the log after the kill")?;
    let reader = log.reader();

    // Hash chains intact, offsets dense; each record in its customer's partition.
    let reports = log.verify().await?;
    ensure!(reports.len() == usize::from(PARTITIONS), "verify reported {} partitions", reports.len());
    let mut by_customer: BTreeMap<String, Vec<RecordedEvent>> = BTreeMap::new();
    let mut ends = Vec::new();
    for report in &reports {
        let partition = report.partition;
        ensure!(
            report.problem.is_none(),
            "round {round}: verify: partition {partition}: {:?}",
            report.problem
        );
        let records = read_partition(&log, partition).await?;
        let end = reader.partition_end(partition)?;
        ensure!(
            records.len() as u64 == end && report.records == end,
            "round {round}: partition {partition}: {} records read, {} verified, partition end {end}",
            records.len(),
            report.records
        );
        ends.push(end);
        for record in records {
            ensure!(
                record.customer_id.partition(PARTITIONS) == partition,
                "round {round}: {} at {:?} belongs to partition {}",
                record.customer_id,
                record.position,
                record.customer_id.partition(PARTITIONS)
            );
            by_customer.entry(record.customer_id.to_string()).or_default().push(record);
        }
    }

    // The streams are exactly the partitions' records, by customer, at versions 1, 2, 3, …; each
    // command's events are contiguous and appear once.
    let mut customers: BTreeSet<String> = (0..CUSTOMERS).map(crash::customer_name).collect();
    customers.extend(by_customer.keys().cloned());
    let mut commands: BTreeMap<CommandKey, Placement> = BTreeMap::new();
    let mut stream_lengths: BTreeMap<String, u64> = BTreeMap::new();
    for customer in &customers {
        let customer_id = CustomerId::new(customer.as_str())?;
        let stream = log.read_stream(customer_id.clone(), 1, usize::MAX).await?;
        let records = by_customer.get(customer).map(Vec::as_slice).unwrap_or_default();
        ensure!(
            stream.as_slice() == records,
            "round {round}: the stream of {customer} ({} events) differs from its records in partition {} \
             ({} records)",
            stream.len(),
            customer_id.partition(PARTITIONS),
            records.len()
        );
        let mut previous: Option<&RecordedEvent> = None;
        for (index, event) in stream.iter().enumerate() {
            ensure!(
                event.stream_version == index as u64 + 1,
                "round {round}: event {index} of {customer} has version {}",
                event.stream_version
            );
            let key = (customer.clone(), event.command_id.to_string());
            match previous {
                Some(before) if before.command_id == event.command_id => {
                    ensure!(
                        event.position.offset == before.position.offset + 1,
                        "round {round}: the events of {} on {customer} are not contiguous: {:?} then {:?}",
                        event.command_id,
                        before.position,
                        event.position
                    );
                    if let Some(placement) = commands.get_mut(&key) {
                        placement.event_count += 1;
                        placement.stream_version = event.stream_version;
                    }
                }
                _ => {
                    let placement = Placement {
                        partition: event.position.partition,
                        first_offset: event.position.offset,
                        event_count: 1,
                        stream_version: event.stream_version,
                    };
                    if let Some(first) = commands.insert(key, placement) {
                        bail!(
                            "round {round}: command {} on {customer} is in the log twice: at {first:?} and at \
                             {:?}",
                            event.command_id,
                            event.position
                        );
                    }
                }
            }
            previous = Some(event);
        }
        stream_lengths.insert(customer.clone(), stream.len() as u64);
    }

    // Every acknowledged command is where its acknowledgement said.
    for ack in &checked.acks {
        let key = (ack.customer_id.clone(), ack.command_id.clone());
        let placement = commands.get(&key);
        ensure!(
            placement == Some(&Placement::of_ack(ack)),
            "round {round}: acknowledged {ack:?} but the log has {placement:?}"
        );
    }
    for ack in &checked.acks[checked.new_acks..] {
        let first_version = ack.stream_version + 1 - u64::from(ack.event_count);
        let events = log
            .read_stream(CustomerId::new(ack.customer_id.as_str())?, first_version, ack.event_count as usize)
            .await?;
        ensure!(events.len() == ack.event_count as usize, "round {round}: {ack:?}: stream has {events:?}");
        for (index, event) in events.iter().enumerate() {
            ensure!(
                event.command_id.as_str() == ack.command_id
                    && event.position.partition == ack.partition
                    && event.position.offset == ack.first_offset + index as u64,
                "round {round}: {ack:?}: event {index} of the command is {event:?}"
            );
        }
    }

    // Every command in the log, retried as sent, is answered from its stored outcome and appends
    // nothing.
    let to_retry: Vec<CommandKey> =
        commands.keys().filter(|key| retry_everything || !checked.retried.contains(*key)).cloned().collect();
    let retries = to_retry.len();
    for (key, outcome) in retry_all(&log, to_retry.into_iter()).await? {
        ensure!(
            outcome.deduplicated && Some(&Placement::of_outcome(&outcome)) == commands.get(&key),
            "round {round}: retrying {key:?} gave {outcome:?}; the log has {:?}",
            commands.get(&key)
        );
        checked.retried.insert(key);
    }
    for (partition, end) in (0..PARTITIONS).zip(&ends) {
        let after = reader.partition_end(partition)?;
        ensure!(
            after == *end,
            "round {round}: retries moved partition {partition}'s end from {end} to {after}"
        );
    }

    // The recovered log takes new commands at the next version and offset of each stream.
    let fresh: Vec<CommandKey> = stream_lengths
        .iter()
        .filter(|(_, length)| **length > 0)
        .map(|(customer, _)| {
            (customer.clone(), crash::command_id(customer, TEST_RUN_BASE + round, 0, Kind::Interaction))
        })
        .collect();
    let mut appended = vec![0_u64; usize::from(PARTITIONS)];
    for ((customer, command_id), outcome) in retry_all(&log, fresh.into_iter()).await? {
        let partition = usize::from(outcome.partition);
        ensure!(
            !outcome.deduplicated
                && outcome.event_count == 1
                && outcome.stream_version == stream_lengths[&customer] + 1
                && outcome.first_offset >= ends[partition],
            "round {round}: new command {command_id} on {customer} (stream length {}, partition end {}) \
             gave {outcome:?}",
            stream_lengths[&customer],
            ends[partition]
        );
        appended[partition] += 1;
    }
    for partition in 0..PARTITIONS {
        let index = usize::from(partition);
        let after = reader.partition_end(partition)?;
        ensure!(
            after == ends[index] + appended[index],
            "round {round}: partition {partition} ends at {after} after {} new commands on {}",
            appended[index],
            ends[index]
        );
    }

    eprintln!(
        "round {round}: {} records, {} commands ({retries} retried), {} acknowledgements ({} new) checked \
         in {:?}",
        ends.iter().sum::<u64>(),
        commands.len(),
        checked.acks.len(),
        checked.acks.len() - checked.new_acks,
        started.elapsed()
    );
    drop(reader);
    log.close().await?;
    Ok(())
}

#[test]
fn acknowledged_appends_survive_sigkill() -> anyhow::Result<()> {
    let started = Instant::now();
    let temp = tempfile::tempdir()?;
    let dir = temp.path().join("log");
    let seed = random_seed();
    eprintln!("random kill moments from LOG_CRASH_SEED={seed}");
    let mut random = seed | 1;
    let mut random_delay = |range: std::ops::Range<u64>| {
        // xorshift64
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        KillAt::After(Duration::from_millis(range.start + random % (range.end - range.start)))
    };
    let kills = [
        KillAt::Acks(30),
        KillAt::Acks(300),
        KillAt::Acks(1500),
        // Most likely while the child is still opening (recovering) the log.
        random_delay(0..80),
        random_delay(80..1500),
        random_delay(80..1500),
        random_delay(0..80),
        random_delay(80..1500),
        KillAt::Acks(100),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut checked = Checked::default();
    for (round, kill) in (0_u64..).zip(kills) {
        checked.new_acks = checked.acks.len();
        checked.acks.extend(run_child(&dir, round, kill)?);
        let last = round + 1 == kills.len() as u64;
        runtime.block_on(check_log(&dir, round, &mut checked, last))?;
    }
    eprintln!("{} rounds in {:?}", kills.len(), started.elapsed());
    Ok(())
}
