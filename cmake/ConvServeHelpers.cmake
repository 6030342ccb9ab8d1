# convserve_test(NAME SOURCES... [LIBS lib...])
# Adds a GoogleTest executable and registers its tests with CTest.
function(convserve_test name)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)
endfunction()

# convserve_pytest(NAME DIRECTORY_OR_FILE [ENV VAR=VALUE...])
# Runs pytest (Debian's /usr/bin/python3) as one CTest test.
function(convserve_pytest name target)
  cmake_parse_arguments(ARG "" "" "ENV" ${ARGN})
  add_test(NAME ${name}
           COMMAND /usr/bin/python3 -m pytest -q -p no:cacheprovider ${target}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES
    ENVIRONMENT "CONVSERVE_BUILD_DIR=${PROJECT_BINARY_DIR};${ARG_ENV}"
    LABELS python
    TIMEOUT 1800)
endfunction()
