//! The scheduler: sends the ledger a command for every deadline that has passed, and forgets a
//! deadline once the ledger has settled it.
//!
//! It scans the `deadlines` family from the start (the earliest due first), so after downtime it
//! finds every deadline that passed meanwhile. It wakes when an applied batch sets a deadline,
//! when the earliest pending deadline falls due, when a request finishes, and at least every
//! [`SchedulerConfig::tick`].
//!
//! Each command carries the deadline's deterministic `command_id`, so sending it twice (a
//! restart between the send and the removal, a second watchdog) records the breach once: the
//! ledger answers a retry with the first result. What the ledger answers decides what happens to
//! the deadline (see [`Outcome`]):
//! - recorded now or before, or refused for good (the promise was kept, the complaint answered,
//!   the customer erased…: the ledger decides): the deadline is removed;
//! - the ledger says the deadline has not passed yet (its clock is behind ours, or the promise was
//!   renegotiated in an event not applied here yet): that deadline is tried again later;
//! - no answer (NATS or the ledger down, a timeout, `UNAVAILABLE`): the deadline stays, and the
//!   scheduler pauses all sending with exponential backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, RequestErrorKind};
use covenant_bus::subjects::command_subject;
use covenant_domain::deadlines::{Deadline, DeadlineSubject};
use covenant_domain::events::{Actor, ActorKind};
use covenant_domain::ids::ActorId;
use covenant_domain::{DomainError, Timestamp};
use covenant_proto::convert::CommandRequest;
use covenant_proto::v1;
use prost::Message as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::store::DeadlineStore;

/// The actor id the watchdog's commands carry (kind `system`).
pub const ACTOR_ID: &str = "watchdog";

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most commands awaiting the ledger's answer at once.
    pub max_in_flight: usize,
    /// How long to wait for the ledger's answer to one command.
    pub request_timeout: Duration,
    /// Longest sleep between two scans.
    pub tick: Duration,
    /// First pause after the ledger could not be reached (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// First wait before retrying a deadline the ledger found not yet passed (doubles up to
    /// `max_backoff`).
    pub early_retry: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            request_timeout: Duration::from_secs(5),
            tick: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            early_retry: Duration::from_millis(500),
        }
    }
}

/// What became of one command sent to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The ledger recorded the breach (`PromiseBroken` / `SlaBreached`).
    Recorded,
    /// An earlier send of the same deadline already recorded it (the ledger returned the first
    /// result).
    AlreadyRecorded,
    /// The ledger refused for good: nothing to record (the promise is no longer open, the
    /// complaint was answered or resolved, the customer is unknown or erased, …).
    Refused { code: i32, message: String },
    /// The ledger found the deadline not passed yet.
    NotYetDue { message: String },
    /// No usable answer: try again later.
    Unavailable { reason: String },
}

impl Outcome {
    /// Whether the deadline is settled (to be removed).
    pub fn settles(&self) -> bool {
        matches!(self, Outcome::Recorded | Outcome::AlreadyRecorded | Outcome::Refused { .. })
    }

    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Recorded => "recorded",
            Outcome::AlreadyRecorded => "already_recorded",
            Outcome::Refused { .. } => "refused",
            Outcome::NotYetDue { .. } => "not_yet_due",
            Outcome::Unavailable { .. } => "unavailable",
        }
    }
}

/// `google.rpc.Code` values the classification distinguishes.
mod code {
    pub(super) const INVALID_ARGUMENT: i32 = 3;
    pub(super) const NOT_FOUND: i32 = 5;
    pub(super) const ALREADY_EXISTS: i32 = 6;
    pub(super) const FAILED_PRECONDITION: i32 = 9;
    pub(super) const OUT_OF_RANGE: i32 = 11;
}

/// Classifies the ledger's reply body (a protobuf `BatchResult`).
pub fn classify_reply(body: &[u8]) -> Outcome {
    let result = match v1::BatchResult::decode(body) {
        Ok(result) => result.result,
        Err(error) => {
            return Outcome::Unavailable { reason: format!("the reply is not a BatchResult: {error}") };
        }
    };
    match result {
        Some(v1::batch_result::Result::Appended(appended)) if appended.deduplicated => {
            Outcome::AlreadyRecorded
        }
        Some(v1::batch_result::Result::Appended(_)) => Outcome::Recorded,
        Some(v1::batch_result::Result::Error(error)) => classify_error(error.code, error.message),
        None => Outcome::Unavailable { reason: "the reply has no result".into() },
    }
}

/// Classifies a ledger error by its `google.rpc.Code`.
pub fn classify_error(code: i32, message: String) -> Outcome {
    match code {
        // The deadline has not passed by the ledger's clock (the domain's `TooEarly` rejection):
        // the same command will be accepted later.
        code::OUT_OF_RANGE => Outcome::NotYetDue { message },
        // A command the ledger will never accept: retrying cannot help (INVALID_ARGUMENT would be
        // a watchdog bug, logged as an error by the caller).
        code::FAILED_PRECONDITION | code::NOT_FOUND | code::ALREADY_EXISTS | code::INVALID_ARGUMENT => {
            Outcome::Refused { code, message }
        }
        // UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED, INTERNAL, DATA_LOSS, …
        _ => Outcome::Unavailable { reason: format!("ledger error {code}: {message}") },
    }
}

/// The NATS subject and body of the command for a passed `deadline`, detected at `now`.
pub fn command_message(deadline: &Deadline, now: Timestamp) -> Result<(String, bytes::Bytes), DomainError> {
    let request = CommandRequest {
        customer_id: deadline.customer_id.clone(),
        command_id: deadline.command_id()?,
        expected_version: None,
        occurred_at: Some(now),
        actor: Actor { kind: ActorKind::System, id: ActorId::new(ACTOR_ID)? },
        team: None,
        channel: None,
        correlation_id: None,
        causation_id: None,
        command: deadline.command(),
    };
    let subject = command_subject(command_name(deadline));
    Ok((subject, v1::BatchCommand::from(&request).encode_to_vec().into()))
}

/// `expire_promise` or `breach_sla`: the subject suffix and the metric label.
pub fn command_name(deadline: &Deadline) -> &'static str {
    match deadline.subject {
        DeadlineSubject::Promise(_) => "expire_promise",
        DeadlineSubject::Complaint(..) => "breach_sla",
    }
}

/// Sends the command of `deadline` and classifies the answer.
async fn send(client: &Client, deadline: &Deadline, timeout: Duration) -> Outcome {
    let (subject, body) = match command_message(deadline, Timestamp::now()) {
        Ok(message) => message,
        // Cannot happen with valid ids; a deadline that cannot become a command is dropped.
        Err(error) => return Outcome::Refused { code: code::INVALID_ARGUMENT, message: error.to_string() },
    };
    let request = async_nats::Request::new().payload(body).timeout(Some(timeout));
    match client.send_request(subject, request).await {
        Ok(reply) => classify_reply(&reply.payload),
        Err(error) => {
            let kind = match error.kind() {
                RequestErrorKind::TimedOut => "timed out",
                RequestErrorKind::NoResponders => "no ledger is listening",
                _ => "failed",
            };
            Outcome::Unavailable { reason: format!("the request {kind}: {error}") }
        }
    }
}

/// One finished command: its deadline key, the deadline, what happened.
type Finished = (Vec<u8>, Deadline, Outcome);

/// Runs until `stop` turns true.
pub async fn run(
    store: Arc<DeadlineStore>,
    client: Client,
    config: SchedulerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut scheduler = Scheduler {
        store,
        client,
        in_flight: JoinSet::new(),
        busy: HashSet::new(),
        tasks: HashMap::new(),
        later: HashMap::new(),
        paused_until: None,
        backoff: config.min_backoff,
        config,
    };
    tracing::info!(max_in_flight = scheduler.config.max_in_flight, "scheduler running");
    loop {
        let wake = scheduler.launch_due().await;
        tokio::select! {
            biased;
            () = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
            Some(joined) = scheduler.in_flight.join_next_with_id(), if !scheduler.in_flight.is_empty() => {
                scheduler.finished(joined);
                while let Some(joined) = scheduler.in_flight.try_join_next_with_id() {
                    scheduler.finished(joined);
                }
            }
            () = scheduler.store.changed().notified() => {}
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    scheduler.in_flight.abort_all();
    tracing::info!("scheduler stopped");
}

struct Scheduler {
    store: Arc<DeadlineStore>,
    client: Client,
    config: SchedulerConfig,
    in_flight: JoinSet<Finished>,
    /// Keys of the deadlines in flight.
    busy: HashSet<Vec<u8>>,
    /// The deadline key of each task in flight.
    tasks: HashMap<tokio::task::Id, Vec<u8>>,
    /// Deadlines the ledger found not yet due: when to retry, and the current wait.
    later: HashMap<Vec<u8>, (Instant, Duration)>,
    /// No sending until then (the ledger could not be reached).
    paused_until: Option<Instant>,
    backoff: Duration,
}

impl Scheduler {
    /// Sends the commands of due deadlines while there is room; returns when to look again.
    async fn launch_due(&mut self) -> Instant {
        let started = Instant::now();
        let mut wake = started + self.config.tick;
        // Retry entries not relaunched for long belong to deadlines that moved or were cleared.
        self.later.retain(|_, (retry_at, _)| *retry_at + Duration::from_secs(600) > started);
        for (retry_at, _) in self.later.values() {
            if *retry_at > started {
                wake = wake.min(*retry_at);
            }
        }
        if let Some(until) = self.paused_until {
            if until > started {
                return wake.min(until);
            }
            self.paused_until = None;
        }
        let room = self.config.max_in_flight.saturating_sub(self.in_flight.len());
        if room == 0 {
            return wake;
        }
        let mut skip = self.busy.clone();
        skip.extend(
            self.later.iter().filter(|(_, (retry_at, _))| *retry_at > started).map(|(key, _)| key.clone()),
        );
        let now = Timestamp::now();
        let store = Arc::clone(&self.store);
        let scan = tokio::task::spawn_blocking(move || store.due(now, room, &skip)).await;
        let scan = match scan {
            Ok(Ok(scan)) => scan,
            Ok(Err(error)) => {
                tracing::error!(%error, "could not scan the deadlines");
                return wake;
            }
            Err(error) => {
                tracing::error!(%error, "the deadline scan panicked");
                return wake;
            }
        };
        if let Some(next_due) = scan.next_due {
            // Due means strictly past: wake one millisecond after the instant.
            let millis = next_due.unix_millis().saturating_sub(now.unix_millis()).saturating_add(1);
            wake = wake.min(started + Duration::from_millis(u64::try_from(millis).unwrap_or(0)));
        }
        for (key, deadline) in scan.due {
            self.launch(key, deadline);
        }
        wake
    }

    fn launch(&mut self, key: Vec<u8>, deadline: Deadline) {
        tracing::debug!(?deadline, "deadline passed; asking the ledger");
        self.busy.insert(key.clone());
        let (client, store, timeout) =
            (self.client.clone(), Arc::clone(&self.store), self.config.request_timeout);
        let task_key = key.clone();
        let handle = self.in_flight.spawn(async move {
            let outcome = send(&client, &deadline, timeout).await;
            if outcome.settles() {
                let (key, deadline) = (key.clone(), deadline.clone());
                match tokio::task::spawn_blocking(move || store.remove(&key, &deadline)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::error!(%error, "could not remove a settled deadline"),
                    Err(error) => tracing::error!(%error, "removing a settled deadline panicked"),
                }
            }
            (key, deadline, outcome)
        });
        self.tasks.insert(handle.id(), task_key);
    }

    fn finished(&mut self, joined: Result<(tokio::task::Id, Finished), tokio::task::JoinError>) {
        let (key, deadline, outcome) = match joined {
            Ok((id, finished)) => {
                self.tasks.remove(&id);
                finished
            }
            Err(error) => {
                // The deadline stays stored: the next scan picks it up again.
                tracing::error!(%error, "a command task failed");
                if let Some(key) = self.tasks.remove(&error.id()) {
                    self.busy.remove(&key);
                }
                return;
            }
        };
        self.busy.remove(&key);
        let command = command_name(&deadline);
        metrics::counter!("covenant_watchdog_commands_total", "command" => command, "outcome" => outcome.label())
            .increment(1);
        let customer_id = deadline.customer_id.as_str();
        match &outcome {
            Outcome::Recorded => {
                tracing::info!(customer_id, command, subject = ?deadline.subject, due_at = %deadline.due_at, "breach recorded");
            }
            Outcome::AlreadyRecorded => {
                tracing::info!(customer_id, command, subject = ?deadline.subject, "breach was already recorded");
            }
            Outcome::Refused { code, message } if *code == code::INVALID_ARGUMENT => {
                tracing::error!(customer_id, command, subject = ?deadline.subject, message, "the ledger rejected a watchdog command as invalid; dropping the deadline");
            }
            Outcome::Refused { message, .. } => {
                tracing::info!(customer_id, command, subject = ?deadline.subject, message, "nothing to record");
            }
            Outcome::NotYetDue { message } => {
                let wait = self
                    .later
                    .get(&key)
                    .map_or(self.config.early_retry, |(_, wait)| (*wait * 2).min(self.config.max_backoff));
                tracing::info!(customer_id, command, subject = ?deadline.subject, message, ?wait, "the ledger says not yet due; retrying later");
                self.later.insert(key, (Instant::now() + wait, wait));
                return;
            }
            Outcome::Unavailable { reason } => {
                let now = Instant::now();
                // The other commands in flight when the ledger went away fail too: one pause.
                if self.paused_until.is_none_or(|until| until <= now) {
                    tracing::warn!(customer_id, command, reason, backoff = ?self.backoff, "the ledger did not answer; pausing");
                    self.paused_until = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(self.config.max_backoff);
                }
                return;
            }
        }
        self.later.remove(&key);
        self.backoff = self.config.min_backoff;
    }
}

#[cfg(test)]
mod tests {
    use covenant_domain::ids::{ComplaintId, CustomerId, PromiseId};
    use covenant_domain::{Command, events::SlaTarget};

    use super::*;

    fn reply(result: v1::batch_result::Result) -> Vec<u8> {
        v1::BatchResult { result: Some(result) }.encode_to_vec()
    }

    fn error(code: i32, message: &str) -> Vec<u8> {
        reply(v1::batch_result::Result::Error(v1::BatchError { code, message: message.into() }))
    }

    #[test]
    fn replies_are_classified_by_result_and_code() {
        let appended = |deduplicated| {
            reply(v1::batch_result::Result::Appended(v1::AppendResponse {
                deduplicated,
                ..Default::default()
            }))
        };
        assert_eq!(classify_reply(&appended(false)), Outcome::Recorded);
        assert_eq!(classify_reply(&appended(true)), Outcome::AlreadyRecorded);
        for code in [5, 6, 9, 3] {
            let outcome = classify_reply(&error(code, "promise p1 is kept; cannot expire"));
            assert!(matches!(outcome, Outcome::Refused { code: c, .. } if c == code), "{outcome:?}");
            assert!(outcome.settles());
        }
        let early = classify_reply(&error(11, "promise p1 (due_at + grace) is due at 5ms, not yet passed"));
        assert!(matches!(early, Outcome::NotYetDue { .. }));
        assert!(!early.settles());
        let refused = classify_reply(&error(9, "promise p1 is kept: cannot expire"));
        assert!(matches!(refused, Outcome::Refused { .. }));
        for code in [14, 4, 10, 13, 8, 15, 2] {
            let outcome = classify_reply(&error(code, "busy"));
            assert!(matches!(outcome, Outcome::Unavailable { .. }), "{code}: {outcome:?}");
            assert!(!outcome.settles());
        }
        assert!(matches!(classify_reply(&[0xff, 0xff]), Outcome::Unavailable { .. }));
        assert!(matches!(classify_reply(&[]), Outcome::Unavailable { .. }));
    }

    /// The domain rejects early expiries and breaches as `TooEarly` (OUT_OF_RANGE at the ledger),
    /// which the classification retries.
    #[test]
    fn early_commands_are_too_early_in_the_domain() {
        use covenant_domain::{CustomerState, DecisionContext, apply, decide, sample};
        let t0 = Timestamp::from_unix_millis_clamped(1_800_000_000_000);
        let context = DecisionContext { now: t0, occurred_at: t0 };
        let mut state = CustomerState::default();
        let run = |state: &mut CustomerState, command: Command| {
            for event in decide(state, "alice", &command, &context).unwrap() {
                apply(state, &event, t0);
            }
        };
        run(&mut state, sample::register("Alice").unwrap());
        run(&mut state, sample::promise("p1", t0.plus(covenant_domain::Span::from_secs(60))).unwrap());
        run(&mut state, sample::complaint("c1").unwrap());
        let expire = Command::ExpirePromise { promise_id: PromiseId::new("p1").unwrap() };
        let breach = Command::BreachSla {
            complaint_id: ComplaintId::new("c1").unwrap(),
            target: SlaTarget::FirstReply,
            due_at: t0.plus(covenant_domain::Span::from_secs(60)),
        };
        for command in [expire, breach] {
            let refusal = decide(&state, "alice", &command, &context).unwrap_err();
            assert_eq!(refusal.kind(), covenant_domain::RejectionKind::TooEarly, "{refusal}");
        }
        let unknown = Command::ExpirePromise { promise_id: PromiseId::new("nope").unwrap() };
        let refusal = decide(&state, "alice", &unknown, &context).unwrap_err();
        assert_eq!(refusal.kind(), covenant_domain::RejectionKind::NotFound);
    }

    #[test]
    fn commands_carry_the_deterministic_id_and_the_system_actor() {
        let deadline = Deadline {
            due_at: Timestamp::from_unix_millis_clamped(1_800_000_000_000),
            customer_id: CustomerId::new("alice").unwrap(),
            subject: DeadlineSubject::Promise(PromiseId::new("p1").unwrap()),
        };
        let now = Timestamp::from_unix_millis_clamped(1_800_000_001_000);
        let (subject, body) = command_message(&deadline, now).unwrap();
        assert_eq!(subject, "covenant.cmd.expire_promise");
        let (_, again) = command_message(&deadline, now).unwrap();
        assert_eq!(body, again);
        let decoded = v1::BatchCommand::decode(body.as_ref()).unwrap();
        let Some(v1::batch_command::Command::ExpirePromise(request)) = decoded.command else {
            panic!("{decoded:?}")
        };
        assert_eq!(request.promise_id, "p1");
        let header = request.header.unwrap();
        assert_eq!(header.command_id, deadline.command_id().unwrap().as_str());
        assert_eq!(header.customer_id, "alice");
        assert_eq!(header.actor.unwrap().id, ACTOR_ID);
        let sla = Deadline {
            subject: DeadlineSubject::Complaint(ComplaintId::new("c1").unwrap(), SlaTarget::Resolution),
            ..deadline
        };
        assert_eq!(command_message(&sla, now).unwrap().0, "covenant.cmd.breach_sla");
    }
}
