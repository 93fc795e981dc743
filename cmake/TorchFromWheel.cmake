# Finds libtorch inside the installed torch wheel (torch.utils.cmake_prefix_path) and reads its C++ ABI flag,
# so that every target sharing std::string with torch code is compiled with the same _GLIBCXX_USE_CXX11_ABI.
# Sets CROSSICL_TORCH_FOUND, CROSSICL_TORCH_ABI (0/1) and CROSSICL_TORCH_VERSION (torch.__version__); the engine is skipped when torch is not installed.
function(crossicl_find_torch)
  if(NOT CROSSICL_PYTHON_EXECUTABLE)
    find_package(Python 3.9 COMPONENTS Interpreter)
    set(CROSSICL_PYTHON_EXECUTABLE ${Python_EXECUTABLE})
  endif()
  execute_process(
    COMMAND ${CROSSICL_PYTHON_EXECUTABLE} -c
      "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
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
  list(APPEND CMAKE_PREFIX_PATH ${_prefix})
  find_package(Torch REQUIRED)
  message(STATUS "crossicl: torch ${Torch_VERSION} from ${_prefix}, _GLIBCXX_USE_CXX11_ABI=${_abi}")
  set(CROSSICL_TORCH_FOUND ON PARENT_SCOPE)
  set(CROSSICL_TORCH_ABI ${_abi} PARENT_SCOPE)
  set(CROSSICL_TORCH_VERSION ${_version} PARENT_SCOPE)
  set(TORCH_LIBRARIES ${TORCH_LIBRARIES} PARENT_SCOPE)
  set(TORCH_INCLUDE_DIRS ${TORCH_INCLUDE_DIRS} PARENT_SCOPE)
  set(TORCH_INSTALL_PREFIX ${TORCH_INSTALL_PREFIX} PARENT_SCOPE)
endfunction()
