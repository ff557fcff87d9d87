//! The ledger as the black-box tests run it: exactly `covenant-ledger` (the same `cli::main`),
//! built inside this package so the tests can find it (`CARGO_BIN_EXE_ledger-process`).

fn main() -> anyhow::Result<()> {
    covenant_ledger::cli::main()
}
