# convserve_test(NAME SOURCES... [LIBS lib...] [LABELS label])
# Adds a GoogleTest executable and registers its tests with CTest, each test
# carrying the CTest label LABELS when given (`ctest -L <label>`).
function(convserve_test name)
  cmake_parse_arguments(ARG "" "" "LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  set(properties TIMEOUT 600)
  if(ARG_LABELS)
    list(APPEND properties LABELS "${ARG_LABELS}")
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
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
