// crossicl.Limits, limits() and set_limits(): the process-wide bounds on what crossicl accepts from files and
// Python values (include/crossicl/core/limits.h).
#include <cstdint>

#include <fmt/format.h>
#include <pybind11/pybind11.h>

#include "crossicl/core/limits.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_limits(py::module_& m) {
  const Limits defaults;
  py::class_<Limits>(m, "Limits",
                     "Process-wide input limits: the deepest JSON nesting, the largest file (after gzip "
                     "decompression) and the largest vocabulary crossicl accepts. Going over one raises "
                     "crossicl.LoadError (a file) or ValueError (an argument) naming the field. Change them with "
                     "set_limits(); the defaults are far above every real model and dataset.")
      .def(py::init([](std::int64_t max_json_depth, std::int64_t max_file_bytes, std::int64_t max_vocab_size) {
             Limits l;
             l.max_json_depth = max_json_depth;
             l.max_file_bytes = max_file_bytes;
             l.max_vocab_size = max_vocab_size;
             return l;
           }),
           py::kw_only(), py::arg("max_json_depth") = defaults.max_json_depth,
           py::arg("max_file_bytes") = defaults.max_file_bytes, py::arg("max_vocab_size") = defaults.max_vocab_size)
      .def_readwrite("max_json_depth", &Limits::max_json_depth,
                     "Deepest nesting of arrays and objects in a JSON file, JSON line or Python value stored as "
                     "JSON (1 to 10000).")
      .def_readwrite("max_file_bytes", &Limits::max_file_bytes,
                     "Bytes of one dataset, task-card, pack, config or tokenizer file after gzip decompression.")
      .def_readwrite("max_vocab_size", &Limits::max_vocab_size,
                     "Tokens in a vocabulary: every token id read from a file must be below it.")
      .def("__eq__",
           [](const Limits& a, const Limits& b) {
             return a.max_json_depth == b.max_json_depth && a.max_file_bytes == b.max_file_bytes &&
                    a.max_vocab_size == b.max_vocab_size;
           })
      .def("__repr__", [](const Limits& l) {
        return fmt::format("Limits(max_json_depth={}, max_file_bytes={}, max_vocab_size={})", l.max_json_depth,
                           l.max_file_bytes, l.max_vocab_size);
      });
  m.def("limits", &limits, "The limits in force (a copy: change it, then pass it to set_limits).");
  m.def("set_limits", &set_limits, py::arg("limits"),
        "Replace the limits in force for the whole process. Raises ValueError naming a field out of range, and "
        "then changes nothing.");
}

}  // namespace crossicl::bindings
