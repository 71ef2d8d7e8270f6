# SPDX-License-Identifier: MIT
# man_pages: the man pages of docs/man/ against include/bluelet.h and
# src/libbluelet.map, and the alias pages the build made (see
# tests/man/check.sh for what fails it). Needs groff (Debian: groff-base).
find_program(BL_GROFF groff)
if(NOT BL_GROFF)
  message(STATUS "man_pages: groff not found (Debian: groff-base); the man "
                 "pages are not tested")
else()
  add_test(NAME man_pages
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/man/check.sh ${BL_GROFF}
            ${PROJECT_SOURCE_DIR}/include/bluelet.h
            ${PROJECT_SOURCE_DIR}/src/libbluelet.map
            ${PROJECT_SOURCE_DIR}/docs/man ${BLUELET_MAN_DIR})
  set_tests_properties(man_pages PROPERTIES TIMEOUT 120)
endif()
