#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "crossicl/core/isa.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_system(py::module_& m) {
  m.def("kernel_isa", [] { return std::string(isa_name(active_isa())); },
        "The instruction-set path of the hot CPU kernels: 'baseline', 'avx2' or 'avx512' (CROSSICL_ISA forces a "
        "lower one). Raises ValueError when CROSSICL_ISA is unknown or names a path this CPU lacks.");
  m.def("supported_isas", [] {
    std::vector<std::string> out;
    for (Isa isa : crossicl::supported_isas()) out.emplace_back(isa_name(isa));
    return out;
  }, "The kernel paths this CPU and build support, lowest first.");
}

}  // namespace crossicl::bindings
