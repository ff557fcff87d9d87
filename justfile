# Covenant: `just up` runs the system, `just test` runs every check. `just --list` shows all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Every build uses `--workspace` so that RocksDB's C++ is compiled once per profile.
cargo_flags := "--workspace --locked"

# Show the recipes.
default:
    @just --list

# Install missing prerequisites (libclang for RocksDB's bindings, a C++ compiler, nats-server 2.10+,
# a virtualenv for the Python examples).
setup:
    @scripts/setup.sh

# Run the system: ledger, standing and watchdog (and a managed nats-server unless NATS_URL is set).
up *args: setup
    cargo build {{cargo_flags}} --bins
    NATS_SERVER_BIN="$(scripts/nats-server-path.sh)" target/debug/covenant up {{args}}

# Record demo customer journeys against a running system and print their trust and loyalty standing.
demo *args:
    cargo build {{cargo_flags}} --bins
    target/debug/covenant demo {{args}}

# Format check, clippy with -D warnings, then the whole test suite.
test: setup
    cargo fmt --all -- --check
    cargo clippy {{cargo_flags}} --all-targets -- -D warnings
    export NATS_SERVER_BIN="$(scripts/nats-server-path.sh)" COVENANT_PYTHON="$PWD/target/python-examples/bin/python"; \
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
    NATS_SERVER_BIN="$(scripts/nats-server-path.sh)" target/release/covenant-bench all {{args}}
