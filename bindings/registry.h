// One binding file per area; module.cpp registers the exceptions first, then each area.
#pragma once

#include <pybind11/pybind11.h>

namespace crossicl::bindings {

void register_errors(pybind11::module_& m);
void register_dataset(pybind11::module_& m);
void register_tasks(pybind11::module_& m);
void register_prompt(pybind11::module_& m);
void register_select(pybind11::module_& m);
void register_score(pybind11::module_& m);
void register_paper(pybind11::module_& m);
void register_system(pybind11::module_& m);
void register_limits(pybind11::module_& m);
#ifdef CROSSICL_WITH_ENGINE
void register_tokenizer(pybind11::module_& m);
void register_engine(pybind11::module_& m);
void register_gguf(pybind11::module_& m);
#endif

}  // namespace crossicl::bindings
