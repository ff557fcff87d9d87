//! gRPC `EventLog`: a customer's stream, pages of every partition, and a live subscription
//! (catch-up from positions, then each new commit). Events are served without personal data,
//! like the public NATS stream.

use std::collections::HashSet;
use std::pin::Pin;

use covenant_auth::Scope;
use covenant_domain::CustomerId;
use covenant_domain::events::EVENT_TYPES;
use covenant_log::{EventLog, LogError, PersonalDataState};
use covenant_proto::convert::{Pii, envelope};
use covenant_proto::v1::{self, event_log_server};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::status;

/// Page size when the request leaves it at 0.
pub const DEFAULT_PAGE: u32 = 1000;
/// Largest page.
pub const MAX_PAGE: u32 = 10_000;

/// The `EventLog` service over an open log.
#[derive(Debug, Clone)]
pub struct EventLogApi {
    log: EventLog,
}

impl EventLogApi {
    pub fn new(log: EventLog) -> Self {
        Self { log }
    }
}

fn page_size(requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(DEFAULT_PAGE as usize),
        size if size <= MAX_PAGE => Ok(size as usize),
        size => Err(Status::invalid_argument(format!(
            "max_events: {size} is more than the largest page, {MAX_PAGE}"
        ))),
    }
}

/// The event types to keep (`None`: every type); unknown names are refused by name.
fn type_filter(names: &[String]) -> Result<Option<HashSet<&'static str>>, Status> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|name| {
            EVENT_TYPES.iter().copied().find(|known| known == name).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "event_types: unknown event type {name:?} (types are snake_case, e.g. \"promise_broken\")"
                ))
            })
        })
        .collect::<Result<HashSet<_>, _>>()
        .map(Some)
}

/// The first offset to read of each partition.
fn start_offsets(from: &[v1::PartitionFrom], partitions: u16) -> Result<Vec<u64>, Status> {
    let mut offsets = vec![0u64; usize::from(partitions)];
    for start in from {
        let slot =
            usize::try_from(start.partition).ok().filter(|slot| *slot < offsets.len()).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "from.partition: partition {} does not exist (the log has {partitions}: 0..{partitions})",
                    start.partition
                ))
            })?;
        offsets[slot] = start.offset;
    }
    Ok(offsets)
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<v1::EventEnvelope, Status>> + Send>>;

#[tonic::async_trait]
impl event_log_server::EventLog for EventLogApi {
    async fn read_stream(
        &self,
        request: Request<v1::ReadStreamRequest>,
    ) -> Result<Response<v1::ReadStreamResponse>, Status> {
        if request.get_ref().include_personal_data {
            covenant_auth::require(&request, Scope::PiiRead)?;
        }
        let request = request.into_inner();
        let customer_id = CustomerId::parse_field("customer_id", &request.customer_id)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let max = page_size(request.max_events)?;
        let reader = self.log.reader();
        if request.include_personal_data {
            let (events, stream_version) = tokio::task::spawn_blocking(move || {
                let events = reader.read_stream_revealed(&customer_id, request.from_version.max(1), max)?;
                Ok::<_, LogError>((events, reader.stream_version(&customer_id)?))
            })
            .await
            .map_err(|_| Status::unavailable("the read was cancelled"))?
            .map_err(|error| status::from_log(&error))?;
            let erased = events.iter().any(|(_, state)| *state == PersonalDataState::Erased);
            return Ok(Response::new(v1::ReadStreamResponse {
                events: events.iter().map(|(event, _)| envelope(event, Pii::Include)).collect(),
                stream_version,
                personal_data_erased: erased,
            }));
        }
        let (events, stream_version) = tokio::task::spawn_blocking(move || {
            let events = reader.read_stream(&customer_id, request.from_version.max(1), max)?;
            Ok::<_, LogError>((events, reader.stream_version(&customer_id)?))
        })
        .await
        .map_err(|_| Status::unavailable("the read was cancelled"))?
        .map_err(|error| status::from_log(&error))?;
        Ok(Response::new(v1::ReadStreamResponse {
            events: events.iter().map(|event| envelope(event, Pii::Redact)).collect(),
            stream_version,
            personal_data_erased: false,
        }))
    }

    async fn read_all(
        &self,
        request: Request<v1::ReadAllRequest>,
    ) -> Result<Response<v1::ReadAllResponse>, Status> {
        let request = request.into_inner();
        let max = page_size(request.max_events)?;
        let filter = type_filter(&request.event_types)?;
        let partitions = self.log.partition_count();
        let mut offsets = start_offsets(&request.from, partitions)?;
        let reader = self.log.reader();
        let (events, offsets, end_of_log) = tokio::task::spawn_blocking(move || {
            let mut events = Vec::new();
            let mut end_of_log = true;
            for partition in 0..partitions {
                let slot = usize::from(partition);
                let end = reader.partition_end(partition)?;
                while offsets[slot] < end && events.len() < max {
                    let chunk = usize::try_from(end - offsets[slot]).unwrap_or(usize::MAX).min(4096);
                    let mut next = offsets[slot];
                    let mut failed = None;
                    reader.scan_views(partition, offsets[slot], chunk, |view| {
                        if failed.is_some() || events.len() >= max {
                            return;
                        }
                        next = view.envelope.position.offset + 1;
                        if filter.as_ref().is_none_or(|types| types.contains(view.event_type())) {
                            match view.decode() {
                                Ok(event) => events.push(envelope(&event, Pii::Redact)),
                                Err(error) => failed = Some(error),
                            }
                        }
                    })?;
                    if let Some(error) = failed {
                        return Err(error);
                    }
                    offsets[slot] = next;
                }
                if offsets[slot] < end {
                    end_of_log = false;
                }
            }
            Ok::<_, LogError>((events, offsets, end_of_log))
        })
        .await
        .map_err(|_| Status::unavailable("the read was cancelled"))?
        .map_err(|error| status::from_log(&error))?;
        let next = offsets
            .iter()
            .enumerate()
            .map(|(partition, offset)| v1::PartitionFrom { partition: partition as u32, offset: *offset })
            .collect();
        Ok(Response::new(v1::ReadAllResponse { events, next, end_of_log }))
    }

    type SubscribeStream = EnvelopeStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = request.into_inner();
        let filter = type_filter(&request.event_types)?;
        let mut offsets = start_offsets(&request.from, self.log.partition_count())?;
        if request.from_end {
            for (partition, offset) in offsets.iter_mut().enumerate() {
                let listed = request.from.iter().any(|start| start.partition as usize == partition);
                if !listed {
                    let committed =
                        self.log.committed(partition as u16).map_err(|error| status::from_log(&error))?;
                    *offset = *committed.borrow();
                }
            }
        }
        let (sender, receiver) = mpsc::channel(1024);
        for (partition, from) in offsets.into_iter().enumerate() {
            let mut tail = self.log.tail(partition as u16, from).map_err(|error| status::from_log(&error))?;
            let sender = sender.clone();
            let filter = filter.clone();
            tokio::spawn(async move {
                loop {
                    let batch = tokio::select! {
                        batch = tail.next_batch() => batch,
                        () = sender.closed() => return,
                    };
                    match batch {
                        Ok(events) => {
                            for event in events {
                                if filter.as_ref().is_none_or(|types| types.contains(event.event_type()))
                                    && sender.send(Ok(envelope(&event, Pii::Redact))).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                        Err(error) => {
                            let _ = sender.send(Err(status::from_log(&error))).await;
                            return;
                        }
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
