#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds libbluelet in every configuration CI checks and runs the whole test
# suite in each:
#   gcc      gcc, -Wall -Wextra -Werror, RelWithDebInfo, -ffile-prefix-map
#   clang    clang, -Wall -Wextra -Werror; tests on libev's poll backend
#            (LIBEV_FLAGS=2) instead of epoll
#   asan     gcc, AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan     gcc, ThreadSanitizer (green threads are TSan fibers); any
#            report fails its test (TSan's exit status 66)
#   valgrind gcc, the library built with BLUELET_VALGRIND and every test
#            program under Valgrind's memcheck (BLUELET_TEST_VALGRIND; see
#            tests/CMakeLists.txt for the few it cannot run)
#   aarch64  cross build with aarch64-linux-gnu-gcc, every test under qemu-aarch64
#   cmake318 gcc, configured, built and tested with CMake 3.18 (Debian 11's),
#            the oldest CMakeLists.txt accepts, fetched by tests/cmake_min.sh;
#            skipped (and said so) when it cannot be downloaded, unless
#            BL_REQUIRE_CMAKE318 is set (CI sets it)
# Usage: tests/check.sh [config...]   (default: all seven)
# Under qemu, -L / runs the binaries with the arm64 multiarch ld.so and libc
# (libc6:arm64, pulled in by libev-dev:arm64): ld.so from the cross prefix
# with that newer libc.so.6 spins in pthread_create.
# Build trees go to build-check/<config>. Dependencies: .ci/deps.sh.
# The last line is "N passed, N failed" over all configurations; the exit
# status is non-zero if any build or test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(gcc clang asan tsan valgrind aarch64 cmake318)

passed=0
failed=0
failures=()
skipped=()

# run_config NAME CMAKE-ARGS...; CMAKE and CTEST name the tools (default:
# those on PATH).
run_config() {
  local name=$1; shift
  local dir=build-check/$name
  local cmake=${CMAKE:-cmake} ctest=${CTEST:-ctest}
  local junit=()
  # ctest writes JUnit from 3.21 on.
  "$ctest" --help | grep -q -- --output-junit && junit=(--output-junit junit.xml)
  echo "=== $name: configure and build ($("$cmake" --version | head -1))"
  rm -rf "$dir"
  if ! "$cmake" -S . -B "$dir" -DBLUELET_WERROR=ON "$@" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"
    failed=$((failed + 1)); failures+=("$name: configure")
    return
  fi
  if ! "$cmake" --build "$dir" -j"$jobs" >"$dir.build.log" 2>&1; then
    grep -E 'error|warning' "$dir.build.log" | head -40
    tail -20 "$dir.build.log"
    failed=$((failed + 1)); failures+=("$name: build")
    return
  fi
  echo "=== $name: test"
  local start=$SECONDS
  (cd "$dir" && "$ctest" -j"$jobs" --output-on-failure "${junit[@]}") \
    >"$dir.test.log" 2>&1
  local p f
  p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$dir.test.log")
  f=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Timeout|Exception|Not Run)' "$dir.test.log")
  grep -E '(Failed|Timeout|Exception|Not Run)' "$dir.test.log" | grep -E 'Test +#' | sed "s/^/  $name: /"
  if [ "$f" -gt 0 ]; then
    # Show the output of what failed.
    sed -n '/Failed\|Timeout\|Exception/,/^ *[0-9]*\/[0-9]* Test/p' "$dir.test.log" | head -150
    failures+=("$name: $f test(s)")
  fi
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    tail -20 "$dir.test.log"
    f=1; failures+=("$name: no test ran")
  fi
  echo "=== $name: $p passed, $f failed ($((SECONDS - start)) s)"
  passed=$((passed + p)); failed=$((failed + f))
}

mkdir -p build-check
for c in "${configs[@]}"; do
  case $c in
    gcc)
      # The source directory mapped away, as for reproducible builds.
      CFLAGS="-ffile-prefix-map=$PWD=." run_config gcc \
        -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo ;;
    clang)
      # As a distribution builds: build type None, flags from CFLAGS. The
      # other configurations test on epoll, this one on poll.
      LIBEV_FLAGS=2 CFLAGS="-g -O2" run_config clang \
        -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=None ;;
    asan)
      run_config asan -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug \
        -DBLUELET_SANITIZE=ON ;;
    tsan)
      run_config tsan -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug \
        -DBLUELET_TSAN=ON ;;
    valgrind)
      run_config valgrind -DCMAKE_C_COMPILER=gcc \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBLUELET_VALGRIND=ON \
        -DBLUELET_TEST_VALGRIND=ON ;;
    aarch64)
      run_config aarch64 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
        -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
        -DCMAKE_LIBRARY_ARCHITECTURE=aarch64-linux-gnu \
        "-DCMAKE_CROSSCOMPILING_EMULATOR=qemu-aarch64;-L;/" ;;
    cmake318)
      old=$PWD/build-check/cmake-3.18
      bin=$(bash tests/cmake_min.sh "$old"); rc=$?
      if [ $rc -eq 0 ]; then
        LD_LIBRARY_PATH=$old/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
          CMAKE=$bin/cmake CTEST=$bin/ctest \
          run_config cmake318 -DCMAKE_C_COMPILER=gcc \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo
      elif [ $rc -eq 1 ] && [ -z "${BL_REQUIRE_CMAKE318:-}" ]; then
        echo "=== cmake318: SKIPPED, CMake 3.18 could not be downloaded"
        skipped+=(cmake318)
      else
        failed=$((failed + 1)); failures+=("cmake318: tests/cmake_min.sh (exit $rc)")
      fi ;;
    *)
      echo "unknown configuration: $c (gcc, clang, asan, tsan, valgrind, aarch64, cmake318)" >&2
      exit 2 ;;
  esac
done

for f in "${failures[@]}"; do echo "FAILED: $f"; done
for s in "${skipped[@]}"; do echo "SKIPPED: $s"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
