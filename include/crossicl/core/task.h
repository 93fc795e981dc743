// Task cards: what a task is (instruction, input fields, label space, role) and how its examples are written
// into prompts (templates by named family). A task file is JSON:
//
//   {"tasks": {"sst2": {"role": "source", "instruction": "Given a movie review ...",
//                       "input_fields": ["sentence"], "label_space": ["negative", "positive"],
//                       "template": "Sentence: {sentence} \n Label:"}},
//    "templates": {"definition_line": "Definition: {instruction}\n"}}
//
// The paper pack's tasks.json is read as it is: there a task names a `prompt_template_id` and the top-level
// `templates` object holds families (`as_run`, `head`, `in_task_demo`, ...) that are either one string for
// every task or an object keyed by template id. docs/task-cards.md documents every key.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "crossicl/core/template.h"

namespace crossicl {

/// A fixed, hand-written demonstration stored in a task card (the paper's in-task demos and random-ablation
/// demos). `text` is the byte-exact published rendering; `fields`/`label` let other styles re-render it.
struct FixedDemo {
  std::string instruction;                    // instruction used by this demo ("" when not recorded)
  std::map<std::string, std::string> fields;  // input fields of the demo example
  std::string label;                          // its label
  std::string text;                           // byte-exact rendering used by the paper style
};

/// One task card.
struct Task {
  std::string name;                         // key in the task file
  std::string role;                         // "target", "source" or "" (any)
  std::string instruction;                  // text after "Definition: ", byte-exact
  std::string template_id;                  // id into template families ("" when the card has its own)
  std::vector<std::string> input_fields;    // fields the input template uses
  std::vector<std::string> label_space;     // allowed labels as written in prompts (empty = open)
  std::optional<FixedDemo> in_task_demo;    // the fixed in-task demonstration, if any
  std::map<std::string, FixedDemo> random_ablation_demos;  // fixed random demos by seed ("0", "1", ...)
  std::map<std::string, std::string> templates;            // card-level templates by family (override)
  nlohmann::json extra = nlohmann::json::object();          // every other key of the card, as read
};

/// The default template family for inputs; also the family a card's `template` shorthand fills.
inline constexpr const char* kInputFamily = "as_run";

/// A set of task cards with their template families.
///
///   auto tasks = crossicl::load_tasks("paper/tasks.json");
///   std::string q = tasks.render_input("ARC-Challenge", item);  // "Question:... \n Answer:"
class TaskSet {
 public:
  TaskSet() = default;
  /// Builds a task set from the parsed JSON of a task file; `where` names the file in errors.
  /// Throws InvalidArgument for unknown or mistyped keys' values.
  static TaskSet from_json(const nlohmann::ordered_json& doc, const std::string& where);

  /// The task called `name`; throws InvalidArgument naming it and the known tasks.
  const Task& task(const std::string& name) const;
  bool contains(const std::string& name) const { return tasks_.count(name) > 0; }
  /// Task names in file order.
  const std::vector<std::string>& names() const { return order_; }

  /// The template of `family` for `task`: the card's own, else family[template_id], else the family-wide one.
  /// Throws InvalidArgument naming the family, the task and its template id when none applies.
  const Template& template_for(const std::string& family, const std::string& task) const;
  bool has_template(const std::string& family, const std::string& task) const;
  /// Template families of the file (name -> id -> text; a family-wide template has the id "*").
  const std::map<std::string, std::map<std::string, std::string>>& families() const { return family_text_; }

  /// Input text of an example: template_for(kInputFamily or `family`, task) filled with `fields`.
  std::string render_input(const std::string& task, const std::map<std::string, std::string>& fields,
                           const std::string& what = "", const std::string& family = kInputFamily) const;
  /// The definition line of a task ("Definition: <instruction>\n" unless the file says otherwise).
  std::string definition(const std::string& task) const;

  /// The file's `assembly` object (method descriptions of the paper pack), or null.
  const nlohmann::json& assembly() const { return assembly_; }

 private:
  std::map<std::string, Task> tasks_;
  std::vector<std::string> order_;
  std::map<std::string, std::map<std::string, std::string>> family_text_;
  // Parsed templates: key "family\x1fid" (id "*" family-wide, "@task" a card's own).
  std::map<std::string, Template> parsed_;
  nlohmann::json assembly_;
};

/// Reads a task file (JSON, see the header comment). Throws LoadError naming the file and the bad key.
TaskSet load_tasks(const std::string& path);

}  // namespace crossicl
