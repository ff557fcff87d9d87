//! The services with TLS and authentication on everywhere, as processes: gRPC over TLS
//! (rustls) with bearer tokens, and NATS over TLS with a user and password. A command recorded
//! over TLS reaches standing through NATS over TLS; plaintext clients, clients trusting another
//! CA and NATS clients without credentials are refused; no secret reaches the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use covenant_auth::{ClientTls, ClientToken, Scope, TokenFile, generate_token};
use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_proto::v1::standing_client::StandingClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::register;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::Code;
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");
const WATCHDOG: &str = env!("CARGO_BIN_EXE_watchdog-process");
const COVENANT: &str = env!("CARGO_BIN_EXE_covenant-process");
const NATS_PASSWORD: &str = "nats-secret-7f3a9c";

/// A test CA, a server certificate for 127.0.0.1 and localhost signed by it, and a second CA.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_ca: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki(dir: &Path) -> Pki {
    let ca = new_ca("Covenant test CA");
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.pem"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    std::fs::write(&pki.other_ca, new_ca("Someone else's CA").pem()).unwrap();
    pki
}

fn start(
    binary: &str,
    name: &str,
    dir: &Path,
    nats: &NatsServer,
    pki: &Pki,
    tokens: &Path,
) -> ServiceProcess {
    let tls: Vec<std::ffi::OsString> = vec![
        "--tls-cert".into(),
        pki.cert.clone().into(),
        "--tls-key".into(),
        pki.key.clone().into(),
        "--nats-user".into(),
        "covenant".into(),
        "--nats-ca".into(),
        pki.ca.clone().into(),
    ];
    let log = dir.join(format!("{name}.log"));
    // The password comes from the environment, as an operator should pass it.
    let env = [("NATS_PASSWORD", NATS_PASSWORD)];
    ServiceProcess::start_authenticated(
        Path::new(binary),
        name,
        &dir.join(name),
        &nats.url(),
        tokens,
        &tls,
        &log,
        &env,
    )
    .unwrap()
}

async fn tls_channel(process: &ServiceProcess, ca: &Path) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTls::load(ca, None).unwrap();
    Channel::from_shared(format!("https://{}", process.grpc_addr))
        .unwrap()
        .tls_config(tls.config())?
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_runs_with_tls_and_authentication_on_everywhere() {
    let dir = test_dir().unwrap();
    let pki = pki(dir.path());
    let nats_args = [
        "--tls",
        "--tlscert",
        pki.cert.to_str().unwrap(),
        "--tlskey",
        pki.key.to_str().unwrap(),
        "--user",
        "covenant",
        "--pass",
        NATS_PASSWORD,
    ];
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        nats_args.iter().map(|arg| (*arg).to_owned()).collect(),
    )
    .unwrap();
    let admin = generate_token("admin", &[Scope::Admin]).unwrap();
    let tokens = dir.path().join("tokens.json");
    TokenFile { tokens: vec![admin.record.clone()] }.save(&tokens).unwrap();

    let ledger = start(LEDGER, "ledger", dir.path(), &nats, &pki, &tokens);
    let standing = start(STANDING, "standing", dir.path(), &nats, &pki, &tokens);
    let watchdog = start(WATCHDOG, "watchdog", dir.path(), &nats, &pki, &tokens);
    let token = ClientToken::new(admin.secret.clone());

    // Over TLS with the token: recorded, read back, and seen by standing through NATS over TLS.
    let ledger_tls = tls_channel(&ledger, &pki.ca).await.unwrap();
    let mut client = LedgerClient::new(token.channel(ledger_tls.clone()).unwrap());
    client.register_customer(register("tls-1", "r1")).await.unwrap();
    let mut reader = EventLogClient::new(token.channel(ledger_tls).unwrap());
    let stream = reader
        .read_stream(v1::ReadStreamRequest {
            customer_id: "tls-1".into(),
            from_version: 1,
            max_events: 10,
            include_personal_data: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.events.len(), 1);
    let mut standing_client =
        StandingClient::new(token.channel(tls_channel(&standing, &pki.ca).await.unwrap()).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let request = v1::GetTrustRequest { customer_id: "tls-1".into(), ..Default::default() };
        match standing_client.get_trust(request).await {
            Ok(_) => break,
            Err(status) if status.code() == Code::NotFound && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => {
                panic!("standing must answer over TLS once the event arrived over NATS/TLS: {status:?}")
            }
        }
    }
    for process in [&ledger, &standing, &watchdog] {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(tls_channel(process, &pki.ca).await.unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                .await
                .unwrap()
                .into_inner()
                .status;
            if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?} never served (NATS over TLS?)",
                process.grpc_addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // A plaintext client gets nothing from a TLS port.
    let plaintext = Channel::from_shared(ledger.endpoint()).unwrap().connect().await;
    if let Ok(channel) = plaintext {
        let mut client = LedgerClient::new(token.channel(channel).unwrap());
        assert!(
            client.register_customer(register("tls-2", "r2")).await.is_err(),
            "plaintext must not get through"
        );
    }
    // A client that trusts another CA refuses the server's certificate.
    match tls_channel(&ledger, &pki.other_ca).await {
        Err(_) => {}
        Ok(channel) => {
            let mut client = LedgerClient::new(token.channel(channel).unwrap());
            assert!(
                client.register_customer(register("tls-3", "r3")).await.is_err(),
                "an untrusted certificate"
            );
        }
    }
    // TLS without a token is still refused.
    let mut anonymous = LedgerClient::new(tls_channel(&ledger, &pki.ca).await.unwrap());
    assert_eq!(
        anonymous.register_customer(register("tls-4", "r4")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // The ops commands that read a running ledger connect as every `covenant` command does: over
    // TLS trusting COVENANT_CA_FILE, sending COVENANT_TOKEN (the audit once ignored the CA file).
    let ledger_url = format!("https://{}", ledger.grpc_addr);
    let audit = |ca: &Path| {
        std::process::Command::new(COVENANT)
            .args(["audit", "promises", "--ledger", &ledger_url, "--format", "json"])
            .env("COVENANT_CA_FILE", ca)
            .env("COVENANT_TOKEN", &admin.secret)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let trusted = audit(&pki.ca);
    assert!(trusted.status.success(), "audit over TLS: {}", String::from_utf8_lossy(&trusted.stderr));
    let report: serde_json::Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert!(report["broken_promises"].as_array().is_some_and(Vec::is_empty), "{report}");
    let untrusted = audit(&pki.other_ca);
    assert!(!untrusted.status.success(), "the audit must refuse a certificate its CA file does not trust");

    // NATS refuses clients without credentials, and clients without TLS.
    let no_credentials = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.ca.clone())
        .connect(nats.url())
        .await;
    assert!(no_credentials.is_err(), "NATS must refuse a client without credentials");
    let no_tls = async_nats::ConnectOptions::new()
        .user_and_password("covenant".into(), NATS_PASSWORD.into())
        .connect(nats.url())
        .await;
    assert!(no_tls.is_err(), "NATS must refuse a client without TLS");

    // No secret in any service's log (debug level).
    drop((ledger, standing, watchdog));
    for name in ["ledger", "standing", "watchdog"] {
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap();
        assert!(log.contains("bearer-token authentication on"), "{name}:\n{log}");
        assert!(!log.contains(NATS_PASSWORD), "{name}'s log holds the NATS password");
        assert!(!log.contains(&admin.secret), "{name}'s log holds the token");
        let key = std::fs::read_to_string(&pki.key).unwrap();
        let key_body = key.lines().nth(1).unwrap();
        assert!(!log.contains(key_body), "{name}'s log holds the TLS key");
    }
}
