#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches the oldest CMake that CMakeLists.txt accepts, CMake 3.18.4 as
# Debian 11 ships it, and unpacks it (no installation, no root) under DIR.
# Prints the directory holding its cmake and ctest; the caller runs them
# with LD_LIBRARY_PATH=<DIR>/usr/lib/x86_64-linux-gnu (Debian 12 has no
# libjsoncpp24). x86-64 hosts only. Exits non-zero when the packages cannot
# be fetched or do not match the checksums below.
# Usage: tests/cmake_min.sh DIR
set -euo pipefail
dir=$1
[ "$(uname -m)" = x86_64 ] || { echo "cmake_min.sh: x86-64 only" >&2; exit 1; }

# name, pool path, sha256 (as Debian 11's signed package index gives them)
debs=(
  "cmake_3.18.4-2+deb11u1_amd64.deb c/cmake c865e000f8bd2c88c782ee3f4dae4a79e9543d20413cd030e460d4d3893f10f5"
  "cmake-data_3.18.4-2+deb11u1_all.deb c/cmake d33774274847f8db3bc252b3724cc452faeb3d0980b051e087fce5f46c099c22"
  "libjsoncpp24_1.9.4-4_amd64.deb libj/libjsoncpp 4e43501e9f43f9c8b28ae1480dec83b6f8ffb565acfdab2016e649caf6b9fe5a"
)
# Debian 11 moves from the mirrors to the archive at some point; try both.
mirrors=(http://deb.debian.org/debian http://archive.debian.org/debian)

if [ -x "$dir/usr/bin/cmake" ]; then
  echo "$dir/usr/bin"
  exit 0
fi
mkdir -p "$dir/debs"
for d in "${debs[@]}"; do
  read -r name path sum <<<"$d"
  f=$dir/debs/$name
  if ! echo "$sum  $f" | sha256sum -c --status 2>/dev/null; then
    ok=
    for m in "${mirrors[@]}"; do
      if curl -sfL --max-time 120 -o "$f" "$m/pool/main/$path/$name" &&
         echo "$sum  $f" | sha256sum -c --status; then
        ok=1
        break
      fi
    done
    [ -n "$ok" ] || { echo "cmake_min.sh: cannot fetch $name" >&2; exit 1; }
  fi
  dpkg-deb -x "$f" "$dir"
done
echo "$dir/usr/bin"
