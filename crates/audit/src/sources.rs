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
use covenant_domain::RecordedEvent;
use covenant_domain::ids::CustomerId;
use covenant_log::LogReader;
use covenant_proto::v1::{self, event_log_client::EventLogClient};
use tokio::runtime::Handle;
use tonic::transport::Channel;

use crate::{AuditError, EventSource, Result};

/// Records one read of the log covers.
const CHUNK: usize = 10_000;

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

impl EventSource for LogSource {
    fn events(&mut self, types: Option<&[&str]>, visit: &mut dyn FnMut(RecordedEvent)) -> Result<u64> {
        let mut read = 0u64;
        for partition in 0..self.reader.partition_count() {
            let mut from = 0u64;
            loop {
                let mut failed = None;
                let visited = self.reader.scan_views(partition, from, CHUNK, |record| {
                    if failed.is_none() && types.is_none_or(|types| types.contains(&record.event_type())) {
                        match record.decode() {
                            Ok(event) => visit(event),
                            Err(error) => failed = Some(error),
                        }
                    }
                })?;
                if let Some(error) = failed {
                    return Err(error.into());
                }
                read += visited as u64;
                from += visited as u64;
                if visited < CHUNK {
                    break;
                }
            }
        }
        Ok(read)
    }

    fn stream(&mut self, customer: &CustomerId) -> Result<Vec<RecordedEvent>> {
        Ok(self.reader.read_stream(customer, 1, usize::MAX)?)
    }
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
