# unit.layers: each layer of common/ sees only its own headers and those of
# the layers below it (common/CMakeLists.txt).  Builds the probe targets
# (tests/unit/CMakeLists.txt) one by one: every probe of a higher layer's
# header must fail to compile for want of that header, and the control (a
# layer including a lower layer's header) must compile, so a failure is not
# a broken probe.
#   cmake -DBUILD_DIR=... -DPROBES="target:header;..." -DCONTROL=target -P layers.cmake
set(failures "")
foreach(probe IN LISTS PROBES)
  string(REPLACE ":" ";" parts "${probe}")
  list(GET parts 0 target)
  list(GET parts 1 header)
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${target}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    string(APPEND failures "${target}: ${header} was found: a lower layer can include it\n")
  elseif(NOT out MATCHES "${header}: No such file or directory")
    string(APPEND failures "${target}: failed, but not for want of ${header}:\n${out}\n")
  else()
    message(STATUS "${target}: ${header} not found, as it must be")
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${CONTROL}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  string(APPEND failures "${CONTROL}: a layer cannot include a lower layer's header:\n${out}\n")
endif()
if(failures)
  message(FATAL_ERROR "${failures}")
endif()
