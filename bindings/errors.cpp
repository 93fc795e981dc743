#include <pybind11/pybind11.h>

#include "convert.h"
#include "crossicl/core/error.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

namespace {

// Sets `type` with the message e.what(), decoded with errors="replace": a message quoting raw bytes of a file
// (a 0xFF in a header) must still arrive as this exception and name the file, not become a UnicodeDecodeError.
void set_error(const py::handle& type, const std::exception& e) {
  py::str message = to_str(e.what());
  PyErr_SetObject(type.ptr(), message.ptr());
}

}  // namespace

void register_errors(py::module_& m) {
  // InvalidArgument -> crossicl.InvalidArgument (a ValueError); LoadError -> crossicl.LoadError (a RuntimeError).
  static py::exception<InvalidArgument> invalid(m, "InvalidArgument", PyExc_ValueError);
  static py::exception<LoadError> load_error(m, "LoadError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InvalidArgument& e) {
      set_error(invalid, e);
    } catch (const LoadError& e) {
      set_error(load_error, e);
    }
  });
}

}  // namespace crossicl::bindings
