// Prompt builders for every method of the paper: zero-shot, in-task with a fixed demonstration, cross-task
// with k demonstrations of one source, cross-task plus in-task, one demonstration from each of several sources,
// the random-demonstration ablation, and in-task ICL with pseudo-labelled demonstrations.
//
// Two styles. `PromptStyle::Paper` reproduces the published prompts byte for byte, quirks included (a single
// "\n" between blocks, the hand-written in-task demo glued to the query, the random-ablation demo glued to the
// target's "Definition:" with no separator, pseudo-label prompts without "Definition: " and without a space
// before the label). `PromptStyle::Clean`, the default for new work, uses one separator scheme everywhere:
//
//   Definition: <source instruction>\n<demo 1>\n\n<demo 2>\n\nDefinition: <target instruction>\n[<target demo>\n\n]<query>
//
// i.e. a definition line heads each task's block, and a blank line separates every demonstration, block and
// the query; demonstrations are always "<input> <label>". Every prompt records where each piece sits (spans),
// so later stages can find the tokens of a demonstration or of the query.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "crossicl/core/dataset.h"
#include "crossicl/core/task.h"

namespace crossicl {

enum class PromptStyle {
  Paper,  // the published strings, byte for byte (see the header comment)
  Clean,  // one consistent separator scheme; the default for new work
};

/// Parses "paper" or "clean"; throws InvalidArgument naming the value.
PromptStyle prompt_style_from_name(const std::string& name);
const char* prompt_style_name(PromptStyle style);

/// Options of a PromptBuilder.
struct PromptOptions {
  PromptStyle style = PromptStyle::Clean;  // separator scheme and quirks (Paper reproduces the published prompts)
  std::string input_family = kInputFamily;  // template family that renders inputs ("as_run", "head", ...)
};

/// Where one piece of a prompt sits: bytes [begin, end) of Prompt::text.
struct Span {
  std::string kind;   // "source_definition", "source_demo", "target_definition", "target_demo", "target_input"
  std::string task;   // task the piece belongs to
  int index = 0;      // demonstration index within its block (0 for definitions and the query)
  std::size_t begin = 0;  // first byte
  std::size_t end = 0;    // one past the last byte
};

/// A built prompt: its text and the spans of its pieces, in order.
struct Prompt {
  std::string text;
  std::vector<Span> spans;
};

/// A block of demonstrations of one source task, already rendered ("<input> <label>").
struct SourceBlock {
  std::string task;                // source task name
  std::vector<std::string> demos;  // rendered demonstrations, in prompt order
};

/// Builds prompts from task cards. Cheap to copy; safe to share between threads.
///
///   crossicl::PromptBuilder b(tasks, {crossicl::PromptStyle::Paper});
///   auto p = b.cross_task("ARC-Challenge", item, "ARC-Easy", {demo1});
///   // "Definition: <I_s>\n<demo1>\nDefinition: <I_t>\nQuestion:... \n Answer:"
class PromptBuilder {
 public:
  explicit PromptBuilder(TaskSet tasks, PromptOptions options = {});
  PromptBuilder(std::shared_ptr<const TaskSet> tasks, PromptOptions options = {});

  const TaskSet& tasks() const { return *tasks_; }
  const PromptOptions& options() const { return options_; }

  /// The input of `item` in `task`'s input template (no label).
  std::string render_input(const std::string& task, const Example& item) const;
  /// A demonstration: input + " " + label. Throws InvalidArgument if `item` has no label.
  std::string render_demo(const std::string& task, const Example& item) const;

  /// DEF(I_t) + Q.
  Prompt zero_shot(const std::string& target, const Example& item) const;
  /// DEF(I_t) + IT + Q with the task card's fixed in-task demonstration (Paper: its byte-exact text).
  Prompt in_task(const std::string& target, const Example& item) const;
  /// In-task ICL with the given rendered demonstrations of the target task.
  Prompt in_task_with(const std::string& target, const Example& item, const std::vector<std::string>& demos) const;
  /// Cross-task, k demonstrations of one source (the paper's totally-cross-sim):
  /// Paper: DEF(I_s) + join("\n", demos) + "\n" + DEF(I_t) + Q. Throws InvalidArgument if demos is empty.
  Prompt cross_task(const std::string& target, const Example& item, const std::string& source,
                    const std::vector<std::string>& demos) const;
  /// Cross-task demonstration plus the fixed in-task one (in-n-cross-sim):
  /// Paper: DEF(I_s) + D + "\n" + DEF(I_t) + IT + Q.
  Prompt in_and_cross(const std::string& target, const Example& item, const std::string& source,
                      const std::string& demo) const;
  /// One or more demonstrations from each of several sources, each block with its own definition
  /// (aba-mixed-cross-sim): Paper: join("\n", [DEF(I_si) + join("\n", D_i)]) + "\n" + DEF(I_t) + Q.
  Prompt mixed_cross(const std::string& target, const Example& item, const std::vector<SourceBlock>& blocks) const;
  /// Random-demonstration ablation with the source card's fixed demo `seed` ("0", "1", ...):
  /// Paper: R + DEF(I_t) + Q with nothing between R and "Definition:" (the published quirk).
  Prompt random_ablation(const std::string& target, const Example& item, const std::string& source,
                         const std::string& seed) const;
  /// In-task ICL whose demonstrations are target examples with the given (pseudo-)labels:
  /// Paper: I_t + "\n" + concat(input_j + label_j + "\n") + Q (no "Definition: ", no space before the label).
  /// Throws InvalidArgument if the sizes of `demos` and `labels` differ.
  Prompt pseudo_label(const std::string& target, const Example& item, const std::vector<Example>& demos,
                      const std::vector<std::string>& labels) const;

 private:
  std::shared_ptr<const TaskSet> tasks_;
  PromptOptions options_;
};

}  // namespace crossicl
