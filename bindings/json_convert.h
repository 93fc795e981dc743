// nlohmann::json <-> Python objects (dict, list, str, int, float, bool, None).
#pragma once

#include <nlohmann/json.hpp>
#include <pybind11/pybind11.h>

namespace crossicl::bindings {

pybind11::object json_to_py(const nlohmann::json& j);
nlohmann::json py_to_json(const pybind11::handle& obj);

}  // namespace crossicl::bindings
