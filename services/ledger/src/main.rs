//! `covenant-ledger`: runs the ledger service (see the library docs).

fn main() -> anyhow::Result<()> {
    covenant_ledger::cli::main()
}
