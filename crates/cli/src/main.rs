//! `covenant`: see the library (`covenant_cli`) for the commands.

fn main() -> std::process::ExitCode {
    covenant_cli::main()
}
