//! Subject names and headers: the NATS contract between the services and with data teams
//! (see docs/EVENTS.md).

/// The JetStream stream that carries every recorded event.
pub const EVENTS_STREAM: &str = "COVENANT_EVENTS";
/// Every subject of [`EVENTS_STREAM`].
pub const EVENTS_WILDCARD: &str = "covenant.events.>";
/// Header carrying the event's partition.
pub const HEADER_PARTITION: &str = "Covenant-Partition";
/// Header carrying the event's offset within its partition.
pub const HEADER_OFFSET: &str = "Covenant-Offset";
/// Every command subject (request/reply, answered by a ledger).
pub const COMMANDS_WILDCARD: &str = "covenant.cmd.>";
/// Queue group of the ledgers answering commands and log reads.
pub const LEDGER_QUEUE: &str = "covenant-ledger";

/// `covenant.events.<partition>.<event_type>`.
pub fn event_subject(partition: u16, event_type: &str) -> String {
    format!("covenant.events.{partition}.{event_type}")
}

/// Every event subject of one partition: `covenant.events.<partition>.>`.
pub fn partition_events(partition: u16) -> String {
    format!("covenant.events.{partition}.>")
}

/// `covenant.cmd.<command>`, e.g. `covenant.cmd.expire_promise`.
pub fn command_subject(command: &str) -> String {
    format!("covenant.cmd.{command}")
}

/// `covenant.log.read.<partition>`: a range of a partition's records, for gap fills.
pub fn log_read_subject(partition: u16) -> String {
    format!("covenant.log.read.{partition}")
}

/// Every log-read subject.
pub const LOG_READ_WILDCARD: &str = "covenant.log.read.*";

/// Header of a failed `covenant.log.read` reply: the reason (the body is then empty).
pub const LOG_READ_ERROR_HEADER: &str = "Covenant-Error";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_documented_shapes() {
        assert_eq!(event_subject(3, "promise_broken"), "covenant.events.3.promise_broken");
        assert_eq!(partition_events(7), "covenant.events.7.>");
        assert_eq!(command_subject("expire_promise"), "covenant.cmd.expire_promise");
        assert_eq!(log_read_subject(0), "covenant.log.read.0");
    }
}
