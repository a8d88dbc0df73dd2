# x1368_add_test(NAME name SOURCES a_test.cc ... [DEPS targets...] [LABELS unit|broker|slow ...])
#
# Builds one GoogleTest executable and registers each of its test cases with CTest through
# gtest_discover_tests, labelled so scripts/test.sh can select them (`ctest -L unit`).
# Every *_test.cc under tests/ must be registered through here: see
# x1368_check_all_tests_registered below, which fails the configure step otherwise.
function(x1368_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT T_NAME OR NOT T_SOURCES)
    message(FATAL_ERROR "x1368_add_test needs NAME and SOURCES")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_compile_options(${T_NAME} PRIVATE ${X1368_WARNINGS})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} x1368_testing GTest::gmock GTest::gtest_main)
  set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  gtest_discover_tests(${T_NAME}
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
  foreach(src IN LISTS T_SOURCES)
    get_filename_component(abs ${src} ABSOLUTE)
    set_property(GLOBAL APPEND PROPERTY X1368_REGISTERED_TEST_SOURCES ${abs})
  endforeach()
endfunction()

# Fails the configure step when a *_test.cc exists that no x1368_add_test registered, so a test
# file can never silently stop running.
function(x1368_check_all_tests_registered dir)
  file(GLOB_RECURSE all_tests ${dir}/*_test.cc)
  get_property(registered GLOBAL PROPERTY X1368_REGISTERED_TEST_SOURCES)
  foreach(t IN LISTS all_tests)
    if(NOT t IN_LIST registered)
      message(FATAL_ERROR "${t} is not registered with x1368_add_test")
    endif()
  endforeach()
endfunction()
