//! TLS for the gRPC APIs (rustls, through tonic): the certificate and key a service serves
//! with, and the certificate authority a client trusts.
//!
//! Off unless configured: a service given `--tls-cert` and `--tls-key` serves TLS only; a client
//! given a CA file (`COVENANT_CA_FILE` for the `covenant` commands) connects with TLS and
//! trusts that CA only.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::AuthError;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, AuthError> {
    let bytes = std::fs::read(path).map_err(|error| AuthError::File {
        path: path.display().to_string(),
        reason: format!("read the {what}: {error}"),
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
        return Err(AuthError::File {
            path: path.display().to_string(),
            reason: format!("the {what} is not PEM"),
        });
    }
    Ok(bytes)
}

/// A service's TLS identity (certificate chain and private key, PEM).
#[derive(Clone)]
pub struct ServerTls {
    identity: Identity,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(<certificate and key>)")
    }
}

impl ServerTls {
    /// Reads the PEM certificate chain and private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, AuthError> {
        Ok(Self { identity: Identity::from_pem(read(cert, "certificate")?, read(key, "private key")?) })
    }

    /// The tonic server configuration.
    pub fn config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity.clone())
    }
}

/// A gRPC server builder, serving TLS when an identity is given.
pub fn grpc_server(tls: Option<&ServerTls>) -> Result<tonic::transport::Server, tonic::transport::Error> {
    let server = tonic::transport::Server::builder();
    match tls {
        Some(tls) => server.tls_config(tls.config()),
        None => Ok(server),
    }
}

/// What a client trusts when it connects with TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    ca: Certificate,
    domain: Option<String>,
}

impl ClientTls {
    /// Trusts the CA certificate(s) in `ca` (PEM); `domain` overrides the name checked in the
    /// server's certificate (default: the host of the URL).
    pub fn load(ca: &Path, domain: Option<String>) -> Result<Self, AuthError> {
        Ok(Self { ca: Certificate::from_pem(read(ca, "CA certificate")?), domain })
    }

    /// `COVENANT_CA_FILE` (and `COVENANT_TLS_DOMAIN`), when set.
    pub fn from_environment() -> Result<Option<Self>, AuthError> {
        match std::env::var_os("COVENANT_CA_FILE") {
            Some(path) => Ok(Some(Self::load(Path::new(&path), std::env::var("COVENANT_TLS_DOMAIN").ok())?)),
            None => Ok(None),
        }
    }

    /// The tonic client configuration.
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(self.ca.clone());
        match &self.domain {
            Some(domain) => config.domain_name(domain.clone()),
            None => config,
        }
    }
}

/// The TLS options every service takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "COVENANT_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "COVENANT_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The identity to serve with, when both files are given.
    pub fn server(&self) -> Result<Option<ServerTls>, AuthError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(ServerTls::load(cert, key)?)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_are_not_pem_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, b"not a certificate").unwrap();
        let error = ServerTls::load(&junk, &junk).unwrap_err().to_string();
        assert!(error.contains("junk.pem") && error.contains("not PEM"), "{error}");
        let missing = ClientTls::load(&dir.path().join("nope.pem"), None).unwrap_err().to_string();
        assert!(missing.contains("nope.pem"), "{missing}");
    }
}
