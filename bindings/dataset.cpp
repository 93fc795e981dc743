#include <pybind11/stl.h>

#include <fmt/format.h>

#include "crossicl/core/dataset.h"
#include "crossicl/core/error.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_dataset(py::module_& m) {
  py::class_<Example>(m, "Example", "One example: id, input fields, optional gold label, extra keys.")
      .def(py::init([](std::string id, std::map<std::string, std::string> fields, std::optional<std::string> label,
                       py::object extra) {
             Example ex{std::move(id), std::move(fields), std::move(label), nlohmann::json::object()};
             if (!extra.is_none()) {
               if (!py::isinstance<py::dict>(extra)) throw InvalidArgument("Example extra must be a dict or None");
               ex.extra = py_to_json(extra);
             }
             return ex;
           }),
           py::arg("id"), py::arg("fields"), py::arg("label") = py::none(), py::arg("extra") = py::none())
      .def_readwrite("id", &Example::id)
      .def_readwrite("fields", &Example::fields)
      .def_readwrite("label", &Example::label)
      .def_property(
          "extra", [](const Example& e) { return json_to_py(e.extra); },
          [](Example& e, const py::dict& d) { e.extra = py_to_json(d); })
      .def("to_dict",
           [](const Example& e) {
             py::dict d = json_to_py(e.extra);
             d["id"] = e.id;
             d["fields"] = e.fields;
             d["label"] = e.label ? py::object(py::str(*e.label)) : py::object(py::none());
             return d;
           })
      .def("__repr__", [](const Example& e) {
        return fmt::format("Example(id='{}', fields=<{} fields>, label={})", e.id, e.fields.size(),
                           e.label ? "'" + *e.label + "'" : std::string("None"));
      });
  m.def("load_examples", [](const std::string& path) { return released([&] { return load_examples(path); }); },
        py::arg("path"),
        "Read examples from a JSON Lines file (plain or .gz): one {id, fields, label, ...} object per line.");
}

}  // namespace crossicl::bindings
