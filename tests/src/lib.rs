//! Black-box tests of Covenant: real processes, real RocksDB, killed and restarted.
//!
//! The library holds what the child binaries (`src/bin/`) and the tests (`tests/`) share:
//! - [`crash`]: the command-id scheme and stdout protocol of `crash-writer` and `log_crash`;
//! - [`processes`]: service child processes (ledger, standing, watchdog) on free ports;
//! - [`requests`]: gRPC requests as a calling service builds them;
//! - [`standing`]: waiting until standing has applied the log.

pub mod crash;
pub mod processes;
pub mod requests;
pub mod standing;
