# crossicl::engine: the libtorch LLaMA-family inference engine (sources in src/engine, headers in include/crossicl/engine).
if(NOT CROSSICL_TORCH_FOUND)
  return()
endif()
add_library(crossicl_engine ${CROSSICL_ENGINE_SOURCES})
add_library(crossicl::engine ALIAS crossicl_engine)
set_target_properties(crossicl_engine PROPERTIES OUTPUT_NAME crossicl_engine EXPORT_NAME engine)
target_include_directories(crossicl_engine PUBLIC
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_include_directories(crossicl_engine PRIVATE ${PROJECT_SOURCE_DIR}/src)
# Only the torch libraries (torch_cpu, c10); no torch_python.
# SentencePiece is the static, hidden build of cmake/ThirdParty.cmake.
target_link_libraries(crossicl_engine PUBLIC crossicl::core crossicl_torch PRIVATE crossicl_sentencepiece)
# torch's include dir carries its own fmt headers (v12), which shadow the system fmt that fmt::fmt links;
# use them header-only in every target that sees torch's includes.
target_compile_definitions(crossicl_engine PUBLIC FMT_HEADER_ONLY=1)
target_compile_options(crossicl_engine PRIVATE ${CROSSICL_WARNINGS})
crossicl_target_arch(crossicl_engine)
