#include <pybind11/stl.h>

#include "crossicl/core/paper.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_paper(py::module_& m) {
  m.attr("paper_methods") = paper::methods();
  py::class_<paper::Pack, std::shared_ptr<paper::Pack>>(m, "PaperPack",
                                                         "The paper preset; use crossicl.paper.Pack from Python.")
      .def(py::init([](const std::string& dir, const std::string& style) {
             return std::make_shared<paper::Pack>(dir, prompt_style_from_name(style));
           }),
           py::arg("path"), py::kw_only(), py::arg("style") = "paper")
      .def_property_readonly("dir", &paper::Pack::dir)
      .def_property_readonly("tasks", [](const paper::Pack& pk) { return std::make_shared<TaskSet>(pk.tasks()); })
      .def_property_readonly("targets", &paper::Pack::targets)
      .def_property_readonly("sources", &paper::Pack::sources)
      .def("target_items", &paper::Pack::target_items, py::arg("target"), py::return_value_policy::reference_internal)
      .def("target_item", &paper::Pack::target_item, py::arg("target"), py::arg("id"),
           py::return_value_policy::reference_internal)
      .def("demo", &paper::Pack::demo, py::arg("target"), py::arg("id"), py::arg("source"), py::arg("rank") = 0)
      .def("pseudo_pool", &paper::Pack::pseudo_pool, py::arg("target"), py::return_value_policy::reference_internal)
      .def("pseudo_positions", &paper::Pack::pseudo_positions, py::arg("target"), py::arg("seed"), py::arg("k"))
      .def("source_pool",
           [](const paper::Pack& pk, const std::string& source) {
             return released([&] { return pk.source_pool(source); });
           },
           py::arg("source"))
      .def("_prompt",
           [](const paper::Pack& pk, std::string target, std::string method, std::string source, int shots,
              std::optional<int> seed, std::string id, std::vector<std::string> models) {
             paper::Row row{std::move(target), std::move(method), std::move(source), shots, seed, std::move(id),
                            std::move(models)};
             return released([&] { return pk.prompt(row); });
           },
           py::arg("target"), py::arg("method"), py::arg("source"), py::arg("shots"), py::arg("seed"), py::arg("id"),
           py::arg("models"));
}

}  // namespace crossicl::bindings
