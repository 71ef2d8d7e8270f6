# SPDX-License-Identifier: MIT
# debuginfo: a build whose C flags ask for debug information (-g in
# CMAKE_C_FLAGS, as distributions pass it with CMAKE_BUILD_TYPE=None, or in
# the build type's flags) has it for the assembly context switch too, so that
# a -dbgsym package covers bl__switch. tests/check.sh builds the clang
# configuration that way.
# GNU readelf (binutils; it reads any target's ELF): llvm-readelf, which
# CMake may pick as CMAKE_READELF with clang, does not dump DWARF.
find_program(BL_READELF NAMES readelf)
string(TOUPPER "${CMAKE_BUILD_TYPE}" BL_BUILD_TYPE_UC)
if(BL_READELF AND
   " ${CMAKE_C_FLAGS} ${CMAKE_C_FLAGS_${BL_BUILD_TYPE_UC}} " MATCHES " -g")
  add_test(NAME debuginfo
    COMMAND sh -c "\"$0\" --debug-dump=info \"$1\" | grep -q 'switch\\.S'"
            ${BL_READELF} $<TARGET_FILE:bluelet>)
  set_tests_properties(debuginfo PROPERTIES TIMEOUT 60)
endif()
