//! The watchdog as the black-box tests run it: exactly `covenant-watchdog` (the same
//! `cli::main`), built inside this package so the tests can find it
//! (`CARGO_BIN_EXE_watchdog-process`).

fn main() -> anyhow::Result<()> {
    covenant_watchdog::cli::main()
}
