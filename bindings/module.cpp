#include "registry.h"

PYBIND11_MODULE(_crossicl, m) {
  m.doc() = "crossicl: cross-task in-context learning (C++ core and engine)";
  using namespace crossicl::bindings;
  register_errors(m);
  register_dataset(m);
  register_tasks(m);
  register_prompt(m);
  register_select(m);
  register_score(m);
  register_paper(m);
  register_system(m);
  register_limits(m);
#ifdef CROSSICL_WITH_ENGINE
  register_tokenizer(m);
  register_engine(m);
  register_gguf(m);
  m.attr("has_engine") = true;
#else
  m.attr("has_engine") = false;
#endif
}
