# crossicl_add_library(<area>): the library crossicl_<area> (alias crossicl::<area>) from src/<area>/*.cpp, with
# the public headers of include/crossicl/<area> and the private ones of src/ (src/detail), the project's warnings
# and its machine-code policy. core and engine are both made by it; each adds its own dependencies.
set(CROSSICL_WARNINGS -Wall -Wextra)

function(crossicl_add_library area)
  file(GLOB sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${area}/*.cpp)
  set(target crossicl_${area})
  add_library(${target} ${sources})
  add_library(crossicl::${area} ALIAS ${target})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${target} EXPORT_NAME ${area})
  target_include_directories(${target}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${target} PRIVATE ${CROSSICL_WARNINGS})
  # Portable machine code: the baseline is x86-64; the hot kernels are compiled again for AVX2+FMA and AVX-512
  # in #pragma GCC target regions (src/detail/isa_instances.h) and chosen at run time. CROSSICL_NATIVE_ARCH=ON
  # (-march=native) is for builds used only on the machine that compiles them.
  if(CROSSICL_NATIVE_ARCH)
    target_compile_options(${target} PRIVATE -march=native)
  endif()
  # The kernel files are compiled without multiply-add contraction: which products GCC fuses into FMA depends on
  # how it vectorises for each ISA; unfused, every path rounds the same operations in the same order (same bits).
  foreach(src ${sources})
    if(src MATCHES "/(kernels|select_kernel|quant|gemv)\\.cpp$")
      set_source_files_properties(${src} TARGET_DIRECTORY ${target} PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
    endif()
    if(src MATCHES "/(gemv|quant|kernels)\\.cpp$" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC vector types in internal inline functions: the note on their ABI across paths does not apply
      set_source_files_properties(${src} TARGET_DIRECTORY ${target} PROPERTIES COMPILE_OPTIONS
                                  "-ffp-contract=off;-Wno-psabi")
    endif()
  endforeach()
endfunction()
