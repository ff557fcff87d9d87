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

# librocksdb-sys runs bindgen, which needs libclang; its C++ needs a compiler.
if ! ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
  apt_install libclang-dev
fi
if ! command -v c++ >/dev/null 2>&1; then
  apt_install g++
fi
say "ok: build prerequisites present"
