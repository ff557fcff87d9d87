//! The two places an audit reads history from.
//!
//! - [`LogSource`]: a log directory or a backup (RocksDB checkpoint), opened read-only, so it
//!   works beside a running ledger and on a copy taken elsewhere. A scan checks every record's
//!   checksum and envelope but decodes only the event types asked for.
//! - [`LedgerSource`]: a running ledger over gRPC `EventLog` (`ReadAll` filtered by type,
//!   `ReadStream` per customer).
//!
//! Neither gives personal data: it is sealed at rest (`covenant_log::sealing`), so promise
//! descriptions come back empty from both.
//!
//! Both are blocking: call them off the async runtime's workers (`LedgerSource` drives its gRPC
//! calls with the runtime handle it was made on).

use std::path::Path;

use covenant_auth::{AuthChannel, ClientToken};
use covenant_domain::ids::CustomerId;
use covenant_domain::views::RecordedEventView;
use covenant_domain::{DomainError, Position, RecordedEvent};
use covenant_log::LogReader;
use covenant_log::codec::RecordView;
use covenant_proto::v1::{self, event_log_client::EventLogClient};
use tokio::runtime::Handle;
use tonic::transport::Channel;

use crate::{AuditError, EventSource, PublicEvent, Result};

/// Records one read of the log covers.
const CHUNK: usize = 10_000;

/// Events of the streams read together by [`LogSource`]'s `streams` (what bounds the audit's
/// memory in its second pass, with the longest single stream).
const STREAMS_BATCH_EVENTS: u64 = 50_000;

/// A log directory or a backup, read-only.
#[derive(Debug)]
pub struct LogSource {
    reader: LogReader,
}

impl LogSource {
    /// Opens the log at `path` (the directory holding its RocksDB files). Blocking.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self { reader: LogReader::open_read_only(path)? })
    }
}

impl LogSource {
    /// Reads every partition in chunks of [`CHUNK`] records: `chunk(partition, from)` reads one
    /// and says how many records it read. Returns the records read.
    fn chunks(&mut self, chunk: &mut dyn FnMut(&LogReader, u16, u64) -> Result<usize>) -> Result<u64> {
        let mut read = 0u64;
        for partition in 0..self.reader.partition_count() {
            let mut from = 0u64;
            loop {
                let visited = chunk(&self.reader, partition, from)?;
                read += visited as u64;
                from += visited as u64;
                if visited < CHUNK {
                    break;
                }
            }
        }
        Ok(read)
    }

    /// Visits every record whose type is in `types` (all when `None`), partition by partition in
    /// offset order; the first error (of the scan or of `visit`) stops it. Returns the records
    /// read.
    fn scan(
        &mut self,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(&RecordView<'_>) -> covenant_log::Result<()>,
    ) -> Result<u64> {
        self.chunks(&mut |reader, partition, from| {
            let mut failed = None;
            let visited = reader.scan_views(partition, from, CHUNK, |record| {
                if failed.is_none() && types.is_none_or(|types| types.contains(&record.event_type())) {
                    failed = visit(&record).err();
                }
            })?;
            match failed {
                Some(error) => Err(error.into()),
                None => Ok(visited),
            }
        })
    }

    /// The public event of a record's view: the view itself unless it holds personal data (only
    /// records written before personal data was sealed apart, format 1).
    fn public(view: RecordedEventView<'_>) -> std::result::Result<PublicEvent<'_>, DomainError> {
        if view.event.holds_personal_data() {
            let mut event = view.to_owned()?;
            let _ = covenant_domain::personal::take_personal_data(&mut event.event);
            Ok(PublicEvent::Owned(event))
        } else {
            Ok(PublicEvent::Borrowed(view))
        }
    }
}

impl EventSource for LogSource {
    fn events(&mut self, types: Option<&[&str]>, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        self.scan(types, &mut |record| {
            visit(record.decode()?);
            Ok(())
        })
    }

    fn public_events(
        &mut self,
        types: Option<&[&str]>,
        visit: &mut dyn FnMut(PublicEvent<'_>),
    ) -> Result<u64> {
        let Some(types) = types else {
            // Every record: decoded whole at once (no envelope decoded first to filter on).
            return self.chunks(&mut |reader, partition, from| {
                let mut failed = None;
                let visited = reader.scan_events(partition, from, CHUNK, |view| {
                    if failed.is_none() {
                        let position = view.position;
                        match Self::public(view) {
                            Ok(event) => visit(event),
                            Err(error) => failed = Some(invalid(position, error)),
                        }
                    }
                })?;
                match failed {
                    Some(error) => Err(error.into()),
                    None => Ok(visited),
                }
            });
        };
        self.scan(Some(types), &mut |record| {
            let position = record.envelope.position;
            visit(Self::public(record.view()?).map_err(|error| invalid(position, error))?);
            Ok(())
        })
    }

    fn stream(&mut self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        Ok(self.reader.read_stream(customer, 1, usize::MAX)?)
    }

    /// In batches of customers holding together about [`STREAMS_BATCH_EVENTS`] events (their
    /// stream heads say how many), each read in one sorted pass (`LogReader::read_streams`).
    fn streams(
        &mut self,
        customers: &[CustomerId],
        visit: &mut dyn FnMut(&CustomerId, Vec<RecordedEvent>),
    ) -> Result<()> {
        let mut start = 0;
        while start < customers.len() {
            let mut end = start;
            let mut events = 0u64;
            while end < customers.len() && (end == start || events < STREAMS_BATCH_EVENTS) {
                events += self.reader.stream_version(&customers[end])?;
                end += 1;
            }
            let batch = &customers[start..end];
            for (customer, stream) in batch.iter().zip(self.reader.read_streams(batch)?) {
                visit(customer, stream);
            }
            start = end;
        }
        Ok(())
    }
}

/// A stored record whose identifiers do not pass validation: corrupt.
fn invalid(position: Position, error: DomainError) -> covenant_log::LogError {
    covenant_log::LogError::Corrupt { position, reason: format!("an invalid identifier: {error}") }
}

/// A running ledger, over gRPC.
#[derive(Debug)]
pub struct LedgerSource {
    client: EventLogClient<AuthChannel>,
    runtime: Handle,
}

impl LedgerSource {
    /// Connects to the ledger's gRPC address (`http://host:port`), sending `token` (which needs
    /// `log:read`).
    pub async fn connect(url: &str, token: &ClientToken) -> Result<Self> {
        let refuse = |reason: String| AuditError::Connect { url: url.to_owned(), reason };
        let channel = Channel::from_shared(url.to_owned())
            .map_err(|error| refuse(error.to_string()))?
            .connect()
            .await
            .map_err(|error| refuse(error.to_string()))?;
        let channel = token.channel(channel).map_err(|error| refuse(error.to_string()))?;
        let client = EventLogClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        Ok(Self { client, runtime: Handle::current() })
    }
}

impl EventSource for LedgerSource {
    fn events(&mut self, types: Option<&[&str]>, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        let mut read = 0u64;
        let mut from = Vec::new();
        loop {
            let request = v1::ReadAllRequest {
                from: from.clone(),
                event_types: types.unwrap_or_default().iter().map(|name| (*name).to_owned()).collect(),
                max_events: CHUNK as u32,
            };
            let mut client = self.client.clone();
            let page = self.runtime.block_on(client.read_all(request))?.into_inner();
            read += page.events.len() as u64;
            for envelope in page.events {
                visit(RecordedEvent::try_from(envelope)?);
            }
            if page.end_of_log {
                return Ok(read);
            }
            from = page.next;
        }
    }

    fn stream(&mut self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        loop {
            let request = v1::ReadStreamRequest {
                customer_id: customer.to_string(),
                from_version: events.len() as u64 + 1,
                max_events: CHUNK as u32,
                include_personal_data: false,
            };
            let mut client = self.client.clone();
            let page = self.runtime.block_on(client.read_stream(request))?.into_inner();
            let received = page.events.len();
            for envelope in page.events {
                events.push(RecordedEvent::try_from(envelope)?);
            }
            if received == 0 || events.len() as u64 >= page.stream_version {
                return Ok(events);
            }
        }
    }
}
