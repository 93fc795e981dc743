# Static, hidden builds of the C libraries crossicl links into its extension: zlib (as zlib-ng in zlib-compatible
# mode) and SentencePiece (with its bundled protobuf-lite and absl). Debian ships neither as a static PIC library,
# and linking their shared objects let sentencepiece's FLAGS_minloglevel bind to libc10's and overwrite torch's
# flags. Both are built from their PyPI source distributions, which carry the C/C++ sources:
#   - CROSSICL_<NAME>_SDIST names a downloaded tarball (for a machine without access to PyPI);
#   - otherwise the tarball is fetched once with `python -m pip download` into <build>/_deps.
# The tarballs are checked against the SHA-256 below. The libraries are compiled with hidden visibility, and the
# extension links them with --exclude-libs, so none of their symbols is exported.
include(ExternalProject)
enable_language(C)

set(CROSSICL_SENTENCEPIECE_SDIST "" CACHE FILEPATH "sentencepiece-0.2.1.tar.gz (PyPI sdist); fetched with pip when empty")
set(CROSSICL_ZLIB_SDIST "" CACHE FILEPATH "zlib_ng-1.1.0.tar.gz (PyPI sdist); fetched with pip when empty")

# crossicl_sdist(<var> <cache-var> <pip name> <version> <file name> <sha256>): sets <var> to the tarball's path.
function(crossicl_sdist var cache_var package version file sha256)
  set(path "${${cache_var}}")
  if(NOT path)
    set(dir ${PROJECT_BINARY_DIR}/_deps)
    set(path ${dir}/${file})
    if(NOT EXISTS ${path})
      if(NOT CROSSICL_PYTHON_EXECUTABLE)
        find_package(Python 3.9 REQUIRED COMPONENTS Interpreter)
        set(CROSSICL_PYTHON_EXECUTABLE ${Python_EXECUTABLE})
      endif()
      message(STATUS "crossicl: fetching the ${package}==${version} source distribution with pip")
      execute_process(
        COMMAND ${CROSSICL_PYTHON_EXECUTABLE} -m pip download --quiet --disable-pip-version-check --no-deps
          --no-binary ${package} ${package}==${version} -d ${dir}
        RESULT_VARIABLE rc ERROR_VARIABLE err)
      if(NOT rc EQUAL 0 OR NOT EXISTS ${path})
        message(FATAL_ERROR "crossicl: could not download ${file} with pip (${err}). Download it on a machine "
          "with access to PyPI (pip download --no-deps --no-binary ${package} ${package}==${version}) and pass "
          "-D${cache_var}=/path/to/${file}.")
      endif()
    endif()
  endif()
  file(SHA256 ${path} got)
  if(NOT got STREQUAL sha256)
    message(FATAL_ERROR "crossicl: ${path} has SHA-256 ${got}, expected ${sha256} (${package} ${version})")
  endif()
  set(${var} ${path} PARENT_SCOPE)
endfunction()

set(_tp_prefix ${PROJECT_BINARY_DIR}/_deps)
set(_tp_flags "-fPIC -fvisibility=hidden -fvisibility-inlines-hidden")
set(_tp_args
  -DCMAKE_BUILD_TYPE=Release
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON
  -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}
  -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
if(CMAKE_CXX_COMPILER_LAUNCHER)  # e.g. ccache: the bundled libraries are compiled through it too
  list(APPEND _tp_args -DCMAKE_C_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}
    -DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER})
endif()

# ---------------------------------------------------------------- zlib (zlib-ng, zlib-compatible API)
crossicl_sdist(_zlib_tar CROSSICL_ZLIB_SDIST zlib-ng 1.1.0 zlib_ng-1.1.0.tar.gz
  08a3a8468d4f130e3dc80d28ec42fcc7a878a57dfed616233e791066327d78a3)
set(_zlib_install ${_tp_prefix}/zlib-install)
ExternalProject_Add(crossicl_zlib_build
  URL ${_zlib_tar}
  URL_HASH SHA256=08a3a8468d4f130e3dc80d28ec42fcc7a878a57dfed616233e791066327d78a3
  PREFIX ${_tp_prefix}/zlib
  SOURCE_SUBDIR src/zlib_ng/zlib-ng
  CMAKE_ARGS ${_tp_args} -DCMAKE_C_FLAGS=${_tp_flags} -DCMAKE_INSTALL_PREFIX=${_zlib_install}
    -DCMAKE_INSTALL_LIBDIR=lib -DZLIB_COMPAT=ON -DBUILD_SHARED_LIBS=OFF -DBUILD_TESTING=OFF -DWITH_GTEST=OFF
    -DWITH_NATIVE_INSTRUCTIONS=OFF -DWITH_RUNTIME_CPU_DETECTION=ON -DZLIB_ENABLE_TESTS=OFF
  BUILD_BYPRODUCTS ${_zlib_install}/lib/libz.a
  DOWNLOAD_EXTRACT_TIMESTAMP ON)
file(MAKE_DIRECTORY ${_zlib_install}/include)
add_library(crossicl_zlib STATIC IMPORTED GLOBAL)
set_target_properties(crossicl_zlib PROPERTIES
  IMPORTED_LOCATION ${_zlib_install}/lib/libz.a
  INTERFACE_INCLUDE_DIRECTORIES ${_zlib_install}/include)
add_dependencies(crossicl_zlib crossicl_zlib_build)

# ---------------------------------------------------------------- SentencePiece (engine only)
if(CROSSICL_BUILD_ENGINE AND CROSSICL_TORCH_FOUND)
  crossicl_sdist(_spm_tar CROSSICL_SENTENCEPIECE_SDIST sentencepiece 0.2.1 sentencepiece-0.2.1.tar.gz
    8138cec27c2f2282f4a34d9a016e3374cd40e5c6e9cb335063db66a0a3b71fad)
  set(_spm_flags "${_tp_flags} -D_GLIBCXX_USE_CXX11_ABI=${CROSSICL_TORCH_ABI} -w")
  set(_spm_build ${_tp_prefix}/sentencepiece/src/crossicl_sentencepiece_build-build)
  set(_spm_src ${_tp_prefix}/sentencepiece/src/crossicl_sentencepiece_build)
  ExternalProject_Add(crossicl_sentencepiece_build
    URL ${_spm_tar}
    URL_HASH SHA256=8138cec27c2f2282f4a34d9a016e3374cd40e5c6e9cb335063db66a0a3b71fad
    PREFIX ${_tp_prefix}/sentencepiece
    SOURCE_SUBDIR sentencepiece
    CMAKE_ARGS ${_tp_args} -DCMAKE_CXX_FLAGS=${_spm_flags} -DSPM_ENABLE_SHARED=OFF -DSPM_ENABLE_TCMALLOC=OFF
      -DSPM_PROTOBUF_PROVIDER=internal -DSPM_ABSL_PROVIDER=internal
    BUILD_COMMAND ${CMAKE_COMMAND} --build <BINARY_DIR> --target sentencepiece-static
    INSTALL_COMMAND ""
    BUILD_BYPRODUCTS ${_spm_build}/src/libsentencepiece.a
    DOWNLOAD_EXTRACT_TIMESTAMP ON)
  file(MAKE_DIRECTORY ${_spm_src}/sentencepiece/src)
  add_library(crossicl_sentencepiece STATIC IMPORTED GLOBAL)
  set_target_properties(crossicl_sentencepiece PROPERTIES
    IMPORTED_LOCATION ${_spm_build}/src/libsentencepiece.a
    INTERFACE_INCLUDE_DIRECTORIES ${_spm_src}/sentencepiece/src)
  find_package(Threads REQUIRED)
  target_link_libraries(crossicl_sentencepiece INTERFACE Threads::Threads)
  add_dependencies(crossicl_sentencepiece crossicl_sentencepiece_build)
endif()
