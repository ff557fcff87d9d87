//! Standing as the black-box tests run it: exactly `covenant-standing` (the same `cli::main`),
//! built inside this package so the tests can find it (`CARGO_BIN_EXE_standing-process`).

fn main() -> anyhow::Result<()> {
    covenant_standing::cli::main()
}
