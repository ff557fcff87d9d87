//! The raw gRPC baseline of the unary ingest row: the same `Ledger` service definition, the same
//! messages, clients and connections, served by plain tonic (no interceptor) with an answer made
//! at once — no conversion, no log, no fsync, no relay. It is the most the gRPC stack alone
//! carries on this machine with the load generator beside it in the same process.

use std::net::SocketAddr;

use anyhow::Result;
use covenant_proto::v1::{self, ledger_server::Ledger, ledger_server::LedgerServer};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// A `Ledger` that answers every command at once as if it had appended one event.
#[derive(Debug, Clone, Copy, Default)]
struct ImmediateLedger;

fn appended() -> v1::AppendResponse {
    v1::AppendResponse {
        positions: vec![v1::Position { partition: 3, offset: 123_456 }],
        stream_version: 17,
        recorded_at: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 123_456_789 }),
        deduplicated: false,
    }
}

macro_rules! immediate_rpcs {
    ($($method:ident: $request:ident),* $(,)?) => {
        #[tonic::async_trait]
        impl Ledger for ImmediateLedger {
            $(
                async fn $method(
                    &self,
                    _request: Request<v1::$request>,
                ) -> Result<Response<v1::AppendResponse>, Status> {
                    Ok(Response::new(appended()))
                }
            )*

            async fn append_batch(
                &self,
                request: Request<v1::AppendBatchRequest>,
            ) -> Result<Response<v1::AppendBatchResponse>, Status> {
                let results = request
                    .into_inner()
                    .commands
                    .iter()
                    .map(|_| v1::BatchResult { result: Some(v1::batch_result::Result::Appended(appended())) })
                    .collect();
                Ok(Response::new(v1::AppendBatchResponse { results }))
            }
        }
    };
}

covenant_proto::with_ledger_command_rpcs!(immediate_rpcs);

/// A running immediate ledger; dropping it stops the server.
pub(crate) struct ImmediateServer {
    pub(crate) url: String,
    _stop: watch::Sender<bool>,
}

/// Serves an immediate ledger on a free loopback port, the way the services serve theirs
/// ([`covenant_runtime::spawn_grpc`]: TCP_NODELAY on every connection).
pub(crate) async fn serve() -> Result<ImmediateServer> {
    let (listener, addr) = covenant_runtime::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (stop, stopped) = watch::channel(false);
    let router = tonic::transport::Server::builder().add_service(LedgerServer::new(ImmediateLedger));
    // Ends when `stop` is dropped with the server handle.
    drop(covenant_runtime::spawn_grpc(router, listener, stopped));
    Ok(ImmediateServer { url: format!("http://{addr}"), _stop: stop })
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_proto::v1::ledger_client::LedgerClient;

    #[tokio::test]
    async fn the_baseline_answers_unary_commands_and_batches_over_a_real_socket() {
        let server = serve().await.unwrap();
        let mut client = LedgerClient::connect(server.url.clone()).await.unwrap();
        let answer = client.register_customer(v1::RegisterCustomerRequest::default()).await.unwrap();
        assert_eq!(answer.into_inner(), appended());
        let batch = v1::AppendBatchRequest {
            commands: vec![v1::BatchCommand::default(), v1::BatchCommand::default()],
        };
        let results = client.append_batch(batch).await.unwrap().into_inner().results;
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|result| matches!(
            result.result,
            Some(v1::batch_result::Result::Appended(ref appended_one)) if *appended_one == appended()
        )));

        // Dropping the handle stops the server: new connections are refused.
        let url = server.url.clone();
        drop(server);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while LedgerClient::connect(url.clone()).await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "the baseline still accepts connections");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
