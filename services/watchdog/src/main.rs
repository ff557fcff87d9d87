//! `covenant-watchdog`: runs the watchdog service (see the library docs).

fn main() -> anyhow::Result<()> {
    covenant_watchdog::cli::main()
}
