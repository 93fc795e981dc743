#include <pybind11/stl.h>

#include "crossicl/core/task.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {

void register_tasks(py::module_& m) {
  readonly(py::class_<FixedDemo>(m, "FixedDemo", "A fixed hand-written demonstration of a task card."),
           "instruction", &FixedDemo::instruction, "fields", &FixedDemo::fields, "label", &FixedDemo::label,
           "text", &FixedDemo::text);

  readonly(py::class_<Task>(m, "Task", "One task card."), "name", &Task::name, "role", &Task::role,
           "instruction", &Task::instruction, "template_id", &Task::template_id, "input_fields", &Task::input_fields,
           "label_space", &Task::label_space, "in_task_demo", &Task::in_task_demo,
           "random_ablation_demos", &Task::random_ablation_demos, "templates", &Task::templates)
      .def_property_readonly("extra", [](const Task& t) { return json_to_py(t.extra); })
      .def("__repr__", [](const Task& t) { return "Task('" + t.name + "', role='" + t.role + "')"; });

  py::class_<Template>(m, "Template", "A template with {name} placeholders, rendered verbatim.")
      .def(py::init<std::string, std::string>(), py::arg("text"), py::arg("name") = "")
      .def_property_readonly("text", &Template::text)
      .def_property_readonly("name", &Template::name)
      .def_property_readonly("placeholders", &Template::placeholders)
      .def("render", &Template::render, py::arg("values"), py::arg("what") = "");

  py::class_<TaskSet, std::shared_ptr<TaskSet>>(m, "TaskSet", "Task cards with their template families.")
      .def("task", &TaskSet::task, py::arg("name"), py::return_value_policy::reference_internal)
      .def("__getitem__", &TaskSet::task, py::return_value_policy::reference_internal)
      .def("__contains__", &TaskSet::contains)
      .def("__len__", [](const TaskSet& s) { return s.names().size(); })
      .def("__iter__", [](const TaskSet& s) { return py::iter(py::cast(s.names())); })
      .def_property_readonly("names", &TaskSet::names)
      .def_property_readonly("families", &TaskSet::families)
      .def("template_for", &TaskSet::template_for, py::arg("family"), py::arg("task"),
           py::return_value_policy::reference_internal)
      .def("render_input", &TaskSet::render_input, py::arg("task"), py::arg("fields"), py::arg("what") = "",
           py::arg("family") = std::string(kInputFamily))
      .def("definition", &TaskSet::definition, py::arg("task"))
      .def_property_readonly("assembly", [](const TaskSet& s) { return json_to_py(s.assembly()); });

  m.def("load_tasks", [](const std::string& path) { return std::make_shared<TaskSet>(load_tasks(path)); },
        py::arg("path"), "Read a task-card file (JSON); the paper pack's tasks.json is read as it is.");
}

}  // namespace crossicl::bindings
