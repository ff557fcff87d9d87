//! The server side: the interceptor every service puts in front of its gRPC services, and the
//! check handlers make for the finer scopes some calls need.

use std::fmt;
use std::sync::Arc;

use tonic::{Request, Status};

use crate::AuthError;
use crate::scope::{Scope, ScopeSet};
use crate::tokens::Authenticator;

/// Who is calling: a token's name and scopes (never the token).
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    name: Arc<str>,
    scopes: ScopeSet,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal").field("name", &self.name).field("scopes", &self.scopes).finish()
    }
}

impl Principal {
    pub(crate) fn new(name: &str, scopes: ScopeSet) -> Self {
        Self { name: Arc::from(name), scopes }
    }

    /// The caller when authentication is turned off: allowed everything.
    pub fn unauthenticated_everything() -> Self {
        Self::new("(authentication off)", ScopeSet::all())
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token's scopes.
    pub fn scopes(&self) -> ScopeSet {
        self.scopes
    }

    /// `Ok` when the caller holds `scope` (or `admin`).
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden { name: self.name.to_string(), required: scope })
        }
    }
}

/// The tonic interceptor of one gRPC service: the caller must present a known token holding
/// `scope` (any known token when `scope` is `None`, e.g. for reflection). The caller's
/// [`Principal`] goes into the request's extensions for [`require`].
///
/// Built with [`Authorize::off`], every call passes as [`Principal::unauthenticated_everything`]
/// (a service started with `--insecure-no-auth`).
#[derive(Debug, Clone)]
pub struct Authorize {
    tokens: Option<Arc<Authenticator>>,
    scope: Option<Scope>,
}

impl Authorize {
    /// Calls need a token with `scope`.
    pub fn scope(tokens: Option<Arc<Authenticator>>, scope: Scope) -> Self {
        Self { tokens, scope: Some(scope) }
    }

    /// Calls need any known token.
    pub fn any_token(tokens: Option<Arc<Authenticator>>) -> Self {
        Self { tokens, scope: None }
    }

    /// Every call passes.
    pub fn off() -> Self {
        Self { tokens: None, scope: None }
    }

    fn check<T>(&self, request: &Request<T>) -> Result<Principal, AuthError> {
        let Some(tokens) = &self.tokens else {
            return Ok(Principal::unauthenticated_everything());
        };
        let header = request.metadata().get("authorization").map(|value| value.as_bytes());
        let principal = tokens.authenticate(header)?;
        if let Some(scope) = self.scope {
            principal.require(scope)?;
        }
        Ok(principal)
    }
}

impl tonic::service::Interceptor for Authorize {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.check(&request) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Ok(request)
            }
            Err(error) => {
                // The reason, never the token: the header is not logged.
                tracing::debug!(%error, "call refused");
                metrics_refused(&error);
                Err(error.into())
            }
        }
    }
}

/// Counts refusals in `covenant_grpc_refused_total{reason}` (`unauthenticated` or `forbidden`).
fn metrics_refused(error: &AuthError) {
    let reason = match error {
        AuthError::Forbidden { .. } => "forbidden",
        _ => "unauthenticated",
    };
    metrics::counter!("covenant_grpc_refused_total", "reason" => reason).increment(1);
}

/// In a handler: the caller must hold `scope` as well as the service's own. A request that did
/// not pass through [`Authorize`] is refused (fail closed).
pub fn require<T>(request: &Request<T>, scope: Scope) -> Result<(), Status> {
    let principal =
        request.extensions().get::<Principal>().ok_or_else(|| Status::from(AuthError::Missing))?;
    principal.require(scope).map_err(Status::from)
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;
    use crate::tokens::{TokenFile, generate_token};

    fn request(token: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    #[test]
    fn the_interceptor_refuses_missing_unknown_and_unscoped_callers_with_their_codes() {
        let reader = generate_token("reader", &[Scope::LogRead]).unwrap();
        let admin = generate_token("admin", &[Scope::Admin]).unwrap();
        let tokens = Arc::new(
            Authenticator::new(&TokenFile { tokens: vec![reader.record.clone(), admin.record.clone()] })
                .unwrap(),
        );
        let mut log = Authorize::scope(Some(tokens.clone()), Scope::LogRead);
        let mut write = Authorize::scope(Some(tokens.clone()), Scope::EventsWrite);

        let missing = log.call(request(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("Bearer"));
        let unknown = log.call(request(Some("cvt_0000"))).unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
        assert!(!unknown.message().contains("cvt_0000"), "the token is not echoed");

        let passed = log.call(request(Some(&reader.secret))).unwrap();
        assert_eq!(passed.extensions().get::<Principal>().unwrap().name(), "reader");
        assert!(require(&passed, Scope::LogRead).is_ok());
        let denied = require(&passed, Scope::PiiRead).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(denied.message(), "token `reader` lacks the scope `pii:read` this call needs");
        assert!(!denied.message().contains(&reader.secret));

        let forbidden = write.call(request(Some(&reader.secret))).unwrap_err();
        assert_eq!(forbidden.code(), tonic::Code::PermissionDenied);
        assert!(write.call(request(Some(&admin.secret))).is_ok(), "admin holds every scope");
        assert!(Authorize::any_token(Some(tokens)).call(request(Some(&reader.secret))).is_ok());
    }

    #[test]
    fn with_authentication_off_everything_passes_and_a_bypassed_request_is_refused() {
        let passed = Authorize::off().call(request(None)).unwrap();
        assert!(require(&passed, Scope::Admin).is_ok());
        assert_eq!(require(&request(None), Scope::LogRead).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}

/// Whether a service checks tokens.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Every call needs a token from this set.
    Tokens(Arc<Authenticator>),
    /// Every call passes (`--insecure-no-auth`: tests and local experiments only).
    Off,
}

impl AuthMode {
    /// The interceptor for a gRPC service whose calls need `scope`.
    pub fn authorize(&self, scope: Scope) -> Authorize {
        match self {
            AuthMode::Tokens(tokens) => Authorize::scope(Some(Arc::clone(tokens)), scope),
            AuthMode::Off => Authorize::off(),
        }
    }

    /// The interceptor for a gRPC service any known token may call (reflection).
    pub fn any_token(&self) -> Authorize {
        match self {
            AuthMode::Tokens(tokens) => Authorize::any_token(Some(Arc::clone(tokens))),
            AuthMode::Off => Authorize::off(),
        }
    }

    /// Logs what the service does about authentication (loudly when it is off).
    pub fn log(&self, service: &str) {
        match self {
            AuthMode::Tokens(tokens) => {
                tracing::info!(service, tokens = tokens.len(), "bearer-token authentication on")
            }
            AuthMode::Off => tracing::warn!(
                service,
                "authentication is OFF (--insecure-no-auth): anyone who reaches the port may call every API"
            ),
        }
    }
}

/// The command-line options every service takes: exactly one of them is required, so a service
/// never runs open by accident.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct AuthArgs {
    /// Token file (JSON: name, blake3 hash and scopes of each token); calls need a token from it.
    #[arg(long, env = "COVENANT_AUTH_TOKENS", value_name = "FILE")]
    pub auth_tokens: Option<std::path::PathBuf>,
    /// Accept every call without a token (tests and local experiments only).
    #[arg(long)]
    pub insecure_no_auth: bool,
}

impl AuthArgs {
    /// The mode these options ask for, with the token file loaded.
    pub fn mode(&self) -> Result<AuthMode, AuthError> {
        match &self.auth_tokens {
            Some(path) => Ok(AuthMode::Tokens(Arc::new(Authenticator::load(path)?))),
            None => Ok(AuthMode::Off),
        }
    }
}
