// Conversions shared by the binding files: C++ text and vectors to Python objects, JSON <-> Python, and the one
// way a binding releases the GIL.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "crossicl/core/error.h"

namespace crossicl::bindings {

/// A read-only property per (name, member pointer) pair, on a class being defined:
///   readonly(py::class_<Span>(m, "Span"), "kind", &Span::kind, "begin", &Span::begin).def("__repr__", ...);
template <class Class>
Class readonly(Class cls) {
  return cls;
}
template <class Class, class Member, class... Rest>
Class readonly(Class cls, const char* name, Member member, Rest... rest) {
  cls.def_readonly(name, member);
  return readonly(cls, rest...);
}

/// UTF-8 text as a Python str; undecodable bytes (never produced by the library) become U+FFFD.
pybind11::str to_str(const std::string& s);

/// A numpy array of `shape` (slowest dimension first) that takes over `v` without a copy: the array owns the
/// vector through a capsule. The product of `shape` must be v.size().
template <class T>
pybind11::array_t<T> to_numpy(std::vector<T>&& v, std::vector<pybind11::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  pybind11::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return pybind11::array_t<T>(std::move(shape), owned->data(), owner);
}

/// A C-contiguous 2-D numpy array of T. `obj` as such an array: the same array when it already is one, else a
/// converted copy; InvalidArgument naming `what` and `shape` (e.g. "[rows, dim]") for anything else.
template <class T>
using Matrix = pybind11::array_t<T, pybind11::array::c_style | pybind11::array::forcecast>;
template <class T>
Matrix<T> as_matrix(const pybind11::handle& obj, const char* what, const char* shape);

/// nlohmann::json -> Python (dict, list, str, int, float, bool, None).
pybind11::object json_to_py(const nlohmann::json& j);
/// Python (dict, list, tuple, str, int, float, bool, None) -> nlohmann::json; InvalidArgument for other types and
/// for containers nested deeper than limits().max_json_depth (a self-containing list included).
nlohmann::json py_to_json(const pybind11::handle& obj);

/// Runs fn() without the GIL and returns its result: every binding releases the GIL this way, around C++ work
/// that touches no Python object. An exception thrown by fn reaches Python through the exception translators
/// (errors.cpp; the engine's Interrupted becomes KeyboardInterrupt, engine.cpp).
///
///   auto r = released([&] { return selector.select(queries, k); });
template <class F>
auto released(F&& fn) {
  pybind11::gil_scoped_release release;
  return fn();
}

template <class T>
Matrix<T> as_matrix(const pybind11::handle& obj, const char* what, const char* shape) {
  Matrix<T> arr = Matrix<T>::ensure(obj);
  if (!arr) {
    PyErr_Clear();
    throw InvalidArgument(fmt::format("{} must be a 2-D float array {} (got {})", what, shape,
                                      std::string(pybind11::str(pybind11::type::of(obj).attr("__name__")))));
  }
  if (arr.ndim() != 2)
    throw InvalidArgument(fmt::format("{} must be a 2-D array {} (got ndim={})", what, shape, arr.ndim()));
  return arr;
}

}  // namespace crossicl::bindings
