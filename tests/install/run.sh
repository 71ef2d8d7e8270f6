#!/bin/sh
# SPDX-License-Identifier: MIT
# Usage: run.sh CMAKE BUILD_DIR CC WORK_DIR SOURCE_DIR [extra C flags...]
# Installs the library from BUILD_DIR into a temporary prefix (and, staged,
# with DESTDIR), then builds and runs tests/install/consumer.c three ways:
# pkg-config (shared), pkg-config --static (libbluelet.a) and a CMake project
# using find_package(bluelet); also checks the install components and a
# package without libbluelet.a, and that the man pages and their alias pages
# are installed and found by man. BL_STATIC_BUILT=0: the build has no
# libbluelet.a (BLUELET_BUILD_STATIC=OFF). Any failing step fails the test.
set -eu
static=${BL_STATIC_BUILT:-1}
cmake=$1 build=$2 cc=$3 work=$4 src=$5
shift 5
extra="$*"
fail() { echo "FAIL: $*"; exit 1; }
step() { echo "--- $*"; }

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

step "cmake --install --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" || {
    cat "$work/install.log"; fail "install"; }
pc=$(find "$prefix" -name bluelet.pc)
[ -n "$pc" ] || fail "no bluelet.pc installed"
libdir=$(dirname "$(dirname "$pc")")
archive=
[ "$static" = 1 ] && archive="$libdir/libbluelet.a"
for f in "$prefix/include/bluelet.h" "$libdir/libbluelet.so.1" \
         "$libdir/libbluelet.so" $archive \
         "$libdir/cmake/bluelet/blueletConfig.cmake" \
         "$libdir/cmake/bluelet/blueletConfigVersion.cmake" \
         "$libdir/cmake/bluelet/FindLibev.cmake"; do
    [ -e "$f" ] || fail "not installed: $f"
done
[ -L "$libdir/libbluelet.so" ] || fail "libbluelet.so is not a symlink"
grep -qx "prefix=$prefix" "$pc" || fail "bluelet.pc does not name the prefix installed to: $(head -1 "$pc")"

step "man pages"
page=$(find "$prefix" -path '*/man3/bl_sched.3')
[ -n "$page" ] || fail "no man page bl_sched.3 installed"
mandir=$(dirname "$(dirname "$page")")
[ -f "$mandir/man7/bluelet.7" ] || fail "not installed: $mandir/man7/bluelet.7"
[ "$(cat "$mandir/man3/bl_sched_new.3")" = ".so man3/bl_sched.3" ] ||
    fail "alias page bl_sched_new.3 does not hold '.so man3/bl_sched.3'"
for f in "$mandir"/man[1-9]/*; do
    so=$(sed -n '1s/^\.so //p' "$f")
    [ -z "$so" ] || [ -f "$mandir/$so" ] ||
        fail "alias page $f refers to $so, which is not installed"
done
# man itself, where it works (man-db follows the .so of an alias page).
if command -v man >/dev/null 2>&1 &&
   man -M "$mandir" -w bl_sched >/dev/null 2>&1; then
    for n in bl_sched_new:bl_sched.3 bl_send:bl_recv.3 libbluelet:bluelet.7; do
        name=${n%%:*} target=${n#*:}
        w=$(man -M "$mandir" -w "$name" 2>&1) || fail "man -w $name: $w"
        case $w in
            "$mandir"/man[1-9]/"$target"|"$mandir"/man[1-9]/"$name".[1-9]) ;;
            *) fail "man -w $name finds $w, not $target or its alias" ;;
        esac
        MANWIDTH=80 man -M "$mandir" "$name" >"$work/man.txt" 2>&1 ||
            { cat "$work/man.txt"; fail "man $name"; }
        # The heading of the page shown: "bl_recv(3)  libbluelet Manual ..."
        grep -q "^${target%.*}(${target##*.})[[:space:]].*libbluelet Manual" "$work/man.txt" ||
            { head -3 "$work/man.txt"; fail "man $name does not show $target"; }
    done
else
    echo "(man is not usable here: pages checked as files only)"
fi

if [ "$static" != 1 ] && [ -e "$libdir/libbluelet.a" ]; then
    fail "libbluelet.a installed although BLUELET_BUILD_STATIC is off"
fi

step "components: Runtime has the shared library only"
"$cmake" --install "$build" --prefix "$work/rt" --component Runtime >"$work/rt.log" || {
    cat "$work/rt.log"; fail "install --component Runtime"; }
rt=$(cd "$work/rt" && find . ! -type d | sort | tr '\n' ' ')
case "$rt" in
    *bluelet.h*|*libbluelet.a*|*.pc*|*cmake*|*"libbluelet.so "*|*/man[1-9]/*)
        fail "Runtime holds development files: $rt" ;;
    *libbluelet.so.1*) ;;
    *) fail "Runtime lacks libbluelet.so.1: $rt" ;;
esac

step "DESTDIR staged install"
DESTDIR=$work/stage "$cmake" --install "$build" --prefix /usr/local >"$work/stage.log" || {
    cat "$work/stage.log"; fail "staged install"; }
[ -e "$work/stage/usr/local/include/bluelet.h" ] || fail "DESTDIR not honoured"
[ -e "$work/stage/usr/local/${mandir#"$prefix"/}/man3/bl_sched_new.3" ] ||
    fail "DESTDIR not honoured for the man pages"
spc=$(find "$work/stage" -name bluelet.pc)
grep -qx "prefix=/usr/local" "$spc" || fail "staged bluelet.pc: $(head -1 "$spc")"
if grep -rq "$work/stage" "$work/stage" 2>/dev/null; then
    fail "the staging directory leaks into installed files: $(grep -rl "$work/stage" "$work/stage")"
fi

export PKG_CONFIG_PATH="$libdir/pkgconfig"
step "pkg-config: $(pkg-config --cflags --libs bluelet)"
[ "$(pkg-config --modversion bluelet)" = "$(sed -n 's/^#define BL_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/bluelet.h")" ] ||
    fail "pkg-config --modversion disagrees with bluelet.h"
# shellcheck disable=SC2046,SC2086
"$cc" $extra -o "$work/consumer_pc" "$src/consumer.c" $(pkg-config --cflags --libs bluelet) ||
    fail "building with pkg-config"
LD_LIBRARY_PATH=$libdir "$work/consumer_pc" || fail "running the pkg-config consumer"
# It must have loaded the installed library, not another one.
LD_LIBRARY_PATH=$libdir ldd "$work/consumer_pc" | grep -q "$libdir/libbluelet.so.1" ||
    fail "consumer_pc did not load $libdir/libbluelet.so.1"

if [ "$static" = 1 ]; then
step "pkg-config --static"
# shellcheck disable=SC2046,SC2086
"$cc" $extra -DBL_STATIC -o "$work/consumer_static" "$src/consumer.c" \
    $(pkg-config --cflags bluelet) "$libdir/libbluelet.a" \
    $(pkg-config --static --libs-only-l --libs-only-other bluelet | sed 's/-lbluelet//') ||
    fail "building statically"
if ldd "$work/consumer_static" | grep -q libbluelet; then
    fail "the static consumer links libbluelet.so"
fi
"$work/consumer_static" || fail "running the static consumer"
fi

step "find_package(bluelet)"
"$cmake" -S "$src/cmake_consumer" -B "$work/cmake_build" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$extra" -DCONSUMER_SOURCE="$src/consumer.c" \
    -DCONSUMER_STATIC="$static" \
    >"$work/cmake_consumer.log" 2>&1 || { cat "$work/cmake_consumer.log"; fail "find_package"; }
"$cmake" --build "$work/cmake_build" >"$work/cmake_consumer_build.log" 2>&1 || {
    cat "$work/cmake_consumer_build.log"; fail "building the CMake consumer"; }
"$work/cmake_build/consumer_cmake" || fail "running the CMake consumer"
if [ "$static" = 1 ]; then
    "$work/cmake_build/consumer_cmake_static" || fail "running the static CMake consumer"
fi

# Without libbluelet.a nothing needs libev's development files (a
# distribution's -devel package without the -static one).
step "find_package(bluelet) where the package left out libbluelet.a, without libev"
cp -a "$prefix" "$work/noa"
nlib=$work/noa/${libdir#"$prefix"/}
rm -f "$nlib/libbluelet.a" "$nlib"/cmake/bluelet/blueletStaticTargets*.cmake
"$cmake" -S "$src/cmake_consumer" -B "$work/cmake_noa" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$work/noa" \
    -DCMAKE_C_FLAGS="$extra" -DCONSUMER_SOURCE="$src/consumer.c" \
    -DCONSUMER_STATIC=OFF -DCMAKE_DISABLE_FIND_PACKAGE_Libev=ON \
    >"$work/cmake_noa.log" 2>&1 || {
    cat "$work/cmake_noa.log"; fail "find_package without libbluelet.a"; }
"$cmake" --build "$work/cmake_noa" >"$work/cmake_noa_build.log" 2>&1 || {
    cat "$work/cmake_noa_build.log"; fail "building against a package without libbluelet.a"; }

echo "ok: installed package works with pkg-config, pkg-config --static and find_package"
