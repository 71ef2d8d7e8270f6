#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what the build, the tests and the benchmarks need on Debian 12.
# Runs as root (CI) or through sudo when available.
#   .ci/deps.sh            everything tests/check.sh and the benchmarks use
#   .ci/deps.sh --minimal  only what building the library and examples needs
set -euo pipefail
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
if [ "${1:-}" = --minimal ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake pkg-config libev-dev >/dev/null
  exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config clang gdb gdb-multiarch libev-dev \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libev-dev:arm64 \
  curl netcat-openbsd abigail-tools valgrind groff-base >/dev/null
# Optional benchmark peers; the build skips what is missing.
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ libboost-context-dev wrk nginx-light gnuplot-nox >/dev/null 2>&1 || true
