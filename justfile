# Covenant: `just up` runs the system, `just test` runs every check. `just --list` shows all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Every build uses `--workspace` so that RocksDB's C++ is compiled once per profile.
cargo_flags := "--workspace --locked"

# Show the recipes.
default:
    @just --list

# Install missing prerequisites (libclang for RocksDB's bindings, a C++ compiler).
setup:
    @scripts/setup.sh

# Run the system (for now: a demonstration of the event log in ./data).
up *args: setup
    cargo build {{cargo_flags}} --bins
    target/debug/covenant up {{args}}

# Format check, clippy with -D warnings, then the whole test suite.
test: setup
    cargo fmt --all -- --check
    cargo clippy {{cargo_flags}} --all-targets -- -D warnings
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run {{cargo_flags}} --no-fail-fast; \
    else \
        cargo test {{cargo_flags}} --no-fail-fast; \
    fi

# Format the code.
fmt:
    cargo fmt --all

# The event-log benchmark (release build): a table of figures beside same-run raw baselines.
bench-log *args: setup
    cargo build {{cargo_flags}} --release --bins
    target/release/covenant-bench log {{args}}

# Every benchmark.
bench *args: setup
    cargo build {{cargo_flags}} --release --bins
    target/release/covenant-bench all {{args}}
