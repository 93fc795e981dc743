#include <pybind11/stl.h>

#include <fmt/format.h>

#include "crossicl/core/dataset.h"
#include "crossicl/core/error.h"
#include "json_convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

py::object json_to_py(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
    case nlohmann::json::value_t::string: return py::str(j.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      py::list out;
      for (const auto& v : j) out.append(json_to_py(v));
      return py::object(std::move(out));
    }
    case nlohmann::json::value_t::object: {
      py::dict out;
      for (const auto& [k, v] : j.items()) out[py::str(k)] = json_to_py(v);
      return py::object(std::move(out));
    }
    default: return py::none();
  }
}

nlohmann::json py_to_json(const py::handle& obj) {
  if (obj.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(obj)) return obj.cast<bool>();
  if (py::isinstance<py::int_>(obj)) return obj.cast<std::int64_t>();
  if (py::isinstance<py::float_>(obj)) return obj.cast<double>();
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  if (py::isinstance<py::dict>(obj)) {
    nlohmann::json out = nlohmann::json::object();
    for (auto item : obj.cast<py::dict>()) out[py::str(item.first).cast<std::string>()] = py_to_json(item.second);
    return out;
  }
  if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    nlohmann::json out = nlohmann::json::array();
    for (auto v : obj) out.push_back(py_to_json(v));
    return out;
  }
  throw InvalidArgument(fmt::format("cannot store a value of type {} as JSON",
                                    py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>()));
}

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
  m.def("load_examples", &load_examples, py::arg("path"), py::call_guard<py::gil_scoped_release>(),
        "Read examples from a JSON Lines file (plain or .gz): one {id, fields, label, ...} object per line.");
}

}  // namespace crossicl::bindings
