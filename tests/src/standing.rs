//! Waiting for standing in the black-box tests: until it has applied every partition of the
//! log to a given end.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use covenant_proto::v1;
use covenant_proto::v1::standing_client::StandingClient;
use tonic::transport::Channel;

/// Polls standing's `GetProgress` at `endpoint` until the next offset of every partition equals
/// `ends` (the log's ends, by partition), at most `within`.
pub async fn wait_until_applied(endpoint: &str, ends: &[u64], within: Duration) -> Result<()> {
    let channel = Channel::from_shared(endpoint.to_owned())?.connect().await?;
    let mut standing = StandingClient::new(channel);
    let deadline = Instant::now() + within;
    loop {
        let next = standing.get_progress(v1::GetProgressRequest {}).await?.into_inner().next;
        let applied: Vec<u64> = next.iter().map(|position| position.offset).collect();
        if applied == ends {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("standing stuck at {applied:?} after {within:?}; the log ends at {ends:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
