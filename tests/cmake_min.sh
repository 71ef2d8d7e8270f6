#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches the oldest CMake that CMakeLists.txt accepts, CMake 3.18.4 as
# Debian 11 ships it, and unpacks it (no installation, no root) under DIR.
# Prints the directory holding its cmake and ctest; the caller runs them
# with LD_LIBRARY_PATH=<DIR>/usr/lib/x86_64-linux-gnu (for libjsoncpp24,
# which Debian 12 lacks; the other libraries it needs, libarchive13,
# libcurl4, librhash0 and libuv1, come with Debian 12's own cmake).
# Exit status: 0 done; 1 the packages could not be downloaded; 2 a download
# did not match its checksum; 3 not an x86-64 host.
# Usage: tests/cmake_min.sh DIR
set -euo pipefail
dir=$1
if [ "$(uname -m)" != x86_64 ]; then
  echo "cmake_min.sh: x86-64 hosts only" >&2
  exit 3
fi

# name, pool path, sha256 (as Debian 11's signed package index gives them)
debs=(
  "cmake_3.18.4-2+deb11u1_amd64.deb c/cmake c865e000f8bd2c88c782ee3f4dae4a79e9543d20413cd030e460d4d3893f10f5"
  "cmake-data_3.18.4-2+deb11u1_all.deb c/cmake d33774274847f8db3bc252b3724cc452faeb3d0980b051e087fce5f46c099c22"
  "libjsoncpp24_1.9.4-4_amd64.deb libj/libjsoncpp 4e43501e9f43f9c8b28ae1480dec83b6f8ffb565acfdab2016e649caf6b9fe5a"
)
# Debian 11 moves from the mirrors to the archive at some point; try both.
mirrors=(http://deb.debian.org/debian http://archive.debian.org/debian)

# A stamp written once all of them are unpacked, naming what was: a run cut
# short, or a change of the list above, starts afresh.
stamp=$(printf '%s\n' "${debs[@]}")
if [ -x "$dir/usr/bin/cmake" ] && [ "$(cat "$dir/.complete" 2>/dev/null)" = "$stamp" ]; then
  echo "$dir/usr/bin"
  exit 0
fi
rm -rf "$dir/usr" "$dir/.complete"
mkdir -p "$dir/debs"
for d in "${debs[@]}"; do
  read -r name path sum <<<"$d"
  f=$dir/debs/$name
  if ! echo "$sum  $f" | sha256sum -c --status 2>/dev/null; then
    got=
    for m in "${mirrors[@]}"; do
      rm -f "$f"
      if curl -sfL --connect-timeout 15 --max-time 300 --retry 2 \
              -o "$f" "$m/pool/main/$path/$name"; then
        got=$m
        break
      fi
    done
    if [ -z "$got" ]; then
      echo "cmake_min.sh: cannot download $name" >&2
      exit 1
    fi
    if ! echo "$sum  $f" | sha256sum -c --status; then
      echo "cmake_min.sh: $name from $got does not match its SHA-256" >&2
      rm -f "$f"
      exit 2
    fi
  fi
  dpkg-deb -x "$f" "$dir"
done
echo "$stamp" >"$dir/.complete"
echo "$dir/usr/bin"
