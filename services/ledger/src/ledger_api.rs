//! gRPC `Ledger`: one RPC per command plus `AppendBatch`. Each request is converted field by
//! field (a bad field is `INVALID_ARGUMENT` naming it), decided and appended by the log, and
//! answered with the positions and the new stream version once durable.
//!
//! Every call needs `events:write` (checked by the interceptor in front of the service);
//! erasing a customer also needs `admin`, whether asked alone or inside a batch.

use std::collections::HashMap;
use std::time::Instant;

use covenant_auth::{Principal, Scope};
use covenant_domain::{Command, Timestamp};
use covenant_log::{AppendOutcome, AppendRequest, EventLog, LogError};
use covenant_proto::convert::{CommandRequest, ConvertError, position_to_wire, timestamp_to_wire};
use covenant_proto::v1::{self, ledger_server::Ledger};
use tonic::{Request, Response, Status};

use crate::{status, telemetry};

/// Most commands one `AppendBatch` may carry.
pub const MAX_BATCH_COMMANDS: usize = 1000;

/// Who may do what inside an accepted call (the service's own scope is already checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The caller holds `admin`: erasure is allowed.
    Allowed,
    /// Erasure is refused with `PERMISSION_DENIED`, naming what it needs.
    Refused(&'static str),
}

impl Erasure {
    /// What the caller of a gRPC request may do.
    pub fn of<T>(request: &Request<T>) -> Self {
        match request.extensions().get::<Principal>() {
            Some(principal) if principal.scopes().allows(Scope::Admin) => Erasure::Allowed,
            _ => Erasure::Refused("erasing a customer needs a token with the `admin` scope"),
        }
    }

    fn check(self, command: &CommandRequest) -> Result<(), Status> {
        match (self, &command.command) {
            (Erasure::Refused(reason), Command::EraseCustomer) => Err(Status::permission_denied(reason)),
            _ => Ok(()),
        }
    }
}

/// The `Ledger` service over an open log.
#[derive(Debug, Clone)]
pub struct LedgerApi {
    log: EventLog,
}

impl LedgerApi {
    pub fn new(log: EventLog) -> Self {
        Self { log }
    }

    /// Decides and appends one converted command.
    pub async fn execute(&self, request: CommandRequest) -> Result<AppendOutcome, LogError> {
        let metadata = request.metadata(Timestamp::now());
        self.log
            .append(AppendRequest {
                customer_id: request.customer_id,
                command_id: request.command_id,
                expected_version: request.expected_version,
                metadata,
                command: request.command,
            })
            .await
    }

    async fn handle<R>(
        &self,
        method: &'static str,
        request: Request<R>,
    ) -> Result<Response<v1::AppendResponse>, Status>
    where
        CommandRequest: TryFrom<R, Error = ConvertError>,
    {
        let started = Instant::now();
        let erasure = Erasure::of(&request);
        let result = match CommandRequest::try_from(request.into_inner()) {
            Ok(command) => match erasure.check(&command) {
                Ok(()) => self.execute(command).await.map_err(|error| status::from_log(&error)),
                Err(refused) => Err(refused),
            },
            Err(error) => Err(status::from_convert(&error)),
        };
        telemetry::observe(method, started, &result);
        Ok(Response::new(append_response(&result?)))
    }

    /// Runs a batch: items of one customer in the order given, customers concurrently. An
    /// erasure the caller may not ask for fails its item with `PERMISSION_DENIED`.
    pub async fn run_batch(&self, commands: Vec<v1::BatchCommand>, erasure: Erasure) -> Vec<v1::BatchResult> {
        let mut results: Vec<Option<v1::batch_result::Result>> = vec![None; commands.len()];
        let mut by_customer: HashMap<String, Vec<(usize, CommandRequest)>> = HashMap::new();
        for (index, command) in commands.into_iter().enumerate() {
            match CommandRequest::try_from(command) {
                Ok(command) => match erasure.check(&command) {
                    Ok(()) => {
                        by_customer.entry(command.customer_id.to_string()).or_default().push((index, command))
                    }
                    Err(refused) => results[index] = Some(batch_error(&refused)),
                },
                Err(error) => results[index] = Some(batch_error(&status::from_convert(&error))),
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (_, items) in by_customer {
            let api = self.clone();
            tasks.spawn(async move {
                let mut done = Vec::with_capacity(items.len());
                for (index, command) in items {
                    let result = match api.execute(command).await {
                        Ok(outcome) => v1::batch_result::Result::Appended(append_response(&outcome)),
                        Err(error) => batch_error(&status::from_log(&error)),
                    };
                    done.push((index, result));
                }
                done
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(done) => {
                    for (index, result) in done {
                        results[index] = Some(result);
                    }
                }
                Err(error) => tracing::error!(%error, "a batch task failed"),
            }
        }
        results
            .into_iter()
            .map(|result| v1::BatchResult {
                result: Some(
                    result.unwrap_or_else(|| batch_error(&Status::internal("the batch item was not run"))),
                ),
            })
            .collect()
    }
}

/// The reply to an accepted command.
pub fn append_response(outcome: &AppendOutcome) -> v1::AppendResponse {
    v1::AppendResponse {
        positions: outcome.positions().map(position_to_wire).collect(),
        stream_version: outcome.stream_version,
        recorded_at: Some(timestamp_to_wire(outcome.recorded_at)),
        deduplicated: outcome.deduplicated,
    }
}

/// A failed batch item.
pub fn batch_error(status: &Status) -> v1::batch_result::Result {
    v1::batch_result::Result::Error(v1::BatchError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    })
}

macro_rules! ledger_rpcs {
    ($($method:ident: $request:ident),* $(,)?) => {
        #[tonic::async_trait]
        impl Ledger for LedgerApi {
            $(
                async fn $method(
                    &self,
                    request: Request<v1::$request>,
                ) -> Result<Response<v1::AppendResponse>, Status> {
                    self.handle(stringify!($method), request).await
                }
            )*

            async fn append_batch(
                &self,
                request: Request<v1::AppendBatchRequest>,
            ) -> Result<Response<v1::AppendBatchResponse>, Status> {
                let started = Instant::now();
                let erasure = Erasure::of(&request);
                let commands = request.into_inner().commands;
                let result = if commands.len() > MAX_BATCH_COMMANDS {
                    Err(Status::invalid_argument(format!(
                        "commands: {} commands in one batch, at most {MAX_BATCH_COMMANDS} are allowed",
                        commands.len()
                    )))
                } else {
                    Ok(v1::AppendBatchResponse { results: self.run_batch(commands, erasure).await })
                };
                telemetry::observe("append_batch", started, &result);
                result.map(Response::new)
            }
        }
    };
}

covenant_proto::with_ledger_command_rpcs!(ledger_rpcs);
