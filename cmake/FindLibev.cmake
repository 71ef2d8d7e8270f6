# SPDX-License-Identifier: MIT
# FindLibev - find libev (Debian's libev-dev ships no pkg-config file).
#
# Sets Libev_FOUND, LIBEV_INCLUDE_DIRS, LIBEV_LIBRARIES and the imported
# target Libev::Libev. Hints: Libev_ROOT or LIBEV_ROOT.
find_path(LIBEV_INCLUDE_DIR NAMES ev.h
  HINTS ${Libev_ROOT} ${LIBEV_ROOT} ENV LIBEV_ROOT PATH_SUFFIXES include libev)
find_library(LIBEV_LIBRARY NAMES ev
  HINTS ${Libev_ROOT} ${LIBEV_ROOT} ENV LIBEV_ROOT PATH_SUFFIXES lib)

if(LIBEV_INCLUDE_DIR AND EXISTS "${LIBEV_INCLUDE_DIR}/ev.h")
  file(STRINGS "${LIBEV_INCLUDE_DIR}/ev.h" _ev_major REGEX "^#define EV_VERSION_MAJOR")
  file(STRINGS "${LIBEV_INCLUDE_DIR}/ev.h" _ev_minor REGEX "^#define EV_VERSION_MINOR")
  string(REGEX REPLACE ".* ([0-9]+).*" "\\1" _ev_major "${_ev_major}")
  string(REGEX REPLACE ".* ([0-9]+).*" "\\1" _ev_minor "${_ev_minor}")
  if(_ev_major AND _ev_minor)
    set(Libev_VERSION "${_ev_major}.${_ev_minor}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Libev
  REQUIRED_VARS LIBEV_LIBRARY LIBEV_INCLUDE_DIR
  VERSION_VAR Libev_VERSION
  REASON_FAILURE_MESSAGE "install libev (Debian/Ubuntu: apt-get install libev-dev)")

if(Libev_FOUND)
  set(LIBEV_INCLUDE_DIRS ${LIBEV_INCLUDE_DIR})
  set(LIBEV_LIBRARIES ${LIBEV_LIBRARY})
  if(NOT TARGET Libev::Libev)
    add_library(Libev::Libev UNKNOWN IMPORTED)
    set_target_properties(Libev::Libev PROPERTIES
      IMPORTED_LOCATION "${LIBEV_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${LIBEV_INCLUDE_DIR}")
  endif()
endif()
mark_as_advanced(LIBEV_INCLUDE_DIR LIBEV_LIBRARY)
