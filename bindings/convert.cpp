#include "convert.h"

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"

namespace py = pybind11;

namespace crossicl::bindings {

py::str to_str(const std::string& s) {
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::object json_to_py(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
    // lossy: GGUF metadata strings are file bytes that need not be UTF-8 (a strict decode raised UnicodeDecodeError)
    case nlohmann::json::value_t::string: return to_str(j.get_ref<const std::string&>());
    case nlohmann::json::value_t::array: {
      py::list out;
      for (const auto& v : j) out.append(json_to_py(v));
      return py::object(std::move(out));
    }
    case nlohmann::json::value_t::object: {
      py::dict out;
      for (const auto& [k, v] : j.items()) out[to_str(k)] = json_to_py(v);
      return py::object(std::move(out));
    }
    default: return py::none();
  }
}

namespace {

// `depth`: containers around obj. Counted so that a deep (or self-containing) list is an InvalidArgument, not a
// stack overflow, and so that what is stored stays within the depth every JSON reader accepts.
nlohmann::json py_to_json_at(const py::handle& obj, std::int64_t depth, std::int64_t max_depth) {
  if (obj.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(obj)) return obj.cast<bool>();
  if (py::isinstance<py::int_>(obj)) return obj.cast<std::int64_t>();
  if (py::isinstance<py::float_>(obj)) return obj.cast<double>();
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  const bool is_dict = py::isinstance<py::dict>(obj);
  if (is_dict || py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    if (depth + 1 > max_depth)
      throw InvalidArgument(
          fmt::format("value nested deeper than {} levels (Limits.max_json_depth)", max_depth));
    nlohmann::json out = is_dict ? nlohmann::json::object() : nlohmann::json::array();
    if (is_dict) {
      for (auto item : obj.cast<py::dict>())
        out[py::str(item.first).cast<std::string>()] = py_to_json_at(item.second, depth + 1, max_depth);
    } else {
      for (auto v : obj) out.push_back(py_to_json_at(v, depth + 1, max_depth));
    }
    return out;
  }
  throw InvalidArgument(fmt::format("cannot store a value of type {} as JSON",
                                    py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>()));
}

}  // namespace

nlohmann::json py_to_json(const py::handle& obj) { return py_to_json_at(obj, 0, limits().max_json_depth); }

}  // namespace crossicl::bindings
