//! Bytes that are not the protobuf a gRPC method expects, sent over a real socket to every
//! service: refused with the status gRPC prescribes for a request that does not parse
//! (`INTERNAL`, "failed to decode Protobuf message", per grpc/doc/statuscodes.md), nothing is
//! recorded, and the service goes on answering well-formed calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use bytes::{Buf, BufMut, Bytes};
use covenant_bus::NatsServer;
use covenant_proto::v1;
use covenant_proto::v1::event_log_client::EventLogClient;
use covenant_proto::v1::ledger_client::LedgerClient;
use covenant_tests::processes::{ServiceProcess, test_dir};
use covenant_tests::requests::register;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

const LEDGER: &str = env!("CARGO_BIN_EXE_ledger-process");
const STANDING: &str = env!("CARGO_BIN_EXE_standing-process");

/// Sends raw bytes as the request message and takes the reply's raw bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug)]
struct RawEncoder;

#[derive(Debug)]
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_call(channel: Channel, path: &'static str, body: Bytes) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Not a protobuf message: a field header announcing a length far past the end.
fn garbage() -> Vec<Bytes> {
    vec![
        Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]),
        Bytes::from_static(&[0xff; 32]),
        Bytes::from_static(&[0x08]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_the_request_message_are_refused_and_the_services_go_on() {
    let dir = test_dir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats")).unwrap();
    let ledger =
        ServiceProcess::start(Path::new(LEDGER), &dir.path().join("log"), &nats.url(), "fsync", "off")
            .unwrap();
    let standing = ServiceProcess::start_consumer(
        Path::new(STANDING),
        "standing",
        &dir.path().join("standing"),
        &nats.url(),
        8,
    )
    .unwrap();
    let ledger_channel = Channel::from_shared(ledger.endpoint()).unwrap().connect().await.unwrap();
    let standing_channel = Channel::from_shared(standing.endpoint()).unwrap().connect().await.unwrap();

    let calls: [(&Channel, &'static str); 5] = [
        (&ledger_channel, "/covenant.v1.Ledger/RegisterCustomer"),
        (&ledger_channel, "/covenant.v1.Ledger/AppendBatch"),
        (&ledger_channel, "/covenant.v1.EventLog/ReadStream"),
        (&standing_channel, "/covenant.v1.Standing/GetTrust"),
        (&standing_channel, "/covenant.v1.Standing/GetOrgMetrics"),
    ];
    let mut refused = 0;
    for (channel, path) in calls {
        for body in garbage() {
            let status = raw_call(channel.clone(), path, body.clone()).await.unwrap_err();
            assert_eq!(status.code(), Code::Internal, "{path} {body:?}: {status:?}");
            assert!(
                status.message().contains("failed to decode Protobuf message"),
                "{path}: {}",
                status.message()
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 15);
    // An unknown method is UNIMPLEMENTED, not a crash.
    let unknown = raw_call(ledger_channel.clone(), "/covenant.v1.Ledger/DropEverything", Bytes::new()).await;
    assert_eq!(unknown.unwrap_err().code(), Code::Unimplemented);

    // Nothing was recorded, and well-formed calls are answered as before.
    let mut reader = EventLogClient::new(ledger_channel.clone());
    let all = reader
        .read_all(v1::ReadAllRequest { from: vec![], event_types: vec![], max_events: 100 })
        .await
        .unwrap()
        .into_inner();
    assert!(all.events.is_empty(), "garbage recorded something: {:?}", all.events.len());
    let mut client = LedgerClient::new(ledger_channel);
    client.register_customer(register("after-garbage", "c1")).await.unwrap();
    let mut standing_client = v1::standing_client::StandingClient::new(standing_channel);
    let metrics = standing_client.get_org_metrics(v1::GetOrgMetricsRequest::default()).await;
    assert!(metrics.is_ok() || metrics.as_ref().unwrap_err().code() == Code::InvalidArgument, "{metrics:?}");
}
