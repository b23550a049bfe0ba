# Sanitizer and fuzzing builds (issue 9). Driven by two cache variables, normally set through the
# presets in CMakePresets.json:
#   FOXSERVE_SANITIZE  "address,undefined" (ASan + UBSan, every UBSan finding fatal) or "thread"
#                      (TSan); empty for none.
#   FOXSERVE_FUZZ      build the libFuzzer targets of tests/fuzz (clang only). Everything is then
#                      compiled with -fsanitize=fuzzer-no-link so the fuzzers see coverage of our
#                      code (except tests/fuzz/coverage_ignorelist.txt); the unit tests in the same
#                      build still run normally.
# Debian's gRPC, protobuf and abseil are not instrumented: ASan/UBSan/LSan work regardless, TSan
# needs tests/sanitizers/tsan.supp (see scripts/sanitize.sh for the runtime options).
set(FOXSERVE_SANITIZE "" CACHE STRING
    "Sanitizers: address,undefined | thread | empty for none (see CMakePresets.json)")
option(FOXSERVE_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)

if(FOXSERVE_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "FOXSERVE_FUZZ=ON needs clang (libFuzzer); this is ${CMAKE_CXX_COMPILER_ID}. "
                      "Use the asan preset or -DCMAKE_CXX_COMPILER=clang++-14.")
endif()

set(_foxserve_sanitizer_flags "")
if(FOXSERVE_SANITIZE STREQUAL "address,undefined" OR FOXSERVE_SANITIZE STREQUAL "address")
  list(APPEND _foxserve_sanitizer_flags -fsanitize=${FOXSERVE_SANITIZE} -fno-omit-frame-pointer)
  if(FOXSERVE_SANITIZE MATCHES "undefined")
    # A UBSan finding fails the test instead of scrolling past.
    list(APPEND _foxserve_sanitizer_flags -fno-sanitize-recover=undefined)
  endif()
elseif(FOXSERVE_SANITIZE STREQUAL "thread")
  if(FOXSERVE_FUZZ)
    message(FATAL_ERROR "FOXSERVE_FUZZ needs FOXSERVE_SANITIZE=address,undefined (or none)")
  endif()
  list(APPEND _foxserve_sanitizer_flags -fsanitize=thread)
elseif(NOT FOXSERVE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "FOXSERVE_SANITIZE must be address,undefined, address, thread or empty; "
                      "got \"${FOXSERVE_SANITIZE}\"")
endif()

if(_foxserve_sanitizer_flags)
  # clang defines no __SANITIZE_ADDRESS__ (gcc does): tests that bound wall time check this.
  add_compile_definitions(FOXSERVE_SANITIZER_BUILD=1)
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${_foxserve_sanitizer_flags}>")
  add_link_options(${_foxserve_sanitizer_flags})
  message(STATUS "foxserve: sanitizers ${FOXSERVE_SANITIZE}")
endif()
if(FOXSERVE_FUZZ)
  # Coverage for libFuzzer in every library; only the fuzzers themselves link libFuzzer's main.
  # tests/fuzz/coverage_ignorelist.txt leaves out the numeric hot paths and the unit tests' own
  # code, which no fuzz target reaches and whose tests coverage counters slowed 4 to 5 times.
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=fuzzer-no-link;-fsanitize-coverage-ignorelist=${PROJECT_SOURCE_DIR}/tests/fuzz/coverage_ignorelist.txt>")
  message(STATUS "foxserve: libFuzzer targets on")
endif()

# ASan and TSan refuse dlopen(RTLD_DEEPBIND) (google/sanitizers#611), which is how the
# SentencePiece module must be loaded (models/sentencepiece_module_api.h). Sanitizer builds link
# tests/sanitizers/deepbind_dlopen.cc into every executable: it passes such calls straight to
# glibc. Call once every target exists (end of the top-level CMakeLists.txt).
function(foxserve_add_sanitizer_runtime_shims)
  if(NOT FOXSERVE_SANITIZE MATCHES "address|thread")
    return()
  endif()
  set(_dirs ${PROJECT_SOURCE_DIR})
  set(_targets "")
  while(_dirs)
    list(POP_FRONT _dirs _dir)
    get_property(_sub DIRECTORY ${_dir} PROPERTY SUBDIRECTORIES)
    list(APPEND _dirs ${_sub})
    get_property(_t DIRECTORY ${_dir} PROPERTY BUILDSYSTEM_TARGETS)
    list(APPEND _targets ${_t})
  endwhile()
  foreach(_target IN LISTS _targets)
    get_target_property(_type ${_target} TYPE)
    get_target_property(_imported ${_target} IMPORTED)
    if(_type STREQUAL "EXECUTABLE" AND NOT _imported)
      target_sources(${_target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/sanitizers/deepbind_dlopen.cc)
      target_link_libraries(${_target} PRIVATE ${CMAKE_DL_LIBS})
    endif()
  endforeach()
endfunction()
