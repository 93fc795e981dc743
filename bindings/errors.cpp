#include <pybind11/pybind11.h>

#include "crossicl/core/error.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_errors(py::module_& m) {
  // InvalidArgument -> crossicl.InvalidArgument (a ValueError); LoadError -> crossicl.LoadError (a RuntimeError).
  static py::exception<InvalidArgument> invalid(m, "InvalidArgument", PyExc_ValueError);
  static py::exception<LoadError> load_error(m, "LoadError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InvalidArgument& e) {
      py::set_error(invalid, e.what());
    } catch (const LoadError& e) {
      py::set_error(load_error, e.what());
    }
  });
}

}  // namespace crossicl::bindings
