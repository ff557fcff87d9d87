//! Who may call Covenant's gRPC APIs: bearer tokens with scopes (DESIGN §7).
//!
//! A token is 32 random bytes written as `cvt_` and 64 hex digits. Services never see tokens
//! in clear at rest: their token file holds each token's **blake3 hash**, a name and its scopes
//! ([`TokenFile`]); a call's `authorization: Bearer <token>` header is hashed and looked up. The
//! tokens are random and long, so an unsalted fast hash is enough (nothing to brute-force), and
//! the lookup is by hash, so no comparison of secrets is timed.
//!
//! - [`Authenticator`] holds a service's tokens; [`Authorize`] is the tonic interceptor that
//!   gives a missing or unknown token `UNAUTHENTICATED` and a token without the service's scope
//!   `PERMISSION_DENIED`, and hands the caller ([`Principal`]) to the handlers, which check the
//!   finer scopes some calls need ([`require`]).
//! - [`BearerToken`] is the client side: it adds the header to every call.
//!
//! - [`ServerTls`] / [`ClientTls`]: TLS for the same APIs (rustls), when certificates are
//!   configured.
//!
//! Neither the token nor its hash is ever logged or put in an error message.

mod client;
mod scope;
mod server;
mod tls;
mod tokens;

pub use client::{AuthChannel, BearerToken, ClientToken};
pub use scope::{Scope, ScopeSet};
pub use server::{AuthArgs, AuthMode, Authorize, Principal, require};
pub use tls::{ClientTls, ServerTls, TlsArgs, grpc_server};
pub use tokens::{Authenticator, GeneratedToken, TokenFile, TokenRecord, generate_token};

/// Why a call or a token file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    Missing,
    #[error("malformed authorization header: expected `Bearer <token>`")]
    Malformed,
    #[error("unknown or revoked token")]
    Unknown,
    #[error("token `{name}` lacks the scope `{required}` this call needs")]
    Forbidden { name: String, required: Scope },
    #[error("token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("unknown scope `{0}` (expected events:write, standing:read, log:read, pii:read or admin)")]
    UnknownScope(String),
    #[error("the system's random source failed: {0}")]
    Random(String),
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Malformed | AuthError::Unknown => {
                tonic::Status::unauthenticated(error.to_string())
            }
            AuthError::Forbidden { .. } => tonic::Status::permission_denied(error.to_string()),
            AuthError::TokenFile { .. }
            | AuthError::File { .. }
            | AuthError::UnknownScope(_)
            | AuthError::Random(_) => tonic::Status::internal(error.to_string()),
        }
    }
}
