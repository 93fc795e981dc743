# crossicl::engine: the libtorch LLaMA-family inference engine (sources in src/engine, headers in include/crossicl/engine).
if(NOT CROSSICL_TORCH_FOUND)
  return()
endif()
find_package(PkgConfig)
if(PkgConfig_FOUND)
  pkg_check_modules(SENTENCEPIECE IMPORTED_TARGET sentencepiece)
endif()
add_library(crossicl_engine ${CROSSICL_ENGINE_SOURCES})
add_library(crossicl::engine ALIAS crossicl_engine)
set_target_properties(crossicl_engine PROPERTIES OUTPUT_NAME crossicl_engine EXPORT_NAME engine)
target_include_directories(crossicl_engine PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_include_directories(crossicl_engine PRIVATE ${PROJECT_SOURCE_DIR}/src)
# Only the torch libraries (torch_cpu, c10); no torch_python.
target_link_libraries(crossicl_engine PUBLIC crossicl::core ${TORCH_LIBRARIES} PRIVATE fmt::fmt)
if(SENTENCEPIECE_FOUND)
  target_link_libraries(crossicl_engine PRIVATE PkgConfig::SENTENCEPIECE)
else()
  # No pkg-config file (or one pointing elsewhere): find the library and header directly.
  find_library(SENTENCEPIECE_LIB sentencepiece REQUIRED)
  find_path(SENTENCEPIECE_INCLUDE_DIR sentencepiece_processor.h REQUIRED)
  target_link_libraries(crossicl_engine PRIVATE ${SENTENCEPIECE_LIB})
  target_include_directories(crossicl_engine PRIVATE ${SENTENCEPIECE_INCLUDE_DIR})
endif()
# torch's include dir carries its own fmt headers (v12), which shadow the system fmt that fmt::fmt links;
# use them header-only in every target that sees torch's includes.
target_compile_definitions(crossicl_engine PUBLIC FMT_HEADER_ONLY=1)
target_compile_options(crossicl_engine PRIVATE ${CROSSICL_WARNINGS})
if(CROSSICL_NATIVE_ARCH)
  target_compile_options(crossicl_engine PRIVATE -march=native)
endif()
