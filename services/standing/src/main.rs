//! `covenant-standing`: see [`covenant_standing::cli`].

/// mimalloc instead of glibc's malloc: the log writer allocates and frees several small buffers per
/// event, and glibc's allocator was ~12% of its thread (docs/PERFORMANCE.md, session 17).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    covenant_standing::cli::main()
}
