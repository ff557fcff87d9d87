//! `covenant demo`: realistic customer journeys recorded through the ledger's gRPC API — kept,
//! late, broken and recovered promises, complaints, surveys, purchases — then a table of each
//! customer's stream and their trust standing, asked of the standing service with read-your-writes
//! (`min_position` = the customer's last event). Every call is a real gRPC request, as another
//! service would make it.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use covenant_auth::AuthChannel;
use covenant_proto::v1::{
    self, event_log_client::EventLogClient, ledger_client::LedgerClient, standing_client::StandingClient,
};

/// Options of `covenant demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// The ledger's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    ledger: String,
    /// The standing service's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    standing: String,
    /// Customers to create.
    #[arg(long, default_value_t = 8)]
    customers: u32,
}

/// Builds the requests of one customer's journey; every command gets its own id.
struct Journey {
    customer: String,
    run: u64,
    step: u32,
}

impl Journey {
    fn header(&mut self) -> Option<v1::CommandHeader> {
        self.header_at(None)
    }

    /// A header for something that happened at `occurred_at` (logged later).
    fn header_at(&mut self, occurred_at: Option<prost_types::Timestamp>) -> Option<v1::CommandHeader> {
        self.step += 1;
        Some(v1::CommandHeader {
            customer_id: self.customer.clone(),
            command_id: format!("demo-{}-{}-{}", self.run, self.customer, self.step),
            expected_version: None,
            occurred_at,
            actor: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "agent-ada".into() }),
            team: "support-emea".into(),
            channel: v1::Channel::Phone as i32,
            correlation_id: String::new(),
            causation_id: String::new(),
        })
    }

    fn id(&self, what: &str) -> String {
        format!("{what}-{}", self.run)
    }
}

fn in_days(days: i64) -> prost_types::Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
    prost_types::Timestamp { seconds: i64::try_from(now).unwrap_or(0) + days * 86_400, nanos: 0 }
}

fn eur(amount_minor: i64) -> Option<v1::Money> {
    Some(v1::Money { amount_minor, currency: "EUR".into() })
}

fn promise_ref(promise_id: &str) -> Option<v1::RelatedRef> {
    Some(v1::RelatedRef { target: Some(v1::related_ref::Target::PromiseId(promise_id.to_owned())) })
}

async fn journey(client: &mut LedgerClient<AuthChannel>, index: u32, run: u64) -> anyhow::Result<()> {
    let mut j = Journey { customer: format!("demo-customer-{index}"), run, step: 0 };
    let tier = [v1::Tier::Standard, v1::Tier::Premium, v1::Tier::Basic, v1::Tier::Vip][index as usize % 4];
    let registered = client
        .register_customer(v1::RegisterCustomerRequest {
            header: j.header(),
            name: format!("Demo Customer {index}"),
            contact_points: vec![v1::ContactPoint {
                kind: v1::ContactKind::Email as i32,
                value: format!("customer{index}@example.com"),
            }],
            locale: "en-GB".into(),
            timezone: "Europe/London".into(),
            segment: if index.is_multiple_of(3) { "enterprise".into() } else { "smb".into() },
            source: "web".into(),
            tier: tier as i32,
        })
        .await;
    if let Err(status) = registered
        && status.code() != tonic::Code::AlreadyExists
    {
        return Err(status).context("register");
    }
    client
        .record_purchase(v1::RecordPurchaseRequest {
            header: j.header(),
            order_id: j.id("order"),
            amount: eur(4_999 + i64::from(index) * 1_000),
        })
        .await?;
    client
        .record_interaction(v1::RecordInteractionRequest {
            header: j.header(),
            interaction_id: j.id("call"),
            channel: v1::Channel::Phone as i32,
            direction: v1::Direction::Inbound as i32,
            kind: v1::InteractionKind::Inquiry as i32,
            agent_id: "agent-ada".into(),
            wait_secs: 45,
            handle_secs: 320,
            sentiment: v1::Sentiment::Neutral as i32,
            summary: "asked when the order ships".into(),
        })
        .await?;
    if index % 5 == 4 {
        return late_callback(client, &mut j).await;
    }
    let promise_id = j.id("delivery");
    client
        .make_promise(v1::MakePromiseRequest {
            header: j.header(),
            promise_id: promise_id.clone(),
            kind: v1::PromiseKind::Delivery as i32,
            description: "your order ships by Friday".into(),
            made_by: "agent-ada".into(),
            due_at: Some(in_days(3)),
            grace: Some(prost_types::Duration { seconds: 3_600, nanos: 0 }),
            related_ref: None,
        })
        .await?;
    match index % 4 {
        0 => {
            client
                .keep_promise(v1::KeepPromiseRequest {
                    header: j.header(),
                    promise_id,
                    kept_at: None,
                    evidence: "tracking number sent".into(),
                })
                .await?;
            survey(client, &mut j, v1::SurveyKind::Nps, 9).await?;
        }
        1 => {
            client
                .report_broken_promise(v1::ReportBrokenPromiseRequest {
                    header: j.header(),
                    promise_id: promise_id.clone(),
                    detection: v1::BreakDetection::CustomerReport as i32,
                    reason: "the order did not ship".into(),
                })
                .await?;
            client
                .issue_apology(v1::IssueApologyRequest {
                    header: j.header(),
                    related_ref: promise_ref(&promise_id),
                })
                .await?;
            client
                .grant_compensation(v1::GrantCompensationRequest {
                    header: j.header(),
                    related_ref: promise_ref(&promise_id),
                    kind: v1::CompensationKind::Credit as i32,
                    amount: eur(1_000),
                })
                .await?;
            survey(client, &mut j, v1::SurveyKind::Nps, 6).await?;
        }
        2 => {
            let complaint_id = j.id("complaint");
            client
                .open_complaint(v1::OpenComplaintRequest {
                    header: j.header(),
                    complaint_id: complaint_id.clone(),
                    category: v1::ComplaintCategory::Delay as i32,
                    severity: v1::Severity::Moderate as i32,
                    priority: v1::Priority::High as i32,
                    channel: v1::Channel::Email as i32,
                    description: "the parcel is a week late".into(),
                })
                .await?;
            client
                .respond_to_complaint(v1::RespondToComplaintRequest {
                    header: j.header(),
                    complaint_id: complaint_id.clone(),
                })
                .await?;
            client
                .resolve_complaint(v1::ResolveComplaintRequest {
                    header: j.header(),
                    complaint_id,
                    outcome: v1::ResolutionOutcome::Resolved as i32,
                })
                .await?;
            survey(client, &mut j, v1::SurveyKind::Csat, 4).await?;
        }
        _ => {
            client
                .renegotiate_promise(v1::RenegotiatePromiseRequest {
                    header: j.header(),
                    promise_id: promise_id.clone(),
                    new_due_at: Some(in_days(7)),
                    customer_consented: true,
                })
                .await?;
            client
                .keep_promise(v1::KeepPromiseRequest {
                    header: j.header(),
                    promise_id,
                    kept_at: None,
                    evidence: "delivered".into(),
                })
                .await?;
            survey(client, &mut j, v1::SurveyKind::Ces, 2).await?;
        }
    }
    Ok(())
}

/// A callback promised five days ago for three days ago, made only yesterday: kept, but late.
async fn late_callback(client: &mut LedgerClient<AuthChannel>, j: &mut Journey) -> anyhow::Result<()> {
    let promise_id = j.id("callback");
    client
        .make_promise(v1::MakePromiseRequest {
            header: j.header_at(Some(in_days(-5))),
            promise_id: promise_id.clone(),
            kind: v1::PromiseKind::Callback as i32,
            description: "we will call you back about the invoice".into(),
            made_by: "agent-bo".into(),
            due_at: Some(in_days(-3)),
            grace: Some(prost_types::Duration { seconds: 3_600, nanos: 0 }),
            related_ref: None,
        })
        .await?;
    client
        .keep_promise(v1::KeepPromiseRequest {
            header: j.header_at(Some(in_days(-1))),
            promise_id,
            kept_at: Some(in_days(-1)),
            evidence: "called back".into(),
        })
        .await?;
    survey(client, j, v1::SurveyKind::Csat, 3).await
}

async fn survey(
    client: &mut LedgerClient<AuthChannel>,
    j: &mut Journey,
    kind: v1::SurveyKind,
    score: u32,
) -> anyhow::Result<()> {
    client
        .answer_survey(v1::AnswerSurveyRequest {
            header: j.header(),
            survey_id: j.id("survey"),
            kind: kind as i32,
            score,
            comment: String::new(),
            related_ref: None,
        })
        .await?;
    Ok(())
}

fn loyalty_summary(loyalty: &v1::LoyaltyStanding) -> String {
    let band = match v1::LoyaltyBand::try_from(loyalty.band) {
        Ok(v1::LoyaltyBand::InsufficientData) => "insufficient data",
        Ok(v1::LoyaltyBand::Detached) => "Detached",
        Ok(v1::LoyaltyBand::AtRisk) => "At risk",
        Ok(v1::LoyaltyBand::Neutral) => "Neutral",
        Ok(v1::LoyaltyBand::Loyal) => "Loyal",
        Ok(v1::LoyaltyBand::Champion) => "Champion",
        _ => "?",
    };
    let score = loyalty.score.map_or(String::new(), |score| format!("{score} "));
    let risk = if loyalty.at_risk { " (at risk)" } else { "" };
    format!("{score}{band}{risk}")
}

fn band_name(band: i32) -> &'static str {
    match v1::TrustBand::try_from(band) {
        Ok(v1::TrustBand::Unproven) => "Unproven",
        Ok(v1::TrustBand::Broken) => "Broken",
        Ok(v1::TrustBand::Strained) => "Strained",
        Ok(v1::TrustBand::Stable) => "Stable",
        Ok(v1::TrustBand::Trusted) => "Trusted",
        _ => "?",
    }
}

pub(crate) async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let ledger_channel = crate::client::channel(&args.ledger, "the ledger").await?;
    let mut ledger = LedgerClient::new(ledger_channel.clone());
    let mut reader = EventLogClient::new(ledger_channel);
    let mut standing = StandingClient::new(crate::client::channel(&args.standing, "standing").await?);
    let run = SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
    println!("Recording {} customer journeys through {} …", args.customers, args.ledger);
    for index in 0..args.customers {
        journey(&mut ledger, index, run).await.with_context(|| format!("journey of customer {index}"))?;
    }
    println!(
        "\n{:<18} {:>6} {:>5} {:>5} {:>6} {:>10} {:>6} {:<9} {:>11}  {:<26} {:<30}",
        "customer",
        "events",
        "made",
        "kept",
        "broken",
        "complaints",
        "trust",
        "band",
        "uncertainty",
        "trust moved most by",
        "loyalty"
    );
    for index in 0..args.customers {
        let customer_id = format!("demo-customer-{index}");
        let stream = reader
            .read_stream(v1::ReadStreamRequest {
                customer_id: customer_id.clone(),
                from_version: 1,
                max_events: 10_000,
                include_personal_data: false,
            })
            .await?
            .into_inner();
        let count = |wanted: &str| stream.events.iter().filter(|event| event.event_type == wanted).count();
        // Read-your-writes: standing answers once it has applied this customer's last event.
        let trust = standing
            .get_trust(v1::GetTrustRequest {
                customer_id: customer_id.clone(),
                as_of: None,
                consistency: Some(v1::ReadConsistency {
                    min_position: stream.events.last().and_then(|event| event.position).into_iter().collect(),
                    wait_ms: 5_000,
                }),
            })
            .await
            .with_context(|| format!("trust of {customer_id}"))?
            .into_inner();
        let loyalty = standing
            .get_loyalty(v1::GetLoyaltyRequest {
                customer_id: customer_id.clone(),
                as_of: None,
                consistency: None,
            })
            .await
            .with_context(|| format!("loyalty of {customer_id}"))?
            .into_inner();
        println!(
            "{:<18} {:>6} {:>5} {:>5} {:>6} {:>10} {:>6} {:<9} {:>11.2}  {:<26} {}",
            customer_id,
            stream.stream_version,
            count("promise_made"),
            count("promise_kept"),
            count("promise_broken"),
            count("complaint_opened"),
            trust.score,
            band_name(trust.band),
            trust.uncertainty,
            trust.contributors.first().map_or("-", |contributor| contributor.event_type.as_str()),
            loyalty_summary(&loyalty),
        );
    }
    println!(
        "\nEvery event above is also on NATS JetStream (stream COVENANT_EVENTS); standing consumed it from there."
    );
    Ok(ExitCode::SUCCESS)
}
