//! The protocol shared by the `crash-writer` child binary and the `log_crash` test: how command
//! ids are built, how a command is rebuilt from its id, and the child's stdout lines.
//!
//! # Command ids
//! Every command the child appends can be rebuilt, bit for bit, from its customer id and
//! command id, so the test can retry any command it finds in the log:
//!
//! | command id                      | command                                                   |
//! |---------------------------------|-----------------------------------------------------------|
//! | `c-<customer>-reg`              | `sample::register("Customer <customer>")`                 |
//! | `c-<customer>-r<run>-<n>-i`     | `sample::interaction("i-<customer>-r<run>-<n>", 16 + (n % 16) * 16)` |
//! | `c-<customer>-r<run>-<n>-p`     | `sample::promise("p-<customer>-r<run>-<n>", 2099-01-01T00:00:00Z)` |
//! | `c-<customer>-r<run>-<n>-k`     | `sample::keep("p-<customer>-r<run>-<n>")`                  |
//!
//! `<run>` is the child's run number (one per start of the child on a data directory, so a
//! restarted child never reuses an id for a new command) and `<n>` a counter within the run.
//! The registration id has no run: a restarted child registers again with the same id and the
//! log answers with the stored outcome (`deduplicated`). Command ids only identify a command
//! within its customer's stream, as the log's idempotency key is `(customer, command_id)`.
//!
//! # stdout of the child
//! `READY` once the log is open, then one line per acknowledged append:
//! `ACK <customer_id> <command_id> <partition> <first_offset> <event_count> <stream_version>`.
//! Each line is written whole and flushed; a reader only counts lines that end in `\n`.

use anyhow::{Context, bail};
use covenant_domain::{Command, CommandId, CustomerId, Timestamp, sample};
use covenant_log::{AppendOutcome, AppendRequest};

/// Due date of every promise: 2099-01-01T00:00:00Z (fixed, so the command is reproducible).
pub const PROMISE_DUE_AT_MILLIS: i64 = 4_070_908_800_000;

/// The line the child prints once the log is open.
pub const READY: &str = "READY";

/// The id of the `index`-th customer of a test.
pub fn customer_name(index: usize) -> String {
    format!("cust-{index:04}")
}

/// The registration command id of `customer`.
pub fn register_id(customer: &str) -> String {
    format!("c-{customer}-reg")
}

/// What a numbered command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sample::interaction`.
    Interaction,
    /// `sample::promise`.
    Promise,
    /// `sample::keep` of the promise with the same `<run>-<n>`.
    Keep,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Interaction => "i",
            Kind::Promise => "p",
            Kind::Keep => "k",
        }
    }
}

/// The command id of command `n` of run `run` on `customer`.
pub fn command_id(customer: &str, run: u64, n: u64, kind: Kind) -> String {
    format!("c-{customer}-r{run}-{n}-{}", kind.suffix())
}

/// Rebuilds the command that `command_id` stands for on `customer` (see the module docs).
pub fn command_for(customer: &str, command_id: &str) -> anyhow::Result<Command> {
    let rest = command_id
        .strip_prefix("c-")
        .and_then(|rest| rest.strip_prefix(customer))
        .and_then(|rest| rest.strip_prefix('-'))
        .with_context(|| format!("command id {command_id} does not start with c-{customer}-"))?;
    if rest == "reg" {
        return Ok(sample::register(&format!("Customer {customer}"))?);
    }
    let parts: Vec<&str> = rest.split('-').collect();
    let [run, n, kind] = parts.as_slice() else {
        bail!("command id {command_id}: expected c-{customer}-r<run>-<n>-<kind>");
    };
    let run: u64 = run
        .strip_prefix('r')
        .and_then(|run| run.parse().ok())
        .with_context(|| format!("command id {command_id}: bad run"))?;
    let n: u64 = n.parse().with_context(|| format!("command id {command_id}: bad counter"))?;
    let tag = format!("{customer}-r{run}-{n}");
    Ok(match *kind {
        "i" => sample::interaction(&format!("i-{tag}"), summary_len(n))?,
        "p" => sample::promise(
            &format!("p-{tag}"),
            Timestamp::from_unix_millis("due_at", PROMISE_DUE_AT_MILLIS)?,
        )?,
        "k" => sample::keep(&format!("p-{tag}"))?,
        other => bail!("command id {command_id}: unknown kind {other}"),
    })
}

fn summary_len(n: u64) -> usize {
    16 + usize::try_from(n % 16).unwrap_or(0) * 16
}

/// The append request for `command_id` on `customer`, recorded now.
pub fn request(customer: &str, command_id: &str) -> anyhow::Result<AppendRequest> {
    Ok(AppendRequest {
        customer_id: CustomerId::new(customer)?,
        command_id: CommandId::new(command_id)?,
        expected_version: None,
        metadata: sample::metadata(Timestamp::now())?,
        command: command_for(customer, command_id)?,
    })
}

/// One acknowledged append, as the child reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub customer_id: String,
    pub command_id: String,
    pub partition: u16,
    pub first_offset: u64,
    pub event_count: u32,
    pub stream_version: u64,
}

impl Ack {
    /// The ack of `outcome` for `command_id` on `customer`.
    pub fn new(customer: &str, command_id: &str, outcome: &AppendOutcome) -> Self {
        Self {
            customer_id: customer.to_owned(),
            command_id: command_id.to_owned(),
            partition: outcome.partition,
            first_offset: outcome.first_offset,
            event_count: outcome.event_count,
            stream_version: outcome.stream_version,
        }
    }

    /// The stdout line, with its `\n`.
    pub fn line(&self) -> String {
        format!(
            "ACK {} {} {} {} {} {}\n",
            self.customer_id,
            self.command_id,
            self.partition,
            self.first_offset,
            self.event_count,
            self.stream_version
        )
    }

    /// Parses a line written by [`Ack::line`] (without its `\n`).
    pub fn parse(line: &str) -> anyhow::Result<Self> {
        let fields: Vec<&str> = line.split(' ').collect();
        let ["ACK", customer_id, command_id, partition, first_offset, event_count, stream_version] =
            fields.as_slice()
        else {
            bail!("not an ACK line: {line:?}");
        };
        let number = |what: &str, value: &str| -> anyhow::Result<u64> {
            value.parse().with_context(|| format!("bad {what} in {line:?}"))
        };
        Ok(Self {
            customer_id: (*customer_id).to_owned(),
            command_id: (*command_id).to_owned(),
            partition: u16::try_from(number("partition", partition)?)?,
            first_offset: number("first_offset", first_offset)?,
            event_count: u32::try_from(number("event_count", event_count)?)?,
            stream_version: number("stream_version", stream_version)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_id_rebuilds_a_command() -> anyhow::Result<()> {
        let customer = "cust-0001";
        assert!(matches!(command_for(customer, &register_id(customer))?, Command::RegisterCustomer { .. }));
        for (kind, matches) in [
            (Kind::Interaction, "RecordInteraction"),
            (Kind::Promise, "MakePromise"),
            (Kind::Keep, "KeepPromise"),
        ] {
            let command = command_for(customer, &command_id(customer, 3, 17, kind))?;
            assert!(format!("{command:?}").starts_with(matches), "{command:?}");
            assert_eq!(command, command_for(customer, &command_id(customer, 3, 17, kind))?);
        }
        assert!(command_for(customer, "c-cust-0002-reg").is_err());
        assert!(command_for(customer, "c-cust-0001-r1-2-x").is_err());
        Ok(())
    }

    #[test]
    fn ack_lines_round_trip() -> anyhow::Result<()> {
        let ack = Ack {
            customer_id: "cust-0003".into(),
            command_id: "c-cust-0003-r0-5-i".into(),
            partition: 2,
            first_offset: 99,
            event_count: 1,
            stream_version: 7,
        };
        let line = ack.line();
        assert!(line.ends_with('\n'));
        assert_eq!(Ack::parse(line.trim_end())?, ack);
        assert!(Ack::parse("ACK cust-0003 c 1 2 3").is_err());
        Ok(())
    }
}
