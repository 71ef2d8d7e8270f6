#!/bin/sh
# SPDX-License-Identifier: MIT
# abi_baseline: the library keeps the ABI of every earlier release. Compares
# the built libbluelet.so with the ABI of 1.0.0 recorded by libabigail's
# abidw, public types only (the handles are opaque, so the layouts of the
# library's own structs are no part of the ABI):
#   tests/abi/check.sh ABIDIFF BASELINE LIBRARY
# Fails on any change but added functions: a function removed or given
# another symbol version, a parameter or return type changed, a field of
# bl_spawn_opts changed. Needs the library's debug information (-g).
#
# The baseline of 1.0.0 was made from commit 019da81 (the release) built
# with CMAKE_BUILD_TYPE=RelWithDebInfo and -ffile-prefix-map=$PWD/= (no
# build path in it), on x86-64. At each release, record the new ABI the
# same way, from the source directory:
#   abidw --exported-interfaces-only --headers-dir include \
#         --drop-private-types --no-show-locs --no-corpus-path \
#         --out-file tests/abi/libbluelet-X.Y.Z.x86_64.abi \
#         build/libbluelet.so.1.Y.Z
# (--exported-interfaces-only: without it, abidw 2.2 ties no symbol to an
# exported function that another source file declares, and misses changes
# to its type.)
set -u
abidiff=$1 baseline=$2 lib=$3
# The baseline's private types are declarations only; the library's are
# defined, which abidiff counts as a harmless change and leaves out. No
# --headers-dir2: with it, abidiff 2.2 also left out a change to a field of
# bl_spawn_opts.
"$abidiff" --no-added-syms --fail-no-debug-info --exported-interfaces-only \
    "$baseline" "$lib"
rc=$?
# abidiff's status is a bit mask: 1 error, 2 usage, 4 an ABI change, 8 an
# incompatible one. Added functions alone leave it at 0 with
# --no-added-syms.
if [ "$rc" -ne 0 ]; then
    echo "abi_baseline: abidiff status $rc: the ABI of $(basename "$baseline") changed" >&2
    exit 1
fi
echo "abi_baseline: $(basename "$lib") keeps the ABI of $(basename "$baseline")"
