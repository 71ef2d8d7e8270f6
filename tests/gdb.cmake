# SPDX-License-Identifier: MIT
# gdb backtrace through a green thread (native builds, sanitized ones too;
# gdb is installed by .ci/deps.sh).
find_program(BL_GDB gdb)
if(BL_GDB AND NOT CMAKE_CROSSCOMPILING)
  add_executable(gdb_bt_target gdb/bt_target.c)
  target_link_libraries(gdb_bt_target PRIVATE bluelet)
  target_compile_options(gdb_bt_target PRIVATE -O1 -g -fno-omit-frame-pointer)
  add_test(NAME gdb_backtrace
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/gdb/check_bt.sh ${BL_GDB}
            $<TARGET_FILE:gdb_bt_target>)
  set_tests_properties(gdb_backtrace PROPERTIES TIMEOUT 120)
elseif(NOT CMAKE_CROSSCOMPILING)
  message(WARNING "gdb not found: the gdb_backtrace test is not built")
endif()
