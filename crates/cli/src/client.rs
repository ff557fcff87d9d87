//! How the commands that call a running system connect: the gRPC channel and the token they send.
//!
//! The token is the first of `COVENANT_TOKEN`, the file `COVENANT_TOKEN_FILE` names, and
//! `data/auth/admin.token` (what `covenant up` writes with its default `--data`). With
//! `COVENANT_CA_FILE` set the connection uses TLS and trusts that CA only (`https://` addresses;
//! `COVENANT_TLS_DOMAIN` overrides the name checked in the server's certificate).

use std::path::Path;

use anyhow::Context;
use covenant_auth::{AuthChannel, ClientTls, ClientToken};
use tonic::transport::Channel;

/// Where `covenant up` (default `--data`) leaves the admin token.
pub(crate) const DEFAULT_TOKEN_FILE: &str = "data/auth/admin.token";

/// The token this process sends.
pub(crate) fn token() -> anyhow::Result<ClientToken> {
    ClientToken::from_environment(Some(Path::new(DEFAULT_TOKEN_FILE))).context("find the token to send")
}

/// A channel to `url` (the `what` service) sending this process's token.
pub(crate) async fn channel(url: &str, what: &str) -> anyhow::Result<AuthChannel> {
    let mut endpoint = Channel::from_shared(url.to_owned())
        .with_context(|| format!("{url} is not a gRPC address (http://host:port)"))?;
    if let Some(tls) = ClientTls::from_environment()? {
        endpoint = endpoint.tls_config(tls.config()).context("configure TLS (COVENANT_CA_FILE)")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connect to {what} at {url} (is `covenant up` running?)"))?;
    Ok(token()?.channel(channel)?)
}
