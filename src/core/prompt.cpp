#include "crossicl/core/prompt.h"

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl {

namespace {

// Appends pieces to a prompt and records their spans.
class Assembler {
 public:
  void add(const char* kind, const std::string& task, int index, const std::string& piece) {
    const std::size_t begin = p_.text.size();
    p_.text += piece;
    p_.spans.push_back({kind, task, index, begin, p_.text.size()});
  }
  void sep(const char* s) { p_.text += s; }
  Prompt take() { return std::move(p_); }

 private:
  Prompt p_;
};

std::string what_item(const std::string& task, const Example& item) {
  return fmt::format("example '{}' of {}", item.id, task);
}

}  // namespace

PromptStyle prompt_style_from_name(const std::string& name) {
  if (name == "paper") return PromptStyle::Paper;
  if (name == "clean") return PromptStyle::Clean;
  throw InvalidArgument(fmt::format("unknown prompt style '{}' (expected 'paper' or 'clean')", name));
}

const char* prompt_style_name(PromptStyle style) { return style == PromptStyle::Paper ? "paper" : "clean"; }

PromptBuilder::PromptBuilder(TaskSet tasks, PromptOptions options)
    : tasks_(std::make_shared<const TaskSet>(std::move(tasks))), options_(std::move(options)) {}

PromptBuilder::PromptBuilder(std::shared_ptr<const TaskSet> tasks, PromptOptions options)
    : tasks_(std::move(tasks)), options_(std::move(options)) {
  if (!tasks_) throw InvalidArgument("PromptBuilder needs a task set (got null)");
}

std::string PromptBuilder::render_input(const std::string& task, const Example& item) const {
  return tasks_->render_input(task, item.fields, what_item(task, item), options_.input_family);
}

std::string PromptBuilder::render_demo(const std::string& task, const Example& item) const {
  if (!item.label)
    throw InvalidArgument(fmt::format("demonstration {} has no label", what_item(task, item)));
  return render_input(task, item) + " " + *item.label;
}

Prompt PromptBuilder::zero_shot(const std::string& target, const Example& item) const {
  return in_task_with(target, item, {});
}

Prompt PromptBuilder::in_task(const std::string& target, const Example& item) const {
  const Task& t = tasks_->task(target);
  if (!t.in_task_demo) throw InvalidArgument(fmt::format("task '{}' has no in_task_demo", target));
  const FixedDemo& it = *t.in_task_demo;
  if (options_.style == PromptStyle::Paper) {
    Assembler a;
    a.add("target_definition", target, 0, tasks_->definition(target));
    a.add("target_demo", target, 0, it.text);
    a.add("target_input", target, 0, render_input(target, item));
    return a.take();
  }
  Example demo{"in_task_demo", it.fields, it.label, {}};
  return in_task_with(target, item, {render_demo(target, demo)});
}

Prompt PromptBuilder::in_task_with(const std::string& target, const Example& item,
                                   const std::vector<std::string>& demos) const {
  Assembler a;
  a.add("target_definition", target, 0, tasks_->definition(target));
  const char* demo_sep = options_.style == PromptStyle::Paper ? "\n" : "\n\n";
  for (std::size_t i = 0; i < demos.size(); ++i) {
    a.add("target_demo", target, static_cast<int>(i), demos[i]);
    a.sep(demo_sep);
  }
  a.add("target_input", target, 0, render_input(target, item));
  return a.take();
}

Prompt PromptBuilder::cross_task(const std::string& target, const Example& item, const std::string& source,
                                 const std::vector<std::string>& demos) const {
  if (demos.empty())
    throw InvalidArgument(fmt::format("cross_task needs at least one demonstration of '{}' (got 0)", source));
  return mixed_cross(target, item, {SourceBlock{source, demos}});
}

Prompt PromptBuilder::in_and_cross(const std::string& target, const Example& item, const std::string& source,
                                   const std::string& demo) const {
  const Task& t = tasks_->task(target);
  if (!t.in_task_demo) throw InvalidArgument(fmt::format("task '{}' has no in_task_demo", target));
  const bool paper = options_.style == PromptStyle::Paper;
  Assembler a;
  a.add("source_definition", source, 0, tasks_->definition(source));
  a.add("source_demo", source, 0, demo);
  a.sep(paper ? "\n" : "\n\n");
  a.add("target_definition", target, 0, tasks_->definition(target));
  if (paper) {
    a.add("target_demo", target, 0, t.in_task_demo->text);
  } else {
    Example d{"in_task_demo", t.in_task_demo->fields, t.in_task_demo->label, {}};
    a.add("target_demo", target, 0, render_demo(target, d));
    a.sep("\n\n");
  }
  a.add("target_input", target, 0, render_input(target, item));
  return a.take();
}

Prompt PromptBuilder::mixed_cross(const std::string& target, const Example& item,
                                  const std::vector<SourceBlock>& blocks) const {
  const char* sep = options_.style == PromptStyle::Paper ? "\n" : "\n\n";
  Assembler a;
  for (const auto& block : blocks) {
    if (block.demos.empty())
      throw InvalidArgument(fmt::format("source block '{}' has no demonstrations", block.task));
    a.add("source_definition", block.task, 0, tasks_->definition(block.task));
    for (std::size_t i = 0; i < block.demos.size(); ++i) {
      if (i) a.sep(sep);
      a.add("source_demo", block.task, static_cast<int>(i), block.demos[i]);
    }
    a.sep(sep);
  }
  a.add("target_definition", target, 0, tasks_->definition(target));
  a.add("target_input", target, 0, render_input(target, item));
  return a.take();
}

Prompt PromptBuilder::random_ablation(const std::string& target, const Example& item, const std::string& source,
                                      const std::string& seed) const {
  const Task& s = tasks_->task(source);
  auto it = s.random_ablation_demos.find(seed);
  if (it == s.random_ablation_demos.end()) {
    std::string have;
    for (const auto& [k, v] : s.random_ablation_demos) have += (have.empty() ? "" : ", ") + k;
    throw InvalidArgument(fmt::format("task '{}' has no random_ablation_demos['{}'] (has: {})", source, seed,
                                      have.empty() ? "none" : have));
  }
  if (options_.style == PromptStyle::Paper) {
    Assembler a;
    a.add("source_demo", source, 0, it->second.text);  // carries its own definition line
    a.add("target_definition", target, 0, tasks_->definition(target));
    a.add("target_input", target, 0, render_input(target, item));
    return a.take();
  }
  Example d{"random_ablation_demo_" + seed, it->second.fields, it->second.label, {}};
  return cross_task(target, item, source, {render_demo(source, d)});
}

Prompt PromptBuilder::pseudo_label(const std::string& target, const Example& item, const std::vector<Example>& demos,
                                   const std::vector<std::string>& labels) const {
  if (demos.size() != labels.size())
    throw InvalidArgument(
        fmt::format("pseudo_label needs one label per demonstration (demos={}, labels={})", demos.size(), labels.size()));
  if (options_.style == PromptStyle::Paper) {
    Assembler a;
    a.add("target_definition", target, 0, tasks_->task(target).instruction + "\n");
    for (std::size_t i = 0; i < demos.size(); ++i)
      a.add("target_demo", target, static_cast<int>(i), render_input(target, demos[i]) + labels[i] + "\n");
    a.add("target_input", target, 0, render_input(target, item));
    return a.take();
  }
  std::vector<std::string> rendered;
  rendered.reserve(demos.size());
  for (std::size_t i = 0; i < demos.size(); ++i) rendered.push_back(render_input(target, demos[i]) + " " + labels[i]);
  return in_task_with(target, item, rendered);
}

}  // namespace crossicl
