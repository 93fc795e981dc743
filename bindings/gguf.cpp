#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/engine/gguf.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

namespace {

GGMLType type_from_name(const std::string& name) {
  for (std::uint32_t t = 0; t < 64; ++t)
    if (ggml_type_supported(t) && ggml_type_name(t) == name) return static_cast<GGMLType>(t);
  throw InvalidArgument(fmt::format("unknown or unsupported ggml type '{}'", name));
}

// numpy shape (slowest first) of a ggml shape (fastest first).
std::vector<py::ssize_t> numpy_shape(const std::vector<std::int64_t>& ggml) {
  return std::vector<py::ssize_t>(ggml.rbegin(), ggml.rend());
}

}  // namespace

void register_gguf(py::module_& m) {
  py::class_<GGUFTensorInfo>(m, "GGUFTensorInfo")
      .def_readonly("name", &GGUFTensorInfo::name)
      .def_property_readonly("shape", [](const GGUFTensorInfo& t) { return numpy_shape(t.shape); },
                             "numpy order (slowest dimension first)")
      .def_property_readonly("type", [](const GGUFTensorInfo& t) { return ggml_type_name(static_cast<std::uint32_t>(t.type)); })
      .def_readonly("offset", &GGUFTensorInfo::offset)
      .def_readonly("nbytes", &GGUFTensorInfo::nbytes);

  py::class_<GGUFFile>(m, "GGUFFile", "A memory-mapped GGUF file: metadata, tensor directory, dequantised tensors.")
      .def(py::init([](const std::string& path) { return released([&] { return GGUFFile::open(path); }); }),
           py::arg("path"))
      .def_property_readonly("version", [](const GGUFFile& f) { return f.reader().version(); })
      .def_property_readonly("alignment", [](const GGUFFile& f) { return f.reader().alignment(); })
      .def_property_readonly("metadata", [](const GGUFFile& f) { return json_to_py(f.reader().metadata()); })
      .def_property_readonly("tensors", [](const GGUFFile& f) { return f.reader().tensors(); })
      .def("tokenizer",
           [](const GGUFFile& f) {
             return std::shared_ptr<Tokenizer>(Tokenizer::from_vocab(vocab_from_gguf(f.reader())));
           },
           "The tokenizer stored in the file's tokenizer.ggml.* metadata.")
      .def("read",
           [](const GGUFFile& f, const std::string& name) {
             const GGUFTensorInfo& t = f.reader().tensor(name);
             py::array_t<float> out(numpy_shape(t.shape));
             float* dst = out.mutable_data();
             released([&] { f.reader().read_f32(t, dst); });
             return out;
           },
           py::arg("name"), "The tensor dequantised to float32, in numpy order.");

  m.def("dequantize",
        [](const std::string& type, py::bytes data, std::int64_t n) {
          const GGMLType t = type_from_name(type);
          const std::string buf = data;
          const std::int64_t need = n / ggml_block_size(t) * ggml_type_size(t);
          if (n < 0 || static_cast<std::int64_t>(buf.size()) != need)
            throw InvalidArgument(fmt::format("{} x {} elements need {} bytes (got {})", type, n, need, buf.size()));
          py::array_t<float> out(n);
          dequantize(t, reinterpret_cast<const std::uint8_t*>(buf.data()), out.mutable_data(), n);
          return out;
        },
        py::arg("type"), py::arg("data"), py::arg("n"),
        "Dequantise n elements of ggml type `type` (e.g. 'Q4_K') from raw block bytes.");
}

}  // namespace crossicl::bindings
