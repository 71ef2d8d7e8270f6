#!/bin/sh
# SPDX-License-Identifier: MIT
# Usage: check_bt.sh GDB TARGET [EMULATOR [ARGS...]]
# gdb's backtrace from inside a green thread must reach the thread's entry
# (bl__ctx_entry, whose CFI marks the return address undefined) and stop
# there without "corrupt stack?" or "Backtrace stopped" complaints.
# With an emulator (qemu-user, for cross builds) the target runs under it
# with its gdb stub on a free port, and GDB (gdb-multiarch) attaches there.
gdb=$1 target=$2
shift 2
if [ $# -eq 0 ]; then
    out=$("$gdb" -nx -batch -ex "break bl_gdb_marker" -ex run -ex bt \
          "$target" 2>&1)
else
    out=
    for try in 1 2 3 4 5; do
        port=$(( 20000 + ($$ * 7 + try * 911) % 30000 ))
        "$@" -g "$port" "$target" &
        pid=$!
        sleep 1
        if kill -0 "$pid" 2>/dev/null; then
            out=$("$gdb" -nx -batch -ex "set sysroot /" \
                  -ex "target remote :$port" -ex "break bl_gdb_marker" \
                  -ex continue -ex bt "$target" 2>&1)
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            break
        fi
        wait "$pid" 2>/dev/null   # the port was taken: another one
    done
fi
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
