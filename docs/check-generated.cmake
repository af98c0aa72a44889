# Regenerates the ODS docs and fails if docs/generated/ is stale.
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target mlir-doc
                RESULT_VARIABLE result OUTPUT_QUIET)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "building mlir-doc failed")
endif()
foreach(doc ${DOCS})
  get_filename_component(name ${doc} NAME)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
                  ${BUILD_DIR}/docs/${doc} ${SOURCE_DIR}/generated/${name}
                  RESULT_VARIABLE differ)
  if(NOT differ EQUAL 0)
    message(FATAL_ERROR "docs/generated/${name} is stale: run `ninja -C build incnn-doc`")
  endif()
endforeach()
message(STATUS "generated docs are up to date")
