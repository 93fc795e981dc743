#include "registry.h"

namespace crossicl::bindings {
// PLACEHOLDER: replaced by the real bindings of this area.
void register_select(pybind11::module_&) {}
}  // namespace crossicl::bindings
