# Finds libtorch inside the installed torch package and reads its C++ ABI flag, so that every target sharing
# std::string with torch code is compiled with the same _GLIBCXX_USE_CXX11_ABI.
#
# The engine needs only libtorch's CPU libraries and headers (CUDA kernels are registered by libtorch_cuda,
# which `import torch` loads), so the imported target crossicl_torch is made from the package's files directly.
# torch's own TorchConfig.cmake is not used: a CUDA build of torch (PyPI's default) makes it require a CUDA
# toolkit even on a machine without a GPU.
#
# Sets CROSSICL_TORCH_FOUND, CROSSICL_TORCH_ABI (0/1) and CROSSICL_TORCH_VERSION (torch.__version__), and defines
# crossicl_torch; the engine is skipped when torch is not installed.
function(crossicl_find_torch)
  if(NOT CROSSICL_PYTHON_EXECUTABLE)
    find_package(Python 3.9 COMPONENTS Interpreter)
    set(CROSSICL_PYTHON_EXECUTABLE ${Python_EXECUTABLE})
  endif()
  execute_process(
    COMMAND ${CROSSICL_PYTHON_EXECUTABLE} -c
      "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
    OUTPUT_VARIABLE _out RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(STATUS "crossicl: torch is not installed for ${CROSSICL_PYTHON_EXECUTABLE}; building crossicl::core only")
    set(CROSSICL_TORCH_FOUND OFF PARENT_SCOPE)
    return()
  endif()
  string(REPLACE "\n" ";" _lines "${_out}")
  list(GET _lines 0 _prefix)
  list(GET _lines 1 _abi)
  list(GET _lines 2 _version)
  set(_libs "")
  foreach(_name torch torch_cpu c10)
    find_library(CROSSICL_TORCH_LIB_${_name} ${_name} PATHS ${_prefix}/lib NO_DEFAULT_PATH REQUIRED)
    list(APPEND _libs ${CROSSICL_TORCH_LIB_${_name}})
  endforeach()
  if(NOT EXISTS ${_prefix}/include/ATen/ATen.h)
    message(FATAL_ERROR "crossicl: torch ${_version} at ${_prefix} has no C++ headers (include/ATen/ATen.h)")
  endif()
  # torch >= 2.14's headers need C++20 (ATen.h stops with #error under C++17); every target seeing them follows.
  file(STRINGS ${_prefix}/include/ATen/ATen.h _cxx20 REGEX "C\\+\\+20 or later")
  add_library(crossicl_torch INTERFACE IMPORTED GLOBAL)
  if(_cxx20)
    set_target_properties(crossicl_torch PROPERTIES INTERFACE_COMPILE_FEATURES cxx_std_20)
  endif()
  set_target_properties(crossicl_torch PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_prefix}/include;${_prefix}/include/torch/csrc/api/include"
    INTERFACE_LINK_LIBRARIES "${_libs}"
    INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${_abi}")
  message(STATUS "crossicl: torch ${_version} from ${_prefix}, _GLIBCXX_USE_CXX11_ABI=${_abi}")
  set(CROSSICL_TORCH_FOUND ON PARENT_SCOPE)
  set(CROSSICL_TORCH_ABI ${_abi} PARENT_SCOPE)
  set(CROSSICL_TORCH_VERSION ${_version} PARENT_SCOPE)
endfunction()
