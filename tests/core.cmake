# SPDX-License-Identifier: MIT
# Settings of the core scheduler tests (tests/test_core_*.c), included by
# tests/CMakeLists.txt after the test targets exist; also the one list of
# the tests, core or net, that use libev themselves.

# Tests that add libev watchers of their own to a scheduler's loop (or read
# its iteration count).
foreach(t core_cancel core_eperm net_cancel net_emfile net_epollfail
          net_waitfd)
  if(TARGET test_${t})
    target_link_libraries(test_${t} PRIVATE Libev::Libev)
  endif()
endforeach()

if(TARGET test_core_symbols)
  if(CMAKE_NM)
    set(_core_nm "${CMAKE_NM}")
  else()
    set(_core_nm nm)
  endif()
  target_compile_definitions(test_core_symbols PRIVATE
    BL_LIB_PATH="$<TARGET_FILE:bluelet>"
    BL_HEADER_PATH="${PROJECT_SOURCE_DIR}/include/bluelet.h"
    BL_NM="${_core_nm}")
  # The test reads the library file: build it first (it is linked anyway).
  add_dependencies(test_core_symbols bluelet)
endif()

if(TEST core_many)
  set_tests_properties(core_many PROPERTIES TIMEOUT 300)
endif()
if(TEST core_guardprobe)
  # 77: the kernel has no MADV_GUARD_INSTALL (before 6.13, qemu-user), or
  # ThreadSanitizer's shadow memory hides the mappings.
  set_tests_properties(core_guardprobe PROPERTIES SKIP_RETURN_CODE 77)
endif()
if(TEST core_tsan)
  # 77: not built with ThreadSanitizer (BLUELET_TSAN).
  set_tests_properties(core_tsan PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()
if(TEST core_oldguard)
  # 77: vm.max_map_count too large to exceed here, or ThreadSanitizer.
  set_tests_properties(core_oldguard PROPERTIES TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endif()
foreach(t core_overflow core_free core_regs core_multi core_starve
          core_sleep)
  if(TEST ${t})
    set_tests_properties(${t} PROPERTIES TIMEOUT 120)
  endif()
endforeach()
