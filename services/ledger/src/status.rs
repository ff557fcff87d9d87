//! The edge: library errors mapped to gRPC statuses with precise messages.

use covenant_domain::RejectionKind;
use covenant_log::LogError;
use covenant_proto::convert::ConvertError;
use tonic::{Code, Status};

/// The gRPC status of a log error.
pub fn from_log(error: &LogError) -> Status {
    let code = log_code(error);
    if code == Code::Internal || code == Code::DataLoss {
        tracing::error!(%error, "internal error answering a request");
    }
    Status::new(code, error.to_string())
}

/// The gRPC code of a log error.
pub fn log_code(error: &LogError) -> Code {
    match error {
        LogError::Rejected(rejection) => match rejection.kind() {
            RejectionKind::InvalidArgument => Code::InvalidArgument,
            RejectionKind::NotFound => Code::NotFound,
            RejectionKind::AlreadyExists => Code::AlreadyExists,
            RejectionKind::FailedPrecondition => Code::FailedPrecondition,
            RejectionKind::TooEarly => Code::OutOfRange,
        },
        LogError::VersionConflict { .. } => Code::Aborted,
        LogError::CommandIdReused { .. } => Code::AlreadyExists,
        LogError::NoSuchPartition { .. } => Code::InvalidArgument,
        LogError::Corrupt { .. } | LogError::CorruptMetadata { .. } => Code::DataLoss,
        // A key that does not open (wrong master key, tampering) or a failed random source.
        LogError::Sealing(_) => Code::Internal,
        LogError::PartitionCountMismatch { .. } | LogError::Config(_) => Code::FailedPrecondition,
        LogError::Storage(_)
        | LogError::Unwritable { .. }
        | LogError::Io { .. }
        | LogError::Closed
        | LogError::ReplicationUnavailable
        | LogError::Replication(_) => Code::Unavailable,
    }
}

/// A bad request field: `INVALID_ARGUMENT` naming it.
pub fn from_convert(error: &ConvertError) -> Status {
    Status::invalid_argument(error.to_string())
}
