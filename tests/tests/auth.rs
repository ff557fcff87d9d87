//! Bearer-token authentication on every service, over real sockets: the ledger, standing and the
//! watchdog started as processes with a token file, called with no token, an unknown token, a
//! token without the needed scope, and the right one. Erasure needs `admin` on gRPC (alone and
//! inside a batch) and is refused on NATS. The services' logs (at debug level) never contain a
//! token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use covenant_auth::{ClientToken, GeneratedToken, Scope, TokenFile, generate_token};
use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::{batch, header, register};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request::MessageRequest};

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const WATCHDOG: &str = env!("CARGO_BIN_EXE_watchdog-process");

struct Tokens {
    writer: GeneratedToken,
    log_reader: GeneratedToken,
    standing_reader: GeneratedToken,
    admin: GeneratedToken,
}

impl Tokens {
    fn new() -> Self {
        Self {
            writer: generate_token("writer", &[Scope::EventsWrite]).unwrap(),
            log_reader: generate_token("log-reader", &[Scope::LogRead]).unwrap(),
            standing_reader: generate_token("standing-reader", &[Scope::StandingRead]).unwrap(),
            admin: generate_token("admin", &[Scope::Admin]).unwrap(),
        }
    }

    fn all(&self) -> [&GeneratedToken; 4] {
        [&self.writer, &self.log_reader, &self.standing_reader, &self.admin]
    }
}

fn start(
    binary: &str,
    name: &str,
    dir: &Path,
    nats: &NatsServer,
    tokens: &Path,
    log: &Path,
) -> ServiceProcess {
    let data = dir.join(name);
    ServiceProcess::start_authenticated(Path::new(binary), name, &data, &nats.url(), tokens, &[], log, &[])
        .unwrap()
}

async fn channel(process: &ServiceProcess, token: Option<&str>) -> covenant_auth::AuthChannel {
    let channel = Channel::from_shared(process.endpoint()).unwrap().connect().await.unwrap();
    let token = token.map(ClientToken::new).unwrap_or_default();
    token.channel(channel).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn reflection(process: &ServiceProcess, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = ServerReflectionClient::new(channel(process, token).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await?.into_inner();
    responses.message().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_refuses_missing_unknown_and_unscoped_tokens_and_logs_no_secret() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let tokens = Tokens::new();
    let token_file = dir.path().join("tokens.json");
    TokenFile { tokens: tokens.all().iter().map(|token| token.record.clone()).collect() }
        .save(&token_file)
        .unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ledger = start(LEDGER, "ledger", dir.path(), &nats, &token_file, &logs.join("ledger.log"));
    let standing = start(STANDING, "standing", dir.path(), &nats, &token_file, &logs.join("standing.log"));
    let watchdog = start(WATCHDOG, "watchdog", dir.path(), &nats, &token_file, &logs.join("watchdog.log"));
    let unknown = generate_token("stranger", &[Scope::Admin]).unwrap().secret;

    // --- Ledger: events:write; erasure also admin.
    let mut anonymous = LedgerClient::new(channel(&ledger, None).await);
    let missing = anonymous.register_customer(register("auth-1", "c1")).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("Bearer"), "{}", missing.message());
    let mut stranger = LedgerClient::new(channel(&ledger, Some(&unknown)).await);
    let refused = stranger.register_customer(register("auth-1", "c1")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(!refused.message().contains(&unknown), "the token is not echoed");
    let mut reader = LedgerClient::new(channel(&ledger, Some(&tokens.log_reader.secret)).await);
    let denied = reader.register_customer(register("auth-1", "c1")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(denied.message(), "token `log-reader` lacks the scope `events:write` this call needs");
    let mut writer = LedgerClient::new(channel(&ledger, Some(&tokens.writer.secret)).await);
    writer.register_customer(register("auth-1", "c1")).await.unwrap();
    writer.register_customer(register("auth-2", "c2")).await.unwrap();

    let erase =
        |customer: &str, command: &str| v1::EraseCustomerRequest { header: header(customer, command, None) };
    let denied = writer.erase_customer(erase("auth-1", "e1")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("`admin`"), "{}", denied.message());
    let in_batch = writer
        .append_batch(v1::AppendBatchRequest {
            commands: vec![
                batch(v1::batch_command::Command::EraseCustomer(erase("auth-1", "e2"))),
                covenant_tests::requests::interaction("auth-2", "i1"),
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    match &in_batch[0].result {
        Some(v1::batch_result::Result::Error(error)) => assert_eq!(error.code, Code::PermissionDenied as i32),
        other => panic!("an erasure by a writer inside a batch must be refused, got {other:?}"),
    }
    assert!(
        matches!(in_batch[1].result, Some(v1::batch_result::Result::Appended(_))),
        "the rest is recorded"
    );
    // Over NATS nobody may erase (NATS permissions decide who may publish commands at all).
    let client = async_nats::connect(nats.url()).await.unwrap();
    let body = batch(v1::batch_command::Command::EraseCustomer(erase("auth-1", "e3"))).encode_to_vec();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request("covenant.cmd.erase_customer", body.into()),
    )
    .await
    .unwrap()
    .unwrap();
    match v1::BatchResult::decode(reply.payload).unwrap().result {
        Some(v1::batch_result::Result::Error(error)) => {
            assert_eq!(error.code, Code::PermissionDenied as i32);
            assert!(error.message.contains("not accepted over NATS"), "{}", error.message);
        }
        other => panic!("erasure over NATS must be refused, got {other:?}"),
    }
    let mut admin = LedgerClient::new(channel(&ledger, Some(&tokens.admin.secret)).await);
    admin.erase_customer(erase("auth-1", "e4")).await.unwrap();

    // --- EventLog: log:read.
    let read = |customer: &str| v1::ReadStreamRequest {
        customer_id: customer.into(),
        from_version: 1,
        max_events: 10,
        include_personal_data: false,
    };
    let mut log_anonymous = EventLogClient::new(channel(&ledger, None).await);
    assert_eq!(code(log_anonymous.read_stream(read("auth-2")).await), Code::Unauthenticated);
    let mut log_writer = EventLogClient::new(channel(&ledger, Some(&tokens.writer.secret)).await);
    assert_eq!(code(log_writer.read_stream(read("auth-2")).await), Code::PermissionDenied);
    let mut log_reader = EventLogClient::new(channel(&ledger, Some(&tokens.log_reader.secret)).await);
    let events = log_reader.read_stream(read("auth-2")).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 2, "registered, then the interaction from the batch");

    // --- Standing: standing:read.
    let trust = v1::GetTrustRequest { customer_id: "auth-2".into(), ..Default::default() };
    let mut standing_anonymous = StandingClient::new(channel(&standing, None).await);
    assert_eq!(code(standing_anonymous.get_trust(trust.clone()).await), Code::Unauthenticated);
    let mut standing_stranger = StandingClient::new(channel(&standing, Some(&unknown)).await);
    assert_eq!(code(standing_stranger.get_trust(trust.clone()).await), Code::Unauthenticated);
    let mut standing_writer = StandingClient::new(channel(&standing, Some(&tokens.log_reader.secret)).await);
    assert_eq!(code(standing_writer.get_trust(trust.clone()).await), Code::PermissionDenied);
    let mut standing_reader =
        StandingClient::new(channel(&standing, Some(&tokens.standing_reader.secret)).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match standing_reader.get_trust(trust.clone()).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::NotFound && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("a standing reader must be answered: {status:?}"),
        }
    }

    // --- Reflection on every service needs a known token; health stays open for probes.
    for process in [&ledger, &standing, &watchdog] {
        assert_eq!(code(reflection(process, None).await), Code::Unauthenticated);
        assert_eq!(code(reflection(process, Some(&unknown)).await), Code::Unauthenticated);
        reflection(process, Some(&tokens.writer.secret)).await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel(process, None).await);
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    }

    // --- No secret in any log line, at debug level, after all of the above.
    drop((ledger, standing, watchdog));
    for name in ["ledger", "standing", "watchdog"] {
        let log = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap();
        assert!(
            log.contains("bearer-token authentication on"),
            "{name} logs that authentication is on:\n{log}"
        );
        for token in tokens.all() {
            assert!(!log.contains(&token.secret), "{name}'s log holds the token `{}`", token.record.name);
            assert!(!log.contains(&token.record.blake3), "{name}'s log holds a token hash");
        }
        assert!(!log.contains(&unknown), "{name}'s log holds a token a caller tried");
    }
}

/// Every file under `dir` that contains `needle`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_needs_pii_read_is_never_on_disk_in_clear_and_is_gone_after_erasure() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let tokens = Tokens::new();
    let privacy = generate_token("privacy-officer", &[Scope::LogRead, Scope::PiiRead]).unwrap();
    let token_file = dir.path().join("tokens.json");
    let mut records: Vec<_> = tokens.all().iter().map(|token| token.record.clone()).collect();
    records.push(privacy.record.clone());
    TokenFile { tokens: records }.save(&token_file).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let ledger = start(LEDGER, "ledger", dir.path(), &nats, &token_file, &logs.join("ledger.log"));
    let standing = start(STANDING, "standing", dir.path(), &nats, &token_file, &logs.join("standing.log"));

    let mut writer = LedgerClient::new(channel(&ledger, Some(&tokens.writer.secret)).await);
    writer.register_customer(register("pii-1", "r1")).await.unwrap();
    writer
        .record_interaction(match covenant_tests::requests::interaction("pii-1", "i1").command {
            Some(v1::batch_command::Command::RecordInteraction(request)) => request,
            other => panic!("{other:?}"),
        })
        .await
        .unwrap();
    let read = |personal: bool| v1::ReadStreamRequest {
        customer_id: "pii-1".into(),
        from_version: 1,
        max_events: 100,
        include_personal_data: personal,
    };
    let name_of = |response: &v1::ReadStreamResponse| match &response.events[0].payload {
        Some(v1::event_envelope::Payload::CustomerRegistered(registered)) => registered.name.clone(),
        other => panic!("{other:?}"),
    };

    // log:read alone gets the events without personal data, and is refused the personal data.
    let mut reader = EventLogClient::new(channel(&ledger, Some(&tokens.log_reader.secret)).await);
    assert_eq!(name_of(&reader.read_stream(read(false)).await.unwrap().into_inner()), "");
    let denied = reader.read_stream(read(true)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(denied.message(), "token `log-reader` lacks the scope `pii:read` this call needs");
    // pii:read gets the person.
    let mut officer = EventLogClient::new(channel(&ledger, Some(&privacy.secret)).await);
    let full = officer.read_stream(read(true)).await.unwrap().into_inner();
    assert_eq!(name_of(&full), "Ada Lovelace");
    assert!(!full.personal_data_erased);
    // The public stream (standing's timeline comes from it) never carries it.
    let mut standing_reader =
        StandingClient::new(channel(&standing, Some(&tokens.standing_reader.secret)).await);
    let timeline = |standing: &mut StandingClient<covenant_auth::AuthChannel>| {
        let mut standing = standing.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let request = v1::GetTimelineRequest { customer_id: "pii-1".into(), ..Default::default() };
                match standing.get_timeline(request).await {
                    Ok(response) => return response.into_inner(),
                    Err(status)
                        if status.code() == Code::NotFound && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(status) => panic!("{status:?}"),
                }
            }
        }
    };
    let before = timeline(&mut standing_reader).await;
    match &before.events[0].payload {
        Some(v1::event_envelope::Payload::CustomerRegistered(registered)) => assert_eq!(registered.name, ""),
        other => panic!("{other:?}"),
    }
    // Never on the ledger's disk in clear, WAL included.
    let secret = b"Ada Lovelace";
    assert_eq!(files_containing(&dir.path().join("ledger"), secret), Vec::<String>::new());
    assert_eq!(files_containing(&dir.path().join("standing"), secret), Vec::<String>::new());

    // Erasure (admin): the person is gone from every API; the history, counts and standing stay.
    let mut admin = LedgerClient::new(channel(&ledger, Some(&tokens.admin.secret)).await);
    admin.erase_customer(v1::EraseCustomerRequest { header: header("pii-1", "erase", None) }).await.unwrap();
    let after = officer.read_stream(read(true)).await.unwrap().into_inner();
    assert!(after.personal_data_erased, "the reply says why the fields are empty");
    assert_eq!(name_of(&after), "");
    assert_eq!(after.events.len(), 3, "registered, the interaction, customer_erased");
    assert_eq!(after.stream_version, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let erased_timeline = loop {
        let timeline = timeline(&mut standing_reader).await;
        if timeline.events.len() == 3 || tokio::time::Instant::now() > deadline {
            break timeline;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(erased_timeline.events.len(), 3, "standing keeps the history");
    let trust = v1::GetTrustRequest { customer_id: "pii-1".into(), ..Default::default() };
    standing_reader.get_trust(trust).await.unwrap();
    // Erased customers take no more commands.
    let refused = writer.register_customer(register("pii-1", "r2")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
}
