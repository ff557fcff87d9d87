//! `covenant-standing`: see [`covenant_standing::cli`].

fn main() -> anyhow::Result<()> {
    covenant_standing::cli::main()
}
