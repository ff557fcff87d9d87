//! Property: for random command sequences over many customers — with one or several writer
//! threads, buffered or fsynced, decision states stored every few events and reloaded often —
//! the log's streams equal a simple in-memory model (the pure domain's decide/apply over a Vec
//! per customer), offsets are dense per partition, hash chains verify, and all of it survives a
//! reopen, after which the customers' scripts go on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;

use common::*;
use covenant_domain::{
    Command, CustomerState, DecisionContext, Event, Timestamp, apply, decide, ids::PromiseId, sample,
};
use covenant_log::{AppendRequest, LogError};
use proptest::prelude::*;

/// One step of a customer's script.
#[derive(Debug, Clone)]
enum Step {
    /// A new command (index picks which kind).
    Fresh { kind: u8, item: u8, expected: Option<ExpectedVersion> },
    /// Resend the command of an earlier step (same id, same command).
    Retry { earlier: usize },
}

#[derive(Debug, Clone, Copy)]
enum ExpectedVersion {
    Right,
    Wrong(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..8, 0u8..4, prop::option::of(prop_oneof![Just(ExpectedVersion::Right), (1u8..3).prop_map(ExpectedVersion::Wrong)]))
            .prop_map(|(kind, item, expected)| Step::Fresh { kind, item, expected }),
        2 => (0usize..64).prop_map(|earlier| Step::Retry { earlier }),
    ]
}

fn command(kind: u8, item: u8) -> Command {
    let id = format!("x{item}");
    match kind {
        0 => sample::register("Pat").unwrap(),
        1 => sample::interaction(&id, 60).unwrap(),
        2 | 3 => sample::promise(&id, Timestamp::from_unix_millis_clamped(T0 + 3_600_000)).unwrap(),
        4 => sample::keep(&id).unwrap(),
        5 => Command::ReportBrokenPromise {
            promise_id: PromiseId::new(id).unwrap(),
            detection: covenant_domain::events::BreakDetection::CustomerReport,
            reason: covenant_domain::Text::new("reason", "no call", 100).unwrap(),
        },
        6 => sample::complaint(&id).unwrap(),
        _ => {
            Command::RespondToComplaint { complaint_id: covenant_domain::ids::ComplaintId::new(id).unwrap() }
        }
    }
}

/// What the model expects of one customer.
#[derive(Default)]
struct Model {
    state: CustomerState,
    events: Vec<(String, Event)>,
    sent: Vec<(String, Command)>,
    /// command id → (first offset is unknown to the model) stream version after it
    outcomes: HashMap<String, u64>,
}

/// Runs `steps` of one customer against the log and the model; `phase` keeps command ids of
/// scripts run after a reopen apart from the earlier ones (retries may still resend those).
async fn run_customer(
    log: covenant_log::EventLog,
    customer_id: String,
    steps: Vec<Step>,
    mut model: Model,
    phase: &str,
) -> Model {
    let context = DecisionContext {
        now: Timestamp::from_unix_millis_clamped(T0),
        occurred_at: Timestamp::from_unix_millis_clamped(T0),
    };
    for (index, step) in steps.into_iter().enumerate() {
        let (command_id, command, expected_version) = match step {
            Step::Retry { earlier } if !model.sent.is_empty() => {
                let (id, command) = model.sent[earlier % model.sent.len()].clone();
                (id, command, None)
            }
            Step::Retry { .. } => continue,
            Step::Fresh { kind, item, expected } => {
                let expected_version = expected.map(|expected| match expected {
                    ExpectedVersion::Right => model.state.version,
                    ExpectedVersion::Wrong(delta) => model.state.version + u64::from(delta),
                });
                (format!("{phase}cmd-{index}"), command(kind, item), expected_version)
            }
        };
        let mut request: AppendRequest = request(&customer_id, &command_id, command.clone());
        request.expected_version = expected_version;
        let result = log.append(request).await;
        if let Some(version) = model.outcomes.get(&command_id) {
            let outcome = result.expect("a retry of an accepted command succeeds");
            assert!(outcome.deduplicated);
            assert_eq!(outcome.stream_version, *version);
            continue;
        }
        if let Some(expected) = expected_version
            && expected != model.state.version
        {
            assert!(
                matches!(result, Err(LogError::VersionConflict { current, .. }) if current == model.state.version)
            );
            continue;
        }
        match decide(&model.state, &customer_id, &command, &context) {
            Ok(events) => {
                let outcome = result.expect("the model accepted this command");
                assert!(!outcome.deduplicated);
                for event in events {
                    apply(&mut model.state, &event, context.occurred_at);
                    model.events.push((command_id.clone(), event));
                }
                assert_eq!(outcome.stream_version, model.state.version);
                model.outcomes.insert(command_id.clone(), model.state.version);
                model.sent.push((command_id, command));
            }
            Err(rejection) => match result {
                Err(LogError::Rejected(actual)) => assert_eq!(actual, rejection),
                other => panic!("model rejected ({rejection}) but the log answered {other:?}"),
            },
        }
    }
    model
}

async fn check(log: &covenant_log::EventLog, models: &HashMap<String, Model>) {
    let mut total = 0;
    for (customer_id, model) in models {
        // Personal data is sealed at rest: opened with the customer's key, the stream is the
        // model's; read as everyone reads it, it is the model's without the personal fields.
        let revealed = log.read_stream_revealed(customer(customer_id), 1, 10_000).await.unwrap();
        let actual: Vec<(String, Event)> =
            revealed.iter().map(|(event, _)| (event.command_id.to_string(), event.event.clone())).collect();
        assert_eq!(actual, model.events, "stream of {customer_id}");
        let stream = log.read_stream(customer(customer_id), 1, 10_000).await.unwrap();
        let public: Vec<Event> = model
            .events
            .iter()
            .map(|(_, event)| {
                let mut event = event.clone();
                covenant_domain::personal::take_personal_data(&mut event);
                event
            })
            .collect();
        assert_eq!(stream.iter().map(|event| event.event.clone()).collect::<Vec<_>>(), public);
        for (index, event) in stream.iter().enumerate() {
            assert_eq!(event.stream_version, index as u64 + 1);
            assert_eq!(event.position.partition, customer(customer_id).partition(log.partition_count()));
        }
        total += stream.len();
    }
    let mut in_partitions = 0;
    for partition in 0..log.partition_count() {
        let records = log.read_partition(partition, 0, 100_000).await.unwrap();
        for (offset, record) in records.iter().enumerate() {
            assert_eq!(record.position.offset, offset as u64, "offsets are dense");
        }
        in_partitions += records.len();
    }
    assert_eq!(in_partitions, total, "every record belongs to exactly one stream");
    for partition in log.verify().await.unwrap() {
        assert!(partition.problem.is_none(), "{partition:?}");
    }
}

/// Runs one script per customer concurrently, each continuing its model.
async fn run_scripts(
    log: &covenant_log::EventLog,
    scripts: Vec<Vec<Step>>,
    mut models: HashMap<String, Model>,
    phase: &'static str,
) -> HashMap<String, Model> {
    let mut tasks = Vec::new();
    for (index, steps) in scripts.into_iter().enumerate() {
        let customer_id = format!("customer-{index}");
        let model = models.remove(&customer_id).unwrap_or_default();
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let model = run_customer(log, customer_id.clone(), steps, model, phase).await;
            (customer_id, model)
        }));
    }
    for task in tasks {
        let (customer_id, model) = task.await.unwrap();
        models.insert(customer_id, model);
    }
    models
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Customers' decision states are stored every `snapshot_every` events and, with a state
    /// cache of one customer, reloaded (snapshot + the events after it) for almost every command;
    /// after the reopen every state is reloaded.
    #[test]
    fn log_streams_equal_the_model(
        scripts in prop::collection::vec(
            (prop::collection::vec(step(), 0..60), prop::collection::vec(step(), 0..20)),
            1..7,
        ),
        partitions in 1u16..4,
        writers in 1usize..4,
        fsync in any::<bool>(),
        snapshot_every in 1u64..6,
        tiny_cache in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut config = config(dir.path(), partitions);
            config.writers = Some(writers);
            config.head_snapshot_every = snapshot_every;
            if tiny_cache {
                config.state_cache_per_partition = 1;
            }
            if fsync {
                config.durability = covenant_log::Durability::Fsync;
            }
            let (before, after): (Vec<_>, Vec<_>) = scripts.into_iter().unzip();
            let clock = ManualClock::starting_at(T0);
            let log = covenant_log::EventLog::open_with_clock(config.clone(), clock).await.unwrap();
            let models = run_scripts(&log, before, HashMap::new(), "").await;
            check(&log, &models).await;
            log.close().await.unwrap();
            let reopened = covenant_log::EventLog::open_with_clock(config, ManualClock::starting_at(T0)).await.unwrap();
            check(&reopened, &models).await;
            let models = run_scripts(&reopened, after, models, "again-").await;
            check(&reopened, &models).await;
        });
    }
}
