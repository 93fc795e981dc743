// libFuzzer target for task cards (load_tasks) and the templates they carry: load, then render each task's
// definition and input templates of every family with its own fields.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "crossicl/core/error.h"
#include "crossicl/core/task.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crossicl;
  const std::string path =
      fuzz::write_scratch("tasks.json", std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    const TaskSet tasks = load_tasks(path);
    for (const std::string& name : tasks.names()) {
      const Task& task = tasks.task(name);
      std::map<std::string, std::string> fields;
      for (const std::string& f : task.input_fields) fields[f] = "<" + f + ">";
      for (const auto& [family, ids] : tasks.families()) {
        if (!tasks.has_template(family, name)) continue;
        try {
          tasks.template_for(family, name).render(fields, name);
        } catch (const InvalidArgument&) {  // a placeholder the card's fields do not fill
        }
      }
      try {
        tasks.definition(name);
        tasks.render_input(name, fields);
      } catch (const InvalidArgument&) {
      }
      task.extra.dump();
    }
    tasks.assembly().dump();
  } catch (const LoadError&) {
  }
  return 0;
}
