#include <pybind11/stl.h>

#include "crossicl/core/prompt.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_prompt(py::module_& m) {
  readonly(py::class_<Span>(m, "Span", "Bytes [begin, end) of a prompt's UTF-8 text holding one piece."),
           "kind", &Span::kind, "task", &Span::task, "index", &Span::index, "begin", &Span::begin, "end", &Span::end)
      .def("__repr__", [](const Span& s) {
        return "Span('" + s.kind + "', '" + s.task + "', index=" + std::to_string(s.index) +
               ", begin=" + std::to_string(s.begin) + ", end=" + std::to_string(s.end) + ")";
      });

  readonly(py::class_<Prompt>(m, "Prompt", "A built prompt: text plus the spans of its pieces."),
           "text", &Prompt::text, "spans", &Prompt::spans)
      .def("piece", [](const Prompt& p, std::size_t i) {
        if (i >= p.spans.size()) throw py::index_error("span index out of range");
        return py::str(p.text.substr(p.spans[i].begin, p.spans[i].end - p.spans[i].begin));
      }, py::arg("index"), "Text of span `index`.")
      .def("__str__", [](const Prompt& p) { return p.text; });

  py::class_<SourceBlock>(m, "SourceBlock")
      .def(py::init<std::string, std::vector<std::string>>(), py::arg("task"), py::arg("demos"))
      .def_readwrite("task", &SourceBlock::task)
      .def_readwrite("demos", &SourceBlock::demos);

  py::class_<PromptBuilder>(m, "PromptBuilder",
                            "Builds prompts of every method of the paper, in the 'paper' or 'clean' style.")
      .def(py::init([](std::shared_ptr<TaskSet> tasks, const std::string& style, const std::string& input_family) {
             return PromptBuilder(std::shared_ptr<const TaskSet>(std::move(tasks)),
                                  PromptOptions{prompt_style_from_name(style), input_family});
           }),
           py::arg("tasks"), py::kw_only(), py::arg("style") = "clean", py::arg("input_family") = std::string(kInputFamily))
      .def_property_readonly("style", [](const PromptBuilder& b) { return prompt_style_name(b.options().style); })
      .def("render_input", &PromptBuilder::render_input, py::arg("task"), py::arg("item"))
      .def("render_demo", &PromptBuilder::render_demo, py::arg("task"), py::arg("item"))
      .def("zero_shot", &PromptBuilder::zero_shot, py::arg("target"), py::arg("item"))
      .def("in_task", &PromptBuilder::in_task, py::arg("target"), py::arg("item"))
      .def("in_task_with", &PromptBuilder::in_task_with, py::arg("target"), py::arg("item"), py::arg("demos"))
      .def("cross_task", &PromptBuilder::cross_task, py::arg("target"), py::arg("item"), py::arg("source"),
           py::arg("demos"))
      .def("in_and_cross", &PromptBuilder::in_and_cross, py::arg("target"), py::arg("item"), py::arg("source"),
           py::arg("demo"))
      .def("mixed_cross", &PromptBuilder::mixed_cross, py::arg("target"), py::arg("item"), py::arg("blocks"))
      .def("random_ablation", &PromptBuilder::random_ablation, py::arg("target"), py::arg("item"),
           py::arg("source"), py::arg("seed"))
      .def("pseudo_label", &PromptBuilder::pseudo_label, py::arg("target"), py::arg("item"), py::arg("demos"),
           py::arg("labels"));
}

}  // namespace crossicl::bindings
