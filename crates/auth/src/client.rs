//! The client side: where a command-line tool finds its token, and the interceptor that sends it.

use std::fmt;
use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A gRPC channel that sends a token with every call: give it to any generated client's `new`.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

use crate::AuthError;

/// A token a client sends, or none (for a service with authentication off).
#[derive(Clone, Default)]
pub struct ClientToken(Option<String>);

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "ClientToken(<redacted>)" } else { "ClientToken(none)" })
    }
}

impl ClientToken {
    /// This token.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Some(secret.into()))
    }

    /// No token.
    pub fn none() -> Self {
        Self(None)
    }

    /// The token in the first place that has one: `COVENANT_TOKEN`, the file named by
    /// `COVENANT_TOKEN_FILE`, then `default_file` when it exists (the admin token `covenant up`
    /// writes). None of them: no token.
    pub fn from_environment(default_file: Option<&Path>) -> Result<Self, AuthError> {
        if let Ok(secret) = std::env::var("COVENANT_TOKEN") {
            return Ok(Self::new(secret.trim()));
        }
        if let Ok(path) = std::env::var("COVENANT_TOKEN_FILE") {
            return Self::read(Path::new(&path));
        }
        match default_file {
            Some(path) if path.exists() => Self::read(path),
            _ => Ok(Self::none()),
        }
    }

    /// The token stored in `path` (its first line).
    pub fn read(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|error| AuthError::TokenFile {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        let secret = text.lines().next().unwrap_or_default().trim();
        if secret.is_empty() {
            return Err(AuthError::TokenFile {
                path: path.display().to_string(),
                reason: "the file is empty".into(),
            });
        }
        Ok(Self::new(secret))
    }

    /// Writes `secret` to `path`, readable by its owner only.
    pub fn write(path: &Path, secret: &str) -> Result<PathBuf, AuthError> {
        crate::tokens::write_private(path, format!("{secret}\n").as_bytes()).map_err(|error| {
            AuthError::TokenFile { path: path.display().to_string(), reason: error.to_string() }
        })?;
        Ok(path.to_owned())
    }

    /// `channel`, sending this token with every call.
    pub fn channel(&self, channel: Channel) -> Result<AuthChannel, AuthError> {
        Ok(InterceptedService::new(channel, self.interceptor()?))
    }

    /// The interceptor that sends this token.
    pub fn interceptor(&self) -> Result<BearerToken, AuthError> {
        let header = match &self.0 {
            Some(secret) => Some(
                format!("Bearer {secret}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| AuthError::Malformed)?,
            ),
            None => None,
        };
        Ok(BearerToken(header))
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing when there is no token).
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// Sends nothing.
    pub fn none() -> Self {
        Self(None)
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    #[test]
    fn the_client_sends_the_token_it_read_and_never_prints_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = ClientToken::write(&dir.path().join("admin.token"), "cvt_abc").unwrap();
        let token = ClientToken::read(&path).unwrap();
        assert!(!format!("{token:?}").contains("cvt_abc"));
        let mut interceptor = token.interceptor().unwrap();
        assert!(!format!("{interceptor:?}").contains("cvt_abc"));
        let request = interceptor.call(Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer cvt_abc");
        let bare = ClientToken::none().interceptor().unwrap().call(Request::new(())).unwrap();
        assert!(bare.metadata().get("authorization").is_none());
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        assert!(ClientToken::read(&dir.path().join("empty")).is_err());
        assert!(ClientToken::new("bad\ntoken").interceptor().is_err());
    }
}
