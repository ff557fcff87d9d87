//! The raw gRPC baseline of the unary ingest row: the same `Ledger` service definition, the same
//! messages, clients and connections, served by plain tonic (no interceptor) with an answer made
//! at once — no conversion, no log, no fsync, no relay. It is the most the gRPC stack alone
//! carries on this machine with the load generator beside it in the same process.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use covenant_proto::v1::{self, ledger_server::Ledger, ledger_server::LedgerServer};
use tokio::sync::oneshot;
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
    _stop: oneshot::Sender<()>,
}

/// Serves an immediate ledger on a free loopback port (TCP_NODELAY, as the ledger serves).
pub(crate) async fn serve() -> Result<ImmediateServer> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("bind the raw gRPC baseline")?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(LedgerServer::new(ImmediateLedger))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            eprintln!("the raw gRPC baseline stopped: {error}");
        }
    });
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
        drop(server);
    }
}
