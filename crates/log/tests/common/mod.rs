//! Helpers shared by the log's integration tests.
#![allow(dead_code, unreachable_pub)] // each test binary uses a part of these helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use covenant_domain::{Command, CommandId, CustomerId, Timestamp, sample};
use covenant_log::{AppendRequest, Clock, Durability, EventLog, LogConfig};

/// 2023-11-14T22:13:20Z, the start of every test clock.
pub const T0: i64 = 1_700_000_000_000;

/// A clock the test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn starting_at(millis: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(millis)))
    }
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis_clamped(self.0.load(Ordering::SeqCst))
    }
}

pub fn customer(id: &str) -> CustomerId {
    CustomerId::new(id).unwrap()
}

pub fn request(customer_id: &str, command_id: &str, command: Command) -> AppendRequest {
    AppendRequest {
        customer_id: customer(customer_id),
        command_id: CommandId::new(command_id).unwrap(),
        expected_version: None,
        metadata: sample::metadata(Timestamp::from_unix_millis_clamped(T0)).unwrap(),
        command,
    }
}

pub fn config(dir: &std::path::Path, partitions: u16) -> LogConfig {
    LogConfig::new(dir.join("log")).with_partitions(partitions).with_durability(Durability::Buffered)
}

pub async fn open(dir: &std::path::Path, partitions: u16) -> EventLog {
    EventLog::open_with_clock(config(dir, partitions), ManualClock::starting_at(T0)).await.unwrap()
}

/// Registers `customer_id` with command id `<customer_id>-reg`.
pub async fn register(log: &EventLog, customer_id: &str) {
    log.append(request(
        customer_id,
        &format!("{customer_id}-reg"),
        sample::register("Ada Lovelace").unwrap(),
    ))
    .await
    .unwrap();
}
