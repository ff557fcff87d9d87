//! The benchmarks run the services as production does, with bearer-token authentication on:
//! one admin token per benchmark process, sent by every client.

use std::sync::{Arc, OnceLock};

use anyhow::Result;
use covenant_auth::{AuthChannel, AuthMode, Authenticator, ClientToken, Scope, TokenFile};

struct BenchAuth {
    mode: AuthMode,
    token: ClientToken,
}

fn bench_auth() -> Result<&'static BenchAuth> {
    static AUTH: OnceLock<BenchAuth> = OnceLock::new();
    if let Some(auth) = AUTH.get() {
        return Ok(auth);
    }
    let admin = covenant_auth::generate_token("bench", &[Scope::Admin])?;
    let tokens = Authenticator::new(&TokenFile { tokens: vec![admin.record] })?;
    Ok(AUTH.get_or_init(|| BenchAuth {
        mode: AuthMode::Tokens(Arc::new(tokens)),
        token: ClientToken::new(admin.secret),
    }))
}

/// What the benchmark's services check.
pub(crate) fn mode() -> Result<AuthMode> {
    Ok(bench_auth()?.mode.clone())
}

/// The token the benchmark's clients send.
pub(crate) fn token() -> Result<ClientToken> {
    Ok(bench_auth()?.token.clone())
}

/// A channel to `url` that sends the benchmark's token.
pub(crate) async fn channel(url: &str) -> Result<AuthChannel> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())?.connect().await?;
    Ok(token()?.channel(channel)?)
}
