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

# Format check, clippy with -D warnings, the whole test suite, then a 60-second soak alone.
test: setup
    cargo fmt --all -- --check
    cargo clippy {{cargo_flags}} --all-targets -- -D warnings
    export NATS_SERVER_BIN="$(scripts/nats-server-path.sh)" COVENANT_PYTHON="$PWD/target/python-examples/bin/python"; \
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run {{cargo_flags}} --no-fail-fast -E 'not binary(soak)'; \
        COVENANT_SOAK_SECS=60 cargo nextest run {{cargo_flags}} -E 'binary(soak)' --no-capture; \
    else \
        COVENANT_SOAK_SECS=60 cargo test {{cargo_flags}} --no-fail-fast; \
    fi

# The soak: the services under steady load at half their measured capacity for `secs` seconds
# (default 600), checking rate, memory growth, p99 stability and a clean verify at the end.
# `just test` runs a 60-second one.
soak secs="600": setup
    export NATS_SERVER_BIN="$(scripts/nats-server-path.sh)"; \
    COVENANT_SOAK_SECS={{secs}} cargo nextest run {{cargo_flags}} -E 'binary(soak)' --no-capture

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
