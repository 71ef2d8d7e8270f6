#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs every benchmark program of a build and prints their figures.
#   tests/bench/run.sh [build-dir]     (default: build)
# Build first: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
# Each program takes medians of 5 repetitions itself; see docs/performance.md.
set -eu
b=${1:-build}/tests/bench
"$b/bench_switch"
"$b/bench_mem"
"$b/bench_mem" --million
ulimit -n 8192 2>/dev/null || true
"$b/bench_echo" -o "${TMPDIR:-/tmp}/echo.dat"
if command -v gnuplot >/dev/null; then
  gnuplot -e "datafile='${TMPDIR:-/tmp}/echo.dat'; outfile='${TMPDIR:-/tmp}/echo.png'" \
    "$(dirname "$0")/plot_echo.gp" && echo "plot: ${TMPDIR:-/tmp}/echo.png"
fi
