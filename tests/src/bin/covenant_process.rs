//! The `covenant` command as the black-box tests run it: exactly `covenant` (the same
//! `covenant_cli::main`), built inside this package so the tests can find it
//! (`CARGO_BIN_EXE_covenant-process`).

fn main() -> std::process::ExitCode {
    covenant_cli::main()
}
