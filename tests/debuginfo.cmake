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

# reproducible_paths: a build whose C flags map the source directory away
# (-ffile-prefix-map=SRC=., as debhelper passes for reproducible builds) has
# that path nowhere in the library, switch.S's debug information included;
# otherwise the library, and its build-id, would change with the directory it
# was built in. tests/check.sh builds the gcc configuration that way. Not
# with clang: the integrated assembler of clang 14 (Debian 12's) ignores the
# prefix maps (LLVM issue 56609).
if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  foreach(bl_flag ${BLUELET_C_FLAGS_LIST})
    if(bl_flag MATCHES "^-f(file|debug)-prefix-map=([^=]+)=")
      string(FIND "${PROJECT_SOURCE_DIR}/" "${CMAKE_MATCH_2}/" bl_at)
      if(bl_at EQUAL 0)
        add_test(NAME reproducible_paths
          COMMAND sh -c "! grep -aFq \"$0\" \"$1\""
                  ${PROJECT_SOURCE_DIR} $<TARGET_FILE:bluelet>)
        set_tests_properties(reproducible_paths PROPERTIES TIMEOUT 60)
        break()
      endif()
    endif()
  endforeach()
endif()
