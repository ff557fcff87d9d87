//! The ledger on NATS: commands from other services on `covenant.cmd.<command>` (request/reply,
//! queue group `covenant-ledger`; body a protobuf `BatchCommand`, reply a `BatchResult`) and
//! partition reads on `covenant.log.read.<partition>` (body `PartitionFrom`, reply
//! `ReadAllResponse`) for consumers filling a gap.
//!
//! A malformed message is answered with an `INVALID_ARGUMENT` result and counted, never a crash.
//!
//! Who may publish here is NATS's business (its users and subject permissions); erasing a
//! customer is refused on NATS whoever asks: it needs a gRPC call with an `admin` token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{Client, Message};
use covenant_bus::subjects::{COMMANDS_WILDCARD, LEDGER_QUEUE, LOG_READ_ERROR_HEADER, LOG_READ_WILDCARD};
use covenant_log::EventLog;
use covenant_proto::convert::{Pii, envelope};
use covenant_proto::v1;
use prost::Message as _;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::ledger_api::{Erasure, LedgerApi, batch_error};

/// Erasure over NATS is never allowed.
const ERASURE_OVER_NATS: Erasure = Erasure::Refused(
    "erasing a customer is not accepted over NATS: call gRPC Ledger.EraseCustomer with an `admin` token",
);

/// Requests handled at once.
const CONCURRENCY: usize = 512;
/// Largest range one log read returns.
const MAX_READ: usize = 1000;

/// Counters of the NATS side.
#[derive(Debug, Default)]
pub struct NatsCounters {
    pub commands: AtomicU64,
    pub malformed: AtomicU64,
    pub log_reads: AtomicU64,
}

/// Subscribes and serves until the client closes; returns the serving tasks.
pub async fn serve(
    client: Client,
    api: LedgerApi,
    log: EventLog,
    counters: Arc<NatsCounters>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut commands = client.queue_subscribe(COMMANDS_WILDCARD, LEDGER_QUEUE.to_owned()).await?;
    let mut reads = client.queue_subscribe(LOG_READ_WILDCARD, LEDGER_QUEUE.to_owned()).await?;
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let command_task = {
        let client = client.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            while let Some(message) = commands.next().await {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { return };
                let (client, api, counters) = (client.clone(), api.clone(), Arc::clone(&counters));
                tokio::spawn(async move {
                    answer_command(&client, &api, &counters, message).await;
                    drop(permit);
                });
            }
        })
    };
    let read_task = tokio::spawn(async move {
        while let Some(message) = reads.next().await {
            answer_read(&client, &log, &counters, message).await;
        }
    });
    Ok(vec![command_task, read_task])
}

async fn answer_command(client: &Client, api: &LedgerApi, counters: &NatsCounters, message: Message) {
    counters.commands.fetch_add(1, Ordering::Relaxed);
    let result = match v1::BatchCommand::decode(message.payload.as_ref()) {
        Ok(command) => {
            api.run_batch(vec![command], ERASURE_OVER_NATS).await.pop().and_then(|result| result.result)
        }
        Err(error) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            crate::telemetry::malformed(&message.subject);
            tracing::warn!(subject = %message.subject, %error, "malformed command on NATS");
            Some(batch_error(&Status::invalid_argument(format!(
                "the message is not a protobuf BatchCommand: {error}"
            ))))
        }
    };
    if let Some(reply) = message.reply {
        let body = v1::BatchResult { result }.encode_to_vec();
        if let Err(error) = client.publish(reply, body.into()).await {
            tracing::warn!(%error, "could not answer a command");
        }
    }
}

async fn answer_read(client: &Client, log: &EventLog, counters: &NatsCounters, message: Message) {
    counters.log_reads.fetch_add(1, Ordering::Relaxed);
    let Some(reply) = message.reply.clone() else { return };
    let response = match read_range(log, counters, &message).await {
        Ok(response) => client.publish(reply, response.encode_to_vec().into()).await,
        Err(error) => {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(LOG_READ_ERROR_HEADER, error.as_str());
            client.publish_with_headers(reply, headers, bytes::Bytes::new()).await
        }
    };
    if let Err(error) = response {
        tracing::warn!(%error, "could not answer a log read");
    }
}

async fn read_range(
    log: &EventLog,
    counters: &NatsCounters,
    message: &Message,
) -> Result<v1::ReadAllResponse, String> {
    let from = v1::PartitionFrom::decode(message.payload.as_ref()).map_err(|error| {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::malformed(&message.subject);
        tracing::warn!(%error, "malformed log read on NATS");
        format!("the message is not a protobuf PartitionFrom: {error}")
    })?;
    let partition =
        u16::try_from(from.partition).map_err(|_| format!("partition {} does not exist", from.partition))?;
    let events =
        log.read_partition(partition, from.offset, MAX_READ).await.map_err(|error| error.to_string())?;
    // The committed offset (a watch, no disk read on this async worker): where the log ends.
    let end = *log.committed(partition).map_err(|error| error.to_string())?.borrow();
    let next = events.last().map_or(from.offset, |event| event.position.offset + 1);
    Ok(v1::ReadAllResponse {
        events: events.iter().map(|event| envelope(event, Pii::Redact)).collect(),
        next: vec![v1::PartitionFrom { partition: from.partition, offset: next }],
        end_of_log: next >= end,
    })
}
