//! What the benchmark appends: `sample::interaction` commands sized so that each recorded event
//! encodes to about `--event-bytes` bytes, and the stored record such an event becomes (the
//! raw baselines write values of exactly that size).

use anyhow::{Context, Result, bail};
use covenant_domain::{
    CommandId, CustomerId, CustomerState, DecisionContext, EventId, Position, RecordedEvent, Timestamp,
    apply, decide, sample,
};
use covenant_log::AppendRequest;
use covenant_log::codec::{self, GENESIS_HASH};

/// The interaction commands of a run and the size of what they store.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Length of each interaction's summary.
    pub(crate) summary_len: usize,
    /// Bytes of one recorded event, postcard-encoded (the record's body).
    pub(crate) event_bytes: usize,
    /// A real stored record of such an event: `[format][prev_hash][event][hash]`.
    pub(crate) record: Vec<u8>,
}

impl Workload {
    /// Finds the summary length whose recorded event encodes closest to `target_event_bytes`.
    pub(crate) fn sized(target_event_bytes: usize) -> Result<Self> {
        let base = Self::with_summary(0)?;
        let mut best = base.clone();
        let mut summary_len = target_event_bytes.saturating_sub(base.event_bytes);
        // The summary's length prefix grows by a byte at 128: settle within a few steps.
        for _ in 0..4 {
            let candidate = Self::with_summary(summary_len)?;
            if candidate.event_bytes.abs_diff(target_event_bytes)
                < best.event_bytes.abs_diff(target_event_bytes)
            {
                best = candidate.clone();
            }
            match candidate.event_bytes.cmp(&target_event_bytes) {
                std::cmp::Ordering::Equal => break,
                std::cmp::Ordering::Greater if summary_len > 0 => {
                    summary_len -= (candidate.event_bytes - target_event_bytes).min(summary_len)
                }
                std::cmp::Ordering::Less => summary_len += target_event_bytes - candidate.event_bytes,
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(best)
    }

    /// Builds a recorded interaction event as the log's writer would and encodes it.
    fn with_summary(summary_len: usize) -> Result<Self> {
        let customer_id = customer(0, 0)?;
        let now = Timestamp::now();
        let context = DecisionContext { now, occurred_at: now };
        let mut state = CustomerState::default();
        for event in decide(&state, customer_id.as_str(), &sample::register("Ada Lovelace")?, &context)? {
            apply(&mut state, &event, now);
        }
        let command = sample::interaction(&interaction_id(0, 123_456), summary_len)?;
        let events = decide(&state, customer_id.as_str(), &command, &context)?;
        let [event] =
            <[_; 1]>::try_from(events).ok().context("an interaction should record exactly one event")?;
        let recorded = RecordedEvent {
            event_id: EventId::new_v7(),
            customer_id,
            stream_version: state.version + 1,
            // A typical offset of a partition with some history (varints grow with it).
            position: Position { partition: 3, offset: 123_456 },
            recorded_at: now,
            command_id: command_id(0, 123_456)?,
            metadata: sample::metadata(now)?,
            event,
        };
        let event_bytes = postcard::to_stdvec(&recorded).context("encode a sample event")?.len();
        let (record, _hash) = codec::encode_record(&GENESIS_HASH, &recorded)?;
        if record.len() <= event_bytes {
            bail!("a record ({} bytes) should be larger than its event ({event_bytes} bytes)", record.len());
        }
        Ok(Self { summary_len, event_bytes, record })
    }

    /// Registration of customer `index` of `producer`.
    pub(crate) fn register(&self, producer: usize, index: usize) -> Result<AppendRequest> {
        Ok(AppendRequest {
            customer_id: customer(producer, index)?,
            command_id: CommandId::new(format!("reg-{producer}-{index}"))?,
            expected_version: None,
            metadata: sample::metadata(Timestamp::now())?,
            command: sample::register("Ada Lovelace")?,
        })
    }

    /// Interaction number `sequence` of `producer`, for one of its `customers` customers.
    pub(crate) fn interaction(
        &self,
        producer: usize,
        customers: usize,
        sequence: u64,
    ) -> Result<AppendRequest> {
        let index = usize::try_from(sequence % customers.max(1) as u64).unwrap_or(0);
        Ok(AppendRequest {
            customer_id: customer(producer, index)?,
            command_id: command_id(producer, sequence)?,
            expected_version: None,
            metadata: sample::metadata(Timestamp::now())?,
            command: sample::interaction(&interaction_id(producer, sequence), self.summary_len)?,
        })
    }
}

fn customer(producer: usize, index: usize) -> Result<CustomerId> {
    Ok(CustomerId::new(format!("bench-customer-{producer:03}-{index:03}"))?)
}

fn command_id(producer: usize, sequence: u64) -> Result<CommandId> {
    Ok(CommandId::new(format!("cmd-{producer:03}-{sequence:09}"))?)
}

fn interaction_id(producer: usize, sequence: u64) -> String {
    format!("int-{producer:03}-{sequence:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_sized_to_the_target() -> Result<()> {
        let workload = Workload::sized(200)?;
        assert!(workload.event_bytes.abs_diff(200) <= 1, "event is {} bytes", workload.event_bytes);
        assert_eq!(workload.record.len(), workload.event_bytes + 1 + codec::HASH_LEN + codec::CHECKSUM_LEN);
        Ok(())
    }

    #[test]
    fn requests_are_valid() -> Result<()> {
        let workload = Workload::sized(200)?;
        workload.register(63, 7)?;
        workload.interaction(63, 8, 999_999)?;
        Ok(())
    }
}
