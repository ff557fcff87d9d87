//! Why the domain refuses a command: a bad field, a missing or duplicate thing, or a rule.
//!
//! Each variant maps to exactly one gRPC code at the edge (see [`DomainError::kind`]); messages
//! are lowercase, name the field or the thing, and say what was wrong.

use thiserror::Error;

/// What was wrong with a field's value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("must not be empty")]
    Empty,
    #[error("is {actual} bytes long, the limit is {max}")]
    TooLong { max: usize, actual: usize },
    #[error("has a character outside [A-Za-z0-9._:@-] at position {position}")]
    BadCharacter { position: usize },
    #[error("has {actual} items, the limit is {max}")]
    TooMany { max: usize, actual: usize },
    #[error("is {value}, it must be between {min} and {max}")]
    OutOfRange { value: String, min: String, max: String },
    #[error("is missing")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

/// The class of a rejection; the transport maps each class to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// A field is malformed or out of range (INVALID_ARGUMENT).
    InvalidArgument,
    /// The command refers to something that does not exist (NOT_FOUND).
    NotFound,
    /// The command would create something that already exists (ALREADY_EXISTS).
    AlreadyExists,
    /// The command is well-formed but the customer's history forbids it (FAILED_PRECONDITION).
    FailedPrecondition,
    /// The command comes too early: the same command will be accepted once time has passed a
    /// deadline (OUT_OF_RANGE, the gRPC code for "may succeed when the state changes"). The
    /// watchdog retries these and drops the final refusals.
    TooEarly,
}

/// A command the domain refuses, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("{field} {problem}")]
    InvalidField { field: &'static str, problem: FieldError },
    #[error("customer {customer_id} is not registered: record RegisterCustomer first")]
    CustomerNotRegistered { customer_id: String },
    #[error("customer {customer_id} is already registered")]
    CustomerAlreadyRegistered { customer_id: String },
    #[error("customer {customer_id} was erased: no further events can be recorded")]
    CustomerErased { customer_id: String },
    #[error("{what} {id} not found for this customer")]
    NotFound { what: &'static str, id: String },
    #[error("{field} names {reference}, which does not exist for this customer")]
    UnknownReference { field: &'static str, reference: String },
    #[error("{what} {id} already exists for this customer")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} {id} is {state}: cannot {action}")]
    IllegalTransition { what: &'static str, id: String, state: String, action: &'static str },
    #[error("{0}")]
    Rule(String),
    /// A deadline the command depends on has not passed yet.
    #[error("{what} is due at {due}, not yet passed (now is {now})")]
    NotYetDue { what: String, due: String, now: String },
}

impl DomainError {
    /// A bad value in `field`.
    pub fn invalid(field: &'static str, problem: FieldError) -> Self {
        Self::InvalidField { field, problem }
    }

    /// A bad value in `field`, described in words.
    pub fn invalid_because(field: &'static str, why: impl Into<String>) -> Self {
        Self::InvalidField { field, problem: FieldError::Invalid(why.into()) }
    }

    /// Which status class this rejection belongs to.
    pub fn kind(&self) -> RejectionKind {
        match self {
            Self::InvalidField { .. } => RejectionKind::InvalidArgument,
            Self::CustomerNotRegistered { .. } | Self::NotFound { .. } | Self::UnknownReference { .. } => {
                RejectionKind::NotFound
            }
            Self::CustomerAlreadyRegistered { .. } | Self::AlreadyExists { .. } => {
                RejectionKind::AlreadyExists
            }
            Self::CustomerErased { .. } | Self::IllegalTransition { .. } | Self::Rule(_) => {
                RejectionKind::FailedPrecondition
            }
            Self::NotYetDue { .. } => RejectionKind::TooEarly,
        }
    }
}
