# Installs the build into BUILD_DIR/example-prefix and compiles examples/produce.c and consume.c against it with
# pkg-config, as a user would (cc produce.c $(pkg-config --cflags --libs eddy)), against the shared library,
# then runs it without arguments (it must load and print its usage). EXTRA_FLAGS: the sanitizer flags of a
# sanitized build.
set(prefix ${BUILD_DIR}/example-prefix)
file(REMOVE_RECURSE ${prefix})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed")
endif()
file(GLOB_RECURSE pc ${prefix}/*/eddy.pc)
get_filename_component(pcdir "${pc}" DIRECTORY)
get_filename_component(libdir "${pcdir}" DIRECTORY)
foreach(example produce consume)
  execute_process(COMMAND sh -c
    "PKG_CONFIG_PATH='${pcdir}' cc -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror ${EXTRA_FLAGS} '${SOURCE_DIR}/examples/${example}.c' $(PKG_CONFIG_PATH='${pcdir}' pkg-config --cflags --libs eddy) -o '${BUILD_DIR}/${example}'"
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "examples/${example}.c did not build against the installed library")
  endif()
  execute_process(COMMAND sh -c "LD_LIBRARY_PATH='${libdir}' '${BUILD_DIR}/${example}'" RESULT_VARIABLE rc
    ERROR_VARIABLE usage)
  if(NOT rc EQUAL 2 OR NOT usage MATCHES "usage:")
    message(FATAL_ERROR "examples/${example} did not run (exit ${rc}): ${usage}")
  endif()
  message(STATUS "examples/${example} built with pkg-config and ran")
endforeach()
