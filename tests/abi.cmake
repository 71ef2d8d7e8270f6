# SPDX-License-Identifier: MIT
# abi_baseline: the built library against the ABI of 1.0.0 recorded in
# tests/abi/ (see tests/abi/check.sh). Needs libabigail's abidiff (Debian:
# abigail-tools), a build with debug information, and x86-64, where the
# baseline was recorded.
find_program(BL_ABIDIFF abidiff)
string(TOUPPER "${CMAKE_BUILD_TYPE}" BL_ABI_BUILD_TYPE_UC)
if(NOT BL_ABIDIFF)
  message(STATUS "abi_baseline: no abidiff (abigail-tools); not tested")
elseif(CMAKE_CROSSCOMPILING OR
       NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  message(STATUS "abi_baseline: the baseline is x86-64's; not tested")
elseif(NOT " ${CMAKE_C_FLAGS} ${CMAKE_C_FLAGS_${BL_ABI_BUILD_TYPE_UC}} "
       MATCHES " -g")
  message(STATUS "abi_baseline: no debug information (-g); not tested")
else()
  add_test(NAME abi_baseline
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/abi/check.sh ${BL_ABIDIFF}
            ${CMAKE_CURRENT_SOURCE_DIR}/abi/libbluelet-1.0.0.x86_64.abi
            $<TARGET_FILE:bluelet>)
  set_tests_properties(abi_baseline PROPERTIES TIMEOUT 120)
endif()
