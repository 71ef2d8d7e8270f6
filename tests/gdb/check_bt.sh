#!/bin/sh
# SPDX-License-Identifier: MIT
# Usage: check_bt.sh GDB TARGET
# gdb's backtrace from inside a green thread must reach the thread's entry
# (bl__ctx_entry, whose CFI marks the return address undefined) and stop
# there without "corrupt stack?" or "Backtrace stopped" complaints.
gdb=$1 target=$2
out=$("$gdb" -nx -batch -ex "break bl_gdb_marker" -ex run -ex bt "$target" 2>&1)
echo "$out"
last=$(echo "$out" | grep '^#' | tail -n 1)
case $out in
*"corrupt stack"*|*"Backtrace stopped"*) echo "FAIL: unclean backtrace"; exit 1 ;;
esac
echo "$out" | grep -q '^#[0-9].* level1 ' || { echo "FAIL: level1 frame missing"; exit 1; }
# gdb shows the symbol as "bl.ctx_entry" when clang assembled switch.S (it
# decodes "__" as "." for that unit's language); both name the entry.
case $last in
*bl__ctx_entry*|*bl.ctx_entry*) echo "ok: backtrace ends at bl__ctx_entry"; exit 0 ;;
esac
echo "FAIL: last frame is not bl__ctx_entry: $last"
exit 1
