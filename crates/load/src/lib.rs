//! Covenant's load generator: realistic customer journeys sent over gRPC at a set rate by many
//! concurrent clients, measuring command latency and, optionally, how long each event takes to
//! become visible in standing (read-your-writes with `min_position`).
//!
//! Each client owns a disjoint set of customers and walks each one's journey a step per command,
//! so a customer's commands are sequential (as a real caller's would be) while customers run
//! concurrently. A journey: register, then rounds of: a call; a promise; then one of kept, kept
//! after a renegotiation, broken (customer report) + apology + compensation, or a complaint
//! opened, answered and resolved; a survey; a purchase.
//!
//! `rate = 0` sends as fast as the clients can (closed loop); otherwise each client sends on a
//! fixed schedule (`clients / rate` apart) and latency is measured from the scheduled instant, so
//! a stalled server shows up in the percentiles instead of silently lowering the rate.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use covenant_auth::{AuthChannel, ClientToken};
use covenant_proto::v1::batch_command::Command;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_proto::v1::{self};
use hdrhistogram::Histogram;
use tonic::transport::Channel;

/// HTTP/2 connections the clients share when none is given.
pub const DEFAULT_CONNECTIONS: u64 = 2;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://host:port` of the ledger.
    pub ledger: String,
    /// `http://host:port` of standing; `None`: visibility is not measured.
    pub standing: Option<String>,
    /// Commands per second over all clients; 0: as fast as possible.
    pub rate: u64,
    pub duration: Duration,
    /// Concurrent clients (each a gRPC stream of unary calls on a shared connection).
    pub clients: usize,
    /// Customers per client.
    pub customers_per_client: usize,
    /// Measure visibility for one command in this many (0: never).
    pub visibility_every: u64,
    /// Prefix of customer and command ids, unique per run so runs never collide.
    pub run_id: String,
    /// gRPC connections shared by the clients.
    pub connections: usize,
    /// The token sent with every call (`events:write`, and `standing:read` to measure visibility).
    pub token: ClientToken,
}

impl LoadConfig {
    pub fn new(ledger: impl Into<String>) -> Self {
        Self {
            ledger: ledger.into(),
            standing: None,
            rate: 1000,
            duration: Duration::from_secs(10),
            clients: 64,
            customers_per_client: 8,
            visibility_every: 10,
            run_id: format!("load{}", unix_millis()),
            connections: DEFAULT_CONNECTIONS as usize,
            token: ClientToken::none(),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    /// Errors by gRPC code name.
    pub errors: Vec<(String, u64)>,
    pub elapsed: Duration,
    /// Command latency in microseconds.
    pub latency: Histogram<u64>,
    /// Time from a command's reply until standing has applied it, in microseconds.
    pub visibility: Histogram<u64>,
}

impl LoadReport {
    /// Successful commands per second.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.ok as f64 / seconds } else { 0.0 }
    }

    /// A human-readable summary.
    pub fn summary(&self) -> String {
        let quantiles = |histogram: &Histogram<u64>| {
            if histogram.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "p50 {} p90 {} p99 {} max {}",
                    micros(histogram.value_at_quantile(0.5)),
                    micros(histogram.value_at_quantile(0.9)),
                    micros(histogram.value_at_quantile(0.99)),
                    micros(histogram.max())
                )
            }
        };
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors.iter().map(|(code, count)| format!("{code} {count}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "commands   {} sent, {} ok in {:.1} s = {:.0}/s\nerrors     {errors}\nlatency    {}\nvisibility {} ({} samples)",
            self.sent,
            self.ok,
            self.elapsed.as_secs_f64(),
            self.rate(),
            quantiles(&self.latency),
            quantiles(&self.visibility),
            self.visibility.len()
        )
    }
}

fn micros(value: u64) -> String {
    if value >= 10_000 {
        format!("{:.0} ms", value as f64 / 1000.0)
    } else {
        format!("{:.2} ms", value as f64 / 1000.0)
    }
}

fn unix_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_millis()).unwrap_or(0)
}

/// An empty latency histogram (microseconds, up to 60 s, 3 significant digits).
pub fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|error| anyhow!("histogram: {error}"))
}

fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// One customer's place in their journey.
#[derive(Debug, Clone)]
pub struct Journey {
    customer: String,
    run: String,
    step: u64,
    round: u64,
    /// Index of the next step within the round.
    round_step: usize,
    /// The round's path: 0 kept, 1 renegotiated then kept, 2 broken and recovered, 3 complaint.
    path: u64,
}

impl Journey {
    pub fn new(run: &str, customer: String, seed: u64) -> Self {
        Self { customer, run: run.to_owned(), step: 0, round: 0, round_step: 0, path: seed % 4 }
    }

    pub fn customer(&self) -> &str {
        &self.customer
    }

    fn header(&self) -> Option<v1::CommandHeader> {
        Some(v1::CommandHeader {
            customer_id: self.customer.clone(),
            command_id: format!("{}-{}-{}", self.run, self.customer, self.step),
            expected_version: None,
            occurred_at: None,
            actor: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: format!("agent-{}", self.path) }),
            team: ["support-emea", "support-us", "billing"][(self.round % 3) as usize].into(),
            channel: v1::Channel::Phone as i32,
            correlation_id: String::new(),
            causation_id: String::new(),
        })
    }

    fn id(&self, what: &str) -> String {
        format!("{what}-{}", self.round)
    }

    /// The next command of the journey (and advances it).
    pub fn next_command(&mut self) -> Command {
        let command = self.command_at_step();
        self.step += 1;
        command
    }

    fn command_at_step(&mut self) -> Command {
        if self.step == 0 {
            return Command::RegisterCustomer(v1::RegisterCustomerRequest {
                header: self.header(),
                name: format!("Load Customer {}", self.customer),
                contact_points: vec![v1::ContactPoint {
                    kind: v1::ContactKind::Email as i32,
                    value: format!("{}@example.com", self.customer),
                }],
                locale: "en-GB".into(),
                timezone: "Europe/London".into(),
                segment: "smb".into(),
                source: "web".into(),
                tier: v1::Tier::Standard as i32,
            });
        }
        // Steps of a round; the path decides the middle.
        let round_steps: &[&str] = match self.path {
            0 => &["call", "promise", "keep", "survey", "purchase"],
            1 => &["call", "promise", "renegotiate", "keep", "survey", "purchase"],
            2 => &["call", "promise", "break", "apology", "compensation", "survey", "purchase"],
            _ => &["call", "complaint", "respond", "resolve", "survey", "purchase"],
        };
        let what = round_steps[self.round_step % round_steps.len()];
        let command = self.step_command(what);
        self.round_step += 1;
        if self.round_step == round_steps.len() {
            // The next round takes the next path, from its first step.
            self.round += 1;
            self.round_step = 0;
            self.path = (self.path + 1) % 4;
        }
        command
    }

    fn step_command(&self, what: &str) -> Command {
        let header = self.header();
        let promise_id = self.id("promise");
        let complaint_id = self.id("complaint");
        let promise_ref =
            || Some(v1::RelatedRef { target: Some(v1::related_ref::Target::PromiseId(promise_id.clone())) });
        match what {
            "call" => Command::RecordInteraction(v1::RecordInteractionRequest {
                header,
                interaction_id: self.id("call"),
                channel: v1::Channel::Phone as i32,
                direction: v1::Direction::Inbound as i32,
                kind: v1::InteractionKind::Inquiry as i32,
                agent_id: "agent-1".into(),
                wait_secs: 40,
                handle_secs: 300,
                sentiment: v1::Sentiment::Neutral as i32,
                summary: "asked about the order".into(),
            }),
            "promise" => Command::MakePromise(v1::MakePromiseRequest {
                header,
                promise_id: promise_id.clone(),
                kind: v1::PromiseKind::Delivery as i32,
                description: "ships within three days".into(),
                made_by: "agent-1".into(),
                due_at: Some(in_days(3)),
                grace: Some(prost_types::Duration { seconds: 3600, nanos: 0 }),
                related_ref: None,
            }),
            "renegotiate" => Command::RenegotiatePromise(v1::RenegotiatePromiseRequest {
                header,
                promise_id: promise_id.clone(),
                new_due_at: Some(in_days(5)),
                customer_consented: true,
            }),
            "keep" => Command::KeepPromise(v1::KeepPromiseRequest {
                header,
                promise_id: promise_id.clone(),
                kept_at: None,
                evidence: "delivered".into(),
            }),
            "break" => Command::ReportBrokenPromise(v1::ReportBrokenPromiseRequest {
                header,
                promise_id: promise_id.clone(),
                detection: v1::BreakDetection::CustomerReport as i32,
                reason: "did not ship".into(),
            }),
            "apology" => {
                Command::IssueApology(v1::IssueApologyRequest { header, related_ref: promise_ref() })
            }
            "compensation" => Command::GrantCompensation(v1::GrantCompensationRequest {
                header,
                related_ref: promise_ref(),
                kind: v1::CompensationKind::Credit as i32,
                amount: Some(v1::Money { amount_minor: 500, currency: "EUR".into() }),
            }),
            "complaint" => Command::OpenComplaint(v1::OpenComplaintRequest {
                header,
                complaint_id,
                category: v1::ComplaintCategory::Delay as i32,
                severity: v1::Severity::Moderate as i32,
                priority: v1::Priority::Normal as i32,
                channel: v1::Channel::Email as i32,
                description: "late parcel".into(),
            }),
            "respond" => Command::RespondToComplaint(v1::RespondToComplaintRequest { header, complaint_id }),
            "resolve" => Command::ResolveComplaint(v1::ResolveComplaintRequest {
                header,
                complaint_id,
                outcome: v1::ResolutionOutcome::Resolved as i32,
            }),
            "survey" => Command::AnswerSurvey(v1::AnswerSurveyRequest {
                header,
                survey_id: self.id("survey"),
                kind: v1::SurveyKind::Nps as i32,
                score: [9, 7, 4, 8][self.path as usize % 4],
                comment: String::new(),
                related_ref: None,
            }),
            _ => Command::RecordPurchase(v1::RecordPurchaseRequest {
                header,
                order_id: self.id("order"),
                amount: Some(v1::Money { amount_minor: 2_500, currency: "EUR".into() }),
            }),
        }
    }
}

fn in_days(days: i64) -> prost_types::Timestamp {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
    prost_types::Timestamp { seconds: i64::try_from(seconds).unwrap_or(0) + days * 86_400, nanos: 0 }
}

/// Sends `command` with its own unary RPC.
pub async fn send<T>(
    client: &mut LedgerClient<T>,
    command: Command,
) -> Result<v1::AppendResponse, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let response = match command {
        Command::RegisterCustomer(request) => client.register_customer(request).await,
        Command::RecordInteraction(request) => client.record_interaction(request).await,
        Command::MakePromise(request) => client.make_promise(request).await,
        Command::RenegotiatePromise(request) => client.renegotiate_promise(request).await,
        Command::KeepPromise(request) => client.keep_promise(request).await,
        Command::ReportBrokenPromise(request) => client.report_broken_promise(request).await,
        Command::IssueApology(request) => client.issue_apology(request).await,
        Command::GrantCompensation(request) => client.grant_compensation(request).await,
        Command::OpenComplaint(request) => client.open_complaint(request).await,
        Command::RespondToComplaint(request) => client.respond_to_complaint(request).await,
        Command::ResolveComplaint(request) => client.resolve_complaint(request).await,
        Command::AnswerSurvey(request) => client.answer_survey(request).await,
        Command::RecordPurchase(request) => client.record_purchase(request).await,
        other => {
            let mut batch = client
                .append_batch(v1::AppendBatchRequest {
                    commands: vec![v1::BatchCommand { command: Some(other) }],
                })
                .await?
                .into_inner();
            return match batch.results.pop().and_then(|result| result.result) {
                Some(v1::batch_result::Result::Appended(appended)) => Ok(appended),
                Some(v1::batch_result::Result::Error(error)) => {
                    Err(tonic::Status::new(error.code.into(), error.message))
                }
                None => Err(tonic::Status::internal("an empty batch result")),
            };
        }
    };
    response.map(tonic::Response::into_inner)
}

/// Appends `commands` through `AppendBatch`, `chunk` commands per call (at most the ledger's
/// 1000); fails naming the first item the ledger refused.
pub async fn append_all<T>(
    client: &mut LedgerClient<T>,
    commands: Vec<v1::BatchCommand>,
    chunk: usize,
) -> Result<()>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    for (index, chunk) in commands.chunks(chunk.clamp(1, 1000)).enumerate() {
        let results = client
            .append_batch(v1::AppendBatchRequest { commands: chunk.to_vec() })
            .await?
            .into_inner()
            .results;
        if let Some(refused) = results
            .iter()
            .position(|result| !matches!(result.result, Some(v1::batch_result::Result::Appended(_))))
        {
            return Err(anyhow!("batch {index}, item {refused} was refused: {:?}", results[refused].result));
        }
    }
    Ok(())
}

/// One client's share of the run.
struct Client {
    ledger: LedgerClient<AuthChannel>,
    standing: Option<StandingClient<AuthChannel>>,
    journeys: Vec<Journey>,
    /// Time between two sends (`None`: closed loop).
    interval: Option<Duration>,
    visibility_every: u64,
}

struct ClientReport {
    sent: u64,
    ok: u64,
    errors: Vec<(tonic::Code, u64)>,
    latency: Histogram<u64>,
    visibility: Histogram<u64>,
}

impl Client {
    async fn run(mut self, start: Instant, until: Instant, offset: Duration) -> Result<ClientReport> {
        let mut report = ClientReport {
            sent: 0,
            ok: 0,
            errors: Vec::new(),
            latency: histogram()?,
            visibility: histogram()?,
        };
        let mut next_send = start + offset;
        let mut turn = 0usize;
        while Instant::now() < until {
            let scheduled = match self.interval {
                Some(interval) => {
                    tokio::time::sleep_until(next_send.into()).await;
                    let scheduled = next_send;
                    next_send += interval;
                    scheduled
                }
                None => Instant::now(),
            };
            if scheduled >= until {
                break;
            }
            let count = self.journeys.len();
            let journey = &mut self.journeys[turn % count];
            turn += 1;
            let command = journey.next_command();
            report.sent += 1;
            match send(&mut self.ledger, command).await {
                Ok(appended) => {
                    report.ok += 1;
                    let replied = Instant::now();
                    record(&mut report.latency, replied - scheduled);
                    if let (Some(standing), true) = (
                        self.standing.as_mut(),
                        self.visibility_every > 0 && report.ok.is_multiple_of(self.visibility_every),
                    ) && !appended.positions.is_empty()
                    {
                        let visible = wait_visible(standing, appended.positions)
                            .await
                            .context("wait for standing to apply a command")?;
                        if visible {
                            record(&mut report.visibility, replied.elapsed());
                        }
                    }
                }
                Err(status) => {
                    record(&mut report.latency, Instant::now() - scheduled);
                    match report.errors.iter_mut().find(|(code, _)| *code == status.code()) {
                        Some((_, count)) => *count += 1,
                        None => report.errors.push((status.code(), 1)),
                    }
                    tracing::debug!(%status, "command failed");
                }
            }
        }
        Ok(report)
    }
}

/// True once standing has applied `positions` (false: not within 30 s). `ListOpenComplaints`
/// of a customer who does not exist is the cheapest query that takes a consistency requirement.
async fn wait_visible(
    standing: &mut StandingClient<AuthChannel>,
    positions: Vec<v1::Position>,
) -> Result<bool> {
    let answer = standing
        .list_open_complaints(v1::ListOpenComplaintsRequest {
            customer_id: "load-visibility-probe".into(),
            page_size: 1,
            page_token: String::new(),
            consistency: Some(v1::ReadConsistency { min_position: positions, wait_ms: 30_000 }),
        })
        .await;
    match answer {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::Unavailable => Ok(false),
        Err(status) => Err(status.into()),
    }
}

/// Runs the load and reports.
pub async fn run(config: &LoadConfig) -> Result<LoadReport> {
    if config.clients == 0 || config.customers_per_client == 0 {
        return Err(anyhow!("clients and customers per client must be at least 1"));
    }
    let mut ledger_channels = Vec::new();
    for _ in 0..config.connections.max(1) {
        ledger_channels.push(
            Channel::from_shared(config.ledger.clone())
                .context("the ledger's address")?
                .connect()
                .await
                .with_context(|| format!("connect to the ledger at {}", config.ledger))
                .and_then(|channel| Ok(config.token.channel(channel)?))?,
        );
    }
    let standing_channel = match &config.standing {
        Some(url) => Some(
            Channel::from_shared(url.clone())
                .context("standing's address")?
                .connect()
                .await
                .with_context(|| format!("connect to standing at {url}"))
                .and_then(|channel| Ok(config.token.channel(channel)?))?,
        ),
        None => None,
    };
    let interval =
        (config.rate > 0).then(|| Duration::from_secs_f64(config.clients as f64 / config.rate as f64));
    let start = Instant::now() + Duration::from_millis(50);
    let until = start + config.duration;
    let mut tasks = Vec::new();
    for index in 0..config.clients {
        let journeys = (0..config.customers_per_client)
            .map(|n| {
                let seed = (index * config.customers_per_client + n) as u64;
                Journey::new(&config.run_id, format!("{}-c{index}-{n}", config.run_id), seed)
            })
            .collect();
        let client = Client {
            ledger: LedgerClient::new(ledger_channels[index % ledger_channels.len()].clone()),
            standing: standing_channel.clone().map(StandingClient::new),
            journeys,
            interval,
            visibility_every: config.visibility_every,
        };
        // Spread the clients' schedules over one interval.
        let offset = interval
            .map_or(Duration::ZERO, |interval| interval.mul_f64(index as f64 / config.clients as f64));
        tasks.push(tokio::spawn(client.run(start, until, offset)));
    }
    let mut report = LoadReport {
        sent: 0,
        ok: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
        latency: histogram()?,
        visibility: histogram()?,
    };
    for task in tasks {
        let client = task.await.context("a load client task")??;
        report.sent += client.sent;
        report.ok += client.ok;
        for (code, count) in client.errors {
            let name = format!("{code:?}");
            match report.errors.iter_mut().find(|(known, _)| *known == name) {
                Some((_, total)) => *total += count,
                None => report.errors.push((name, count)),
            }
        }
        report.latency.add(&client.latency).map_err(|error| anyhow!("merge histograms: {error}"))?;
        report.visibility.add(&client.visibility).map_err(|error| anyhow!("merge histograms: {error}"))?;
    }
    report.elapsed = start.elapsed().min(config.duration.max(until.saturating_duration_since(start)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journey_walks_every_path_with_unique_command_ids() {
        let mut journey = Journey::new("run", "customer".into(), 0);
        let mut kinds = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..40 {
            let command = journey.next_command();
            let header = match &command {
                Command::RegisterCustomer(request) => request.header.clone(),
                Command::RecordInteraction(request) => request.header.clone(),
                Command::MakePromise(request) => request.header.clone(),
                Command::RenegotiatePromise(request) => request.header.clone(),
                Command::KeepPromise(request) => request.header.clone(),
                Command::ReportBrokenPromise(request) => request.header.clone(),
                Command::IssueApology(request) => request.header.clone(),
                Command::GrantCompensation(request) => request.header.clone(),
                Command::OpenComplaint(request) => request.header.clone(),
                Command::RespondToComplaint(request) => request.header.clone(),
                Command::ResolveComplaint(request) => request.header.clone(),
                Command::AnswerSurvey(request) => request.header.clone(),
                Command::RecordPurchase(request) => request.header.clone(),
                other => panic!("unexpected {other:?}"),
            };
            assert!(ids.insert(header.unwrap().command_id));
            kinds.push(std::mem::discriminant(&command));
        }
        assert!(matches!(Journey::new("r", "c".into(), 0).next_command(), Command::RegisterCustomer(_)));
        let distinct: std::collections::HashSet<_> = kinds.into_iter().collect();
        assert_eq!(distinct.len(), 13, "every kind of command appears within 40 steps");
    }
}
