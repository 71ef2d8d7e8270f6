# SPDX-License-Identifier: MIT
# gdb backtrace through a green thread: native builds (sanitized ones too;
# gdb is installed by .ci/deps.sh) and, for cross builds, under the
# emulator's gdb stub with gdb-multiarch (also installed by .ci/deps.sh).
if(CMAKE_CROSSCOMPILING)
  find_program(BL_GDB_MULTIARCH gdb-multiarch)
  set(BL_GDB ${BL_GDB_MULTIARCH})
else()
  find_program(BL_GDB gdb)
endif()
if(BL_GDB AND (NOT CMAKE_CROSSCOMPILING OR CMAKE_CROSSCOMPILING_EMULATOR))
  add_executable(gdb_bt_target gdb/bt_target.c)
  target_link_libraries(gdb_bt_target PRIVATE bluelet)
  target_compile_options(gdb_bt_target PRIVATE -O1 -g -fno-omit-frame-pointer)
  add_test(NAME gdb_backtrace
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/gdb/check_bt.sh ${BL_GDB}
            $<TARGET_FILE:gdb_bt_target> ${CMAKE_CROSSCOMPILING_EMULATOR})
  set_tests_properties(gdb_backtrace PROPERTIES TIMEOUT 120)
else()
  message(WARNING "gdb (gdb-multiarch when cross-compiling) not found: the "
                  "gdb_backtrace test is not built")
endif()
