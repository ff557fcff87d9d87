//! `covenant-bench services`: the running system against raw NATS, in the same run.
//!
//! - raw JetStream: async publishes of envelope-sized messages with 256 acks in flight (the
//!   relay's setting) — the baseline of the relay;
//! - relay: a log prefilled with `--events` events published to a fresh `COVENANT_EVENTS` from
//!   offset 0, timed until JetStream acknowledged the last one of every partition;
//! - raw tonic: the same clients and messages against a `Ledger` that answers at once (no log,
//!   no relay; [`crate::raw_grpc`]) — the baseline of the unary row;
//! - gRPC ingest: the ledger (`fsync`) in this process on loopback; `--clients` concurrent
//!   clients send unary commands of realistic journeys as fast as they can (throughput, latency
//!   p50/p99), alternating run by run with the raw tonic baseline; the same clients with
//!   `AppendBatch` of 100 commands;
//! - visibility: journeys at `--visibility-rate` commands/s; for one command in ten the client
//!   waits (`min_position`) until standing has applied it: reply-to-visible latency p50/p99.
//!
//! Each measurement runs `--runs` times; medians are reported.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use async_nats::jetstream;
use covenant_bus::{NatsServer, Relay, RelayConfig};
use covenant_ledger::LedgerConfig;
use covenant_log::{Durability, EventLog, LogConfig};
use covenant_proto::convert::{Pii, envelope};
use covenant_proto::v1;
use prost::Message as _;

use crate::disk;
use crate::report::Table;
use crate::stats::{Measurement, Run, percent, thousands, verdict};
use crate::workload::Workload;

/// Options of `covenant-bench services`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServicesArgs {
    /// Events relayed (and raw messages published) per run.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Runs of each measurement; the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent gRPC clients of the ingest rows.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// HTTP/2 connections the unary clients share.
    #[arg(long, default_value_t = covenant_load::DEFAULT_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,
    /// Seconds of each gRPC load run.
    #[arg(long, default_value_t = 5.0)]
    load_secs: f64,
    /// Commands per second of the visibility rows.
    #[arg(long, default_value_t = 5000)]
    visibility_rate: u64,
    /// Customers loaded for the GetTrust rows.
    #[arg(long, default_value_t = 100_000)]
    customers: usize,
    /// Directory for the databases (default: as `covenant-bench log`).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

impl Default for ServicesArgs {
    fn default() -> Self {
        Self {
            events: 100_000,
            runs: 3,
            clients: 64,
            connections: covenant_load::DEFAULT_CONNECTIONS,
            load_secs: 5.0,
            visibility_rate: 5000,
            customers: 100_000,
            dir: None,
        }
    }
}

pub(crate) fn run(args: &ServicesArgs) -> Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.load_secs > 0.0 && args.load_secs.is_finite(), "--load-secs must be positive");
    let bench_dir = disk::choose(args.dir.as_deref())?;
    eprintln!("benchmark directory: {}", bench_dir.describe());
    let root = tempfile::Builder::new()
        .prefix("covenant-bench-services-")
        .tempdir_in(&bench_dir.path)
        .context("create a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start tokio")?;
    runtime.block_on(run_all(args, root.path()))
}

async fn run_all(args: &ServicesArgs, root: &Path) -> Result<()> {
    let nats_dir = root.join("nats");
    let mut nats = tokio::task::spawn_blocking(move || NatsServer::start(&nats_dir)).await??;
    let result = measure(args, root, &nats.url()).await;
    tokio::task::spawn_blocking(move || nats.stop()).await.ok();
    result
}

async fn measure(args: &ServicesArgs, root: &Path, nats_url: &str) -> Result<()> {
    let client = covenant_bus::stream::connect(nats_url, "covenant-bench", true).await?;
    let js = covenant_bus::stream::jetstream(client.clone(), 256);

    eprintln!("prefilling a log with {} events for the relay …", args.events);
    let log =
        EventLog::open(LogConfig::new(root.join("relay-log")).with_durability(Durability::Buffered)).await?;
    prefill(&log, args.events).await?;
    let sample = log.read_partition(0, 0, 1).await?;
    let message_bytes = sample
        .first()
        .map(|event| envelope(event, Pii::Redact).encoded_len())
        .ok_or_else(|| anyhow!("empty log"))?;

    let mut raw =
        Measurement::new(format!("raw JetStream publish, {message_bytes}-byte messages, 256 in flight"));
    let mut relay = Measurement::new("relay: log → COVENANT_EVENTS (all partitions)");
    for run in 0..args.runs {
        eprintln!("run {}/{}: raw JetStream, relay", run + 1, args.runs);
        raw.runs.push(raw_publish(&js, run, args.events, message_bytes).await?);
        relay.runs.push(relay_run(&log, &client, &js, args.events).await?);
    }
    log.close().await?;

    eprintln!("starting the ledger (fsync) in this process …");
    let ledger = covenant_ledger::start(LedgerConfig {
        data_dir: root.join("ledger"),
        partitions: None,
        durability: Durability::Fsync,
        grpc_addr: "127.0.0.1:0".parse()?,
        nats_url: nats_url.to_owned(),
        relay: RelayConfig::default(),
        metrics_addr: None,
        auth: crate::auth::mode()?,
        tls: None,
        nats_security: Default::default(),
        master_key: None,
    })
    .await?;
    let ledger_url = format!("http://{}", ledger.grpc_addr);

    let raw_grpc_server = crate::raw_grpc::serve().await?;
    let mut raw_unary = Measurement::new(format!(
        "raw tonic unary (same messages, answered at once), {} clients on {} connections",
        args.clients, args.connections
    ));
    let mut unary = Measurement::new(format!(
        "gRPC unary commands, {} clients on {} connections, fsync",
        args.clients, args.connections
    ));
    let mut batched =
        Measurement::new(format!("gRPC AppendBatch (100 per call), {} clients, fsync", args.clients));
    let mut visible =
        Measurement::new(format!("{} commands/s: reply → visible in standing", args.visibility_rate));
    let mut at_rate = Measurement::new(format!("{} commands/s: command latency", args.visibility_rate));
    for run in 0..args.runs {
        eprintln!("run {}/{}: raw tonic unary, gRPC unary, AppendBatch", run + 1, args.runs);
        let mut config = covenant_load::LoadConfig::new(raw_grpc_server.url.clone());
        config.token = crate::auth::token()?;
        config.rate = 0;
        config.clients = args.clients;
        config.connections = usize::try_from(args.connections)?;
        config.duration = Duration::from_secs_f64(args.load_secs);
        config.visibility_every = 0;
        config.run_id = format!("raw-unary{run}");
        let report = covenant_load::run(&config).await?;
        ensure!(report.errors.is_empty(), "raw unary load had errors: {:?}", report.errors);
        raw_unary.runs.push(Run::with_latencies(report.ok, report.elapsed, &report.latency));

        config.ledger = ledger_url.clone();
        config.run_id = format!("unary{run}");
        let report = covenant_load::run(&config).await?;
        ensure!(report.errors.is_empty(), "unary load had errors: {:?}", report.errors);
        unary.runs.push(Run::with_latencies(report.ok, report.elapsed, &report.latency));

        batched.runs.push(append_batches(&ledger_url, args.clients, config.duration, run).await?);
    }
    drop(raw_grpc_server);

    // Standing starts now (the ingest rows measure the ledger alone) and first catches up with
    // everything recorded so far.
    eprintln!("starting standing in this process; it catches up first …");
    let mut standing_config = covenant_standing::StandingConfig::new(root.join("standing"), nats_url);
    standing_config.auth = crate::auth::mode()?;
    standing_config.partitions = ledger.partitions;
    standing_config.grpc_addr = "127.0.0.1:0".parse()?;
    let standing = covenant_standing::start(standing_config).await?;
    let standing_url = format!("http://{}", standing.grpc_addr);
    let mut catch_up = Measurement::new("standing catching up (consume + project)");
    let caught_up_from = Instant::now();
    let applied_before: u64 = standing.progress().iter().sum();
    wait_caught_up(&ledger_url, &standing).await?;
    let applied: u64 = standing.progress().iter().sum::<u64>() - applied_before;
    catch_up.runs.push(Run::new(applied, caught_up_from.elapsed()));

    for run in 0..args.runs {
        eprintln!("run {}/{}: visibility at {}/s", run + 1, args.runs, args.visibility_rate);
        let mut config = covenant_load::LoadConfig::new(ledger_url.clone());
        config.token = crate::auth::token()?;
        config.standing = Some(standing_url.clone());
        config.rate = args.visibility_rate;
        config.clients = args.clients;
        config.duration = Duration::from_secs_f64(args.load_secs);
        config.visibility_every = 10;
        config.run_id = format!("visible{run}");
        let report = covenant_load::run(&config).await?;
        ensure!(report.errors.is_empty(), "visibility load had errors: {:?}", report.errors);
        visible.runs.push(Run::with_latencies(report.visibility.len(), report.elapsed, &report.visibility));
        at_rate.runs.push(Run::with_latencies(report.ok, report.elapsed, &report.latency));
    }
    // Standing queries over a loaded projection: `--customers` customers with a promise each,
    // then one customer with 1,000 events asked "as of" the middle of their history.
    eprintln!("loading {} customers for the query rows …", args.customers);
    load_customers(&ledger_url, args.customers).await?;
    let deep = deep_customer(&ledger_url, 1000).await?;
    wait_caught_up(&ledger_url, &standing).await?;
    let mut get_trust = Measurement::new(format!(
        "GetTrust over gRPC, {} customers, {} clients",
        args.customers, args.clients
    ));
    let mut as_of = Measurement::new("GetTrust as_of, a customer with 1,000 events, 1 client");
    for run in 0..args.runs {
        eprintln!("run {}/{}: GetTrust, as-of", run + 1, args.runs);
        get_trust.runs.push(
            query_trust(&standing_url, args.clients, args.customers, Duration::from_secs_f64(args.load_secs))
                .await?,
        );
        as_of.runs.push(query_as_of(&standing_url, &deep, 200).await?);
    }
    standing.stop().await?;
    ledger.stop().await?;

    let mut table =
        Table::new(["measurement", "median /s", "p50 ms", "p99 ms", "vs baseline", "target", "runs /s"]);
    let row = |table: &mut Table, measurement: &Measurement, baseline: Option<(f64, f64)>, target: &str| {
        let (p50, p99) = measurement.latency_us().map_or(("".to_owned(), "".to_owned()), |(p50, p99)| {
            (format!("{:.2}", p50 / 1000.0), format!("{:.2}", p99 / 1000.0))
        });
        // A goal of 0: the share of the baseline is context, not a target.
        let versus = baseline.map_or(String::new(), |(whole, goal)| {
            let share = percent(measurement.rate(), whole);
            if goal > 0.0 { format!("{share} {}", verdict(measurement.rate(), whole, goal)) } else { share }
        });
        let runs = measurement.rates().iter().map(|rate| thousands(*rate)).collect::<Vec<_>>().join(" / ");
        table.row([
            measurement.name.clone(),
            thousands(measurement.rate()),
            p50,
            p99,
            versus,
            target.to_owned(),
            runs,
        ]);
    };
    row(&mut table, &raw, None, "baseline");
    row(&mut table, &relay, Some((raw.rate(), 0.5)), "≥ 50% of raw");
    let unary_verdict = if unary.rate() >= 20_000.0 { "PASS" } else { "MISS" };
    row(&mut table, &raw_unary, None, "baseline");
    row(&mut table, &unary, Some((raw_unary.rate(), 0.0)), &format!("≥ 20,000/s: {unary_verdict}"));
    row(&mut table, &batched, None, "");
    row(&mut table, &catch_up, None, "");
    row(&mut table, &get_trust, None, "");
    row(&mut table, &as_of, None, "");
    row(&mut table, &at_rate, None, "");
    let p99 = visible.latency_us().map_or(f64::INFINITY, |(_, p99)| p99 / 1000.0);
    let visible_verdict = if p99 < 50.0 { "PASS" } else { "MISS" };
    row(&mut table, &visible, None, &format!("p99 < 50 ms: {visible_verdict}"));
    println!("\n## Services (NATS, gRPC, standing)\n");
    println!("{}", table.render());
    println!(
        "Relay {} of raw JetStream; unary ingest {} commands/s ({} of raw tonic, median of {} runs); visibility p99 {:.1} ms at {}/s.",
        percent(relay.rate(), raw.rate()),
        thousands(unary.rate()),
        percent(unary.rate(), raw_unary.rate()),
        args.runs,
        p99,
        args.visibility_rate
    );
    Ok(())
}

fn query_header(customer: &str, command: &str) -> Option<v1::CommandHeader> {
    Some(v1::CommandHeader {
        customer_id: customer.to_owned(),
        command_id: command.to_owned(),
        actor: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "agent-1".into() }),
        ..Default::default()
    })
}

fn in_days(days: i64) -> prost_types::Timestamp {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    prost_types::Timestamp { seconds: i64::try_from(now).unwrap_or(0) + days * 86_400, nanos: 0 }
}

/// `customers` customers `query-<n>`, each registered with one kept promise, by AppendBatch.
async fn load_customers(ledger_url: &str, customers: usize) -> Result<()> {
    let mut ledger = v1::ledger_client::LedgerClient::new(crate::auth::channel(ledger_url).await?);
    let commands: Vec<v1::BatchCommand> = (0..customers)
        .flat_map(|n| {
            let customer = format!("query-{n}");
            let command = |command| v1::BatchCommand { command: Some(command) };
            use v1::batch_command::Command;
            [
                command(Command::RegisterCustomer(v1::RegisterCustomerRequest {
                    header: query_header(&customer, "r"),
                    name: "Query Customer".into(),
                    locale: "en-GB".into(),
                    timezone: "Europe/London".into(),
                    segment: "smb".into(),
                    source: "web".into(),
                    tier: v1::Tier::Standard as i32,
                    ..Default::default()
                })),
                command(Command::MakePromise(v1::MakePromiseRequest {
                    header: query_header(&customer, "m"),
                    promise_id: "p".into(),
                    kind: v1::PromiseKind::Callback as i32,
                    description: "call back".into(),
                    made_by: "agent-1".into(),
                    due_at: Some(in_days(3)),
                    grace: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
                    ..Default::default()
                })),
                command(Command::KeepPromise(v1::KeepPromiseRequest {
                    header: query_header(&customer, "k"),
                    promise_id: "p".into(),
                    ..Default::default()
                })),
            ]
        })
        .collect();
    covenant_load::append_all(&mut ledger, commands, 1000).await.context("loading the query customers")?;
    Ok(())
}

/// A customer with `events` events (interactions, one a day back from today): their id and the
/// instant in the middle of their history.
async fn deep_customer(ledger_url: &str, events: usize) -> Result<(String, prost_types::Timestamp)> {
    let mut ledger = v1::ledger_client::LedgerClient::new(crate::auth::channel(ledger_url).await?);
    let customer = "query-deep".to_owned();
    let mut registered = query_header(&customer, "r");
    if let Some(header) = registered.as_mut() {
        header.occurred_at = Some(in_days(-(events as i64) - 1));
    }
    let mut commands = vec![v1::BatchCommand {
        command: Some(v1::batch_command::Command::RegisterCustomer(v1::RegisterCustomerRequest {
            header: registered,
            name: "Deep".into(),
            locale: "en-GB".into(),
            timezone: "Europe/London".into(),
            segment: "smb".into(),
            source: "web".into(),
            tier: v1::Tier::Standard as i32,
            ..Default::default()
        })),
    }];
    for n in 1..events {
        let mut header = query_header(&customer, &format!("i{n}"));
        if let Some(header) = header.as_mut() {
            header.occurred_at = Some(in_days(n as i64 - events as i64));
        }
        commands.push(v1::BatchCommand {
            command: Some(v1::batch_command::Command::RecordInteraction(v1::RecordInteractionRequest {
                header,
                interaction_id: format!("call-{n}"),
                channel: v1::Channel::Phone as i32,
                direction: v1::Direction::Inbound as i32,
                kind: v1::InteractionKind::Inquiry as i32,
                sentiment: v1::Sentiment::Neutral as i32,
                ..Default::default()
            })),
        });
    }
    covenant_load::append_all(&mut ledger, commands, 1000).await.context("loading the deep customer")?;
    Ok((customer, in_days(-(events as i64) / 2)))
}

/// `clients` tasks asking GetTrust of random loaded customers for `duration`.
async fn query_trust(
    standing_url: &str,
    clients: usize,
    customers: usize,
    duration: Duration,
) -> Result<Run> {
    let channel = crate::auth::channel(standing_url).await?;
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut standing = v1::standing_client::StandingClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram = crate::stats::latency_histogram()?;
            let mut queries = 0u64;
            let mut next = client.wrapping_mul(7919);
            while Instant::now() < until {
                next = next.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let customer = format!("query-{}", (next >> 33) % customers.max(1));
                let sent = Instant::now();
                standing
                    .get_trust(v1::GetTrustRequest { customer_id: customer, as_of: None, consistency: None })
                    .await?;
                crate::stats::record_latency(&mut histogram, sent.elapsed());
                queries += 1;
            }
            anyhow::Ok((queries, histogram))
        }));
    }
    let mut queries = 0;
    let mut histogram = crate::stats::latency_histogram()?;
    for task in tasks {
        let (count, latencies) = task.await??;
        queries += count;
        histogram.add(&latencies).map_err(|error| anyhow!("merge histograms: {error}"))?;
    }
    Ok(Run::with_latencies(queries, started.elapsed(), &histogram))
}

/// `queries` sequential GetTrust calls for `deep` as of the middle of their history.
async fn query_as_of(
    standing_url: &str,
    deep: &(String, prost_types::Timestamp),
    queries: u64,
) -> Result<Run> {
    let mut standing = v1::standing_client::StandingClient::new(crate::auth::channel(standing_url).await?);
    let mut histogram = crate::stats::latency_histogram()?;
    let started = Instant::now();
    for _ in 0..queries {
        let sent = Instant::now();
        let answer = standing
            .get_trust(v1::GetTrustRequest {
                customer_id: deep.0.clone(),
                as_of: Some(deep.1),
                consistency: None,
            })
            .await?
            .into_inner();
        ensure!(answer.stream_version >= 1000, "the deep customer has {} events", answer.stream_version);
        crate::stats::record_latency(&mut histogram, sent.elapsed());
    }
    Ok(Run::with_latencies(queries, started.elapsed(), &histogram))
}

/// Waits until standing has applied the whole log (by the ledger's `ReadAll` end positions).
async fn wait_caught_up(ledger_url: &str, standing: &covenant_standing::RunningStanding) -> Result<()> {
    let mut reader = v1::event_log_client::EventLogClient::new(crate::auth::channel(ledger_url).await?);
    let mut from: Vec<v1::PartitionFrom> = Vec::new();
    loop {
        let page = reader
            .read_all(v1::ReadAllRequest { from: from.clone(), event_types: vec![], max_events: 10_000 })
            .await?
            .into_inner();
        from = page.next;
        if page.end_of_log {
            break;
        }
    }
    let started = Instant::now();
    loop {
        let progress = standing.progress();
        if from
            .iter()
            .all(|next| progress.get(next.partition as usize).is_some_and(|applied| *applied >= next.offset))
        {
            return Ok(());
        }
        ensure!(started.elapsed() < Duration::from_secs(600), "standing did not catch up within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `events` interactions over 64 customers, appended by 64 concurrent tasks.
async fn prefill(log: &EventLog, events: u64) -> Result<()> {
    let workload = Arc::new(Workload::sized(200)?);
    let producers = 64usize;
    let mut tasks = Vec::new();
    for producer in 0..producers {
        let (log, workload) = (log.clone(), Arc::clone(&workload));
        let share = events / producers as u64 + u64::from((producer as u64) < events % producers as u64);
        tasks.push(tokio::spawn(async move {
            if share == 0 {
                return Ok(());
            }
            log.append(workload.register(producer, 0)?).await?;
            for sequence in 1..share {
                log.append(workload.interaction(producer, 1, sequence)?).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn raw_publish(js: &jetstream::Context, run: usize, messages: u64, bytes: usize) -> Result<Run> {
    let name = format!("BENCH_RAW_{run}");
    let subject = format!("bench.raw.{run}");
    js.get_or_create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{subject}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|error| anyhow!("create {name}: {error}"))?;
    let payload = bytes::Bytes::from(vec![0x5a; bytes]);
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    for index in 0..messages {
        let ack = js
            .publish(format!("{subject}.{}", index % 8), payload.clone())
            .await
            .map_err(|error| anyhow!("publish: {error}"))?;
        in_flight.push_back(ack);
        if in_flight.len() >= 256
            && let Some(ack) = in_flight.pop_front()
        {
            ack.await.map_err(|error| anyhow!("ack: {error}"))?;
        }
    }
    for ack in in_flight {
        ack.await.map_err(|error| anyhow!("ack: {error}"))?;
    }
    let elapsed = started.elapsed();
    js.delete_stream(&name).await.map_err(|error| anyhow!("delete {name}: {error}"))?;
    Ok(Run::new(messages, elapsed))
}

async fn relay_run(
    log: &EventLog,
    client: &async_nats::Client,
    js: &jetstream::Context,
    events: u64,
) -> Result<Run> {
    // A fresh stream and cursors at 0: the relay publishes the whole log.
    let _ = js.delete_stream(covenant_bus::subjects::EVENTS_STREAM).await;
    for partition in 0..log.partition_count() {
        log.set_cursor(&covenant_bus::relay::cursor_name(partition), 0).await?;
    }
    let ends: Vec<u64> = (0..log.partition_count())
        .map(|partition| log.reader().partition_end(partition))
        .collect::<Result<_, _>>()?;
    ensure!(
        ends.iter().sum::<u64>() == events,
        "the log holds {} events, not {events}",
        ends.iter().sum::<u64>()
    );
    let started = Instant::now();
    let relay = Relay::start(log.clone(), client.clone(), RelayConfig::default()).await?;
    loop {
        let done = (0..log.partition_count())
            .all(|partition| relay.acknowledged(partition).unwrap_or(0) >= ends[usize::from(partition)]);
        if done {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(300), "the relay did not finish within 5 minutes");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    relay.stop();
    Ok(Run::new(events, elapsed))
}

/// `clients` tasks sending `AppendBatch` requests of 100 interactions for `duration`.
async fn append_batches(ledger_url: &str, clients: usize, duration: Duration, run: usize) -> Result<Run> {
    let channel = crate::auth::channel(ledger_url).await?;
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut ledger = v1::ledger_client::LedgerClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut histogram = crate::stats::latency_histogram()?;
            let mut journeys: Vec<covenant_load::Journey> = (0..100)
                .map(|n| {
                    covenant_load::Journey::new(
                        &format!("batch{run}"),
                        format!("batch{run}-c{client}-{n}"),
                        n as u64,
                    )
                })
                .collect();
            let mut events = 0u64;
            while Instant::now() < until {
                let commands = journeys
                    .iter_mut()
                    .map(|journey| v1::BatchCommand { command: Some(journey.next_command()) })
                    .collect();
                let sent = Instant::now();
                let results =
                    ledger.append_batch(v1::AppendBatchRequest { commands }).await?.into_inner().results;
                crate::stats::record_latency(&mut histogram, sent.elapsed());
                for result in results {
                    match result.result {
                        Some(v1::batch_result::Result::Appended(appended)) => {
                            events += appended.positions.len() as u64
                        }
                        other => return Err(anyhow!("a batch item failed: {other:?}")),
                    }
                }
            }
            Ok((events, histogram))
        }));
    }
    let mut events = 0;
    let mut histogram = crate::stats::latency_histogram()?;
    for task in tasks {
        let (count, latencies) = task.await??;
        events += count;
        histogram.add(&latencies).map_err(|error| anyhow!("merge histograms: {error}"))?;
    }
    Ok(Run::with_latencies(events, started.elapsed(), &histogram))
}
